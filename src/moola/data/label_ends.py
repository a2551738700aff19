"""Windows that end at labelled bars: the bridge from per-bar labels to labeled windows.

``moola labels build`` gives one label per bar t, describing what follows t (its horizon
ends at bar ``horizon_end[t]`` > t). The window such a label describes is the one that
*ends* at t: its ``length`` bars are ``t - length + 1 .. t``, so a window never holds a bar
its own label looks at. This module picks those windows and says, row by row, why the
others were left out:

- ``undefined``: the label or its horizon is missing (the last bars, an indicator's
  warm-up): there is nothing to learn from;
- ``no_window``: no complete window of ``length`` bars ends at the bar (the first bars of a
  symbol, or a gap or symbol change inside the span);
- ``stride``: thinned out by ``stride`` (every ``stride``-th window of each unbroken run).

Pure: tables in, positions out; the registry and files are the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from moola.data.windows import WindowError, window_starts

DROP_REASONS: dict[str, str] = {
    "undefined": "label or horizon undefined",
    "no_window": "no complete window ends there (first bars, a gap or a symbol change)",
    "stride": "thinned by the stride",
}


@dataclass(frozen=True)
class EndWindows:
    """The rows that became windows and how many of the others were left out, by reason.

    ``rows`` are positions into the caller's label rows; ``starts`` the first bar of each
    window (its last bar is the row's bar).
    """

    rows: np.ndarray
    starts: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)


def windows_ending_at(
    bars: pd.DataFrame,
    ends: np.ndarray,
    defined: np.ndarray,
    *,
    length: int,
    stride: int = 1,
    allow_gaps: bool = False,
) -> EndWindows:
    """Windows of ``length`` bars ending at bar positions ``ends`` where ``defined`` holds.

    ``ends`` are int64 positions into ``bars`` (canonical order), one per label row;
    ``defined`` is False where the row's label or horizon is missing. Raises
    ``WindowError`` for positions outside the bars.
    """
    ends = np.asarray(ends, dtype=np.int64)
    defined = np.asarray(defined, dtype=bool)
    if ends.shape != defined.shape:
        raise WindowError(f"Got {len(ends)} window ends but {len(defined)} 'defined' flags.")
    outside = np.flatnonzero((ends < 0) | (ends >= len(bars)))
    if outside.size:
        raise WindowError(
            f"Window ends {ends[outside[:5]].tolist()} are outside the {len(bars)} bars."
        )
    starts = ends - (length - 1)
    fits = np.isin(starts, window_starts(bars, length, allow_gaps=allow_gaps))
    on_stride = (
        np.isin(starts, window_starts(bars, length, stride=stride, allow_gaps=allow_gaps))
        if stride > 1
        else fits
    )
    keep = defined & fits & on_stride
    dropped = {
        "undefined": int((~defined).sum()),
        "no_window": int((defined & ~fits).sum()),
        "stride": int((defined & fits & ~on_stride).sum()),
    }
    rows = np.flatnonzero(keep)
    return EndWindows(rows=rows, starts=starts[rows], dropped=dropped)


def describe_dropped(dropped: dict[str, int]) -> str:
    """``"12 label or horizon undefined, 104 no complete window ..."`` (reasons with rows)."""
    parts = [f"{count:,} {DROP_REASONS.get(key, key)}" for key, count in dropped.items() if count]
    return ", ".join(parts) if parts else "none"
