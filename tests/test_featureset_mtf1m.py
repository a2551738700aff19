"""The shipped ``mtf1m`` set: 1-minute bars with closed 5m/15m/1h context, no lookahead."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features import list_feature_sets, load_feature_set
from moola.testing import check_feature, check_incremental

LOOKBACK = 13_020  # 217 hourly bars (EMA 8 settled to 1e-12) of 60 minutes


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    """11 days of 24/7 1-minute bars: longer than the set's lookback."""
    config = SyntheticMarketConfig(
        n_bars=16_000, seed=4, calendar="crypto", start=datetime(2024, 2, 1, tzinfo=UTC)
    )
    return generate_market(config).bars


@pytest.fixture(scope="module")
def computed(market) -> pd.DataFrame:
    return load_feature_set("mtf1m").compute(market)


def test_mtf1m_is_shipped_with_context_columns_and_a_documented_lookback():
    fset = load_feature_set("mtf1m")
    assert "mtf1m" in list_feature_sets()
    assert fset.lookback == LOOKBACK  # multi_timeframe's default 10/30 would be 50,880
    columns = list(fset.columns)
    assert columns[:11] == [c for c in columns if c.startswith("rel_")]
    assert {"rsi_14", "atr", "mtf_alignment", "mtf_direction", "mtf_strength"} <= set(columns)
    assert [c for c in columns if c.startswith("mtf_trend_")] == [
        "mtf_trend_5m", "mtf_trend_15m", "mtf_trend_1h",
    ]  # fmt: skip


def test_mtf1m_values_are_defined_after_nine_closed_hours_and_alignment_is_a_share(
    market, computed
):
    first_hour = market["timestamp"].iloc[0]
    defined = computed["mtf_alignment"].notna().to_numpy()
    first = int(np.argmax(defined))
    assert defined[first:].all()
    # 9 hourly bars (slow + 1) must have closed: the first defined row closes at 09:00.
    assert market["timestamp"].iloc[first] + pd.Timedelta(minutes=1) == first_hour + pd.Timedelta(
        hours=9
    )
    alignment = computed["mtf_alignment"].iloc[first:]
    assert set(np.round(alignment.unique(), 6)) <= {round(1 / 3, 6), round(2 / 3, 6), 1.0}
    assert set(computed["mtf_direction"].iloc[first:].unique()) <= {-1.0, 0.0, 1.0}


def test_mtf1m_sees_no_future(market):
    """Row t from bars[: t + 1] equals row t from all bars, at cut points in and after the
    warm-up (moola.testing.check_feature)."""
    check_feature(load_feature_set("mtf1m"), market, n_cuts=8)


def test_hourly_context_changes_only_when_an_hourly_bar_closes(market, computed):
    """A 1-minute bar sees the hour in progress only once it has closed: the 1h trend
    may change only on the bar that closes an hour (opening at hh:59)."""
    trend = computed["mtf_trend_1h"].to_numpy()
    same = (trend[1:] == trend[:-1]) | (np.isnan(trend[1:]) & np.isnan(trend[:-1]))
    changed = np.flatnonzero(~same) + 1  # the first defined value counts as a change
    minute = market["timestamp"].dt.minute.to_numpy()
    assert len(changed) > 100 and (minute[changed] == 59).all()
    # Rewriting every bar after one hour's close leaves that hour's context unchanged.
    cut = int(changed[len(changed) // 2])
    future = market.copy()
    future.loc[cut + 1 :, ["open", "high", "low", "close"]] *= 1.5
    again = load_feature_set("mtf1m").compute(future)
    pd.testing.assert_frame_equal(again.iloc[: cut + 1], computed.iloc[: cut + 1])


def test_mtf1m_streams_like_batch(market):
    check_incremental(load_feature_set("mtf1m"), market, start=len(market) - 150)
