"""Session calendars (hand-counted sessions, DST) and the gap report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.calendars import (
    CALENDARS,
    GAP_COLUMNS,
    SessionCalendar,
    gap_report,
    get_calendar,
    summarise_gaps,
)
from moola.data.schema import make_bars

NY = "America/New_York"


def ny(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=NY).tz_convert("UTC")


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def sessions(name: str, start, end, timeframe: str = "1m") -> pd.Series:
    """Expected bar counts per session date between ``start`` and ``end``."""
    cal = get_calendar(name)
    times = cal.expected_times(start, end, timeframe)
    return pd.Series(cal.session_date(times)).value_counts().sort_index()


def bars_at(times, symbol: str = "A", timeframe: str = "1m") -> pd.DataFrame:
    n = len(times)
    return make_bars(
        pd.DatetimeIndex(times), np.ones(n), np.ones(n), np.ones(n), np.ones(n), None,
        symbol=symbol, timeframe=timeframe,
    )  # fmt: skip


# --- registry ------------------------------------------------------------------------------


def test_registry_lists_the_four_calendars():
    assert set(CALENDARS) == {"crypto", "fx", "futures", "equities"}
    assert all(get_calendar(name).name == name for name in CALENDARS)


def test_unknown_calendar_lists_valid_names():
    with pytest.raises(ConfigError) as info:
        get_calendar("futurs")
    message = str(info.value)
    assert "'futurs'" in message and "futures" in message
    assert all(name in message for name in CALENDARS)


# --- hand-counted sessions -------------------------------------------------------------------


def test_crypto_day_has_1440_minutes():
    counts = sessions("crypto", utc("2024-06-01"), utc("2024-06-02"))
    assert counts.to_dict() == {pd.Timestamp("2024-06-01"): 1440}


def test_futures_monday_session_is_23_hours_from_sunday_1800_new_york():
    cal = get_calendar("futures")
    times = cal.expected_times(ny("2024-06-09 12:00"), ny("2024-06-10 17:59"), "1m")
    assert len(times) == 23 * 60 == 1380
    assert times[0] == ny("2024-06-09 18:00") and times[-1] == ny("2024-06-10 16:59")
    assert set(cal.session_date(times)) == {np.datetime64("2024-06-10")}


def test_futures_daily_break_and_weekend():
    cal = get_calendar("futures")
    stamps = pd.DatetimeIndex(
        [
            ny("2024-06-11 16:59"),  # Tue, open
            ny("2024-06-11 17:00"),  # Tue, daily break
            ny("2024-06-11 17:59"),  # Tue, daily break
            ny("2024-06-11 18:00"),  # Tue evening: Wednesday's session
            ny("2024-06-14 16:59"),  # Fri, last minute of the week
            ny("2024-06-14 18:00"),  # Fri evening, closed
            ny("2024-06-15 12:00"),  # Sat, closed
            ny("2024-06-16 17:59"),  # Sun, closed
        ]
    )
    assert cal.is_open(stamps).tolist() == [True, False, False, True, True, False, False, False]
    assert cal.session_date(stamps)[3] == np.datetime64("2024-06-12")


def test_fx_week_is_five_24_hour_sessions_from_sunday_1700_new_york():
    cal = get_calendar("fx")
    times = cal.expected_times(ny("2024-06-08"), ny("2024-06-16"), "1m")  # Sat to Sun
    assert len(times) == 5 * 1440 == 7200
    assert times[0] == ny("2024-06-09 17:00") and times[-1] == ny("2024-06-14 16:59")
    counts = pd.Series(cal.session_date(times)).value_counts().sort_index()
    assert counts.index.strftime("%a").tolist() == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert (counts == 1440).all()


def test_equities_day_is_390_minutes_and_78_five_minute_bars():
    counts = sessions("equities", utc("2024-06-10"), utc("2024-06-11"))
    assert counts.tolist() == [390]
    assert sessions("equities", utc("2024-06-10"), utc("2024-06-11"), "5m").tolist() == [78]
    cal = get_calendar("equities")
    hourly = cal.expected_times(utc("2024-06-10"), utc("2024-06-11"), "1h")
    # bars open 10:00 .. 15:00; the 09:00 bar opens before the 09:30 bell
    assert list(hourly) == [ny(f"2024-06-10 {h}:00") for h in range(10, 16)]
    assert len(cal.expected_times(utc("2024-06-15"), utc("2024-06-17"), "1m")) == 0  # weekend


def test_crypto_is_open_on_weekends():
    cal = get_calendar("crypto")
    assert cal.is_open(pd.DatetimeIndex([utc("2024-06-15 03:00"), utc("2024-06-16 23:59")])).all()


# --- daylight saving ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("friday", "monday", "friday_first_utc", "monday_first_utc"),
    [
        # 2024-03-10: clocks go forward (EST UTC-5 -> EDT UTC-4)
        ("2024-03-08", "2024-03-11", "2024-03-07 23:00", "2024-03-10 22:00"),
        # 2024-11-03: clocks go back (EDT UTC-4 -> EST UTC-5)
        ("2024-11-01", "2024-11-04", "2024-10-31 22:00", "2024-11-03 23:00"),
    ],
)
def test_futures_sessions_keep_23_new_york_hours_across_dst(
    friday, monday, friday_first_utc, monday_first_utc
):
    cal = get_calendar("futures")
    times = cal.expected_times(
        utc(friday) - pd.Timedelta(days=2), utc(monday) + pd.Timedelta(days=1), "1m"
    )
    dates = cal.session_date(times)
    for day, first in ((friday, friday_first_utc), (monday, monday_first_utc)):
        session = times[dates == np.datetime64(day)]
        assert len(session) == 1380
        assert session[0] == utc(first)
        assert session[0].tz_convert(NY).hour == 18


def test_equities_open_moves_in_utc_but_not_in_new_york_across_dst():
    cal = get_calendar("equities")
    before = cal.expected_times(utc("2024-03-08"), utc("2024-03-09"), "1m")
    after = cal.expected_times(utc("2024-03-11"), utc("2024-03-12"), "1m")
    assert len(before) == len(after) == 390
    assert before[0] == utc("2024-03-08 14:30") and after[0] == utc("2024-03-11 13:30")


def test_crypto_day_is_1440_minutes_on_a_new_york_dst_day():
    assert sessions("crypto", utc("2024-03-10"), utc("2024-03-11")).tolist() == [1440]


# --- gap report ----------------------------------------------------------------------------------


def test_gap_report_finds_exactly_the_deleted_bars():
    day = pd.date_range("2024-06-01", periods=1440, freq="min", tz="UTC")
    deleted = [30, 31, 700]
    report = gap_report(bars_at(day.delete(deleted)), "crypto")
    assert list(report.columns) == list(GAP_COLUMNS)
    assert len(report) == 1
    row = report.iloc[0]
    assert row["symbol"] == "A" and row["date"] == pd.Timestamp("2024-06-01")
    assert (row["expected"], row["present"], row["missing"]) == (1440, 1437, 3)
    assert row["first_missing"] == utc("2024-06-01 00:30")
    assert row["outside_session"] == 0


def test_gap_report_futures_week_with_gaps_and_a_weekend_bar():
    cal = get_calendar("futures")
    week = cal.expected_times(ny("2024-03-10 18:00"), ny("2024-03-15 17:00"), "1m")
    assert len(week) == 5 * 1380
    missing = [ny("2024-03-12 09:30"), ny("2024-03-12 09:31"), ny("2024-03-14 03:00")]
    present = week.difference(pd.DatetimeIndex(missing))
    saturday = pd.DatetimeIndex([ny("2024-03-16 10:00")])
    report = gap_report(bars_at(present.append(saturday)), cal)
    report = report.set_index(report["date"].dt.strftime("%Y-%m-%d"))
    assert report["expected"].to_dict() == {
        "2024-03-11": 1380, "2024-03-12": 1380, "2024-03-13": 1380, "2024-03-14": 1380,
        "2024-03-15": 1380, "2024-03-16": 0,
    }  # fmt: skip
    assert report["missing"].to_dict() == {
        "2024-03-11": 0, "2024-03-12": 2, "2024-03-13": 0, "2024-03-14": 1, "2024-03-15": 0,
        "2024-03-16": 0,
    }  # fmt: skip
    assert report.loc["2024-03-12", "first_missing"] == ny("2024-03-12 09:30")
    assert pd.isna(report.loc["2024-03-13", "first_missing"])
    assert report["outside_session"].to_dict()["2024-03-16"] == 1
    assert report["outside_session"].sum() == 1


def test_gap_report_is_per_symbol_and_covers_each_symbols_span():
    full = pd.date_range("2024-06-03 13:30", "2024-06-03 19:59", freq="min", tz="UTC")
    a = bars_at(full, symbol="AAPL")
    b = bars_at(full[60:].delete([10]), symbol="MSFT")  # starts an hour later, one gap
    report = gap_report(pd.concat([a, b], ignore_index=True), "equities")
    assert report["symbol"].tolist() == ["AAPL", "MSFT"]
    assert report["expected"].tolist() == [390, 330]
    assert report["missing"].tolist() == [0, 1]
    assert report["first_missing"].iloc[1] == full[70]


def test_summarise_gaps_totals_and_worst_days():
    day = pd.date_range("2024-06-01", periods=3 * 1440, freq="min", tz="UTC")
    kept = day.delete([*range(1440 + 100, 1440 + 110), 5])
    summary = summarise_gaps(gap_report(bars_at(kept), "crypto"))
    json.dumps(summary)
    assert (summary["expected"], summary["present"], summary["missing"]) == (4320, 4309, 11)
    assert summary["days"] == 3 and summary["days_with_missing"] == 2
    assert [(d["date"], d["missing"]) for d in summary["worst_days"]] == [
        ("2024-06-02", 10),
        ("2024-06-01", 1),
    ]
    assert summary["worst_days"][0]["first_missing"] == "2024-06-02T01:40:00+00:00"
    assert summary["by_symbol"]["A"]["missing"] == 11


def test_custom_calendar_needs_only_is_open_and_session_date():
    class EvenHours(SessionCalendar):
        name = "even-hours"

        def is_open(self, timestamps):
            return np.asarray(pd.DatetimeIndex(timestamps).hour % 2 == 0)

        def session_date(self, timestamps):
            return (
                pd.DatetimeIndex(timestamps)
                .tz_localize(None)
                .normalize()
                .to_numpy()
                .astype("datetime64[D]")
            )

    cal = EvenHours()
    day = cal.expected_times(utc("2024-06-01"), utc("2024-06-02"), "1h")
    assert [t.hour for t in day] == list(range(0, 24, 2))
    report = gap_report(bars_at(day.delete([3]), timeframe="1h"), cal)
    assert report[["expected", "missing"]].values.tolist() == [[12, 1]]
    assert [str(d) for d in cal.trading_dates("2024-06-01", "2024-06-03")] == [
        "2024-06-01", "2024-06-02", "2024-06-03",
    ]  # fmt: skip


def test_gap_report_on_real_daily_sp500_shows_no_holiday_gaps(sp500):
    """arch's S&P 500 daily bars 1999-2018: every weekday without a bar is an NYSE closure
    (185 of them, ad hoc ones included), so against the equities calendar nothing is
    missing and nothing is outside a session."""
    report = gap_report(sp500, "equities")
    weekdays = int(np.busday_count("1999-01-04", "2019-01-01"))  # 1999-01-04 .. 2018-12-31
    assert weekdays - len(sp500) == 185  # the closures the weekly hours alone reported
    assert report["expected"].sum() == report["present"].sum() == len(sp500) == 5031
    assert report["missing"].sum() == 0 and report["outside_session"].sum() == 0
    closures = [
        "2001-09-11", "2001-09-12", "2001-09-13", "2001-09-14",  # September 11
        "2012-10-29", "2012-10-30",  # Hurricane Sandy
        "2018-12-05",  # President Bush's funeral
        "2018-12-25", "2018-07-04", "2018-01-01",
    ]  # fmt: skip
    trading = get_calendar("equities").trading_dates("1999-01-01", "2018-12-31")
    assert not set(np.array(closures, dtype="datetime64[D]")) & set(trading)
    assert np.datetime64("2018-12-24") in trading  # an early close, not a closure


def test_equities_early_close_and_holiday_in_minutes():
    counts = sessions("equities", utc("2018-11-21"), utc("2018-11-24"))
    # Wednesday full day, Thanksgiving closed, Friday closes at 13:00 New York.
    assert counts.to_dict() == {pd.Timestamp("2018-11-21"): 390, pd.Timestamp("2018-11-23"): 210}
    cal = get_calendar("equities")
    friday = cal.expected_times(utc("2018-11-23"), utc("2018-11-24"), "1m")
    assert friday[-1] == ny("2018-11-23 12:59")
    assert not cal.is_open(pd.DatetimeIndex([ny("2018-11-23 13:00"), ny("2018-11-22 10:00")])).any()


def test_futures_christmas_is_closed_and_christmas_eve_closes_early():
    cal = get_calendar("futures")
    counts = sessions("futures", ny("2019-12-22 12:00"), ny("2019-12-27 12:00"))
    counts.index = counts.index.strftime("%Y-%m-%d")
    # Monday's session is the usual 23 hours; Tuesday's (from Monday 18:00) stops at
    # 12:00 Chicago; Wednesday (Christmas) has none; Thursday's starts Christmas 18:00.
    assert counts["2019-12-23"] == 1380
    assert counts["2019-12-24"] == (19 * 60)  # 18:00 -> 13:00 New York
    assert "2019-12-25" not in counts
    assert cal.is_open(pd.DatetimeIndex([ny("2019-12-25 18:00")])).all()
    dates = [str(d) for d in cal.trading_dates("2019-12-23", "2019-12-27")]
    assert dates == ["2019-12-23", "2019-12-24", "2019-12-26", "2019-12-27"]


def test_holiday_rules_come_from_the_installed_package_without_the_network(monkeypatch):
    """exchange_calendars ships its rules: building a calendar never opens a connection."""
    import socket

    from moola.data import calendars

    def refuse(*args, **kwargs):
        raise AssertionError("the calendar tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    calendars._special_days.cache_clear()
    dates = get_calendar("equities").trading_dates("2024-07-01", "2024-07-05")
    assert [str(d) for d in dates] == ["2024-07-01", "2024-07-02", "2024-07-03", "2024-07-05"]
