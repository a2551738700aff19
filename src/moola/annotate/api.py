"""What the web app's request handlers call: batches, windows with their bars, actions.

The handlers in ``moola.annotate.app`` only parse the request and call one method of
``Annotations``; everything else happens here or in the library below:

- batches are opened through ``moola.annotate.store.BatchStore`` and kept (write-once);
- a batch's raw bars are loaded **once** (``Registry.load_raw``, verified) and kept as
  plain numpy columns, so serving a window is a slice of arrays (well under 20 ms);
- the batch's state is the store's replay of its log (``BatchStore.state``), brought up
  to date only when the log file changed (another tab or process may append), by
  replaying just the new lines: cheap enough to stay in the request, on the event loop;
- an action goes through ``BatchStore.record`` (a D grade writes its blacklist entry
  before the action is acknowledged), then the state is replayed.

The response models here are what FastAPI documents in the OpenAPI schema.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from moola.annotate.model import Action, NewAction, WindowRef, WindowState
from moola.annotate.stats import AnnotationStats, annotation_stats
from moola.annotate.store import (
    BatchState,
    BatchStore,
    Progress,
    batch_path,
    list_batches,
    read_batch,
)
from moola.core.errors import ConfigError, RegistryError
from moola.data.registry import Registry, parse_ref

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ActionResult",
    "Annotations",
    "BarColumns",
    "BatchSummary",
    "WindowView",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class BatchSummary(BaseModel):
    """A stored batch as the batch list shows it."""

    model_config = _FROZEN

    name: str
    kind: Literal["normal", "review"]
    raw: str
    length: int
    context: int
    windows: int
    created_at: datetime
    strategy: str
    source_run: str | None
    labeled: str | None
    progress: Progress


_COPIED = BatchSummary.model_fields.keys() - {"windows", "progress"}
"""The fields a summary copies from its ``Batch``."""


class BarColumns(BaseModel):
    """Bars as columns (compact JSON): ``time`` is the bar's UTC open time in seconds."""

    model_config = _FROZEN

    time: list[int]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float]


class WindowView(BaseModel):
    """One window to label: its reference, its bars with ``context_before`` bars before and
    ``context_after`` after it (fewer at the start or end of the symbol's bars), its current
    state (``decided``: whether the annotator is done with it) and the batch's progress.
    ``resume`` is the first undecided window's index (None: all decided)."""

    model_config = _FROZEN

    batch: str
    kind: Literal["normal", "review"]
    index: int
    total: int
    window: WindowRef
    bars: BarColumns
    context_before: int
    context_after: int
    state: WindowState
    decided: bool
    progress: Progress
    resume: int | None
    problems: list[str]


class ActionResult(BaseModel):
    """The action as logged (on disk), the window's new state (``decided``: done with it),
    the batch's progress and ``next_index``: the next undecided window after this one
    (wrapping), None when all are decided."""

    model_config = _FROZEN

    action: Action
    state: WindowState
    decided: bool
    progress: Progress
    next_index: int | None
    message: str = ""


