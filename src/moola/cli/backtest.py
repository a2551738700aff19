"""``moola backtest``: backtest a signals file on a bars file and write the results."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from moola.cli._common import console

app = typer.Typer(help="Backtest target positions on bars, with costs and prop-firm checks.")

# Statistics shown in the summary table: (key, label, format).
_SHOWN: tuple[tuple[str, str, str], ...] = (
    ("start", "start", "s"),
    ("end", "end", "s"),
    ("bars", "bars", ",d"),
    ("initial_equity", "initial equity", ",.2f"),
    ("final_equity", "final equity", ",.2f"),
    ("total_return", "total return", ".2%"),
    ("cagr", "CAGR", ".2%"),
    ("annual_volatility", "annual volatility", ".2%"),
    ("sharpe", "Sharpe", ".2f"),
    ("sortino", "Sortino", ".2f"),
    ("calmar", "Calmar", ".2f"),
    ("max_drawdown", "max drawdown", ".2%"),
    ("max_drawdown_start", "  from", "s"),
    ("max_drawdown_recovery", "  recovered", "s"),
    ("exposure", "exposure", ".1%"),
    ("n_trades", "trades", ",d"),
    ("win_rate", "win rate", ".1%"),
    ("profit_factor", "profit factor", ".2f"),
    ("expectancy", "expectancy / trade", ",.2f"),
    ("turnover_per_year", "turnover / year", ".2f"),
    ("commission_paid", "commission paid", ",.2f"),
    ("spread_slippage_paid", "spread + slippage paid", ",.2f"),
    ("final_position", "final position (units)", ",g"),
)


def _show(value: object, spec: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int | float) and not isinstance(value, bool) and spec != "s":
        return format(value, spec)
    return str(value)


@app.command()
def backtest(
    bars: Path = typer.Option(..., "--bars", help="Bars file (CSV, Parquet, HistData, DBN...)."),
    signals: Path = typer.Option(
        ..., "--signals", help="CSV or Parquet with columns timestamp and position in [-1, 1]."
    ),
    out: Path = typer.Option(..., "--out", help="Directory to write results into (new)."),
    symbol: str | None = typer.Option(
        None, help="Symbol to backtest (from a multi-symbol file, or to name the bars)."
    ),
    timeframe: str | None = typer.Option(None, help="Bar time frame, e.g. 1m, 1h, 1d."),
    cash: float = typer.Option(100_000.0, "--cash", min=0.0, help="Initial cash."),
    commission: float = typer.Option(
        0.0, "--commission", min=0.0, help="Commission as a rate of notional (0.0005 = 5 bps)."
    ),
    commission_per_unit: float = typer.Option(
        0.0, "--commission-per-unit", min=0.0, help="Commission per unit or contract traded."
    ),
    spread: float = typer.Option(0.0, "--spread", min=0.0, help="Bid-ask spread, price units."),
    slippage_bps: float = typer.Option(0.0, "--slippage-bps", min=0.0, help="Slippage in bps."),
    latency: int = typer.Option(1, "--latency", min=1, help="Fill at the open N bars later."),
    instrument: str = typer.Option(
        "equity", "--instrument", help="equity, futures:ROOT (e.g. futures:NQ), fx or crypto."
    ),
    engine: str = typer.Option("vectorised", "--engine", help="vectorised or event."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Backtest SIGNALS on BARS: fills at the next open(s) with costs, then stats, prop-firm
    rule checks, trades, equity and charts written to OUT."""
    from moola.backtest.run import align_positions, check_bars, load_bars, read_signals, run
    from moola.sim import CommissionModel

    with console.status("Backtesting"):
        bar_table = load_bars(bars, symbol=symbol, timeframe=timeframe)
        table = read_signals(signals)
        bar_table = check_bars(bar_table)
        positions = align_positions(
            bar_table, table, where=f"Signals file {signals} (rows counted from 0)"
        )
        comm = None
        if commission or commission_per_unit:
            comm = CommissionModel(per_unit=commission_per_unit, rate=commission)
        result = run(
            bar_table,
            positions,
            instrument=instrument,
            initial_cash=cash,
            commission=comm,
            spread=spread or None,
            slippage=slippage_bps or None,
            latency_bars=latency,
            engine=engine,  # type: ignore[arg-type]
        )
        written = result.to_dir(out, overwrite=overwrite)

    stats = result.stats
    summary = Table(title=f"Backtest of {stats['instrument']} ({stats['engine']})")
    summary.add_column("statistic")
    summary.add_column("value", justify="right")
    for key, label, spec in _SHOWN:
        summary.add_row(label, _show(stats.get(key), spec))
    console.print(summary)
    prop = stats.get("prop_firm")
    if isinstance(prop, dict):
        rules = Table(title="Prop-firm rules: " + ("PASSED" if prop["passed"] else "FAILED"))
        for column in ("rule", "result", "detail"):
            rules.add_column(column)
        for rule in prop["rules"]:
            verdict = "[green]pass[/]" if rule["passed"] else "[red]fail[/]"
            rules.add_row(rule["name"], verdict, rule["detail"])
        console.print(rules)
    console.print(f"[bold]Results:[/] {written}")
    for name in sorted(p.name for p in written.iterdir()):
        console.print(f"  {written / name}")
