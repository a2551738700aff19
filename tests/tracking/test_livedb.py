"""The SQL journal (moola.tracking.livedb): every write read back, the refusals that keep
an order from being recorded (or sent) twice, migrations from empty to head and a newer
schema refused. Each test runs on SQLite and, when MOOLA_TEST_PG_URL names a PostgreSQL
database (scripts/ci_postgres.sh start prints it), on PostgreSQL too (each test in a
database of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from moola.core.errors import ConfigError, JournalError
from moola.tracking.livedb import (
    HALT_KEY,
    KILL_SWITCH_KEY,
    SCHEMA_HEAD,
    LiveJournal,
    journal_url,
)
from moola.tracking.livedb.models import Base
from moola.tracking.livedb.store import _scripts

PG_URL = os.environ.get("MOOLA_TEST_PG_URL", "").strip()
PG_SKIP = (
    "MOOLA_TEST_PG_URL is not set: no PostgreSQL server to test against "
    '(eval "$(scripts/ci_postgres.sh start)" starts one)'
)
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """An empty database of each backend: a SQLite path under tmp_path, or a fresh
    PostgreSQL database created on the server MOOLA_TEST_PG_URL names (dropped after)."""
    if request.param == "sqlite":
        yield journal_url(tmp_path, "paper", env={})
        return
    if not PG_URL:
        pytest.skip(PG_SKIP)
    base = sa.engine.make_url(PG_URL)
    name = f"moola_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def open_journal(db_url):
    """Open LiveJournals on the test database; all closed at teardown."""
    opened: list[LiveJournal] = []

    def opener(**kwargs) -> LiveJournal:
        journal = LiveJournal(db_url, **kwargs)
        opened.append(journal)
        return journal

    yield opener
    for journal in opened:
        journal.close()


@pytest.fixture
def journal(open_journal) -> LiveJournal:
    return open_journal()


def _raw(db_url: str) -> sa.Engine:
    return sa.create_engine(sa.engine.make_url(db_url).set(drivername=_driver(db_url)))


def _driver(db_url: str) -> str:
    return "postgresql+psycopg" if db_url.startswith("postgresql") else "sqlite+pysqlite"


def _decision(journal: LiveJournal, bar_time=T0, signal=1, symbol="BTC-USD", session=None):
    session = session or journal.start_session("paper", {"symbols": [symbol]}, "cfg-hash")
    iteration = journal.record_iteration(
        session, symbol, bar_time, "feat-hash", {"open": 1.0, "close": 2.0, "volume": 3.0}
    )
    decision = journal.record_decision(
        iteration,
        {
            "probability": 0.8,
            "calibrated": 0.77,
            "tier": "high" if signal else None,
            "signal": signal,
            "action": "buy" if signal > 0 else ("sell" if signal < 0 else "none"),
            "reasons": [] if signal else ["below low tier"],
        },
    )
    return session, iteration, decision


def _intent(cid="s1-BTC-USD-1", **overrides):
    return {
        "client_order_id": cid,
        "symbol": "BTC-USD",
        "side": "buy",
        "qty": 0.25,
        "order_type": "market",
        "limit_price": None,
    } | overrides


# ------------------------------------------------------------------ schema and migrations


def test_schema_head_is_the_migration_scripts_head():
    assert _scripts().get_current_head() == SCHEMA_HEAD


def test_empty_database_is_migrated_to_head_and_matches_the_models(journal, db_url):
    assert journal.schema_revision == SCHEMA_HEAD
    engine = _raw(db_url)
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_heads() == (SCHEMA_HEAD,)
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert set(Base.metadata.tables) <= tables


def test_reopening_at_head_keeps_the_data_and_needs_no_migration(open_journal):
    first = open_journal()
    session = first.start_session("paper", {"a": 1}, "h")
    first.close()
    again = open_journal(migrate=False)
    assert again.schema_revision == SCHEMA_HEAD
    assert again.status()["open_sessions"] == [session]


def test_an_empty_database_without_migrate_is_refused(open_journal):
    with pytest.raises(JournalError, match=f"none \\(empty\\), this moola needs {SCHEMA_HEAD}"):
        open_journal(migrate=False)


def test_a_database_from_a_newer_schema_is_refused_naming_both_revisions(open_journal, db_url):
    open_journal().close()
    engine = _raw(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    try:
        with pytest.raises(JournalError, match=f"9999_future.*schema {SCHEMA_HEAD}"):
            open_journal()
        with engine.connect() as conn:  # refused, not downgraded or touched
            assert MigrationContext.configure(conn).get_current_heads() == ("9999_future",)
    finally:
        engine.dispose()


def test_a_migration_that_fails_halfway_leaves_the_database_as_it_was(open_journal, db_url):
    """The migration runs in the journal's transaction (DDL included, on SQLite too): a
    failure after some tables were created leaves none of them, and the next open
    migrates from scratch."""

    def fail_on_fills(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("CREATE TABLE FILLS"):
            raise sa.exc.OperationalError(statement, parameters, Exception("disk full"))

    sa.event.listen(sa.Engine, "before_cursor_execute", fail_on_fills)
    try:
        with pytest.raises(JournalError, match="could not be opened: disk full"):
            open_journal()
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", fail_on_fills)
    engine = _raw(db_url)
    try:
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
    finally:
        engine.dispose()
    assert open_journal().schema_revision == SCHEMA_HEAD


def test_a_kill_between_two_ddl_statements_of_a_migration_leaves_the_revision_before(db_url):
    """SIGKILL in the middle of a migration, after its first CREATE TABLE ran and before
    the second: the migration runs in the journal's one transaction (DDL included), so the
    database is left at the revision before (here: empty, no version), and the next open
    migrates it whole."""
    script = (
        "import os, signal\n"
        "import sqlalchemy as sa\n"
        "from moola.tracking.livedb import LiveJournal\n"
        "created = []\n"
        "def kill(conn, cursor, statement, parameters, context, executemany):\n"
        "    if statement.lstrip().upper().startswith('CREATE TABLE'):\n"
        "        created.append(statement)\n"
        "        if len(created) == 2:\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "sa.event.listen(sa.Engine, 'before_cursor_execute', kill)\n"
        f"LiveJournal({db_url!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()
    engine = _raw(db_url)
    try:
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
            assert MigrationContext.configure(conn).get_current_heads() == ()
    finally:
        engine.dispose()
    with LiveJournal(db_url) as journal:
        assert journal.schema_revision == SCHEMA_HEAD
        assert journal.start_session("paper", {}, "h")


# ----------------------------------------------------------------------- round trips


def test_session_iteration_members_decision_round_trip(journal):
    session = journal.start_session("paper", {"symbols": ["BTC-USD"], "risk": 0.01}, "abc")
    iteration = journal.record_iteration(
        session, "BTC-USD", "2024-03-01T12:00:00Z", "fh1", {"close": 101.5, "volume": 7.0}
    )
    journal.record_members(
        iteration,
        [
            {"member": "direction", "run_id": "r1", "value": 0.7, "stale": False, "weight": 0.35},
            {"member": "rl", "run_id": None, "value": None, "stale": True, "weight": None},
        ],
    )
    decision = journal.record_decision(
        iteration,
        {
            "probability": 0.7,
            "calibrated": 0.68,
            "tier": "medium",
            "signal": 1,
            "action": "buy",
            "reasons": ["rl stale: renormalised"],
            "weights_used": {"direction": 1.0},
        },
    )
    status = journal.status()
    [row] = status["sessions"]
    assert row["id"] == session and row["mode"] == "paper" and row["config_hash"] == "abc"
    assert row["ended_at"] is None and status["open_sessions"] == [session]
    last = status["last_decision"]
    assert last["id"] == decision and last["symbol"] == "BTC-USD"
    assert last["bar_time"] == T0 and last["tier"] == "medium"
    assert last["reasons"] == ["rl stale: renormalised"]
    assert last["detail"] == {"weights_used": {"direction": 1.0}}

    journal.end_session(session, "replay finished")
    journal.end_session(session, "second call keeps the first end")
    [row] = journal.status()["sessions"]
    assert row["end_reason"] == "replay finished" and row["ended_at"] is not None
    assert journal.status()["open_sessions"] == []
    with pytest.raises(JournalError, match="ended"):
        journal.record_iteration(session, "BTC-USD", T0 + timedelta(hours=1), "fh", {})


def test_a_bar_is_recorded_once_per_session(journal):
    session, _, _ = _decision(journal)
    with pytest.raises(JournalError, match="recorded the BTC-USD bar"):
        journal.record_iteration(session, "BTC-USD", T0, "other", {})


def test_intent_lifecycle_fills_and_pending(journal):
    session, _, decision = _decision(journal)
    journal.record_intent(decision, _intent(decided_at=T0))
    assert journal.intent_status("s1-BTC-USD-1") == "pending"
    assert journal.intent_status("never-recorded") is None
    [pending] = journal.pending_intents(session)
    assert pending["status"] == "pending" and pending["qty"] == 0.25
    assert pending["decided_at"] == T0 and pending["session_id"] == session

    journal.mark_intent("s1-BTC-USD-1", "sent")
    assert [p["status"] for p in journal.pending_intents()] == ["sent"]
    journal.mark_intent("s1-BTC-USD-1", "acknowledged", broker_order_id="b-9", detail="open")
    assert journal.pending_intents() == []
    fill = {
        "fill_id": "f-1",
        "symbol": "BTC-USD",
        "qty": 0.25,
        "price": 101.0,
        "fee": 0.05,
        "time": T0 + timedelta(seconds=5),
    }
    journal.record_fill("s1-BTC-USD-1", fill)
    journal.record_fill("s1-BTC-USD-1", fill | {"client_order_id": "s1-BTC-USD-1"})  # no-op
    journal.mark_intent("s1-BTC-USD-1", "filled")
    [stored] = journal.fills("s1-BTC-USD-1")
    assert stored["price"] == 101.0 and stored["time"] == T0 + timedelta(seconds=5)
    assert journal.intent_status("s1-BTC-USD-1") == "filled"
    changes = [(e["payload"]["from"], e["payload"]["to"]) for e in journal.events(session)]
    assert changes == [("pending", "sent"), ("sent", "acknowledged"), ("acknowledged", "filled")]

    with pytest.raises(JournalError, match="recorded before with other values"):
        journal.record_fill("s1-BTC-USD-1", fill | {"price": 102.0})
    with pytest.raises(JournalError, match="no order intent 'ghost'"):
        journal.record_fill("ghost", fill | {"fill_id": "f-2"})
    with pytest.raises(JournalError, match="broker order id 'b-9', not 'b-10'"):
        journal.mark_intent("s1-BTC-USD-1", "cancelled", broker_order_id="b-10")
    assert len(journal.fills()) == 1


def test_a_client_order_id_is_recorded_once(journal):
    session, _, decision = _decision(journal)
    journal.record_intent(decision, _intent())
    _, _, other = _decision(journal, bar_time=T0 + timedelta(hours=1), session=session)
    with pytest.raises(JournalError, match="'s1-BTC-USD-1' was recorded before"):
        journal.record_intent(other, _intent(qty=5.0))
    [only] = journal.pending_intents()
    assert only["decision_id"] == decision and only["qty"] == 0.25


def test_record_step_writes_a_whole_iteration_or_nothing(journal):
    session = journal.start_session("paper", {}, "h")
    outputs = [
        {"member": "direction", "run_id": "r1", "value": 0.8, "stale": False, "weight": 0.35},
        {"member": "trend", "run_id": "r2", "value": 0.7, "stale": False, "weight": 0.40},
    ]
    decision = {"probability": 0.76, "tier": "high", "signal": 1, "action": "buy", "reasons": []}
    iteration, decided = journal.record_step(
        session, "BTC-USD", T0, "fh", {"close": 1.0}, outputs, decision, [_intent("c-1")]
    )
    [row] = journal.signals().itertuples()
    assert (row.decision_id, row.client_order_id, row.status) == (decided, "c-1", "pending")
    assert journal.status()["last_decision"]["iteration_id"] == iteration

    later = T0 + timedelta(hours=1)
    with pytest.raises(JournalError, match="'c-1' was recorded before"):
        journal.record_step(
            session, "BTC-USD", later, "fh", {}, outputs, decision, [_intent("c-2"), _intent("c-1")]
        )
    assert len(journal.signals(include_flat=True)) == 1  # no iteration, decision or c-2
    assert journal.intent_status("c-2") is None
    # the bar was not recorded, so the same step can be written once the problem is fixed
    journal.record_step(session, "BTC-USD", later, "fh", {}, outputs, decision, [_intent("c-2")])
    assert journal.intent_status("c-2") == "pending"
    with pytest.raises(ConfigError, match="client order id twice"):
        journal.record_step(
            session, "ETH-USD", later, "fh", {}, [], decision, [_intent("c-3"), _intent("c-3")]
        )


def test_marking_an_unknown_intent_or_with_a_bad_status_is_refused(journal):
    with pytest.raises(JournalError, match="no order intent 'nope'"):
        journal.mark_intent("nope", "sent")
    with pytest.raises(ConfigError, match="status 'done' is not one of sent"):
        journal.mark_intent("nope", "done")
    with pytest.raises(ConfigError, match="status 'pending'"):
        journal.mark_intent("nope", "pending")


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"side": "long"}, "intent.side"),
        ({"qty": 0}, "intent.qty"),
        ({"qty": float("nan")}, "intent.qty"),
        ({"order_type": "limit"}, "intent.limit_price"),
        ({"order_type": "stop"}, "intent.order_type"),
        ({"leverage": 3}, "intent"),
    ],
)
def test_a_bad_intent_is_refused_naming_the_field(journal, overrides, param):
    _, _, decision = _decision(journal)
    with pytest.raises(ConfigError) as caught:
        journal.record_intent(decision, _intent(**overrides))
    assert caught.value.param == param
    assert journal.pending_intents() == []


def test_record_step_writes_the_bars_fills_positions_and_events_with_it_or_nothing(journal):
    """The engine's one transaction per bar: a fill of an earlier intent (which marks it
    filled), the position after it and a refusal's event (given this step's decision
    id) are written with the iteration, or, when any part is refused, none of them."""
    session = journal.start_session("paper", {}, "h")
    buy = {"probability": 0.8, "tier": "high", "signal": 1, "action": "buy", "reasons": []}
    journal.record_step(session, "BTC-USD", T0, "fh", {}, [], buy, [_intent("c-1")])
    later = T0 + timedelta(minutes=1)
    fill = {"fill_id": "f-1", "client_order_id": "c-1", "symbol": "BTC-USD", "qty": 0.25}
    fill |= {"price": 10.0, "fee": 0.01, "time": later}
    position = {"symbol": "BTC-USD", "qty": 0.25, "avg_price": 10.0, "equity": 99.0}
    position |= {"cash": 96.5, "at": later}
    denied = {"signal": 0, "action": "denied", "reasons": ["max open positions"]}
    event = ("denied", {"decision_id": None, "symbol": "BTC-USD"})
    ghost = fill | {"fill_id": "f-2", "client_order_id": "ghost"}
    with pytest.raises(JournalError, match="no order intent 'ghost'"):
        journal.record_step(
            session, "BTC-USD", later, "fh", {}, [], denied, fills=[fill, ghost],
            positions=[position], events=[event], state={"engine": {"bar": 2}},
        )  # fmt: skip
    assert journal.fills() == [] and journal.intent_status("c-1") == "pending"
    assert journal.events(kind="denied") == [] and journal.get_state("engine") is None
    assert journal.status()["positions"] == []

    _, decided = journal.record_step(
        session, "BTC-USD", later, "fh", {}, [], denied, fills=[fill],
        positions=[position], events=[event], state={"engine": {"bar": 2}},
    )  # fmt: skip
    assert [f["fill_id"] for f in journal.fills()] == ["f-1"]
    assert journal.intent_status("c-1") == "filled"
    [snapshot] = journal.status()["positions"]
    assert (snapshot["qty"], snapshot["cash"]) == (0.25, 96.5)
    [recorded] = journal.events(kind="denied")
    assert recorded["payload"] == {"decision_id": decided, "symbol": "BTC-USD"}
    assert journal.get_state("engine") == {"bar": 2}


def _step(symbol, bar_time, decision, intents=(), **more):
    return {
        "symbol": symbol,
        "bar_time": bar_time,
        "feature_hash": "fh",
        "bar": {"close": 1.0},
        "outputs": [],
        "decision": decision,
        "intents": list(intents),
        **more,
    }


def test_record_steps_journals_a_groups_decisions_all_or_nothing(journal):
    """The engine's one transaction per bar time: every symbol's step of the group and the
    state after them land together, or (one step refused) none of them, not the first."""
    session = journal.start_session("paper", {}, "h")
    buy = {"probability": 0.8, "tier": "high", "signal": 1, "action": "order", "reasons": []}
    flat = {"signal": 0, "action": "none", "reasons": []}
    bad = [
        _step("BTC-USD", T0, buy, [_intent("c-1")]),
        _step("ETH-USD", T0, buy, [_intent("c-2", symbol="ETH-USD")]),
        _step("BTC-USD", T0, flat),  # the same bar twice: refused in the transaction
    ]
    with pytest.raises(JournalError, match=r"BTC-USD bar at .* before"):
        journal.record_steps(session, bad, state={"engine": {"bars": 3}})
    assert journal.signals(include_flat=True).empty and journal.get_state("engine") is None
    assert journal.intent_status("c-1") is None and journal.intent_status("c-2") is None

    ids = journal.record_steps(session, [*bad[:2], _step("SOL-USD", T0, flat)], {"engine": 1})
    assert len(ids) == 3 and len({d for _, d in ids}) == 3
    rows = journal.signals(include_flat=True)
    assert list(rows["symbol"]) == ["BTC-USD", "ETH-USD", "SOL-USD"]
    assert list(rows["decision_id"]) == [d for _, d in ids]
    assert list(rows["status"].fillna("-")) == ["pending", "pending", "-"]
    assert journal.get_state("engine") == 1
    with pytest.raises(ConfigError, match="client order id twice"):
        journal.record_steps(
            session,
            [
                _step("BTC-USD", T1, buy, [_intent("c-9")]),
                _step("ETH-USD", T1, buy, [_intent("c-9")]),
            ],
        )
    undecided = _step("ETH-USD", T1, buy)
    del undecided["decision"]
    with pytest.raises(ConfigError, match=r"steps\[1\] has missing decision"):
        journal.record_steps(
            session,
            [_step("BTC-USD", T1, buy), undecided],
        )
    with pytest.raises(ConfigError, match="non-empty list"):
        journal.record_steps(session, [])
    assert len(journal.signals(include_flat=True)) == 3  # nothing of the refused groups
    with pytest.raises(JournalError, match="no session 'nope'"):
        journal.record_steps("nope", [_step("BTC-USD", T1, flat)])
    journal.end_session(session, "feed ended")
    with pytest.raises(JournalError, match=r"ended at .*nothing more is recorded"):
        journal.record_steps(session, [_step("BTC-USD", T1, flat), _step("ETH-USD", T1, flat)])
    assert len(journal.signals(include_flat=True)) == 3


def test_a_fill_and_its_final_status_land_in_one_transaction_or_neither(journal):
    """A broker's final answer on an order (a limit IOC filled 0.5 of 2, the rest
    expired): the fill (which marks the intent filled) and the final status after it are
    journaled with the bar's decisions, so no crash can keep one without the other."""
    session = journal.start_session("live", {}, "h")
    buy = {"probability": 0.8, "tier": "high", "signal": 1, "action": "order", "reasons": []}
    journal.record_step(session, "BTC-USD", T0, "fh", {}, [], buy, [_intent("c-1", qty=2.0)])
    journal.mark_intent("c-1", "acknowledged", broker_order_id="b-1")
    later = T0 + timedelta(minutes=1)
    fill = {"fill_id": "f-1", "client_order_id": "c-1", "symbol": "BTC-USD", "qty": 0.5}
    fill |= {"price": 10.0, "fee": 0.01, "time": later}
    expired = {"client_order_id": "c-1", "status": "expired", "detail": "filled 0.5 of 2"}
    hold = {"signal": 0, "action": "none", "reasons": []}
    broken = _step("ETH-USD", later, hold, [_intent("c-1")])  # refused: c-1 is known
    with pytest.raises(JournalError, match="'c-1' was recorded before"):
        journal.record_steps(
            session, [_step("BTC-USD", later, hold, fills=[fill], marks=[expired]), broken]
        )
    assert journal.fills() == [] and journal.intent_status("c-1") == "acknowledged"
    journal.record_steps(session, [_step("BTC-USD", later, hold, fills=[fill], marks=[expired])])
    assert [f["qty"] for f in journal.fills("c-1")] == [0.5]
    [row] = journal.intents_by_status(["expired"])
    assert row == {"client_order_id": "c-1", "symbol": "BTC-USD", "status": "expired",
                   "session_id": session}  # fmt: skip
    moves = [
        (e["payload"]["from"], e["payload"]["to"]) for e in journal.events(kind="intent_status")
    ]
    assert moves[-2:] == [("acknowledged", "filled"), ("filled", "expired")]


