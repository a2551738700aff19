"""Reinforcement learning on the simulation core: a Gymnasium trading environment whose
return *is* its backtest, composable rewards, Stable-Baselines3 agents and a curriculum.

The environment steps ``moola.sim.Broker`` (the same accounting, costs, latency and
prop-firm rule objects as ``moola.backtest.run``), so an episode's executed targets,
replayed through ``moola.backtest.run``, give the same equity at every step.

Needs the ``rl`` extra (``pip install 'moola[rl]'``: Gymnasium, Stable-Baselines3,
sb3-contrib). Importing this package registers ``moola/Trading-v0`` with Gymnasium, so
``gymnasium.make("moola.rl:moola/Trading-v0", bars=...)`` works without importing it first.
"""

from __future__ import annotations

try:
    import gymnasium
except ImportError as exc:  # pragma: no cover - the extra is installed by `make test`
    raise ImportError(
        "moola.rl needs the 'rl' extra (Gymnasium, Stable-Baselines3, sb3-contrib): "
        "pip install 'moola[rl]'"
    ) from exc

import importlib
from typing import Any

ENV_ID = "moola/Trading-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="moola.rl.env:TradingEnv")

#: Public name -> the module of this package that defines it. Imported on first use, so
#: ``import moola.rl`` does not load Stable-Baselines3 and PyTorch until an agent is asked for.
_HOMES: dict[str, str] = {
    "TradingEnv": "env",
    "StartSampler": "env",
    "VecTradingEnv": "vec_env",
    "ACTION_SPACES": "spaces",
    "action_codec": "spaces",
    "ObservationSource": "observations",
    "portfolio_state": "observations",
    "COMPONENTS": "rewards",
    "Reward": "rewards",
    "RewardSpec": "rewards",
    "StepOutcome": "rewards",
    "momentum_index": "scanner",
    "Curriculum": "curriculum",
    "ALGOS": "agents",
    "make_agent": "agents",
    "load_agent": "agents",
    "continue_training": "agents",
    "MultiTimescaleExtractor": "extractors",
    "TopKCheckpoints": "callbacks",
    "TrainingProgress": "callbacks",
    "evaluate_policy": "evaluate",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'moola.rl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"moola.rl.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


__all__ = ["ENV_ID", *_HOMES]
