"""Run folders and the experiment log: where every run's manifest and outputs are kept.

Each run gets an id (UTC time, git short sha, label) and a folder
``artifacts/runs/<run_id>/`` written atomically. Its ``manifest.json`` lists every file
of the folder with its size, SHA-256 and XXH3-128, and the manifest's own SHA-256 is
anchored in the write journal before the folder becomes visible
(``moola.core.anchors``): a Merkle chain from the journal down to every byte. Readers go
through ``read_bytes``/``verified_path``, which check the bytes they hand out.

Files added to a run later (a test evaluation, a backtest folder) are anchored the same
way, each under its own key. ``report.html`` is a rendered view, rebuilt from verified
inputs by ``moola report``; it is not an input and is not listed.

The experiment log (``experiment_results.jsonl``) and the ledgers under ``artifacts/``
are hash-chained append-only logs (``moola.core.chainlog``); a line that does not parse
is reported with its line number and skipped, never fatal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moola.core.anchors import INTEGRITY, Anchors
from moola.core.atomic import atomic_write_bytes, temporary_directory
from moola.core.chainlog import append_record, chain_head, read_records
from moola.core.errors import ConfigError, IntegrityError, RegistryError
from moola.core.hashing import sha256_bytes
from moola.core.integrity import file_records, read_json_bytes, read_verified
from moola.core.paths import check_safe_name, confined
from moola.core.provenance import git_sha, provenance
from moola.tracking.manifest import TrainManifest, parse_train_manifest

__all__ = [
    "MANIFEST_FILE",
    "PROMOTED_FILE",
    "REPORT_FILE",
    "RESULTS_FILE",
    "RunStore",
    "new_run_id",
]

RESULTS_FILE = "experiment_results.jsonl"
MANIFEST_FILE = "manifest.json"
REPORT_FILE = "report.html"
PROMOTED_FILE = "promoted.json"
CHECKPOINT_CONFIG = "config.json"
LEGACY_HINT = (
    "It was written before moola recorded the hashes of run files, so its bytes cannot be "
    "checked. If you trust where it came from, convert it with `moola runs migrate {run} "
    "--trust` (recorded in the journal)."
)


def new_run_id(label: str) -> str:
    """``<UTC time>-<git short sha>-<label>``, sortable by time and traceable to code."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    sha = (git_sha() or "nogit")[:7]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "run"
    return f"{stamp}-{sha}-{safe}"


def _relative_files(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
    )