def test_intents_by_status_reads_the_working_ones_of_every_session(journal):
    buy = {"probability": 0.8, "tier": "high", "signal": 1, "action": "order", "reasons": []}
    one = journal.start_session("live", {}, "h")
    two = journal.start_session("live", {}, "h")
    journal.record_step(one, "BTC-USD", T0, "fh", {}, [], buy, [_intent("a")])
    journal.record_step(one, "ETH-USD", T0, "fh", {}, [], buy, [_intent("b", symbol="ETH-USD")])
    journal.record_step(two, "BTC-USD", T0, "fh", {}, [], buy, [_intent("c")])
    journal.mark_intent("a", "acknowledged")
    journal.mark_intent("b", "filled")
    journal.mark_intent("c", "partially_filled")
    working = journal.intents_by_status(("sent", "acknowledged", "partially_filled"))
    assert [(r["client_order_id"], r["symbol"], r["session_id"]) for r in working] == [
        ("a", "BTC-USD", one),
        ("c", "BTC-USD", two),
    ]
    assert journal.intents_by_status([]) == []
    with pytest.raises(ConfigError, match="'open'"):
        journal.intents_by_status(["acknowledged", "open"])


def test_get_state_sees_a_value_another_connection_wrote(journal, open_journal):
    """The kill switch is read before every order from a kept value; a value another
    process writes (``moola live kill on``) is seen at the next read, and a caller can
    not change the kept value through what it was given."""
    assert journal.get_state(KILL_SWITCH_KEY) is None
    journal.set_state(KILL_SWITCH_KEY, {"on": False})
    seen = journal.get_state(KILL_SWITCH_KEY)
    assert seen == {"on": False}
    seen["on"] = True  # a caller's copy
    assert journal.get_state(KILL_SWITCH_KEY) == {"on": False}
    other = open_journal()
    other.set_state(KILL_SWITCH_KEY, {"on": True, "by": "cli"})
    assert journal.get_state(KILL_SWITCH_KEY) == {"on": True, "by": "cli"}
    other.set_state(KILL_SWITCH_KEY, None)
    assert journal.get_state(KILL_SWITCH_KEY) is None


