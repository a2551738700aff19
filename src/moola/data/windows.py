"""Fixed-length windows over a bar series, materialised lazily.

A window is a run of ``length`` consecutive bars of one symbol with no time gap. A corpus
of windows is stored as *references* (start positions into the bar table), never as copies:
2.2M windows of 105 x 4 float32 would be 3.7 GB copied but cost only their bars plus one
int64 per window here. Values are read through ``numpy.lib.stride_tricks.sliding_window_view``
so a single window is a zero-copy view and a batch copies only the windows it selects.

Written by hand because the field's libraries (aeon, tsai, sktime) take windows as a dense
3-D array, which is exactly the copy this module exists to avoid.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from moola.core.errors import MoolaError
from moola.core.timeframes import parse_timeframe

DEFAULT_LENGTH = 105
GRADES: frozenset[str] = frozenset({"A", "B", "C", "D"})
LABELED_COLUMNS: tuple[str, ...] = (
    "symbol",
    "start",
    "end",
    "start_ts",
    "end_ts",
    "label",
    "grade",
    "source",
)


class WindowError(MoolaError):
    """Windows cannot be built or referenced (bad length, out-of-range start, symbol crossing)."""


def _check_length(length: int, stride: int = 1) -> None:
    if int(length) != length or length < 1:
        raise WindowError(f"Window length must be a positive integer, got {length!r}.")
    if int(stride) != stride or stride < 1:
        raise WindowError(f"Window stride must be a positive integer, got {stride!r}.")


def _require_columns(bars: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [column for column in columns if column not in bars.columns]
    if missing:
        raise WindowError(
            f"The bar table has no column(s) {missing}; windows need the canonical bar table "
            "(build it with moola.data.schema.make_bars)."
        )


def _change_points(column: pd.Series) -> np.ndarray:
    """Bool array, True at row ``i >= 1`` where the value differs from row ``i - 1``."""
    changed = column.ne(column.shift()).to_numpy(dtype=bool, na_value=True)
    if len(changed):
        changed[0] = False
    return changed


def _bar_durations_ns(timeframe: pd.Series, changes: np.ndarray) -> np.ndarray | int:
    """Duration of one bar in ns: a scalar when the table has one time frame, else per row."""
    if len(timeframe) == 0:
        return 0
    if not changes.any():
        return int(parse_timeframe(str(timeframe.iloc[0])).value)
    codes, uniques = pd.factorize(timeframe)
    per_code = np.array([parse_timeframe(str(u)).value for u in uniques], dtype=np.int64)
    return per_code[codes]


def _calendar_breaks(bars: pd.DataFrame, calendar: str) -> np.ndarray:
    """``_breaks`` where a gap is a bar the session ``calendar`` expects but is missing."""
    from moola.data.calendars import get_calendar

    sessions = get_calendar(calendar)
    breaks = _breaks(bars, allow_gaps=True)  # symbol and time-frame changes
    stamps = bars["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    timeframes = bars["timeframe"].astype(str).to_numpy()
    edges = [*np.flatnonzero(breaks).tolist(), len(bars)]
    if not edges or edges[0] != 0:
        edges = [0, *edges]
    for lo, hi in itertools.pairwise(edges):
        if hi <= lo:
            continue
        run = stamps[lo:hi]
        expected = sessions.expected_times(
            pd.Timestamp(int(run[0]), unit="ns", tz="UTC"),
            pd.Timestamp(int(run[-1]) + 1, unit="ns", tz="UTC"),
            timeframes[lo],
        )
        grid = expected.as_unit("ns").asi8
        at = np.searchsorted(grid, run)
        known = (at < len(grid)) & (grid[np.minimum(at, len(grid) - 1)] == run)
        step_ok = np.ones(len(run), dtype=bool)
        step_ok[1:] = (np.diff(at) == 1) & known[1:] & known[:-1]
        breaks[lo + 1 : hi] |= ~step_ok[1:]
    return breaks


def _breaks(bars: pd.DataFrame, allow_gaps: bool) -> np.ndarray:
    """Bool array, True at row ``i`` when bar ``i`` cannot follow bar ``i - 1`` in a window.

    A break is a change of symbol or time frame and, unless ``allow_gaps``, a step in time
    that is not in ``(0, one bar duration]`` (a gap, or out-of-order / duplicate stamps).
    """
    symbol_change = _change_points(bars["symbol"])
    if "timeframe" not in bars.columns:
        if not allow_gaps:
            raise WindowError(
                "The bar table has no 'timeframe' column, so gaps cannot be detected; add it "
                "(make_bars does) or pass allow_gaps=True."
            )
        return symbol_change
    timeframe_change = _change_points(bars["timeframe"])
    breaks = symbol_change | timeframe_change
    if allow_gaps or len(bars) < 2:
        return breaks
    stamps = bars["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    step = np.empty(len(stamps), dtype=np.int64)
    step[0] = 1
    np.subtract(stamps[1:], stamps[:-1], out=step[1:])
    durations = _bar_durations_ns(bars["timeframe"], timeframe_change)
    bad_step = (step <= 0) | (step > durations)
    bad_step[0] = False
    return breaks | bad_step


def window_starts(
    bars: pd.DataFrame,
    length: int = DEFAULT_LENGTH,
    *,
    stride: int = 1,
    allow_gaps: bool = False,
    calendar: str | None = None,
) -> np.ndarray:
    """Positions (int64, into ``bars``) of every valid window of ``length`` bars.

    ``bars`` is the canonical bar table, sorted by symbol then timestamp. A window never
    crosses a symbol (or time frame) boundary and, unless ``allow_gaps``, never holds two
    consecutive bars more than one bar duration apart (the duration comes from the
    ``timeframe`` column). With a session ``calendar`` (``moola.data.calendars``, e.g.
    ``"equities"``) a gap is a bar the calendar expects that is missing instead: daily bars
    run from Friday to Monday and over exchange holidays without a break, a missing
    trading day breaks, and a bar outside every session breaks on both sides. ``stride``
    keeps every ``stride``-th window of each unbroken run of bars, counted from the run's
    first bar, so striding is the same whatever precedes it.
    """
    _check_length(length, stride)
    _require_columns(bars, ("symbol",) if allow_gaps else ("timestamp", "symbol"))
    n = len(bars)
    if n < length:
        return np.empty(0, dtype=np.int64)
    breaks = _breaks(bars, allow_gaps)
    if calendar is not None and not allow_gaps:
        breaks = _calendar_breaks(bars, calendar)
    # A window [s, s + length - 1] is valid when no break lies in (s, s + length - 1].
    broken_so_far = np.cumsum(breaks, dtype=np.int64)
    candidates = np.arange(n - length + 1, dtype=np.int64)
    valid = broken_so_far[candidates + length - 1] == broken_so_far[candidates]
    if stride > 1:
        positions = np.arange(n, dtype=np.int64)
        run_start = np.maximum.accumulate(np.where(breaks, positions, 0))
        valid &= (candidates - run_start[: n - length + 1]) % stride == 0
    return candidates[valid]


class WindowSet:
    """Lazy windows of ``length`` bars over a 2-D bar value array ``(n_bars, D)``.

    Holds the bar array (not a copy of it: a ``np.memmap`` stays on disk) and one int64
    start per window. ``ws[i]`` is a zero-copy ``(T, D)`` view; ``ws[slice | int array |
    bool mask]`` and ``take`` return a ``(k, T, D)`` array holding only the k windows asked
    for; ``iter_batches`` streams such arrays.
    """

    def __init__(self, values: np.ndarray, starts: np.ndarray | Sequence[int], length: int):
        _check_length(length)
        if not isinstance(values, np.ndarray) or values.ndim != 2:
            shape = getattr(values, "shape", None)
            raise WindowError(
                f"WindowSet needs a 2-D array of bar values (n_bars, D), got shape {shape}; "
                "for one column use values[:, None]."
            )
        starts_arr = np.asarray(starts)
        if starts_arr.ndim != 1 or (starts_arr.size and starts_arr.dtype.kind not in "iu"):
            raise WindowError("Window starts must be a 1-D array of integer bar positions.")
        starts_arr = starts_arr.astype(np.int64, copy=False)
        n_bars = values.shape[0]
        bad = np.flatnonzero((starts_arr < 0) | (starts_arr > n_bars - length))
        if bad.size:
            raise WindowError(
                f"{bad.size} window start(s) fall outside the {n_bars} bars for length "
                f"{length} (valid starts are 0..{n_bars - length}); first at window "
                f"{bad[:5].tolist()} with starts {starts_arr[bad[:5]].tolist()}."
            )
        self.values = values
        self.starts = starts_arr
        self.length = int(length)
        self.columns: tuple[str, ...] | None = None
        # (n_bars - T + 1, D, T) -> (n_bars - T + 1, T, D); both are views of `values`.
        if n_bars >= length:
            self._windows = sliding_window_view(values, self.length, axis=0).transpose(0, 2, 1)
        else:
            self._windows = np.empty((0, self.length, values.shape[1]), dtype=values.dtype)

    @classmethod
    def from_bars(
        cls,
        bars: pd.DataFrame,
        length: int = DEFAULT_LENGTH,
        columns: Sequence[str] = ("open", "high", "low", "close"),
        dtype: Any = np.float32,
        stride: int = 1,
        allow_gaps: bool = False,
    ) -> WindowSet:
        """Every valid window of ``bars`` (see ``window_starts``) over ``columns`` as ``dtype``.

        The bar values are converted once (n_bars x len(columns)); windows add only their
        starts.
        """
        _require_columns(bars, columns)
        starts = window_starts(bars, length, stride=stride, allow_gaps=allow_gaps)
        values = np.ascontiguousarray(bars[list(columns)].to_numpy(dtype=dtype))
        window_set = cls(values, starts, length)
        window_set.columns = tuple(columns)
        return window_set

    def __len__(self) -> int:
        return int(self.starts.size)

    def __repr__(self) -> str:
        return (
            f"WindowSet(n={len(self)}, length={self.length}, dims={self.values.shape[1]}, "
            f"dtype={self.values.dtype})"
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape the windows would have if stacked: ``(N, T, D)``."""
        return (len(self), self.length, int(self.values.shape[1]))

    @property
    def nbytes_overhead(self) -> int:
        """Bytes held beyond the bar value array (the starts)."""
        return int(self.starts.nbytes)

    def _selected_starts(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            return self.starts[key]
        index = np.asarray(key)
        if index.dtype == bool:
            if index.shape != self.starts.shape:
                raise WindowError(
                    f"Boolean mask has shape {index.shape}, expected ({len(self)},) "
                    "(one flag per window)."
                )
            return self.starts[index]
        if index.size == 0:
            return self.starts[:0]
        if index.ndim != 1 or index.dtype.kind not in "iu":
            raise WindowError(
                "Select windows with an int, a slice, a 1-D integer array or a boolean mask, "
                f"got {type(key).__name__} of dtype {index.dtype}."
            )
        out_of_range = (index < -len(self)) | (index >= len(self))
        if out_of_range.any():
            raise IndexError(
                f"Window index {index[out_of_range][:5].tolist()} out of range for "
                f"{len(self)} windows."
            )
        return self.starts[index]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"Window index {i} out of range for {len(self)} windows.")
            return self._windows[self.starts[i]]
        return self._windows[self._selected_starts(key)]

    def take(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """The windows at ``indices`` as a new ``(k, T, D)`` array."""
        return self._windows[self._selected_starts(np.asarray(indices, dtype=np.int64))]

    def iter_batches(
        self, batch_size: int, indices: np.ndarray | Sequence[int] | None = None
    ) -> Iterator[np.ndarray]:
        """Yield ``(k, T, D)`` arrays of at most ``batch_size`` windows, in ``indices`` order
        (all windows when ``None``); only one batch is materialised at a time."""
        if int(batch_size) != batch_size or batch_size < 1:
            raise WindowError(f"batch_size must be a positive integer, got {batch_size!r}.")
        order = (
            np.arange(len(self), dtype=np.int64)
            if indices is None
            else np.asarray(indices, dtype=np.int64)
        )
        for first in range(0, order.size, batch_size):
            yield self.take(order[first : first + batch_size])

    def materialise(self) -> np.ndarray:
        """Every window stacked as a new ``(N, T, D)`` array: the copy this class otherwise
        avoids, made only when asked (N x T x D values)."""
        return self.take(np.arange(len(self), dtype=np.int64))

    def spans(self) -> np.ndarray:
        """``(N, 2)`` int64 inclusive bar positions ``[start, start + T - 1]`` per window."""
        return np.column_stack([self.starts, self.starts + (self.length - 1)])


def _labels_series(labels: Sequence[Any] | np.ndarray | pd.Series, n: int) -> pd.Series:
    values = pd.Series(labels).reset_index(drop=True)
    if len(values) != n:
        raise WindowError(f"Got {len(values)} labels for {n} window starts; give one per window.")
    if n == 0:
        return pd.Series([], dtype="string")
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    missing = np.flatnonzero(values.isna().to_numpy())
    if missing.size:
        raise WindowError(
            f"Labels are missing (None/NaN) at windows {missing[:5].tolist()}; "
            "drop those windows or label them."
        )
    if isinstance(values.dtype, pd.StringDtype):
        return values.astype("string")
    if values.dtype.kind == "f":
        return _whole_labels(values.to_numpy(np.float64))
    is_str = values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    if is_str.all():
        return values.astype("string")
    is_int = values.map(
        lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    ).to_numpy(dtype=bool)
    if is_int.all():
        return values.astype(np.int64)
    if (is_str | is_int).all():
        raise WindowError(
            "Labels mix strings and integers (first integer at window "
            f"{int(np.argmax(is_int))}); use one kind for all windows."
        )
    is_float = values.map(lambda v: isinstance(v, (float, np.floating))).to_numpy(dtype=bool)
    if is_float.all():
        return _whole_labels(values.to_numpy(np.float64))
    first = int(np.argmax(~(is_str | is_int)))
    shown = values.iloc[first]
    shown = shown.item() if isinstance(shown, np.generic) else shown
    raise WindowError(
        f"Labels must be class names (text) or whole-number class indices; window {first} "
        f"has {shown!r}, a {type(shown).__name__}."
    )


def _whole_labels(values: np.ndarray) -> pd.Series:
    """Float labels that are whole numbers (``1.0``, as label tables store classes) as ints;
    fractional ones are a regression target, not a class, and are refused by window."""
    fractional = np.flatnonzero(values != np.floor(values))
    if fractional.size:
        shown = ", ".join(f"window {i} ({values[i]:g})" for i in fractional[:5])
        more = f" and {fractional.size - 5} more" if fractional.size > 5 else ""
        raise WindowError(
            f"Labels must be class names or whole-number class indices, but {fractional.size} "
            f"of {len(values)} are fractional: {shown}{more}. A continuous target (trend "
            "strength, realized volatility) is not a class: bin it into classes first, or "
            "label with a classification kind (forward-return, triple-barrier, vol-regime)."
        )
    return pd.Series(values.astype(np.int64))


def _sources_series(source: str | Sequence[str], n: int) -> pd.Series:
    """One source for every window, or one per window (a labels file's ``source`` column)."""
    if isinstance(source, str):
        return pd.Series([source] * n, dtype="string")
    values = pd.Series(list(source), dtype=object)
    if len(values) != n:
        raise WindowError(f"Got {len(values)} sources for {n} window starts; give one per window.")
    return values.astype("string")


def _grades_series(grades: Sequence[Any] | None, n: int) -> pd.Series:
    if grades is None:
        return pd.Series([pd.NA] * n, dtype="string")
    values = pd.Series(grades, dtype=object).reset_index(drop=True)
    if len(values) != n:
        raise WindowError(f"Got {len(values)} grades for {n} window starts; give one per window.")
    present = ~values.isna().to_numpy()
    bad = np.flatnonzero(present & ~values.isin(GRADES).to_numpy())
    if bad.size:
        raise WindowError(
            f"Grade {values.iloc[int(bad[0])]!r} at window {int(bad[0])} is not one of "
            f"{sorted(GRADES)} (or None for ungraded)."
        )
    return values.astype("string")


def labeled_windows_table(
    bars: pd.DataFrame,
    starts: np.ndarray | Sequence[int],
    length: int,
    labels: Sequence[Any] | np.ndarray | pd.Series,
    *,
    grades: Sequence[str | None] | None = None,
    source: str | Sequence[str] = "human",
) -> pd.DataFrame:
    """Labelled windows as references into ``bars`` (no copies of values).

    Columns: ``symbol, start, end`` (inclusive bar positions), ``start_ts, end_ts`` (open
    times of the first and last bar), ``label`` (all strings or all ints; whole floats such
    as ``1.0`` become ints), ``grade`` (``"A"``-``"D"`` or missing) and ``source`` (one for
    all windows, or one per window). Raises ``WindowError`` when the counts do not match, a
    start is out of range, a label is fractional, or a window spans two symbols.
    """
    _check_length(length)
    _require_columns(bars, ("timestamp", "symbol"))
    starts_arr = np.asarray(starts)
    if starts_arr.ndim != 1 or (starts_arr.size and starts_arr.dtype.kind not in "iu"):
        raise WindowError("Window starts must be a 1-D array of integer bar positions.")
    starts_arr = starts_arr.astype(np.int64, copy=False)
    n = starts_arr.size
    label_values = _labels_series(labels, n)
    grade_values = _grades_series(grades, n)
    source_values = _sources_series(source, n)
    n_bars = len(bars)
    bad = np.flatnonzero((starts_arr < 0) | (starts_arr > n_bars - length))
    if bad.size:
        raise WindowError(
            f"Window start(s) {starts_arr[bad[:5]].tolist()} (windows {bad[:5].tolist()}) are "
            f"outside the {n_bars} bars for length {length}; valid starts are "
            f"0..{n_bars - length}."
        )
    ends_arr = starts_arr + (length - 1)
    symbol_runs = np.cumsum(_change_points(bars["symbol"]), dtype=np.int64)
    crossing = np.flatnonzero(symbol_runs[ends_arr] != symbol_runs[starts_arr])
    if crossing.size:
        first = int(crossing[0])
        raise WindowError(
            f"{crossing.size} window(s) cross a symbol boundary, first window {first} "
            f"(bars {int(starts_arr[first])}..{int(ends_arr[first])}: "
            f"{bars['symbol'].iloc[int(starts_arr[first])]!r} -> "
            f"{bars['symbol'].iloc[int(ends_arr[first])]!r}); take starts from window_starts()."
        )
    stamps = bars["timestamp"]
    table = {
        "symbol": bars["symbol"].iloc[starts_arr].astype("string"),
        "start": pd.Series(starts_arr),
        "end": pd.Series(ends_arr),
        "start_ts": stamps.iloc[starts_arr],
        "end_ts": stamps.iloc[ends_arr],
        "label": label_values,
        "grade": grade_values,
        "source": source_values,
    }
    return pd.DataFrame({name: column.reset_index(drop=True) for name, column in table.items()})
