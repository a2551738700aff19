"""The scale-free bar view: hand-computed rows, scale invariance, windows, causality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.schema import make_bars
from moola.features.base import create_feature
from moola.features.relative import RELATIVE_COLUMNS, Relative, relative_windows
from moola.testing import check_feature, check_incremental
from tests.conftest import random_walk_bars

_PRICES = ["open", "high", "low", "close"]


def _bars(ohlc, volume) -> pd.DataFrame:
    o, h, low, c = (np.array(x, dtype=float) for x in zip(*ohlc, strict=True))
    stamps = pd.date_range("2024-01-02", periods=len(o), freq="1min", tz="UTC")
    return make_bars(stamps, o, h, low, c, volume, symbol="X", timeframe="1m")


def test_hand_computed_rows() -> None:
    bars = _bars(
        [(99, 100, 98, 100), (101, 104, 99, 102), (98, 99, 97, 97.5), (97.5, 97.5, 97.5, 97.5)],
        volume=[24, 50, 0, 0],
    )
    out = Relative().compute(bars)
    row = out.iloc[1]
    expected = {
        "rel_open": np.log(1.01),
        "rel_high": np.log(1.04),
        "rel_low": np.log(0.99),
        "rel_close": np.log(1.02),
        "rel_range": np.log(104 / 99),
        "rel_body": 0.2,  # (102 - 101) / 5
        "rel_upper_wick": 0.4,  # (104 - 102) / 5
        "rel_lower_wick": 0.4,  # (101 - 99) / 5
        "rel_close_pos": 0.6,  # (102 - 99) / 5
        "rel_log_volume_change": np.log(51 / 25),
        "rel_true_range": np.log(104 / 99),  # the previous close lies inside the bar
    }
    assert list(out.columns) == list(expected)
    np.testing.assert_allclose(row.to_numpy(), list(expected.values()), rtol=1e-12)
    # A gap down: the true range reaches up to the previous close (102).
    assert out["rel_true_range"].iloc[2] == pytest.approx(np.log(102 / 97))
    assert out["rel_open"].iloc[2] == pytest.approx(np.log(98 / 102))
    assert out["rel_lower_wick"].iloc[2] == pytest.approx(0.25)  # (97.5 - 97) / 2
    # A bar with no range: no body, no wicks, close in the middle.
    flat = out.iloc[3]
    assert (flat["rel_body"], flat["rel_upper_wick"], flat["rel_lower_wick"]) == (0, 0, 0)
    assert flat["rel_close_pos"] == 0.5 and flat["rel_range"] == 0.0


def test_first_bar_lacks_only_the_columns_that_need_a_previous_bar() -> None:
    out = Relative().compute(random_walk_bars(5))
    first = out.iloc[0]
    needs_previous = {"rel_open", "rel_high", "rel_low", "rel_close", "rel_log_volume_change"}
    needs_previous.add("rel_true_range")
    assert set(first.index[first.isna()]) == needs_previous
    assert not out.iloc[1:].isna().any().any()


def test_scale_invariance() -> None:
    bars = random_walk_bars(500)
    scaled = bars.copy()
    scaled[_PRICES] = scaled[_PRICES] * 1000.0
    np.testing.assert_allclose(
        Relative().compute(scaled), Relative().compute(bars), rtol=1e-9, atol=1e-12
    )


def test_relative_windows_first_bar_is_relative_to_its_own_open() -> None:
    bars = random_walk_bars(40)
    values = bars[_PRICES].to_numpy()
    windows = np.stack([values[0:10], values[10:20], values[20:30]])
    out = relative_windows(windows)
    assert out.shape == (3, 10, 11) and out.dtype == np.float32
    first = out[:, 0, :]
    o, h = windows[:, 0, 0], windows[:, 0, 1]
    np.testing.assert_array_equal(first[:, RELATIVE_COLUMNS.index("rel_open")], 0.0)
    np.testing.assert_allclose(first[:, RELATIVE_COLUMNS.index("rel_high")], np.log(h / o), 1e-6)
    # Without volume, the volume channel is 0.
    np.testing.assert_array_equal(out[:, :, RELATIVE_COLUMNS.index("rel_log_volume_change")], 0)
    # After the first bar a window holds the bar feature's values (float32).
    series = Relative().compute(bars).to_numpy()
    with_volume = relative_windows(windows, volume=bars["volume"].to_numpy()[:30].reshape(3, 10))
    np.testing.assert_allclose(with_volume[1, 1:], series[11:20], rtol=1e-5, atol=1e-7)


def test_relative_windows_take_volume_as_fifth_channel_and_are_scale_free() -> None:
    bars = random_walk_bars(60)
    five = bars[[*_PRICES, "volume"]].to_numpy().reshape(3, 20, 5)
    separate = relative_windows(five[:, :, :4], volume=five[:, :, 4])
    np.testing.assert_array_equal(relative_windows(five), separate)
    scaled = five.copy()
    scaled[:, :, :4] *= 1000.0
    np.testing.assert_allclose(relative_windows(scaled), separate, rtol=1e-5, atol=1e-6)


def test_relative_windows_reject_bad_shapes() -> None:
    with pytest.raises(ConfigError, match=r"\(N, T, 4\)"):
        relative_windows(np.ones((3, 10)))
    with pytest.raises(ConfigError, match="volume"):
        relative_windows(np.ones((3, 10, 4)), volume=np.ones((3, 9)))
    with pytest.raises(ConfigError, match="twice"):
        relative_windows(np.ones((3, 10, 5)), volume=np.ones((3, 10)))


def test_registered_without_parameters() -> None:
    assert create_feature("relative").columns() == RELATIVE_COLUMNS
    assert len(RELATIVE_COLUMNS) == 11
    with pytest.raises(ConfigError, match="unknown parameter"):
        create_feature("relative", period=3)


def test_causal_and_streaming(sp500) -> None:
    check_feature(Relative(), sp500)
    check_feature(Relative(), random_walk_bars(1_000))
    check_incremental(Relative(), sp500.iloc[:300], start=50)
