"""``moola live`` as an operator uses it in a hurry: a kill switch typed without a config
reaches every journal, and reading a journal that does not exist says so instead of
creating an empty one."""

from __future__ import annotations

from pathlib import Path

import pytest

from moola.tracking.livedb import LiveJournal, journal_url
from tests.test_cli import run


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    for variable in ("KILL_SWITCH", "DB_URL", "DB_URL_PAPER"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path / "data"


def _kill_state(root: Path, mode: str) -> dict:
    journal = LiveJournal(journal_url(root, mode))
    try:
        return journal.get_state("kill_switch") or {}
    finally:
        journal.close()


def test_kill_without_config_or_mode_sets_both_journals_and_names_them(capsys, root):
    code, out, err = run(
        capsys, "--data-root", str(root), "live", "kill", "on", "--by", "ops", "--reason", "drill"
    )
    assert code == 0, err
    for mode in ("paper", "live"):
        assert str(root / "live" / f"{mode}.db") in out.replace("\n", "")
        assert _kill_state(root, mode).get("on") is True
    code, out, err = run(capsys, "--data-root", str(root), "live", "status", "--mode", "live")
    assert code == 0, err
    assert "kill switch: on (by ops: drill)" in out
    code, out, err = run(capsys, "--data-root", str(root), "live", "kill", "off", "--mode", "live")
    assert code == 0, err
    assert not _kill_state(root, "live").get("on")
    assert _kill_state(root, "paper").get("on") is True  # --mode names one journal only


@pytest.mark.parametrize("command", [["status"], ["signals"], ["status", "--mode", "live"]])
def test_reading_a_journal_no_session_wrote_is_refused_and_creates_nothing(capsys, root, command):
    root.mkdir()
    code, _, err = run(capsys, "--data-root", str(root), "live", *command)
    assert code == 2
    mode = "live" if "live" in command else "paper"
    assert f"No {mode} journal at" in err and f"{mode}.db" in err
    assert not (root / "live").exists()
