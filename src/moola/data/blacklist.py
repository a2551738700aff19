"""The persistent blacklist: spans of a market's bars that no window may be built from again.

Annotators grade windows A-D, and a D means "removed and blacklisted forever". Dropping a
D row from one labels file is not enough: the next labeled version, an unlabeled corpus
or a split made later would take the same bars back. So each blacklisted span is kept
under the data root in ``annotations/blacklist.jsonl``, an append-only, hash-chained log
(``moola.core.chainlog``), one entry per line:

``symbol``, ``start_ts``, ``end_ts``
    the span, as the UTC open times of its first and last bar (inclusive);
``reason``, ``added_at``, ``source``
    why, when (UTC) and from where (``moola data blacklist add`` or a labels file's
    grade D rows).

A window is *blacklisted* when it is of the same symbol and its time span overlaps an
entry's: its first bar opens at or before the entry's ``end_ts`` and its last bar opens
at or after the entry's ``start_ts``. Spans are times, not window ids or bar positions,
so an entry holds for every later raw version, window length and stride of that market.
Matching looks only at the two spans (no bar after a window's last bar is read).

Reading fails closed: an edited, unreadable or invalid line raises ``IntegrityError``
naming the file and line, because skipping it would let blacklisted bars back into
training. Each append anchors the log's new head in the write journal (as the run
store's ledgers do), so a deleted file or removed last lines are refused too, and
``moola data verify`` checks it. Only ``append_record`` writes the file; nothing here
rewrites a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moola.core.anchors import Anchors
from moola.core.chainlog import append_record, scan_log
from moola.core.errors import ConfigError, IntegrityError
from moola.core.paths import confined
from moola.core.provenance import utc_now_iso
from moola.data.splits import Fold, Split

__all__ = [
    "BLACKLIST_FILE",
    "EXCLUDE_STEP",
    "Blacklist",
    "BlacklistEntry",
    "add_entries",
    "blacklist_path",
    "exclude_from_split",
    "excluded_count",
    "make_entry",
    "read_blacklist",
]

BLACKLIST_FILE = "annotations/blacklist.jsonl"
_ANCHOR = f"log:{BLACKLIST_FILE}"
EXCLUDE_STEP = "exclude_blacklisted"
"""Name of the manifest transformation that records how many windows were excluded."""


class BlacklistEntry(BaseModel):
    """One blacklisted span of one symbol's bars (times are ISO 8601, UTC)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str = Field(min_length=1)
    start_ts: str
    end_ts: str
    reason: str = Field(min_length=1)
    added_at: str
    source: str

    @property
    def span_ns(self) -> tuple[int, int]:
        """``(start, end)`` as int64 ns since the epoch, UTC."""
        return _utc(self.start_ts).value, _utc(self.end_ts).value

    @property
    def key(self) -> tuple[str, str, str]:
        return self.symbol, self.start_ts, self.end_ts


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.as_unit("ns")


def _stamp(value: Any, what: str) -> pd.Timestamp:
    try:
        stamp = _utc(value)
    except (TypeError, ValueError):
        stamp = pd.NaT
    if stamp is pd.NaT or pd.isna(stamp):
        raise ConfigError(
            f"{what} {value!r} is not a timestamp; give the bar open time, e.g. "
            "2024-03-01T14:30:00 (read as UTC unless it carries an offset)."
        )
    return stamp


def make_entry(
    symbol: str,
    start_ts: Any,
    end_ts: Any,
    reason: str,
    source: str,
    *,
    added_at: str | None = None,
) -> BlacklistEntry:
    """A checked entry; ``ConfigError`` names ``start_ts``/``end_ts``/``reason``/``symbol``."""
    start, end = _stamp(start_ts, "start_ts"), _stamp(end_ts, "end_ts")
    if start > end:
        raise ConfigError(
            f"start_ts {start.isoformat()} is after end_ts {end.isoformat()}; a span runs "
            "from its first bar's open time to its last bar's."
        )
    if not str(reason).strip():
        raise ConfigError("reason is empty; say why the span is blacklisted.")
    if not str(symbol).strip():
        raise ConfigError("symbol is empty; name the symbol whose bars are blacklisted.")
    return BlacklistEntry(
        symbol=str(symbol),
        start_ts=start.isoformat(),
        end_ts=end.isoformat(),
        reason=str(reason).strip(),
        added_at=added_at or utc_now_iso(),
        source=source,
    )


