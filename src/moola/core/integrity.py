"""File records and verified reads: every byte moola loads from the data root is checked.

A *file record* is what a manifest says of one file: its size, its SHA-256 (identity) and
its XXH3-128 (fast check)::

    {"bytes": 4512250, "sha256": "sha256:...", "xxh3": "xxh3:..."}

``read_verified`` reads a file once and checks every byte against its record before
returning the bytes, so a loader parses exactly what was verified (no second read, no
window between check and use). Records written before XXH3 existed carry a sampled hash
instead; they are checked with the full SHA-256.

``read_json_file`` turns a corrupt JSON file into an ``IntegrityError`` naming the file,
line and column, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from moola.core.errors import IntegrityError
from moola.core.hashing import HASH_PREFIX, file_hashes, sha256_bytes, sha256_file, xxh3_bytes

__all__ = [
    "check_file",
    "file_record",
    "file_records",
    "read_json_bytes",
    "read_json_file",
    "read_verified",
    "write_json",
]


def file_record(path: Path) -> dict[str, Any]:
    """Size, SHA-256 and XXH3-128 of one file (one pass over its bytes)."""
    slow, fast = file_hashes(path)
    return {"bytes": path.stat().st_size, "sha256": slow, "xxh3": fast}


def file_records(directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """File records of each named file under ``directory``, keyed by name, sorted."""
    return {name: file_record(directory / name) for name in sorted(names)}


def _mismatch(path: Path, data: bytes, record: dict[str, Any], *, full: bool) -> str | None:
    if len(data) != record.get("bytes"):
        return f"{path}: size {len(data)} bytes, its manifest says {record.get('bytes')}"
    if not full and "xxh3" in record:
        if xxh3_bytes(data) != record["xxh3"]:
            return f"{path}: content differs from its manifest (XXH3 check)"
        return None
    if sha256_bytes(data) != record.get("sha256"):
        return f"{path}: content differs from its manifest (SHA-256 check)"
    return None


def read_verified(
    path: str | Path, record: dict[str, Any], *, what: str = "file", full: bool = False
) -> bytes:
    """The bytes of ``path`` after checking every one against ``record``.

    Raises ``IntegrityError`` naming the file when it is missing, has another size, or
    its hash differs. ``what`` names the artifact in the message (e.g. ``raw/es@v1``);
    ``full`` checks with SHA-256 instead of XXH3.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IntegrityError(
            f"{what}: {path} cannot be read ({exc.strerror or exc}); it is listed in the "
            "manifest. Restore it from a backup or re-create the data as a new version."
        ) from None
    if not isinstance(record, dict):
        raise IntegrityError(f"{what}: the manifest record of {path} is not an object.")
    problem = _mismatch(path, data, record, full=full)
    if problem:
        raise IntegrityError(
            f"{what} failed its integrity check and was not loaded: {problem}. Stored data "
            "must never change: restore the file from a backup or re-create the data as a "
            "new version."
        )
    return data


def check_file(path: Path, record: dict[str, Any], *, full: bool = False) -> str | None:
    """The problem with one file against its record, or None when it is intact.

    The default check hashes every byte with XXH3; ``full`` re-hashes with SHA-256.
    Streams the file, so it works on files larger than memory.
    """
    if not path.is_file():
        return f"{path}: missing (listed in its manifest)"
    size = os.path.getsize(path)
    if size != record.get("bytes"):
        return f"{path}: size {size} bytes, its manifest says {record.get('bytes')}"
    if not full and "xxh3" in record:
        if file_hashes(path)[1] != record["xxh3"]:
            return f"{path}: content differs from its manifest (XXH3 check)"
        return None
    if sha256_file(path) != record.get("sha256"):
        return f"{path}: content differs from its manifest (SHA-256 check)"
    return None


def read_json_bytes(data: bytes, path: Path) -> Any:
    """Parse JSON ``data`` read from ``path``; ``IntegrityError`` naming the position if bad."""
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise IntegrityError(
            f"{path} is corrupt: byte {exc.start} is not UTF-8 text. Restore it from a "
            "backup; moola never edits it after writing."
        ) from None
    except json.JSONDecodeError as exc:
        raise IntegrityError(
            f"{path} is corrupt: not valid JSON ({exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}). Restore it from a backup; moola never edits it after writing."
        ) from None


def read_json_file(path: str | Path, *, expect_sha256: str | None = None) -> Any:
    """A JSON file's content, optionally checked against a recorded SHA-256 first."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"{path} is missing or unreadable ({exc.strerror or exc}).") from None
    if expect_sha256 is not None and HASH_PREFIX + hashlib.sha256(data).hexdigest() != (
        expect_sha256
    ):
        raise IntegrityError(
            f"{path} differs from the hash recorded for it ({expect_sha256[:23]}...): it was "
            "edited after it was written. Restore it from a backup or re-create the data."
        )
    return read_json_bytes(data, path)


def write_json(path: Path, payload: Any) -> bytes:
    """Write pretty, key-sorted JSON (read by people too); returns the bytes written."""
    data = (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode()
    path.write_bytes(data)
    return data
