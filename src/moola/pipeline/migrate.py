"""Convert a trusted run written by an older moola to today's safe, verifiable format.

Older runs hold pickles: ``calibrator.pkl`` and a format-1 ``model.bin`` (tabular,
MiniRocket and stacking models). Unpickling a file runs whatever code its author put in
it, and run folders are shared between users, so moola no longer loads either; the
runs written before file hashes existed (a manifest without ``files``) cannot be
verified at all. ``migrate_run`` converts such a run once, for a caller who trusts it:

1. it finds what needs converting and changes nothing unless ``trust`` is true
   (``MigrationNeedsTrust`` says which files would be unpickled, and why that matters);
2. it appends a record (run, files and their current SHA-256, who, when) to
   ``journal/migrations.jsonl`` before anything acts;
3. it copies the run folder to a temporary sibling and, there, unpickles the old files
   (the only place moola unpickles anything) and re-saves them as ``calibrator.json``
   and a skops ``model.bin``, checks both load through the safe loaders, and rewrites
   the manifest listing every file's hashes plus a ``migrated`` entry;
4. it anchors the new manifest in the write journal, then swaps the folders (old renamed
   away, new renamed in, old deleted), so a reader sees the old run or the new one.

Neural ``model.bin`` files (torch, loaded with ``weights_only=True``) are left as they are.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moola import __version__
from moola.core.anchors import INTEGRITY
from moola.core.atomic import TMP_PREFIX, temporary_directory
from moola.core.chainlog import append_record
from moola.core.errors import CheckpointError, ConfigError, IntegrityError
from moola.core.hashing import sha256_bytes
from moola.core.integrity import file_records
from moola.core.provenance import creator, utc_now_iso
from moola.models import create
from moola.models._persist import SklearnEstimator, is_legacy_pickle, model_file_bytes
from moola.pipeline.predictor import CALIBRATOR_FILE, LEGACY_CALIBRATOR_FILE, MODEL_FILE
from moola.tracking.runs import MANIFEST_FILE, REPORT_FILE, RunStore
from moola.training.calibration import Calibrator, load_calibrator, save_calibrator

__all__ = ["MIGRATIONS_FILE", "MigrationNeedsTrust", "MigrationResult", "migrate_run"]

#: The journal of migrations, under the data root.
MIGRATIONS_FILE = Path("journal") / "migrations.jsonl"


class MigrationNeedsTrust(ConfigError):
    """Migrating the run would unpickle (or vouch for) files, and trust was not given."""


@dataclass(frozen=True)
class MigrationResult:
    """What ``migrate_run`` did to one run (``changed`` is False if it was already current)."""

    run_id: str
    run_dir: Path
    changed: bool
    converted: dict[str, str] = field(default_factory=dict)  # old name -> new name
    hashes_added: bool = False
    old_sha256: dict[str, str] = field(default_factory=dict)
    new_sha256: dict[str, str] = field(default_factory=dict)


def migrate_run(root: str | Path, run_id: str, *, trust: bool) -> MigrationResult:
    """Convert run ``run_id`` under data root ``root`` to safe files and a hashed manifest.

    ``trust`` must be true for anything to change: migration unpickles the run's old
    files, which runs whatever code they hold. Raises ``MigrationNeedsTrust`` without it,
    ``CheckpointError`` naming the file if an old file is not what moola wrote.
    """
    store = RunStore(root)
    run_dir = store.run_dir(run_id)
    run_id = run_dir.name
    old_manifest_bytes = store.manifest_bytes(run_dir)  # checked against its anchor
    manifest = store.manifest(run_dir)
    plan = _plan(store, run_dir, manifest)
    if not plan.pickles and not plan.add_hashes:
        return MigrationResult(run_id, run_dir, changed=False)
    if not trust:
        raise MigrationNeedsTrust(_trust_message(run_id, plan))
    append_record(  # recorded before anything acts on it
        store.root / MIGRATIONS_FILE,
        {
            "event": "migrate",
            "run_id": run_id,
            "files": plan.old_sha256,
            "convert": sorted(plan.pickles),
            "hashes_added": plan.add_hashes,
            "previous_manifest_sha256": sha256_bytes(old_manifest_bytes),
            "by": creator(),
            "at": utc_now_iso(),
        },
    )
    with temporary_directory(store.runs_dir, run_id) as tmp:
        shutil.copytree(run_dir, tmp, symlinks=True, dirs_exist_ok=True)
        converted = _convert(tmp, plan, manifest, run_id)
        listed = _listed(tmp, manifest, converted)
        new_files = file_records(tmp, listed)
        _check_unchanged(new_files, plan.verified, tmp)
        payload = {
            **manifest,
            "integrity": INTEGRITY,
            "files": new_files,
            "migrated": {
                "at": utc_now_iso(),
                "by": creator(),
                "moola_version": __version__,
                "converted": {
                    old: {
                        "to": new,
                        "old_sha256": plan.old_sha256[old],
                        "new_sha256": new_files[new]["sha256"],
                    }
                    for old, new in converted.items()
                },
                "hashes_added": plan.add_hashes,
                "previous_manifest_sha256": sha256_bytes(old_manifest_bytes),
            },
        }
        data = (json.dumps(payload, indent=2, default=str) + "\n").encode()
        (tmp / MANIFEST_FILE).write_bytes(data)
        store.anchors.record(f"run:{run_id}", data)  # journaled before it is visible
        _swap(store, run_dir, tmp, old_manifest_bytes)
    return MigrationResult(
        run_id,
        run_dir,
        changed=True,
        converted=converted,
        hashes_added=plan.add_hashes,
        old_sha256={name: plan.old_sha256[name] for name in converted},
        new_sha256={new: new_files[new]["sha256"] for new in converted.values()},
    )


@dataclass
class _Plan:
    """What a run needs: its pickled files' bytes (by name) and whether hashes are missing."""

    pickles: dict[str, bytes]
    add_hashes: bool
    old_sha256: dict[str, str]
    verified: dict[str, str]  # SHA-256 of every other listed file, checked on read


