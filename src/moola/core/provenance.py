"""Who made an artifact, when, and with which code: the provenance block of every manifest."""

from __future__ import annotations

import getpass
import platform
import socket
import subprocess
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import moola


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 with a trailing Z, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=1)
def git_sha(cwd: str | None = None) -> str | None:
    """Commit of the moola source tree (or ``cwd``) when it is a git checkout, else None.

    A dirty tree gets a ``-dirty`` suffix so results from uncommitted code are visible.
    """
    where = cwd or str(Path(moola.__file__).resolve().parent)
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    suffix = "-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else ""
    return sha.stdout.strip() + suffix


def creator() -> str:
    """``user@host`` of the process writing an artifact."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def provenance() -> dict[str, str | None]:
    """The block every manifest carries: versions, git sha, creator, UTC time."""
    return {
        "moola_version": moola.__version__,
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "creator": creator(),
        "created_at": utc_now_iso(),
    }
