"""Position sizing: how many units a signal buys or sells, from the risk one trade may take.

The stop sits ``atr_multiple`` ATRs from the entry; the position is the size whose loss at
that stop is ``risk_per_trade`` of equity::

    units = risk_per_trade * equity / (atr_multiple * atr * point_value)

rounded down to whole lots and capped by ``max_position`` (also in whole lots). Rounding
down means a sized trade never risks more than ``risk_per_trade``, so the risk gate's
``RiskPerTrade`` rule, judged with the same stop distance, accepts it. An ATR that is zero,
negative or not finite (too few bars, a flat feed), a price that is not positive or an
equity that is not positive sizes to 0 units, with the reason: no trade is better than one
sized on nothing.

**Buying power.** A tight stop makes the risk budget buy many units: 1% of 10,000 at a
stop of 30 is 3.3 units of a 15,000 asset, 5x equity, and ``max_position: 5`` allows 7.5x.
A spot exchange (Coinbase) refuses a buy the account cannot pay for, and the paper broker
cuts it to its leverage limit, so the order sent would not be the order decided. Given
``buying_power`` (the money the order may spend: a spot account's available quote
balance, a paper sleeve's ``max_leverage * equity``), the units are capped, whole lots
rounded down, so that the order's notional with its cost allowance fits it::

    units * price * point_value * (1 + cost_rate) <= buying_power

``cost_rate`` is the fees and slippage as a fraction of notional (a buy pays them out of
the same money). The reason says when the cap binds; a buying power that is not finite or
not positive sizes to 0 units with the reason. ``None`` (the default) caps nothing.

Pure computing: no I/O.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from moola.core.errors import ConfigError
from moola.core.numbers import as_number

__all__ = ["Size", "position_size"]

_ROUNDING = 1e-10  # lots: 0.3 / 0.1 is 2.9999999999999996 in floats, and is 3 lots


class Size(NamedTuple):
    """The units to trade (>= 0, whole lots; the caller gives the side), why they are 0 when
    they are, the stop distance in price (``atr_multiple * atr``; NaN when there is none)
    and the money lost at the stop (``units * stop_distance * point_value``)."""

    units: float
    reason: str
    stop_distance: float
    risk: float


def _setting(name: str, value: float, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    number = as_number(value)
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0.0:
        raise ConfigError(f"{name}={value!r}: must be a finite number > 0.", param=name)
    return number


def position_size(
    equity: float,
    price: float,
    atr: float,
    *,
    risk_per_trade: float = 0.01,
    atr_multiple: float = 2.0,
    lot: float = 1e-8,
    max_position: float | None = None,
    point_value: float = 1.0,
    buying_power: float | None = None,
    cost_rate: float = 0.0,
) -> Size:
    """Units such that a stop ``atr_multiple * atr`` away loses ``risk_per_trade`` of
    ``equity`` (module notes), rounded down to ``lot``, capped by ``max_position`` and by
    what ``buying_power`` pays for at ``price`` with ``cost_rate`` on top (None: no cap).

    The settings (``risk_per_trade`` in (0, 1], ``atr_multiple``, ``lot``,
    ``max_position``, ``point_value``; ``cost_rate`` >= 0) must be finite and positive:
    ``ConfigError`` names the one that is not. The market inputs (``equity``, ``price``,
    ``atr``, ``buying_power``) come from the feed and the account: a bad one sizes to 0
    units with the reason instead."""
    risk = _setting("risk_per_trade", risk_per_trade)
    assert risk is not None
    if risk > 1.0:
        raise ConfigError(
            f"risk_per_trade={risk_per_trade!r}: a fraction of equity, in (0, 1].",
            param="risk_per_trade",
        )
    multiple = _setting("atr_multiple", atr_multiple)
    step = _setting("lot", lot)
    cap = _setting("max_position", max_position, allow_none=True)  # type: ignore[arg-type]
    pv = _setting("point_value", point_value)
    assert multiple is not None and step is not None and pv is not None
    costs = as_number(cost_rate)
    if isinstance(cost_rate, bool) or not math.isfinite(costs) or costs < 0.0:
        raise ConfigError(
            f"cost_rate={cost_rate!r}: a fraction of notional, finite and >= 0.",
            param="cost_rate",
        )
    inputs = [("equity", equity), ("price", price), ("atr", atr)]
    if buying_power is not None:
        inputs.append(("buying_power", buying_power))
    for name, value in inputs:
        number = as_number(value)
        if not math.isfinite(number) or number <= 0.0:
            why = (
                "no money to buy with" if name == "buying_power" else "no stop distance to size on"
            )
            return Size(0.0, f"{name} is {value!r}: {why}", math.nan, 0.0)
    stop = multiple * float(atr)
    raw = risk * float(equity) / (stop * pv)
    units = math.floor(raw / step + _ROUNDING) * step
    reason = ""
    if cap is not None and units > cap:
        units = math.floor(cap / step + _ROUNDING) * step
        reason = f"capped by max_position {cap:g} (risk sizing gave {raw:g} units)"
    if buying_power is not None:
        per_unit = float(price) * pv * (1.0 + costs)  # what one unit costs to buy
        power = float(buying_power)
        affordable = math.floor(power / per_unit / step + _ROUNDING) * step
        if affordable * per_unit > power:  # the rounding allowance may not overspend
            affordable -= step
        if units > affordable:
            units = max(affordable, 0.0)
            reason = (
                f"capped by buying power {power:,.2f} at price {float(price):g}"
                + (f" with costs {costs:g}" if costs else "")
                + f" (risk sizing gave {raw:g} units"
                + (f", max_position {cap:g}" if cap is not None and raw > cap else "")
                + ")"
            )
    if units <= 0.0:
        units = 0.0
        reason = reason or (
            f"the risk budget {risk * float(equity):,.2f} buys less than one lot ({step:g}) "
            f"at a stop {stop:g} away"
        )
    return Size(units, reason, stop, units * stop * pv)
