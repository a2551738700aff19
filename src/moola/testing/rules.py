"""``check_rule``: a risk rule's streaming form gives its batch verdict, bar by bar.

A rule has one implementation with two faces (``moola.sim.propfirm``): ``check(equity,
trades)`` judges a finished equity curve, and ``stream()`` judges one bar at a time, as
the broker, the trading environment and the live runtime use it. If the two disagreed, a
backtest would pass a challenge that live trading fails (or halt where the backtest did
not). This checker proves them equal on the paths it is given, run in CI with hypothesis
over every rule an ``ExecutionConfig`` can hold.

For each path it streams the bars in time order and, after every bar ``i``, requires:

- ``stream.result()`` equals ``rule.check`` on the path cut after bar ``i`` (name, verdict,
  breach time, breach value to the bit, limit, detail): the streaming state at bar ``i``
  holds exactly what bars ``0..i`` imply, and the batch verdict at ``i`` needs no later
  bar (no lookahead on either side);
- ``update`` returned a :class:`~moola.sim.Breach` at bar ``i`` exactly when the batch
  form first reports a failure at a time (a loss limit crossed) at bar ``i``, with that
  time and value;
- after a breach, ``pre_trade`` refuses an order, naming the rule.

An order rule (``MaxPosition``, ``MaxOpenPositions``, ``RiskPerTrade``, ``TradingHalt``)
judges orders, not equity, so its batch form over a curve is trivial; its proof is
:func:`check_order_rule`. A broker built from ``ExecutionConfig(rules=[rule])`` trades a
random bar path with random market, limit and stop orders, cancels and (half the time) a
halt, all drawn from one seed; then the finished record (fills, rejections, the driver's
log of orders and cancels) is replayed and held to the rule's promise, an
:class:`OrderInvariant` stated on the book without calling the rule: the promise holds
after every bar and every accepted order, every denial names the rule and would have
broken the promise, no accepted order breaks it, and after a halt every order is denied
naming the halt. The promises are about whatever fills: a position limit counts every
working order on a side (all buys, or all sells, may fill), so splitting an order or
stacking closing orders cannot get round it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError
from moola.sim import (
    Accepted,
    Bar,
    Broker,
    Denied,
    ExecutionConfig,
    Fill,
    MaxOpenPositions,
    MaxPosition,
    Order,
    RiskPerTrade,
    Rule,
    RuleResult,
    TradingHalt,
    limit,
    market,
    stop,
)
from moola.sim.execution import InstrumentSpec

EquityPath = pd.Series | tuple[pd.Series, Sequence[int]]


def _fill_at(time: Any, bar: int) -> Fill:
    return Fill(time, bar, max(bar - 1, 0), bar + 1, "market", 1.0, 1.0, 0.0, "check_rule")


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _diff(streamed: RuleResult, batch: RuleResult) -> list[str]:
    fields = ("name", "passed", "breach_time", "breach_value", "limit", "detail")
    return [
        f"{name}: streaming {getattr(streamed, name)!r} != batch {getattr(batch, name)!r}"
        for name in fields
        if not _same(getattr(streamed, name), getattr(batch, name))
    ]


def _split(path: EquityPath) -> tuple[pd.Series, list[int]]:
    if isinstance(path, tuple):
        equity, fill_bars = path
        return equity, sorted(int(b) for b in fill_bars)
    return path, []


def check_rule(
    rule: Rule,
    *paths: EquityPath,
    seed: int = 0,
    n_bars: int = 40,
    halt_at: int | None = -1,
    invariant: OrderInvariant | None = None,
) -> None:
    """Raise ``AssertionError`` unless ``rule`` keeps its word, streamed and batch.

    Every rule: on each equity path, its streaming form equals its batch form (module
    notes). An order rule (one with ``pre_trade``: the limits of ``moola.sim.limits``)
    also drives a broker with random orders and is held to its promise on the finished
    record (:func:`check_order_rule`); for it the paths are optional.

    Parameters
    ----------
    rule : moola.sim.Rule
        The rule, with its parameters.
    *paths : pd.Series or (pd.Series, sequence of int)
        Equity indexed by increasing timestamps; optionally with the bars at which a fill
        happened (one fill per entry; the batch form sees them as the trades table's
        ``entry_time``, as the backtest passes fills to ``MinimumTradingDays``).
    seed, n_bars, halt_at, invariant
        For an order rule: see :func:`check_order_rule`.
    """
    if not isinstance(rule, Rule):
        raise TypeError(f"check_rule takes a moola.sim.Rule, got {type(rule).__name__}")
    order_rule = is_order_rule(rule)
    if not paths and not order_rule:
        raise ValueError("check_rule needs at least one equity path")
    for number, path in enumerate(paths):
        equity, fill_bars = _split(path)
        if not equity.index.is_monotonic_increasing:
            raise ValueError(
                f"path {number}: the equity index must be increasing (bars arrive in order)"
            )
        _check_path(rule, number, equity, fill_bars)
    if order_rule:
        check_order_rule(rule, seed=seed, n_bars=n_bars, halt_at=halt_at, invariant=invariant)


def _check_path(rule: Rule, number: int, equity: pd.Series, fill_bars: Iterable[int]) -> None:
    stream = rule.stream()
    times = list(equity.index)
    values = equity.to_numpy(np.float64).tolist()
    fills_by_bar: dict[int, list[Fill]] = {}
    for bar in fill_bars:
        fills_by_bar.setdefault(bar, []).append(_fill_at(times[bar], bar))
    fill_times = [times[bar] for bar in sorted(fills_by_bar) for _ in fills_by_bar[bar]]
    breached = False
    for i, (time, value) in enumerate(zip(times, values, strict=True)):
        where = f"check_rule({rule!r}): path {number}, bar {i} ({time})"
        breach = stream.update(time, value, fills_by_bar.get(i, []))
        n_fills = sum(len(fills_by_bar.get(b, ())) for b in range(i + 1))
        trades = pd.DataFrame({"entry_time": pd.DatetimeIndex(fill_times[:n_fills])})
        batch = rule.check(equity.iloc[: i + 1], trades)
        problems = _diff(stream.result(), batch)
        batch_breach = not batch.passed and batch.breach_time is not None
        if breach is not None:
            if breached:
                problems.append("update returned a second breach")
            if not batch_breach or batch.breach_time != time:
                problems.append(f"update breached at {time}; batch says {batch.breach_time}")
            elif breach.value != batch.breach_value:
                problems.append(f"breach value {breach.value!r} != batch {batch.breach_value!r}")
            breached = True
        elif batch_breach and not breached:
            problems.append(f"batch breached at {batch.breach_time}; update returned None")
        if breached:
            reasons = stream.pre_trade(market(1.0), None)
            if not reasons or not any(rule.name in str(r) for r in reasons):
                problems.append(f"after the breach pre_trade allowed an order: {reasons!r}")
        if problems:
            raise AssertionError(f"{where}: " + "; ".join(problems))


# --------------------------------------------------------------------------- order rules


@dataclass(frozen=True)
class Book:
    """The book when an order was decided, as the finished record shows it: the position
    (the fills up to bar ``bar``), the working orders (accepted, not yet filled, cancelled
    or withdrawn; signed quantities in submission order), the bar's close and equity."""

    bar: int
    position: float
    working: tuple[float, ...]
    price: float
    equity: float
    point_value: float

    def side(self, buy: bool) -> float:
        """Units held if the position and every working order on one side filled."""
        return self.position + sum(w for w in self.working if (w > 0.0) == buy)


