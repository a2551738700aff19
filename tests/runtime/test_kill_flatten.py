"""The kill switch's ``flatten`` option (issue 18: "on: cancel open orders, optionally
flatten, and stop"): with ``kill_switch: {flatten: true}`` a paper session turned off mid-way
closes every held position by orders journaled before they are sent (their decisions
naming the kill switch), sends nothing else, and stops once flat; the risk gate and the rate
limits do not judge a flatten. Without it the positions are left as they are. A crash
between the journaled flatten and the broker call resumes without sending it twice.
"""

from __future__ import annotations

import sqlite3

import pytest

from moola.core.errors import ConfigError
from moola.runtime.brokers import PaperBroker
from moola.runtime.config import parse_live_config
from moola.runtime.engine import KILL_SWITCH_KEY, Engine
from moola.runtime.feed import ReplayFeed
from moola.runtime.session import set_kill_switch
from moola.tracking.livedb import LiveJournal
from tests.runtime._lab import SYMBOLS, MinuteFlip, scripted_config, two_symbol_bars

N_BARS = 90


def _config(flatten: bool):
    return scripted_config(
        # the two buys spend the whole hour's signals: a judged flatten would be refused
        rate_limits={"all_per_window": 2, "high_per_window": 2},
        kill_switch={"flatten": flatten},
    )


class Sends:
    """The paper broker, each submit logged with the journal's status of its intent at
    that moment (journal first: it must be recorded before the broker sees it)."""

    def __init__(self, inner, journal):
        self._inner, self._journal, self.sent = inner, journal, []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def submit(self, intent):
        self.sent.append((intent, self._journal.intent_status(intent.client_order_id)))
        return self._inner.submit(intent)


def _session(tmp_path, flatten: bool):
    """A paper session whose kill switch goes on (environment) once both symbols are held:
    (engine, journal, broker, positions at the kill, sends before the kill)."""
    config = _config(flatten)
    journal = LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}")
    broker = Sends(PaperBroker(config.execution, config.symbols), journal)
    feed = ReplayFeed(two_symbol_bars(N_BARS, 3), config.symbols, "1m", config.staleness)
    env: dict[str, str] = {}
    at_kill: dict = {}

    def on_bar(done, total):
        held = {s: q for s, q in broker.positions().items() if q}
        if not at_kill and len(held) == len(SYMBOLS):
            env["KILL_SWITCH"] = "true"
            at_kill.update(held=held, sent=len(broker.sent), bars=done)

    engine = Engine(config, journal, broker, [MinuteFlip(period=30)], feed, env=env)
    engine.on_bar = on_bar
    result = engine.run()
    assert at_kill, "the test's premise: both symbols held before the feed ends"
    return result, journal, broker, at_kill


@pytest.mark.parametrize("flatten", [False, True])
def test_the_kill_switch_flattens_only_when_asked_and_sends_nothing_else(tmp_path, flatten):
    result, journal, broker, at_kill = _session(tmp_path, flatten)
    after = broker.sent[at_kill["sent"] :]
    positions = {p["symbol"]: p["qty"] for p in journal.status()["positions"]}
    assert "kill switch on (env)" in result.stopped
    assert result.bars < N_BARS * len(SYMBOLS)  # stopped, not run to the feed's end
    if not flatten:
        assert after == []
        assert {s: q for s, q in broker.positions().items() if q} == at_kill["held"]
        assert positions == pytest.approx(at_kill["held"])
        return
    # one closing order per held symbol, each journaled before the broker saw it
    closing = {i.symbol: (i.side, i.qty) for i, _ in after}
    assert len(after) == len(SYMBOLS)
    assert closing == {s: ("sell", pytest.approx(q)) for s, q in at_kill["held"].items()}
    assert {status for _, status in after} == {"pending"}
    assert not any(broker.positions().values()) and not broker.open_orders()
    assert positions == {s: 0.0 for s in SYMBOLS}
    signals = journal.signals(include_flat=True)
    flattens = signals[signals["action"] == "flatten"]
    assert sorted(flattens["client_order_id"]) == sorted(i.client_order_id for i, _ in after)
    assert all("kill switch on (env)" in r[0] for r in flattens["reasons"])
    assert set(flattens["status"]) == {"filled"}
    assert list(flattens["filled_qty"]) == pytest.approx(list(flattens["qty"]))
    assert signals["action"].iloc[-1] == "killed"  # the loop stopped once flat
    assert not journal.events(kind="rate_limited") and not journal.events(kind="denied")


class Crash(Exception):
    """The process dies here (a SIGKILL stand-in: nothing after it runs)."""


