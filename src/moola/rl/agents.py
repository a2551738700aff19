"""Stable-Baselines3 agents for the trading environment: build, load, continue.

``make_agent(algo, env, seed=...)`` builds one of ``ALGOS``:

- ``"ppo"``: ``stable_baselines3.PPO``;
- ``"maskable_ppo"``: ``sb3_contrib.MaskablePPO``, for discrete action spaces whose env
  has ``action_masks()`` (``discrete12``): the policy never samples a masked action;
- ``"a2c"``: ``stable_baselines3.A2C``, the maintained, synchronous form of A3C: give it a
  vectorised env (several copies stepped together).

Defaults suit a CPU: ``device="cpu"``, two hidden layers of 64 for the policy and the
value heads, short rollouts (``n_steps`` 256 for PPO, 5 for A2C). A Dict observation gets
SB3's ``MultiInputPolicy``, with the flattening ``CombinedExtractor`` (``extractor="flat"``)
or ``moola.rl.extractors.MultiTimescaleExtractor`` (``extractor="multi_timescale"``).

``load_agent(path, env)`` reads a saved model (a ``.zip`` or a checkpoint directory's best
model) without running any code in it: its weights go into an agent rebuilt from the
``make_agent`` arguments saved beside it (``agent_build``); one saved for another
observation or action space is refused. ``continue_training(
root, env, timesteps=..., version=N, eval_env=...)`` loads the best model of the latest
version below ``N`` under ``root`` (``root/v1``, ``root/v2``...), trains it further with
the learning rate annealed linearly from its rate to ``lr_final_fraction`` of it, and keeps
the new version's best models in ``root/vN`` (``TopKCheckpoints``).
"""

from __future__ import annotations

import inspect
import io
import json
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import gymnasium
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from moola.core.devices import select_device
from moola.core.errors import CheckpointError, ConfigError
from moola.rl.callbacks import TopKCheckpoints, read_index
from moola.rl.extractors import MultiTimescaleExtractor

__all__ = [
    "ALGOS",
    "EXTRACTORS",
    "AnnealedRate",
    "agent_build",
    "continue_training",
    "latest_version",
    "load_agent",
    "make_agent",
    "version_directory",
]

ALGOS: tuple[str, ...] = ("ppo", "maskable_ppo", "a2c")
EXTRACTORS: tuple[str, ...] = ("flat", "multi_timescale")
#: Default rollout length per env.
N_STEPS = {"ppo": 256, "maskable_ppo": 256, "a2c": 5}
#: Default hidden layers of the policy (pi) and value (vf) heads.
NET_ARCH = {"pi": [64, 64], "vf": [64, 64]}
_VERSION = re.compile(r"^v(\d+)$")


def _algo_class(algo: str) -> type[BaseAlgorithm]:
    if algo == "ppo":
        return PPO
    if algo == "a2c":
        return A2C
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    raise ConfigError(f"Unknown algo {algo!r}; use one of {', '.join(ALGOS)}.", param="algo")


def _spaces(env: Any) -> tuple[gymnasium.spaces.Space, gymnasium.spaces.Space]:
    obs = getattr(env, "observation_space", None)
    act = getattr(env, "action_space", None)
    if obs is None or act is None:
        raise ConfigError(
            f"env must be a gymnasium.Env or an SB3 VecEnv, got {type(env).__name__}.",
            param="env",
        )
    return obs, act


def _has_masks(env: Any) -> bool:
    if isinstance(env, VecEnv):
        return bool(env.has_attr("action_masks")) or callable(getattr(env, "action_masks", None))
    try:
        env.get_wrapper_attr("action_masks")
    except AttributeError:
        return False
    return True


