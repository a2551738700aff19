"""``moola runs ...``: the experiment log as tables (list, show, compare), the journal of
decisions (journal; show lists a run's own), and migrating old runs."""

from __future__ import annotations

import json
import math
from typing import Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from moola.annotate.runs import run_dataset
from moola.cli._common import console, err_console, settings_of
from moola.core.errors import ConfigError
from moola.tracking.journal import EVENT_TYPES, JournalEvent, JsonlJournal, find_events
from moola.tracking.runs import RunStore

app = typer.Typer(
    help="List, show and compare runs from experiment_results.jsonl; show the journal of "
    "decisions; migrate old runs.",
    no_args_is_help=True,
)

_HEADLINE = ("accuracy", "balanced_accuracy", "minority_f1", "pr_auc", "brier", "ece")


def _store(ctx: typer.Context) -> RunStore:
    return RunStore(settings_of(ctx).data_root)


def _metric(record: dict[str, Any], key: str) -> Any:
    return (record.get("metrics") or {}).get(key)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return "-" if value is None else str(value)


def _runs_table(title: str, columns: tuple[str, ...]) -> Table:
    """A table whose run ids fold and whose other cells are never cut (see ``_print``)."""
    table = Table(title=title)
    table.add_column("run id", overflow="fold", min_width=20)
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


def _print(table: Table) -> None:
    """Print ``table`` as wide as its cells need, whatever the console's width (a pipe
    counts as 80 columns): only the run ids fold (to 20 characters); no name or metric is
    ever cut."""
    wide = console.options.update_width(100_000)
    natural = Measurement.get(console, wide, table).maximum
    longest_id = max((len(str(cell)) for cell in table.columns[0].cells), default=0)
    needed = natural - max(0, longest_id - 20)
    if needed <= console.width:
        console.print(table)
    else:  # wider than the console: a console of the needed width, on the same output
        Console(width=needed).print(table)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    last: int = typer.Option(20, min=1, help="Show the most recent N runs."),
) -> None:
    """The most recent runs with their headline metrics."""
    store = _store(ctx)
    for problem in store.results_problems():
        err_console.print(f"warning: {problem}", soft_wrap=True, markup=False)
    records = store.results()[-last:]
    table = _runs_table(f"Runs ({len(records)} shown)", ("kind", "model", "data", *_HEADLINE))
    for record in records:
        table.add_row(
            record["run_id"],
            record.get("kind", ""),
            record.get("model", "-"),
            run_dataset(record) or "-",
            *(_fmt(_metric(record, k)) for k in _HEADLINE),
        )
    _print(table)


@app.command()
def show(
    ctx: typer.Context, run_id: str = typer.Argument(..., help="Run id (a prefix works).")
) -> None:
    """Print a run's manifest."""
    store = _store(ctx)
    run_dir = store.run_dir(run_id)
    console.print(f"[bold]{run_dir.name}[/]  ({run_dir})")
    console.print_json(store.manifest_bytes(run_dir).decode("utf-8", errors="replace"))
    journal = JsonlJournal(settings_of(ctx).data_root)
    events = find_events(journal, run=run_dir.name, exact_run=True)
    if events:
        _print_journal(_journal_table(f"Journal: {len(events)} decision(s) of this run", events))
    else:
        console.print("No decisions of this run in the journal.")


@app.command("journal")
def journal_(
    ctx: typer.Context,
    kind: str | None = typer.Option(
        None, "--kind", help="Only events of this kind (e.g. test_look, risk_breach)."
    ),
    run: str | None = typer.Option(
        None, "--run", help="Only events naming this run (a prefix works)."
    ),
    last: int | None = typer.Option(None, "--last", min=1, help="Only the most recent N."),
    as_json: bool = typer.Option(False, "--json", help="Print the events as a JSON array."),
) -> None:
    """The journal of decisions (test looks, gates, backtests, risk breaches, denied
    orders), oldest first. A damaged or tampered journal is refused, naming the line."""
    journal = JsonlJournal(settings_of(ctx).data_root)
    events = find_events(journal, kind=kind, run=run, last=last)
    if as_json:
        records = [
            {"kind": e.kind, "at": e.at, "run_id": e.run_id, "payload": _payload(e)} for e in events
        ]
        typer.echo(json.dumps(records, indent=2, sort_keys=True))
        return
    if not events:
        unknown = kind is not None and kind not in EVENT_TYPES
        known = f" Known kinds: {', '.join(EVENT_TYPES)}." if unknown else ""
        console.print(f"No journal events to show in {journal.path}.{known}", highlight=False)
        return
    _print_journal(_journal_table(f"Journal ({len(events)} shown)", events))