class OrderInvariant(ABC):
    """What an order rule promises, stated on the book (never by calling the rule).

    ``holds(book)`` is the promise at any moment (``None``: kept; else what breaks it);
    ``admits(book, qty)`` says whether accepting an order of ``qty`` units keeps it
    (``True``), breaks it (``False``) or sits on the limit within rounding (``None``:
    either answer is right); ``scale(price, equity, point_value)`` is an order size that
    probes the limit, so random orders land on both sides of it.
    """

    @abstractmethod
    def holds(self, book: Book) -> str | None: ...

    @abstractmethod
    def admits(self, book: Book, qty: float) -> bool | None: ...

    @abstractmethod
    def scale(self, price: float, equity: float, point_value: float) -> float: ...


_EDGE = 1e-9  # relative: a value this close to its limit may go either way


def _versus(value: float, limit: float) -> bool | None:
    """``value <= limit``, or None when the two are equal within rounding."""
    if abs(value - limit) <= _EDGE * max(abs(limit), 1.0):
        return None
    return value < limit


@dataclass(frozen=True)
class _MaxPositionPromise(OrderInvariant):
    """|position + working orders on either side| <= units: whichever of the working
    orders fill, the position stays within ``units`` (the worst cases are all buys or all
    sells filling)."""

    units: float

    def holds(self, book: Book) -> str | None:
        for buy in (True, False):
            total = book.side(buy)
            if _versus(abs(total), self.units) is False:
                side = "buy" if buy else "sell"
                return f"position + working {side} orders = {total:g} units, limit {self.units:g}"
        return None

    def admits(self, book: Book, qty: float) -> bool | None:
        before = book.side(qty > 0.0)
        after = before + qty
        if abs(after) <= abs(before):  # toward flat on its side: cannot break the limit
            return True
        return _versus(abs(after), self.units)

    def scale(self, price: float, equity: float, point_value: float) -> float:
        return self.units


