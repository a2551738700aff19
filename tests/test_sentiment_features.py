"""Sentiment features: the publication-lag rule (an item reaches the first bar opening at or
after its time + lag, never the bar it was published in), the columns' values, items
outside the bars counted, and the no-lookahead harness."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features.sentiment import (
    SENTIMENT_COLUMNS,
    SentimentFeature,
    SentimentParams,
    sentiment_features,
)
from moola.testing import check_feature
from tests.conftest import random_walk_bars


def items(*rows: tuple[str, float, float]) -> pd.DataFrame:
    """Items from ``(published, sentiment, confidence)`` rows (UTC times)."""
    return pd.DataFrame(
        {
            "published": pd.to_datetime([r[0] for r in rows], utc=True),
            "sentiment": [r[1] for r in rows],
            "confidence": [r[2] for r in rows],
        }
    )


@pytest.fixture
def minute_bars() -> pd.DataFrame:
    return random_walk_bars(30, start="2024-01-02 10:00")  # 10:00 .. 10:29, 1m


def test_an_item_inside_a_bar_does_not_reach_that_bar(minute_bars):
    news = items(("2024-01-02 10:02:30", 0.8, 1.0))
    out, stats = sentiment_features(news, minute_bars, SentimentParams(lag="0min"))
    counts = out["sent_count"].to_numpy()
    assert counts[2] == 0  # the 10:02 bar it was published in
    assert counts[3] == 1 and counts.sum() == 1  # the 10:03 bar, the first to open after
    assert out["sent_mean"].iloc[3] == pytest.approx(0.8)
    assert stats.used == 1


def test_the_lag_delays_an_item_to_the_first_bar_opening_at_or_after_time_plus_lag(minute_bars):
    news = items(("2024-01-02 10:02:30", 0.5, 1.0), ("2024-01-02 10:05:00", -0.5, 1.0))
    out, _ = sentiment_features(news, minute_bars, SentimentParams(lag="15min"))
    counts = out["sent_count"].to_numpy()
    assert counts[18] == 1  # 10:17:30 -> the 10:18 bar
    assert counts[20] == 1  # exactly 10:20:00 -> the 10:20 bar itself (opens at t + lag)
    assert counts.sum() == 2 and counts[:18].sum() == 0


def test_count_mean_std_and_surprise_of_a_bar(minute_bars):
    news = items(
        ("2024-01-02 10:00:10", 0.2, 1.0),  # -> 10:01
        ("2024-01-02 10:00:20", 0.4, 1.0),  # -> 10:01
        ("2024-01-02 10:04:10", -0.6, 1.0),  # -> 10:05
        ("2024-01-02 10:04:20", 0.0, 1.0),  # -> 10:05
        ("2024-01-02 10:04:30", -0.3, 1.0),  # -> 10:05
    )
    out, _ = sentiment_features(news, minute_bars, SentimentParams(lag="0min", baseline=10))
    assert out["sent_count"].iloc[1] == 2
    assert out["sent_mean"].iloc[1] == pytest.approx(0.3)
    assert out["sent_std"].iloc[1] == pytest.approx(0.1)
    assert out["sent_mean"].iloc[5] == pytest.approx(-0.3)
    assert out["sent_std"].iloc[5] == pytest.approx(np.std([-0.6, 0.0, -0.3]))
    assert out["sent_surprise"].iloc[5] == pytest.approx(-0.3 - 0.3)  # vs the 10:01 items
    assert out["sent_surprise"].iloc[1] == 0.0  # no baseline yet
    quiet = out.drop(index=[1, 5])
    assert (quiet[["sent_count", "sent_mean", "sent_std", "sent_surprise"]] == 0).all().all()


def test_decayed_sentiment_and_intensity_follow_the_half_life(minute_bars):
    news = items(("2024-01-02 10:00:30", 1.0, 1.0), ("2024-01-02 10:02:30", -1.0, 1.0))
    out, _ = sentiment_features(news, minute_bars, SentimentParams(lag="0min", half_life=2.0))
    intensity, decayed = out["sent_intensity"].to_numpy(), out["sent_decayed"].to_numpy()
    assert intensity[0] == 0.0 and decayed[0] == 0.0
    assert intensity[1] == pytest.approx(1.0)
    assert intensity[3] == pytest.approx(
        0.5 + 1.0
    )  # the first item is two bars, one half-life, old
    assert decayed[3] == pytest.approx((0.5 * 1.0 - 1.0) / 1.5)
    assert intensity[7] == pytest.approx(0.5**3 + 0.5**2)
    # the running sum equals the recursion y[t] = x[t] + d y[t-1]
    d, y, expected = 0.5**0.5, 0.0, []
    for x in out["sent_count"].to_numpy():
        y = x + d * y
        expected.append(y)
    np.testing.assert_allclose(intensity, expected, rtol=1e-12)


def test_confidence_weighting(minute_bars):
    news = items(("2024-01-02 10:00:10", 1.0, 0.9), ("2024-01-02 10:00:20", -1.0, 0.1))
    plain, _ = sentiment_features(news, minute_bars, SentimentParams(lag="0min"))
    weighted, _ = sentiment_features(
        news, minute_bars, SentimentParams(lag="0min", weighting="confidence")
    )
    assert plain["sent_mean"].iloc[1] == pytest.approx(0.0)
    assert weighted["sent_mean"].iloc[1] == pytest.approx(0.8)
    assert weighted["sent_count"].iloc[1] == 2


def test_items_outside_the_bars_are_left_out_and_counted(minute_bars):
    news = items(
        ("2024-01-02 09:30:00", 0.9, 1.0),  # long before the first bar
        ("2024-01-02 09:59:30", 0.1, 1.0),  # within the first bar's window -> 10:00
        ("2024-01-02 10:10:00", 0.2, 1.0),
        ("2024-01-02 10:29:30", 0.3, 1.0),  # after the last bar (10:29) opens
        ("2024-01-03 08:00:00", 0.4, 1.0),  # the next day
    )
    out, stats = sentiment_features(news, minute_bars, SentimentParams(lag="0min"))
    assert (stats.items, stats.used, stats.before, stats.after) == (5, 2, 1, 2)
    assert out["sent_count"].iloc[0] == 1 and out["sent_count"].sum() == 2


def test_the_feature_passes_the_no_lookahead_harness():
    """Random items through and past FX bars with a weekend gap: row t computed on
    bars[: t + 1] equals the full computation (later items and bars change nothing)."""
    bars = generate_market(
        SyntheticMarketConfig(
            n_bars=1_500, seed=5, calendar="fx", start=datetime(2024, 1, 5, 12, tzinfo=UTC)
        )
    ).bars
    bars = bars[bars["symbol"] == bars["symbol"].iloc[0]].reset_index(drop=True)
    rng = np.random.default_rng(3)
    start = bars["timestamp"].iloc[0] - pd.Timedelta("1h")
    span = (bars["timestamp"].iloc[-1] - start + pd.Timedelta("3h")).total_seconds()
    published = start + pd.to_timedelta(np.sort(rng.uniform(0, span, 800)), unit="s")
    news = pd.DataFrame(
        {
            "published": published,
            "sentiment": rng.uniform(-1, 1, 800),
            "confidence": rng.uniform(0, 1, 800),
        }
    )
    for params in (
        {"lag": "15min", "half_life": 3.0, "baseline": 30},
        {"lag": "0min", "half_life": 0.5, "baseline": 1, "weighting": "confidence"},
    ):
        feature = SentimentFeature(news, **params)
        check_feature(feature, bars, n_cuts=25, seed=2)
        assert feature.compute(bars).columns.tolist() == list(SENTIMENT_COLUMNS)
        assert feature.last_stats.used > 0 and feature.last_stats.after > 0


def assert_items_causal(news, bars, params, cuts):
    """Row t computed from only the items usable by bar t's open (published + lag <=
    open[t]) and bars[: t + 1] equals row t of the full computation: no item reaches a bar
    before its time + lag. (``check_feature`` cuts the bars, not the items.)"""
    full, _ = sentiment_features(news, bars, params)
    for t in cuts:
        known = news[news["published"] + params.lag_delta() <= bars["timestamp"].iloc[t]]
        partial, _ = sentiment_features(known, bars.iloc[: t + 1], params)
        np.testing.assert_allclose(
            partial.iloc[-1].to_numpy(),
            full.iloc[t].to_numpy(),
            rtol=1e-9,
            atol=1e-12,
            err_msg=f"bar {t}",
        )


def test_no_item_reaches_a_bar_before_its_time_plus_lag(minute_bars, monkeypatch):
    """Items cut at each bar's open give that bar's row; an aligner that lets an item into
    the bar it was published in (the bar whose open precedes it) fails the same check."""
    from moola.features import sentiment as module

    rng = np.random.default_rng(0)
    start = minute_bars["timestamp"].iloc[0]
    news = pd.DataFrame(
        {
            "published": start + pd.to_timedelta(np.sort(rng.uniform(0, 1800, 60)), unit="s"),
            "sentiment": rng.uniform(-1, 1, 60),
            "confidence": rng.uniform(0, 1, 60),
        }
    )
    cuts = range(len(minute_bars))
    for lag in ("0min", "90s", "5min"):
        assert_items_causal(news, minute_bars, SentimentParams(lag=lag, baseline=5), cuts)

    def leaky(published, bar_opens, *, lag, first_window):
        usable = module._utc_ns(published, "published") + lag.value
        return np.searchsorted(module._utc_ns(bar_opens, "bars"), usable, side="right") - 1

    monkeypatch.setattr(module, "align_items", leaky)
    leaked, _ = sentiment_features(news.iloc[:1], minute_bars, SentimentParams(lag="0min"))
    assert leaked["sent_count"].iloc[int(news["published"].iloc[0].minute)] == 1
    with pytest.raises(AssertionError, match="bar"):
        assert_items_causal(news, minute_bars, SentimentParams(lag="0min"), cuts)


def test_bad_items_and_params_are_refused(minute_bars):
    naive = items(("2024-01-02 10:02:30", 0.8, 1.0))
    naive["published"] = naive["published"].dt.tz_localize(None)
    with pytest.raises(ConfigError, match="no time zone"):
        sentiment_features(naive, minute_bars)
    with pytest.raises(ConfigError, match=r"'sentiment' must lie in \[-1, 1\]; row 0"):
        sentiment_features(items(("2024-01-02 10:02:30", 3.0, 1.0)), minute_bars)
    with pytest.raises(ConfigError, match=r"lack column\(s\) \['sentiment'\]"):
        sentiment_features(pd.DataFrame({"published": naive["published"]}), minute_bars)
    for bad in ({"lag": "-5min"}, {"lag": "soon"}, {"half_life": 0}, {"baseline": 0}):
        with pytest.raises(ConfigError, match="parameters are invalid"):
            SentimentFeature(naive.iloc[:0], **bad)
