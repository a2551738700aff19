"""Write anchors: the journal lines that pin the hash of every manifest moola writes.

A manifest lists the hashes of its files, so editing a file is caught. But a consistent
edit (change a file *and* its manifest's hash) would pass, and so would an edit of the
manifest's own facts (a run's metrics, a dataset's window length). So every writer of an
artifact under the data root (registry versions and splits, runs, encoders, promoted
models) appends one line to ``journal/writes.jsonl`` *before* the artifact becomes
visible: its key and the SHA-256 of its manifest. Readers compare the manifest they read
with the line: this is the top of a Merkle chain (journal line -> manifest -> file
hashes). The journal's lines are themselves chained (``moola.core.chainlog``).

An artifact written before anchors existed has no line: it is read as before and
``moola data verify`` lists it as unanchored, without failing.
"""

from __future__ import annotations

import os
from pathlib import Path

from moola.core.chainlog import append_record, read_records
from moola.core.errors import IntegrityError
from moola.core.hashing import sha256_bytes
from moola.core.provenance import utc_now_iso

__all__ = ["JOURNAL_DIR", "WRITES_FILE", "Anchors"]

JOURNAL_DIR = "journal"
WRITES_FILE = "writes.jsonl"


class Anchors:
    """The write journal of one data root: record anchors, look them up, check bytes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._cache: tuple[tuple[int, int], dict[str, str]] | None = None

    @property
    def path(self) -> Path:
        return self.root / JOURNAL_DIR / WRITES_FILE

    def record(self, key: str, manifest: bytes, **facts: object) -> str:
        """Append the anchor of ``key`` (the SHA-256 of its manifest bytes); returns it."""
        digest = sha256_bytes(manifest)
        append_record(
            self.path,
            {"event": "write", "key": key, "sha256": digest, "at": utc_now_iso(), **facts},
        )
        self._cache = None
        return digest

    def table(self) -> dict[str, str]:
        """``key -> anchored SHA-256`` (the latest line per key), cached per file state."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return {}
        state = (stat.st_size, stat.st_mtime_ns)
        if self._cache is None or self._cache[0] != state:
            records, _ = read_records(self.path)
            table = {
                str(r["key"]): str(r["sha256"])
                for r in records
                if r.get("event") == "write" and "key" in r and "sha256" in r
            }
            self._cache = (state, table)
        return self._cache[1]

    def expected(self, key: str) -> str | None:
        """The anchored hash of ``key``'s manifest, or None if it was never anchored."""
        return self.table().get(key)

    def check(self, key: str, manifest: bytes, path: Path) -> bool:
        """Refuse ``manifest`` bytes that differ from their anchor; False if unanchored."""
        expected = self.expected(key)
        if expected is None:
            return False
        if sha256_bytes(manifest) != expected:
            raise IntegrityError(
                f"{path} differs from the hash the journal ({self.path}) recorded when it "
                f"was written: the manifest of {key} was edited afterwards. Restore it from "
                "a backup, or re-create the artifact."
            )
        return True
