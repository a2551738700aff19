"""The environment's return *is* its backtest: an episode's executed targets replayed
through ``moola.backtest.run`` (event engine, the env's config) give the env's equity at
every bar, on random policies over random markets (property test) and on real daily bars
(the ``arch`` S&P 500 set)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moola.rl.env import TradingEnv
from moola.rl.spaces import ACTION_SPACES
from tests.conftest import random_walk_bars


def _episode(env: TradingEnv, rng: np.random.Generator, seed: int, hold: float) -> None:
    """A random policy (holding with probability ``hold``) until the episode ends."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    done = False
    while not done:
        if env.codec.discrete and rng.random() < hold:
            action = 0 if env.codec.name == "discrete12" else env.action_space.sample()
        else:
            action = env.action_space.sample()
        _, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        assert info["equity"] == env.episode_equity[-1]
        assert info["position"] == env.episode_targets[-1]


def _assert_parity(env: TradingEnv) -> None:
    replay = env.episode_backtest()
    equity = env.episode_equity
    n = len(equity)
    assert len(env.episode_targets) == n
    np.testing.assert_allclose(replay.equity["equity"].to_numpy()[:n], equity, rtol=1e-9, atol=0)
    positions = replay.equity["position"].to_numpy()[:n]
    np.testing.assert_array_equal(positions[-1], env.broker.portfolio.position)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(30, 200),
    latency=st.sampled_from([1, 3]),
    space=st.sampled_from(ACTION_SPACES),
    allow_short=st.booleans(),
    max_steps=st.one_of(st.none(), st.integers(1, 60)),
    tight_rules=st.booleans(),
)
def test_random_policies_equal_their_backtest_at_every_step(
    seed, n, latency, space, allow_short, max_steps, tight_rules
) -> None:
    bars = random_walk_bars(n, timeframe="1h", seed=seed)
    rules = [{"rule": "daily_loss_limit", "pct": 0.003}, {"rule": "total_loss_limit", "pct": 0.01}]
    execution = {
        "spread": 0.02,
        "slippage": 2.0,  # fixed bps
        "commission": 3e-4,
        "latency_bars": latency,
        "rules": rules if tight_rules else [],
    }
    env = TradingEnv(
        bars,
        window=4,
        execution=execution,
        action_space=space,
        allow_short=allow_short,
        max_steps=max_steps,
    )
    rng = np.random.default_rng(seed)
    for episode in range(2):
        _episode(env, rng, seed + episode, hold=0.6)
        _assert_parity(env)


def test_other_slippage_models_and_per_bar_spreads_keep_parity() -> None:
    bars = random_walk_bars(300, timeframe="1h", seed=4)
    spreads = tuple(np.random.default_rng(4).uniform(0.0, 0.05, len(bars)).tolist())
    for slippage in (
        {"model": "volatility_scaled", "k": 0.2, "window": 5},
        {"model": "square_root_impact", "k": 0.5, "window": 5},
    ):
        env = TradingEnv(
            bars,
            window=6,
            execution={"spread": spreads, "slippage": slippage, "latency_bars": 2, "rules": []},
            max_steps=120,
        )
        for seed in range(3):
            _episode(env, np.random.default_rng(seed), seed, hold=0.5)
            _assert_parity(env)


def test_real_daily_bars_equal_their_backtest(sp500: pd.DataFrame) -> None:
    bars = sp500.iloc[:400].reset_index(drop=True)
    execution = {"spread": 0.5, "slippage": 1.0, "commission": 1e-4, "latency_bars": 1}
    for space in ACTION_SPACES:
        env = TradingEnv(bars, window=20, execution=execution, action_space=space, start="first")
        _episode(env, np.random.default_rng(0), 0, hold=0.8)
        assert env.episode_start == env.start_points[0]
        _assert_parity(env)


def test_an_episode_shorter_than_the_latency_is_replayed_over_enough_bars() -> None:
    bars = random_walk_bars(80, timeframe="1h", seed=2)
    env = TradingEnv(
        bars,
        window=4,
        execution={"latency_bars": 3, "commission": 1e-4, "rules": []},
        action_space="target",
        max_steps=1,
    )
    env.reset(seed=0)
    _, _, _, truncated, _ = env.step(2)
    assert truncated
    replay = env.episode_backtest()
    assert len(replay.equity) == 4  # a backtest needs latency + 1 bars
    np.testing.assert_array_equal(replay.equity["equity"].to_numpy()[:2], env.episode_equity)
    assert len(replay.fills) == 1 and replay.fills["bar"].iloc[0] == 3
