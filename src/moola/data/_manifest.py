"""Manifests: what a stored dataset version is made of, so any result traces to its bytes.

A manifest lists each data file with its size, full SHA-256 and a *sample* hash (first and
last MiB). The fast check compares sizes and sample hashes (constant time per file); the
full check re-hashes every byte.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moola.core.hashing import HASH_PREFIX, sha256_file, sha256_json

MANIFEST_FILE = "manifest.json"
META_FILE = "meta.json"
_SAMPLE = 1 << 20


@dataclass(frozen=True)
class DatasetRef:
    """Identity of one stored dataset version: kind, name, version and content hash."""

    kind: str
    name: str
    version: int
    content_hash: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}@v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_sha256(path: Path) -> str:
    """Hash of a file's size, first MiB and last MiB: cheap evidence the bytes are unchanged."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(_SAMPLE))
        if size > _SAMPLE:
            handle.seek(max(_SAMPLE, size - _SAMPLE))
            digest.update(handle.read(_SAMPLE))
    return HASH_PREFIX + digest.hexdigest()


def file_records(directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Size, full hash and sample hash of each named data file in ``directory``."""
    records = {}
    for name in sorted(names):
        path = directory / name
        records[name] = {
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
            "sample_sha256": sample_sha256(path),
        }
    return records


def content_hash(files: dict[str, dict[str, Any]]) -> str:
    """The dataset's identity: a hash over its files' names and full hashes."""
    return sha256_json({name: record["sha256"] for name, record in files.items()})


def check_files(directory: Path, files: dict[str, dict[str, Any]], *, full: bool) -> list[str]:
    """Problems found comparing files on disk to their manifest records (empty when intact)."""
    problems = []
    for name, record in files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{path}: missing (listed in {directory / MANIFEST_FILE})")
            continue
        size = os.path.getsize(path)
        if size != record["bytes"]:
            problems.append(f"{path}: size {size} bytes, manifest says {record['bytes']}")
        elif full and sha256_file(path) != record["sha256"]:
            problems.append(f"{path}: content hash differs from the manifest (full check)")
        elif not full and sample_sha256(path) != record["sample_sha256"]:
            problems.append(f"{path}: sampled hash differs from the manifest (fast check)")
    return problems


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Pretty, key-sorted JSON (manifests are read by people too)."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