def _plan(store: RunStore, run_dir: Path, manifest: dict[str, Any]) -> _Plan:
    """Find the pickles of ``run_dir``; their bytes are verified when the manifest lists
    hashes (so exactly what was recorded is what may get unpickled)."""
    hashed = isinstance(manifest.get("files"), dict)
    pickles = {}
    for name in (LEGACY_CALIBRATOR_FILE, MODEL_FILE):
        if hashed and store.has_file(run_dir, name):
            data = store.read_bytes(run_dir, name)
        elif not hashed and (run_dir / name).is_file():
            data = (run_dir / name).read_bytes()
        else:
            continue
        if name == LEGACY_CALIBRATOR_FILE or is_legacy_pickle(data):
            pickles[name] = data
    verified = {}
    if hashed and pickles:  # the other files keep their hashes: check them, never launder
        for name in manifest["files"]:
            if name not in pickles:
                verified[name] = sha256_bytes(store.read_bytes(run_dir, name))
    return _Plan(pickles, not hashed, {n: sha256_bytes(d) for n, d in pickles.items()}, verified)


def _check_unchanged(
    records: dict[str, dict[str, Any]], verified: dict[str, str], tmp: Path
) -> None:
    """Refuse when a file copied for the new manifest differs from its verified bytes."""
    changed = [name for name, digest in verified.items() if records[name]["sha256"] != digest]
    if changed:
        raise IntegrityError(
            f"Run files {changed} changed while the run was being migrated (copied to {tmp}); "
            "nothing was changed. Run the migration again."
        )


def _trust_message(run_id: str, plan: _Plan) -> str:
    if plan.pickles:
        what = (
            f"Migrating run {run_id} unpickles its old files {sorted(plan.pickles)}, and "
            "unpickling runs whatever code a file holds: a crafted file runs its author's "
            "commands on this machine."
        )
    else:
        what = (
            f"Migrating run {run_id} records the hashes of files that were never hashed, "
            "vouching for bytes nobody can check."
        )
    return (
        f"{what} Only migrate a run you trust (one you or your own pipeline wrote); "
        "confirm that you trust it to go on. Nothing was changed."
    )


def _model_class(manifest: dict[str, Any], run_id: str) -> type:
    config = manifest.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), str):
        raise CheckpointError(
            f"Run {run_id}'s {MANIFEST_FILE} names no model (config.model), so its "
            f"{MODEL_FILE} cannot be converted."
        )
    return type(create(config["model"]))


