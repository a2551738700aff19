"""A local stand-in for Coinbase Advanced Trade's REST API, for the adapter's tests.

A threaded ``http.server`` on ``127.0.0.1:0`` that checks every request's JWT the way
Coinbase does for CDP keys (ES256 signature by the test key, ``uri`` claim ``"<METHOD>
<host><path>"``, ``nbf``/``exp`` window of at most 120 s, ``kid`` and ``nonce`` headers), and
speaks the documented request and response shapes of the endpoints the adapter uses:

- ``POST /orders``: ``client_order_id``, ``product_id``, ``side`` (BUY/SELL) and one
  ``order_configuration``, each side's sizes checked as Advanced Trade takes them:
  ``market_market_ioc`` BUY with ``quote_size`` only, SELL with ``base_size`` only (a buy
  sized in base units is refused ``INVALID_ARGUMENT``); ``sor_limit_ioc`` and
  ``limit_limit_gtc`` with ``base_size`` and ``limit_price``. A client id seen before
  returns that order and creates nothing (Coinbase's idempotency). Market orders fill at
  once at the execution price (``exec_prices``, default the product's price); an IOC limit
  fills all of ``base_size`` at that price when it is within the limit (at most
  ``liquidity[product]`` units when that is set: the rest is cancelled), else it is
  cancelled unfilled; GTC limit orders rest ``OPEN``. Too little balance answers
  ``success: false`` with ``INSUFFICIENT_FUND``.
- ``POST /orders/batch_cancel``, ``GET /orders/historical/batch`` (``order_ids``,
  ``product_ids``, ``order_status``, ``limit``/``cursor`` pages), ``GET /orders/historical/{id}``,
  ``GET /orders/historical/fills`` (List Fills: ``order_ids``, ``trade_ids`` and
  ``product_ids`` filter; ``start_sequence_timestamp`` keeps fills with a trade time after
  it and ``end_sequence_timestamp`` those before it, RFC 3339; ``limit``/``cursor`` pages,
  the response ``{"fills": [...], "cursor": ...}`` with no ``has_next``; newest first),
  ``GET /accounts``, ``GET /products/{id}`` (price and increments) and ``GET
  /products/{id}/candles`` (newest first, as Coinbase sends them).
- Every request's query parameters are checked against the ones the endpoint documents
  (``QUERY``): an unknown one is refused ``400 INVALID_ARGUMENT`` naming it, so a misspelt
  filter cannot pass a test by being ignored.
- Public, unsigned (no JWT checked): ``GET /time`` (the exchange's clock, ``now``; None:
  the real time) and ``GET /market/products/{id}/candles``, which, like Coinbase, also
  sends the bar still forming at ``now``: as a partial candle (its open as every price,
  half its volume), never its final values; bars not yet started are not sent.

Faults are queued per method and path (:meth:`FakeCoinbase.fail`): an HTTP status (429 with
``Retry-After``, 500, ...), an error (a 4xx with Coinbase's ``error``/``message``),
``"lost"`` (the request is carried out, then the answer is held past the client's timeout),
or ``"hang"`` (held without being carried out).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from moola.runtime.brokers.coinbase import GRANULARITIES

#: The CDP API key name the tests sign with.
KEY_NAME = "organizations/test-org/apiKeys/test-key-0001"

PREFIX = "/api/v3/brokerage"
PUBLIC = ("/api/v3/brokerage/time",)
PUBLIC_PREFIX = "/api/v3/brokerage/market/"

_CANDLES = frozenset({"start", "end", "granularity", "limit"})
#: The query parameters each GET endpoint documents (docs.cdp.coinbase.com,
#: api-reference/advanced-trade-api/rest-api/...): (route kind, names).
QUERY: dict[str, frozenset[str]] = {
    "time": frozenset(),
    "market_candles": _CANDLES,
    "candles": _CANDLES,
    "product": frozenset({"get_tradability_status"}),
    "accounts": frozenset({"limit", "cursor", "retail_portfolio_id"}),
    "fills": frozenset(
        {
            "order_ids",
            "trade_ids",
            "product_ids",
            "start_sequence_timestamp",
            "end_sequence_timestamp",
            "retail_portfolio_id",
            "limit",
            "cursor",
            "sort_by",
        }
    ),
    "orders": frozenset(
        {
            "order_ids",
            "product_ids",
            "product_type",
            "order_status",
            "time_in_forces",
            "order_types",
            "order_side",
            "start_date",
            "end_date",
            "order_placement_source",
            "contract_expiry_type",
            "asset_filters",
            "retail_portfolio_id",
            "limit",
            "cursor",
            "sort_by",
            "user_native_currency",
            "use_simplified_total_value_calculation",
        }
    ),
    "order": frozenset({"client_order_id", "user_native_currency"}),
}


@dataclass
class Fault:
    method: str
    path: str
    status: int = 0
    retry_after: str | None = None
    error: str = ""
    message: str = ""
    hold: float = 0.0
    carry_out: bool = False


@dataclass
class FakeCoinbase:
    key_name: str | None = None  # None: every signed request is refused (public ones answer)
    public_key: Any = None
    prices: dict[str, float] = field(default_factory=lambda: {"BTC-USD": 50_000.0})
    balances: dict[str, float] = field(default_factory=lambda: {"USD": 10_000.0, "BTC": 0.0})
    candles: dict[str, list[dict]] = field(default_factory=dict)
    hold_s: float = 1.0
    exec_prices: dict[str, float] = field(default_factory=dict)
    now: float | None = None  # the exchange's clock (epoch seconds); None: time.time()
    liquidity: dict[str, float] = field(default_factory=dict)  # units an IOC limit can take
    holds: dict[str, float] = field(default_factory=dict)  # held for open orders, by currency

    def __post_init__(self) -> None:
        self.orders: dict[str, dict] = {}
        self.fills: list[dict] = []
        self.requests: list[tuple[str, str, dict, Any]] = []
        self.auth_failures: list[str] = []
        self.unlisted: set[str] = set()  # client ids not yet in listings (eventual consistency)
        self.creates = 0
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ control

    def __enter__(self) -> FakeCoinbase:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def fail(self, method: str, path: str, *outcomes: Any) -> None:
        """Queue faults for ``method path`` (path below /api/v3/brokerage, a prefix): each
        an int status, ``(429, retry_after)``, ``(status, error, message)``, ``"lost"`` or
        ``"hang"``; each answers one request, in order."""
        for outcome in outcomes:
            fault = Fault(method, path)
            if outcome == "lost":
                fault.hold, fault.carry_out = self.hold_s, True
            elif outcome == "hang":
                fault.hold = self.hold_s
            elif isinstance(outcome, int):
                fault.status = outcome
            elif len(outcome) == 2:
                fault.status, fault.retry_after = outcome[0], str(outcome[1])
            else:
                fault.status, fault.error, fault.message = outcome
            self._faults.append(fault)

    def advance(self, seconds: float) -> None:
        """Move the exchange's clock on (a test's stand-in for sleeping)."""
        assert self.now is not None, "set now first"
        self.now += seconds

    def clock(self) -> float:
        return time.time() if self.now is None else self.now

    def orders_by_client(self, client_order_id: str) -> str:
        """The order id Coinbase gave the order placed under ``client_order_id``."""
        [order_id] = [k for k, o in self.orders.items() if o["client_order_id"] == client_order_id]
        return order_id

    def calls(self, method: str, path: str) -> int:
        """How many requests reached ``method path`` (exactly)."""
        return sum(1 for m, p, _, _ in self.requests if m == method and p == path)

    # ------------------------------------------------------------------ serving

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for k, fault in enumerate(self._faults):
                if fault.method == method and path.startswith(fault.path):
                    return self._faults.pop(k)
        return None

    def check_jwt(self, method: str, path: str, header: str | None) -> str | None:
        """Why the request's JWT is refused, or None when it is good."""
        if path in PUBLIC or path.startswith(PUBLIC_PREFIX):
            return None  # public market data: no key
        if not header or not header.startswith("Bearer "):
            return "no bearer token"
        token = header[len("Bearer ") :]
        try:
            head = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
                options={"require": ["exp", "nbf", "uri", "sub", "iss"]},
            )
        except jwt.PyJWTError as exc:
            return f"bad token: {type(exc).__name__}"
        if head.get("kid") != self.key_name or not head.get("nonce"):
            return "kid or nonce header missing"
        if claims["sub"] != self.key_name or claims["iss"] != "cdp":
            return "sub or iss claim wrong"
        if claims["exp"] - claims["nbf"] > 120:
            return "token lives longer than 120 s"
        if claims["uri"] != f"{method} {self.host}{path}":
            return f"uri claim {claims['uri']!r} is not for {method} {self.host}{path}"
        return None

    def handle(self, method: str, path: str, query: dict, body: Any) -> tuple[int, dict]:
        with self._lock:
            try:
                return self._route(method, path, query, body)
            except _Refused as exc:
                return 400, {"error": "INVALID_ARGUMENT", "message": str(exc)}

    def _route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, dict]:
        sub = path[len(PREFIX) :]
        refused = _unknown_query(method, sub, query)
        if refused:
            return 400, {"error": "INVALID_ARGUMENT", "message": refused}
        if method == "GET" and sub == "/time":
            now = self.clock()
            iso = (
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e3):03d}Z"
            )
            return 200, {"iso": iso, "epochSeconds": str(int(now)),
                         "epochMillis": str(int(now * 1000))}  # fmt: skip
        if method == "GET" and sub.startswith("/market/products/") and sub.endswith("/candles"):
            product = sub.split("/")[3]
            if product not in self.candles:
                return 404, {"error": "NOT_FOUND", "message": f"product {product} not found"}
            return 200, self._public_candles(product, query)
        if method == "POST" and sub == "/orders":
            return self._create(body)
        if method == "POST" and sub == "/orders/batch_cancel":
            return 200, {"results": [self._cancel(oid) for oid in body.get("order_ids", [])]}
        if method == "GET" and sub == "/orders/historical/batch":
            return 200, self._list_orders(query)
        if method == "GET" and sub == "/orders/historical/fills":
            return 200, self._list_fills(query)
        if method == "GET" and sub.startswith("/orders/historical/"):
            order = self.orders.get(sub.rsplit("/", 1)[1])
            if order is None:
                return 404, {"error": "NOT_FOUND", "message": "order not found"}
            return 200, {"order": order}
        if method == "GET" and sub == "/accounts":
            return 200, self._accounts(query)
        if method == "GET" and sub.startswith("/products/") and sub.endswith("/candles"):
            return 200, self._candles(sub.split("/")[2], query)
        if method == "GET" and sub.startswith("/products/"):
            product = sub.split("/")[2]
            if product not in self.prices:
                return 404, {"error": "NOT_FOUND", "message": f"product {product} not found"}
            return 200, {"product_id": product, "price": str(self.prices[product]),
                         "quote_increment": "0.01", "base_increment": "0.00000001"}  # fmt: skip
        return 404, {"error": "NOT_FOUND", "message": f"no route {method} {path}"}

    def _create(self, body: Any) -> tuple[int, dict]:
        if not isinstance(body, dict):
            return 400, {"error": "INVALID_ARGUMENT", "message": "body must be an object"}
        cid, product, side = body.get("client_order_id"), body.get("product_id"), body.get("side")
        config = body.get("order_configuration") or {}
        if not cid or product not in self.prices or side not in ("BUY", "SELL"):
            return 400, {"error": "INVALID_ARGUMENT", "message": "client_order_id, product_id "
                         "and side (BUY/SELL) are required"}  # fmt: skip
        for order in self.orders.values():
            if order["client_order_id"] == cid:  # idempotent on client_order_id
                return 200, self._success(order)
        kinds = {"market_market_ioc", "sor_limit_ioc", "limit_limit_gtc"}
        if len(config) != 1 or not set(config) <= kinds:
            return 400, {"error": "INVALID_ARGUMENT", "message": "one order_configuration"}
        kind, spec = next(iter(config.items()))
        refused = _sizes_refused(kind, side, spec)
        if refused:
            return 400, {"error": "INVALID_ARGUMENT", "message": refused}
        base, quote = product.split("-")
        market = self.exec_prices.get(product, self.prices[product])
        limit = float(spec.get("limit_price") or 0.0)
        if "quote_size" in spec:  # a market buy spending quote_size
            size = float(spec["quote_size"]) / market
        else:
            size = float(spec["base_size"])
        price = limit if kind == "limit_limit_gtc" else market
        within = market <= limit if side == "BUY" else market >= limit
        fills = kind == "market_market_ioc" or (kind == "sor_limit_ioc" and within)
        ordered = size
        if kind == "sor_limit_ioc" and product in self.liquidity:
            size = min(size, self.liquidity[product])
            fills = fills and size > 0
        if (side == "BUY" and size * price > self.balances.get(quote, 0.0)) or (
            side == "SELL" and size > self.balances.get(base, 0.0)
        ):
            return 200, {
                "success": False,
                "failure_reason": "UNKNOWN_FAILURE_REASON",
                "order_id": "",
                "error_response": {
                    "error": "INSUFFICIENT_FUND",
                    "message": "Insufficient balance in source account",
                    "error_details": "",
                    "preview_failure_reason": "PREVIEW_INSUFFICIENT_FUND",
                },
            }
        order_id = str(uuid.uuid4())
        now = _rfc3339(self.clock())
        order = {
            "order_id": order_id,
            "product_id": product,
            "client_order_id": cid,
            "side": side,
            "order_configuration": config,
            "status": "OPEN",
            "created_time": now,
            "filled_size": "0",
            "average_filled_price": "0",
            "time_in_force": "GOOD_UNTIL_CANCELLED"
            if kind == "limit_limit_gtc"
            else "IMMEDIATE_OR_CANCEL",
            "order_type": "MARKET" if kind == "market_market_ioc" else "LIMIT",
            "pending_cancel": False,
            "size_in_quote": False,
            "product_type": "SPOT",
            "settled": False,
            # what Coinbase sends on every order, rejected or not (Get Order / List Orders)
            "reject_reason": "REJECT_REASON_UNSPECIFIED",
            "reject_message": "",
            "cancel_message": "",
        }
        self.orders[order_id] = order
        self.creates += 1
        if kind == "sor_limit_ioc" and not fills:
            order["status"] = "CANCELLED"  # nothing within the limit: IOC, cancelled unfilled
        if fills:
            fee = round(size * price * 0.006, 8)
            sign = 1.0 if side == "BUY" else -1.0
            self.balances[base] = self.balances.get(base, 0.0) + sign * size
            self.balances[quote] = self.balances.get(quote, 0.0) - sign * size * price - fee
            order.update(status="FILLED", filled_size=str(size), average_filled_price=str(price))
            if size < ordered:  # IOC: what the book could not take is cancelled
                order["status"] = "CANCELLED"
            self.add_fill(order, size, price, fee)
        return 200, self._success(order)

    def add_fill(
        self, order: dict, size: float, price: float, fee: float, at: float | None = None
    ) -> dict:
        """Record one fill of ``order`` (a List Fills entry, its documented fields) at
        epoch second ``at`` (default: the exchange's clock); returns it."""
        stamp = _rfc3339(self.clock() if at is None else at)
        fill = {
            "entry_id": str(uuid.uuid4()),
            "trade_id": str(uuid.uuid4()),
            "order_id": order["order_id"],
            "trade_time": stamp,
            "trade_type": "FILL",
            "price": str(price),
            "size": str(size),
            "commission": str(fee),
            "product_id": order["product_id"],
            "sequence_timestamp": stamp,
            "liquidity_indicator": "TAKER",
            "size_in_quote": False,
            "user_id": "test-user",
            "side": order["side"],
            "retail_portfolio_id": "",
        }
        self.fills.append(fill)
        return fill

    @staticmethod
    def _success(order: dict) -> dict:
        return {
            "success": True,
            "success_response": {
                "order_id": order["order_id"],
                "product_id": order["product_id"],
                "side": order["side"],
                "client_order_id": order["client_order_id"],
            },
            "order_configuration": order["order_configuration"],
        }

    def _cancel(self, order_id: str) -> dict:
        order = self.orders.get(order_id)
        if order is None or order["status"] != "OPEN":
            return {"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER",
                    "order_id": order_id}  # fmt: skip
        order["status"] = "CANCELLED"
        return {"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON",
                "order_id": order_id}  # fmt: skip

    def _page(self, items: list, query: dict) -> tuple[list, str, bool]:
        start = int(query.get("cursor", ["0"])[0] or 0)
        size = int(query.get("limit", ["100"])[0])
        if size <= 0:
            raise _Refused(f"limit must be positive; got {size}")
        end = start + size
        return items[start:end], (str(end) if end < len(items) else ""), end < len(items)

    def _list_orders(self, query: dict) -> dict:
        orders = [
            o for o in reversed(self.orders.values()) if o["client_order_id"] not in self.unlisted
        ]  # newest first
        if "order_ids" in query:
            orders = [o for o in orders if o["order_id"] in query["order_ids"]]
        if "product_ids" in query:
            orders = [o for o in orders if o["product_id"] in query["product_ids"]]
        if "order_status" in query:
            orders = [o for o in orders if o["status"] in query["order_status"]]
        page, cursor, more = self._page(orders, query)
        return {"orders": page, "sequence": "0", "has_next": more, "cursor": cursor}

    def _list_fills(self, query: dict) -> dict:
        """List Fills as documented: filters ``order_ids``, ``trade_ids``, ``product_ids``
        (each repeatable), ``start_sequence_timestamp`` (trade time after it) and
        ``end_sequence_timestamp`` (before it); newest first; ``cursor`` pages."""
        fills = sorted(self.fills, key=lambda f: _parse_time(f["trade_time"]), reverse=True)
        for name, key in (("order_ids", "order_id"), ("trade_ids", "trade_id"),
                          ("product_ids", "product_id")):  # fmt: skip
            if name in query:
                fills = [f for f in fills if f[key] in query[name]]
        if "start_sequence_timestamp" in query:
            start = _parse_time(query["start_sequence_timestamp"][0])
            fills = [f for f in fills if _parse_time(f["trade_time"]) > start]
        if "end_sequence_timestamp" in query:
            end = _parse_time(query["end_sequence_timestamp"][0])
            fills = [f for f in fills if _parse_time(f["trade_time"]) < end]
        page, cursor, _ = self._page(fills, query)
        return {"fills": page, "cursor": cursor}

    def _accounts(self, query: dict) -> dict:
        accounts = [
            {
                "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, currency)),
                "name": f"{currency} Wallet",
                "currency": currency,
                "available_balance": {"value": str(amount), "currency": currency},
                "default": True,
                "active": True,
                "type": "ACCOUNT_TYPE_CRYPTO" if currency != "USD" else "ACCOUNT_TYPE_FIAT",
                "ready": True,
                "hold": {"value": str(self.holds.get(currency, 0.0)), "currency": currency},
            }
            for currency, amount in self.balances.items()
        ]
        # List Accounts: ``limit`` 49 by default, at most 250; ``has_next``/``cursor`` pages
        limit = int(query.get("limit", ["49"])[0])
        if not 0 < limit <= 250:
            raise _Refused(f"limit must be 1 to 250; got {limit}")
        page, cursor, more = self._page(accounts, {**query, "limit": [str(limit)]})
        return {"accounts": page, "has_next": more, "cursor": cursor, "size": len(page)}

    @staticmethod
    def _candle_window(query: dict) -> tuple[int, int, int, int]:
        """Get Product Candles' documented query: ``start`` and ``end`` (UNIX seconds) and
        ``granularity`` required, ``limit`` at most 350 (the default); a window of more
        than 350 buckets is refused. (start, end, seconds per candle, limit)."""
        missing = [k for k in ("start", "end", "granularity") if k not in query]
        if missing:
            raise _Refused(f"{', '.join(missing)} required")
        try:
            start, end = int(query["start"][0]), int(query["end"][0])
            limit = int(query.get("limit", ["350"])[0])
        except ValueError:
            raise _Refused("start, end and limit must be integers") from None
        seconds = {name: s for name, s in GRANULARITIES.values()}.get(query["granularity"][0])
        if seconds is None:
            raise _Refused(f"granularity {query['granularity'][0]!r} is not one of Coinbase's")
        if end < start or not 0 < limit <= 350:
            raise _Refused("end must not be before start; limit is 1 to 350")
        if (end - start) / seconds > 350:
            raise _Refused("number of candles requested should be less than 350")
        return start, end, seconds, limit

    def _public_candles(self, product: str, query: dict) -> dict:
        """Candles that have started by ``now``; the one still forming as a partial candle."""
        start, end, seconds, limit = self._candle_window(query)
        now = self.clock()
        rows = []
        for c in self.candles.get(product, []):
            opened = int(c["start"])
            if not (start <= opened <= end) or opened > now:
                continue
            if opened + seconds > now:  # forming: what is known so far, not its final values
                c = {**c, "high": c["open"], "low": c["open"], "close": c["open"],
                     "volume": str(float(c["volume"]) / 2)}  # fmt: skip
            rows.append(c)
        return {"candles": sorted(rows, key=lambda c: -int(c["start"]))[:limit]}

    def _candles(self, product: str, query: dict) -> dict:
        start, end, _, limit = self._candle_window(query)
        rows = [c for c in self.candles.get(product, []) if start <= int(c["start"]) <= end]
        return {"candles": sorted(rows, key=lambda c: -int(c["start"]))[:limit]}


