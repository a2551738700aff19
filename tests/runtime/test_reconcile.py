"""Reconciliation of open orders on start: an order working at the broker that the journal
never recorded makes the engine refuse to trade, naming it, with nothing sent; one the
journal knows (acknowledged before a restart) is the engine's own, and trading goes on.

(A position the journal does not account for is tested in test_engine.)
"""

from __future__ import annotations

import pandas as pd
import pytest

from moola.runtime.brokers import OrderIntent, PaperBroker
from moola.runtime.engine import Engine, ReconcileError
from moola.runtime.feed import BAR_FIELDS, ReplayFeed
from moola.sim import Bar
from moola.tracking.livedb import LiveJournal
from tests.runtime._lab import MinuteFlip, Recorder, scripted_config, two_symbol_bars


def _config():
    # orders fill three bars after they are placed: they stay open meanwhile
    execution = {"instrument": "crypto", "initial_cash": 100_000.0, "rules": "none"}
    return scripted_config(execution={**execution, "latency_bars": 3})


def _journal(tmp_path):
    return LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}")


def _engine(journal, broker, config, bars):
    feed = ReplayFeed(bars, config.symbols, "1m", config.staleness)
    return Engine(config, journal, broker, [MinuteFlip(period=30)], feed, env={}), journal


def test_an_open_order_the_journal_never_recorded_refuses_to_trade_naming_it(tmp_path):
    """Someone placed a BTC buy at the broker (by hand, another program): the engine will
    not trade next to an order it cannot account for. It says which order, records a
    ``reconcile_failed`` event, and neither sends, cancels nor decides anything."""
    config = _config()
    bars = two_symbol_bars(60, 1)
    paper = PaperBroker(config.execution, config.symbols)
    first = bars[bars["symbol"] == "BTC"].iloc[0]
    paper.on_bar("BTC", Bar(*(first[k] for k in BAR_FIELDS)))  # the broker's first bar
    stranger = OrderIntent(client_order_id="by-hand-0001", symbol="BTC", side="buy", qty=2.5)
    assert paper.submit(stranger).accepted
    broker = Recorder(paper, "submit", "cancel")  # what reached the broker
    engine, journal = _engine(_journal(tmp_path), broker, config, bars)
    with pytest.raises(ReconcileError, match="by-hand-0001") as caught:
        engine.run()
    assert "not in the journal" in str(caught.value) and "buy 2.5 BTC" in str(caught.value)
    (event,) = journal.events(kind="reconcile_failed")
    assert "by-hand-0001" in event["payload"]["reason"]
    assert event["session_id"] == engine.session_id
    assert broker.calls == []  # nothing sent, nothing cancelled
    assert [o.client_order_id for o in paper.open_orders()] == ["by-hand-0001"]
    assert journal.signals(include_flat=True).empty  # no bar decided
    assert journal.pending_intents() == []


def test_an_open_order_the_journal_knows_is_the_engines_own_and_trading_goes_on(tmp_path):
    """A session stops while its orders are still working at the broker (acknowledged in
    the journal). The next engine on the same journal and broker reconciles, finds them
    known, and trades on: the orders fill, their intents end filled, new orders follow."""
    config = _config()
    bars = two_symbol_bars(120, 1)
    paper = PaperBroker(config.execution, config.symbols)
    first, journal = _engine(_journal(tmp_path), paper, config, bars)
    first.start()
    feed = iter(first.feed)
    while not paper.open_orders():
        first.step(next(feed))
    working = [o.client_order_id for o in paper.open_orders()]
    assert {journal.intent_status(c) for c in working} == {"acknowledged"}
    stopped_at = max(first.last_bars.values())  # the process ends here
    broker = Recorder(paper, "submit", "cancel")  # what reached the broker
    again, _ = _engine(journal, broker, config, bars)  # the same bars: decided ones skipped
    result = again.run()
    assert journal.events(kind="reconcile_failed") == []
    assert result.decided > 0 and result.stopped == "feed ended"
    assert {journal.intent_status(c) for c in working} == {"filled"}
    sent = [args[0].client_order_id for name, args, _ in broker.calls if name == "submit"]
    assert sent and not set(sent) & set(working)  # new orders, the known ones not resent
    later = journal.signals()
    later = later[pd.to_datetime(later["bar_time"], utc=True) > stopped_at]
    assert (later["action"] == "order").any()
