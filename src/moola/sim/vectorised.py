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

Cost of the reporting around the kernel (issue 15): on a million bars the loop itself
takes a few milliseconds, so the tables around it are built without copies. Outputs are
allocated once at their final size (fills: at most one per target change, counted
first), the kernel also writes the per-bar drawdown, bar times are a read-only
``datetime64[ns]`` view of the caller's timestamps where they already are datetimes (no
re-parsing), and the fills and trades frames take the arrays without copying them.

The execution terms come as one :class:`~moola.sim.execution.ExecutionConfig`, as for
``moola.backtest.run``; :func:`_simulate` takes the objects it resolves to, so a caller
that has them already (``run``) builds nothing twice.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Mapping

import numba
import numpy as np
import pandas as pd

from moola.core.errors import BarValidationError, ConfigError
from moola.sim._result import FILL_COLUMNS, ORDER_TYPE_CATEGORIES, SIDE_CATEGORIES, SimResult
from moola.sim.costs import CommissionModel, SlippageModel, SpreadModel, resolve_slippage
from moola.sim.execution import ExecutionConfig
from moola.sim.instruments import Instrument, equity_instrument
from moola.sim.portfolio import TRADE_COLUMNS

# The keyword arguments backtest_positions took before it took an ExecutionConfig; kept
# for one release (DeprecationWarning).
LEGACY_TERMS: tuple[str, ...] = (
    "instrument",
    "initial_cash",
    "spread",
    "slippage",
    "commission",
    "latency_bars",
)


@numba.njit(cache=True, inline="always")
def fill_price_fee(
    ref: float, q: float, half_spread: float, slip_rate: float, slip_fixed: float,
    slip_impact: float, comm_unit: float, comm_rate: float, comm_min: float,
    point_value: float,
) -> tuple[float, float]:  # fmt: skip
    """The price and fee of a market fill of ``q`` units at reference price ``ref`` (the
    bar's open): half the spread plus slippage against the trader, then commission with its
    minimum; :class:`SlippageTerms.per_unit` and :class:`CommissionModel.fee`'s arithmetic,
    operation by operation, for the compiled kernels."""
    aq = abs(q)
    slip = slip_rate * ref + slip_fixed + slip_impact * math.sqrt(aq)
    adj = half_spread + slip
    price = ref + adj if q > 0.0 else ref - adj
    fee = comm_unit * aq + comm_rate * (aq * price * point_value)
    if fee < comm_min:
        fee = comm_min
    return price, fee


@numba.njit(cache=True, inline="always")
def fill_position(
    pos: float, avg: float, cash: float, q: float, price: float, point_value: float, dust: float
) -> tuple[float, float, float, float]:
    """One fill of ``q`` units at ``price`` on a position: :meth:`Portfolio.fill`'s
    arithmetic, operation by operation (adding to a position averages its price; reducing
    realises PnL into cash; what is left under ``dust`` is flat; crossing zero opens the
    rest at ``price``). Returns the new position, average price, cash and the realised
    gross PnL. The one home of this arithmetic for the compiled kernels (this module's and
    ``moola.rl.vec_env``'s); fees are the caller's."""
    gross = 0.0
    if pos == 0.0 or (pos > 0.0) == (q > 0.0):
        new = pos + q
        avg = price if pos == 0.0 else (avg * abs(pos) + price * abs(q)) / abs(new)
        return new, avg, cash, gross
    aq = abs(q)
    apos = abs(pos)
    closed = min(aq, apos)
    sign = 1.0 if pos > 0.0 else -1.0
    gross = closed * (price - avg) * point_value * sign
    cash = cash + gross
    rem = aq - closed
    if rem > dust:
        return (rem if q > 0.0 else -rem), price, cash, gross
    if apos - closed <= dust:
        return 0.0, 0.0, cash, gross
    return pos + q, avg, cash, gross


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
    dd_out,
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
    peak = initial_cash
    n_fills = 0
    for i in range(n):
        # (1) fill the order decided at bar i - latency, at this bar's open
        slot = i % latency
        q = ring[slot]
        ring[slot] = 0.0
        if q != 0.0:
            price, fee = fill_price_fee(
                open_[i], q, half_spread[i * hs_s], slip_rate[i * sr_s], slip_fixed[i * sf_s],
                slip_impact[i * si_s], comm_unit, comm_rate, comm_min, point_value,
            )  # fmt: skip
            cash = cash - fee
            pos, avg, cash, _ = fill_position(pos, avg, cash, q, price, point_value, dust)
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
        # drawdown as SimResult.drawdown computes it: np.maximum.accumulate over
        # np.maximum(equity, initial_cash), NaN sticky like np.maximum
        if peak == peak and (equity != equity or equity > peak):
            peak = equity
        dd_out[i] = equity / peak - 1.0
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
def _max_orders(target, latency):  # pragma: no cover - compiled
    """Orders the kernel can submit: target changes at bars ``i`` with ``i + latency < n``
    (each submits at most one order, and each order fills at most once). Branch-free, so
    it vectorises: ``prev`` only ever differs from ``target[i - 1]`` by the sign of a zero."""
    n = target.shape[0]
    prev = 0.0
    count = 0
    for i in range(n - latency):
        count += target[i] != prev
        prev = target[i]
    return count


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


