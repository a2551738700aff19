"""``check_env``: a trading environment keeps the promises its return rests on.

A policy's return in ``moola.rl.TradingEnv`` *is* its backtest, and popular trading
environments break that in known ways: observations that peek at the next bar, rewards
that drift from the account (fees forgotten), global random state that makes runs
irreproducible. This checker runs an environment the way a user does and holds it to
five promises, for each action space it is given (``checks`` picks them, all by default):

``gymnasium``
    ``gymnasium.utils.env_checker.check_env`` (render check skipped) passes, and it warns
    about nothing but infinite space bounds (an observation outside its space, a NaN
    reward or data shared between calls are only warnings there).
``determinism``
    One action sequence (drawn from the action space seeded with ``seed``) is played three
    times: on two environments built alike and again on the first after ``reset(seed=)``.
    Observations, rewards, ``terminated``/``truncated`` and infos must be identical, bit
    for bit: the only randomness is ``self.np_random``.
``causality``
    For several steps ``k`` of that episode (the first, the last and some between), the
    bars after step ``k``'s decision bar ``t`` (``info["bar"]``) are altered (prices and
    volume moved), the environment is rebuilt on them (with the first one's ``scalers``
    or ``scaler`` when ``make_env`` takes one: scaling statistics are the training period's, on
    purpose), reset at the same start (``options={"start": ...}``) and given the same
    actions: the observation at step ``k`` (and the equity in its ``info``) must be
    unchanged. The no-lookahead harness of the features (``check_feature``) applied to
    what the agent sees.
``parity``
    ``episode_backtest()`` (the executed targets replayed through ``moola.backtest.run``)
    gives the environment's equity at every bar of the episode, to ``rtol`` relative: the
    equity in each step's ``info`` and ``episode_equity``; each step's reward equals the
    sum of its ``info["reward_components"]``, and a plain ``equity_change`` component (no
    clip, smoothing or decay in the env's ``reward_spec``) equals its weight times the
    replayed equity change over the initial cash: the reward is the account's PnL.
``masks``
    (discrete spaces) Before each step, ``action_masks()`` forbids exactly the actions the
    action codec's ``decode`` reports invalid at the current position; a forbidden action,
    when taken, is reported invalid in ``info`` and counted in ``invalid_actions``, an
    allowed one is not.

Every failure raises ``AssertionError`` naming the check, the action space, the step and
the values that differ. ``make_env(bars, action_space=space)`` builds the environment
(``TradingEnv`` or a subclass; a Gymnasium wrapper is unwrapped for the attributes).
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import pandas as pd
from gymnasium.utils.env_checker import check_env as gymnasium_check_env

from moola.rl.spaces import ACTION_SPACES, ActionCodec, action_codec

__all__ = ["CHECKS", "check_env"]

#: The checks ``check_env`` runs, in order (module docstring).
CHECKS: tuple[str, ...] = ("gymnasium", "determinism", "causality", "parity", "masks")

MakeEnv = Callable[..., gymnasium.Env]

#: Gymnasium's advice on space bounds (infinite Box limits, an unnormalised action Box):
#: a feature window of z-scores has no finite bound, so these are not findings.
_SPACE_ADVICE = ("This is probably too low", "This is probably too high", "symmetric and normal")


@dataclass
class _Episode:
    """What one play of the action sequence gave: ``observations[k]`` and ``infos[k]``
    before step ``k`` (index 0: from ``reset``), ``masks[k]`` read before step ``k``."""

    observations: list[Any] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminated: list[bool] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)

    @property
    def n_steps(self) -> int:
        return len(self.rewards)


def check_env(
    make_env: MakeEnv,
    bars: pd.DataFrame,
    *,
    spaces: Sequence[str] = ACTION_SPACES,
    seed: int = 0,
    n_steps: int = 64,
    n_causal: int = 5,
    checks: Sequence[str] = CHECKS,
    rtol: float = 1e-9,
) -> None:
    """Raise ``AssertionError`` unless the environment ``make_env`` builds on ``bars``
    keeps the promises of the module docstring, for every action space in ``spaces``.

    Parameters
    ----------
    make_env : callable
        ``make_env(bars, action_space=name)`` -> a ``TradingEnv`` (or a subclass or a
        wrapper of one). When it also takes ``scaler=`` (or ``**kwargs``), the causality
        check passes the first environment's scaler to the rebuilt ones.
    bars : pd.DataFrame
        Canonical bars of one symbol; a few hundred are enough.
    spaces : sequence of str
        Action spaces to check (``moola.rl.spaces.ACTION_SPACES`` by default).
    seed : int
        Seeds ``reset`` and the action sequence.
    n_steps : int
        Steps per episode played (fewer when the episode ends first).
    n_causal : int
        Steps whose observation the causality check proves (first, last and some between).
    checks : sequence of str
        Which of ``CHECKS`` to run.
    rtol : float
        Relative tolerance of the parity check.
    """
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"check_env: unknown check(s) {unknown}; known: {', '.join(CHECKS)}.")
    if n_steps < 1 or n_causal < 1:
        raise ValueError(f"check_env: n_steps={n_steps} and n_causal={n_causal} must be >= 1.")
    for space in spaces:
        _Checker(make_env, bars, space, seed, n_steps, n_causal, rtol).run(tuple(checks))


class _Checker:
    """The checks for one action space (one instance per space)."""

    def __init__(
        self,
        make_env: MakeEnv,
        bars: pd.DataFrame,
        space: str,
        seed: int,
        n_steps: int,
        n_causal: int,
        rtol: float,
    ) -> None:
        self.make_env = make_env
        self.bars = bars
        self.space = space
        self.seed = seed
        self.n_steps = n_steps
        self.n_causal = n_causal
        self.rtol = rtol

    def fail(self, check: str, step: int | None, message: str) -> AssertionError:
        where = f"step {step}" if step is not None else "setup"
        return AssertionError(f"check_env[{check}] space {self.space!r}, {where}: {message}")

    def build(self, bars: pd.DataFrame, **extra: Any) -> gymnasium.Env:
        env = self.make_env(bars, action_space=self.space, **extra)
        if not isinstance(env, gymnasium.Env):
            raise self.fail("setup", None, f"make_env returned {type(env).__name__}, not an Env")
        return env

    def run(self, checks: tuple[str, ...]) -> None:
        if "gymnasium" in checks:
            self.check_gymnasium()
        env = self.build(self.bars)
        actions = _actions(env.action_space, self.seed, self.n_steps)
        first = self.play(env, actions, masks="masks" in checks)
        if "parity" in checks:
            self.check_parity(env, first)
        if "masks" in checks and _codec_of(env, self.space).discrete:
            self.check_masks(env, first, actions)
        if "determinism" in checks:
            self.check_determinism(env, first, actions)
        if "causality" in checks:
            self.check_causality(env, first, actions)
        env.close()

    # ------------------------------------------------------------------ playing

    def play(
        self,
        env: gymnasium.Env,
        actions: list[Any],
        *,
        masks: bool = False,
        start: int | None = None,
        until: int | None = None,
    ) -> _Episode:
        """Reset with ``seed`` (at ``start`` when given) and play ``actions`` (the first
        ``until`` of them) until the episode ends."""
        options = None if start is None else {"start": int(start)}
        obs, info = env.reset(seed=self.seed, options=options)
        episode = _Episode(observations=[copy.deepcopy(obs)], infos=[copy.deepcopy(info)])
        inner = env.unwrapped
        with_masks = masks and _codec_of(env, self.space).discrete
        for action in actions[:until]:
            if with_masks:
                episode.masks.append(np.array(inner.action_masks(), copy=True))
            obs, reward, terminated, truncated, info = env.step(action)
            episode.observations.append(copy.deepcopy(obs))
            episode.infos.append(copy.deepcopy(info))
            episode.rewards.append(reward)
            episode.terminated.append(terminated)
            episode.truncated.append(truncated)
            if terminated or truncated:
                break
        return episode

    # ------------------------------------------------------------------ checks

    def check_gymnasium(self) -> None:
        env = self.build(self.bars).unwrapped
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                gymnasium_check_env(env, skip_render_check=True)
            except Exception as exc:  # any failure is the finding
                raise self.fail(
                    "gymnasium", None, f"gymnasium's env_checker: {type(exc).__name__}: {exc}"
                ) from exc
        found = [
            str(w.message)
            for w in caught
            if not any(advice in str(w.message) for advice in _SPACE_ADVICE)
        ]
        if found:
            raise self.fail("gymnasium", None, f"gymnasium's env_checker warned: {found[0]}")
        env.close()

    def check_determinism(self, env: gymnasium.Env, first: _Episode, actions: list[Any]) -> None:
        twin = self.build(self.bars)
        again = self.play(twin, actions)
        twin.close()
        self._same_episode(first, again, "two environments built alike, reset(seed=)")
        replay = self.play(env, actions)
        self._same_episode(first, replay, "the same environment reset again with the seed")

    def _same_episode(self, a: _Episode, b: _Episode, what: str) -> None:
        check = "determinism"
        if a.n_steps != b.n_steps:
            raise self.fail(
                check,
                min(a.n_steps, b.n_steps),
                f"the episode ended after {a.n_steps} steps, then after {b.n_steps} ({what})",
            )
        for k in range(a.n_steps + 1):
            problem = _difference(a.observations[k], b.observations[k], "observation")
            problem = problem or _difference(a.infos[k], b.infos[k], "info")
            if k < a.n_steps:
                for name, x, y in (
                    ("reward", a.rewards[k], b.rewards[k]),
                    ("terminated", a.terminated[k], b.terminated[k]),
                    ("truncated", a.truncated[k], b.truncated[k]),
                ):
                    problem = problem or _difference(x, y, name)
            if problem:
                raise self.fail(check, k, f"{problem} ({what}: same seed, same actions)")

    def check_causality(self, env: gymnasium.Env, first: _Episode, actions: list[Any]) -> None:
        check = "causality"
        bars_of = [_info_int(info, "bar", self, check, k) for k, info in enumerate(first.infos)]
        start = bars_of[0]
        # steps whose bar has a later bar to alter (the last bar of the data has none)
        open_steps = [k for k, t in enumerate(bars_of) if t < len(self.bars) - 1]
        steps = [open_steps[i] for i in _spread(len(open_steps), self.n_causal)]
        # Every window's statistics (``scalers``: the base and each coarser timescale's)
        # where the env has several, else its one ``scaler``.
        scaler = getattr(env.unwrapped, "scalers", None) or getattr(env.unwrapped, "scaler", None)
        extra = {"scaler": scaler} if scaler is not None and _takes(self.make_env, "scaler") else {}
        rng = np.random.default_rng(self.seed)
        for k in steps:
            t = bars_of[k]
            altered = _alter_after(self.bars, t, rng)
            other = self.build(altered, **extra)
            replay = self.play(other, actions, start=start, until=k)
            other.close()
            if replay.n_steps < k:
                raise self.fail(
                    check,
                    replay.n_steps,
                    f"with the bars after bar {t} altered the episode ended at step "
                    f"{replay.n_steps}, before step {k} (bar {t}): it sees bars after bar {t}",
                )
            problem = _difference(first.observations[k], replay.observations[k], "observation")
            problem = problem or _difference(
                first.infos[k].get("equity"), replay.infos[k].get("equity"), "info['equity']"
            )
            if problem:
                hint = (
                    ""
                    if extra or scaler is None
                    else " (make_env takes no scaler=, so the rebuilt env fitted its scaling "
                    "on the altered bars: let make_env pass scaler= on to the env)"
                )
                raise self.fail(
                    check,
                    k,
                    f"the observation of bar {t} changed when only bars after {t} were "
                    f"altered: {problem} (original vs altered): it looks ahead{hint}",
                )

    def check_parity(self, env: gymnasium.Env, first: _Episode) -> None:
        check = "parity"
        inner = env.unwrapped
        result = inner.episode_backtest()
        replayed = result.equity["equity"].to_numpy(dtype=np.float64)
        recorded = np.asarray(inner.episode_equity, dtype=np.float64)
        reported = np.array(
            [_info_float(info, "equity", self, check, k) for k, info in enumerate(first.infos)]
        )
        # a replay may run past a short episode (a backtest needs latency_bars + 1 bars)
        if recorded.shape != reported.shape or replayed.shape[0] < reported.shape[0]:
            raise self.fail(
                check,
                first.n_steps,
                f"{len(reported)} episode bars were played, episode_equity has "
                f"{recorded.shape[0]} values and episode_backtest() {replayed.shape[0]} bars",
            )
        replayed = replayed[: reported.shape[0]]
        for name, values in (("info['equity']", reported), ("episode_equity", recorded)):
            bad = ~_close(values, replayed, self.rtol)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise self.fail(
                    check,
                    k,
                    f"{name} is {float(values[k])!r} but episode_backtest() gives "
                    f"{float(replayed[k])!r} at "
                    f"episode bar {k} (relative difference "
                    f"{abs(values[k] - replayed[k]) / max(abs(replayed[k]), 1e-300):.3g}, "
                    f"tolerance {self.rtol:g}): the env's account drifts from the broker's",
                )
        weight = _plain_equity_weight(inner)
        for k, (reward, info) in enumerate(zip(first.rewards, first.infos[1:], strict=True)):
            components = info.get("reward_components")
            if not isinstance(components, Mapping):
                raise self.fail(check, k, "info has no 'reward_components' mapping")
            total = math.fsum(float(v) for v in components.values())
            if not _close(np.array([float(reward)]), np.array([total]), self.rtol, atol=1e-12):
                raise self.fail(
                    check,
                    k,
                    f"reward {float(reward)!r} is not the sum {total!r} of its components "
                    f"{dict(components)!r}",
                )
            if weight is None or "equity_change" not in components:
                continue
            # the broker's equity change over this step, per unit of initial cash
            expected = weight * (replayed[k + 1] - replayed[k]) / replayed[0]
            got = float(components["equity_change"])
            slack = 4.0 * self.rtol * abs(weight) * abs(replayed[k + 1]) / abs(replayed[0])
            if not abs(got - expected) <= slack:
                raise self.fail(
                    check,
                    k,
                    f"reward component 'equity_change' is {got!r} but the replayed equity "
                    f"went from {float(replayed[k])!r} to {float(replayed[k + 1])!r}, "
                    f"{float(expected)!r} of the initial cash at weight {weight:g}: the "
                    "reward drifts from the broker's account",
                )

    def check_masks(self, env: gymnasium.Env, first: _Episode, actions: list[Any]) -> None:
        check = "masks"
        codec = _codec_of(env, self.space)
        counted = _info_int(first.infos[0], "invalid_actions", self, check, 0, default=0)
        for k, mask in enumerate(first.masks):
            position = _info_float(first.infos[k], "position", self, check, k)
            if mask.dtype != bool or mask.shape != (codec.n_actions,):
                raise self.fail(
                    check,
                    k,
                    f"action_masks() gave {mask.dtype} {mask.shape}, expected bool "
                    f"({codec.n_actions},)",
                )
            invalid = np.array([codec.decode(a, position)[1] for a in range(codec.n_actions)])
            wrong = np.flatnonzero(mask == invalid)
            if wrong.size:
                a = int(wrong[0])
                said = "allows" if mask[a] else "forbids"
                truth = "invalid" if invalid[a] else "valid"
                raise self.fail(
                    check,
                    k,
                    f"at position {position!r} action_masks() {said} action {a}, which decode "
                    f"reports {truth} (mask {mask.astype(int).tolist()})",
                )
            taken = int(np.asarray(actions[k]).reshape(-1)[0])
            after = first.infos[k + 1]
            flagged = bool(after.get("invalid_action"))
            if flagged != (not mask[taken]):
                raise self.fail(
                    check,
                    k,
                    f"action {taken} was {'forbidden' if not mask[taken] else 'allowed'} by "
                    f"the mask at position {position!r}, but info['invalid_action'] is "
                    f"{after.get('invalid_action')!r}",
                )
            now = _info_int(after, "invalid_actions", self, check, k)
            if now != counted + int(flagged):
                raise self.fail(
                    check,
                    k,
                    f"info['invalid_actions'] went from {counted} to {now} after "
                    f"{'an invalid' if flagged else 'a valid'} action {taken}",
                )
            counted = now


# --------------------------------------------------------------------------- helpers


def _actions(space: gymnasium.spaces.Space, seed: int, n: int) -> list[Any]:
    """``n`` actions drawn from a copy of ``space`` seeded with ``seed``."""
    draw = copy.deepcopy(space)
    draw.seed(seed)
    return [draw.sample() for _ in range(n)]


def _codec_of(env: gymnasium.Env, space: str) -> ActionCodec:
    """The env's action codec (its ``codec``), or the default one of ``space``."""
    inner = env.unwrapped
    for name in ("codec", "action_codec", "_codec"):
        codec = getattr(inner, name, None)
        if isinstance(codec, ActionCodec):
            return codec
    return action_codec(space, allow_short=bool(getattr(inner, "allow_short", True)))


