"""Event-driven engine: walks the bars one at a time and asks a strategy for orders.

The engine is a short loop over :class:`moola.sim.broker.Broker`, the kernel the trading
environment and the live runtime share. Per bar ``i`` the broker (1) fills the pending
orders that are eligible (submitted at bar ``i - latency_bars`` or earlier) by the rules
and in the intrabar order of ``moola.sim.orders`` and (2) marks the :class:`Portfolio` at
the close; then the engine (3) calls ``strategy.on_bar(ctx)`` and submits its orders. The
context shows bars ``0..i`` only (read-only views), so a decision at bar ``i`` can only use
prices up to that close and can fill no earlier than the open of bar ``i + latency_bars``.

Leverage limit: an order that would take ``|position + pending market orders + qty| *
close * point_value`` above ``max_leverage * equity`` (checked when submitted, at that
bar's close and equity) is capped to the largest allowed whole-lot position, or refused if
nothing is left; orders that only reduce exposure are never capped. Each cap or refusal is
recorded in ``SimResult.rejections``.

``TargetPositionStrategy`` turns a per-bar target fraction into market orders with the same
sizing rule as ``moola.sim.vectorised.backtest_positions``; both give identical results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from moola.core.errors import BarValidationError, ConfigError
from moola.sim._result import SimResult
from moola.sim.broker import Accepted, Bar, Broker
from moola.sim.costs import CommissionModel, SlippageModel, SpreadModel, resolve_slippage
from moola.sim.instruments import Instrument
from moola.sim.orders import Order, limit, market, stop
from moola.sim.vectorised import (
    _check_finite,
    _timestamps,
    check_latency,
    resolve_commission,
    resolve_spread,
)


class BarContext:
    """What a strategy sees at bar ``i``: bars ``0..i``, the portfolio, and order methods.

    Price arrays returned by :meth:`history` and the ``open``/``high``/... attributes come
    from read-only arrays cut at bar ``i``; nothing after the current bar is reachable
    through this object's public API.
    """

    def __init__(self, broker: Broker, bars: _BarArrays, i: int) -> None:
        self._broker = broker
        self._bars = bars
        self.i = i
        self.time = bars.times[i]
        self.open = bars.open_list[i]
        self.high = bars.high_list[i]
        self.low = bars.low_list[i]
        self.close = bars.close_list[i]
        self.volume = bars.volume_list[i]
        self.portfolio = broker.portfolio

    @property
    def position(self) -> float:
        """Current signed position in units."""
        return self._broker.portfolio.position

    @property
    def equity(self) -> float:
        """Equity marked at this bar's close."""
        return self._broker.portfolio.equity

    @property
    def cash(self) -> float:
        """Cash (initial + realised - fees)."""
        return self._broker.portfolio.cash

    @property
    def instrument(self) -> Instrument:
        """The traded instrument."""
        return self._broker.instrument

    def history(self, column: str) -> np.ndarray:
        """Read-only values of ``column`` (open/high/low/close/volume) for bars ``0..i``."""
        arrays = {
            "open": self._bars.open,
            "high": self._bars.high,
            "low": self._bars.low,
            "close": self._bars.close,
            "volume": self._bars.volume,
        }
        if column not in arrays:
            raise ConfigError(f"history({column!r}): choose one of {sorted(arrays)}.")
        return arrays[column][: self.i + 1]

    @property
    def pending(self) -> tuple[Order, ...]:
        """Orders submitted and not yet filled or cancelled."""
        return self._broker.pending

    def submit(self, order: Order) -> Order | None:
        """Submit ``order``; returns the accepted order (numbered, possibly capped by the
        leverage limit) or ``None`` if refused."""
        if not isinstance(order, Order):
            raise ConfigError(
                f"on_bar returned {type(order).__name__}; return a list of moola.sim.Order "
                f"(make them with market(), limit(), stop())."
            )
        outcome = self._broker.submit(order)
        return outcome.order if isinstance(outcome, Accepted) else None

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
        return self._broker.cancel(order)

    def cancel_all(self) -> None:
        """Cancel every pending order."""
        self._broker.cancel_all()


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


class _BarArrays:
    """One frame's bars as read-only arrays (for ``ctx.history``) and Python lists (for
    the loop), plus their times."""

    def __init__(self, bars: pd.DataFrame) -> None:
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
        self.open_list, self.high_list = self.open.tolist(), self.high.tolist()
        self.low_list, self.close_list = self.low.tolist(), self.close.tolist()
        self.volume_list = self.volume.tolist()
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
        data = _BarArrays(self.bars)
        n = len(data.close_list)
        broker = Broker._with_terms(
            instrument=self.instrument,
            initial_cash=self.initial_cash,
            latency_bars=check_latency(self.latency_bars),
            half_spread=resolve_spread(self.spread, n),
            terms=resolve_slippage(self.slippage, data.high, data.low, data.close, data.volume),
            commission=resolve_commission(self.commission, self.instrument),
        )
        o, h, lo, c, v = (
            data.open_list, data.high_list, data.low_list, data.close_list, data.volume_list
        )  # fmt: skip
        times = data.times
        for i in range(n):
            broker.advance(Bar(times[i], o[i], h[i], lo[i], c[i], v[i]))
            ctx = BarContext(broker, data, i)
            orders = on_bar(ctx)
            if isinstance(orders, Order):
                orders = [orders]
            for order in orders or ():
                ctx.submit(order)
        return broker.result(_stamps=data.stamps)
