"""The momentum scanner: scores, reset points, daily bars, no lookahead across days,
the storable form and the errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.rl.scanner import DAY_COLUMNS, index_from_frame, index_to_frame, momentum_index

PER_DAY = 60  # 1-minute bars 14:00-15:00 UTC


def _intraday(n_days: int = 8, momentum_day: int | None = 5, seed: int = 0) -> pd.DataFrame:
    """Quiet random-walk days; ``momentum_day`` gaps up 3%, trades 5x the volume and
    trends up steadily."""
    rng = np.random.default_rng(seed)
    frames, price = [], 100.0
    for d in range(n_days):
        stamps = pd.date_range(f"2024-03-{d + 1:02d} 14:00", periods=PER_DAY, freq="1min", tz="UTC")
        steps = rng.normal(0.0, 0.0005, PER_DAY)
        volume = rng.uniform(90, 110, PER_DAY)
        if d == momentum_day:
            price *= 1.03
            steps = np.abs(steps) + 0.0008
            volume *= 5
        close = price * np.exp(np.cumsum(steps))
        open_ = np.r_[price, close[:-1]]
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": stamps,
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.0002,
                    "low": np.minimum(open_, close) * 0.9998,
                    "close": close,
                    "volume": volume,
                }
            )
        )
        price = close[-1]
    return pd.concat(frames, ignore_index=True)


def test_one_row_per_day_with_scores_in_unit_interval() -> None:
    bars = _intraday()
    index = momentum_index(bars, reset_every=15)
    assert tuple(index.columns) == DAY_COLUMNS
    assert len(index) == 7  # the first day is only a baseline
    assert index["first_bar"].tolist() == [PER_DAY * d for d in range(1, 8)]
    assert (index["n_bars"] == PER_DAY).all()
    for column in ("quality", "gap_score", "volume_score", "range_score", "trend_score"):
        assert index[column].between(0.0, 1.0).all(), column
    scores = index[["gap_score", "volume_score", "range_score", "trend_score"]].mean(axis=1)
    np.testing.assert_allclose(index["quality"], scores)
    assert index.attrs["daily"] is False


def test_the_planted_momentum_day_scores_highest() -> None:
    index = momentum_index(_intraday(momentum_day=5))
    best = index.loc[index["quality"].idxmax()]
    assert best["day"] == pd.Timestamp("2024-03-06")
    assert best["gap"] == pytest.approx(0.03, rel=1e-9)
    assert best["rel_volume"] > 4.0
    assert best["direction"] == 1
    assert best["direction_share"] == 1.0
    assert best["trend_persistence"] == pytest.approx(1.0)
    assert best["quality"] > 0.8
    assert index["quality"].drop(index["quality"].idxmax()).max() < 0.5


def test_reset_points_every_reset_every_bars_never_the_last() -> None:
    index = momentum_index(_intraday(), reset_every=25)
    for row in index.itertuples():
        expected = [row.first_bar, row.first_bar + 25, row.first_bar + 50]
        assert row.reset_points.tolist() == expected
        assert row.reset_points.max() < row.last_bar


def test_session_and_timezone_choose_the_day_bars() -> None:
    bars = _intraday()  # 14:00-15:00 UTC = 09:00-10:00 New York (EST until 10 March)
    index = momentum_index(bars, timezone="America/New_York", session=("09:00", "09:30"))
    # only the first 30 bars of each day open in 09:00-09:30 New York
    assert (index["n_bars"] == 30).all()
    assert (index["last_bar"] - index["first_bar"] == 29).all()


def test_no_lookahead_across_days() -> None:
    """A day's row (its trailing baselines included) is unchanged when later days change."""
    bars = _intraday(n_days=8, momentum_day=None, seed=3)
    full = momentum_index(bars)
    cut_day = 4  # rows for days up to index 3 (bars of days 1..4) must not move
    later = bars.index >= PER_DAY * (cut_day + 1)
    altered = bars.copy()
    altered.loc[later, "volume"] *= 50.0
    altered.loc[later, ["open", "high", "low", "close"]] *= 1.5
    for other in (momentum_index(altered), momentum_index(bars.loc[~later])):
        pd.testing.assert_frame_equal(
            other.iloc[:cut_day].drop(columns="reset_points"),
            full.iloc[:cut_day].drop(columns="reset_points"),
        )
    assert not np.allclose(momentum_index(altered)["rel_volume"], full["rel_volume"])


