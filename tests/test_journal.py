"""The journal: typed, immutable decisions, on disk before they act, history readable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from moola.core.anchors import Anchors
from moola.core.chainlog import chain_head
from moola.core.errors import IntegrityError
from moola.pipeline.integrity import verify_root
from moola.tracking.journal import (
    EVENTS_FILE,
    GateDecision,
    GateDecisionPayload,
    JournalEvent,
    JsonlJournal,
    TestLook,
    TestLookPayload,
)
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
