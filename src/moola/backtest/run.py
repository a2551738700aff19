"""Backtest per-bar target positions on one symbol's bars: the user-facing entry point.

``run`` checks and aligns the inputs, hands them to one of ``moola.sim``'s engines (which
own all fills and accounting), then adds statistics (``moola.backtest.metrics``) and the
prop-firm rule checks (``moola.sim.propfirm``). Execution follows ``moola.sim``: a target
set at bar ``t`` is decided at ``t``'s close, sized from the equity and close then
(``Instrument.units_for``, whole lots, rounded toward zero) and filled at the open of bar
``t + latency_bars`` plus half the spread and the slippage, minus commission.

Positions are fractions of equity in [-1, 1] (negative = short), one per bar, given as
an array aligned with the bars or as a table of ``timestamp`` and ``position``. A table
need not list every bar: a target holds until the next row changes it, and bars before
its first row are flat. Every signal timestamp must be a bar's timestamp.

An open position at the last bar stays open: it is in the final equity (marked at the last
close) and in ``final_position``, but not in the trades table, which lists closed trades.

Annualisation (``periods_per_year``): when not given, bars per year are measured from the
timestamps if the bars span at least 90 days (this follows the sessions the data really
has), else taken from the time frame as 252 days of 24 hours; ``stats["periods_per_year"]``
records the figure used.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from moola.backtest import metrics
from moola.core.errors import ConfigError, SourceError
from moola.core.timeframes import parse_timeframe
from moola.sim import (
    BREACH_COLUMNS,
    FILL_COLUMNS,
    REJECTION_COLUMNS,
    EventEngine,
    ExecutionConfig,
    Fill,
    Instrument,
    MinimumTradingDays,
    Rule,
    RuleResult,
    SimResult,
    TargetPositionStrategy,
    backtest_positions,
    challenge_passed,
)
from moola.sim.broker import stream_rules
from moola.sim.execution import ENGINES as ENGINES
from moola.sim.execution import check_latency_fits, instrument_from_spec
from moola.sim.propfirm import BarDays, DailyLossLimit

Engine = Literal["vectorised", "event"]
# The old keyword arguments of run(), kept for one release: each builds an ExecutionConfig.
LEGACY_TERMS: tuple[str, ...] = (
    "instrument",
    "initial_cash",
    "commission",
    "spread",
    "slippage",
    "latency_bars",
    "engine",
    "prop_firm_rules",
)
MIN_OBSERVED_DAYS = 90.0
_MAX_SHOWN = 5
_BAR_COLUMNS = ("timestamp", "open", "high", "low", "close")


@dataclass(frozen=True)
class BacktestResult:
    """What a backtest produced.

    Attributes
    ----------
    trades : pd.DataFrame
        Closed trades: ``entry_time, exit_time, side, size, entry_price, exit_price, pnl``
        (net of fees), ``fees, bars_held, return``.
    equity : pd.DataFrame
        Per bar: ``timestamp, equity, cash, position`` (units), ``price`` (close),
        ``drawdown`` (``equity / peak - 1``, so 0 or negative).
    stats : dict
        JSON-serialisable statistics (``moola.backtest.metrics.compute_stats``) plus
        ``engine``, ``instrument``, ``final_position``, ``rejected_orders``,
        ``prop_firm`` (``{"passed": bool, "rules": [...]}``, or ``None`` when not checked)
        and ``risk`` (:func:`risk_summary` of ``breaches`` and ``rejections``).
    rules : list of RuleResult
        The prop-firm rule outcomes (empty when not checked).
    fills : pd.DataFrame
        One row per fill (``moola.sim.FILL_COLUMNS`` plus ``reference``, the open the
        fill was priced from before spread and slippage).
    bars : pd.DataFrame
        The bars that were simulated (for the trade chart).
    config : dict
        The resolved parameters of the run (JSON-serialisable).
    breaches : pd.DataFrame
        The risk rules streamed bar by bar (``moola.sim.BREACH_COLUMNS``): each rule's
        first breach (``on_breach="record"``), or the breach that halted the run. The same
        table from both engines.
    rejections : pd.DataFrame
        Orders denied or capped (``moola.sim.REJECTION_COLUMNS``): by the leverage limit,
        a pre-trade rule or a halt; ``accepted_qty`` is 0 for a denial.
    """

    trades: pd.DataFrame
    equity: pd.DataFrame
    stats: dict[str, object]
    rules: list[RuleResult]
    fills: pd.DataFrame
    bars: pd.DataFrame = field(repr=False)
    config: dict[str, object] = field(default_factory=dict)
    breaches: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(BREACH_COLUMNS))
    )
    rejections: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(REJECTION_COLUMNS))
    )

    def to_dir(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``trades.csv``, ``equity.csv``, ``fills.csv``, ``breaches.csv``,
        ``rejections.csv``, ``stats.json``, ``config.json`` and ``equity.png``,
        ``drawdown.png``, ``trades.png`` into ``path``.

        All files are written into a temporary sibling directory that replaces ``path``
        only when complete, so ``path`` never holds a partial result. A non-empty existing
        ``path`` is refused (``ConfigError``) unless ``overwrite=True``.
        """
        from moola.backtest import plots

        final = Path(path).expanduser()
        if final.exists() and not final.is_dir():
            raise ConfigError(f"Output path {final} is a file; give a directory path.")
        if final.is_dir() and any(final.iterdir()) and not overwrite:
            raise ConfigError(
                f"Output directory {final} is not empty; choose a new directory or pass "
                "overwrite=True to replace it.",
                param="overwrite",
            )
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".tmp-{final.name}-{uuid.uuid4().hex[:12]}")
        tmp.mkdir()
        try:
            self.trades.to_csv(tmp / "trades.csv", index=False)
            self.equity.to_csv(tmp / "equity.csv", index=False)
            self.fills.to_csv(tmp / "fills.csv", index=False)
            self.breaches.to_csv(tmp / "breaches.csv", index=False)
            self.rejections.to_csv(tmp / "rejections.csv", index=False)
            (tmp / "stats.json").write_text(json.dumps(self.stats, indent=2, allow_nan=False))
            (tmp / "config.json").write_text(json.dumps(self.config, indent=2, allow_nan=False))
            (tmp / "equity.png").write_bytes(plots.equity_png(self.equity))
            (tmp / "drawdown.png").write_bytes(plots.drawdown_png(self.equity))
            (tmp / "trades.png").write_bytes(plots.trades_png(self.bars, self.trades))
            _replace_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``, swapping out an existing ``final`` in two renames."""
    if not final.exists():
        os.rename(tmp, final)
        return
    old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:12]}")
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _rows(positions: np.ndarray, labels: Sequence[object] | None = None) -> str:
    shown = []
    for pos in positions[:_MAX_SHOWN]:
        text = str(int(pos))
        if labels is not None:
            text += f" ({labels[int(pos)]})"
        shown.append(text)
    out = ", ".join(shown)
    if len(positions) > _MAX_SHOWN:
        out += f" and {len(positions) - _MAX_SHOWN} more ({len(positions)} in all)"
    return out


def check_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """One symbol's bars, in time order, with the columns a backtest needs.

    Raises ``ConfigError`` for missing columns, no rows, several symbols (asking to pick
    one) and timestamps that are not strictly increasing (naming the rows).
    """
    if not isinstance(bars, pd.DataFrame):
        raise ConfigError(f"bars must be a pandas DataFrame of bars, got {type(bars).__name__}.")
    missing = [column for column in _BAR_COLUMNS if column not in bars.columns]
    if missing:
        raise ConfigError(
            f"The bars lack column(s) {missing}; pass the canonical bar table "
            "(moola.data.sources.read_bars or moola.data.schema.make_bars)."
        )
    if bars.empty:
        raise ConfigError("The bars table has no rows; there is nothing to backtest.")
    if "symbol" in bars.columns and _single(bars["symbol"]) is None:
        symbols = pd.unique(bars["symbol"].astype("string"))
        if len(symbols) > 1:
            listed = ", ".join(repr(str(s)) for s in symbols[:_MAX_SHOWN])
            raise ConfigError(
                f"The bars hold {len(symbols)} symbols ({listed}); a backtest runs on one. "
                f"Pick one, e.g. bars[bars['symbol'] == {str(symbols[0])!r}].",
                param="symbol",
            )
    column = bars["timestamp"]
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        stamps = pd.DatetimeIndex(column)  # already datetimes: parsing costs 10 ms per 1M
    else:
        stamps = pd.DatetimeIndex(pd.to_datetime(column, utc=True))
    if stamps.hasnans:
        raise ConfigError(
            f"Bar timestamps are missing at rows {_rows(np.flatnonzero(stamps.isna()))}."
        )
    steps = np.diff(stamps.asi8)
    if (steps <= 0).any():
        bad = np.flatnonzero(steps <= 0) + 1
        raise ConfigError(
            f"Bar timestamps must strictly increase; rows {_rows(bad)} repeat or go back in "
            "time. Sort the bars and drop duplicates (moola.data.validation.validate_bars)."
        )
    return bars.reset_index(drop=True)


def align_positions(
    bars: pd.DataFrame,
    positions: np.ndarray | Sequence[float] | pd.Series | pd.DataFrame,
    *,
    where: str = "positions",
) -> np.ndarray:
    """Target fraction per bar from an aligned array or a ``timestamp``/``position`` table.

    A ``pd.Series`` with a ``DatetimeIndex`` is read as a table (index = timestamp). Table
    rows fill forward to the next row; bars before the first row are flat (module notes).
    Raises ``ConfigError`` naming the rows (counted from 0) of values outside [-1, 1] or
    missing, of timestamps that match no bar or repeat, or a length mismatch. ``where``
    names the input in messages (e.g. the signals file).
    """
    n = len(bars)
    if isinstance(positions, pd.Series) and isinstance(positions.index, pd.DatetimeIndex):
        positions = pd.DataFrame({"timestamp": positions.index, "position": positions.values})
    if isinstance(positions, pd.DataFrame):
        return _align_table(bars, positions, where)
    values = np.asarray(positions, dtype=np.float64)
    if values.ndim != 1 or values.shape[0] != n:
        raise ConfigError(
            f"{where} has shape {values.shape} but there are {n} bars; give one target per "
            "bar, or a table with 'timestamp' and 'position' columns."
        )
    _check_values(values, where, None)
    return values


def _check_values(values: np.ndarray, where: str, labels: Sequence[object] | None) -> None:
    bad = ~np.isfinite(values) | (np.abs(values) > 1.0)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ConfigError(
            f"{where}: positions must be numbers in [-1, 1] (fractions of equity, negative = "
            f"short); rows {_rows(rows, labels)} are missing or out of range (first value: "
            f"{values[rows[0]]!r}). Fill gaps with 0 (flat) and scale sizes into [-1, 1]."
        )


def _align_table(bars: pd.DataFrame, table: pd.DataFrame, where: str) -> np.ndarray:
    missing = [c for c in ("timestamp", "position") if c not in table.columns]
    if missing:
        raise ConfigError(
            f"{where} lacks column(s) {missing}; it needs 'timestamp' and 'position' "
            f"(has {list(table.columns)[:10]})."
        )
    try:
        # As nanoseconds, like the bars: a year such as 3024 parses (in seconds) but cannot
        # be matched to a bar, so it is refused here, by row, rather than while matching.
        stamps = pd.DatetimeIndex(pd.to_datetime(table["timestamp"], utc=True)).as_unit("ns")
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{where}: the 'timestamp' column is not readable as dates between the years "
            f"1677 and 2262 ({exc}); use ISO 8601 such as 2024-01-02T14:30:00Z (naive times "
            "are read as UTC)."
        ) from None
    try:
        values = pd.to_numeric(table["position"], errors="raise").to_numpy(np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: the 'position' column is not numeric ({exc}).") from None
    labels = [str(s) for s in stamps]
    _check_values(values, where, labels)
    if stamps.hasnans:
        raise ConfigError(
            f"{where}: timestamps are missing at rows {_rows(np.flatnonzero(stamps.isna()))}."
        )
    dup = np.flatnonzero(stamps.duplicated())
    if dup.size:
        raise ConfigError(
            f"{where}: timestamps repeat at rows {_rows(dup, labels)}; give one position per bar."
        )
    bar_stamps = pd.DatetimeIndex(pd.to_datetime(bars["timestamp"], utc=True))
    index = bar_stamps.get_indexer(stamps)
    unmatched = np.flatnonzero(index < 0)
    if unmatched.size:
        raise ConfigError(
            f"{where}: {unmatched.size} signal timestamp(s) match no bar, e.g. rows "
            f"{_rows(unmatched, labels)}. Signals must use the bars' open times (UTC) and "
            f"lie within {bar_stamps[0]} .. {bar_stamps[-1]}."
        )
    out = np.full(len(bars), np.nan)
    out[index] = values
    return pd.Series(out).ffill().fillna(0.0).to_numpy(np.float64)


def resolve_instrument(spec: Instrument | str | None, symbol: str) -> Instrument:
    """An ``Instrument`` from itself, ``None`` (an equity), or a text spec: ``equity``,
    ``futures:NQ`` (``futures`` alone uses ``symbol`` as the root), ``fx[:PAIR]`` or
    ``crypto[:SYMBOL]`` (``moola.sim.execution.instrument_from_spec``)."""
    return instrument_from_spec(spec, symbol)


def execution_config(
    execution: ExecutionConfig | Mapping[str, object] | None, terms: Mapping[str, object]
) -> ExecutionConfig:
    """The run's ExecutionConfig: ``execution`` itself (a mapping is validated), or one
    built from the old keyword arguments ``terms`` (deprecated; see ``LEGACY_TERMS``)."""
    unknown = [key for key in terms if key not in LEGACY_TERMS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, [*LEGACY_TERMS, "execution", "periods_per_year"])
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Unknown argument {key!r}.{hint} Give the execution terms as "
            "execution=moola.sim.ExecutionConfig(...)."
        )
    if execution is not None:
        if terms:
            raise ConfigError(
                f"Give the execution terms once: execution= or the old arguments "
                f"{', '.join(sorted(terms))}, not both."
            )
        return ExecutionConfig.of(execution)
    if terms:
        warnings.warn(
            f"Passing {', '.join(sorted(terms))} to the backtest is deprecated and will be "
            "removed in the next release; pass execution=moola.sim.ExecutionConfig(...).",
            DeprecationWarning,
            stacklevel=3,
        )
    return ExecutionConfig.from_terms(**terms)


def _single(column: pd.Series) -> str | None:
    """The column's one value as text, or ``None`` when it holds several (or a gap)."""
    first = column.iloc[0]
    if pd.isna(first) or bool((column != first).any()):
        return None
    return str(first)


