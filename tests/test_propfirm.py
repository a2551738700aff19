"""Prop-firm rules on constructed equity paths, with hand-computed breach points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moola.core.errors import ConfigError
from moola.sim import (
    FTMO_DEFAULTS,
    DailyLossLimit,
    MinimumTradingDays,
    ProfitTarget,
    TotalLossLimit,
    challenge_passed,
    evaluate_rules,
)


def _equity(points: dict[str, float]) -> pd.Series:
    return pd.Series(list(points.values()), index=pd.DatetimeIndex(list(points), tz="UTC"))


def _intraday_drop(low: float) -> pd.Series:
    """Day 1 ends at 100_000; day 2 dips to ``low`` at 10:00 UTC, then recovers."""
    return _equity(
        {
            "2024-01-01 09:00": 100_000.0,
            "2024-01-01 20:00": 100_000.0,
            "2024-01-02 09:00": 99_000.0,
            "2024-01-02 10:00": low,
            "2024-01-02 11:00": 99_500.0,
        }
    )


def test_a_5_1_percent_intraday_drop_breaches_at_its_timestamp() -> None:
    result = DailyLossLimit(pct=0.05).check(_intraday_drop(94_900.0))
    assert not result.passed
    assert result.breach_time == pd.Timestamp("2024-01-02 10:00", tz="UTC")
    assert result.breach_value == pytest.approx(0.051)
    assert result.limit == 0.05


def test_a_4_9_percent_drop_does_not_breach() -> None:
    result = DailyLossLimit(pct=0.05).check(_intraday_drop(95_100.0))
    assert result.passed and result.breach_time is None


def test_start_of_day_balance_is_the_previous_days_last_equity() -> None:
    def path(low: float) -> pd.Series:
        return _equity(
            {"2024-01-01 09:00": 100_000.0, "2024-01-01 20:00": 102_000.0, "2024-01-02 10:00": low}
        )

    # 97_000 is 4.90% below 102_000 (but 3% below the initial balance): no breach
    assert DailyLossLimit().check(path(97_000.0)).passed
    # 96_800 is 5.10% below 102_000
    result = DailyLossLimit().check(path(96_800.0))
    assert not result.passed and result.breach_value == pytest.approx(5_200 / 102_000)


def test_day_boundary_follows_the_timezone() -> None:
    equity = _equity(
        {
            "2024-01-01 12:00": 100_000.0,
            "2024-01-01 22:00": 100_000.0,  # 23:00 in Prague (CET = UTC+1)
            "2024-01-01 23:30": 96_000.0,  # already 00:30 on Jan 2 in Prague
            "2024-01-02 01:00": 94_000.0,
        }
    )
    # UTC days: Jan 1 loses 4%, Jan 2 starts at 96_000 and loses 2.08%
    assert DailyLossLimit(timezone="UTC").check(equity).passed
    # Prague days: Jan 2 starts at 100_000 and loses 6% by 01:00 UTC
    result = DailyLossLimit(timezone="Europe/Prague").check(equity)
    assert not result.passed
    assert result.breach_time == pd.Timestamp("2024-01-02 01:00", tz="UTC")
    assert result.breach_value == pytest.approx(0.06)


@settings(max_examples=60, deadline=None)
@given(
    hours=st.lists(st.integers(0, 24 * 20), min_size=1, max_size=60),
    moves=st.lists(st.floats(-0.03, 0.03), min_size=60, max_size=60),
    timezone=st.sampled_from(["UTC", "Europe/Prague", "America/New_York", "Asia/Tokyo"]),
)
def test_daily_loss_matches_a_pandas_day_grouping_reference(hours, moves, timezone) -> None:
    """Any stamps (unsorted, repeated, across DST changes): the start-of-day balance is the
    equity before the day's first bar, as a plain pandas groupby over local dates says."""
    stamps = pd.Timestamp("2024-03-20", tz="UTC") + pd.to_timedelta(hours, unit="h")
    values = 100_000.0 * np.cumprod(1.0 + np.asarray(moves[: len(hours)]))
    equity = pd.Series(values, index=pd.DatetimeIndex(stamps))
    previous = equity.shift(1).fillna(100_000.0)
    local_dates = equity.index.tz_convert(timezone).tz_localize(None).normalize()
    start_of_day = previous.groupby(local_dates).transform("first").to_numpy()
    loss = (start_of_day - values) / start_of_day
    result = DailyLossLimit(pct=0.04, timezone=timezone, initial_balance=100_000.0).check(equity)
    breaches = np.flatnonzero(values < start_of_day * (1 - 0.04))
    assert result.passed == (breaches.size == 0)
    if breaches.size:
        assert result.breach_time == equity.index[breaches[0]]
        assert result.breach_value == pytest.approx(loss[breaches[0]])