def test_a_state_row_that_is_not_json_is_a_journal_error_naming_the_key(tmp_path):
    """A state value written by another program (not JSON) is a ``JournalError`` naming
    the journal and the key, from ``get_state`` and ``status`` alike, not a decoding
    traceback. (SQLite only: PostgreSQL's JSON column refuses such a row itself.)"""
    url = journal_url(tmp_path, "paper", env={})
    journal = LiveJournal(url)
    try:
        journal.set_state("engine", {"positions": {}})
        journal.set_state(KILL_SWITCH_KEY, {"on": False})
        with _raw(url).begin() as conn:
            conn.execute(sa.text("UPDATE state SET value = 'not json' WHERE key = 'engine'"))
        for read in (lambda: journal.get_state("engine"), journal.status):
            with pytest.raises(JournalError, match="state 'engine' that is not JSON") as err:
                read()
            assert str(tmp_path) in str(err.value)
        assert journal.get_state(KILL_SWITCH_KEY) == {"on": False}  # the other keys read
    finally:
        journal.close()


def test_positions_events_and_state_round_trip(journal):
    session = journal.start_session("live", {}, "h")
    for at, qty in ((T0, 1.0), (T0 + timedelta(minutes=1), 0.5)):
        journal.record_position(
            session,
            {
                "symbol": "ETH-USD",
                "qty": qty,
                "avg_price": 10.0,
                "equity": 99.0,
                "cash": 94.0,
                "at": at,
            },
        )
    journal.record_position(
        session,
        {
            "symbol": "BTC-USD",
            "qty": 0.0,
            "avg_price": None,
            "equity": 99.0,
            "cash": 99.0,
            "at": T0,
        },
    )
    journal.record_event(session, "halt", {"rule": "daily_loss", "equity": 94.0})
    journal.record_event(None, "unlock", {"by": "ana", "reason": "reviewed"})
    assert journal.get_state(KILL_SWITCH_KEY) is None
    journal.set_state(KILL_SWITCH_KEY, {"on": True, "by": "cli"})
    journal.set_state(HALT_KEY, {"rule": "daily_loss"})
    journal.set_state("buckets", {"all": [9.5, "2024-03-01T12:00:00+00:00"]})
    journal.set_state(HALT_KEY, None)

    status = journal.status()
    positions = {p["symbol"]: p for p in status["positions"]}
    assert positions["ETH-USD"]["qty"] == 0.5 and positions["ETH-USD"]["at"] == T0 + timedelta(
        minutes=1
    )
    assert positions["BTC-USD"]["avg_price"] is None
    assert status[KILL_SWITCH_KEY] == {"on": True, "by": "cli"} and status[HALT_KEY] is None
    assert status["state"]["buckets"] == {"all": [9.5, "2024-03-01T12:00:00+00:00"]}
    assert [e["kind"] for e in journal.events()] == ["halt", "unlock"]
    assert journal.events(kind="unlock")[0]["payload"] == {"by": "ana", "reason": "reviewed"}


