"""The append-only annotation log: one ``Action`` per line, on disk before it is acknowledged.

Every label, grade, note, skip and undo of a batch is one JSON object on one line of
``annotations/<kind>/<batch>.jsonl`` (``moola.annotate.store`` picks the path). The log is
the truth; a window's state is a replay of its lines (``replay``).

Writing (``AnnotationLog.append``): under an exclusive ``flock`` on the log file, the next
sequence number is one more than the highest ever written (also counting numbers found in
unreadable lines, so a number is never reused across restarts); the whole line is written
with ONE ``os.write`` on an ``O_APPEND`` descriptor, then ``os.fsync``; only then does
``append`` return the numbered ``Action``. A caller acts on an action only after that
(a D grade's blacklist entry is written *before* the line, through ``before``).

Reading (``AnnotationLog.read``) never fails on a bad line and never drops a good one:

- a last line without its newline is a write cut short (a kill or power loss mid-write):
  it was never acknowledged, so it is left out and reported as ``"partial"``; the next
  append first ends that line, so its own line starts fresh and stays readable (the cut
  line, now inside the log, is still reported as ``"partial"``: it starts like an
  appended line and stops before its closing brace);
- any other line that is not a valid ``Action`` (or whose ``seq`` does not increase) is
  reported as ``"corrupt"`` with its line number, and every other line is kept.

The reader returns ``LogRead`` (actions + typed ``LogProblem`` list) for the CLI and app to
show. Why not ``moola.core.chainlog``: its append continues a torn last line instead of
starting a fresh one, and it has no sequence numbers; the annotation log needs both.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from moola.annotate.model import Action, NewAction, WindowState

__all__ = ["AnnotationLog", "LogProblem", "LogRead", "Replay", "replay"]

_SEQ = re.compile(rb'"seq"\s*:\s*(\d+)')
_BLANK = b"\x00 \t\r"  # what a torn write or a power loss may leave
_HEAD = b'{"window_id":'  # how every line append writes begins (pydantic's field order)
_CUT_SHORT = "the JSON object ends early (a write cut short, never acknowledged)"


@dataclass(frozen=True)
class LogProblem:
    """One line of a log that was left out: its 1-based ``line`` number, ``kind``
    (``"partial"``: a last line cut short; ``"corrupt"``: anything else) and why."""

    path: Path
    line: int
    kind: Literal["partial", "corrupt"]
    reason: str

    def __str__(self) -> str:
        what = "cut short (never acknowledged)" if self.kind == "partial" else "unreadable"
        return f"{self.path} line {self.line}: {what}: {self.reason}; left out, other lines kept"


@dataclass(frozen=True)
class LogRead:
    """What one read of a log found: the good ``actions`` in order and the ``problems``."""

    actions: tuple[Action, ...]
    problems: tuple[LogProblem, ...] = ()
    last_seq: int = 0  # highest seq ever written, counting unreadable lines
    lines: int = 0  # complete lines read (a cut-short last line not counted)
    clean_end: bool = True  # the bytes read end with a newline

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Tail:
    """What an appender knows of the file's end (valid while the file size is ``size``)."""

    size: int = -1
    last_seq: int = 0
    ends_clean: bool = True


def _cut_short(raw: bytes, exc: json.JSONDecodeError) -> bool:
    """Whether unparseable ``raw`` is the start of a line ``append`` writes, cut short.

    Every such line starts with ``{"window_id":`` and ends with ``}``; a cut one starts
    like it and stops before its end (or inside a string, which may hold a ``}``).
    """
    line = raw.strip(_BLANK)
    if not (line.startswith(_HEAD) or _HEAD.startswith(line)):
        return False
    return not line.endswith(b"}") or exc.msg.startswith("Unterminated string")


def _parse_line(raw: bytes) -> tuple[Action | None, str | None]:
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start})"
    except json.JSONDecodeError as exc:
        if _cut_short(raw, exc):
            return None, _CUT_SHORT
        return None, f"not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(record, dict):
        return None, f"a JSON {type(record).__name__}, not an object"
    try:
        return Action.model_validate(record), None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "line"
        return None, f"not an annotation action ({where}: {error['msg']})"


def _scan(data: bytes, path: Path, *, first_line: int = 1, last_seq: int = 0) -> LogRead:
    """Scan ``data`` (whole lines from ``first_line`` on; the seq before it ``last_seq``)."""
    pieces = data.split(b"\n")
    tail = pieces.pop()  # b"" when the data ends with a newline
    actions: list[Action] = []
    problems: list[LogProblem] = []
    for number, raw in enumerate(pieces, start=first_line):
        if not raw.strip(_BLANK):
            continue
        action, reason = _parse_line(raw)
        if action is None:
            found = [int(m) for m in _SEQ.findall(raw)]
            last_seq = max([last_seq, *found])
            kind = "partial" if reason == _CUT_SHORT else "corrupt"
            problems.append(LogProblem(path, number, kind, str(reason)))
        elif action.seq <= last_seq:
            problems.append(
                LogProblem(
                    path,
                    number,
                    "corrupt",
                    f"seq {action.seq} does not follow {last_seq} (lines are out of order)",
                )
            )
        else:
            actions.append(action)
            last_seq = action.seq
    if tail.strip(_BLANK):
        found = [int(m) for m in _SEQ.findall(tail)]
        last_seq = max([last_seq, *found])
        problems.append(
            LogProblem(
                path, first_line + len(pieces), "partial", f"{len(tail)} bytes without a newline"
            )
        )
    return LogRead(tuple(actions), tuple(problems), last_seq, len(pieces), not tail)