def _adds(position: float, qty: float) -> bool:
    return abs(position + qty) > abs(position)


_MAX_SUBSETS_OF = 12  # working orders beyond which "whatever fills" is not enumerated


@dataclass(frozen=True)
class _MaxOpenPositionsPromise(OrderInvariant):
    """The open position plus the working orders that would add to it: at most ``count``,
    now and whichever of the working orders fill (any subset of them, in any order)."""

    count: int

    def _worst(self, position: float, working: tuple[float, ...]) -> int | None:
        """The most entries any set of fills can leave (None: too many orders to try)."""
        n = len(working)
        if n > _MAX_SUBSETS_OF:
            return None
        worst = 0
        for mask in range(1 << n):
            held = position + sum(w for j, w in enumerate(working) if mask >> j & 1)
            entries = sum(1 for j, w in enumerate(working) if not mask >> j & 1 and _adds(held, w))
            worst = max(worst, (held != 0.0) + entries)
        return worst

    def holds(self, book: Book) -> str | None:
        worst = self._worst(book.position, book.working)
        if worst is not None and worst > self.count:
            return (
                f"fills of the working orders can leave {worst} open position(s) and entry "
                f"orders, limit {self.count}"
            )
        return None

    def admits(self, book: Book, qty: float) -> bool | None:
        after = self._worst(book.position, (*book.working, qty))
        if after is None:
            return None
        if after <= self.count:
            return True
        before = self._worst(book.position, book.working)
        return before is not None and after <= before

    def scale(self, price: float, equity: float, point_value: float) -> float:
        return 1.0


@dataclass(frozen=True)
class _RiskPerTradePromise(OrderInvariant):
    """An order adds exposure risking at most ``pct`` of equity on a ``stop_pct`` move."""

    pct: float
    stop_pct: float

    def holds(self, book: Book) -> str | None:
        return None  # a promise about each order, judged by admits

    def admits(self, book: Book, qty: float) -> bool | None:
        added = abs(book.position + qty) - abs(book.position)
        if added <= 0.0:
            return True
        risk = added * book.price * book.point_value * self.stop_pct
        return _versus(risk, self.pct * book.equity)

    def scale(self, price: float, equity: float, point_value: float) -> float:
        return self.pct * equity / (price * point_value * self.stop_pct)


@dataclass(frozen=True)
class _NoOrderPromise(OrderInvariant):
    """Nothing is ever accepted, so nothing is held or working."""

    def holds(self, book: Book) -> str | None:
        if book.position != 0.0 or book.working:
            return f"position {book.position:g} with {len(book.working)} working order(s)"
        return None

    def admits(self, book: Book, qty: float) -> bool | None:
        return False

    def scale(self, price: float, equity: float, point_value: float) -> float:
        return 1.0


def order_invariant(rule: Rule) -> OrderInvariant:
    """The promise of a registered order rule (a subclass is held to its parent's)."""
    if isinstance(rule, MaxPosition):
        return _MaxPositionPromise(float(rule.units))
    if isinstance(rule, MaxOpenPositions):
        return _MaxOpenPositionsPromise(int(rule.count))
    if isinstance(rule, RiskPerTrade):
        return _RiskPerTradePromise(float(rule.pct), float(rule.stop_pct))
    if isinstance(rule, TradingHalt):
        return _NoOrderPromise()
    raise TypeError(
        f"check_rule knows no promise for the order rule {type(rule).__name__}; pass "
        "invariant=... (a moola.testing.rules.OrderInvariant) stating what it guarantees."
    )


def is_order_rule(rule: object) -> bool:
    """True for a rule that judges orders itself (has ``pre_trade``), not only equity."""
    return isinstance(rule, Rule) and callable(getattr(rule, "pre_trade", None))


_HALT_REASON = "check_rule kill switch"


@dataclass
class _Step:
    """One thing the driver did, in order: a bar arrived, an order, a cancel, a halt."""

    what: str
    bar: int
    order: Order | None = None
    outcome: Accepted | Denied | None = None
    order_id: int | None = None


