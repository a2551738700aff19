"""The ``moola`` command: thin Typer commands that call one library function and print."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.text import Text

from moola.cli import annotate as annotate_commands
from moola.cli import backtest as backtest_command
from moola.cli import bars as bars_commands
from moola.cli import blacklist as blacklist_commands
from moola.cli import data as data_commands
from moola.cli import features as features_commands
from moola.cli import foundation as foundation_commands
from moola.cli import labels as labels_commands
from moola.cli import live as live_commands
from moola.cli import models as models_commands
from moola.cli import pretrain as pretrain_commands
from moola.cli import rl as rl_commands
from moola.cli import runs as runs_commands
from moola.cli import sentiment as sentiment_commands
from moola.cli import train as train_commands
from moola.cli import tune as tune_commands
from moola.cli._common import console, err_console, settings_of
from moola.cli._flags import flag_advice
from moola.core.errors import MoolaError
from moola.core.settings import load_settings

app = typer.Typer(
    name="moola",
    help="Reproducible, leakage-free machine learning on OHLCV market bars.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
data_commands.app.add_typer(blacklist_commands.app, name="blacklist")
app.add_typer(data_commands.app, name="data")
app.add_typer(features_commands.app, name="features")
app.add_typer(bars_commands.app, name="bars")
app.add_typer(labels_commands.app, name="labels")
app.add_typer(runs_commands.app, name="runs")
app.add_typer(models_commands.app, name="models")
app.add_typer(pretrain_commands.app, name="pretrain")
app.add_typer(rl_commands.app, name="rl")
app.add_typer(live_commands.app, name="live")
app.add_typer(annotate_commands.app, name="annotate")
app.add_typer(tune_commands.app, name="tune")
app.add_typer(sentiment_commands.app, name="sentiment")
app.add_typer(foundation_commands.app, name="foundation")
app.add_typer(backtest_command.app, name="backtest")  # file | run (and the old spellings)
# Single commands, not groups: mounted at the top level.
app.registered_commands.extend(train_commands.app.registered_commands)
app.registered_commands.extend(annotate_commands.ui_app.registered_commands)  # moola ui


@app.callback()
def _global_options(
    ctx: typer.Context,
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Data root (default: $MOOLA_HOME or ./moola_data)."
    ),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or mps."),
    seed: int | None = typer.Option(None, help="Global random seed."),
    log_level: str | None = typer.Option(None, help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    ctx.obj = load_settings(home=data_root, device=device, seed=seed, log_level=log_level)


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check Python, packages, torch devices, TA-Lib, the data root and free disk."""
    from rich.table import Table

    from moola.core.doctor import run_checks

    settings = settings_of(ctx)
    checks = run_checks(settings.data_root)
    table = Table(title="moola doctor")
    for column in ("check", "status", "detail"):
        table.add_column(column)
    for check in checks:
        status = "[green]ok[/]" if check.ok else "[red]PROBLEM[/]"
        table.add_row(check.name, status, check.detail)
    console.print(table)
    problems = [check for check in checks if not check.ok and check.required]
    for check in problems:
        err_console.print(f"[red]problem:[/] {check.name}: {check.detail}")
    if problems:
        raise typer.Exit(1)


@app.command()
def demo(
    ctx: typer.Context,
    bars: int = typer.Option(150_000, min=5_000, help="Synthetic 1-minute bars to generate."),
    patterns: int = typer.Option(240, min=10, help="Planted, labelled patterns."),
    seed: int = typer.Option(7, help="Seed of the synthetic market."),
    pattern_strength: float = typer.Option(
        0.5, min=0.01, max=1.0, help="How distinct the planted patterns are (1 = textbook)."
    ),
    quick: bool = typer.Option(False, help="Smaller models and fewer epochs (a smoke test)."),
    threads: int = typer.Option(
        1,
        min=1,
        help="CPU threads for torch and BLAS (recorded in the manifests). The demo's models "
        "are small: 1 is as fast as more, and leaves other processes their cores.",
    ),
) -> None:
    """Run the pipeline end to end on the embedded synthetic market; ends in an HTML report.

    Each stage and each epoch is shown as it happens: a live display on a terminal, one
    timestamped line each otherwise (a pipe, a log file).
    """
    from rich.table import Table

    from moola.cli._progress import stage_display
    from moola.core.threads import prefer_passive_waits

    prefer_passive_waits()  # before torch loads OpenMP: idle threads sleep, never spin
    from moola.demo import run_demo

    settings = settings_of(ctx)
    with stage_display(console) as display:
        result = run_demo(
            settings.data_root,
            n_bars=bars,
            n_patterns=patterns,
            seed=seed,
            pattern_strength=pattern_strength,
            quick=quick,
            threads=threads,
            on_step=display.stage,
            on_progress=display.update,
        )
    for line in result.lines:
        console.print(line)
    table = Table(title="Models, out of fold (calibrated)")
    columns = [c for c in result.models[0] if c != "run"] if result.models else []
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in result.models:
        table.add_row(
            *(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns)
        )
    console.print(table)
    console.print(f"\n[bold]Report:[/] {result.report_path}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a user error prints one paragraph and exits non-zero."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="moola")
    except MoolaError as exc:
        message = Text("error: ", style="bold red")
        # plain text: brackets in paths or lists are not markup
        message.append(flag_advice(exc, typer.main.get_command(app), args))
        err_console.print(message, soft_wrap=True, highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
