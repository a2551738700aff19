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

Written by hand (numpy over the wall-clock nanoseconds pandas gives for a time zone):
TA-Lib has no calendar features, and this is a few integer operations per bar, so 10M bars
take well under a second per time zone.
"""

from __future__ import annotations

from typing import Literal

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


def _wall_clock(utc: pd.DatetimeIndex, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """(days since 1970-01-01, minute of day) of each time on ``tz``'s wall clock."""
    local = utc.tz_convert(tz).tz_localize(None)
    minutes = local.as_unit("ns").asi8 // _MINUTE_NS
    day = minutes // _MINUTES_PER_DAY
    return day, minutes - day * _MINUTES_PER_DAY


def _utc(bars: pd.DataFrame) -> pd.DatetimeIndex:
    stamps = pd.DatetimeIndex(bars["timestamp"])
    return stamps.tz_localize("UTC") if stamps.tz is None else stamps


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
        market = self.params.market
        utc = _utc(bars)
        clocks = {tz: _wall_clock(utc, tz) for _, tz, _, _ in SESSION_HOURS}
        values = []
        for _, tz, start, end in SESSION_HOURS:
            day, minute = clocks[tz]
            flag = _in_hours(minute, start, end)
            if market != "crypto":
                flag &= _weekday(day) < 5
            values.append(flag)
        if market == "crypto":
            day, minute = _wall_clock(utc, "UTC")
        else:
            day, minute = clocks[_NEW_YORK]
            minute = minute + _ROLL_MINUTES[market]
            day, minute = day + minute // _MINUTES_PER_DAY, minute % _MINUTES_PER_DAY
        weekday = _weekday(day)
        weekend = weekday >= 5
        if market == "futures":  # Friday 17:00-18:00 New York is after the weekly close
            weekend |= (weekday == 4) & (minute >= 23 * 60)
        values += [weekday, weekend]
        return frame(bars, self.columns(), values)


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
        day, minute = _wall_clock(_utc(bars), _NEW_YORK)
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
