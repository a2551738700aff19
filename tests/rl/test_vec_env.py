"""VecTradingEnv: the compiled n-copy env equals the broker and n single TradingEnvs.

What a user relies on: the equity of every copy is the backtest's (``backtest_positions``,
which the sim tests hold equal to the Broker), and stepping ``VecTradingEnv(n)`` gives the
observations, rewards, dones and infos that ``n`` single ``TradingEnv`` s give under
Stable-Baselines3's ``DummyVecEnv`` on the same seeds and actions: random starts, resets
after every kind of ending, costs, latency, rules, the three action spaces and the
invalid-action policies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from moola.core.errors import ConfigError
from moola.data.schema import make_bars
from moola.rl.env import TradingEnv
from moola.rl.vec_env import VecTradingEnv
from moola.sim import ExecutionConfig, backtest_positions

COSTS = {
    "initial_cash": 10_000.0,
    "spread": 0.02,
    "slippage": 2.0,
    "commission": {"rate": 0.0005, "minimum": 0.5},
}


def _bars(n: int, seed: int = 0, freq: str = "1h", timeframe: str = "1h") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 5e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * (1.0 + rng.normal(0.0, 1e-3, n))
    wiggle = np.abs(rng.normal(0.0, 2e-3, n)) * close
    stamps = pd.date_range("2021-01-04", periods=n, freq=freq, tz="UTC")
    return make_bars(
        stamps,
        open_,
        np.maximum(open_, close) + wiggle,
        np.minimum(open_, close) - wiggle,
        close,
        rng.integers(1, 1_000, n).astype(np.float64),
        symbol="X",
        timeframe=timeframe,
    )


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return _bars(400)


@pytest.mark.parametrize(
    ("latency", "instrument"),
    [(1, "equity"), (2, "equity"), (2, "futures:MES"), (3, "crypto")],
)
def test_equity_equals_the_backtest_of_the_same_targets(
    bars: pd.DataFrame, latency: int, instrument: str
) -> None:
    """Point values, leverage and fractional lots too (MES: 5 per point, 10x; crypto)."""
    execution = {**COSTS, "latency_bars": latency, "rules": "none", "instrument": instrument}
    starts = [20, 100, 250]
    env = VecTradingEnv(bars, 3, window=10, execution=execution, action_space="continuous")
    env.set_options([{"start": s} for s in starts])
    env.reset()
    rng = np.random.default_rng(1)
    steps = 120
    # the targets as the float32 Box actions carry them
    actions = rng.choice([-1.0, -0.5, 0.0, 0.3, 1.0], size=(steps, 3)).astype(np.float32)
    equity = np.full((steps + 1, 3), COSTS["initial_cash"])
    for k in range(steps):
        _, _, dones, infos = env.step(actions[k][:, None])
        assert not dones.any()
        equity[k + 1] = [info["equity"] for info in infos]
    config = ExecutionConfig(**execution)
    for e, s in enumerate(starts):
        # target[j] is decided at episode bar j; the last bar holds the previous one
        target = np.append(actions[:, e], actions[-1, e]).astype(np.float64)
        part = bars.iloc[s : s + steps + 1]
        columns = (part[c].to_numpy() for c in ("open", "high", "low", "close", "volume"))
        sim = backtest_positions(*columns, target, config)
        np.testing.assert_array_equal(equity[:, e], sim.equity)
        assert len(sim.fills) > 10  # the costs were paid many times


def _assert_same(a: object, b: object, where: str) -> None:
    """Equal values, arrays compared element by element (bit for bit)."""
    if isinstance(a, dict) or isinstance(b, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"  # type: ignore[arg-type]
        for key in a:  # type: ignore[union-attr]
            _assert_same(a[key], b[key], f"{where}[{key!r}]")  # type: ignore[index]
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
        assert np.asarray(a).dtype == np.asarray(b).dtype, where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


CASES = [
    # action space, latency, invalid-action policy, copies (one copy takes scalar paths)
    ("discrete12", 1, "mask", 4),
    ("discrete12", 2, "penalise", 4),
    ("discrete12", 2, "terminate", 4),
    ("target", 2, "mask", 4),
    ("continuous", 1, "mask", 4),
    ("discrete12", 2, "penalise", 1),
    ("continuous", 2, "mask", 1),
]


@pytest.mark.parametrize(("space", "latency", "invalid", "n"), CASES)
def test_same_as_single_envs_under_dummy_vec_env(
    bars: pd.DataFrame, space: str, latency: int, invalid: str, n: int
) -> None:
    kwargs = {
        "window": 8,
        "execution": {
            **COSTS,
            "latency_bars": latency,
            "rules": [
                {"rule": "daily_loss_limit", "pct": 0.015, "timezone": "Europe/Prague"},
                {"rule": "total_loss_limit", "pct": 0.1},
                {"rule": "profit_target", "pct": 0.1},
            ],
        },
        "action_space": space,
        "invalid_action": invalid,
        "max_steps": 40,
        "max_loss": 0.01,
        "reward": {
            "components": [
                {"name": "equity_change"},
                {"name": "realised_pnl", "weight": 0.5},
                {"name": "overtrading", "weight": -0.01},
                {"name": "drawdown", "weight": -0.1},
                {"name": "headroom"},
                {"name": "holding_cost"},
            ]
        },
    }
    single = DummyVecEnv([lambda: TradingEnv(bars, **kwargs) for _ in range(n)])
    vec = VecTradingEnv(bars, n, **kwargs)
    assert vec.observation_space == single.observation_space
    assert vec.action_space == single.action_space
    assert vec.observation_columns == single.envs[0].observation_columns
    np.testing.assert_array_equal(vec.start_points, single.envs[0].start_points)
    single.seed(7)
    vec.seed(7)
    _assert_same(vec.reset(), single.reset(), "reset obs")
    _assert_same(vec.reset_infos, single.reset_infos, "reset infos")
    rng = np.random.default_rng(3)
    endings: set[str] = set()
    for k in range(160):
        if space == "continuous":
            actions = rng.uniform(-1.2, 1.2, (n, 1)).astype(np.float32)
            actions[rng.random(n) < 0.05] = np.nan  # invalid
        else:
            actions = rng.integers(0, vec.action_space.n, n)
        masks = vec.action_masks()
        np.testing.assert_array_equal(masks, np.stack(single.env_method("action_masks")))
        obs_v, rew_v, done_v, infos_v = vec.step(actions)
        obs_s, rew_s, done_s, infos_s = single.step(actions)
        _assert_same(obs_v, obs_s, f"step {k} obs")
        _assert_same(rew_v, rew_s, f"step {k} rewards")
        _assert_same(done_v, done_s, f"step {k} dones")
        for e in range(n):
            _assert_same(dict(infos_v[e]), infos_s[e], f"step {k} env {e} info")
            if done_s[e]:
                endings.add(infos_s[e]["terminated_by"] or "max_steps")
    # the endings happened and the copies were reset from them
    assert {"max_loss", "rule:daily_loss_limit"} <= endings, endings
    if n > 1:  # one copy lives through fewer episodes
        assert ("invalid_action" if invalid == "terminate" else "max_steps") in endings


def test_end_of_data_and_rules_end_episodes_like_single_envs() -> None:
    bars = _bars(120, seed=5)
    spread = tuple(np.random.default_rng(9).uniform(0.01, 0.08, len(bars)).tolist())
    kwargs = {
        "window": 5,
        "execution": {
            **COSTS,
            "spread": spread,  # one per bar
            "rules": [{"rule": "daily_loss_limit", "pct": 0.004}],
        },
        "action_space": "target",
    }
    single = DummyVecEnv([lambda: TradingEnv(bars, **kwargs) for _ in range(3)])
    vec = VecTradingEnv(bars, 3, **kwargs)
    single.seed(11)
    vec.seed(11)
    _assert_same(vec.reset(), single.reset(), "reset obs")
    rng = np.random.default_rng(0)
    endings = set()
    for k in range(300):
        actions = rng.integers(0, 3, 3)
        out_v, out_s = vec.step(actions), single.step(actions)
        for part, (a, b) in enumerate(zip(out_v[:3], out_s[:3], strict=True)):
            _assert_same(a, b, f"step {k} part {part}")
        for e in range(3):
            _assert_same(dict(out_v[3][e]), out_s[3][e], f"step {k} env {e} info")
            if out_s[2][e]:
                endings.add(out_s[3][e]["terminated_by"])
    assert {"end_of_data", "rule:daily_loss_limit"} <= endings


def test_default_ftmo_terms_match_single_envs() -> None:
    """No execution given: the FTMO rules (a daily limit on the initial basis, days in
    Europe/Prague; a total limit; a profit target and trading days, which never end one)."""
    bars = _bars(300, seed=2, freq="15min", timeframe="15m")
    kwargs = {"window": 6, "action_space": "continuous", "max_steps": 60}
    single = DummyVecEnv([lambda: TradingEnv(bars, **kwargs) for _ in range(3)])
    vec = VecTradingEnv(bars, 3, **kwargs)
    single.seed(4)
    vec.seed(4)
    _assert_same(vec.reset(), single.reset(), "reset obs")
    rng = np.random.default_rng(8)
    for k in range(150):
        actions = rng.uniform(-1.0, 1.0, (3, 1)).astype(np.float32)
        out_v, out_s = vec.step(actions), single.step(actions)
        for part, (a, b) in enumerate(zip(out_v[:3], out_s[:3], strict=True)):
            _assert_same(a, b, f"step {k} part {part}")
        for e in range(3):
            _assert_same(dict(out_v[3][e]), out_s[3][e], f"step {k} env {e} info")


class _EvenStarts:
    """A StartSampler (as a curriculum is): even bars between 100 and 200."""

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(50, 100)) * 2


@pytest.mark.parametrize("start", [[30, 77, 301], _EvenStarts()], ids=["bars", "sampler"])
def test_chosen_starts_are_drawn_like_single_envs(bars: pd.DataFrame, start: object) -> None:
    kwargs = {"window": 10, "execution": {"rules": "none"}, "start": start, "max_steps": 3}
    single = DummyVecEnv([lambda: TradingEnv(bars, **kwargs) for _ in range(5)])
    vec = VecTradingEnv(bars, 5, **kwargs)
    single.seed(1)
    vec.seed(1)
    vec.reset()
    single.reset()
    for _ in range(7):  # through two resets of every copy
        np.testing.assert_array_equal(
            vec.episode_starts, [env.episode_start for env in single.envs]
        )
        vec.step(np.zeros(5, dtype=np.int64))
        single.step(np.zeros(5, dtype=np.int64))


def test_seeding_is_per_copy_and_leaves_the_global_state_alone(bars: pd.DataFrame) -> None:
    env = VecTradingEnv(bars, 8, window=10, execution={"rules": "none"})
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    env.seed(5)
    env.reset()
    first = env.episode_starts
    env.seed(5)
    env.reset()
    np.testing.assert_array_equal(env.episode_starts, first)
    env.seed(6)
    env.reset()
    assert not np.array_equal(env.episode_starts, first)
    assert len(set(first.tolist())) > 1  # each copy draws its own start
    assert env.seed() == [None] * 8  # fresh entropy per copy, not a global draw
    env.reset()
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_infos_are_read_lazily_but_equal_plain_dicts(bars: pd.DataFrame) -> None:
    env = VecTradingEnv(bars, 2, window=10, execution={"rules": "none"}, max_steps=1)
    env.reset()
    _, _, dones, infos = env.step(np.array([4, 8]))
    assert dones.all()
    assert infos[0].get("episode") is None  # what SB3 asks every info
    assert "terminal_observation" in infos[0]
    assert infos[0]["TimeLimit.truncated"] is True
    plain = infos[1].copy()
    assert type(plain) is dict and plain["terminated_by"] is None
    import copy
    import pickle

    assert type(copy.deepcopy(infos[1])) is dict
    assert pickle.loads(pickle.dumps(infos[1]))["bar"] == plain["bar"]


def test_action_masks_for_maskable_ppo(bars: pd.DataFrame) -> None:
    env = VecTradingEnv(bars, 3, window=10, execution={"rules": "none"})
    env.reset()
    env.step(np.array([7, 11, 0]))  # BUY 100%, SELL 100%, HOLD
    masks = env.action_masks()
    assert masks.shape == (3, 12)
    assert not masks[0, 4:8].any() and masks[0, 8:].all()  # fully long: no BUY
    assert not masks[1, 8:].any() and masks[1, 4:8].all()  # fully short: no SELL
    assert masks[2].all()
    np.testing.assert_array_equal(np.stack(env.env_method("action_masks")), masks)


@pytest.mark.parametrize(
    ("execution", "param"),
    [
        ({"slippage": {"model": "volatility_scaled", "k": 0.1}}, "execution.slippage"),
        ({"rules": [{"rule": "max_position", "units": 5}]}, "execution.rules"),
    ],
)
def test_terms_it_cannot_step_are_refused_naming_them(
    bars: pd.DataFrame, execution: dict, param: str
) -> None:
    with pytest.raises(ConfigError, match="TradingEnv") as err:
        VecTradingEnv(bars, 2, window=10, execution=execution)
    assert err.value.param == param


def test_bad_arguments_name_the_parameter(bars: pd.DataFrame) -> None:
    for kwargs, param in (
        ({"n_envs": 0}, "n_envs"),
        ({"invalid_action": "ignore"}, "invalid_action"),
        ({"start": [3]}, "start"),
        ({"max_steps": 0}, "max_steps"),
        ({"action_space": "box"}, "action_space"),
    ):
        args = {"n_envs": 2, "window": 10, **kwargs}
        with pytest.raises(ConfigError) as err:
            VecTradingEnv(bars, **args)
        assert err.value.param == param


def test_step_before_reset_is_refused(bars: pd.DataFrame) -> None:
    env = VecTradingEnv(bars, 2, window=10, execution={"rules": "none"})
    with pytest.raises(ConfigError, match="reset"):
        env.step(np.array([0, 0]))


def test_ppo_learns_on_it_for_a_few_steps(bars: pd.DataFrame) -> None:
    from sb3_contrib import MaskablePPO

    env = VecTradingEnv(bars, 4, window=8, execution={"rules": "none"}, max_steps=20)
    model = MaskablePPO(
        "MultiInputPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu"
    )
    model.learn(64)
    assert model.num_timesteps == 64
