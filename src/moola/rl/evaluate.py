"""Evaluating a policy on a trading environment, beside flat and buy-and-hold at the same costs.

``evaluate_policy(model_or_fn, env, n_episodes=..., deterministic=...)`` plays whole
episodes on one (not vectorised) environment and records, per episode, what a trader
reads: the total reward, each reward component summed over the episode (from
``info["reward_components"]``), the equity curve, the final equity, the action
distribution and the number of invalid actions. It then plays the *same* episodes (the
same reset seeds, hence the same start bars) with two reference policies through the same
environment, so they pay the same spread, slippage, fees and latency:

- ``flat``: never holds a position;
- ``buy_and_hold``: goes to the largest long target on the first step and keeps it.

The reference policies choose their actions through the environment's action codec (the
object with ``decode(action, position)`` and ``space`` that the env keeps, see
``moola.rl.spaces``): the action whose decoded target is nearest the wanted one.

Stable-Baselines3 has its own ``evaluate_policy``; it returns episode rewards and lengths
only, and knows nothing of equity or reward components, hence this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np

from moola.core.errors import ConfigError

__all__ = ["EpisodeResult", "EvalResult", "PolicyResult", "evaluate_policy"]

#: Bin edges of the action histogram of a continuous (Box) action space.
BOX_BINS = np.linspace(-1.0, 1.0, 9)
Policy = Callable[[Any], Any]


@dataclass(frozen=True)
class EpisodeResult:
    """One evaluation episode.

    ``equity`` is the curve at every episode bar, starting with the equity before the
    first action (when the env tells it) and ending with ``final_equity``; ``start`` is
    the episode's start bar (``info["bar"]`` at reset, when the env gives it);
    ``reward_components`` sums each component over the episode; ``actions`` counts the
    actions taken (by index for discrete spaces, by ``BOX_BINS`` bin for a Box space).
    """

    total_reward: float
    reward_components: dict[str, float]
    equity: np.ndarray
    initial_equity: float
    final_equity: float
    actions: dict[str, int]
    invalid_actions: int
    steps: int
    terminated_by: str | None = None
    start: int | None = None

    @property
    def total_return(self) -> float:
        """Final over initial equity minus 1: the episode's return after all costs."""
        return self.final_equity / self.initial_equity - 1.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready fields (the equity curve as a list)."""
        return {
            "total_reward": self.total_reward,
            "total_return": self.total_return,
            "reward_components": dict(self.reward_components),
            "initial_equity": self.initial_equity,
            "final_equity": self.final_equity,
            "equity": [float(v) for v in self.equity],
            "actions": dict(self.actions),
            "invalid_actions": self.invalid_actions,
            "steps": self.steps,
            "terminated_by": self.terminated_by,
            "start": self.start,
        }


@dataclass(frozen=True)
class PolicyResult:
    """The episodes one policy played, with their means (what checkpoints rank by)."""

    name: str
    episodes: tuple[EpisodeResult, ...]

    @property
    def mean_reward(self) -> float:
        """Mean total reward per episode: the evaluation return checkpoints rank by."""
        return float(np.mean([e.total_reward for e in self.episodes]))

    @property
    def mean_return(self) -> float:
        """Mean after-cost return (final / initial equity - 1) per episode."""
        return float(np.mean([e.total_return for e in self.episodes]))

    @property
    def mean_final_equity(self) -> float:
        return float(np.mean([e.final_equity for e in self.episodes]))

    @property
    def reward_components(self) -> dict[str, float]:
        """Each component's episode sum, averaged over episodes."""
        names = sorted({k for e in self.episodes for k in e.reward_components})
        return {
            k: float(np.mean([e.reward_components.get(k, 0.0) for e in self.episodes]))
            for k in names
        }

    @property
    def actions(self) -> dict[str, int]:
        """Action counts over all episodes."""
        out: dict[str, int] = {}
        for e in self.episodes:
            for k, v in e.actions.items():
                out[k] = out.get(k, 0) + v
        return out

    @property
    def invalid_actions(self) -> int:
        return sum(e.invalid_actions for e in self.episodes)

    def summary(self) -> dict[str, Any]:
        """JSON-ready means and episodes (for a run manifest or report)."""
        return {
            "name": self.name,
            "n_episodes": len(self.episodes),
            "mean_reward": self.mean_reward,
            "mean_return": self.mean_return,
            "mean_final_equity": self.mean_final_equity,
            "reward_components": self.reward_components,
            "actions": self.actions,
            "invalid_actions": self.invalid_actions,
            "episodes": [e.summary() for e in self.episodes],
        }