def make_agent(
    algo: str,
    env: Any,
    *,
    seed: int,
    learning_rate: float | Any = 3e-4,
    n_steps: int | None = None,
    policy_kwargs: Mapping[str, Any] | None = None,
    extractor: Literal["flat", "multi_timescale"] = "flat",
    extractor_kwargs: Mapping[str, Any] | None = None,
    device: str = "cpu",
    verbose: int = 0,
    **hyper: Any,
) -> BaseAlgorithm:
    """A seeded SB3 agent ``algo`` for ``env`` (see the module notes for the defaults).

    Parameters
    ----------
    algo : {"ppo", "maskable_ppo", "a2c"}
    env : gymnasium.Env or VecEnv
        ``maskable_ppo`` needs a Discrete action space and ``action_masks()``.
    seed : int
        Seeds SB3 (Python, numpy and torch generators, the env's first reset).
    learning_rate : float or schedule, default 3e-4
    n_steps : int, optional
        Rollout steps per env between updates (256 for PPO, 5 for A2C).
    policy_kwargs : mapping, optional
        Merged over the defaults (``net_arch`` and the extractor).
    extractor : {"flat", "multi_timescale"}, default "flat"
    extractor_kwargs : mapping, optional
        ``MultiTimescaleExtractor`` arguments (``features_dim``, ``branches``...).
    device : str, default "cpu"
        ``"cpu"``, ``"cuda"``, ``"mps"`` or ``"auto"`` (``moola.core.devices``).
    **hyper
        Further arguments of the algorithm (``batch_size``, ``n_epochs``, ``gamma``,
        ``ent_coef``...); an unknown name is refused. A PPO ``batch_size`` (default 64)
        larger than one rollout (``n_steps`` x envs) is lowered to the rollout's size.
    """
    if algo not in ALGOS:
        raise ConfigError(f"Unknown algo {algo!r}; use one of {', '.join(ALGOS)}.", param="algo")
    if extractor not in EXTRACTORS:
        raise ConfigError(
            f"Unknown extractor {extractor!r}; use one of {', '.join(EXTRACTORS)}.",
            param="extractor",
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}.", param="seed")
    obs_space, act_space = _spaces(env)
    if algo == "maskable_ppo":
        if not isinstance(act_space, gymnasium.spaces.Discrete):
            raise ConfigError(
                f"algo='maskable_ppo' needs a discrete action space (e.g. action_space "
                f"'discrete12'), but the env's action space is {act_space}; use algo 'ppo' "
                "or 'a2c' for it.",
                param="algo",
            )
        if not _has_masks(env):
            raise ConfigError(
                "algo='maskable_ppo' needs an env with action_masks(); this "
                f"{type(env).__name__} has none. Use algo 'ppo' or 'a2c'.",
                param="algo",
            )
    cls = _algo_class(algo)
    allowed = set(inspect.signature(cls.__init__).parameters) - {
        "self", "policy", "env", "_init_setup_model", "seed", "device", "policy_kwargs",
        "learning_rate", "n_steps", "verbose",
    }  # fmt: skip
    unknown = sorted(set(hyper) - allowed)
    if unknown:
        raise ConfigError(
            f"Unknown hyperparameter(s) {unknown} for algo={algo!r}; valid: "
            f"{', '.join(sorted(allowed))}.",
            param="hyper",
        )
    steps = N_STEPS[algo] if n_steps is None else n_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"n_steps must be an integer >= 1, got {n_steps!r}.", param="n_steps")
    kwargs: dict[str, Any] = {"net_arch": {k: list(v) for k, v in NET_ARCH.items()}}
    if extractor == "multi_timescale":
        if not isinstance(obs_space, gymnasium.spaces.Dict):
            raise ConfigError(
                "extractor='multi_timescale' needs a Dict observation space ('window*', "
                f"'portfolio'), got {obs_space}.",
                param="extractor",
            )
        kwargs["features_extractor_class"] = MultiTimescaleExtractor
        kwargs["features_extractor_kwargs"] = dict(extractor_kwargs or {})
    elif extractor_kwargs:
        raise ConfigError(
            "extractor_kwargs is only read with extractor='multi_timescale'.",
            param="extractor_kwargs",
        )
    kwargs.update(policy_kwargs or {})
    if algo == "ppo" or algo == "maskable_ppo":
        batch = hyper.get("batch_size", 64)
        n_envs = env.num_envs if isinstance(env, VecEnv) else 1
        if batch > steps * n_envs:
            hyper["batch_size"] = steps * n_envs  # SB3 would warn and truncate batches
    policy = "MultiInputPolicy" if isinstance(obs_space, gymnasium.spaces.Dict) else "MlpPolicy"
    model = cls(
        policy,
        env,
        learning_rate=learning_rate,
        n_steps=steps,
        policy_kwargs=kwargs,
        seed=seed,
        device=select_device(device),
        verbose=verbose,
        **hyper,
    )
    model.moola_build = _build_record(
        algo=algo,
        learning_rate=learning_rate,
        n_steps=steps,
        policy_kwargs=dict(policy_kwargs or {}),
        extractor=extractor,
        extractor_kwargs=dict(extractor_kwargs or {}),
        **hyper,
    )
    return model


def _build_record(**arguments: Any) -> dict[str, Any] | None:
    """``make_agent``'s arguments as JSON (what ``load_agent`` rebuilds the network from),
    or None when one is not plain data (a class in ``policy_kwargs``, a schedule)."""
    try:
        return json.loads(json.dumps(arguments, allow_nan=False))
    except (TypeError, ValueError):
        return None


