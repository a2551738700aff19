"""A local stand-in for Coinbase Advanced Trade's REST API, for the adapter's tests.

A threaded ``http.server`` on ``127.0.0.1:0`` that checks every request's JWT the way
Coinbase does for CDP keys (ES256 signature by the test key, ``uri`` claim ``"<METHOD>
<host><path>"``, ``nbf``/``exp`` window of at most 120 s, ``kid`` and ``nonce`` headers), and
speaks the documented request and response shapes of the endpoints the adapter uses:

- ``POST /orders``: ``client_order_id``, ``product_id``, ``side`` (BUY/SELL) and one
  ``order_configuration`` (``market_market_ioc`` with ``base_size``, ``limit_limit_gtc`` with
  ``base_size`` and ``limit_price``). A client id seen before returns that order and creates
  nothing (Coinbase's idempotency). Market orders fill at once at the product's price;
  limit orders rest ``OPEN``. Too little balance answers ``success: false`` with
  ``INSUFFICIENT_FUND``.
- ``POST /orders/batch_cancel``, ``GET /orders/historical/batch`` (``product_ids``,
  ``order_status``, ``limit``/``cursor`` pages), ``GET /orders/historical/{id}``,
  ``GET /orders/historical/fills``, ``GET /accounts``, ``GET /products/{id}`` and
  ``GET /products/{id}/candles`` (newest first, as Coinbase sends them).

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

PREFIX = "/api/v3/brokerage"


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
    key_name: str
    public_key: Any
    prices: dict[str, float] = field(default_factory=lambda: {"BTC-USD": 50_000.0})
    balances: dict[str, float] = field(default_factory=lambda: {"USD": 10_000.0, "BTC": 0.0})
    candles: dict[str, list[dict]] = field(default_factory=dict)
    hold_s: float = 1.0

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
            return self._route(method, path, query, body)

    def _route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, dict]:
        sub = path[len(PREFIX) :]
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
            return 200, self._accounts()
        if method == "GET" and sub.startswith("/products/") and sub.endswith("/candles"):
            return 200, self._candles(sub.split("/")[2], query)
        if method == "GET" and sub.startswith("/products/"):
            product = sub.split("/")[2]
            if product not in self.prices:
                return 404, {"error": "NOT_FOUND", "message": f"product {product} not found"}
            return 200, {"product_id": product, "price": str(self.prices[product])}
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
        if len(config) != 1 or not set(config) <= {"market_market_ioc", "limit_limit_gtc"}:
            return 400, {"error": "INVALID_ARGUMENT", "message": "one order_configuration"}
        kind, spec = next(iter(config.items()))
        try:
            size = float(spec["base_size"])
            limit = float(spec["limit_price"]) if kind == "limit_limit_gtc" else None
        except (KeyError, TypeError, ValueError):
            return 400, {"error": "INVALID_ARGUMENT", "message": f"bad {kind}"}
        base, quote = product.split("-")
        price = self.prices[product] if limit is None else limit
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
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
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
            "time_in_force": "IMMEDIATE_OR_CANCEL" if limit is None else "GOOD_UNTIL_CANCELLED",
        }
        self.orders[order_id] = order
        self.creates += 1
        if limit is None:
            fee = round(size * price * 0.006, 8)
            sign = 1.0 if side == "BUY" else -1.0
            self.balances[base] = self.balances.get(base, 0.0) + sign * size
            self.balances[quote] = self.balances.get(quote, 0.0) - sign * size * price - fee
            order.update(status="FILLED", filled_size=str(size), average_filled_price=str(price))
            self.fills.append(
                {
                    "entry_id": str(uuid.uuid4()),
                    "trade_id": str(uuid.uuid4()),
                    "order_id": order_id,
                    "trade_time": now,
                    "trade_type": "FILL",
                    "price": str(price),
                    "size": str(size),
                    "commission": str(fee),
                    "product_id": product,
                    "sequence_timestamp": now,
                    "liquidity_indicator": "TAKER",
                    "size_in_quote": False,
                    "user_id": "test-user",
                    "side": side,
                }
            )
        return 200, self._success(order)

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
        end = start + size
        return items[start:end], (str(end) if end < len(items) else ""), end < len(items)

    def _list_orders(self, query: dict) -> dict:
        orders = [
            o for o in reversed(self.orders.values()) if o["client_order_id"] not in self.unlisted
        ]  # newest first
        if "product_ids" in query:
            orders = [o for o in orders if o["product_id"] in query["product_ids"]]
        if "order_status" in query:
            orders = [o for o in orders if o["status"] in query["order_status"]]
        page, cursor, more = self._page(orders, query)
        return {"orders": page, "sequence": "0", "has_next": more, "cursor": cursor}

    def _list_fills(self, query: dict) -> dict:
        fills = list(self.fills)
        if "order_ids" in query:
            fills = [f for f in fills if f["order_id"] in query["order_ids"]]
        if "start_sequence_timestamp" in query:
            since = query["start_sequence_timestamp"][0]
            fills = [f for f in fills if f["sequence_timestamp"] >= since]
        page, cursor, _ = self._page(fills, query)
        return {"fills": page, "cursor": cursor}

    def _accounts(self) -> dict:
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
                "hold": {"value": "0", "currency": currency},
            }
            for currency, amount in self.balances.items()
        ]
        return {"accounts": accounts, "has_next": False, "cursor": "", "size": len(accounts)}

    def _candles(self, product: str, query: dict) -> dict:
        start, end = int(query["start"][0]), int(query["end"][0])
        rows = [c for c in self.candles.get(product, []) if start <= int(c["start"]) <= end]
        return {"candles": sorted(rows, key=lambda c: -int(c["start"]))[:350]}


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