def test_a_crash_between_the_journaled_flatten_and_the_broker_resumes_sending_it_once(
    tmp_path,
):
    """The kill switch (journal) is on and both symbols held; the process dies at the first
    flatten's submit. The session resumed on a fresh paper book places the journaled
    flattens once (as the rebuilt book), never decides them again, and ends flat."""
    config = _config(True)
    bars = two_symbol_bars(N_BARS, 3)
    journal = LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}")
    env: dict[str, str] = {}
    paper = PaperBroker(config.execution, config.symbols)
    submit = paper.submit

    def dying(intent):
        if env:
            raise Crash
        return submit(intent)

    paper.submit = dying

    def on_bar(done, total):
        if sum(1 for q in paper.positions().values() if q) == len(SYMBOLS):
            env["KILL_SWITCH"] = "true"

    feed = ReplayFeed(bars, config.symbols, "1m", config.staleness)
    engine = Engine(config, journal, paper, [MinuteFlip(period=30)], feed, env=env)
    engine.on_bar = on_bar
    with pytest.raises(Crash):
        engine.run()
    pending = journal.pending_intents()
    assert len(pending) == len(SYMBOLS)  # both flattens journaled before the first send
    broker = Sends(PaperBroker(config.execution, config.symbols), journal)
    feed = ReplayFeed(bars, config.symbols, "1m", config.staleness)
    again = Engine(config, journal, broker, [MinuteFlip(period=30)], feed, env=env)
    again.start(engine.session_id)
    result = again.run()
    assert "kill switch on (env)" in result.stopped
    flattens = {p["client_order_id"] for p in pending}
    placed = [i.client_order_id for i, _ in broker.sent if i.client_order_id in flattens]
    assert sorted(placed) == sorted(flattens)  # each once, by the book's rebuild
    # besides them only the rebuilt book's buys: no flatten decided or sold again
    assert sorted(i.side for i, _ in broker.sent if i.client_order_id not in flattens) == [
        "buy"
    ] * len(SYMBOLS)
    assert not any(broker.positions().values())
    assert {p["symbol"]: p["qty"] for p in journal.status()["positions"]} == {
        s: 0.0 for s in SYMBOLS
    }
    for coid in flattens:
        assert journal.intent_status(coid) == "filled"


def test_the_kill_switch_section_refuses_unknown_keys():
    with pytest.raises(ConfigError, match="flaten"):
        parse_live_config(
            {
                "symbols": list(SYMBOLS),
                "members": [{"role": "direction", "run": "scripted"}],
                "kill_switch": {"flaten": True},
            }
        )


@pytest.mark.parametrize("flatten", [False, True])
def test_a_polled_feed_goes_on_after_the_kill_only_while_a_flatten_is_due(tmp_path, flatten):
    """``run_session`` stops a polled feed when the kill switch goes on unless the engine
    still has positions to flatten (``flattens_on_kill``): their closing orders need the
    next bars."""
    config = _config(flatten)
    journal = LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}")
    feed = ReplayFeed(two_symbol_bars(30, 3), config.symbols, "1m", config.staleness)
    broker = PaperBroker(config.execution, config.symbols)
    engine = Engine(config, journal, broker, [MinuteFlip(period=30)], feed, env={})
    engine.start()
    assert engine.flattens_on_kill() is False  # nothing held
    engine.positions["BTC"] = 2.0
    assert engine.flattens_on_kill() is flatten


@pytest.mark.parametrize("flatten", [False, True])
def test_a_session_resumed_after_its_kill_switch_stop_decides_nothing_more(tmp_path, flatten):
    """A crash after the loop stopped for the kill switch (journal, as ``moola live kill on``
    sets it) but before the session row closed: resumed on a fresh paper book, the session
    decides no further bar (no second ``killed``), journals no order, and ends with the
    stop's reason, as the uninterrupted run ended."""
    config = _config(flatten)
    bars = two_symbol_bars(N_BARS, 3)
    journal = LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}")
    feed = ReplayFeed(bars, config.symbols, "1m", config.staleness)
    paper = PaperBroker(config.execution, config.symbols)
    engine = Engine(config, journal, paper, [MinuteFlip(period=30)], feed, env={})
    session_id = engine.start()
    stop = None
    for group in feed.groups():  # run's loop, without its end_session: the crash
        if all(engine.positions.values()) and journal.get_state(KILL_SWITCH_KEY) is None:
            set_kill_switch(journal, True, by="ops", reason="drill")
        stop = engine.step_group(group)
        if stop:
            break
    assert stop is not None and stop.startswith("kill switch on (journal)")
    decided, intents = len(journal.signals(include_flat=True)), _intents(tmp_path)
    assert journal.status()["open_sessions"] == [session_id]

    feed = ReplayFeed(bars, config.symbols, "1m", config.staleness)
    paper = PaperBroker(config.execution, config.symbols)
    again = Engine(config, journal, paper, [MinuteFlip(period=30)], feed, env={}, resume_book=True)
    again.start(session_id)
    result = again.run()
    assert result.stopped == stop and result.decided == 0
    assert len(journal.signals(include_flat=True)) == decided
    assert _intents(tmp_path) == intents
    assert journal.status()["open_sessions"] == []


def _intents(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "paper.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM order_intents").fetchone()[0]
