"""Fast path: backtest a per-bar target position with one compiled loop over the bars.

``backtest_positions`` gives exactly what ``EventEngine(...).run(TargetPositionStrategy(f))``
gives (the tests hold them equal), at the speed of a numpy pass. The loop cannot be
vectorised because each bar's order size depends on the equity the previous fills left,
so it is a numba kernel; it repeats, operation by operation, the arithmetic of
:meth:`Instrument.units_for`, :class:`SlippageTerms.per_unit`, :class:`CommissionModel.fee`
and :meth:`Portfolio.fill` / :meth:`Portfolio.mark`. Change one, change the other.

Per bar ``i`` the kernel (1) fills the order decided at bar ``i - latency`` at ``open[i]``
plus costs, (2) marks equity at ``close[i]``, (3) if ``target[i]`` differs from the previous
target, sizes the new position from that equity and ``close[i]`` and schedules the
difference for bar ``i + latency``. Orders that would fill after the last bar never fill.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pandas as pd

from moola.core.errors import BarValidationError, ConfigError
from moola.sim._result import FILL_COLUMNS, ORDER_TYPE_CATEGORIES, SIDE_CATEGORIES, SimResult
from moola.sim.costs import CommissionModel, SlippageModel, SpreadModel, resolve_slippage
from moola.sim.instruments import Instrument
from moola.sim.portfolio import TRADE_COLUMNS


@numba.njit(cache=True)
def _run_kernel(
    open_,
    close,
    target,
    half_spread,
    slip_rate,
    slip_fixed,
    slip_impact,
    comm_unit,
    comm_rate,
    comm_min,
    point_value,
    lot,
    lev,
    dust,
    initial_cash,
    latency,
    equity_out,
    cash_out,
    pos_out,
    fill_bar,
    fill_qty,
    fill_price,
    fill_fee,
):  # pragma: no cover - compiled
    n = close.shape[0]
    hs_s = 1 if half_spread.shape[0] > 1 else 0
    sr_s = 1 if slip_rate.shape[0] > 1 else 0
    sf_s = 1 if slip_fixed.shape[0] > 1 else 0
    si_s = 1 if slip_impact.shape[0] > 1 else 0
    ring = np.zeros(latency)
    cash = initial_cash
    pos = 0.0
    avg = 0.0
    committed = 0.0
    prev_f = 0.0
    n_fills = 0
    for i in range(n):
        # (1) fill the order decided at bar i - latency, at this bar's open
        slot = i % latency
        q = ring[slot]
        ring[slot] = 0.0
        if q != 0.0:
            ref = open_[i]
            aq = abs(q)
            slip = (
                slip_rate[i * sr_s] * ref
                + slip_fixed[i * sf_s]
                + slip_impact[i * si_s] * math.sqrt(aq)
            )
            adj = half_spread[i * hs_s] + slip
            price = ref + adj if q > 0.0 else ref - adj
            fee = comm_unit * aq + comm_rate * (aq * price * point_value)
            if fee < comm_min:
                fee = comm_min
            cash = cash - fee
            if pos == 0.0 or (pos > 0.0) == (q > 0.0):
                new = pos + q
                avg = price if pos == 0.0 else (avg * abs(pos) + price * aq) / abs(new)
                pos = new
            else:
                apos = abs(pos)
                closed = min(aq, apos)
                sign = 1.0 if pos > 0.0 else -1.0
                gross = closed * (price - avg) * point_value * sign
                cash = cash + gross
                rem = aq - closed
                if rem > dust:
                    pos = rem if q > 0.0 else -rem
                    avg = price
                elif apos - closed <= dust:
                    pos = 0.0
                    avg = 0.0
                else:
                    pos = pos + q
            fill_bar[n_fills] = i
            fill_qty[n_fills] = q
            fill_price[n_fills] = price
            fill_fee[n_fills] = fee
            n_fills += 1
        # (2) mark at the close
        equity = cash + pos * (close[i] - avg) * point_value
        equity_out[i] = equity
        cash_out[i] = cash
        pos_out[i] = pos
        # (3) decide at the close: re-size only when the target changes
        f_raw = target[i]
        if f_raw != prev_f:
            prev_f = f_raw
            f = min(max(f_raw, -lev), lev)
            c = close[i]
            units = 0.0
            if equity > 0.0 and c > 0.0:
                raw = f * equity / (c * point_value)
                units = np.trunc(raw / lot) * lot
            dq = units - committed
            if abs(dq) > dust and i + latency < n:
                ring[slot] = dq
                committed = committed + dq
    return n_fills


@numba.njit(cache=True)
def _trades_kernel(
    fill_bar, fill_qty, fill_price, fill_fee, point_value, dust
):  # pragma: no cover - compiled
    """Replay the fills through the Portfolio arithmetic, emitting one row per reduction."""
    m = fill_bar.shape[0]
    entry_bar = np.empty(m, np.int64)
    exit_bar = np.empty(m, np.int64)
    side = np.empty(m, np.int8)
    size = np.empty(m)
    entry_price = np.empty(m)
    exit_price = np.empty(m)
    pnl = np.empty(m)
    fees = np.empty(m)
    ret = np.empty(m)
    pos = 0.0
    avg = 0.0
    open_fees = 0.0
    e_bar = 0
    k = 0
    for j in range(m):
        q = fill_qty[j]
        price = fill_price[j]
        fee = fill_fee[j]
        b = fill_bar[j]
        aq = abs(q)
        if pos == 0.0 or (pos > 0.0) == (q > 0.0):
            new = pos + q
            if pos == 0.0:
                e_bar = b
                open_fees = fee
                avg = price
            else:
                open_fees = open_fees + fee
                avg = (avg * abs(pos) + price * aq) / abs(new)
            pos = new
            continue
        apos = abs(pos)
        closed = min(aq, apos)
        sign = 1.0 if pos > 0.0 else -1.0
        gross = closed * (price - avg) * point_value * sign
        rem = aq - closed
        full = apos - closed <= dust
        entry_fee = open_fees if full else open_fees * (closed / apos)
        exit_fee = fee if rem <= dust else fee * (closed / aq)
        tf = entry_fee + exit_fee
        net = gross - tf
        entry_bar[k] = e_bar
        exit_bar[k] = b
        side[k] = 1 if pos > 0.0 else -1
        size[k] = closed
        entry_price[k] = avg
        exit_price[k] = price
        pnl[k] = net
        fees[k] = tf
        ret[k] = net / (closed * avg * point_value)
        k += 1
        if rem > dust:
            pos = rem if q > 0.0 else -rem
            avg = price
            e_bar = b
            open_fees = fee - exit_fee
        elif full:
            pos = 0.0
            avg = 0.0
            open_fees = 0.0
        else:
            pos = pos + q
            open_fees = open_fees - entry_fee
    return (
        entry_bar[:k],
        exit_bar[:k],
        side[:k],
        size[:k],
        entry_price[:k],
        exit_price[:k],
        pnl[:k],
        fees[:k],
        ret[:k],
    )


def _as_column(values, name: str, n: int | None) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be one-dimensional; got shape {arr.shape}.")
    if n is not None and arr.shape[0] != n:
        raise ConfigError(
            f"{name} has {arr.shape[0]} values but close has {n}; align it to the bars."
        )
    return arr


def _check_finite(arr: np.ndarray, name: str, error: type[Exception]) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        fix = (
            "fill it (0 = flat) or drop the rows"
            if name == "target_fraction"
            else "drop or repair those bars"
        )
        raise error(f"{name} is not finite at row {row} (value {arr[row]!r}); {fix}.")


def resolve_spread(spread: SpreadModel | float | np.ndarray | None, n: int) -> np.ndarray:
    """Per-bar half spreads (shape ``(1,)`` or ``(n,)``) from a model, number or array."""
    if spread is None:
        return np.zeros(1)
    model = spread if isinstance(spread, SpreadModel) else SpreadModel(spread)
    return np.ascontiguousarray(model.half_spread(n))


def resolve_commission(
    commission: CommissionModel | None, instrument: Instrument
) -> CommissionModel | None:
    """The commission model to charge: the explicit one, else the instrument's default."""
    return commission if commission is not None else instrument.commission


