"""The run browser's data: runs from ``experiment_results.jsonl`` filtered and sorted,
compared side by side, and their reports and files, read only inside the data root.

The experiment log holds one line per recorded result (a training run, a backtest of it,
a test-set evaluation); each line becomes one row here, so a run trained and backtested
shows both. Only numbers are kept as metrics (nested dicts one level deep become
``outer.inner``), since the page sorts and compares them.

A run's report and files are found through ``RunStore`` (run ids are checked names,
resolved inside ``artifacts/runs``); a file must be listed in the run's manifest and is
read verified against its hash, so the browser never serves a path a request made up.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from moola.core.errors import ConfigError, RegistryError
from moola.core.paths import confined
from moola.tracking.runs import MANIFEST_FILE, REPORT_FILE, RunStore

__all__ = [
    "LOWER_IS_BETTER",
    "Comparison",
    "RunRow",
    "RunsPage",
    "compare_runs",
    "list_runs",
    "read_run_file",
    "report_path",
    "run_dataset",
]

LOWER_IS_BETTER = ("brier", "ece", "loss", "drawdown", "wall_time")
"""Metric names containing one of these are better when smaller (for the comparison)."""

SortKey = str


class RunRow(BaseModel):
    """One line of the experiment log, as the runs page shows it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line: int
    run_id: str
    kind: str
    model: str
    dataset: str
    metrics: dict[str, float | None]
    has_report: bool
    files: tuple[str, ...] = ()


class RunsPage(BaseModel):
    """Rows after filtering and sorting, what can be filtered on, and unreadable lines."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: tuple[RunRow, ...]
    total: int
    kinds: tuple[str, ...]
    models: tuple[str, ...]
    metrics: tuple[str, ...]
    problems: tuple[str, ...]


class Comparison(BaseModel):
    """Runs side by side: one column per row, one line per metric, the best per metric."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: tuple[RunRow, ...]
    metrics: tuple[str, ...]
    best: dict[str, int]
    """metric -> index into ``rows`` of the best value (ties: the first)."""


def run_dataset(record: dict[str, Any]) -> str:
    """A line of the experiment log's dataset as ``name@vN``, whichever form the line holds
    it in (``kind/name@vN`` from train, a reference object from evaluate, ``data`` from
    demo); ``""`` when it names none. ``moola runs`` shows it too."""
    value = record.get("dataset", record.get("data"))
    if isinstance(value, dict) and "name" in value and "version" in value:
        return f"{value['name']}@v{value['version']}"
    if isinstance(value, str):
        return value.rsplit("/", 1)[-1]
    return "" if value is None else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _metrics(record: dict[str, Any]) -> dict[str, float | None]:
    metrics = record.get("metrics")
    flat: dict[str, float | None] = {}
    if not isinstance(metrics, dict):
        return flat
    for key, value in metrics.items():
        if isinstance(value, dict):
            for inner, item in value.items():
                if not isinstance(item, dict | list):
                    flat[f"{key}.{inner}"] = _number(item)
        elif not isinstance(value, list):
            flat[str(key)] = _number(value)
    return flat


def _run_folder(store: RunStore, run_id: str) -> Path | None:
    try:
        return store.run_dir(run_id)
    except (ConfigError, RegistryError):
        return None


def _row(store: RunStore, line: int, record: dict[str, Any], *, files: bool) -> RunRow:
    run_id = str(record.get("run_id", ""))
    folder = _run_folder(store, run_id) if run_id else None
    listed: tuple[str, ...] = ()
    if folder is not None and files:
        try:
            listed = tuple(sorted(store.manifest(folder).get("files", {})))
        except (ConfigError, RegistryError):
            listed = ()
    return RunRow(
        line=line,
        run_id=run_id,
        kind=str(record.get("kind", "")),
        model=str(record.get("model", "") or ""),
        dataset=run_dataset(record),
        metrics=_metrics(record),
        has_report=folder is not None and (folder / REPORT_FILE).is_file(),
        files=listed,
    )


def _sort_value(row: RunRow, sort: str) -> tuple[int, Any]:
    """Missing values sort last whichever the direction (the caller flips only the first
    element's meaning through ``reverse`` on present values)."""
    if sort in ("run_id", "kind", "model", "dataset"):
        return (0, getattr(row, sort))
    if sort == "line":
        return (0, row.line)
    value = row.metrics.get(sort)
    return (1, 0.0) if value is None else (0, value)


