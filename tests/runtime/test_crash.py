"""Restart safety (issue 18): a paper session killed with SIGKILL at each crash point of
the loop, then started again, ends where an uninterrupted session ends.

The session trades two symbols whose bars close together, so the engine decides each bar
time as a group journaled in one transaction, then sends the group's intents one by one:
points sit inside a group (one symbol decided, the other not), between the group's
transaction and its first submit, and between its first and second submit.

How: one driver subprocess (``python -c``, below) imports moola once and, per crash point,
forks a child with ``MOOLA_CRASH_AT`` set to it, which runs the session until the point
kills it with SIGKILL (its exit status must say so: -9); then forks a second child without
the variable, the restart, which runs to the end of the feed. Forking from one imported
driver instead of one ``python -c`` per run keeps the ~50 runs within the time budget (an
import of moola costs seconds; a fork costs nothing) while each run is still a process of
its own that really dies. A reference child runs the same bars uninterrupted.

The session is wired as ``moola live run`` wires a paper session (``run_session``): a
fresh ``PaperBroker`` and ``resume_book=False``. A paper book lives in the memory of the
process, so the crash destroys it; the restart is a new session with a fresh book that
replays the same bars, while the journal carries over (kill switch, halt, and the crashed
session's intents, which reconciliation marks sent or cancelled, never sends again).

What is asserted, for every point:

* 0 lost decisions: the restarted session decides every bar once, and each decision equals
  the reference's for that bar (action, signal, tier, probability); every decision the
  crashed session did record also equals the reference's for its bar, and no bar is
  decided twice within a session;
* 0 duplicated orders: no client order id twice in the journal, each client id filled at
  most once, no intent left ``pending`` after the restart;
* state equal to an uninterrupted run: the restarted session's intents (symbol, side, qty,
  status), fills (qty, price, fee, time), position snapshots (qty, equity, cash) and the
  engine state saved in the journal (positions, last bar decided, rate-limit buckets, risk
  gate) equal the reference's exactly.

The same crashed journal, copied as the crash left it, is also RESUMED: the same
session id on a fresh ``PaperBroker`` (``resume_book=True``, as ``run_session(session_id=
...)`` does), whose book the engine rebuilds by replaying the session's journaled bars
and orders. Asserted for every point: one session, every bar decided once as the
reference decided it, the same intents (none pending), fills, position snapshots and
engine state as the uninterrupted run, each client order id recorded once and
acknowledged by a broker once (an order whose ack the crash lost is placed in the
rebuilt book and acknowledged there, once).

A second scenario kills a kill switch's flatten (``kill_switch: {flatten: true}``): a
session holding both symbols is turned off in the journal, as ``moola live kill on`` does,
and killed at each point the flatten passes through (armed as the kill switch goes on);
resumed, it sends each closing order once and nothing else, ends flat, and leaves the
uninterrupted run's decisions, intents, fills, positions and engine state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.runtime.crashpoints import CRASH_POINTS, ENV_VAR, parse_target
from tests.runtime._lab import MinuteFlip, scripted_config, two_symbol_bars

REPO = Path(__file__).resolve().parents[2]
N_BARS = 120  # per symbol: 240 decisions, orders on both symbols every 30 bars

#: When each point is armed: the N-th time it is reached (mid-session for per-bar points,
#: the second order or fill for the order/fill points). Per-group points count bar times
#: (120): both symbols order at minutes 30, 45, 60, 75, 90 and 105 (groups 31, 46, ...)
#: and their fills come at the next minute.
WHEN = {
    "engine.bar_received": 101,
    "paper.bar_advanced": 131,
    "engine.risk_marked": 151,
    "engine.decided": 171,  # odd: BTC decided, ETH of the same minute not yet
    "engine.group_decided": 91,  # both buys of minute 90 decided, nothing journaled
    "livedb.step_before_commit": 91,  # the group with both buys written, uncommitted
    "engine.step_recorded": 61,  # both buys of minute 60 committed, none sent
    "livedb.state_before_commit": 32,  # the engine's own state: with both fills' positions
    "engine.state_saved": 106,  # both sells of minute 105 journaled, before the first submit
    "engine.group_next_submit": 2,  # minute 45: BTC's sell sent (ack not journaled), ETH's not
    "engine.before_submit": 2,
    "paper.order_placed": 2,
    "engine.submitted": 3,
    "livedb.mark_before_commit": 4,
    "engine.ack_journaled": 3,
    "engine.fill_before_journal": 2,
    "livedb.fill_before_commit": 2,
    "engine.fill_journaled": 3,
    "engine.fill_marked": 2,
    "engine.position_recorded": 3,
    "engine.fill_state_saved": 2,
}
NAMES = [name for name, _ in CRASH_POINTS]
CASES = {name: f"{name}@{WHEN.get(name, 1)}" for name in NAMES}

DRIVER = "import sys; from tests.runtime.test_crash import drive; drive(sys.argv[1])"


def _bars(n: int = N_BARS, seed: int = 3) -> pd.DataFrame:
    return two_symbol_bars(n, seed)


def _session(db: Path, resume: bool = False) -> None:
    """One paper session over the bars, wired as ``run_session`` wires a paper one; with
    ``resume``, as ``run_session(session_id=...)`` resumes the journal's open session (a
    fresh book rebuilt from the journal), or does nothing when the session had ended, or
    starts one when the crash came before there was one."""
    from moola.runtime.brokers import PaperBroker
    from moola.runtime.engine import Engine
    from moola.runtime.feed import ReplayFeed
    from moola.tracking.livedb import LiveJournal

    config = scripted_config()
    journal = LiveJournal(f"sqlite:///{db}")
    broker = PaperBroker(config.execution, config.symbols)
    feed = ReplayFeed(_bars(), config.symbols, "1m", config.staleness)
    status = journal.status() if resume else {}
    if resume and status["sessions"] and not status["open_sessions"]:
        journal.close()  # the crash came after the session ended: nothing to resume
        return
    engine = Engine(config, journal, broker, [MinuteFlip()], feed, env={}, resume_book=resume)
    if resume and status["open_sessions"]:
        engine.start(status["open_sessions"][0])
    engine.run()
    journal.close()


def _fork(db: Path, crash_at: str | None, resume: bool = False, session=None) -> int:
    """Run ``session`` (``_session`` unless given) in a forked child with ``MOOLA_CRASH_AT``
    = ``crash_at`` (unset when None); its exit status, negative for the signal that ended
    it."""
    from moola.runtime import crashpoints

    pid = os.fork()
    if pid == 0:  # the child: never returns into the driver
        code = 0
        try:
            if crash_at is None:
                os.environ.pop(ENV_VAR, None)
            else:
                os.environ[ENV_VAR] = crash_at
            crashpoints.arm(os.environ.get(ENV_VAR))
            (session or _session)(db, resume)
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def drive(workdir: str) -> None:
    """The driver (run by ``python -c``): the reference, then per crash point a crashed
    run, a copy of its journal as the crash left it, the restart as a new session on the
    journal and the resumed session on the copy; exit statuses to ``results.json``."""
    work = Path(workdir)
    _session(work / "warm-up.db")  # every lazy import and cache loaded once, before forking
    results = {"reference": _fork(work / "reference.db", None)}
    for k, (name, crash_at) in enumerate(CASES.items()):
        db, copy = work / f"case{k}.db", work / f"case{k}-resumed.db"
        crash = _fork(db, crash_at)
        for suffix in ("", "-wal", "-shm"):  # the database, its WAL and index, as left
            if Path(f"{db}{suffix}").exists():
                shutil.copyfile(f"{db}{suffix}", f"{copy}{suffix}")
        restart = _fork(db, None)
        resumed = _fork(copy, None, resume=True)
        results[name] = {
            "db": str(db),
            "copy": str(copy),
            "crash": crash,
            "restart": restart,
            "resume": resumed,
        }
    (work / "results.json").write_text(json.dumps(results), encoding="utf-8")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    # The journals go to memory (/dev/shm) where there is one: a SIGKILL loses nothing the
    # process wrote, on any file system (only a power cut needs the fsync), and the ~50
    # sessions run three times faster without waiting on the disk.
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        work = Path(tempfile.mkdtemp(prefix="moola-crash-", dir=shm))
    else:
        work = tmp_path_factory.mktemp("crash")
    try:
        yield _drive_in_subprocess(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _drive_in_subprocess(work: Path, driver: str = DRIVER) -> tuple[Path, dict, str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "KILL_SWITCH")}
    proc = subprocess.run(
        [sys.executable, "-c", driver, str(work)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((work / "results.json").read_text(encoding="utf-8"))
    return work, results, proc.stderr


def _read(db: Path) -> dict:
    with sqlite3.connect(db) as con:
        q = con.execute
        return {
            "sessions": q(
                "SELECT id, ended_at, end_reason FROM sessions ORDER BY started_at"
            ).fetchall(),
            "decisions": q(
                "SELECT i.session_id, i.symbol, i.bar_time, d.action, d.signal, d.tier, "
                "d.probability FROM decisions d JOIN iterations i ON d.iteration_id = i.id "
                "ORDER BY d.id"
            ).fetchall(),
            "intents": q(
                "SELECT session_id, client_order_id, symbol, side, qty, status, decided_at "
                "FROM order_intents ORDER BY id"
            ).fetchall(),
            "fills": q(
                "SELECT o.session_id, f.client_order_id, f.symbol, f.qty, f.price, f.fee, "
                "f.time FROM fills f JOIN order_intents o "
                "ON f.client_order_id = o.client_order_id ORDER BY f.id"
            ).fetchall(),
            "positions": q(
                "SELECT session_id, symbol, qty, equity, cash, at FROM positions ORDER BY id"
            ).fetchall(),
            "engine": json.loads(
                (q("SELECT value FROM state WHERE key = 'engine'").fetchone() or ["null"])[0]
            ),
            "acknowledged": [
                json.loads(payload)["client_order_id"]
                for (payload,) in q("SELECT payload FROM events WHERE kind = 'intent_status'")
                if json.loads(payload)["to"] == "acknowledged"
            ],
        }


def _of(rows: list[tuple], session: str) -> list[tuple]:
    """``rows`` of ``session``, the session id (first column) dropped."""
    return [tuple(r[1:]) for r in rows if r[0] == session]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_session_killed_at_the_point_restarts_to_the_uninterrupted_result(runs, name):
    work, results, log = runs
    case = results[name]
    assert results["reference"] == 0, log[-4000:]
    assert case["crash"] == -9, f"{CASES[name]} did not die by SIGKILL: {case}\n{log[-4000:]}"
    assert case["restart"] == 0, f"the restart after {CASES[name]} failed\n{log[-4000:]}"
    ref, got = _read(work / "reference.db"), _read(Path(case["db"]))
    ((ref_id, *_),) = ref["sessions"]
    restart_id, ended_at, reason = got["sessions"][-1]
    assert ended_at is not None and reason == "feed ended"
    assert len(got["sessions"]) <= 2  # the crashed one (unless it died migrating) + restart

    # 0 lost decisions: every bar decided once by the restart, as the reference decided it
    want = _of(ref["decisions"], ref_id)
    assert len(want) == 2 * N_BARS
    assert _of(got["decisions"], restart_id) == want
    by_bar = {row[:2]: row for row in want}
    for session_id, *_ in got["sessions"][:-1]:  # the crashed session: a true prefix
        crashed = _of(got["decisions"], session_id)
        assert len({row[:2] for row in crashed}) == len(crashed)
        assert all(by_bar[row[:2]] == row for row in crashed)

    # 0 duplicated orders
    ids = [row[1] for row in got["intents"]]
    assert len(ids) == len(set(ids))
    filled = [row[1] for row in got["fills"]]
    assert len(filled) == len(set(filled))
    assert not [row for row in got["intents"] if row[5] == "pending"]

    # the restarted session ends in the uninterrupted run's state
    def no_id(rows):  # intents/fills without their client id (it hashes the session id)
        return [row[1:] for row in rows]

    assert no_id(_of(got["intents"], restart_id)) == no_id(_of(ref["intents"], ref_id))
    assert len(_of(ref["intents"], ref_id)) >= 4  # the scenario does trade
    assert no_id(_of(got["fills"], restart_id)) == no_id(_of(ref["fills"], ref_id))
    assert _of(got["positions"], restart_id) == _of(ref["positions"], ref_id)
    assert got["engine"] == ref["engine"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_the_same_session_killed_at_the_point_resumes_to_the_uninterrupted_result(runs, name):
    """``run_session(session_id=...)``: the session killed at the point goes on in a new
    process with a fresh paper book rebuilt from its journal, and ends as the reference
    ended: every bar decided once and as the reference decided it, the same intents,
    fills, position snapshots and engine state, each client order id recorded and
    acknowledged by a broker once."""
    work, results, log = runs
    case = results[name]
    assert case["crash"] == -9, f"{CASES[name]} did not die by SIGKILL: {case}\n{log[-4000:]}"
    assert case["resume"] == 0, f"resuming after {CASES[name]} failed\n{log[-4000:]}"
    ref, got = _read(work / "reference.db"), _read(Path(case["copy"]))
    ((ref_id, *_),) = ref["sessions"]
    ((session_id, ended_at, reason),) = got["sessions"]  # one session: the same, resumed
    assert ended_at is not None and reason == "feed ended"

    assert _of(got["decisions"], session_id) == _of(ref["decisions"], ref_id)
    ids = [row[1] for row in got["intents"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 4
    assert len(got["acknowledged"]) == len(set(got["acknowledged"])) == len(ids)
    assert not [row for row in got["intents"] if row[5] == "pending"]

    def no_id(rows):
        return [row[1:] for row in rows]

    assert no_id(_of(got["intents"], session_id)) == no_id(_of(ref["intents"], ref_id))
    assert no_id(_of(got["fills"], session_id)) == no_id(_of(ref["fills"], ref_id))
    assert _of(got["positions"], session_id) == _of(ref["positions"], ref_id)
    assert got["engine"] == ref["engine"]


def test_every_crash_point_is_placed_in_the_code_once_and_listed():
    """CRASH_POINTS and the ``crash_point("...")`` calls in the source are the same set,
    each name placed once: the crash test covers every point there is."""
    placed = []
    for path in (REPO / "src" / "moola").rglob("*.py"):
        placed += re.findall(r'crash_point\("([^"]+)"\)', path.read_text(encoding="utf-8"))
    assert sorted(placed) == sorted(NAMES)
    assert len(NAMES) >= 20 and len(set(NAMES)) == len(NAMES)
    assert set(WHEN) <= set(NAMES)


def test_the_crash_variable_names_a_point_and_a_positive_count():
    assert parse_target(None) is None and parse_target("") is None
    assert parse_target("engine.decided") == ("engine.decided", 1)
    assert parse_target("engine.decided@7") == ("engine.decided", 7)
    for bad in ("engine.nowhere", "engine.decided@0", "engine.decided@x"):
        with pytest.raises(ConfigError, match=ENV_VAR):
            parse_target(bad)


# ------------------------------------------------ the kill switch's flatten, killed mid-way

#: The flatten scenario: a member that always says up (p 0.9) buys both symbols at 00:19
#: (filled at 00:20); once the ``KILL_AFTER``-th bar time (00:24) is done the kill switch
#: goes on in the journal, as ``moola live kill on`` turns it on, with
#: ``kill_switch.flatten``: 00:25 decides and sends both closing orders, 00:26 fills them
#: (BTC holds, waiting for ETH's; ETH stops the session, ``killed``). The feed has bars to
#: spare after it.
FLAT_BARS = 40
KILL_AFTER = 25
KILL_REASON = "crash test: kill and flatten"
#: The points the flatten path passes through (every point but the migration's and the
#: session start's, which come before the kill), each armed as the kill switch goes on and
#: counted from there: @1 is its first time after the kill, later counts reach into the
#: flatten (both closing orders decided at 00:25, sent one by one) and the fills of 00:26.
FLATTEN_WHEN = {
    "engine.bar_received": 3,  # 00:26, BTC: its closing order's fill not yet taken
    "paper.bar_advanced": 3,  # 00:26, BTC's closing order filled, not yet mapped
    "engine.risk_marked": 3,  # 00:26, BTC's fill queued, before its decision
    "engine.decided": 1,  # 00:25: BTC's flatten decided, ETH's not yet
    "engine.group_decided": 1,  # both flattens decided, nothing journaled
    "livedb.step_before_commit": 1,  # both flattens written, uncommitted
    "livedb.state_before_commit": 1,
    "engine.step_recorded": 1,  # both flattens committed, none sent
    "engine.state_saved": 1,
    "engine.before_submit": 2,  # BTC's flatten sent, ETH's journaled and not
    "engine.group_next_submit": 1,  # BTC's flatten sent (no ack journaled), ETH's not
    "paper.order_placed": 2,  # both placed, the second's ack not kept
    "engine.submitted": 1,  # BTC's flatten placed, ETH's not
    "livedb.mark_before_commit": 1,  # both flattens' acks written, uncommitted
    "engine.ack_journaled": 1,
    "engine.fill_before_journal": 2,  # 00:26: ETH's closing fill, BTC's queued
    "livedb.fill_before_commit": 1,  # both closing fills written, uncommitted
    "engine.fill_journaled": 1,
    "engine.fill_marked": 2,
    "engine.position_recorded": 1,
    "engine.fill_state_saved": 2,
    "engine.session_ending": 1,  # 00:26 stopped the loop: the session row still open
    "engine.session_ended": 1,
}
FLATTEN_CASES = {name: f"{name}@{n}" for name, n in FLATTEN_WHEN.items()}

FLATTEN_DRIVER = (
    "import sys; from tests.runtime.test_crash import drive_flatten; drive_flatten(sys.argv[1])"
)


def _flatten_session(db: Path, resume: bool = False, arm_at: str | None = None) -> None:
    """The flatten scenario's paper session (wired as ``_session`` wires one); the kill
    switch goes on in the journal after bar time ``KILL_AFTER`` unless it is on already (a
    resumed session finds it there), and ``arm_at`` is armed at that moment."""
    from moola.runtime import crashpoints
    from moola.runtime.brokers import PaperBroker
    from moola.runtime.engine import KILL_SWITCH_KEY, Engine
    from moola.runtime.feed import ReplayFeed
    from moola.runtime.session import set_kill_switch
    from moola.tracking.livedb import LiveJournal
    from tests.runtime._lab import RISING

    config = scripted_config(kill_switch={"flatten": True})
    journal = LiveJournal(f"sqlite:///{db}")
    status = journal.status() if resume else {}
    if resume and status["sessions"] and not status["open_sessions"]:
        journal.close()  # the crash came after the session ended: nothing to resume
        return
    broker = PaperBroker(config.execution, config.symbols)
    feed = ReplayFeed(_bars(FLAT_BARS), config.symbols, "1m", config.staleness)
    engine = Engine(config, journal, broker, [RISING], feed, env={}, resume_book=resume)

    def on_bar(done: int, total: int) -> None:
        if done < 2 * KILL_AFTER or (journal.get_state(KILL_SWITCH_KEY) or {}).get("on"):
            return
        set_kill_switch(journal, True, by="test", reason=KILL_REASON)
        crashpoints.arm(arm_at)

    engine.on_bar = on_bar
    if resume and status["open_sessions"]:
        engine.start(status["open_sessions"][0])
    engine.run()
    journal.close()


def drive_flatten(workdir: str) -> None:
    """The flatten scenario's driver (``python -c``): the uninterrupted reference, then per
    point a run killed there and the same session resumed on its journal."""
    work = Path(workdir)
    _flatten_session(work / "warm-up.db")
    results = {"reference": _fork(work / "reference.db", None, session=_flatten_session)}
    for k, (name, arm_at) in enumerate(FLATTEN_CASES.items()):
        db = work / f"flatten{k}.db"

        def crashing(db: Path, resume: bool, arm_at: str = arm_at) -> None:
            _flatten_session(db, resume, arm_at)

        crash = _fork(db, None, session=crashing)
        resumed = _fork(db, None, resume=True, session=_flatten_session)
        results[name] = {"db": str(db), "crash": crash, "resume": resumed}
    (work / "results.json").write_text(json.dumps(results), encoding="utf-8")


@pytest.fixture(scope="module")
def flatten_runs(tmp_path_factory):
    shm = Path("/dev/shm")  # as ``runs``: journals in memory where there is such a place
    if shm.is_dir() and os.access(shm, os.W_OK):
        work = Path(tempfile.mkdtemp(prefix="moola-crash-flatten-", dir=shm))
    else:
        work = tmp_path_factory.mktemp("crash-flatten")
    try:
        yield _drive_in_subprocess(work, FLATTEN_DRIVER)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FLATTEN_WHEN))
def test_a_kill_switch_flatten_killed_at_the_point_resumes_to_the_uninterrupted_result(
    flatten_runs, name
):
    """A paper session holding both symbols is turned off (journal) with flatten on and
    killed by SIGKILL at the point; resumed (same session, fresh book rebuilt from the
    journal), it sends each flatten order once, sends nothing else, ends flat and leaves
    the journal the uninterrupted run leaves: decisions, intents, fills, positions, state."""
    work, results, log = flatten_runs
    case = results[name]
    assert results["reference"] == 0, log[-4000:]
    assert case["crash"] == -9, f"{FLATTEN_CASES[name]} did not die by SIGKILL: {case}"
    assert case["resume"] == 0, f"resuming after {FLATTEN_CASES[name]} failed\n{log[-4000:]}"
    ref, got = _read(work / "reference.db"), _read(Path(case["db"]))
    ((ref_id, _, ref_reason),) = ref["sessions"]
    assert ref_reason.startswith("kill switch on (journal)")  # the scenario stops by kill
    ((session_id, ended_at, reason),) = got["sessions"]
    assert ended_at is not None and reason == ref_reason

    flattens = _flatten_ids(work / "reference.db")
    assert len(flattens) == 2  # one closing order per held symbol
    got_flattens = _flatten_ids(Path(case["db"]))
    assert len(got_flattens) == 2
    intents = {row[1]: row for row in got["intents"]}
    for coid in got_flattens:  # sent once (acknowledged once), filled once, in full
        assert got["acknowledged"].count(coid) == 1
        assert [row[1] for row in got["fills"]].count(coid) == 1
        assert intents[coid][3] == "sell" and intents[coid][5] == "filled"
    ids = [row[1] for row in got["intents"]]
    assert len(ids) == len(set(ids))
    assert sorted(got["acknowledged"]) == sorted(ids)  # nothing sent but the journaled
    assert got["engine"]["positions"] == {"BTC": 0.0, "ETH": 0.0}

    def no_id(rows):
        return [row[1:] for row in rows]

    # engine.session_ending: the loop had stopped (``killed``) but the session row is open;
    # resumed, it decides nothing more (no second ``killed`` bar) and ends as it would have
    assert _of(got["decisions"], session_id) == _of(ref["decisions"], ref_id)
    assert no_id(_of(got["intents"], session_id)) == no_id(_of(ref["intents"], ref_id))
    assert no_id(_of(got["fills"], session_id)) == no_id(_of(ref["fills"], ref_id))
    assert _of(got["positions"], session_id) == _of(ref["positions"], ref_id)
    assert got["engine"] == ref["engine"]


def _flatten_ids(db: Path) -> list[str]:
    """The client order ids of the journal's ``flatten`` decisions."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT o.client_order_id FROM order_intents o JOIN decisions d "
            "ON o.decision_id = d.id WHERE d.action = 'flatten'"
        ).fetchall()
    return [coid for (coid,) in rows]
