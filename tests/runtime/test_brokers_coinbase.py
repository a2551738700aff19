"""CoinbaseAdvancedTrade and Credentials against a local fake of the Advanced Trade API."""

from __future__ import annotations

import json
import logging
import subprocess

import jwt
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from moola.core.errors import BrokerError, ConfigError
from moola.data.schema import BAR_COLUMNS
from moola.runtime.brokers import (
    BrokerAdapter,
    CoinbaseAdvancedTrade,
    Credentials,
    OrderIntent,
)
from moola.runtime.brokers.base import OrderUnsure
from tests.runtime.fake_coinbase import KEY_NAME, FakeCoinbase, pem_of


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def credentials(key) -> Credentials:
    return Credentials(KEY_NAME, pem_of(key))


@pytest.fixture
def fake(key):
    with FakeCoinbase(KEY_NAME, key.public_key(), hold_s=0.6) as server:
        yield server


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def broker(fake, credentials, sleeps):
    with CoinbaseAdvancedTrade(
        base_url=fake.url, credentials=credentials, timeout=0.25, max_retries=2,
        backoff=0.1, sleep=sleeps,
    ) as adapter:  # fmt: skip
        yield adapter


def _buy(cid: str, qty: float = 0.01, **kw) -> OrderIntent:
    return OrderIntent(cid, "BTC-USD", "buy", qty, **kw)


# ---------------------------------------------------------------------- signing


def test_jwt_follows_the_cdp_key_scheme(credentials, key):
    token = credentials.jwt("get", "api.coinbase.com", "/api/v3/brokerage/accounts", now=1000)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, key.public_key(), algorithms=["ES256"],
                        options={"verify_exp": False, "verify_nbf": False})  # fmt: skip
    assert header["alg"] == "ES256" and header["kid"] == KEY_NAME and len(header["nonce"]) >= 16
    assert claims == {
        "sub": KEY_NAME, "iss": "cdp", "nbf": 1000, "exp": 1120,
        "uri": "GET api.coinbase.com/api/v3/brokerage/accounts",
    }  # fmt: skip
    again = credentials.jwt("GET", "api.coinbase.com", "/api/v3/brokerage/accounts", now=1000)
    assert jwt.get_unverified_header(again)["nonce"] != header["nonce"]


def test_every_request_is_signed_for_its_own_method_and_path(fake, broker):
    broker.submit(_buy("sig-1"))
    broker.balances()
    broker.fills()
    assert fake.auth_failures == [] and len(fake.requests) >= 4


def test_a_wrong_key_is_refused_without_retries(fake, sleeps):
    other = Credentials(KEY_NAME, pem_of(ec.generate_private_key(ec.SECP256R1())))
    adapter = CoinbaseAdvancedTrade(base_url=fake.url, credentials=other, sleep=sleeps)
    with pytest.raises(BrokerError, match="GET /accounts: HTTP 401 UNAUTHORIZED"):
        adapter.balances()
    assert fake.calls("GET", "/accounts") == 1 and sleeps == []


# ---------------------------------------------------------------------- orders


def test_market_order_round_trip(fake, broker):
    assert isinstance(broker, BrokerAdapter)
    ack = broker.submit(_buy("m-1", 0.02))
    assert ack.status == "accepted" and ack.broker_order_id in fake.orders
    [(_, _, _, body)] = [r for r in fake.requests if r[:2] == ("POST", "/orders")]
    assert body == {
        "client_order_id": "m-1", "product_id": "BTC-USD", "side": "BUY",
        "order_configuration": {
            "sor_limit_ioc": {"base_size": "0.02", "limit_price": "50250.0"},  # +50 bps
        },
    }  # fmt: skip
    [fill] = broker.fills()
    assert (fill.client_order_id, fill.symbol, fill.qty, fill.price) == (
        "m-1",
        "BTC-USD",
        0.02,
        50_000.0,
    )
    assert fill.fee == pytest.approx(0.02 * 50_000 * 0.006)
    assert broker.positions() == {"BTC-USD": pytest.approx(0.02)}
    balances = broker.balances()
    assert balances["equity"] == pytest.approx(10_000.0 - fill.fee)
    assert broker.submit(_buy("m-1", 0.02)) == ack  # idempotent: nothing sent
    assert fake.calls("POST", "/orders") == 1
    with pytest.raises(BrokerError, match="already used"):
        broker.submit(_buy("m-1", 0.03))


