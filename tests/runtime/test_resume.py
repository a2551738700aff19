"""Resuming the same paper session (issue 18): a session left open mid-way (its process
gone, its paper book with it) goes on with ``Engine.start(session_id)`` on a fresh
``PaperBroker`` whose book is rebuilt from the journal, and ends as an uninterrupted
session ends; a session that can not be resumed is refused, naming why.

In-process (the SIGKILL version of the same, at every crash point, is in test_crash).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from moola.core.errors import ConfigError
from moola.runtime.brokers import PaperBroker
from moola.runtime.engine import Engine, ReconcileError
from moola.runtime.feed import ReplayFeed
from moola.tracking.livedb import LiveJournal
from tests.runtime._lab import MinuteFlip, scripted_config, two_symbol_bars

N_BARS = 90


def _config(**risk):
    return scripted_config(risk={"max_position": 1000.0, **risk})


def _engine(journal, config=None, *, resume=False, member=None):
    config = config or _config()
    feed = ReplayFeed(two_symbol_bars(N_BARS, 3), config.symbols, "1m", config.staleness)
    broker = PaperBroker(config.execution, config.symbols)
    members = [member or MinuteFlip()]
    return Engine(config, journal, broker, members, feed, env={}, resume_book=resume)


@dataclass(frozen=True)
class Warmed(MinuteFlip):
    """A member with a state of its own bar by bar (as an RL policy): ``warm`` logged."""

    warmed: list = field(default_factory=list)

    def warm(self, symbol, bars):
        self.warmed.append((symbol, bars["timestamp"].iloc[-1]))


def _outcome(journal, session_id):
    """What a session ended with, without ids (the client ids hash the session id)."""
    record = journal.session_record(session_id)
    decisions = [
        (it.symbol, it.bar_time, it.decision.action, it.decision.signal) for it in record.iterations
    ]
    intents = [(i.symbol, i.side, i.qty, i.status) for i in record.intents]
    fills = [(f.symbol, f.qty, f.price, f.fee, f.time) for f in record.fills]
    positions = [(p.symbol, p.qty, p.equity, p.cash, p.at) for p in record.positions]
    return decisions, intents, fills, positions, record.state.get("engine")


def _interrupted(journal, bars: int) -> str:
    """A session that decided ``bars`` symbol-bars and was then abandoned, open, with an
    order sent but its ack never journaled (the process died right after submit)."""
    engine = _engine(journal)
    session_id = engine.start()
    for k, fb in enumerate(engine.feed):
        if k == bars:
            break
        engine.step(fb)
    return session_id


@pytest.fixture
def reference(tmp_path):
    with LiveJournal(f"sqlite:///{tmp_path / 'reference.db'}") as journal:
        result = _engine(journal).run()
        yield _outcome(journal, result.session_id)


@pytest.mark.parametrize("bars", [101, 150])
def test_a_paper_session_resumed_on_a_fresh_book_ends_as_if_never_stopped(
    tmp_path, reference, bars
):
    with LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}") as journal:
        session_id = _interrupted(journal, bars)
        assert journal.session_record(session_id).fills  # it had traded
        resumed = _engine(journal, resume=True)
        assert resumed.start(session_id) == session_id
        resumed.run()
        [session] = journal.status()["sessions"]
        assert session["id"] == session_id and session["end_reason"] == "feed ended"
        assert _outcome(journal, session_id) == reference


def test_a_paper_session_whose_ack_was_lost_is_acknowledged_once_on_resume(tmp_path, reference):
    """The process died between the broker's submit and the journaled ack: the intent is
    pending; the rebuilt book places it once and the journal records its ack once."""
    with LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}") as journal:
        engine = _engine(journal)
        session_id = engine.start()
        engine._submit = lambda *args: True  # the ack is never journaled
        for fb in engine.feed:
            engine.step(fb)
            if journal.pending_intents(session_id):
                break
        [pending] = journal.pending_intents(session_id)
        _engine(journal, resume=True).start(session_id)
        assert journal.intent_status(pending["client_order_id"]) == "acknowledged"
        acks = [
            e["payload"]["client_order_id"]
            for e in journal.events(session_id, kind="intent_status")
            if e["payload"]["to"] == "acknowledged"
        ]
        assert acks.count(pending["client_order_id"]) == 1


def test_an_ended_session_or_another_config_is_not_resumed(tmp_path):
    with LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}") as journal:
        open_id = _interrupted(journal, 10)
        with pytest.raises(ConfigError, match="started with another config"):
            _engine(journal, _config(risk_per_trade=0.02), resume=True).start(open_id)
        ended = _engine(journal).run().session_id
        with pytest.raises(ConfigError, match=f"session {ended} ended .*feed ended"):
            _engine(journal, resume=True).start(ended)


def test_a_session_is_not_resumed_after_another_ran_on_the_journal(tmp_path):
    """The journal keeps one engine state: once another session wrote it, the abandoned
    session's own is gone, and resuming it would trade on a state not its own."""
    with LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}") as journal:
        first = _interrupted(journal, 40)
        _engine(journal).run()
        with pytest.raises(ReconcileError, match=f"not session {first}'s"):
            _engine(journal, resume=True).start(first)


def test_members_with_a_state_of_their_own_see_the_bars_decided_before_the_restart(tmp_path):
    """A resumed session replays the feed from its start; the bars decided before the
    crash are not decided again, but a member that keeps a state bar by bar (``warm``, as
    an RL policy's window and book) is fed each of them, in order."""
    with LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}") as journal:
        session_id = _interrupted(journal, 40)
        decided = [(it.symbol, it.bar_time) for it in journal.session_record(session_id).iterations]
        member = Warmed()
        engine = _engine(journal, resume=True, member=member)
        engine.start(session_id)
        for k, fb in enumerate(engine.feed):
            if k == 41:
                break
            engine.step(fb)
        assert member.warmed == decided
