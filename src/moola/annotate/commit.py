"""Commit a batch's annotations into a new version of a labeled dataset.

``commit_batch(registry, batch_name, into=LABELED)``:

- a **normal** batch: its accepted windows (labelled and graded A-C, undo applied) are added
  to the latest version of ``labeled/LABELED`` (created at v1 when it does not exist):
  the new version holds the previous version's windows plus the new ones;
- a **review** batch: its accepted corrections (a label other than the given one, not
  graded D) change those windows' labels in the latest version of the reviewed dataset
  (``into`` defaults to it); windows graded D leave through the blacklist.

Either way the new version is written through the registry's own writer
(``Registry.write_labeled`` with ``moola.data.windows.labeled_windows_table``, as
``moola.pipeline.labeled_windows`` does), so the table's schema is checked and every window
overlapping the blacklist is left out; the previous version stays (write-once registry,
no backup needed). Accepted windows that overlap a blacklisted span are refused before the
write and named in the result. The manifest's ``transformations`` record the previous
version, the batch, its log's path and SHA-256 at commit time and the sequence numbers of
every action used, so a version can be traced to the keystrokes it came from.

Committing a batch again is a **no-op** when it brings nothing new: windows already in the
dataset (same symbol and bar span) are not added twice, corrections already applied change
nothing, and when nothing is left no version is written and the latest one is returned
with ``created=False``. A batch labelled further after a commit can be committed again: only
its new keepers are added (keepers are merged in increments this way).

A log with unreadable lines is refused (one of them might be an undo), naming the lines,
unless ``skip_corrupt=True``; lines cut short by a crash were never acknowledged and are
ignored.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from moola.annotate.model import Batch, BatchKind, WindowRef, WindowState
from moola.annotate.store import BatchState, BatchStore, log_path, read_batch
from moola.core.errors import ConfigError, IntegrityError, RegistryError
from moola.data._manifest import DatasetRef
from moola.data.blacklist import read_blacklist
from moola.data.registry import LABEL_HORIZON, Registry, parse_ref
from moola.data.windows import labeled_windows_table

__all__ = ["ANNOTATIONS_STEP", "PREVIOUS_STEP", "REVIEW_STEP", "CommitResult", "commit_batch"]

ANNOTATIONS_STEP = "annotations"
REVIEW_STEP = "annotation_review"
PREVIOUS_STEP = "previous_version"
SOURCE_PREFIX = "annotate:"


@dataclass(frozen=True)
class CommitResult:
    """What a commit did.

    ``ref``: the new version (or, when ``created`` is False, the latest one, unchanged).
    ``added``: windows added (normal); ``changed``: labels corrected (review).
    ``already``: accepted window ids already in the dataset (normal) or corrections already
    applied (review); ``blacklisted``: accepted window ids refused for overlapping the
    blacklist; ``missing``: review windows no longer in the dataset; ``windows``: windows in
    ``ref``.
    """

    ref: DatasetRef
    batch: str
    kind: BatchKind
    created: bool
    added: int
    changed: int
    already: tuple[str, ...]
    blacklisted: tuple[str, ...]
    missing: tuple[str, ...]
    windows: int

    def __str__(self) -> str:
        what = (
            f"{self.added} window(s) added"
            if self.kind == "normal"
            else f"{self.changed} label(s) corrected"
        )
        notes = []
        if self.blacklisted:
            notes.append(f"{len(self.blacklisted)} refused: overlap the blacklist")
        if self.already:
            notes.append(f"{len(self.already)} already in the dataset")
        if self.missing:
            notes.append(f"{len(self.missing)} no longer in the dataset")
        tail = f" ({'; '.join(notes)})" if notes else ""
        if not self.created:
            return f"nothing new from batch {self.batch}{tail}; {self.ref} unchanged"
        return f"{self.ref}: {what} from batch {self.batch}{tail}; {self.windows} windows"


def commit_batch(
    registry: Registry,
    batch_name: str,
    *,
    into: str | None = None,
    skip_corrupt: bool = False,
) -> CommitResult:
    """Commit the annotations of batch ``batch_name`` into the labeled dataset ``into``.

    ``into`` is a labeled dataset name (required for a normal batch; a review batch
    defaults to the dataset it reviews). Raises ``ConfigError`` naming ``into`` or the
    batch, ``RegistryError`` when the dataset's windows are over other bars than the
    batch's, ``IntegrityError`` naming the log's unreadable lines.
    """
    batch = read_batch(registry.root, batch_name)
    state = BatchStore(registry.root, batch).state()
    corrupt = [p for p in state.problems if p.kind == "corrupt"]
    if corrupt and not skip_corrupt:
        lines = ", ".join(str(p.line) for p in corrupt[:10])
        raise IntegrityError(
            f"The annotation log {log_path(registry.root, batch)} has unreadable line(s) "
            f"{lines} ({corrupt[0].reason}); one may be an undo, so its accepted windows are "
            "uncertain. Fix or remove the line(s), or commit with skip_corrupt=True to "
            "ignore them.",
            param="skip_corrupt",
        )
    if batch.kind == "review":
        return _commit_review(registry, batch, state, into)
    if into is None:
        raise ConfigError(
            f"Say which labeled dataset batch {batch.name!r} goes into (into=NAME).",
            param="into",
        )
    return _commit_normal(registry, batch, state, _name_only(into))


# ------------------------------------------------------------------ shared helpers
def _name_only(into: str) -> str:
    name, version = parse_ref(into)
    if version is not None:
        raise ConfigError(
            f"into={into!r} names a version; a commit writes the next version of a dataset: "
            f"give its name ({name!r}).",
            param="into",
        )
    return name


def _latest(registry: Registry, name: str) -> DatasetRef | None:
    return registry.resolve("labeled", name) if registry.versions("labeled", name) else None


def _load_windows(registry: Registry, ref: DatasetRef) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(registry.read_file(ref, "windows.parquet")))


def _raw_ref(registry: Registry, batch: Batch) -> DatasetRef:
    try:
        return registry.resolve_text(batch.raw, "raw")
    except RegistryError as exc:
        raise RegistryError(
            f"Batch {batch.name!r} was drawn from {batch.raw}, which is not in the registry "
            f"any more: {exc}"
        ) from None


def _check_same_raw(registry: Registry, ref: DatasetRef, raw: DatasetRef, batch: Batch) -> None:
    meta = registry.meta(ref)
    made_from = meta.get("raw") or {}
    if not made_from:
        raise RegistryError(
            f"{ref} does not hold windows of raw bars (it records no raw dataset), so batch "
            f"{batch.name!r}'s windows of {raw} cannot join it. Commit into another dataset "
            "name (into=...)."
        )
    if made_from.get("content_hash") != raw.content_hash:
        other = f"raw/{made_from.get('name')}@v{made_from.get('version')}"
        raise RegistryError(
            f"{ref} holds windows of {other}, but batch {batch.name!r} holds windows of {raw}; "
            "a labeled dataset's windows point into one raw version. Commit into another "
            "dataset name (into=...)."
        )
    if int(meta.get("length", batch.length)) != batch.length:
        raise ConfigError(
            f"{ref} holds windows of {meta['length']} bars, but batch {batch.name!r} holds "
            f"windows of {batch.length}; one labeled dataset has one window length. Commit "
            "into another dataset name (into=...).",
            param="into",
        )


def _check_text_labels(table: pd.DataFrame, ref: DatasetRef) -> None:
    labels = table["label"]
    if len(labels) and pd.api.types.is_integer_dtype(labels):
        raise RegistryError(
            f"{ref} stores class indices ({sorted(labels.unique().tolist())[:5]}), not the "
            "class names annotations use (consolidation, retracement, neither); commit into "
            "another dataset name."
        )


def _ns(values: Any) -> np.ndarray:
    index = pd.DatetimeIndex(values)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return index.as_unit("ns").asi8


def _span(window: WindowRef) -> tuple[str, int, int]:
    return (
        window.symbol,
        int(pd.Timestamp(window.start_ts).as_unit("ns").value),
        int(pd.Timestamp(window.end_ts).as_unit("ns").value),
    )


def _blacklisted(registry: Registry, windows: list[WindowRef]) -> set[str]:
    if not windows:
        return set()
    mask = read_blacklist(registry.root).mask(
        [w.symbol for w in windows],
        np.array([_span(w)[1] for w in windows], dtype=np.int64),
        np.array([_span(w)[2] for w in windows], dtype=np.int64),
    )
    return {w.window_id for w, hit in zip(windows, mask, strict=True) if hit}


def _log_record(
    registry: Registry, batch: Batch, states: list[WindowState], extra: dict[str, Any]
) -> dict[str, Any]:
    store = BatchStore(registry.root, batch)
    return {
        "batch": batch.name,
        "kind": batch.kind,
        "raw": batch.raw,
        "log": f"annotations/{batch.kind}/{batch.name}.jsonl",
        "log_sha256": store.log.sha256(),
        "seqs": sorted(seq for state in states for seq in state.seqs),
        "windows": [state.window_id for state in states],
        **extra,
    }


def _previous_step(ref: DatasetRef | None) -> list[dict[str, Any]]:
    return [] if ref is None else [{"name": PREVIOUS_STEP, "params": ref.to_dict()}]


# ------------------------------------------------------------------ normal batches
def _commit_normal(registry: Registry, batch: Batch, state: BatchState, into: str) -> CommitResult:
    raw = _raw_ref(registry, batch)
    previous = _latest(registry, into)
    old = None
    if previous is not None:
        _check_same_raw(registry, previous, raw, batch)
        old = _load_windows(registry, previous)
        _check_text_labels(old, previous)
    accepted = [(batch.window(s.window_id), s) for s in state.windows if s.accepted]
    have = set(_row_spans(old)) if old is not None else set()
    already = tuple(w.window_id for w, _ in accepted if _span(w) in have)
    fresh = [(w, s) for w, s in accepted if _span(w) not in have]
    banned = _blacklisted(registry, [w for w, _ in fresh])
    blacklisted = tuple(w.window_id for w, _ in fresh if w.window_id in banned)
    fresh = [(w, s) for w, s in fresh if w.window_id not in banned]
    if not fresh:
        return _nothing_new(registry, batch, into, previous, already, blacklisted)
    bars = registry.load_raw(raw.name, raw.version)
    table = labeled_windows_table(
        bars,
        np.array([w.start_row for w, _ in fresh], dtype=np.int64),
        batch.length,
        [s.label for _, s in fresh],
        grades=[s.grade for _, s in fresh],
        source=f"{SOURCE_PREFIX}{batch.name}",
    )
    _check_rows_match(table, [w for w, _ in fresh], batch, raw)
    if old is not None:
        if LABEL_HORIZON in old.columns:  # a human label describes its own window
            table[LABEL_HORIZON] = table["end_ts"]
        table = _validated(bars, pd.concat([old, table], ignore_index=True), batch.length)
    steps = [
        *_previous_step(previous),
        {
            "name": ANNOTATIONS_STEP,
            "params": _log_record(
                registry,
                batch,
                [s for _, s in fresh],
                {"refused_blacklisted": list(blacklisted), "already_in_dataset": list(already)},
            ),
        },
    ]
    ref = registry.write_labeled(into, raw, table, length=batch.length, transformations=steps)
    return CommitResult(
        ref=ref,
        batch=batch.name,
        kind=batch.kind,
        created=True,
        added=len(fresh),
        changed=0,
        already=already,
        blacklisted=blacklisted,
        missing=(),
        windows=int(registry.meta(ref)["windows"]),
    )


def _check_rows_match(
    table: pd.DataFrame, windows: list[WindowRef], batch: Batch, raw: DatasetRef
) -> None:
    """The batch's rows must still be the bars it recorded (same raw version, same times)."""
    got = _ns(table["start_ts"])
    for window, start in zip(windows, got, strict=True):
        if int(start) != _span(window)[1]:
            raise IntegrityError(
                f"Window {window.window_id} of batch {batch.name!r} starts at row "
                f"{window.start_row} of {raw}, but that bar opens at "
                f"{pd.Timestamp(int(start), tz='UTC')}, not {window.start_ts}; the batch does "
                "not describe these bars."
            )