def test_fake_coinbase_takes_each_sides_sizes_as_advanced_trade_does(fake, credentials):
    """What the adapter sent before: a market BUY sized in base units. Advanced Trade's
    market IOC buy takes quote_size; the fake refuses it, as it refuses a sell in quote."""
    with CoinbaseAdvancedTrade(base_url=fake.url, credentials=credentials) as adapter:
        for side, sizes in (("BUY", {"base_size": "0.01"}), ("SELL", {"quote_size": "10"})):
            with pytest.raises(BrokerError, match="INVALID_ARGUMENT: market_market_ioc"):
                adapter._call("POST", "/orders", body={
                    "client_order_id": f"old-{side}", "product_id": "BTC-USD", "side": side,
                    "order_configuration": {"market_market_ioc": sizes},
                })  # fmt: skip
    assert fake.creates == 0


@pytest.mark.parametrize(
    ("fill_price", "bought"),
    [
        (50_000.0, 0.02),  # at the last price
        (45_000.0, 0.02),  # cheaper: a quote_size of 0.02 x 50,000 would have bought 0.0222
        (50_250.0, 0.02),  # at the cap (+50 bps)
        (50_300.0, 0.0),  # above the cap: cancelled unfilled, nothing bought
    ],
)
def test_a_market_buy_never_fills_more_than_its_units_nor_above_the_cap(
    fake, broker, fill_price, bought
):
    fake.exec_prices["BTC-USD"] = fill_price  # the price moved after the adapter read it
    ack = broker.submit(_buy("cap-1", 0.02))
    assert ack.status == "accepted"
    fills = broker.fills()
    assert sum(f.qty for f in fills) == pytest.approx(bought)
    assert all(f.price <= 50_250.0 for f in fills)
    assert broker.positions().get("BTC-USD", 0.0) == pytest.approx(bought)
    assert broker.open_orders() == []  # an IOC never rests


@pytest.mark.parametrize(
    ("fill_price", "liquidity", "state", "filled"),
    [
        (60_000.0, None, "expired", 0.0),  # the ask is above the cap: nothing fills
        (50_100.0, 0.005, "expired", 0.005),  # the book takes part; the rest is cancelled
        (50_100.0, None, "filled", 0.02),
    ],
)
def test_order_status_says_what_became_of_a_limit_ioc_buy(
    fake, credentials, sleeps, fill_price, liquidity, state, filled
):
    fake.exec_prices["BTC-USD"] = fill_price
    if liquidity is not None:
        fake.liquidity["BTC-USD"] = liquidity
    first = CoinbaseAdvancedTrade(base_url=fake.url, credentials=credentials, sleep=sleeps)
    with first:
        assert first.submit(_buy("ioc-1", 0.02)).status == "accepted"
        status = first.order_status("ioc-1")
    # a fresh adapter (after a restart) finds the order by its client id
    with CoinbaseAdvancedTrade(base_url=fake.url, credentials=credentials, sleep=sleeps) as again:
        assert again.order_status("ioc-1") == status
        assert again.order_status("never-sent") is None
    assert status.final and status.state == state
    assert (status.qty, status.filled_qty) == pytest.approx((0.02, filled))
    if state == "expired":
        assert "CANCELLED" in status.reason


def test_an_orders_reason_is_never_coinbases_unspecified_reject_reason(fake, broker):
    """Get Order carries ``reject_reason: REJECT_REASON_UNSPECIFIED`` (and empty cancel and
    reject messages) on every order: a filled or expired order's reason is its status, not
    that placeholder."""
    fake.exec_prices["BTC-USD"] = 60_000.0  # above the cap: the IOC buy ends unfilled
    broker.submit(_buy("unfilled-1", 0.01))
    fake.exec_prices["BTC-USD"] = 50_000.0
    broker.submit(_buy("filled-1", 0.01))
    for order in fake.orders.values():
        assert order["reject_reason"] == "REJECT_REASON_UNSPECIFIED"
    expired, filled = broker.order_status("unfilled-1"), broker.order_status("filled-1")
    assert expired.state == "expired" and expired.reason.startswith("Coinbase status CANCELLED")
    assert filled.state == "filled" and filled.reason == "Coinbase status FILLED"
    fake.orders[fake.orders_by_client("filled-1")]["cancel_message"] = "User requested cancel"
    assert broker.order_status("filled-1").reason == "User requested cancel"