def _timeframe(bars: pd.DataFrame) -> str | None:
    return _single(bars["timeframe"]) if "timeframe" in bars.columns else None


def annualisation(timestamps: pd.Series | pd.DatetimeIndex, timeframe: str | None) -> float:
    """Bars per year for bars at ``timestamps`` of ``timeframe`` (rule in the module notes)."""
    stamps = pd.DatetimeIndex(timestamps)  # parsing (to_datetime) is for text only:
    if stamps.tz is None:  # on a million datetimes it costs more than the backtest
        stamps = stamps.tz_localize("UTC")
    span_days = (stamps[-1] - stamps[0]).total_seconds() / metrics.SECONDS_PER_DAY
    if span_days >= MIN_OBSERVED_DAYS or timeframe is None:
        observed = metrics.observed_periods_per_year(stamps)
        if math.isfinite(observed):
            return observed
    if timeframe is None:
        return 252.0
    return metrics.periods_per_year(timeframe)


def _bar_days(equity: pd.DataFrame, timeframe: str | None) -> BarDays:
    """The bars' open and close times (UTC) and their calendar days per time zone, worked
    out once for the rule checks on close times and the breach table on open times."""
    opens = pd.DatetimeIndex(equity["timestamp"])
    if opens.tz is None:
        opens = opens.tz_localize("UTC")
    # the close is the open plus the bar length (day boundaries to the minute)
    closes = opens + parse_timeframe(timeframe) if timeframe is not None else opens
    return BarDays(opens, closes)


