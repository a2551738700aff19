"""evaluate_policy: per-episode measures, and flat / buy-and-hold on the same episodes."""

from __future__ import annotations

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.rl.evaluate import evaluate_policy
from tests.rl.toy_envs import ToyMarketEnv, momentum_returns


def _env(**kw):
    return ToyMarketEnv(momentum_returns(400, seed=1), cost=0.001, episode_length=30, **kw)


def test_always_long_equals_buy_and_hold_and_flat_keeps_its_cash():
    env = _env()
    result = evaluate_policy(lambda obs: 2, env, n_episodes=3, seed=5)
    assert result.seeds == (5, 6, 7)
    for mine, bh in zip(result.policy.episodes, result.buy_and_hold.episodes, strict=True):
        np.testing.assert_array_equal(mine.equity, bh.equity)  # same start bars, same costs
    for flat in result.flat.episodes:
        assert flat.final_equity == flat.initial_equity == 10_000.0
        assert flat.total_return == 0.0
        assert flat.actions == {"1": 30}
    # buy-and-hold paid the entry cost once: its first bar is below the asset's move
    first = result.buy_and_hold.episodes[0]
    assert first.actions == {"2": 30}
    assert first.equity[0] == 10_000.0


def test_episode_measures_add_up():
    env = _env()
    calls = iter(np.tile([0, 1, 2, 2], 100))
    result = evaluate_policy(lambda obs: next(calls), env, n_episodes=2)
    for ep in result.policy.episodes:
        assert ep.steps == 30
        assert len(ep.equity) == 31
        assert ep.final_equity == ep.equity[-1]
        assert sum(ep.actions.values()) == ep.steps
        assert ep.reward_components["equity_change"] == pytest.approx(ep.total_reward)
        # default reward: equity change over initial cash sums to the after-cost return
        assert ep.total_reward == pytest.approx(ep.total_return)
    assert result.policy.mean_reward == pytest.approx(
        np.mean([e.total_reward for e in result.policy.episodes])
    )
    summary = result.summary()
    assert set(summary) == {"deterministic", "seeds", "policy", "flat", "buy_and_hold"}
    assert summary["policy"]["actions"] == result.policy.actions
    assert len(summary["policy"]["episodes"][0]["equity"]) == 31


def test_invalid_actions_are_counted():
    env = _env(masked=True)
    result = evaluate_policy(lambda obs: 2, env, n_episodes=1, baselines=False)
    assert result.flat is None
    assert result.policy.invalid_actions == 29  # long again while long is masked


def test_continuous_actions_are_binned_and_baselines_played():
    env = _env(action="continuous")
    result = evaluate_policy(lambda obs: np.array([0.3], np.float32), env, n_episodes=1)
    assert result.policy.actions == {"[+0.25,+0.50]": 30}
    assert result.flat.episodes[0].final_equity == 10_000.0
    assert result.buy_and_hold.actions == {"[+0.75,+1.00]": 30}


def test_bad_arguments_are_refused():
    env = _env()
    with pytest.raises(ConfigError) as err:
        evaluate_policy(lambda obs: 0, env, n_episodes=0)
    assert err.value.param == "n_episodes"
    with pytest.raises(ConfigError) as err:
        evaluate_policy(object(), env)
    assert err.value.param == "model_or_fn"


@pytest.mark.parametrize("space", ["discrete12", "target", "continuous"])
def test_on_the_trading_env_the_references_pay_the_backtests_costs(space):
    from moola.rl.env import TradingEnv
    from tests.rl.toy_envs import synthetic_bars

    execution = {"commission": 0.0005, "slippage": 2.0, "rules": "none"}
    env = TradingEnv(synthetic_bars(), window=4, execution=execution, action_space=space,
                     max_steps=40)  # fmt: skip
    result = evaluate_policy(lambda obs: env.action_space.sample(), env, n_episodes=2, seed=3)
    for flat in result.flat.episodes:
        assert flat.final_equity == flat.initial_equity and flat.steps == 40
    held = result.buy_and_hold.episodes[-1]  # the env's last episode
    replay = env.episode_backtest().equity["equity"].to_numpy()
    np.testing.assert_allclose(held.equity, replay, rtol=1e-12)
    assert held.invalid_actions == 0
    first_bar, start = held.equity[1], held.equity[0]
    bars = env.bars
    s = env.episode_start
    gross = start * bars["close"].iloc[s + 1] / bars["open"].iloc[s + 1]
    assert first_bar < gross  # bought at the next open, after fees and slippage
    starts = {name: [e.start for e in getattr(result, name).episodes]
              for name in ("policy", "flat", "buy_and_hold")}  # fmt: skip
    assert starts["policy"] == starts["flat"] == starts["buy_and_hold"]
    assert starts["policy"][0] != starts["policy"][1]  # two seeds, two start bars