def test_session_record_reads_one_session_whole_as_frozen_values(journal):
    """What parity replays and a restart rebuilds from: the session's config, its bars
    with members, decision and intents, the fills of its intents, its positions and the
    state, typed and frozen, and nothing of another session."""
    config = {"symbols": ["BTC-USD"], "risk": {"per_trade": 0.01}}
    session = journal.start_session("paper", config, "cfg")
    other = journal.start_session("paper", {}, "other")
    outputs = [{"member": "direction", "run_id": "r1", "value": 0.8, "stale": False}]
    buy = {"probability": 0.8, "tier": "high", "signal": 1, "action": "buy", "reasons": []}
    flat = {"probability": 0.5, "signal": 0, "action": "none", "reasons": ["below low tier"]}
    journal.record_step(session, "BTC-USD", T0, "fh0", {"close": 1.5}, outputs, buy, [_intent()])
    later = T0 + timedelta(hours=1)
    journal.record_step(
        session, "BTC-USD", later, "fh1", {"close": 2.0}, [], flat, state={"engine": {"n": 2}}
    )
    journal.record_step(other, "BTC-USD", T0, "x", {}, [], buy, [_intent("other-1")])
    fill = {"fill_id": "f-1", "symbol": "BTC-USD", "qty": 0.25, "price": 1.5, "fee": 0.0}
    journal.record_fill("s1-BTC-USD-1", fill | {"time": T0})
    journal.record_fill("other-1", fill | {"fill_id": "f-2", "time": T0})
    journal.mark_intent("s1-BTC-USD-1", "filled", broker_order_id="b-1")
    snapshot = {"symbol": "BTC-USD", "qty": 0.25, "equity": 99.0, "cash": 98.6, "at": T0}
    journal.record_position(session, snapshot | {"avg_price": 1.5})

    record = journal.session_record(session)
    assert record.session.id == session and record.session.config == config
    assert record.session.ended_at is None
    first, second = record.iterations
    assert (first.symbol, first.bar_time, first.bar) == ("BTC-USD", T0, {"close": 1.5})
    assert [(m.member, m.value) for m in first.members] == [("direction", 0.8)]
    assert (first.decision.signal, first.decision.tier) == (1, "high")
    [intent] = first.intents
    assert (intent.client_order_id, intent.status, intent.qty) == ("s1-BTC-USD-1", "filled", 0.25)
    assert intent.broker_order_id == "b-1" and record.intents == (intent,)
    assert second.decision.reasons == ("below low tier",) and second.intents == ()
    assert [f.fill_id for f in record.fills] == ["f-1"]
    [position] = record.positions
    assert (position.qty, position.avg_price, position.at) == (0.25, 1.5, T0)
    assert record.state == {"engine": {"n": 2}}
    with pytest.raises(AttributeError):
        first.symbol = "ETH-USD"
    # the rows' keys still read, for code written against them
    assert dict(first)["feature_hash"] == "fh0" and first["decision"]["action"] == "buy"
    assert record.session.get("mode") == "paper" and "nope" not in first
    assert journal.session_record(session) == record  # read again: equal values

    with pytest.raises(JournalError, match="no session 'ghost'"):
        journal.session_record("ghost")


