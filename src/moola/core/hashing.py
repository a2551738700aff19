"""Content hashes: the identity of every file, dataset version and config in moola."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
HASH_PREFIX = "sha256:"


def sha256_bytes(data: bytes) -> str:
    """Hash of a byte string, as ``sha256:<hex>``."""
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hash of a file's bytes, read in 1 MiB chunks so large files stay out of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return HASH_PREFIX + digest.hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal content gives equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_json(obj: Any) -> str:
    """Hash of the canonical JSON form of ``obj`` (configs, split indices, manifests)."""
    return sha256_bytes(canonical_json(obj).encode())
