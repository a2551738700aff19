"""TA-Lib indicator features: each column is TA-Lib's (or a hand-checked formula on it),
parameters are validated, and ``lookback()`` bars reproduce the full series' last value."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import talib

from moola.core.errors import ConfigError
from moola.data.schema import make_bars
from moola.features import create_feature
from tests.conftest import random_walk_bars


@pytest.fixture(scope="module")
def walk() -> pd.DataFrame:
    return random_walk_bars(3_000, seed=11)


def _hlc(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(bars[c].to_numpy(np.float64) for c in ("high", "low", "close"))


def _talib_reference(name: str, params: dict, bars: pd.DataFrame) -> dict[str, np.ndarray]:
    """The columns each feature must produce, from direct TA-Lib calls."""
    high, low, close = _hlc(bars)
    volume = bars["volume"].to_numpy(np.float64)
    p = params.get("period")
    if name in ("sma", "ema"):
        average = (talib.SMA if name == "sma" else talib.EMA)(close, timeperiod=p)
        return {f"{name}_{p}": average, f"{name}_{p}_ratio": close / average - 1}
    if name == "rsi":
        return {f"rsi_{p}": talib.RSI(close, timeperiod=p)}
    if name == "macd":
        line, signal, hist = talib.MACD(close, params["fast"], params["slow"], params["signal"])
        return {"macd": line, "macd_signal": signal, "macd_hist": hist}
    if name == "bbands":
        upper, middle, lower = talib.BBANDS(close, p, params["nbdev"], params["nbdev"], 0)
        return {
            "bb_upper": upper,
            "bb_middle": middle,
            "bb_lower": lower,
            "bb_percent_b": (close - lower) / (upper - lower),
            "bb_width": (upper - lower) / middle,
        }
    if name == "stoch":
        k, d = talib.STOCH(high, low, close, 5, 3, 0, 3, 0)
        return {"stoch_k": k, "stoch_d": d}
    if name == "mfi":
        return {f"mfi_{p}": talib.MFI(high, low, close, volume, timeperiod=p)}
    if name in ("roc", "mom"):
        return {f"{name}_{p}": getattr(talib, name.upper())(close, timeperiod=p)}
    function = getattr(talib, name.upper())  # atr, natr, adx, cci, willr
    return {f"{name}_{p}": function(high, low, close, timeperiod=p)}


CASES = [
    ("sma", {"period": 7}),
    ("sma", {"period": 50}),
    ("ema", {"period": 21}),
    ("rsi", {"period": 14}),
    ("rsi", {"period": 5}),
    ("macd", {"fast": 12, "slow": 26, "signal": 9}),
    ("macd", {"fast": 5, "slow": 35, "signal": 5}),
    ("bbands", {"period": 20, "nbdev": 2.0}),
    ("bbands", {"period": 10, "nbdev": 1.5}),
    ("atr", {"period": 14}),
    ("natr", {"period": 14}),
    ("adx", {"period": 14}),
    ("cci", {"period": 20}),
    ("willr", {"period": 14}),
    ("roc", {"period": 10}),
    ("mom", {"period": 3}),
    ("stoch", {}),
    ("mfi", {"period": 14}),
]


@pytest.mark.parametrize(("name", "params"), CASES, ids=lambda v: str(v))
def test_columns_equal_direct_talib_calls(walk, name, params):
    feature = create_feature(name, **params)
    out = feature.compute(walk)
    reference = _talib_reference(name, params, walk)
    assert list(out.columns) == list(reference)
    assert out.index.equals(walk.index)
    for column, expected in reference.items():  # bit for bit: the same IEEE operations
        np.testing.assert_array_equal(out[column].to_numpy(), expected, err_msg=column)
        assert np.isnan(out[column].to_numpy()[0]), f"{column} has no NaN warm-up"


@pytest.mark.parametrize(("name", "params"), [*CASES, ("obv", {"period": 20})], ids=str)
def test_lookback_bars_give_the_full_series_last_value(walk, name, params):
    """What the run-time buffer relies on: the last lookback() bars suffice."""
    feature = create_feature(name, **params)
    full = feature.compute(walk).to_numpy()
    scale = np.nanmean(np.abs(full), axis=0)
    for end in (1_500, 2_200, len(walk)):
        tail = feature.compute(walk.iloc[end - feature.lookback() : end]).to_numpy()[-1]
        expected = full[end - 1]
        assert np.isfinite(expected).all()
        assert np.all(np.abs(tail - expected) <= 1e-9 * np.maximum(np.abs(expected), scale))


def test_recursive_lookback_is_long_enough_for_1e9_but_a_short_buffer_is_not(walk):
    """RSI's seed is forgotten only slowly: 10 x period bars leave more than 1e-9."""
    rsi = create_feature("rsi", period=14)
    full = rsi.compute(walk)["rsi_14"].to_numpy()
    short = rsi.compute(walk.iloc[-140:])["rsi_14"].to_numpy()[-1]
    assert abs(short - full[-1]) > 1e-9 * abs(full[-1])
    assert rsi.lookback() > 300