def agent_build(model: Any) -> dict[str, Any] | None:
    """How ``make_agent`` built ``model`` (JSON), for saving beside it; None if unknown."""
    record = getattr(model, "moola_build", None)
    return dict(record) if isinstance(record, dict) else None


def version_directory(root: str | Path, version: int) -> Path:
    """``root/v<version>``: where version ``version``'s kept models live."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"version must be an integer >= 1, got {version!r}.", param="version")
    return Path(root) / f"v{version}"


def latest_version(root: str | Path, *, below: int | None = None) -> int | None:
    """The highest N with a ``root/vN/best.json`` (below ``below`` when given), or None."""
    root = Path(root)
    found = []
    if root.is_dir():
        for child in root.iterdir():
            match = _VERSION.match(child.name)
            if match and (child / "best.json").exists():
                found.append(int(match.group(1)))
    if below is not None:
        found = [v for v in found if v < below]
    return max(found) if found else None


def _resolve_model_file(path: Path) -> tuple[Path, dict[str, Any]]:
    """(model zip, its metadata) of a zip, a checkpoint directory or a versions root."""
    if path.is_file():
        return path, _metadata(path.with_suffix(".json"))
    if not path.is_dir():
        raise CheckpointError(f"{path} does not exist.", param="path")
    if not (path / "best.json").exists():
        latest = latest_version(path)
        if latest is None:
            raise CheckpointError(
                f"{path} holds neither best.json nor version directories v1, v2... with one.",
                param="path",
            )
        path = version_directory(path, latest)
    index = read_index(path)
    best = index.get("best")
    if not best:
        raise CheckpointError(f"{path / 'best.json'} lists no kept model.", param="path")
    return path / best["model"], _metadata(path / best["metadata"])


def _metadata(meta: Path) -> dict[str, Any]:
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_agent(
    path: str | Path,
    env: Any,
    *,
    algo: str | None = None,
    build: Mapping[str, Any] | None = None,
    device: str = "cpu",
) -> BaseAlgorithm:
    """Load a model: a ``.zip``, a checkpoint directory (its best) or a versions root
    (the latest version's best), for ``env``.

    No code in the file runs. A Stable-Baselines3 zip stores some attributes as pickles
    (which would run whatever they name when loaded); this reads only its weights
    (``policy.pth``, the optimiser's state, with ``torch.load(weights_only=True)``) and its
    step count (plain JSON), into an agent rebuilt by :func:`make_agent` from ``build``
    (default: the ``agent`` record saved beside the model, in its checkpoint metadata).
    A model saved for another observation or action space, or another network, is
    refused with a ``CheckpointError`` naming the file.
    """
    file, meta = _resolve_model_file(Path(path))
    record = dict(build) if build is not None else meta.get("agent")
    if not isinstance(record, dict):
        raise CheckpointError(
            f"{file} has no record of how its agent was built (the 'agent' entry of its "
            "metadata); pass build= (what moola.rl.agents.agent_build returned).",
            param="build",
        )
    name = algo or record.get("algo") or meta.get("algo")
    if env is None:
        raise CheckpointError(
            f"Loading {file} needs the env it acts in (its spaces size the network).",
            param="env",
        )
    arguments = {k: v for k, v in record.items() if k != "algo"}
    agent = make_agent(str(name), env, seed=0, device=device, **arguments)
    try:
        with zipfile.ZipFile(file) as archive:
            data = json.loads(archive.read("data"))
            weights = torch.load(
                io.BytesIO(archive.read("policy.pth")), map_location="cpu", weights_only=True
            )
            optimiser = (
                torch.load(
                    io.BytesIO(archive.read("policy.optimizer.pth")),
                    map_location="cpu",
                    weights_only=True,
                )
                if "policy.optimizer.pth" in archive.namelist()
                else None
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{file} cannot be read as a {name} model: {exc}.",
                              param="path") from exc  # fmt: skip
    try:
        agent.policy.load_state_dict(weights)
        if optimiser is not None:
            agent.policy.optimizer.load_state_dict(optimiser)
    except (RuntimeError, ValueError, KeyError) as exc:
        obs, act = _spaces(env)
        raise CheckpointError(
            f"{file} was saved for another network or other observation/action spaces than "
            f"this env's (observation {obs}, action {act}): {str(exc).splitlines()[0]} Train "
            "a new model for this env (window, features and action_space must match).",
            param="path",
        ) from None
    steps = data.get("num_timesteps") if isinstance(data, dict) else None
    agent.num_timesteps = int(steps) if isinstance(steps, int) else 0
    return agent


class AnnealedRate:
    """A learning-rate schedule going linearly from ``start`` to ``end`` over the last
    ``span`` of SB3's progress (``progress_remaining`` from ``span`` down to 0).

    A continued training counts its steps on from the loaded model's, so its progress
    starts below 1 (``span`` = new steps / all steps); picklable (saved with the model).
    """

    def __init__(self, start: float, end: float, span: float) -> None:
        self.start, self.end, self.span = float(start), float(end), float(span)

    def __call__(self, progress_remaining: float) -> float:
        share = min(max(progress_remaining / self.span, 0.0), 1.0) if self.span > 0 else 0.0
        return self.end + (self.start - self.end) * share

    def __repr__(self) -> str:
        return f"AnnealedRate(start={self.start}, end={self.end}, span={self.span})"


def continue_training(
    path: str | Path,
    env: Any,
    *,
    timesteps: int,
    version: int,
    eval_env: gymnasium.Env,
    eval_freq: int | None = None,
    n_episodes: int = 1,
    k: int = 5,
    lr_final_fraction: float = 0.1,
    config: Mapping[str, Any] | None = None,
    data_versions: Mapping[str, Any] | None = None,
    callback: BaseCallback | list[BaseCallback] | None = None,
    seed: int | None = None,
    device: str = "cpu",
) -> BaseAlgorithm:
    """Train the best model of an earlier version further, as version ``version``.

    Parameters
    ----------
    path : str or Path
        The versions root (``root/v1``, ``root/v2``... each a ``TopKCheckpoints``
        directory); the best model of the latest version below ``version`` is loaded.
    env : gymnasium.Env or VecEnv
        The training env; its spaces must equal the checkpoint's (CheckpointError).
    timesteps : int
        Environment steps to train for.
    version : int
        The new version (>= 2); ``root/v<version>`` must not hold models yet.
    eval_env : gymnasium.Env
        Held-out evaluation env for the new version's ``TopKCheckpoints``.
    eval_freq : int, optional
        Steps between evaluations (default: a fifth of ``timesteps``).
    lr_final_fraction : float, default 0.1
        The learning rate goes linearly from the loaded model's rate to this fraction of
        it over ``timesteps``.
    config, data_versions : mapping, optional
        Copied into each kept model's metadata (with ``continued_from``).
    callback : SB3 callback(s), optional
        Run beside the checkpoints (e.g. ``TrainingProgress``).
    seed : int, optional
        Reseeds the model's generators before training.

    Returns
    -------
    The trained model (its best evaluated state is ``root/v<version>``'s best).
    """
    root = Path(path)
    target = version_directory(root, version)
    if version < 2:
        raise ConfigError(
            f"version must be >= 2 to continue training (v1 is the first training), got {version}.",
            param="version",
        )
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ConfigError(f"timesteps must be an integer >= 1, got {timesteps!r}.",
                          param="timesteps")  # fmt: skip
    if not 0.0 < lr_final_fraction <= 1.0:
        raise ConfigError(
            f"lr_final_fraction must be in (0, 1], got {lr_final_fraction!r}.",
            param="lr_final_fraction",
        )
    if (target / "best.json").exists():
        raise ConfigError(
            f"version {version} exists already ({target} holds best.json); versions are "
            f"write-once: continue as version {(latest_version(root) or 0) + 1}.",
            param="version",
        )
    source = latest_version(root, below=version)
    if source is None:
        raise CheckpointError(
            f"{root} holds no version below v{version} with kept models (vN/best.json) to "
            "continue from.",
            param="path",
        )
    source_dir = version_directory(root, source)
    model = load_agent(source_dir, env, device=device)
    rate = float(model.policy.optimizer.param_groups[0]["lr"])
    span = timesteps / (model.num_timesteps + timesteps)
    schedule = AnnealedRate(rate, rate * lr_final_fraction, span)
    model.learning_rate = schedule
    model._setup_lr_schedule()
    if seed is not None:
        model.set_random_seed(seed)
    best = read_index(source_dir)["best"]
    checkpoints = TopKCheckpoints(
        target,
        eval_env,
        eval_freq=eval_freq or max(1, timesteps // 5),
        n_episodes=n_episodes,
        k=k,
        config={**dict(config or {}), "continued_from": {"version": source, **best}},
        data_versions=data_versions,
        version=version,
    )
    extra = [] if callback is None else callback if isinstance(callback, list) else [callback]
    model.learn(timesteps, callback=[checkpoints, *extra], reset_num_timesteps=False)
    return model
