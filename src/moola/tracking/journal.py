"""The journal: append-only, typed, immutable events for decisions that move data or money.

A decision (a look at a split's test part, a promotion gate's verdict, a recorded
backtest, a risk rule's breach, a denied or capped order; later orders and signals) is a
frozen ``JournalEvent`` with a ``kind``, the UTC time ``at`` and a typed ``payload``.
``Journal.append`` writes it, on disk (fsync) before it returns, so a caller appends
*before* it acts on the decision.

``Journal`` is the interface (``append``, ``read``; ``extend`` for a batch);
``JsonlJournal`` is today's backend: one hash-chained JSON-lines log,
``journal/events.jsonl`` under the data root (``moola.core.chainlog``), whose head is
anchored in the write journal after every append so ``moola data verify`` notices removed
lines. An SQL backend implements the same two methods later (and ``extend`` as one
transaction).

History stays readable: the ledgers written before the journal existed
(``artifacts/test_ledger.jsonl``, ``artifacts/gate_decisions.jsonl``, one flat record per
line) are read as ``TestLook`` and ``GateDecision`` events ahead of the journal's own.

Every event says which run it concerns (:attr:`JournalEvent.run_id`, ``None`` for a live
session's) and what it decided in one line (:meth:`JournalEvent.summary`), so ``moola runs
journal`` can list any kind, including kinds a newer moola wrote.

Reading fails closed: a damaged or truncated log (an unreadable or edited line, a line
inserted or removed anywhere) raises ``IntegrityError`` naming the file and the line,
because a guard that reads the journal ("was this test part looked at before?") cannot
answer from a log that may have lost lines.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moola.core.anchors import JOURNAL_DIR, Anchors
from moola.core.chainlog import append_records, scan_log
from moola.core.errors import ConfigError, IntegrityError
from moola.core.provenance import utc_now_iso

__all__ = [
    "EVENTS_FILE",
    "EVENT_TYPES",
    "LEGACY_LEDGERS",
    "BacktestRecorded",
    "BacktestRecordedPayload",
    "GateDecision",
    "GateDecisionPayload",
    "Journal",
    "JournalEvent",
    "JsonlJournal",
    "OrderDenied",
    "OrderDeniedPayload",
    "RiskBreach",
    "RiskBreachPayload",
    "TestLook",
    "TestLookPayload",
    "find_events",
    "run_of_source",
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

    @property
    def run_id(self) -> str | None:
        """The run this decision concerns (``None`` when it names none, e.g. a session's)."""
        payload = self.payload
        fields = payload if isinstance(payload, dict) else getattr(payload, "__dict__", {})
        run_id = fields.get("run_id")
        if isinstance(run_id, str) and run_id:
            return run_id
        source = fields.get("source")
        return run_of_source(source) if isinstance(source, str) else None

    def summary(self) -> str:
        """What was decided, in one line (a plain event lists its payload's fields)."""
        payload = self.payload
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        if not isinstance(payload, dict):
            return _clip(str(payload))
        return _clip(", ".join(f"{key}={value}" for key, value in payload.items()))


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

    def summary(self) -> str:
        p = self.payload
        again = " (a repeat look, allowed)" if p.reuse_allowed else ""
        return f"looked at the test part of {p.split} ({p.split_hash[:19]}){again}"


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

    def summary(self) -> str:
        p = self.payload
        passed = p.gates.get("passed")
        verdict = "passed" if passed is True else "refused" if passed is False else "judged"
        on = f", backtest {p.backtest}" if p.backtest else ""
        return f"promotion gates {verdict} (on {p.basis}{on})"


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

    def summary(self) -> str:
        p = self.payload
        stats = ", ".join(f"{key} {_number(value)}" for key, value in list(p.stats.items())[:3])
        return f"backtest {p.backtest}" + (f": {stats}" if stats else "")


#: What a rule breach led to: only recorded, trading halted, or halted and the position
#: closed by a flattening order.
BreachAction = Literal["recorded", "halted", "flattened"]


class RiskBreachPayload(_Frozen):
    """A risk rule crossed while trading (``moola.sim.Broker.breaches``, one row).

    ``source`` names where: ``backtest:<run id>/<folder>`` or ``session:<id>``. ``time`` is
    the bar's time as ISO 8601 (or its number, for bars without times) and ``bar`` its
    index; ``value`` and ``limit`` are in the rule's units (``None`` when not finite);
    ``flatten_qty`` is the size of the order placed to close the position (0: none).
    """

    source: str = Field(min_length=1)
    rule: str = Field(min_length=1)
    time: str
    bar: int = Field(ge=0)
    value: float | None
    limit: float | None
    detail: str = ""
    flatten_qty: float = 0.0
    action: BreachAction


class RiskBreach(JournalEvent):
    """Written when a rule's breach is recorded, before anything acts on it."""

    kind: Literal["risk_breach"] = "risk_breach"
    payload: RiskBreachPayload

    def summary(self) -> str:
        p = self.payload
        flat = f" (flatten {p.flatten_qty:g})" if p.flatten_qty else ""
        return (
            f"{p.rule} breached at bar {p.bar} ({p.time}): {_number(p.value)} against limit "
            f"{_number(p.limit)}; {p.action}{flat}" + (f"; {p.detail}" if p.detail else "")
        )


class OrderDeniedPayload(_Frozen):
    """An order a pre-trade check refused or capped (``moola.sim.Broker.rejections``, one
    row): where (``source``, as :class:`RiskBreachPayload`), at which bar, which order,
    the quantity asked for and the quantity let through (0: refused; else capped), why."""

    source: str = Field(min_length=1)
    time: str
    bar: int = Field(ge=0)
    order_id: int | None
    requested_qty: float
    accepted_qty: float = 0.0
    reasons: tuple[str, ...] = Field(min_length=1)


class OrderDenied(JournalEvent):
    """Written when an order is refused (or capped), before it could reach the book."""

    kind: Literal["order_denied"] = "order_denied"
    payload: OrderDeniedPayload

    def summary(self) -> str:
        p = self.payload
        order = f"order {p.order_id}" if p.order_id is not None else "an order"
        verb = f"capped to {p.accepted_qty:g}" if p.accepted_qty else "denied"
        return f"{order} for {p.requested_qty:g} {verb} at bar {p.bar} ({p.time}): " + "; ".join(
            p.reasons
        )


EVENT_TYPES: dict[str, type[JournalEvent]] = {
    "test_look": TestLook,
    "gate_decision": GateDecision,
    "backtest_recorded": BacktestRecorded,
    "risk_breach": RiskBreach,
    "order_denied": OrderDenied,
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

    def extend(self, events: Sequence[JournalEvent]) -> None:
        """Record ``events`` in order, all durable when this returns. One ``append`` each
        here; a backend that can write a batch at once (one SQL transaction, one fsync)
        overrides it."""
        for event in events:
            self.append(event)


class JsonlJournal(Journal):
    """The journal as one hash-chained JSON-lines log under ``root`` (see the module)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.anchors = Anchors(self.root)

    @property
    def path(self) -> Path:
        return self.root / EVENTS_FILE

    def append(self, event: JournalEvent) -> None:
        self.extend([event])

    def extend(self, events: Sequence[JournalEvent]) -> None:
        """All ``events`` in one locked write with one ``fsync`` and one anchored head."""
        key = f"log:{EVENTS_FILE}"
        append_records(
            self.path,
            [event.model_dump(mode="json") for event in events],
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
        scan = scan_log(path)  # one read: records, bad lines, broken chain links, head
        problems = scan.problems
        if problems:
            raise IntegrityError(
                f"The decision log {path} is damaged ({problems[0]}"
                f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}); its "
                "decisions cannot be trusted. Restore it from a backup; `moola data verify` "
                "lists every damaged line."
            )
        anchored = self.anchors.expected(f"log:{relpath}")
        if anchored is not None and scan.head != anchored:
            raise IntegrityError(
                f"The decision log {path} does not end with the line the write journal "
                f"recorded last (its last line is line {scan.lines}): lines were removed or "
                "the file was replaced. Restore it from a backup."
            )
        return scan.records


def _event(kind: Any, at: Any, payload: Any) -> JournalEvent:
    """A typed event when the kind is known and its payload fits, else a plain one."""
    model = EVENT_TYPES.get(str(kind))
    if model is not None:
        try:
            return model(at=at, payload=payload)
        except ValidationError:
            pass
    return JournalEvent(kind=str(kind), at=str(at), payload=payload)


def find_events(
    journal: Journal,
    *,
    kind: str | None = None,
    run: str | None = None,
    exact_run: bool = False,
    last: int | None = None,
) -> list[JournalEvent]:
    """The journal's events, oldest first: of ``kind``, naming a run whose id starts with
    ``run`` (is ``run``, with ``exact_run``), the ``last`` N of them. Only ``read`` is
    used, so any backend answers it."""
    if last is not None and last < 1:
        raise ConfigError(f"last must be at least 1; got {last}.")
    events = journal.read(kind)
    if run is not None:
        events = [
            e
            for e in events
            if e.run_id is not None and (e.run_id == run if exact_run else e.run_id.startswith(run))
        ]
    return events if last is None else events[-last:]


def run_of_source(source: str) -> str | None:
    """The run id in a risk event's ``source`` (``backtest:<run id>/<folder>``), else None."""
    kind, _, rest = source.partition(":")
    if kind != "backtest" or not rest:
        return None
    return rest.split("/", 1)[0] or None


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "-" if value is None else str(value)


def _clip(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