def pem_of(key: ec.EllipticCurvePrivateKey) -> str:
    """``key`` as the PEM text a CDP key file (and ``COINBASE_API_PRIVATE_KEY``) holds."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def cdp_key() -> tuple[str, ec.EllipticCurvePrivateKey]:
    """A fresh CDP-style EC key (P-256): its PEM and the key itself, whose public half is
    what :class:`FakeCoinbase` checks each request's signature with."""
    key = ec.generate_private_key(ec.SECP256R1())
    return pem_of(key), key


class _Refused(Exception):
    """A request Coinbase answers 400 INVALID_ARGUMENT (the message says why)."""


def _rfc3339(epoch: float) -> str:
    """Epoch seconds as Coinbase writes a time: RFC 3339, UTC, microseconds."""
    whole = int(epoch // 1)
    micros = round((epoch - whole) * 1e6)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


def _parse_time(text: str) -> datetime:
    """An RFC 3339 time of a request or a record; a bad one is refused (400)."""
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise _Refused(f"{text!r} is not an RFC 3339 timestamp") from None
    if stamp.tzinfo is None:
        raise _Refused(f"{text!r} has no time zone (RFC 3339 needs one)")
    return stamp


def _route_kind(method: str, sub: str) -> str | None:
    """Which ``QUERY`` entry a GET path is (None: not a GET the fake serves)."""
    if method != "GET":
        return None
    if sub == "/time":
        return "time"
    if sub.startswith("/market/products/") and sub.endswith("/candles"):
        return "market_candles"
    if sub == "/orders/historical/fills":
        return "fills"
    if sub == "/orders/historical/batch":
        return "orders"
    if sub.startswith("/orders/historical/"):
        return "order"
    if sub == "/accounts":
        return "accounts"
    if sub.startswith("/products/") and sub.endswith("/candles"):
        return "candles"
    if sub.startswith("/products/"):
        return "product"
    return None


def _unknown_query(method: str, sub: str, query: dict) -> str:
    """Why the query is refused: a parameter the endpoint does not document ("" if none)."""
    kind = _route_kind(method, sub)
    allowed = QUERY.get(kind, frozenset()) if kind else frozenset()
    unknown = sorted(set(query) - allowed)
    if unknown:
        return (
            f"unknown query parameter(s) {', '.join(unknown)} for {method} {sub}; "
            f"documented: {', '.join(sorted(allowed)) or 'none'}"
        )
    return ""


def _sizes_refused(kind: str, side: str, spec: Any) -> str:
    """Why Advanced Trade would refuse ``spec``'s sizes for ``kind`` and ``side`` ("": fine)."""
    if not isinstance(spec, dict):
        return f"bad {kind}"
    try:
        sizes = {k: float(spec[k]) for k in ("base_size", "quote_size", "limit_price") if k in spec}
    except (TypeError, ValueError):
        return f"bad {kind}"
    if any(v <= 0 for v in sizes.values()):
        return f"bad {kind}: sizes and prices must be positive"
    if kind == "market_market_ioc":
        wanted = "quote_size" if side == "BUY" else "base_size"
        if set(sizes) != {wanted}:
            return f"market_market_ioc {side} takes {wanted} only; got {sorted(sizes)}"
    elif set(sizes) != {"base_size", "limit_price"}:
        return f"{kind} takes base_size and limit_price; got {sorted(sizes)}"
    return ""


class _Handler(BaseHTTPRequestHandler):
    fake: FakeCoinbase

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        fake.requests.append((method, path[len(PREFIX) :], query, body))
        refused = fake.check_jwt(method, path, self.headers.get("Authorization"))
        if refused is not None:
            fake.auth_failures.append(refused)
            self._answer(401, {"error": "UNAUTHORIZED", "message": refused})
            return
        fault = fake.take_fault(method, path[len(PREFIX) :])
        if fault is not None and fault.hold:
            if fault.carry_out:
                fake.handle(method, path, query, body)
            time.sleep(fault.hold)  # past the client's timeout: it never sees an answer
            return
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            payload = {"error": fault.error or "ERROR", "message": fault.message or "fault"}
            self._answer(fault.status, payload, headers)
            return
        status, payload = fake.handle(method, path, query, body)
        self._answer(status, payload)

    def _answer(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
