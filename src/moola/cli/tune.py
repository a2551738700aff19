"""``moola tune run | phases | show | report | dashboard``: hyperparameter search.

``run`` runs (or resumes) an Optuna study over a space file, every trial a recorded run
ranked out of fold or on validation; ``phases`` runs an ordered list of studies, each
starting from the previous best; ``show`` prints a study's best trial, parameter
importances and trials; ``report`` writes its HTML report; ``dashboard`` serves
optuna-dashboard over it on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.table import Table

from moola.cli._common import console, settings_of
from moola.core.errors import ConfigError
from moola.data.registry import Registry

_Result = TypeVar("_Result")

app = typer.Typer(
    help="Hyperparameter search: Optuna studies whose trials are recorded runs, scored out "
    "of fold or on validation (never on the test part); phases; reports; the dashboard.",
    no_args_is_help=True,
)

_STORAGE_HELP = (
    "Optuna storage: a database URL (postgresql://user@host/db), or journal:PATH (a journal "
    "file many processes share). Default: SQLite under artifacts/studies/NAME/."
)


# Where trials run: the same options for `run` and `phases`.
_PARALLEL = typer.Option(
    1, "--parallel", min=1, help="Trials at once (local processes, or Ray tasks)."
)
_BACKEND = typer.Option("local", "--backend", help="local or ray.")
_ADDRESS = typer.Option(
    None, "--address", help="Ray cluster: auto or HOST:PORT (default: a local Ray)."
)
_CPUS = typer.Option(
    None, "--cpus-per-task", min=0.0, help="Ray: CPUs each trial asks for (default 1)."
)
_GPUS = typer.Option(
    None,
    "--gpus-per-task",
    min=0.0,
    help="Ray: GPUs each trial asks for (default 0; 0.5 packs two trials per GPU).",
)
_RETRIES = typer.Option(
    None,
    "--max-retries",
    min=0,
    help="Ray: further attempts of a trial whose worker died, before it is marked failed "
    "(default 2).",
)


def _registry(ctx: typer.Context) -> Registry:
    return Registry(settings_of(ctx).data_root)


def _executor(
    backend: str,
    parallel: int,
    address: str | None,
    cpus_per_task: float | None = None,
    gpus_per_task: float | None = None,
    max_retries: int | None = None,
) -> Any:
    """Where trials run: here (``local``, ``--parallel 1``), ``parallel`` local processes,
    or Ray tasks asking for ``cpus_per_task``/``gpus_per_task`` each and run again up to
    ``max_retries`` times when their worker dies (``moola.tune.executors.make_executor``;
    the Ray-only options are refused with another backend)."""
    from moola.tune.executors import make_executor

    if backend not in ("local", "ray"):
        raise ConfigError(f"Unknown backend {backend!r}; use local or ray.", param="backend")
    ray_only = {
        "--address": address,
        "--cpus-per-task": cpus_per_task,
        "--gpus-per-task": gpus_per_task,
        "--max-retries": max_retries,
    }
    given = [flag for flag, value in ray_only.items() if value is not None]
    if given and backend != "ray":
        raise ConfigError(
            f"{', '.join(given)} only apply to Ray tasks; add --backend ray.",
            param=given[0].removeprefix("--").replace("-", "_"),
        )
    if backend == "ray":
        return make_executor(
            "ray",
            workers=parallel,
            address=address,
            cpus_per_task=1.0 if cpus_per_task is None else cpus_per_task,
            gpus_per_task=0.0 if gpus_per_task is None else gpus_per_task,
            max_retries=2 if max_retries is None else max_retries,
        )
    return make_executor("serial" if parallel == 1 else "process", workers=parallel)


def _record_in_worker(backend: str, address: str | None) -> bool:
    """Workers record their runs where they share this data root (this machine); on a
    Ray cluster they hand supervised runs back and the driver records them."""
    return backend != "ray" or address is None


def _search(
    search: Callable[..., _Result],
    backend: str,
    parallel: int,
    address: str | None,
    cpus_per_task: float | None,
    gpus_per_task: float | None,
    max_retries: int | None,
) -> _Result:
    """``search`` (``run_study`` or ``run_phases`` with their own arguments bound) on the
    trials' executor, with a progress display; the executor is shut down afterwards
    whatever happens."""
    import optuna

    from moola.cli._progress import stage_display

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    executor = _executor(backend, parallel, address, cpus_per_task, gpus_per_task, max_retries)
    try:
        with stage_display(console) as display:
            return search(
                executor=executor,
                on_progress=_Progress(display),
                parallel=parallel,
                record_in_worker=_record_in_worker(backend, address),
            )
    finally:
        _shutdown(executor)


class _Progress:
    """Trials done out of those wanted, and the best so far, on a stage display."""

    def __init__(self, display: Any) -> None:
        self.display = display
        self.done = 0

    def __call__(self, event: dict[str, Any]) -> None:
        from moola.training.callbacks import ProgressUpdate

        if event["event"] == "phase":
            self.display.stage(f"phase {event['phase']}: study {event['study']}")
        elif event["event"] == "start":
            self.done = 0
            counts = event["counts"]
            self.display.stage(
                f"study {event['study']}: {event['wanted']} trial(s) to run "
                f"({counts['complete']} complete, {counts['pruned']} pruned already)"
            )
        elif event["event"] == "trial":
            self.done += 1
            value = "" if event["value"] is None else f" {event['value']:.5g}"
            best = (
                ""
                if event["best_value"] is None
                else f", best #{event['best_trial']} {event['best_value']:.5g}"
            )
            error = f" ({event['error']})" if event.get("error") else ""
            self.display.update(
                ProgressUpdate(
                    self.done,
                    max(event["wanted"], self.done),
                    f"trial {event['number']} {event['state']}{value}{best}{error}",
                )
            )


def _print_result(result: Any) -> None:
    counts = result.counts
    console.print(
        f"[bold]Study {result.name}[/]: {counts['complete']} complete, {counts['pruned']} "
        f"pruned, {counts['failed']} failed ({result.storage})",
        soft_wrap=True,
    )
    if result.recovered:
        console.print(
            f"Settled trials left running by a stopped driver: {result.recovered['complete']} "
            f"completed from their recorded runs, {result.recovered['failed']} failed."
        )
    if result.best_trial is None:
        console.print("No completed trial yet.")
        return
    console.print(
        f"Best: trial {result.best_trial}, {result.metric} {result.best_value:.6g} "
        f"({result.direction}), run {result.best_run_id}",
        soft_wrap=True,
    )
    for key, value in result.best_params.items():
        console.print(f"  {key} = {value}", soft_wrap=True, highlight=False)


@app.command("run")
def run_command(
    ctx: typer.Context,
    space: Path = typer.Option(..., "--space", help="SPACE.yaml: the run, objective, params."),
    study: str = typer.Option(..., "--study", help="Study name (resumed when it exists)."),
    trials: int = typer.Option(
        ..., "--trials", min=1, help="Finished trials the study should hold (rerun: the rest)."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Seconds after which no new trial starts."
    ),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe, cmaes or random."),
    pruner: str = typer.Option("median", "--pruner", help="median, hyperband or none."),
    storage: str | None = typer.Option(None, "--storage", help=_STORAGE_HELP),
    seed: int = typer.Option(
        0, "--seed", help="Sampler seed (same seed, one at a time: same trials)."
    ),
    parallel: int = _PARALLEL,
    backend: str = _BACKEND,
    address: str | None = _ADDRESS,
    cpus_per_task: float | None = _CPUS,
    gpus_per_task: float | None = _GPUS,
    max_retries: int | None = _RETRIES,
) -> None:
    """Run or resume an Optuna study: every trial a recorded run, ranked on its
    out-of-fold or validation metric."""
    from moola.tune.space import load_space
    from moola.tune.study import run_study

    loaded = load_space(space)  # a bad space file fails before Ray starts
    search = partial(
        run_study,
        _registry(ctx),
        loaded,
        study=study,
        trials=trials,
        timeout=timeout,
        sampler=sampler,
        pruner=pruner,
        storage=storage,
        seed=seed,
    )
    result = _search(search, backend, parallel, address, cpus_per_task, gpus_per_task, max_retries)
    _print_result(result)


@app.command("phases")
def phases_command(
    ctx: typer.Context,
    phases: Path = typer.Argument(..., help="PHASES.yaml: name and the ordered phases."),
    sampler: str = typer.Option("tpe", "--sampler", help="Default sampler of the phases."),
    pruner: str = typer.Option("median", "--pruner", help="Default pruner of the phases."),
    storage: str | None = typer.Option(None, "--storage", help=_STORAGE_HELP),
    seed: int = typer.Option(0, "--seed", help="Sampler seed of the first phase (+1 each)."),
    parallel: int = _PARALLEL,
    backend: str = _BACKEND,
    address: str | None = _ADDRESS,
    cpus_per_task: float | None = _CPUS,
    gpus_per_task: float | None = _GPUS,
    max_retries: int | None = _RETRIES,
) -> None:
    """Run phases in order, each fixing the previous best and starting from it."""
    from moola.tune.phases import load_phases, run_phases

    loaded, spaces = load_phases(phases)
    search = partial(
        run_phases,
        _registry(ctx),
        loaded,
        spaces,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        seed=seed,
    )
    result = _search(search, backend, parallel, address, cpus_per_task, gpus_per_task, max_retries)
    for study in result.studies:
        _print_result(study)
    console.print(f"Lineage: {result.record}", soft_wrap=True)


@app.command("show")
def show_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Study name."),
    storage: str | None = typer.Option(None, "--storage", help=_STORAGE_HELP),
    limit: int = typer.Option(20, "--limit", min=1, help="Trials listed (the best first)."),
) -> None:
    """A study's best trial, parameter importances and trials."""
    from moola.tune.report import study_summary

    summary = study_summary(settings_of(ctx).data_root, name, storage)
    counts = summary["counts"]
    console.print(
        f"[bold]Study {name}[/]: {summary['metric']} ({summary['direction']}); "
        f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed, "
        f"{counts['running']} running",
        soft_wrap=True,
    )
    console.print(f"Space {summary['space_hash']} ({summary['space_file']})", soft_wrap=True)
    best = summary["best"]
    if best is None:
        console.print("No completed trial yet.")
    else:
        console.print(
            f"Best: trial {best['number']}, {summary['metric']} {best['value']:.6g}, run "
            f"{best['run_id']}",
            soft_wrap=True,
        )
        for key, value in best["params"].items():
            console.print(f"  {key} = {value}", soft_wrap=True, highlight=False)
    if summary["importances"]:
        table = Table(title="Parameter importances")
        table.add_column("parameter")
        table.add_column("importance", justify="right")
        for key, value in summary["importances"].items():
            table.add_row(key, f"{value:.3f}")
        console.print(table)
    rows = sorted(
        summary["trials"],
        key=lambda row: (row["value"] is None, _ranked(row["value"], summary["direction"])),
    )[:limit]
    table = Table(title="Trials")
    columns = ["number", "state", "value", *summary["param_names"], "run_id"]
    for column in columns:
        table.add_column(column, justify="right" if column in ("number", "value") else "left")
    for row in rows:
        table.add_row(*(_cell(row[column]) for column in columns))
    console.print(table)


@app.command("report")
def report_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Study name."),
    storage: str | None = typer.Option(None, "--storage", help=_STORAGE_HELP),
) -> None:
    """Write the study's HTML report (history, importances, parallel coordinates)."""
    from moola.tune.report import write_report

    path = write_report(settings_of(ctx).data_root, name, storage)
    console.print(f"Report: {path}")


@app.command("dashboard")
def dashboard_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Study name."),
    storage: str | None = typer.Option(None, "--storage", help=_STORAGE_HELP),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port on 127.0.0.1."),
) -> None:
    """Serve optuna-dashboard over the study on 127.0.0.1 (Ctrl-C stops it)."""
    from moola.tune.report import dashboard_server

    server = dashboard_server(settings_of(ctx).data_root, name, storage, port=port)
    host, bound = server.server_address[:2]
    console.print(f"optuna-dashboard on http://{host}:{bound}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _ranked(value: Any, direction: str) -> float:
    if value is None:
        return 0.0
    return float(value) if direction == "minimize" else -float(value)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def _shutdown(executor: Any) -> None:
    shutdown = getattr(executor, "shutdown", None)
    if callable(shutdown):
        shutdown()
