"""The SQL journal's tables, as SQLAlchemy 2.0 declarative models.

One live or paper session (``sessions``) runs iterations, one per closed bar per symbol
(``iterations``: the bar, its time and the hash of the features computed from it). Each
iteration records every ensemble member's output (``member_outputs``) and one decision
with its reasons (``decisions``); a decision that trades writes order intents
(``order_intents``, one row per deterministic client order id, unique, with the status
the broker gave it) *before* the broker is called. Fills (``fills``, unique on the
broker's fill id), position snapshots (``positions``), events (``events``: halts,
unlocks, kill switch, denials, broker errors) and a small key/value store (``state``:
kill switch, halt, rate-limit buckets, start-of-day equity) complete it.

Times are stored as naive UTC and read back as aware UTC (:class:`UTCDateTime`), so
SQLite and PostgreSQL give the same values. The schema is created and changed only by
the Alembic migrations in ``migrations/versions``; these models are what the code reads
and writes, and a test checks the migrated schema matches them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "Decision",
    "Event",
    "Fill",
    "Iteration",
    "LiveSession",
    "MemberOutput",
    "OrderIntentRow",
    "PositionSnapshot",
    "StateEntry",
    "UTCDateTime",
]

# Constraint names are fixed so that later migrations can name what they alter.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """A timestamp stored as naive UTC and read back as timezone-aware UTC.

    A naive value handed in is taken to be UTC already; an aware one is converted.
    """

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the journal's tables (one MetaData, fixed constraint names)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class LiveSession(Base):
    """One ``moola live run``: its mode, resolved config (and hash), start and end."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(128))
    moola_version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class Iteration(Base):
    """One closed bar of one symbol seen by a session: the inputs of a decision."""

    __tablename__ = "iterations"
    __table_args__ = (UniqueConstraint("session_id", "symbol", "bar_time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(64))
    bar_time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    feature_hash: Mapped[str] = mapped_column(String(128))
    bar: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MemberOutput(Base):
    """One ensemble member's output for an iteration (``value`` None when it gave none)."""

    __tablename__ = "member_outputs"
    __table_args__ = (UniqueConstraint("iteration_id", "member"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    iteration_id: Mapped[int] = mapped_column(ForeignKey("iterations.id"), index=True)
    member: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    value: Mapped[float | None] = mapped_column(Double, nullable=True)
    stale: Mapped[bool] = mapped_column(Boolean)
    weight: Mapped[float | None] = mapped_column(Double, nullable=True)


class Decision(Base):
    """What an iteration decided and why (``reasons``); ``detail`` keeps the rest
    (ensemble weights used, members missing, ...)."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    iteration_id: Mapped[int] = mapped_column(ForeignKey("iterations.id"), index=True)
    probability: Mapped[float | None] = mapped_column(Double, nullable=True)
    calibrated: Mapped[float | None] = mapped_column(Double, nullable=True)
    tier: Mapped[str | None] = mapped_column(String(16), nullable=True)
    signal: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    reasons: Mapped[list[str]] = mapped_column(JSON)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OrderIntentRow(Base):
    """An order the engine means to send, written before the broker is called.

    ``client_order_id`` is unique: an intent is never recorded (or sent) twice.
    """

    __tablename__ = "order_intents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(String(128), unique=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(8))
    qty: Mapped[float] = mapped_column(Double)
    order_type: Mapped[str] = mapped_column(String(16))
    limit_price: Mapped[float | None] = mapped_column(Double, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    broker_order_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Fill(Base):
    """One execution reported by the broker (unique on its fill id); ``qty`` is signed."""

    __tablename__ = "fills"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fill_id: Mapped[str] = mapped_column(String(128), unique=True)
    client_order_id: Mapped[str] = mapped_column(
        ForeignKey("order_intents.client_order_id"), index=True
    )
    symbol: Mapped[str] = mapped_column(String(64))
    qty: Mapped[float] = mapped_column(Double)
    price: Mapped[float] = mapped_column(Double)
    fee: Mapped[float] = mapped_column(Double)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PositionSnapshot(Base):
    """A session's position in one symbol and the account's equity and cash at ``at``."""

    __tablename__ = "positions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(64))
    qty: Mapped[float] = mapped_column(Double)
    avg_price: Mapped[float | None] = mapped_column(Double, nullable=True)
    equity: Mapped[float] = mapped_column(Double)
    cash: Mapped[float] = mapped_column(Double)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class Event(Base):
    """Something that happened to a session (or, with no session, to the journal)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("sessions.id"), nullable=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class StateEntry(Base):
    """One JSON value the engine must find again after a restart."""

    __tablename__ = "state"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
