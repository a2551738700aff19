"""``moola backtest file|run``: backtest a signals file on a bars file, or a training run's
out-of-fold predictions on its dataset's bars, and write the results.

``backtest run`` trades a classification run's probabilities (``--long-class``,
``--threshold``) or a regression target's predicted values (``--policy sign|scaled``,
``--threshold``, ``--scale``, ``--allow-short``; a multitask head with ``--target``). Without
``--symbol`` a run over several symbols is backtested symbol by symbol (each stored in the
run folder) and an equal-weight portfolio line is printed beside them.

Both subcommands take the same execution flags (``--execution FILE`` and the cost flags on
top), turned into one ``ExecutionConfig`` by ``_execution_terms``. The spellings before the
split, ``moola backtest --bars B --signals S ...`` and ``moola backtest --run RUN ...``,
still work for one release and print one deprecation line on stderr naming the new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from moola.cli._common import console, err_console, settings_of
from moola.core.errors import ConfigError

app = typer.Typer(
    help="Backtest target positions on bars, with costs and prop-firm checks: a signals "
    "file (`file`) or a training run's out-of-fold predictions (`run`)."
)

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


# The execution flags, shared by `backtest file`, `backtest run` and the old spellings.
_EXECUTION = typer.Option(
    None,
    "--execution",
    help="YAML file of execution terms (moola.sim.ExecutionConfig keys: instrument, "
    "initial_cash, commission, spread, slippage, latency_bars, engine, rules); the cost "
    "flags override its values.",
)
_CASH = typer.Option(None, "--cash", min=0.0, help="Initial cash [100000].")
_COMMISSION = typer.Option(
    None, "--commission", min=0.0, help="Commission as a rate of notional (0.0005 = 5 bps)."
)
_COMMISSION_PER_UNIT = typer.Option(
    None, "--commission-per-unit", min=0.0, help="Commission per unit or contract traded."
)
_SPREAD = typer.Option(None, "--spread", min=0.0, help="Bid-ask spread, price units [0].")
_SLIPPAGE_BPS = typer.Option(None, "--slippage-bps", min=0.0, help="Slippage in bps [0].")
_LATENCY = typer.Option(None, "--latency", min=1, help="Fill at the open N bars later [1].")
_INSTRUMENT = typer.Option(
    None, "--instrument", help="equity, futures:ROOT (e.g. futures:NQ), fx or crypto [equity]."
)
_ENGINE = typer.Option(None, "--engine", help="vectorised or event [vectorised].")
_ON_BREACH = typer.Option(
    None,
    "--on-breach",
    help="On a risk-rule breach: record (trade on), halt, or flatten (both need --engine "
    "event) [record].",
)
_SYMBOL = typer.Option(
    None, help="Symbol to backtest (from a multi-symbol file or dataset, or to name the bars)."
)


def _hidden(option: Any) -> Any:
    """A copy of a shared option that ``--help`` does not show (the old spellings)."""
    return typer.Option(option.default, *option.param_decls, min=option.min, hidden=True)


@app.callback(invoke_without_command=True)
def backtest(
    ctx: typer.Context,
    bars: Path | None = typer.Option(None, "--bars", hidden=True),
    signals: Path | None = typer.Option(None, "--signals", hidden=True),
    out: Path | None = typer.Option(None, "--out", hidden=True),
    run_id: str | None = typer.Option(None, "--run", hidden=True),
    long_class: str | None = typer.Option(None, "--long-class", hidden=True),
    short_class: str | None = typer.Option(None, "--short-class", hidden=True),
    threshold: float | None = typer.Option(None, "--threshold", hidden=True),
    hold_bars: int | None = typer.Option(None, "--hold-bars", hidden=True),
    allow_leaky_skip: bool = typer.Option(False, "--allow-leaky-skip", hidden=True),
    symbol: str | None = typer.Option(None, "--symbol", hidden=True),
    timeframe: str | None = typer.Option(None, "--timeframe", hidden=True),
    execution: Path | None = _hidden(_EXECUTION),
    cash: float | None = _hidden(_CASH),
    commission: float | None = _hidden(_COMMISSION),
    commission_per_unit: float | None = _hidden(_COMMISSION_PER_UNIT),
    spread: float | None = _hidden(_SPREAD),
    slippage_bps: float | None = _hidden(_SLIPPAGE_BPS),
    latency: int | None = _hidden(_LATENCY),
    instrument: str | None = _hidden(_INSTRUMENT),
    engine: str | None = _hidden(_ENGINE),
    overwrite: bool = typer.Option(False, "--overwrite", hidden=True),
) -> None:
    """Backtest target positions with costs, prop-firm checks, trades, equity and charts:
    a signals file on a bars file (`backtest file`), or a training run's out-of-fold
    predictions on its dataset's bars (`backtest run RUN`)."""
    values = dict(locals())  # the options as given, before any other name is bound
    given = {k: v for k, v in values.items() if k != "ctx" and v not in (None, False)}
    if ctx.invoked_subcommand is not None:
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ConfigError(
                f"{flags} must come after `{ctx.invoked_subcommand}`: "
                f"moola backtest {ctx.invoked_subcommand} ... {flags.split(',')[0]} ..."
            )
        return
    if not given:
        console.print(ctx.get_help())
        raise typer.Exit(0)
    # The spellings before `file` and `run` (one release): they work as they did.
    terms = _execution_terms(
        execution,
        initial_cash=cash,
        commission=commission,
        commission_per_unit=commission_per_unit,
        spread=spread,
        slippage_bps=slippage_bps,
        latency_bars=latency,
        instrument=instrument,
        engine=engine,
    )
    run_options = {
        "--long-class": long_class,
        "--short-class": short_class,
        "--hold-bars": hold_bars,
        "--threshold": threshold,
        "--allow-leaky-skip": allow_leaky_skip or None,
    }
    if run_id is not None:
        _deprecated("moola backtest --run RUN ...", "moola backtest run RUN ...")
        file_options = {
            "--bars": bars,
            "--signals": signals,
            "--out": out,
            "--timeframe": timeframe,
            "--overwrite": overwrite or None,
        }
        given_file = [flag for flag, value in file_options.items() if value is not None]
        if given_file:
            raise ConfigError(
                f"--run backtests the run's own predictions on its dataset's bars and writes "
                f"into the run folder; it cannot be combined with {', '.join(given_file)}. Use "
                "either `moola backtest run RUN` or `moola backtest file --bars/--signals/--out`."
            )
        _backtest_run(
            ctx,
            run_id,
            long_class=long_class,
            short_class=short_class,
            threshold=threshold,
            hold_bars=hold_bars,
            symbol=symbol,
            execution=terms,
            skip_leaky=allow_leaky_skip,
            spelling="--run",
        )
        return
    _deprecated(
        "moola backtest --bars B --signals S ...", "moola backtest file --bars B --signals S ..."
    )
    given_run = [flag for flag, value in run_options.items() if value is not None]
    if given_run:
        raise ConfigError(
            f"{', '.join(given_run)} only apply with --run RUN; add --run or drop them "
            "(now spelled `moola backtest run RUN ...`)."
        )
    missing = [
        flag for flag, value in (("--bars", bars), ("--signals", signals), ("--out", out))
        if value is None
    ]  # fmt: skip
    if missing:
        raise ConfigError(
            f"Missing {', '.join(missing)}: give --bars, --signals and --out to backtest a "
            "signals file (`moola backtest file`), or backtest a training run's predictions "
            "with `moola backtest run RUN`."
        )
    assert bars is not None and signals is not None and out is not None
    _backtest_file(bars, signals, out, symbol, timeframe, terms, overwrite)


