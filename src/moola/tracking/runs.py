"""Run folders and the experiment log: where every run's manifest and outputs are kept.

Each run gets an id (UTC time, git short sha, label) and a folder
``artifacts/runs/<run_id>/`` written atomically; one JSON line per run is appended to
``experiment_results.jsonl`` under an exclusive lock, so concurrent runs never interleave.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moola.core.atomic import atomic_directory
from moola.core.errors import RegistryError
from moola.core.hashing import canonical_json
from moola.core.provenance import git_sha, provenance

RESULTS_FILE = "experiment_results.jsonl"


def new_run_id(label: str) -> str:
    """``<UTC time>-<git short sha>-<label>``, sortable by time and traceable to code."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    sha = (git_sha() or "nogit")[:7]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "run"
    return f"{stamp}-{sha}-{safe}"


class RunStore:
    """Writes run folders under ``<root>/artifacts/runs`` and the results log under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def runs_dir(self) -> Path:
        return self.root / "artifacts" / "runs"

    def write_run(
        self, run_id: str, manifest: dict[str, Any], files: dict[str, str | bytes]
    ) -> Path:
        """Create the run folder with ``manifest.json`` and ``files``, all or nothing."""
        final = self.runs_dir / run_id
        with atomic_directory(final) as tmp:
            for name, content in files.items():
                path = tmp / name
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(content)
            payload = {"run_id": run_id, **manifest, **provenance()}
            (tmp / "manifest.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
        return final

    def append_result(self, record: dict[str, Any]) -> None:
        """Append one line to the experiment log; whole lines only, even under concurrency."""
        self._append(self.root / RESULTS_FILE, record)

    def append_log(self, name: str, record: dict[str, Any]) -> None:
        """Append one record to ``artifacts/<name>`` (ledgers of decisions, append-only)."""
        self._append(self.root / "artifacts" / name, record)

    def read_log(self, name: str) -> list[dict[str, Any]]:
        """Every record of ``artifacts/<name>``, oldest first (empty if none)."""
        return _read_lines(self.root / "artifacts" / name)

    def _append(self, path: Path, record: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        line = (canonical_json(record) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def run_dir(self, run_id: str) -> Path:
        """The folder of ``run_id`` (an unambiguous prefix is enough)."""
        exact = self.runs_dir / run_id
        if exact.is_dir():
            return exact
        matches = sorted(self.runs_dir.glob(f"{run_id}*")) if self.runs_dir.is_dir() else []
        matches = [m for m in matches if m.is_dir() and not m.name.startswith(".")]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RegistryError(f"No run {run_id!r} under {self.runs_dir}. See `moola runs list`.")
        raise RegistryError(
            f"Run prefix {run_id!r} matches {len(matches)} runs: "
            + ", ".join(m.name for m in matches[:5])
            + ". Give more of the id."
        )

    def results(self) -> list[dict[str, Any]]:
        """Every line of the experiment log, oldest first."""
        return _read_lines(self.root / RESULTS_FILE)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
