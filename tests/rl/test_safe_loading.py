"""No code runs from an RL model file (the rule of tests/test_no_code_from_data.py).

A Stable-Baselines3 zip keeps some attributes as base64 cloudpickles that ``PPO.load``
unpickles; a crafted one runs its author's command. ``load_agent`` reads only the weights
(``torch.load(weights_only=True)``) and the step count into an agent rebuilt from the
``make_agent`` arguments saved beside the model, so the crafted entries are never read."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import pickle
import shlex
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from moola.core.errors import CheckpointError
from moola.rl.agents import agent_build, load_agent, make_agent
from tests.rl.toy_envs import ToyMarketEnv, momentum_returns


class _RunsCode:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.sentinel)}",))


def _env(n: int = 300) -> ToyMarketEnv:
    return ToyMarketEnv(momentum_returns(n, seed=0), cost=0.0005, episode_length=16)


def _saved(tmp_path: Path) -> tuple[Path, PPO]:
    model = make_agent("ppo", _env(), seed=0, n_steps=16, batch_size=16, n_epochs=1)
    model.learn(32)
    path = tmp_path / "model.zip"
    model.save(path)
    return path, model


def _rewrite(path: Path, member: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries[member] = data
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def test_the_crafted_entry_really_runs_code_through_sb3(tmp_path):
    """The control: SB3's own loader runs the crafted pickle."""
    path, _ = _saved(tmp_path)
    sentinel = tmp_path / "PWNED"
    data = json.loads(zipfile.ZipFile(path).read("data"))
    payload = base64.b64encode(pickle.dumps(_RunsCode(sentinel))).decode()
    data["lr_schedule"] = {":type:": "<class 'function'>", ":serialized:": payload}
    _rewrite(path, "data", json.dumps(data).encode())
    with contextlib.suppress(Exception):  # the payload is no schedule: running it is the point
        PPO.load(path)
    assert sentinel.exists()


def test_load_agent_reads_weights_only_and_never_runs_the_pickles(tmp_path):
    path, model = _saved(tmp_path)
    sentinel = tmp_path / "PWNED"
    data = json.loads(zipfile.ZipFile(path).read("data"))
    payload = base64.b64encode(pickle.dumps(_RunsCode(sentinel))).decode()
    for key, value in data.items():
        if isinstance(value, dict) and ":serialized:" in value:
            data[key] = {**value, ":serialized:": payload}
    _rewrite(path, "data", json.dumps(data).encode())
    loaded = load_agent(path, _env(), build=agent_build(model))
    assert not sentinel.exists()
    # The same network, weights and step count as the saved agent.
    for name, tensor in model.policy.state_dict().items():
        assert torch.equal(tensor, loaded.policy.state_dict()[name])
    assert loaded.num_timesteps == model.num_timesteps
    obs, _ = _env().reset(seed=1)
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )


def test_a_pickle_in_the_weights_is_refused(tmp_path):
    path, model = _saved(tmp_path)
    sentinel = tmp_path / "PWNED"
    buffer = io.BytesIO()
    torch.save({"weights": _RunsCode(sentinel)}, buffer)
    _rewrite(path, "policy.pth", buffer.getvalue())
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_agent(path, _env(), build=agent_build(model))
    assert not sentinel.exists()


def test_without_a_build_record_or_for_another_network_loading_is_refused(tmp_path):
    path, model = _saved(tmp_path)
    with pytest.raises(CheckpointError, match="no record of how") as err:
        load_agent(path, _env())
    assert err.value.param == "build"
    wider = {**agent_build(model), "policy_kwargs": {"net_arch": [8]}}
    with pytest.raises(CheckpointError, match="another network"):
        load_agent(path, _env(), build=wider)
