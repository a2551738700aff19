"""The annotation vocabulary: a window to label, a batch of them, and one annotator action.

These frozen models are what the store writes (``annotations/batches/<name>.json``), what
the append-only log holds (one ``Action`` per line of ``annotations/<kind>/<batch>.jsonl``),
what the web API sends and receives, and what commit and stats read. They carry no I/O.

- ``WindowRef``: one candidate window of a raw dataset version, by bar rows *and* by bar
  times (the blacklist and overlap checks use times, which hold across raw versions), with
  the weak-label suggestion, an uncertainty score for active learning and, in review, the
  label given before and the model's probabilities.
- ``Batch``: the windows shown together, write-once. ``kind`` is ``"normal"`` (new labels)
  or ``"review"`` (corrections of a labeled dataset): it decides which store the batch's
  log lives in, so normal and review annotations can never be mixed.
- ``NewAction``: what an annotator does (label, grade, note, skip, undo) on one window;
  ``Action``: the same once appended, with its sequence number and UTC time.
- ``WindowState``: a window's current state after replaying its actions (undo applied).

Times are timezone-aware UTC ``datetime`` values (a naive time is read as UTC), written as
ISO 8601 in JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from moola.core.paths import SAFE_NAME

__all__ = [
    "ACCEPTED_GRADES",
    "ACTION_KINDS",
    "GRADES",
    "LABELS",
    "Action",
    "ActionKind",
    "Batch",
    "BatchKind",
    "Grade",
    "Label",
    "NewAction",
    "WindowRef",
    "WindowState",
    "make_window_id",
]

Label = Literal["consolidation", "retracement", "neither"]
Grade = Literal["A", "B", "C", "D"]
ActionKind = Literal["label", "grade", "note", "skip", "undo"]
BatchKind = Literal["normal", "review"]

LABELS: tuple[str, ...] = ("consolidation", "retracement", "neither")
GRADES: tuple[str, ...] = ("A", "B", "C", "D")
ACCEPTED_GRADES: frozenset[str] = frozenset({"A", "B", "C"})
"""Grades whose labelled windows become training data (D: removed and blacklisted)."""
ACTION_KINDS: tuple[str, ...] = ("label", "grade", "note", "skip", "undo")


def _utc(value: Any) -> Any:
    """A datetime (or ISO text) as an aware UTC datetime; naive means UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value  # let pydantic report it
    if isinstance(value, datetime):
        if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
            value = value.to_pydatetime()
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def make_window_id(raw: str, symbol: str, start_ts: datetime, length: int) -> str:
    """The stable id of a window: ``"{raw}:{symbol}:{start:%Y%m%dT%H%M%S}:{length}"``.

    ``raw`` is the resolved ``name@vN``; the same window of the same raw version gets the
    same id in every run. (Overlap is judged by bar times, never by comparing ids.)
    """
    start = _utc(start_ts)
    return f"{raw}:{symbol}:{start:%Y%m%dT%H%M%S}:{int(length)}"