def test_a_market_sell_is_sized_in_base_units(fake, broker):
    fake.balances["BTC"] = 0.5
    broker.submit(OrderIntent("s-1", "BTC-USD", "sell", 0.2))
    [(_, _, _, body)] = [r for r in fake.requests if r[:2] == ("POST", "/orders")]
    assert body["order_configuration"] == {"market_market_ioc": {"base_size": "0.2"}}
    assert broker.positions() == {"BTC-USD": pytest.approx(0.3)}


def test_the_slippage_cap_comes_from_the_config(fake, credentials):
    from moola.runtime.config import CoinbaseConfig

    config = CoinbaseConfig(base_url=fake.url, max_slippage_bps=10)
    with CoinbaseAdvancedTrade.from_config(config, credentials) as adapter:
        adapter.submit(_buy("cfg-1", 0.01))
    [(_, _, _, body)] = [r for r in fake.requests if r[:2] == ("POST", "/orders")]
    assert body["order_configuration"]["sor_limit_ioc"]["limit_price"] == "50050.0"
    with (
        CoinbaseAdvancedTrade(base_url=fake.url, credentials=credentials) as adapter,
        pytest.raises(BrokerError, match=r"base increment 0\.00000001; nothing sent"),
    ):
        adapter.submit(_buy("tiny-1", 1e-9))
    assert fake.calls("POST", "/orders") == 1
    with pytest.raises(ConfigError, match="max_slippage_bps"):
        CoinbaseAdvancedTrade(base_url=fake.url, credentials=credentials, max_slippage_bps=0)


def test_limit_order_is_open_until_cancelled(fake, broker):
    ack = broker.submit(_buy("l-1", 0.1, order_type="limit", limit_price=40_000.0))
    config = fake.orders[ack.broker_order_id]["order_configuration"]
    assert config == {"limit_limit_gtc": {"base_size": "0.1", "limit_price": "40000.0",
                                          "post_only": False}}  # fmt: skip
    [order] = broker.open_orders()
    assert (order.client_order_id, order.qty, order.order_type, order.limit_price) == (
        "l-1",
        0.1,
        "limit",
        40_000.0,
    )
    assert broker.cancel("l-1") is True
    assert broker.open_orders() == []
    assert broker.cancel("l-1") is False and broker.cancel("unknown") is False


def test_refusals_raise_with_coinbases_message_and_are_not_retried(fake, broker, sleeps):
    with pytest.raises(BrokerError, match="INSUFFICIENT_FUND: Insufficient balance") as info:
        broker.submit(_buy("big", 5.0))
    assert not isinstance(info.value, OrderUnsure)  # a refusal: Coinbase holds no order
    fake.fail("POST", "/orders", (400, "INVALID_ORDER", "size below minimum"))
    with pytest.raises(BrokerError, match="HTTP 400 INVALID_ORDER: size below minimum"):
        broker.submit(_buy("tiny", 0.001))
    assert fake.calls("POST", "/orders") == 2 and sleeps == [] and fake.creates == 0


# ---------------------------------------------------------------------- fills


T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC, the fake exchange's clock in the fills tests


def _foreign_history(fake, n: int) -> None:
    """``n`` fills of an order placed elsewhere (a long account history), one per second
    before T0."""
    order = {"order_id": "elsewhere", "product_id": "BTC-USD", "client_order_id": "other",
             "side": "SELL", "status": "FILLED"}  # fmt: skip
    fake.orders["elsewhere"] = order
    for k in range(n):
        fake.add_fill(order, 0.001, 40_000.0, 0.1, at=T0 - 1_000 + k)


def _fill_requests(fake) -> list[dict]:
    return [q for m, p, q, _ in fake.requests if (m, p) == ("GET", "/orders/historical/fills")]


