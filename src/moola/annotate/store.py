"""Batches and their annotation stores under the data root.

Layout (see ``moola.annotate.model`` for the records)::

    annotations/batches/<name>.json     a Batch, written once (temp + rename), never edited
    annotations/normal/<name>.jsonl     the append-only log of a normal batch
    annotations/review/<name>.jsonl     the append-only log of a review batch
    annotations/blacklist.jsonl         moola.data.blacklist: D-graded spans, forever

Batch names are unique across both kinds (one ``batches`` folder), and a batch's log path
follows from its ``kind``: ``BatchStore`` is opened from a ``Batch``, never from a path,
so a review action cannot land in a normal log or the other way round.

``BatchStore.record`` appends one action after checking it names a window of the batch.
A ``D`` grade first adds the window's span to the blacklist (``moola.data.blacklist``,
fsynced) and only then writes the action's line, so an acknowledged D is always
blacklisted. Undoing a D grade does NOT remove the blacklist entry: the blacklist is
permanent (D means removed forever); the window's grade in the store goes back, but its
bars stay out of every dataset, split and later extraction.

``BatchStore.state`` replays the log: each window's state, the resume position (first
window in batch order without a decision) and progress counts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from moola.annotate.log import AnnotationLog, LogProblem, Replay
from moola.annotate.model import Action, Batch, BatchKind, NewAction, WindowRef, WindowState
from moola.core.atomic import atomic_write_text
from moola.core.errors import ConfigError, IntegrityError
from moola.core.paths import SAFE_NAME, confined
from moola.data.blacklist import BlacklistEntry, add_entries, make_entry

__all__ = [
    "BATCHES_DIR",
    "BatchState",
    "BatchStore",
    "Progress",
    "batch_names",
    "batch_path",
    "blacklist_entry",
    "list_batches",
    "log_path",
    "read_batch",
    "write_batch",
]

BATCHES_DIR = "annotations/batches"
BLACKLIST_REASON = "grade D"


def _check_name(name: str) -> None:
    if not SAFE_NAME.match(str(name)):
        raise ConfigError(
            f"Batch name {name!r} is not allowed: use letters, digits, '_', '-' or '.', "
            "starting with a letter or digit.",
            param="name",
        )


def batch_path(root: str | Path, name: str) -> Path:
    """``annotations/batches/<name>.json`` under the data root ``root``."""
    _check_name(name)
    return confined(root, "annotations", "batches", f"{name}.json", what="batch")


def log_path(root: str | Path, batch: Batch) -> Path:
    """The log of ``batch``: ``annotations/<batch.kind>/<batch.name>.jsonl``."""
    return confined(root, "annotations", batch.kind, f"{batch.name}.jsonl", what="batch log")


def write_batch(root: str | Path, batch: Batch) -> Path:
    """Store ``batch`` (atomically, write-once); returns its path.

    Raises ``ConfigError`` naming the batch when one of that name exists (of either kind).
    """
    path = batch_path(root, batch.name)
    text = batch.model_dump_json(indent=1) + "\n"
    try:
        if path.exists():
            raise FileExistsError(path)
        atomic_write_text(path, text)
    except FileExistsError:
        raise ConfigError(
            f"A batch named {batch.name!r} already exists ({path}); batches are write-once. "
            "Choose another name.",
            param="name",
        ) from None
    return path


def read_batch(root: str | Path, name: str) -> Batch:
    """The stored batch ``name``; ``ConfigError`` listing the known batches when absent,
    ``IntegrityError`` naming the file when it is not a valid batch."""
    path = batch_path(root, name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = ", ".join(_names(root)) or "none yet"
        raise ConfigError(
            f"No annotation batch named {name!r} under {path.parent}. Known batches: {known}.",
            param="batch",
        ) from None
    try:
        batch = Batch.model_validate_json(text)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise IntegrityError(
            f"The batch file {path} is not a valid batch ({where}: {error['msg']}); it was "
            "edited or damaged. Restore it from a backup."
        ) from None
    if batch.name != name:
        raise IntegrityError(f"The batch file {path} holds batch {batch.name!r}, not {name!r}.")
    return batch


def _names(root: str | Path) -> list[str]:
    folder = Path(root) / BATCHES_DIR
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if SAFE_NAME.match(p.stem))


def batch_names(root: str | Path) -> list[str]:
    """Names of the stored batches (both kinds), sorted."""
    return _names(root)


def list_batches(root: str | Path, *, kind: BatchKind | None = None) -> list[Batch]:
    """Stored batches, oldest first (by ``created_at``, then name); only ``kind`` if given."""
    batches = [read_batch(root, name) for name in _names(root)]
    if kind is not None:
        batches = [batch for batch in batches if batch.kind == kind]
    return sorted(batches, key=lambda batch: (batch.created_at, batch.name))


def blacklist_entry(batch: Batch, window: WindowRef, seq: int) -> BlacklistEntry:
    """The blacklist entry a D grade of ``window`` makes: its symbol and bar-time span,
    reason ``"grade D"``, today's date, and a source naming the window id, raw version,
    rows, batch and the action's seq."""
    return make_entry(
        window.symbol,
        window.start_ts,
        window.end_ts,
        BLACKLIST_REASON,
        f"annotate {batch.kind} batch {batch.name}, seq {seq}: window {window.window_id} "
        f"(raw {window.raw}, rows {window.start_row}..{window.end_row})",
    )


