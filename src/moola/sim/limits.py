"""Order limits: rules that judge each order before it is sent, not an equity curve.

The prop-firm loss limits (``moola.sim.propfirm``) watch equity; these watch what an
order would do to the book. Each is a frozen :class:`~moola.sim.propfirm.Rule` whose
``pre_trade(order, state) -> list[str]`` returns reasons to refuse (empty = allowed),
read from the broker's :class:`~moola.sim.broker.BrokerState` only (nothing after the
current bar). They hold no state, so a rule is its own streaming form (``stream()``
returns itself) and ``update`` never breaches; their batch ``check`` passes on any equity
curve, because a finished curve shows no orders to judge.

Exposure counts the working orders too, so a rule cannot be side-stepped by splitting an
order, nor by stacking closing orders: ``position + working orders on the order's side +
order``. An order that only takes that total toward flat (closing, or cutting the
position) is never refused by :class:`MaxPosition`, so a rule can never trap a position
open; a second closing order stacked on a first one would take the position through flat
and beyond, so it is judged as the entry it is. :class:`MaxOpenPositions` counts the open
position and the entry orders that whichever working orders fill could leave.
:class:`TradingHalt` refuses everything: the configured kill switch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from moola.sim.propfirm import Breach, Rule, RuleResult, RuleStream

_TOLERANCE = 1e-9


def _adds_exposure(order: Any, state: Any) -> bool:
    """True when ``order`` would take the position further from flat."""
    return abs(state.position + order.qty) > abs(state.position)


def _exposure_after(order: Any, state: Any) -> tuple[float, float]:
    """(units held if the order and the working orders on its side all filled, the working
    part alone)."""
    buy = order.qty > 0.0
    working = sum(o.qty for o in state.open_orders if (o.qty > 0.0) == buy)
    return state.position + working + order.qty, working


_MAX_SUBSETS_OF = 12  # working orders beyond which the fills are not enumerated


def _worst_entries(position: float, working: Sequence[float]) -> int | None:
    """The most open positions plus entry orders that any set of fills of ``working``
    can leave (``None`` when there are too many orders to try them all)."""
    n = len(working)
    if n > _MAX_SUBSETS_OF:
        return None
    worst = 0
    for mask in range(1 << n):
        held = position + sum(w for j, w in enumerate(working) if mask >> j & 1)
        entries = sum(
            1 for j, w in enumerate(working) if not mask >> j & 1 and abs(held + w) > abs(held)
        )
        worst = max(worst, (held != 0.0) + entries)
    return worst


class _OrderRule(Rule, RuleStream):
    """A stateless rule on orders: its own stream; ``update`` and ``check`` never breach."""

    def stream(self) -> RuleStream:
        return self

    @property
    def rule(self) -> Rule:  # type: ignore[override]
        return self

    def update(self, time: Any, equity: float, fills: Sequence[Any] = ()) -> Breach | None:
        return None

    def check(self, equity: pd.Series, trades: pd.DataFrame | None = None) -> RuleResult:
        return self.result()

    def result(self) -> RuleResult:
        return RuleResult(
            self.name, True, None, None, self._limit(), "judged before each order (pre_trade)"
        )

    def _limit(self) -> float:
        return 0.0


@dataclass(frozen=True)
class MaxPosition(_OrderRule):
    """At most ``units`` units held, long or short, counting working orders."""

    units: float = 1.0
    name: str = "max_position"

    def _limit(self) -> float:
        return float(self.units)

    def pre_trade(self, order: Any, state: Any) -> list[str]:
        after, working = _exposure_after(order, state)
        if abs(after) <= abs(state.position + working):  # toward flat, working counted
            return []
        if abs(after) <= self.units * (1.0 + _TOLERANCE):
            return []
        return [
            f"{self.name}: would hold {after:g} units (position {state.position:g}, working "
            f"{working:g}, order {order.qty:g}); limit {self.units:g}"
        ]


@dataclass(frozen=True)
class MaxOpenPositions(_OrderRule):
    """At most ``count`` entries at once: the open position (one instrument per broker)
    plus each working order that would add exposure, whichever of the working orders fill
    (every subset is tried, up to twelve working orders; beyond, each is judged against
    the position alone). An order that leaves the worst case no worse is accepted."""

    count: int = 1
    name: str = "max_open_positions"

    def _limit(self) -> float:
        return float(self.count)

    def pre_trade(self, order: Any, state: Any) -> list[str]:
        working = tuple(o.qty for o in state.open_orders)
        after = _worst_entries(state.position, (*working, order.qty))
        if after is not None:
            if after <= self.count:
                return []
            before = _worst_entries(state.position, working)
            if before is not None and after <= before:
                return []
            return [
                f"{self.name}: the working orders' fills could leave {after} open "
                f"position(s) and entry order(s) with this order; limit {self.count}"
            ]
        if not _adds_exposure(order, state):
            return []
        entries = sum(1 for o in state.open_orders if _adds_exposure(o, state))
        held = 1 if state.position != 0.0 else 0
        if held + entries < self.count:
            return []
        return [
            f"{self.name}: {held} open position(s) and {entries} working entry order(s) "
            f"already; limit {self.count}"
        ]


@dataclass(frozen=True)
class RiskPerTrade(_OrderRule):
    """An order may risk at most ``pct`` of equity, its risk being what the exposure it
    adds would lose on an adverse move of ``stop_pct`` of the last close (the stop a
    sized trade assumes): ``added units * close * point_value * stop_pct``."""

    pct: float = 0.01
    stop_pct: float = 0.01
    name: str = "risk_per_trade"

    def _limit(self) -> float:
        return float(self.pct)

    def pre_trade(self, order: Any, state: Any) -> list[str]:
        if not _adds_exposure(order, state):
            return []
        added = abs(state.position + order.qty) - abs(state.position)
        risk = added * state.price * state.point_value * self.stop_pct
        allowed = self.pct * state.equity
        if risk <= allowed * (1.0 + _TOLERANCE):
            return []
        return [
            f"{self.name}: the order risks {risk:,.2f} on a {self.stop_pct:.2%} move "
            f"({risk / state.equity:.2%} of equity {state.equity:,.2f}); limit {self.pct:.2%}"
        ]


@dataclass(frozen=True)
class TradingHalt(_OrderRule):
    """Refuse every order, naming ``reason``: the configured kill switch."""

    reason: str = "kill switch"
    name: str = "trading_halt"

    def pre_trade(self, order: Any, state: Any) -> list[str]:
        return [f"{self.name}: {self.reason}"]
