"""Manifests: what a stored dataset version is made of, so any result traces to its bytes.

A manifest lists each data file's record (size, SHA-256, XXH3-128: see
``moola.core.integrity``), the SHA-256 of ``meta.json`` (so the facts a reader relies on,
window length, columns, classes, the raw reference, are covered too) and the dataset's
content hash. The manifest's own SHA-256 is anchored in the write journal
(``moola.core.anchors``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moola.core.hashing import sha256_json
from moola.core.integrity import check_file

MANIFEST_FILE = "manifest.json"
META_FILE = "meta.json"


@dataclass(frozen=True)
class DatasetRef:
    """Identity of one stored dataset version: kind, name, version and content hash."""

    kind: str
    name: str
    version: int
    content_hash: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}@v{self.version}"

    @property
    def pinned(self) -> str:
        """``name@vN``: the reference spelled so it names this version and no other."""
        return f"{self.name}@v{self.version}"

    @property
    def key(self) -> str:
        """Its key in the write journal."""
        return f"dataset:{self}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def content_hash(files: dict[str, dict[str, Any]]) -> str:
    """The dataset's identity: a hash over its files' names and full hashes."""
    return sha256_json({name: record["sha256"] for name, record in files.items()})


def check_files(directory: Path, files: dict[str, dict[str, Any]], *, full: bool) -> list[str]:
    """Problems found comparing files on disk to their manifest records (empty when intact).

    Every byte is hashed: XXH3 by default, SHA-256 with ``full``.
    """
    problems = []
    for name, record in files.items():
        if not isinstance(record, dict):
            problems.append(f"{directory / name}: its manifest record is not an object")
            continue
        problem = check_file(directory / name, record, full=full)
        if problem:
            problems.append(problem)
    return problems
