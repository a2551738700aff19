"""Coinbase Advanced Trade over REST (httpx), each request signed with a CDP key's JWT.

Endpoints used (``/api/v3/brokerage/...``): ``POST orders`` (create, with our
``client_order_id`` and an ``order_configuration`` of ``sor_limit_ioc`` for a market buy,
``market_market_ioc`` for a market sell, ``limit_limit_gtc`` for a limit order), ``POST
orders/batch_cancel``, ``GET orders/historical/batch`` (open orders; the look-up by client
id), ``GET orders/historical/{order_id}``, ``GET orders/historical/fills`` (one order's fills
with ``order_ids``, the account's since a time with ``start_sequence_timestamp``), ``GET
accounts``, ``GET products/{id}`` (the last price, for equity and a buy's price cap) and
``GET products/{id}/candles``. :class:`CoinbasePublicMarket` reads the public, unsigned
market data a polling bar feed needs: ``GET time`` (the exchange's clock) and ``GET
market/products/{id}/candles``.

A market buy of N units. Advanced Trade's ``market_market_ioc`` BUY is sized in the quote
currency (``quote_size``), so a buy sized from the last price fills more than N units
whenever the price it meets is lower than that price, and no quote size can promise N.
A buy is therefore sent as ``sor_limit_ioc`` (immediate or cancel) with ``base_size`` N and
``limit_price`` the last price raised by at most ``max_slippage_bps``: it fills at most N
units (``base_size`` caps the quantity whatever the price) at no more than the cap, and
what cannot fill at once is cancelled, never left working. A sell is ``market_market_ioc``
with ``base_size`` (units sold never exceed N).

Failures. HTTP 429 (waiting at least its ``Retry-After``), 5xx, timeouts and dropped
connections are retried with exponential backoff (``backoff * 2**attempt`` seconds), up to
``max_retries`` times; then ``BrokerError`` names the endpoint and the last status. Any
other 4xx, and an order Coinbase answers ``success: false`` (``INSUFFICIENT_FUND``,
``INVALID_ORDER``, ...), raise ``BrokerError`` at once with Coinbase's error and message.

No second order. ``submit`` is idempotent on ``client_order_id`` here (the first ack is kept
and returned) and at Coinbase (an id it has seen returns that order, not a new one). Before
it retries a create whose answer was lost (a timeout, a 5xx), it asks Coinbase whether an
order with that client id exists and, if so, acknowledges that order instead of sending
again; if the question itself cannot be answered, or no attempt was answered, it raises
:class:`~moola.runtime.brokers.base.OrderUnsure` (a ``BrokerError`` that is not a refusal:
the order may be working or filled at Coinbase, ``order_status`` finds it later by its
client id) and sends nothing more.

Secrets: the key never leaves :class:`~moola.runtime.brokers.Credentials`; messages and
logs name endpoints, statuses and Coinbase's error text only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Self

import httpx
import numpy as np
import pandas as pd

from moola.core.errors import BrokerError, ConfigError
from moola.data.schema import empty_bars, make_bars
from moola.runtime import retry
from moola.runtime.brokers.base import (
    BrokerAck,
    BrokerFill,
    OrderIntent,
    OrderStatus,
    OrderUnsure,
)
from moola.runtime.brokers.credentials import Credentials
from moola.runtime.config import DEFAULT_MAX_SLIPPAGE_BPS, CoinbaseConfig

log = logging.getLogger(__name__)

API = "/api/v3/brokerage"
MAX_CANDLES = 350  # per candles request (Coinbase's cap)
MAX_LOOKUP_PAGES = 5  # pages of recent orders searched for a client id before a retry
MAX_PAGES = 100  # pages of a listing read before it is refused as too long (_pages)
PAGE_LIMIT = 250  # items asked per page of a listing
LOOKUP_BATCH = 50  # order ids per List Orders request when fills name unknown orders
GRANULARITIES: dict[str, tuple[str, int]] = {  # moola timeframe -> (Coinbase name, seconds)
    "1m": ("ONE_MINUTE", 60),
    "5m": ("FIVE_MINUTE", 300),
    "15m": ("FIFTEEN_MINUTE", 900),
    "30m": ("THIRTY_MINUTE", 1800),
    "1h": ("ONE_HOUR", 3600),
    "2h": ("TWO_HOUR", 7200),
    "6h": ("SIX_HOUR", 21600),
    "1d": ("ONE_DAY", 86400),
}
_OPEN_STATUSES = ("OPEN", "PENDING", "QUEUED")
#: Coinbase's final order statuses -> ``OrderStatus.state`` (any other status is still open).
_FINAL_STATES = {
    "FILLED": "filled",
    "CANCELLED": "cancelled",
    "EXPIRED": "expired",
    "FAILED": "rejected",
}


#: ``reject_reason`` values that give no reason: Coinbase sends ``REJECT_REASON_UNSPECIFIED``
#: on every order, filled and cancelled ones too.
_NO_REASONS = frozenset({"", "REJECT_REASON_UNSPECIFIED", "UNKNOWN_REJECT_REASON"})


class _Unanswered(BrokerError):
    """No answer after the retries (429, 5xx, timeouts): the request may have been done."""


def _decimal(value: float) -> str:
    """A positive float as Coinbase's decimal string (no exponent): 1e-05 -> '0.00001'."""
    return format(Decimal(repr(float(value))), "f")


