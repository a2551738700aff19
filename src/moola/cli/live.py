"""``moola live run | status | signals | kill | unlock``: the paper and live decision loop.

``run`` takes each closed bar through the engine (``moola.runtime.session.run_session``)
under a ``live.yaml`` config, every decision journaled before anything acts on it: bars
replayed from ``--replay`` (a raw dataset or bars file), or, without it, polled live from
the config's ``feed:`` section (Coinbase's public candles; Ctrl-C stops it cleanly, the
journal holding every bar decided); ``status`` and ``signals`` read the journal (one that
does not exist yet is an error, not a new file); ``kill on|off`` sets the journal's kill
switch, both modes' journals when neither a config nor a mode is given (the
``KILL_SWITCH`` environment variable overrides it); ``unlock`` lifts a risk halt,
recording who and why. The journal is the mode's (``--mode``, default the config's, else
paper): ``live/<mode>.db`` under the data root, ``DB_URL`` / ``DB_URL_PAPER``, or the
config's ``journal_url``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from moola.cli._common import console, settings_of
from moola.core.errors import ConfigError

app = typer.Typer(
    help="Paper and live trading: the decision loop (members -> ensemble -> tiers -> risk -> "
    "orders), its journal, the kill switch and risk unlocks."
)

KILLED_EXIT = 3
"""``moola live run``'s exit status when the kill switch stopped the session (0: the feed
ended or ``--max-bars`` was reached; 2: an error; 130: Ctrl-C)."""

_CONFIG_HELP = "The session config (YAML: symbols, members, risk, execution, broker...)."
_MODE_HELP = "paper or live (default: the config's mode, else paper)."


def _mode(mode: str | None) -> str | None:
    if mode is not None and mode not in ("paper", "live"):
        raise ConfigError(f"--mode {mode!r}: use paper or live.", param="mode")
    return mode


def _config(path: Path | None, mode: str | None) -> Any:
    from moola.runtime.config import load_live_config

    if path is None:
        return None
    return load_live_config(path).with_mode(_mode(mode))


def _journal(
    ctx: typer.Context, config_path: Path | None, mode: str | None, *, reading: bool = False
) -> Any:
    """The journal the options name. ``reading`` (status, signals): a SQLite journal that
    does not exist yet is an error naming it, not a new empty file."""
    from moola.runtime.session import open_journal

    config = _config(config_path, mode)
    chosen = _mode(mode) or (config.mode if config is not None else "paper")
    root = settings_of(ctx).data_root
    if reading:
        _require_journal(root, chosen, config)
    return open_journal(root, chosen, config)


def _require_journal(root: Path, mode: str, config: Any) -> None:
    """Refuse to read a SQLite journal file that is not there (no session has run)."""
    from sqlalchemy.engine import make_url

    from moola.tracking.livedb import journal_url

    url = make_url((config.journal_url if config is not None else None) or journal_url(root, mode))
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        raise ConfigError(
            f"No {mode} journal at {url.database}: no {mode} session has run with this data "
            f"root and journal settings (`moola live run --mode {mode} ...` starts one).",
            param="mode",
        )


@app.command()
def run(
    ctx: typer.Context,
    config: Path = typer.Option(..., "--config", help=_CONFIG_HELP),
    mode: str | None = typer.Option(None, "--mode", help=_MODE_HELP),
    replay: str | None = typer.Option(
        None,
        "--replay",
        help="Replay a raw dataset NAME[@vN] or a bars file (default: poll live closed bars "
        "from the config's feed: section).",
    ),
    max_bars: int | None = typer.Option(
        None, "--max-bars", min=1, help="Stop after deciding this many bars."
    ),
    session: str | None = typer.Option(
        None,
        "--session",
        help="Resume this open session (after a crash; `moola live status` lists them) "
        "instead of starting one.",
    ),
) -> None:
    """Run a session: each closed bar through features, members, ensemble, tiers, risk and
    rate limits to a journaled order intent and the broker. ``--session ID`` resumes an open
    session after a crash: a paper session's book is rebuilt from its journal and the
    session goes on after the last bar it decided."""
    from moola.cli._progress import stage_display
    from moola.runtime.session import run_session
    from moola.training.callbacks import ProgressUpdate

    settings = settings_of(ctx)
    live_config = _config(config, mode)
    with stage_display(console) as display:
        display.stage(f"{live_config.mode} session: {', '.join(live_config.symbols)}")
        step = [1]

        def on_bar(done: int, total: int) -> None:
            if total and step[0] == 1:
                step[0] = max(1, total // 50)
            if done % step[0] == 0 or done == total:
                display.update(ProgressUpdate(done, max(total, done), f"bar {done}"))

        try:
            result = run_session(
                settings.data_root,
                live_config,
                replay=replay,
                max_bars=max_bars,
                on_bar=on_bar,
                session_id=session,
            )
        except KeyboardInterrupt:
            console.print(
                "interrupted: every bar decided so far is in the journal "
                "(`moola live status` shows the session)"
            )
            raise typer.Exit(130) from None
    table = Table(title=f"Session {result.session_id}")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [("bars", result.bars), ("decided", result.decided), ("signals", result.signals)]
    rows += [("orders sent", result.intents)]
    rows += [(f"refused: {kind}", n) for kind, n in sorted(result.refused.items())]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    typer.echo(f"session: {result.session_id}")  # whole, for --session and parity
    console.print(f"stopped: {result.stopped}")
    if "kill switch on" in result.stopped:  # a supervisor must not restart it blindly
        raise typer.Exit(KILLED_EXIT)


@app.command()
def status(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help=_CONFIG_HELP),
    mode: str | None = typer.Option(None, "--mode", help=_MODE_HELP),
) -> None:
    """Sessions, positions, the kill switch, the risk halt and pending orders."""
    from moola.runtime.session import session_status

    info = session_status(_journal(ctx, config, mode, reading=True))
    console.print(f"journal: {info['url']}")
    console.print(f"kill switch: {info['kill']}")
    console.print(f"risk halt: {info['halt']}")
    console.print(f"pending orders: {info['pending_intents']}")
    limits = info["rate_limits"]
    used = ", ".join(f"{name} {spent}" for name, spent in sorted(limits.items())) or "none yet"
    console.print(f"signals this hour: {info['signals_last_hour']} (rate limits used: {used})")
    console.print(
        f"equity: {_money(info['equity'])}  day PnL: {_money(info['day_pnl'])}  "
        f"daily loss used: {_share(info['day_loss_used'])}  "
        f"total loss used: {_share(info['total_loss_used'])}"
    )
    positions = Table(title="Positions")
    for column in ("symbol", "qty", "avg_price", "equity", "at"):
        positions.add_column(column)
    for row in info["positions"]:
        positions.add_row(
            *(str(row.get(c, "")) for c in ("symbol", "qty", "avg_price", "equity", "at"))
        )
    console.print(positions)
    sessions = Table(title="Sessions (newest first)")
    sessions.add_column("id", no_wrap=True, overflow="fold")  # copied whole for --session
    for column in ("mode", "started_at", "ended_at", "end_reason"):
        sessions.add_column(column)
    for row in info["sessions"][:10]:
        sessions.add_row(
            *(str(row.get(c) or "") for c in ("id", "mode", "started_at", "ended_at", "end_reason"))
        )
    console.print(sessions)


@app.command()
def signals(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="Bar time, e.g. 2024-01-02T00:00Z."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    config: Path | None = typer.Option(None, "--config", help=_CONFIG_HELP),
    mode: str | None = typer.Option(None, "--mode", help=_MODE_HELP),
) -> None:
    """The journal's signals (decisions with a direction) and their orders."""
    if fmt not in ("table", "csv", "json"):
        raise ConfigError(f"--format {fmt!r}: use table, csv or json.", param="format")
    frame = _journal(ctx, config, mode, reading=True).signals(since)
    if fmt == "csv":
        typer.echo(frame.to_csv(index=False), nl=False)
        return
    if fmt == "json":
        typer.echo(
            json.dumps(json.loads(frame.to_json(orient="records", date_format="iso")), indent=1)
        )
        return
    table = Table(title=f"Signals ({len(frame)})")
    columns = [
        "bar_time",
        "symbol",
        "probability",
        "tier",
        "signal",
        "action",
        "side",
        "qty",
        "filled_qty",
        "status",
    ]
    columns = [c for c in columns if c in frame.columns]
    for column in columns:
        table.add_column(column)
    for _, row in frame.tail(200).iterrows():
        table.add_row(*(_cell(row[c]) for c in columns))
    console.print(table)


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


