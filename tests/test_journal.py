"""The journal: typed, immutable decisions (risk breaches and denied orders too), on disk
before they act, history readable, tampering refused naming the line."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from moola.core.anchors import Anchors
from moola.core.chainlog import chain_head
from moola.core.errors import ConfigError, IntegrityError
from moola.pipeline.integrity import verify_root
from moola.sim import BREACH_COLUMNS, REJECTION_COLUMNS, Bar, Broker, ExecutionConfig, market
from moola.tracking.journal import (
    EVENTS_FILE,
    GateDecision,
    GateDecisionPayload,
    Journal,
    JournalEvent,
    JsonlJournal,
    OrderDenied,
    RiskBreach,
    TestLook,
    TestLookPayload,
    find_events,
)
from moola.tracking.risk import journal_risk, risk_events
from moola.tracking.runs import RunStore


def _look(run_id: str = "r1", split_hash: str = "sha256:aa") -> TestLook:
    return TestLook(payload=TestLookPayload(run_id=run_id, split_hash=split_hash, split="fc@v1"))


def _gate(run_id: str = "r1", passed: bool = True) -> GateDecision:
    payload = GateDecisionPayload(
        run_id=run_id, manifest_sha256="sha256:bb", basis="test", gates={"passed": passed}
    )
    return GateDecision(payload=payload)


def test_events_round_trip_typed_and_in_order(tmp_path):
    journal = JsonlJournal(tmp_path)
    journal.append(_look("r1"))
    journal.append(_gate("r1", passed=False))
    journal.append(_look("r2"))
    events = journal.read()
    assert [type(e) for e in events] == [TestLook, GateDecision, TestLook]
    assert events[0] == _look("r1").model_copy(update={"at": events[0].at})
    looks = journal.read("test_look")
    assert [look.payload.run_id for look in looks] == ["r1", "r2"]
    assert journal.read("gate_decision")[0].payload.gates == {"passed": False}


def test_events_are_immutable_and_reject_unknown_fields():
    look = _look()
    with pytest.raises(ValidationError):
        look.at = "2020-01-01T00:00:00Z"
    with pytest.raises(ValidationError, match="surprise"):
        TestLookPayload(run_id="r", split_hash="h", split="s", surprise=1)


def test_each_append_is_chained_anchored_and_verified(tmp_path):
    journal = JsonlJournal(tmp_path)
    journal.append(_look())
    journal.append(_gate())
    assert Anchors(tmp_path).expected(f"log:{EVENTS_FILE}") == chain_head(journal.path)
    assert verify_root(tmp_path).ok


def test_old_ledgers_are_read_as_events_ahead_of_new_ones(tmp_path):
    store = RunStore(tmp_path)  # how moola wrote them before the journal
    store.append_log(
        "test_ledger.jsonl",
        {"run_id": "old", "split_hash": "sha256:aa", "split": "fc", "at": "2025-01-01T00:00:00Z",
         "reuse_allowed": False},
    )  # fmt: skip
    store.append_log(
        "gate_decisions.jsonl",
        {"run_id": "old", "manifest_sha256": "sha256:cc", "at": "2025-01-02T00:00:00Z",
         "basis": "oof", "gates": {"passed": True}},
    )  # fmt: skip
    journal = JsonlJournal(tmp_path)
    journal.append(_look("new"))
    looks = journal.read("test_look")
    assert looks[0].at == "2025-01-01T00:00:00Z"
    assert [look.payload.run_id for look in looks] == ["old", "new"]
    (gate,) = journal.read("gate_decision")
    assert isinstance(gate, GateDecision) and gate.payload.basis == "oof"
    assert verify_root(tmp_path).ok


def test_an_unknown_kind_is_read_back_plain(tmp_path):
    journal = JsonlJournal(tmp_path)
    journal.append(JournalEvent(kind="risk_denial", payload={"reasons": ["daily loss"]}))
    (event,) = journal.read("risk_denial")
    assert type(event) is JournalEvent and event.payload == {"reasons": ["daily loss"]}


def test_a_damaged_or_truncated_journal_is_refused(tmp_path):
    journal = JsonlJournal(tmp_path)
    journal.append(_look("r1"))
    journal.append(_look("r2"))
    original = journal.path.read_bytes()
    journal.path.write_bytes(original.replace(b'"r1"', b'"r9"'))
    with pytest.raises(IntegrityError, match=r"events\.jsonl"):
        journal.read("test_look")
    journal.path.write_bytes(original.split(b"\n")[0] + b"\n")  # the last look removed
    with pytest.raises(IntegrityError, match="lines were removed"):
        journal.read()


# ---------------------------------------------------------------- risk decisions


def _traded_broker():
    """A broker whose position limit refuses orders, then whose loss limit halts and
    flattens it: one breach and seven denials, the last three naming the halt."""
    cfg = ExecutionConfig(
        rules=[{"rule": "total_loss_limit", "pct": 0.05}, {"rule": "max_position", "units": 500}]
    )
    broker = Broker(cfg, flatten_on_breach=True)
    times = pd.date_range("2024-01-02", periods=8, freq="1h", tz="UTC")
    for i, (time, price) in enumerate(zip(times, [100, 100, 101, 95, 90, 85, 85, 85], strict=True)):
        broker.advance(Bar(time, price, price, price, price))
        broker.submit(market(600 if i == 0 else 400))
    return broker


def test_risk_decisions_are_journaled_typed_in_time_order(tmp_path):
    broker = _traded_broker()
    journal = JsonlJournal(tmp_path)
    count = journal_risk(
        journal, "backtest:r1/20240102", broker.breaches, broker.rejections, on_breach="flatten"
    )
    events = journal.read()
    assert count == len(events) == 8
    assert [e.kind for e in events] == ["order_denied"] * 4 + ["risk_breach"] + ["order_denied"] * 3
    breach = journal.read("risk_breach")[0]
    assert isinstance(breach, RiskBreach) and breach.run_id == "r1"
    assert breach.payload.rule == "total_loss_limit" and breach.payload.bar == 5
    assert breach.payload.action == "flattened" and breach.payload.flatten_qty == -400.0
    assert breach.payload.time == "2024-01-02T05:00:00+00:00"
    assert breach.payload.value == pytest.approx(0.064) and breach.payload.limit == 0.05
    denials = journal.read("order_denied")
    assert all(isinstance(d, OrderDenied) for d in denials)
    assert [d.payload.order_id for d in denials] == [1, 3, 4, 5, 7, 8, 9]
    assert denials[0].payload.requested_qty == 600.0 and denials[0].payload.accepted_qty == 0.0
    assert "max_position" in denials[0].payload.reasons[0]
    assert all("broker halted: total_loss_limit" in d.payload.reasons[0] for d in denials[4:])
    assert "total_loss_limit breached at bar 5" in breach.summary()
    assert verify_root(tmp_path).ok


def test_what_a_breach_led_to_comes_from_on_breach_or_an_action_column():
    breaches = pd.DataFrame(
        [
            (pd.Timestamp("2024-01-02", tz="UTC"), 3, "daily_loss_limit", 0.06, 0.05, "d", 0.0),
            (pd.Timestamp("2024-01-03", tz="UTC"), 9, "total_loss_limit", 0.11, 0.1, "t", 0.0),
        ],
        columns=list(BREACH_COLUMNS),
    )
    empty = pd.DataFrame(columns=list(REJECTION_COLUMNS))
    with pytest.raises(ConfigError, match=r"breaches row 0: .* pass on_breach="):
        risk_events("session:paper-1", breaches, empty)
    for mode, action in (("record", "recorded"), ("halt", "halted"), ("flatten", "halted")):
        events = risk_events("session:paper-1", breaches, empty, on_breach=mode)
        assert [e.payload.action for e in events] == [action] * 2  # flatten: nothing held
    breaches["action"] = [None, "recorded"]
    events = risk_events("session:paper-1", breaches, empty, on_breach="halt")
    assert [e.payload.action for e in events] == ["halted", "recorded"]
    assert events[0].run_id is None  # a session names no run


def test_bad_risk_tables_are_refused_naming_the_row_and_nothing_is_written(tmp_path):
    broker = _traded_broker()
    journal = JsonlJournal(tmp_path)
    bad = broker.rejections.copy()
    bad.loc[2, "bar"] = -1
    with pytest.raises(ConfigError, match=r"rejections row 2: bar"):
        journal_risk(journal, "backtest:r1/x", broker.breaches, bad, on_breach="flatten")
    with pytest.raises(ConfigError, match=r"breaches table lacks column\(s\) flatten_qty"):
        journal_risk(journal, "backtest:r1/x", broker.breaches.drop(columns="flatten_qty"), bad)
    with pytest.raises(ConfigError, match="source"):
        journal_risk(journal, " ", broker.breaches, broker.rejections)
    assert journal.read() == [] and not journal.path.exists()


def test_unknown_kinds_and_newer_payloads_stay_readable(tmp_path):
    """A file a newer moola wrote: a kind this version does not know, and a known kind whose
    payload grew a field, both come back as plain events rather than failing the read."""
    journal = JsonlJournal(tmp_path)
    journal.append(JournalEvent(kind="signal_sent", payload={"run_id": "r7", "target": 0.5}))
    newer = {"source": "session:s", "rule": "x", "time": "1", "bar": 1, "value": 1.0,
             "limit": 1.0, "action": "halted", "venue": "new field"}  # fmt: skip
    journal.append(JournalEvent(kind="risk_breach", payload=newer))
    signal, breach = journal.read()
    assert type(signal) is JournalEvent and signal.run_id == "r7"
    assert "target=0.5" in signal.summary()
    assert type(breach) is JournalEvent and breach.payload["venue"] == "new field"


def test_a_line_removed_from_the_middle_is_refused_naming_the_line(tmp_path):
    journal = JsonlJournal(tmp_path)
    for run_id in ("r1", "r2", "r3"):
        journal.append(_look(run_id))
    lines = journal.path.read_bytes().split(b"\n")
    journal.path.write_bytes(b"\n".join([lines[0], *lines[2:]]))
    with pytest.raises(IntegrityError, match=r"events\.jsonl line 2: its _prev does not match"):
        journal.read()


class _MemoryJournal(Journal):
    """Another backend, as an SQL one would be: two methods, plus a batch in one go."""

    def __init__(self) -> None:
        self.events: list[JournalEvent] = []
        self.batches = 0

    def append(self, event: JournalEvent) -> None:
        self.events.append(event)

    def read(self, kind: str | None = None) -> list[JournalEvent]:
        return [e for e in self.events if kind in (None, e.kind)]

    def extend(self, events) -> None:
        self.batches += 1
        self.events.extend(events)


def test_risk_decisions_go_to_any_backend_in_one_batch():
    broker = _traded_broker()
    journal = _MemoryJournal()
    journal_risk(journal, "backtest:r1/x", broker.breaches, broker.rejections, on_breach="flatten")
    assert journal.batches == 1 and len(journal.events) == 8
    assert [e.kind for e in find_events(journal, run="r", last=2)] == ["order_denied"] * 2
    assert find_events(journal, kind="risk_breach")[0].payload.action == "flattened"


def test_the_journal_reads_the_columns_the_broker_writes():
    """tracking/ and sim/ are independent siblings, so the risk tables' columns are named
    in both; they must stay the same names."""
    from moola.sim._result import REJECTION_COLUMNS
    from moola.sim.broker import BREACH_COLUMNS
    from moola.tracking.risk import BREACH_FIELDS, REJECTION_FIELDS

    assert set(BREACH_FIELDS) <= set(BREACH_COLUMNS)
    assert set(REJECTION_FIELDS) <= set(REJECTION_COLUMNS)
