"""TopKCheckpoints keeps the best k models with metadata; TrainingProgress reports steps."""

from __future__ import annotations

import json

import pytest

from moola.core.errors import CheckpointError, ConfigError
from moola.rl.agents import load_agent, make_agent
from moola.rl.callbacks import TopKCheckpoints, TrainingProgress, read_index
from tests.rl.toy_envs import ToyMarketEnv, momentum_returns


def _env(seed=0):
    return ToyMarketEnv(momentum_returns(300, seed=seed), cost=0.0005, episode_length=16)


def _agent():
    return make_agent("ppo", _env(), seed=0, n_steps=16, batch_size=16, n_epochs=1)


def test_keeps_the_top_k_by_evaluation_return_with_metadata(tmp_path):
    model = _agent()
    seen = []
    cb = TopKCheckpoints(
        tmp_path, _env(seed=1), eval_freq=16, n_episodes=2, k=2,
        config={"algo": "ppo", "window": 4}, data_versions={"train": "toy@v1"}, version=1,
        on_evaluation=lambda step, result: seen.append((step, result.mean_reward)),
    )  # fmt: skip
    model.learn(16 * 6, callback=cb)
    index = read_index(tmp_path)
    evaluations = index["evaluations"]
    assert [e["step"] for e in evaluations] == [16, 32, 48, 64, 80, 96]
    assert [(e["step"], e["reward"]) for e in evaluations] == seen
    ranked = sorted(evaluations, key=lambda e: (-e["reward"], e["step"]))[:2]
    assert [(m["step"], m["reward"]) for m in index["models"]] == [
        (e["step"], e["reward"]) for e in ranked
    ]
    assert index["best"] == index["models"][0]
    files = sorted(p.name for p in tmp_path.iterdir())
    kept = sorted(n for m in index["models"] for n in (m["model"], m["metadata"]))
    assert files == sorted([*kept, "best.json"])  # pushed-out models deleted, no temporaries
    meta = json.loads((tmp_path / index["best"]["metadata"]).read_text())
    assert meta["step"] == index["best"]["step"]
    assert meta["reward"] == index["best"]["reward"]
    assert meta["config"] == {"algo": "ppo", "window": 4}
    assert meta["data_versions"] == {"train": "toy@v1"}
    assert meta["algo"] == "ppo" and meta["version"] == 1
    assert meta["observation_space"]["spaces"]["window"]["shape"] == [4, 1]
    loaded = load_agent(tmp_path, _env())
    assert loaded.num_timesteps == index["best"]["step"]


def test_a_resumed_directory_ranks_new_models_against_the_kept_ones(tmp_path):
    model = _agent()
    model.learn(32, callback=TopKCheckpoints(tmp_path, _env(1), eval_freq=16, k=1))
    first = read_index(tmp_path)["best"]
    model.learn(32, callback=TopKCheckpoints(tmp_path, _env(1), eval_freq=16, k=1),
                reset_num_timesteps=False)  # fmt: skip
    index = read_index(tmp_path)
    assert [e["step"] for e in index["evaluations"]] == [16, 32, 48, 64]
    assert index["best"]["reward"] >= first["reward"]
    assert index["best"]["reward"] == max(e["reward"] for e in index["evaluations"])
    assert len(list(tmp_path.glob("model_*.zip"))) == 1


def test_training_end_is_evaluated_so_a_short_run_keeps_a_model(tmp_path):
    model = _agent()
    model.learn(16, callback=TopKCheckpoints(tmp_path, _env(1), eval_freq=1000))
    assert [m["step"] for m in read_index(tmp_path)["models"]] == [16]


def test_progress_reports_steps_up_to_the_total():
    calls = []
    model = _agent()
    model.learn(48, callback=TrainingProgress(lambda s, t: calls.append((s, t)), every=10))
    assert calls == [(0, 48), (10, 48), (20, 48), (30, 48), (40, 48), (48, 48)]


def test_bad_arguments_and_missing_index_are_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        TopKCheckpoints(tmp_path, _env(), eval_freq=0)
    assert err.value.param == "eval_freq"
    with pytest.raises(ConfigError) as err:
        TrainingProgress(lambda s, t: None, every=0)
    assert err.value.param == "every"
    with pytest.raises(CheckpointError, match=r"best\.json"):
        read_index(tmp_path)
    (tmp_path / "best.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a moola RL checkpoint index"):
        read_index(tmp_path)
