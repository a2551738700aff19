"""``run_session(session_id=...)``, the call behind ``moola live run --session ID``: a paper
session interrupted after N bars goes on under the same id, decides each bar once, and
ends with the journal an uninterrupted run of 2N bars writes; a session that cannot be
resumed (ended, of another config or mode, unknown) is refused naming why, before any bar.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from moola.core.errors import ConfigError
from moola.runtime.config import parse_live_config
from moola.runtime.session import run_session
from tests.runtime._lab import build_lab
from tests.runtime.fake_coinbase import cdp_key

N = 300  # decisions before the interruption (150 bars of each symbol), then N more


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C after the N-th bar: the session stays open in the journal."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return build_lab(tmp_path_factory.mktemp("run_session"))


def _config(run_id: str, db: Path, **changes):
    values = {
        "mode": "paper",
        "symbols": ["BTC", "ETH"],
        "members": [{"role": "direction", "run": run_id, "up_class": "retracement"}],
        "execution": {"instrument": "crypto", "initial_cash": 10_000.0, "rules": "none"},
        "risk": {"max_position": 5.0},
        "rate_limits": {"all_per_window": 1000, "high_per_window": 1000},
        "journal_url": f"sqlite:///{db}",
    }
    return parse_live_config(values | changes)


def _interrupted_after(n: int):
    def on_bar(done: int, total: int) -> None:
        if done == n:
            raise Interrupted

    return on_bar


def _journal(db: Path) -> dict[str, list[tuple]]:
    """The rows a session leaves, without its id (each client order id hashes it)."""
    with sqlite3.connect(db) as con:
        q = con.execute
        return {
            "sessions": q("SELECT id, ended_at IS NOT NULL, end_reason FROM sessions").fetchall(),
            "iterations": q(
                "SELECT symbol, bar_time, feature_hash FROM iterations ORDER BY id"
            ).fetchall(),
            "decisions": q(
                "SELECT i.symbol, i.bar_time, d.action, d.signal, d.tier, d.probability "
                "FROM decisions d JOIN iterations i ON d.iteration_id = i.id ORDER BY d.id"
            ).fetchall(),
            "intents": q(
                "SELECT symbol, side, qty, status, decided_at FROM order_intents ORDER BY id"
            ).fetchall(),
            "fills": q("SELECT symbol, qty, price, fee, time FROM fills ORDER BY id").fetchall(),
            "positions": q(
                "SELECT symbol, qty, equity, cash, at FROM positions ORDER BY id"
            ).fetchall(),
        }


def _journal_of_cut(rows: dict[str, list[tuple]]) -> dict[str, int]:
    """Fills before and after the N-th decision's bar."""
    cut = rows["iterations"][N - 1][1]
    times = [time for *_, time in rows["fills"]]
    return {"before": sum(t <= cut for t in times), "after": sum(t > cut for t in times)}


@pytest.fixture(scope="module")
def reference(lab, tmp_path_factory):
    """One uninterrupted paper session of 2N bars."""
    root, run_id = lab
    db = tmp_path_factory.mktemp("reference") / "paper.db"
    result = run_session(root, _config(run_id, db), replay="mkt", max_bars=2 * N, env={})
    assert result.decided == 2 * N
    return _journal(db)


@pytest.fixture
def open_session(lab, tmp_path):
    """A paper session interrupted (Ctrl-C) after its N-th bar: (root, run id, db, id)."""
    root, run_id = lab
    db = tmp_path / "paper.db"
    with pytest.raises(Interrupted):
        run_session(root, _config(run_id, db), replay="mkt", env={}, on_bar=_interrupted_after(N))
    [(session_id, ended, _)] = _journal(db)["sessions"]
    assert not ended  # the interruption left it open
    return root, run_id, db, session_id


def test_a_resumed_session_ends_as_one_uninterrupted_run(open_session, reference):
    root, run_id, db, session_id = open_session
    assert len(_journal(db)["iterations"]) == N
    result = run_session(
        root, _config(run_id, db), replay="mkt", max_bars=N, env={}, session_id=session_id
    )
    assert result.session_id == session_id and result.decided == N
    assert result.stopped == f"max_bars {N} reached"
    got = _journal(db)
    assert got["sessions"] == [(session_id, 1, f"max_bars {N} reached")]  # one session
    bars = [(symbol, time) for symbol, time, _ in got["iterations"]]
    assert len(bars) == 2 * N == len(set(bars))  # each bar decided once
    for table in ("iterations", "decisions", "intents", "fills", "positions"):
        assert got[table] == reference[table], table
    # it traded before the cut and after it, with a position held across it (the book
    # the resumed session rebuilt from the journal)
    first = _journal_of_cut(got)
    assert first["before"] >= 1 and first["after"] >= 2


def test_an_ended_session_is_not_resumed(open_session):
    root, run_id, db, session_id = open_session
    config = _config(run_id, db)
    run_session(root, config, replay="mkt", max_bars=1, env={}, session_id=session_id)
    with pytest.raises(ConfigError, match=rf"session {session_id} ended at .*max_bars 1") as info:
        run_session(root, config, replay="mkt", max_bars=1, env={}, session_id=session_id)
    assert info.value.param == "session"
    assert len(_journal(db)["iterations"]) == N + 1  # the refusal decided nothing


def test_a_session_of_another_config_is_not_resumed(open_session):
    root, run_id, db, session_id = open_session
    other = _config(run_id, db, risk={"max_position": 4.0})
    with pytest.raises(ConfigError, match="was started with another config") as info:
        run_session(root, other, replay="mkt", max_bars=1, env={}, session_id=session_id)
    assert info.value.param == "session"
    assert _config(run_id, db).config_hash in str(info.value)
    assert other.config_hash in str(info.value)
    assert len(_journal(db)["iterations"]) == N


def test_a_paper_session_is_not_resumed_in_live_mode(open_session):
    root, run_id, db, session_id = open_session
    pem, _ = cdp_key()
    env = {
        "COINBASE_API_KEY_NAME": "organizations/test/apiKeys/test",
        "COINBASE_API_PRIVATE_KEY": pem,
    }
    live = _config(
        run_id, db, mode="live", broker="coinbase", coinbase={"base_url": "http://127.0.0.1:9"}
    )
    with pytest.raises(ConfigError, match="is a paper session; this config is live") as info:
        run_session(root, live, replay="mkt", max_bars=1, env=env, session_id=session_id)
    assert info.value.param == "session"
    assert len(_journal(db)["iterations"]) == N


def test_a_session_that_does_not_exist_is_refused_by_name(open_session):
    root, run_id, db, session_id = open_session
    with pytest.raises(ConfigError, match="'no-such-session'") as info:
        run_session(
            root, _config(run_id, db), replay="mkt", max_bars=1, env={},
            session_id="no-such-session",
        )  # fmt: skip
    assert info.value.param == "session"
    assert session_id in str(info.value)  # it lists the sessions there are
    assert len(_journal(db)["iterations"]) == N
