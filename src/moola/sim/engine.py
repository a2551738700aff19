"""Event-driven engine: walks the bars one at a time and asks a strategy for orders.

The engine is a short loop over :class:`moola.sim.broker.Broker`, the kernel the trading
environment and the live runtime share. Per bar ``i`` the broker (1) fills the pending
orders that are eligible (submitted at bar ``i - latency_bars`` or earlier) by the rules
and in the intrabar order of ``moola.sim.orders`` and (2) marks the :class:`Portfolio` at
the close; then the engine (3) calls ``strategy.on_bar(ctx)`` and submits its orders. The
context shows bars ``0..i`` only (read-only views), so a decision at bar ``i`` can only use
prices up to that close and can fill no earlier than the open of bar ``i + latency_bars``.

The terms are one :class:`~moola.sim.execution.ExecutionConfig`: the broker is built from
it, so its risk rules stream inside the loop (``pre_trade`` before each order, ``update``
on each mark) and its ``on_breach`` decides what a breach does (recorded only, by default,
so results equal the vectorised kernel's; or a halt, or a halt that flattens). Per-bar
spreads and slippage terms are computed once for all bars, from the bars before each, as
the vectorised kernel computes them.

Leverage limit: an order that would take ``|position + pending market orders + qty| *
close * point_value`` above ``max_leverage * equity`` (checked when submitted, at that
bar's close and equity) is capped to the largest allowed whole-lot position, or refused if
nothing is left; orders that only reduce exposure are never capped. Each cap or refusal is
recorded in ``SimResult.rejections``.

``TargetPositionStrategy`` turns a per-bar target fraction into market orders with the same
sizing rule as ``moola.sim.vectorised.backtest_positions``; both give identical results.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from moola.core.errors import BarValidationError, ConfigError
from moola.sim._result import SimResult
from moola.sim.broker import Accepted, Bar, Broker
from moola.sim.costs import resolve_slippage
from moola.sim.execution import ExecutionConfig
from moola.sim.instruments import Instrument
from moola.sim.orders import Order, limit, market, stop
from moola.sim.vectorised import (
    LEGACY_TERMS,
    _check_finite,
    _timestamps,
    check_latency,
    resolve_spread,
)


class BarContext:
    """What a strategy sees at bar ``i``: bars ``0..i``, the portfolio, and order methods.

    Price arrays returned by :meth:`history` and the ``open``/``high``/... attributes come
    from read-only arrays cut at bar ``i``; nothing after the current bar is reachable
    through this object's public API.
    """

    __slots__ = (
        "_bars",
        "_broker",
        "close",
        "high",
        "i",
        "low",
        "open",
        "portfolio",
        "time",
        "volume",
    )

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
        i = ctx.i
        if i == 0:
            target = np.asarray(self.target_fraction, dtype=np.float64)
            _check_finite(target, "target_fraction", ConfigError)
            self._target = target.tolist()  # Python floats: the same values, cheaper to read
            self._prev = 0.0
            self._committed = 0.0
        if i >= len(self._target):
            raise ConfigError(
                f"target_fraction has {len(self._target)} values but the bars have more; "
                f"give one target per bar."
            )
        f = self._target[i]
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


# The old keyword arguments of EventEngine, kept for one release, are those of
# backtest_positions (``LEGACY_TERMS``): they build an ExecutionConfig
# (``ExecutionConfig.from_terms``) with no rules, as the engine had none.


def _symbol_of(bars: pd.DataFrame) -> str:
    """The bars' one ``symbol`` value, else ``"ASSET"``."""
    if isinstance(bars, pd.DataFrame) and "symbol" in bars.columns and len(bars):
        return str(bars["symbol"].iloc[0])
    return "ASSET"


