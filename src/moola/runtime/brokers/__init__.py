"""Where order intents go: the broker contract and its adapters.

::

    OrderIntent(client_order_id, symbol, side, qty, order_type, limit_price, decided_at)
    BrokerAdapter: submit(intent) -> BrokerAck   # idempotent on client_order_id
                   cancel(client_order_id) -> bool, open_orders(), positions(),
                   fills(since=None) -> [BrokerFill], balances()
                   order_status(client_order_id) -> OrderStatus | None   # optional
    PaperBroker(execution, symbols)              # moola.sim.Broker per symbol; on_bar(symbol, bar)
    CoinbaseAdvancedTrade(credentials=Credentials.from_env())   # REST, JWT-signed, retries
"""

from __future__ import annotations

from moola.runtime.brokers.base import (
    ACK_STATUSES,
    ORDER_STATES,
    ORDER_TYPES,
    SIDES,
    BrokerAck,
    BrokerAdapter,
    BrokerFill,
    OrderIntent,
    OrderStatus,
)
from moola.runtime.brokers.coinbase import (
    GRANULARITIES,
    CoinbaseAdvancedTrade,
    CoinbasePublicMarket,
)
from moola.runtime.brokers.credentials import Credentials
from moola.runtime.brokers.paper import PaperBroker

__all__ = [
    "ACK_STATUSES",
    "GRANULARITIES",
    "ORDER_STATES",
    "ORDER_TYPES",
    "SIDES",
    "BrokerAck",
    "BrokerAdapter",
    "BrokerFill",
    "CoinbaseAdvancedTrade",
    "CoinbasePublicMarket",
    "Credentials",
    "OrderIntent",
    "OrderStatus",
    "PaperBroker",
]
