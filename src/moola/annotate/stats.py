"""What the annotation history says: keeper rates, balance, speed and agreement.

Read from the stores under the data root (every batch's log replayed) and the registry's
labeled datasets; nothing here writes.

- **Keeper rate** = accepted / judged, over *normal* batches: a window is judged when it
  has a decision other than a skip (labelled and graded, or graded D), and accepted when
  labelled and graded A-C. Skipped windows were not judged and count in neither. By
  intraday session (the session of the window's first bar, ``session_of``) and by batch.
  ``keeper_rates(root)`` gives the per-session rates extraction weighs new batches by;
  it is empty when there is no history (extraction then draws uniformly).
- **Balance**: class and grade counts of every version of every labeled dataset (from each
  version's ``meta.json``).
- **Speed**: per batch and overall, the median time spent per window (the sum of
  ``elapsed_ms`` over all of a window's actions, undone ones included: the time was spent)
  and windows judged per hour of that time.
- **Agreement**: Cohen's kappa (scikit-learn) over windows (same symbol and bar span)
  labelled by two raters, a rater being one person in one normal batch: every pair of
  raters' final labels of one window is one observation. Review batches are left out:
  their windows were picked because a model doubts them.

Session names come from ``moola.features.sessions.FUTURES_SUB_SESSIONS`` (the CME Globex
day by New York wall clock: ``asia`` 18:00-03:00, ``europe`` 03:00-09:30, ``us_morning``
09:30-12:00, ``us_afternoon`` 12:00-17:00, and ``break`` for 17:00-18:00), the parts of
the day in which the users saw keeper rates differ.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from moola.annotate.log import replay
from moola.annotate.model import Batch, BatchKind, WindowState
from moola.annotate.store import BatchStore, list_batches
from moola.features.sessions import FUTURES_SUB_SESSIONS

__all__ = [
    "SESSIONS",
    "AnnotationStats",
    "Balance",
    "Kappa",
    "KeeperRate",
    "Speed",
    "annotation_stats",
    "keeper_rates",
    "session_codes",
    "session_of",
]

_NAMES = {
    "sub_session_a": "asia",
    "sub_session_b": "europe",
    "sub_session_c": "us_morning",
    "sub_session_d": "us_afternoon",
}
_BREAK = "break"
SESSIONS: tuple[str, ...] = (*(_NAMES[c] for c, _, _ in FUTURES_SUB_SESSIONS), _BREAK)
"""Every session name ``session_of`` returns."""


_BUCKET_NS = 30 * 60 * 10**9
_ON_GRID = all(m % 30 == 0 for _, start, end in FUTURES_SUB_SESSIONS for m in (start, end))
"""Every session boundary is on the half-hour grid of the New York wall clock."""
_WHOLE_HOURS_FROM = int(np.datetime64("1900-01-01", "ns").astype(np.int64))
"""From here on New York is a whole number of hours from UTC (before 1883: local mean time)."""


def _utc_ns(times: Any) -> np.ndarray:
    """``times`` as int64 ns since the epoch, UTC (naive values are UTC)."""
    values = np.asarray(times) if not isinstance(times, pd.Index | pd.Series) else times
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        return values.astype("datetime64[ns]").view(np.int64)
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("ns").asi8


def _by_clock(ns: np.ndarray) -> np.ndarray:
    """Each time's session code read off the New York wall clock (the definition; slow
    on many times)."""
    index = pd.DatetimeIndex(ns.astype("datetime64[ns]")).tz_localize("UTC")
    local = index.tz_convert("America/New_York")
    minute = np.asarray(local.hour * 60 + local.minute, dtype=np.int64)
    out = np.full(len(minute), SESSIONS.index(_BREAK), dtype=np.int8)
    for column, start, end in FUTURES_SUB_SESSIONS:
        inside = (
            (minute >= start) & (minute < end)
            if start < end
            else (minute >= start) | (minute < end)
        )
        out[inside] = SESSIONS.index(_NAMES[column])
    return out


def session_codes(times: Any) -> np.ndarray:
    """The intraday session of each bar open time in ``times``, as an int8 index into
    ``SESSIONS`` (``session_of`` gives the names).

    ``times``: datetimes or timestamps (naive ones are UTC), a ``DatetimeIndex``, or int64
    ns since the epoch (UTC).

    Fast on many times: every session boundary is on the half-hour grid of New York's
    clock, which is a whole number of hours from UTC and changes (daylight saving) on a
    whole UTC hour, so all times in one UTC half-hour share a session. The wall clock is
    read once per half-hour bucket (a table over the buckets' range, or over the distinct
    buckets when they are sparse) instead of once per time.
    """
    ns = _utc_ns(times)
    if not len(ns) or not _ON_GRID or int(ns.min()) < _WHOLE_HOURS_FROM:
        return _by_clock(ns)
    buckets = ns // _BUCKET_NS
    first = int(buckets.min())
    span = int(buckets.max()) - first + 1
    if span <= 2 * len(ns) + 4096:
        table = _by_clock((first + np.arange(span, dtype=np.int64)) * _BUCKET_NS)
        return table[buckets - first]
    distinct, inverse = np.unique(buckets, return_inverse=True)
    return _by_clock(distinct * _BUCKET_NS)[inverse.reshape(-1)]


def session_of(times: Any) -> np.ndarray:
    """The intraday session name of each bar open time in ``times`` (a string array of
    ``SESSIONS`` names; see ``session_codes`` for the accepted times)."""
    return np.asarray(SESSIONS)[session_codes(times)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KeeperRate(_Frozen):
    """``accepted`` of ``judged`` windows; ``rate`` None when nothing was judged."""

    accepted: int
    judged: int
    rate: float | None


class Balance(_Frozen):
    """Class and grade counts of one labeled dataset version (``name@vN``)."""

    dataset: str
    windows: int
    classes: dict[str, int]
    grades: dict[str, int]


class Speed(_Frozen):
    """Median time per window (seconds) and windows judged per hour of annotation time."""

    windows: int
    median_s: float | None
    windows_per_hour: float | None


class Kappa(_Frozen):
    """Cohen's kappa over ``pairs`` (two raters' labels of one window); ``agreement`` is
    the plain share of equal labels. None when fewer than two pairs or kappa is undefined
    (every label the same)."""

    pairs: int
    windows: int
    agreement: float | None
    kappa: float | None


class AnnotationStats(_Frozen):
    """Everything ``annotation_stats`` finds; ``to_dict`` gives JSON-ready values."""

    keeper_by_session: dict[str, KeeperRate]
    keeper_by_batch: dict[str, KeeperRate]
    balance: tuple[Balance, ...]
    speed_by_batch: dict[str, Speed]
    speed: Speed
    agreement: Kappa
    log_problems: dict[str, int]  # batch -> lines left out of its log

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: mappings of mappings where a table fits (the CLI prints them)."""
        dumped = self.model_dump(mode="json")
        dumped["balance"] = {b["dataset"]: _flat(b) for b in dumped["balance"]}
        return dumped