def test_sma_ratio_and_bbands_by_hand():
    close = np.array([10.0, 10.0, 10.0, 11.0, 13.0])
    bars = make_bars(
        pd.date_range("2024-01-01", periods=5, freq="1min", tz="UTC"),
        close,
        close,
        close,
        close,
        np.ones(5),
        symbol="X",
        timeframe="1m",
    )
    sma = create_feature("sma", period=3).compute(bars)
    np.testing.assert_allclose(sma["sma_3"], [np.nan, np.nan, 10.0, 31 / 3, 34 / 3])
    np.testing.assert_allclose(sma["sma_3_ratio"].iloc[-1], 13 / (34 / 3) - 1)
    bb = create_feature("bbands", period=3, nbdev=1.0).compute(bars)
    # A flat window has coinciding bands: %B is defined as 0.5 and the width is 0.
    assert bb["bb_percent_b"].iloc[2] == 0.5 and bb["bb_width"].iloc[2] == 0.0
    # Last window 10, 11, 13: mean 34/3, population sd sqrt(14/9).
    sd = np.sqrt(((10 - 34 / 3) ** 2 + (11 - 34 / 3) ** 2 + (13 - 34 / 3) ** 2) / 3)
    np.testing.assert_allclose(bb["bb_upper"].iloc[-1], 34 / 3 + sd, rtol=1e-12)
    np.testing.assert_allclose(bb["bb_percent_b"].iloc[-1], (13 - (34 / 3 - sd)) / (2 * sd))
    np.testing.assert_allclose(bb["bb_width"].iloc[-1], 2 * sd / (34 / 3))


def test_windowed_obv_is_the_signed_volume_of_the_last_bars():
    close = np.array([1.0, 2.0, 1.5, 1.5, 3.0, 2.0])
    volume = np.array([5.0, 10.0, 20.0, 40.0, 80.0, 160.0])
    bars = make_bars(
        pd.date_range("2024-01-01", periods=6, freq="1min", tz="UTC"),
        close,
        close,
        close,
        close,
        volume,
        symbol="X",
        timeframe="1m",
    )
    out = create_feature("obv", period=2).compute(bars)
    # Signed volumes from bar 1: +10, -20, 0 (unchanged close), +80, -160.
    np.testing.assert_array_equal(out["obv_2"], [np.nan, np.nan, -10.0, -20.0, 80.0, -80.0])
    np.testing.assert_allclose(
        out["obv_2_ratio"], [np.nan, np.nan, -10 / 30, -20 / 60, 80 / 120, -80 / 240]
    )


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("sma", {"period": 1}, "period"),
        ("rsi", {"period": 0}, "period"),
        ("bbands", {"nbdev": -1.0}, "nbdev"),
        ("macd", {"fast": 30, "slow": 26}, "fast (30) must be below slow (26)"),
        ("ema", {"perid": 10}, "perid: unknown parameter"),
    ],
)
def test_bad_parameters_are_config_errors_naming_them(name, params, fragment):
    with pytest.raises(ConfigError, match=rf"Feature '{name}'.*{re.escape(fragment)}"):
        create_feature(name, **params)


def test_short_and_empty_input_give_nan_rows(walk):
    for name, params in CASES:
        feature = create_feature(name, **params)
        assert feature.compute(walk.iloc[:0]).shape == (0, len(feature.columns()))
        out = feature.compute(walk.iloc[:3])
        assert out.shape == (3, len(feature.columns()))
        assert out.iloc[0].isna().all(), name
