"""The risk gate: the backtest's own rule objects, judging live orders and live equity.

``RiskGate`` builds the rules ``moola backtest`` uses, from ``moola.sim`` (no second
implementation): :class:`~moola.sim.DailyLossLimit` (``daily_loss`` of start-of-day equity,
calendar days in the execution config's time zone), :class:`~moola.sim.TotalLossLimit`
(``total_loss`` of the initial equity), :class:`~moola.sim.MaxPosition` (units per symbol),
:class:`~moola.sim.MaxOpenPositions` and :class:`~moola.sim.RiskPerTrade`. It drives their
streaming forms the way :class:`moola.sim.Broker` does:

- ``update(time, equity, fills)`` after every mark feeds each loss limit's stream
  (``stream.update``); the first :class:`~moola.sim.Breach` halts the gate and asks for the
  position to be flattened (``flatten_requested``), as a broker with ``on_breach="flatten"``
  does. Since the streams are the rules' own, the bar where the gate halts is the bar where
  ``rule.check`` on the finished equity curve reports the breach (a test proves it).
- ``check(intent, account)`` asks every stream's ``pre_trade(order, state)`` with a
  :class:`~moola.sim.BrokerState` built from the account, and returns the reasons (empty:
  allowed). While halted every check is denied, naming the breach, until a person calls
  ``unlock(person, reason)``; the unlock is recorded in the state.

Across symbols. A sim broker holds one instrument, so ``MaxOpenPositions`` counts one
symbol's position and entry orders; live, ``max_open_positions`` is the number of symbols
held at once, so an order that would open a position in a flat symbol while
``account.other_open_positions`` symbols are already held at the limit is denied too,
under the same rule name.

Risk per trade. ``RiskPerTrade`` judges an order by the loss at a stop ``stop_pct`` of the
price away; live, the stop is ``atr_multiple`` ATRs away (``moola.runtime.sizing``), so
``check(..., stop_distance=...)`` judges the order with ``RiskPerTrade(pct=risk_per_trade,
stop_pct=stop_distance / price)``: the same rule class, at the order's own stop. A size
from ``position_size`` with the same stop is always allowed.

Unlock. Every breached limit's stream is restarted on the equity at the unlock (a fresh
stream of the same rule, fed the last mark): the person accepts the loss so far, and the
limit measures from there. The other limits' streams go on as they were. A limit breached
while the gate was already halted is listed in the halt (``"also"``), so the person who
unlocks sees it. The flatten the gate requests is the engine's to send: ``check`` judges
new orders, and while halted it refuses them all.

State. ``state()`` is a JSON value (the streams' running values, the halt, every breach and
unlock) that the engine stores in the journal; ``load_state`` puts it back into a gate built
from the current settings, so a restart halts and denies exactly as an uninterrupted run.
The loss-limit streams save and restore their own running values (start-of-day balance,
initial balance, extremes, the breach): ``RuleStream.state`` / ``load_state`` of
``moola.sim.propfirm``.

Pure computing: no I/O, no clock; times and equities are passed in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import pandas as pd

from moola.core.errors import ConfigError
from moola.core.numbers import as_number
from moola.sim import (
    Breach,
    BrokerState,
    DailyLossLimit,
    ExecutionConfig,
    MaxOpenPositions,
    MaxPosition,
    RiskPerTrade,
    TotalLossLimit,
    market,
)

__all__ = ["AccountState", "RiskGate"]

_STATE_VERSION = 2  # 2: the streams' own state() (moola.sim), not their attributes


class OrderLike(Protocol):
    """What ``check`` reads of an order intent (``moola.runtime.brokers.OrderIntent``)."""

    side: str
    qty: float


@dataclasses.dataclass(frozen=True)
class AccountState:
    """The account as the order's symbol sees it, when the order is judged.

    ``position``: signed units held in the symbol; ``open_orders``: the signed quantities
    of its working orders; ``equity``: the account's equity; ``price``: the symbol's last
    close; ``other_open_positions``: how many other symbols hold a position;
    ``point_value``: money per unit per price unit (1 for spot crypto).
    """

    equity: float
    price: float
    position: float = 0.0
    open_orders: tuple[float, ...] = ()
    other_open_positions: int = 0
    cash: float = math.nan
    point_value: float = 1.0
    time: Any = None


def _positive(name: str, value: Any, *, fraction: bool = False, whole: bool = False) -> str:
    """'' when ``value`` is a valid setting, else the complaint naming it."""
    if whole:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{name}={value!r} (a whole number >= 1)"
        return ""
    number = as_number(value)
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0.0:
        return f"{name}={value!r} (a finite number > 0{', at most 1' if fraction else ''})"
    if fraction and number > 1.0:
        return f"{name}={value!r} (a fraction of equity, in (0, 1])"
    return ""


def _signed_qty(intent: Any) -> float:
    """The intent's signed units: ``side`` + positive ``qty``, or a signed ``qty`` alone."""
    side = getattr(intent, "side", None)
    try:
        qty = float(intent.qty)
    except (AttributeError, TypeError, ValueError):
        raise ConfigError(
            f"intent={intent!r}: give an order intent with side ('buy'/'sell') and qty.",
            param="intent",
        ) from None
    if side is None:
        if not math.isfinite(qty) or qty == 0.0:
            raise ConfigError(f"intent qty={qty!r}: must be finite and non-zero.", param="intent")
        return qty
    if side not in ("buy", "sell") or not math.isfinite(qty) or qty <= 0.0:
        raise ConfigError(
            f"intent side={side!r}, qty={qty!r}: side must be 'buy' or 'sell' and qty a "
            "finite number > 0.",
            param="intent",
        )
    return qty if side == "buy" else -qty


