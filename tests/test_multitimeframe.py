"""Higher time frames: hand-computed resampling, and alignment that never uses an open bar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.schema import is_canonical, make_bars
from moola.features.base import create_feature
from moola.features.multitimeframe import MultiTimeframe, align_higher_timeframe, resample_bars
from moola.testing import check_feature, check_incremental
from tests.conftest import random_walk_bars


def _minute_bars(n: int = 12, start: str = "2024-01-02 10:00", symbol: str = "X") -> pd.DataFrame:
    i = np.arange(n, dtype=float)
    high, low = 10 + i + 0.5, 10 + i - 0.5
    high[2], low[3] = 20.0, 1.0  # a spike up in bar 2 and down in bar 3
    stamps = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    return make_bars(stamps, 10 + i, high, low, 10 + i + 0.25, i + 1, symbol=symbol, timeframe="1m")


def _path_bars(close: np.ndarray, start: str = "2024-01-02 00:00") -> pd.DataFrame:
    open_ = np.concatenate([[close[0]], close[:-1]])
    stamps = pd.date_range(start, periods=close.size, freq="1min", tz="UTC")
    return make_bars(
        stamps, open_, np.maximum(open_, close) + 0.01, np.minimum(open_, close) - 0.01, close,
        np.ones(close.size), symbol="X", timeframe="1m",
    )  # fmt: skip


def test_resample_hand_computed() -> None:
    out = resample_bars(_minute_bars(), "5m")
    assert is_canonical(out)
    assert list(out["timestamp"]) == list(
        pd.to_datetime(["2024-01-02 10:00", "2024-01-02 10:05"], utc=True)
    )
    # 10:00 bucket = bars 0-4, 10:05 bucket = bars 5-9 (first / max / min / last / sum).
    np.testing.assert_array_equal(out["open"], [10, 15])
    np.testing.assert_array_equal(out["high"], [20, 19.5])
    np.testing.assert_array_equal(out["low"], [1, 14.5])
    np.testing.assert_array_equal(out["close"], [14.25, 19.25])
    np.testing.assert_array_equal(out["volume"], [15, 40])
    assert (out["timeframe"] == "5m").all() and (out["symbol"] == "X").all()


def test_incomplete_trailing_bar_is_dropped_unless_asked_for() -> None:
    bars = _minute_bars()  # 10:10 bucket has only 10:10 and 10:11
    kept = resample_bars(bars, "5m", drop_incomplete=False)
    assert len(kept) == 3
    last = kept.iloc[-1]
    assert (last["open"], last["high"], last["low"], last["close"], last["volume"]) == (
        20,
        21.5,
        19.5,
        21.25,
        23,
    )
    # With its last 1m bar (10:14) present the trailing bucket is complete.
    assert len(resample_bars(_minute_bars(15), "5m")) == 3
    assert len(resample_bars(_minute_bars(14), "5m")) == 2


def test_a_gap_inside_the_history_does_not_make_a_bucket_incomplete() -> None:
    bars = _minute_bars().drop(index=7).reset_index(drop=True)  # no 10:07 bar
    out = resample_bars(bars, "5m")
    assert len(out) == 2
    assert (out["close"].iloc[1], out["volume"].iloc[1]) == (19.25, 40 - 8)


def test_resample_works_per_symbol() -> None:
    bars = pd.concat(
        [_minute_bars(10, symbol="A"), _minute_bars(10, symbol="B")], ignore_index=True
    )
    out = resample_bars(bars, "5m")
    assert list(out["symbol"]) == ["A", "A", "B", "B"]
    np.testing.assert_array_equal(out["volume"], [15, 40, 15, 40])


def test_non_multiple_timeframes_are_config_errors_naming_them() -> None:
    with pytest.raises(ConfigError, match="'90s'"):
        resample_bars(_minute_bars(), "90s")
    five = resample_bars(_minute_bars(15), "5m")
    with pytest.raises(ConfigError, match="'7m'"):
        resample_bars(five, "7m")
    with pytest.raises(ConfigError, match="'1m'"):
        resample_bars(five, "1m")
    ten = random_walk_bars(200, timeframe="10m")
    with pytest.raises(ConfigError, match=r"multi_timeframe.*'15m'"):
        MultiTimeframe(timeframes=("30m", "15m")).compute(ten)


def test_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="timeframes"):
        create_feature("multi_timeframe", timeframes=("5x",))
    with pytest.raises(ConfigError, match="fast"):
        create_feature("multi_timeframe", fast=30, slow=10)
    assert create_feature("multi_timeframe").columns() == (
        "mtf_alignment",
        "mtf_direction",
        "mtf_strength",
        "mtf_trend_5m",
        "mtf_trend_15m",
        "mtf_trend_1h",
    )


def test_align_uses_only_higher_bars_closed_by_the_base_bars_close() -> None:
    hours = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(
                ["2024-01-02 09:00", "2024-01-02 10:00", "2024-01-02 11:00"], utc=True
            ),
            "value": [1.0, 2.0, 3.0],
        }
    )  # fmt: skip
    minutes = ["09:58", "09:59", "10:00", "10:58", "10:59", "11:59", "12:30"]
    stamps = [f"2024-01-02 {m}" for m in minutes]
    ones = np.ones(len(stamps))
    base = make_bars(stamps, ones, ones, ones, ones, ones, symbol="X", timeframe="1m")
    out = align_higher_timeframe(hours, base, "1h")
    # The 09:59 bar closes at 10:00, when the 09:00 hour closes; the 09:58 bar is too early.
    np.testing.assert_array_equal(out["value"], [np.nan, 1, 1, 1, 2, 3, 3])
    assert list(out.columns) == ["value"] and out.index.equals(base.index)
    # Same with the higher bars' times as the index, and with 5-minute base bars.
    by_index = align_higher_timeframe(hours.set_index("timestamp"), base, "1h")
    pd.testing.assert_frame_equal(by_index, out)
    base5 = make_bars(
        ["2024-01-02 09:50", "2024-01-02 09:55"], [1, 1], [1, 1], [1, 1], [1, 1],
        symbol="X", timeframe="5m",
    )  # fmt: skip
    np.testing.assert_array_equal(align_higher_timeframe(hours, base5, "1h")["value"], [np.nan, 1])
    with pytest.raises(ConfigError, match="sorted"):
        align_higher_timeframe(hours.iloc[::-1], base, "1h")


def test_the_hour_in_progress_is_never_used() -> None:
    # Seven hours of steady rise, then a crash in the first half of the eighth hour.
    close = np.concatenate([100 + 0.05 * np.arange(420), np.linspace(120, 80, 30), np.full(30, 80)])
    bars = _path_bars(close)
    feature = MultiTimeframe(timeframes=("1h",), fast=2, slow=3)
    out = feature.compute(bars)
    at = 450  # 07:30, the crash is done but the 07:00 hour is still open
    # Using the unfinished 07:00 hour would turn the trend down at 07:30 ...
    partial = resample_bars(bars.iloc[: at + 1], "1h", drop_incomplete=False)
    assert partial["timestamp"].iloc[-1] == pd.Timestamp("2024-01-02 07:00", tz="UTC")
    import talib

    naive = talib.EMA(partial["close"].to_numpy(), 2) - talib.EMA(partial["close"].to_numpy(), 3)
    assert naive[-1] < 0
    # ... but the feature still sees the closed 06:00 hour: up, unchanged through the hour.
    trend = out["mtf_trend_1h"]
    assert trend.iloc[at] > 0 and out["mtf_direction"].iloc[at] == 1
    assert (trend.iloc[420:479] == trend.iloc[419]).all()
    # The 07:59 bar closes the hour at 08:00: from then on the crash counts.
    assert trend.iloc[479] < 0 and out["mtf_direction"].iloc[479] == -1
    check_feature(feature, bars)


def test_summary_of_agreeing_and_disagreeing_time_frames() -> None:
    feature = MultiTimeframe(timeframes=("5m", "15m", "1h"), fast=2, slow=4)
    rising = _path_bars(100 + 0.01 * np.arange(600))
    row = feature.compute(rising).iloc[-1]
    trends = row[["mtf_trend_5m", "mtf_trend_15m", "mtf_trend_1h"]].to_numpy()
    assert (trends > 0).all()
    assert (row["mtf_alignment"], row["mtf_direction"]) == (1.0, 1.0)
    assert row["mtf_strength"] == pytest.approx(trends.mean())
    # A long rise, then a 10-minute drop: the 5m trend turns down, 15m and 1h do not.
    path = np.concatenate([100 + 0.01 * np.arange(600), 106 - 0.05 * np.arange(1, 11)])
    row = feature.compute(_path_bars(path)).iloc[-1]
    t5, t15, t60 = row[["mtf_trend_5m", "mtf_trend_15m", "mtf_trend_1h"]]
    assert t5 < 0 < t60 and t15 > 0
    assert (row["mtf_direction"], row["mtf_alignment"]) == (1.0, pytest.approx(2 / 3))
    assert row["mtf_strength"] == pytest.approx((t15 + t60) / 2)


def test_warm_up_is_nan_until_every_time_frame_has_closed_bars() -> None:
    out = MultiTimeframe(timeframes=("5m", "15m"), fast=2, slow=3).compute(random_walk_bars(200))
    # ATR(3) needs 4 closed bars: 15m bars close at minutes 15, 30, 45, 60 -> bar 59.
    assert out["mtf_trend_15m"].iloc[:59].isna().all() and not np.isnan(
        out["mtf_trend_15m"].iloc[59]
    )
    assert out["mtf_alignment"].iloc[:59].isna().all()
    assert not out.iloc[59:].isna().any().any()


def test_causal_with_gaps_and_streaming() -> None:
    bars = random_walk_bars(2_000, seed=4)
    gappy = bars.drop(index=[*range(500, 700), 1003, 1004]).reset_index(drop=True)
    feature = MultiTimeframe(timeframes=("5m", "15m"), fast=3, slow=6)
    check_feature(feature, gappy)
    small = MultiTimeframe(timeframes=("5m",), fast=2, slow=3)
    check_incremental(small, bars.iloc[:500], start=420)
