"""The engine's notifications of a halt and of errors, as the people watching receive them:
each comes after the journal holds what it reports, with its reason.

The engine talks to a real ``WebhookNotifier`` posting to a webhook on 127.0.0.1; when a
message arrives, the webhook reads the journal through a connection of its own (another
``LiveJournal`` on the same SQLite file), so "the journal holds it" means committed, not
merely written by the engine's own connection. The loss-limit session is the one of
``test_engine.test_a_loss_limit_breach_flattens_halts_until_a_person_unlocks``.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import pytest

from moola.core.errors import BrokerError, JournalError
from moola.runtime.brokers import PaperBroker
from moola.runtime.engine import Engine
from moola.runtime.feed import ReplayFeed
from moola.runtime.notify import WebhookNotifier
from moola.tracking.livedb import LiveJournal
from tests.runtime._lab import MinuteFlip, Notes, scripted_config, two_symbol_bars
from tests.runtime.fake_webhook import Hook

HALT = "<b>HALT</b>: "
ERROR = "<b>Error</b>: "


class Witness(Hook):
    """A webhook on 127.0.0.1 that, for each halt or error message it receives, reads the
    journal at ``db`` through its own connection and keeps (text, the halt events, the
    broker_error events, the intents' statuses) as they were when the message came."""

    def __init__(self, db: Path) -> None:
        self.seen: list[tuple[str, list[dict], list[dict], dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.reader: LiveJournal | None = None
        self.db = db
        super().__init__("/hook")

    def on_body(self, body: dict) -> None:
        text = body["text"]
        self.texts.append(text)
        if text.startswith((HALT, ERROR)):
            self.seen.append(self._look(text))

    def _look(self, text: str) -> tuple[str, list[dict], list[dict], dict[str, str | None]]:
        if self.reader is None:
            self.reader = LiveJournal(f"sqlite:///{self.db}", migrate=False)
        errors = self.reader.events(kind="broker_error")
        statuses = {
            e["payload"]["client_order_id"]: self.reader.intent_status(
                e["payload"]["client_order_id"]
            )
            for e in errors
        }
        return text, self.reader.events(kind="halt"), errors, statuses

    def close(self) -> None:
        super().close()
        if self.reader is not None:
            self.reader.close()


@pytest.fixture
def witness(tmp_path):
    hook = Witness(tmp_path / "paper.db")
    yield hook
    hook.close()


def _engine(tmp_path, bars, config, notifier, broker=None):
    journal = LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}")
    broker = broker or PaperBroker(config.execution, config.symbols)
    feed = ReplayFeed(bars, config.symbols, "1m", config.staleness)
    engine = Engine(
        config, journal, broker, [MinuteFlip(period=30)], feed, env={}, notifier=notifier
    )
    return engine, journal, broker


def _notifier(url: str) -> WebhookNotifier:
    return WebhookNotifier(url, timeout=5.0, max_retries=0, sleep=lambda s: None)


def test_a_loss_limit_halt_is_notified_after_the_journal_holds_it_with_its_reason(
    tmp_path, witness
):
    bars = two_symbol_bars(90, 1)
    crash = (bars["symbol"] == "BTC") & (bars["timestamp"].dt.minute >= 25)
    crash &= bars["timestamp"] < pd.Timestamp("2024-01-01 01:00", tz="UTC")
    for column in ("open", "high", "low", "close"):
        bars.loc[crash, column] *= 0.7  # BTC falls 30% after it was bought
    config = scripted_config(risk={"max_position": 1000.0, "daily_loss": 0.02})
    notifier = _notifier(witness.url)
    engine, journal, _ = _engine(tmp_path, bars, config, notifier)
    engine.run()
    notifier.close()
    (halt,) = journal.events(kind="halt")
    reason = halt["payload"]["reason"]
    assert "daily_loss_limit" in reason
    halts = [seen for seen in witness.seen if seen[0].startswith(HALT)]
    assert len(halts) == 1, witness.texts  # told once, not at every later bar
    text, journaled, _, _ = halts[0]
    assert text == HALT + html.escape(reason)  # the reason, word for word
    assert [e["payload"]["reason"] for e in journaled] == [reason]  # committed before


def test_a_broker_refusal_is_notified_after_the_journal_holds_it_with_its_reason(tmp_path, witness):
    config = scripted_config()
    notifier = _notifier(witness.url)
    engine, journal, broker = _engine(tmp_path, two_symbol_bars(90, 1), config, notifier)

    def refuse(intent):
        raise BrokerError(f"HTTP 400 INSUFFICIENT_FUND for {intent.symbol}")

    broker.submit = refuse
    result = engine.run()
    notifier.close()
    errors = journal.events(kind="broker_error")
    assert len(errors) == result.refused["broker_error"] >= 2
    told = [seen for seen in witness.seen if seen[0].startswith(ERROR)]
    assert len(told) == len(errors)  # one message per refusal
    for event, (text, _, journaled, statuses) in zip(errors, told, strict=True):
        coid, why = event["payload"]["client_order_id"], event["payload"]["reason"]
        assert "INSUFFICIENT_FUND" in why
        assert coid in text and html.escape(why) in text  # names the order and the reason
        assert event in journaled  # the event was committed when the message came
        assert statuses[coid] == "rejected"  # and the intent marked with it


class FailingJournal:
    """The real journal whose ``record_steps`` raises ``JournalError`` (the database is
    gone mid-session): the engine stops and sends nothing."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        if name == "record_steps":

            def fail(*args, **kwargs):
                raise JournalError("record the group's steps: the database is gone")

            return fail
        return getattr(self._inner, name)


def test_a_journal_error_that_stops_trading_is_notified_naming_it(tmp_path):
    notes = Notes()
    engine, journal, broker = _engine(tmp_path, two_symbol_bars(60, 1), scripted_config(), notes)
    engine.journal = FailingJournal(journal)
    with pytest.raises(JournalError):
        engine.run()
    assert broker.open_orders() == [] and not any(broker.positions().values())  # nothing sent
    errors = [args for kind, args, _ in notes.calls if kind == "error"]
    assert errors and "the database is gone" in errors[-1][0]


def test_the_witness_reads_what_another_connection_committed(tmp_path, witness):
    """The premise of the tests above: the webhook's own connection sees an event the
    engine's journal committed before the message, and not one recorded after it."""
    journal = LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}")
    journal.record_event(None, "halt", {"reason": "first"})
    notifier = _notifier(witness.url)
    assert notifier.halt("first")
    journal.record_event(None, "halt", {"reason": "second"})
    notifier.close()
    [(text, halts, _, _)] = witness.seen
    assert text == HALT + "first" and [e["payload"]["reason"] for e in halts] == ["first"]
    assert len(journal.events(kind="halt")) == 2