@numba.njit(cache=True)
def _first_non_finite(arr):  # pragma: no cover - compiled
    """Index of the first NaN or infinity in ``arr``, or -1 (one pass, no temporaries)."""
    for i in range(arr.shape[0]):
        if not math.isfinite(arr[i]):
            return i
    return -1


def _check_finite(arr: np.ndarray, name: str, error: type[Exception]) -> None:
    row = int(_first_non_finite(arr))
    if row >= 0:
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
    execution: ExecutionConfig | Mapping[str, object] | None = None,
    *,
    symbol: str = "ASSET",
    timestamp: np.ndarray | pd.DatetimeIndex | pd.Series | None = None,
    **terms: object,
) -> SimResult:
    """Backtest a per-bar target position (fraction of equity) under ``execution``'s terms.

    Parameters
    ----------
    open, high, low, close, volume : array, shape (n,)
        The bars (``volume`` may be ``None``: zeros; only ``SquareRootImpact`` reads it).
    target_fraction : array, shape (n,)
        Desired position as a fraction of equity after bar ``i``'s close (finite).
    execution : ExecutionConfig, optional
        Instrument, initial cash, spread, slippage, commission and latency (a target
        decided at bar ``t`` fills at the open of bar ``t + latency_bars``), as for
        ``moola.backtest.run``; a mapping is validated into one. Default:
        ``ExecutionConfig()``. Its ``engine`` and ``rules`` are not read here: this is
        the compiled engine, and rules are checked by ``moola.backtest.run``.
    symbol : str, default "ASSET"
        Names the instrument when ``execution.instrument`` is a bare kind (``"equity"``).
    timestamp : array of datetimes, optional
        Bar times for the result and trades (bar numbers when omitted).
    **terms
        Deprecated (one release): the old keyword arguments ``instrument, initial_cash,
        spread, slippage, commission, latency_bars`` (objects, as before), instead of
        ``execution``.

    Returns
    -------
    SimResult
        Per-bar equity/cash/position/drawdown, fills and trades; identical to the event
        engine's.

    Raises ``ConfigError`` for bad terms (naming the key), targets that are not finite or
    not aligned, and ``BarValidationError`` for non-finite opens or closes.
    """
    if terms:
        resolved = _legacy_terms(execution, terms, symbol)
    else:
        config = ExecutionConfig.of(execution)
        resolved = {
            "instrument": config.build_instrument(symbol),
            "initial_cash": config.initial_cash,
            "spread": config.spread_value(),
            "slippage": config.build_slippage(),
            "commission": config.build_commission(),
            "latency_bars": config.latency_bars,
        }
    return _simulate(
        open, high, low, close, volume, target_fraction, timestamp=timestamp, **resolved
    )


