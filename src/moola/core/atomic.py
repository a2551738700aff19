"""All-or-nothing writes: a reader sees either nothing or the complete result.

Files and directories are written under a temporary name beside their destination and
renamed into place only once complete, so a crash or an error never leaves half-written
data where moola (or a user) would read it.

A temporary is locked (``flock``) by its writer for as long as the write runs. A crash
releases the lock with the process, so ``stale_temporaries`` can tell a dead writer's
leftovers (removable) from a write in flight (never touched). ``locked`` serialises the
short critical sections that pick a version number and rename into place, so concurrent
writers of one name take consecutive versions instead of failing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "TMP_PREFIX",
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_text",
    "is_in_flight",
    "locked",
    "remove_temporary",
    "stale_temporaries",
    "temporary_directory",
]

TMP_PREFIX = ".tmp-"
#: A temporary this young (seconds) is never removed: its writer may not hold the lock yet.
FRESH_S = 5.0


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:12]}")


def _lock_fd(path: Path, *, blocking: bool = True) -> int | None:
    """An fd holding an exclusive flock on ``path`` (file or directory); None if busy."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def locked(directory: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (created if needed) for the block."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = _lock_fd(directory)
    try:
        yield
    finally:
        os.close(fd)  # closing releases the flock


@contextlib.contextmanager
def temporary_directory(parent: str | Path, label: str) -> Iterator[Path]:
    """A locked temporary directory under ``parent``, removed at the end unless renamed.

    The caller renames it into place (``os.rename``) inside the block; whatever is left at
    the end (an error, or no rename) is deleted.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f"{TMP_PREFIX}{label}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    fd = _lock_fd(tmp)
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``final`` when the block succeeds.

    If the block raises, the temporary directory is removed and ``final`` is untouched.
    Raises ``FileExistsError`` if ``final`` appeared meanwhile (write-once semantics).
    """
    final = Path(final)
    with temporary_directory(final.parent, final.name) as tmp:
        yield tmp
        if final.exists():
            raise FileExistsError(final)
        os.rename(tmp, final)


def atomic_write_bytes(path: str | Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise FileExistsError(path)
    tmp = _temp_sibling(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            # os.link fails if the destination exists, unlike rename: write-once holds
            # even when two writers race for the same name.
            os.link(tmp, path)
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str, *, overwrite: bool = False) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see ``atomic_write_bytes``)."""
    atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def is_in_flight(path: Path) -> bool:
    """Whether a live writer may still hold the temporary ``path``.

    A writer holds its temporary's lock from creation to rename; a temporary younger than
    ``FRESH_S`` seconds counts as in flight too (its writer may not hold the lock yet).
    """
    try:
        fd = _lock_fd(path, blocking=False)
    except OSError:
        return False
    if fd is None:
        return True
    os.close(fd)
    try:
        return time.time() - path.lstat().st_mtime < FRESH_S
    except OSError:
        return False


def stale_temporaries(root: str | Path) -> list[Path]:
    """Temporaries under ``root`` whose writer is gone (crashed or killed), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.rglob(f"{TMP_PREFIX}*") if TMP_PREFIX not in str(p.parent)]
    stale = [p for p in found if not is_in_flight(p)]
    return sorted(stale, key=lambda p: p.lstat().st_mtime)


def remove_temporary(path: Path) -> int:
    """Delete one stale temporary (file or folder); returns the bytes freed."""
    if path.is_dir() and not path.is_symlink():
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        shutil.rmtree(path, ignore_errors=True)
        return size
    size = path.lstat().st_size
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return size
