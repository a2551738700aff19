"""Orders and the rules that decide whether, and at what price, an OHLC bar fills them.

A bar only tells us its open, high, low and close, not the path between them, so each
rule assumes the least favourable path consistent with the bar:

- **Market**: fills at the open of the first bar it is eligible for (the bar after the
  decision, or ``latency`` bars later), plus half spread and slippage.
- **Buy limit** at ``L``: fills only if the bar trades *through* the limit, ``low < L``.
  A bar whose low only touches the limit (``low == L``) does **not** fill it: at the limit
  price there are queued orders ahead of ours, and we cannot know we were reached. Fill
  price ``min(open, L)``: a gap down through the limit fills at the better open. A limit
  fill pays commission but no spread or slippage (it never fills worse than its limit; the
  strict trade-through rule stands in for queue position and spread).
- **Buy stop** at ``S``: triggers if ``high >= S`` and fills at ``max(open, S)`` plus half
  spread and slippage: a gap up through the stop fills at the worse open.
- Sells are the mirror image: sell limit fills if ``high > L`` at ``max(open, L)``; sell
  stop triggers if ``low <= S`` at ``min(open, S)`` minus half spread and slippage.

Order of fills inside one bar (the event engine): market orders first, then orders the
open itself triggers (gaps: the open is the first price of the bar), then the remaining
stops, then the remaining limits; ties keep submission order. So when a stop-loss and a
take-profit both lie inside one bar, the **worse outcome (the stop) is assumed**. Orders
sharing an ``oco`` group cancel each other when one of them fills (brackets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from moola.core.errors import ConfigError


class OrderType(StrEnum):
    """How an order fills: at the open, at a limit or better, or once a stop trades."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


@dataclass(frozen=True, kw_only=True)
class Order:
    """An instruction to trade ``qty`` units (``> 0`` buy, ``< 0`` sell).

    ``price`` is the limit or stop level (``None`` for market orders). Orders are good until
    filled or cancelled. ``oco`` names a one-cancels-the-other group; ``tag`` is free text
    carried into the fills table. ``id`` is ``None`` until an engine accepts the order and
    numbers it (1, 2, ... per run, so runs are reproducible); keep the order the engine
    returns to cancel it.
    """

    qty: float
    type: OrderType = OrderType.MARKET
    price: float | None = None
    oco: str | None = None
    tag: str = ""
    id: int | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.qty) or self.qty == 0:
            raise ConfigError(f"Order qty must be a non-zero finite number; got {self.qty!r}.")
        if self.type is OrderType.MARKET:
            if self.price is not None:
                raise ConfigError("A market order takes no price; use limit() or stop().")
        elif self.price is None or not math.isfinite(self.price) or self.price <= 0:
            raise ConfigError(
                f"A {self.type} order needs a positive finite price; got {self.price!r}."
            )

    @property
    def is_buy(self) -> bool:
        """True for a buy order."""
        return self.qty > 0


def market(qty: float, *, tag: str = "") -> Order:
    """A market order for ``qty`` signed units."""
    return Order(qty=qty, type=OrderType.MARKET, tag=tag)


def limit(qty: float, price: float, *, oco: str | None = None, tag: str = "") -> Order:
    """A limit order: buy at ``price`` or lower, sell at ``price`` or higher."""
    return Order(qty=qty, type=OrderType.LIMIT, price=price, oco=oco, tag=tag)


def stop(qty: float, price: float, *, oco: str | None = None, tag: str = "") -> Order:
    """A stop (market-on-trigger) order: buy once ``price`` trades up, sell once it trades
    down."""
    return Order(qty=qty, type=OrderType.STOP, price=price, oco=oco, tag=tag)


def limit_fill_price(
    is_buy: bool | np.ndarray,
    level: float | np.ndarray,
    open_: float | np.ndarray,
    high: float | np.ndarray,
    low: float | np.ndarray,
) -> float | np.ndarray:
    """Reference fill price of a limit order on a bar, NaN where it does not fill."""
    buy = np.asarray(is_buy, dtype=bool)
    level, open_ = np.asarray(level, np.float64), np.asarray(open_, np.float64)
    high, low = np.asarray(high, np.float64), np.asarray(low, np.float64)
    out = np.where(
        buy,
        np.where(low < level, np.minimum(open_, level), np.nan),
        np.where(high > level, np.maximum(open_, level), np.nan),
    )
    return float(out) if out.ndim == 0 else out


def stop_fill_price(
    is_buy: bool | np.ndarray,
    level: float | np.ndarray,
    open_: float | np.ndarray,
    high: float | np.ndarray,
    low: float | np.ndarray,
) -> float | np.ndarray:
    """Reference fill price (before spread and slippage) of a stop order, NaN if not
    triggered."""
    buy = np.asarray(is_buy, dtype=bool)
    level, open_ = np.asarray(level, np.float64), np.asarray(open_, np.float64)
    high, low = np.asarray(high, np.float64), np.asarray(low, np.float64)
    out = np.where(
        buy,
        np.where(high >= level, np.maximum(open_, level), np.nan),
        np.where(low <= level, np.minimum(open_, level), np.nan),
    )
    return float(out) if out.ndim == 0 else out


def reference_price(order: Order, open_: float, high: float, low: float) -> float | None:
    """Price (before costs) at which ``order`` fills on a bar, or ``None`` if it does not."""
    if order.type is OrderType.MARKET:
        return float(open_)
    rule = limit_fill_price if order.type is OrderType.LIMIT else stop_fill_price
    price = rule(order.is_buy, order.price, open_, high, low)
    return None if math.isnan(price) else float(price)


def triggered_at_open(order: Order, open_: float) -> bool:
    """True when the bar's open alone fills ``order`` (a gap through its level)."""
    if order.type is OrderType.MARKET:
        return True
    level = order.price
    if order.type is OrderType.LIMIT:
        return open_ < level if order.is_buy else open_ > level
    return open_ >= level if order.is_buy else open_ <= level


def pays_costs(order: Order) -> bool:
    """Whether the fill pays half spread and slippage (market and stop orders do)."""
    return order.type is not OrderType.LIMIT