def _flat(balance: dict[str, Any]) -> dict[str, Any]:
    row = {"windows": balance["windows"]}
    row.update({f"class {k}": v for k, v in balance["classes"].items()})
    row.update({f"grade {k}": v for k, v in balance["grades"].items()})
    return row


# ------------------------------------------------------------------ reading the stores
def _replayed(root: str | Path, batches: Iterable[Batch]) -> list[tuple[BatchStore, Any]]:
    return [(store, store.state()) for store in (BatchStore(root, b) for b in batches)]


def _judged(state: WindowState, kind: BatchKind = "normal") -> bool:
    return state.decided(kind) and not state.skipped


def _rate(accepted: int, judged: int) -> KeeperRate:
    return KeeperRate(
        accepted=accepted, judged=judged, rate=(accepted / judged) if judged else None
    )


def _keepers(replayed: list[tuple[BatchStore, Any]]) -> tuple[dict, dict]:
    by_session: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_batch: dict[str, KeeperRate] = {}
    for store, state in replayed:
        batch = store.batch
        sessions = session_of([w.start_ts for w in batch.windows]) if batch.windows else []
        accepted = judged = 0
        for window_state, session in zip(state.windows, sessions, strict=True):
            if not _judged(window_state):
                continue
            judged += 1
            accepted += window_state.accepted
            by_session[str(session)][0] += window_state.accepted
            by_session[str(session)][1] += 1
        by_batch[batch.name] = _rate(accepted, judged)
    sessions_out = {s: _rate(*by_session[s]) for s in SESSIONS if s in by_session}
    return sessions_out, by_batch


