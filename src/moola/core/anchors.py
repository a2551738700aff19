"""Write anchors: the journal lines that pin the hash of every manifest moola writes.

A manifest lists the hashes of its files, so editing a file is caught. But a consistent
edit (change a file *and* its manifest's hash) would pass, and so would an edit of the
manifest's own facts (a run's metrics, a dataset's window length). So every writer of an
artifact under the data root (registry versions and splits, runs, encoders, promoted
models) appends one line to ``journal/writes.jsonl`` *before* the artifact becomes
visible: its key and the SHA-256 of its manifest. Readers compare the manifest they read
with the line: this is the top of a Merkle chain (journal line -> manifest -> file
hashes). The journal's lines are themselves chained (``moola.core.chainlog``).

Append-only logs (the experiment log, the ledgers) anchor their chain head after every
line (key ``log:<path>``), so a truncated or deleted log is caught too.

Every manifest written since anchors exist says so (``"integrity": INTEGRITY``); for such
an artifact a missing anchor is an error (the journal was truncated or deleted). An
artifact written before anchors existed has no line and no marker: it is read as before
and ``moola data verify`` lists it as unanchored, without failing.
"""

from __future__ import annotations

import os
from pathlib import Path

from moola.core.chainlog import append_record, read_records
from moola.core.errors import IntegrityError
from moola.core.hashing import sha256_bytes
from moola.core.provenance import utc_now_iso

__all__ = ["INTEGRITY", "JOURNAL_DIR", "WRITES_FILE", "Anchors"]

JOURNAL_DIR = "journal"
WRITES_FILE = "writes.jsonl"
#: Version of the integrity scheme written into every manifest (2: anchored, full hashes).
INTEGRITY = 2


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
        return self.record_digest(key, sha256_bytes(manifest), **facts)

    def record_digest(self, key: str, digest: str, **facts: object) -> str:
        """Append the anchor of ``key`` as an already computed SHA-256."""
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
            records, problems = read_records(self.path)
            if problems:  # fail closed: a damaged journal vouches for nothing
                raise IntegrityError(
                    f"The write journal {self.path} is damaged ({problems[0]}"
                    f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}), so "
                    "no artifact can be checked against it and nothing is loaded. Restore "
                    "it from a backup; `moola data verify` lists every damaged line."
                )
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

    def check(self, key: str, manifest: bytes, path: Path, *, required: bool = False) -> bool:
        """Refuse ``manifest`` bytes that differ from their anchor; False if unanchored.

        ``required``: the artifact was written with an anchor (its manifest says so), so
        a missing one means the journal lost lines: refused.
        """
        expected = self.expected(key)
        if expected is None:
            if required:
                raise IntegrityError(
                    f"{path} was written with an anchor in {self.path}, but the journal has no "
                    f"line for {key}: the journal was truncated, replaced or deleted. Restore "
                    "it from a backup."
                )
            return False
        if sha256_bytes(manifest) != expected:
            raise IntegrityError(
                f"{path} differs from the hash the journal ({self.path}) recorded when it "
                f"was written: the manifest of {key} was edited afterwards. Restore it from "
                "a backup, or re-create the artifact."
            )
        return True

    def check_marked(self, key: str, data: bytes, path: Path, payload: object) -> bool:
        """``check``, with the anchor required when ``payload`` carries the integrity marker."""
        marked = isinstance(payload, dict) and payload.get("integrity", 0) >= INTEGRITY
        return self.check(key, data, path, required=marked)
