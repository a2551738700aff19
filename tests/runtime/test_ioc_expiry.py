"""An order the exchange ends unfilled is final in the journal (issue 18).

A Coinbase market buy goes out as a limit IOC (``sor_limit_ioc``) capped a few basis
points above the last price. When the ask is above that cap nothing fills and Coinbase
cancels the order: the engine, through its normal per-bar flow, must journal it
``expired`` with what filled and why, never leave it "acknowledged" (counted as working,
reconciled as the broker's), and never send it again, across a restart too. The broker is
the real adapter against the local fake of the Advanced Trade API.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from moola.runtime.brokers.coinbase import CoinbaseAdvancedTrade
from moola.runtime.brokers.credentials import Credentials
from moola.runtime.engine import WORKING, Engine
from moola.runtime.feed import ReplayFeed
from moola.tracking.livedb import LiveJournal
from tests.runtime._lab import (
    PRODUCTS,
    RISING,
    Recorder,
    last_closes,
    product_bars,
    scripted_config,
)
from tests.runtime.fake_coinbase import KEY_NAME, FakeCoinbase, cdp_key


@pytest.fixture(scope="module")
def credentials() -> tuple[Credentials, ec.EllipticCurvePrivateKey]:
    pem, key = cdp_key()
    return Credentials(KEY_NAME, pem), key


def _engine(fake, credentials, journal, bars):
    config = scripted_config(PRODUCTS.values())
    broker = CoinbaseAdvancedTrade(base_url=fake.url, credentials=credentials[0])
    feed = ReplayFeed(bars, config.symbols, "1m", config.staleness)
    return Engine(config, journal, broker, [RISING], feed, env={}), broker


def _exchange(credentials, ask: float, liquidity: float | None = None):
    """(bars, fake exchange): 40 one-minute bars of BTC-USD and ETH-USD, and the exchange
    priced at their last closes (a buy's cap: that price + 50 bps) that executes at ``ask``
    times it, taking at most ``liquidity`` units of each product's IOC order when given."""
    bars = product_bars(40, 3)
    last = last_closes(bars)
    fake = FakeCoinbase(
        KEY_NAME,
        credentials[1].public_key(),
        prices=last,
        exec_prices={p: price * ask for p, price in last.items()},
        balances={"USD": 1e7},
        liquidity={} if liquidity is None else {p: liquidity for p in PRODUCTS.values()},
    )
    return bars, fake


def _creates(fake) -> list[str]:
    return [body["client_order_id"] for method, path, _, body in fake.requests
            if method == "POST" and path.endswith("/orders")]  # fmt: skip


def _intents(journal, *sessions):
    return [i for s in sessions for i in journal.session_record(s).intents]


def test_an_ioc_buy_coinbase_cancels_unfilled_ends_expired_and_is_never_resent(
    tmp_path, credentials
):
    bars, fake = _exchange(credentials, ask=1.01)  # the ask is 1% above the buy's cap
    journal = LiveJournal(f"sqlite:///{tmp_path / 'live.db'}")
    with fake:
        engine, broker = _engine(fake, credentials, journal, bars)
        with broker:
            first = engine.run(max_bars=50)
        sent = _creates(fake)
        assert first.intents >= 4 and len(sent) == first.intents  # buys went out
        assert fake.fills == [] and all(o["status"] == "CANCELLED" for o in fake.orders.values())
        intents = {i.client_order_id: i for i in _intents(journal, first.session_id)}
        # each order is settled at its symbol's next bar; the last of each may still wait
        settled = [i for i in intents.values() if i.status == "expired"]
        assert len(settled) >= len(sent) - len(PRODUCTS)
        for intent in settled:
            assert "filled 0 of" in intent.detail and "CANCELLED" in intent.detail
        # a restart: a new process (engine, adapter) on the same journal and exchange
        engine, broker = _engine(fake, credentials, journal, bars)
        with broker:
            second = engine.run()
        resent = _creates(fake)
        assert len(resent) == len(set(resent))  # no client order id sent twice
        assert resent[: len(sent)] == sent
        both = _intents(journal, first.session_id, second.session_id)
        submitted = [i for i in both if i.client_order_id in set(resent)]
        # every order, the ones acknowledged just before the restart too, is final
        before = [i for i in submitted if i.client_order_id in set(sent)]
        assert before and all(i.status == "expired" for i in before)
        after = [i for i in both if i.session_id == second.session_id]
        assert len([i for i in after if i.status in WORKING]) <= len(PRODUCTS)
        assert journal.pending_intents() == []


def test_a_partly_filled_ioc_keeps_its_fill_and_closes_the_rest(tmp_path, credentials):
    # the ask within the cap; the book takes 0.5 units of each product
    bars, fake = _exchange(credentials, ask=1.001, liquidity=0.5)
    journal = LiveJournal(f"sqlite:///{tmp_path / 'live.db'}")
    with fake:
        engine, broker = _engine(fake, credentials, journal, bars)
        with broker:
            first = engine.run(max_bars=50)
        partial = [
            i
            for i in _intents(journal, first.session_id)
            if i.status == "expired" and "filled 0.5 of" in i.detail
        ]
        assert partial  # each fill kept, the rest of its order closed
        for intent in partial:
            assert [f["qty"] for f in journal.fills(intent.client_order_id)] == [0.5]
        # the restart reconciles (the journal holds what the exchange filled): no refusal
        engine, broker = _engine(fake, credentials, journal, bars)
        with broker:
            second = engine.run()
        sent = _creates(fake)
        assert len(sent) == len(set(sent))
        assert second.decided > 0
        journaled = {f["fill_id"] for f in journal.fills()}
        settled = {i.client_order_id for i in _intents(journal, first.session_id)}
        exchange = {
            f["entry_id"]
            for f in fake.fills
            if f["order_id"]
            in {o["order_id"] for o in fake.orders.values() if o["client_order_id"] in settled}
        }
        assert exchange and exchange <= journaled


def test_a_settled_orders_fill_and_final_status_are_journaled_in_one_transaction(
    tmp_path, credentials
):
    """The fill a partly filled IOC kept and the order's final status (expired, filled
    0.5 of N) go into the bar's one transaction, never into a write of their own after
    it: no crash can leave the fill's "filled" without the final status, or the other
    way round. The fills are read for the settled order alone (``order_fills``)."""
    bars, fake = _exchange(credentials, ask=1.001, liquidity=0.5)
    inner = LiveJournal(f"sqlite:///{tmp_path / 'live.db'}")
    journal = Recorder(inner, "record_steps", "mark_intent")
    with fake:
        engine, broker = _engine(fake, credentials, journal, bars)
        with broker:
            engine.run(max_bars=50)
    final = ("filled", "expired", "cancelled", "rejected")
    assert not [a for name, a, kw in journal.calls if name == "mark_intent" and a[1] in final]
    settled = 0
    for name, args, _ in journal.calls:
        if name != "record_steps":
            continue
        for step in args[1]:
            marks = {m["client_order_id"]: m for m in step["marks"]}
            for fill in step["fills"]:
                mark = marks[fill["client_order_id"]]  # the fill's order is settled with it
                assert mark["status"] == "expired" and "filled 0.5 of" in mark["detail"]
                settled += 1
    assert settled >= 2
    assert journal.pending_intents() == []
    # `moola live signals` shows what filled beside what was asked for
    orders = journal.signals().dropna(subset=["client_order_id"])
    expired = orders[orders["status"] == "expired"]
    assert len(expired) >= 2
    assert (expired["filled_qty"] == 0.5).all() and (expired["qty"] > 0.5).all()
    assert (
        journal.signals(include_flat=True)
        .query("client_order_id.isna()")["filled_qty"]
        .isna()
        .all()
    )
    # each settled order's fills are read for that order alone; the account's whole fill
    # history never (a start asks about each pending order, not the whole history)
    listings = [q for m, p, q, _ in fake.requests if p.endswith("/orders/historical/fills")]
    assert len([q for q in listings if "order_ids" in q]) >= settled
    assert not [q for q in listings if "order_ids" not in q]