def _check_rules(
    rules: Sequence[Rule],
    equity: pd.Series,
    trades: pd.DataFrame,
    fills: pd.DataFrame,
    days: Callable[[str], np.ndarray] | None = None,
) -> list[RuleResult]:
    """Each rule's outcome. ``MinimumTradingDays`` counts days with at least one fill (an
    order executed, opening or closing), as prop firms count trading days; given only
    closed trades it would miss a position still open at the end. ``days`` gives the
    calendar day of each equity point in a time zone (``BarDays.closes_in``), shared with
    the breach table's checks so the daily loss limit converts the bar times once."""
    activity = pd.DataFrame({"entry_time": fills["timestamp"]})
    results = []
    for rule in rules:
        if days is not None and type(rule) is DailyLossLimit:
            results.append(rule.check(equity, trades, days=days(rule.timezone)))
        else:
            results.append(
                rule.check(equity, activity if isinstance(rule, MinimumTradingDays) else trades)
            )
    return results


def _rule_dict(result: RuleResult) -> dict[str, object]:
    return {
        "name": result.name,
        "passed": bool(result.passed),
        "breach_time": result.breach_time,
        "breach_value": result.breach_value,
        "limit": result.limit,
        "detail": result.detail,
    }


def load_bars(
    path: str | os.PathLike[str],
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    format: str | None = None,
) -> pd.DataFrame:
    """Read a bar file for a backtest (``moola.data.sources.read_bars``); from a file of
    several symbols keep ``symbol``'s bars, and name a one-symbol file's bars ``symbol``."""
    from moola.data.sources import read_bars

    if symbol is None:
        return read_bars(path, format=format, timeframe=timeframe)
    try:
        bars = read_bars(path, format=format, timeframe=timeframe)
    except ConfigError:  # e.g. no symbol column: the reader needs the caller's symbol
        return read_bars(path, format=format, symbol=symbol, timeframe=timeframe)
    symbols = [str(s) for s in pd.unique(bars["symbol"])]
    if len(symbols) <= 1:
        bars["symbol"] = pd.Series([symbol] * len(bars), dtype="string")
        return bars
    if symbol not in symbols:
        raise ConfigError(
            f"{path} holds no bars of symbol {symbol!r}; it holds {', '.join(symbols[:10])}. "
            "Pass one of those as symbol.",
            param="symbol",
        )
    return bars[bars["symbol"] == symbol].reset_index(drop=True)