class AnnotationLog:
    """The append-only log file at ``path`` (created, with its folder, on first append).

    One instance may be shared by the threads of one server; several processes may append
    to one file at once (the ``flock`` orders them). Nothing here rewrites a line.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tail = _Tail()
        self._cache: tuple[tuple[int, int, int], LogRead] | None = None

    def __repr__(self) -> str:
        return f"AnnotationLog({str(self.path)!r})"

    def read(self) -> LogRead:
        """Every good action in order and one ``LogProblem`` per line left out.

        Lines already read by this instance are not parsed again: the file only grows, so
        when it grew past a clean end only the new lines are scanned (a server asks for the
        state after every action). A file that changed otherwise is read whole.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return LogRead(())
        try:
            stat = os.fstat(fd)
            key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            cached = self._cache
            if cached is not None and cached[0] == key:
                return cached[1]
            done = cached[1] if cached is not None else None
            start = cached[0][1] if cached is not None else 0
            if (
                done is None
                or not done.clean_end
                or cached[0][0] != stat.st_ino
                or start > stat.st_size
            ):
                done, start = None, 0
            data = os.pread(fd, stat.st_size - start, start)
        finally:
            os.close(fd)
        if done is None:
            result = _scan(data, self.path)
        else:
            new = _scan(data, self.path, first_line=done.lines + 1, last_seq=done.last_seq)
            result = LogRead(
                done.actions + new.actions,
                done.problems + new.problems,
                new.last_seq,
                done.lines + new.lines,
                new.clean_end,
            )
        self._cache = (key, result)
        return result

    def actions(self) -> tuple[Action, ...]:
        """The good actions (problems ignored; use ``read`` to show them)."""
        return self.read().actions

    def sha256(self) -> str | None:
        """``sha256:<hex>`` of the log's bytes now (None when there is no log yet)."""
        from moola.core.hashing import sha256_file

        return sha256_file(self.path) if self.path.is_file() else None

    def append(
        self,
        action: NewAction,
        *,
        before: Callable[[Action], object] | None = None,
        at: datetime | None = None,
    ) -> Action:
        """Append ``action`` numbered with the next ``seq``; returns it once it is on disk.

        ``before(numbered)`` runs under the log's lock before the line is written (a D
        grade's blacklist entry): if it raises, nothing is written. ``at`` defaults to now.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size != self._tail.size:
                self._tail = self._read_tail(fd, size)
            numbered = Action(
                **action.model_dump(),
                seq=self._tail.last_seq + 1,
                at=at or datetime.now(UTC),
            )
            if before is not None:
                before(numbered)
            line = numbered.model_dump_json().encode() + b"\n"
            data = line if self._tail.ends_clean else b"\n" + line
            written = os.write(fd, data)  # one write of the whole line
            if written != len(data):
                # A short write (disk full) leaves a partial line that readers skip; the
                # action is not acknowledged.
                self._tail = _Tail()
                raise OSError(
                    f"only {written} of {len(data)} bytes of an annotation reached {self.path}"
                )
            os.fsync(fd)
            self._tail = _Tail(size + written, numbered.seq, True)
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)
        return numbered

    def _read_tail(self, fd: int, size: int) -> _Tail:
        data = os.pread(fd, size, 0) if size else b""
        scan = _scan(data, self.path)
        return _Tail(size, scan.last_seq, scan.clean_end)


def _fsync_dir(directory: Path) -> None:
    """Make a new file's directory entry durable too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Replay:
    """``replay`` kept up to date: ``feed`` it the actions that follow the ones it has seen,
    and only the windows those actions touch are folded again (a server replays a long log
    after every append another process makes in a few windows' time, not the log's)."""

    def __init__(self) -> None:
        self._stacks: dict[str, list[Action]] = {}
        self.states: dict[str, WindowState] = {}

    def feed(self, actions: Iterable[Action]) -> None:
        """Apply ``actions`` (in log order, after every action fed before)."""
        touched: set[str] = set()
        for action in actions:
            stack = self._stacks.setdefault(action.window_id, [])
            if action.kind == "undo":
                if stack:
                    stack.pop()
            else:
                stack.append(action)
            touched.add(action.window_id)
        for window_id in touched:
            self.states[window_id] = _fold(window_id, self._stacks[window_id])


def replay(actions: Iterable[Action]) -> dict[str, WindowState]:
    """Each window's state after its actions in order (windows without actions absent).

    Per window, the actions in effect form a stack: label, grade, note and skip push;
    undo pops the latest still in effect (an undo with nothing left to undo is a no-op).
    The state is then the fold of the stack: latest label, grade and note; ``skipped``
    when a skip is later than every label and grade in effect.
    """
    replayed = Replay()
    replayed.feed(actions)
    return replayed.states


def _fold(window_id: str, stack: list[Action]) -> WindowState:
    values: dict[str, object] = {}
    skipped = False
    by: list[str] = []
    for action in stack:
        if action.kind == "skip":
            skipped = True
        elif action.kind == "note":
            values["note"] = action.note or None  # empty text clears the note
        else:
            values[action.kind] = getattr(action, action.kind)
            skipped = False
        if action.by and action.by not in by:
            by.append(action.by)
    return WindowState(
        window_id=window_id,
        label=values.get("label"),  # type: ignore[arg-type]
        grade=values.get("grade"),  # type: ignore[arg-type]
        note=values.get("note"),  # type: ignore[arg-type]
        skipped=skipped,
        seqs=tuple(action.seq for action in stack),
        elapsed_ms=sum(action.elapsed_ms or 0 for action in stack),
        by=tuple(by),
    )