@app.command()
def kill(
    ctx: typer.Context,
    state: str = typer.Argument(..., help="on or off."),
    by: str = typer.Option("", "--by", help="Who turns it on or off."),
    reason: str = typer.Option("", "--reason", help="Why."),
    config: Path | None = typer.Option(None, "--config", help=_CONFIG_HELP),
    mode: str | None = typer.Option(None, "--mode", help=_MODE_HELP),
) -> None:
    """Turn the journal's kill switch on (engines cancel open orders and stop) or off.

    Without ``--config`` and ``--mode`` it is set in BOTH the paper and the live journal
    (the ones the data root and ``DB_URL`` / ``DB_URL_PAPER`` name), so an emergency stop
    typed in a hurry cannot miss a live session; each journal set is printed."""
    from moola.runtime.session import set_kill_switch

    if state not in ("on", "off"):
        raise ConfigError(f"kill {state!r}: use on or off.", param="state")
    modes = [None] if config is not None or mode is not None else ["paper", "live"]
    for each in modes:
        journal = _journal(ctx, config, mode or each)
        set_kill_switch(journal, state == "on", by=by, reason=reason)
        console.print(f"kill switch {state}: {journal.url}", soft_wrap=True)


@app.command()
def unlock(
    ctx: typer.Context,
    reason: str = typer.Option(..., "--reason", help="Why trading may go on."),
    by: str = typer.Option(..., "--by", help="Who unlocks (recorded)."),
    config: Path = typer.Option(..., "--config", help=_CONFIG_HELP),
    mode: str | None = typer.Option(None, "--mode", help=_MODE_HELP),
) -> None:
    """Lift a risk halt (a loss limit broke); the person and reason are recorded."""
    from moola.runtime.session import unlock_halt

    live_config = _config(config, mode)
    journal = _journal(ctx, config, mode)
    record = unlock_halt(journal, live_config, person=by, reason=reason)
    console.print(f"unlocked by {record['person']}: {record['reason']}")


