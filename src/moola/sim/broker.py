"""The steppable broker: one instrument's orders, fills and accounting, one bar at a time.

The backtest's event engine, the trading environment and the live runtime share this one
kernel, so they fill and account alike; only where the bars and orders come from differs.
Built from an :class:`~moola.sim.execution.ExecutionConfig`; per bar::

    fills = broker.advance(bar)     # bar i arrives: fill what is due at its prices, mark at close
    result = broker.submit(order)   # decided at bar i's close -> Accepted(order) | Denied(reasons)
    broker.cancel(order_id)         # withdraw a pending order
    broker.mark(bar)                # re-mark bar i (same time) at a newer close, e.g. live
    broker.state                    # position, cash, equity, open orders, day-start balance

Fill rules (the same as ``moola.sim.orders`` and the vectorised kernel, which the tests hold
equal to the bit): an order submitted after bar ``t`` is eligible from bar ``t +
latency_bars``; at that bar market orders fill first at the open, then orders the open
itself triggers, then stops, then limits (ties in submission order); market and stop fills
pay half the spread plus slippage, every fill pays commission. Slippage terms at bar ``i``
come from bars before ``i`` only.

Pre-trade checks. ``submit`` first refuses any order once the broker is halted
(:meth:`halt`), then asks every rule that has a ``pre_trade(order, state) -> list[str]``
method (the rules of the config, or those passed in); any reason denies the order. Then the
leverage limit caps it to the largest allowed whole-lot position, or refuses it if nothing
is left (orders that only reduce exposure are never capped). Each denial and cap is recorded
in ``rejections`` (and in :meth:`result`) with its reasons before ``submit`` returns, and a
denied order never reaches the book.

Streaming rules. Each ``moola.sim.Rule`` is turned into its streaming form
(``rule.stream()``, fresh per broker) when the broker is built; after every mark (each
``advance`` and each ``mark(bar)``) every rule's ``update(time, equity, fills)`` sees the
bar's equity and fills. What a :class:`~moola.sim.propfirm.Breach` does is the config's
``on_breach`` (or the ``on_breach`` argument): ``"record"`` records each rule's first breach
in :attr:`breaches` and trading goes on (a backtest then equals the vectorised one);
``"halt"`` records the first breach, then halts the broker: pending orders are withdrawn
and every later order is denied naming the breach; ``"flatten"`` also places one market
order closing the position (it fills ``latency_bars`` later, like any order; its size is
recorded with the breach). A rule's own pre-trade checks (the order limits of
``moola.sim.limits``) refuse orders in every mode; a breached loss limit refuses orders
through the halt, so in ``"record"`` mode it refuses none. A re-mark (``mark(bar)``, a
newer snapshot of the same bar, as a live feed gives) is one more point for the rules: a
dip that recovers before the close still breaches live, which a backtest on closes cannot
see. :func:`stream_rules` feeds the rules a finished run (the vectorised kernel's) the way
a recording broker feeds them, so both engines give the same breach table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from moola.core.errors import BarValidationError, ConfigError
from moola.sim._result import FILL_COLUMNS, ORDER_TYPE_CATEGORIES, REJECTION_COLUMNS, SimResult
from moola.sim.costs import (
    CommissionModel,
    FixedBps,
    SlippageModel,
    SlippageTerms,
    no_slippage,
)
from moola.sim.execution import ON_BREACH, ExecutionConfig
from moola.sim.instruments import Instrument
from moola.sim.limits import MaxOpenPositions, MaxPosition, RiskPerTrade, TradingHalt
from moola.sim.orders import (
    Order,
    OrderType,
    pays_costs,
    reference_price,
    triggered_at_open,
)
from moola.sim.portfolio import Portfolio
from moola.sim.propfirm import (
    DailyLossLimit,
    MinimumTradingDays,
    ProfitTarget,
    Rule,
    RuleStream,
    TotalLossLimit,
)
from moola.sim.vectorised import _timestamps

_LEVERAGE_TOLERANCE = 1e-9
_NO_FILLS: tuple = ()  # a bar without fills, shared (no list per bar)
_INF, _NEG_INF = math.inf, -math.inf
# Built-in rules whose stream never returns a Breach (a goal reached, or order limits).
_NEVER_BREACH: tuple[type, ...] = (
    ProfitTarget,
    MinimumTradingDays,
    MaxPosition,
    MaxOpenPositions,
    RiskPerTrade,
    TradingHalt,
)
# Built-in loss limits: the batch form gives the stream's breach (check_rule proves it).
_LOSS_LIMITS: tuple[type, ...] = (DailyLossLimit, TotalLossLimit)
BREACH_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "bar",
    "rule",
    "value",
    "limit",
    "detail",
    "flatten_qty",
)


class Bar(NamedTuple):
    """One bar as the broker takes it; ``time`` is its open time (a timestamp, or a number)."""

    time: Any
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0


class Fill(NamedTuple):
    """One fill, with the fields of ``moola.sim.FILL_COLUMNS``."""

    time: Any
    bar: int
    decision_bar: int
    order_id: int
    type: str
    qty: float
    price: float
    fee: float
    tag: str


@dataclasses.dataclass(frozen=True)
class Accepted:
    """The order is on the book (numbered; capped by the leverage limit when
    ``order.qty != requested_qty``)."""

    order: Order
    requested_qty: float

    @property
    def capped(self) -> bool:
        """True when the leverage limit reduced the order."""
        return self.order.qty != self.requested_qty


@dataclasses.dataclass(frozen=True)
class Denied:
    """The order was refused and never reached the book; ``reasons`` say why."""

    order: Order
    reasons: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class BrokerState:
    """A snapshot after the last bar: what a pre-trade check or a policy may read."""

    bar: int
    time: Any
    position: float
    cash: float
    equity: float
    open_orders: tuple[Order, ...]
    day_start_balance: float
    halted: str | None
    price: float = math.nan
    point_value: float = 1.0


class Broker:
    """Orders, fills and exact accounting of one instrument, stepped one bar at a time.

    Parameters
    ----------
    execution : ExecutionConfig
        The terms: instrument, cash, costs, latency and rules.
    symbol : str, default "ASSET"
        Names the instrument when the config gives only its kind (``"equity"``).
    rules : sequence, optional
        Rules (``moola.sim.Rule``, streamed), or objects with ``pre_trade(order, state)``
        and/or ``update(time, equity, fills)``; default the config's rules.
    on_breach : "record", "halt" or "flatten", optional
        What a rule breach does (module notes); default the config's ``on_breach``. Given
        here, it holds whatever the config's engine (a broker is always bar by bar).
    flatten_on_breach : bool, default False
        Same as ``on_breach="flatten"`` (kept from before ``on_breach``).
    """

    def __init__(
        self,
        execution: ExecutionConfig,
        *,
        symbol: str = "ASSET",
        rules: Sequence[object] | None = None,
        on_breach: Literal["record", "halt", "flatten"] | None = None,
        flatten_on_breach: bool = False,
    ) -> None:
        if not isinstance(execution, ExecutionConfig):
            raise ConfigError(
                f"Broker needs an ExecutionConfig, got {type(execution).__name__}; build one "
                "with moola.sim.ExecutionConfig(...)."
            )
        mode = execution.on_breach if on_breach is None else on_breach
        if mode not in ON_BREACH:
            raise ConfigError(f"on_breach={mode!r}; use one of {', '.join(ON_BREACH)}.")
        if flatten_on_breach:
            mode = "flatten"
        instrument = execution.build_instrument(symbol)
        commission = execution.build_commission()
        spread = np.asarray(execution.spread_value(), dtype=np.float64).reshape(-1)
        self._setup(
            instrument=instrument,
            initial_cash=execution.initial_cash,
            latency_bars=execution.latency_bars,
            half_spread=spread * 0.5,  # as SpreadModel.half_spread
            slippage=execution.build_slippage(),
            terms=None,
            commission=commission if commission is not None else instrument.commission,
            rules=execution.build_rules() if rules is None else tuple(rules),
            timezone=execution.timezone,
        )
        self.on_breach: str = mode
        self.flatten_on_breach = mode == "flatten"
        self.execution: ExecutionConfig | None = execution

    def _precomputed(self, *, half_spread: np.ndarray, terms: SlippageTerms) -> None:
        """Use per-bar costs computed ahead for all bars (the event engine, which holds
        them all: each term at bar ``i`` is still built from bars before ``i``, as the
        vectorised kernel builds it, so the two agree to the bit). Before the first bar."""
        self._half = half_spread
        self._half_per_bar = half_spread.shape[0] > 1
        self._terms, self._window, self._model = terms, None, None

    def _setup(
        self,
        *,
        instrument: Instrument,
        initial_cash: float,
        latency_bars: int,
        half_spread: np.ndarray,
        slippage: SlippageModel | None,
        terms: SlippageTerms | None,
        commission: CommissionModel | None,
        rules: tuple[object, ...],
        timezone: str,
    ) -> None:
        if not (math.isfinite(initial_cash) and initial_cash > 0):
            raise ConfigError(f"initial_cash must be a positive number; got {initial_cash!r}.")
        self.instrument = instrument
        self._pv = float(instrument.point_value)
        self.latency = int(latency_bars)
        self._half = half_spread
        self._half_per_bar = half_spread.shape[0] > 1
        self._model = slippage
        if terms is not None:
            self._terms, self._window = terms, None
        elif slippage is None:
            self._terms, self._window = no_slippage(), None
        elif isinstance(slippage, FixedBps):  # no history needed: the same terms every bar
            empty = np.zeros(0)
            self._terms, self._window = slippage.terms(empty, empty, empty, empty), None
        else:  # history-based: recomputed each bar from the last window (+2) bars
            self._terms, self._window = no_slippage(), int(getattr(slippage, "window", 0)) or -1
        self._commission = commission
        live = tuple(rule.stream() if isinstance(rule, Rule) else rule for rule in rules)
        self.rule_streams = live
        # A stream's inherited pre_trade only refuses once its own limit is breached: the
        # halt already does that (halt, flatten), and in record mode nothing may, so it is
        # not asked; that keeps ``state`` off the per-order path for the loss limits.
        self._pre_trade = tuple(
            rule.pre_trade
            for rule in live
            if hasattr(rule, "pre_trade")
            and getattr(type(rule), "pre_trade", None) is not RuleStream.pre_trade
        )
        self._updates = tuple(rule.update for rule in live if hasattr(rule, "update"))
        self._breached: set[Any] = set()  # the updates that breached (each recorded once)
        self._breaches: list[tuple] = []
        self._tz = timezone
        self.portfolio = Portfolio(initial_cash, instrument)
        self._times: list[Any] = []
        self._high: list[float] = []
        self._low: list[float] = []
        self._close: list[float] = []
        self._volume: list[float] = []
        self._equity: list[float] = []
        self._cash: list[float] = []
        self._position: list[float] = []
        self._pending: list[tuple[Order, int]] = []
        self._next_id = 0
        self._fills: list[Fill] = []
        self._rejections: list[tuple] = []
        self._halted: str | None = None
        self._day_end: int | None = None
        self._day_start = float(initial_cash)

    # ------------------------------------------------------------------ stepping

    def advance(self, bar: Bar) -> list[Fill]:
        """Bar ``i`` arrives: fill the orders due at its prices, then mark at its close.

        Returns this bar's fills. Raises ``BarValidationError`` for a non-finite price.
        """
        time, o, h, lo, c, volume = bar
        o, h, lo, c = float(o), float(h), float(lo), float(c)
        i = len(self._close)
        if not (_NEG_INF < o < _INF and _NEG_INF < h < _INF and _NEG_INF < lo < _INF) or not (
            _NEG_INF < c < _INF
        ):  # False for nan too; compares cost less than isfinite calls
            raise BarValidationError(
                f"Bar {i} at {time} has a non-finite price (open {o}, high {h}, low {lo}, "
                f"close {c}); drop or repair it before it reaches the broker."
            )
        if self._half_per_bar and i >= self._half.shape[0]:
            raise ConfigError(
                f"The spread has {self._half.shape[0]} per-bar values but bar {i} arrived; "
                "give one spread per bar, or one number."
            )
        self._times.append(time)
        self._close.append(c)
        if self._window is not None:  # history-based slippage reads the bars before i
            self._high.append(h)
            self._low.append(lo)
            self._volume.append(float(volume))
            self._terms = self._recent_terms(i)
        fills = self._fill_pending(i, o, h, lo) if self._pending else _NO_FILLS
        # Mark at the close (inline: this runs once per bar). The day rolls at most once
        # per calendar day, found with one integer compare per bar.
        if self._day_end is None or (
            time.value >= self._day_end if type(time) is pd.Timestamp else self._tz_applies(time)
        ):
            self._roll_day(time)
        pf = self.portfolio
        pf.last_price = c
        pf.last_time = time
        pf.bar += 1
        position = pf.position
        equity = pf.cash + position * (c - pf.avg_price) * self._pv  # == Portfolio.equity
        self._equity.append(equity)
        self._cash.append(pf.cash)
        self._position.append(position)
        if self._updates and self._halted is None:
            self._update_rules(i, time, fills)
        return fills if fills is not _NO_FILLS else []

    def mark(self, bar: Bar | None = None) -> float:
        """Mark the current bar at ``bar``'s close (a newer snapshot of the same bar, as a
        live feed gives); without ``bar`` return the equity at the last mark."""
        i = len(self._close) - 1
        if i < 0:
            raise ConfigError("mark() before the first bar: call advance(bar) first.")
        if bar is not None:
            if bar.time != self._times[i]:
                raise ConfigError(
                    f"mark(bar) re-marks the current bar (time {self._times[i]}); got a bar at "
                    f"{bar.time}. Give a new bar to advance(bar) instead."
                )
            close = float(bar.close)
            if not math.isfinite(close):
                raise BarValidationError(f"mark(bar): close {close} is not finite.")
            self._close[i] = close
            self.portfolio.last_price = close
            self._equity[i] = self.portfolio.equity
            if self._updates and self._halted is None:
                self._update_rules(i, bar.time, _NO_FILLS)
        return self._equity[i]

    def _update_rules(self, i: int, time: Any, fills: Sequence[Fill]) -> None:
        """Every rule sees the mark; a breach is recorded, then halts unless recording."""
        equity = self._equity[i]
        for update in self._updates:
            breach = update(time, equity, fills)
            if breach is not None and update not in self._breached:
                self._breached.add(update)
                self._on_breach(i, breach)
                if self._halted is not None:
                    return

    def _on_breach(self, i: int, breach: Any) -> None:
        if self.on_breach == "record":
            self._breaches.append(_breach_row(self._times[i], i, breach, 0.0))
            return
        position = self.portfolio.position
        flatten = -position if self.flatten_on_breach and position != 0.0 else 0.0
        self._breaches.append(_breach_row(self._times[i], i, breach, flatten))
        self.halt(f"{breach.rule} breached: {breach.detail}")
        if flatten:
            self._next_id += 1
            order = Order(qty=flatten, tag="flatten", id=self._next_id)
            self._pending.append((order, i))

    # ------------------------------------------------------------------ orders

    def submit(self, order: Order) -> Accepted | Denied:
        """Submit ``order``, decided at the current bar's close (module notes)."""
        if not isinstance(order, Order):
            raise ConfigError(
                f"submit() takes a moola.sim.Order, got {type(order).__name__} (make one "
                "with market(), limit() or stop())."
            )
        i = len(self._close) - 1
        if i < 0:
            raise ConfigError("submit() before the first bar: call advance(bar) first.")
        self._next_id += 1
        order = dataclasses.replace(order, id=self._next_id)
        time = self._times[i]
        if self._halted is not None:
            return self._deny(order, i, (f"broker halted: {self._halted}",))
        if self._pre_trade:
            state = self.state
            reasons = [reason for check in self._pre_trade for reason in check(order, state)]
            if reasons:
                return self._deny(order, i, tuple(str(r) for r in reasons))
        inst, pf = self.instrument, self.portfolio
        eff = pf.position
        for pending, _ in self._pending:
            if pending.type is OrderType.MARKET:
                eff = eff + pending.qty
        new = eff + order.qty
        reduces = abs(new) <= abs(eff) and (new == 0.0 or (new > 0.0) == (eff > 0.0))
        close, equity = self._close[i], pf.equity
        limit_value = inst.max_leverage * equity * (1.0 + _LEVERAGE_TOLERANCE)
        if reduces or abs(new) * close * inst.point_value <= limit_value:
            self._pending.append((order, i))
            return Accepted(order, order.qty)
        allowed = inst.units_for(inst.max_leverage, equity, close)
        keep = abs(eff) if (new > 0.0) == (eff > 0.0) else 0.0
        capped = math.copysign(max(allowed, keep), new)
        qty = capped - eff
        if abs(qty) <= inst.dust or (qty > 0.0) != (order.qty > 0.0):
            return self._deny(order, i, ("max_leverage",))
        self._rejections.append((time, i, order.id, order.qty, qty, "capped to max_leverage"))
        capped_order = dataclasses.replace(order, qty=qty)
        self._pending.append((capped_order, i))
        return Accepted(capped_order, order.qty)

    def _deny(self, order: Order, i: int, reasons: tuple[str, ...]) -> Denied:
        self._rejections.append((self._times[i], i, order.id, order.qty, 0.0, "; ".join(reasons)))
        return Denied(order, reasons)

    def cancel(self, order_id: int | Order) -> bool:
        """Withdraw a pending order (its id, or the order ``submit`` returned); True if it
        was pending."""
        oid = order_id.id if isinstance(order_id, Order) else int(order_id)
        before = len(self._pending)
        self._pending = [(o, b) for o, b in self._pending if o.id != oid]
        return len(self._pending) < before

    def cancel_all(self) -> None:
        """Withdraw every pending order."""
        self._pending = []

    def halt(self, reason: str) -> None:
        """Stop trading: pending orders are withdrawn and every later order is denied,
        naming ``reason``. (A rule breach will call this; so may a kill switch.)"""
        self._halted = str(reason)
        self._pending = []

    @property
    def pending(self) -> tuple[Order, ...]:
        """Orders on the book, in submission order."""
        return tuple(order for order, _ in self._pending)

    @property
    def state(self) -> BrokerState:
        """Position, cash, equity, open orders and start-of-day balance after the last bar."""
        pf = self.portfolio
        return BrokerState(
            bar=len(self._close) - 1,
            time=self._times[-1] if self._times else None,
            position=pf.position,
            cash=pf.cash,
            equity=pf.equity,
            open_orders=self.pending,
            day_start_balance=self._day_start,
            halted=self._halted,
            price=self._close[-1] if self._close else math.nan,
            point_value=self.instrument.point_value,
        )

    @property
    def breaches(self) -> pd.DataFrame:
        """Rule breaches (``BREACH_COLUMNS``): when, which rule, the measured value and
        limit, why, and the size of the flattening order (0 when none was placed)."""
        return pd.DataFrame(self._breaches, columns=list(BREACH_COLUMNS))

    @property
    def rejections(self) -> pd.DataFrame:
        """Denied and capped orders (``moola.sim.REJECTION_COLUMNS``)."""
        return pd.DataFrame(self._rejections, columns=list(REJECTION_COLUMNS))

    # ------------------------------------------------------------------ fills

    def _fill_pending(self, i: int, o_: float, h_: float, l_: float) -> list[Fill]:
        latency = self.latency
        eligible = [(o, b) for o, b in self._pending if b + latency <= i]
        if not eligible:
            return []

        def phase(item: tuple[Order, int]) -> int:
            order = item[0]
            if order.type is OrderType.MARKET:
                return 0
            if triggered_at_open(order, o_):
                return 1
            return 2 if order.type is OrderType.STOP else 3

        cancelled: set[int] = set()
        fills: list[Fill] = []
        for order, decided in sorted(eligible, key=phase):  # stable: keeps submission order
            if order.id in cancelled:
                continue
            ref = reference_price(order, o_, h_, l_)
            if ref is None:
                continue
            fills.append(self._execute(order, decided, i, ref))
            cancelled.add(order.id)
            if order.oco is not None:
                cancelled.update(o.id for o, _ in self._pending if o.oco == order.oco)
        self._pending = [(o, b) for o, b in self._pending if o.id not in cancelled]
        return fills

    def _execute(self, order: Order, decided: int, i: int, ref: float) -> Fill:
        q = order.qty
        if pays_costs(order):
            hs = self._half[i if self._half_per_bar else 0]
            adj = hs + self._terms.per_unit(i, ref, q)
            price = ref + adj if q > 0.0 else ref - adj
        else:
            price = ref
        fee = 0.0
        if self._commission is not None:
            fee = self._commission.fee(q, price, self.instrument.point_value)
        time = self._times[i]
        self.portfolio.fill(time, q, price, fee)
        fill = Fill(time, i, decided, order.id, str(order.type), q, price, fee, order.tag)
        self._fills.append(fill)
        return fill

    def _recent_terms(self, i: int) -> SlippageTerms:
        """Slippage terms of bar ``i`` from the bars before it (streaming)."""
        window = self._window if self._window is not None else -1
        start = 0 if window < 0 else max(0, i - window - 1)
        cols = [
            np.asarray(values[start:], dtype=np.float64)
            for values in (self._high, self._low, self._close, self._volume)
        ]
        assert self._model is not None
        terms = self._model.terms(*cols)
        return SlippageTerms(*(arr[-1:] for arr in terms))

    # ------------------------------------------------------------------ calendar days

    def _tz_applies(self, time: Any) -> bool:
        return isinstance(time, pd.Timestamp | np.datetime64) or hasattr(time, "tzinfo")

    def _roll_day(self, time: Any) -> None:
        """At the first mark of a new calendar day (in the config's timezone) the
        start-of-day balance becomes the equity of the last mark before it."""
        if not self._tz_applies(time):
            self._day_end = -1  # bar numbers, not times: no calendar days to roll
            return
        stamp = pd.Timestamp(time)
        if self._day_end is not None and stamp.value < self._day_end:
            return
        if stamp.tzinfo is None:
            stamp = stamp.tz_localize("UTC")
        local_midnight = stamp.tz_convert(self._tz).normalize().tz_localize(None)
        next_day = (local_midnight + pd.Timedelta(days=1)).tz_localize(
            self._tz, ambiguous=False, nonexistent="shift_forward"
        )
        if self._day_end is not None and self._equity:
            self._day_start = self._equity[-1]
        self._day_end = next_day.value

    # ------------------------------------------------------------------ the record

    def result(self, *, _stamps: np.ndarray | None = None) -> SimResult:
        """Everything so far as a :class:`SimResult` (the engines' result type)."""
        n = len(self._close)
        if _stamps is not None:
            stamps = _stamps
        elif n and self._tz_applies(self._times[0]):
            stamps = _timestamps(pd.DatetimeIndex(self._times), n)
        else:
            stamps = np.arange(n, dtype=np.int64)
        fills = pd.DataFrame(self._fills, columns=list(FILL_COLUMNS))
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
        pf = self.portfolio
        return SimResult(
            timestamp=stamps,
            equity=np.array(self._equity, dtype=np.float64),
            cash=np.array(self._cash, dtype=np.float64),
            position=np.array(self._position, dtype=np.float64),
            price=np.array(self._close, dtype=np.float64),
            fills=_typed_times(fills, stamps, ("timestamp",)),
            trades=_typed_times(pf.trades_frame(), stamps, ("entry_time", "exit_time")),
            initial_cash=float(pf.initial_cash),
            rejections=self.rejections,
        )


