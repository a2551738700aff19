"""The env conformance checker (moola.testing.check_env, issue 17): TradingEnv passes it on
synthetic and real bars, and each planted fault (an observation that peeks at the next
bar, an account that forgets fees, global random state, a mask that allows too much) is
caught by the check made for it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from moola.rl.env import TradingEnv
from moola.rl.observations import ObservationSource
from moola.rl.spaces import ACTION_SPACES
from moola.testing import check_env
from moola.testing.envs import CHECKS
from tests.conftest import random_walk_bars

COSTS = {
    "engine": "event",
    "initial_cash": 10_000.0,
    "commission": 0.001,
    "spread": 0.01,
    "slippage": 2.0,
    "rules": "none",
}


def _maker(env_class: type[TradingEnv] = TradingEnv, **settings: Any):
    """make_env for check_env: a small env of ``env_class`` with costs on."""
    options = {"window": 10, "execution": COSTS, "max_steps": 40, **settings}

    def make_env(bars: pd.DataFrame, *, action_space: str, **extra: Any) -> TradingEnv:
        return env_class(bars, action_space=action_space, **{**options, **extra})

    return make_env


@pytest.fixture(scope="module")
def walk() -> pd.DataFrame:
    return random_walk_bars(240, seed=4)


def test_trading_env_passes_on_synthetic_bars(walk):
    check_env(_maker(), walk, seed=1)


def test_trading_env_with_latency_no_shorting_and_shaped_rewards_passes(walk):
    execution = {**COSTS, "latency_bars": 3}
    reward = {
        "components": [
            {"name": "equity_change", "clip": [-0.01, 0.01]},
            {"name": "overtrading"},
            {"name": "drawdown"},
        ]
    }
    make_env = _maker(
        execution=execution, allow_short=False, reward=reward, invalid_action="penalise"
    )
    check_env(make_env, walk, seed=2, n_causal=3)


@pytest.mark.parametrize("on_breach", ["halt", "flatten"])
def test_trading_env_ended_by_a_rule_breach_passes(walk, on_breach):
    # a 0.2% daily loss limit: every episode here ends with the broker halted
    rules = [{"rule": "daily_loss_limit", "pct": 0.002}]
    execution = {**COSTS, "rules": rules, "on_breach": on_breach}
    check_env(_maker(execution=execution), walk, seed=1, n_causal=3)


def test_trading_env_passes_on_sp500_daily_bars(sp500):
    bars = sp500.iloc[-300:].reset_index(drop=True)
    assert list(bars.columns[:6]) == ["timestamp", "open", "high", "low", "close", "volume"]
    assert str(bars["timestamp"].dt.tz) == "UTC"
    # real prices with costs and the FTMO rules (halting on a breach)
    execution = {**COSTS, "initial_cash": 100_000.0, "rules": "ftmo"}
    check_env(_maker(execution=execution, window=20, max_steps=60), bars, seed=3, n_causal=4)


# --------------------------------------------------------------------------- planted faults


class PeekingEnv(TradingEnv):
    """Shows the window of bar t + 1 at bar t: the lookahead check must see it."""

    def __init__(self, bars: pd.DataFrame, **kwargs: Any) -> None:
        super().__init__(bars, **kwargs)
        self._ahead = ObservationSource(self.bars, window=self.window, scaler=self.scaler)

    def _peek(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> dict[str, np.ndarray]:
        obs["window"] = self._ahead.window_at(min(info["bar"] + 1, len(self.bars) - 1))
        return obs

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return self._peek(obs, info), info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return self._peek(obs, info), reward, terminated, truncated, info


class FeeBlindEnv(TradingEnv):
    """Reports equity (and rewards) as if fees were never paid: parity must see it."""

    def _paid(self) -> float:
        return float(self.broker.portfolio.fees)

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        self._fees = 0.0
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        paid, self._fees = self._paid() - self._fees, self._paid()
        info["equity"] += self._fees
        bonus = paid / float(self.execution.initial_cash)
        info["reward_components"]["equity_change"] += bonus
        return obs, reward + bonus, terminated, truncated, info


class FeeBlindRewardEnv(FeeBlindEnv):
    """Reports the broker's equity honestly but rewards as if fees were never paid."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        info["equity"] -= self._fees
        return obs, reward, terminated, truncated, info


class GlobalRandomEnv(TradingEnv):
    """Draws its start from numpy's global random state, not self.np_random."""

    def reset(self, *, seed=None, options=None):
        if not options or options.get("start") is None:
            options = {"start": int(np.random.choice(self.start_points))}
        return super().reset(seed=seed, options=options)


class LooseMaskEnv(TradingEnv):
    """Allows every action, also the ones decode rejects."""

    def action_masks(self) -> np.ndarray:
        return np.ones(self.action_space.n, dtype=bool)


def test_checker_catches_an_observation_that_peeks_ahead(walk):
    with pytest.raises(AssertionError, match=r"check_env\[causality\] space 'discrete12'") as info:
        check_env(_maker(PeekingEnv), walk, seed=1)
    assert "only bars after" in str(info.value) and "looks ahead" in str(info.value)


def test_checker_catches_an_account_that_ignores_fees(walk):
    with pytest.raises(AssertionError, match=r"check_env\[parity\] space 'discrete12'") as info:
        check_env(_maker(FeeBlindEnv), walk, seed=1)
    assert "info['equity']" in str(info.value) and "episode_backtest()" in str(info.value)


def test_checker_catches_a_reward_that_ignores_fees(walk):
    with pytest.raises(AssertionError, match=r"check_env\[parity\]") as info:
        check_env(_maker(FeeBlindRewardEnv), walk, seed=1)
    assert "reward component 'equity_change'" in str(info.value)


def test_checker_catches_global_random_state(walk):
    # gymnasium's own checker already sees the reset that ignores its seed ...
    with pytest.raises(AssertionError, match=r"check_env\[gymnasium\].*same seed"):
        check_env(_maker(GlobalRandomEnv), walk, seed=1)
    # ... and so does the determinism check on its own
    with pytest.raises(AssertionError, match=r"check_env\[determinism\] space 'target'"):
        check_env(_maker(GlobalRandomEnv), walk, spaces=["target"], checks=["determinism"])


def test_checker_catches_a_mask_that_allows_invalid_actions(walk):
    # a short-only-flat env: SELL at position 0 is invalid without shorting
    with pytest.raises(AssertionError, match=r"check_env\[masks\] space 'discrete12', step 0"):
        check_env(_maker(LooseMaskEnv, allow_short=False), walk, spaces=["discrete12"])


def test_each_check_alone_passes_a_good_env(walk):
    for check in CHECKS:
        check_env(_maker(), walk, spaces=ACTION_SPACES[:1], checks=[check], n_steps=10)
    with pytest.raises(ValueError, match="unknown check"):
        check_env(_maker(), walk, checks=["parity", "speed"])


def test_a_make_env_without_scaler_is_told_why_causality_fails(walk):
    """An env fitting its scaling on all the bars it is given sees the altered future
    through the statistics; the failure says how to give the checker the scaler."""

    def make_env(bars: pd.DataFrame, *, action_space: str) -> TradingEnv:
        return TradingEnv(bars, action_space=action_space, window=10, execution=COSTS)

    with pytest.raises(AssertionError, match=r"check_env\[causality\].*pass scaler= on"):
        check_env(make_env, walk, spaces=["target"], checks=["causality"], n_steps=5)