@dataclass
class _Bars:
    """A raw version's bars as numpy columns (loaded once per raw version)."""

    time: np.ndarray
    symbol: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def of(cls, bars: pd.DataFrame) -> _Bars:
        stamps = bars["timestamp"]
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        seconds = stamps.to_numpy(dtype="datetime64[s]").astype(np.int64)
        return cls(
            time=seconds,
            symbol=bars["symbol"].astype(str).to_numpy(),
            **{c: bars[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")},
            volume=bars["volume"].to_numpy(dtype=np.float64),
        )

    def around(self, window: WindowRef, context: int) -> tuple[BarColumns, int, int]:
        """The window's rows with up to ``context`` rows of the same symbol either side."""
        first, last = window.start_row, window.end_row
        if last >= len(self.time) or self.symbol[first] != window.symbol:
            raise RegistryError(
                f"window {window.window_id} names rows {first}..{last} of {window.raw}, which "
                "do not hold its bars: the batch was made from other bars."
            )
        lo, hi = max(0, first - context), min(len(self.time) - 1, last + context)
        same = self.symbol[lo : hi + 1] == window.symbol
        if not same.all():  # another symbol's bars at an edge: keep this symbol's run only
            inside = np.flatnonzero(same)
            lo, hi = lo + int(inside[0]), lo + int(inside[-1])
        rows = slice(lo, hi + 1)
        return (
            BarColumns(
                time=self.time[rows].tolist(),
                open=self.open[rows].tolist(),
                high=self.high[rows].tolist(),
                low=self.low[rows].tolist(),
                close=self.close[rows].tolist(),
                volume=self.volume[rows].tolist(),
            ),
            first - lo,
            hi - last,
        )


@dataclass
class _Open:
    """A batch being served: its store, its replayed state with the log file's (size,
    mtime) when replayed. Its bars are the raw version's, loaded on its first window."""

    store: BatchStore
    index: dict[str, int]
    state: BatchState | None = None
    stamp: tuple[int, int] | None = None


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_size, info.st_mtime_ns


class Annotations:
    """The app's access to the annotation stores under ``root`` (one per server).

    Thread-safe: handlers run on the event loop and in a thread pool, so one lock guards
    the caches; appends are ordered by the log's own file lock, outside that lock.
    """

    def __init__(self, root: str | Path, *, by: str = "") -> None:
        self.root = Path(root)
        self.registry = Registry(self.root)
        self.by = by
        self._lock = threading.RLock()
        self._open: dict[str, _Open] = {}
        self._bars: dict[str, _Bars] = {}

    # ---------------------------------------------------------------- batches
    def batches(self) -> list[BatchSummary]:
        """Every stored batch, oldest first, with its progress."""
        return [self._summary(self._batch(batch.name)) for batch in list_batches(self.root)]

    def batch(self, name: str) -> BatchSummary:
        """One batch's summary; ``ConfigError`` naming it when there is none."""
        return self._summary(self._batch(name))

    def _summary(self, opened: _Open) -> BatchSummary:
        batch = opened.store.batch
        assert opened.state is not None
        copied = batch.model_dump(
            include=BatchSummary.model_fields.keys() - {"windows", "progress"}
        )
        return BatchSummary(**copied, windows=len(batch.windows), progress=opened.state.progress)

    def _batch(self, name: str) -> _Open:
        """The opened batch ``name``: read, its bars loaded, its log replayed (cached)."""
        with self._lock:
            opened = self._open.get(name)
            if opened is None:
                if not batch_path(self.root, name).is_file():
                    try:
                        read_batch(self.root, name)  # its error lists the known batches
                    except ConfigError as exc:
                        raise RegistryError(str(exc), param="batch") from None
                store = BatchStore.open(self.root, name)
                opened = _Open(
                    store=store,
                    index={w.window_id: i for i, w in enumerate(store.batch.windows)},
                )
                self._open[name] = opened
            self._refresh(opened)
            return opened

    def loaded(self, name: str) -> bool:
        """Whether batch ``name`` is open with its bars in memory (serving it reads no
        bars from disk; its log is re-read only if it changed)."""
        opened = self._open.get(name)
        return opened is not None and opened.store.batch.raw in self._bars

    def _raw_bars(self, raw: str) -> _Bars:
        if raw not in self._bars:
            name, version = parse_ref(raw)
            self._bars[raw] = _Bars.of(self.registry.load_raw(name, version))
        return self._bars[raw]

    def _refresh(self, opened: _Open) -> None:
        """Replay the log again if its file changed since the last replay (another tab or
        process may have appended)."""
        stamp = _stamp(opened.store.log.path)
        if opened.state is None or stamp != opened.stamp:
            opened.state = opened.store.state()
            opened.stamp = stamp

    # ---------------------------------------------------------------- windows
    def _state(self, opened: _Open, index: int) -> tuple[WindowState, bool]:
        assert opened.state is not None
        state = opened.state.windows[index]
        return state, state.decided(opened.store.kind)

    def _next_undecided(self, opened: _Open, after: int) -> int | None:
        """The first undecided window after ``after`` (wrapping round), or None."""
        assert opened.state is not None
        states, kind = opened.state.windows, opened.store.kind
        for step in range(1, len(states) + 1):
            i = (after + step) % len(states)
            if not states[i].decided(kind):
                return i
        return None

    def window(self, name: str, index: int | None = None) -> WindowView:
        """Window ``index`` of batch ``name`` (None: where the annotator stopped, the first
        undecided window, or the last one when all are decided)."""
        with self._lock:
            opened = self._batch(name)
            state = opened.state
            assert state is not None
            batch = opened.store.batch
            windows = batch.windows
            if not windows:
                raise ConfigError(
                    f"batch {name!r} holds no windows: nothing to label.", param="batch"
                )
            if index is None:
                index = state.resume if state.resume is not None else len(windows) - 1
            if not 0 <= index < len(windows):
                raise RegistryError(
                    f"index {index} is not a window of batch {name!r} (0..{len(windows) - 1}).",
                    param="index",
                )
            window = windows[index]
            raw_bars = self._raw_bars(batch.raw)  # loaded once per raw version, then kept
            bars, before, after = raw_bars.around(window, batch.context)
            current, decided = self._state(opened, index)
            return WindowView(
                batch=batch.name,
                kind=batch.kind,
                index=index,
                total=len(windows),
                window=window,
                bars=bars,
                context_before=before,
                context_after=after,
                state=current,
                decided=decided,
                progress=state.progress,
                resume=state.resume,
                problems=[str(problem) for problem in state.problems],
            )

    # ---------------------------------------------------------------- actions
    def act(self, name: str, action: NewAction) -> ActionResult:
        """Append ``action`` to batch ``name``'s log (on disk when this returns; a D grade's
        blacklist entry before it) and return the window's new state."""
        opened = self._batch(name)
        if self.by and not action.by:
            action = action.model_copy(update={"by": self.by})
        # Outside the cache lock: the log's own file lock orders appends, and windows are
        # served meanwhile instead of waiting for this action's fsync.
        logged = opened.store.record(action)
        with self._lock:
            self._refresh(opened)
            assert opened.state is not None
            index = opened.index[action.window_id]
            current, decided = self._state(opened, index)
            message = ""
            if action.kind == "grade" and action.grade == "D":
                message = f"window {index + 1} graded D: removed and blacklisted"
            return ActionResult(
                action=logged,
                state=current,
                decided=decided,
                progress=opened.state.progress,
                next_index=self._next_undecided(opened, index),
                message=message,
            )

    # ---------------------------------------------------------------- others
    def blacklist(self) -> list[dict[str, Any]]:
        """Every blacklisted span (``moola.data.blacklist``), oldest first."""
        from moola.data.blacklist import read_blacklist

        return [entry.model_dump() for entry in read_blacklist(self.root).entries]

    def stats(self) -> AnnotationStats:
        """Keeper rates, balance, speed and agreement (``moola.annotate.stats``)."""
        return annotation_stats(self.root)
