"""Trading-session features: which regional session a bar opens in, and the futures day's parts.

Volume, volatility and spreads follow the clock: the Tokyo, London and New York sessions
each bring their own crowd, and their overlap (London/New York) is the busiest time of
the FX day. These features tell a model where in the trading week a bar lies, from the
bar's UTC open time converted to each exchange's wall clock with ``zoneinfo`` (so daylight
saving is followed: the London session opens at 08:00 UTC in winter and 07:00 UTC in
summer). A bar belongs to a session when its *open time* lies in ``[start, end)`` local time.

Session hours (local wall clock, Monday to Friday for ``fx`` and ``futures``, every day
for ``crypto``, which trades 24/7 while the regional crowds keep their hours):

========  =============  ================
session   hours          time zone
========  =============  ================
Tokyo     09:00 - 18:00  Asia/Tokyo (no DST)
London    08:00 - 17:00  Europe/London
New York  08:00 - 17:00  America/New_York
========  =============  ================

The weekday and the weekend follow the market's own week (as in ``moola.data.calendars``):
``crypto`` uses the UTC date; ``fx`` rolls its trading day at 17:00 New York, so a bar is in
the weekend from Friday 17:00 to Sunday 17:00 New York, and ``day_of_week`` is the weekday
of the session date (a Sunday 18:00 New York bar belongs to Monday's session); ``futures``
(CME Globex) rolls at 18:00 New York and is in the weekend from Friday 17:00 to Sunday
18:00 New York. Exchange holidays are not modelled.

Written by hand: TA-Lib has no calendar features, and this is a few integer operations per
bar. A zone's UTC offset changes a few times a year, so instead of asking ``zoneinfo`` for
every bar (as ``DatetimeIndex.tz_convert`` does), the offset changes are found once per
zone and year (``zoneinfo`` asked at every UTC midnight, each change then narrowed to its
exact second, where tz database changes lie; cached for the process) and the bars are
converted by numba loops: the same offsets, so the same values, several times faster.
A column changes only at a session boundary, local midnight or a clock change, so once a
bar is converted the bars after it up to the next such time take its values unconverted
(on minute bars, runs of hours: the cost is then writing the columns).
This assumes a zone never changes its offset and back within one day, true of the zones
used here (the tests compare with pandas over 1900-2100 and at random minutes from 1678
to 2261). ``update_last`` converts the last bar's time only.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import numba
import numpy as np
import pandas as pd
from pydantic import Field

from moola.features.base import Feature, FeatureParams, register_feature
from moola.features.price import frame

__all__ = ["FUTURES_SUB_SESSIONS", "SESSION_HOURS", "FuturesSessions", "Sessions"]

_MINUTE_NS = 60 * 10**9
_MINUTES_PER_DAY = 24 * 60

#: Regional sessions: (column, time zone, local start minute, local end minute), end exclusive.
SESSION_HOURS: tuple[tuple[str, str, int, int], ...] = (
    ("session_tokyo", "Asia/Tokyo", 9 * 60, 18 * 60),
    ("session_london", "Europe/London", 8 * 60, 17 * 60),
    ("session_new_york", "America/New_York", 8 * 60, 17 * 60),
)

#: Parts of the CME Globex day by New York wall-clock minute: (column, start, end), end
#: exclusive; ``sub_session_a`` wraps midnight (18:00 -> 03:00).
FUTURES_SUB_SESSIONS: tuple[tuple[str, int, int], ...] = (
    ("sub_session_a", 18 * 60, 3 * 60),  # Asia: Globex open to the European open
    ("sub_session_b", 3 * 60, 9 * 60 + 30),  # Europe and US pre-market
    ("sub_session_c", 9 * 60 + 30, 12 * 60),  # US cash open to noon
    ("sub_session_d", 12 * 60, 17 * 60),  # US afternoon, cash close, post-close hour
)
_RTH = (9 * 60 + 30, 16 * 60)
_NEW_YORK = "America/New_York"
# Hours the wall clock is shifted so each market's trading day falls in one calendar day.
_ROLL_MINUTES = {"crypto": 0, "fx": 7 * 60, "futures": 6 * 60}


_SECOND_NS = 10**9
_DAY_S = 24 * 3600
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST = np.iinfo(np.int64).min
_LAST = np.iinfo(np.int64).max


# --------------------------------------------------------------------------- UTC offsets


def _offset_ns(zone: ZoneInfo, second: int) -> int:
    """``zone``'s UTC offset in nanoseconds at the UTC instant ``second`` (since the epoch),
    asked the way pandas asks it (an aware UTC datetime moved to the zone)."""
    offset = (_EPOCH + timedelta(seconds=second)).astimezone(zone).utcoffset()
    return (offset // timedelta(microseconds=1)) * 1000


def _narrow(zone: ZoneInfo, a: int, b: int, at_a: int, at_b: int, out: list) -> None:
    """Append (second, offset) for every offset change in (a, b], by bisection to the second."""
    if at_a == at_b:
        return
    if b - a == 1:
        out.append((b, at_b))
        return
    mid = (a + b) // 2
    at_mid = _offset_ns(zone, mid)
    _narrow(zone, a, mid, at_a, at_mid, out)
    _narrow(zone, mid, b, at_mid, at_b, out)


@functools.lru_cache(maxsize=4096)
def _year_changes(tz: str, year: int) -> tuple[tuple[int, int], ...]:
    """(UTC second, offset ns) at the start of UTC ``year`` and at each change within it."""
    zone = ZoneInfo(tz)
    start, stop = _year_start_s(year), _year_start_s(year + 1)
    grid = [*range(start, stop, _DAY_S), stop]
    offsets = [_offset_ns(zone, second) for second in grid]
    changes = [(start, offsets[0])]
    for a, b, at_a, at_b in zip(grid, grid[1:], offsets, offsets[1:], strict=False):
        _narrow(zone, a, b, at_a, at_b, changes)
    return tuple(changes)


def _year_of(ns: int) -> int:
    """The UTC year of ``ns`` nanoseconds since the epoch."""
    return (_EPOCH + timedelta(microseconds=ns // 1000)).year


def _year_start_s(year: int) -> int:
    """Seconds since the epoch at 00:00 UTC on 1 January ``year``."""
    return (datetime(year, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(seconds=1)


# Per zone: the first and last year its table covers, the nanoseconds they span, and the
# table, built for the widest range asked so far.
_TABLES: dict[str, tuple[int, int, int, int, np.ndarray, np.ndarray]] = {}
_UTC_TABLE = (np.array([_FIRST]), np.array([0]))


def _offset_table(tz: str, first_ns: int, last_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """(start ns, offset ns) of each period of constant UTC offset of ``tz``, covering at
    least the years of ``first_ns`` to ``last_ns``; the first period starts at the smallest
    int64 (it covers everything before)."""
    if tz == "UTC":
        return _UTC_TABLE
    cached = _TABLES.get(tz)
    if cached is not None and cached[2] <= first_ns and last_ns < cached[3]:
        return cached[4], cached[5]
    first, last = _year_of(first_ns), _year_of(last_ns)
    if cached is not None:
        first, last = min(first, cached[0]), max(last, cached[1])
    starts: list[int] = []
    offsets: list[int] = []
    for year in range(first, last + 1):
        for second, offset in _year_changes(tz, year):
            if second * _SECOND_NS > _LAST:  # after the last time int64 nanoseconds hold
                break
            if not offsets or offset != offsets[-1]:
                starts.append(second * _SECOND_NS)
                offsets.append(offset)
    starts[0] = _FIRST
    table = np.array(starts, dtype=np.int64), np.array(offsets, dtype=np.int64)
    span = _year_start_s(first) * _SECOND_NS, _year_start_s(last + 1) * _SECOND_NS
    _TABLES[tz] = (first, last, *span, *table)
    return table


def _span(utc_ns: np.ndarray) -> tuple[int, int]:
    """(earliest, latest) of ``utc_ns`` (0, 0 when empty)."""
    if len(utc_ns) == 0:
        return 0, 0
    return int(utc_ns.min()), int(utc_ns.max())


@numba.njit(cache=True, inline="always")
def _clock(local_ns: int, roll: int) -> tuple[int, int]:
    """(minute of day, weekday) of a wall-clock time in ns since 1970-01-01 moved ``roll``
    minutes later; floored, with unsigned division where the time is after 1970 (signed
    floor division costs five times as much)."""
    if local_ns >= 0:
        minutes = np.uint64(local_ns) // np.uint64(_MINUTE_NS) + np.uint64(roll)
        day = minutes // np.uint64(_MINUTES_PER_DAY)
        minute = np.int64(minutes - day * np.uint64(_MINUTES_PER_DAY))
        return minute, np.int64((day + np.uint64(3)) % np.uint64(7))
    minutes = local_ns // _MINUTE_NS + roll
    day = minutes // _MINUTES_PER_DAY
    return minutes - day * _MINUTES_PER_DAY, (day + 3) % 7  # 1970-01-01 was a Thursday


@numba.njit(cache=True, inline="always")
def _local_ns(utc: int, starts: np.ndarray, offsets: np.ndarray, j: int) -> tuple[int, int]:
    """(wall-clock ns, period index) of ``utc``; the period is walked to from the previous
    bar's ``j`` (bars are in time order, so it moves a few times a year)."""
    while j + 1 < starts.shape[0] and utc >= starts[j + 1]:
        j += 1
    while j > 0 and utc < starts[j]:
        j -= 1
    return utc + offsets[j], j