def test_daily_loss_on_initial_basis() -> None:
    equity = _equity(
        {
            "2024-01-01 09:00": 100_000.0,
            "2024-01-01 20:00": 110_000.0,
            "2024-01-02 10:00": 104_900.0,
        }
    )
    # 5_100 lost today: 4.64% of the start-of-day 110_000, but 5.1% of the initial 100_000
    assert DailyLossLimit(basis="start_of_day").check(equity).passed
    result = DailyLossLimit(basis="initial").check(equity)
    assert not result.passed and result.breach_value == pytest.approx(0.051)


def _daily(values: list[float]) -> pd.Series:
    index = pd.date_range("2024-03-01 21:00", periods=len(values), freq="1D", tz="UTC")
    return pd.Series(values, index=index)


def test_total_loss_on_a_slow_bleed() -> None:
    # 1% of the initial balance lost per day: never a daily breach, total breach on day 11
    equity = _daily([100_000.0 - 1_000.0 * k for k in range(12)])  # ... 90_000, 89_000
    assert DailyLossLimit().check(equity).passed
    result = TotalLossLimit(pct=0.10).check(equity)
    assert not result.passed
    assert result.breach_time == pd.Timestamp("2024-03-12 21:00", tz="UTC")  # 89_000
    assert result.breach_value == pytest.approx(0.11)
    # touching exactly -10% is not a breach
    assert TotalLossLimit(pct=0.10).check(equity.iloc[:11]).passed


def test_profit_target_reached_date() -> None:
    equity = _daily([100_000.0 + 2_000.0 * k for k in range(8)])  # 110_000 on day 5
    result = ProfitTarget(pct=0.10).check(equity)
    assert result.passed
    assert result.breach_time == pd.Timestamp("2024-03-06 21:00", tz="UTC")
    assert result.breach_value == pytest.approx(0.10)
    assert not ProfitTarget(pct=0.10).check(equity.iloc[:5]).passed


def _trades(entries: list[str]) -> pd.DataFrame:
    stamps = pd.DatetimeIndex(entries, tz="UTC")
    return pd.DataFrame({"entry_time": stamps, "exit_time": stamps, "pnl": 0.0})


def test_minimum_trading_days_counts_distinct_entry_days() -> None:
    equity = _daily([100_000.0, 100_000.0])
    three = _trades(
        ["2024-03-01 10:00", "2024-03-01 15:00", "2024-03-04 10:00", "2024-03-05 10:00"]
    )
    result = MinimumTradingDays(days=4).check(equity, three)
    assert not result.passed and result.breach_value == 3.0
    four = _trades([*three["entry_time"].astype(str), "2024-03-07 09:00"])
    result = MinimumTradingDays(days=4).check(equity, four)
    assert result.passed and result.breach_value == 4.0
    assert result.breach_time == pd.Timestamp("2024-03-07 09:00", tz="UTC")
    # 23:30 UTC on Mar 4 is Mar 5 in Prague, a day already counted
    late = _trades(["2024-03-01 10:00", "2024-03-02 10:00", "2024-03-04 23:30", "2024-03-05 10:00"])
    assert MinimumTradingDays(days=4, timezone="UTC").check(equity, late).passed
    assert not MinimumTradingDays(days=4, timezone="Europe/Prague").check(equity, late).passed
    assert not MinimumTradingDays().check(equity, None).passed


def test_evaluate_rules_and_challenge_verdict() -> None:
    equity = _daily([100_000.0, 103_000.0, 106_000.0, 109_000.0, 111_000.0])
    trades = _trades(
        ["2024-03-01 10:00", "2024-03-02 10:00", "2024-03-03 10:00", "2024-03-04 10:00"]
    )
    results = evaluate_rules(equity, trades)
    assert [r.name for r in results] == [rule.name for rule in FTMO_DEFAULTS]
    assert challenge_passed(results)
    losing = evaluate_rules(_daily([100_000.0, 94_000.0]), trades)
    assert not challenge_passed(losing)
    assert [r.passed for r in losing] == [False, True, False, True]


def test_rules_refuse_an_equity_without_time_index() -> None:
    with pytest.raises(ConfigError, match="timestamps"):
        TotalLossLimit().check(pd.Series([1.0, 2.0]))
    with pytest.raises(ConfigError, match="timezone"):
        DailyLossLimit(timezone="Mars/Olympus").check(_daily([1.0, 2.0]))


