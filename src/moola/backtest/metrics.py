"""Performance statistics of a backtest: pure functions of an equity series and trades.

Conventions (every function follows them, so numbers agree across reports):

- Per-bar returns are simple returns of equity, ``r_t = E_t / E_{t-1} - 1``.
- Annualisation multiplies per-bar means by ``periods_per_year`` and per-bar standard
  deviations by its square root. :func:`periods_per_year` gives the nominal figure for a
  bar time frame (252 trading days of 24 hours by default; pass ``hours_per_day=6.5`` for
  a cash-equity session, ``days_per_year=365`` for crypto); :func:`observed_periods_per_year`
  measures it from the timestamps (bars per 365.25 days), which follows whatever sessions
  the data really has.
- The risk-free rate is 0. Sharpe = mean(r) / std(r, ddof=1) * sqrt(ppy); Sortino uses the
  downside deviation sqrt(mean(min(r, 0)^2)) over all bars; Calmar = CAGR / max drawdown.
- A ratio whose denominator is 0 is ``inf`` (signed) when its numerator is not 0 and
  ``nan`` when it is: flat equity has Sharpe ``nan``; trades that all win have profit
  factor ``inf``; no trades give ``nan`` win rate and profit factor.
- Drawdowns are positive fractions of the running peak (0.1 = 10% below the peak).

:func:`compute_stats` collects everything into a JSON-serialisable dict, where ``nan``
becomes ``None`` and ``inf`` / ``-inf`` become the strings ``"inf"`` / ``"-inf"`` (JSON has
no infinities; a string keeps "no losing trade" distinct from "no trade at all").

Cost (issue 15): :func:`compute_stats` reads the equity and position columns as float64
views, computes the per-bar returns once (in place), each of their mean, standard
deviation and downside deviation once, and finds the deepest drawdown in one compiled
pass (:func:`_deepest_drawdown`) instead of materialising the drawdown series. Every
reduction is the same numpy call as in the single-statistic functions below, so the
numbers are identical to the bit, not just close.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from moola.core.errors import ConfigError
from moola.core.timeframes import parse_timeframe

SECONDS_PER_DAY = 86_400.0
DAYS_PER_CALENDAR_YEAR = 365.25


@dataclass(frozen=True)
class Drawdown:
    """The deepest drawdown of an equity series.

    ``depth`` is the fraction below the peak at the trough; ``start``, ``trough`` and
    ``recovery`` are bar positions (the peak before the trough, the trough, and the first
    bar back at or above the peak, or ``None`` if equity never got back); ``bars`` counts
    bars from the peak to the recovery, or to the last bar when there is none.
    """

    depth: float
    start: int | None
    trough: int | None
    recovery: int | None
    bars: int


def periods_per_year(
    timeframe: str, *, days_per_year: float = 252.0, hours_per_day: float = 24.0
) -> float:
    """Bars of ``timeframe`` in a year of ``days_per_year`` trading days.

    Intraday bars (shorter than a day) fill ``hours_per_day`` hours of each trading day;
    a bar of a day or more counts its days (``"1d"`` -> ``days_per_year``).
    """
    seconds = parse_timeframe(timeframe).total_seconds()
    if days_per_year <= 0 or not 0 < hours_per_day <= 24:
        raise ConfigError(
            "periods_per_year needs days_per_year > 0 and 0 < hours_per_day <= 24, got "
            f"{days_per_year} and {hours_per_day}."
        )
    if seconds >= SECONDS_PER_DAY:
        return days_per_year / (seconds / SECONDS_PER_DAY)
    return days_per_year * hours_per_day * 3600.0 / seconds


def observed_periods_per_year(timestamps: pd.Series | pd.DatetimeIndex) -> float:
    """Bars per calendar year actually present: intervals / (span in 365.25-day years).

    ``nan`` for fewer than two bars or a zero span.
    """
    stamps = pd.DatetimeIndex(timestamps)
    if len(stamps) < 2:
        return math.nan
    span_days = (stamps[-1] - stamps[0]).total_seconds() / SECONDS_PER_DAY
    if span_days <= 0:
        return math.nan
    return (len(stamps) - 1) / (span_days / DAYS_PER_CALENDAR_YEAR)


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with a zero denominator giving signed inf or nan."""
    if denominator == 0 or not math.isfinite(denominator):
        if denominator == 0 and numerator != 0 and not math.isnan(numerator):
            return math.copysign(math.inf, numerator)
        return math.nan
    return numerator / denominator