def check_latency(latency_bars: int) -> int:
    """Validate the latency in bars (an integer >= 1)."""
    if isinstance(latency_bars, bool) or not isinstance(latency_bars, int | np.integer):
        raise ConfigError(f"latency_bars must be an integer >= 1; got {latency_bars!r}.")
    if latency_bars < 1:
        raise ConfigError(
            f"latency_bars={latency_bars}: an order decided at a bar's close can fill at the "
            f"next bar's open at the earliest; use latency_bars >= 1."
        )
    return int(latency_bars)


def backtest_positions(
    open: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray | None,
    target_fraction: np.ndarray,
    *,
    instrument: Instrument,
    initial_cash: float = 100_000.0,
    spread: SpreadModel | float | np.ndarray | None = None,
    slippage: SlippageModel | None = None,
    commission: CommissionModel | None = None,
    latency_bars: int = 1,
    timestamp: np.ndarray | pd.DatetimeIndex | pd.Series | None = None,
) -> SimResult:
    """Backtest a per-bar target position (fraction of equity) with costs and latency.

    Parameters
    ----------
    open, high, low, close, volume : array, shape (n,)
        The bars (``volume`` may be ``None``: zeros; only ``SquareRootImpact`` reads it).
    target_fraction : array, shape (n,)
        Desired position as a fraction of equity after bar ``i``'s close (finite).
    instrument : Instrument
        Point value, lot size and leverage limit (sizing: ``Instrument.units_for``).
    initial_cash : float, default 100_000
    spread : SpreadModel, float or array, optional
        Bid-ask spread in price units (half paid per fill).
    slippage : SlippageModel, optional
    commission : CommissionModel, optional
        Defaults to ``instrument.commission``.
    latency_bars : int, default 1
        A target decided at bar ``t`` fills at the open of bar ``t + latency_bars``.
    timestamp : array of datetimes, optional
        Bar times for the result and trades (bar numbers when omitted).

    Returns
    -------
    SimResult
        Per-bar equity/cash/position, fills and trades; identical to the event engine's.
    """
    close_a = _as_column(close, "close", None)
    n = close_a.shape[0]
    open_a = _as_column(open, "open", n)
    high_a = _as_column(high, "high", n)
    low_a = _as_column(low, "low", n)
    vol_a = np.zeros(n) if volume is None else _as_column(volume, "volume", n)
    target = _as_column(target_fraction, "target_fraction", n)
    for arr, name in ((open_a, "open"), (close_a, "close")):
        _check_finite(arr, name, BarValidationError)
    _check_finite(target, "target_fraction", ConfigError)
    latency = check_latency(latency_bars)
    if not (math.isfinite(initial_cash) and initial_cash > 0):
        raise ConfigError(f"initial_cash must be a positive number; got {initial_cash!r}.")

    half = resolve_spread(spread, n)
    terms = resolve_slippage(slippage, high_a, low_a, close_a, vol_a)
    comm = resolve_commission(commission, instrument)
    c_unit, c_rate, c_min = (
        (0.0, 0.0, 0.0) if comm is None else (comm.per_unit, comm.rate, comm.minimum)
    )

    equity = np.empty(n)
    cash = np.empty(n)
    position = np.empty(n)
    # Fills are at most one per bar; np.empty pages are only touched where written.
    f_bar = np.empty(n, np.int64)
    f_qty = np.empty(n)
    f_price = np.empty(n)
    f_fee = np.empty(n)
    pv = float(instrument.point_value)
    dust = instrument.dust
    n_fills = _run_kernel(
        open_a,
        close_a,
        target,
        half,
        np.ascontiguousarray(terms.rate, np.float64),
        np.ascontiguousarray(terms.fixed, np.float64),
        np.ascontiguousarray(terms.impact, np.float64),
        float(c_unit),
        float(c_rate),
        float(c_min),
        pv,
        float(instrument.lot_size),
        float(instrument.max_leverage),
        dust,
        float(initial_cash),
        latency,
        equity,
        cash,
        position,
        f_bar,
        f_qty,
        f_price,
        f_fee,
    )
    f_bar, f_qty = f_bar[:n_fills].copy(), f_qty[:n_fills].copy()
    f_price, f_fee = f_price[:n_fills].copy(), f_fee[:n_fills].copy()

    stamps = _timestamps(timestamp, n)
    fills = pd.DataFrame(
        {
            "timestamp": _take_times(stamps, f_bar),
            "bar": f_bar,
            "decision_bar": f_bar - latency,
            # the event engine numbers orders 1, 2, ... and every target order before the
            # last ``latency`` bars fills, so fill k carries order id k
            "order_id": np.arange(1, n_fills + 1, dtype=np.int64),
            "type": _constant_category(ORDER_TYPE_CATEGORIES, "market", n_fills),
            "qty": f_qty,
            "price": f_price,
            "fee": f_fee,
            "tag": _constant_category(("target",), "target", n_fills),
        },
        columns=list(FILL_COLUMNS),
    )
    trades = _trades_table(f_bar, f_qty, f_price, f_fee, pv, dust, stamps)
    return SimResult(
        timestamp=stamps,
        equity=equity,
        cash=cash,
        position=position,
        price=close_a,
        fills=fills,
        trades=trades,
        initial_cash=float(initial_cash),
    )


