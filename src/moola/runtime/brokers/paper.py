"""Paper trading on the backtest's own kernel: one ``moola.sim.Broker`` per symbol.

Each symbol is a sleeve of its own, as ``moola backtest`` runs each symbol: a
``moola.sim.Broker`` built from the :class:`~moola.sim.ExecutionConfig` with its
``initial_cash``, costs (spread, slippage, commission), latency and rules. So a paper
session fills and accounts exactly as a backtest of the same target changes would (the
tests hold the two equal to the bit)::

    broker = PaperBroker(execution, ["BTC-USD"])
    fills = broker.on_bar("BTC-USD", bar)     # bar t closes: fill what is due at its open
    ack = broker.submit(intent)               # decided at bar t's close
    # a market intent decided at bar t fills at the open of bar t + latency_bars

``submit`` is idempotent on ``client_order_id`` (a second submit returns the first ack and
places nothing). Ids derive from it: the ack's ``broker_order_id`` is ``paper:<client id>``
and a fill's ``fill_id`` ``<client id>:fill`` (the kernel fills an order whole), so they
never repeat across sessions of one journal. An order the kernel denies (a halted broker,
a rule's pre-trade check, nothing left under the leverage limit) is acknowledged
``rejected`` with the kernel's reasons; one the leverage limit caps is ``accepted`` with
the cap in ``detail``.
``balances`` sums the sleeves: cash per currency and ``"equity"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from moola.core.crashpoints import crash_point
from moola.core.errors import BrokerError, ConfigError
from moola.runtime.brokers.base import BrokerAck, BrokerFill, OrderIntent
from moola.sim import Accepted, Bar, Broker, BrokerState, ExecutionConfig, Fill, Order
from moola.sim import limit as limit_order
from moola.sim import market as market_order


class PaperBroker:
    """A :class:`~moola.runtime.brokers.BrokerAdapter` over ``moola.sim.Broker``, one per symbol.

    Parameters
    ----------
    execution : ExecutionConfig
        The terms every sleeve trades under (cash, costs, latency, rules, ``on_breach``).
    symbols : sequence of str
        The symbols traded; each gets a sleeve of ``execution.initial_cash``.
    """

    def __init__(self, execution: ExecutionConfig, symbols: Sequence[str]) -> None:
        if not isinstance(execution, ExecutionConfig):
            raise ConfigError(
                f"PaperBroker execution must be a moola.sim.ExecutionConfig; got "
                f"{type(execution).__name__}."
            )
        names = [symbols] if isinstance(symbols, str) else list(symbols)
        if not names or any(not isinstance(s, str) or not s for s in names):
            raise ConfigError(
                f"PaperBroker symbols must be a non-empty list of symbol names; got {symbols!r}."
            )
        if len(set(names)) != len(names):
            raise ConfigError(f"PaperBroker symbols repeat a name: {names!r}.")
        self.execution = execution
        self.symbols: tuple[str, ...] = tuple(names)
        self.brokers_: dict[str, Broker] = {s: Broker(execution, symbol=s) for s in names}
        self._acks: dict[str, tuple[OrderIntent, BrokerAck]] = {}
        self._by_order: dict[tuple[str, int], str] = {}  # (symbol, kernel order id) -> client id
        self._orders: dict[str, tuple[str, int]] = {}  # client id -> (symbol, kernel order id)
        self._fills: list[BrokerFill] = []

    # ------------------------------------------------------------------ bars

    def on_bar(self, symbol: str, bar: Bar) -> list[BrokerFill]:
        """Bar ``bar`` of ``symbol`` has closed: fill the orders due at its prices, then
        mark the sleeve at its close. Returns this bar's fills."""
        broker = self._broker(symbol)
        fills = broker.advance(bar if isinstance(bar, Bar) else Bar(*bar))
        crash_point("paper.bar_advanced")
        out = [self._fill(symbol, fill) for fill in fills]
        self._fills.extend(out)
        return out

    def _fill(self, symbol: str, fill: Fill) -> BrokerFill:
        oid = int(fill.order_id)
        client = self._client_of(symbol, oid, fill.tag, fill.time)
        return BrokerFill(
            fill_id=f"{client}:fill",
            client_order_id=client,
            symbol=symbol,
            qty=float(fill.qty),
            price=float(fill.price),
            fee=float(fill.fee),
            time=fill.time,
        )

    # ------------------------------------------------------------------ orders

    def submit(self, intent: OrderIntent) -> BrokerAck:
        """Place ``intent`` at the current bar of its symbol (module notes).

        Raises ``ConfigError`` for an unknown symbol, ``BrokerError`` before the symbol's
        first bar, for an intent decided after the current bar (that would trade on a bar
        not yet seen) and for a ``client_order_id`` reused for a different order.
        """
        if not isinstance(intent, OrderIntent):
            raise ConfigError(
                f"PaperBroker.submit takes an OrderIntent; got {type(intent).__name__}."
            )
        seen = self._acks.get(intent.client_order_id)
        if seen is not None:
            if seen[0] != intent:
                raise BrokerError(
                    f"client_order_id {intent.client_order_id!r} was already used for another "
                    f"order ({seen[0].side} {seen[0].qty} {seen[0].symbol}); give each order "
                    "a new id."
                )
            return seen[1]
        broker = self._broker(intent.symbol)
        state = broker.state
        if state.bar < 0:
            raise BrokerError(
                f"PaperBroker has no bar of {intent.symbol} yet; call on_bar before submitting "
                f"{intent.client_order_id!r}."
            )
        if intent.decided_at is not None and _later(intent.decided_at, state.time):
            raise BrokerError(
                f"intent {intent.client_order_id!r} was decided at {intent.decided_at}, after "
                f"the last bar of {intent.symbol} ({state.time}); give the bar to on_bar first."
            )
        if intent.order_type == "limit":
            assert intent.limit_price is not None
            order = limit_order(intent.signed_qty, intent.limit_price, tag="intent")
        else:
            order = market_order(intent.signed_qty, tag="intent")
        result = broker.submit(order)
        crash_point("paper.order_placed")
        oid = int(result.order.id or 0)
        if isinstance(result, Accepted):
            self._by_order[(intent.symbol, oid)] = intent.client_order_id
            self._orders[intent.client_order_id] = (intent.symbol, oid)
            detail = ""
            if result.capped:
                detail = f"capped to max_leverage: {abs(result.order.qty)} of {intent.qty}"
            ack = BrokerAck(
                intent.client_order_id, f"paper:{intent.client_order_id}", "accepted", detail
            )
        else:
            ack = BrokerAck(intent.client_order_id, "", "rejected", "; ".join(result.reasons))
        self._acks[intent.client_order_id] = (intent, ack)
        return ack

    def cancel(self, client_order_id: str) -> bool:
        """Withdraw the open order placed for ``client_order_id``; False when none is open."""
        placed = self._orders.get(client_order_id)
        if placed is None:
            return False
        symbol, oid = placed
        return self.brokers_[symbol].cancel(oid)

    def open_orders(self) -> list[OrderIntent]:
        """The orders on the sleeves' books, as intents (the kernel's quantity: a capped
        order shows what is left of it)."""
        out = []
        for symbol, broker in self.brokers_.items():
            for order in broker.pending:
                out.append(self._intent_of(symbol, order))
        return out

    def _intent_of(self, symbol: str, order: Order) -> OrderIntent:
        oid = int(order.id or 0)
        client = self._client_of(symbol, oid, order.tag, self.brokers_[symbol].state.time)
        seen = self._acks.get(client)
        decided = seen[0].decided_at if seen is not None else None
        return OrderIntent(
            client_order_id=client,
            symbol=symbol,
            side="buy" if order.qty > 0 else "sell",
            qty=abs(float(order.qty)),
            order_type="limit" if order.price is not None else "market",
            limit_price=order.price,
            decided_at=decided,
        )

    def _client_of(self, symbol: str, oid: int, tag: str, time: Any) -> str:
        """The client id of a kernel order: the intent's, or for an order the kernel placed
        itself (a flattening order after a breach) one made from its tag, symbol, bar time
        and number, kept so that it stays the same (fill ids derive from it and must not
        repeat across sessions)."""
        client = self._by_order.get((symbol, oid))
        if client is None:
            stamp = time.isoformat() if hasattr(time, "isoformat") else str(time)
            client = f"paper-{tag or 'order'}-{symbol}-{stamp}-{oid}"
            self._by_order[(symbol, oid)] = client
        return client

    def halt(self, reason: str) -> None:
        """Stop every sleeve: open orders withdrawn, later orders rejected naming ``reason``
        (a kill switch or a halt decided outside the kernel)."""
        for broker in self.brokers_.values():
            broker.halt(reason)

    # ------------------------------------------------------------------ account

    def positions(self) -> dict[str, float]:
        """Symbol -> signed units, every symbol (0.0 when flat)."""
        return {s: float(b.portfolio.position) for s, b in self.brokers_.items()}

    def fills(self, since: Any = None) -> list[BrokerFill]:
        """Fills at or after bar time ``since`` (all when None), in fill order."""
        if since is None:
            return list(self._fills)
        return [f for f in self._fills if not _later(since, f.time)]

    def balances(self) -> dict[str, float]:
        """Cash per currency summed over the sleeves, and ``"equity"`` (marked at the last
        closes)."""
        out: dict[str, float] = {}
        equity = 0.0
        for broker in self.brokers_.values():
            currency = broker.instrument.currency
            out[currency] = out.get(currency, 0.0) + float(broker.portfolio.cash)
            equity += float(broker.portfolio.equity)
        out["equity"] = equity
        return out

    def state(self, symbol: str) -> BrokerState:
        """The kernel's snapshot of ``symbol``'s sleeve (position, cash, equity, open
        orders, start-of-day balance, halt): what the risk gate reads."""
        return self._broker(symbol).state

    def _broker(self, symbol: str) -> Broker:
        broker = self.brokers_.get(symbol)
        if broker is None:
            raise ConfigError(
                f"PaperBroker trades {', '.join(self.symbols)}; got symbol {symbol!r}."
            )
        return broker


def _later(a: Any, b: Any) -> bool:
    """True when time ``a`` is after time ``b`` (timestamps, or bar numbers)."""
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a > b
    return pd.Timestamp(a) > pd.Timestamp(b)
