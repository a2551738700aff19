"""Append-only JSON-lines logs whose lines are chained by hash.

moola's logs (the journal of registry writes, the experiment log, the test ledger, the
gate decisions) are append-only: a line, once written, is a record of what happened. Each
line written here carries two fields besides the record:

- ``_prev``: the SHA-256 of the previous line's bytes (``"genesis"`` for the first line),
- ``_hash``: the SHA-256 of the line's own canonical JSON without ``_hash``.

A flipped byte breaks the line's ``_hash`` (or its JSON); an edited, inserted or deleted
line breaks the next line's ``_prev``. An editor who rewrites every later line
consistently is not caught by the chain alone: ``verify`` prints the chain head so a
user can keep it elsewhere. Lines written before chaining (no ``_hash``) are still
covered by the next chained line's ``_prev``.

Readers never fail on a bad line: ``read_records`` returns the good records plus one
problem per bad line (unreadable, or whose ``_hash`` no longer matches), with file and
line number, so one corrupt byte cannot break ``moola runs list``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moola.core.hashing import HASH_PREFIX, canonical_json

__all__ = [
    "GENESIS",
    "LogScan",
    "append_record",
    "append_records",
    "chain_head",
    "read_records",
    "scan_log",
    "verify_log",
]

GENESIS = "genesis"
_CHAIN_KEYS = ("_prev", "_hash")
_TAIL_STEP = 1 << 16


def _line_sha(line: bytes) -> str:
    return HASH_PREFIX + hashlib.sha256(line).hexdigest()


def _last_line(fd: int) -> bytes | None:
    """The last complete line of the open file (without its newline), or None if empty."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    end = size
    buffer = b""
    while end > 0:
        start = max(0, end - _TAIL_STEP)
        buffer = os.pread(fd, end - start, start) + buffer
        end = start
        stripped = buffer.rstrip(b"\n")
        cut = stripped.rfind(b"\n")
        if cut >= 0:
            return stripped[cut + 1 :]
    return buffer.rstrip(b"\n") or None


def append_record(
    path: str | Path,
    record: dict[str, Any],
    *,
    then: Callable[[str], object] | None = None,
) -> str:
    """Append ``record`` as one chained line under an exclusive lock.

    Whole lines only, even when processes append concurrently (``flock``), and the line is
    on disk (``fsync``) before this returns: a decision is recorded before it acts.
    Returns the new chain head (the SHA-256 of the line's bytes); ``then(head)`` runs
    while the lock is still held (to anchor the head elsewhere in the same order).
    """
    head = append_records(path, [record], then=then)
    assert head is not None
    return head


def append_records(
    path: str | Path,
    records: Sequence[dict[str, Any]],
    *,
    then: Callable[[str], object] | None = None,
) -> str | None:
    """Append ``records`` in order as chained lines, under one lock, in one write and one
    ``fsync``: a batch of decisions (a backtest's denied orders) costs one trip to the
    disk, not one each. Returns the new chain head (``None`` for no records, when nothing
    is written and ``then`` does not run); ``then(head)`` runs while the lock is held.
    """
    if not records:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        previous = _last_line(fd)
        prev = GENESIS if previous is None else _line_sha(previous)
        lines = []
        for record in records:
            body = {k: v for k, v in record.items() if k not in _CHAIN_KEYS}
            body["_prev"] = prev
            digest = hashlib.sha256(canonical_json(body).encode()).hexdigest()
            body["_hash"] = HASH_PREFIX + digest
            line = canonical_json(body).encode()
            lines.append(line)
            prev = _line_sha(line)
        data = b"".join(line + b"\n" for line in lines)
        written = 0
        while written < len(data):  # os.write may write less than asked for
            written += os.write(fd, data[written:])
        os.fsync(fd)
        if then is not None:
            then(prev)
        return prev
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _parse(raw: bytes, path: Path, number: int) -> tuple[dict[str, Any] | None, str | None]:
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"{path} line {number}: not UTF-8 text (byte {exc.start}); line skipped"
    except json.JSONDecodeError as exc:
        return None, f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(record, dict):
        return None, f"{path} line {number}: a JSON {type(record).__name__}, not an object"
    return record, None


@dataclass(frozen=True)
class LogScan:
    """One pass over a log: what ``read_records``, ``verify_log`` and ``chain_head`` say."""

    records: list[dict[str, Any]]  # readable records, chain fields removed
    skipped: list[str]  # one per line left out of ``records`` (unreadable or edited)
    problems: list[str]  # unreadable lines, edited lines and broken chain links
    head: str | None  # SHA-256 of the last line, None for an empty or missing log
    lines: int  # non-blank lines


def scan_log(path: str | Path) -> LogScan:
    """Read, check and chain-verify the log in one read and one hash per line (readers
    that need records and their verification together, e.g. the decision journal)."""
    path = Path(path)
    if not path.is_file():
        return LogScan([], [], [], None, 0)
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    problems: list[str] = []
    previous: bytes | None = None
    lines = 0
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        lines += 1
        record, problem = _parse(raw, path, number)
        if problem:
            skipped.append(problem)
            problems.append(problem)
        elif "_hash" in record and _own_hash(record) != record["_hash"]:
            skipped.append(
                f"{path} line {number}: content differs from its _hash (edited); skipped"
            )
            problems.append(f"{path} line {number}: content differs from its _hash (edited)")
        else:
            expected_prev = GENESIS if previous is None else _line_sha(previous)
            if "_hash" in record and record.get("_prev") != expected_prev:
                problems.append(
                    f"{path} line {number}: its _prev does not match line {number - 1}: a line "
                    "before it was edited, inserted or removed"
                )
            records.append({k: v for k, v in record.items() if k not in _CHAIN_KEYS})
        previous = raw
    head = None if previous is None else _line_sha(previous)
    return LogScan(records, skipped, problems, head, lines)


def read_records(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every readable record of the log (chain fields removed) and one problem per bad line."""
    scan = scan_log(path)
    return scan.records, scan.skipped


def _own_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "_hash"}
    return HASH_PREFIX + hashlib.sha256(canonical_json(body).encode()).hexdigest()


def verify_log(path: str | Path) -> list[str]:
    """Problems in the log: unreadable lines, lines whose hash or chain link is wrong."""
    return scan_log(path).problems


def chain_head(path: str | Path) -> str | None:
    """SHA-256 of the log's last line: keep it elsewhere to detect a rewritten history."""
    path = Path(path)
    if not path.is_file():
        return None
    lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    return _line_sha(lines[-1]) if lines else None
