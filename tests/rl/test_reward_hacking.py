"""Rewards cannot be gamed by trading: on a flat market with costs, churning earns less
than holding; the reported components add up to the reward; equity_change sums to the
episode's PnL after costs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.rl.env import TradingEnv
from moola.rl.rewards import COMPONENTS

N_BARS = 200
COSTS = {"spread": 0.02, "commission": 0.0005, "rules": "none", "initial_cash": 100_000.0}
WITH_OVERTRADING = {"components": ["equity_change", {"name": "overtrading", "weight": -1e-3}]}
ALL_COMPONENTS = {
    "components": [
        {"name": "equity_change", "smoothing": 0.2},
        {"name": "realised_pnl", "weight": 0.5},
        {"name": "holding_cost", "growth": 0.1},
        {"name": "overtrading", "per_trade": 1.0, "per_cost": 1.0},
        {"name": "drawdown", "weight": -0.5},
        {"name": "headroom", "threshold": 0.9},
        {"name": "invalid_action", "decay": 0.01},
    ]
}


def _flat_bars() -> pd.DataFrame:
    """Constant prices (nothing to earn); volume varies so the features are defined."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-02 14:30", periods=N_BARS, freq="1min", tz="UTC"),
            "open": np.full(N_BARS, 50.0),
            "high": np.full(N_BARS, 50.0),
            "low": np.full(N_BARS, 50.0),
            "close": np.full(N_BARS, 50.0),
            "volume": rng.uniform(1_000.0, 2_000.0, N_BARS),
        }
    )


def _episode(env: TradingEnv, policy) -> tuple[float, list[dict], list[float]]:
    """Run one episode from the first start; (total reward, infos, rewards)."""
    env.reset(seed=0)
    total, infos, rewards, k, done = 0.0, [], [], 0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(policy(k))
        total += reward
        infos.append(info)
        rewards.append(reward)
        done, k = terminated or truncated, k + 1
    return total, infos, rewards


def _env(space: str, reward) -> TradingEnv:
    return TradingEnv(
        _flat_bars(), window=5, action_space=space, execution=COSTS, reward=reward, start="first"
    )


# actions: target space targets (-1, 0, 1) -> indices 0, 1, 2; discrete12 BUY 100% = 7,
# SELL 100% = 11, HOLD = 0
POLICIES = {
    "target": {"hold": lambda k: 2, "churn": lambda k: 2 if k % 2 == 0 else 0, "flat": lambda k: 1},
    "discrete12": {
        "hold": lambda k: 7 if k == 0 else 0,
        "churn": lambda k: 7 if k % 2 == 0 else 11,
        "flat": lambda k: 0,
    },
}


@pytest.mark.parametrize("reward", [None, WITH_OVERTRADING], ids=["default", "overtrading"])
@pytest.mark.parametrize("space", ["target", "discrete12"])
def test_churning_earns_less_than_holding_on_a_flat_market(space: str, reward) -> None:
    policies = POLICIES[space]
    hold, hold_infos, _ = _episode(_env(space, reward), policies["hold"])
    churn, churn_infos, _ = _episode(_env(space, reward), policies["churn"])
    flat, _, _ = _episode(_env(space, reward), policies["flat"])
    assert len(churn_infos) == len(hold_infos) > 100
    assert sum(i["costs"] > 0 for i in churn_infos) > 100  # it really churned, paying costs
    assert sum(i["costs"] > 0 for i in hold_infos) == 1  # one entry
    assert flat == 0.0
    assert churn < hold < flat
    assert churn < flat + 100 * (hold - flat)  # each flip costs about two entries
    for name in ("equity_change", "overtrading") if reward else ("equity_change",):
        churned = sum(i["reward_components"][name] for i in churn_infos)
        held = sum(i["reward_components"][name] for i in hold_infos)
        assert churned < held < 0.0, name


@pytest.mark.parametrize("space", ["target", "discrete12"])
def test_components_sum_to_the_reward_and_equity_change_to_the_pnl(space: str) -> None:
    env = _env(space, ALL_COMPONENTS)
    rng = np.random.default_rng(1)
    n = env.action_space.n
    _, infos, rewards = _episode(env, lambda k: int(rng.integers(n)))
    for info, reward in zip(infos, rewards, strict=True):
        parts = info["reward_components"]
        assert tuple(parts) == COMPONENTS
        assert sum(parts.values()) == pytest.approx(reward, rel=1e-12, abs=1e-15)
    # unsmoothed, equity_change sums exactly to the PnL over the initial cash
    env = _env(space, None)
    _, infos, _ = _episode(env, lambda k: int(rng.integers(n)))
    summed = sum(info["reward_components"]["equity_change"] for info in infos)
    pnl = (infos[-1]["equity"] - COSTS["initial_cash"]) / COSTS["initial_cash"]
    assert pnl < 0.0  # costs were paid
    assert summed == pytest.approx(pnl, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(env.episode_equity[-1], infos[-1]["equity"], rtol=1e-12)
