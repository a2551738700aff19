"""Window price-action features: hand-computed values, isolation, scale, planted patterns."""

from __future__ import annotations

import numpy as np
import pytest

import moola.features.window as window_module
from moola.core.errors import ConfigError
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features.window import PRICE_ACTION_COLUMNS, price_action_features
from tests.conftest import random_walk_bars

# o, h, l, c. True ranges 2, 2, 2, 2, 1, 1 -> ATR 5/3. Highest high 14 at bar 3, lowest
# low 9 at bar 0, first open 10: the move is up (14 - 10 >= 10 - 9).
_TINY = np.array(
    [
        [10.0, 11.0, 9.0, 10.5],
        [10.5, 12.0, 10.0, 11.5],
        [11.5, 13.0, 11.0, 12.5],
        [12.5, 14.0, 12.0, 13.5],
        [13.5, 13.6, 12.6, 13.0],
        [13.0, 13.2, 12.2, 12.5],
    ]
)


def _windows(n: int, length: int = 50, seed: int = 0) -> np.ndarray:
    bars = random_walk_bars(n * length, seed=seed)
    return bars[["open", "high", "low", "close"]].to_numpy().reshape(n, length, 4)


def test_twenty_named_columns() -> None:
    out = price_action_features(_windows(3))
    assert len(PRICE_ACTION_COLUMNS) == 20 == len(set(PRICE_ACTION_COLUMNS))
    assert list(out.columns) == list(PRICE_ACTION_COLUMNS)
    assert out.shape == (3, 20) and not out.isna().any().any()


def test_hand_computed_tiny_window() -> None:
    row = price_action_features(_TINY[None]).iloc[0]
    atr = 5 / 3
    expected = {
        # closes 10.5 11.5 12.5 13.5 13 12.5 against x - 2.5: sxy 7.75, sxx 17.5
        "pa_trend_slope": 7.75 / 17.5 * 5 / atr,
        "pa_range_compression": 1.4 / 3,  # last two bars 13.6 - 12.2, first two 12 - 9
        "pa_pullback_depth": (14 - 12.5) / (14 - 9),
        "pa_close_position": (12.5 - 9) / 5,
        "pa_up_fraction": 4 / 6,
        "pa_max_drawdown": 1 / atr,  # 13.5 -> 12.5
        "pa_max_runup": 3 / atr,  # 10.5 -> 13.5
        "pa_body_ratio": (0.25 + 5 * 0.5) / 6,
        "pa_net_move": (12.5 - 10) / atr,
        "pa_range_atr": 5 / atr,
        "pa_efficiency": 2 / 4,  # |12.5 - 10.5| / (1 + 1 + 1 + 0.5 + 0.5)
        "pa_extreme_position": 3 / 5,
        "pa_late_move": (12.5 - 13.5) / atr,
        "pa_tr_ratio": 1 / 2,
        "pa_inside_fraction": 1 / 5,  # only bar 4 lies inside bar 3
    }
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-12), name


def test_a_row_depends_on_its_own_window_only() -> None:
    windows = _windows(6)
    base = price_action_features(windows)
    changed = windows.copy()
    changed[[0, 1, 3, 5]] = _windows(4, seed=9)
    changed[4, 10:, :] = np.nan  # even garbage elsewhere does not leak
    out = price_action_features(changed)
    np.testing.assert_array_equal(out.iloc[2].to_numpy(), base.iloc[2].to_numpy())


def test_scale_invariance() -> None:
    windows = _windows(20)
    np.testing.assert_allclose(
        price_action_features(windows * 1000.0), price_action_features(windows), rtol=1e-9
    )


def test_channel_order_is_named_and_extra_channels_ignored() -> None:
    windows = _windows(4)
    volume = np.ones((*windows.shape[:2], 1))
    reordered = np.concatenate([windows[:, :, [3, 0, 2, 1]], volume], axis=2)
    out = price_action_features(reordered, columns=("close", "open", "low", "high", "volume"))
    np.testing.assert_array_equal(out.to_numpy(), price_action_features(windows).to_numpy())


def test_chunks_give_the_same_rows(monkeypatch) -> None:
    windows = _windows(10)
    whole = price_action_features(windows)
    monkeypatch.setattr(window_module, "_CHUNK", 3)
    np.testing.assert_array_equal(price_action_features(windows).to_numpy(), whole.to_numpy())


def test_flat_window_has_finite_documented_values() -> None:
    row = price_action_features(np.full((1, 10, 4), 7.0)).iloc[0]
    assert not row.isna().any()
    assert row["pa_close_position"] == 0.5
    assert row["pa_range_compression"] == row["pa_vol_ratio"] == row["pa_tr_ratio"] == 1.0
    assert row["pa_trend_slope"] == row["pa_impulse"] == row["pa_net_move"] == 0.0


def test_bad_inputs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="at least 6 bars"):
        price_action_features(np.ones((2, 5, 4)))
    with pytest.raises(ConfigError, match="shape"):
        price_action_features(np.ones((2, 10)))
    with pytest.raises(ConfigError, match="close"):
        price_action_features(np.ones((2, 10, 3)), columns=("open", "high", "low"))


def test_planted_consolidation_and_retracement_windows_differ() -> None:
    config = SyntheticMarketConfig(seed=1, n_bars=30_000, n_patterns=80, timeframe="1m")
    market = generate_market(config)
    values = market.bars[["open", "high", "low", "close"]].to_numpy()
    starts, ends = market.patterns["start"].to_numpy(), market.patterns["end"].to_numpy()
    windows = np.stack([values[s : e + 1] for s, e in zip(starts, ends, strict=True)])
    out = price_action_features(windows)
    is_retracement = (market.patterns["label"] == "retracement").to_numpy()
    assert 10 <= is_retracement.sum() <= 70
    # Consolidation ends in a tight range after its lead-in move; a retracement gives back
    # 38-62% of its impulse over the rest of the window.
    for name in ("pa_range_compression", "pa_pullback_depth"):
        cons, retr = out[name][~is_retracement], out[name][is_retracement]
        assert retr.mean() > 2 * cons.mean(), name
        # Almost every (consolidation, retracement) pair is ordered this way.
        ordered = (cons.to_numpy()[:, None] < retr.to_numpy()[None, :]).mean()
        assert ordered > 0.85, (name, ordered)