def returns(equity: np.ndarray) -> np.ndarray:
    """Per-bar simple returns of ``equity`` (one fewer than bars)."""
    equity = np.asarray(equity, dtype=np.float64)
    if equity.size < 2:
        return np.empty(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return equity[1:] / equity[:-1] - 1.0


def total_return(equity: np.ndarray) -> float:
    """Final equity over initial equity, minus 1 (``nan`` for an empty series)."""
    equity = np.asarray(equity, dtype=np.float64)
    if equity.size == 0:
        return math.nan
    return _ratio(float(equity[-1]), float(equity[0])) - 1.0


def cagr(equity: np.ndarray, periods_per_year: float) -> float:
    """Compound annual growth rate over the ``len(equity) - 1`` bar intervals.

    -1 when equity ends at or below zero; ``nan`` for fewer than two bars.
    """
    equity = np.asarray(equity, dtype=np.float64)
    if equity.size < 2 or equity[0] <= 0:
        return math.nan
    growth = equity[-1] / equity[0]
    if growth <= 0:
        return -1.0
    years = (equity.size - 1) / periods_per_year
    return float(growth ** (1.0 / years) - 1.0)


def annual_volatility(equity: np.ndarray, periods_per_year: float) -> float:
    """Standard deviation (ddof=1) of per-bar returns times sqrt(periods_per_year)."""
    return _volatility(returns(equity), periods_per_year)


def sharpe(equity: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sharpe ratio with a zero risk-free rate (``nan`` for flat equity)."""
    return _sharpe(returns(equity), periods_per_year)


def sortino(equity: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sortino ratio: mean return over downside deviation (target 0)."""
    return _sortino(returns(equity), periods_per_year)


def _returns_in_place(equity: np.ndarray) -> np.ndarray:
    """:func:`returns` with one temporary instead of two (identical values)."""
    if equity.size < 2:
        return np.empty(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.divide(equity[1:], equity[:-1])
    r -= 1.0
    return r


def _downside_deviation(r: np.ndarray) -> float:
    """``sqrt(mean(min(r, 0)^2))``, as :func:`_sortino` computes it, in one temporary."""
    low = np.minimum(r, 0.0)
    np.square(low, out=low)
    return float(np.sqrt(np.mean(low)))


def _volatility(r: np.ndarray, periods_per_year: float) -> float:
    if r.size < 2:
        return math.nan
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year))


def _sharpe(r: np.ndarray, periods_per_year: float) -> float:
    if r.size < 2:
        return math.nan
    return _ratio(float(np.mean(r)), float(np.std(r, ddof=1))) * math.sqrt(periods_per_year)


def _sortino(r: np.ndarray, periods_per_year: float) -> float:
    if r.size < 1:
        return math.nan
    return _ratio(float(np.mean(r)), _downside_deviation(r)) * math.sqrt(periods_per_year)


@numba.njit(cache=True)
def _deepest_drawdown(equity):  # pragma: no cover - compiled
    """``(depth, trough)`` of :func:`drawdown_series` in one pass without the series:
    the first maximum of ``1 - equity / peak`` (0 where the peak is not positive), NaN
    propagating like ``np.maximum.accumulate`` and ``ndarray.max``/``argmax`` (the first
    NaN wins)."""
    peak = equity[0]
    depth = 0.0
    trough = 0
    for i in range(equity.shape[0]):
        e = equity[i]
        if peak == peak and (e != e or e > peak):
            peak = e
        dd = 1.0 - e / peak if peak > 0 else 0.0
        if dd != dd:
            return dd, i
        if dd > depth or i == 0:
            depth = dd
            trough = i
    return depth, trough


@numba.njit(cache=True)
def _first_at_or_above(values, start, level):  # pragma: no cover - compiled
    """First index ``>= start`` where ``values >= level``, or -1."""
    for i in range(start, values.shape[0]):
        if values[i] >= level:
            return i
    return -1


def drawdown_series(equity: np.ndarray) -> np.ndarray:
    """Per-bar drawdown: 1 - equity / running peak (0 at a new high)."""
    equity = np.asarray(equity, dtype=np.float64)
    if equity.size == 0:
        return np.empty(0)
    peak = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1.0 - equity / peak
    return np.where(peak > 0, out, 0.0)


def max_drawdown(equity: np.ndarray) -> Drawdown:
    """The deepest drawdown, where it started, bottomed and recovered (see ``Drawdown``)."""
    equity = np.ascontiguousarray(equity, dtype=np.float64)
    if equity.size == 0:
        return Drawdown(0.0, None, None, None, 0)
    depth, trough = _deepest_drawdown(equity)
    if not depth > 0 and not math.isnan(depth):  # ndarray.max() <= 0 (NaN goes on)
        return Drawdown(0.0, None, None, None, 0)
    trough = int(trough)
    start = int(np.argmax(equity[: trough + 1]))  # first bar at the peak before the trough
    back = int(_first_at_or_above(equity, trough, equity[start]))
    recovery = back if back >= 0 else None
    end = recovery if recovery is not None else equity.size - 1
    return Drawdown(float(depth), start, trough, recovery, end - start)


def calmar(equity: np.ndarray, periods_per_year: float, *, drawdown: float | None = None) -> float:
    """CAGR over the maximum drawdown (``drawdown``, when already known)."""
    depth = max_drawdown(equity).depth if drawdown is None else drawdown
    return _ratio(cagr(equity, periods_per_year), depth)


def exposure(position: np.ndarray) -> float:
    """Fraction of bars that end with a non-zero position."""
    position = np.asarray(position, dtype=np.float64)
    if position.size == 0:
        return math.nan
    return float(np.count_nonzero(position) / position.size)


def trade_stats(trades: pd.DataFrame, *, point_value: float = 1.0) -> dict[str, float]:
    """Statistics of closed trades (columns ``pnl``, ``return``, ``fees``, ``size``,
    ``entry_price``, ``exit_price``, ``bars_held``).

    ``win_rate`` counts trades with pnl > 0; ``profit_factor`` is gross profit over gross
    loss; ``expectancy`` is the mean net pnl per trade in money; ``avg_trade_return`` the
    mean of the trades' ``return``; ``traded_notional`` the entry plus exit notional of
    every trade (size * price * ``point_value``).
    """
    n = len(trades)
    pnl = trades["pnl"].to_numpy(np.float64) if n else np.empty(0)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_profit, gross_loss = float(wins.sum()), abs(float(losses.sum()))
    notional = 0.0
    if n:
        size = np.abs(trades["size"].to_numpy(np.float64))
        prices = trades["entry_price"].to_numpy(np.float64) + trades["exit_price"].to_numpy(
            np.float64
        )
        notional = float(np.sum(size * prices) * point_value)
    return {
        "n_trades": n,
        "win_rate": _ratio(float(wins.size), float(n)) if n else math.nan,
        "profit_factor": _ratio(gross_profit, gross_loss) if n else math.nan,
        "expectancy": float(pnl.mean()) if n else math.nan,
        "avg_trade_return": float(trades["return"].to_numpy(np.float64).mean()) if n else math.nan,
        "avg_win": float(wins.mean()) if wins.size else math.nan,
        "avg_loss": float(losses.mean()) if losses.size else math.nan,
        "best_trade": float(pnl.max()) if n else math.nan,
        "worst_trade": float(pnl.min()) if n else math.nan,
        "avg_bars_held": float(trades["bars_held"].to_numpy(np.float64).mean()) if n else math.nan,
        "gross_profit": gross_profit,
        "gross_loss": gross_loss,
        "net_pnl": float(pnl.sum()),
        "trade_fees": float(trades["fees"].to_numpy(np.float64).sum()) if n else 0.0,
        "traded_notional": notional,
    }


def execution_costs(fills: pd.DataFrame, *, point_value: float = 1.0) -> dict[str, float]:
    """Costs and notional of a table of fills (``qty``, ``price``, ``fee``, optionally
    ``reference``): commission, spread plus slippage against the reference, and notional."""
    qty = np.abs(fills["qty"].to_numpy(np.float64))
    price = fills["price"].to_numpy(np.float64)
    slip = 0.0
    if "reference" in fills.columns:
        reference = fills["reference"].to_numpy(np.float64)
        slip = float(np.sum(qty * np.abs(price - reference)) * point_value)
    return {
        "commission_paid": float(fills["fee"].to_numpy(np.float64).sum()),
        "spread_slippage_paid": slip,
        "traded_notional": float(np.sum(qty * price) * point_value),
    }


def json_safe(value: object) -> object:
    """``value`` made JSON-serialisable: nan -> None, +/-inf -> "inf"/"-inf", numpy
    scalars -> Python, timestamps -> ISO 8601; dicts and lists recursively."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    return value


def compute_stats(
    equity_df: pd.DataFrame,
    trades_df: pd.DataFrame,
    *,
    periods_per_year: float,
    point_value: float = 1.0,
    fills_df: pd.DataFrame | None = None,
) -> dict[str, object]:
    """Every statistic of a backtest, as a JSON-serialisable dict (see the module notes).

    ``equity_df`` has per-bar ``equity`` and ``position`` (and ``timestamp``, used to
    date the drawdown); ``trades_df`` has the closed trades. ``fills_df`` (optional, one
    row per fill with ``qty``, ``price``, ``fee`` and optionally ``reference``, the price
    before spread and slippage) makes costs and turnover exact, counting fills of a
    position still open at the end; without it they come from the closed trades.

    ``commission_paid`` sums the fees; ``spread_slippage_paid`` sums
    ``|qty| * |price - reference| * point_value`` (0 without fills); ``costs_paid`` is
    both. ``turnover`` is traded notional over mean equity; ``turnover_per_year`` divides
    it by the years the series spans (``(bars - 1) / periods_per_year``).
    """
    if not periods_per_year or not math.isfinite(periods_per_year) or periods_per_year <= 0:
        raise ConfigError(
            f"periods_per_year must be a positive number, got {periods_per_year!r}; use "
            "moola.backtest.metrics.periods_per_year(timeframe) to derive it."
        )
    missing = [c for c in ("equity", "position") if c not in equity_df.columns]
    if missing:
        raise ConfigError(
            f"The equity table lacks column(s) {missing}; it needs equity and position."
        )
    equity = equity_df["equity"].to_numpy(np.float64)  # a view for float64 columns
    position = equity_df["position"].to_numpy(np.float64)
    stamps = equity_df["timestamp"] if "timestamp" in equity_df.columns else None
    dd = max_drawdown(equity)
    r = _returns_in_place(equity)
    # each reduction once, with the same numpy calls as _volatility, _sharpe and _sortino
    r_mean = float(np.mean(r)) if r.size >= 1 else math.nan
    r_std = float(np.std(r, ddof=1)) if r.size >= 2 else math.nan
    root_ppy = math.sqrt(periods_per_year)
    trades = trade_stats(trades_df, point_value=point_value)
    mean_equity = float(np.mean(equity)) if equity.size else math.nan
    years = (equity.size - 1) / periods_per_year if equity.size > 1 else math.nan
    costs = execution_costs(fills_df, point_value=point_value) if fills_df is not None else None
    if costs is None:
        costs = {
            "commission_paid": trades["trade_fees"],
            "spread_slippage_paid": 0.0,
            "traded_notional": trades["traded_notional"],
        }
    turnover = _ratio(costs["traded_notional"], mean_equity)

    def when(index: int | None) -> object:
        if index is None or stamps is None:
            return index
        return pd.Timestamp(stamps.iloc[index])

    stats: dict[str, object] = {
        "start": when(0) if equity.size else None,
        "end": when(equity.size - 1) if equity.size else None,
        "bars": int(equity.size),
        "periods_per_year": float(periods_per_year),
        "initial_equity": float(equity[0]) if equity.size else math.nan,
        "final_equity": float(equity[-1]) if equity.size else math.nan,
        "total_return": total_return(equity),
        "cagr": cagr(equity, periods_per_year),
        "annual_volatility": r_std * root_ppy if r.size >= 2 else math.nan,
        "sharpe": _ratio(r_mean, r_std) * root_ppy if r.size >= 2 else math.nan,
        "sortino": _ratio(r_mean, _downside_deviation(r)) * root_ppy if r.size else math.nan,
        "calmar": calmar(equity, periods_per_year, drawdown=dd.depth),
        "max_drawdown": dd.depth,
        "max_drawdown_start": when(dd.start),
        "max_drawdown_trough": when(dd.trough),
        "max_drawdown_recovery": when(dd.recovery),
        "max_drawdown_bars": dd.bars,
        "exposure": exposure(position),
        **{k: v for k, v in trades.items() if k not in ("trade_fees", "traded_notional")},
        "traded_notional": costs["traded_notional"],
        "turnover": turnover,
        "turnover_per_year": _ratio(turnover, years) if math.isfinite(years) else math.nan,
        "commission_paid": costs["commission_paid"],
        "spread_slippage_paid": costs["spread_slippage_paid"],
        "costs_paid": costs["commission_paid"] + costs["spread_slippage_paid"],
    }
    return json_safe(stats)  # type: ignore[return-value]
