"""The engine loop: incremental features equal batch, every intent journaled before the
broker sees it, nothing sent when the journal fails, restart without a second send,
reconciliation that refuses to trade, refusals recorded with their reasons.

Runs on the real parts: ``LiveJournal`` (SQLite in tmp_path), ``PaperBroker`` and the
decision parts of ``moola.runtime``; the members are small stand-ins with a scripted p(up)
(the promoted-run member is tested in test_members and end to end in test_cli_live).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import BrokerError, JournalError
from moola.features.featureset import load_feature_set
from moola.runtime.brokers import PaperBroker
from moola.runtime.engine import Engine, ReconcileError, client_order_id
from moola.runtime.feed import ReplayFeed
from moola.runtime.session import session_status, set_kill_switch, unlock_halt
from moola.tracking.livedb import LiveJournal
from tests.runtime._lab import SYMBOLS, MinuteFlip, Notes, scripted_config, two_symbol_bars


def _bars(n: int = 90, seed: int = 1) -> pd.DataFrame:
    return two_symbol_bars(n, seed)


class Spy:
    """The real journal (or broker), every call logged in ``log``; ``fail`` names a method
    that raises ``JournalError`` instead (a journal that cannot be written)."""

    def __init__(self, inner, log, tag, fail=None):
        self._inner, self._log, self._tag, self._fail = inner, log, tag, fail

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self._log.append((self._tag, name, args))
            if name == self._fail:
                raise JournalError(f"{name}: the database is gone")
            return attr(*args, **kwargs)

        return call


def _engine(tmp_path, bars=None, *, journal=None, broker=None, config=None, **kw):
    config = config or scripted_config()
    journal = journal or LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}")
    broker = broker or PaperBroker(config.execution, config.symbols)
    feed = ReplayFeed(_bars() if bars is None else bars, config.symbols, "1m", config.staleness)
    engine = Engine(config, journal, broker, [MinuteFlip(period=30)], feed, env={}, **kw)
    return engine, journal, broker


def test_incremental_features_are_the_batch_rows(tmp_path):
    bars = _bars(120)
    engine, _, _ = _engine(tmp_path, bars)
    engine.start()
    streamed = []
    stream = engine._features["BTC"]  # watch the rows the members read
    update = stream.update
    stream.update = lambda bar: streamed.append(update(bar)) or streamed[-1]
    engine.run()
    fset = load_feature_set("intraday31")
    btc = bars[bars["symbol"] == "BTC"].reset_index(drop=True)
    batch = fset.compute(btc)[list(fset.columns)].to_numpy(dtype="float64")
    assert len(streamed) == len(batch) == 120
    np.testing.assert_allclose(np.array(streamed), batch, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_every_intent_is_journaled_before_the_broker_sees_it(tmp_path):
    log = []
    engine, journal, broker = _engine(tmp_path)
    engine.journal = Spy(journal, log, "journal")
    engine.broker = Spy(broker, log, "broker")
    result = engine.run()
    assert result.intents >= 4  # up and down phases: buys and sells
    submits = [i for i, (tag, name, _) in enumerate(log) if tag == "broker" and name == "submit"]
    assert len(submits) == result.intents
    for i in submits:
        coid = log[i][2][0].client_order_id
        recorded = [
            j
            for j, (tag, name, a) in enumerate(log[:i])
            if name == "record_steps"
            and coid in [x["client_order_id"] for step in a[1] for x in step["intents"]]
        ]
        assert recorded, f"{coid} sent before it was journaled"
    assert journal.intent_status(log[submits[0]][2][0].client_order_id) == "filled"
    signals = journal.signals()
    assert set(signals["action"]) >= {"order"}
    assert len(journal.pending_intents()) == 0


def test_nothing_is_sent_when_the_journal_cannot_record_the_intent(tmp_path):
    log = []
    engine, journal, broker = _engine(tmp_path)
    engine.journal = Spy(journal, log, "journal", fail="record_steps")
    engine.broker = Spy(broker, log, "broker")
    with pytest.raises(JournalError):
        engine.run()
    assert not [call for call in log if call[:2] == ("broker", "submit")]
    assert broker.open_orders() == [] and not any(broker.positions().values())


def test_a_restart_never_sends_an_intent_twice_and_ends_where_one_run_ends(tmp_path):
    # one uninterrupted run
    whole, _, whole_broker = _engine(tmp_path / "a")
    (tmp_path / "a").mkdir(exist_ok=True)
    whole_result = whole.run()
    # the same bars in two processes sharing the journal and the broker
    (tmp_path / "b").mkdir()
    log = []
    first, journal, broker = _engine(tmp_path / "b")
    first.broker = Spy(broker, log, "broker")
    first.run(max_bars=100)
    second, _, _ = _engine(tmp_path / "b", journal=journal, broker=broker)
    second.broker = Spy(broker, log, "broker")
    second.run()
    sent = [a[0].client_order_id for tag, name, a in log if name == "submit"]
    assert len(sent) == len(set(sent))
    assert broker.positions() == pytest.approx(whole_broker.positions())
    assert broker.balances()["equity"] == pytest.approx(whole_broker.balances()["equity"])
    assert len(sent) == whole_result.intents


def test_a_broker_position_the_journal_does_not_know_refuses_to_trade(tmp_path):
    config = scripted_config()
    broker = PaperBroker(config.execution, config.symbols)
    stranger, _, _ = _engine(tmp_path / "x", broker=broker)
    (tmp_path / "x").mkdir(exist_ok=True)
    stranger.run(max_bars=50)  # trades into the broker, journaled elsewhere
    assert any(broker.positions().values())
    engine, journal, _ = _engine(tmp_path, broker=broker)
    with pytest.raises(ReconcileError, match="journal expects 0"):
        engine.start()
    assert [e for e in journal.events(kind="reconcile_failed")]


@pytest.mark.parametrize("source", ["journal", "env"])
def test_the_kill_switch_stops_the_loop_and_sends_nothing(tmp_path, source):
    engine, journal, broker = _engine(tmp_path)
    if source == "journal":
        set_kill_switch(journal, True, by="ops", reason="test")
    else:
        engine.env = {"KILL_SWITCH": "true"}
    log = []
    engine.broker = Spy(broker, log, "broker")
    result = engine.run()
    assert result.decided == 1 and "kill switch" in result.stopped and source in result.stopped
    assert not [c for c in log if c[1] == "submit"]
    assert journal.signals(include_flat=True)["action"].tolist() == ["killed"]


class Crash(Exception):
    """The process dies here (a SIGKILL stand-in: nothing after it runs)."""


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_around_the_broker_call_never_sends_the_intent_twice(tmp_path, when):
    """Killed between the journaled intent and the broker call (``before``), or after the
    broker took the order but before its ack was journaled (``after``): the restarted
    engine finds the intent pending, settles it from the broker, and never sends it. The
    bar time's group journals both symbols' intents before the first submit: the one the
    crash kept from the broker is never sent either."""
    engine, journal, broker = _engine(tmp_path)
    submit = broker.submit

    def dying_submit(intent):
        if when == "after":
            submit(intent)
        raise Crash

    broker.submit = dying_submit
    with pytest.raises(Crash):
        engine.run()
    pending, *unsent = journal.pending_intents()
    coid = pending["client_order_id"]
    assert [p["symbol"] for p in (pending, *unsent)] == list(SYMBOLS)  # one group: both buy
    broker.submit = submit
    log = []
    again, _, _ = _engine(tmp_path, journal=journal, broker=broker)
    again.broker = Spy(broker, log, "broker")
    again.run()
    sent = [a[0].client_order_id for tag, name, a in log if name == "submit"]
    assert coid not in sent and len(sent) == len(set(sent))
    assert journal.intent_status(coid) == ("cancelled" if when == "before" else "filled")
    for intent in unsent:
        assert intent["client_order_id"] not in sent
        assert journal.intent_status(intent["client_order_id"]) == "cancelled"
    assert journal.pending_intents() == []


def test_a_gap_refuses_the_order_and_records_the_reason(tmp_path):
    bars = _bars()
    bars = bars[~((bars["symbol"] == "BTC") & (bars["timestamp"].dt.minute == 30))]
    engine, journal, _ = _engine(tmp_path, bars)
    result = engine.run()
    refused = journal.signals()
    refused = refused[refused["action"] == "refused_bar"]
    assert result.refused.get("refused_bar", 0) >= 1
    assert any("gap" in " ".join(r) and "BTC" in " ".join(r) for r in refused["reasons"])


def test_the_client_order_id_is_deterministic():
    a = client_order_id("s1", "BTC", "2024-01-01T00:00Z", {"signal": 1, "qty": 2.0})
    assert a == client_order_id(
        "s1", "BTC", pd.Timestamp("2024-01-01", tz="UTC"), {"signal": 1, "qty": 2.0}
    )
    assert a != client_order_id("s2", "BTC", "2024-01-01T00:00Z", {"signal": 1, "qty": 2.0})


def test_a_loss_limit_breach_flattens_halts_until_a_person_unlocks(tmp_path):
    bars = _bars(150)
    crash = (bars["symbol"] == "BTC") & (bars["timestamp"].dt.minute >= 25)
    crash &= bars["timestamp"] < pd.Timestamp("2024-01-01 01:00", tz="UTC")
    for column in ("open", "high", "low", "close"):
        bars.loc[crash, column] *= 0.7  # BTC falls 30% for half an hour
    config = scripted_config(risk={"max_position": 1000.0, "daily_loss": 0.02})
    first = bars[bars["timestamp"] < pd.Timestamp("2024-01-01 01:30", tz="UTC")]
    engine, journal, broker = _engine(tmp_path, first, config=config)
    engine.run()
    (halt,) = journal.events(kind="halt")
    assert "daily_loss_limit" in halt["payload"]["reason"]
    actions = journal.signals(include_flat=True)
    flatten = actions[actions["action"] == "flatten"]
    assert sorted(flatten["symbol"]) == ["BTC", "ETH"]  # every held symbol, once
    assert (flatten["status"] == "filled").all() and not any(broker.positions().values())
    after = actions[actions["bar_time"] > flatten["bar_time"].max()]
    denied = after[after["action"] == "denied"]
    assert len(denied) > 0 and (after["action"] != "order").all()
    assert all("halted" in " ".join(r) for r in denied["reasons"])
    status = session_status(journal)
    assert "daily_loss_limit" in status["halt"]
    assert status["day_loss_used"] >= 0.02 and status["day_pnl"] < 0

    # the same session goes on; a person unlocks while it runs (from another process)
    resumed = pd.Timestamp("2024-01-01 01:30", tz="UTC")
    rest = ReplayFeed(bars, config.symbols, "1m", config.staleness)

    def feed():
        for fb in rest:
            if fb.time == resumed and fb.symbol == "BTC":
                unlock_halt(journal, config, person="ana", reason="reviewed the crash")
            yield fb

    again, _, _ = _engine(tmp_path, bars, journal=journal, broker=broker, config=config)
    again.feed = feed()
    again.run()
    (event,) = journal.events(kind="unlock")
    assert event["payload"]["person"] == "ana" and session_status(journal)["halt"] == "none"
    later = journal.signals()
    later = later[later["bar_time"] >= resumed]
    assert (later["action"] == "order").any() and (later["action"] != "denied").all()


def test_rate_limit_buckets_survive_a_restart(tmp_path):
    config = scripted_config(rate_limits={"all_per_window": 2, "high_per_window": 2})
    first, journal, broker = _engine(tmp_path, config=config)
    first.run(max_bars=50)  # both symbols buy: the two signals of the hour are spent
    assert _orders(journal) == 2
    again, _, _ = _engine(tmp_path, journal=journal, broker=broker, config=config)
    result = again.run()
    assert _orders(journal) == 2
    assert result.refused.get("rate_limited", 0) >= 2
    limited = journal.signals()
    limited = limited[limited["action"] == "rate_limited"]
    assert all("all" in " ".join(r) for r in limited["reasons"])


def _orders(journal) -> int:
    signals = journal.signals()
    return int((signals["action"] == "order").sum())


def test_a_broker_error_is_recorded_and_the_loop_goes_on(tmp_path):
    engine, journal, broker = _engine(tmp_path)

    def refuse(intent):
        raise BrokerError("503 Service Unavailable after 3 retries")

    broker.submit = refuse
    result = engine.run()
    assert result.intents == 0 and result.refused["broker_error"] >= 2
    assert result.decided == 180  # every bar still decided
    errors = journal.events(kind="broker_error")
    assert errors and "503" in errors[0]["payload"]["reason"]
    orders = journal.signals()
    assert set(orders.loc[orders["action"] == "order", "status"]) == {"rejected"}


def test_the_notifier_hears_signals_denials_and_the_kill_after_the_journal(tmp_path):
    config = scripted_config(rate_limits={"all_per_window": 2, "high_per_window": 2})
    notes = Notes()
    engine, journal, _ = _engine(tmp_path, config=config, notifier=notes)
    result = engine.run()
    kinds = [kind for kind, _, _ in notes.calls]
    assert kinds.count("signal") == result.intents == 2
    assert kinds.count("denial") == result.refused["rate_limited"]
    sent = {kw["symbol"] for kind, _, kw in notes.calls if kind == "signal"}
    assert sent == {"BTC", "ETH"}
    set_kill_switch(journal, True, by="ops", reason="drill")
    notes.calls.clear()
    again, _, _ = _engine(
        tmp_path / "k", config=config, journal=journal, notifier=notes, resume_book=False
    )
    again.run()
    assert [kind for kind, _, _ in notes.calls] == ["halt"]


def test_the_kill_switch_cancels_open_orders_and_marks_their_intents(tmp_path):
    """With fills three bars after the decision, orders are still working when the kill
    switch goes on: they are cancelled at the broker AND marked cancelled in the journal,
    which never shows as working an order that will not fill."""
    execution = {"instrument": "crypto", "initial_cash": 100_000.0, "rules": "none",
                 "latency_bars": 3}  # fmt: skip
    engine, journal, broker = _engine(tmp_path, config=scripted_config(execution=execution))
    engine.start()
    feed = iter(engine.feed)
    while not broker.open_orders():
        engine.step(next(feed))
    working = [intent.client_order_id for intent in broker.open_orders()]
    set_kill_switch(journal, True, by="ops", reason="drill")
    assert engine.step(next(feed)) is not None  # the loop stops
    assert not broker.open_orders()
    for coid in working:
        assert journal.intent_status(coid) == "cancelled"