@numba.njit(cache=True, inline="always")
def _first_period(starts: np.ndarray, utc: np.ndarray) -> int:
    """The period of the first bar (0 when there is none)."""
    if utc.shape[0] == 0:
        return 0
    return np.searchsorted(starts, utc[0], side="right") - 1


@numba.njit(cache=True)
def _local_minutes(
    utc: np.ndarray, starts: np.ndarray, offsets: np.ndarray, out: np.ndarray
) -> None:
    """out[i] = minutes since 1970-01-01 00:00 on the zone's wall clock (floored)."""
    j = _first_period(starts, utc)
    for i in range(utc.shape[0]):
        local, j = _local_ns(utc[i], starts, offsets, j)
        out[i] = local // _MINUTE_NS


@numba.njit(cache=True, inline="always")
def _run_end(
    utc: int, local: int, minute: int, next_minute: int, starts: np.ndarray, j: int
) -> int:
    """The UTC time at which a bar at ``utc`` (``local`` on the zone's wall clock, at
    ``minute`` of its clock's day) reaches minute ``next_minute`` of that day, or the zone's
    next offset change if sooner: bars from ``utc`` up to then share the day and the
    minutes' interval, hence their columns. (Near the end of the int64 range the sum may
    wrap to a time before ``utc``: no bar is then taken for the run, none wrongly.)"""
    day_start = local // _MINUTE_NS - minute  # floored: also before 1970
    end = (day_start + next_minute) * _MINUTE_NS - (local - utc)
    if j + 1 < starts.shape[0] and starts[j + 1] < end:
        end = starts[j + 1]
    return end