def test_signals_since_and_flat_decisions(journal):
    session, _, first = _decision(journal, bar_time=T0)
    _decision(journal, bar_time=T0 + timedelta(hours=1), signal=0, session=session)
    _, _, third = _decision(journal, bar_time=T0 + timedelta(hours=2), signal=-1, session=session)
    journal.record_intent(third, _intent("c-3", side="sell"))

    frame = journal.signals()
    assert list(frame["decision_id"]) == [first, third]
    assert list(frame["signal"]) == [1, -1]
    assert frame["client_order_id"].isna().tolist() == [True, False]
    assert frame.loc[1, "status"] == "pending" and frame.loc[1, "side"] == "sell"
    assert str(frame["bar_time"].dt.tz) == "UTC"
    assert len(journal.signals(include_flat=True)) == 3
    later = journal.signals(since="2024-03-01T13:00:00+00:00")
    assert list(later["decision_id"]) == [third]
    assert journal.signals(since=T0 + timedelta(days=1)).empty


def test_a_write_that_fails_midway_leaves_nothing(journal):
    """mark_intent updates the intent and inserts an event in one transaction: when the
    second statement fails, the first is rolled back and the error is a JournalError."""
    _, _, decision = _decision(journal)
    journal.record_intent(decision, _intent())

    def fail_on_event_insert(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
            raise sa.exc.OperationalError(statement, parameters, Exception("disk I/O error"))

    sa.event.listen(journal._engine, "before_cursor_execute", fail_on_event_insert)
    try:
        with pytest.raises(JournalError, match="disk I/O error"):
            journal.mark_intent("s1-BTC-USD-1", "sent")
    finally:
        sa.event.remove(journal._engine, "before_cursor_execute", fail_on_event_insert)
    assert journal.intent_status("s1-BTC-USD-1") == "pending"
    assert journal.events() == []


def test_member_outputs_are_checked_before_anything_is_written(journal):
    _, iteration, _ = _decision(journal)
    with pytest.raises(ConfigError, match="outputs\\[1\\] has missing stale"):
        journal.record_members(
            iteration,
            [{"member": "a", "value": 0.5, "stale": False}, {"member": "b", "value": 0.5}],
        )
    with pytest.raises(JournalError, match="no iteration 999"):
        journal.record_members(999, [{"member": "a", "value": 0.5, "stale": False}])


# --------------------------------------------------------------------- where it lives


def test_journal_url_defaults_to_one_sqlite_file_per_mode(tmp_path):
    paper = journal_url(tmp_path, "paper", env={})
    live = journal_url(tmp_path, "live", env={})
    assert paper == f"sqlite+pysqlite:///{tmp_path}/live/paper.db"
    assert live == f"sqlite+pysqlite:///{tmp_path}/live/live.db"


def test_journal_url_reads_db_url_for_live_and_db_url_paper_for_paper(tmp_path):
    env = {"DB_URL": "postgresql://u:secret@db:5432/live"}
    assert journal_url(tmp_path, "live", env) == "postgresql+psycopg://u:secret@db:5432/live"
    assert journal_url(tmp_path, "paper", env).endswith("/live/paper.db")  # never DB_URL
    env["DB_URL_PAPER"] = "postgres://u:secret@db:5432/paper"
    assert journal_url(tmp_path, "paper", env) == "postgresql+psycopg://u:secret@db:5432/paper"
    env["DB_URL_PAPER"] = "postgresql+psycopg://u:secret@db:5432/live"
    with pytest.raises(ConfigError, match="same database as DB_URL") as caught:
        journal_url(tmp_path, "paper", env)
    assert "secret" not in str(caught.value) and caught.value.param == "DB_URL_PAPER"


@pytest.mark.parametrize(
    ("mode", "env", "param"),
    [
        ("backtest", {}, "mode"),
        ("live", {"DB_URL": "mysql://u@h/db"}, "DB_URL"),
        ("live", {"DB_URL": "not a url"}, "DB_URL"),
    ],
)
def test_journal_url_refuses_bad_settings_naming_them(tmp_path, mode, env, param):
    with pytest.raises(ConfigError) as caught:
        journal_url(tmp_path, mode, env)
    assert caught.value.param == param


def test_sqlite_journal_creates_its_folder_in_wal_mode(tmp_path):
    url = journal_url(tmp_path / "root", "live", env={})
    with LiveJournal(url) as journal:
        assert journal.path == tmp_path / "root" / "live" / "live.db"
        assert journal.path.is_file()
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        engine.dispose()


def test_an_in_memory_sqlite_journal_is_refused():
    with pytest.raises(ConfigError, match="does not name a SQLite file"):
        LiveJournal("sqlite://")


def test_a_committed_write_survives_a_kill(tmp_path):
    """A process killed right after a write returns: the row is there on reopen."""
    url = journal_url(tmp_path, "paper", env={})
    script = (
        "import os, signal\n"
        "from moola.tracking.livedb import LiveJournal\n"
        f"j = LiveJournal({url!r})\n"
        "j.set_state('kill_switch', {'on': True})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()
    with LiveJournal(url, migrate=False) as journal:
        assert journal.get_state("kill_switch") == {"on": True}


def test_an_unreachable_postgresql_server_is_a_journal_error():
    with pytest.raises(JournalError, match="could not be opened") as caught:
        LiveJournal("postgresql+psycopg://moola:secret@127.0.0.1:1/none")
    assert "secret" not in str(caught.value)