def read_signals(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a signals file (CSV or Parquet, by extension) holding ``timestamp`` and
    ``position`` columns; ``SourceError`` when it is missing or unreadable."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SourceError(
            f"Signals file {str(file)!r} does not exist or is not a file. Check the path "
            f"(relative paths are taken from {os.getcwd()!r})."
        )
    suffix = file.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            return pd.read_csv(file)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(file)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise SourceError(f"Signals file {file} is not readable: {exc}") from None
    raise SourceError(
        f"Signals file {file} has extension {suffix!r}; use .csv or .parquet with columns "
        "timestamp and position."
    )


def run(
    bars: pd.DataFrame,
    positions: np.ndarray | Sequence[float] | pd.Series | pd.DataFrame,
    execution: ExecutionConfig | Mapping[str, object] | None = None,
    *,
    periods_per_year: float | None = None,
    **terms: object,
) -> BacktestResult:
    """Backtest target ``positions`` on one symbol's ``bars`` under ``execution``'s terms.

    Parameters
    ----------
    bars : pd.DataFrame
        The canonical bar table of one symbol (``timestamp`` = bar open time, UTC).
    positions : array, pd.Series or pd.DataFrame
        Target fraction of equity in [-1, 1] per bar, or a ``timestamp``/``position``
        table (see :func:`align_positions`).
    execution : ExecutionConfig, optional
        Instrument (default an equity of the bars' symbol), initial cash, commission,
        spread, slippage, latency (a target set at bar ``t`` fills at the open of bar ``t +
        latency_bars``), engine (the compiled fast path or the bar-by-bar event engine,
        identical results) and prop-firm rules (default ``moola.sim.FTMO_DEFAULTS``). Its
        hash is recorded in ``config["execution_hash"]``. Default: ``ExecutionConfig()``.
    periods_per_year : float, optional
        Annualisation; derived from the bars when omitted (module notes).
    **terms
        Deprecated (one release): the old keyword arguments ``instrument, initial_cash,
        commission, spread, slippage, latency_bars, engine, prop_firm_rules``, which build
        the ExecutionConfig (``ExecutionConfig.from_terms``).

    Raises ``ConfigError`` for bad bars, positions or terms (naming the rows or key), a
    latency that leaves no bar to fill in, and what ``moola.sim`` raises for non-finite
    prices.
    """
    config = execution_config(execution, terms)
    bars = check_bars(bars)
    target = align_positions(bars, positions)
    check_latency_fits(config, len(bars))
    symbol = str(bars["symbol"].iloc[0]) if "symbol" in bars.columns else "ASSET"
    inst = config.build_instrument(symbol)
    comm = config.build_commission()
    slip = config.build_slippage()
    spread = config.spread_value()
    latency_bars = config.latency_bars
    initial_cash = config.initial_cash
    engine = config.engine
    timeframe = _timeframe(bars)
    if periods_per_year is None:
        ppy = annualisation(bars["timestamp"], timeframe)
    else:
        ppy = float(periods_per_year)

    sim: SimResult
    if engine == "vectorised":
        volume = bars["volume"].to_numpy(np.float64) if "volume" in bars.columns else None
        sim = backtest_positions(
            bars["open"].to_numpy(np.float64),
            bars["high"].to_numpy(np.float64),
            bars["low"].to_numpy(np.float64),
            bars["close"].to_numpy(np.float64),
            volume,
            target,
            config,
            symbol=symbol,
            timestamp=bars["timestamp"],
        )
        equity = sim.equity_frame()
        clock = _bar_days(equity, timeframe)
        # the rules over it, as a broker feeds them
        breaches = _streamed_breaches(config, sim, clock)
    else:
        event = EventEngine(bars, config, symbol=symbol)
        sim = event.run(TargetPositionStrategy(target))
        breaches = event.broker_.breaches
        equity = sim.equity_frame()
        clock = _bar_days(equity, timeframe)

    fills = sim.fills.assign(
        reference=bars["open"].to_numpy(np.float64)[sim.fills["bar"].to_numpy(np.int64)]
    )
    stats = metrics.compute_stats(
        equity, sim.trades, periods_per_year=ppy, point_value=inst.point_value, fills_df=fills
    )
    rule_set: Sequence[Rule] = config.build_rules()
    rule_equity = pd.Series(
        equity["equity"].to_numpy(np.float64), index=clock.closes, copy=False
    )  # by bar close time (open time + bar length), for day boundaries
    rules = _check_rules(rule_set, rule_equity, sim.trades, fills, clock.closes_in)
    config = {
        "engine": engine,
        "instrument": {
            "symbol": inst.symbol,
            "point_value": inst.point_value,
            "lot_size": inst.lot_size,
            "tick_size": inst.tick_size,
            "max_leverage": inst.max_leverage,
            "currency": inst.currency,
        },
        "initial_cash": float(initial_cash),
        "commission": None if comm is None else repr(comm),
        "spread": spread,
        "slippage": None if slip is None else repr(slip),
        "latency_bars": int(latency_bars),
        "periods_per_year": ppy,
        "prop_firm_rules": [repr(rule) for rule in rule_set],
        "bars": len(bars),
        "timeframe": timeframe,
        "execution": config.model_dump(mode="json"),
        "execution_hash": config.config_hash,
    }
    if isinstance(spread, np.ndarray):
        config["spread"] = f"per-bar array ({spread.size} values)"
    stats.update(
        metrics.json_safe(
            {
                "engine": engine,
                "instrument": inst.symbol,
                "final_position": float(sim.position[-1]),
                "rejected_orders": len(sim.rejections),
                "prop_firm": (
                    {"passed": challenge_passed(rules), "rules": [_rule_dict(r) for r in rules]}
                    if rules
                    else None
                ),
                "risk": risk_summary(breaches, sim.rejections),
            }
        )
    )
    return BacktestResult(
        trades=sim.trades,
        equity=equity,
        stats=stats,
        rules=rules,
        fills=fills,
        bars=bars,
        config=metrics.json_safe(config),  # type: ignore[arg-type]
        breaches=breaches,
        rejections=sim.rejections,
    )


