"""Coarser timescales in the observation (issue 17): each base bar sees windows of the
coarse bars that had closed by its own close, never the one in progress, scaled with
training-period statistics; the environment passes the conformance checker with them,
and a multi-timescale policy trains on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.rl.agents import make_agent
from moola.rl.env import TradingEnv
from moola.rl.observations import CoarserWindows, ObservationSource
from moola.testing import check_env
from tests.conftest import random_walk_bars


@pytest.fixture
def bars() -> pd.DataFrame:
    return random_walk_bars(400, seed=3)


def test_a_base_bar_sees_the_coarse_bars_closed_by_its_close(bars):
    coarse = CoarserWindows(bars, "5m", window=4)
    # 1-minute bars from midnight: bar 4 closes at 00:05, completing the first 5m bar.
    assert coarse.index[3] == -1 and coarse.index[4] == 0 and coarse.index[9] == 1
    assert (np.diff(coarse.index) >= 0).all()
    # The windows equal those of the 5-minute bars aggregated by hand.
    resampled = (
        bars.set_index("timestamp")
        .resample("5min")
        .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
        .reset_index()
    )
    by_hand = ObservationSource(resampled, window=4)
    t = 123  # 02:03: the last 5m bar closed by 02:04 is 01:55-02:00 (row 23)
    assert coarse.index[t] == 23
    np.testing.assert_array_equal(coarse.window_at(t), by_hand.window_at(23))


def test_altering_later_bars_changes_nothing_a_bar_sees(bars):
    coarse = CoarserWindows(bars, "15m", window=3)
    t = 250
    altered = bars.copy()
    later = altered.index > t
    for column in ("open", "high", "low", "close"):
        altered.loc[later, column] *= 1.5
    altered.loc[later, "volume"] *= 9
    again = CoarserWindows(altered, "15m", window=3, scaler=coarse.scaler)
    for u in (t, t - 1, t - 7):
        np.testing.assert_array_equal(again.window_at(u), coarse.window_at(u))


def test_the_env_adds_one_window_per_timescale_and_passes_check_env(bars):
    env = TradingEnv(bars, window=10, timescales={"5m": 6, "15m": 3})
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"window", "window_5m", "window_15m", "portfolio"}
    assert obs["window_5m"].shape == (6, 5) and obs["window_15m"].shape == (3, 5)
    assert env.timescales == {"5m": 6, "15m": 3}
    assert set(env.scalers) == {"window", "window_5m", "window_15m"}
    # An evaluation env takes the training env's scalers as they are.
    evaluation = TradingEnv(bars.iloc[200:], window=10, timescales={"5m": 6, "15m": 3},
                            scaler=env.scalers, start="first")  # fmt: skip
    assert evaluation.scalers == env.scalers

    def make_env(bars, *, action_space, **extra):
        terms = {"spread": 0.01}
        return TradingEnv(bars, window=10, timescales={"5m": 6, "15m": 3},
                          action_space=action_space, execution=terms, **extra)  # fmt: skip

    check_env(make_env, bars, seed=1, n_causal=3, n_steps=40)


def test_a_multi_timescale_policy_trains_on_them(bars):
    env = TradingEnv(bars, window=10, timescales={"5m": 6}, action_space="target", max_steps=50)
    model = make_agent("ppo", env, seed=0, n_steps=32, batch_size=32, n_epochs=1,
                       extractor="multi_timescale")  # fmt: skip
    model.learn(64)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action)


def test_bad_timescales_are_refused_naming_them(bars):
    with pytest.raises(ConfigError, match="not coarser") as err:
        TradingEnv(bars, window=10, timescales={"1m": 5})
    assert err.value.param == "timescales"
    with pytest.raises(ConfigError, match="integer >= 1"):
        TradingEnv(bars, window=10, timescales={"5m": 0})
    with pytest.raises(ConfigError, match="timescale '1h'") as err:
        TradingEnv(bars, window=10, timescales={"1h": 24})
    assert err.value.param == "timescales"
    with pytest.raises(ConfigError, match="no observation window") as err:
        TradingEnv(bars, window=10, scaler={"window_5m": None})
    assert err.value.param == "scaler"
