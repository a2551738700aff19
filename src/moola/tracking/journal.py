"""The journal: append-only, typed, immutable events for decisions that move data or money.

A decision (a look at a split's test part, a promotion gate's verdict, a recorded
backtest; later risk denials, orders and signals) is a frozen ``JournalEvent`` with a
``kind``, the UTC time ``at`` and a typed ``payload``. ``Journal.append`` writes it, on
disk (fsync) before it returns, so a caller appends *before* it acts on the decision.

``Journal`` is the interface (``append``, ``read``); ``JsonlJournal`` is today's backend:
one hash-chained JSON-lines log, ``journal/events.jsonl`` under the data root
(``moola.core.chainlog``), whose head is anchored in the write journal after every append
so ``moola data verify`` notices removed lines. An SQL backend implements the same two
methods later.

History stays readable: the ledgers written before the journal existed
(``artifacts/test_ledger.jsonl``, ``artifacts/gate_decisions.jsonl``, one flat record per
line) are read as ``TestLook`` and ``GateDecision`` events ahead of the journal's own.

Reading fails closed: a damaged or truncated log raises ``IntegrityError`` naming the
line, because a guard that reads the journal ("was this test part looked at before?")
cannot answer from a log that may have lost lines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moola.core.anchors import JOURNAL_DIR, Anchors
from moola.core.chainlog import append_record, chain_head, read_records
from moola.core.errors import IntegrityError
from moola.core.provenance import utc_now_iso

__all__ = [
    "EVENTS_FILE",
    "LEGACY_LEDGERS",
    "BacktestRecorded",
    "BacktestRecordedPayload",
    "GateDecision",
    "GateDecisionPayload",
    "Journal",
    "JournalEvent",
    "JsonlJournal",
    "TestLook",
    "TestLookPayload",
]

EVENTS_FILE = f"{JOURNAL_DIR}/events.jsonl"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JournalEvent(_Frozen):
    """One recorded decision: what kind, when (UTC, ISO 8601) and its details.

    Subclasses fix ``kind`` and type ``payload``; an event of a kind this version of moola
    does not know is read back as a plain ``JournalEvent`` with a dict payload.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class, whatever its name
    kind: str
    at: str = Field(default_factory=utc_now_iso)
    payload: Any


class TestLookPayload(_Frozen):
    """A look at a split's test part by a run (``reuse_allowed``: it was not the first)."""

    __test__: ClassVar[bool] = False
    run_id: str
    split_hash: str
    split: str
    reuse_allowed: bool = False


class TestLook(JournalEvent):
    """Written before a test score is computed and shown."""

    kind: Literal["test_look"] = "test_look"
    payload: TestLookPayload


class GateDecisionPayload(_Frozen):
    """A promotion verdict: every gate's value and threshold, on which metrics (``basis``),
    for which manifest, and which backtest (folder in the run) the trading gates judged."""

    run_id: str
    manifest_sha256: str
    basis: str
    gates: dict[str, Any]
    backtest: str | None = None


class GateDecision(JournalEvent):
    """Written before a run is promoted or refused."""

    kind: Literal["gate_decision"] = "gate_decision"
    payload: GateDecisionPayload


class BacktestRecordedPayload(_Frozen):
    """A backtest of a run: its folder in the run, the hashes of its execution terms
    (``ExecutionConfig``) and of its signal policy, and its headline statistics."""

    run_id: str
    backtest: str
    execution_hash: str | None = None
    policy_hash: str | None = None
    stats: dict[str, Any] = Field(default_factory=dict)


class BacktestRecorded(JournalEvent):
    """Written before a backtest's results are stored with its run."""

    kind: Literal["backtest_recorded"] = "backtest_recorded"
    payload: BacktestRecordedPayload


EVENT_TYPES: dict[str, type[JournalEvent]] = {
    "test_look": TestLook,
    "gate_decision": GateDecision,
    "backtest_recorded": BacktestRecorded,
}

#: Ledgers written before the journal (one flat record per line) and the kind of each.
LEGACY_LEDGERS: dict[str, str] = {
    "artifacts/test_ledger.jsonl": "test_look",
    "artifacts/gate_decisions.jsonl": "gate_decision",
}


class Journal(ABC):
    """Where decisions are recorded; a backend implements ``append`` and ``read``."""

    @abstractmethod
    def append(self, event: JournalEvent) -> None:
        """Record ``event`` durably; it is on disk when this returns."""

    @abstractmethod
    def read(self, kind: str | None = None) -> list[JournalEvent]:
        """Every recorded event (of ``kind`` when given), oldest first."""


class JsonlJournal(Journal):
    """The journal as one hash-chained JSON-lines log under ``root`` (see the module)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.anchors = Anchors(self.root)

    @property
    def path(self) -> Path:
        return self.root / EVENTS_FILE

    def append(self, event: JournalEvent) -> None:
        key = f"log:{EVENTS_FILE}"
        append_record(
            self.path,
            event.model_dump(mode="json"),
            then=lambda head: self.anchors.record_digest(key, head),
        )

    def read(self, kind: str | None = None) -> list[JournalEvent]:
        events = []
        for relpath, legacy_kind in LEGACY_LEDGERS.items():
            if kind in (None, legacy_kind):
                for record in self._records(relpath):
                    at = str(record.pop("at", ""))
                    events.append(_event(legacy_kind, at, record))
        for record in self._records(EVENTS_FILE):
            if kind in (None, record.get("kind")):
                events.append(_event(record.get("kind"), record.get("at"), record.get("payload")))
        return events

    def _records(self, relpath: str) -> list[dict[str, Any]]:
        """The records of one log, refusing a damaged or truncated one."""
        path = self.root / relpath
        records, problems = read_records(path)
        if problems:
            raise IntegrityError(
                f"The decision log {path} is damaged ({problems[0]}"
                f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}); its "
                "decisions cannot be trusted. Restore it from a backup; `moola data verify` "
                "lists every damaged line."
            )
        anchored = self.anchors.expected(f"log:{relpath}")
        if anchored is not None and chain_head(path) != anchored:
            raise IntegrityError(
                f"The decision log {path} does not end with the line the write journal "
                "recorded last: lines were removed or the file was replaced. Restore it "
                "from a backup."
            )
        return records


def _event(kind: Any, at: Any, payload: Any) -> JournalEvent:
    """A typed event when the kind is known and its payload fits, else a plain one."""
    model = EVENT_TYPES.get(str(kind))
    if model is not None:
        try:
            return model(at=at, payload=payload)
        except ValidationError:
            pass
    return JournalEvent(kind=str(kind), at=str(at), payload=payload)
