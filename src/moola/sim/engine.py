"""Event-driven engine: walks the bars one at a time and asks a strategy for orders.

Per bar ``i`` the engine (1) fills the pending orders that are eligible (submitted at bar
``i - latency_bars`` or earlier) by the rules and in the intrabar order of
``moola.sim.orders``, (2) marks the :class:`Portfolio` at the close, (3) calls
``strategy.on_bar(ctx)``. The context shows bars ``0..i`` only (read-only views), so a
decision at bar ``i`` can only use prices up to that close and can fill no earlier than the
open of bar ``i + latency_bars``.

Leverage limit: an order that would take ``|position + pending market orders + qty| *
close * point_value`` above ``max_leverage * equity`` (checked when submitted, at that
bar's close and equity) is capped to the largest allowed whole-lot position, or refused if
nothing is left; orders that only reduce exposure are never capped. Each cap or refusal is
recorded in ``SimResult.rejections``.

``TargetPositionStrategy`` turns a per-bar target fraction into market orders with the same
sizing rule as ``moola.sim.vectorised.backtest_positions``; both give identical results.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from moola.core.errors import BarValidationError, ConfigError
from moola.sim._result import (
    FILL_COLUMNS,
    ORDER_TYPE_CATEGORIES,
    REJECTION_COLUMNS,
    SimResult,
)
from moola.sim.costs import CommissionModel, SlippageModel, SpreadModel, resolve_slippage
from moola.sim.instruments import Instrument
from moola.sim.orders import (
    Order,
    OrderType,
    limit,
    market,
    pays_costs,
    reference_price,
    stop,
    triggered_at_open,
)
from moola.sim.portfolio import Portfolio
from moola.sim.vectorised import (
    _check_finite,
    _timestamps,
    check_latency,
    resolve_commission,
    resolve_spread,
)

_LEVERAGE_TOLERANCE = 1e-9


class BarContext:
    """What a strategy sees at bar ``i``: bars ``0..i``, the portfolio, and order methods.

    Price arrays returned by :meth:`history` and the ``open``/``high``/... attributes come
    from read-only arrays cut at bar ``i``; nothing after the current bar is reachable
    through this object's public API.
    """

    def __init__(self, engine_state: _RunState, i: int) -> None:
        self._s = engine_state
        self.i = i
        self.time = engine_state.times[i]
        self.open = float(engine_state.open[i])
        self.high = float(engine_state.high[i])
        self.low = float(engine_state.low[i])
        self.close = float(engine_state.close[i])
        self.volume = float(engine_state.volume[i])
        self.portfolio = engine_state.portfolio

    @property
    def position(self) -> float:
        """Current signed position in units."""
        return self._s.portfolio.position

    @property
    def equity(self) -> float:
        """Equity marked at this bar's close."""
        return self._s.portfolio.equity

    @property
    def cash(self) -> float:
        """Cash (initial + realised - fees)."""
        return self._s.portfolio.cash

    @property
    def instrument(self) -> Instrument:
        """The traded instrument."""
        return self._s.portfolio.instrument

    def history(self, column: str) -> np.ndarray:
        """Read-only values of ``column`` (open/high/low/close/volume) for bars ``0..i``."""
        arrays = {
            "open": self._s.open,
            "high": self._s.high,
            "low": self._s.low,
            "close": self._s.close,
            "volume": self._s.volume,
        }
        if column not in arrays:
            raise ConfigError(f"history({column!r}): choose one of {sorted(arrays)}.")
        return arrays[column][: self.i + 1]

    @property
    def pending(self) -> tuple[Order, ...]:
        """Orders submitted and not yet filled or cancelled."""
        return tuple(order for order, _ in self._s.pending)

    def submit(self, order: Order) -> Order | None:
        """Submit ``order``; returns the accepted order (numbered, possibly capped by the
        leverage limit) or ``None`` if refused."""
        return self._s.submit(order, self.i)

    def market(self, qty: float, *, tag: str = "") -> Order | None:
        """Submit a market order (fills at the open ``latency_bars`` bars later)."""
        return self.submit(market(qty, tag=tag))

    def limit(
        self, qty: float, price: float, *, oco: str | None = None, tag: str = ""
    ) -> Order | None:
        """Submit a limit order."""
        return self.submit(limit(qty, price, oco=oco, tag=tag))

    def stop(
        self, qty: float, price: float, *, oco: str | None = None, tag: str = ""
    ) -> Order | None:
        """Submit a stop order."""
        return self.submit(stop(qty, price, oco=oco, tag=tag))

    def cancel(self, order: Order | int) -> bool:
        """Cancel a pending order (as returned by ``submit``, or its id); True if it was
        pending."""
        oid = order.id if isinstance(order, Order) else int(order)
        before = len(self._s.pending)
        self._s.pending = [(o, b) for o, b in self._s.pending if o.id != oid]
        return len(self._s.pending) < before

    def cancel_all(self) -> None:
        """Cancel every pending order."""
        self._s.pending = []


