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

Pure computing: no I/O.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from moola.core.errors import ConfigError

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
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
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
) -> Size:
    """Units such that a stop ``atr_multiple * atr`` away loses ``risk_per_trade`` of
    ``equity`` (module notes), rounded down to ``lot`` and capped by ``max_position``.

    The settings (``risk_per_trade`` in (0, 1], ``atr_multiple``, ``lot``,
    ``max_position``, ``point_value``) must be finite and positive: ``ConfigError`` names
    the one that is not. The market inputs (``equity``, ``price``, ``atr``) come from the
    feed and the account: a bad one sizes to 0 units with the reason instead."""
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
    for name, value in (("equity", equity), ("price", price), ("atr", atr)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number <= 0.0:
            return Size(0.0, f"{name} is {value!r}: no stop distance to size on", math.nan, 0.0)
    stop = multiple * float(atr)
    raw = risk * float(equity) / (stop * pv)
    units = math.floor(raw / step + _ROUNDING) * step
    reason = ""
    if cap is not None and units > cap:
        units = math.floor(cap / step + _ROUNDING) * step
        reason = f"capped by max_position {cap:g} (risk sizing gave {raw:g} units)"
    if units <= 0.0:
        units = 0.0
        reason = reason or (
            f"the risk budget {risk * float(equity):,.2f} buys less than one lot ({step:g}) "
            f"at a stop {stop:g} away"
        )
    return Size(units, reason, stop, units * stop * pv)
