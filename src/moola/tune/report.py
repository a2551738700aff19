"""Looking at a study: a summary (``moola tune show``), an HTML report, the dashboard.

- :func:`study_summary`: the best trial (number, value, parameters, its run), parameter
  importances (``optuna.importance.get_param_importances``: fANOVA over the completed
  trials; empty until there are two with different values) and one row per trial.
- :func:`write_report`: ``artifacts/studies/<name>/report.html`` (written atomically):
  Optuna's plotly figures (optimisation history, importances, parallel coordinates) with
  plotly's JavaScript embedded once, inline (the file opens offline; no CDN), and the
  trial table.
- :func:`dashboard_server`: optuna-dashboard's WSGI app over the study's storage, bound
  to 127.0.0.1 only (reach it from elsewhere through an SSH tunnel, not by exposing it).

A study is found through ``study.json`` (its storage URL) unless ``storage`` is given
(a URL whose password was hidden in the record must be given again).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moola.core.atomic import atomic_write_text
from moola.core.errors import ConfigError
from moola.tune.storage import open_storage, read_study_record, study_dir

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    import optuna

__all__ = ["REPORT_FILE", "dashboard_server", "load_study", "study_summary", "write_report"]

REPORT_FILE = "report.html"
LOOPBACK = "127.0.0.1"


def load_study(root: str | Path, name: str, storage: str | None = None) -> optuna.Study:
    """Study ``name`` from its storage (``storage``, else the one ``study.json`` names,
    else the default SQLite file); ``ConfigError`` when there is no such study."""
    import optuna

    url = _storage_of(root, name, storage)
    if url is None and not (study_dir(root, name) / "study.db").is_file():
        raise ConfigError(
            f"No study {name!r} under {Path(root) / 'artifacts' / 'studies'}. Run `moola tune "
            "run` first, or pass the storage it used.",
            param="study",
        )
    backend = open_storage(root, name, url)
    names = [summary.study_name for summary in optuna.get_all_study_summaries(backend)]
    if name not in names:
        raise ConfigError(
            f"No study {name!r} in {_storage_of(root, name, storage) or 'the data root'} "
            f"(it holds: {', '.join(sorted(names)) or 'none'}). Run `moola tune run` first, "
            "or pass the storage it used.",
            param="study",
        )
    return optuna.load_study(study_name=name, storage=backend)


def study_summary(root: str | Path, name: str, storage: str | None = None) -> dict[str, Any]:
    """What ``moola tune show`` prints (module notes)."""
    study = load_study(root, name, storage)
    return _summary(study, read_study_record(root, name) or {})


def write_report(root: str | Path, name: str, storage: str | None = None) -> Path:
    """Write ``artifacts/studies/<name>/report.html`` (module notes); its path."""
    from moola.evaluation.report import Section, render_report, table_html

    study = load_study(root, name, storage)
    record = read_study_record(root, name) or {}
    summary = _summary(study, record)
    sections = [Section("Best trial", table_html([_best_row(summary)]))]
    figures = _figures(study)
    first = True
    for title, figure in figures:
        body = figure.to_html(full_html=False, include_plotlyjs=first)
        first = False
        sections.append(Section(title, body))
    if not figures:
        sections.append(Section("Plots", '<p class="muted">No completed trial yet.</p>'))
    columns = ["number", "state", "value", "run_id", "seconds", *summary["param_names"], "error"]
    sections.append(Section("Trials", table_html(summary["trials"], columns)))
    html = render_report(
        f"Study {name}",
        sections,
        subtitle=(
            f"objective {summary['metric']} ({summary['direction']}); space "
            f"{summary['space_hash']}; {summary['counts']}"
        ),
    )
    path = study_dir(root, name) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html, overwrite=True)
    return path


def dashboard_server(
    root: str | Path, name: str, storage: str | None = None, *, port: int = 8080
) -> WSGIServer:
    """optuna-dashboard over study ``name``'s storage, bound to 127.0.0.1:``port``
    (0: any free port) and not yet serving: call ``serve_forever()`` (and
    ``server_close()`` after)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import optuna_dashboard

    load_study(root, name, storage)  # the study exists
    backend = open_storage(root, name, _storage_of(root, name, storage))

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

    try:
        return make_server(LOOPBACK, port, optuna_dashboard.wsgi(backend), handler_class=_Quiet)
    except OSError as exc:
        raise ConfigError(
            f"Cannot start the dashboard on {LOOPBACK}:{port}: {exc.strerror}; pick another port.",
            param="port",
        ) from None


# -- pieces --------------------------------------------------------------------------------


def _storage_of(root: str | Path, name: str, storage: str | None) -> str | None:
    if storage:
        return storage
    record = read_study_record(root, name) or {}
    stored = record.get("storage")
    if stored and "***" in stored:
        raise ConfigError(
            f"Study {name!r} lives in {stored}, whose password moola does not keep; pass "
            "the storage URL again.",
            param="storage",
        )
    default = f"sqlite:///{(study_dir(root, name) / 'study.db').resolve()}"
    return None if not stored or stored == default else stored


def _summary(study: optuna.Study, record: dict[str, Any]) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    names: list[str] = []
    for trial in trials:
        names.extend(key for key in trial.params if key not in names)
    rows = []
    for trial in trials:
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                "run_id": trial.user_attrs.get("run_id") or "",
                "seconds": trial.user_attrs.get("seconds", ""),
                **{key: trial.params.get(key, "") for key in names},
                "error": trial.user_attrs.get("error") or "",
            }
        )
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = None
    if complete:
        best = study.best_trial
    return {
        "name": study.study_name,
        "metric": (record.get("objective") or {}).get("metric"),
        "direction": study.direction.name.lower(),
        "space_hash": study.user_attrs.get("moola_space_hash"),
        "space_file": study.user_attrs.get("moola_space_file"),
        "counts": {
            state.name.lower(): sum(t.state == state for t in trials)
            for state in (
                TrialState.COMPLETE,
                TrialState.PRUNED,
                TrialState.FAIL,
                TrialState.RUNNING,
            )
        },
        "best": None
        if best is None
        else {
            "number": best.number,
            "value": best.value,
            "params": dict(best.params),
            "run_id": best.user_attrs.get("run_id"),
        },
        "importances": _importances(study, complete),
        "param_names": names,
        "trials": rows,
    }


def _importances(study: optuna.Study, complete: list[Any]) -> dict[str, float]:
    """Parameter importances; empty when they cannot be computed yet."""
    import optuna

    values = {t.value for t in complete}
    if len(complete) < 2 or len(values) < 2:
        return {}
    try:
        found = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # e.g. one parameter value only
        return {}
    return {key: float(value) for key, value in found.items() if math.isfinite(value)}


def _best_row(summary: dict[str, Any]) -> dict[str, Any]:
    best = summary["best"]
    if best is None:
        return {"trial": "none completed"}
    return {
        "trial": best["number"],
        "value": best["value"],
        "run": best["run_id"] or "",
        "params": ", ".join(f"{k}={v}" for k, v in best["params"].items()),
    }


def _figures(study: optuna.Study) -> list[tuple[str, Any]]:
    """Optuna's plotly figures worth drawing for this study."""
    from optuna import visualization as vis
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    figures: list[tuple[str, Any]] = [
        ("Optimisation history", vis.plot_optimization_history(study))
    ]
    if _importances(study, complete):
        figures.append(("Parameter importances", vis.plot_param_importances(study)))
    if any(t.params for t in complete):
        figures.append(("Parallel coordinates", vis.plot_parallel_coordinate(study)))
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        figures.append(("Intermediate values", vis.plot_intermediate_values(study)))
    return figures