def _payload(event: JournalEvent) -> Any:
    payload = event.payload
    return payload.model_dump(mode="json") if hasattr(payload, "model_dump") else payload


def _print_journal(table: Table) -> None:
    """On a terminal, long summaries fold to its width; into a pipe or a file each event
    stays on one line, whole, so ``grep`` finds it."""
    if console.is_terminal:
        console.print(table)
        return
    wide = console.options.update_width(100_000)
    Console(width=Measurement.get(console, wide, table).maximum).print(table)


def _journal_table(title: str, events: list[JournalEvent]) -> Table:
    """Time recorded, kind, run (or the session a risk event names), what was decided."""
    table = Table(title=title)
    table.add_column("time", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("run", overflow="fold", min_width=20)
    table.add_column("summary", overflow="fold", ratio=1)
    for event in events:
        where = event.run_id or getattr(event.payload, "source", None)
        if where is None and isinstance(event.payload, dict):
            where = event.payload.get("source")
        cells = (event.at, event.kind, str(where or "-"), event.summary())
        table.add_row(*(Text(cell) for cell in cells))  # text, never markup
    return table


@app.command()
def compare(
    ctx: typer.Context,
    run_ids: list[str] = typer.Argument(None, help="Runs to compare (default: all)."),
    sort: str = typer.Option("accuracy", help="Metric to sort by (any key in the metrics)."),
    ascending: bool = typer.Option(False, help="Sort ascending (e.g. for ece or brier)."),
) -> None:
    """A table across runs, sortable by any metric."""
    records = [r for r in _store(ctx).results() if r.get("metrics")]
    if run_ids:
        records = [r for r in records if any(r["run_id"].startswith(p) for p in run_ids)]
    known = sorted({key for r in records for key in r["metrics"]})
    if records and sort not in known:
        raise ConfigError(
            f"--sort {sort!r} is not a metric of these runs; choose one of: "
            + ", ".join(known)
            + "."
        )

    def key(record: dict[str, Any]) -> float:
        value = _metric(record, sort)
        if not isinstance(value, int | float) or math.isnan(value):
            return math.inf
        return value if ascending else -value

    records.sort(key=key)
    columns = [c for c in (sort, *_HEADLINE) if c in known]
    columns = list(dict.fromkeys(columns))
    table = _runs_table(f"Runs sorted by {sort}", ("model", "data", *columns))
    for record in records:
        table.add_row(
            record["run_id"],
            record.get("model", "-"),
            run_dataset(record) or "-",
            *(_fmt(_metric(record, c)) for c in columns),
        )
    _print(table)
    if not records:
        console.print("No runs with metrics yet: train one with `moola train`.")


@app.command()
def migrate(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id (a prefix works)."),
    trust: bool = typer.Option(
        False,
        "--trust",
        help="Confirm you trust the run: migration unpickles its old files, which runs "
        "whatever code they hold.",
    ),
) -> None:
    """Convert a run written by an older moola (pickled model/calibrator, no file hashes)."""
    from moola.pipeline.migrate import MIGRATIONS_FILE, MigrationNeedsTrust, migrate_run

    root = settings_of(ctx).data_root
    try:
        result = migrate_run(root, run_id, trust=trust)
    except MigrationNeedsTrust as exc:
        raise ConfigError(
            f"{exc} To do it anyway: `moola runs migrate {run_id} --trust`."
        ) from None
    if not result.changed:
        console.print(f"Run {result.run_id} is already in the current format; nothing to do.")
        return
    console.print(f"[green]migrated[/] {result.run_id}  ({result.run_dir})")
    for old, new in result.converted.items():
        console.print(
            f"  {old} (pickle, {result.old_sha256[old][:19]}...) -> {new} "
            f"({result.new_sha256[new][:19]}...)",
            highlight=False,
        )
    if result.hashes_added:
        console.print("  every file's hashes recorded in manifest.json")
    console.print(f"  recorded in {root / MIGRATIONS_FILE}; manifest anchored in the journal")
