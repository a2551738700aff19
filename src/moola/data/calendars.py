"""Trading-session calendars: which bar times a market is expected to have, and a gap report.

A bar is *expected* when its open time falls inside a session (so an hourly bar at 09:00
New York is not expected on the equities calendar, which opens at 09:30). Each session
has a *session date*, the day it is reported under:

``crypto``
    24/7; the session date is the UTC date.
``fx``
    Sunday 17:00 to Friday 17:00 America/New_York, no daily break; the trading day rolls
    at 17:00 New York, so the session date is the New York date the session closes on
    (Sunday 17:00 to Monday 17:00 is Monday's session).
``futures``
    CME Globex equity-index hours: Sunday 18:00 to Friday 17:00 America/New_York with a
    daily break 17:00-18:00 (Monday to Thursday). Each session is 23 hours, from 18:00 the
    day before to 17:00 on its session date. CME holidays and early closes (exchange
    calendar ``CMES``) are taken out.
``equities``
    US regular hours, 09:30-16:00 America/New_York, Monday to Friday; the session date is
    the New York date. NYSE holidays (ad hoc closures such as 2001-09-11 and Hurricane
    Sandy included), early closes and late opens (exchange calendar ``XNYS``) are taken out.

Local times are converted with ``zoneinfo``, so sessions keep their wall-clock hours
across daylight-saving changes (a futures session is 23 hours in both March and
November; in UTC it starts an hour earlier in summer).

Daily bars (time frame ``"1d"``) are matched by date, not time: a daily bar stamped at
midnight UTC on date D is the bar of session D, and one is expected on every trading date.

Weekly hours are written here; exchange holidays, early closes and late opens come from
``exchange_calendars``, which keeps them as rules shipped in the package (nothing is
downloaded). That library has no 24/5 FX week or 24/7 market, so ``fx`` and ``crypto``
keep moola's weekly sessions alone. The library's own regular hours are not used (its
``CMES`` sessions have no daily break): only the days it closes, and the times it closes
early or opens late, are applied to moola's hours (``ExchangeHolidays``). Everything stays
vectorised over tens of millions of bars: holidays are one ``isin`` per call and special
days one ``searchsorted``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from moola.core.errors import BarValidationError, ConfigError
from moola.core.timeframes import parse_timeframe

__all__ = [
    "CALENDARS",
    "GAP_COLUMNS",
    "ExchangeHolidays",
    "SessionCalendar",
    "WeeklySessionCalendar",
    "gap_report",
    "get_calendar",
    "summarise_gaps",
]

_DAY_NS = 86_400 * 10**9
_MINUTE_NS = 60 * 10**9
_WORST_DAYS = 10
GAP_COLUMNS: tuple[str, ...] = (
    "symbol",
    "date",
    "expected",
    "present",
    "missing",
    "first_missing",
    "outside_session",
)


def _utc_index(timestamps: Any) -> pd.DatetimeIndex:
    """Timestamps as a UTC, nanosecond DatetimeIndex (naive input is read as UTC)."""
    index = pd.DatetimeIndex(timestamps)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return index.as_unit("ns")


def _utc_stamp(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _grid(lo: int, hi: int, step: int) -> pd.DatetimeIndex:
    """Multiples of ``step`` ns (since the epoch) in ``[lo, hi)``, as UTC timestamps."""
    first = -(-lo // step) * step  # first grid point >= lo
    return _utc_index(np.arange(first, hi, step, dtype=np.int64).astype("datetime64[ns]"))


def _as_dates(days: np.ndarray) -> np.ndarray:
    """Day numbers since 1970-01-01 as ``datetime64[D]``."""
    return days.astype("datetime64[D]")


class SessionCalendar:
    """When a market trades, as a vectorised predicate over bar open times.

    Subclasses implement two methods:

    ``is_open(timestamps) -> np.ndarray[bool]``
        whether a bar opening at each time lies inside a session;
    ``session_date(timestamps) -> np.ndarray[datetime64[D]]``
        the date of the session each time belongs to (defined for closed times too:
        the session date a bar there would be reported under).

    ``expected_times``, ``classify`` and ``trading_dates`` are derived from them; a
    subclass may override the last two with something faster.
    """

    name: str  # set by each subclass or instance; used in reports and errors

    def is_open(self, timestamps: pd.DatetimeIndex) -> np.ndarray:
        """Whether each bar open time lies inside a session."""
        raise NotImplementedError

    def session_date(self, timestamps: pd.DatetimeIndex) -> np.ndarray:
        """The session date (``datetime64[D]``) each time is reported under."""
        raise NotImplementedError

    def classify(self, timestamps: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        """``(is_open, session_date)`` in one pass; override when both share work."""
        return self.is_open(timestamps), self.session_date(timestamps)

    def trading_dates(self, first: Any, last: Any) -> np.ndarray:
        """Session dates from ``first`` to ``last`` (inclusive) that have any open minute."""
        lo = np.datetime64(pd.Timestamp(first).date(), "D")
        hi = np.datetime64(pd.Timestamp(last).date(), "D")
        minutes = self.expected_times(
            pd.Timestamp(lo) - pd.Timedelta(days=2), pd.Timestamp(hi) + pd.Timedelta(days=3), "1m"
        )
        dates = np.unique(self.session_date(minutes))
        return dates[(dates >= lo) & (dates <= hi)]

    def expected_times(self, start: Any, end: Any, timeframe: str) -> pd.DatetimeIndex:
        """Open times of the bars this market should have in ``[start, end)``.

        Intraday bars lie on the time frame's grid (multiples of the bar duration since
        1970-01-01 UTC, as ``moola.data.validation`` requires) inside a session. For
        ``"1d"`` it is midnight UTC of each trading date. Naive bounds are read as UTC.
        """
        step = _step_ns(timeframe)
        lo, hi = _utc_stamp(start).as_unit("ns").value, _utc_stamp(end).as_unit("ns").value
        if step == _DAY_NS:
            dates = self.trading_dates(pd.Timestamp(lo, unit="ns"), pd.Timestamp(hi, unit="ns"))
            stamps = dates.astype("datetime64[ns]").astype(np.int64)
            stamps = stamps[(stamps >= lo) & (stamps < hi)]
            return pd.DatetimeIndex(stamps.astype("datetime64[ns]")).tz_localize("UTC")
        grid = _grid(lo, hi, step)
        return grid[self.is_open(grid)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self, 'name', '?')!r})"


@dataclass(frozen=True, repr=False)
class WeeklySessionCalendar(SessionCalendar):
    """A calendar with the same hours every trading day.

    Local wall-clock time in ``tz`` is shifted forward by ``roll`` so that each session
    falls within one shifted day, whose date is the session date; a time is open when
    that date's weekday is in ``weekdays`` (Monday = 0) and the shifted time of day lies
    in ``[open, close)``. FX, for example, rolls at 17:00 New York: ``roll`` = 7 hours,
    ``open`` = 0, ``close`` = 24 hours.
    """

    name: str
    tz: str
    roll: pd.Timedelta
    open: pd.Timedelta
    close: pd.Timedelta
    weekdays: frozenset[int]

    def _shifted_ns(self, timestamps: pd.DatetimeIndex) -> np.ndarray:
        local = _utc_index(timestamps).tz_convert(ZoneInfo(self.tz)).tz_localize(None)
        return local.as_unit("ns").asi8 + self.roll.value

    def _day_and_time(self, timestamps: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        shifted = self._shifted_ns(timestamps)
        day = shifted // _DAY_NS
        return day, shifted - day * _DAY_NS

    def _trading_day(self, day: np.ndarray) -> np.ndarray:
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        return np.isin(weekday, list(self.weekdays))

    def is_open(self, timestamps: pd.DatetimeIndex) -> np.ndarray:
        day, time_of_day = self._day_and_time(timestamps)
        inside = (time_of_day >= self.open.value) & (time_of_day < self.close.value)
        return inside & self._trading_day(day)

    def session_date(self, timestamps: pd.DatetimeIndex) -> np.ndarray:
        return _as_dates(self._day_and_time(timestamps)[0])

    def classify(self, timestamps: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        day, time_of_day = self._day_and_time(timestamps)
        inside = (time_of_day >= self.open.value) & (time_of_day < self.close.value)
        return inside & self._trading_day(day), _as_dates(day)

    def trading_dates(self, first: Any, last: Any) -> np.ndarray:
        lo = np.datetime64(pd.Timestamp(first).date(), "D").astype(np.int64)
        hi = np.datetime64(pd.Timestamp(last).date(), "D").astype(np.int64)
        days = np.arange(lo, hi + 1, dtype=np.int64)
        return _as_dates(days[self._trading_day(days)])


_SPECIAL_DAYS_FROM = 1970  # holidays are computed from this year (or the data's, if earlier)


@lru_cache(maxsize=8)
def _special_days(exchange: str, first_year: int, last_year: int) -> tuple[np.ndarray, ...]:
    """Of ``exchange`` (an ``exchange_calendars`` code) from ``first_year`` to ``last_year``:
    the weekdays it does not trade (day numbers since 1970-01-01, sorted) and its special
    sessions (sorted day numbers, with each one's open and close in UTC ns)."""
    import exchange_calendars

    calendar = exchange_calendars.get_calendar(
        exchange, start=f"{first_year}-01-01", end=f"{last_year}-12-31"
    )
    sessions = calendar.sessions.values.astype("datetime64[D]").astype(np.int64)
    first = np.datetime64(f"{first_year}-01-01", "D").astype(np.int64)
    last = np.datetime64(f"{last_year}-12-31", "D").astype(np.int64)
    days = np.arange(first, last + 1, dtype=np.int64)
    weekdays = days[(days + 3) % 7 < 5]  # 1970-01-01 was a Thursday
    closed = np.setdiff1d(weekdays, sessions)
    special = pd.DatetimeIndex(calendar.early_closes).union(pd.DatetimeIndex(calendar.late_opens))
    schedule = calendar.schedule.loc[special]
    return (
        closed,
        special.values.astype("datetime64[D]").astype(np.int64),
        _utc_index(schedule["open"]).asi8,
        _utc_index(schedule["close"]).asi8,
    )


@dataclass(frozen=True, repr=False)
class ExchangeHolidays(SessionCalendar):
    """moola's weekly ``hours`` without the days ``exchange`` is closed, and cut to its
    hours on the days it closes early or opens late.

    ``exchange`` is an ``exchange_calendars`` code (``XNYS``, ``CMES``) whose session dates
    mean what ``hours``' session dates mean (the date a session closes on). A session
    date the exchange does not trade is closed all day; on a special day a bar is open
    only if it opens inside the exchange's ``[open, close)`` of that day too.
    """

    name: str
    hours: WeeklySessionCalendar
    exchange: str

    def _tables(self, days: np.ndarray) -> tuple[np.ndarray, ...]:
        if not len(days):
            return _special_days(self.exchange, _SPECIAL_DAYS_FROM, _SPECIAL_DAYS_FROM)
        years = _as_dates(np.array([days.min(), days.max()])).astype("datetime64[Y]")
        first, last = (int(y) + 1970 for y in years.astype(np.int64))
        # Cached per span of whole decades, so growing data does not rebuild it per call.
        return _special_days(self.exchange, min(first, _SPECIAL_DAYS_FROM), last - last % 10 + 9)

    def _keep(self, timestamps: pd.DatetimeIndex, open_: np.ndarray, day: np.ndarray) -> np.ndarray:
        closed, special, special_open, special_close = self._tables(day)
        open_ = open_ & ~np.isin(day, closed)
        slot = np.minimum(np.searchsorted(special, day), max(len(special) - 1, 0))
        hit = open_ & (special[slot] == day) if len(special) else np.zeros_like(open_)
        if hit.any():
            stamps = _utc_index(timestamps).asi8[hit]
            inside = (stamps >= special_open[slot[hit]]) & (stamps < special_close[slot[hit]])
            open_[np.flatnonzero(hit)[~inside]] = False
        return open_

    def is_open(self, timestamps: pd.DatetimeIndex) -> np.ndarray:
        return self.classify(timestamps)[0]

    def session_date(self, timestamps: pd.DatetimeIndex) -> np.ndarray:
        return self.hours.session_date(timestamps)

    def classify(self, timestamps: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        open_, dates = self.hours.classify(timestamps)
        return self._keep(timestamps, open_, dates.astype(np.int64)), dates

    def trading_dates(self, first: Any, last: Any) -> np.ndarray:
        dates = self.hours.trading_dates(first, last)
        closed = self._tables(dates.astype(np.int64))[0]
        return dates[~np.isin(dates.astype(np.int64), closed)]


_HOUR = pd.Timedelta(hours=1)
_WEEKDAYS = frozenset(range(5))
_REGISTRY: dict[str, SessionCalendar] = {
    "crypto": WeeklySessionCalendar(
        "crypto", "UTC", pd.Timedelta(0), pd.Timedelta(0), 24 * _HOUR, frozenset(range(7))
    ),
    "fx": WeeklySessionCalendar(
        "fx", "America/New_York", 7 * _HOUR, pd.Timedelta(0), 24 * _HOUR, _WEEKDAYS
    ),
    "futures": ExchangeHolidays(
        "futures",
        WeeklySessionCalendar(
            "futures", "America/New_York", 6 * _HOUR, pd.Timedelta(0), 23 * _HOUR, _WEEKDAYS
        ),
        "CMES",
    ),
    "equities": ExchangeHolidays(
        "equities",
        WeeklySessionCalendar(
            "equities",
            "America/New_York",
            pd.Timedelta(0),
            pd.Timedelta(hours=9, minutes=30),
            16 * _HOUR,
            _WEEKDAYS,
        ),
        "XNYS",
    ),
}
CALENDARS: tuple[str, ...] = tuple(sorted(_REGISTRY))
"""Names accepted by ``get_calendar``."""


def get_calendar(name: str | SessionCalendar) -> SessionCalendar:
    """The calendar registered as ``name`` (one of ``CALENDARS``); a calendar passes through."""
    if isinstance(name, SessionCalendar):
        return name
    key = str(name).strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, CALENDARS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"Unknown calendar {name!r}.{hint} Use one of: {', '.join(CALENDARS)}.",
        param="calendar",
    )


def _step_ns(timeframe: str) -> int:
    step = parse_timeframe(timeframe).value
    if step > _DAY_NS or (step < _DAY_NS and _DAY_NS % step):
        raise ConfigError(
            f"Time frame {timeframe!r} is not supported by session calendars: use one that "
            "divides a day (e.g. '1m', '5m', '1h') or '1d'."
        )
    return step


def gap_report(bars: pd.DataFrame, calendar: str | SessionCalendar) -> pd.DataFrame:
    """Expected, present and missing bars per symbol and session date.

    The report covers, for each symbol, the time from its first bar to its last bar:
    days cut by that span count only their covered part. Columns: ``symbol``, ``date``
    (the session date, naive midnight), ``expected`` (bars the calendar expects),
    ``present`` (of those, how many the table has), ``missing`` (expected - present),
    ``first_missing`` (open time of the first missing bar, UTC, NaT when none) and
    ``outside_session`` (bars the table has at closed times, counted under the date
    ``session_date`` gives them). Bars should be validated first (on the grid, no
    duplicates).
    """
    cal = get_calendar(calendar)
    timeframes = bars["timeframe"].dropna().unique()
    if len(timeframes) != 1:
        raise BarValidationError(
            f"gap_report needs bars of one time frame, got {sorted(map(str, timeframes))}. "
            "Validate the bars first (moola.data.validation.validate_bars)."
        )
    timeframe = str(timeframes[0])
    step = _step_ns(timeframe)
    codes, symbols = pd.factorize(bars["symbol"], sort=True)
    stamps = _utc_index(bars["timestamp"]).asi8
    if len(codes) > 1 and not bool((codes[1:] >= codes[:-1]).all()):
        order = np.argsort(codes, kind="stable")
        codes, stamps = codes[order], stamps[order]
    bounds = np.searchsorted(codes, np.arange(len(symbols) + 1))
    parts = [
        _symbol_gaps(str(symbol), _sorted(stamps[lo:hi]), cal, step)
        for symbol, lo, hi in zip(symbols, bounds[:-1], bounds[1:], strict=True)
    ]
    if not parts:
        return _empty_report()
    report = pd.concat(parts, ignore_index=True)
    return report.sort_values(["symbol", "date"], kind="stable", ignore_index=True)


def _sorted(values: np.ndarray) -> np.ndarray:
    return values if bool((values[1:] >= values[:-1]).all()) else np.sort(values)


def _symbol_gaps(symbol: str, stamps: np.ndarray, cal: SessionCalendar, step: int) -> pd.DataFrame:
    """The gap report of one symbol's sorted bar open times (int64 ns, UTC)."""
    if step == _DAY_NS:
        bar_days = stamps // _DAY_NS
        trading = cal.trading_dates(
            pd.Timestamp(bar_days[0] * _DAY_NS, unit="ns"),
            pd.Timestamp(bar_days[-1] * _DAY_NS, unit="ns"),
        ).astype(np.int64)
        expected_days = trading
        expected_ns = trading * _DAY_NS
        inside = np.isin(bar_days, trading)
    else:
        grid = _grid(int(stamps[0]), int(stamps[-1]) + 1, step)
        grid_open, grid_days = cal.classify(grid)
        expected_ns = grid.asi8[grid_open]
        expected_days = grid_days.astype(np.int64)[grid_open]
        inside, bar_days = cal.classify(_utc_index(stamps.astype("datetime64[ns]")))
        bar_days = bar_days.astype(np.int64)

    have = stamps[inside]
    slot = np.searchsorted(have, expected_ns)
    found = slot < len(have)
    found[found] = have[slot[found]] == expected_ns[found]

    outside_days = bar_days[~inside]
    if len(expected_days) + len(outside_days) == 0:
        return _empty_report()
    present_parts = [part for part in (expected_days, outside_days) if len(part)]
    lo = int(min(part.min() for part in present_parts))
    span = int(max(part.max() for part in present_parts)) - lo + 1
    where = expected_days - lo  # day slot of each expected bar
    expected_count = np.bincount(where, minlength=span).astype(np.int64)
    present = np.bincount(where, weights=found, minlength=span).astype(np.int64)
    outside = np.bincount(outside_days - lo, minlength=span).astype(np.int64)
    first_missing = np.full(span, np.iinfo(np.int64).min, dtype=np.int64)  # NaT
    # expected_ns is sorted, so a day's first occurrence is its earliest missing bar
    slots, first = np.unique(where[~found], return_index=True)
    first_missing[slots] = expected_ns[~found][first]
    keep = (expected_count > 0) | (outside > 0)
    days = np.flatnonzero(keep) + lo
    return pd.DataFrame(
        {
            "symbol": pd.array([symbol] * len(days), dtype="string"),
            "date": _as_dates(days).astype("datetime64[ns]"),
            "expected": expected_count[keep],
            "present": present[keep],
            "missing": expected_count[keep] - present[keep],
            "first_missing": pd.DatetimeIndex(
                first_missing[keep].astype("datetime64[ns]")
            ).tz_localize("UTC"),
            "outside_session": outside[keep],
        }
    )


def _empty_report() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": pd.array([], dtype="string"),
            "date": np.array([], dtype="datetime64[ns]"),
            "expected": np.array([], dtype=np.int64),
            "present": np.array([], dtype=np.int64),
            "missing": np.array([], dtype=np.int64),
            "first_missing": pd.DatetimeIndex([], dtype="datetime64[ns, UTC]"),
            "outside_session": np.array([], dtype=np.int64),
        }
    )


