"""``moola annotate extract | serve | commit | review | stats`` and ``moola ui``.

The labelling loop: ``extract`` draws a batch of windows to label, ``serve`` starts the
labelling app on 127.0.0.1 and prints its URL with a random token, ``commit`` turns the
batch's accepted annotations (grade A-C) into a new labeled dataset version, ``review``
makes a review batch of a run's likely label errors (labelled in the same app), and
``stats`` prints keeper rates, balance, speed and agreement. ``moola ui`` serves the same
app opening on the run browser. Each command calls one library function and prints.
"""

from __future__ import annotations

import json
import os
from typing import Any

import typer
from rich.table import Table

from moola.cli._common import check_new_name, console, err_console, settings_of

app = typer.Typer(
    help="Label chart windows: extract a batch, label it in the browser (serve), commit it "
    "to a labeled dataset, review likely label errors, see the stats.",
    no_args_is_help=True,
)
ui_app = typer.Typer(help="The run browser.")

_HOST_HELP = "Address to bind (loopback only, unless --allow-remote)."
_REMOTE_HELP = (
    "Allow binding to a non-loopback address: anyone who can reach it and has the token can "
    "label, grade and blacklist."
)


def _serve(
    ctx: typer.Context,
    *,
    host: str,
    port: int,
    allow_remote: bool,
    batch: str | None,
    mode: str,
    path: str,
) -> None:
    """Check the address and batch, print the URL with a fresh token, serve until Ctrl-C."""
    from moola.annotate import server
    from moola.annotate.app import create_app

    root = settings_of(ctx).data_root
    remote = server.check_host(host, allow_remote=allow_remote)
    token = server.new_token()
    app_ = create_app(root, token=token, batch=batch, mode=mode, by=_user())  # type: ignore[arg-type]
    if batch is not None:
        app_.state.annotations.batch(batch)  # an unknown batch is an error before serving
    server.check_port_free(host, port)
    if remote:
        err_console.print(
            f"[bold yellow]warning:[/] serving on {host}, not a loopback address: anyone who "
            "can reach this port and has the token can label, grade and blacklist windows.",
            soft_wrap=True,
        )
    console.print(f"data root: {root}", highlight=False)
    console.print(
        f"open: {server.app_url(host, port, token, path)}", soft_wrap=True, highlight=False
    )
    console.print("Ctrl-C stops the server; every action is on disk when the page shows it.")
    console.file.flush()  # the URL must show now, also when the output is a pipe or a file
    server.serve(app_, host=host, port=port)


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (ImportError, KeyError, OSError):
        return os.environ.get("USER", "")


@app.command()
def extract(
    ctx: typer.Context,
    raw: str = typer.Argument(..., help="Raw dataset NAME or NAME@vN to draw windows from."),
    n: int = typer.Option(200, "--n", min=1, help="Windows to draw."),
    length: int = typer.Option(105, "--length", min=2, help="Bars per window."),
    name: str = typer.Option(..., "--name", help="Name of the new batch (write-once)."),
    context: int | None = typer.Option(
        None, "--context", min=0, help="Bars shown before and after each window (default 30)."
    ),
    weights: str = typer.Option(
        "session", "--weights", help="session (keeper rates of past batches) or uniform."
    ),
    strategy: str = typer.Option(
        "random", "--strategy", help="random, or uncertainty (needs --run: active learning)."
    ),
    run: str | None = typer.Option(
        None, "--run", help="Run whose predictions rank windows (--strategy uncertainty)."
    ),
    measure: str = typer.Option("entropy", "--measure", help="entropy or margin (uncertainty)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draw."),
) -> None:
    """Draw a batch of windows to label: none overlapping labeled, queued or blacklisted
    bars, weighted by session keeper rates, each with a weak-label suggestion."""
    from moola.annotate.extract import extract_batch
    from moola.data.registry import Registry

    check_new_name(name, "--name")
    options: dict[str, Any] = {} if context is None else {"context": context}
    with console.status("extracting") as status:
        batch = extract_batch(
            Registry(settings_of(ctx).data_root),
            raw,
            n=n,
            length=length,
            name=name,
            weights=weights,  # type: ignore[arg-type]
            strategy=strategy,  # type: ignore[arg-type]
            run=run,
            seed=seed,
            measure=measure,  # type: ignore[arg-type]
            on_progress=lambda text: status.update(text),
            **options,
        )
    suggested = sum(w.suggestion is not None for w in batch.windows)
    console.print(
        f"[green]batch {batch.name}[/]: {len(batch.windows)} windows of {batch.length} bars of "
        f"{batch.raw} ({suggested} with a suggestion, strategy {batch.strategy}).",
        highlight=False,
    )
    console.print(f"label it: moola annotate serve --batch {batch.name}", highlight=False)


