"""The trading environment: Gymnasium's checker for each action space, determinism, the
time contract (latency), endings and invalid actions, and the errors for bad input.

Parity with ``moola.backtest.run`` (the env's return *is* its backtest) is in
``test_env_parity.py``.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

import moola.rl
from moola.core.errors import ConfigError
from moola.data.schema import make_bars
from moola.rl.env import TradingEnv
from moola.rl.spaces import ACTION_SPACES, BUY, HOLD, SELL
from moola.sim import ExecutionConfig
from tests.conftest import random_walk_bars

NO_RULES = ExecutionConfig(rules=[])
COSTS = {"spread": 0.01, "slippage": 1.0, "commission": 2e-4}


def _bars(n: int = 200, seed: int = 0) -> pd.DataFrame:
    return random_walk_bars(n, timeframe="1h", seed=seed)


def _path_bars(close: list[float]) -> pd.DataFrame:
    """Bars whose open is the previous close (the first opens at the first close)."""
    close_ = np.asarray(close, dtype=np.float64)
    open_ = np.concatenate([[close_[0]], close_[:-1]])
    stamps = pd.date_range("2024-01-01", periods=len(close_), freq="1h", tz="UTC")
    return make_bars(
        stamps,
        open_,
        np.maximum(open_, close_) * 1.001,
        np.minimum(open_, close_) * 0.999,
        close_,
        np.full(len(close_), 100.0),
        symbol="TEST",
        timeframe="1h",
    )


def _run(env: TradingEnv, actions, **reset) -> list[tuple]:
    obs, info = env.reset(**reset)
    out = [(obs, None, False, False, info)]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return out


@pytest.mark.filterwarnings("ignore:.*Box observation space m:UserWarning")
@pytest.mark.parametrize("space", ACTION_SPACES)
def test_gymnasium_check_env_passes(space) -> None:
    env = TradingEnv(_bars(), window=8, execution=NO_RULES, action_space=space, max_steps=30)
    check_env(env, skip_render_check=True)
    assert env.observation_space["window"].shape == (8, len(env.scaler.columns))
    assert env.observation_space["portfolio"].shape == (7,)


@pytest.mark.parametrize("space", ACTION_SPACES)
def test_same_seed_and_actions_give_the_same_trajectory(space) -> None:
    bars = _bars(300)
    env = TradingEnv(bars, window=8, execution={**COSTS, "rules": []}, action_space=space)
    env.action_space.seed(1)
    actions = [env.action_space.sample() for _ in range(80)]
    first = _run(env, actions, seed=7)
    start = env.episode_start
    again = TradingEnv(bars, window=8, execution={**COSTS, "rules": []}, action_space=space)
    second = _run(again, actions, seed=7)
    assert len(first) == len(second)
    for (o1, r1, te1, tr1, i1), (o2, r2, te2, tr2, i2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(o1["window"], o2["window"])
        np.testing.assert_array_equal(o1["portfolio"], o2["portfolio"])
        assert (r1, te1, tr1) == (r2, te2, tr2)
        assert i1 == i2
    # a random start comes from the seed only
    env.reset(seed=7)
    assert env.episode_start == start


def test_a_decision_fills_at_the_open_latency_bars_later() -> None:
    bars = _bars(120)
    for latency in (1, 3):
        env = TradingEnv(
            bars,
            window=5,
            execution=ExecutionConfig(rules=[], latency_bars=latency),
            action_space="target",
            start="first",
        )
        _, info = env.reset()
        s = info["bar"]
        _, _, _, _, info = env.step(2)  # target +1 decided at bar s's close
        assert info["position"] == 1.0
        for _ in range(latency - 1):
            assert env.broker.portfolio.position == 0.0  # not filled yet
            env.step(2)
        assert env.broker.portfolio.position > 0.0
        fills = env.broker.result().fills
        assert fills["bar"].tolist() == [latency]  # the broker's bar 0 is bar s
        assert fills["decision_bar"].tolist() == [0]
        assert fills["price"].iloc[0] == bars["open"].iloc[s + latency]
        units = env.broker.instrument.units_for(1.0, 100_000.0, bars["close"].iloc[s])
        assert fills["qty"].iloc[0] == units


def test_the_observation_describes_the_decision_bar() -> None:
    env = TradingEnv(_bars(100), window=6, execution=NO_RULES, start="first")
    obs, info = env.reset()
    t = info["bar"]
    assert t == env.start_points[0]
    np.testing.assert_array_equal(obs["window"], env._obs.table[t - 5 : t + 1])
    obs, _, _, _, info = env.step(HOLD)
    assert info["bar"] == t + 1
    assert info["timestamp"] == env.bars["timestamp"].iloc[t + 1]
    np.testing.assert_array_equal(obs["window"], env._obs.table[t - 4 : t + 2])


def test_the_episode_ends_at_the_end_of_the_data_and_after_max_steps() -> None:
    bars = _bars(60)
    env = TradingEnv(bars, window=5, execution=NO_RULES, start="first")
    steps = _run(env, [HOLD] * 100)
    assert steps[-1][2] and not steps[-1][3]
    assert steps[-1][4]["terminated_by"] == "end_of_data"
    assert steps[-1][4]["bar"] == len(bars) - 1
    env = TradingEnv(bars, window=5, execution=NO_RULES, max_steps=7)
    steps = _run(env, [HOLD] * 100, seed=0)
    assert len(steps) == 8 and steps[-1][3] and not steps[-1][2]
    assert steps[-1][4]["terminated_by"] is None
    with pytest.raises(ConfigError, match="reset"):
        env.step(HOLD)


def test_a_rule_breach_terminates_the_episode() -> None:
    bars = _bars(400, seed=3)
    tight = {"rules": [{"rule": "daily_loss_limit", "pct": 0.001}], **COSTS}
    env = TradingEnv(bars, window=5, execution=tight, action_space="target", start="first")
    steps = _run(env, [2, 0] * 200)  # long, then short, all episode
    info = steps[-1][4]
    assert steps[-1][2]
    assert info["terminated_by"] == "rule:daily_loss_limit"
    assert env.execution.on_breach == "halt" and env.execution.engine == "event"
    replay = env.episode_backtest()
    assert replay.breaches["rule"].tolist() == ["daily_loss_limit"]
    np.testing.assert_allclose(replay.equity["equity"], env.episode_equity, rtol=1e-9)


def test_bankruptcy_and_max_loss_terminate() -> None:
    # a short position through a price that more than doubles: equity below zero
    up = _path_bars([100.0] * 12 + [100.0, 100.0, 260.0, 260.0, 260.0])
    env = TradingEnv(up, window=2, execution=NO_RULES, action_space="target", start=[11])
    steps = _run(env, [0] * 10)
    assert steps[-1][4]["terminated_by"] == "bankruptcy"
    assert steps[-1][4]["equity"] <= 0.0
    # a long position through a 10% fall with max_loss 5%
    down = _path_bars([100.0] * 12 + [100.0, 100.0, 90.0, 90.0, 90.0])
    env = TradingEnv(
        down, window=2, execution=NO_RULES, action_space="target", start=[11], max_loss=0.05
    )
    steps = _run(env, [2] * 10)
    assert steps[-1][4]["terminated_by"] == "max_loss"
    assert steps[-1][4]["equity"] <= 95_000.0


@pytest.mark.parametrize("policy", ["mask", "penalise", "terminate"])
def test_invalid_actions_are_counted_under_every_policy(policy) -> None:
    env = TradingEnv(_bars(100), window=5, execution=NO_RULES, invalid_action=policy, start="first")
    env.reset()
    assert env.action_masks().tolist() == [True] * 12
    _, _, _, _, info = env.step(BUY * 4 + 3)  # all in
    assert info["position"] == 1.0 and not info["invalid_action"]
    assert env.action_masks().tolist() == [True] * 4 + [False] * 4 + [True] * 4
    equity_before = info["equity"]
    _, reward, terminated, _, info = env.step(BUY * 4 + 0)  # no capital left
    assert info["invalid_action"] and info["invalid_actions"] == 1
    assert info["position"] == 1.0  # the target is unchanged (HOLD)
    change = (info["equity"] - equity_before) / 100_000.0
    if policy == "penalise":
        assert info["reward_components"]["invalid_action"] == pytest.approx(-0.001)
        assert reward == pytest.approx(change - 0.001)
    else:
        assert reward == pytest.approx(change)
        assert "invalid_action" not in info["reward_components"]
    assert terminated == (policy == "terminate")
    assert info["terminated_by"] == ("invalid_action" if policy == "terminate" else None)
    if policy != "terminate":
        _, _, _, _, info = env.step(SELL * 4 + 3)
        assert info["position"] == -1.0 and info["invalid_actions"] == 1


def test_a_given_penalty_weight_is_kept() -> None:
    reward = {"components": ["equity_change", {"name": "invalid_action", "weight": -0.5}]}
    env = TradingEnv(
        _bars(100), window=5, execution=NO_RULES, invalid_action="penalise", reward=reward
    )
    env.reset(seed=0, options={"start": int(env.start_points[0])})
    env.step(SELL * 4 + 3)
    _, _, _, _, info = env.step(SELL * 4 + 3)
    assert info["reward_components"]["invalid_action"] == -0.5


def test_starts_from_a_list_a_sampler_and_options() -> None:
    bars = _bars(100)
    env = TradingEnv(bars, window=5, execution=NO_RULES, start=[20, 30])
    seen = set()
    for seed in range(12):
        env.reset(seed=seed)
        seen.add(env.episode_start)
    assert seen == {20, 30}
    env.reset(options={"start": 44})
    assert env.episode_start == 44

    class Last:
        def sample(self, rng: np.random.Generator) -> int:
            return int(env.start_points[-1]) - int(rng.integers(2))

    env = TradingEnv(bars, window=5, execution=NO_RULES, start=Last())
    env.reset(seed=0)
    assert env.episode_start in (env.start_points[-1], env.start_points[-2])
    assert env.start_points[0] == env._obs.first_valid
    assert env.start_points[-1] == len(bars) - 2  # latency 1: one bar left to fill in
    for bad in (-1, 3, len(bars)):
        with pytest.raises(ConfigError, match="start") as err:
            TradingEnv(bars, window=5, execution=NO_RULES, start=[bad])
        assert err.value.param == "start"
    with pytest.raises(ConfigError, match="start"):
        env.reset(options={"start": len(bars) - 1})


def test_gymnasium_make_builds_it_after_import() -> None:
    env = gymnasium.make(moola.rl.ENV_ID, bars=_bars(80), window=5, execution=NO_RULES)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert isinstance(env.unwrapped, TradingEnv)
    env.close()


def test_the_default_execution_halts_on_breach() -> None:
    env = TradingEnv(_bars(80), window=5)
    assert env.execution.engine == "event" and env.execution.on_breach == "halt"
    assert env.execution.rules  # the FTMO rules
    flatten = TradingEnv(_bars(80), window=5, execution={"on_breach": "flatten"})
    assert flatten.execution.on_breach == "flatten"
    recorded = TradingEnv(_bars(80), window=5, execution=ExecutionConfig(**COSTS))
    assert recorded.execution.on_breach == "halt"
    assert recorded.execution.spread == 0.01


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"action_space": "discrete_12"}, "action_space"),
        ({"window": 500}, "window"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_loss": 1.5}, "max_loss"),
        ({"invalid_action": "ignore"}, "invalid_action"),
        ({"start": "middle"}, "start"),
        ({"execution": 0.5}, "execution"),
    ],
)
def test_bad_arguments_raise_config_errors_naming_them(kwargs, param) -> None:
    with pytest.raises(ConfigError) as err:
        TradingEnv(_bars(100), **kwargs)
    assert err.value.param == param
    assert param in str(err.value) or str(next(iter(kwargs.values()))) in str(err.value)


def test_bad_bars_raise_config_errors_naming_them() -> None:
    bars = _bars(100)
    with pytest.raises(ConfigError, match="volume") as err:
        TradingEnv(bars.drop(columns=["volume"]), window=5)
    assert err.value.param == "bars"
    with pytest.raises(ConfigError, match="timestamp"):
        TradingEnv(bars.drop(columns=["timestamp"]), window=5)
    holed = bars.copy()
    holed.loc[60, "volume"] = np.nan  # a NaN feature past the warm-up
    with pytest.raises(ConfigError, match="bar 60") as err:
        TradingEnv(holed, window=5)
    assert err.value.param == "features"
    two = pd.concat([bars, bars.assign(symbol="OTHER")], ignore_index=True)
    with pytest.raises(ConfigError, match="symbol") as err:
        TradingEnv(two, window=5)
    assert err.value.param == "symbol"
    env = TradingEnv(two, window=5, symbol="OTHER", execution=NO_RULES)
    assert len(env.bars) == len(bars) and env.symbol == "OTHER"


def test_info_carries_every_documented_key_at_reset_and_each_step() -> None:
    keys = {
        "equity",
        "position",
        "bar",
        "timestamp",
        "reward_components",
        "invalid_action",
        "invalid_actions",
        "costs",
        "terminated_by",
    }
    env = TradingEnv(_bars(80), window=5, execution={**COSTS, "rules": []}, start="first")
    _, info = env.reset()
    assert set(info) == keys and info["costs"] == 0.0
    _, reward, _, _, info = env.step(BUY * 4 + 3)  # fills at the next bar's open
    assert set(info) == keys
    fill = env.broker.result().fills.iloc[0]
    paid = abs(fill["qty"]) * (fill["price"] - env.bars["open"].iloc[info["bar"]]) + fill["fee"]
    assert info["costs"] == pytest.approx(paid) and paid > fill["fee"] > 0.0
    assert reward == pytest.approx(sum(info["reward_components"].values()))
    _, _, _, _, info = env.step(HOLD)
    assert info["costs"] == 0.0


def test_an_evaluation_env_takes_the_training_envs_scaler() -> None:
    bars = _bars(300)
    train = TradingEnv(bars, window=5, execution=NO_RULES, train_rows=np.arange(150))
    evaluation = TradingEnv(bars, window=5, execution=NO_RULES, scaler=train.scaler)
    assert evaluation.scaler is train.scaler
    everything = TradingEnv(bars, window=5, execution=NO_RULES)
    obs_train, _ = train.reset(options={"start": 200})
    obs_eval, _ = evaluation.reset(options={"start": 200})
    obs_all, _ = everything.reset(options={"start": 200})
    np.testing.assert_array_equal(obs_train["window"], obs_eval["window"])
    assert not np.array_equal(obs_train["window"], obs_all["window"])  # other statistics