def _plain_equity_weight(env: Any) -> float | None:
    """The weight of the env's ``equity_change`` reward component when it is plain (no
    clip, smoothing or decay: the step's equity change over the initial cash, weighted),
    else None (nothing exact to compare)."""
    spec = getattr(env, "reward_spec", None)
    for component in getattr(spec, "components", None) or ():
        if getattr(component, "name", None) != "equity_change":
            continue
        plain = (
            getattr(component, "clip", None) is None
            and not getattr(component, "smoothing", 0.0)
            and not getattr(component, "decay", 0.0)
        )
        return float(component.weight) if plain else None
    return None


def _takes(func: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread over ``0..n-1`` (first and last included; none when n = 0)."""
    if n == 0:
        return []
    return sorted({round(float(i)) for i in np.linspace(0, n - 1, min(k, n))})


def _alter_after(bars: pd.DataFrame, t: int, rng: np.random.Generator) -> pd.DataFrame:
    """A copy of ``bars`` with every bar after row ``t`` moved: its four prices scaled by
    one random factor (OHLC stays consistent) and its volume changed."""
    out = bars.copy()
    later = out.index[t + 1 :]
    factor = np.exp(rng.normal(0.0, 0.03, len(later)))
    for column in ("open", "high", "low", "close"):
        out.loc[later, column] = out.loc[later, column].to_numpy(dtype=np.float64) * factor
    if "volume" in out.columns:
        volume = out.loc[later, "volume"].to_numpy(dtype=np.float64)
        out.loc[later, "volume"] = volume * rng.uniform(0.5, 2.0, len(later)) + 1.0
    return out


def _info_float(info: Mapping[str, Any], key: str, checker: _Checker, check: str, k: int) -> float:
    if key not in info:
        raise checker.fail(check, k, f"info has no {key!r} (keys {sorted(info)})")
    return float(info[key])


def _info_int(
    info: Mapping[str, Any],
    key: str,
    checker: _Checker,
    check: str,
    k: int,
    default: int | None = None,
) -> int:
    if key not in info:
        if default is not None:
            return default
        raise checker.fail(check, k, f"info has no {key!r} (keys {sorted(info)})")
    return int(info[key])


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float = 0.0) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (a == b) | (np.abs(a - b) <= rtol * np.maximum(np.abs(a), np.abs(b)) + atol)


def _difference(a: Any, b: Any, path: str) -> str | None:
    """Where ``a`` and ``b`` differ (bit for bit; NaN equals NaN), or None."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            return f"{path} is {type(a).__name__} vs {type(b).__name__}"
        if set(a) != set(b):
            return f"{path} has keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for key in a:
            found = _difference(a[key], b[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape or x.dtype != y.dtype:
            return f"{path} is {x.dtype} {x.shape} vs {y.dtype} {y.shape}"
        same = (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind in "fc" else x == y
        if not np.all(same):
            at = tuple(int(i) for i in np.argwhere(~np.asarray(same))[0])
            return f"{path}{list(at)} is {x[at].item()!r} vs {y[at].item()!r}"
        return None
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return f"{path} has {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(a, float | np.floating) and isinstance(b, float | np.floating):
        if a == b or (math.isnan(a) and math.isnan(b)):
            return None
        return f"{path} is {float(a)!r} vs {float(b)!r}"
    try:
        equal = bool(a == b)
    except (TypeError, ValueError):
        equal = a is b
    return None if equal else f"{path} is {a!r} vs {b!r}"