def test_an_orders_fills_are_one_filtered_listing_however_long_the_history(fake, broker):
    """Settling an order asks List Fills for that order only (``order_ids``), every page of
    it, not the account's whole history: 600 fills of other orders cost nothing."""
    fake.now = T0
    _foreign_history(fake, 600)
    ack = broker.submit(_buy("own-1", 0.02))
    [fill] = broker.order_fills("own-1")
    assert (fill.client_order_id, fill.qty, fill.price) == ("own-1", 0.02, 50_000.0)
    assert fill.time == pd.Timestamp(T0, unit="s", tz="UTC")
    [query] = _fill_requests(fake)
    assert query == {"order_ids": [ack.broker_order_id], "limit": ["250"]}
    assert fake.calls("GET", f"/orders/historical/{ack.broker_order_id}") == 0

    order = fake.orders[ack.broker_order_id]  # an order filled in 300 more pieces: 2 pages
    for k in range(300):
        fake.add_fill(order, 0.0001, 50_000.0 + k, 0.01, at=T0 + 1 + k)
    fake.requests.clear()
    fills = broker.order_fills("own-1")
    assert len(fills) == 301 and len(_fill_requests(fake)) == 2
    assert [f.time for f in fills] == sorted(f.time for f in fills)  # oldest first
    assert {f.client_order_id for f in fills} == {"own-1"}
    assert len({f.fill_id for f in fills}) == 301
    assert broker.order_fills("never-sent") == []


def test_a_restarted_adapter_finds_the_order_by_its_client_id_before_its_fills(
    fake, credentials, sleeps
):
    fake.now = T0
    with CoinbaseAdvancedTrade(base_url=fake.url, credentials=credentials, sleep=sleeps) as a:
        ack = a.submit(_buy("own-2", 0.01))
    with CoinbaseAdvancedTrade(base_url=fake.url, credentials=credentials, sleep=sleeps) as b:
        [fill] = b.order_fills("own-2")
    assert fill.client_order_id == "own-2" and fill.qty == pytest.approx(0.01)
    assert _fill_requests(fake)[-1]["order_ids"] == [ack.broker_order_id]


def test_fills_since_keeps_a_fill_at_that_time_and_none_before(fake, broker):
    """List Fills returns fills with a trade time *after* ``start_sequence_timestamp``;
    ``fills(since)`` still gives the one at ``since`` itself."""
    fake.balances["USD"] = 100_000.0
    for k, at in enumerate((T0, T0 + 60, T0 + 120)):
        fake.now = at
        broker.submit(_buy(f"t-{k}", 0.01))
    since = pd.Timestamp(T0 + 60, unit="s", tz="UTC")
    fills = broker.fills(since=since)
    assert [f.client_order_id for f in fills] == ["t-1", "t-2"]
    assert _fill_requests(fake)[-1]["start_sequence_timestamp"] == ["2026-01-01T00:00:59.999999Z"]
    assert [f.client_order_id for f in broker.fills(since="2026-01-01 00:02:00.000001")] == []
    assert [f.client_order_id for f in broker.fills()] == ["t-0", "t-1", "t-2"]
    with pytest.raises(ConfigError, match="since='soon' is not a time"):
        broker.fills(since="soon")


def test_fills_of_orders_placed_elsewhere_learn_their_client_ids_in_batches(fake, broker):
    """600 fills of 120 orders this adapter never placed: their client ids come from 3
    List Orders requests (``order_ids``, 50 each), not 120 Get Order requests."""
    for k in range(120):
        order = {"order_id": f"ext-{k:03d}", "product_id": "BTC-USD",
                 "client_order_id": f"cid-{k:03d}", "side": "BUY", "status": "FILLED"}  # fmt: skip
        fake.orders[order["order_id"]] = order
        for j in range(5):
            fake.add_fill(order, 0.001, 40_000.0, 0.1, at=T0 + 10 * k + j)
    fills = broker.fills()
    assert len(fills) == 600
    assert {f.client_order_id for f in fills} == {f"cid-{k:03d}" for k in range(120)}
    lookups = [q for m, p, q, _ in fake.requests if (m, p) == ("GET", "/orders/historical/batch")]
    assert [len(q["order_ids"]) for q in lookups] == [50, 50, 20]
    assert not [p for _, p, _, _ in fake.requests if p.startswith("/orders/historical/ext-")]


def test_a_listing_longer_than_the_page_cap_is_refused_not_cut(fake, broker, monkeypatch):
    from moola.runtime.brokers import coinbase

    _foreign_history(fake, 5)
    monkeypatch.setattr(coinbase, "PAGE_LIMIT", 2)
    monkeypatch.setattr(coinbase, "MAX_PAGES", 2)
    with pytest.raises(BrokerError, match="more than 2 pages of fills; narrow the request"):
        broker.fills()
    monkeypatch.setattr(coinbase, "MAX_PAGES", 3)
    assert len(broker.fills()) == 5  # 2 + 2 + 1


