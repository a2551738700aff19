"""MultiTimescaleExtractor: one branch per window key, portfolio/static MLPs, fused."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

from moola.core.errors import ConfigError
from moola.rl.extractors import MultiTimescaleExtractor
from tests.rl.toy_envs import ToyMarketEnv, momentum_returns


def _space(**extra):
    env = ToyMarketEnv(momentum_returns(300, seed=0), window=6, **extra)
    return env, env.observation_space


def _batch(env, n=5):
    obs = [env.reset(seed=i)[0] for i in range(n)]
    return {k: torch.as_tensor(np.stack([o[k] for o in obs])) for k in obs[0]}


@pytest.mark.parametrize("kind", ["lstm", "transformer", "mlp"])
def test_each_branch_kind_gives_features_dim(kind):
    env, space = _space(extra_windows={"1m": 3, "1d": 2}, static=True)
    ex = MultiTimescaleExtractor(space, features_dim=24, branches=kind, hidden=8)
    out = ex(_batch(env))
    assert out.shape == (5, 24)
    assert ex.features_dim == 24
    assert set(ex.window_keys) == {"window", "window_1m", "window_1d"}
    assert ex.vector_keys == ("portfolio", "static")
    assert torch.isfinite(out).all()


def test_branches_chosen_per_window_key():
    env, space = _space(extra_windows={"1m": 3, "1d": 2})
    ex = MultiTimescaleExtractor(
        space, branches={"window": "transformer", "window_1m": "mlp"}, default_branch="lstm"
    )
    assert ex.kinds == {"window": "transformer", "window_1m": "mlp", "window_1d": "lstm"}
    assert ex(_batch(env)).shape == (5, 64)


def test_every_window_and_the_portfolio_reach_the_output():
    env, space = _space(extra_windows={"1d": 3})
    torch.manual_seed(0)
    ex = MultiTimescaleExtractor(space, features_dim=16, branches="transformer", hidden=8)
    batch = _batch(env, n=2)
    base = ex(batch)
    for key in batch:
        changed = {k: v.clone() for k, v in batch.items()}
        changed[key] = changed[key] + 1.0
        assert not torch.allclose(ex(changed), base), key


def test_a_one_dimensional_window_is_read_as_one_feature():
    space = gymnasium.spaces.Dict(
        {
            "window": gymnasium.spaces.Box(-1, 1, (7,), np.float32),
            "portfolio": gymnasium.spaces.Box(-1, 1, (3,), np.float32),
        }
    )
    ex = MultiTimescaleExtractor(space, features_dim=8)
    out = ex({"window": torch.zeros(4, 7), "portfolio": torch.zeros(4, 3)})
    assert out.shape == (4, 8)


def test_bad_spaces_and_kinds_are_refused_naming_the_parameter():
    _, space = _space()
    with pytest.raises(ConfigError, match="lstm, transformer, mlp") as err:
        MultiTimescaleExtractor(space, branches="gru")
    assert err.value.param == "branches"
    with pytest.raises(ConfigError, match="window_9") as err:
        MultiTimescaleExtractor(space, branches={"window_9": "mlp"})
    assert err.value.param == "branches"
    with pytest.raises(ConfigError) as err:
        MultiTimescaleExtractor(space, branches={}, default_branch="cnn")
    assert err.value.param == "default_branch"
    with pytest.raises(ConfigError, match="heads"):
        MultiTimescaleExtractor(space, branches="transformer", hidden=9, heads=2)
    odd = gymnasium.spaces.Dict(
        {
            "prices": gymnasium.spaces.Box(-1, 1, (4, 1)),
            "portfolio": gymnasium.spaces.Box(-1, 1, (2,)),
        }
    )
    with pytest.raises(ConfigError, match="prices") as err:
        MultiTimescaleExtractor(odd)
    assert err.value.param == "observation_space"
    with pytest.raises(ConfigError, match="Dict"):
        MultiTimescaleExtractor(gymnasium.spaces.Box(-1, 1, (4,)))