@dataclass(frozen=True)
class EvalResult:
    """A policy's evaluation and, on the same episodes and costs, flat and buy-and-hold."""

    policy: PolicyResult
    flat: PolicyResult | None = None
    buy_and_hold: PolicyResult | None = None
    deterministic: bool = True
    seeds: tuple[int, ...] = field(default_factory=tuple)

    @property
    def mean_reward(self) -> float:
        return self.policy.mean_reward

    def summary(self) -> dict[str, Any]:
        """JSON-ready form of every policy's results."""
        out: dict[str, Any] = {"deterministic": self.deterministic, "seeds": list(self.seeds)}
        for name in ("policy", "flat", "buy_and_hold"):
            result = getattr(self, name)
            out[name] = None if result is None else result.summary()
        return out


def _codec(env: gymnasium.Env) -> Any | None:
    """The env's action codec: an attribute with ``decode`` and the env's action space."""
    base = env.unwrapped
    for value in vars(base).values():
        if callable(getattr(value, "decode", None)) and getattr(value, "space", None) == (
            base.action_space
        ):
            return value
    return None


def _reference_policy(env: gymnasium.Env, wanted: str) -> Callable[[float], Any]:
    """A function position -> the action whose target is nearest ``wanted`` ("flat" or
    "long": the largest long target)."""
    space = env.action_space
    codec = _codec(env)
    if codec is None:
        if isinstance(space, gymnasium.spaces.Box) and space.shape == (1,):
            goal = 0.0 if wanted == "flat" else float(space.high[0])
            action = np.array([goal], dtype=space.dtype)
            return lambda position: action
        raise ConfigError(
            f"evaluate_policy cannot play {wanted!r} on {type(env.unwrapped).__name__}: its "
            f"action space {space} has no action codec (an attribute with decode(action, "
            "position) and space) to say which action means which position.",
            param="env",
        )
    high = float(getattr(codec, "high", 1.0))
    goal = 0.0 if wanted == "flat" else high
    if isinstance(space, gymnasium.spaces.Box):
        action = np.array([goal], dtype=space.dtype)
        return lambda position: action
    if not isinstance(space, gymnasium.spaces.Discrete):
        raise ConfigError(f"evaluate_policy cannot play {space}.", param="env")
    actions = [int(space.start) + i for i in range(int(space.n))]

    def choose(position: float) -> int:
        best, best_gap = actions[0], math.inf
        for a in actions:
            target, invalid = codec.decode(a, position)
            gap = abs(target - goal)
            if not invalid and gap < best_gap - 1e-12:  # first (HOLD) wins ties
                best, best_gap = a, gap
        return best

    return choose


def _action_key(action: Any, space: gymnasium.spaces.Space) -> str:
    if isinstance(space, gymnasium.spaces.Discrete):
        return str(int(np.asarray(action).reshape(-1)[0]))
    value = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
    if value != value:
        return "nan"
    i = int(np.clip(np.searchsorted(BOX_BINS, value, side="right") - 1, 0, len(BOX_BINS) - 2))
    return f"[{BOX_BINS[i]:+.2f},{BOX_BINS[i + 1]:+.2f}]"