def summarise_gaps(report: pd.DataFrame, worst: int = _WORST_DAYS) -> dict[str, Any]:
    """Totals, coverage, per-symbol totals and the ``worst`` days by missing bars, as plain
    JSON-serialisable types for a dataset manifest."""
    expected = int(report["expected"].sum())
    present = int(report["present"].sum())
    ranked = report.sort_values(["missing", "symbol", "date"], ascending=[False, True, True])
    ranked = ranked[ranked["missing"] > 0].head(worst)
    by_symbol = report.groupby("symbol", sort=True, observed=True)[
        ["expected", "present", "missing", "outside_session"]
    ].sum()
    return {
        "days": len(report),
        "expected": expected,
        "present": present,
        "missing": expected - present,
        "outside_session": int(report["outside_session"].sum()),
        "coverage": present / expected if expected else 1.0,
        "days_with_missing": int((report["missing"] > 0).sum()),
        "by_symbol": {
            str(symbol): {key: int(value) for key, value in row.items()}
            for symbol, row in by_symbol.iterrows()
        },
        "worst_days": [
            {
                "symbol": str(row.symbol),
                "date": pd.Timestamp(row.date).date().isoformat(),
                "expected": int(row.expected),
                "missing": int(row.missing),
                "first_missing": None
                if pd.isna(row.first_missing)
                else pd.Timestamp(row.first_missing).isoformat(),
            }
            for row in ranked.itertuples(index=False)
        ],
    }
