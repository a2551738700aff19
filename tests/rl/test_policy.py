"""A trained agent acting live (issue 18): the observation built bar by bar is the training
environment's observation of the same bar (window and portfolio), no bar after ``t``
changes what the policy does at ``t``, and acting is deterministic, through weights loaded
without pickles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry
from moola.rl.agents import agent_build, make_agent
from moola.rl.env import TradingEnv
from moola.rl.observations import ObservationSource, StepObservations
from moola.rl.policy import POLICY_FORMAT, LivePolicy, up_probability
from tests.conftest import random_walk_bars

SPEC = FeatureSetSpec(
    name="small",
    features=[
        FeatureSpecEntry(name="sma", params={"period": 5}),
        FeatureSpecEntry(name="rsi", params={"period": 3}),
        FeatureSpecEntry(name="relative"),
    ],
)
EXECUTION = {"spread": 0.01, "commission": 0.0005, "latency_bars": 2}
WINDOW = 8


def _bars(n: int = 300, seed: int = 1) -> pd.DataFrame:
    return random_walk_bars(n, timeframe="60m", seed=seed).reset_index(drop=True)


def _env(bars, action_space="target", **kwargs):
    return TradingEnv(bars, features=SPEC, window=WINDOW, execution=EXECUTION,
                      action_space=action_space, start="first", **kwargs)  # fmt: skip


def _record(env, algo="ppo", agent=None):
    return {
        "format": POLICY_FORMAT,
        "algo": algo,
        "agent": None if agent is None else agent_build(agent),
        "action_space": env.codec.name,
        "allow_short": env.codec.low < 0,
        "invalid_action": "mask",
        "symbol": env.symbol,
        "timeframe": str(env.bars["timeframe"].iloc[0]),
        "observation": {
            "window": env.window,
            "columns": list(env.observation_columns),
            "feature_set": SPEC.model_dump(mode="json"),
            "timescales": env.timescales,
            "scalings": {key: scaler.to_dict() for key, scaler in env.scalers.items()},
        },
        "execution": env.execution.model_dump(mode="json"),
    }


class Contrarian:
    """A scripted agent: short after a rising close, long after a falling one, flat in
    between (its actions depend on the window, so the book trades both ways)."""

    def __init__(self, column: int, space: str) -> None:
        self.column, self.space = column, space

    def predict(self, observation, deterministic=False, action_masks=None):
        assert deterministic
        move = float(observation["window"][-1, self.column])
        if self.space == "continuous":
            return np.array([np.clip(-move, -1.0, 1.0)], dtype=np.float32), None
        if self.space == "discrete12":  # HOLD 0, BUY 25/50/75/100 1-4, SELL 5-8 ...
            choice = 0 if abs(move) < 0.3 else (4 if move < 0 else 8)
            if action_masks is not None and not action_masks[choice]:
                choice = 0
            return np.int64(choice), None
        return np.int64(0 if move > 0.3 else 2 if move < -0.3 else 1), None


def _episode(env, model, start=None):
    """The env's greedy episode (from ``start``, default the first bar it can start at):
    (observations, targets) per step."""
    obs, _ = env.reset(seed=0, options=None if start is None else {"start": start})
    observations, targets, done = [obs], [], False
    while not done:
        masks = env.action_masks() if env.codec.name == "discrete12" else None
        action, _ = model.predict(obs, deterministic=True, action_masks=masks)
        obs, _, terminated, truncated, info = env.step(action)
        targets.append(info["position"])
        observations.append(obs)
        done = terminated or truncated
    return observations[:-1], targets


def _live(policy, bars):
    return [policy.update(bar) for bar in bars.to_dict("records")]


def test_step_observations_equal_the_batch_windows():
    bars = _bars()
    batch = ObservationSource(bars, features=SPEC, window=WINDOW)
    step = StepObservations(SPEC, WINDOW, batch.scaler)
    for t, bar in enumerate(bars.to_dict("records")):
        window = step.update(bar)
        if t < batch.first_valid:
            assert window is None
        else:
            np.testing.assert_allclose(window, batch.window_at(t), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("space", "timescales"),
    [
        ("target", None),
        ("discrete12", None),
        ("continuous", None),
        ("target", {"4h": 3, "1d": 2}),
    ],
    ids=["target", "discrete12", "continuous", "target-4h-1d"],
)
def test_the_live_policy_sees_and_does_what_the_environment_does(space, timescales):
    """Bar for bar, the live observation (window, each coarser timescale's window and the
    policy's own book) is the environment's, and the targets decided are the episode's,
    with costs and latency 2."""
    bars = _bars()
    env = _env(bars, action_space=space, **({"timescales": timescales} if timescales else {}))
    column = list(env.observation_columns).index("rel_close")
    model = Contrarian(column, space)
    algo = "maskable_ppo" if space == "discrete12" else "ppo"
    policy = LivePolicy(model, _record(env, algo=algo))
    steps = [s for s in _live(policy, bars) if s is not None]
    start = env.episode_start if env.episode_start >= 0 else int(env.start_points[0])
    assert steps[0].time == bars["timestamp"].iloc[start]
    assert len(steps) == len(bars) - start
    # Episode after episode (a loss limit or the profit target ends one; the policy's book
    # starts afresh at that bar, as a new episode starting there does).
    k, episodes = 0, 0
    while start < len(bars) - 1 - env.execution.latency_bars:
        expected_obs, expected_targets = _episode(env, model, start)
        for obs, target in zip(expected_obs, expected_targets, strict=True):
            step = steps[k]
            assert set(step.observation) == set(obs)
            for key in obs.keys() - {"portfolio"}:
                np.testing.assert_allclose(step.observation[key], obs[key], rtol=1e-6)
            np.testing.assert_allclose(step.observation["portfolio"], obs["portfolio"],
                                       rtol=1e-5, atol=1e-7)  # fmt: skip
            assert step.target == target
            k += 1
        start += len(expected_targets)
        episodes += 1
    assert k >= len(steps) - env.execution.latency_bars - 1
    assert policy.books == episodes
    assert len({s.target for s in steps}) >= 2  # it traded


def test_bars_after_t_change_nothing_at_t():
    bars = _bars(200)
    env = _env(bars)
    model = Contrarian(list(env.observation_columns).index("rel_close"), "target")
    record = _record(env)
    t = 120
    altered = bars.copy()
    rng = np.random.default_rng(7)
    later = altered.index > t
    scale = np.exp(rng.normal(0, 0.05, later.sum()))
    for column in ("open", "high", "low", "close"):
        altered.loc[later, column] = altered.loc[later, column] * scale
    altered.loc[later, "volume"] = altered.loc[later, "volume"][::-1].to_numpy()
    original = _live(LivePolicy(model, record), bars)
    changed = _live(LivePolicy(model, record), altered)
    for a, b in zip(original[: t + 1], changed[: t + 1], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.target == b.target and a.probability == b.probability
            np.testing.assert_array_equal(a.observation["window"], b.observation["window"])
            np.testing.assert_array_equal(a.observation["portfolio"], b.observation["portfolio"])
    assert any(
        a is not None and not np.array_equal(a.observation["window"], b.observation["window"])
        for a, b in zip(original[t + 1 :], changed[t + 1 :], strict=True)
    )  # the alteration was visible afterwards


def test_a_saved_agent_loads_without_pickles_and_acts_deterministically(tmp_path):
    bars = _bars(200)
    env = _env(bars, action_space="discrete12")
    agent = make_agent("maskable_ppo", env, seed=3, n_steps=32, batch_size=32, n_epochs=1)
    agent.learn(64)
    path = tmp_path / "model.zip"
    agent.save(path)
    record = _record(env, algo="maskable_ppo", agent=agent)
    first = LivePolicy.from_record(record, path)
    second = first.fresh()
    a = [s.action.item() for s in _live(first, bars) if s is not None]
    b = [s.action.item() for s in _live(second, bars) if s is not None]
    assert a == b and len(a) == len(bars) - env.episode_start
    # The loaded agent's actions are the trained agent's (the same weights).
    expected_obs, _ = _episode(env, agent)
    steps = [s for s in _live(LivePolicy.from_record(record, path), bars) if s is not None]
    for obs, step in zip(expected_obs[:50], steps[:50], strict=True):
        action, _ = agent.predict(obs, deterministic=True, action_masks=env.codec.masks(
            float(obs["portfolio"][0])))  # fmt: skip
        assert int(action) == int(step.action)


def test_target_maps_to_an_up_probability():
    assert up_probability(1.0) == 1.0 and up_probability(0.0) == 0.5
    assert up_probability(-1.0) == 0.0 and up_probability(0.25) == 0.625
    assert up_probability(0.5, high=0.5) == 1.0


def test_what_cannot_run_live_is_refused_naming_it():
    env = _env(_bars(120))
    record = _record(env)
    scalings = {**record["observation"]["scalings"]}
    scalings["window_4h"] = scalings["window"]
    observation = {**record["observation"], "timescales": {"4h": 6}, "scalings": scalings}
    coarse = {**record, "observation": observation}
    LivePolicy.check_record(coarse)  # the record's 60m bars tell when a 4h bar closes
    with pytest.raises(ConfigError, match="names no bar timeframe") as err:
        LivePolicy.check_record({**coarse, "timeframe": None})
    assert err.value.param == "timeframe"
    LivePolicy.check_record({**coarse, "timeframe": None}, timeframe="60m")  # the session's
    unscaled = {**coarse["observation"], "scalings": {"window": {}}}
    with pytest.raises(ConfigError, match="no scaler for timescale '4h'"):
        LivePolicy.check_record({**coarse, "observation": unscaled})
    with pytest.raises(ConfigError, match="'4h' is not coarser") as err:
        LivePolicy.check_record({**coarse, "timeframe": "4h"})
    assert err.value.param == "timescales"
    per_bar = {**record, "execution": {**record["execution"], "spread": [0.01, 0.03, 0.02]}}
    with pytest.raises(ConfigError, match=r"per-bar spreads \(3 values, median 0.02") as err:
        LivePolicy.check_record(per_bar)
    assert err.value.param == "execution.spread"
    with pytest.raises(ConfigError, match="format"):
        LivePolicy.check_record({**record, "format": 99})
    policy = LivePolicy(Contrarian(0, "target"), record)
    bar = _bars(3).to_dict("records")
    policy.update(bar[1])
    with pytest.raises(ConfigError, match="not after"):
        policy.update(bar[0])
