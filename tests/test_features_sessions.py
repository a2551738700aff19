"""Session features: hand-checked wall-clock hours around daylight-saving changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.calendars import get_calendar
from moola.data.schema import make_bars
from moola.features.base import create_feature
from moola.features.sessions import FuturesSessions, Sessions
from moola.testing import check_feature, check_incremental
from tests.conftest import random_walk_bars


def _bars_at(*stamps: str) -> pd.DataFrame:
    n = len(stamps)
    ones = np.ones(n)
    return make_bars(list(stamps), ones, ones, ones, ones, ones, symbol="X", timeframe="1m")


def _row(feature, stamp: str) -> dict[str, float]:
    return feature.compute(_bars_at(stamp)).iloc[0].to_dict()


@pytest.mark.parametrize(
    ("stamp", "london"),
    [
        # UK summer time starts 2024-03-31: 08:00 London is 08:00 UTC before, 07:00 UTC after.
        ("2024-03-29 07:30", 0.0),  # Friday, GMT: 07:30 London
        ("2024-03-29 08:00", 1.0),
        ("2024-04-01 07:30", 1.0),  # Monday, BST: 08:30 London
        ("2024-04-01 06:59", 0.0),  # 07:59 London
        ("2024-04-01 15:59", 1.0),  # 16:59 London
        ("2024-04-01 16:00", 0.0),  # 17:00 London: the session's end is exclusive
        # UK summer time ends 2024-10-27.
        ("2024-10-25 07:30", 1.0),  # Friday, BST: 08:30 London
        ("2024-10-28 07:30", 0.0),  # Monday, GMT: 07:30 London
    ],
)
def test_london_session_follows_uk_daylight_saving(stamp: str, london: float) -> None:
    assert _row(Sessions(), stamp)["session_london"] == london


@pytest.mark.parametrize(
    ("stamp", "new_york"),
    [
        # US daylight saving starts 2024-03-10: 08:00 New York is 13:00 UTC, then 12:00 UTC.
        ("2024-03-08 12:30", 0.0),  # Friday, EST: 07:30 New York
        ("2024-03-08 13:00", 1.0),
        ("2024-03-08 21:30", 1.0),  # 16:30 EST
        ("2024-03-11 12:30", 1.0),  # Monday, EDT: 08:30 New York
        ("2024-03-11 21:30", 0.0),  # 17:30 EDT
        ("2024-11-01 12:30", 1.0),  # Friday, EDT
        ("2024-11-04 12:30", 0.0),  # Monday after the 2024-11-03 change, EST: 07:30
    ],
)
def test_new_york_session_follows_us_daylight_saving(stamp: str, new_york: float) -> None:
    assert _row(Sessions(), stamp)["session_new_york"] == new_york


def test_between_the_two_changes_new_york_moved_and_london_did_not() -> None:
    # 2024-03-18: New York already on EDT (UTC-4), London still on GMT (UTC+0).
    row = _row(Sessions(), "2024-03-18 12:15")  # 08:15 New York, 12:15 London
    assert row["session_new_york"] == 1.0 and row["session_london"] == 1.0
    row = _row(Sessions(), "2024-03-18 07:45")  # 07:45 London
    assert row["session_london"] == 0.0


@pytest.mark.parametrize(
    ("stamp", "tokyo"),
    [
        ("2024-03-11 00:00", 1.0),  # Monday 09:00 Tokyo (UTC+9, no DST)
        ("2024-03-10 23:59", 0.0),  # Monday 08:59 Tokyo
        ("2024-03-11 08:59", 1.0),  # 17:59
        ("2024-03-11 09:00", 0.0),  # 18:00: end exclusive
        ("2024-07-15 00:00", 1.0),  # summer: unchanged
    ],
)
def test_tokyo_session(stamp: str, tokyo: float) -> None:
    assert _row(Sessions(), stamp)["session_tokyo"] == tokyo


@pytest.mark.parametrize(
    ("stamp", "market", "weekday", "weekend"),
    [
        ("2024-03-08 21:59", "fx", 4, 0),  # Friday 16:59 New York (EST)
        ("2024-03-08 22:00", "fx", 5, 1),  # Friday 17:00: FX week closed
        ("2024-03-10 20:59", "fx", 6, 1),  # Sunday 16:59 EDT
        ("2024-03-10 21:00", "fx", 0, 0),  # Sunday 17:00 EDT: Monday's session opens
        ("2024-03-10 21:30", "futures", 6, 1),  # Sunday 17:30 EDT: Globex opens at 18:00
        ("2024-03-10 22:00", "futures", 0, 0),  # Sunday 18:00 EDT
        ("2024-03-08 22:30", "futures", 4, 1),  # Friday 17:30 EST: after the weekly close
        ("2024-03-07 22:30", "futures", 3, 0),  # Thursday 17:30: daily break, not weekend
        ("2024-03-09 12:00", "crypto", 5, 1),  # Saturday UTC
        ("2024-03-10 23:59", "crypto", 6, 1),
        ("2024-03-11 00:00", "crypto", 0, 0),
    ],
)
def test_weekday_and_weekend_follow_the_markets_week(
    stamp: str, market: str, weekday: int, weekend: int
) -> None:
    row = _row(Sessions(market=market), stamp)
    assert (row["day_of_week"], row["is_weekend"]) == (weekday, weekend)


def test_crypto_sessions_run_on_weekends_fx_sessions_do_not() -> None:
    saturday_noon = "2024-03-09 12:00"  # 12:00 London
    assert _row(Sessions(market="crypto"), saturday_noon)["session_london"] == 1.0
    assert _row(Sessions(market="fx"), saturday_noon)["session_london"] == 0.0


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [  # (rth, a, b, c, d) by New York time
        ("2024-03-08 14:30", (1, 0, 0, 1, 0)),  # Friday 09:30 EST: RTH opens
        ("2024-03-08 14:29", (0, 0, 1, 0, 0)),  # 09:29 EST
        ("2024-03-11 13:30", (1, 0, 0, 1, 0)),  # Monday 09:30 EDT
        ("2024-03-11 13:29", (0, 0, 1, 0, 0)),  # 09:29 EDT
        ("2024-03-11 16:00", (1, 0, 0, 0, 1)),  # 12:00 EDT
        ("2024-03-11 20:00", (0, 0, 0, 0, 1)),  # 16:00 EDT: RTH over, still d
        ("2024-03-11 21:00", (0, 0, 0, 0, 0)),  # 17:00 EDT: daily break
        ("2024-03-11 22:00", (0, 1, 0, 0, 0)),  # 18:00 EDT: Globex reopens
        ("2024-03-12 06:59", (0, 1, 0, 0, 0)),  # 02:59 EDT
        ("2024-03-12 07:00", (0, 0, 1, 0, 0)),  # 03:00 EDT
        ("2024-03-09 15:00", (0, 0, 0, 0, 0)),  # Saturday
        ("2024-03-10 21:59", (0, 0, 0, 0, 0)),  # Sunday 17:59 EDT
        ("2024-03-10 22:00", (0, 1, 0, 0, 0)),  # Sunday 18:00 EDT
    ],
)
def test_futures_sessions(stamp: str, expected: tuple[int, ...]) -> None:
    row = _row(FuturesSessions(), stamp)
    assert tuple(row.values()) == expected


def test_futures_sub_sessions_are_one_hot_exactly_in_globex_hours() -> None:
    # Two weeks of 1-minute bars across the US change (2024-03-10), checked against the
    # independent futures calendar of moola.data.calendars.
    stamps = pd.date_range("2024-03-03", "2024-03-17", freq="1min", tz="UTC", inclusive="left")
    ones = np.ones(len(stamps))
    bars = make_bars(stamps, ones, ones, ones, ones, ones, symbol="NQ", timeframe="1m")
    out = FuturesSessions().compute(bars)
    subs = out[["sub_session_a", "sub_session_b", "sub_session_c", "sub_session_d"]].sum(axis=1)
    open_ = get_calendar("futures").is_open(pd.DatetimeIndex(stamps))
    np.testing.assert_array_equal(subs.to_numpy(), open_.astype(float))
    rth = out["rth"].to_numpy() == 1.0
    assert rth.sum() == 10 * 390  # ten weekdays of 6.5 hours
    assert (out["sub_session_c"] + out["sub_session_d"]).to_numpy()[rth].min() == 1.0


def test_columns_and_registration() -> None:
    assert create_feature("sessions", market="crypto").columns() == (
        "session_tokyo",
        "session_london",
        "session_new_york",
        "day_of_week",
        "is_weekend",
    )
    assert create_feature("futures_sessions").columns()[0] == "rth"
    with pytest.raises(ConfigError, match="market"):
        create_feature("sessions", market="stocks")


@pytest.mark.parametrize("feature", [Sessions(), Sessions(market="futures"), FuturesSessions()])
def test_sessions_are_causal_and_stream(feature) -> None:
    bars = random_walk_bars(3_000, timeframe="5m", start="2024-03-08")
    check_feature(feature, bars)
    check_incremental(feature, bars.iloc[:300])