def _legacy_config(execution: object, terms: dict[str, object]) -> ExecutionConfig:
    """The ExecutionConfig the old form ``EventEngine(bars, instrument, *, initial_cash,
    spread, slippage, commission, latency_bars)`` describes (deprecated, one release)."""
    unknown = [key for key in terms if key not in LEGACY_TERMS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, [*LEGACY_TERMS, "symbol"], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"EventEngine got an unknown argument {key!r}.{hint} Give the execution terms as "
            "EventEngine(bars, moola.sim.ExecutionConfig(...))."
        )
    if execution is not None:
        if not isinstance(execution, Instrument):
            raise ConfigError(
                f"execution must be a moola.sim.ExecutionConfig, got {type(execution).__name__}."
            )
        if "instrument" in terms:
            raise ConfigError("EventEngine got the instrument twice (as execution and instrument).")
        terms = {"instrument": execution, **terms}
    warnings.warn(
        f"EventEngine(bars, {', '.join(sorted(terms))}) is deprecated and will be removed in "
        "the next release; pass EventEngine(bars, moola.sim.ExecutionConfig(...)).",
        DeprecationWarning,
        stacklevel=3,
    )
    cash = terms.get("initial_cash")
    if isinstance(cash, int | float) and not (math.isfinite(cash) and cash > 0):
        raise ConfigError(f"initial_cash must be a positive number; got {cash!r}.")
    if "latency_bars" in terms:
        check_latency(terms["latency_bars"])  # type: ignore[arg-type]
    return ExecutionConfig.from_terms(engine="event", prop_firm_rules=(), **terms)


class EventEngine:
    """Bar-by-bar simulation of a strategy with costs, latency, exact accounting and the
    config's risk rules.

    Parameters
    ----------
    bars : pd.DataFrame
        One symbol's bars with ``open, high, low, close`` (``volume`` and ``timestamp``
        optional; the index is used for times when there is no ``timestamp`` column).
    execution : ExecutionConfig
        The terms: instrument, cash, costs, latency, the risk rules the broker streams
        (``pre_trade`` before each order, ``update`` on each mark) and what a breach does
        (``on_breach``). Its ``engine`` field is not read: this is the event engine.
    symbol : str, optional
        Names the instrument when the config gives only its kind; default the bars'
        ``symbol`` column, else ``"ASSET"``.
    **terms
        Deprecated (one release): the old form ``EventEngine(bars, instrument, *,
        initial_cash, spread, slippage, commission, latency_bars)``, which builds an
        ExecutionConfig without rules (``ExecutionConfig.from_terms``).

    After :meth:`run`, ``broker_`` is the broker that ran (its ``breaches`` and
    ``rejections`` tables).
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        execution: ExecutionConfig | None = None,
        *,
        symbol: str | None = None,
        **terms: object,
    ) -> None:
        if isinstance(execution, ExecutionConfig):
            if terms:
                raise ConfigError(
                    f"Give the execution terms once: execution or the old arguments "
                    f"{', '.join(sorted(terms))}, not both."
                )
        else:
            execution = _legacy_config(execution, terms)
        self.bars = bars
        self.execution = execution
        self.symbol = symbol

    def run(self, strategy: Strategy | Callable[[BarContext], Sequence[Order] | None]) -> SimResult:
        """Run ``strategy`` over all bars and return the accounting result."""
        on_bar = strategy.on_bar if hasattr(strategy, "on_bar") else strategy
        if not callable(on_bar):
            raise ConfigError("strategy must have an on_bar(ctx) method or be a function of ctx.")
        data = _BarArrays(self.bars)
        n = len(data.close_list)
        config = self.execution
        symbol = self.symbol if self.symbol is not None else _symbol_of(self.bars)
        broker = Broker(config, symbol=symbol)
        # All bars are at hand: per-bar spreads and slippage terms computed at once, each
        # from the bars before it, exactly as the vectorised kernel computes them.
        broker._precomputed(
            half_spread=resolve_spread(config.spread_value(), n),
            terms=resolve_slippage(
                config.build_slippage(), data.high, data.low, data.close, data.volume
            ),
        )
        self.broker_ = broker
        o, h, lo, c, v = (
            data.open_list, data.high_list, data.low_list, data.close_list, data.volume_list
        )  # fmt: skip
        times = data.times
        submit = broker.submit
        for i in range(n):
            broker.advance(Bar(times[i], o[i], h[i], lo[i], c[i], v[i]))
            ctx = BarContext(broker, data, i)
            orders = on_bar(ctx)
            if isinstance(orders, Order):
                orders = [orders]
            for order in orders or ():
                if not isinstance(order, Order):
                    ctx.submit(order)  # raises, naming what on_bar returned
                submit(order)
        return broker.result(_stamps=data.stamps)