def _float(value: Any, default: float = 0.0) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


class _CoinbaseREST:
    """The transport both clients share: an httpx client on ``base_url``, one request with
    the module's retries (``_call``) and cursor pages (``_pages``). Subclasses give the
    headers of a request (``_headers``: signed or not)."""

    def __init__(
        self,
        *,
        base_url: str = "https://api.coinbase.com",
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (isinstance(timeout, int | float) and timeout > 0):
            raise ConfigError(f"timeout must be a positive number of seconds; got {timeout!r}.")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be an integer >= 0; got {max_retries!r}.")
        if not (isinstance(backoff, int | float) and backoff >= 0):
            raise ConfigError(f"backoff must be a number of seconds >= 0; got {backoff!r}.")
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"base_url must be an http(s) URL; got {base_url!r}.")
        self.base_url = str(base_url).rstrip("/")
        self._host = url.host if url.port is None else f"{url.host}:{url.port}"
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(self.timeout), transport=transport
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, method: str, path: str) -> dict[str, str]:
        return {"Accept": "application/json"}

    # ------------------------------------------------------------------ transport

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        before_retry: Callable[[], dict | None] | None = None,
    ) -> dict:
        """One API call with retries (module notes); the decoded JSON object.

        ``before_retry``, when given, runs before each retry; a dict it returns is the
        answer (no further request is sent)."""
        endpoint = f"{method} {path}"
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt and before_retry is not None:
                found = before_retry()
                if found is not None:
                    return found
            headers = self._headers(method, path)
            tried = retry.attempt(
                lambda headers=headers: self._client.request(
                    method, API + path, params=params, json=body, headers=headers
                ),
                number=attempt,
                backoff=self.backoff,
                timeout=self.timeout,
                retry_after=lambda r: _float(r.headers.get("Retry-After"), 0.0),
            )
            last, delay, response = tried.failure, tried.delay, tried.response
            if response is not None:
                status = response.status_code
                if status >= 400:
                    code, message = _error_of(response)
                    raise BrokerError(
                        f"Coinbase refused {endpoint}: HTTP {status} {code}: {message}"
                    )
                try:
                    data = response.json()
                except ValueError:
                    raise BrokerError(
                        f"Coinbase answered {endpoint} with HTTP {status} but no JSON."
                    ) from None
                if not isinstance(data, dict):
                    raise BrokerError(f"Coinbase answered {endpoint} with a non-object JSON.")
                return data
            if attempt < self.max_retries:
                log.warning(
                    "Coinbase %s: %s; retry %d of %d in %.2f s",
                    endpoint,
                    last,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                self._sleep(delay)
        raise _Unanswered(
            f"Coinbase {endpoint} failed after {self.max_retries + 1} attempt(s); last: {last}."
        )

    def _pages(
        self,
        path: str,
        key: str,
        params: dict[str, Any],
        max_pages: int | None = None,
        *,
        complete: bool = True,
    ) -> list:
        """Every item under ``key`` across cursor pages (a page's ``cursor`` asks for the
        next; an empty one, or ``has_next: false`` where the endpoint sends it, ends).

        ``complete``: the caller needs every item, so a listing still going on after
        ``max_pages`` pages raises ``BrokerError`` instead of answering with a part of it;
        otherwise (a search of the most recent items) the first pages are the answer.
        ``max_pages`` defaults to ``MAX_PAGES``."""
        max_pages = MAX_PAGES if max_pages is None else max_pages
        items: list = []
        params = dict(params)
        for _ in range(max_pages):
            data = self._call("GET", path, params=params)
            items.extend(data.get(key) or [])
            cursor = data.get("cursor") or ""
            if not cursor or data.get("has_next") is False:
                return items
            params["cursor"] = cursor
        if complete:
            raise BrokerError(
                f"Coinbase GET {path} lists more than {max_pages} pages of {key}; narrow the "
                "request (a start time, an order id) instead of reading part of it."
            )
        return items

    def _candles(
        self, path: str, product_id: str, start: Any, end: Any, granularity: str, now: Any
    ) -> pd.DataFrame:
        """Bars of ``product_id`` opening in ``[start, end)`` from the candles endpoint
        ``path`` (pages of ``MAX_CANDLES``), closed at ``now`` (``timestamp + granularity <=
        now``), oldest first, as a canonical bar table."""
        timeframe, seconds = _granularity(granularity)
        name = GRANULARITIES[timeframe][0]
        t0, t1 = _epoch(start, "start"), _epoch(end, "end")
        if t1 <= t0:
            raise ConfigError(f"candles end ({end}) must be after start ({start}).")
        closed_before = _epoch(now, "now")
        rows: dict[int, tuple[float, ...]] = {}
        chunk = seconds * MAX_CANDLES  # each request spans MAX_CANDLES starts, end inclusive
        for lo in range(t0, t1, chunk):
            hi = min(lo + chunk, t1)
            data = self._call(
                "GET", path, params={"start": str(lo), "end": str(hi - 1), "granularity": name}
            )
            for candle in data.get("candles") or []:
                opened = int(_float(candle.get("start"), -1))
                if t0 <= opened < t1 and opened + seconds <= closed_before:
                    rows[opened] = tuple(
                        _float(candle.get(k), math.nan)
                        for k in ("open", "high", "low", "close", "volume")
                    )
        return _bars_of(rows, product_id, timeframe)


class CoinbaseAdvancedTrade(_CoinbaseREST):
    """A :class:`~moola.runtime.brokers.BrokerAdapter` for Coinbase Advanced Trade (spot).

    Parameters
    ----------
    base_url : str
        The API root (tests point it at a local server).
    credentials : Credentials
        The CDP API key that signs every request.
    timeout : float
        Seconds per request (connect, read, write).
    max_retries : int
        Retries after the first attempt for 429, 5xx and timeouts.
    backoff : float
        First wait in seconds; doubles each retry (429 waits at least ``Retry-After``).
    transport : httpx.BaseTransport, optional
        Passed to ``httpx.Client`` (a mock transport in tests).
    quote_currency : str
        The currency positions and equity are valued in (products ``<BASE>-<QUOTE>``).
    sleep : callable
        How to wait between retries (``time.sleep``).
    max_slippage_bps : float
        How far above the last price a market buy may fill, in basis points (module notes:
        it is sent as a limit IOC at that cap).
    """

    def __init__(
        self,
        *,
        base_url: str = "https://api.coinbase.com",
        credentials: Credentials,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        quote_currency: str = "USD",
        sleep: Callable[[float], None] = time.sleep,
        max_slippage_bps: float = DEFAULT_MAX_SLIPPAGE_BPS,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise ConfigError(
                f"credentials must be a moola.runtime.brokers.Credentials (from_env or "
                f"from_file); got {type(credentials).__name__}."
            )
        if (
            isinstance(max_slippage_bps, bool)
            or not isinstance(max_slippage_bps, int | float)
            or not 0 < max_slippage_bps < 10_000
        ):
            raise ConfigError(
                f"max_slippage_bps must be a number of basis points in (0, 10000); got "
                f"{max_slippage_bps!r}."
            )
        super().__init__(
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            transport=transport,
            sleep=sleep,
        )
        self._credentials = credentials
        self.quote_currency = quote_currency
        self.max_slippage_bps = float(max_slippage_bps)
        self._acks: dict[str, tuple[OrderIntent, BrokerAck]] = {}
        self._client_ids: dict[str, str] = {}  # Coinbase order id -> client order id

    @classmethod
    def from_config(cls, config: CoinbaseConfig, credentials: Credentials) -> CoinbaseAdvancedTrade:
        """The adapter a session's ``coinbase:`` section describes."""
        return cls(
            **_transport_of(config),
            credentials=credentials,
            quote_currency=config.quote_currency,
            max_slippage_bps=config.max_slippage_bps,
        )

    def __repr__(self) -> str:
        return (
            f"CoinbaseAdvancedTrade(base_url={self.base_url!r}, credentials={self._credentials!r})"
        )

    def _headers(self, method: str, path: str) -> dict[str, str]:
        token = self._credentials.jwt(method, self._host, API + path)
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    # ------------------------------------------------------------------ orders

    def submit(self, intent: OrderIntent) -> BrokerAck:
        """Create the order for ``intent`` (module notes: idempotent, no second order).

        Raises ``BrokerError`` when Coinbase refuses it (its error and message), when it
        cannot be reached after the retries, or for a ``client_order_id`` reused for a
        different order.
        """
        if not isinstance(intent, OrderIntent):
            raise ConfigError(f"submit takes an OrderIntent; got {type(intent).__name__}.")
        seen = self._acks.get(intent.client_order_id)
        if seen is not None:
            if seen[0] != intent:
                raise BrokerError(
                    f"client_order_id {intent.client_order_id!r} was already used for another "
                    "order; give each order a new id."
                )
            return seen[1]
        if intent.order_type == "limit":
            assert intent.limit_price is not None
            config: dict[str, Any] = {
                "limit_limit_gtc": {
                    "base_size": _decimal(intent.qty),
                    "limit_price": _decimal(intent.limit_price),
                    "post_only": False,
                }
            }
        elif intent.side == "buy":
            config = {"sor_limit_ioc": self._capped_buy(intent)}
        else:
            config = {"market_market_ioc": {"base_size": _decimal(intent.qty)}}
        body = {
            "client_order_id": intent.client_order_id,
            "product_id": intent.symbol,
            "side": intent.side.upper(),
            "order_configuration": config,
        }

        def existing() -> dict | None:
            try:
                order = self._find_order(intent.client_order_id, intent.symbol)
            except BrokerError as exc:  # the create may have been done: never a refusal
                raise _Unanswered(f"looking for the order sent before failed: {exc}") from None
            if order is None:
                return None
            log.info(
                "Coinbase already holds order %s; not sending it again", intent.client_order_id
            )
            return {"success": True, "success_response": order}

        try:
            data = self._call("POST", "/orders", body=body, before_retry=existing)
        except _Unanswered as exc:
            raise OrderUnsure(
                f"{exc} Order {intent.client_order_id} may have reached Coinbase; submitting "
                "the same intent again (same client_order_id) cannot create a second order.",
                intent.client_order_id,
            ) from None
        if not data.get("success"):
            err = data.get("error_response") or {}
            code = err.get("error") or data.get("failure_reason") or "UNKNOWN_FAILURE_REASON"
            message = err.get("message") or err.get("error_details") or ""
            raise BrokerError(
                f"Coinbase refused order {intent.client_order_id} ({intent.side} {intent.qty} "
                f"{intent.symbol}): {code}: {message}"
            )
        order_id = str((data.get("success_response") or {}).get("order_id") or data.get("order_id"))
        ack = BrokerAck(intent.client_order_id, order_id, "accepted")
        self._acks[intent.client_order_id] = (intent, ack)
        self._client_ids[order_id] = intent.client_order_id
        return ack

    def _capped_buy(self, intent: OrderIntent) -> dict[str, Any]:
        """``sor_limit_ioc`` of a market buy (module notes): ``base_size`` the intent's
        units and ``limit_price`` the last price raised by ``max_slippage_bps``, each
        rounded down to the product's increments (never more units, never a higher cap)."""
        product = self._call("GET", f"/products/{intent.symbol}")
        last = _float(product.get("price"), math.nan)
        if not (math.isfinite(last) and last > 0):
            raise BrokerError(
                f"Coinbase gave no last price for {intent.symbol}; a market buy needs one for "
                f"its price cap (order {intent.client_order_id} not sent)."
            )
        # in decimal, so the cap is exact: 50,000 at +50 bps is 50250, not 50249.99
        raw_cap = Decimal(repr(last)) * (1 + Decimal(repr(self.max_slippage_bps)) / 10_000)
        cap = _round_down(raw_cap, product.get("quote_increment"))
        size = _round_down(Decimal(repr(float(intent.qty))), product.get("base_increment"))
        if size <= 0 or cap <= 0:
            raise BrokerError(
                f"order {intent.client_order_id}: buy {intent.qty} {intent.symbol} rounds to "
                f"{size:f} units at Coinbase's base increment {product.get('base_increment')}; "
                "nothing sent."
            )
        return {"base_size": _decimal(float(size)), "limit_price": _decimal(float(cap))}

    def _find_order(self, client_order_id: str, product_id: str | None = None) -> dict | None:
        """The most recent orders (of ``product_id``) searched for ``client_order_id``."""
        params: dict[str, Any] = {"limit": PAGE_LIMIT}
        if product_id:
            params["product_ids"] = [product_id]
        recent = self._pages(
            "/orders/historical/batch", "orders", params, MAX_LOOKUP_PAGES, complete=False
        )
        for order in recent:
            if order.get("client_order_id") == client_order_id:
                self._client_ids[str(order.get("order_id"))] = client_order_id
                return order
        return None

    def cancel(self, client_order_id: str) -> bool:
        """Cancel the order placed for ``client_order_id``; False when Coinbase has none
        open under that id."""
        seen = self._acks.get(client_order_id)
        order_id = seen[1].broker_order_id if seen else None
        if order_id is None:
            order = self._find_order(client_order_id)
            if order is None:
                return False
            order_id = str(order.get("order_id"))
        data = self._call("POST", "/orders/batch_cancel", body={"order_ids": [order_id]})
        results = data.get("results") or []
        return bool(results and results[0].get("success"))

    def order_status(self, client_order_id: str) -> OrderStatus | None:
        """What Coinbase says became of the order placed for ``client_order_id`` (``GET
        orders/historical/{order_id}``), or None when it holds no order under that id.

        An immediate-or-cancel order (a market buy's ``sor_limit_ioc``, a market sell)
        that Coinbase ``CANCELLED`` with units unfilled is ``expired``: nothing could fill
        at its limit and the exchange ended it by its time in force. ``reason`` is
        Coinbase's cancel or reject message, else its status."""
        seen = self._acks.get(client_order_id)
        order_id = seen[1].broker_order_id if seen else None
        order: Mapping[str, Any] | None = None
        if order_id:
            order = self._call("GET", f"/orders/historical/{order_id}").get("order")
        if not order:
            order = self._find_order(client_order_id)
        if not order:
            return None
        status = str(order.get("status") or "")
        state = _FINAL_STATES.get(status, "open")
        configuration = order.get("order_configuration") or {}
        spec = next(iter(configuration.values()), {}) if configuration else {}
        qty = _float((spec or {}).get("base_size"))
        filled = _float(order.get("filled_size"))
        ioc = str(order.get("time_in_force") or "") == "IMMEDIATE_OR_CANCEL" or bool(
            set(configuration) & {"sor_limit_ioc", "market_market_ioc"}
        )
        if state == "cancelled" and ioc:
            state = "expired"
        reject_reason = str(order.get("reject_reason") or "")
        if reject_reason in _NO_REASONS:  # what every order carries when none was rejected
            reject_reason = ""
        reason = str(order.get("cancel_message") or order.get("reject_message") or reject_reason)
        if state != "open" and not reason:
            reason = f"Coinbase status {status}" + (
                " (immediate or cancel: the rest could not fill at its limit)"
                if state == "expired"
                else ""
            )
        return OrderStatus(client_order_id, state, qty=qty, filled_qty=filled, reason=reason)

    def open_orders(self) -> list[OrderIntent]:
        """Coinbase's open orders, as intents (the quantity not yet filled)."""
        orders = self._pages(
            "/orders/historical/batch", "orders", {"order_status": ["OPEN"], "limit": PAGE_LIMIT}
        )
        out = []
        for order in orders:
            if order.get("status") not in _OPEN_STATUSES:
                continue
            intent = self._intent_of(order)
            if intent is not None:
                out.append(intent)
        return out

    def _intent_of(self, order: Mapping[str, Any]) -> OrderIntent | None:
        configuration = order.get("order_configuration") or {}
        limit = configuration.get("limit_limit_gtc")
        market = configuration.get("market_market_ioc") or configuration.get("sor_limit_ioc")
        spec = limit or market or {}
        size = _float(spec.get("base_size")) - _float(order.get("filled_size"))
        if size <= 0:
            log.warning("Coinbase open order %s has no base size left", order.get("order_id"))
            return None
        return OrderIntent(
            client_order_id=str(order.get("client_order_id") or order.get("order_id")),
            symbol=str(order.get("product_id")),
            side="buy" if str(order.get("side")).upper() == "BUY" else "sell",
            qty=size,
            order_type="limit" if limit else "market",
            limit_price=_float(limit.get("limit_price")) if limit else None,
            decided_at=_time(order.get("created_time")),
        )

    # ------------------------------------------------------------------ account

    def accounts(self) -> dict[str, float]:
        """Currency -> available + held balance, for every account."""
        out: dict[str, float] = {}
        for account in self._pages("/accounts", "accounts", {"limit": PAGE_LIMIT}):
            currency = str(account.get("currency"))
            amount = _float((account.get("available_balance") or {}).get("value"))
            amount += _float((account.get("hold") or {}).get("value"))
            out[currency] = out.get(currency, 0.0) + amount
        return out

    def available(self, currency: str) -> float:
        """What of ``currency`` can be spent now: its accounts' ``available_balance`` alone
        (``balances`` counts the funds held for open orders too, which a new order cannot
        use). The engine sizes a live buy within the quote currency's."""
        total = 0.0
        for account in self._pages("/accounts", "accounts", {"limit": PAGE_LIMIT}):
            if str(account.get("currency")) == currency:
                total += _float((account.get("available_balance") or {}).get("value"))
        return total

    def positions(self) -> dict[str, float]:
        """``<BASE>-<QUOTE>`` -> units held, for each non-zero balance other than the quote."""
        quote = self.quote_currency
        return {
            f"{cur}-{quote}": amount
            for cur, amount in self.accounts().items()
            if cur != quote and amount != 0.0
        }

    def balances(self) -> dict[str, float]:
        """Currency -> amount, and ``"equity"``: the quote balance plus every other balance
        at its product's current price."""
        out = self.accounts()
        quote = self.quote_currency
        equity = out.get(quote, 0.0)
        for cur, amount in out.items():
            if cur != quote and amount != 0.0:
                product = self._call("GET", f"/products/{cur}-{quote}")
                equity += amount * _float(product.get("price"), math.nan)
        out["equity"] = equity
        return out

    def fills(self, since: Any = None) -> list[BrokerFill]:
        """Fills at or after ``since`` (all Coinbase lists when None), oldest first.

        Every page of the account's fills since then is read (``GET
        orders/historical/fills`` with ``start_sequence_timestamp``), and each fill of an
        order this adapter did not place asks Coinbase for that order's client id: on a
        long history, give ``since``, or ask :meth:`order_fills` for one order's fills."""
        params: dict[str, Any] = {"limit": PAGE_LIMIT}
        start = None
        if since is not None:
            start = _utc(since)
            # Coinbase returns fills "with a trade time after" the start: ask from a
            # microsecond before, so a fill at ``since`` itself is not left out
            params["start_sequence_timestamp"] = _rfc3339(start - pd.Timedelta(microseconds=1))
        listed = self._pages("/orders/historical/fills", "fills", params)
        self._learn_client_ids({str(fill.get("order_id")) for fill in listed})
        out = [self._fill_of(fill, self._client_id(str(fill.get("order_id")))) for fill in listed]
        if start is not None:
            out = [f for f in out if f.time is None or f.time >= start]
        out.sort(key=lambda f: (f.time is None, f.time or 0))
        return out

    def order_fills(self, client_order_id: str) -> list[BrokerFill]:
        """The fills of the order placed for ``client_order_id``, oldest first (``[]`` when
        Coinbase holds no order under that id).

        One filtered listing (``GET orders/historical/fills?order_ids=<its order id>``, every
        page of it), however long the account's history: what the engine asks when an
        order it holds as working ends, instead of reading every fill there is."""
        seen = self._acks.get(client_order_id)
        order_id = seen[1].broker_order_id if seen else None
        if not order_id:
            order = self._find_order(client_order_id)
            if order is None:
                return []
            order_id = str(order.get("order_id"))
        self._client_ids[order_id] = client_order_id
        params: dict[str, Any] = {"order_ids": [order_id], "limit": PAGE_LIMIT}
        out = [
            self._fill_of(fill, client_order_id)
            for fill in self._pages("/orders/historical/fills", "fills", params)
            if str(fill.get("order_id")) == order_id
        ]
        out.sort(key=lambda f: (f.time is None, f.time or 0))
        return out

    @staticmethod
    def _fill_of(fill: Mapping[str, Any], client_order_id: str) -> BrokerFill:
        """One List Fills entry as a :class:`BrokerFill` (``size`` in base units: a size
        given in the quote currency, ``size_in_quote``, is divided by the price)."""
        price = _float(fill.get("price"))
        size = _float(fill.get("size"))
        if fill.get("size_in_quote") and price > 0:
            size = size / price
        sign = 1.0 if str(fill.get("side")).upper() == "BUY" else -1.0
        return BrokerFill(
            fill_id=str(fill.get("entry_id") or fill.get("trade_id")),
            client_order_id=client_order_id,
            symbol=str(fill.get("product_id")),
            qty=sign * size,
            price=price,
            fee=_float(fill.get("commission")),
            time=_time(fill.get("trade_time")),
        )

    def _learn_client_ids(self, order_ids: set[str]) -> None:
        """The client ids of orders this adapter has not seen, asked in batches of
        ``LOOKUP_BATCH`` (``GET orders/historical/batch?order_ids=...``, one page each)
        instead of one request per order; an order the page leaves out is asked alone
        later (``_client_id``), so a listing that ignored the filter costs one page."""
        unknown = sorted(o for o in order_ids if o not in self._client_ids)
        for k in range(0, len(unknown), LOOKUP_BATCH):
            params = {"order_ids": unknown[k : k + LOOKUP_BATCH], "limit": PAGE_LIMIT}
            page = self._pages("/orders/historical/batch", "orders", params, 1, complete=False)
            for order in page:
                order_id = str(order.get("order_id"))
                self._client_ids[order_id] = str(order.get("client_order_id") or order_id)

    def _client_id(self, order_id: str) -> str:
        known = self._client_ids.get(order_id)
        if known is None:
            order = self._call("GET", f"/orders/historical/{order_id}").get("order") or {}
            known = str(order.get("client_order_id") or order_id)
            self._client_ids[order_id] = known
        return known

    # ------------------------------------------------------------------ market data

    def candles(
        self,
        product_id: str,
        start: Any,
        end: Any,
        granularity: str = "1m",
        *,
        now: Any = None,
    ) -> pd.DataFrame:
        """Closed bars of ``product_id`` opening in ``[start, end)``, as a canonical bar
        table (``moola.data.schema``), oldest first.

        ``granularity`` is a moola timeframe (``1m 5m 15m 30m 1h 2h 6h 1d``) or Coinbase's
        name (``ONE_MINUTE`` ...). A bar still open at ``now`` (default: the current time)
        is left out: a decision never sees a bar before it has closed.
        """
        now = pd.Timestamp.now(tz="UTC") if now is None else now
        return self._candles(
            f"/products/{product_id}/candles", product_id, start, end, granularity, now
        )


class CoinbasePublicMarket(_CoinbaseREST):
    """Coinbase Advanced Trade's public market data (no key, unsigned): the exchange's
    clock and closed candles, what :class:`~moola.runtime.feed.PollingFeed` polls.

    Parameters are :class:`CoinbaseAdvancedTrade`'s transport ones (``base_url``,
    ``timeout``, ``max_retries``, ``backoff``, ``transport``, ``sleep``); failures are
    retried the same way and then raise ``BrokerError`` naming the endpoint.
    """

    @classmethod
    def from_config(
        cls, config: CoinbaseConfig, *, sleep: Callable[[float], None] = time.sleep
    ) -> CoinbasePublicMarket:
        """The market-data client of a session's ``coinbase:`` section."""
        return cls(**_transport_of(config), sleep=sleep)

    def __repr__(self) -> str:
        return f"CoinbasePublicMarket(base_url={self.base_url!r})"

    def server_time(self) -> pd.Timestamp:
        """The exchange's clock now (``GET /time``), UTC."""
        data = self._call("GET", "/time")
        millis = _float(data.get("epochMillis"), math.nan)
        if math.isfinite(millis):
            return pd.Timestamp(int(millis), unit="ms", tz="UTC")
        seconds = _float(data.get("epochSeconds"), math.nan)
        if math.isfinite(seconds):
            return pd.Timestamp(seconds, unit="s", tz="UTC")
        stamp = _time(data.get("iso"))
        if stamp is None:
            raise BrokerError("Coinbase answered GET /time without a time (iso, epochSeconds).")
        return stamp

    def candles(
        self, product_id: str, start: Any, end: Any, granularity: str = "1m", *, now: Any
    ) -> pd.DataFrame:
        """Bars of ``product_id`` opening in ``[start, end)`` and closed at ``now`` (the
        exchange's time read *before* this request, so no bar still forming when the
        candles were computed is taken for closed), oldest first, as a canonical bar table.
        ``granularity`` as in :meth:`CoinbaseAdvancedTrade.candles`."""
        path = f"/market/products/{product_id}/candles"
        return self._candles(path, product_id, start, end, granularity, now)


def _transport_of(config: CoinbaseConfig) -> dict[str, Any]:
    """A ``coinbase:`` section's transport settings, as the clients' keywords."""
    return {
        "base_url": config.base_url,
        "timeout": config.timeout_seconds,
        "max_retries": config.max_retries,
        "backoff": config.backoff_seconds,
    }


def _bars_of(
    rows: Mapping[int, tuple[float, ...]], product_id: str, timeframe: str
) -> pd.DataFrame:
    """Candle rows (open epoch second -> OHLCV) as a canonical bar table, oldest first."""
    if not rows:
        bars = empty_bars()
        return bars.assign(
            symbol=bars["symbol"].astype("string"), timeframe=bars["timeframe"]
        ).reset_index(drop=True)
    stamps = sorted(rows)
    values = np.array([rows[t] for t in stamps], dtype=np.float64).reshape(-1, 5)
    return make_bars(
        pd.to_datetime(stamps, unit="s", utc=True),
        values[:, 0],
        values[:, 1],
        values[:, 2],
        values[:, 3],
        values[:, 4],
        symbol=product_id,
        timeframe=timeframe,
    )


def _round_down(value: Decimal, increment: Any) -> Decimal:
    """``value`` rounded down to a multiple of ``increment`` (a decimal string; none or
    unreadable: ``value`` as it is)."""
    try:
        step = Decimal(str(increment))
    except (ArithmeticError, ValueError, TypeError):
        return value
    if not step.is_finite() or step <= 0:
        return value
    return (value / step).to_integral_value(ROUND_FLOOR) * step


def _granularity(value: str) -> tuple[str, int]:
    if value in GRANULARITIES:
        return value, GRANULARITIES[value][1]
    for timeframe, (name, seconds) in GRANULARITIES.items():
        if value == name:
            return timeframe, seconds
    raise ConfigError(
        f"granularity={value!r}; use one of {', '.join(GRANULARITIES)} or Coinbase's names "
        f"({', '.join(name for name, _ in GRANULARITIES.values())})."
    )


def _epoch(value: Any, name: str) -> int:
    """Whole seconds since the epoch (UTC) of a timestamp, datetime or number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"candles {name}={value!r} is not a time.") from None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.timestamp())


def _utc(value: Any) -> pd.Timestamp:
    """A time (timestamp, datetime, text) as a UTC timestamp; naive means UTC."""
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"since={value!r} is not a time.") from None
    if stamp is pd.NaT:
        raise ConfigError(f"since={value!r} is not a time.")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _rfc3339(value: Any) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time(value: Any) -> pd.Timestamp | None:
    """A UTC timestamp from Coinbase's RFC 3339 text; None when absent or unreadable."""
    if not value:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """Coinbase's error code and message of a refused request (``error``/``message``)."""
    try:
        data = response.json()
    except ValueError:
        return "", response.text[:200]
    if not isinstance(data, dict):
        return "", str(data)[:200]
    code = data.get("error") or data.get("error_response", {}).get("error") or ""
    message = data.get("message") or data.get("error_details") or ""
    return str(code), str(message)
