"""Typed, frozen values of what the live journal holds of one session
(:meth:`LiveJournal.session_record`): what parity replays and what a restart rebuilds
from, read in one transaction so the parts agree with one another.

Each record is a frozen dataclass whose fields are the table's columns (times aware
UTC, JSON columns as plain dicts and lists). A record is also a read-only mapping of
its fields (``record["symbol"]``, ``record.get("tier")``, ``dict(record)``), so code
written against the journal's rows reads it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

__all__ = [
    "DecisionRecord",
    "FillRecord",
    "IntentRecord",
    "IterationRecord",
    "MemberRecord",
    "PositionRecord",
    "SessionInfo",
    "SessionRecord",
]


class _Fields(Mapping[str, Any]):
    """A dataclass read as a mapping of its fields (read-only, like the dataclass)."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self))  # type: ignore[arg-type]


@dataclass(frozen=True, eq=True)
class SessionInfo(_Fields):
    """The session's row: ``config`` is the resolved config it was started with."""

    id: str
    mode: str
    config: dict[str, Any]
    config_hash: str
    moola_version: str
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None


@dataclass(frozen=True, eq=True)
class MemberRecord(_Fields):
    """One ensemble member's output for an iteration (``value`` None when it gave none)."""

    id: int
    iteration_id: int
    member: str
    run_id: str | None
    value: float | None
    stale: bool
    weight: float | None


@dataclass(frozen=True, eq=True)
class DecisionRecord(_Fields):
    """What an iteration decided and why."""

    id: int
    iteration_id: int
    probability: float | None
    calibrated: float | None
    tier: str | None
    signal: int
    action: str
    reasons: tuple[str, ...]
    detail: dict[str, Any]
    decided_at: datetime


@dataclass(frozen=True, eq=True)
class IntentRecord(_Fields):
    """An order intent and what became of it (``status``)."""

    id: int
    client_order_id: str
    decision_id: int
    session_id: str
    symbol: str
    side: str
    qty: float
    order_type: str
    limit_price: float | None
    decided_at: datetime | None
    status: str
    broker_order_id: str | None
    detail: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, eq=True)
class IterationRecord(_Fields):
    """One closed bar of one symbol the session saw, with what it led to: the members'
    outputs, the decision (None only if it was never recorded) and its order intents."""

    id: int
    session_id: str
    symbol: str
    bar_time: datetime
    feature_hash: str
    bar: dict[str, Any]
    recorded_at: datetime
    members: tuple[MemberRecord, ...] = ()
    decision: DecisionRecord | None = None
    intents: tuple[IntentRecord, ...] = ()


@dataclass(frozen=True, eq=True)
class FillRecord(_Fields):
    """One execution of one of the session's intents (``qty`` signed)."""

    id: int
    fill_id: str
    client_order_id: str
    symbol: str
    qty: float
    price: float
    fee: float
    time: datetime
    recorded_at: datetime


@dataclass(frozen=True, eq=True)
class PositionRecord(_Fields):
    """A position snapshot: the session's position in ``symbol``, equity and cash at ``at``."""

    id: int
    session_id: str
    symbol: str
    qty: float
    avg_price: float | None
    equity: float
    cash: float
    at: datetime


@dataclass(frozen=True, eq=True)
class SessionRecord(_Fields):
    """Everything the journal holds of one session, read in one transaction.

    ``iterations``, ``fills`` (of the session's intents) and ``positions`` are in the
    order recorded; ``state`` is the journal's key/value state at that moment (engine
    state, kill switch, halt: it is the journal's, shared by its sessions).
    """

    session: SessionInfo
    iterations: tuple[IterationRecord, ...] = ()
    fills: tuple[FillRecord, ...] = ()
    positions: tuple[PositionRecord, ...] = ()
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def intents(self) -> tuple[IntentRecord, ...]:
        """Every intent of the session, in the order recorded."""
        return tuple(sorted((i for it in self.iterations for i in it.intents), key=lambda i: i.id))