@pytest.mark.parametrize(
    "timezone", ["Europe/Prague", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
)
def test_the_streaming_day_clock_numbers_days_as_the_batch_rules_do(timezone) -> None:
    """The clock keeps the last day's span; across clock changes (Lord Howe moves by 30
    minutes) and half-hour zones it still numbers every stamp's day as the batch form."""
    from moola.sim.propfirm import _DayClock, _local_days

    stamps = pd.date_range("2024-03-28", "2024-04-09", freq="7min", tz="UTC")
    stamps = stamps.append(pd.date_range("2024-10-01", "2024-11-06", freq="13min", tz="UTC"))
    stamps = stamps.as_unit("ns")
    clock = _DayClock(timezone)
    streamed = [clock.day(ns) for ns in stamps.asi8]
    np.testing.assert_array_equal(streamed, _local_days(stamps, timezone))


@pytest.mark.parametrize("timezone", ["Europe/Prague", "America/New_York", "Australia/Lord_Howe"])
def test_bar_days_number_close_times_as_a_conversion_of_each_would(timezone) -> None:
    """A backtest converts its bar times once (``BarDays``): a close that is the next
    bar's open takes that bar's day, the rest (before gaps, the last bar) are converted;
    across clock changes, midnights and gaps every day is the one ``_local_days`` gives."""
    from moola.sim.propfirm import BarDays, _local_days

    opens = pd.date_range("2024-03-29", "2024-04-02", freq="30min", tz="UTC")
    opens = opens.append(pd.date_range("2024-10-25 22:00", "2024-10-28", freq="1h", tz="UTC"))
    opens = opens.delete(np.arange(5, len(opens), 7)).as_unit("ns")  # gaps
    closes = opens + pd.Timedelta("30min")
    days = BarDays(opens, closes)
    np.testing.assert_array_equal(days.closes_in(timezone), _local_days(closes, timezone))
    np.testing.assert_array_equal(days.opens_in(timezone), _local_days(opens, timezone))


def test_daily_loss_given_day_numbers_gives_the_verdict_it_computes_itself() -> None:
    """Day numbers handed in (shared between checks of the same bars) change nothing;
    a count that does not match the equity is refused."""
    from moola.sim.propfirm import _local_days

    stamps = pd.date_range("2024-03-30", periods=200, freq="17min", tz="UTC")
    values = 100_000.0 * np.cumprod(1.0 + np.sin(np.arange(200.0)) * 0.004)
    equity = pd.Series(values, index=stamps)
    rule = DailyLossLimit(pct=0.01, timezone="Europe/Prague")
    days = _local_days(stamps, "Europe/Prague")
    assert rule.check(equity, days=days) == rule.check(equity)
    with pytest.raises(ConfigError, match="day numbers"):
        rule.check(equity, days=days[:-1])


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False), min_size=1, max_size=40
    ),
    initial=st.sampled_from([100_000.0, 3.3e-7, 1.0, 0.0, -2.5]),
)
def test_worst_loss_and_best_gain_are_the_maxima_of_the_whole_curve(values, initial) -> None:
    """The total loss limit and profit target read their worst loss / best gain from the
    lowest / highest equity; it is the same float as the maximum over every point."""
    from moola.sim.propfirm import _extreme_ratio

    v = np.asarray(values)
    with np.errstate(all="ignore"):
        gain, loss = (v - initial) / initial, (initial - v) / initial
        for largest, expected in ((True, np.max(gain)), (False, np.max(loss))):
            got = np.float64(_extreme_ratio(v, initial, largest=largest))
            assert got.tobytes() == np.float64(expected).tobytes() or (
                np.isnan(got) and np.isnan(expected)
            )


@pytest.mark.parametrize("rule", [DailyLossLimit(pct=0.05), TotalLossLimit(pct=0.10)])
def test_a_loss_stream_carries_on_from_its_saved_state(rule):
    """A restarted process (the live risk gate) restores a stream from ``state()`` as JSON
    and streams on to the same breach as one that never stopped."""
    import json

    times = pd.date_range("2024-01-01", periods=120, freq="1h", tz="UTC")
    drift = np.where(np.arange(120) < 60, 0.0, -0.008)  # calm, then a steady loss
    steps = drift + np.random.default_rng(2).normal(0.0, 0.002, 120)
    equity = 100_000.0 * np.exp(np.cumsum(steps))
    whole = rule.stream()
    breaches_whole = [whole.update(t, e) for t, e in zip(times, equity, strict=True)]
    assert any(b is not None for b in breaches_whole[50:])  # the breach comes after the save
    first = rule.stream()
    for t, e in zip(times[:50], equity[:50], strict=True):
        first.update(t, e)
    resumed = rule.stream()
    resumed.load_state(json.loads(json.dumps(first.state())))
    breaches_resumed = [resumed.update(t, e) for t, e in zip(times[50:], equity[50:], strict=True)]
    assert breaches_resumed == breaches_whole[50:]
    assert resumed.result() == whole.result()
    with pytest.raises(ConfigError, match="expected"):
        rule.stream().load_state({"initial": 1.0})
