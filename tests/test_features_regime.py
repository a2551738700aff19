"""Volatility regime: trailing ATR percentile, hand-computed, and never ahead of a change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.schema import make_bars
from moola.features.base import create_feature
from moola.features.regime import VolatilityRegime
from moola.testing import check_feature, check_incremental
from tests.conftest import random_walk_bars

NAN = np.nan


def _bars_with_ranges(ranges, *, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Bars at a fixed price of 100 with the given high - low ranges: with the previous
    close inside every bar, each bar's true range is its range."""
    ranges = np.asarray(ranges, dtype=float)
    if noise:
        ranges = ranges * np.random.default_rng(seed).uniform(1 - noise, 1 + noise, ranges.size)
    mid = np.full(ranges.size, 100.0)
    stamps = pd.date_range("2024-01-02", periods=ranges.size, freq="1min", tz="UTC")
    return make_bars(
        stamps, mid, mid + ranges / 2, mid - ranges / 2, mid, np.ones(ranges.size),
        symbol="X", timeframe="1m",
    )  # fmt: skip


def test_hand_computed_small_example() -> None:
    # ATR(1) is the true range (from bar 1 on): 1, 2, 3, 1, 1, 5, 3.
    bars = _bars_with_ranges([1, 1, 2, 3, 1, 1, 5, 3])
    out = VolatilityRegime(atr_period=1, window=3).compute(bars)
    # Rank of the current ATR among the last 3, (rank - 1) / 2, ties averaged:
    # bar 3: [1, 2, 3] -> 1 (high); bar 4: [2, 3, 1] -> 0 (low);
    # bar 5: [3, 1, 1] -> rank 1.5 -> 0.25 (low); bar 6: [1, 1, 5] -> 1 (high);
    # bar 7: [1, 5, 3] -> 0.5 (medium).
    expected = [
        [NAN, NAN, NAN],
        [NAN, NAN, NAN],
        [NAN, NAN, NAN],
        [0, 0, 1],
        [1, 0, 0],
        [1, 0, 0],
        [0, 0, 1],
        [0, 1, 0],
    ]
    np.testing.assert_array_equal(out.to_numpy(), expected)


def test_switch_from_calm_to_wild_flips_to_high_at_the_switch_never_before() -> None:
    switch = 400
    bars = _bars_with_ranges([1.0] * switch + [4.0] * 200)
    feature = VolatilityRegime(atr_period=14, window=100)
    out = feature.compute(bars)
    warm = 14 + 100 - 1
    assert out.iloc[:warm].isna().all().all()
    # Constant ATR before the switch: every value ties, rank 0.5, medium.
    assert (out["vol_regime_medium"].iloc[warm:switch] == 1).all()
    assert (out["vol_regime_high"].iloc[warm:switch] == 0).all()
    # The wild bars raise the ATR from the switch bar on: each is the window's highest.
    assert (out["vol_regime_high"].iloc[switch : switch + 100] == 1).all()
    # And nothing before the switch knows about it.
    before = feature.compute(bars.iloc[:switch])
    pd.testing.assert_frame_equal(before, out.iloc[:switch])


def test_noisy_calm_then_wild_is_high_only_after_the_switch() -> None:
    switch = 600
    bars = _bars_with_ranges([1.0] * switch + [5.0] * 150, noise=0.3, seed=3)
    out = VolatilityRegime(atr_period=14, window=200).compute(bars)
    # Within a few bars of the switch the ATR leaves the calm band and stays high while
    # the wild bars are fewer than a third of the window.
    assert (out["vol_regime_high"].iloc[switch + 5 : switch + 60] == 1).all()
    assert out["vol_regime_high"].iloc[switch - 50 : switch].mean() < 0.7
    check_feature(VolatilityRegime(atr_period=14, window=200), bars)


def test_one_hot_after_warm_up() -> None:
    out = VolatilityRegime(window=50).compute(random_walk_bars(500))
    warm = out.dropna()
    assert len(warm) == 500 - (14 + 50 - 1)
    assert (warm.sum(axis=1) == 1).all()
    # Ranks spread over all three regimes on a random walk.
    assert (warm.mean() > 0.1).all()


def test_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="low_quantile"):
        create_feature("volatility_regime", low_quantile=0.7, high_quantile=0.3)
    with pytest.raises(ConfigError, match="window"):
        create_feature("volatility_regime", window=1)
    assert create_feature("volatility_regime").columns() == (
        "vol_regime_low",
        "vol_regime_medium",
        "vol_regime_high",
    )


def test_causal_on_the_sp500_and_a_random_walk(sp500) -> None:
    check_feature(VolatilityRegime(window=250), sp500)
    check_feature(VolatilityRegime(window=100, atr_period=5), random_walk_bars(1_500))


def test_streaming_matches_batch(sp500) -> None:
    check_incremental(VolatilityRegime(window=30, atr_period=5), sp500.iloc[:500], start=250)
