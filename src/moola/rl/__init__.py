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

ENV_ID = "moola/Trading-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="moola.rl.env:TradingEnv")

__all__ = ["ENV_ID"]