def test_baselines_are_the_trailing_days_mean() -> None:
    bars = _intraday(n_days=6, momentum_day=None)
    index = momentum_index(bars, lookback=2)
    day_volume = bars["volume"].groupby(bars.index // PER_DAY).sum().to_numpy()
    # day 3 (index row 2) against days 1 and 2
    assert index["rel_volume"].iloc[2] == pytest.approx(day_volume[3] / day_volume[1:3].mean())
    assert index["rel_volume"].iloc[0] == pytest.approx(day_volume[1] / day_volume[0])


def test_daily_bars_one_bar_per_day() -> None:
    stamps = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    bars = pd.DataFrame(
        {
            "timestamp": stamps,
            "open": [100.0, 101.0, 100.0, 106.0, 107.0, 107.0],
            "high": [102.0, 102.0, 101.0, 112.0, 108.0, 107.5],
            "low": [99.0, 100.0, 99.0, 106.0, 106.0, 106.5],
            "close": [101.0, 100.5, 100.5, 112.0, 107.0, 107.0],
            "volume": [10.0, 10.0, 10.0, 40.0, 10.0, 10.0],
        }
    )
    index = momentum_index(bars)
    assert index.attrs["daily"] is True
    assert index["reset_points"].map(list).tolist() == [[1], [2], [3], [4], [5]]
    big = index.iloc[2]  # bar 3: gaps up 5.5%, 4x volume, closes at its high from its low
    assert big["gap"] == pytest.approx(106.0 / 100.5 - 1.0)
    assert big["rel_volume"] == pytest.approx(4.0)
    assert big["trend_persistence"] == pytest.approx(1.0)
    assert big["quality"] == pytest.approx(1.0)
    assert index.iloc[3]["trend_persistence"] == 0.0  # closed where it opened
    assert index["quality"].idxmax() == 2


def test_storable_flat_form_round_trips() -> None:
    index = momentum_index(_intraday(), reset_every=20)
    flat = index_to_frame(index)
    assert len(flat) == sum(len(p) for p in index["reset_points"])
    assert "reset_points" not in flat.columns
    assert flat["reset_bar"].tolist() == np.concatenate(index["reset_points"].tolist()).tolist()
    back = index_from_frame(flat)
    pd.testing.assert_frame_equal(
        back.drop(columns="reset_points"), index.drop(columns="reset_points")
    )
    for a, b in zip(back["reset_points"], index["reset_points"], strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="reset_bar"):
        index_from_frame(flat.drop(columns="reset_bar"))


def _bad(bars: pd.DataFrame, match: str, **kwargs: object) -> None:
    with pytest.raises(ConfigError, match=match):
        momentum_index(bars, **kwargs)


def test_clear_errors() -> None:
    bars = _intraday(n_days=3)
    _bad(bars.iloc[:0], "empty")
    _bad(bars.iloc[:PER_DAY], r"1 day\(s\).*at least two")
    _bad(bars.drop(columns="volume"), "volume")
    nan = bars.copy()
    nan.loc[7, "close"] = np.nan
    _bad(nan, "'close' is not finite at row 7")
    _bad(bars.iloc[::-1], "strictly increasing")
    _bad(bars.assign(symbol=["A", "B"] * (len(bars) // 2)), "2 symbols")
    _bad(bars, "session start", session=("16:00", "09:30"))
    _bad(bars, "'9h30'", session=("9h30", "16:00"))
    _bad(bars, "no bar", session=("01:00", "02:00"))
    _bad(bars, "timezone", timezone="Mars/Olympus")
    _bad(bars, "reset_every", reset_every=0)
    _bad(bars, r"min_bars=100", min_bars=100)
