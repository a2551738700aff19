"""Fast paths of the custom features give exactly the values of their plain definitions.

The regime's rolling percentile, the session clocks and the spread/volume columns are
computed by numba kernels, and each of these features has an ``update_last`` for run time.
Each is compared here, bit for bit, with the definition it replaces: pandas' rolling rank,
pandas' ``tz_convert`` wall clock, numpy ratios; and ``update_last`` with the last row of
``compute`` on the same bars, at many random cut points of synthetic and real bars.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from moola.data.schema import make_bars
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features import load_feature_set
from moola.features.base import FEATURES, create_feature
from moola.features.featureset import _all_equal
from moola.features.price import Spread, Volume, ratio
from moola.features.regime import (
    VolatilityRegime,
    atr_percentile_rank,
    atr_regime,
    last_percentile_rank,
)
from moola.features.sessions import FuturesSessions, Sessions
from moola.features.sessions import _wall_clock as _wall_clock_ns
from moola.testing import check_incremental
from tests.conftest import random_walk_bars

MINUTE_NS = 60 * 10**9


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    config = SyntheticMarketConfig(seed=7, n_bars=6_000, calendar="fx", symbol="SYN")
    return generate_market(config).bars


def _stamped(stamps) -> pd.DataFrame:
    ones = np.ones(len(stamps))
    return make_bars(stamps, ones, ones, ones, ones, ones, symbol="X", timeframe="1m")


# --------------------------------------------------------------------------- definitions


def _pandas_percentile(values: np.ndarray, window: int) -> np.ndarray:
    ranks = pd.Series(values).rolling(window, min_periods=window).rank(method="average")
    return (ranks.to_numpy(dtype=np.float64) - 1.0) / (window - 1)


def _brute_force_percentile(values: np.ndarray, window: int) -> np.ndarray:
    """The rank by its definition, window by window: values below and equal, ties averaged."""
    out = np.full(len(values), np.nan)
    for t in range(window - 1, len(values)):
        held = values[t - window + 1 : t + 1]
        if np.isfinite(held).all():
            below, equal = np.sum(held < values[t]), np.sum(held == values[t])
            out[t] = (below + (equal + 1) / 2 - 1) / (window - 1)
    return out


def _one_hot_definition(rank: np.ndarray, low: float, high: float) -> np.ndarray:
    """(rank < low, neither, rank > high) as rows of 0/1, NaN where the rank is NaN."""
    is_low, is_high = rank < low, rank > high
    flags = [is_low, ~(is_low | is_high), is_high]
    return np.vstack([np.where(np.isnan(rank), np.nan, f) for f in flags])


def _regime_definition(bars: pd.DataFrame, feature: VolatilityRegime) -> np.ndarray:
    p = feature.params
    high, low, close = (bars[c].to_numpy(np.float64) for c in ("high", "low", "close"))
    rank = _pandas_percentile(talib.ATR(high, low, close, timeperiod=p.atr_period), p.window)
    is_low, is_high = rank < p.low_quantile, rank > p.high_quantile
    flags = [is_low, ~(is_low | is_high), is_high]
    return np.column_stack([np.where(np.isnan(rank), np.nan, f) for f in flags])


def _wall_clock(bars: pd.DataFrame, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """(day, minute of day) on ``tz``'s wall clock, through pandas' tz_convert."""
    utc = pd.DatetimeIndex(bars["timestamp"])
    utc = utc.tz_localize("UTC") if utc.tz is None else utc
    minutes = utc.tz_convert(tz).tz_localize(None).as_unit("ns").asi8 // MINUTE_NS
    day = minutes // 1440
    return day, minutes - day * 1440


def _sessions_definition(bars: pd.DataFrame, market: str) -> np.ndarray:
    hours = {"Asia/Tokyo": (540, 1080), "Europe/London": (480, 1020)}
    hours["America/New_York"] = (480, 1020)
    columns = []
    for tz, (start, end) in hours.items():
        day, minute = _wall_clock(bars, tz)
        flag = (minute >= start) & (minute < end)
        columns.append(flag if market == "crypto" else flag & ((day + 3) % 7 < 5))
    day, minute = _wall_clock(bars, "UTC" if market == "crypto" else "America/New_York")
    minute = minute + {"crypto": 0, "fx": 420, "futures": 360}[market]
    weekday = (day + minute // 1440 + 3) % 7
    weekend = weekday >= 5
    if market == "futures":
        weekend |= (weekday == 4) & (minute % 1440 >= 23 * 60)
    return np.column_stack([*columns, weekday, weekend]).astype(np.float64)


def _futures_sessions_definition(bars: pd.DataFrame) -> np.ndarray:
    day, minute = _wall_clock(bars, "America/New_York")
    weekday = (day + 3) % 7
    closed = (
        (weekday == 5)
        | ((weekday == 6) & (minute < 1080))
        | ((weekday == 4) & (minute >= 1020))
        | ((minute >= 1020) & (minute < 1080))
    )
    rth = (minute >= 570) & (minute < 960) & (weekday < 5)
    parts = [(minute >= 1080) | (minute < 180), (minute >= 180) & (minute < 570)]
    parts += [(minute >= 570) & (minute < 720), (minute >= 720) & (minute < 1020)]
    return np.column_stack([rth, *(part & ~closed for part in parts)]).astype(np.float64)


# --------------------------------------------------------------------------- regime


def _series(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "noise":
        return rng.normal(size=n)
    if kind == "walk":
        return np.cumsum(rng.normal(size=n))
    if kind == "ties":  # a handful of values: every bucket holds hundreds of equal values
        return rng.integers(0, 3, n).astype(float)
    if kind == "plateaus":
        return np.repeat(rng.integers(0, 5, n // 40 + 1), 40)[:n].astype(float)
    if kind == "rising":  # every value enters above all others
        return np.arange(n, dtype=float)
    if kind == "falling":
        return -np.arange(n, dtype=float)
    if kind == "signs":  # both zeros (equal, with different bits), negatives, subnormals,
        # huge values, in runs so that they share windows, and a few missing values
        pool = np.array([0.0, -0.0, 5e-324, -5e-324, 1e-300, -1.5, 2.5, 1e300, -1e300, 3.0])
        values = np.repeat(pool[rng.integers(0, len(pool), n // 7 + 1)], 7)[:n]
        values = values * np.where(rng.random(n) < 0.5, 1.0, 1.0 + rng.random(n))
        values[rng.random(n) < 0.003] = np.nan
        return values
    values = rng.integers(0, 30, n).astype(float)  # "gaps": missing and infinite values
    values[rng.random(n) < 0.004] = np.nan
    values[rng.random(n) < 0.002] = np.inf
    values[n // 3 : n // 3 + 400] = np.nan  # longer than a window: the window empties
    return values


KINDS = ("noise", "walk", "ties", "plateaus", "rising", "falling", "gaps", "signs")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("window", [3, 7, 50, 129, 300, 1_000, 5_000])
def test_percentile_rank_is_pandas_rolling_rank_bit_for_bit(kind: str, window: int) -> None:
    values = _series(kind, max(3_000, 3 * window), np.random.default_rng(window))
    np.testing.assert_array_equal(
        atr_percentile_rank(values, window), _pandas_percentile(values, window)
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("window", [3, 4, 41, 300])
def test_percentile_rank_and_regime_equal_a_brute_force_count(kind: str, window: int) -> None:
    values = _series(kind, 1_200, np.random.default_rng(window + 1))
    rank = _brute_force_percentile(values, window)
    np.testing.assert_array_equal(atr_percentile_rank(values, window), rank)
    # Cut points at reachable ranks (the window of 3 ranks 0, 0.25, .. 1) and between them.
    for low, high in [(0.33, 0.67), (0.25, 0.75), (0.5, 0.5 + 1e-12), (0.01, 0.99)]:
        np.testing.assert_array_equal(
            atr_regime(values, window, low, high), _one_hot_definition(rank, low, high)
        )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("window", [3, 129, 1_440, 5_000])
def test_regime_is_the_one_hot_of_pandas_rolling_rank(kind: str, window: int) -> None:
    values = _series(kind, 3 * window + 2_000, np.random.default_rng(window))
    expected = _one_hot_definition(_pandas_percentile(values, window), 0.33, 0.67)
    np.testing.assert_array_equal(atr_regime(values, window, 0.33, 0.67), expected)


@pytest.mark.parametrize("kind", KINDS)
def test_last_percentile_rank_is_the_last_value_of_the_rolling_one(kind: str) -> None:
    rng = np.random.default_rng(1)
    values = _series(kind, 1_500, rng)
    window = 200
    full = atr_percentile_rank(values, window)
    for t in [*rng.integers(0, len(values), 60), 0, window - 2, window - 1, len(values) - 1]:
        got = last_percentile_rank(values[: t + 1], window)
        assert got == full[t] or (np.isnan(got) and np.isnan(full[t])), t


def test_percentile_rank_of_short_and_empty_input() -> None:
    assert atr_percentile_rank(np.array([]), 5).shape == (0,)
    assert np.isnan(atr_percentile_rank(np.arange(4.0), 5)).all()
    assert np.isnan(last_percentile_rank(np.arange(4.0), 5))
    # Hand-computed: [3, 1, 1] ranks the last 1 at (1 + 2) / 2 = 1.5 -> 0.25.
    assert atr_percentile_rank(np.array([3.0, 1.0, 1.0]), 3)[-1] == 0.25


@pytest.mark.parametrize(
    "feature",
    [VolatilityRegime(), VolatilityRegime(atr_period=5, window=300), VolatilityRegime(window=3)],
)
def test_regime_equals_its_pandas_definition(feature, synthetic, sp500) -> None:
    for bars in (synthetic, sp500):
        np.testing.assert_array_equal(
            feature.compute(bars).to_numpy(), _regime_definition(bars, feature)
        )


# --------------------------------------------------------------------------- sessions


@pytest.fixture(scope="module")
def every_157_minutes_1900_2100() -> pd.DataFrame:
    """Times through two centuries of clock changes, at every minute of the day in turn."""
    return _stamped(pd.date_range("1900-01-01", "2100-12-31", freq="157min", tz="UTC"))


@pytest.mark.parametrize("market", ["fx", "crypto", "futures"])
def test_sessions_equal_pandas_tz_convert_from_1900_to_2100(
    market: str, every_157_minutes_1900_2100
) -> None:
    bars = every_157_minutes_1900_2100
    np.testing.assert_array_equal(
        Sessions(market=market).compute(bars).to_numpy(), _sessions_definition(bars, market)
    )


def test_futures_sessions_equal_pandas_tz_convert(every_157_minutes_1900_2100) -> None:
    bars = every_157_minutes_1900_2100
    np.testing.assert_array_equal(
        FuturesSessions().compute(bars).to_numpy(), _futures_sessions_definition(bars)
    )


def test_sessions_on_random_minutes_unsorted_and_naive_times() -> None:
    rng = np.random.default_rng(3)
    lo, hi = pd.Timestamp("1678-01-01").value, pd.Timestamp("2261-12-31").value
    stamps = pd.DatetimeIndex(rng.integers(lo, hi, 20_000) // MINUTE_NS * MINUTE_NS, tz="UTC")
    # Around every UK and US clock change of 2023-2025, minute by minute.
    changes = ["2023-03-12 07:00", "2023-03-26 01:00", "2024-03-10 07:00", "2024-03-31 01:00"]
    changes += ["2024-10-27 01:00", "2024-11-03 06:00", "2025-03-09 07:00", "2025-11-02 06:00"]
    near = [pd.date_range(pd.Timestamp(c, tz="UTC") - pd.Timedelta("3h"), periods=360,
                          freq="1min") for c in changes]  # fmt: skip
    stamps = stamps.append(near).unique()
    shuffled = _stamped(stamps[rng.permutation(len(stamps))])  # not in time order
    for tz in ("Asia/Tokyo", "Europe/London", "America/New_York"):  # to the minute
        got = _wall_clock_ns(shuffled["timestamp"].array.asi8, tz)
        np.testing.assert_array_equal(np.array(got), np.array(_wall_clock(shuffled, tz)))
    naive = shuffled.assign(timestamp=shuffled["timestamp"].dt.tz_localize(None))
    for bars in (shuffled, naive):
        for market in ("fx", "crypto", "futures"):
            np.testing.assert_array_equal(
                Sessions(market=market).compute(bars).to_numpy(),
                _sessions_definition(bars, market),
            )
        np.testing.assert_array_equal(
            FuturesSessions().compute(bars).to_numpy(), _futures_sessions_definition(bars)
        )


@pytest.mark.parametrize("step", ["1min", "7min", "30s", "1h"])
def test_sessions_on_bars_in_time_order_across_clock_changes(step: str) -> None:
    """Bars in order, as real ones come: the session kernels reuse a computed bar's
    columns for the bars after it until the next session boundary, midnight or clock
    change; every bar still equals pandas' tz_convert, before 1970 and after, with
    times off the minute and at the edges of the time range pandas can hold."""
    spans = [("2023-10-20", "2024-04-10"), ("1969-10-20", "1970-04-10")]
    parts = [pd.date_range(a, b, freq=step, tz="UTC") for a, b in spans]
    parts.append(pd.date_range("2024-03-08 21:07:13", periods=5_000, freq="37s", tz="UTC"))
    parts.append(pd.date_range("1677-09-22", periods=3_000, freq=step, tz="UTC"))
    parts.append(pd.date_range(end="2262-04-11 23:00", periods=3_000, freq=step, tz="UTC"))
    for stamps in parts:
        bars = _stamped(stamps)
        for market in ("fx", "crypto", "futures"):
            np.testing.assert_array_equal(
                Sessions(market=market).compute(bars).to_numpy(),
                _sessions_definition(bars, market),
                err_msg=f"{market} {stamps[0]}",
            )


# --------------------------------------------------------------------------- spread, volume


def _with_zeros(bars: pd.DataFrame) -> pd.DataFrame:
    """Flat stretches (ATR 0), a zero close and bars without volume."""
    bars = bars.copy()
    flat = slice(200, 260)
    for column in ("open", "high", "low", "close"):
        bars.loc[bars.index[flat], column] = 100.0
    bars.loc[bars.index[300:340], "volume"] = 0.0
    bars.loc[bars.index[400], ["open", "high", "low", "close"]] = [0.0, 0.0, 0.0, 0.0]
    return bars


def test_spread_and_volume_equal_their_numpy_definitions(synthetic, sp500) -> None:
    for bars in (synthetic, sp500, _with_zeros(random_walk_bars(600))):
        high, low, close, volume = (
            bars[c].to_numpy(np.float64) for c in ("high", "low", "close", "volume")
        )
        spread = high - low
        atr = talib.ATR(high, low, close, timeperiod=14)
        expected = [spread, ratio(spread, close, zero=np.nan), atr, ratio(spread, atr, zero=1.0)]
        np.testing.assert_array_equal(Spread().compute(bars).to_numpy(), np.column_stack(expected))
        average = talib.SMA(volume, timeperiod=20)
        slope = talib.LINEARREG_SLOPE(volume, timeperiod=20)
        expected = [
            average,
            ratio(volume, average, zero=1.0),
            ratio(slope * 20, average, zero=0.0),
        ]
        np.testing.assert_array_equal(Volume().compute(bars).to_numpy(), np.column_stack(expected))


# --------------------------------------------------------------------------- update_last

FAST = [
    Sessions(market="fx"),
    Sessions(market="crypto"),
    Sessions(market="futures"),
    Spread(),
    Spread(atr_period=3),
    Volume(),
    Volume(period=5),
    VolatilityRegime(window=100),
    VolatilityRegime(atr_period=5, window=300),
]


@pytest.mark.parametrize("feature", FAST, ids=repr)
def test_update_last_is_the_last_row_of_compute(feature, synthetic, sp500) -> None:
    rng = np.random.default_rng(11)
    zeros = _with_zeros(random_walk_bars(600))
    for bars in (synthetic, sp500, zeros):
        ends = [*rng.integers(1, len(bars) + 1, 40), 1, len(bars)]
        for end in ends:
            start = int(rng.integers(0, end)) if rng.random() < 0.5 else 0  # a run-time slice
            part = bars.iloc[start:end]
            expected = feature.compute(part).to_numpy()[-1]
            np.testing.assert_array_equal(feature.update_last(part), expected, err_msg=str(end))


@pytest.mark.parametrize("feature", FAST, ids=repr)
def test_update_last_of_no_bars_is_an_error_as_for_compute(feature) -> None:
    with pytest.raises(IndexError):
        feature.update_last(random_walk_bars(5).iloc[:0])


def test_update_last_of_sessions_on_naive_times() -> None:
    bars = random_walk_bars(50)
    naive = bars.assign(timestamp=bars["timestamp"].dt.tz_localize(None))
    for end in (1, 17, 50):
        np.testing.assert_array_equal(
            Sessions().update_last(naive.iloc[:end]), Sessions().compute(bars).to_numpy()[end - 1]
        )


def test_intraday31_streams_each_bar_as_batch_with_the_fast_paths(sp500) -> None:
    # The session flags take the slice of another feature at run time (they need one
    # bar): the stream must still give the batch rows.
    check_incremental(load_feature_set("intraday31"), sp500.iloc[:2_300], start=1_900)


# --------------------------------------------------------------------------- feature sets


@pytest.mark.parametrize("dtype", ["string", "str", "string[python]", object, "category"])
def test_one_symbol_check_answers_as_pandas_equality(dtype) -> None:
    """The set's check for bars of one symbol (pyarrow for arrow strings) is pandas' own
    ``(symbols == first).all()``, missing values included, whatever the string dtype."""
    for values in (["A", "A"], ["A", "B"], ["A", None, "A"], ["A", None, "B"], [None, "A"]):
        symbols = pd.Series(values, dtype=dtype)
        assert _all_equal(symbols) == bool((symbols == symbols.iloc[0]).all()), values


def _features_with_compute_rows() -> list:
    """Every registered feature offering compute_rows, with its defaults, and a few more."""
    features = [
        create_feature(name) for name, cls in FEATURES.items() if "compute_rows" in dir(cls)
    ]
    features += [Sessions(market=m) for m in ("crypto", "futures")]
    return [*features, VolatilityRegime(atr_period=5, window=3), Volume(period=3)]


@pytest.mark.parametrize("feature", _features_with_compute_rows(), ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compute_rows_are_compute_in_the_dtype(feature, dtype, synthetic, sp500) -> None:
    """What FeatureSet.compute takes instead of compute(bars).astype(dtype)."""
    for bars in (synthetic, sp500, synthetic.iloc[:0]):
        rows = feature.compute_rows(bars, np.dtype(dtype))
        assert all(row.dtype == dtype for row in rows) and len(rows) == len(feature.columns())
        rows = np.array(rows)
        assert rows.shape == (len(feature.columns()), len(bars))
        np.testing.assert_array_equal(rows, feature.compute(bars).to_numpy(dtype).T)


def test_intraday31_compute_equals_its_features_computed_one_by_one(synthetic) -> None:
    fset = load_feature_set("intraday31")
    table = fset.compute(synthetic)
    for entry in fset._entries:
        expected = entry.feature.compute(synthetic)[list(entry.columns)]
        np.testing.assert_array_equal(
            table[list(entry.columns)].to_numpy(), expected.to_numpy(entry.dtype)
        )
        assert (table[list(entry.columns)].dtypes == entry.dtype).all()