def _breach_row(time: Any, bar: int, breach: Any, flatten: float) -> tuple:
    """One row of ``BREACH_COLUMNS``."""
    return (time, bar, breach.rule, breach.value, breach.limit, breach.detail, flatten)


def stream_rules(
    rules: Sequence[object],
    times: Sequence[Any] | pd.DatetimeIndex,
    equity: Sequence[float] | np.ndarray,
    fills: Iterable[Fill] = (),
    *,
    days: Callable[[str], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Each rule's first breach when its stream sees a finished run bar by bar.

    The rules are fed the way a ``Broker`` in ``"record"`` mode feeds them: for bar ``i``,
    ``update(times[i], equity[i], fills of bar i)`` (``Fill.bar == i``), every rule on
    every bar. So a run the vectorised kernel made gets the breach table (``BREACH_COLUMNS``)
    the event engine's broker records on the same run, row for row (bar order, then rule
    order).

    Shortcut, same table: the built-in loss limits (:class:`DailyLossLimit`,
    :class:`TotalLossLimit`) on timestamped bars are located by their batch form, whose
    verdict ``moola.testing.check_rule`` proves equal to the stream's to the bit (the
    breach's time, value, limit and detail), in numpy rather than a Python step per bar;
    the built-in rules that never breach (profit target, trading days, order limits) are
    skipped. Any other rule is streamed. ``days``, when given, gives the calendar day of
    each of ``times`` in a time zone (``moola.sim.propfirm.BarDays.opens_in``), shared
    with the caller's other checks of the same bars instead of converted again.
    """
    located: list[tuple[int, int, tuple]] = []  # (bar, rule position, row)
    streamed: list[tuple[int, Any]] = []
    series: pd.Series | None = None  # the equity on the bar times, for the batch forms
    # read only here: the equity is not copied into the series (a copy is 8 MB per 1M bars)
    if isinstance(times, pd.DatetimeIndex) and times.tz is not None:
        series = pd.Series(np.asarray(equity, dtype=np.float64), index=times, copy=False)
    elif len(times) and isinstance(times[0], pd.Timestamp) and times[0].tzinfo is not None:
        values = np.asarray(equity, dtype=np.float64)
        series = pd.Series(values, index=pd.DatetimeIndex(times), copy=False)
    for k, rule in enumerate(rules):
        kind = type(rule)
        if kind in _NEVER_BREACH:
            continue
        if kind in _LOSS_LIMITS and series is not None:
            if days is not None and kind is DailyLossLimit:
                verdict = rule.check(series, days=days(rule.timezone))  # type: ignore[attr-defined]
            else:
                verdict = rule.check(series)  # type: ignore[attr-defined]
            if not verdict.passed:
                bar = int(series.index.get_loc(verdict.breach_time))
                row = (times[bar], bar, verdict.name, verdict.breach_value, verdict.limit)
                located.append((bar, k, (*row, verdict.detail, 0.0)))
            continue
        stream = rule.stream() if isinstance(rule, Rule) else rule
        if hasattr(stream, "update"):
            streamed.append((k, stream.update))
    if streamed:
        by_bar: dict[int, list[Fill]] = {}
        for fill in fills:
            by_bar.setdefault(int(fill.bar), []).append(fill)
        breached: set[int] = set()
        values = equity.tolist() if isinstance(equity, np.ndarray) else equity  # as a broker
        for i, (time, value) in enumerate(zip(times, values, strict=True)):
            bar_fills = by_bar.get(i, _NO_FILLS)
            for k, update in streamed:
                breach = update(time, value, bar_fills)
                if breach is not None and k not in breached:
                    breached.add(k)
                    located.append((i, k, _breach_row(time, i, breach, 0.0)))
    located.sort(key=lambda item: item[:2])
    return pd.DataFrame([row for _, _, row in located], columns=list(BREACH_COLUMNS))


def _typed_times(frame: pd.DataFrame, stamps: np.ndarray, columns) -> pd.DataFrame:
    """Give an empty table's time columns the dtype a non-empty one would have."""
    if frame.empty:
        for col in columns:
            if np.issubdtype(stamps.dtype, np.datetime64):
                frame[col] = pd.DatetimeIndex([], dtype="datetime64[ns, UTC]")
            else:
                frame[col] = frame[col].astype(stamps.dtype)
    return frame
