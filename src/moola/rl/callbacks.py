"""Stable-Baselines3 callbacks: keep the best models by evaluation, report progress.

``TopKCheckpoints(directory, eval_env, eval_freq=...)`` evaluates the model being trained
every ``eval_freq`` environment steps (and once more when training ends) on an evaluation
environment built on held-out periods, with ``moola.rl.evaluate.evaluate_policy``, and
keeps the ``k`` (default 5) models with the highest mean evaluation return in
``directory``:

- ``model_<step>.zip``: the SB3 model (``Algorithm.load`` reads it);
- ``model_<step>.json``: its metadata: ``step``, ``reward`` (mean evaluation return),
  the per-episode rewards, ``algo``, ``version``, the caller's ``config`` and
  ``data_versions``, the observation and action spaces, library versions, time;
- ``best.json``: the index, the kept models best first (``models``), and every evaluation
  made so far (``evaluations``).

Every file is written beside its destination and renamed into place
(``moola.core.atomic``): a model and its metadata first, then the index, and only then are
the models pushed out of the top k deleted. A crash at any moment leaves an index whose
files all exist. Started on a directory that has a ``best.json`` already (a resumed or
continued run), the callback ranks new models against the kept ones.

``TrainingProgress(on_step)`` calls ``on_step(step, total)`` as training advances (the CLI
draws a Rich bar from it; this module prints nothing).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import gymnasium
from stable_baselines3.common.callbacks import BaseCallback

from moola.core.atomic import atomic_write_bytes, atomic_write_text
from moola.core.errors import CheckpointError, ConfigError
from moola.core.provenance import utc_now_iso
from moola.rl.evaluate import EvalResult, evaluate_policy

__all__ = [
    "CHECKPOINT_FORMAT",
    "INDEX",
    "TopKCheckpoints",
    "TrainingProgress",
    "algo_name",
    "read_index",
]

CHECKPOINT_FORMAT = "moola-rl-checkpoint"
INDEX_FORMAT = "moola-rl-checkpoints"
FORMAT_VERSION = 1
INDEX = "best.json"


def algo_name(model: Any) -> str:
    """``"ppo"``, ``"maskable_ppo"`` or ``"a2c"`` for an SB3 model (its class otherwise)."""
    names = {"PPO": "ppo", "MaskablePPO": "maskable_ppo", "A2C": "a2c"}
    cls = type(model).__name__
    return names.get(cls, cls.lower())


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("moola", "stable_baselines3", "sb3_contrib", "gymnasium", "torch"):
        try:
            out[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            out[name] = None
    return out


def _space(space: gymnasium.spaces.Space) -> dict[str, Any]:
    """A JSON description of a space (to tell a checkpoint's shapes without loading it)."""
    if isinstance(space, gymnasium.spaces.Dict):
        return {"type": "Dict", "spaces": {k: _space(v) for k, v in space.spaces.items()}}
    if isinstance(space, gymnasium.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    shape = list(getattr(space, "shape", None) or [])
    return {"type": type(space).__name__, "shape": shape}


def read_index(directory: str | Path) -> dict[str, Any]:
    """The ``best.json`` index of a checkpoint directory (CheckpointError naming it)."""
    path = Path(directory) / INDEX
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(
            f"{path} does not exist: {directory} holds no kept models (train with "
            "TopKCheckpoints writing into it first).",
            param="path",
        ) from exc
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read as JSON: {exc}.", param="path") from exc
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise CheckpointError(
            f"{path} is not a moola RL checkpoint index (format {INDEX_FORMAT!r}).",
            param="path",
        )
    return data


class TopKCheckpoints(BaseCallback):
    """Evaluate every ``eval_freq`` steps; keep the best ``k`` models (module notes).

    Parameters
    ----------
    directory : str or Path
        Where the models and ``best.json`` are written (created if missing).
    eval_env : gymnasium.Env
        One evaluation environment (held-out periods), played by ``evaluate_policy``.
    eval_freq : int
        Environment steps (over all training envs) between evaluations.
    n_episodes : int, default 1
        Episodes per evaluation; the rank is their mean total reward.
    k : int, default 5
        Models kept.
    deterministic : bool, default True
    seed : int, default 0
        Reset seed of the first evaluation episode (the same episodes at every evaluation).
    config, data_versions : mapping, optional
        JSON-ready run configuration and data versions (``{"train": "name@v3", ...}``)
        copied into every model's metadata.
    version : int, optional
        The model version (1 for a first training, 2, 3... for continued ones).
    evaluate_at_end : bool, default True
        Evaluate once more when training ends, unless the last step was just evaluated.
    on_evaluation : callable(step, EvalResult), optional
        Told of each evaluation (e.g. a curriculum promoting its stage, a log line).
    """

    def __init__(
        self,
        directory: str | Path,
        eval_env: gymnasium.Env,
        *,
        eval_freq: int,
        n_episodes: int = 1,
        k: int = 5,
        deterministic: bool = True,
        seed: int = 0,
        config: Mapping[str, Any] | None = None,
        data_versions: Mapping[str, Any] | None = None,
        version: int | None = None,
        evaluate_at_end: bool = True,
        on_evaluation: Callable[[int, EvalResult], None] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("eval_freq", eval_freq), ("n_episodes", n_episodes), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}.", param=name)
        self.directory = Path(directory)
        self.eval_env = eval_env
        self.eval_freq = eval_freq
        self.n_episodes = n_episodes
        self.k = k
        self.deterministic = deterministic
        self.seed = seed
        self.config = json.loads(json.dumps(dict(config or {}), default=str))
        self.data_versions = json.loads(json.dumps(dict(data_versions or {}), default=str))
        self.version = version
        self.evaluate_at_end = evaluate_at_end
        self.on_evaluation = on_evaluation
        self.kept: list[dict[str, Any]] = []
        self.evaluations: list[dict[str, Any]] = []
        self._next_eval = 0
        self._last_eval_step: int | None = None

    # ------------------------------------------------------------------ SB3 hooks

    def _on_training_start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if (self.directory / INDEX).exists():
            index = read_index(self.directory)
            self.kept = [m for m in index.get("models", []) if self._files_exist(m)]
            self.evaluations = list(index.get("evaluations", []))
        self._next_eval = self.num_timesteps + self.eval_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_eval:
            self._evaluate()
            while self._next_eval <= self.num_timesteps:
                self._next_eval += self.eval_freq
        return True

    def _on_training_end(self) -> None:
        if self.evaluate_at_end and self._last_eval_step != self.num_timesteps:
            self._evaluate()

    # ------------------------------------------------------------------ work

    @property
    def best(self) -> dict[str, Any] | None:
        """The index entry of the best kept model (None before the first evaluation)."""
        return self.kept[0] if self.kept else None

    def _files_exist(self, entry: Mapping[str, Any]) -> bool:
        return all((self.directory / entry[f]).exists() for f in ("model", "metadata"))

    def _evaluate(self) -> None:
        step = int(self.num_timesteps)
        result = evaluate_policy(
            self.model,
            self.eval_env,
            n_episodes=self.n_episodes,
            deterministic=self.deterministic,
            seed=self.seed,
            baselines=False,
        )
        self._last_eval_step = step
        reward = result.mean_reward
        finite = math.isfinite(reward)
        self.evaluations.append({"step": step, "reward": reward if finite else None})
        if self.on_evaluation is not None:
            self.on_evaluation(step, result)
        full = len(self.kept) >= self.k
        if not finite or (full and not reward > self.kept[-1]["reward"]):
            self._write_index()  # the evaluation is recorded, no model kept
            return
        stem = f"model_{step}"
        entry = {"step": step, "reward": reward, "model": f"{stem}.zip",
                 "metadata": f"{stem}.json"}  # fmt: skip
        metadata = {
            "format": CHECKPOINT_FORMAT,
            "format_version": FORMAT_VERSION,
            "step": step,
            "reward": reward,
            "episode_rewards": [e.total_reward for e in result.policy.episodes],
            "episode_returns": [e.total_return for e in result.policy.episodes],
            "n_episodes": self.n_episodes,
            "deterministic": self.deterministic,
            "algo": algo_name(self.model),
            # make_agent's arguments: what load_agent rebuilds the network from.
            "agent": getattr(self.model, "moola_build", None),
            "version": self.version,
            "config": self.config,
            "data_versions": self.data_versions,
            "observation_space": _space(self.model.observation_space),
            "action_space": _space(self.model.action_space),
            "learning_rate": float(self.model.policy.optimizer.param_groups[0]["lr"]),
            "libraries": _versions(),
            "created_at": utc_now_iso(),
        }
        buffer = io.BytesIO()
        self.model.save(buffer)
        atomic_write_bytes(self.directory / entry["model"], buffer.getvalue(), overwrite=True)
        atomic_write_text(
            self.directory / entry["metadata"],
            json.dumps(metadata, indent=2, allow_nan=False, default=str),
            overwrite=True,
        )
        kept = [m for m in self.kept if m["step"] != step] + [entry]
        kept.sort(key=lambda m: (-m["reward"], m["step"]))
        dropped, self.kept = kept[self.k :], kept[: self.k]
        self._write_index()
        for old in dropped:
            for name in ("model", "metadata"):
                (self.directory / old[name]).unlink(missing_ok=True)

    def _write_index(self) -> None:
        index = {
            "format": INDEX_FORMAT,
            "format_version": FORMAT_VERSION,
            "k": self.k,
            "version": self.version,
            "best": self.best,
            "models": self.kept,
            "evaluations": self.evaluations,
        }
        atomic_write_text(
            self.directory / INDEX,
            json.dumps(index, indent=2, allow_nan=False, default=str),
            overwrite=True,
        )


class TrainingProgress(BaseCallback):
    """Call ``on_step(step, total)`` every ``every`` environment steps and at the end.

    ``step`` is the model's step count and ``total`` the step it will stop at (for a
    continued training both count from the first training's start). Prints nothing.
    """

    def __init__(self, on_step: Callable[[int, int], None], *, every: int = 1) -> None:
        super().__init__()
        if not callable(on_step):
            raise ConfigError("on_step must be a callable(step, total).", param="on_step")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"every must be an integer >= 1, got {every!r}.", param="every")
        self.on_step_fn = on_step
        self.every = every
        self._last = -1

    def _total(self) -> int:
        return int(getattr(self.model, "_total_timesteps", 0))

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps
        self.on_step_fn(int(self.num_timesteps), self._total())

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.every:
            self._last = self.num_timesteps
            self.on_step_fn(int(self.num_timesteps), self._total())
        return True

    def _on_training_end(self) -> None:
        if self._last != self.num_timesteps:
            self._last = self.num_timesteps
            self.on_step_fn(int(self.num_timesteps), self._total())
