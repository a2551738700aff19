"""Content hashes: the identity of every file, dataset version and config in moola.

Two hashes, each for one job:

- SHA-256 (``sha256:<hex>``) names things: dataset content hashes, config hashes, the
  hashes manifests record and the journal chains. It is slow (~0.5-1 GB/s) but stable
  and collision-resistant, and it is what people compare by eye.
- XXH3-128 (``xxh3:<hex>``, the ``xxhash`` package) checks bytes as they are loaded. It
  runs near memory bandwidth, so a load can verify every byte it reads for a few percent
  of the read's cost (``benchmarks/bench_verify.py``). It detects corruption and edits,
  not a forger who also rewrites the manifest: that is what the SHA-256 chain of manifests
  and the journal are for.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import xxhash

_CHUNK = 1 << 22
HASH_PREFIX = "sha256:"
XXH3_PREFIX = "xxh3:"


def sha256_bytes(data: bytes) -> str:
    """Hash of a byte string, as ``sha256:<hex>``."""
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hash of a file's bytes, read in chunks so large files stay out of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return HASH_PREFIX + digest.hexdigest()


def xxh3_bytes(data: bytes | memoryview) -> str:
    """Fast 128-bit check hash of a byte string, as ``xxh3:<hex>``."""
    return XXH3_PREFIX + xxhash.xxh3_128_hexdigest(data)


def file_hashes(path: str | Path) -> tuple[str, str]:
    """``(sha256, xxh3)`` of a file in one pass over its bytes."""
    slow, fast = hashlib.sha256(), xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            slow.update(chunk)
            fast.update(chunk)
    return HASH_PREFIX + slow.hexdigest(), XXH3_PREFIX + fast.hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal content gives equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_json(obj: Any) -> str:
    """Hash of the canonical JSON form of ``obj`` (configs, split indices, manifests)."""
    return sha256_bytes(canonical_json(obj).encode())
