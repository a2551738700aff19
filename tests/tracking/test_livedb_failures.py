"""The SQLite journal fails closed: once its file is removed or made read-only, every
write raises JournalError and nothing is written (no new empty database either)."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from moola.core.errors import JournalError
from moola.tracking.livedb import LiveJournal, journal_url

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def journal(tmp_path):
    with LiveJournal(journal_url(tmp_path, "live", env={})) as journal:
        yield journal


def _writes(journal: LiveJournal, session: str):
    """One of each kind of write a session makes."""
    return [
        lambda: journal.start_session("live", {}, "h"),
        lambda: journal.record_iteration(session, "BTC-USD", T0, "fh", {"close": 1.0}),
        lambda: journal.record_event(session, "halt", {"rule": "daily_loss"}),
        lambda: journal.set_state("kill_switch", {"on": True}),
        lambda: journal.end_session(session, "stop"),
    ]


def test_writes_after_the_file_is_removed_raise_and_create_nothing(journal):
    session = journal.start_session("live", {}, "h")
    path = journal.path
    path.unlink()
    for write in _writes(journal, session):
        with pytest.raises(JournalError, match=r"file was removed.*Nothing was written"):
            write()
    with pytest.raises(JournalError):  # reading fails closed too
        journal.status()
    assert not path.exists()


def test_writes_after_the_file_is_replaced_raise(journal):
    """A new database at the same path (another process re-created it) is not this
    journal's: writing on would split the history between two files."""
    session = journal.start_session("live", {}, "h")
    journal.path.unlink()
    with LiveJournal(f"sqlite:///{journal.path}") as other:
        other.set_state("kill_switch", {"on": False})
    with pytest.raises(JournalError, match="file was replaced"):
        journal.set_state("kill_switch", {"on": True})
    with pytest.raises(JournalError, match="file was replaced"):
        journal.end_session(session, "stop")


def _make_read_only(path) -> str:
    """Make ``path`` unwritable to this process; returns how. Root ignores file modes, so
    as root the file is made immutable (chattr +i) instead, or the test is skipped."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return "chmod"
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root (which ignores file modes) and chattr is not installed")
    done = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"running as root and chattr +i is not permitted here: {done.stderr.strip()}")
    return "chattr"


def _make_writable(path, how: str) -> None:
    if how == "chattr":
        subprocess.run([shutil.which("chattr"), "-i", str(path)], check=True)
    path.chmod(0o644)


def test_writes_after_the_file_is_made_read_only_raise_and_leave_it_unchanged(journal):
    session = journal.start_session("live", {}, "h")
    path = journal.path
    how = _make_read_only(path)
    try:
        for write in _writes(journal, session):
            with pytest.raises(JournalError, match="file is read-only"):
                write()
        status = journal.status()  # reading still works
    finally:
        _make_writable(path, how)
    assert status["open_sessions"] == [session]
    status = journal.status()
    assert [row["id"] for row in status["sessions"]] == [session]
    assert status["open_sessions"] == [session] and status["state"] == {}
    assert journal.events() == []
