"""PPO learns a planted edge through the real environment and costs, and finds none in a
random walk.

The synthetic market: per-bar returns whose sign repeats the previous bar's with
probability 0.9 (momentum anyone can see in the last close-to-close return of the
observation window), each bar opening at the previous close. Orders pay a 2 bps commission
through ``moola.sim`` (TradingEnv), decisions fill at the next open. PPO trains on the first
2000 bars and is evaluated on the 1000 after them (scaler fitted on the training bars).
The same budget on a random walk with the same costs must not produce a positive return
(tolerance 1%, for the luck of ten 100-bar episodes). Fixed seeds; ~10-20 s each here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.data.schema import make_bars
from moola.rl.agents import make_agent
from moola.rl.env import TradingEnv
from moola.rl.evaluate import evaluate_policy

pytestmark = pytest.mark.slow

EXECUTION = {"commission": 0.0002, "rules": "none"}
TRAIN_BARS, TEST_BARS = 2000, 1000


def _bars(returns: np.ndarray) -> pd.DataFrame:
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.r_[100.0, close[:-1]]
    high, low = np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999
    stamps = pd.date_range("2024-01-02", periods=len(returns), freq="1min", tz="UTC")
    volume = np.full(len(returns), 1000.0)
    return make_bars(stamps, open_, high, low, close, volume, symbol="SYN", timeframe="1m")


def _momentum(n: int, seed: int, persistence: float = 0.9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flips = rng.random(n) > persistence
    signs = np.where(np.cumsum(flips) % 2 == 0, 1.0, -1.0)  # sign flips where flips is True
    return signs * 0.004 * (0.5 + rng.random(n))


def _random_walk(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.004, n)


def _train_and_evaluate(returns: np.ndarray, seed: int = 0):
    bars = _bars(returns)
    train = bars.iloc[:TRAIN_BARS].reset_index(drop=True)
    test = bars.iloc[TRAIN_BARS:].reset_index(drop=True)
    kw = {"window": 2, "execution": EXECUTION, "action_space": "target", "max_steps": 100}
    env = TradingEnv(train, **kw)
    eval_env = TradingEnv(test, scaler=env.scaler, **kw)
    model = make_agent("ppo", env, seed=seed, n_steps=256, batch_size=64, n_epochs=4,
                       learning_rate=3e-3, policy_kwargs={"net_arch": [16]})  # fmt: skip
    model.learn(6000)
    return evaluate_policy(model, eval_env, n_episodes=10, seed=seed)


def test_ppo_learns_a_planted_edge_after_costs():
    result = _train_and_evaluate(_momentum(TRAIN_BARS + TEST_BARS, seed=0))
    assert result.policy.mean_return > 0.03
    assert result.policy.mean_return > result.buy_and_hold.mean_return + 0.03
    assert result.flat.mean_return == 0.0
    assert result.policy.reward_components["equity_change"] == pytest.approx(
        result.policy.mean_reward
    )


def test_ppo_finds_no_edge_in_a_random_walk_with_costs():
    result = _train_and_evaluate(_random_walk(TRAIN_BARS + TEST_BARS, seed=0))
    assert result.policy.mean_return < 0.01