def _nothing_new(
    registry: Registry,
    batch: Batch,
    into: str,
    previous: DatasetRef | None,
    already: tuple[str, ...],
    blacklisted: tuple[str, ...],
    missing: tuple[str, ...] = (),
) -> CommitResult:
    if previous is None:
        refused = f" ({len(blacklisted)} overlap the blacklist)" if blacklisted else ""
        raise ConfigError(
            f"Batch {batch.name!r} has no accepted annotations to commit{refused}: a window "
            "is accepted when it is labelled and graded A, B or C. labeled/"
            f"{into} was not created.",
            param="batch",
        )
    return CommitResult(
        ref=previous,
        batch=batch.name,
        kind=batch.kind,
        created=False,
        added=0,
        changed=0,
        already=already,
        blacklisted=blacklisted,
        missing=missing,
        windows=int(registry.meta(previous)["windows"]),
    )


# ------------------------------------------------------------------ review batches
def _commit_review(
    registry: Registry, batch: Batch, state: BatchState, into: str | None
) -> CommitResult:
    reviewed_name, _ = parse_ref(batch.labeled or "")
    reviewed = registry.resolve_text(batch.labeled or "", "labeled")
    target = _name_only(into) if into is not None else reviewed_name
    previous = _latest(registry, target)
    base_ref = previous or reviewed
    raw = _raw_ref(registry, batch)
    _check_same_raw(registry, base_ref, raw, batch)
    table = _load_windows(registry, base_ref)
    _check_text_labels(table, base_ref)
    corrections = [
        (batch.window(s.window_id), s)
        for s in state.windows
        if s.label is not None
        and not s.rejected
        and s.label != batch.window(s.window_id).given_label
    ]
    banned = _blacklisted(registry, [w for w, _ in corrections])
    blacklisted = tuple(w.window_id for w, _ in corrections if w.window_id in banned)
    corrections = [(w, s) for w, s in corrections if w.window_id not in banned]
    rows = {span: i for i, span in enumerate(_row_spans(table))}
    labels = table["label"].astype("string").copy()
    grades = table["grade"].astype("string").copy()
    sources = table["source"].astype("string").copy()
    already, missing, used, changes = [], [], [], []
    for window, state_ in corrections:
        row = rows.get(_span(window))
        if row is None:
            missing.append(window.window_id)
        elif labels.iloc[row] == state_.label:
            already.append(window.window_id)
        else:
            changes.append(
                {"window_id": window.window_id, "from": str(labels.iloc[row]), "to": state_.label}
            )
            labels.iloc[row] = state_.label
            if state_.grade is not None:
                grades.iloc[row] = state_.grade
            sources.iloc[row] = f"{SOURCE_PREFIX}{batch.name}"
            used.append(state_)
    if not used:
        return _nothing_new(
            registry, batch, target, base_ref, tuple(already), blacklisted, tuple(missing)
        )
    length = int(registry.meta(base_ref)["length"])
    bars = registry.load_raw(raw.name, raw.version)
    table = _validated(bars, table.assign(label=labels, grade=grades, source=sources), length)
    steps = [
        *_previous_step(base_ref),
        {
            "name": REVIEW_STEP,
            "params": _log_record(
                registry,
                batch,
                used,
                {
                    "reviewed": reviewed.to_dict(),
                    "source_run": batch.source_run,
                    "corrections": changes,
                    "refused_blacklisted": list(blacklisted),
                    "not_in_dataset": missing,
                },
            ),
        },
    ]
    ref = registry.write_labeled(target, raw, table, length=length, transformations=steps)
    return CommitResult(
        ref=ref,
        batch=batch.name,
        kind=batch.kind,
        created=True,
        added=0,
        changed=len(used),
        already=tuple(already),
        blacklisted=blacklisted,
        missing=tuple(missing),
        windows=int(registry.meta(ref)["windows"]),
    )


def _validated(bars: pd.DataFrame, table: pd.DataFrame, length: int) -> pd.DataFrame:
    """``table`` rebuilt by ``labeled_windows_table`` over ``bars``: every row's start,
    symbol, label, grade and source checked, times taken from the bars themselves."""
    out = labeled_windows_table(
        bars,
        table["start"].to_numpy(np.int64),
        length,
        table["label"].astype("string"),
        grades=[None if pd.isna(g) else str(g) for g in table["grade"]],
        source=[str(s) for s in table["source"]],
    )
    if LABEL_HORIZON in table.columns:
        out[LABEL_HORIZON] = table[LABEL_HORIZON].to_numpy()
    return out


def _row_spans(table: pd.DataFrame) -> list[tuple[str, int, int]]:
    """Each row's (symbol, start ns, end ns): a window's identity by bar span."""
    return list(
        zip(
            table["symbol"].astype(str),
            _ns(table["start_ts"]).tolist(),
            _ns(table["end_ts"]).tolist(),
            strict=True,
        )
    )