@runtime_checkable
class Strategy(Protocol):
    """A strategy: ``on_bar(ctx)`` is called after each bar's close and may return orders
    (or submit them through ``ctx``). A plain function ``f(ctx)`` works too."""

    def on_bar(self, ctx: BarContext) -> Sequence[Order] | None:
        """Decide at the close of bar ``ctx.i``."""


class TargetPositionStrategy:
    """Hold ``target_fraction[i]`` of equity after bar ``i`` via market orders.

    Re-sizes only when the target changes (sizing: ``Instrument.units_for`` at the decision
    bar's equity and close), exactly like ``backtest_positions``.
    """

    def __init__(self, target_fraction: Sequence[float] | np.ndarray) -> None:
        self.target_fraction = target_fraction

    def on_bar(self, ctx: BarContext) -> list[Order] | None:
        """Submit the difference between the new target and the committed position."""
        if ctx.i == 0:
            self._target = np.asarray(self.target_fraction, dtype=np.float64)
            _check_finite(self._target, "target_fraction", ConfigError)
            self._prev = 0.0
            self._committed = 0.0
        if ctx.i >= self._target.shape[0]:
            raise ConfigError(
                f"target_fraction has {self._target.shape[0]} values but the bars have more; "
                f"give one target per bar."
            )
        f = float(self._target[ctx.i])
        if f == self._prev:
            return None
        self._prev = f
        units = ctx.instrument.units_for(f, ctx.equity, ctx.close)
        dq = units - self._committed
        if abs(dq) <= ctx.instrument.dust:
            return None
        self._committed = self._committed + dq
        return [market(dq, tag="target")]


class _RunState:
    """Mutable state of one run (kept off the engine so ``run`` can be called twice)."""

    def __init__(self, engine: EventEngine, bars: pd.DataFrame) -> None:
        n = len(bars)

        def column(name: str) -> np.ndarray:
            arr = np.array(bars[name].to_numpy(dtype=np.float64), copy=True)
            arr.setflags(write=False)
            return arr

        self.open, self.high = column("open"), column("high")
        self.low, self.close = column("low"), column("close")
        self.volume = column("volume") if "volume" in bars else np.zeros(n)
        for arr, name in ((self.open, "open"), (self.high, "high"), (self.low, "low")):
            _check_finite(arr, name, BarValidationError)
        _check_finite(self.close, "close", BarValidationError)
        raw_times = None
        if "timestamp" in bars.columns:
            raw_times = bars["timestamp"]
        elif isinstance(bars.index, pd.DatetimeIndex):
            raw_times = bars.index
        self.stamps = _timestamps(raw_times, n)
        if np.issubdtype(self.stamps.dtype, np.datetime64):
            self.times = list(pd.DatetimeIndex(self.stamps).tz_localize("UTC"))
        else:
            self.times = list(self.stamps)
        self.instrument = engine.instrument
        self.latency = check_latency(engine.latency_bars)
        self.half = resolve_spread(engine.spread, n)
        self.slip = resolve_slippage(engine.slippage, self.high, self.low, self.close, self.volume)
        self.commission = resolve_commission(engine.commission, engine.instrument)
        self.portfolio = Portfolio(engine.initial_cash, engine.instrument)
        self.pending: list[tuple[Order, int]] = []
        self.next_id = 0
        self.fills: list[tuple] = []
        self.rejections: list[tuple] = []

    def submit(self, order: Order, i: int) -> Order | None:
        if not isinstance(order, Order):
            raise ConfigError(
                f"on_bar returned {type(order).__name__}; return a list of moola.sim.Order "
                f"(make them with market(), limit(), stop())."
            )
        self.next_id += 1
        order = dataclasses.replace(order, id=self.next_id)
        inst, pf = self.instrument, self.portfolio
        eff = pf.position + sum(o.qty for o, _ in self.pending if o.type is OrderType.MARKET)
        new = eff + order.qty
        reduces = abs(new) <= abs(eff) and (new == 0.0 or (new > 0.0) == (eff > 0.0))
        close, equity = float(self.close[i]), pf.equity
        limit_value = inst.max_leverage * equity * (1.0 + _LEVERAGE_TOLERANCE)
        if reduces or abs(new) * close * inst.point_value <= limit_value:
            self.pending.append((order, i))
            return order
        allowed = inst.units_for(inst.max_leverage, equity, close)
        keep = abs(eff) if (new > 0.0) == (eff > 0.0) else 0.0
        capped = math.copysign(max(allowed, keep), new)
        qty = capped - eff
        time = self.times[i]
        if abs(qty) <= inst.dust or (qty > 0.0) != (order.qty > 0.0):
            self.rejections.append((time, i, order.id, order.qty, 0.0, "max_leverage"))
            return None
        self.rejections.append((time, i, order.id, order.qty, qty, "capped to max_leverage"))
        capped_order = dataclasses.replace(order, qty=qty)
        self.pending.append((capped_order, i))
        return capped_order

    def fill_pending(self, i: int) -> None:
        eligible = [(o, b) for o, b in self.pending if b + self.latency <= i]
        if not eligible:
            return
        o_, h_, l_ = float(self.open[i]), float(self.high[i]), float(self.low[i])

        def phase(item: tuple[Order, int]) -> int:
            order = item[0]
            if order.type is OrderType.MARKET:
                return 0
            if triggered_at_open(order, o_):
                return 1
            return 2 if order.type is OrderType.STOP else 3

        cancelled: set[int] = set()
        for order, decided in sorted(eligible, key=phase):  # stable: keeps submission order
            if order.id in cancelled:
                continue
            ref = reference_price(order, o_, h_, l_)
            if ref is None:
                continue
            self._execute(order, decided, i, ref)
            cancelled.add(order.id)
            if order.oco is not None:
                cancelled.update(o.id for o, _ in self.pending if o.oco == order.oco)
        self.pending = [(o, b) for o, b in self.pending if o.id not in cancelled]

    def _execute(self, order: Order, decided: int, i: int, ref: float) -> None:
        q = order.qty
        if pays_costs(order):
            hs = self.half[i if self.half.shape[0] > 1 else 0]
            adj = hs + self.slip.per_unit(i, ref, q)
            price = ref + adj if q > 0.0 else ref - adj
        else:
            price = ref
        fee = 0.0
        if self.commission is not None:
            fee = self.commission.fee(q, price, self.instrument.point_value)
        time = self.times[i]
        self.portfolio.fill(time, q, price, fee)
        self.fills.append((time, i, decided, order.id, str(order.type), q, price, fee, order.tag))