def test_fake_list_fills_filters_as_documented_and_refuses_unknown_parameters(fake, broker):
    """The fake honours List Fills' documented filters and refuses a parameter it does not
    document (the Exchange API's singular ``order_id`` would otherwise be ignored and
    answer with every fill)."""
    _foreign_history(fake, 3)
    path = "/orders/historical/fills"
    everything = broker._call("GET", path)["fills"]
    assert [f["trade_time"] for f in everything] == sorted(
        (f["trade_time"] for f in everything), reverse=True
    )  # newest first
    one = everything[1]
    by_trade = broker._call("GET", path, params={"trade_ids": [one["trade_id"]]})["fills"]
    assert by_trade == [one]
    window = {"start_sequence_timestamp": everything[2]["trade_time"],
              "end_sequence_timestamp": everything[0]["trade_time"]}  # fmt: skip
    assert broker._call("GET", path, params=window)["fills"] == [one]  # both ends exclusive
    assert broker._call("GET", path, params={"product_ids": ["ETH-USD"]})["fills"] == []
    with pytest.raises(BrokerError, match=r"INVALID_ARGUMENT: unknown query parameter.*order_id"):
        broker._call("GET", path, params={"order_id": "elsewhere"})
    with pytest.raises(BrokerError, match="INVALID_ARGUMENT: 'yesterday' is not an RFC 3339"):
        broker._call("GET", path, params={"start_sequence_timestamp": "yesterday"})
    with pytest.raises(BrokerError, match=r"INVALID_ARGUMENT: unknown query parameter.*since"):
        broker._call("GET", "/accounts", params={"since": "x"})


def test_the_coinbase_adapter_settles_its_own_orders(broker):
    from moola.runtime.brokers.base import SettlingBroker

    assert isinstance(broker, SettlingBroker)


# ---------------------------------------------------------------------- retries


def test_429_waits_at_least_retry_after_then_succeeds(fake, broker, sleeps):
    fake.fail("GET", "/accounts", (429, 3))
    assert broker.balances()["USD"] == 10_000.0
    assert sleeps == [3.0] and fake.calls("GET", "/accounts") == 2


def test_429_without_retry_after_backs_off_exponentially(fake, broker, sleeps):
    """Advanced Trade's rate-limit docs promise a 429, not a Retry-After header: without
    one the adapter waits its own backoff (0.1 s, then 0.2 s) and gives up naming the 429."""
    fake.fail("GET", "/accounts", 429, 429)
    assert broker.balances()["USD"] == 10_000.0
    assert sleeps == [0.1, 0.2] and fake.calls("GET", "/accounts") == 3
    fake.fail("GET", "/accounts", 429, 429, 429)
    with pytest.raises(BrokerError, match=r"last: HTTP 429"):
        broker.balances()


def test_5xx_and_timeouts_back_off_then_give_up_naming_endpoint_and_status(fake, broker, sleeps):
    fake.fail("GET", "/accounts", 500, "hang")
    assert "USD" in broker.balances()  # third attempt answers
    assert sleeps == [0.1, 0.2]
    sleeps.clear()
    fake.fail("GET", "/accounts", 503, 502, 500)
    with pytest.raises(
        BrokerError, match=r"GET /accounts failed after 3 attempt\(s\); last: HTTP 500"
    ):
        broker.balances()
    assert sleeps == [0.1, 0.2]
    fake.fail("GET", "/orders/historical/fills", "hang", "hang", "hang")
    with pytest.raises(BrokerError, match=r"last: timed out after 0\.25 s"):
        broker.fills()


def test_create_whose_answer_was_lost_is_found_not_sent_again(fake, broker):
    fake.fail("POST", "/orders", "lost")  # Coinbase creates it; the answer never arrives
    ack = broker.submit(_buy("lost-1"))
    assert ack.status == "accepted"
    assert fake.creates == 1 and fake.calls("POST", "/orders") == 1
    assert fake.orders[ack.broker_order_id]["client_order_id"] == "lost-1"


def test_create_retry_sends_the_same_client_id_when_nothing_was_created(fake, broker):
    fake.fail("POST", "/orders", "hang", 500)  # neither attempt reached the book
    ack = broker.submit(_buy("retry-1"))
    bodies = [r[3] for r in fake.requests if r[:2] == ("POST", "/orders")]
    assert [b["client_order_id"] for b in bodies] == ["retry-1"] * 3
    assert fake.creates == 1 and ack.broker_order_id in fake.orders