@numba.njit(cache=True)
def _session_flags(
    utc: np.ndarray,
    starts: np.ndarray,
    offsets: np.ndarray,
    start: int,
    end: int,
    weekdays_only: bool,
    out: np.ndarray,
) -> None:
    """out[i] = 1.0 when bar i opens in [start, end) minutes of the local day (wrapping
    midnight when start > end), on a local Monday to Friday if ``weekdays_only``.

    A flag changes only at ``start``, ``end`` or midnight, local time: once a bar is
    computed, the bars after it up to the next of these (``_run_end``) take its value
    without a clock conversion (runs of hours on minute bars)."""
    j = _first_period(starts, utc)
    run_from = run_to = 0  # [run_from, run_to): UTC times sharing ``value``
    value = 0.0
    for i in range(utc.shape[0]):
        if run_from <= utc[i] < run_to:
            out[i] = value
            continue
        local, j = _local_ns(utc[i], starts, offsets, j)
        minute, weekday = _clock(local, 0)
        if start < end:
            inside = (minute >= start) & (minute < end)
        else:
            inside = (minute >= start) | (minute < end)
        if weekdays_only:
            inside &= weekday < 5
        value = 1.0 if inside else 0.0
        out[i] = value
        following = _MINUTES_PER_DAY
        if minute < start < following:
            following = start
        if minute < end < following:
            following = end
        run_from, run_to = utc[i], _run_end(utc[i], local, minute, following, starts, j)


@numba.njit(cache=True)
def _market_week(
    utc: np.ndarray,
    starts: np.ndarray,
    offsets: np.ndarray,
    roll: int,
    futures: bool,
    weekday_out: np.ndarray,
    weekend_out: np.ndarray,
) -> None:
    """Weekday (0 = Monday) of each bar's session date, the local clock moved ``roll``
    minutes later, and 1.0 in the weekend (Saturday and Sunday of that date; for
    ``futures`` also Friday 17:00-18:00 New York, after the weekly close). Both change
    only at the moved clock's midnight (and 23:00 for ``futures``): runs as in
    ``_session_flags``."""
    j = _first_period(starts, utc)
    run_from = run_to = 0
    weekday = 0
    weekend_value = 0.0
    for i in range(utc.shape[0]):
        if not run_from <= utc[i] < run_to:
            local, j = _local_ns(utc[i], starts, offsets, j)
            minute, weekday = _clock(local, roll)
            weekend = weekday >= 5
            if futures:
                weekend |= (weekday == 4) & (minute >= 23 * 60)
            weekend_value = 1.0 if weekend else 0.0
            following = 23 * 60 if futures and minute < 23 * 60 else _MINUTES_PER_DAY
            run_from, run_to = utc[i], _run_end(utc[i], local, minute, following, starts, j)
        weekday_out[i] = weekday
        weekend_out[i] = weekend_value


def _utc_ns(bars: pd.DataFrame) -> np.ndarray:
    """Bar open times as int64 nanoseconds since the epoch, UTC (naive times are UTC)."""
    return pd.DatetimeIndex(bars["timestamp"]).as_unit("ns").asi8


