"""Windows datasets from stored bars: unlabeled, labeled from a labels file, or labeled from
a stored ``labels`` table (what ``moola labels build --name`` stores).

``moola data windows`` calls ``build_windows``; the demo and notebooks can call the two
labeled builders directly. A per-bar label (``labels build``) describes what follows its
bar, so its window is the one that *ends* at that bar (``moola.data.label_ends``); the
label's horizon end is kept with the window so splits purge by it. Rows left out (label or
horizon undefined, no complete window, thinned by the stride) are counted, recorded in
the manifest and returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError, RegistryError
from moola.core.hashing import sha256_file
from moola.data._manifest import DatasetRef
from moola.data.blacklist import add_entries, make_entry
from moola.data.label_ends import windows_ending_at
from moola.data.labels_file import read_labels_file
from moola.data.registry import LABEL_HORIZON, Registry, parse_ref
from moola.data.windows import labeled_windows_table

LABELS_TABLE_SOURCE = "labels"


@dataclass(frozen=True)
class WindowsResult:
    """A stored windows dataset, how many windows it holds and the rows left out."""

    ref: DatasetRef
    windows: int
    length: int
    dropped: dict[str, int] = field(default_factory=dict)


def build_windows(
    registry: Registry,
    raw: str,
    *,
    name: str,
    length: int,
    stride: int = 1,
    allow_gaps: bool = False,
    labels_file: str | Path | None = None,
    labels_from: str | None = None,
    label_column: str | None = None,
) -> WindowsResult:
    """Window ``raw`` (``NAME[@vN]``): unlabeled, or labeled from ``labels_file`` or from
    the stored labels table ``labels_from`` (``NAME[@vN]``, column ``label_column``)."""
    if labels_file is not None and labels_from is not None:
        raise ConfigError(
            "Give labels_file (a labels file) or labels_from (a stored labels table), not both."
        )
    if label_column is not None and labels_from is None:
        raise ConfigError("label_column picks a column of a stored labels table: give labels_from.")
    raw_ref = registry.resolve_text(raw, "raw")
    if labels_from is not None:
        return labeled_from_labels(
            registry,
            name,
            raw_ref,
            labels_from,
            length=length,
            label_column=label_column,
            stride=stride,
            allow_gaps=allow_gaps,
        )
    if labels_file is not None:
        return labeled_from_file(
            registry, name, raw_ref, labels_file, length=length, allow_gaps=allow_gaps
        )
    ref = registry.write_unlabeled(
        name, raw_ref, length=length, stride=stride, allow_gaps=allow_gaps
    )
    return WindowsResult(ref, int(registry.meta(ref)["windows"]), length)


def labeled_from_file(
    registry: Registry,
    name: str,
    raw: DatasetRef,
    path: str | Path,
    *,
    length: int,
    allow_gaps: bool = False,
) -> WindowsResult:
    """Store labeled windows described by a labels file over ``raw`` bars.

    See ``moola.data.labels_file`` for the file's columns: ``start``/``start_ts`` rows
    give a window's first bar, ``timestamp`` rows its last. Grade D windows are
    blacklisted: their spans are appended to the data root's blacklist before the new
    version is written (so they, and every window overlapping them, stay out of this and
    every later dataset, split and run), and the drop is recorded.
    """
    path = Path(path)
    bars = registry.load_raw(raw.name, raw.version)
    rows = read_labels_file(path, bars, length=length, allow_gaps=allow_gaps)
    file_hash = sha256_file(path)
    stamps, symbols = bars["timestamp"], bars["symbol"].astype(str)
    graded_d = [
        make_entry(
            symbols.iloc[start],
            stamps.iloc[start],
            stamps.iloc[start + length - 1],
            "grade D",
            f"labels file {path.name} ({file_hash[:19]}) over {raw}, window start {start}",
        )
        for start in rows.blacklisted_starts.tolist()
    ]
    blacklisted = add_entries(registry.root, graded_d)  # recorded before the write
    table = labeled_windows_table(
        bars,
        rows.starts,
        length,
        rows.labels,
        grades=rows.grades,
        source=rows.sources if rows.sources is not None else "human",
    )
    if rows.horizons is not None:
        table[LABEL_HORIZON] = rows.horizons.to_numpy()
    dropped = {**rows.skipped, "grade_D": rows.dropped}
    steps = [
        {
            "name": "labels_file",
            "params": {
                "path": str(path.resolve()),
                "sha256": file_hash,
                "length": length,
                "window_ends_at_label": rows.horizons is not None or bool(rows.skipped),
            },
        },
        {
            "name": "drop_blacklisted_grade_D",
            "params": {"dropped": rows.dropped, "added_to_blacklist": len(blacklisted)},
        },
    ]
    if rows.skipped:
        steps.append({"name": "drop_unusable_label_rows", "params": rows.skipped})
    ref = registry.write_labeled(name, raw, table, length=length, transformations=steps)
    return WindowsResult(ref, len(table), length, dropped)


def labeled_from_labels(
    registry: Registry,
    name: str,
    raw: DatasetRef,
    labels: str,
    *,
    length: int,
    label_column: str | None = None,
    stride: int = 1,
    allow_gaps: bool = False,
) -> WindowsResult:
    """Store labeled windows ending at each labelled bar of the stored labels table
    ``labels`` (``NAME[@vN]``), which must have been built from ``raw`` itself.

    ``label_column`` defaults to the table's recorded target (``label`` for
    forward-return and triple-barrier, ``vol_regime``...). Raises ``RegistryError``
    naming both datasets when the labels come from other bars, and ``ConfigError`` naming
    the column and rows when it holds no classes (fractional values).
    """
    bars = registry.load_raw(raw.name, raw.version)
    labels_ref, meta, table, column = labels_column(registry, raw, bars, labels, label_column)
    values = pd.to_numeric(table[column], errors="coerce")
    horizon = pd.to_numeric(table.get("horizon_end"), errors="coerce")
    defined = values.notna().to_numpy() & (horizon.fillna(-1).to_numpy() >= 0)
    chosen = windows_ending_at(
        bars,
        np.arange(len(bars), dtype=np.int64),
        defined,
        length=length,
        stride=stride,
        allow_gaps=allow_gaps,
    )
    picked = values.to_numpy(np.float64)[chosen.rows]
    _check_classes(picked, chosen.rows, table, column, labels_ref)
    source = f"{LABELS_TABLE_SOURCE}:{labels_ref.name}@v{labels_ref.version}"
    windows = labeled_windows_table(
        bars, chosen.starts, length, picked.astype(np.int64), source=source
    )
    windows[LABEL_HORIZON] = table[LABEL_HORIZON].iloc[chosen.rows].to_numpy()
    params = {
        "labels": labels_ref.to_dict(),
        "column": column,
        "label_kind": meta.get("label_kind"),
        "length": length,
        "stride": stride,
        "allow_gaps": allow_gaps,
        "window": "ends at the labelled bar",
        "dropped": chosen.dropped,
    }
    ref = registry.write_labeled(
        name, raw, windows, length=length, transformations=[{"name": "labels_table", **params}]
    )
    return WindowsResult(ref, len(windows), length, chosen.dropped)


def labels_column(
    registry: Registry,
    raw: DatasetRef,
    bars: pd.DataFrame,
    labels: str,
    label_column: str | None = None,
) -> tuple[DatasetRef, dict[str, Any], pd.DataFrame, str]:
    """The stored labels table ``labels`` (``NAME[@vN]``) over ``raw`` (whose ``bars`` the
    caller has loaded), checked: its reference, meta, table (one row per bar) and the label
    column to use.

    ``label_column`` defaults to the table's recorded target. Raises ``RegistryError``
    naming both datasets when the labels come from other bars, and ``ConfigError`` naming
    the column when the table has no such label column.
    """
    labels_ref = registry.resolve("labels", *parse_ref(labels))
    meta = registry.meta(labels_ref)
    parents = registry.manifest(labels_ref).get("parents", [])
    parent = next((p for p in parents if p.get("kind") == "raw"), None)
    if parent is None or parent.get("content_hash") != raw.content_hash:
        made_from = f"raw/{parent['name']}@v{parent['version']}" if parent else "no raw dataset"
        raise RegistryError(
            f"{labels_ref} was built from {made_from}, not from {raw}; labels only describe "
            "the bars they were computed on. Build them over this raw version (`moola labels "
            f"build --raw {raw.name}@v{raw.version} ...`) or window {made_from} instead."
        )
    table = registry.load_table("labels", labels_ref.name, labels_ref.version)
    column = label_column or meta.get("target", "label")
    bookkeeping = ("timestamp", "symbol", "horizon_end", LABEL_HORIZON, "touch_pos")
    if column not in table.columns or column in bookkeeping:
        candidates = [c for c in table.columns if c not in bookkeeping]
        raise ConfigError(
            f"{labels_ref} has no label column {column!r}; its columns are {', '.join(candidates)}."
        )
    if len(table) != len(bars) or not table["timestamp"].reset_index(drop=True).equals(
        bars["timestamp"].reset_index(drop=True)
    ):
        raise RegistryError(
            f"{labels_ref} has {len(table)} rows that do not line up with the {len(bars)} bars "
            f"of {raw}, though it records {raw} as its parent; rebuild the labels."
        )
    return labels_ref, meta, table, column


def _check_classes(
    values: np.ndarray, rows: np.ndarray, table: pd.DataFrame, column: str, ref: DatasetRef
) -> None:
    """Refuse a continuous target: windows need classes (whole numbers)."""
    bad = np.flatnonzero(values != np.floor(values))
    if not bad.size:
        return
    shown = ", ".join(
        f"bar {int(rows[i])} at {table['timestamp'].iloc[int(rows[i])]}: {values[i]:g}"
        for i in bad[:3]
    )
    raise ConfigError(
        f"{ref} column {column!r} holds {bad.size:,} fractional values ({shown}"
        f"{' ...' if bad.size > 3 else ''}); labeled windows need classes: whole-number "
        "indices or names. Choose a column that holds classes, or build labels of a "
        "classification kind (forward-return, triple-barrier, vol-regime)."
    )
