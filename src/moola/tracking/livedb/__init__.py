"""The SQL journal of paper and live sessions (issue 18): SQLAlchemy models, Alembic
migrations run on open, and ``LiveJournal``, whose every write is one committed
transaction and whose every failure is a ``JournalError`` (send nothing).

Import it from here: ``from moola.tracking.livedb import LiveJournal, journal_url``.
``LiveJournal.session_record(session_id)`` reads one session whole as typed frozen
values (``SessionRecord`` and the records it holds).
"""

from moola.tracking.livedb.records import (
    DecisionRecord,
    FillRecord,
    IntentRecord,
    IterationRecord,
    MemberRecord,
    PositionRecord,
    SessionInfo,
    SessionRecord,
)
from moola.tracking.livedb.store import (
    HALT_KEY,
    IN_FLIGHT_STATUSES,
    INTENT_STATUSES,
    KILL_SWITCH_KEY,
    MIGRATIONS_DIR,
    MODES,
    SCHEMA_HEAD,
    LiveJournal,
    UnknownSession,
    journal_url,
)

__all__ = [
    "HALT_KEY",
    "INTENT_STATUSES",
    "IN_FLIGHT_STATUSES",
    "KILL_SWITCH_KEY",
    "MIGRATIONS_DIR",
    "MODES",
    "SCHEMA_HEAD",
    "DecisionRecord",
    "FillRecord",
    "IntentRecord",
    "IterationRecord",
    "LiveJournal",
    "MemberRecord",
    "PositionRecord",
    "SessionInfo",
    "SessionRecord",
    "UnknownSession",
    "journal_url",
]