def _bars(rng: np.random.Generator, n_bars: int) -> list[Bar]:
    """A random hourly OHLC path near 100: 1% moves, small gaps, wicks around the body."""
    times = pd.date_range("2024-03-04 00:00", periods=n_bars, freq="1h", tz="UTC")
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n_bars)))
    prev = np.concatenate(([100.0], close[:-1]))
    open_ = prev * np.exp(rng.normal(0.0, 0.002, n_bars))
    wick = np.abs(rng.normal(0.0, 0.004, (2, n_bars)))
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    return [
        Bar(t, o, h, lo, c) for t, o, h, lo, c in zip(times, open_, high, low, close, strict=True)
    ]


def _random_order(rng: np.random.Generator, size: float, close: float) -> Order:
    """Market (half), limit or stop; 1/4 to 2 times ``size`` (quarters: sums stay exact)."""
    qty = float(rng.integers(1, 9)) * size / 4.0
    qty = qty if rng.random() < 0.5 else -qty
    kind = rng.random()
    if kind < 0.5:
        return market(qty, tag="check")
    level = close * (1.0 + float(rng.normal(0.0, 0.01)))
    return limit(qty, level, tag="check") if kind < 0.75 else stop(qty, level, tag="check")


def _broker_for(rule: Rule, latency: int) -> Broker:
    """A broker on ``ExecutionConfig(rules=[rule])`` (proving the config rebuilds the rule
    as given); a rule no config can hold is passed to the broker directly. Ample cash and
    leverage, so the leverage cap stays out of the rule's way."""
    terms = {
        "instrument": InstrumentSpec(symbol="CHECK", max_leverage=1e6),
        "initial_cash": 1_000_000.0,
        "latency_bars": latency,
    }
    try:
        config = ExecutionConfig(**terms, rules=[rule])
    except ConfigError:
        return Broker(ExecutionConfig(**terms, rules=[]), rules=[rule])
    if config.build_rules() != (rule,):
        raise AssertionError(
            f"check_rule({rule!r}): ExecutionConfig(rules=[rule]) rebuilds it as "
            f"{config.build_rules()!r}"
        )
    return Broker(config)


