"""make_agent builds seeded SB3 agents; load_agent and continue_training handle versions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_vec_env

from moola.core.errors import CheckpointError, ConfigError
from moola.rl.agents import ALGOS, continue_training, latest_version, load_agent, make_agent
from moola.rl.callbacks import TopKCheckpoints, read_index
from moola.rl.extractors import MultiTimescaleExtractor
from tests.rl.toy_envs import ToyMarketEnv, momentum_returns

RETURNS = momentum_returns(300, seed=0)


def _env(**kw):
    return ToyMarketEnv(RETURNS, cost=0.0005, episode_length=16, **kw)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.policy.parameters()])


@pytest.mark.parametrize("algo", ALGOS)
def test_each_algo_builds_on_cpu_and_one_seed_gives_one_result(algo):
    kw = {"masked": True} if algo == "maskable_ppo" else {}
    runs = []
    for _ in range(2):
        model = make_agent(algo, _env(**kw), seed=3, n_steps=16)
        model.learn(32)
        runs.append(_params(model))
    assert type(model) is {"ppo": PPO, "maskable_ppo": MaskablePPO, "a2c": A2C}[algo]
    assert model.device.type == "cpu"
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    seeded = [_params(make_agent(algo, _env(**kw), seed=s)) for s in (3, 3, 4)]
    assert torch.equal(seeded[0], seeded[1]) and not torch.equal(seeded[0], seeded[2])


def test_a2c_steps_several_envs_together():
    venv = make_vec_env(lambda: _env(), n_envs=3, seed=0)
    model = make_agent("a2c", venv, seed=0)
    model.learn(60)
    assert model.n_envs == 3 and model.n_steps == 5
    assert model.num_timesteps >= 60


def test_maskable_ppo_never_takes_a_masked_action():
    env = _env(masked=True)
    model = make_agent("maskable_ppo", env, seed=0, n_steps=32)
    model.learn(64)
    obs, _ = env.reset(seed=0)
    for _ in range(16):
        masks = env.action_masks()
        action, _ = model.predict(obs, deterministic=False, action_masks=masks)
        assert masks[int(action)]
        obs, *_ = env.step(action)
    assert env.invalid == 0


def test_multi_timescale_extractor_trains_inside_ppo():
    env = _env(extra_windows={"1m": 3}, static=True)
    model = make_agent(
        "ppo", env, seed=0, n_steps=16, extractor="multi_timescale",
        extractor_kwargs={"features_dim": 16, "branches": {"window": "transformer"}, "hidden": 8},
    )  # fmt: skip
    assert isinstance(model.policy.features_extractor, MultiTimescaleExtractor)
    assert model.policy.features_extractor.kinds == {"window": "transformer", "window_1m": "lstm"}
    model.learn(32)


def test_bad_choices_are_refused_naming_the_parameter():
    with pytest.raises(ConfigError, match="ppo, maskable_ppo, a2c") as err:
        make_agent("dqn", _env(), seed=0)
    assert err.value.param == "algo"
    with pytest.raises(ConfigError, match="maskable_ppo") as err:
        make_agent("maskable_ppo", _env(action="continuous"), seed=0)
    assert err.value.param == "algo"
    with pytest.raises(ConfigError, match="gamma") as err:
        make_agent("ppo", _env(), seed=0, gamme=0.9)
    assert err.value.param == "hyper"
    with pytest.raises(ConfigError) as err:
        make_agent("ppo", _env(), seed=0, extractor="cnn")
    assert err.value.param == "extractor"
    with pytest.raises(ConfigError) as err:
        make_agent("ppo", _env(), seed=0, device="tpu")
    assert err.value.param == "device"


def _first_version(root):
    model = make_agent("ppo", _env(), seed=0, n_steps=16, batch_size=16, n_epochs=1,
                       learning_rate=1e-3)  # fmt: skip
    model.learn(48, callback=TopKCheckpoints(root / "v1", _env(), eval_freq=16, version=1))
    return model


def test_continue_training_anneals_the_rate_into_a_new_version(tmp_path):
    _first_version(tmp_path)
    best = read_index(tmp_path / "v1")["best"]
    model = continue_training(tmp_path, _env(), timesteps=32, version=2, eval_env=_env(),
                              eval_freq=16, lr_final_fraction=0.1)  # fmt: skip
    assert latest_version(tmp_path) == 2
    index = read_index(tmp_path / "v2")
    assert index["version"] == 2
    assert [e["step"] for e in index["evaluations"]] == [best["step"] + 16, best["step"] + 32]
    assert model.num_timesteps == best["step"] + 32
    # the rate went from the loaded 1e-3 down towards 1e-4 over the new steps
    assert model.lr_schedule(model._current_progress_remaining) == pytest.approx(1e-4)
    assert model.lr_schedule(32 / (best["step"] + 32)) == pytest.approx(1e-3)
    assert model.policy.optimizer.param_groups[0]["lr"] < 1e-3
    meta = json.loads((tmp_path / "v2" / index["best"]["metadata"]).read_text())
    assert meta["version"] == 2
    assert meta["config"]["continued_from"]["version"] == 1
    assert meta["config"]["continued_from"]["step"] == best["step"]
    with pytest.raises(ConfigError, match="write-once") as err:
        continue_training(tmp_path, _env(), timesteps=16, version=2, eval_env=_env())
    assert err.value.param == "version"


def test_continue_training_refuses_other_shapes_and_missing_versions(tmp_path):
    with pytest.raises(CheckpointError, match="no version below v2"):
        continue_training(tmp_path, _env(), timesteps=16, version=2, eval_env=_env())
    _first_version(tmp_path)
    wider = ToyMarketEnv(RETURNS, window=6, episode_length=16)
    with pytest.raises(CheckpointError, match="observation") as err:
        continue_training(tmp_path, wider, timesteps=16, version=2, eval_env=wider)
    assert err.value.param == "path"
    assert not (tmp_path / "v2").exists()  # nothing written
    with pytest.raises(ConfigError) as err:
        continue_training(tmp_path, _env(), timesteps=16, version=1, eval_env=_env())
    assert err.value.param == "version"
    assert np.isfinite(read_index(tmp_path / "v1")["best"]["reward"])
    assert isinstance(load_agent(tmp_path, _env()), PPO)


def test_on_the_trading_envs_maskable_ppo_never_takes_an_invalid_action():
    from moola.rl.env import TradingEnv
    from moola.rl.evaluate import evaluate_policy
    from moola.rl.vec_env import VecTradingEnv
    from tests.rl.toy_envs import synthetic_bars

    kw = {"window": 4, "execution": {"commission": 0.0002, "rules": "none"}, "max_steps": 30}
    bars = synthetic_bars()
    model = make_agent("maskable_ppo", VecTradingEnv(bars, 2, **kw), seed=0, n_steps=16)
    model.learn(64)
    env = TradingEnv(bars, **kw)
    result = evaluate_policy(model, env, n_episodes=3, deterministic=False, baselines=False)
    assert sum(result.policy.actions.values()) == 90
    assert result.policy.invalid_actions == 0
    # the same stochastic choices without masks do take invalid actions (long when long)
    ppo = make_agent("ppo", TradingEnv(bars, **kw), seed=0)
    unmasked = evaluate_policy(ppo, env, n_episodes=3, deterministic=False, baselines=False)
    assert unmasked.policy.invalid_actions > 0
    a2c = make_agent("a2c", VecTradingEnv(bars, 2, action_space="target", **kw), seed=0)
    a2c.learn(20)
    assert a2c.num_timesteps == 20