class Progress(BaseModel):
    """How far a batch is: windows ``decided`` (labelled and graded, D, or skipped; in
    review: labelled), ``accepted`` (labelled and graded A-C), ``rejected`` (D),
    ``skipped``, out of ``total`` (a window is decided or remaining). The app answers it
    as is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total: int
    decided: int
    accepted: int
    rejected: int
    skipped: int

    @property
    def remaining(self) -> int:
        return self.total - self.decided


@dataclass(frozen=True)
class BatchState:
    """A batch replayed: ``windows`` (one state per window, batch order), ``resume`` (index
    of the first window without a decision; None when every window is decided),
    ``progress``, the log's ``problems`` (lines left out, by number) and its ``actions``."""

    batch: Batch
    windows: tuple[WindowState, ...]
    resume: int | None
    progress: Progress
    problems: tuple[LogProblem, ...]
    actions: tuple[Action, ...]

    def state(self, window_id: str) -> WindowState:
        """The state of ``window_id`` (``KeyError`` naming it when not in the batch)."""
        for state in self.windows:
            if state.window_id == window_id:
                return state
        raise KeyError(f"batch {self.batch.name} has no window {window_id!r}")


class BatchStore:
    """One batch's annotations: record actions, replay them.

    Open with ``BatchStore(root, batch)`` (a ``Batch``) or ``BatchStore.open(root, name)``.
    """

    def __init__(self, root: str | Path, batch: Batch) -> None:
        self.root = Path(root)
        self.batch = batch
        self.log = AnnotationLog(log_path(root, batch))
        self._index = {window.window_id: window for window in batch.windows}
        self._lock = threading.Lock()
        self._replay = Replay()
        self._fed: tuple[int, Action | None] = (0, None)  # actions fed, the last of them

    @classmethod
    def open(cls, root: str | Path, name: str) -> BatchStore:
        return cls(root, read_batch(root, name))

    @property
    def kind(self) -> BatchKind:
        return self.batch.kind

    def __repr__(self) -> str:
        return f"BatchStore({self.batch.kind} batch {self.batch.name!r} at {self.log.path})"

    def window(self, window_id: str) -> WindowRef:
        """The batch's window ``window_id``; ``ConfigError`` naming it and the batch."""
        try:
            return self._index[window_id]
        except KeyError:
            raise ConfigError(
                f"Batch {self.batch.name!r} has no window {window_id!r}.", param="window_id"
            ) from None

    def record(self, action: NewAction) -> Action:
        """Append ``action`` to the batch's log; returns it numbered, once on disk.

        A D grade writes the window's blacklist entry first (permanent: an undo later does
        not remove it). Raises ``ConfigError`` when the window is not in the batch.
        """
        window = self.window(action.window_id)

        def blacklist(numbered: Action) -> None:
            entry = blacklist_entry(self.batch, window, numbered.seq)
            add_entries(self.root, [entry])

        before = blacklist if action.kind == "grade" and action.grade == "D" else None
        return self.log.append(action, before=before)

    def state(self) -> BatchState:
        """The batch replayed from its log (see ``BatchState``).

        Incremental: a log that only grew since the last call (the reader hands back the
        same action objects, then the new ones) replays only its new actions; any other
        change replays the whole log again.
        """
        read = self.log.read()
        with self._lock:
            fed, last = self._fed
            if fed > len(read.actions) or (fed and read.actions[fed - 1] is not last):
                self._replay, fed = Replay(), 0
            self._replay.feed(a for a in read.actions[fed:] if a.window_id in self._index)
            self._fed = (len(read.actions), read.actions[-1] if read.actions else None)
            replayed = self._replay.states
            states = tuple(
                replayed.get(w.window_id) or WindowState(window_id=w.window_id)
                for w in self.batch.windows
            )
        kind = self.batch.kind
        decided = [state.decided(kind) for state in states]
        resume = next((i for i, done in enumerate(decided) if not done), None)
        progress = Progress(
            total=len(states),
            decided=sum(decided),
            accepted=sum(state.accepted for state in states),
            rejected=sum(state.rejected for state in states),
            skipped=sum(state.skipped and not state.rejected for state in states),
        )
        return BatchState(self.batch, states, resume, progress, read.problems, read.actions)
