"""The momentum scanner: an index of trading days scored for momentum, with the bars
where an episode may start inside each.

A momentum trader trains on the days that move: a gap at the open, heavy volume, a wide
range and a trend that persists through the day. :func:`momentum_index` scores every
finished day of one symbol's bars on these four measures, combines them into a quality
in [0, 1] and lists the day's reset points (bar indices an episode may start at). The
curriculum (``moola.rl.curriculum``) samples reset points from high-quality days first.

It is an index of *finished* days for training: a day's own measures use the whole day
(its close, its full volume). Its *baselines* (the typical volume and range a day is
compared with, and the previous close for the gap) come from earlier days only, so a
day's row never changes when later bars change (tested).

Measures (day ``d`` = the bars whose open time falls on one calendar date in
``timezone``, inside ``session`` when one is given; "trailing" = the mean over the up to
``lookback`` previous scored-eligible days):

====================  ==============================================================
``gap``               ``open_d / close_{d-1} - 1`` (the previous day's last close)
``rel_volume``        ``volume_d / trailing volume`` (NaN when the trailing volume is 0)
``range_pct``         ``(high_d - low_d) / open_d``
``range_expansion``   ``range_pct_d / trailing range_pct``
``trend_persistence`` intraday: Kaufman's efficiency ratio ``|close_d - open_d| /
                      sum |close_i - close_{i-1}|`` over the day's bars (the first
                      bar's move counted from its open), in [0, 1]; daily bars: the
                      bar's body over its range ``|close - open| / (high - low)``
``direction_share``   share of the day's bars that closed in the day's direction
``direction``         sign of ``close_d - open_d``
====================  ==============================================================

Quality (:data:`QUALITY_FORMULA`), the mean of four scores each in [0, 1]:

- ``gap_score = min(|gap| / trailing range_pct, 1)``: a gap as large as a typical
  day's range scores 1;
- ``volume_score = clip(log(rel_volume) / log(4), 0, 1)``: average volume 0, four
  times the average 1 (0 when the bars have no volume);
- ``range_score = clip(log(range_expansion) / log(2), 0, 1)``: a typical range 0,
  twice it 1;
- ``trend_score = trend_persistence``.

Daily bars (every day holds one bar): the day *is* the bar; ``gap`` is the overnight
gap, ``rel_volume`` and ``range_expansion`` compare the bar with the previous
``lookback`` bars, ``trend_persistence`` is the body over the range (a bar that closes
at its high after opening at its low scores 1) and ``direction_share`` is 1. The one
reset point is the bar itself: an episode starting there decides at that bar's close.

Reset points of an intraday day: its first bar and every ``reset_every``-th bar after
it, never its last bar (an episode started there leaves at least one step in the day).
The first eligible day has no baseline and is not in the index; days with fewer than
``min_bars`` bars are neither scored nor used as a baseline.

Written by hand: no library scores momentum days; each measure is a few numpy
reductions over the day's bars.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError

QUALITY_FORMULA = (
    "quality = mean(min(|gap| / trailing range_pct, 1), clip(log(rel_volume) / log(4), 0, 1), "
    "clip(log(range_expansion) / log(2), 0, 1), trend_persistence)"
)
VOLUME_FULL = 4.0  # relative volume that scores 1
RANGE_FULL = 2.0  # range expansion that scores 1

DAY_COLUMNS: tuple[str, ...] = (
    "day",
    "first_bar",
    "last_bar",
    "n_bars",
    "start",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "gap",
    "rel_volume",
    "range_pct",
    "range_expansion",
    "trend_persistence",
    "direction_share",
    "direction",
    "gap_score",
    "volume_score",
    "range_score",
    "trend_score",
    "quality",
    "reset_points",
)
_REQUIRED = ("timestamp", "open", "high", "low", "close", "volume")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _minutes(value: Any, which: str) -> int:
    match = _HHMM.match(str(value).strip())
    if not match:
        raise ConfigError(
            f"session {which} {value!r} is not a time of day; use 'HH:MM' such as '09:30'",
            param="session",
        )
    return int(match.group(1)) * 60 + int(match.group(2))


def _session(session: Any) -> tuple[int, int] | None:
    if session is None:
        return None
    if isinstance(session, str) or len(session) != 2:
        raise ConfigError(
            f"session must be a (start, end) pair of local times such as ('09:30', '16:00'), "
            f"got {session!r}",
            param="session",
        )
    start, end = _minutes(session[0], "start"), _minutes(session[1], "end")
    if start >= end:
        raise ConfigError(
            f"session start {session[0]!r} is not before its end {session[1]!r}; a session "
            "crossing midnight is not supported (use a timezone where it does not)",
            param="session",
        )
    return start, end


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}", param=name)
    return int(value)


def _check_bars(bars: Any) -> None:
    if not isinstance(bars, pd.DataFrame):
        raise ConfigError(
            f"bars must be a pandas DataFrame of OHLCV bars, got {type(bars).__name__}",
            param="bars",
        )
    missing = [c for c in _REQUIRED if c not in bars.columns]
    if missing:
        raise ConfigError(
            f"bars lack column(s) {', '.join(missing)}; momentum_index needs "
            f"{', '.join(_REQUIRED)}",
            param="bars",
        )
    if len(bars) == 0:
        raise ConfigError("bars are empty: momentum_index needs at least two days", param="bars")
    if "symbol" in bars.columns and bars["symbol"].nunique(dropna=False) > 1:
        raise ConfigError(
            f"bars hold {bars['symbol'].nunique(dropna=False)} symbols; scan one symbol at a time",
            param="bars",
        )
    for column in _REQUIRED[1:]:
        values = bars[column].to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ConfigError(
                f"bars column {column!r} is not finite at row {int(bad[0])} "
                f"({bad.size} rows); drop or fill those bars first",
                param="bars",
            )


def _local_times(bars: pd.DataFrame, timezone: str) -> pd.DatetimeIndex:
    stamps = pd.DatetimeIndex(pd.to_datetime(bars["timestamp"]))
    if stamps.tz is None:
        stamps = stamps.tz_localize("UTC")
    if not stamps.is_monotonic_increasing or stamps.has_duplicates:
        raise ConfigError(
            "bars timestamps must be strictly increasing (one symbol's bars, sorted by time)",
            param="bars",
        )
    try:
        return stamps.tz_convert(timezone)
    except Exception:
        raise ConfigError(
            f"unknown timezone {timezone!r}; use an IANA name such as 'UTC' or 'America/New_York'",
            param="timezone",
        ) from None


def _trailing_mean(values: np.ndarray, lookback: int) -> np.ndarray:
    """Mean of the up to ``lookback`` values *before* each position (NaN at 0)."""
    return pd.Series(values).rolling(lookback, min_periods=1).mean().shift(1).to_numpy()


def momentum_index(
    bars: pd.DataFrame,
    *,
    timezone: str = "UTC",
    session: tuple[str, str] | None = None,
    min_bars: int | None = None,
    reset_every: int = 30,
    lookback: int = 20,
) -> pd.DataFrame:
    """Score each finished trading day of ``bars`` for momentum (see the module docstring).

    Parameters
    ----------
    bars : DataFrame
        One symbol's bars (``timestamp`` = bar open time, UTC; ``open high low close
        volume``), sorted by time; intraday (e.g. 1-minute) or daily.
    timezone : str, default "UTC"
        Where calendar days start (an IANA name, e.g. ``"America/New_York"``).
    session : (start, end) local times, optional
        Only bars opening in ``[start, end)`` (e.g. ``("09:30", "16:00")``) belong to a day.
    min_bars : int, optional
        Days with fewer bars are skipped. Default: half the median bars per day (1 for
        daily bars).
    reset_every : int, default 30
        Bars between a day's reset points (intraday bars).
    lookback : int, default 20
        Previous days the trailing volume and range baselines average over.

    Returns
    -------
    DataFrame
        One row per scored day, columns :data:`DAY_COLUMNS` (``day`` the local date,
        ``first_bar``/``last_bar`` bar indices into ``bars``, ``start`` the first bar's
        UTC time, ``reset_points`` an int64 array of bar indices), in time order. Its
        ``attrs`` hold the parameters and ``daily`` (whether each day was one bar).
    """
    _check_bars(bars)
    reset_every = _positive_int(reset_every, "reset_every")
    lookback = _positive_int(lookback, "lookback")
    window = _session(session)
    local = _local_times(bars, timezone)

    keep = np.ones(len(bars), dtype=bool)
    if window is not None:
        minute = local.hour.to_numpy() * 60 + local.minute.to_numpy()
        keep = (minute >= window[0]) & (minute < window[1])
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise ConfigError(
            f"no bar of the {len(bars)} opens inside session {session!r} ({timezone})",
            param="session",
        )
    day_keys = local.tz_localize(None).normalize().to_numpy()[rows]
    first = np.flatnonzero(np.r_[True, day_keys[1:] != day_keys[:-1]])  # positions in rows
    counts = np.diff(np.r_[first, rows.size])
    daily = bool(counts.max() == 1)
    if min_bars is None:
        min_bars = max(1, int(np.median(counts)) // 2)
    min_bars = _positive_int(min_bars, "min_bars")
    eligible = counts >= min_bars
    if int(eligible.sum()) < 2:
        raise ConfigError(
            f"bars hold {int(eligible.sum())} day(s) with at least min_bars={min_bars} bars "
            f"({len(first)} days in all); the index needs at least two (the first is only a "
            "baseline). Give more bars or lower min_bars",
            param="bars",
        )
    first, counts = first[eligible], counts[eligible]
    last = first + counts - 1

    o = bars["open"].to_numpy(dtype=np.float64)[rows]
    h = bars["high"].to_numpy(dtype=np.float64)[rows]
    lo = bars["low"].to_numpy(dtype=np.float64)[rows]
    c = bars["close"].to_numpy(dtype=np.float64)[rows]
    v = bars["volume"].to_numpy(dtype=np.float64)[rows]

    # per-day reductions; a day's bars are rows[first[k] : first[k] + counts[k]]
    day_of = np.full(rows.size, -1, dtype=np.int64)
    for k, (a, n) in enumerate(zip(first, counts, strict=True)):
        day_of[a : a + n] = k
    inside = day_of >= 0
    n_days = first.size
    d_open, d_close = o[first], c[last]
    d_high = np.full(n_days, -np.inf)
    d_low = np.full(n_days, np.inf)
    np.maximum.at(d_high, day_of[inside], h[inside])
    np.minimum.at(d_low, day_of[inside], lo[inside])
    d_volume = np.bincount(day_of[inside], weights=v[inside], minlength=n_days)
    previous_close = np.r_[np.nan, c[:-1]]
    previous_close[first] = o[first]  # a day's first move counts from its open
    path = np.bincount(day_of[inside], weights=np.abs(c - previous_close)[inside], minlength=n_days)
    move = d_close - d_open
    direction = np.sign(move)
    bar_direction = np.sign(c - o)
    share = np.bincount(
        day_of[inside],
        weights=(bar_direction == direction[np.maximum(day_of, 0)])[inside].astype(float),
        minlength=n_days,
    )
    share = np.where(direction == 0, 0.0, share / counts)

    d_range = d_high - d_low
    range_pct = d_range / d_open
    if daily:
        persistence = np.where(d_range > 0, np.abs(move) / np.where(d_range > 0, d_range, 1), 0.0)
        share = np.ones(n_days)
    else:
        persistence = np.where(path > 0, np.abs(move) / np.where(path > 0, path, 1), 0.0)
    persistence = np.clip(persistence, 0.0, 1.0)

    # baselines from earlier days only
    gap = d_open / np.r_[np.nan, d_close[:-1]] - 1.0
    base_volume = _trailing_mean(d_volume, lookback)
    base_range = _trailing_mean(range_pct, lookback)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_volume = np.where(base_volume > 0, d_volume / base_volume, np.nan)
        expansion = np.where(base_range > 0, range_pct / base_range, np.nan)
        gap_score = np.where(
            base_range > 0, np.minimum(np.abs(gap) / base_range, 1.0), (gap != 0).astype(float)
        )
        volume_score = np.clip(np.log(rel_volume) / np.log(VOLUME_FULL), 0.0, 1.0)
        range_score = np.clip(np.log(expansion) / np.log(RANGE_FULL), 0.0, 1.0)
    volume_score = np.nan_to_num(volume_score, nan=0.0)
    range_score = np.where(
        np.isnan(expansion), (range_pct > 0).astype(float), np.nan_to_num(range_score, nan=0.0)
    )
    quality = (gap_score + volume_score + range_score + persistence) / 4.0

    starts = []
    for a, n in zip(first, counts, strict=True):
        day_rows = rows[a : a + n]
        points = day_rows[:1] if n == 1 else day_rows[: n - 1 : reset_every]
        starts.append(points.astype(np.int64))

    frame = pd.DataFrame(
        {
            "day": pd.DatetimeIndex(day_keys[first]),
            "first_bar": rows[first].astype(np.int64),
            "last_bar": rows[last].astype(np.int64),
            "n_bars": counts.astype(np.int64),
            "start": pd.DatetimeIndex(local[rows[first]]).tz_convert("UTC"),
            "open": d_open,
            "high": d_high,
            "low": d_low,
            "close": d_close,
            "volume": d_volume,
            "gap": gap,
            "rel_volume": rel_volume,
            "range_pct": range_pct,
            "range_expansion": expansion,
            "trend_persistence": persistence,
            "direction_share": share,
            "direction": direction.astype(np.int64),
            "gap_score": gap_score,
            "volume_score": volume_score,
            "range_score": range_score,
            "trend_score": persistence,
            "quality": quality,
            "reset_points": starts,
        }
    )
    frame = frame.iloc[1:].reset_index(drop=True)  # the first day is only a baseline
    frame.attrs.update(
        {
            "timezone": timezone,
            "session": None if session is None else [str(session[0]), str(session[1])],
            "min_bars": min_bars,
            "reset_every": reset_every,
            "lookback": lookback,
            "daily": daily,
            "quality_formula": QUALITY_FORMULA,
        }
    )
    return frame


def index_to_frame(index: pd.DataFrame) -> pd.DataFrame:
    """The index as a flat table, one row per reset point (column ``reset_bar``) with its
    day's columns repeated: storable as CSV or Parquet. :func:`index_from_frame` inverts it."""
    _check_index(index)
    lengths = index["reset_points"].map(len).to_numpy()
    flat = index.drop(columns="reset_points").loc[index.index.repeat(lengths)]
    flat = flat.reset_index(drop=True)
    points = [np.asarray(p, dtype=np.int64) for p in index["reset_points"]]
    flat.insert(0, "reset_bar", np.concatenate(points) if points else np.zeros(0, np.int64))
    flat.attrs = dict(index.attrs)
    return flat


