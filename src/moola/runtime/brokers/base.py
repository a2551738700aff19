"""The broker contract the live engine speaks: order intents in, acknowledgements and fills out.

An :class:`OrderIntent` is what the engine decided and journaled *before* any broker sees
it; its ``client_order_id`` is the key that makes every send idempotent: a second
``submit`` of the same id returns the first :class:`BrokerAck` and sends nothing, so a
restart that replays a pending intent cannot open a second position. Fills come back as
:class:`BrokerFill` rows with signed quantities (``> 0`` bought), each with a ``fill_id``
unique at its broker (the journal stores fills idempotently on it).

Two adapters implement :class:`BrokerAdapter`: ``PaperBroker`` (the backtest's own
``moola.sim.Broker``, so paper equals a backtest) and ``CoinbaseAdvancedTrade`` (REST).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from moola.core.errors import BrokerError, ConfigError

SIDES: tuple[str, ...] = ("buy", "sell")
ORDER_TYPES: tuple[str, ...] = ("market", "limit")
ACK_STATUSES: tuple[str, ...] = ("accepted", "rejected")
"""``accepted``: the broker holds the order (it may fill later); ``rejected``: it never will."""
ORDER_STATES: tuple[str, ...] = ("open", "filled", "cancelled", "expired", "rejected")
"""What became of an accepted order (:class:`OrderStatus`); all but ``open`` are final."""


@dataclass(frozen=True)
class OrderIntent:
    """One order the engine decided at bar ``decided_at`` (that bar's open time).

    ``qty`` is a positive number of units (base currency for crypto); ``side`` gives the
    direction. ``limit_price`` is required for ``order_type="limit"`` and refused for
    ``"market"``.
    """

    client_order_id: str
    symbol: str
    side: Literal["buy", "sell"]
    qty: float
    order_type: Literal["market", "limit"] = "market"
    limit_price: float | None = None
    decided_at: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.client_order_id, str) or not self.client_order_id.strip():
            raise ConfigError(
                f"OrderIntent client_order_id must be a non-empty string; got "
                f"{self.client_order_id!r}."
            )
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ConfigError(
                f"OrderIntent symbol must be a non-empty string; got {self.symbol!r}."
            )
        if self.side not in SIDES:
            raise ConfigError(f"OrderIntent side={self.side!r}; use one of {', '.join(SIDES)}.")
        if self.order_type not in ORDER_TYPES:
            raise ConfigError(
                f"OrderIntent order_type={self.order_type!r}; use one of {', '.join(ORDER_TYPES)}."
            )
        qty = self.qty
        if isinstance(qty, bool) or not isinstance(qty, int | float) or not math.isfinite(qty):
            raise ConfigError(f"OrderIntent qty must be a positive finite number; got {qty!r}.")
        if qty <= 0:
            raise ConfigError(
                f"OrderIntent qty must be positive (side gives the direction); got {qty!r}."
            )
        if self.order_type == "limit":
            price = self.limit_price
            if price is None or not math.isfinite(price) or price <= 0:
                raise ConfigError(
                    f"OrderIntent limit_price must be a positive finite number for a limit "
                    f"order; got {price!r}."
                )
        elif self.limit_price is not None:
            raise ConfigError(
                f"OrderIntent limit_price={self.limit_price!r} given for a market order; "
                "leave it None or use order_type='limit'."
            )

    @property
    def signed_qty(self) -> float:
        """``qty`` with the side's sign (``> 0`` buy)."""
        return float(self.qty) if self.side == "buy" else -float(self.qty)


@dataclass(frozen=True)
class BrokerAck:
    """The broker's answer to one submit: its order id (``""`` when it has none) and
    ``status`` (``accepted`` or ``rejected``), with the broker's words in ``detail``."""

    client_order_id: str
    broker_order_id: str
    status: Literal["accepted", "rejected"]
    detail: str = ""

    @property
    def accepted(self) -> bool:
        """True when the broker holds the order."""
        return self.status == "accepted"


@dataclass(frozen=True)
class BrokerFill:
    """One execution: ``qty`` signed (``> 0`` bought), at ``price``, paying ``fee`` (quote
    currency); ``fill_id`` is unique at the broker."""

    fill_id: str
    client_order_id: str
    symbol: str
    qty: float
    price: float
    fee: float
    time: Any


@dataclass(frozen=True)
class OrderStatus:
    """What the broker says became of an accepted order: ``state`` (``ORDER_STATES``),
    ``filled_qty`` units filled of ``qty`` ordered (both unsigned), and the broker's
    ``reason`` for an order it ended itself. An immediate-or-cancel order whose rest the
    exchange cancelled is ``expired``: it ended by its time in force, not by a cancel we
    asked for; ``cancelled`` is an order withdrawn (by us or at the exchange).

    A broker whose orders can end without a fill the engine sees (a live exchange) offers
    ``order_status(client_order_id) -> OrderStatus | None`` (None: it holds no such
    order) and ``order_fills(client_order_id)`` (:class:`SettlingBroker`); the engine asks
    it each bar for the orders it still holds as working and journals the final state, so
    an order that will never fill is not left "accepted"."""

    client_order_id: str
    state: Literal["open", "filled", "cancelled", "expired", "rejected"]
    qty: float = 0.0
    filled_qty: float = 0.0
    reason: str = ""

    def __post_init__(self) -> None:
        if self.state not in ORDER_STATES:
            raise ConfigError(
                f"OrderStatus state={self.state!r}; use one of {', '.join(ORDER_STATES)}."
            )

    @property
    def final(self) -> bool:
        """True when the order will change no more (filled, cancelled, expired, rejected)."""
        return self.state != "open"


class OrderUnsure(BrokerError):
    """``submit`` could not learn whether the broker took the order (the answer was lost
    and asking for it failed too): it may be working or filled there. Not a refusal: the
    intent is not rejected, it is asked about again (``order_status``) and never sent under
    another id; sending the same intent again (same client order id) creates nothing new."""

    def __init__(self, message: str, client_order_id: str) -> None:
        super().__init__(message)
        self.client_order_id = client_order_id


@runtime_checkable
class BrokerAdapter(Protocol):
    """Where intents go. Every method either answers or raises ``BrokerError``."""

    def submit(self, intent: OrderIntent) -> BrokerAck:
        """Send ``intent`` once: a second submit of the same ``client_order_id`` returns the
        first ack and sends nothing."""
        ...

    def cancel(self, client_order_id: str) -> bool:
        """Withdraw an open order; True when it was open and is now cancelled."""
        ...

    def open_orders(self) -> list[OrderIntent]:
        """Orders the broker holds that have not (fully) filled."""
        ...

    def positions(self) -> dict[str, float]:
        """Symbol -> signed units held."""
        ...

    def fills(self, since: Any = None) -> list[BrokerFill]:
        """Fills at or after ``since`` (all when None), oldest first."""
        ...

    def balances(self) -> dict[str, float]:
        """Currency -> amount, with ``"equity"`` the account's value in the quote currency."""
        ...


@runtime_checkable
class SettlingBroker(Protocol):
    """A broker whose orders end at the exchange, where the engine does not see them fill
    (Coinbase): besides :class:`BrokerAdapter`, it says what became of an order and gives
    that one order's fills, so settling an order never reads the account's whole history.
    A paper broker reports its fills itself as bars pass and need not offer these."""

    def order_status(self, client_order_id: str) -> OrderStatus | None:
        """What became of the order placed for ``client_order_id`` (None: no such order)."""
        ...

    def order_fills(self, client_order_id: str) -> list[BrokerFill]:
        """The fills of the order placed for ``client_order_id``, oldest first (``[]``: no
        such order, or none filled)."""
        ...