@app.command("file")
def backtest_file(
    bars: Path = typer.Option(..., "--bars", help="Bars file (CSV, Parquet, HistData, DBN...)."),
    signals: Path = typer.Option(
        ..., "--signals", help="CSV or Parquet with columns timestamp and position in [-1, 1]."
    ),
    out: Path = typer.Option(..., "--out", help="Directory to write results into (new)."),
    symbol: str | None = _SYMBOL,
    timeframe: str | None = typer.Option(None, help="Bar time frame, e.g. 1m, 1h, 1d."),
    execution: Path | None = _EXECUTION,
    cash: float | None = _CASH,
    commission: float | None = _COMMISSION,
    commission_per_unit: float | None = _COMMISSION_PER_UNIT,
    spread: float | None = _SPREAD,
    slippage_bps: float | None = _SLIPPAGE_BPS,
    latency: int | None = _LATENCY,
    instrument: str | None = _INSTRUMENT,
    engine: str | None = _ENGINE,
    on_breach: str | None = _ON_BREACH,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Backtest a signals file on a bars file, with costs.

    Fills at the next open(s) with costs, then stats, prop-firm rule checks, trades,
    equity and charts written to OUT.
    """
    terms = _execution_terms(
        execution,
        initial_cash=cash,
        commission=commission,
        commission_per_unit=commission_per_unit,
        spread=spread,
        slippage_bps=slippage_bps,
        latency_bars=latency,
        instrument=instrument,
        engine=engine,
        on_breach=on_breach,
    )
    _backtest_file(bars, signals, out, symbol, timeframe, terms, overwrite)


@app.command("run")
def backtest_run_command(
    ctx: typer.Context,
    run_id: str = typer.Argument(
        ..., metavar="RUN", help="Training run id (or an unambiguous prefix)."
    ),
    long_class: str | None = typer.Option(
        None, "--long-class", help="Go long when p(class) >= --threshold (classification)."
    ),
    short_class: str | None = typer.Option(
        None, "--short-class", help="Go short when p(class) >= --threshold (classification)."
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="Classification: the probability that triggers a signal, in (0, 1] [0.5]. "
        "Regression (--policy sign): a prediction above it goes long, below its negative "
        "short (with --allow-short) [0].",
    ),
    hold_bars: int | None = typer.Option(
        None, "--hold-bars", help="Bars each signal's position is held (usually the horizon)."
    ),
    target: str | None = typer.Option(
        None, "--target", help="The run's target to trade (a multitask run's head) [its only one]."
    ),
    policy: str | None = typer.Option(
        None,
        "--policy",
        help="Regression targets: sign (+1 / -1 / 0 by --threshold) or scaled (prediction / "
        "--scale, clipped to [-1, 1]) [sign].",
    ),
    scale: float | None = typer.Option(
        None,
        "--scale",
        help="--policy scaled: the prediction that holds a full position [the standard "
        "deviation of the predictions made before each one].",
    ),
    allow_short: bool = typer.Option(
        False,
        "--allow-short",
        help="Regression targets: a negative prediction goes short (a classification run "
        "goes short with --short-class).",
    ),
    allow_leaky_skip: bool = typer.Option(
        False,
        "--allow-leaky-skip",
        help="Drop predictions whose traded period their fold trained on (counted in the "
        "record) instead of refusing.",
    ),
    symbol: str | None = typer.Option(
        None,
        "--symbol",
        help="Symbol to backtest; without it a run over several symbols backtests each one "
        "(and prints an equal-weight portfolio line).",
    ),
    execution: Path | None = _EXECUTION,
    cash: float | None = _CASH,
    commission: float | None = _COMMISSION,
    commission_per_unit: float | None = _COMMISSION_PER_UNIT,
    spread: float | None = _SPREAD,
    slippage_bps: float | None = _SLIPPAGE_BPS,
    latency: int | None = _LATENCY,
    instrument: str | None = _INSTRUMENT,
    engine: str | None = _ENGINE,
    on_breach: str | None = _ON_BREACH,
) -> None:
    """Backtest a training run's out-of-fold predictions on its dataset's bars.

    A classification run trades a class's probability (--long-class, --threshold); a
    regression run (or a multitask run's regression head, --target) its predicted values
    (--policy sign|scaled). Refuses any prediction whose fold model trained on the traded
    period. Results go into the run folder (backtests/<UTC stamp>/), one per symbol.
    """
    terms = _execution_terms(
        execution,
        initial_cash=cash,
        commission=commission,
        commission_per_unit=commission_per_unit,
        spread=spread,
        slippage_bps=slippage_bps,
        latency_bars=latency,
        instrument=instrument,
        engine=engine,
        on_breach=on_breach,
    )
    _backtest_run(
        ctx,
        run_id,
        long_class=long_class,
        short_class=short_class,
        threshold=threshold,
        hold_bars=hold_bars,
        target=target,
        policy_name=policy,
        scale=scale,
        allow_short=allow_short,
        symbol=symbol,
        execution=terms,
        skip_leaky=allow_leaky_skip,
        spelling="backtest run RUN",
    )


def _deprecated(old: str, new: str) -> None:
    """One line on stderr: the old spelling still works, and what replaces it."""
    err_console.print(
        f"deprecated: `{old}` is now spelled `{new}`; the old form goes in the next release.",
        style="yellow",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


def _backtest_file(
    bars: Path,
    signals: Path,
    out: Path,
    symbol: str | None,
    timeframe: str | None,
    terms: Any,
    overwrite: bool,
) -> None:
    from moola.backtest.run import align_positions, check_bars, load_bars, read_signals, run

    with console.status("Backtesting"):
        bar_table = load_bars(bars, symbol=symbol, timeframe=timeframe)
        table = read_signals(signals)
        bar_table = check_bars(bar_table)
        positions = align_positions(
            bar_table, table, where=f"Signals file {signals} (rows counted from 0)"
        )
        result = run(bar_table, positions, terms)
        written = result.to_dir(out, overwrite=overwrite)
    _print_result(result.stats, written)


#: The flags that set ExecutionConfig terms, by keyword of ``_execution_terms``.
_TERM_FLAGS = {
    "initial_cash": "--cash",
    "commission": "--commission",
    "commission_per_unit": "--commission-per-unit",
    "spread": "--spread",
    "slippage_bps": "--slippage-bps",
    "latency_bars": "--latency",
    "instrument": "--instrument",
    "engine": "--engine",
    "on_breach": "--on-breach",
}


def _execution_terms(file: Path | None, **flags: Any) -> Any:
    """The ExecutionConfig from ``--execution FILE`` (if given) with the flags given on top;
    a value the config refuses is reported with the flag that gave it."""
    try:
        return _build_terms(file, **flags)
    except ConfigError as exc:
        alone = {key: None for key in flags}
        try:
            _build_terms(file, **alone)
        except ConfigError:
            raise exc from None  # the file (or the defaults) is what is refused
        named = []
        for key, value in flags.items():
            if value is None or key not in _TERM_FLAGS:
                continue
            try:  # the same terms with only this flag given: is it the one refused?
                _build_terms(file, **{**alone, key: value})
            except ConfigError:
                named.append(_TERM_FLAGS[key])
        if not named:
            raise
        raise ConfigError(f"{' and '.join(named)}: {exc}") from None


def _build_terms(file: Path | None, **flags: Any) -> Any:
    from moola.core.settings import parse_config
    from moola.sim import ExecutionConfig

    rate, per_unit = flags.pop("commission"), flags.pop("commission_per_unit")
    if rate is not None or per_unit is not None:
        flags["commission"] = {"rate": rate or 0.0, "per_unit": per_unit or 0.0}
    bps = flags.pop("slippage_bps")
    if bps is not None:
        flags["slippage"] = {"model": "fixed_bps", "bps": bps}
    if file is not None:
        return ExecutionConfig.from_yaml(file, **flags)
    given = {key: value for key, value in flags.items() if value is not None}
    return parse_config(ExecutionConfig, given, where="execution terms (flags)")


def _backtest_run(
    ctx: typer.Context,
    run_id: str,
    *,
    long_class: str | None,
    threshold: float | None,
    hold_bars: int | None,
    spelling: str,
    symbol: str | None,
    policy_name: str | None = None,
    scale: float | None = None,
    allow_short: bool = False,
    **options: Any,
) -> None:
    from moola.data.registry import Registry
    from moola.pipeline.backtests import backtest_run, backtest_symbols, run_symbols

    if hold_bars is None:
        raise ConfigError(
            f"{spelling} needs --hold-bars: how many bars each signal is held (e.g. "
            "--hold-bars 20, usually the label's horizon); and, for a classification run, "
            "the class whose probability goes long (e.g. --long-class up)."
        )
    policy = _prediction_policy(policy_name, threshold, hold_bars, scale, allow_short)
    signal: dict[str, Any] = (
        {"policy": policy}
        if policy is not None
        else {"threshold": threshold, "hold_bars": int(hold_bars)}
    )
    registry = Registry(settings_of(ctx).data_root)
    store_root = registry.root
    try:
        each = symbol is None and len(run_symbols(registry, run_id)) > 1
        with console.status(f"Backtesting run {run_id}"):
            if each:
                done = backtest_symbols(
                    registry, run_id, long_class=long_class, **signal, **options
                )
            else:
                result, record = backtest_run(
                    registry, run_id, long_class=long_class, symbol=symbol, **signal, **options
                )
    except ConfigError as exc:
        if policy_name is None and policy is not None and exc.param == "policy":
            raise ConfigError(
                "--allow-short lets a regression target's predictions go short; this run's "
                "target is a classification target: name the class that goes short with "
                "--short-class."
            ) from None
        raise
    if each:
        _print_symbols(done, store_root)
        return
    counts = record["counts"]
    console.print(
        f"Run {record['run_id']}: {counts['used']} out-of-fold signals on "
        f"{record['symbol']} ({counts['long']} long, {counts['short']} short, "
        f"{counts['flat']} flat), held {record['hold_bars']} bars, {_policy_text(record)}."
    )
    if record["leakage_check"]["passed"]:
        console.print("Leakage check: passed (no signal trades a period its model trained on).")
    else:
        console.print(
            f"[yellow]Leakage check: {counts['skipped_leaky']} prediction(s) traded a period "
            "their fold's model trained on and were skipped (--allow-leaky-skip).[/]"
        )
    from moola.tracking.runs import RunStore

    _print_result(result.stats, RunStore(store_root).run_dir(record["run_id"]) / record["path"])


def _prediction_policy(
    name: str | None,
    threshold: float | None,
    hold_bars: int,
    scale: float | None,
    allow_short: bool,
) -> Any:
    """The regression policy the flags ask for (``--policy``, ``--scale``,
    ``--allow-short``), or None when they ask for none (the run's target decides)."""
    from moola.backtest.signals import ScaledHold, SignHold

    if name is None:
        if scale is not None:
            raise ConfigError(
                "--scale sizes the scaled policy of a regression target: add --policy scaled, "
                "or drop --scale."
            )
        if not allow_short:
            return None
        name = "sign"
    if name not in ("sign", "scaled"):
        raise ConfigError(
            f"--policy must be sign or scaled (for a regression target), got {name!r}; a "
            "classification run trades --long-class at --threshold without --policy."
        )
    if name == "sign":
        if scale is not None:
            raise ConfigError(
                "--scale sizes --policy scaled; --policy sign holds whole positions: drop "
                "--scale or use --policy scaled."
            )
        threshold = 0.0 if threshold is None else threshold
        return SignHold(threshold=threshold, hold_bars=hold_bars, allow_short=allow_short)
    if threshold is not None:
        raise ConfigError(
            "--threshold is the sign policy's; --policy scaled sizes each position by --scale "
            "(default: the spread of earlier predictions). Drop --threshold or use --policy sign."
        )
    return ScaledHold(scale=scale, hold_bars=hold_bars, allow_short=allow_short)


def _policy_text(record: dict[str, Any]) -> str:
    """How a backtest record's policy turned predictions into positions, in words."""
    params = record["policy"]
    if params["policy"] == "threshold_hold":
        return f"threshold {params['threshold']}"
    shorts = "long and short" if params.get("allow_short") else "long only"
    if params["policy"] == "sign":
        return f"policy sign at threshold {params['threshold']} ({shorts})"
    scale = params.get("scale")
    sized = f"scale {scale}" if scale is not None else "scale: std of earlier predictions"
    return f"policy scaled, {sized} ({shorts})"


def _print_symbols(done: Any, root: Path) -> None:
    """Each symbol's backtest in one row, the equal-weight portfolio, and the folders."""
    from moola.tracking.runs import RunStore

    records = [record for _, record in done.results.values()]
    first = records[0]
    table = Table(
        title=f"Backtest of run {first['run_id']} per symbol (held {first['hold_bars']} "
        f"bars, {_policy_text(first)})"
    )
    for column in ("symbol", "signals (long/short/flat)", "total return", "Sharpe",
                   "max drawdown", "trades", "leakage"):  # fmt: skip
        table.add_column(column, justify="left" if column == "symbol" else "right")
    for result, record in done.results.values():
        counts, stats = record["counts"], result.stats
        table.add_row(
            record["symbol"],
            f"{counts['used']} ({counts['long']}/{counts['short']}/{counts['flat']})",
            _show(stats.get("total_return"), ".2%"),
            _show(stats.get("sharpe"), ".2f"),
            _show(stats.get("max_drawdown"), ".2%"),
            _show(stats.get("n_trades"), ",d"),
            "passed" if record["leakage_check"]["passed"] else f"{counts['skipped_leaky']} skipped",
        )
    console.print(table)
    line = done.portfolio
    console.print(
        f"[bold]Equal-weight portfolio[/] of {len(line['symbols'])} symbols: total return "
        f"{_show(line['total_return'], '.2%')}, Sharpe {_show(line['sharpe'], '.2f')}, max "
        f"drawdown {_show(line['max_drawdown'], '.2%')} (each symbol's equity over its "
        "start, averaged; not stored)."
    )
    if all(record["leakage_check"]["passed"] for record in records):
        console.print("Leakage check: passed (no signal trades a period its model trained on).")
    run_dir = RunStore(root).run_dir(first["run_id"])
    console.print("[bold]Results:[/]")
    for record in records:
        console.print(f"  {record['symbol']}: {run_dir / record['path']}")


def _print_result(stats: dict[str, Any], written: Path) -> None:
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
    risk = stats.get("risk")
    if isinstance(risk, dict) and (risk.get("breaches") or risk.get("denied_orders")):
        first = (
            f" (first: {risk['first_breach_rule']} at {risk['first_breach_time']})"
            if risk.get("breaches")
            else ""
        )
        console.print(
            f"[bold]Risk:[/] {risk['breaches']} rule breach(es){first}, "
            f"{risk['denied_orders']} order(s) denied; see breaches.csv and rejections.csv",
            soft_wrap=True,
        )
    console.print(f"[bold]Results:[/] {written}")
    for name in sorted(p.name for p in written.iterdir()):
        console.print(f"  {written / name}")