def list_runs(
    root: str | Path,
    *,
    kind: str | None = None,
    model: str | None = None,
    search: str | None = None,
    sort: SortKey = "line",
    order: Literal["asc", "desc"] = "desc",
) -> RunsPage:
    """Lines of the experiment log under ``root`` that match every filter given.

    ``kind`` and ``model`` match exactly; ``search`` matches any part of the run id or the
    dataset (case-insensitive). ``sort`` is ``line`` (log order), ``run_id``, ``kind``,
    ``model``, ``dataset`` or a metric name; rows without that metric come last.
    ``ConfigError`` names ``sort`` when it is none of these.
    """
    store = RunStore(root)
    records = store.results()
    rows = [_row(store, n, record, files=False) for n, record in enumerate(records, start=1)]
    metrics = sorted({key for row in rows for key in row.metrics})
    fixed = ("line", "run_id", "kind", "model", "dataset")
    if sort not in fixed and sort not in metrics:
        raise ConfigError(
            f"sort {sort!r} is neither a column ({', '.join(fixed)}) nor a metric of these runs"
            + (f" ({', '.join(metrics)})." if metrics else "."),
            param="sort",
        )
    kinds = tuple(sorted({row.kind for row in rows}))
    models = tuple(sorted({row.model for row in rows if row.model}))
    needle = (search or "").lower()
    kept = [
        row
        for row in rows
        if (kind is None or row.kind == kind)
        and (model is None or row.model == model)
        and (not needle or needle in row.run_id.lower() or needle in row.dataset.lower())
    ]
    present = [row for row in kept if _sort_value(row, sort)[0] == 0]
    missing = [row for row in kept if _sort_value(row, sort)[0] == 1]
    present.sort(key=lambda row: _sort_value(row, sort)[1], reverse=order == "desc")
    return RunsPage(
        rows=tuple(present + missing),
        total=len(rows),
        kinds=kinds,
        models=models,
        metrics=tuple(metrics),
        problems=tuple(store.results_problems()),
    )


def compare_runs(root: str | Path, lines: list[int]) -> Comparison:
    """The log lines ``lines`` (1-based, as ``RunRow.line``) side by side, each with its
    run's files, and for each metric the index of the best value.

    ``ConfigError`` names ``lines`` when one is not a line of the log.
    """
    store = RunStore(root)
    records = store.results()
    wrong = [n for n in lines if not 1 <= n <= len(records)]
    if wrong:
        raise ConfigError(
            f"lines {wrong} are not lines of the experiment log (it has {len(records)}).",
            param="lines",
        )
    rows = tuple(_row(store, n, records[n - 1], files=True) for n in lines)
    metrics = tuple(sorted({key for row in rows for key in row.metrics}))
    best: dict[str, int] = {}
    for metric in metrics:
        values = [(i, row.metrics.get(metric)) for i, row in enumerate(rows)]
        known = [(i, v) for i, v in values if v is not None]
        if len(known) < 2:
            continue
        lower = any(word in metric for word in LOWER_IS_BETTER)
        pick = min if lower else max
        best[metric] = pick(known, key=lambda item: item[1])[0]
    return Comparison(rows=rows, metrics=metrics, best=best)


def report_path(root: str | Path, run_id: str) -> Path:
    """The run's ``report.html`` inside the data root; ``RegistryError`` when the run is
    unknown or has none, ``ConfigError`` for a run id that is not a plain name."""
    store = RunStore(root)
    folder = store.run_dir(run_id)
    path = confined(store.runs_dir, folder.name, REPORT_FILE, what="report")
    if not path.is_file():
        raise RegistryError(f"Run {folder.name} has no {REPORT_FILE}; see `moola report`.")
    return path


def read_run_file(root: str | Path, run_id: str, name: str) -> bytes:
    """Bytes of ``name``, a file the run's manifest lists, verified against its hash.

    A name the manifest does not list (a made-up path, ``..``) is refused with
    ``RegistryError`` before anything is opened.
    """
    store = RunStore(root)
    folder = store.run_dir(run_id)
    if name == MANIFEST_FILE:
        return store.manifest_bytes(folder)
    listed = store.manifest(folder).get("files", {})
    if name not in listed:
        raise RegistryError(f"Run {folder.name} lists no file {name!r} in its manifest.")
    confined(folder, name, what="run file")
    return store.read_bytes(folder, name)