@dataclass(frozen=True)
class Blacklist:
    """The entries read at one moment, and the log's chain head (its identity then)."""

    entries: tuple[BlacklistEntry, ...]
    head: str | None

    def __len__(self) -> int:
        return len(self.entries)

    def mask(self, symbols: Any, starts: Any, ends: Any) -> np.ndarray:
        """True for each window (symbol, first and last bar open time) overlapping an entry.

        ``starts`` and ``ends`` are timestamps (tz-aware or UTC-naive) or int64 ns. Per
        symbol: entries sorted by start with a running maximum of their ends, so a window
        overlaps one exactly when the latest-ending entry starting by its end reaches it.
        """
        symbols = np.asarray(pd.Series(symbols, dtype="string").fillna("").to_numpy(), str)
        start_ns, end_ns = _ns(starts), _ns(ends)
        out = np.zeros(len(symbols), dtype=bool)
        if not self.entries or not len(symbols):
            return out
        by_symbol: dict[str, list[tuple[int, int]]] = {}
        for entry in self.entries:
            by_symbol.setdefault(entry.symbol, []).append(entry.span_ns)
        for symbol, spans in by_symbol.items():
            rows = np.flatnonzero(symbols == symbol)
            if not rows.size:
                continue
            table = np.array(sorted(spans), dtype=np.int64)  # (k, 2), sorted by start
            reach = np.maximum.accumulate(table[:, 1])
            last = np.searchsorted(table[:, 0], end_ns[rows], side="right") - 1
            hit = last >= 0
            hit[hit] = reach[last[hit]] >= start_ns[rows][hit]
            out[rows] = hit
        return out

    def record(self, excluded: int) -> dict[str, Any]:
        """What a manifest or audit records: the count excluded and the blacklist read."""
        return {
            "excluded": int(excluded),
            "entries": len(self.entries),
            "file": BLACKLIST_FILE,
            "chain_head": self.head,
        }


def _ns(values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    index = pd.DatetimeIndex(values)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return index.as_unit("ns").asi8


def blacklist_path(root: str | Path) -> Path:
    """``annotations/blacklist.jsonl`` under the data root ``root`` (never outside it)."""
    return confined(root, *BLACKLIST_FILE.split("/"), what="blacklist file")


def read_blacklist(root: str | Path) -> Blacklist:
    """Every entry under the data root ``root``; an empty blacklist when there is no file.

    Raises ``IntegrityError`` naming the file and line of an edited, unreadable or
    invalid line (fails closed: a skipped line would let blacklisted bars back in).
    """
    path = blacklist_path(root)
    scan = scan_log(path)  # one read: records, bad lines, broken chain links, head
    records, problems = scan.records, scan.problems or scan.skipped
    anchored = Anchors(root).expected(_ANCHOR)
    if not problems and anchored is not None and scan.head != anchored:
        problems = [
            f"{path} does not end with the line the write journal recorded last: it was "
            "deleted, replaced or lines were removed"
        ]
    if problems:
        raise IntegrityError(
            f"The blacklist {path} cannot be trusted: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + ". Restore it from a backup; moola will not build or train on windows while "
            "it cannot tell which are blacklisted."
        )
    entries = []
    for number, record in enumerate(records, start=1):
        try:
            entries.append(BlacklistEntry.model_validate(record))
        except ValidationError as exc:
            raise IntegrityError(
                f"The blacklist {path} entry {number} is not a valid entry "
                f"({exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}). Restore the file "
                "from a backup."
            ) from None
    return Blacklist(tuple(entries), scan.head)


def add_entries(root: str | Path, entries: Sequence[BlacklistEntry]) -> list[BlacklistEntry]:
    """Append the ``entries`` not already blacklisted (same symbol and span); returns them.

    Each line is on disk before this returns (``append_record`` syncs), so a caller may
    act on the blacklist right after.
    """
    known = {entry.key for entry in read_blacklist(root).entries}
    path = blacklist_path(root)
    anchors = Anchors(root)
    added = []
    for entry in entries:
        if entry.key in known:
            continue
        append_record(
            path, entry.model_dump(), then=lambda head: anchors.record_digest(_ANCHOR, head)
        )
        known.add(entry.key)
        added.append(entry)
    return added


def excluded_count(manifest: dict[str, Any]) -> int | None:
    """Windows a dataset manifest records as excluded by the blacklist (None: not recorded)."""
    for step in manifest.get("transformations", []):
        if step.get("name") == EXCLUDE_STEP:
            return int(step["params"]["excluded"])
    return None


def exclude_from_split(split: Split, rows: np.ndarray) -> Split:
    """``split`` with ``rows`` (sample indices) moved out of every part into ``purged``.

    Removing samples never adds leakage (every kept pair stays as far apart as before),
    and every sample is still in exactly one part or purged, so the split stays valid.
    """
    drop = set(np.asarray(rows, dtype=np.int64).tolist())
    if not drop:
        return split

    def cut(indices: list[int]) -> list[int]:
        return [i for i in indices if i not in drop]

    def moved(parts: Sequence[list[int]], purged: list[int]) -> list[int]:
        taken = {i for part in parts for i in part if i in drop}
        return sorted(set(purged) | taken)

    folds = None
    if split.folds is not None:
        folds = [
            Fold(
                train=cut(fold.train),
                val=cut(fold.val),
                test=cut(fold.test),
                purged=moved((fold.train, fold.val, fold.test), fold.purged),
            )
            for fold in split.folds
        ]
    return split.model_copy(
        update={
            "train": cut(split.train),
            "val": cut(split.val),
            "test": cut(split.test),
            "purged": moved((split.train, split.val, split.test), split.purged),
            "folds": folds,
        }
    )