def _constant_category(categories: tuple[str, ...], value: str, n: int) -> pd.Categorical:
    codes = np.full(n, categories.index(value), dtype=np.int8)
    return pd.Categorical.from_codes(codes, categories=list(categories))


def _timestamps(timestamp, n: int) -> np.ndarray:
    """Bar times as naive-UTC ``datetime64[ns]`` (or bar numbers when none are given)."""
    if timestamp is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(timestamp, pd.Series):
        timestamp = timestamp.array
    index = (
        timestamp
        if isinstance(timestamp, pd.DatetimeIndex)
        else pd.DatetimeIndex(pd.to_datetime(timestamp, utc=True))
    )
    if index.tz is None:
        index = index.tz_localize("UTC")
    if len(index) != n:
        raise ConfigError(f"timestamp has {len(index)} values but close has {n}.")
    return index.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")


def _take_times(stamps: np.ndarray, bars: np.ndarray):
    """Times of the given bars: UTC timestamps, or the bar numbers themselves."""
    if np.issubdtype(stamps.dtype, np.datetime64):
        return pd.DatetimeIndex(stamps[bars]).tz_localize("UTC")
    return stamps[bars]


def _trades_table(f_bar, f_qty, f_price, f_fee, pv, dust, stamps) -> pd.DataFrame:
    e_bar, x_bar, side, size, e_px, x_px, pnl, fees, ret = _trades_kernel(
        f_bar, f_qty, f_price, f_fee, pv, dust
    )
    side_s = pd.Categorical.from_codes((side < 0).astype(np.int8), categories=SIDE_CATEGORIES)
    return pd.DataFrame(
        {
            "entry_time": _take_times(stamps, e_bar),
            "exit_time": _take_times(stamps, x_bar),
            "side": side_s,
            "size": size,
            "entry_price": e_px,
            "exit_price": x_px,
            "pnl": pnl,
            "fees": fees,
            "bars_held": (x_bar - e_bar).astype(np.int64),
            "return": ret,
        },
        columns=list(TRADE_COLUMNS),
    )
