"""``moola data verify`` and ``moola data gc`` over the whole data root.

``verify_root`` checks everything moola wrote under the root and never raises on bad
data: each problem names its file (and line or position where there is one).

- ``data/``: every dataset version and split (``Registry.verify``);
- ``artifacts/runs``: each run's manifest against its journal anchor, every listed file's
  bytes, additions (test evaluations, backtest folders) against theirs, and any file the
  manifest does not list;
- ``artifacts/models/promoted``: each promoted model's listing and files;
- ``artifacts/encoders``: each ``.pt`` against its card, each card against its anchor;
- the experiment log, the ledgers and the journal: every line parses and the hash chain
  holds (``moola.core.chainlog``);
- temporaries left by interrupted writes (any kind, splits included).

Artifacts written before anchors or file hashes existed are listed as *unanchored*: a
note, not a failure. ``collect_garbage`` removes temporaries whose writer is gone (never
one still being written) and reports what it removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moola.core.anchors import JOURNAL_DIR, Anchors
from moola.core.atomic import TMP_PREFIX, is_in_flight, remove_temporary, stale_temporaries
from moola.core.chainlog import chain_head, verify_log
from moola.core.errors import CheckpointError, IntegrityError, MoolaError
from moola.core.integrity import check_file, read_json_bytes
from moola.data.registry import DATASET_KINDS, Registry
from moola.pretrain.artifacts import check_encoder_bytes, encoder_dir
from moola.tracking.runs import MANIFEST_FILE, PROMOTED_FILE, REPORT_FILE, RESULTS_FILE, RunStore

__all__ = ["VerifyReport", "collect_garbage", "verify_root"]

#: Folders inside a run that hold later additions, each anchored on its own.
_ADDITIONS = ("evaluations", "backtests")


@dataclass
class VerifyReport:
    """What ``verify_root`` found: problems fail the check, notes do not."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    chain_heads: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_root(root: str | Path, *, full: bool = False) -> VerifyReport:
    """Check every artifact under ``root``; ``full`` re-hashes with SHA-256."""
    root = Path(root)
    report = VerifyReport()
    registry = Registry(root)
    report.problems += registry.verify(full=full)
    report.checked["dataset versions"] = sum(
        len(registry.versions(kind, name))
        for kind in DATASET_KINDS
        for name in registry.names(kind)
    )
    report.checked["splits"] = sum(len(registry.split_versions(n)) for n in registry.split_names())
    store = RunStore(root)
    sections = (
        lambda: report.notes.extend(
            f"{item}: unanchored (written before the journal)" for item in registry.unanchored()
        ),
        lambda: _verify_runs(store, report, full=full),
        lambda: _verify_promoted(store, report, full=full),
        lambda: _verify_encoders(root, report),
        lambda: _verify_journaled_exist(root, report),
    )
    for section in sections:
        try:
            section()
        except MoolaError as exc:  # a damaged journal stops a section, not the whole check
            report.problems.append(str(exc))
    _verify_logs(root, report)
    stale = set(stale_temporaries(root))
    report.problems += [
        f"{p}: unfinished write left behind (remove with `moola data gc`)"
        for p in sorted(stale)
        if "/data/" not in f"/{p.relative_to(root)}"  # the registry listed its own
    ]
    report.notes += [f"{p}: a write in progress" for p in _temporaries(root) if p not in stale]
    return report


def _temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(f"{TMP_PREFIX}*") if TMP_PREFIX not in str(p.parent))