def check_order_rule(
    rule: Rule,
    *,
    seed: int = 0,
    n_bars: int = 40,
    halt_at: int | None = -1,
    invariant: OrderInvariant | None = None,
) -> None:
    """Raise ``AssertionError`` unless ``rule``'s pre-trade check keeps its promise.

    A :class:`~moola.sim.Broker` built from ``ExecutionConfig(rules=[rule])`` trades a
    random bar path with random market, limit and stop orders and cancels (all drawn from
    ``seed``: one seed, one run). Then the finished record (fills, rejections, the
    driver's own log of orders and cancels) is judged against the rule's promise
    (:func:`order_invariant`), without asking the rule:

    (a) the promise holds over the whole run: after every bar and every accepted order;
    (b) every order the rule denied would have broken it, and the denial names the rule;
    (c) no accepted order broke it (no false accepts);
    (d) after a halt (:meth:`Broker.halt`, the kill switch) every order is denied naming
        the halt.

    Parameters
    ----------
    rule : moola.sim.Rule
        An order rule (one with ``pre_trade``), with its parameters.
    seed : int, default 0
        Draws the bars, the orders, the latency and (``halt_at=-1``) the halt.
    n_bars : int, default 40
        Bars in the run (about 1.5 orders each).
    halt_at : int or None, default -1
        The bar after which the broker is halted; ``None``: never; ``-1``: drawn from the
        seed (half the runs halt somewhere in their second half).
    invariant : OrderInvariant, optional
        The promise, for an order rule moola does not register.
    """
    if not is_order_rule(rule):
        raise TypeError(f"check_order_rule takes a rule with pre_trade; got {rule!r}")
    promise = invariant if invariant is not None else order_invariant(rule)
    if n_bars < 2:
        raise ValueError(f"n_bars must be at least 2; got {n_bars}")
    rng = np.random.default_rng(seed)
    if halt_at == -1:
        halt_at = int(rng.integers(n_bars // 2, n_bars)) if rng.random() < 0.5 else None
    broker = _broker_for(rule, latency=int(rng.integers(1, 3)))
    steps = _drive(broker, rng, _bars(rng, n_bars), promise, halt_at)
    where = f"check_rule({rule!r}, seed={seed}, n_bars={n_bars}, halt_at={halt_at})"
    problems = _judge(rule, promise, broker, steps)
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise AssertionError(f"{where}: {shown}")


def _drive(
    broker: Broker,
    rng: np.random.Generator,
    bars: list[Bar],
    promise: OrderInvariant,
    halt_at: int | None,
) -> list[_Step]:
    steps: list[_Step] = []
    for i, bar in enumerate(bars):
        broker.advance(bar)
        steps.append(_Step("bar", i))
        if halt_at is not None and i == halt_at:
            broker.halt(_HALT_REASON)
            steps.append(_Step("halt", i))
        state = broker.state
        size = promise.scale(state.price, state.equity, state.point_value)
        for _ in range(int(rng.poisson(1.5))):
            order = _random_order(rng, size, bar.close)
            steps.append(_Step("submit", i, order, broker.submit(order)))
        pending = broker.pending
        if pending and rng.random() < 0.15:
            victim = pending[int(rng.integers(len(pending)))]
            broker.cancel(victim)
            steps.append(_Step("cancel", i, order_id=victim.id))
    return steps


def _judge(rule: Rule, promise: OrderInvariant, broker: Broker, steps: list[_Step]) -> list[str]:
    """Replay the finished record and hold every order to the promise (a)-(d)."""
    result = broker.result()
    fills_at: dict[int, list[tuple[int, float]]] = {}
    for fill in result.fills.itertuples(index=False):
        fills_at.setdefault(int(fill.bar), []).append((int(fill.order_id), float(fill.qty)))
    rejected = {int(r.order_id): r for r in result.rejections.itertuples(index=False)}
    point_value = broker.instrument.point_value
    problems: list[str] = []
    working: dict[int, float] = {}  # accepted order id -> signed units still to fill
    position, halted = 0.0, False

    def book(i: int) -> Book:
        return Book(i, position, tuple(working.values()), float(result.price[i]),
                    float(result.equity[i]), point_value)  # fmt: skip

    for step in steps:
        i = step.bar
        if step.what == "bar":
            for oid, qty in fills_at.get(i, ()):
                if working.pop(oid, None) is None:
                    problems.append(f"bar {i}: order {oid} filled but was not working")
                position += qty
            if abs(position - float(result.position[i])) > 1e-9 * max(1.0, abs(position)):
                problems.append(
                    f"bar {i}: the fills add up to {position:g} units, the record holds "
                    f"{result.position[i]:g}"
                )
            if (broken := promise.holds(book(i))) is not None:
                problems.append(f"(a) bar {i}, after its fills: {broken}")
        elif step.what == "halt":
            halted = True
            working.clear()
        elif step.what == "cancel":
            working.pop(int(step.order_id), None)
        else:
            problems += _judge_order(rule, promise, book(i), step, rejected, halted, working)
    return problems


def _judge_order(
    rule: Rule,
    promise: OrderInvariant,
    book: Book,
    step: _Step,
    rejected: dict[int, Any],
    halted: bool,
    working: dict[int, float],
) -> list[str]:
    outcome, order = step.outcome, step.order
    assert outcome is not None and order is not None
    oid = int(outcome.order.id)
    what = f"bar {book.bar}, order {oid} ({order.type} {order.qty:g})"
    row = rejected.get(oid)
    if isinstance(outcome, Denied):
        reasons = "; ".join(outcome.reasons)
        if row is None or float(row.accepted_qty) != 0.0:
            return [f"{what}: denied, but the rejections table does not record it as denied"]
        if halted:
            if not any("broker halted" in r and _HALT_REASON in r for r in outcome.reasons):
                return [f"(d) {what}: denied after the halt without naming it: {reasons}"]
            return []
        if any(rule.name in r for r in outcome.reasons):
            if promise.admits(book, order.qty) is True:
                return [f"(b) {what}: denied, yet accepting it keeps the promise: {reasons}"]
            return []
        if all(r == "max_leverage" for r in outcome.reasons):
            return []
        return [f"(b) {what}: denied for reasons that do not name {rule.name}: {reasons}"]
    if halted:
        return [f"(d) {what}: accepted after the broker was halted"]
    accepted = float(outcome.order.qty)
    if (row is None) != (accepted == order.qty) or (
        row is not None and float(row.accepted_qty) != accepted
    ):
        return [f"{what}: accepted {accepted:g}, but the rejections table says otherwise"]
    problems = []
    if promise.admits(book, order.qty) is False:
        problems.append(f"(c) {what}: accepted, yet it breaks the promise of {rule.name}")
    working[oid] = accepted
    after = Book(book.bar, book.position, tuple(working.values()), book.price, book.equity,
                 book.point_value)  # fmt: skip
    if not problems and (broken := promise.holds(after)) is not None:
        problems.append(f"(a) {what}: accepted, after which {broken}")
    return problems