class WindowRef(BaseModel):
    """One window of ``length`` bars of the raw version ``raw`` (``name@vN``).

    ``start_row``/``end_row`` are the inclusive row positions in that raw table;
    ``start_ts``/``end_ts`` the UTC open times of its first and last bar. ``suggestion`` is
    a weak label (and ``suggestion_source`` where it came from), ``score`` a predictive
    uncertainty (active learning; higher means less sure), ``given_label`` and
    ``model_proba`` the current label and the model's class probabilities (review batches).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_id: str = Field(min_length=1)
    raw: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    start_row: int = Field(ge=0)
    end_row: int = Field(ge=0)
    start_ts: datetime
    end_ts: datetime
    length: int = Field(ge=1)
    suggestion: str | None = None
    suggestion_source: str | None = None
    score: float | None = None
    given_label: str | None = None
    model_proba: dict[str, float] | None = None

    _times = field_validator("start_ts", "end_ts", mode="before")(_utc)

    @model_validator(mode="after")
    def _consistent(self) -> WindowRef:
        if self.end_row - self.start_row + 1 != self.length:
            raise ValueError(
                f"window {self.window_id}: rows {self.start_row}..{self.end_row} are "
                f"{self.end_row - self.start_row + 1} bars, not length {self.length}"
            )
        if self.end_ts < self.start_ts:
            raise ValueError(f"window {self.window_id}: end_ts is before start_ts")
        return self


class Batch(BaseModel):
    """Windows extracted (or picked for review) together, under one write-once ``name``.

    ``context``: bars shown before and after each window. ``strategy``/``params``: how the
    windows were drawn (``random``, ``uncertainty``, ``review``...) and with what;
    ``source_run``: the run whose predictions ranked them; ``labeled``: for a review batch,
    the labeled dataset (``name@vN``) being reviewed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=SAFE_NAME.pattern)
    kind: BatchKind = "normal"
    raw: str = Field(min_length=1)
    length: int = Field(ge=1)
    context: int = Field(default=0, ge=0)
    windows: tuple[WindowRef, ...]
    created_at: datetime
    strategy: str = "random"
    params: dict[str, Any] = Field(default_factory=dict)
    source_run: str | None = None
    labeled: str | None = None

    _created = field_validator("created_at", mode="before")(_utc)

    @model_validator(mode="after")
    def _consistent(self) -> Batch:
        seen: set[str] = set()
        for window in self.windows:
            if window.window_id in seen:
                raise ValueError(f"batch {self.name}: window {window.window_id} appears twice")
            seen.add(window.window_id)
            if window.length != self.length:
                raise ValueError(
                    f"batch {self.name}: window {window.window_id} has length {window.length}, "
                    f"the batch {self.length}"
                )
        if self.kind == "review" and not self.labeled:
            raise ValueError(f"review batch {self.name} must name the labeled dataset reviewed")
        return self

    def window(self, window_id: str) -> WindowRef:
        """The window ``window_id`` of this batch; ``KeyError`` naming it if absent."""
        for window in self.windows:
            if window.window_id == window_id:
                return window
        raise KeyError(f"batch {self.name} has no window {window_id!r}")


class NewAction(BaseModel):
    """One annotator action on one window, before the log numbers it.

    ``label`` carries ``label``, ``grade`` carries ``grade``, ``note`` carries ``note``
    (empty text clears the note); ``skip`` passes the window over; ``undo`` reverts the
    window's latest action still in effect (repeatable). ``elapsed_ms`` is the time spent
    on the window for this action (labelling speed); ``by`` who did it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_id: str = Field(min_length=1)
    kind: ActionKind
    label: Label | None = None
    grade: Grade | None = None
    note: str | None = None
    elapsed_ms: int | None = Field(default=None, ge=0)
    by: str = ""

    @model_validator(mode="after")
    def _fields_match_kind(self) -> NewAction:
        needs = {"label": "label", "grade": "grade", "note": "note"}
        for kind, field in needs.items():
            value = getattr(self, field)
            if self.kind == kind and value is None:
                raise ValueError(f"a {kind} action needs {field}")
            if self.kind != kind and value is not None:
                raise ValueError(f"a {self.kind} action takes no {field}")
        return self


class Action(NewAction):
    """A ``NewAction`` as the log holds it: ``seq`` (1, 2, ... in log order, never reused)
    and ``at`` (UTC time it was appended)."""

    seq: int = Field(ge=1)
    at: datetime

    _at = field_validator("at", mode="before")(_utc)


class WindowState(BaseModel):
    """A window's state after replaying its actions in order (undo applied).

    ``label``/``grade``/``note`` are the latest in effect; ``skipped`` is true when a skip
    is the latest of skip/label/grade in effect; ``seqs`` are the sequence numbers of the
    actions in effect (what a commit records); ``elapsed_ms`` sums their times.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_id: str
    label: Label | None = None
    grade: Grade | None = None
    note: str | None = None
    skipped: bool = False
    seqs: tuple[int, ...] = ()
    elapsed_ms: int = 0
    by: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        """Labelled and graded A-C: a keeper that commit turns into training data."""
        return self.label is not None and self.grade in ACCEPTED_GRADES

    @property
    def rejected(self) -> bool:
        """Graded D: removed and blacklisted."""
        return self.grade == "D"

    def decided(self, kind: BatchKind = "normal") -> bool:
        """Whether the annotator is done with this window (the resume position skips it).

        Skipped or graded D; otherwise, in a normal batch, labelled *and* graded; in a
        review batch, labelled (confirming or correcting the given label).
        """
        if self.skipped or self.rejected:
            return True
        if kind == "review":
            return self.label is not None
        return self.label is not None and self.grade is not None