@app.command()
def serve(
    ctx: typer.Context,
    batch: str | None = typer.Option(None, "--batch", help="Batch to open (default: a list)."),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help=_HOST_HELP),
    allow_remote: bool = typer.Option(False, "--allow-remote", help=_REMOTE_HELP),
) -> None:
    """Start the labelling app and print its URL (with a random token); Ctrl-C stops it.

    Keys: 1/2/3 consolidation/retracement/neither, a-d grade (d blacklists), n note,
    s skip, u or Backspace undo, arrows previous/next. Reloading resumes where you stopped.
    """
    _serve(
        ctx,
        host=host,
        port=port,
        allow_remote=allow_remote,
        batch=batch,
        mode="label",
        path="/label" if batch is None else f"/label?batch={batch}",
    )


@app.command()
def commit(
    ctx: typer.Context,
    batch: str = typer.Option(..., "--batch", help="Batch whose annotations to commit."),
    into: str | None = typer.Option(
        None,
        "--into",
        help="Labeled dataset NAME to write a new version of (a review batch: the reviewed "
        "dataset, by default).",
    ),
    skip_corrupt: bool = typer.Option(
        False,
        "--skip-corrupt",
        help="Commit even when the batch's log has unreadable lines (they are left out).",
    ),
) -> None:
    """Turn the batch's accepted annotations (labelled, grade A-C) into a new labeled
    dataset version whose manifest lists them; the previous version stays."""
    from moola.annotate.commit import commit_batch
    from moola.data.registry import Registry

    check_new_name(into, "--into")
    result = commit_batch(
        Registry(settings_of(ctx).data_root), batch, into=into, skip_corrupt=skip_corrupt
    )
    console.print(f"[green]committed[/] {result}", highlight=False)


@app.command()
def review(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="Training run with out-of-fold probabilities."),
    name: str | None = typer.Option(
        None, "--name", help="Name of the review batch (default review-<run>)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Review at most this many windows (most suspicious first)."
    ),
    context: int | None = typer.Option(
        None, "--context", min=0, help="Bars shown before and after each window (default 30)."
    ),
) -> None:
    """Rank a run's likely label errors (cleanlab on its out-of-fold probabilities) into a
    review batch, labelled in the same app beside the model's view."""
    from moola.annotate.review import review_batch
    from moola.data.registry import Registry

    batch_name = name or f"review-{run}"[:160]
    check_new_name(batch_name, "--name")
    options: dict[str, Any] = {} if context is None else {"context": context}
    with console.status("finding label issues"):
        batch = review_batch(
            Registry(settings_of(ctx).data_root), run, name=batch_name, limit=limit, **options
        )
    console.print(
        f"[green]review batch {batch.name}[/]: {len(batch.windows)} windows of "
        f"{batch.labeled} flagged as likely mislabelled by run {batch.source_run}.",
        highlight=False,
    )
    console.print(f"review it: moola annotate serve --batch {batch.name}", highlight=False)


@app.command()
def stats(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the stats as JSON."),
) -> None:
    """Keeper rate by session and batch, class and grade balance, labelling speed and
    agreement (Cohen's kappa) where a window was labelled twice."""
    from moola.annotate.stats import annotation_stats

    values = annotation_stats(settings_of(ctx).data_root).model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(values, indent=2, sort_keys=True, default=str))
        return
    for title, value in values.items():
        console.print(_stats_table(title, value))


def _stats_table(title: str, value: Any) -> Table:
    """A table of one stats entry: a mapping of mappings (rows), of values, or a list."""
    table = Table(title=title)
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        columns = list(dict.fromkeys(k for row in value.values() for k in row))
        table.add_column("")
        for column in columns:
            table.add_column(str(column), justify="right")
        for key, row in value.items():
            table.add_row(str(key), *(_cell(row.get(c)) for c in columns))
    elif isinstance(value, dict):
        table.add_column("")
        table.add_column("value", justify="right")
        for key, item in value.items():
            table.add_row(str(key), _cell(item))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        columns = list(dict.fromkeys(k for row in value for k in row))
        for column in columns:
            table.add_column(str(column))
        for row in value:
            table.add_row(*(_cell(row.get(c)) for c in columns))
    else:
        table.add_column("value")
        table.add_row(_cell(value))
    return table


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return "-" if value is None else str(value)


@ui_app.command("ui")
def ui(
    ctx: typer.Context,
    port: int = typer.Option(8766, "--port", min=1, max=65535, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help=_HOST_HELP),
    allow_remote: bool = typer.Option(False, "--allow-remote", help=_REMOTE_HELP),
) -> None:
    """Serve the run browser (runs from experiment_results.jsonl: filters, sorting,
    side-by-side comparison, reports) with the labelling and stats pages."""
    _serve(
        ctx,
        host=host,
        port=port,
        allow_remote=allow_remote,
        batch=None,
        mode="ui",
        path="/runs",
    )