def _typed_times(frame: pd.DataFrame, stamps: np.ndarray, columns) -> pd.DataFrame:
    """Give an empty table's time columns the dtype a non-empty one would have."""
    if frame.empty:
        for col in columns:
            if np.issubdtype(stamps.dtype, np.datetime64):
                frame[col] = pd.DatetimeIndex([], dtype="datetime64[ns, UTC]")
            else:
                frame[col] = frame[col].astype(stamps.dtype)
    return frame


class EventEngine:
    """Bar-by-bar simulation of a strategy with costs, latency and exact accounting.

    Parameters
    ----------
    bars : pd.DataFrame
        One symbol's bars with ``open, high, low, close`` (``volume`` and ``timestamp``
        optional; the index is used for times when there is no ``timestamp`` column).
    instrument : Instrument
    initial_cash : float, default 100_000
    spread, slippage, commission :
        As in ``backtest_positions``.
    latency_bars : int, default 1
        Orders submitted at bar ``t`` are eligible from bar ``t + latency_bars``.
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        instrument: Instrument,
        *,
        initial_cash: float = 100_000.0,
        spread: SpreadModel | float | np.ndarray | None = None,
        slippage: SlippageModel | None = None,
        commission: CommissionModel | None = None,
        latency_bars: int = 1,
    ) -> None:
        self.bars = bars
        self.instrument = instrument
        self.initial_cash = initial_cash
        self.spread = spread
        self.slippage = slippage
        self.commission = commission
        self.latency_bars = latency_bars

    def run(self, strategy: Strategy | Callable[[BarContext], Sequence[Order] | None]) -> SimResult:
        """Run ``strategy`` over all bars and return the accounting result."""
        on_bar = strategy.on_bar if hasattr(strategy, "on_bar") else strategy
        if not callable(on_bar):
            raise ConfigError("strategy must have an on_bar(ctx) method or be a function of ctx.")
        if not (math.isfinite(self.initial_cash) and self.initial_cash > 0):
            raise ConfigError(f"initial_cash must be a positive number; got {self.initial_cash!r}.")
        state = _RunState(self, self.bars)
        n = len(state.close)
        equity, cash, position = np.empty(n), np.empty(n), np.empty(n)
        pf = state.portfolio
        for i in range(n):
            state.fill_pending(i)
            pf.mark(state.times[i], float(state.close[i]))
            equity[i], cash[i], position[i] = pf.equity, pf.cash, pf.position
            orders = on_bar(BarContext(state, i))
            if isinstance(orders, Order):
                orders = [orders]
            for order in orders or ():
                state.submit(order, i)
        fills = pd.DataFrame(state.fills, columns=list(FILL_COLUMNS))
        fills = fills.astype(
            {
                "bar": "int64",
                "decision_bar": "int64",
                "order_id": "int64",
                "qty": "float64",
                "price": "float64",
                "fee": "float64",
            }
        )
        fills["type"] = pd.Categorical(fills["type"], categories=list(ORDER_TYPE_CATEGORIES))
        fills["tag"] = pd.Categorical(fills["tag"])
        return SimResult(
            timestamp=state.stamps,
            equity=equity,
            cash=cash,
            position=position,
            price=np.array(state.close),
            fills=_typed_times(fills, state.stamps, ("timestamp",)),
            trades=_typed_times(pf.trades_frame(), state.stamps, ("entry_time", "exit_time")),
            initial_cash=float(self.initial_cash),
            rejections=pd.DataFrame(state.rejections, columns=list(REJECTION_COLUMNS)),
        )
