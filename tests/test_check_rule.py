"""check_rule: every rule an ExecutionConfig can hold gives the same verdict streamed bar by
bar as on the finished curve (same breach, same time), across DST in several time zones,
and the checker catches a streaming form that is wrong."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moola.sim import DailyLossLimit, MinimumTradingDays, RuleStream, TotalLossLimit
from moola.sim.execution import RULE_SPECS
from moola.sim.propfirm import _DailyLossStream, _DayClock
from moola.testing import check_rule
from moola.testing.rules import _fill_at

ZONES = ["UTC", "Europe/Prague", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]
# Weeks holding a DST change in both hemispheres (Prague/New York in March and
# October/November; Sydney in April and October).
DST_STARTS = ["2024-03-08", "2024-03-29", "2024-04-04", "2024-10-01", "2024-10-25", "2024-11-01"]


@st.composite
def equity_paths(draw, max_bars: int = 40) -> tuple[pd.Series, list[int]]:
    """Random equity on increasing stamps (gaps of 20 min to 9 h) around a DST change,
    with moves big enough to cross 5% daily and 10% total limits, and random fill bars."""
    n = draw(st.integers(1, max_bars))
    start = pd.Timestamp(draw(st.sampled_from(DST_STARTS)), tz="UTC")
    start += pd.Timedelta(minutes=draw(st.integers(0, 24 * 60)))
    gaps = draw(st.lists(st.integers(20, 540), min_size=n, max_size=n))
    moves = draw(st.lists(st.floats(-0.04, 0.04), min_size=n, max_size=n))
    stamps = start + pd.to_timedelta(np.cumsum(gaps) - gaps[0], unit="min")
    values = 100_000.0 * np.cumprod(1.0 + np.asarray(moves))
    fills = draw(st.lists(st.integers(0, n - 1), max_size=8))
    return pd.Series(values, index=pd.DatetimeIndex(stamps)), fills


def _registered(timezone: str) -> list:
    """One rule of every registered kind, with limits the random paths can cross."""
    rules = []
    for spec in RULE_SPECS:
        fields = spec.model_fields
        values = {}
        if "timezone" in fields:
            values["timezone"] = timezone
        if "days" in fields:
            values["days"] = 2
        rules.append(spec(**values).build())
    rules += [
        DailyLossLimit(pct=0.03, timezone=timezone, basis="initial"),
        DailyLossLimit(pct=0.05, timezone=timezone, initial_balance=101_000.0),
        TotalLossLimit(pct=0.05),
    ]
    return rules


@pytest.mark.parametrize("timezone", ZONES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_registered_rule_streams_its_batch_verdict(timezone, data) -> None:
    paths = [data.draw(equity_paths()) for _ in range(2)]
    for rule in _registered(timezone):
        check_rule(rule, *paths)


def test_the_registry_covers_the_rules_the_issue_names() -> None:
    names = {spec.model_fields["rule"].default for spec in RULE_SPECS}
    assert {
        "daily_loss_limit",
        "total_loss_limit",
        "max_position",
        "max_open_positions",
        "risk_per_trade",
        "trading_halt",
    } <= names


def _over_prague_dst() -> pd.Series:
    """Hourly bars through the night clocks go forward in Prague (02:00 -> 03:00 CEST on
    31 March 2024, 01:00 UTC): the Prague day starts at 23:00 UTC before, 22:00 UTC after."""
    stamps = pd.date_range("2024-03-30 20:00", "2024-03-31 23:00", freq="1h", tz="UTC")
    values = np.full(len(stamps), 100_000.0)
    values[stamps >= pd.Timestamp("2024-03-30 23:00", tz="UTC")] = 99_000.0  # Prague day 2
    values[stamps >= pd.Timestamp("2024-03-31 21:00", tz="UTC")] = 94_000.0  # still day 2
    return pd.Series(values, index=stamps)


def test_daily_rule_breaches_at_the_same_bar_streamed_across_dst() -> None:
    equity = _over_prague_dst()
    rule = DailyLossLimit(pct=0.05, timezone="Europe/Prague")
    batch = rule.check(equity)
    assert batch.breach_time == pd.Timestamp("2024-03-31 21:00", tz="UTC")
    stream = rule.stream()
    breaches = [stream.update(t, v) for t, v in equity.items()]
    hits = [b for b in breaches if b is not None]
    assert len(hits) == 1 and hits[0].time == batch.breach_time
    assert hits[0].value == batch.breach_value
    check_rule(rule, equity)


@dataclass(frozen=True)
class _UtcDaysDailyLoss(DailyLossLimit):
    """A deliberately wrong streaming form: it rolls days at UTC midnight whatever the
    rule's time zone."""

    def stream(self) -> RuleStream:
        stream = _DailyLossStream(self)
        stream._clock = _DayClock("UTC")
        return stream


