"""``moola.rl``'s public names resolve, lazily: importing the package registers the env
with Gymnasium and loads no agent library until an agent is asked for."""

from __future__ import annotations

import subprocess
import sys

import gymnasium

import moola.rl


def test_every_public_name_resolves_to_its_home():
    for name in moola.rl.__all__:
        assert getattr(moola.rl, name) is not None
    from moola.rl.env import TradingEnv

    assert moola.rl.TradingEnv is TradingEnv
    assert moola.rl.ENV_ID in gymnasium.registry


def test_importing_the_package_loads_no_agent_library():
    code = "import sys, moola.rl; print('stable_baselines3' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]