def _convert(tmp: Path, plan: _Plan, manifest: dict[str, Any], run_id: str) -> dict[str, str]:
    """Re-save each pickle of ``plan`` in its safe format inside ``tmp``; old -> new name.

    Each converted file is loaded back through its safe loader before the swap.
    """
    converted = {}
    if MODEL_FILE in plan.pickles:
        cls = _model_class(manifest, run_id)
        estimator = _unpickle_estimator(cls, plan.pickles[MODEL_FILE], tmp / MODEL_FILE)
        (tmp / MODEL_FILE).write_bytes(model_file_bytes(estimator))
        cls.load(tmp / MODEL_FILE)
        converted[MODEL_FILE] = MODEL_FILE
    if LEGACY_CALIBRATOR_FILE in plan.pickles:
        path = tmp / LEGACY_CALIBRATOR_FILE
        calibrator = _unpickle(plan.pickles[LEGACY_CALIBRATOR_FILE], path)
        if not isinstance(calibrator, Calibrator):
            raise CheckpointError(
                f"{path} holds a {type(calibrator).__name__}, not a moola calibrator."
            )
        (tmp / CALIBRATOR_FILE).write_bytes(save_calibrator(calibrator))
        _check_same_mapping(calibrator, tmp / CALIBRATOR_FILE)
        path.unlink()
        converted[LEGACY_CALIBRATOR_FILE] = CALIBRATOR_FILE
    return converted


def _unpickle(data: bytes, path: Path) -> Any:
    """The object pickled in ``data``: runs the file's code. Only ever on trusted files."""
    try:
        return pickle.loads(data)  # the caller said the run is trusted
    except Exception as exc:
        raise CheckpointError(
            f"{path} cannot be unpickled ({type(exc).__name__}: {exc}); it is corrupt or "
            "refers to code this installation lacks. Retrain the run."
        ) from None


def _unpickle_estimator(cls: type, data: bytes, path: Path) -> SklearnEstimator:
    """A fitted ``cls`` from a format-1 model file (a pickled dict of params and state)."""
    if not issubclass(cls, SklearnEstimator):
        raise CheckpointError(
            f"{path} is a pickle, but the run's model {cls.__name__} never wrote pickles; "
            "the file was not written by moola."
        )
    payload = _unpickle(data, path)
    expected = f"{cls.__module__}.{cls.__qualname__}"
    if (
        not isinstance(payload, dict)
        or payload.get("format") != "moola-model"
        or payload.get("class") != expected
        or not isinstance(payload.get("params"), dict)
        or not isinstance(payload.get("state"), dict)
    ):
        raise CheckpointError(
            f"{path} is not a format-1 moola model file of a {expected} (its header differs)."
        )
    estimator = cls(**payload["params"])
    vars(estimator).update(payload["state"])
    return estimator


def _check_same_mapping(old: Calibrator, path: Path) -> None:
    """The JSON calibrator at ``path`` maps probabilities exactly as ``old`` does."""
    new = load_calibrator(path.read_bytes(), path)
    k = old.n_classes_
    probe = np.random.default_rng(0).dirichlet(np.ones(k), size=256)
    probe = np.vstack([probe, np.eye(k), np.full((1, k), 1.0 / k)])
    if not np.array_equal(old.transform(probe), new.transform(probe)):
        raise CheckpointError(
            f"{path}: the converted calibrator does not reproduce the old one's output; "
            "nothing was changed."
        )


def _listed(tmp: Path, manifest: dict[str, Any], converted: dict[str, str]) -> list[str]:
    """The files the new manifest lists: the old list with renames applied, or (for a run
    written before hashes) every regular file but the manifest and the rendered report."""
    files = manifest.get("files")
    if isinstance(files, dict):
        names = {converted.get(name, name) for name in files}
    else:
        names = {
            str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file() and not p.is_symlink()
        }
        names -= {MANIFEST_FILE, REPORT_FILE}
    return sorted(names)


def _swap(store: RunStore, run_dir: Path, tmp: Path, old_manifest: bytes) -> None:
    """Put ``tmp`` where ``run_dir`` is: rename old away, new in, delete old."""
    old = run_dir.with_name(f"{TMP_PREFIX}{run_dir.name}-old-{uuid.uuid4().hex[:12]}")
    os.rename(run_dir, old)
    try:
        os.rename(tmp, run_dir)
    except BaseException:
        os.rename(old, run_dir)
        store.anchors.record(f"run:{run_dir.name}", old_manifest)  # it is current again
        raise
    shutil.rmtree(old, ignore_errors=True)