def test_create_is_not_resent_when_the_lookup_fails(fake, broker):
    fake.fail("POST", "/orders", "lost")
    fake.fail("GET", "/orders/historical/batch", 500, 500, 500)
    with pytest.raises(OrderUnsure, match="GET /orders/historical/batch failed") as info:
        broker.submit(_buy("unsure-1"))
    assert info.value.client_order_id == "unsure-1"
    assert fake.calls("POST", "/orders") == 1 and fake.creates == 1
    # not a refusal: the order is there, and order_status finds it by its client id
    status = broker.order_status("unsure-1")
    assert status is not None and status.state == "filled"
    [fill] = broker.order_fills("unsure-1")
    assert fill.qty == pytest.approx(0.01)


def test_fake_coinbase_is_idempotent_on_client_order_id(fake, credentials):
    """A restarted adapter (no memory of the first ack) sending the same client id gets
    the first order back, and Coinbase holds one order."""
    acks = []
    for _ in range(2):
        with CoinbaseAdvancedTrade(base_url=fake.url, credentials=credentials) as adapter:
            acks.append(adapter.submit(_buy("dup-1")))
    assert acks[0] == acks[1] and fake.creates == 1 and len(fake.fills) == 1


# ---------------------------------------------------------------------- candles


def test_candles_are_closed_bars_in_the_canonical_table(fake, broker):
    t0 = 1_767_225_600  # 2026-01-01 00:00 UTC
    fake.candles["BTC-USD"] = [
        {"start": str(t0 + 60 * i), "low": str(99.0 + i), "high": str(102.0 + i),
         "open": str(100.0 + i), "close": str(101.0 + i), "volume": str(1.0 + i)}
        for i in range(400)
    ]  # fmt: skip
    now = pd.Timestamp(t0 + 60 * 399 + 30, unit="s", tz="UTC")  # bar 399 still open
    bars = broker.candles("BTC-USD", t0, t0 + 60 * 400, "1m", now=now)
    assert tuple(bars.columns) == BAR_COLUMNS
    assert len(bars) == 399 and bars["timestamp"].is_monotonic_increasing
    assert bars["timestamp"].iloc[0] == pd.Timestamp(t0, unit="s", tz="UTC")
    assert bars.iloc[-1][["open", "close"]].tolist() == [498.0, 499.0]
    assert (bars["symbol"] == "BTC-USD").all() and (bars["timeframe"] == "1m").all()
    assert fake.calls("GET", "/products/BTC-USD/candles") == 2  # 350 per request
    with pytest.raises(ConfigError, match="granularity='7m'"):
        broker.candles("BTC-USD", t0, t0 + 60, "7m")


def test_fake_candles_take_the_documented_window_only(fake, broker):
    """Get Product Candles requires start, end and granularity and serves at most 350
    buckets: the adapter's 350-bucket chunks pass, a wider window is refused."""
    t0, path = 1_767_225_600, "/products/BTC-USD/candles"
    ok = {"start": str(t0), "end": str(t0 + 60 * 350 - 1), "granularity": "ONE_MINUTE"}
    assert broker._call("GET", path, params=ok) == {"candles": []}
    wide = {**ok, "end": str(t0 + 60 * 351)}
    with pytest.raises(BrokerError, match="INVALID_ARGUMENT: number of candles requested"):
        broker._call("GET", path, params=wide)
    with pytest.raises(BrokerError, match="INVALID_ARGUMENT: granularity required"):
        broker._call("GET", path, params={"start": ok["start"], "end": ok["end"]})
    with pytest.raises(BrokerError, match="granularity 'SEVEN_MINUTE' is not one of"):
        broker._call("GET", path, params={**ok, "granularity": "SEVEN_MINUTE"})


def test_balances_read_every_page_of_accounts(fake, broker, monkeypatch):
    from moola.runtime.brokers import coinbase

    fake.balances.update({"ETH": 2.0, "SOL": 0.0, "ADA": 0.0, "DOGE": 0.0})
    fake.prices["ETH-USD"] = 3_000.0
    monkeypatch.setattr(coinbase, "PAGE_LIMIT", 2)
    balances = broker.balances()
    assert set(balances) == {"USD", "BTC", "ETH", "SOL", "ADA", "DOGE", "equity"}
    assert balances["equity"] == pytest.approx(10_000.0 + 2 * 3_000.0)
    assert fake.calls("GET", "/accounts") == 3  # 2 + 2 + 2, has_next false on the last