@dataclass(frozen=True)
class _OffByOneTotalLoss(TotalLossLimit):
    """A deliberately wrong streaming form: it reports the breach one bar late."""

    def stream(self) -> RuleStream:
        inner = super().stream()

        class Late(RuleStream):
            rule = self
            pending = None

            def update(self, time, equity, fills=()):
                out, self.pending = self.pending, inner.update(time, equity, fills)
                return out

            def result(self):
                return inner.result()

        return Late()


def test_check_rule_fails_a_wrong_streaming_rule() -> None:
    equity = _over_prague_dst()
    wrong_days = _UtcDaysDailyLoss(pct=0.05, timezone="Europe/Prague")
    with pytest.raises(AssertionError, match=r"breach_value: streaming 0\.0505"):
        check_rule(wrong_days, equity)
    falling = pd.Series(
        [100_000.0, 95_000.0, 89_000.0, 88_000.0],
        index=pd.date_range("2024-01-02", periods=4, freq="1h", tz="UTC"),
    )
    check_rule(TotalLossLimit(pct=0.10), falling)
    with pytest.raises(AssertionError, match="update returned None"):
        check_rule(_OffByOneTotalLoss(pct=0.10), falling)


def test_a_breach_needs_no_later_bar() -> None:
    """No lookahead: the breach found on the whole path is found, at the same time, by the
    stream fed only the bars up to it, and the batch form on that prefix agrees."""
    equity = _over_prague_dst()
    rule = DailyLossLimit(pct=0.05, timezone="Europe/Prague")
    full = rule.check(equity)
    upto = equity.loc[: full.breach_time]
    stream = rule.stream()
    hits = [stream.update(t, v) for t, v in upto.items()]
    assert hits[-1] is not None and hits[-1].time == full.breach_time
    assert all(h is None for h in hits[:-1])
    assert rule.check(upto).breach_time == full.breach_time
    changed = equity.copy()
    changed.loc[changed.index > full.breach_time] = 1e9  # the future cannot undo it
    assert rule.check(changed).breach_time == full.breach_time


def test_trading_days_stream_counts_days_with_a_fill() -> None:
    """Days in Prague, bars every 2 h from 29 Mar 20:00 UTC, clocks forward on 31 Mar: the
    fill at bar 25 (31 Mar 22:00 UTC) is on 1 April in Prague, the same day as bar 26's,
    so the fourth trading day comes with bar 40 (2 Apr 04:00 UTC), not bar 26 as in UTC."""
    equity = pd.Series(
        100_000.0, index=pd.date_range("2024-03-29 20:00", periods=60, freq="2h", tz="UTC")
    )
    rule = MinimumTradingDays(days=4, timezone="Europe/Prague")
    fill_bars = [0, 2, 25, 26, 40]
    check_rule(rule, (equity, fill_bars), (equity, []))
    stream = rule.stream()
    for i, (time, value) in enumerate(equity.items()):
        stream.update(time, value, [_fill_at(time, i)] if i in fill_bars else [])
    result = stream.result()
    assert result.passed and result.breach_value == 4.0
    assert result.breach_time == pd.Timestamp("2024-04-02 04:00", tz="UTC")
