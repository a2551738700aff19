"""``moola data blacklist add | list``: spans of bars no window may use again."""

from __future__ import annotations

import re

import typer
from rich.table import Table

from moola.cli._common import console, settings_of
from moola.data.registry import Registry

app = typer.Typer(
    help="Blacklist spans of bars (annotations/blacklist.jsonl): every later windows, split "
    "and training command leaves out windows that overlap them.",
    no_args_is_help=True,
)


@app.command()
def add(
    ctx: typer.Context,
    raw: str = typer.Argument(..., help="Raw dataset NAME or NAME@vN whose bars are meant."),
    start_ts: str = typer.Option(
        ..., "--start-ts", help="Open time of the first blacklisted bar (UTC unless offset)."
    ),
    end_ts: str = typer.Option(
        ..., "--end-ts", help="Open time of the last blacklisted bar (UTC unless offset)."
    ),
    reason: str = typer.Option(..., "--reason", help="Why, in words (kept with the entry)."),
    symbol: str | None = typer.Option(None, help="Symbol (needed when RAW holds several)."),
) -> None:
    """Blacklist a span of RAW's bars: appended to the data root's blacklist, for good."""
    from moola.core.errors import ConfigError
    from moola.data.blacklist import BLACKLIST_FILE
    from moola.pipeline.datasets import blacklist_span

    registry = Registry(settings_of(ctx).data_root)
    try:
        entry, added, covered = blacklist_span(
            registry, raw, start_ts=start_ts, end_ts=end_ts, reason=reason, symbol=symbol
        )
    except ConfigError as exc:  # the library names parameters; here they are flags
        flags = re.sub(
            r"^(start_ts|end_ts|reason|symbol)\b|\b(end_ts)\b(?= \d)",
            lambda m: "--" + m[0].replace("_", "-"),
            str(exc),
        )
        raise ConfigError(flags) from None
    span = f"{entry.symbol} {entry.start_ts} .. {entry.end_ts} ({covered:,} bars of {raw})"
    if added:
        console.print(f"[green]blacklisted[/] {span} in {BLACKLIST_FILE}", highlight=False)
    else:
        console.print(f"already blacklisted: {span}", highlight=False)


@app.command("list")
def list_entries(ctx: typer.Context) -> None:
    """Every blacklisted span: symbol, first and last bar, reason, when and from where."""
    from moola.data.blacklist import blacklist_path, read_blacklist

    root = settings_of(ctx).data_root
    blacklist = read_blacklist(root)
    table = Table(title=f"Blacklist ({len(blacklist)} spans) {blacklist_path(root)}")
    for column in ("symbol", "start_ts", "end_ts", "reason", "added_at", "source"):
        table.add_column(column, overflow="fold")
    for entry in blacklist.entries:
        table.add_row(
            entry.symbol, entry.start_ts, entry.end_ts, entry.reason, entry.added_at, entry.source
        )
    console.print(table)
    if blacklist.head:
        console.print(f"chain head: {blacklist.head}", highlight=False, style="dim")
