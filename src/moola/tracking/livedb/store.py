"""``LiveJournal``: the SQL journal of paper and live sessions (SQLAlchemy + Alembic).

Decisions that move money are written here *before* anything acts on them: every write
method is one committed transaction, durable when it returns, and any database failure
(the file removed or made read-only, the server gone, a constraint broken, a schema
newer than this moola) raises ``JournalError`` with nothing half-written, so the caller
sends nothing (fail closed).

Where the journal lives (:func:`journal_url`): a SQLite file under the data root by
default, ``<root>/live/<mode>.db``, paper and live in separate files; PostgreSQL (or
another SQLite file) when the environment names one: ``DB_URL`` for live sessions,
``DB_URL_PAPER`` for paper sessions. ``DB_URL`` is never used for paper sessions, so a
paper run can not write into the live database; the two may not name the same database.
``postgresql://`` and ``postgres://`` URLs are read as ``postgresql+psycopg://``.

SQLite is opened with WAL and ``synchronous=FULL`` (a committed row survives a kill or a
power cut) and ``BEGIN IMMEDIATE`` for writes (the write lock is taken before the first
read, so a check and its insert can not interleave with another writer). One connection
is held for the journal's life (a new connection per transaction cost more than the
fsync); every transaction first checks that the file is still the one opened (removed,
replaced or, for writes, made read-only: ``JournalError``), since a held connection
would otherwise go on writing into an unlinked file. A reconnection after an error
opens the file with ``mode=rw``: a removed file is an error, never a new empty database.

The loop's hot path (``record_steps``: a bar time's decisions of every symbol in one
transaction; ``mark_intent``, ``get_state``, ``intent_status``) is written with
SQLAlchemy Core statements, not the ORM unit of work. ``get_state`` keeps
the values it read or wrote and, on SQLite, reads again only when ``PRAGMA
data_version`` says another connection (another process: ``moola live kill``) has
committed since: a check of a few microseconds before every order instead of a read
transaction. On PostgreSQL every ``get_state`` reads the row.

The schema is created and upgraded by the Alembic migrations kept in this package
(``migrations/``, run programmatically in the journal's own transaction; no alembic.ini).
A database at a revision this moola does not know was written by a newer moola and is
refused, naming both revisions.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import pandas as pd
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import (
    Connection,
    Engine,
    Text,
    cast,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.pool import StaticPool

import moola
from moola.core.crashpoints import crash_point
from moola.core.errors import ConfigError, JournalError
from moola.tracking.livedb.models import (
    Decision,
    Event,
    Fill,
    Iteration,
    LiveSession,
    MemberOutput,
    OrderIntentRow,
    PositionSnapshot,
    StateEntry,
)
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

__all__ = [
    "HALT_KEY",
    "INTENT_STATUSES",
    "IN_FLIGHT_STATUSES",
    "KILL_SWITCH_KEY",
    "MIGRATIONS_DIR",
    "MODES",
    "SCHEMA_HEAD",
    "LiveJournal",
    "UnknownSession",
    "journal_url",
]

#: The Alembic head revision this moola writes (a test checks it is the scripts' head).
SCHEMA_HEAD = "0001"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MODES = ("paper", "live")
#: Every status an order intent can have; "pending" only when recorded.
INTENT_STATUSES = (
    "pending",
    "sent",
    "acknowledged",
    "partially_filled",
    "filled",
    "rejected",
    "cancelled",
    "expired",
)
#: Intents the broker may or may not hold yet: recorded (pending) or handed over (sent)
#: without an answer. A restart reconciles these with the broker's open orders.
IN_FLIGHT_STATUSES = ("pending", "sent")
#: State keys the engine and the CLI share (``status()`` reports them by name).
KILL_SWITCH_KEY = "kill_switch"
HALT_KEY = "halt"

_SIDES = ("buy", "sell")
_ORDER_TYPES = ("market", "limit")
_SIGNALS = (-1, 0, 1)
_BUSY_TIMEOUT_S = 10.0
_PG_MIGRATION_LOCK = 18_0001  # pg_advisory_xact_lock key: one migrator at a time

_T = TypeVar("_T")


def journal_url(
    root: Path | str, mode: Literal["paper", "live"], env: Mapping[str, str] | None = None
) -> str:
    """The database URL of the ``mode`` journal under data root ``root``.

    Live: ``DB_URL`` from ``env`` (default ``os.environ``) when set. Paper:
    ``DB_URL_PAPER`` when set (``DB_URL`` is never used for paper, and the two may not be
    the same database). Otherwise the SQLite file ``<root>/live/<mode>.db``.
    """
    env = os.environ if env is None else env
    if mode not in MODES:
        raise ConfigError(
            f"mode {mode!r} is not a journal mode: use one of {', '.join(MODES)}.", param="mode"
        )
    variable = "DB_URL" if mode == "live" else "DB_URL_PAPER"
    given = (env.get(variable) or "").strip()
    if not given:
        path = (Path(root).expanduser() / "live" / f"{mode}.db").absolute()
        return URL.create("sqlite+pysqlite", database=str(path)).render_as_string()
    url = _normalise_url(given, variable)
    live = (env.get("DB_URL") or "").strip()
    if mode == "paper" and live and _normalise_url(live, "DB_URL") == url:
        raise ConfigError(
            f"DB_URL_PAPER names the same database as DB_URL "
            f"({url.render_as_string(hide_password=True)}): paper and live sessions are "
            "journaled in separate databases; point DB_URL_PAPER at another database "
            "or unset it to use the SQLite file under the data root.",
            param="DB_URL_PAPER",
        )
    return url.render_as_string(hide_password=False)


def _normalise_url(url: str | URL, param: str) -> URL:
    """``url`` parsed, with PostgreSQL read as psycopg 3; anything but SQLite or
    PostgreSQL refused."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"{param} is not a database URL: use sqlite:///PATH or "
            "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE.",
            param=param,
        ) from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return parsed.set(drivername="sqlite+pysqlite")
    raise ConfigError(
        f"{param} uses the database driver {parsed.drivername!r}: the live journal speaks "
        "sqlite (sqlite:///PATH) and PostgreSQL through psycopg 3 "
        "(postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE).",
        param=param,
    )


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _reason(exc: BaseException) -> str:
    """The first line of what the driver (or SQLAlchemy, Alembic, the OS) said."""
    original = getattr(exc, "orig", None)
    message = str(original if original is not None else exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def _utc(value: Any, param: str) -> datetime:
    """``value`` (datetime, pandas Timestamp, ISO string) as an aware UTC datetime; a naive
    value is taken to be UTC."""
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{param} {value!r} is not a time: give a datetime or an ISO 8601 string.",
            param=param,
        ) from exc
    if pd.isna(stamp):
        raise ConfigError(f"{param} is missing (NaT): give a time.", param=param)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