def _streamed_breaches(config: ExecutionConfig, sim: SimResult, clock: BarDays) -> pd.DataFrame:
    """The breach table of a vectorised run: the config's rules streamed over its equity
    at each bar close and the fills of each bar, with the bar times the event engine's
    broker sees, the bars' open times (``moola.sim.broker.stream_rules``); the daily
    loss limit takes their days from ``clock``, shared with the rule checks."""
    if np.issubdtype(sim.timestamp.dtype, np.datetime64):
        return stream_rules(
            config.build_rules(),
            clock.opens,
            sim.equity,
            _fill_objects(sim.fills),
            days=clock.opens_in,
        )
    times = sim.timestamp.tolist()
    return stream_rules(config.build_rules(), times, sim.equity, _fill_objects(sim.fills))


def _fill_objects(fills: pd.DataFrame) -> Iterator[Fill]:
    """The fills as ``Fill`` objects, built only if iterated: ``stream_rules`` locates the
    built-in rules' breaches without them, and one object per fill was the largest single
    cost of a vectorised ``run()`` on a million bars."""
    columns = fills[list(FILL_COLUMNS)].astype({"type": str, "tag": str})
    for row in columns.itertuples(index=False, name=None):
        yield Fill(*row)


def risk_summary(breaches: pd.DataFrame, rejections: pd.DataFrame) -> dict[str, object]:
    """The small ``risk`` entry of a backtest's stats: how many breaches, the first one's
    rule and time, and how many orders were denied (capped ones are not counted)."""
    first = breaches.iloc[0] if len(breaches) else None
    denied = 0 if rejections.empty else int((rejections["accepted_qty"] == 0.0).sum())
    return {
        "breaches": len(breaches),
        "first_breach_rule": None if first is None else str(first["rule"]),
        "first_breach_time": None if first is None else first["timestamp"],
        "denied_orders": denied,
    }