@app.command()
def parity(
    ctx: typer.Context,
    session: str = typer.Argument(..., help="The session id (`moola live status` lists them)."),
    config: Path | None = typer.Option(
        None, "--config", help="Replay under this config (default: the one the session recorded)."
    ),
    mode: str | None = typer.Option(None, "--mode", help=_MODE_HELP),
    fmt: str = typer.Option("table", "--format", help="table or json."),
    show: int = typer.Option(20, "--show", min=0, help="How many differences to list."),
) -> None:
    """Replay a session's bars through the batch features, the members and the backtest.

    Any difference in features, decisions, fills or equity is listed (none expected for a
    paper session); the command exits 1 when there is one.
    """
    from moola.runtime.parity import session_parity

    if fmt not in ("table", "json"):
        raise ConfigError(f"--format {fmt!r}: use table or json.", param="format")
    journal = _journal(ctx, config, mode)
    try:
        report = session_parity(
            journal,
            session,
            config=_config(config, mode),
            root=settings_of(ctx).data_root,
            max_differences=show,
        )
    finally:
        journal.close()
    if fmt == "json":
        typer.echo(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        table = Table(title=f"Parity of session {report.session_id} ({report.mode})")
        for column in ("check", "compared", "differences"):
            table.add_column(column, justify="left" if column == "check" else "right")
        for count in report.checks:
            table.add_row(count.check, str(count.compared), str(count.differences))
        console.print(table)
        if report.differences:
            shown = Table(title=f"First {len(report.differences)} differences")
            for column in ("check", "symbol", "bar", "field", "journal", "replay"):
                shown.add_column(column)
            for d in report.differences:
                shown.add_row(d.check, d.symbol, str(d.bar), d.field, str(d.journal), str(d.replay))
            console.print(shown)
        for note in report.notes:
            console.print(f"note: {note}")
        verdict = "ok" if report.ok else f"{report.total_differences} differences"
        console.print(f"parity: {verdict}")
    if not report.ok:
        raise typer.Exit(1)
