"""Spread and volume features: hand-computed values on tiny series, causality on real prices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.schema import make_bars
from moola.features.base import create_feature
from moola.features.price import Spread, Volume, atr_lookback
from moola.testing import check_feature, check_incremental
from tests.conftest import random_walk_bars


def _bars(ohlc: list[tuple[float, float, float, float]], volume=None) -> pd.DataFrame:
    o, h, low, c = (np.array(x, dtype=float) for x in zip(*ohlc, strict=True))
    stamps = pd.date_range("2024-01-02", periods=len(o), freq="1min", tz="UTC")
    return make_bars(stamps, o, h, low, c, volume, symbol="X", timeframe="1m")


def test_spread_hand_computed() -> None:
    bars = _bars(
        [
            (10, 11, 9, 10),
            (10, 12, 10, 11),  # TR = 2
            (11, 11.5, 10.5, 11),  # TR = 1
            (11, 14, 11, 13),  # TR = 3
            (15, 15.5, 14.5, 15),  # gap up: TR = 15.5 - 13 = 2.5, not the range 1
        ]
    )
    out = Spread(atr_period=2).compute(bars)
    np.testing.assert_allclose(out["spread"], [2, 2, 1, 3, 1])
    np.testing.assert_allclose(out["spread_pct"], [0.2, 2 / 11, 1 / 11, 3 / 13, 1 / 15])
    # Wilder ATR(2): seeded with the mean of the first two true ranges, then
    # atr = (atr_prev + tr) / 2.
    atr = [np.nan, np.nan, 1.5, 2.25, 2.375]
    np.testing.assert_allclose(out["atr"], atr)
    np.testing.assert_allclose(out["spread_atr"], [np.nan, np.nan, 1 / 1.5, 3 / 2.25, 1 / 2.375])


def test_spread_of_a_flat_market_is_as_usual() -> None:
    out = Spread(atr_period=2).compute(_bars([(5, 5, 5, 5)] * 4))
    np.testing.assert_allclose(out["atr"], [np.nan, np.nan, 0, 0])
    np.testing.assert_allclose(out["spread_atr"], [np.nan, np.nan, 1, 1])


def test_volume_hand_computed() -> None:
    bars = _bars([(1, 1, 1, 1)] * 5, volume=[1, 2, 3, 6, 0])
    out = Volume(period=3).compute(bars)
    np.testing.assert_allclose(out["volume_ma"], [np.nan, np.nan, 2, 11 / 3, 3])
    np.testing.assert_allclose(out["volume_ratio"], [np.nan, np.nan, 1.5, 18 / 11, 0])
    # slope over 3 points = (last - first) / 2; trend = slope * 3 / ma
    np.testing.assert_allclose(out["volume_trend"], [np.nan, np.nan, 1.5, 18 / 11, -1.5])


def test_volume_without_any_volume_is_neutral() -> None:
    out = Volume(period=3).compute(_bars([(1, 1, 1, 1)] * 4, volume=[0, 0, 0, 0]))
    np.testing.assert_allclose(out["volume_ratio"], [np.nan, np.nan, 1, 1])
    np.testing.assert_allclose(out["volume_trend"], [np.nan, np.nan, 0, 0])


def test_volume_ratio_and_trend_are_scale_free() -> None:
    bars = random_walk_bars(300)
    scaled = bars.assign(volume=bars["volume"] * 1000)
    a, b = Volume().compute(bars), Volume().compute(scaled)
    for name in ("volume_ratio", "volume_trend"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-9)


def test_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="atr_period"):
        create_feature("spread", atr_period=0)
    with pytest.raises(ConfigError, match="unknown parameter"):
        create_feature("volume", window=3)
    assert create_feature("spread").columns() == ("spread", "spread_pct", "atr", "spread_atr")
    assert create_feature("volume").columns() == ("volume_ma", "volume_ratio", "volume_trend")


def test_atr_lookback_settles_the_wilder_seed() -> None:
    # After lookback bars the seed's weight (1 - 1/14)^k is below 1e-12.
    k = atr_lookback(14) - 15
    assert (13 / 14) ** k < 1e-12 <= (13 / 14) ** (k - 1)


@pytest.mark.parametrize("feature", [Spread(), Volume(), Spread(atr_period=3), Volume(period=5)])
def test_causal_on_random_walk_and_on_the_sp500(feature, sp500) -> None:
    check_feature(feature, random_walk_bars(1_000))
    check_feature(feature, sp500)


@pytest.mark.parametrize("feature", [Spread(atr_period=3), Volume(period=5)])
def test_streaming_matches_batch(feature, sp500) -> None:
    check_incremental(feature, sp500.iloc[:400], start=100)
