"""The synthetic market: deterministic, sane bars on a real calendar, with the stylised
facts of real returns and recognisable planted patterns."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from moola.data.schema import is_canonical
from moola.data.sources.synthetic import (
    PATTERN_COLUMNS,
    PATTERN_LABELS,
    SyntheticMarket,
    SyntheticMarketConfig,
    _garch_variance,
    generate_market,
)
from moola.features.window import price_action_features

NEW_YORK = "America/New_York"
# Isolates one mechanism: no regimes, no intraday profile, no session jumps.
PLAIN = {"calendar": "crypto", "regime_switching": False, "intraday_u_shape": 0.0}


def _market(**overrides: object) -> SyntheticMarket:
    return generate_market(SyntheticMarketConfig(**overrides))


def _log_returns(market: SyntheticMarket) -> np.ndarray:
    return np.diff(np.log(market.bars["close"].to_numpy()))


def _abs_autocorr(returns: np.ndarray, lags: range) -> np.ndarray:
    magnitude = np.abs(returns) - np.abs(returns).mean()
    var = np.dot(magnitude, magnitude)
    return np.array([np.dot(magnitude[:-k], magnitude[k:]) / var for k in lags])


def _excess_kurtosis(returns: np.ndarray) -> float:
    centred = returns - returns.mean()
    return float(np.mean(centred**4) / np.mean(centred**2) ** 2 - 3.0)


# --------------------------------------------------------------------------- determinism


def test_same_config_gives_byte_identical_bars_and_patterns() -> None:
    config = SyntheticMarketConfig(n_bars=5_000, n_patterns=10, seed=7, tick_size=0.25)
    first, second = generate_market(config), generate_market(config)
    pd.testing.assert_frame_equal(first.bars, second.bars)
    pd.testing.assert_frame_equal(first.patterns, second.patterns)
    for column in ("open", "high", "low", "close", "volume"):
        assert first.bars[column].to_numpy().tobytes() == second.bars[column].to_numpy().tobytes()
    assert first.config is config


def test_different_seeds_give_different_bars() -> None:
    one = _market(n_bars=2_000, seed=1, n_patterns=3)
    two = _market(n_bars=2_000, seed=2, n_patterns=3)
    assert not np.array_equal(one.bars["close"].to_numpy(), two.bars["close"].to_numpy())
    assert not one.patterns["start"].equals(two.patterns["start"])


# --------------------------------------------------------------------------- bar sanity


@pytest.mark.parametrize(
    ("calendar", "timeframe", "tick_size"),
    [
        ("futures", "1m", None),
        ("futures", "5m", 0.25),
        ("fx", "15m", 0.0001),
        ("crypto", "1h", 0.01),
        ("futures", "1d", None),
    ],
)
def test_bars_are_canonical_and_ohlc_sane(
    calendar: str, timeframe: str, tick_size: float | None
) -> None:
    market = _market(
        calendar=calendar,
        timeframe=timeframe,
        tick_size=tick_size,
        n_bars=3_000,
        n_patterns=5,
        start_price=1.1 if calendar == "fx" else 15_000.0,
    )
    bars = market.bars
    assert is_canonical(bars)
    assert len(bars) == 3_000
    assert (bars["symbol"] == "SYN").all() and (bars["timeframe"] == timeframe).all()
    o, h, low, c, v = (bars[col].to_numpy() for col in ("open", "high", "low", "close", "volume"))
    assert np.isfinite(np.stack([o, h, low, c, v])).all()
    assert (h >= np.maximum(o, c)).all() and (low <= np.minimum(o, c)).all()
    assert (low > 0).all() and (v >= 0).all()
    stamps = bars["timestamp"]
    assert stamps.is_monotonic_increasing and stamps.is_unique
    step = pd.Timedelta(timeframe.replace("d", "D"))
    assert (stamps.astype("int64") % step.value == 0).all()
    assert stamps.iloc[0] >= pd.Timestamp("2024-01-02", tz="UTC")
    if tick_size is not None:
        ticks = np.stack([o, h, low, c]) / tick_size
        assert np.allclose(ticks, np.round(ticks), atol=1e-6)


def test_prices_are_continuous_inside_sessions_and_gap_across_closed_periods() -> None:
    bars = _market(n_bars=20_000, n_patterns=20).bars
    steps = bars["timestamp"].diff().iloc[1:].to_numpy()
    previous_close = bars["close"].to_numpy()[:-1]
    opens = bars["open"].to_numpy()[1:]
    inside = steps == np.timedelta64(1, "m")
    np.testing.assert_array_equal(opens[inside], previous_close[inside])
    assert (opens[~inside] != previous_close[~inside]).mean() > 0.9  # opening jumps


def test_first_bar_opens_at_start_price_on_the_first_grid_time() -> None:
    bars = _market(n_bars=10, calendar="crypto", start=datetime(2024, 1, 3, 10, 0, 30)).bars
    assert bars["open"].iloc[0] == 15_000.0
    assert bars["timestamp"].iloc[0] == pd.Timestamp("2024-01-03 10:01", tz="UTC")


# --------------------------------------------------------------------------- calendars


def _new_york(market: SyntheticMarket) -> pd.Series:
    return market.bars["timestamp"].dt.tz_convert(NEW_YORK)


# 5-minute bars from February to April cross the March DST change in New York.
CALENDAR_SPAN = {"timeframe": "5m", "n_bars": 18_000, "start": datetime(2024, 2, 20, tzinfo=UTC)}


def test_crypto_trades_around_the_clock_every_day() -> None:
    market = _market(calendar="crypto", **CALENDAR_SPAN)
    local = market.bars["timestamp"]
    assert set(local.dt.day_of_week) == set(range(7))
    assert (local.diff().iloc[1:] == pd.Timedelta("5m")).all()


def test_futures_follow_the_globex_week_with_a_daily_break_across_dst() -> None:
    market = _market(calendar="futures", **CALENDAR_SPAN)
    local = _new_york(market)
    assert local.iloc[-1] > pd.Timestamp("2024-03-20", tz=NEW_YORK)  # crossed DST
    weekday, hour = local.dt.day_of_week, local.dt.hour
    assert not (weekday == 5).any()
    assert not (hour == 17).any()
    assert not ((weekday == 6) & (hour < 18)).any()
    assert not ((weekday == 4) & (hour >= 17)).any()
    assert set(hour) == set(range(24)) - {17}  # every other hour trades
    assert ((weekday == 6) & (hour == 18)).any()  # Sunday evening open
    assert local.diff().max() >= pd.Timedelta(hours=49)  # weekend gap


def test_fx_trades_sunday_17_to_friday_17_new_york() -> None:
    market = _market(calendar="fx", **CALENDAR_SPAN)
    local = _new_york(market)
    weekday, hour = local.dt.day_of_week, local.dt.hour
    assert not (weekday == 5).any()
    assert not ((weekday == 6) & (hour < 17)).any()
    assert not ((weekday == 4) & (hour >= 17)).any()
    assert ((weekday == 6) & (hour == 17)).any()
    assert set(hour) == set(range(24))  # no daily break
    assert local.diff().max() == pd.Timedelta(hours=48, minutes=5)


# --------------------------------------------------------------------------- stylised facts


def test_returns_have_fat_tails() -> None:
    fat = _log_returns(_market(n_bars=50_000))
    thin = _log_returns(
        _market(n_bars=50_000, tail_df=1_000, garch_alpha=0.0, garch_beta=0.5, **PLAIN)
    )
    assert _excess_kurtosis(fat) > 2.0
    assert abs(_excess_kurtosis(thin)) < 0.3


def test_volatility_clusters() -> None:
    lags = range(1, 11)
    garch = _log_returns(_market(n_bars=50_000, garch_alpha=0.1, garch_beta=0.85, **PLAIN))
    default = _log_returns(_market(n_bars=50_000))
    flat = _log_returns(_market(n_bars=50_000, garch_alpha=0.0, garch_beta=0.5, **PLAIN))
    assert (_abs_autocorr(garch, lags) > 0.05).all()
    assert (_abs_autocorr(default, lags) > 0.05).all()
    assert (np.abs(_abs_autocorr(flat, lags)) < 0.03).all()


def test_vectorised_garch_matches_the_recursion() -> None:
    shocks = np.random.default_rng(0).standard_t(4, 3_000) / np.sqrt(2.0)
    for alpha, beta in [(0.05, 0.93), (0.3, 0.01), (0.1, 1e-9)]:
        expected, h, previous = np.empty(shocks.size), 1.0, 1.0
        for t, shock in enumerate(shocks):
            h = (1 - alpha - beta) + (alpha * previous**2 + beta) * h
            expected[t], previous = h, shock
        np.testing.assert_allclose(_garch_variance(shocks, alpha, beta), expected, rtol=1e-10)


@pytest.mark.parametrize(("calendar", "opens", "length"), [("futures", 18, 23), ("fx", 17, 24)])
def test_intraday_volatility_and_volume_are_u_shaped(
    calendar: str, opens: int, length: int
) -> None:
    def profile(u_shape: float) -> tuple[float, float]:
        market = _market(
            calendar=calendar,
            n_bars=60_000,
            intraday_u_shape=u_shape,
            gap_variance_per_bar=0.0,
            regime_switching=False,
        )
        local = _new_york(market)
        since_open = ((local.dt.hour - opens) % 24).to_numpy()
        size = np.abs(np.diff(np.log(market.bars["close"].to_numpy()), prepend=np.nan))
        volume = market.bars["volume"].to_numpy()
        edges = (since_open == 0) | (since_open == length - 1)
        middle = np.abs(since_open - length / 2) < 2
        return (
            np.nanmean(size[edges]) / np.nanmean(size[middle]),
            volume[edges].mean() / volume[middle].mean(),
        )

    vol_ratio, volume_ratio = profile(1.5)
    assert vol_ratio > 1.3 and volume_ratio > 1.5
    flat_vol, flat_volume = profile(0.0)
    assert 0.85 < flat_vol < 1.15 and 0.85 < flat_volume < 1.15


def test_realised_volatility_matches_annual_vol_target() -> None:
    market = _market(n_bars=200_000, regime_switching=False, annual_vol=0.3)
    returns = _log_returns(market)
    bars_per_year = 6_900 * 365.25 / 7  # 115 Globex hours a week
    realised = returns.std() * np.sqrt(bars_per_year)
    assert 0.3 * 0.85 < realised < 0.3 * 1.15


def test_daily_bars_are_as_fat_tailed_and_clustered_as_the_sp500() -> None:
    from arch.data import sp500

    real = np.diff(np.log(sp500.load()["Adj Close"].to_numpy()))
    real_kurtosis = _excess_kurtosis(real)
    real_vol = real.std() * np.sqrt(252)
    assert real_kurtosis > 3.0  # the reference itself is fat-tailed
    lags = range(1, 11)
    for seed in range(3):
        returns = _log_returns(_market(timeframe="1d", n_bars=real.size, seed=seed))
        kurtosis = _excess_kurtosis(returns)
        assert real_kurtosis / 5 < kurtosis < real_kurtosis * 5
        assert 0.6 * real_vol < returns.std() * np.sqrt(261) < 1.6 * real_vol
        assert _abs_autocorr(returns, lags).mean() > 0.05
        assert _abs_autocorr(real, lags).mean() > 0.05


# --------------------------------------------------------------------------- patterns


@pytest.fixture(scope="module")
def planted() -> SyntheticMarket:
    return _market(n_bars=120_000, n_patterns=400, seed=3, retracement_fraction=0.3)


def test_patterns_table_matches_the_request(planted: SyntheticMarket) -> None:
    patterns, bars = planted.patterns, planted.bars
    assert tuple(patterns.columns) == PATTERN_COLUMNS
    assert len(patterns) == 400
    assert set(patterns["label"]) == set(PATTERN_LABELS)
    assert (patterns["label"] == "retracement").sum() == 120
    assert (patterns["end"] - patterns["start"] + 1 == 105).all()
    assert patterns["start"].is_monotonic_increasing
    assert (
        patterns["start"].iloc[1:].to_numpy() - patterns["end"].iloc[:-1].to_numpy() > 105
    ).all()
    assert patterns["start"].min() >= 0 and patterns["end"].max() < len(bars)
    stamps = bars["timestamp"]
    assert (patterns["start_ts"].to_numpy() == stamps.iloc[patterns["start"]].to_numpy()).all()
    assert (patterns["end_ts"].to_numpy() == stamps.iloc[patterns["end"]].to_numpy()).all()
    assert (patterns["symbol"] == "SYN").all()


def _inside_one_session(market: SyntheticMarket) -> np.ndarray:
    stamps = market.bars["timestamp"].to_numpy()
    start, end = market.patterns["start"].to_numpy(), market.patterns["end"].to_numpy()
    return stamps[end] - stamps[start] == np.timedelta64(104, "m")


def test_patterns_stay_inside_one_session_when_they_fit(planted: SyntheticMarket) -> None:
    assert _inside_one_session(planted).mean() > 0.95  # densely packed: nearly all
    assert _inside_one_session(_market(n_bars=120_000, n_patterns=100)).all()


def test_patterns_are_still_planted_when_sessions_are_shorter_than_a_window() -> None:
    market = _market(timeframe="1h", n_bars=5_000, n_patterns=10)  # 23-bar sessions
    assert len(market.patterns) == 10
    assert (market.patterns["end"] - market.patterns["start"] == 104).all()


def test_no_patterns_gives_an_empty_table_with_the_columns() -> None:
    patterns = _market(n_bars=500).patterns
    assert patterns.empty and tuple(patterns.columns) == PATTERN_COLUMNS


def _window_paths(market: SyntheticMarket, label: str) -> list[tuple[np.ndarray, float]]:
    """Log closes of each window relative to the close before it, with the bar sd of the
    300 bars before the window (the local volatility a chart reader would see)."""
    log_close = np.log(market.bars["close"].to_numpy())
    returns = np.diff(log_close, prepend=log_close[0])
    rows = market.patterns[market.patterns["label"] == label]
    return [
        (log_close[start - 1 : end + 1] - log_close[start - 1], returns[start - 300 : start].std())
        for start, end in zip(rows["start"], rows["end"], strict=True)
        if start >= 300
    ]


def _last_part_vol(path: np.ndarray, local: float) -> float:
    steps = np.diff(path)
    return steps[int(0.6 * steps.size) :].std() / local


def test_consolidations_end_much_quieter_than_retracements(planted: SyntheticMarket) -> None:
    quiet = np.mean([_last_part_vol(*w) for w in _window_paths(planted, "consolidation")])
    active = np.mean([_last_part_vol(*w) for w in _window_paths(planted, "retracement")])
    assert quiet < 0.5 * active
    assert quiet < 0.5  # also quiet against the market around it


def _impulse_and_pullback(path: np.ndarray, local: float) -> tuple[float, float, float]:
    """(size of the largest excursion in bar sds, where it happens as a share of the
    window, share of it given back by the end)."""
    peak = int(np.argmax(np.abs(path)))
    return abs(path[peak]) / local, peak / (path.size - 1), (path[peak] - path[-1]) / path[peak]


def test_retracements_show_an_impulse_then_a_pullback(planted: SyntheticMarket) -> None:
    def looks_like_retracement(path: np.ndarray, local: float) -> bool:
        size, at, given_back = _impulse_and_pullback(path, local)
        return size > 5.0 and at < 0.85 and 0.25 < given_back < 0.9

    retracements = _window_paths(planted, "retracement")
    consolidations = _window_paths(planted, "consolidation")
    assert np.mean([looks_like_retracement(*w) for w in retracements]) > 0.85
    assert np.mean([looks_like_retracement(*w) for w in consolidations]) < 0.25
    directions = np.sign([path[np.argmax(np.abs(path))] for path, _ in retracements])
    assert 0.25 < (directions > 0).mean() < 0.75  # up and down impulses


def test_window_range_alone_does_not_separate_the_labels(planted: SyntheticMarket) -> None:
    ranges, is_retracement = [], []
    for label in PATTERN_LABELS:
        for path, local in _window_paths(planted, label):
            ranges.append((path.max() - path.min()) / local)
            is_retracement.append(label == "retracement")
    ranges_arr, truth = np.array(ranges), np.array(is_retracement)
    best = max(
        max(((ranges_arr > cut) == truth).mean(), ((ranges_arr <= cut) == truth).mean())
        for cut in ranges_arr
    )
    assert best < 0.85


# --------------------------------------------------------------------------- pattern strength


def _digest(market: SyntheticMarket) -> str:
    """sha256 over the raw bytes of every column of the bars and the patterns table."""
    digest = hashlib.sha256()
    for frame in (market.bars, market.patterns):
        for name in frame.columns:
            column = frame[name]
            if column.dtype == "string":
                digest.update("\n".join(column).encode())
            elif isinstance(column.dtype, pd.DatetimeTZDtype):
                digest.update(column.astype("int64").to_numpy().tobytes())
            else:
                digest.update(column.to_numpy().tobytes())
    return digest.hexdigest()


# Digests of markets made by the generator before pattern_strength existed (commit e74be85):
# full strength must keep stored datasets (the demo's, the tests') byte for byte.
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"n_bars": 20_000, "n_patterns": 40, "seed": 11},
            "93bb1dbb9ee7ee7cc82dd28db132771d4cbbb2c6913c2e6b38119f1450fae2b2",
        ),
        (
            {
                "n_bars": 8_000,
                "n_patterns": 12,
                "seed": 5,
                "calendar": "fx",
                "timeframe": "5m",
                "start_price": 1.1,
                "tick_size": 0.0001,
            },
            "d84f97431cc2883043a42d8651690aa7cf5a964a6a5ec006715609034b6e5971",
        ),
    ],
)
def test_full_pattern_strength_gives_the_bars_of_earlier_versions(
    overrides: dict[str, object], expected: str
) -> None:
    assert _digest(_market(**overrides)) == expected
    assert _digest(_market(pattern_strength=1.0, **overrides)) == expected


def test_weakened_markets_are_deterministic_and_depend_on_the_strength() -> None:
    config = SyntheticMarketConfig(n_bars=6_000, n_patterns=12, seed=2, pattern_strength=0.4)
    assert _digest(generate_market(config)) == _digest(generate_market(config))
    assert _digest(generate_market(config)) != _digest(_market(**{**dict(config), "seed": 3}))
    digests = {
        _digest(_market(n_bars=6_000, n_patterns=12, seed=2, pattern_strength=s))
        for s in (1.0, 0.7, 0.4, 0.1)
    }
    assert len(digests) == 4


def test_strength_changes_only_the_bars_inside_pattern_windows() -> None:
    full = _market(n_bars=8_000, n_patterns=15, seed=4)
    weak = _market(n_bars=8_000, n_patterns=15, seed=4, pattern_strength=0.3)
    pd.testing.assert_frame_equal(full.patterns, weak.patterns)
    pd.testing.assert_series_equal(full.bars["timestamp"], weak.bars["timestamp"])
    inside = np.zeros(len(full.bars), dtype=bool)
    for start, end in zip(full.patterns["start"], full.patterns["end"], strict=True):
        inside[start : end + 1] = True
    volume = full.bars["volume"].to_numpy(), weak.bars["volume"].to_numpy()
    np.testing.assert_array_equal(volume[0][~inside], volume[1][~inside])
    # returns outside the windows are the same; the price level after a window may move
    full_returns, weak_returns = _log_returns(full), _log_returns(weak)
    outside = ~inside[1:]
    np.testing.assert_allclose(weak_returns[outside], full_returns[outside], atol=1e-12)
    assert not np.allclose(weak_returns[~outside], full_returns[~outside])


def test_weakened_bars_stay_canonical_and_sane() -> None:
    for strength in (0.6, 0.05):
        market = _market(n_bars=6_000, n_patterns=20, seed=1, pattern_strength=strength)
        bars = market.bars
        assert is_canonical(bars)
        o, h, low, c = (bars[col].to_numpy() for col in ("open", "high", "low", "close"))
        assert np.isfinite(np.stack([o, h, low, c])).all() and (low > 0).all()
        assert (h >= np.maximum(o, c)).all() and (low <= np.minimum(o, c)).all()
        assert (bars["volume"] >= 0).all()
        assert len(market.patterns) == 20


def test_weak_consolidations_lose_their_quiet_range() -> None:
    def quietness(strength: float) -> float:
        market = _market(n_bars=30_000, n_patterns=120, seed=3, pattern_strength=strength)
        return float(np.mean([_last_part_vol(*w) for w in _window_paths(market, "consolidation")]))

    textbook, weak = quietness(1.0), quietness(0.2)
    assert textbook < 0.5
    assert weak > textbook + 0.2 and weak > 0.6


def _holdout_accuracy(strength: float, seed: int) -> tuple[float, float]:
    """Accuracy of a logistic regression on the price-action features of the planted
    windows (first 70% chronologically to train, last 30% to test), and the test part's
    majority-class rate."""
    market = _market(n_bars=60_000, n_patterns=240, seed=seed, pattern_strength=strength)
    ohlc = market.bars[["open", "high", "low", "close"]].to_numpy()
    starts = market.patterns["start"].to_numpy()
    features = price_action_features(ohlc[starts[:, None] + np.arange(105)]).to_numpy()
    truth = (market.patterns["label"] == "retracement").to_numpy()
    cut = int(0.7 * truth.size)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2_000))
    model.fit(features[:cut], truth[:cut])
    accuracy = float((model.predict(features[cut:]) == truth[cut:]).mean())
    return accuracy, float(max(truth[cut:].mean(), 1.0 - truth[cut:].mean()))


def test_weaker_patterns_are_harder_to_tell_apart_but_still_learnable() -> None:
    seeds = (0, 1, 2)
    runs = {
        s: np.mean([_holdout_accuracy(s, seed) for seed in seeds], axis=0) for s in (1.0, 0.6, 0.3)
    }
    (strong, _), (middle, majority), (weak, _) = runs[1.0], runs[0.6], runs[0.3]
    assert strong > 0.95
    assert weak < strong - 0.12  # the classes overlap
    assert middle > majority + 0.08  # but a weakened pattern is still there to learn
    assert weak < middle


# --------------------------------------------------------------------------- config


def test_defaults_are_valid_and_start_is_utc() -> None:
    config = SyntheticMarketConfig()
    assert config.timeframe == "1m" and config.calendar == "futures"
    assert config.start == datetime(2024, 1, 2, tzinfo=UTC)
    naive = SyntheticMarketConfig(start=datetime(2024, 5, 1, 12))
    assert naive.start == datetime(2024, 5, 1, 12, tzinfo=UTC)
    shifted = SyntheticMarketConfig(
        start=datetime(2024, 5, 1, 8, tzinfo=timezone(-timedelta(hours=4)))
    )
    assert shifted.start == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_config_is_frozen_and_rejects_unknown_keys() -> None:
    config = SyntheticMarketConfig()
    with pytest.raises(ValidationError):
        config.seed = 3  # type: ignore[misc]
    with pytest.raises(ValidationError, match="n_bar"):
        SyntheticMarketConfig(n_bar=10)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"garch_alpha": 0.1, "garch_beta": 0.9}, "garch_alpha \\+ garch_beta"),
        ({"tail_df": 2.0}, "tail_df"),
        ({"timeframe": "1s"}, "from '1m' to '1d'"),
        ({"timeframe": "7m"}, "divides a day"),
        ({"timeframe": "2d"}, "from '1m' to '1d'"),
        ({"timeframe": "fast"}, "Unknown timeframe"),
        ({"calendar": "stocks"}, "calendar"),
        ({"n_bars": 0}, "n_bars"),
        ({"annual_vol": -0.1}, "annual_vol"),
        ({"annual_vol": float("nan")}, "annual_vol"),
        ({"tick_size": 0.0}, "tick_size"),
        ({"retracement_fraction": 1.5}, "retracement_fraction"),
        ({"pattern_strength": 0.0}, "pattern_strength"),
        ({"pattern_strength": 1.01}, "pattern_strength"),
        ({"n_bars": 1_000, "n_patterns": 10}, "need n_bars >= 1995"),
        ({"timeframe": "1d", "n_bars": 100_000}, "past 2262"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        SyntheticMarketConfig(**overrides)


def test_timeframe_is_normalised() -> None:
    assert SyntheticMarketConfig(timeframe=" 5M ").timeframe == "5m"