def index_from_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The index (one row per day) back from :func:`index_to_frame`'s flat table."""
    missing = [c for c in ("reset_bar", *DAY_COLUMNS[:-1]) if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"momentum index table lacks column(s) {', '.join(missing)}; it must come from "
            "index_to_frame",
            param="frame",
        )
    groups = frame.groupby("first_bar", sort=True)
    index = groups[list(DAY_COLUMNS[:-1])].first().reset_index(drop=True)
    index["reset_points"] = [np.sort(g["reset_bar"].to_numpy(dtype=np.int64)) for _, g in groups]
    for column in ("first_bar", "last_bar", "n_bars", "direction"):
        index[column] = index[column].astype(np.int64)
    index["day"] = pd.to_datetime(index["day"])
    index["start"] = pd.to_datetime(index["start"], utc=True)
    index.attrs = dict(frame.attrs)
    return index


def _check_index(index: Any) -> None:
    if not isinstance(index, pd.DataFrame) or not {"quality", "reset_points"} <= set(index):
        raise ConfigError(
            "index must be the DataFrame momentum_index returns (with 'quality' and "
            "'reset_points' columns)",
            param="index",
        )


__all__ = [
    "DAY_COLUMNS",
    "QUALITY_FORMULA",
    "index_from_frame",
    "index_to_frame",
    "momentum_index",
]
