"""``moola live``: a paper session end to end from the command line on a promoted run, then
its status and signals; kill switch and unlock; live mode without credentials refused."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from moola.cli.live import KILLED_EXIT, app
from moola.core.errors import ConfigError
from tests.runtime._lab import build_lab, cli_session

runner = CliRunner()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return build_lab(tmp_path_factory.mktemp("cli_live"))


@pytest.fixture
def session(lab, tmp_path, monkeypatch):
    root, run_id = lab
    config = cli_session(tmp_path, root, run_id, monkeypatch)
    return root, config


def _ok(args):
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_paper_session_replays_a_dataset_and_its_journal_reads_back(session):
    _, config = session
    out = _ok(["run", "--config", str(config), "--replay", "mkt", "--max-bars", "300"])
    assert "decided" in out and "300" in out
    status = _ok(["status", "--config", str(config)])
    assert "kill switch: off" in status and "paper" in status
    assert "day PnL" in status and "daily loss used" in status
    table = _ok(["signals", "--config", str(config)])
    assert "Signals" in table
    rows = json.loads(_ok(["signals", "--config", str(config), "--format", "json"]))
    csv = _ok(["signals", "--config", str(config), "--format", "csv"])
    assert csv.splitlines()[0].startswith("decision_id") or "bar_time" in csv.splitlines()[0]
    assert len(csv.splitlines()) == len(rows) + 1
    assert any(row["action"] == "order" and row["status"] == "filled" for row in rows)
    since = ["signals", "--config", str(config), "--format", "json", "--since"]
    assert json.loads(_ok([*since, "2099-01-01T00:00Z"])) == []
    assert len(json.loads(_ok([*since, rows[-1]["bar_time"]]))) >= 1
    for row in rows:
        assert row["signal"] in (-1, 1) and row["symbol"] in ("BTC", "ETH")


def test_the_kill_switch_from_the_cli_stops_the_next_session(session):
    _, config = session
    _ok(["kill", "on", "--config", str(config), "--by", "ops", "--reason", "drill"])
    assert "kill switch: on (by ops: drill)" in _ok(["status", "--config", str(config)])
    stopped = runner.invoke(
        app, ["run", "--config", str(config), "--replay", "mkt", "--max-bars", "50"]
    )
    assert stopped.exit_code == KILLED_EXIT, stopped.output  # told apart from a clean end
    assert "kill switch on" in stopped.output
    _ok(["kill", "off", "--config", str(config)])
    assert "kill switch: off" in _ok(["status", "--config", str(config)])


def test_unlock_without_a_halt_says_so(session):
    _, config = session
    result = runner.invoke(
        app, ["unlock", "--config", str(config), "--by", "ana", "--reason", "reviewed"]
    )
    assert isinstance(result.exception, ConfigError)
    assert "not halted" in str(result.exception)


def test_live_mode_without_broker_credentials_is_a_clear_error(session, monkeypatch):
    _, config = session
    monkeypatch.delenv("COINBASE_API_KEY_NAME", raising=False)
    monkeypatch.delenv("COINBASE_API_PRIVATE_KEY", raising=False)
    text = config.read_text(encoding="utf-8") + "broker: coinbase\n"
    config.write_text(text, encoding="utf-8")
    result = runner.invoke(
        app, ["run", "--config", str(config), "--mode", "live", "--replay", "mkt"]
    )
    assert isinstance(result.exception, ConfigError)
    assert "COINBASE_API_KEY_NAME" in str(result.exception)


def test_parity_of_a_paper_session_is_clean_and_names_an_altered_fill(session, tmp_path):
    import sqlite3

    _, config = session
    _ok(["run", "--config", str(config), "--replay", "mkt", "--max-bars", "300"])
    db = tmp_path / "paper.db"
    with sqlite3.connect(db) as conn:
        (sid,) = conn.execute("SELECT id FROM sessions ORDER BY started_at DESC").fetchone()
    out = _ok(["parity", sid, "--config", str(config)])
    assert "parity: ok" in out
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE fills SET price = price * 1.01 WHERE rowid = (SELECT MIN(rowid) FROM fills)"
        )
    result = runner.invoke(app, ["parity", sid, "--config", str(config), "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert not report["ok"] and any(d["field"] == "price" for d in report["differences"])


def test_ctrl_c_during_a_run_exits_130_saying_the_journal_holds_the_bars(session, monkeypatch):
    _, config = session

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("moola.runtime.session.run_session", interrupted)
    result = runner.invoke(app, ["run", "--config", str(config), "--replay", "mkt"])
    assert result.exit_code == 130
    assert "interrupted" in result.output and "journal" in result.output


def test_a_crashed_session_resumes_from_the_cli_with_session(session, tmp_path):
    """SIGKILL a paper session mid-run (a crash point), then `moola live run --session ID`
    goes on with the same session: the journal ends with one session whose bars were each
    decided once; a session that does not exist is refused by name."""
    import os
    import sqlite3
    import subprocess
    import sys

    root, config = session
    args = ["live", "run", "--config", str(config), "--replay", "mkt", "--max-bars", "120"]
    crashed = subprocess.run(
        [sys.executable, "-m", "moola.cli.main", "--data-root", str(root), *args],
        env={**os.environ, "MOOLA_CRASH_AT": "engine.state_saved@40"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert crashed.returncode == -9, crashed.stderr[-2000:]  # died by SIGKILL
    db = tmp_path / "paper.db"
    with sqlite3.connect(db) as conn:
        (session_id,) = conn.execute("SELECT id FROM sessions").fetchone()
    out = _ok(["run", "--config", str(config), "--replay", "mkt", "--session", str(session_id)])
    assert "decided" in out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone() == (1,)
        per_bar = conn.execute(
            "SELECT COUNT(*) FROM iterations GROUP BY symbol, bar_time HAVING COUNT(*) > 1"
        ).fetchall()
    assert per_bar == []  # no bar decided twice
    unknown = ["run", "--config", str(config), "--replay", "mkt", "--session", "nope"]
    result = runner.invoke(app, unknown)
    assert result.exit_code != 0 and "nope" in str(result.exception)