def test_available_is_what_can_be_spent_not_what_open_orders_hold(fake, broker, monkeypatch):
    """``balances`` counts the funds Coinbase holds for open orders; ``available`` (what a
    live buy is sized within) leaves them out, reading every page of accounts."""
    from moola.runtime.brokers import coinbase

    fake.balances.update({"USD": 2_500.0, "ETH": 1.0, "SOL": 0.0})
    fake.prices["ETH-USD"] = 3_000.0
    fake.holds["USD"] = 7_500.0
    monkeypatch.setattr(coinbase, "PAGE_LIMIT", 2)
    assert broker.balances()["USD"] == pytest.approx(10_000.0)
    assert broker.available("USD") == pytest.approx(2_500.0)
    assert broker.available("ETH") == pytest.approx(1.0)
    assert broker.available("XRP") == 0.0


# ---------------------------------------------------------------------- credentials


def test_credentials_from_env(key):
    pem = pem_of(key).replace("\n", "\\n")  # one-line form of a .env file
    creds = Credentials.from_env({"COINBASE_API_KEY_NAME": KEY_NAME,
                                  "COINBASE_API_PRIVATE_KEY": pem})  # fmt: skip
    assert creds.key_name == KEY_NAME
    with pytest.raises(ConfigError, match="COINBASE_API_PRIVATE_KEY"):
        Credentials.from_env({"COINBASE_API_KEY_NAME": KEY_NAME})


def test_credentials_file_must_be_private_and_outside_git(key, tmp_path):
    body = json.dumps({"name": KEY_NAME, "privateKey": pem_of(key)})
    good = tmp_path / "cdp_api_key.json"
    good.write_text(body)
    good.chmod(0o600)
    assert Credentials.from_file(good).key_name == KEY_NAME
    good.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Credentials.from_file(good)
    repo = tmp_path / "repo"
    (repo / "keys").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    inside = repo / "keys" / "key.json"
    inside.write_text(body)
    inside.chmod(0o600)
    with pytest.raises(ConfigError, match="inside the git repository"):
        Credentials.from_file(inside)
    with pytest.raises(ConfigError, match="does not exist"):
        Credentials.from_file(tmp_path / "missing.json")


def test_the_secret_appears_in_no_log_repr_or_error(fake, key, caplog, tmp_path, sleeps):
    pem = pem_of(key)
    secret_lines = [line for line in pem.splitlines() if "-----" not in line]
    creds = Credentials(KEY_NAME, pem)
    texts = [repr(creds), str(creds)]
    adapter = CoinbaseAdvancedTrade(base_url=fake.url, credentials=creds, timeout=0.25,
                                    max_retries=1, backoff=0.0, sleep=sleeps)  # fmt: skip
    texts.append(repr(adapter))
    fake.fail("GET", "/accounts", 500, "hang")
    fake.fail("POST", "/orders", (400, "INVALID_ORDER", "bad size"))
    with caplog.at_level(logging.DEBUG):
        for call in (adapter.balances, lambda: adapter.submit(_buy("x-1"))):
            with pytest.raises(BrokerError) as info:
                call()
            texts.append(str(info.value))
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"name": KEY_NAME, "privateKey": pem[:-40]}))
        bad.chmod(0o600)
        with pytest.raises(ConfigError) as info:
            Credentials.from_file(bad)
        texts.append(str(info.value))
    texts += [record.getMessage() for record in caplog.records]
    assert any("retry" in text for text in texts)  # the logs were captured
    for text in texts:
        assert KEY_NAME not in text
        assert not any(line in text for line in secret_lines)
    with pytest.raises(TypeError):
        __import__("pickle").dumps(creds)


def test_an_unanswered_create_says_so_and_the_same_intent_is_safe_to_resend(fake, broker):
    """Every answer lost and the order not yet listed (eventual consistency): the adapter
    resends with the same client id (Coinbase creates nothing new), then says the order may
    exist; submitting the same intent later returns that order."""
    fake.fail("POST", "/orders", "lost", "lost", "lost")
    fake.unlisted.add("maybe-1")
    with pytest.raises(OrderUnsure, match="may have reached Coinbase"):
        broker.submit(_buy("maybe-1"))
    assert fake.creates == 1 and fake.calls("POST", "/orders") == 3
    ack = broker.submit(_buy("maybe-1"))  # the same client id: Coinbase returns that order
    assert fake.creates == 1 and fake.orders[ack.broker_order_id]["client_order_id"] == "maybe-1"