def _float(value: Any) -> float:
    """``value`` as a float; NaN when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _num(value: float) -> float | str:
    """A float as JSON: non-finite values as strings (JSON has no infinity)."""
    return value if math.isfinite(value) else repr(value)


def _unnum(value: float | str) -> float:
    return float(value)


def _iso(time: Any) -> str:
    return pd.Timestamp(time).isoformat()


def _stamp(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def _breach_dict(breach: Breach) -> dict[str, Any]:
    return {
        "rule": breach.rule,
        "time": _iso(breach.time),
        "value": _num(breach.value),
        "limit": breach.limit,
        "detail": breach.detail,
    }


def _breach_of(data: Mapping[str, Any] | None) -> Breach | None:
    if data is None:
        return None
    return Breach(
        data["rule"],
        _stamp(data["time"]),
        _unnum(data["value"]),
        float(data["limit"]),
        data["detail"],
    )


class RiskGate:
    """Pre-trade checks and loss limits for the live engine (module notes).

    Parameters
    ----------
    execution : ExecutionConfig
        The execution terms; its ``timezone`` says where calendar days start for the daily
        loss limit (as in the backtest's broker).
    max_position : float
        Units held per symbol at most, long or short, counting working orders.
    max_open_positions : int
        Symbols held at once (and, per symbol, position plus entry orders).
    risk_per_trade : float, default 0.01
        Fraction of equity an order may lose at its stop.
    daily_loss, total_loss : float, default 0.05 and 0.10
        Loss limits as fractions of start-of-day and initial equity.
    stop_pct : float, default 0.01
        The stop distance (fraction of price) ``RiskPerTrade`` assumes when ``check`` is
        not given the order's own ``stop_distance``.
    initial_equity : float, optional
        The total loss limit's base; default the first equity ``update`` sees.
    """

    def __init__(
        self,
        execution: ExecutionConfig,
        *,
        max_position: float,
        max_open_positions: int,
        risk_per_trade: float = 0.01,
        daily_loss: float = 0.05,
        total_loss: float = 0.10,
        stop_pct: float = 0.01,
        initial_equity: float | None = None,
    ) -> None:
        if not isinstance(execution, ExecutionConfig):
            raise ConfigError(
                f"execution: RiskGate needs an ExecutionConfig, got {type(execution).__name__}.",
                param="execution",
            )
        bad = [
            _positive("max_position", max_position),
            _positive("max_open_positions", max_open_positions, whole=True),
            _positive("risk_per_trade", risk_per_trade, fraction=True),
            _positive("daily_loss", daily_loss, fraction=True),
            _positive("total_loss", total_loss, fraction=True),
            _positive("stop_pct", stop_pct, fraction=True),
        ]
        if initial_equity is not None:
            bad.append(_positive("initial_equity", initial_equity))
        bad = [b for b in bad if b]
        if bad:
            raise ConfigError(
                "RiskGate: invalid risk settings: " + "; ".join(bad) + ".",
                param=bad[0].split("=")[0],
            )
        self.execution = execution
        initial = None if initial_equity is None else float(initial_equity)
        self.daily_limit = DailyLossLimit(
            pct=float(daily_loss),
            timezone=execution.timezone,
            basis="start_of_day",
            initial_balance=initial,
        )
        self.total_limit = TotalLossLimit(pct=float(total_loss), initial_balance=initial)
        self.max_position = MaxPosition(units=float(max_position))
        self.max_open_positions = MaxOpenPositions(count=int(max_open_positions))
        self.risk_per_trade = RiskPerTrade(pct=float(risk_per_trade), stop_pct=float(stop_pct))
        self._loss_streams = {
            self.daily_limit.name: self.daily_limit.stream(),
            self.total_limit.name: self.total_limit.stream(),
        }
        self._halt: dict[str, Any] | None = None
        self._breaches: list[dict[str, Any]] = []
        self._unlocks: list[dict[str, Any]] = []
        self._last: tuple[pd.Timestamp, float] | None = None

    # ------------------------------------------------------------------ the rules

    @property
    def rules(self) -> tuple[Any, ...]:
        """The rule objects, as ``ExecutionConfig(rules=...)`` takes them (so a backtest
        of the same signals runs under the same rules)."""
        return (
            self.daily_limit,
            self.total_limit,
            self.max_position,
            self.max_open_positions,
            self.risk_per_trade,
        )

    def backtest_execution(self) -> ExecutionConfig:
        """The execution config with these rules, flattening on a breach (event engine):
        what ``moola backtest`` runs to trade as this gate does."""
        values = self.execution.model_dump()
        values.update(rules=self.rules, engine="event", on_breach="flatten")
        return ExecutionConfig(**values)

    # ------------------------------------------------------------------ orders

    def check(
        self, intent: OrderLike | Any, account: AccountState, *, stop_distance: float | None = None
    ) -> list[str]:
        """Reasons to refuse ``intent`` (empty: allowed), from every rule's ``pre_trade``.

        While halted the only reason is the halt, naming the breach. An account that cannot
        be judged (equity or price not finite, price not positive) is refused with the
        reason: risk fails closed."""
        qty = _signed_qty(intent)
        if self._halt is not None:
            return [f"risk gate halted: {self._halt['reason']}; a person must unlock it"]
        bad = self._unjudgeable(account, stop_distance)
        if bad:
            return [bad]
        order = market(qty)
        state = BrokerState(
            bar=-1,
            time=account.time,
            position=float(account.position),
            cash=float(account.cash),
            equity=float(account.equity),
            open_orders=tuple(market(float(q)) for q in account.open_orders if q),
            day_start_balance=math.nan,
            halted=None,
            price=float(account.price),
            point_value=float(account.point_value),
        )
        risk_rule = self.risk_per_trade
        if stop_distance is not None:
            risk_rule = RiskPerTrade(
                pct=risk_rule.pct, stop_pct=float(stop_distance) / float(account.price)
            )
        reasons: list[str] = []
        for stream in (
            *self._loss_streams.values(),
            self.max_position,
            self.max_open_positions,
            risk_rule,
        ):
            reasons.extend(str(r) for r in stream.pre_trade(order, state))
        count = self.max_open_positions.count
        others = int(account.other_open_positions)
        opens = state.position == 0.0 and abs(qty) > 0.0
        if opens and others + 1 > count:
            reasons.append(
                f"{self.max_open_positions.name}: {others} other symbol(s) hold a position; "
                f"this order would open one more; limit {count}"
            )
        return reasons

    @staticmethod
    def _unjudgeable(account: AccountState, stop_distance: float | None) -> str:
        """Why ``account`` (or ``stop_distance``) cannot be judged, or ''."""
        positive = ("equity", "price", "point_value")
        for name in ("equity", "price", "position", "point_value"):
            value = getattr(account, name)
            number = _float(value)
            if not math.isfinite(number) or (name in positive and number <= 0):
                return f"account {name} is {value!r}: the order cannot be judged (fail closed)"
        if any(not math.isfinite(_float(q)) for q in account.open_orders):
            return f"account open_orders {account.open_orders!r} are not all finite (fail closed)"
        others = account.other_open_positions
        if isinstance(others, bool) or not isinstance(others, int) or others < 0:
            return (
                f"account other_open_positions is {others!r}, not a count of symbols (fail closed)"
            )
        if stop_distance is not None:
            distance = _float(stop_distance)
            if not (math.isfinite(distance) and distance > 0):
                return f"stop_distance {stop_distance!r} is not a positive distance (fail closed)"
        return ""

    # ------------------------------------------------------------------ equity

    def update(self, time: Any, equity: float, fills: Sequence[Any] = ()) -> Breach | None:
        """Feed the mark at ``time`` to every loss limit not yet breached; return the first
        new breach (the first one also halts the gate and requests a flatten), else None.

        ``time`` must not go back (``ConfigError``); a non-finite equity is a
        ``ConfigError`` naming the rule (from the rule's stream)."""
        stamp = pd.Timestamp(time)
        if stamp.tzinfo is None:
            stamp = stamp.tz_localize("UTC")
        if self._last is not None and stamp < self._last[0]:
            raise ConfigError(
                f"update: time {stamp} is before the last mark {self._last[0]}; marks must "
                "come in time order.",
                param="time",
            )
        value = float(equity)
        first: Breach | None = None
        for stream in self._loss_streams.values():
            if stream.breach is not None:  # type: ignore[attr-defined]
                continue
            breach = stream.update(stamp, value, fills)
            if breach is not None:
                self._breaches.append(_breach_dict(breach))
                first = first or breach
        self._last = (stamp, value)
        if first is not None:
            if self._halt is None:
                self._halt = {
                    **_breach_dict(first),
                    "reason": f"{first.rule} breached: {first.detail}",
                    "flatten": True,
                    "also": [],
                }
            else:  # breached while halted: the person who unlocks sees it too
                self._halt["also"].append(f"{first.rule} breached: {first.detail}")
        return first

    @property
    def halted(self) -> str | None:
        """Why the gate is halted (the breach), or None."""
        return None if self._halt is None else self._halt["reason"]

    @property
    def flatten_requested(self) -> bool:
        """True while halted by a loss limit: the engine closes every position."""
        return self._halt is not None and bool(self._halt.get("flatten"))

    @property
    def breaches(self) -> list[dict[str, Any]]:
        """Every breach so far (rule, time, value, limit, detail), oldest first."""
        return [dict(b) for b in self._breaches]

    @property
    def unlocks(self) -> list[dict[str, Any]]:
        """Every unlock so far (person, reason, time, the halt it lifted)."""
        return [dict(u) for u in self._unlocks]

    def unlock(self, person: str, reason: str) -> dict[str, Any]:
        """Lift the halt: ``person`` and ``reason`` (both non-empty) are recorded with the
        halt they lift; the breached limit restarts on the last equity (module notes).
        Returns the record. Not halted: ``ConfigError``."""
        for name, value in (("person", person), ("reason", reason)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(
                    f"unlock: {name}={value!r}; say who unlocks and why (non-empty text).",
                    param=name,
                )
        if self._halt is None:
            raise ConfigError("unlock: the risk gate is not halted; nothing to unlock.")
        restarted = []
        for name, stream in list(self._loss_streams.items()):
            if stream.breach is None:  # type: ignore[attr-defined]
                continue
            restarted.append(name)
            rule = dataclasses.replace(stream.rule, initial_balance=None)  # type: ignore[call-arg]
            fresh = rule.stream()
            if self._last is not None:
                fresh.update(self._last[0], self._last[1], ())
            self._loss_streams[name] = fresh
        record = {
            "person": person.strip(),
            "reason": reason.strip(),
            "time": None if self._last is None else _iso(self._last[0]),
            "equity": None if self._last is None else _num(self._last[1]),
            "lifted": dict(self._halt),
            "restarted": restarted,
        }
        self._unlocks.append(record)
        self._halt = None
        return dict(record)

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """JSON value: the streams' running values, the halt, breaches and unlocks."""
        return {
            "version": _STATE_VERSION,
            "streams": {name: s.state() for name, s in self._loss_streams.items()},
            "halt": None if self._halt is None else dict(self._halt),
            "breaches": self.breaches,
            "unlocks": self.unlocks,
            "last": None
            if self._last is None
            else {"time": _iso(self._last[0]), "equity": _num(self._last[1])},
        }

    def load_state(self, state: Mapping[str, Any]) -> RiskGate:
        """Put ``state()`` back into this gate (built from the current settings); returns
        the gate. A state that cannot be read is a ``ConfigError``: the engine then refuses
        to trade rather than start without its halt and loss history."""
        try:
            if state.get("version") != _STATE_VERSION:
                raise ConfigError(
                    f"risk state version {state.get('version')!r}; this moola reads version "
                    f"{_STATE_VERSION}.",
                    param="state",
                )
            streams = {}
            for name, stream in self._loss_streams.items():
                fresh = stream.rule.stream()
                fresh.load_state(state["streams"][name])
                streams[name] = fresh
            halt = state["halt"]
            last = state["last"]
            self._loss_streams = streams
            self._halt = None if halt is None else dict(halt)
            self._breaches = [dict(b) for b in state["breaches"]]
            self._unlocks = [dict(u) for u in state["unlocks"]]
            self._last = None if last is None else (_stamp(last["time"]), _unnum(last["equity"]))
        except ConfigError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"risk state cannot be read ({type(exc).__name__}: {exc}); expected "
                "RiskGate.state()'s form.",
                param="state",
            ) from None
        return self

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], execution: ExecutionConfig, **settings: Any
    ) -> RiskGate:
        """``RiskGate(execution, **settings)`` with ``state`` loaded (``load_state``)."""
        return cls(execution, **settings).load_state(state)