class RunStore:
    """Writes and reads run folders under ``<root>/artifacts/runs``; the logs under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.anchors = Anchors(self.root)

    @property
    def runs_dir(self) -> Path:
        return self.root / "artifacts" / "runs"

    @property
    def promoted_dir(self) -> Path:
        return self.root / "artifacts" / "models" / "promoted"

    @property
    def checkpoints_dir(self) -> Path:
        """Where runs in progress keep what lets them resume (``<root>/artifacts/checkpoints``)."""
        return self.root / "artifacts" / "checkpoints"

    # ------------------------------------------------------------- checkpoints
    def start_checkpoints(self, run_id: str, config: dict[str, Any]) -> Path:
        """The checkpoint folder of run ``run_id`` in progress, created with ``config.json``
        (the run's pinned config: what ``moola train --resume`` reruns). Folds and epochs
        are written into it by the training code; :meth:`discard_checkpoints` removes it
        once the run is recorded."""
        check_safe_name(run_id, "Run id")
        folder = confined(self.checkpoints_dir, run_id, what="run id")
        folder.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
        path = folder / CHECKPOINT_CONFIG
        if path.exists():
            if path.read_bytes() != data:
                raise ConfigError(
                    f"{path} holds another config than run {run_id}'s; it is not this run's "
                    "checkpoint folder. Remove it or resume with the config it holds."
                )
        else:
            atomic_write_bytes(path, data)
        return folder

    def interrupted_config(self, run_id: str) -> tuple[Path, dict[str, Any]]:
        """The checkpoint folder and pinned config of interrupted run ``run_id``; refused,
        naming what exists instead, when there is none or the run already finished."""
        check_safe_name(run_id, "Run id")
        folder = confined(self.checkpoints_dir, run_id, what="run id")
        if confined(self.runs_dir, run_id, what="run id").is_dir():
            raise ConfigError(
                f"Run {run_id} finished and is recorded in {self.runs_dir / run_id}; there is "
                "nothing to resume.",
                param="resume",
            )
        path = folder / CHECKPOINT_CONFIG
        if not path.is_file():
            waiting = self.interrupted_runs()
            hint = f" Interrupted runs: {', '.join(waiting)}." if waiting else ""
            raise ConfigError(
                f"No interrupted run {run_id!r} under {self.checkpoints_dir}.{hint}",
                param="resume",
            )
        return folder, read_json_bytes(path.read_bytes(), path)

    def interrupted_runs(self) -> list[str]:
        """Runs whose checkpoint folder is still there (started, never recorded)."""
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.checkpoints_dir.iterdir() if (p / CHECKPOINT_CONFIG).is_file()
        )

    def discard_checkpoints(self, run_id: str) -> None:
        """Remove run ``run_id``'s checkpoint folder (its run is recorded)."""
        import shutil

        check_safe_name(run_id, "Run id")
        shutil.rmtree(confined(self.checkpoints_dir, run_id, what="run id"), ignore_errors=True)

    # ------------------------------------------------------------------ writing
    def write_run(
        self, run_id: str, manifest: dict[str, Any], files: dict[str, str | bytes]
    ) -> Path:
        """Create the run folder with ``manifest.json`` and ``files``, all or nothing."""
        check_safe_name(run_id, "Run id")
        final = confined(self.runs_dir, run_id, what="run id")
        with temporary_directory(self.runs_dir, run_id) as tmp:
            for name, content in files.items():
                path = confined(tmp, name, what="run file")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content if isinstance(content, bytes) else content.encode())
            listed = [name for name in files if name != REPORT_FILE]
            payload = {
                "run_id": run_id,
                **manifest,
                **provenance(),
                "integrity": INTEGRITY,
                "files": file_records(tmp, listed),
            }
            data = (json.dumps(payload, indent=2, default=str) + "\n").encode()
            (tmp / MANIFEST_FILE).write_bytes(data)
            if final.exists():
                raise RegistryError(f"Run folder {final} already exists; run ids are unique.")
            self.anchors.record(f"run:{run_id}", data)  # journaled before it is visible
            os.rename(tmp, final)
        return final

    @contextlib.contextmanager
    def addition(self, run_dir: Path, relpath: str) -> Iterator[Path]:
        """A temporary folder that becomes ``run_dir/relpath`` with its own anchored manifest.

        For what is added to a run after it was written (a backtest): the files written
        into the yielded folder are listed with their hashes in its ``manifest.json``.
        """
        final = confined(run_dir, relpath, what="run addition")
        final.parent.mkdir(parents=True, exist_ok=True)
        with temporary_directory(final.parent, final.name) as tmp:
            yield tmp
            payload = {
                "run_id": run_dir.name,
                "path": relpath,
                "integrity": INTEGRITY,
                "files": file_records(tmp, _relative_files(tmp)),
            }
            data = (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode()
            (tmp / MANIFEST_FILE).write_bytes(data)
            if final.exists():
                raise FileExistsError(final)
            self.anchors.record(f"run:{run_dir.name}/{relpath}", data)
            os.rename(tmp, final)

    def add_file(self, run_dir: Path, relpath: str, data: bytes) -> Path:
        """Add one file to a run (e.g. a test evaluation), anchored before it is visible."""
        path = confined(run_dir, relpath, what="run addition")
        if path.exists():
            raise FileExistsError(path)
        self.anchors.record(f"run:{run_dir.name}/{relpath}", data)
        atomic_write_bytes(path, data)
        return path

    def write_promoted(self, run_id: str, files: dict[str, bytes]) -> Path:
        """Write ``artifacts/models/promoted/<run_id>/`` with a ``promoted.json`` listing.

        ``files`` were read verified from the run; their hashes are listed and the listing
        is anchored in the journal before the folder appears.
        """
        check_safe_name(run_id, "Run id")
        final = confined(self.promoted_dir, run_id, what="run id")
        if final.exists():
            raise RegistryError(f"Run {run_id} is already promoted ({final}).")
        with temporary_directory(self.promoted_dir, run_id) as tmp:
            for name, content in files.items():
                confined(tmp, name, what="promoted file").write_bytes(content)
            listing = {
                "run_id": run_id,
                "integrity": INTEGRITY,
                "files": file_records(tmp, list(files)),
            }
            data = (json.dumps(listing, indent=2, sort_keys=True) + "\n").encode()
            (tmp / PROMOTED_FILE).write_bytes(data)
            self.anchors.record(f"promoted:{run_id}", data)
            os.rename(tmp, final)
        return final

    def read_promoted(self, run_id: str, name: str) -> bytes:
        """One file of a promoted model, checked against its anchored listing."""
        check_safe_name(run_id, "Run id")
        folder = confined(self.promoted_dir, run_id, what="run id")
        path = folder / PROMOTED_FILE
        try:
            data = path.read_bytes()
        except OSError:
            raise RegistryError(
                f"No promoted model {run_id!r} under {self.promoted_dir}."
            ) from None
        listing = read_json_bytes(data, path)
        self.anchors.check(f"promoted:{run_id}", data, path, required=True)
        record = listing.get("files", {}).get(name) if isinstance(listing, dict) else None
        if record is None:
            raise IntegrityError(f"{folder / name} is not listed in {path}.")
        return read_verified(folder / name, record, what=f"promoted model {run_id}")

    # ------------------------------------------------------------------ reading
    def run_dir(self, run_id: str) -> Path:
        """The folder of ``run_id`` (an unambiguous prefix is enough), inside the data root."""
        try:
            check_safe_name(run_id, "Run id")
        except ConfigError:
            raise RegistryError(
                f"Run id {run_id!r} is not allowed: a run id is a name like "
                "20260101T000000000000Z-abc1234-label (letters, digits, '_', '-', '.'), "
                "never a path. See `moola runs list`."
            ) from None
        exact = confined(self.runs_dir, run_id, what="run id")
        if exact.is_dir():
            return exact
        matches = sorted(self.runs_dir.glob(f"{run_id}*")) if self.runs_dir.is_dir() else []
        matches = [m for m in matches if m.is_dir() and not m.name.startswith(".")]
        if len(matches) == 1:
            return confined(self.runs_dir, matches[0].name, what="run id")
        if not matches:
            raise RegistryError(f"No run {run_id!r} under {self.runs_dir}. See `moola runs list`.")
        raise RegistryError(
            f"Run prefix {run_id!r} matches {len(matches)} runs: "
            + ", ".join(m.name for m in matches[:5])
            + ". Give more of the id."
        )

    def manifest_bytes(self, run_dir: Path) -> bytes:
        """The raw bytes of a run's manifest, checked against the journal's anchor (required
        for a run written with one)."""
        path = run_dir / MANIFEST_FILE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RegistryError(
                f"Run folder {run_dir} has no readable {MANIFEST_FILE} ({exc.strerror}); it is "
                "not a complete moola run."
            ) from None
        self.anchors.check_marked(f"run:{run_dir.name}", data, path, _loads_or_none(data))
        return data

    def manifest(self, run_dir: Path) -> dict[str, Any]:
        """A run's manifest, checked against its anchor; ``IntegrityError`` if corrupt."""
        path = run_dir / MANIFEST_FILE
        manifest = read_json_bytes(self.manifest_bytes(run_dir), path)
        if not isinstance(manifest, dict):
            raise IntegrityError(f"{path} is corrupt: it holds no JSON object.")
        return manifest

    def train_manifest(self, run_dir: Path) -> TrainManifest:
        """A training run's manifest, checked against its anchor and parsed once.

        ``ConfigError`` when the run is not a training run; ``IntegrityError`` naming the
        run and field when the manifest does not fit (``moola.tracking.manifest``).
        """
        path = run_dir / MANIFEST_FILE
        return parse_train_manifest(self.manifest(run_dir), run_dir.name, path)

    def read_bytes(self, run_dir: Path, name: str) -> bytes:
        """One file of a run, every byte checked against the run's manifest."""
        manifest = self.manifest(run_dir)
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise IntegrityError(
                f"Run {run_dir.name} lists no file hashes. " + LEGACY_HINT.format(run=run_dir.name)
            )
        if name not in files:
            raise IntegrityError(
                f"Run {run_dir.name} has no {name} listed in its manifest "
                f"({run_dir / MANIFEST_FILE}); a file that is not listed is never read."
            )
        return read_verified(
            confined(run_dir, name, what="run file"), files[name], what=f"run {run_dir.name}"
        )

    def verified_path(self, run_dir: Path, name: str) -> Path:
        """The path of a run file after checking its bytes (for loaders that take a path)."""
        self.read_bytes(run_dir, name)
        return run_dir / name

    def has_file(self, run_dir: Path, name: str) -> bool:
        """Whether the run's manifest lists ``name``."""
        files = self.manifest(run_dir).get("files")
        return isinstance(files, dict) and name in files

    def read_added_file(self, run_dir: Path, relpath: str) -> bytes:
        """A file added to the run later, checked against its anchor when it has one."""
        path = confined(run_dir, relpath, what="run addition")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IntegrityError(f"{path} cannot be read ({exc.strerror}).") from None
        required = self._marked(run_dir)
        self.anchors.check(f"run:{run_dir.name}/{relpath}", data, path, required=required)
        return data

    def _marked(self, run_dir: Path) -> bool:
        """Whether the run was written with anchors (so its additions have them too)."""
        payload = _loads_or_none(self.manifest_bytes(run_dir))
        return isinstance(payload, dict) and payload.get("integrity", 0) >= INTEGRITY

    def read_addition(self, folder: Path, name: str) -> bytes:
        """One file of an addition folder (e.g. ``backtests/<stamp>``), verified."""
        run_dir = folder.parent.parent
        relpath = str(folder.relative_to(run_dir))
        manifest_path = folder / MANIFEST_FILE
        if not manifest_path.is_file():  # written before additions had manifests
            return confined(folder, name, what="run file").read_bytes()
        data = manifest_path.read_bytes()
        manifest = read_json_bytes(data, manifest_path)
        self.anchors.check_marked(f"run:{run_dir.name}/{relpath}", data, manifest_path, manifest)
        record = manifest.get("files", {}).get(name) if isinstance(manifest, dict) else None
        if record is None:
            raise IntegrityError(f"{folder / name} is not listed in {manifest_path}.")
        return read_verified(folder / name, record, what=f"run {run_dir.name} {relpath}")

    # -------------------------------------------------------------------- logs
    def append_result(self, record: dict[str, Any]) -> None:
        """Append one line to the experiment log; whole lines only, even under concurrency."""
        self._append(RESULTS_FILE, record)

    def append_log(self, name: str, record: dict[str, Any]) -> None:
        """Append one record to ``artifacts/<name>`` (ledgers of decisions, append-only)."""
        check_safe_name(name, "Log name")
        self._append(f"artifacts/{name}", record)

    def _append(self, relpath: str, record: dict[str, Any]) -> None:
        """Append a chained line and anchor the log's new head, both under the log's lock."""
        key = f"log:{relpath}"
        append_record(
            self.root / relpath, record, then=lambda head: self.anchors.record_digest(key, head)
        )

    def read_log(self, name: str) -> list[dict[str, Any]]:
        """Every readable record of ``artifacts/<name>``, oldest first (empty if none)."""
        return read_records(self.root / "artifacts" / name)[0]

    def results(self) -> list[dict[str, Any]]:
        """Every readable line of the experiment log, oldest first."""
        return read_records(self.root / RESULTS_FILE)[0]

    def results_problems(self) -> list[str]:
        """Lines of the experiment log that could not be read (file and line number), and a
        note if the log no longer ends where the journal says it ended (truncated)."""
        path = self.root / RESULTS_FILE
        problems = read_records(path)[1]
        anchored = self.anchors.expected(f"log:{RESULTS_FILE}")
        if anchored is not None and chain_head(path) != anchored:
            problems.append(
                f"{path}: does not end with the line the journal recorded last: lines were "
                "removed or the file was replaced"
            )
        return problems

    def manifest_hash(self, run_dir: Path) -> str:
        """SHA-256 of the run's manifest bytes (its identity for promotion records)."""
        return sha256_bytes(self.manifest_bytes(run_dir))


def _loads_or_none(data: bytes) -> Any:
    """Parsed JSON, or None when it does not parse (the caller reports that itself)."""
    try:
        return json.loads(data)
    except ValueError:
        return None