def _number(value: Any, param: str, *, positive: bool = False, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{param} {value!r} is not a number.", param=param) from exc
    if not math.isfinite(number) or (positive and number <= 0):
        valid = "a finite number above 0" if positive else "a finite number"
        raise ConfigError(f"{param} is {number!r}: give {valid}.", param=param)
    return number


def _text(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{param} {value!r} must be a non-empty string.", param=param)
    return value


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: numpy scalars as Python numbers, times as ISO strings,
    mappings and sequences as dicts and lists, NaN and infinities as null."""
    try:  # plain JSON data already (the common case): one C round trip, not a recursion
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        pass
    return _jsonable_slow(value)


def _jsonable_slow(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _jsonable_slow(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable_slow(item) for item in value]
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return str(value)


def _check_keys(record: Mapping[str, Any], what: str, required: set, allowed: set) -> None:
    if not isinstance(record, Mapping):
        raise ConfigError(f"{what} must be a mapping, not {type(record).__name__}.", param=what)
    missing = sorted(required - set(record))
    unknown = sorted(set(record) - allowed)
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown {', '.join(unknown)}")
        raise ConfigError(
            f"{what} has {'; '.join(problems)}: it takes {', '.join(sorted(allowed))}.",
            param=what,
        )


def _row(obj: Any) -> dict[str, Any]:
    return {column.key: getattr(obj, column.key) for column in obj.__table__.columns}


@dataclass(frozen=True)
class _StepWork:
    """One checked step of ``record_steps``: ``write(conn) -> (iteration id, decision
    id)`` inside the transaction, and the client order ids of its intents."""

    write: Callable[[Connection], tuple[int, int]]
    intent_ids: list[Any]

    def __call__(self, conn: Connection) -> tuple[int, int]:
        return self.write(conn)


class UnknownSession(JournalError):
    """The journal holds no session of that id (``session_record``): the caller named one
    that is not there, not a journal that failed."""


class LiveJournal:
    """The SQL journal of one database (see the module docstring).

    ``url``: ``sqlite:///PATH`` or ``postgresql+psycopg://...`` (see :func:`journal_url`).
    ``migrate``: upgrade the schema to :data:`SCHEMA_HEAD` on open (default); without it, a
    database that is not at the head is refused. A database at a revision this moola does
    not know (written by a newer moola) is always refused.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self._url = _normalise_url(url, "url")
        self.url = self._url.render_as_string(hide_password=True)
        self.path: Path | None = None  # the SQLite file, when it is one
        self._raw: Any = None  # the held DBAPI connection (SQLite), for data_version
        self._state_cache: dict[str, Any] = {}
        self._state_version: int | None = None
        self._identity: tuple[int, int] | None = None
        self._creating = True
        self._engine = self._make_engine()
        self._writer = self._engine.execution_options(moola_write=True)
        try:
            self.schema_revision = self._open(migrate)
        except BaseException:
            self._engine.dispose()
            raise
        self._creating = False
        # The one SQLite connection (StaticPool) stays open: no connect and PRAGMAs per
        # transaction, and SQLite does not checkpoint and delete the WAL after each one.
        # Its DBAPI handle answers PRAGMA data_version (get_state's cache).
        if self.path is not None:
            try:
                with self._guard("be opened"):
                    self._raw = self._engine.raw_connection()
                    stat = os.stat(self.path)
            except BaseException:
                self.close()
                raise
            self._identity = (stat.st_dev, stat.st_ino)

    def __repr__(self) -> str:
        return f"LiveJournal({self.url!r})"

    def close(self) -> None:
        """Close the connections (the journal can not be used afterwards)."""
        self._raw = None  # the pool's own connection: closed by dispose
        self._state_cache.clear()
        self._engine.dispose()

    def __enter__(self) -> LiveJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- engine and schema

    def _make_engine(self) -> Engine:
        if self._url.get_backend_name() == "postgresql":
            engine = create_engine(
                self._url, pool_pre_ping=True, connect_args={"connect_timeout": 10}
            )
            return engine
        database = self._url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            raise ConfigError(
                f"url {self.url!r} does not name a SQLite file: the journal must outlive "
                "the process; use sqlite:///PATH.",
                param="url",
            )
        path = Path(database).absolute()
        self.path = path
        with self._guard("create its folder"):
            path.parent.mkdir(parents=True, exist_ok=True)

        def connect() -> sqlite3.Connection:
            # rwc only while opening: afterwards a missing file is an error, not a new DB.
            mode = "rwc" if self._creating else "rw"
            connection = sqlite3.connect(
                f"file:{quote(str(path))}?mode={mode}",
                uri=True,
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                if self._creating:
                    connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=FULL")
                connection.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error:
                connection.close()
                raise
            return connection

        engine = create_engine("sqlite+pysqlite://", creator=connect, poolclass=StaticPool)

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # The driver's own transaction handling is off (isolation_level=None): begin
            # here, so DDL is transactional too and writers take the lock up front.
            write = conn.get_execution_options().get("moola_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def _open(self, migrate: bool) -> str:
        known = {script.revision for script in _scripts().walk_revisions()}
        with self._guard("be opened"), self._writer.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            heads = MigrationContext.configure(conn).get_current_heads()
            unknown = [head for head in heads if head not in known]
            if unknown or len(heads) > 1:
                raise JournalError(
                    f"The live journal {self.url} is at schema revision "
                    f"{', '.join(heads)}, which this moola (schema {SCHEMA_HEAD}) does not "
                    "know: it was written by a newer moola. Upgrade moola to use it; "
                    "nothing was sent."
                )
            current = heads[0] if heads else None
            if current == SCHEMA_HEAD:
                return current
            if not migrate:
                raise JournalError(
                    f"The live journal {self.url} is at schema revision "
                    f"{current or 'none (empty)'}, this moola needs {SCHEMA_HEAD}: open it "
                    "with migrate=True to upgrade it; nothing was sent."
                )
            config = _alembic_config()
            config.attributes["connection"] = conn
            crash_point("livedb.migrate_begin")
            command.upgrade(config, SCHEMA_HEAD)
            crash_point("livedb.migrate_applied")
            return SCHEMA_HEAD

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn any database, migration or file-system failure into ``JournalError``."""
        try:
            yield
        except (JournalError, ConfigError):
            raise
        except (SQLAlchemyError, CommandError, sqlite3.Error, OSError) as exc:
            raise JournalError(
                f"The live journal {self.url} could not {action}: {_reason(exc)}. "
                "Nothing was written; send nothing until the journal works again."
            ) from exc

    def _check_file(self, action: str, *, write: bool = True) -> None:
        """Refuse to write (or, ``write`` False, to read) when the SQLite file was removed
        or replaced (for a write: or made read-only) since it was opened. SQLite alone
        would not notice: the held connection keeps the descriptors of the file it
        opened, so a write would land in an unlinked or read-only file."""
        assert self.path is not None
        problem = None
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            problem = "its file was removed"
        except OSError as exc:
            problem = f"its file can not be read ({exc.strerror})"
        else:
            if (stat.st_dev, stat.st_ino) != self._identity:
                problem = "its file was replaced by another one"
            elif write and not os.access(self.path, os.W_OK):
                problem = "its file is read-only"
        if problem is not None:
            raise JournalError(
                f"The live journal {self.url} could not {action}: {problem}. "
                + (
                    "Nothing was written; send nothing until the journal works again."
                    if write
                    else "Nothing was read; send nothing until the journal works again."
                )
            )

    def _write(self, action: str, work: Callable[[OrmSession], _T]) -> _T:
        """Run ``work`` in one write transaction, committed (durable) when this returns."""
        if self.path is not None:
            self._check_file(action)
        with self._guard(action), OrmSession(self._writer, expire_on_commit=False) as session:
            with session.begin():
                result = work(session)
            return result

    def _read(self, action: str, work: Callable[[OrmSession], _T]) -> _T:
        if self.path is not None:
            self._check_file(action, write=False)
        with (
            self._guard(action),
            OrmSession(self._engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            return work(session)

    def _write_core(self, action: str, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` on a Core connection in one write transaction, committed (durable)
        when this returns: the hot path, without the ORM's unit of work."""
        if self.path is not None:
            self._check_file(action)
        try:
            with self._guard(action), self._writer.begin() as conn:
                return work(conn)
        except BaseException:
            self._state_cache.clear()  # it may hold a value that was rolled back
            raise

    def _read_core(self, action: str, work: Callable[[Connection], _T]) -> _T:
        if self.path is not None:
            self._check_file(action, write=False)
        with self._guard(action), self._engine.begin() as conn:
            return work(conn)

    def _data_version(self) -> int | None:
        """SQLite's ``PRAGMA data_version`` on the held connection: it changes when
        another connection commits. None on PostgreSQL (no such counter: read again)."""
        if self._raw is None:
            return None
        with self._guard("read the journal's change counter"):
            return int(self._raw.driver_connection.execute("PRAGMA data_version").fetchone()[0])

    # ------------------------------------------------------------------ lookups in a tx

    @staticmethod
    def _session(session: OrmSession, session_id: str, *, open_only: bool) -> LiveSession:
        row = session.get(LiveSession, session_id)
        if row is None:
            raise JournalError(f"The live journal has no session {session_id!r}.")
        if open_only and row.ended_at is not None:
            raise JournalError(
                f"Session {session_id!r} ended at {row.ended_at.isoformat()} "
                f"({row.end_reason}): nothing more is recorded in it."
            )
        return row

    # -------------------------------------------------------------------------- writes

    def start_session(self, mode: str, config: Mapping[str, Any], config_hash: str) -> str:
        """Record a new session with its resolved ``config``; returns its id."""
        if mode not in MODES:
            raise ConfigError(
                f"mode {mode!r} is not a session mode: use one of {', '.join(MODES)}.",
                param="mode",
            )
        _text(config_hash, "config_hash")
        session_id = uuid.uuid4().hex
        row = LiveSession(
            id=session_id,
            mode=mode,
            config=_jsonable(dict(config)),
            config_hash=config_hash,
            moola_version=moola.__version__,
            started_at=datetime.now(UTC),
        )
        self._write("record the session start", lambda s: s.add(row))
        return session_id

    def end_session(self, session_id: str, reason: str) -> None:
        """Record the end of a session and why; a session ends once (a second call keeps
        the first end)."""

        def work(session: OrmSession) -> None:
            row = self._session(session, session_id, open_only=False)
            if row.ended_at is None:
                row.ended_at = datetime.now(UTC)
                row.end_reason = str(reason)

        self._write("record the session end", work)

    def record_iteration(
        self,
        session_id: str,
        symbol: str,
        bar_time: Any,
        feature_hash: str,
        bar: Mapping[str, Any],
    ) -> int:
        """Record the inputs of one decision (one closed bar of ``symbol``); returns the
        iteration id. A session sees each (symbol, bar time) once."""
        work = self._iteration_work(session_id, symbol, bar_time, feature_hash, bar)
        return self._write_core("record the iteration", work)

    def record_members(self, iteration_id: int, outputs: Sequence[Mapping[str, Any]]) -> None:
        """Record every ensemble member's output for an iteration, all or none:
        each ``{"member", "run_id", "value", "stale", "weight"}`` (value None when the
        member gave none)."""
        work = self._members_work(outputs)
        self._write_core("record the member outputs", lambda c: work(c, iteration_id))

    def record_decision(self, iteration_id: int, decision: Mapping[str, Any]) -> int:
        """Record what an iteration decided and why; returns the decision id.

        ``{"probability", "calibrated", "tier", "signal" (-1/0/1), "action", "reasons"}``;
        any other key (the ensemble's weights used, members missing, ...) is kept in the
        decision's ``detail``.
        """
        work = self._decision_work(decision)
        return self._write_core("record the decision", lambda c: work(c, iteration_id))

    def record_intent(self, decision_id: int, intent: Mapping[str, Any]) -> None:
        """Record an order intent (status "pending") before the broker is called.

        ``{"client_order_id", "symbol", "side", "qty", "order_type", "limit_price"}`` (and
        optionally ``decided_at``). A client order id recorded before is refused with
        ``JournalError``: one id is never two intents, so it is never sent twice.
        """
        work = self._intent_work(intent)
        self._write_core("record the order intent", lambda c: work(c, decision_id))

    def record_step(
        self,
        session_id: str,
        symbol: str,
        bar_time: Any,
        feature_hash: str,
        bar: Mapping[str, Any],
        outputs: Sequence[Mapping[str, Any]],
        decision: Mapping[str, Any],
        intents: Sequence[Mapping[str, Any]] = (),
        state: Mapping[str, Any] | None = None,
        *,
        fills: Sequence[Mapping[str, Any]] = (),
        marks: Sequence[Mapping[str, Any]] = (),
        positions: Sequence[Mapping[str, Any]] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> tuple[int, int]:
        """Record one whole iteration in ONE transaction: its inputs, the members'
        outputs, the decision and its order intents (each as in the methods above), and
        the ``state`` entries given (key -> JSON value, as :meth:`set_state`: e.g. the
        engine's "this bar is decided"). Returns (iteration id, decision id). All or
        nothing, and one durable commit (one fsync) instead of four or more, and no
        moment where the decision is recorded but the state saying so is not.

        What else happened at this bar goes in the same transaction, written first:
        ``fills`` (as :meth:`record_fill`, each with its ``client_order_id``; the intent is
        marked filled), ``marks`` (as :meth:`mark_intent`: ``{"client_order_id",
        "status", "broker_order_id", "detail"}``, after the fills, so a final status
        such as ``expired`` is the one kept), ``positions`` (as :meth:`record_position`)
        and ``events`` ((kind, payload), as :meth:`record_event`; a payload whose
        ``decision_id`` is None gets this step's). :meth:`record_steps` with one step.
        """
        step = {
            "symbol": symbol,
            "bar_time": bar_time,
            "feature_hash": feature_hash,
            "bar": bar,
            "outputs": outputs,
            "decision": decision,
            "intents": intents,
            "fills": fills,
            "marks": marks,
            "positions": positions,
            "events": events,
        }
        return self.record_steps(session_id, [step], state)[0]

    _STEP_KEYS = frozenset(
        {
            "symbol",
            "bar_time",
            "feature_hash",
            "bar",
            "outputs",
            "decision",
            "intents",
            "fills",
            "marks",
            "positions",
            "events",
        }
    )

    def record_steps(
        self,
        session_id: str,
        steps: Sequence[Mapping[str, Any]],
        state: Mapping[str, Any] | None = None,
    ) -> list[tuple[int, int]]:
        """Record several iterations -- the symbols' bars of one bar time, decided as a
        group -- in ONE transaction and one durable commit: the group is journaled all or
        nothing, so a restart finds either every decision of the group with the state
        saying so, or none of them. Returns (iteration id, decision id) per step.

        Each step is a mapping of :meth:`record_step`'s arguments: ``symbol``,
        ``bar_time``, ``feature_hash``, ``bar``, ``outputs``, ``decision``, and optionally
        ``intents``, ``fills``, ``marks``, ``positions``, ``events``. Steps are written in
        order, each as :meth:`record_step` writes one (its fills, marks and positions
        first), so a step's mark may name an intent an earlier step of the group
        recorded. ``state`` (key -> JSON value) is written once, after every step. Every
        input is checked (``ConfigError`` naming ``steps[i]``'s field) before the
        transaction begins.
        """
        _text(session_id, "session_id")
        if isinstance(steps, Mapping) or not isinstance(steps, Sequence) or not steps:
            raise ConfigError(
                "steps must be a non-empty list of steps (mappings of record_step's arguments).",
                param="steps",
            )
        works = [self._step_work(session_id, step, f"steps[{k}]") for k, step in enumerate(steps)]
        ids = [i for work in works for i in work.intent_ids]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"intents name a client order id twice: {ids}.", param="intents")
        now = datetime.now(UTC)
        state_values = [
            (_text(key, "state key"), _jsonable(value)) for key, value in (state or {}).items()
        ]

        def work(conn: Connection) -> list[tuple[int, int]]:
            _open_session(conn, session_id)  # once: each step's iteration relies on it
            out = [step_work(conn) for step_work in works]
            for key, value in state_values:
                self._put_state(conn, key, value, now)
            if state_values:
                crash_point("livedb.state_before_commit")
            crash_point("livedb.step_before_commit")
            return out

        return self._write_core("record the iteration", work)

    def _step_work(self, session_id: str, step: Mapping[str, Any], what: str) -> _StepWork:
        """One step of :meth:`record_steps`, checked; what writes it in a transaction."""
        _check_keys(
            step,
            what,
            {"symbol", "bar_time", "feature_hash", "bar", "outputs", "decision"},
            set(self._STEP_KEYS),
        )
        intents = step.get("intents") or ()
        fills = step.get("fills") or ()
        marks = step.get("marks") or ()
        positions = step.get("positions") or ()
        events = step.get("events") or ()
        iteration_work = self._iteration_work(
            session_id, step["symbol"], step["bar_time"], step["feature_hash"], step["bar"]
        )
        members_work = self._members_work(step["outputs"])
        decision_work = self._decision_work(step["decision"])
        intent_works = [
            self._intent_work(intent, f"intents[{i}]") for i, intent in enumerate(intents)
        ]
        fill_values = [
            _fill_values(fill.get("client_order_id"), fill, f"fills[{i}]")
            for i, fill in enumerate(fills)
        ]
        mark_values = [_mark_values(mark, f"marks[{i}]") for i, mark in enumerate(marks)]
        position_values = [
            _position_values(session_id, p, f"positions[{i}]") for i, p in enumerate(positions)
        ]
        event_values = [_event_values(session_id, kind, payload) for kind, payload in events]

        def work(conn: Connection) -> tuple[int, int]:
            for values in fill_values:
                _insert_fill(conn, values, mark=True)
            if fill_values:
                crash_point("livedb.fill_before_commit")
            for values in mark_values:  # after the fills: a final status stays final
                _mark(conn, **values)
            if position_values:
                conn.execute(insert(_POSITIONS), position_values)
            # the parents are written here, so their checks (exists, session open) are done
            iteration_id = iteration_work(conn, checked=True)
            members_work(conn, iteration_id, checked=True)
            decision_id = decision_work(conn, iteration_id, checked=True)
            for intent_work in intent_works:
                intent_work(conn, decision_id, checked_session=session_id)
            for values in event_values:
                payload = values["payload"]
                if "decision_id" in payload and payload["decision_id"] is None:
                    values = values | {"payload": payload | {"decision_id": decision_id}}
                conn.execute(insert(_EVENTS), values)
            return iteration_id, decision_id

        return _StepWork(work, [self._intent_id(intent) for intent in intents])

    # Each _*_work checks its input (ConfigError naming the field) before any transaction
    # starts, and returns what writes it inside one (Core statements on a Connection).

    def _iteration_work(
        self,
        session_id: str,
        symbol: str,
        bar_time: Any,
        feature_hash: str,
        bar: Mapping[str, Any],
    ) -> Callable[..., int]:
        _text(symbol, "symbol")
        _text(feature_hash, "feature_hash")
        when = _utc(bar_time, "bar_time")
        if not isinstance(bar, Mapping):
            raise ConfigError(f"bar must be a mapping, not {type(bar).__name__}.", param="bar")
        values = _jsonable(dict(bar))

        def work(conn: Connection, checked: bool = False) -> int:
            if not checked:  # record_steps checks the session once for its group
                _open_session(conn, session_id)
            try:  # the unique (session, symbol, bar time) says "seen": no query before
                result = conn.execute(
                    insert(_ITERATIONS),
                    {
                        "session_id": session_id,
                        "symbol": symbol,
                        "bar_time": when,
                        "feature_hash": feature_hash,
                        "bar": values,
                        "recorded_at": datetime.now(UTC),
                    },
                )
            except IntegrityError as exc:  # the session exists (checked): it is the bar
                raise JournalError(
                    f"Session {session_id!r} recorded the {symbol} bar at {when.isoformat()} "
                    "before: a bar is decided on once; nothing was written."
                ) from exc
            return int(result.inserted_primary_key[0])

        return work

    def _members_work(self, outputs: Sequence[Mapping[str, Any]]) -> Callable[..., None]:
        values = []
        for index, output in enumerate(outputs):
            what = f"outputs[{index}]"
            _check_keys(
                output,
                what,
                {"member", "value", "stale"},
                {"member", "run_id", "value", "stale", "weight"},
            )
            values.append(
                {
                    "member": _text(output["member"], f"{what}.member"),
                    "run_id": output.get("run_id"),
                    "value": _number(output["value"], f"{what}.value", optional=True),
                    "stale": bool(output["stale"]),
                    "weight": _number(output.get("weight"), f"{what}.weight", optional=True),
                }
            )
        names = [value["member"] for value in values]
        if len(set(names)) != len(names):
            raise ConfigError(f"outputs name a member twice: {names}.", param="outputs")

        def work(conn: Connection, iteration_id: int, checked: bool = False) -> None:
            if not checked and not _exists(conn, _ITERATIONS, iteration_id):
                raise JournalError(f"The live journal has no iteration {iteration_id!r}.")
            if values:
                conn.execute(
                    insert(_MEMBERS), [value | {"iteration_id": iteration_id} for value in values]
                )

        return work

    def _decision_work(self, decision: Mapping[str, Any]) -> Callable[..., int]:
        if not isinstance(decision, Mapping):
            raise ConfigError("decision must be a mapping.", param="decision")
        missing = sorted({"signal", "action"} - set(decision))
        if missing:
            raise ConfigError(
                f"decision has no {', '.join(missing)}: it needs signal (-1, 0 or 1) and "
                "action, and takes probability, calibrated, tier, reasons.",
                param="decision",
            )
        signal = decision["signal"]
        if isinstance(signal, bool) or signal not in _SIGNALS:
            raise ConfigError(
                f"decision.signal is {signal!r}: use -1, 0 or 1.", param="decision.signal"
            )
        reasons = decision.get("reasons") or []
        if isinstance(reasons, str) or not all(isinstance(r, str) for r in reasons):
            raise ConfigError(
                f"decision.reasons must be a list of strings, not {reasons!r}.",
                param="decision.reasons",
            )
        tier = decision.get("tier")
        known = {"probability", "calibrated", "tier", "signal", "action", "reasons"}
        values = {
            "probability": _number(
                decision.get("probability"), "decision.probability", optional=True
            ),
            "calibrated": _number(decision.get("calibrated"), "decision.calibrated", optional=True),
            "tier": None if tier is None else _text(tier, "decision.tier"),
            "signal": int(signal),
            "action": _text(decision["action"], "decision.action"),
            "reasons": list(reasons),
            "detail": _jsonable({k: v for k, v in decision.items() if k not in known}),
        }

        def work(conn: Connection, iteration_id: int, checked: bool = False) -> int:
            if not checked and not _exists(conn, _ITERATIONS, iteration_id):
                raise JournalError(f"The live journal has no iteration {iteration_id!r}.")
            result = conn.execute(
                insert(_DECISIONS),
                values | {"iteration_id": iteration_id, "decided_at": datetime.now(UTC)},
            )
            return int(result.inserted_primary_key[0])

        return work

    _INTENT_KEYS = frozenset(
        {"client_order_id", "symbol", "side", "qty", "order_type", "limit_price", "decided_at"}
    )

    @staticmethod
    def _intent_id(intent: Mapping[str, Any]) -> Any:
        return intent.get("client_order_id") if isinstance(intent, Mapping) else None

    def _intent_work(self, intent: Mapping[str, Any], what: str = "intent") -> Callable[..., None]:
        allowed = set(self._INTENT_KEYS)
        _check_keys(intent, what, allowed - {"limit_price", "decided_at"}, allowed)
        side, order_type = intent["side"], intent["order_type"]
        if side not in _SIDES:
            raise ConfigError(f"{what}.side is {side!r}: use buy or sell.", param=f"{what}.side")
        if order_type not in _ORDER_TYPES:
            raise ConfigError(
                f"{what}.order_type is {order_type!r}: use market or limit.",
                param=f"{what}.order_type",
            )
        limit_price = _number(
            intent.get("limit_price"), f"{what}.limit_price", positive=True, optional=True
        )
        if (order_type == "limit") != (limit_price is not None):
            raise ConfigError(
                f"{what}.limit_price is {limit_price!r} for a {order_type} order: a limit "
                "order needs one, a market order has none.",
                param=f"{what}.limit_price",
            )
        decided = intent.get("decided_at")
        values = {
            "client_order_id": _text(intent["client_order_id"], f"{what}.client_order_id"),
            "symbol": _text(intent["symbol"], f"{what}.symbol"),
            "side": side,
            "qty": _number(intent["qty"], f"{what}.qty", positive=True),
            "order_type": order_type,
            "limit_price": limit_price,
            "decided_at": None if decided is None else _utc(decided, f"{what}.decided_at"),
        }
        client_order_id = values["client_order_id"]

        def work(conn: Connection, decision_id: int, checked_session: str | None = None) -> None:
            before = conn.execute(
                select(_INTENTS.c.decision_id, _INTENTS.c.status).where(
                    _INTENTS.c.client_order_id == client_order_id
                )
            ).first()
            if before is not None:
                raise JournalError(
                    f"Client order id {client_order_id!r} was recorded before (decision "
                    f"{before.decision_id}, status {before.status}): an order intent is "
                    "recorded and sent once; nothing was written."
                )
            session_id = checked_session
            if session_id is None:
                session_id = conn.scalar(
                    select(_ITERATIONS.c.session_id)
                    .join(_DECISIONS, _DECISIONS.c.iteration_id == _ITERATIONS.c.id)
                    .where(_DECISIONS.c.id == decision_id)
                )
                if session_id is None:
                    raise JournalError(f"The live journal has no decision {decision_id!r}.")
                _open_session(conn, session_id)
            now = datetime.now(UTC)
            conn.execute(
                insert(_INTENTS),
                values
                | {
                    "decision_id": decision_id,
                    "session_id": session_id,
                    "status": "pending",
                    "broker_order_id": None,
                    "detail": "",
                    "created_at": now,
                    "updated_at": now,
                },
            )

        return work

    def mark_intent(
        self,
        client_order_id: str,
        status: str,
        broker_order_id: str | None = None,
        detail: str = "",
    ) -> None:
        """Record what became of an intent: sent, acknowledged, partially_filled, filled,
        rejected, cancelled or expired (each change is also an ``intent_status`` event)."""
        self.mark_intents(
            [
                {
                    "client_order_id": client_order_id,
                    "status": status,
                    "broker_order_id": broker_order_id,
                    "detail": detail,
                }
            ]
        )

    def mark_intents(self, marks: Sequence[Mapping[str, Any]]) -> None:
        """``mark_intent`` for several intents in ONE transaction (one durable commit), all
        or nothing: ``[{"client_order_id", "status", "broker_order_id"?, "detail"?}, ...]``.
        The engine journals a bar time's acks together after the group's submits."""
        if isinstance(marks, Mapping) or not isinstance(marks, Sequence):
            raise ConfigError(
                f"marks must be a list of status marks; got {type(marks).__name__}.",
                param="marks",
            )
        values = [_mark_values(mark, f"marks[{i}]") for i, mark in enumerate(marks)]
        if not values:
            return

        def work(conn: Connection) -> None:
            for one in values:
                _mark(conn, **one)
            crash_point("livedb.mark_before_commit")

        self._write_core("record the order status", work)

    def record_fill(self, client_order_id: str, fill: Mapping[str, Any]) -> None:
        """Record a fill of an intent: ``{"fill_id", "symbol", "qty" (signed), "price",
        "fee", "time"}``. Idempotent on the fill id: the same fill again is a no-op, a
        different fill under a known id is refused."""
        values = _fill_values(client_order_id, fill, "fill")
        self._write_core("record the fill", lambda conn: _insert_fill(conn, values, mark=False))

    def record_position(self, session_id: str, snapshot: Mapping[str, Any]) -> None:
        """Record a position snapshot: ``{"symbol", "qty", "avg_price", "equity", "cash",
        "at"}`` (avg_price may be None when flat)."""
        values = _position_values(session_id, snapshot, "snapshot")

        def work(conn: Connection) -> None:
            _known_session(conn, session_id)
            conn.execute(insert(_POSITIONS), values)

        self._write_core("record the position", work)

    def record_event(self, session_id: str | None, kind: str, payload: Mapping[str, Any]) -> None:
        """Record an event (halt, unlock with person and reason, kill on/off, denial, broker
        error, ...), of a session or (``session_id`` None) of the journal as a whole."""
        values = _event_values(session_id, kind, payload)

        def work(conn: Connection) -> None:
            if session_id is not None:
                _known_session(conn, session_id)
            conn.execute(insert(_EVENTS), values)

        self._write_core("record the event", work)

    def set_state(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` (kill switch, halt, rate-limit buckets,
        start-of-day equity), replacing the one before."""
        _text(key, "key")
        stored = _jsonable(value)
        now = datetime.now(UTC)
        self._write_core(
            f"store state {key!r}", lambda conn: self._put_state(conn, key, stored, now)
        )

    def _put_state(self, conn: Connection, key: str, value: Any, now: datetime) -> None:
        """Upsert one state entry (``value`` plain JSON data) and keep it in the state
        cache, as JSON text (cleared if the transaction fails: ``_write_core``)."""
        done = conn.execute(
            update(_STATE).where(_STATE.c.key == key).values(value=value, updated_at=now)
        )
        if done.rowcount == 0:
            conn.execute(insert(_STATE), {"key": key, "value": value, "updated_at": now})
        if self._raw is not None:
            self._state_cache[key] = json.dumps(value)

    # --------------------------------------------------------------------------- reads

    def get_state(self, key: str) -> Any | None:
        """The JSON value stored under ``key``, or None.

        On SQLite the value is kept and read again only when another connection has
        committed since (``PRAGMA data_version``): what this journal wrote itself it
        knows; what another process wrote (``moola live kill on``) is seen at the next
        call. Each call returns a copy of its own."""
        if self.path is not None:
            self._check_file(f"read state {key!r}", write=False)
        version = self._data_version()
        if version is not None:
            if version != self._state_version:
                self._state_cache.clear()
                self._state_version = version
            elif key in self._state_cache:
                return json.loads(self._state_cache[key])
        raw = self._read_core(
            f"read state {key!r}",
            lambda conn: conn.scalar(select(_STATE_TEXT).where(_STATE.c.key == key)),
        )
        value = self._state_value(key, raw)
        if version is not None:
            self._state_cache[key] = json.dumps(value)
        return value

    def _state_value(self, key: str, raw: str | None) -> Any:
        """The JSON text stored under ``key`` as its value; a row that is not JSON (written
        by hand, or by another program) is a ``JournalError`` naming the journal and the
        key: the engine fails closed, with a clear error rather than a traceback."""
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise JournalError(
                f"The live journal {self.url} holds state {key!r} that is not JSON "
                f"({exc}): it was not written by moola. Restore it or delete the row "
                f"(state key {key!r}); nothing was sent."
            ) from None

    def intent_status(self, client_order_id: str) -> str | None:
        """The status of the intent with this client order id, or None if never recorded."""
        return self._read_core(
            "read the order status",
            lambda conn: conn.scalar(
                select(_INTENTS.c.status).where(_INTENTS.c.client_order_id == client_order_id)
            ),
        )

    def intents_by_status(self, statuses: Sequence[str]) -> list[dict[str, Any]]:
        """The intents (of any session) whose status is one of ``statuses``, oldest first:
        ``{"client_order_id", "symbol", "status", "session_id"}`` each. One indexed query
        (``order_intents.status``), not a read of every decision: the engine asks it on
        start for the orders a live broker may still hold. An unknown status is a
        ``ConfigError`` naming it."""
        wanted = [statuses] if isinstance(statuses, str) else list(statuses)
        unknown = [s for s in wanted if s not in INTENT_STATUSES]
        if unknown:
            raise ConfigError(
                f"statuses {unknown} are not intent statuses: use {', '.join(INTENT_STATUSES)}.",
                param="statuses",
            )
        if not wanted:
            return []
        columns = ("client_order_id", "symbol", "status", "session_id")
        query = (
            select(*(_INTENTS.c[name] for name in columns))
            .where(_INTENTS.c.status.in_(wanted))
            .order_by(_INTENTS.c.id)
        )
        rows = self._read_core("read the intents by status", lambda c: c.execute(query).all())
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def pending_intents(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Intents recorded but not answered by the broker (status pending or sent), oldest
        first, of one session or all: what a restart must reconcile before trading."""

        def work(session: OrmSession) -> list[dict[str, Any]]:
            query = select(OrderIntentRow).where(OrderIntentRow.status.in_(IN_FLIGHT_STATUSES))
            if session_id is not None:
                query = query.where(OrderIntentRow.session_id == session_id)
            return [_row(row) for row in session.scalars(query.order_by(OrderIntentRow.id))]

        return self._read("read the pending orders", work)

    def fills(self, client_order_id: str | None = None) -> list[dict[str, Any]]:
        """Recorded fills (of one intent, or all), in the order recorded."""

        def work(session: OrmSession) -> list[dict[str, Any]]:
            query = select(Fill).order_by(Fill.id)
            if client_order_id is not None:
                query = query.where(Fill.client_order_id == client_order_id)
            return [_row(row) for row in session.scalars(query)]

        return self._read("read the fills", work)

    def events(self, session_id: str | None = None, kind: str | None = None) -> list[dict]:
        """Recorded events (of one session and/or kind), in the order recorded."""

        def work(session: OrmSession) -> list[dict[str, Any]]:
            query = select(Event).order_by(Event.id)
            if session_id is not None:
                query = query.where(Event.session_id == session_id)
            if kind is not None:
                query = query.where(Event.kind == kind)
            return [_row(row) for row in session.scalars(query)]

        return self._read("read the events", work)

    def session_record(self, session_id: str) -> SessionRecord:
        """Everything the journal holds of session ``session_id``, read in one transaction
        as typed frozen values (:class:`~moola.tracking.livedb.records.SessionRecord`): its
        row and resolved config, its iterations (bar, member outputs, decision, intents)
        in the order recorded, the fills of its intents, its position snapshots and the
        journal's state. What parity replays and a restart rebuilds from. An unknown
        session is a ``JournalError`` naming it and the latest sessions there are."""
        _text(session_id, "session_id")
        return self._read(f"read session {session_id!r}", lambda s: _session_record(s, session_id))

    SIGNAL_COLUMNS = (
        "decision_id",
        "session_id",
        "symbol",
        "bar_time",
        "probability",
        "calibrated",
        "tier",
        "signal",
        "action",
        "reasons",
        "decided_at",
        "client_order_id",
        "side",
        "qty",
        "status",
        "filled_qty",
    )

    def signals(
        self,
        since: Any = None,
        *,
        session_id: str | None = None,
        include_flat: bool = False,
    ) -> pd.DataFrame:
        """Decisions with bar time at or after ``since`` (all when None), oldest first, one
        row per decision and order intent (:attr:`SIGNAL_COLUMNS`; intent columns empty
        when it sent none). Only signals (signal -1 or 1) unless ``include_flat``.

        ``qty`` is what the decision asked for; ``filled_qty`` what filled of it (the units
        of the intent's fills journaled so far, unsigned: 0 while none, less than ``qty``
        for an order the exchange ended part-filled), NaN for a decision without an order."""
        start = None if since is None else _utc(since, "since")
        filled = (
            select(func.abs(func.coalesce(func.sum(Fill.qty), 0.0)))
            .where(Fill.client_order_id == OrderIntentRow.client_order_id)
            .scalar_subquery()
        )

        def work(session: OrmSession) -> list[tuple]:
            query = (
                select(
                    Decision.id,
                    Iteration.session_id,
                    Iteration.symbol,
                    Iteration.bar_time,
                    Decision.probability,
                    Decision.calibrated,
                    Decision.tier,
                    Decision.signal,
                    Decision.action,
                    Decision.reasons,
                    Decision.decided_at,
                    OrderIntentRow.client_order_id,
                    OrderIntentRow.side,
                    OrderIntentRow.qty,
                    OrderIntentRow.status,
                    filled,
                )
                .join(Iteration, Decision.iteration_id == Iteration.id)
                .outerjoin(OrderIntentRow, OrderIntentRow.decision_id == Decision.id)
                .order_by(Iteration.bar_time, Decision.id, OrderIntentRow.id)
            )
            if start is not None:
                query = query.where(Iteration.bar_time >= start)
            if session_id is not None:
                query = query.where(Iteration.session_id == session_id)
            if not include_flat:
                query = query.where(Decision.signal != 0)
            return [tuple(row) for row in session.execute(query)]

        frame = pd.DataFrame(self._read("read the signals", work), columns=self.SIGNAL_COLUMNS)
        for column in ("bar_time", "decided_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        frame["filled_qty"] = (
            frame["filled_qty"].astype("float64").where(frame["client_order_id"].notna())
        )
        return frame

    def status(self) -> dict[str, Any]:
        """Sessions (newest first), the latest position of each symbol, the last decision,
        pending intents, kill switch and halt state and every stored state value."""

        def work(session: OrmSession) -> dict[str, Any]:
            sessions = [
                _row(row)
                for row in session.scalars(
                    select(LiveSession).order_by(LiveSession.started_at.desc())
                )
            ]
            for row in sessions:
                row.pop("config")
            latest = (
                select(func.max(PositionSnapshot.id)).group_by(PositionSnapshot.symbol)
            ).scalar_subquery()
            positions = [
                _row(row)
                for row in session.scalars(
                    select(PositionSnapshot)
                    .where(PositionSnapshot.id.in_(latest))
                    .order_by(PositionSnapshot.symbol)
                )
            ]
            last = session.execute(
                select(Decision, Iteration)
                .join(Iteration, Decision.iteration_id == Iteration.id)
                .order_by(Decision.id.desc())
                .limit(1)
            ).first()
            last_decision = None
            if last is not None:
                decision, iteration = last
                last_decision = _row(decision) | {
                    "session_id": iteration.session_id,
                    "symbol": iteration.symbol,
                    "bar_time": iteration.bar_time,
                }
            rows = session.execute(select(_STATE.c.key, _STATE_TEXT)).all()
            state = {key: self._state_value(key, raw) for key, raw in rows}
            pending = session.scalar(
                select(func.count())
                .select_from(OrderIntentRow)
                .where(OrderIntentRow.status.in_(IN_FLIGHT_STATUSES))
            )
            return {
                "url": self.url,
                "schema_revision": self.schema_revision,
                "sessions": sessions,
                "open_sessions": [row["id"] for row in sessions if row["ended_at"] is None],
                "positions": positions,
                "last_decision": last_decision,
                "pending_intents": int(pending or 0),
                KILL_SWITCH_KEY: state.get(KILL_SWITCH_KEY),
                HALT_KEY: state.get(HALT_KEY),
                "state": state,
            }

        return self._read("read the status", work)


# ----------------------------------------------------------- Core statements of the hot path

_SESSIONS = LiveSession.__table__
_ITERATIONS = Iteration.__table__
_MEMBERS = MemberOutput.__table__
_DECISIONS = Decision.__table__
_INTENTS = OrderIntentRow.__table__
_FILLS = Fill.__table__
_POSITIONS = PositionSnapshot.__table__
_EVENTS = Event.__table__
_STATE = StateEntry.__table__
#: A state value as its stored JSON text (decoded by ``LiveJournal._state_value``, which names
#: the key of a row that is not JSON).
_STATE_TEXT = cast(_STATE.c.value, Text)
_FILL_KEYS = ("fill_id", "client_order_id", "symbol", "qty", "price", "fee", "time")


def _known_session(conn: Connection, session_id: str) -> Any:
    """The session's row (id, ended_at, end_reason); an unknown one is a JournalError."""
    row = conn.execute(
        select(_SESSIONS.c.id, _SESSIONS.c.ended_at, _SESSIONS.c.end_reason).where(
            _SESSIONS.c.id == session_id
        )
    ).first()
    if row is None:
        raise JournalError(f"The live journal has no session {session_id!r}.")
    return row


def _open_session(conn: Connection, session_id: str) -> None:
    """Refuse a session that is unknown or has ended."""
    row = _known_session(conn, session_id)
    if row.ended_at is not None:
        raise JournalError(
            f"Session {session_id!r} ended at {row.ended_at.isoformat()} "
            f"({row.end_reason}): nothing more is recorded in it."
        )


def _exists(conn: Connection, table: Any, row_id: int) -> bool:
    return conn.scalar(select(table.c.id).where(table.c.id == row_id)) is not None


def _fill_values(client_order_id: Any, fill: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A fill's column values, checked (ConfigError naming ``what``'s field)."""
    allowed = set(_FILL_KEYS)
    _check_keys(fill, what, allowed - {"client_order_id"}, allowed)
    client_order_id = _text(client_order_id, f"{what}.client_order_id")
    if fill.get("client_order_id", client_order_id) != client_order_id:
        raise ConfigError(
            f"{what}.client_order_id {fill['client_order_id']!r} is not the intent "
            f"{client_order_id!r} it is recorded for.",
            param=f"{what}.client_order_id",
        )
    return {
        "fill_id": _text(fill["fill_id"], f"{what}.fill_id"),
        "client_order_id": client_order_id,
        "symbol": _text(fill["symbol"], f"{what}.symbol"),
        "qty": _number(fill["qty"], f"{what}.qty"),
        "price": _number(fill["price"], f"{what}.price", positive=True),
        "fee": _number(fill["fee"], f"{what}.fee"),
        "time": _utc(fill["time"], f"{what}.time"),
    }


def _insert_fill(conn: Connection, values: Mapping[str, Any], *, mark: bool) -> None:
    """Write a fill (the same fill again: nothing; another under a known id: refused) and,
    with ``mark``, mark its intent filled."""
    columns = [_FILLS.c[key] for key in _FILL_KEYS]
    known = conn.execute(select(*columns).where(_FILLS.c.fill_id == values["fill_id"])).first()
    if known is not None:
        recorded = dict(zip(_FILL_KEYS, known, strict=True))
        if recorded != dict(values):
            raise JournalError(
                f"Fill {values['fill_id']!r} was recorded before with other values "
                f"({recorded}), not {dict(values)}."
            )
        return
    coid = values["client_order_id"]
    status = conn.scalar(select(_INTENTS.c.status).where(_INTENTS.c.client_order_id == coid))
    if status is None:
        raise JournalError(
            f"The live journal has no order intent {coid!r} for fill "
            f"{values['fill_id']!r}: reconcile with the broker before trading."
        )
    conn.execute(insert(_FILLS), dict(values) | {"recorded_at": datetime.now(UTC)})
    if mark:
        _mark(conn, coid, "filled", None, "")


def _mark_values(mark: Mapping[str, Any], what: str) -> dict[str, Any]:
    allowed = {"client_order_id", "status", "broker_order_id", "detail"}
    _check_keys(mark, what, {"client_order_id", "status"}, allowed)
    status = mark["status"]
    if status not in INTENT_STATUSES or status == "pending":
        valid = ", ".join(s for s in INTENT_STATUSES if s != "pending")
        raise ConfigError(f"status {status!r} is not one of {valid}.", param="status")
    broker_order_id = mark.get("broker_order_id")
    return {
        "client_order_id": _text(mark["client_order_id"], f"{what}.client_order_id"),
        "status": status,
        "broker_order_id": None if broker_order_id is None else str(broker_order_id),
        "detail": str(mark.get("detail") or ""),
    }


def _mark(
    conn: Connection, client_order_id: str, status: str, broker_order_id: str | None, detail: str
) -> None:
    """Set an intent's status (and broker order id), with an ``intent_status`` event."""
    row = conn.execute(
        select(_INTENTS.c.session_id, _INTENTS.c.status, _INTENTS.c.broker_order_id).where(
            _INTENTS.c.client_order_id == client_order_id
        )
    ).first()
    if row is None:
        raise JournalError(
            f"The live journal has no order intent {client_order_id!r}: an order "
            "is recorded before it is sent."
        )
    if broker_order_id is not None and row.broker_order_id not in (None, broker_order_id):
        raise JournalError(
            f"Order intent {client_order_id!r} has broker order id "
            f"{row.broker_order_id!r}, not {broker_order_id!r}."
        )
    now = datetime.now(UTC)
    changes: dict[str, Any] = {"status": status, "updated_at": now}
    if broker_order_id is not None:
        changes["broker_order_id"] = broker_order_id
    if detail:
        changes["detail"] = detail
    conn.execute(
        update(_INTENTS).where(_INTENTS.c.client_order_id == client_order_id).values(**changes)
    )
    payload = {
        "client_order_id": client_order_id,
        "from": row.status,
        "to": status,
        "broker_order_id": broker_order_id if broker_order_id is not None else row.broker_order_id,
        "detail": detail,
    }
    conn.execute(
        insert(_EVENTS),
        {"session_id": row.session_id, "kind": "intent_status", "payload": payload, "at": now},
    )


def _position_values(session_id: str, snapshot: Mapping[str, Any], what: str) -> dict[str, Any]:
    allowed = {"symbol", "qty", "avg_price", "equity", "cash", "at"}
    _check_keys(snapshot, what, allowed - {"avg_price"}, allowed)
    return {
        "session_id": session_id,
        "symbol": _text(snapshot["symbol"], f"{what}.symbol"),
        "qty": _number(snapshot["qty"], f"{what}.qty"),
        "avg_price": _number(snapshot.get("avg_price"), f"{what}.avg_price", optional=True),
        "equity": _number(snapshot["equity"], f"{what}.equity"),
        "cash": _number(snapshot["cash"], f"{what}.cash"),
        "at": _utc(snapshot["at"], f"{what}.at"),
    }


def _event_values(session_id: str | None, kind: str, payload: Mapping[str, Any]) -> dict:
    return {
        "session_id": session_id,
        "kind": _text(kind, "kind"),
        "payload": _jsonable(dict(payload)),
        "at": datetime.now(UTC),
    }


def _session_record(session: OrmSession, session_id: str) -> SessionRecord:
    """:meth:`LiveJournal.session_record` inside a read transaction."""
    found = session.get(LiveSession, session_id)
    if found is None:
        known = list(session.scalars(select(LiveSession.id).order_by(LiveSession.started_at)))
        raise UnknownSession(
            f"The live journal has no session {session_id!r}; it has "
            f"{known[-10:] if known else 'none'} (`moola live status` lists them)."
        )
    iterations = list(
        session.scalars(
            select(Iteration).where(Iteration.session_id == session_id).order_by(Iteration.id)
        )
    )
    members: dict[int, list[MemberRecord]] = {}
    decisions: dict[int, DecisionRecord] = {}
    intents: dict[int, list[IntentRecord]] = {}  # by decision id
    if iterations:
        for out in session.scalars(
            select(MemberOutput)
            .join(Iteration, MemberOutput.iteration_id == Iteration.id)
            .where(Iteration.session_id == session_id)
            .order_by(MemberOutput.id)
        ):
            members.setdefault(out.iteration_id, []).append(MemberRecord(**_row(out)))
        for dec in session.scalars(
            select(Decision)
            .join(Iteration, Decision.iteration_id == Iteration.id)
            .where(Iteration.session_id == session_id)
            .order_by(Decision.id)
        ):
            values = _row(dec)
            values["reasons"] = tuple(values["reasons"] or ())
            decisions[dec.iteration_id] = DecisionRecord(**values)
        for intent in session.scalars(
            select(OrderIntentRow)
            .where(OrderIntentRow.session_id == session_id)
            .order_by(OrderIntentRow.id)
        ):
            intents.setdefault(intent.decision_id, []).append(IntentRecord(**_row(intent)))
    records = []
    for it in iterations:
        decision = decisions.get(it.id)
        records.append(
            IterationRecord(
                **_row(it),
                members=tuple(members.get(it.id, ())),
                decision=decision,
                intents=tuple(intents.get(decision.id, ())) if decision is not None else (),
            )
        )
    fills = tuple(
        FillRecord(**_row(f))
        for f in session.scalars(
            select(Fill)
            .join(OrderIntentRow, Fill.client_order_id == OrderIntentRow.client_order_id)
            .where(OrderIntentRow.session_id == session_id)
            .order_by(Fill.id)
        )
    )
    positions = tuple(
        PositionRecord(**_row(p))
        for p in session.scalars(
            select(PositionSnapshot)
            .where(PositionSnapshot.session_id == session_id)
            .order_by(PositionSnapshot.id)
        )
    )
    state = {row.key: row.value for row in session.scalars(select(StateEntry))}
    return SessionRecord(
        session=SessionInfo(**_row(found)),
        iterations=tuple(records),
        fills=fills,
        positions=positions,
        state=state,
    )