def _legacy_terms(execution: object, terms: dict[str, object], symbol: str) -> dict[str, object]:
    """The old keyword arguments as ``_simulate`` takes them, with a DeprecationWarning."""
    unknown = [key for key in terms if key not in LEGACY_TERMS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], [*LEGACY_TERMS, "execution", "symbol"])
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"backtest_positions got an unknown argument {unknown[0]!r}.{hint} Give the "
            "execution terms as execution=moola.sim.ExecutionConfig(...)."
        )
    if execution is not None:
        raise ConfigError(
            f"Give the execution terms once: execution= or the old arguments "
            f"{', '.join(sorted(terms))}, not both."
        )
    warnings.warn(
        f"Passing {', '.join(sorted(terms))} to backtest_positions is deprecated and will be "
        "removed in the next release; pass execution=moola.sim.ExecutionConfig(...).",
        DeprecationWarning,
        stacklevel=3,
    )
    resolved = {
        "instrument": None,
        "initial_cash": 100_000.0,
        "spread": None,
        "slippage": None,
        "commission": None,
        "latency_bars": 1,
    }
    resolved.update(terms)
    if resolved["instrument"] is None:
        resolved["instrument"] = equity_instrument(symbol)
    return resolved


def _simulate(
    open: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray | None,
    target_fraction: np.ndarray,
    *,
    instrument: Instrument,
    initial_cash: float,
    spread: SpreadModel | float | np.ndarray | None,
    slippage: SlippageModel | None,
    commission: CommissionModel | None,
    latency_bars: int,
    timestamp: np.ndarray | pd.DatetimeIndex | pd.Series | None,
) -> SimResult:
    """:func:`backtest_positions` on resolved terms: the objects an ExecutionConfig builds
    (``commission=None``: the instrument's own). For callers that hold them already."""
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
    stamps = _timestamps(timestamp, n)

    half = resolve_spread(spread, n)
    terms = resolve_slippage(slippage, high_a, low_a, close_a, vol_a)
    comm = resolve_commission(commission, instrument)
    c_unit, c_rate, c_min = (
        (0.0, 0.0, 0.0) if comm is None else (comm.per_unit, comm.rate, comm.minimum)
    )

    equity = np.empty(n)
    cash = np.empty(n)
    position = np.empty(n)
    drawdown = np.empty(n)
    # At most one fill per order and one order per target change: sized once, no trimming.
    m = _max_orders(target, latency)
    f_bar = np.empty(m, np.int64)
    f_qty = np.empty(m)
    f_price = np.empty(m)
    f_fee = np.empty(m)
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
        drawdown,
        f_bar,
        f_qty,
        f_price,
        f_fee,
    )
    f_bar, f_qty, f_price, f_fee = (
        f_bar[:n_fills],
        f_qty[:n_fills],
        f_price[:n_fills],
        f_fee[:n_fills],
    )

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
        copy=False,  # fresh arrays nobody else holds
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
        _drawdown=drawdown,
    )


def _constant_category(categories: tuple[str, ...], value: str, n: int) -> pd.Categorical:
    codes = np.full(n, categories.index(value), dtype=np.int8)
    return pd.Categorical.from_codes(codes, categories=list(categories))


def _timestamps(timestamp, n: int) -> np.ndarray:
    """Bar times as naive-UTC ``datetime64[ns]`` (or bar numbers when none are given).

    Times that already are datetimes (a datetime column, index or array, with or without
    a zone) are not parsed again: the result is a read-only view of their UTC
    nanoseconds, copied only when their unit is not nanoseconds. Anything else (text,
    objects) goes through ``pd.to_datetime(..., utc=True)``.
    """
    if timestamp is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(timestamp, pd.Series | pd.Index):
        timestamp = timestamp.array
    if isinstance(timestamp, pd.arrays.DatetimeArray):
        if timestamp.unit != "ns":
            timestamp = timestamp.as_unit("ns")  # a copy; as_unit copies even when it is ns
        values = timestamp.asi8.view("datetime64[ns]")  # UTC epoch, zone or not
    elif isinstance(timestamp, np.ndarray) and np.issubdtype(timestamp.dtype, np.datetime64):
        values = timestamp.astype("datetime64[ns]", copy=False)  # naive = UTC
    else:
        index = pd.DatetimeIndex(pd.to_datetime(timestamp, utc=True))
        values = index.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")
    if len(values) != n:
        raise ConfigError(f"timestamp has {len(values)} values but close has {n}.")
    if values.flags.writeable:
        values = values.view()
        values.flags.writeable = False  # a view of the caller's times: never written
    return values


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
        copy=False,  # the kernel's fresh arrays
    )