def _unlisted(folder: Path, listed: set[str], skip: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_dir() or relative.parts[0] in skip or relative.parts[0].startswith(TMP_PREFIX):
            continue
        if str(relative) not in listed:
            found.append(f"{path}: not listed in {folder / MANIFEST_FILE} (never read by moola)")
    return found


def _verify_runs(store: RunStore, report: VerifyReport, *, full: bool) -> None:
    runs = (
        [p for p in sorted(store.runs_dir.glob("*")) if p.is_dir() and not p.name.startswith(".")]
        if store.runs_dir.is_dir()
        else []
    )
    report.checked["runs"] = len(runs)
    for run_dir in runs:
        try:
            manifest = store.manifest(run_dir)
        except MoolaError as exc:
            report.problems.append(str(exc))
            continue
        if store.anchors.expected(f"run:{run_dir.name}") is None:
            report.notes.append(f"run {run_dir.name}: unanchored (written before the journal)")
        files = manifest.get("files")
        if not isinstance(files, dict):
            report.notes.append(
                f"run {run_dir.name}: lists no file hashes (written before they were "
                f"recorded); `moola runs migrate {run_dir.name} --trust` converts it"
            )
            continue
        _check_listing(
            run_dir, files, {MANIFEST_FILE, REPORT_FILE}, report, full=full, skip=_ADDITIONS
        )
        _verify_additions(store, run_dir, report, full=full)


def _verify_additions(store: RunStore, run_dir: Path, report: VerifyReport, *, full: bool) -> None:
    for path in sorted((run_dir / "evaluations").glob("*")):
        if path.name.startswith(TMP_PREFIX):
            continue
        key = f"run:{run_dir.name}/evaluations/{path.name}"
        try:
            if not store.anchors.check(key, path.read_bytes(), path):
                report.notes.append(f"{path}: unanchored (written before the journal)")
        except MoolaError as exc:
            report.problems.append(str(exc))
    for folder in sorted((run_dir / "backtests").glob("*")):
        if not folder.is_dir() or folder.name.startswith(TMP_PREFIX):
            continue
        manifest_path = folder / MANIFEST_FILE
        if not manifest_path.is_file():
            report.notes.append(f"{folder}: no manifest (written before backtests had one)")
            continue
        key = f"run:{run_dir.name}/{folder.relative_to(run_dir)}"
        files = _anchored_listing(store, key, manifest_path, report)
        if files is not None:
            _check_listing(folder, files, {MANIFEST_FILE}, report, full=full)


def _anchored_listing(
    store: RunStore, key: str, path: Path, report: VerifyReport
) -> dict[str, Any] | None:
    """The ``files`` of a listing checked against its anchor; None (and a problem) if bad."""
    try:
        data = path.read_bytes()
        listing = read_json_bytes(data, path)
        if not store.anchors.check_marked(key, data, path, listing):
            report.notes.append(f"{path.parent}: unanchored (written before the journal)")
        files = listing.get("files") if isinstance(listing, dict) else None
        if not isinstance(files, dict):
            raise IntegrityError(f"{path} is corrupt: it lists no files.")
        return files
    except MoolaError as exc:
        report.problems.append(str(exc))
        return None


def _check_listing(
    folder: Path,
    files: dict[str, Any],
    own: set[str],
    report: VerifyReport,
    *,
    full: bool,
    skip: tuple[str, ...] = (),
) -> None:
    """Every listed file against its record, and any file the listing does not name
    (besides ``own`` files and the ``skip`` folders, which are checked on their own)."""
    for name, record in files.items():
        problem = check_file(folder / name, record if isinstance(record, dict) else {}, full=full)
        if problem:
            report.problems.append(problem)
    report.problems += _unlisted(folder, {*files, *own}, skip)


def _verify_promoted(store: RunStore, report: VerifyReport, *, full: bool) -> None:
    folders = (
        sorted(p for p in store.promoted_dir.glob("*") if p.is_dir() and not p.name.startswith("."))
        if store.promoted_dir.is_dir()
        else []
    )
    report.checked["promoted models"] = len(folders)
    for folder in folders:
        path = folder / PROMOTED_FILE
        if not path.is_file():
            report.notes.append(f"{folder}: no {PROMOTED_FILE} (promoted before listings)")
            continue
        files = _anchored_listing(store, f"promoted:{folder.name}", path, report)
        if files is not None:
            _check_listing(folder, files, {PROMOTED_FILE}, report, full=full)


def _verify_encoders(root: Path, report: VerifyReport) -> None:
    directory = encoder_dir(root)
    weights = sorted(directory.glob("*.pt")) if directory.is_dir() else []
    report.checked["encoders"] = len(weights)
    anchors = Anchors(root)
    for path in weights:
        try:
            check_encoder_bytes(path)
        except CheckpointError as exc:
            report.problems.append(str(exc))
            continue
        if anchors.expected(f"encoder:{path.stem}") is None:
            report.notes.append(f"encoder {path.name}: unanchored (written before the journal)")
    for card in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        if not card.with_suffix(".pt").is_file():
            report.problems.append(f"{card}: a card without its encoder {card.stem}.pt")


def _anchored_path(root: Path, key: str) -> Path | None:
    """Where the artifact anchored under ``key`` lives (None for an unknown key kind)."""
    kind, _, rest = key.partition(":")
    if kind == "dataset":
        kind_name, _, version = rest.partition("@")
        return root / "data" / kind_name / version
    if kind == "split":
        name, _, version = rest.partition("@")
        return root / "data" / "splits" / name / f"{version}.json"
    if kind == "run":
        return root / "artifacts" / "runs" / rest
    if kind == "promoted":
        return root / "artifacts" / "models" / "promoted" / rest
    if kind == "encoder":
        return root / "artifacts" / "encoders" / f"{rest}.pt"
    if kind == "foundation":  # a foundation card: moola.pretrain.foundation
        return root / "artifacts" / "encoders" / "foundation" / f"{rest}.json"
    if kind == "log":
        return root / rest
    return None


def _verify_journaled_exist(root: Path, report: VerifyReport) -> None:
    """Every artifact the journal says was written is still there (nothing deleted)."""
    for key, digest in Anchors(root).table().items():
        path = _anchored_path(root, key)
        if path is None or ".." in Path(key).parts:
            continue
        if not path.exists():
            report.problems.append(
                f"{path}: missing, but the journal records that {key} was written (deleted?)"
            )
        elif key.startswith("log:") and chain_head(path) != digest:
            report.problems.append(
                f"{path}: does not end with the line the journal recorded last: lines were "
                "removed or the file was replaced"
            )


def _verify_logs(root: Path, report: VerifyReport) -> None:
    logs = [root / RESULTS_FILE]
    for folder in (root / "artifacts", root / JOURNAL_DIR, root / "annotations"):
        if folder.is_dir():
            logs += sorted(folder.glob("*.jsonl"))
    logs = [p for p in logs if p.is_file()]
    report.checked["log files"] = len(logs)
    for path in logs:
        report.problems += verify_log(path)
        head = chain_head(path)
        if head:
            report.chain_heads[str(path.relative_to(root))] = head


def collect_garbage(root: str | Path) -> list[tuple[Path, int]]:
    """Remove temporaries of writes that died (never one in flight); ``(path, bytes)`` each."""
    removed = []
    for path in stale_temporaries(root):
        if path.exists() and not is_in_flight(path):
            removed.append((path, remove_temporary(path)))
    return removed