def _play(
    env: gymnasium.Env,
    act: Callable[[Any, dict[str, Any]], Any],
    seed: int,
    max_steps: int | None,
) -> EpisodeResult:
    obs, info = env.reset(seed=seed)
    start = info.get("bar")
    equity: list[float] = []
    if "equity" in info:
        equity.append(float(info["equity"]))
    components: dict[str, float] = {}
    actions: dict[str, int] = {}
    total, steps, invalid, counted = 0.0, 0, 0, None
    position = float(info.get("position", 0.0))
    done = False
    while not done:
        action = act(obs, {**info, "position": position})
        key = _action_key(action, env.action_space)
        actions[key] = actions.get(key, 0) + 1
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        steps += 1
        for name, value in (info.get("reward_components") or {}).items():
            components[name] = components.get(name, 0.0) + float(value)
        if "equity" in info:
            equity.append(float(info["equity"]))
        invalid += bool(info.get("invalid_action", False))
        counted = info.get("invalid_actions", counted)
        position = float(info.get("position", position))
        done = bool(terminated or truncated) or (max_steps is not None and steps >= max_steps)
    curve = getattr(env.unwrapped, "episode_equity", None)
    if curve is not None and len(curve) == steps + 1:
        equity = [float(v) for v in curve]
    if not equity:
        raise ConfigError(
            "evaluate_policy needs info['equity'] from the env's step (the TradingEnv "
            "contract); this env gives none.",
            param="env",
        )
    return EpisodeResult(
        total_reward=total,
        reward_components=components,
        equity=np.asarray(equity, dtype=np.float64),
        initial_equity=equity[0],
        final_equity=equity[-1],
        actions=dict(sorted(actions.items())),
        invalid_actions=int(counted) if counted is not None else invalid,
        steps=steps,
        terminated_by=info.get("terminated_by"),
        start=None if start is None else int(start),
    )


def _model_actor(
    model_or_fn: Any, env: gymnasium.Env, deterministic: bool
) -> Callable[[Any, dict[str, Any]], Any]:
    predict = getattr(model_or_fn, "predict", None)
    if predict is None:
        if not callable(model_or_fn):
            raise ConfigError(
                f"model_or_fn must be a Stable-Baselines3 model (with predict) or a "
                f"callable obs -> action, got {type(model_or_fn).__name__}.",
                param="model_or_fn",
            )
        return lambda obs, info: model_or_fn(obs)
    from sb3_contrib import MaskablePPO

    if isinstance(model_or_fn, MaskablePPO):
        masks = env.get_wrapper_attr("action_masks")
        return lambda obs, info: predict(obs, deterministic=deterministic, action_masks=masks())[0]
    return lambda obs, info: predict(obs, deterministic=deterministic)[0]


def evaluate_policy(
    model_or_fn: Any,
    env: gymnasium.Env,
    *,
    n_episodes: int = 1,
    deterministic: bool = True,
    seed: int = 0,
    baselines: bool = True,
    max_steps: int | None = None,
) -> EvalResult:
    """Play ``n_episodes`` with a model (or a function obs -> action) and the references.

    Parameters
    ----------
    model_or_fn
        A Stable-Baselines3 model (``MaskablePPO`` is given the env's ``action_masks()``)
        or a callable taking one observation and returning an action.
    env : gymnasium.Env
        One trading environment (not a VecEnv); episode ``i`` starts from
        ``env.reset(seed=seed + i)`` for every policy, so all play the same start bars.
    n_episodes : int, default 1
    deterministic : bool, default True
        The model's greedy action (False samples from the policy).
    seed : int, default 0
        Reset seed of the first episode.
    baselines : bool, default True
        Also play ``flat`` and ``buy_and_hold`` (checkpoint callbacks skip them).
    max_steps : int, optional
        Stop an episode after this many steps (the env's own end otherwise).

    Returns
    -------
    EvalResult
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise ConfigError(f"n_episodes must be an integer >= 1, got {n_episodes!r}.",
                          param="n_episodes")  # fmt: skip
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1, got {max_steps!r}.", param="max_steps")
    if not isinstance(env, gymnasium.Env):
        raise ConfigError(
            f"env must be one gymnasium.Env (not a vectorised env), got {type(env).__name__}.",
            param="env",
        )
    seeds = tuple(int(seed) + i for i in range(n_episodes))
    actor = _model_actor(model_or_fn, env, deterministic)
    policy = PolicyResult("policy", tuple(_play(env, actor, s, max_steps) for s in seeds))
    if not baselines:
        return EvalResult(policy, deterministic=deterministic, seeds=seeds)
    results: dict[str, PolicyResult] = {}
    for name, wanted in (("flat", "flat"), ("buy_and_hold", "long")):
        choose = _reference_policy(env, wanted)

        def act(obs: Any, info: Mapping[str, Any], choose: Callable = choose) -> Any:
            return choose(float(info.get("position", 0.0)))

        results[name] = PolicyResult(name, tuple(_play(env, act, s, max_steps) for s in seeds))
    return EvalResult(
        policy,
        flat=results["flat"],
        buy_and_hold=results["buy_and_hold"],
        deterministic=deterministic,
        seeds=seeds,
    )