def _wall_clock(utc_ns: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """(days since 1970-01-01, minute of day) of each time on ``tz``'s wall clock."""
    minutes = np.empty(len(utc_ns), dtype=np.int64)
    _local_minutes(utc_ns, *_offset_table(tz, *_span(utc_ns)), minutes)
    day = minutes // _MINUTES_PER_DAY
    return day, minutes - day * _MINUTES_PER_DAY


def _weekday(day: np.ndarray) -> np.ndarray:
    return (day + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)


def _in_hours(minute: np.ndarray, start: int, end: int) -> np.ndarray:
    if start < end:
        return (minute >= start) & (minute < end)
    return (minute >= start) | (minute < end)  # wraps midnight


class SessionParams(FeatureParams):
    market: Literal["fx", "crypto", "futures"] = Field(
        "fx", description="Whose trading week decides weekdays and weekends."
    )


@register_feature
class Sessions(Feature):
    """Regional session flags (Tokyo, London, New York), weekday and weekend flag.

    Columns: ``session_tokyo, session_london, session_new_york`` (1.0 when the bar opens
    inside that session, see ``SESSION_HOURS``), ``day_of_week`` (0 = Monday .. 6 = Sunday,
    of the market's session date) and ``is_weekend`` (1.0 when the market's week is
    closed). Each value depends on the bar's own timestamp only.
    """

    name = "sessions"
    Params = SessionParams

    def columns(self) -> tuple[str, ...]:
        return (*(column for column, *_ in SESSION_HOURS), "day_of_week", "is_weekend")

    def lookback(self) -> int:
        return 1

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        return frame(bars, self.columns(), self._rows(_utc_ns(bars)))

    def compute_rows(self, bars: pd.DataFrame, dtype: np.dtype) -> np.ndarray:
        """``compute(bars)``'s columns as the rows of a (5, n) array of ``dtype``, written
        in that dtype directly (flags and weekdays are exact in float32)."""
        return self._rows(_utc_ns(bars), dtype=dtype)

    def update_last(self, bars: pd.DataFrame) -> np.ndarray:
        """The last row of ``compute(bars)`` (each row depends on its own bar only)."""
        last = pd.Timestamp(bars["timestamp"].array[-1]).value
        return self._rows(np.array([last], dtype=np.int64), (last, last))[:, 0]

    def _rows(
        self,
        utc_ns: np.ndarray,
        span: tuple[int, int] | None = None,
        dtype: np.dtype | type = np.float64,
    ) -> np.ndarray:
        """The columns as rows of a (5, n) array (``span``: the earliest and latest time)."""
        market = self.params.market
        span = _span(utc_ns) if span is None else span
        out = np.empty((len(self.columns()), len(utc_ns)), dtype=dtype)
        for row, (_, tz, start, end) in zip(out, SESSION_HOURS, strict=False):
            starts, offsets = _offset_table(tz, *span)
            _session_flags(utc_ns, starts, offsets, start, end, market != "crypto", row)
        starts, offsets = _offset_table("UTC" if market == "crypto" else _NEW_YORK, *span)
        roll = _ROLL_MINUTES[market]
        _market_week(utc_ns, starts, offsets, roll, market == "futures", out[-2], out[-1])
        return out


@register_feature
class FuturesSessions(Feature):
    """CME Globex equity-index futures: regular trading hours and four parts of the day.

    Columns: ``rth`` (1.0 for 09:30-16:00 New York, Monday to Friday: the cash-market
    session, when most volume trades) and the one-hot ``sub_session_a .. d`` by New York
    wall-clock time (``FUTURES_SUB_SESSIONS``): a = 18:00-03:00 (Asia), b = 03:00-09:30
    (Europe and US pre-market), c = 09:30-12:00 (US open to noon), d = 12:00-17:00 (US
    afternoon, cash close and the last Globex hour). Each bar inside Globex hours (Sunday
    18:00 to Friday 17:00 New York, without the 17:00-18:00 daily break) has exactly one
    sub-session flag; bars outside them have none.
    """

    name = "futures_sessions"

    def columns(self) -> tuple[str, ...]:
        return ("rth", *(column for column, *_ in FUTURES_SUB_SESSIONS))

    def lookback(self) -> int:
        return 1

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        day, minute = _wall_clock(_utc_ns(bars), _NEW_YORK)
        weekday = _weekday(day)
        closed = (
            (weekday == 5)
            | ((weekday == 6) & (minute < 18 * 60))
            | ((weekday == 4) & (minute >= 17 * 60))
            | _in_hours(minute, 17 * 60, 18 * 60)
        )
        values = [_in_hours(minute, *_RTH) & (weekday < 5)]
        values += [
            _in_hours(minute, start, end) & ~closed for _, start, end in FUTURES_SUB_SESSIONS
        ]
        return frame(bars, self.columns(), values)