def keeper_rates(root: str | Path) -> dict[str, float]:
    """Keeper rate per intraday session over every normal batch judged so far.

    Only sessions with at least one judged window appear; empty when there is no history
    (weigh uniformly then).
    """
    replayed = _replayed(root, list_batches(root, kind="normal"))
    by_session, _ = _keepers(replayed)
    return {s: k.rate for s, k in by_session.items() if k.rate is not None}


def _balance(root: str | Path) -> tuple[Balance, ...]:
    from moola.data.registry import Registry

    registry = Registry(root)
    out = []
    for name in registry.names("labeled"):
        for version in registry.versions("labeled", name):
            meta = registry.meta(registry.resolve("labeled", name, version))
            out.append(
                Balance(
                    dataset=f"{name}@v{version}",
                    windows=int(meta.get("windows", 0)),
                    classes={str(k): int(v) for k, v in meta.get("class_counts", {}).items()},
                    grades={str(k): int(v) for k, v in sorted(meta.get("grades", {}).items())},
                )
            )
    return tuple(out)


def _speed(replayed: list[tuple[BatchStore, Any]]) -> tuple[dict[str, Speed], Speed]:
    every: list[float] = []
    judged_all = 0
    per_batch: dict[str, Speed] = {}
    for store, state in replayed:
        spent: dict[str, int] = defaultdict(int)
        for action in state.actions:
            if action.elapsed_ms is not None:
                spent[action.window_id] += action.elapsed_ms
        times = [ms / 1000 for ms in spent.values()]
        judged = sum(_judged(s, store.kind) for s in state.windows)
        per_batch[store.batch.name] = _speed_of(times, judged)
        every.extend(times)
        judged_all += judged
    return per_batch, _speed_of(every, judged_all)


def _speed_of(times: list[float], judged: int) -> Speed:
    total = sum(times)
    return Speed(
        windows=len(times),
        median_s=statistics.median(times) if times else None,
        windows_per_hour=(judged * 3600 / total) if total > 0 else None,
    )


def _agreement(replayed: list[tuple[BatchStore, Any]]) -> Kappa:
    labels: dict[tuple[str, str, str], dict[tuple[str, str], str]] = defaultdict(dict)
    for store, state in replayed:
        batch = store.batch
        for person in sorted({a.by for a in state.actions}):
            mine = replay(a for a in state.actions if a.by == person)
            for window in batch.windows:
                label = mine.get(window.window_id)
                if label is not None and label.label is not None:
                    span = (window.symbol, window.start_ts.isoformat(), window.end_ts.isoformat())
                    labels[span][(batch.name, person)] = label.label
    first: list[str] = []
    second: list[str] = []
    windows = 0
    for raters in labels.values():
        if len(raters) < 2:
            continue
        windows += 1
        for a, b in combinations(sorted(raters), 2):
            first.append(raters[a])
            second.append(raters[b])
    pairs = len(first)
    if pairs < 2:
        return Kappa(pairs=pairs, windows=windows, agreement=None, kappa=None)
    agreement = float(np.mean(np.array(first) == np.array(second)))
    kappa = None
    if len(set(first) | set(second)) > 1:
        from sklearn.metrics import cohen_kappa_score

        value = float(cohen_kappa_score(first, second))
        kappa = value if np.isfinite(value) else None
    return Kappa(pairs=pairs, windows=windows, agreement=agreement, kappa=kappa)


def annotation_stats(root: str | Path) -> AnnotationStats:
    """Keeper rates by session and batch, balance per labeled version, speed and kappa."""
    normal = _replayed(root, list_batches(root, kind="normal"))
    review = _replayed(root, list_batches(root, kind="review"))
    by_session, by_batch = _keepers(normal)
    speed_by_batch, speed = _speed(normal + review)
    problems = {
        store.batch.name: len(state.problems) for store, state in normal + review if state.problems
    }
    return AnnotationStats(
        keeper_by_session=by_session,
        keeper_by_batch=by_batch,
        balance=_balance(root),
        speed_by_batch=speed_by_batch,
        speed=speed,
        agreement=_agreement(normal),
        log_problems=problems,
    )
