"""A curriculum of episode starts: easy (high momentum quality) reset points first, harder
ones once the agent earns it.

:class:`Curriculum` takes a momentum index (``moola.rl.scanner.momentum_index``), ranks
its reset points by their day's quality (highest first; ties by bar index) and cuts them
into ``stages`` groups of nearly equal size: stage 0 holds the best days' reset points,
the last stage the weakest. It is a ``StartSampler`` for ``moola.rl.TradingEnv``
(``start=curriculum``): ``sample(rng)`` draws a reset point uniformly from the current
stage (or from it and every earlier stage, ``include_earlier=True``) with the env's
generator, so the env's seed alone decides the starts.

Promotion is by evaluation, not by time: after each evaluation the training loop calls
``record(eval_return)``; once at least ``min_evals`` evaluations were recorded in the
current stage and one reaches ``promote_at``, the next stage begins. ``history`` lists
every evaluation (eval number, training step when given, stage, return, promoted) for the
run manifest; ``state_dict()`` / ``Curriculum.from_state(index, state)`` resume it.

Bar indices are those of the bars the index was built from: give the env the same bars.
``starts`` (e.g. ``env.start_points``) keeps only the reset points an episode may start
at (after the observation warm-up).

Written by hand: Stable-Baselines3 has no curriculum; this is a ranked list and a counter.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}", param=name)
    return int(value)


def _ranked_points(index: Any, starts: Any) -> tuple[np.ndarray, np.ndarray]:
    """(reset points, their day's quality), best quality first, ties by bar index."""
    if not isinstance(index, pd.DataFrame) or not {"quality", "reset_points"} <= set(index):
        raise ConfigError(
            "index must be the DataFrame moola.rl.scanner.momentum_index returns (with "
            "'quality' and 'reset_points' columns)",
            param="index",
        )
    lengths = index["reset_points"].map(len).to_numpy()
    if lengths.sum() == 0:
        raise ConfigError("index has no reset points", param="index")
    points = np.concatenate([np.asarray(p, dtype=np.int64) for p in index["reset_points"]])
    quality = np.repeat(index["quality"].to_numpy(dtype=np.float64), lengths)
    if not np.isfinite(quality).all():
        raise ConfigError("index has a non-finite quality; rebuild it", param="index")
    if starts is not None:
        allowed = np.asarray(starts, dtype=np.int64)
        keep = np.isin(points, allowed)
        if not keep.any():
            raise ConfigError(
                f"none of the index's {points.size} reset points (bars {points.min()}.."
                f"{points.max()}) is among the {allowed.size} allowed starts; was the index "
                "built from the same bars as the env?",
                param="starts",
            )
        points, quality = points[keep], quality[keep]
    order = np.lexsort((points, -quality))
    return points[order], quality[order]


class Curriculum:
    """Reset points from easier to harder days, promoted by evaluation returns.

    Parameters
    ----------
    index : DataFrame
        A momentum index (``momentum_index``).
    stages : int, default 3
        How many groups of reset points, from the best quality to the worst.
    promote_at : float, default 0.0
        An evaluation return at or above it promotes to the next stage.
    min_evals : int, default 1
        Evaluations to record in a stage before it may promote.
    include_earlier : bool, default False
        Sample from the current stage and all earlier ones (so easy days are not forgotten).
    starts : array of int, optional
        Keep only these bar indices as reset points (e.g. ``env.start_points``).
    """

    def __init__(
        self,
        index: pd.DataFrame,
        *,
        stages: int = 3,
        promote_at: float = 0.0,
        min_evals: int = 1,
        include_earlier: bool = False,
        starts: np.ndarray | None = None,
    ) -> None:
        stages = _positive_int(stages, "stages")
        min_evals = _positive_int(min_evals, "min_evals")
        if not isinstance(promote_at, (int, float)) or not math.isfinite(promote_at):
            raise ConfigError(
                f"promote_at must be a finite number, got {promote_at!r}", param="promote_at"
            )
        points, quality = _ranked_points(index, starts)
        if stages > points.size:
            raise ConfigError(
                f"stages={stages} but the index has only {points.size} reset points; "
                "use fewer stages",
                param="stages",
            )
        self.stages = stages
        self.promote_at = float(promote_at)
        self.min_evals = min_evals
        self.include_earlier = bool(include_earlier)
        self.points = points
        self.quality = quality
        bounds = np.linspace(0, points.size, stages + 1).round().astype(np.int64)
        self._bounds = bounds
        self.stage = 0
        self.evals_in_stage = 0
        self.history: list[dict[str, Any]] = []

    # -- the stages ---------------------------------------------------------------------

    def stage_points(self, stage: int | None = None) -> np.ndarray:
        """The reset points of ``stage`` (default: the current one), best first."""
        stage = self.stage if stage is None else stage
        if not 0 <= stage < self.stages:
            raise ConfigError(f"stage must be in 0..{self.stages - 1}, got {stage}", param="stage")
        return self.points[self._bounds[stage] : self._bounds[stage + 1]]

    def stage_quality(self, stage: int | None = None) -> tuple[float, float]:
        """(lowest, highest) day quality of ``stage``'s reset points."""
        stage = self.stage if stage is None else stage
        self.stage_points(stage)  # checks the stage number
        q = self.quality[self._bounds[stage] : self._bounds[stage + 1]]
        return float(q.min()), float(q.max())

    @property
    def at_last_stage(self) -> bool:
        """True once the hardest stage is reached (no further promotion)."""
        return self.stage == self.stages - 1

    def sample(self, rng: np.random.Generator) -> int:
        """A reset point (bar index) of the current stage (and earlier ones with
        ``include_earlier``), drawn uniformly with ``rng``."""
        lo = 0 if self.include_earlier else self._bounds[self.stage]
        hi = self._bounds[self.stage + 1]
        return int(self.points[lo + int(rng.integers(hi - lo))])

    def record(self, eval_return: float, *, step: int | None = None) -> bool:
        """Record one evaluation's return (at training ``step``, when given); promote to
        the next stage and return True when it qualifies."""
        value = float(eval_return)
        if not math.isfinite(value):
            raise ConfigError(
                f"eval_return must be a finite number, got {eval_return!r}", param="eval_return"
            )
        self.evals_in_stage += 1
        promoted = (
            not self.at_last_stage
            and self.evals_in_stage >= self.min_evals
            and value >= self.promote_at
        )
        self.history.append(
            {
                "eval": len(self.history) + 1,
                "step": None if step is None else int(step),
                "stage": self.stage,
                "eval_return": value,
                "promoted": promoted,
            }
        )
        if promoted:
            self.stage += 1
            self.evals_in_stage = 0
        return promoted

    # -- resume -------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        digest = hashlib.sha256(self.points.tobytes())
        digest.update(self._bounds.tobytes())
        return digest.hexdigest()

    def state_dict(self) -> dict[str, Any]:
        """The curriculum's parameters and progress as plain JSON values."""
        return {
            "stages": self.stages,
            "promote_at": self.promote_at,
            "min_evals": self.min_evals,
            "include_earlier": self.include_earlier,
            "n_points": int(self.points.size),
            "fingerprint": self._fingerprint(),
            "stage": self.stage,
            "evals_in_stage": self.evals_in_stage,
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Carry on from a ``state_dict()`` saved over the same reset points, in place (an
        environment sampling from this curriculum follows it)."""
        try:
            stage, evals, history = state["stage"], state["evals_in_stage"], state["history"]
            fingerprint = state["fingerprint"]
        except (KeyError, TypeError) as exc:
            raise ConfigError(
                f"curriculum state lacks {exc.args[0]!r}; pass what state_dict() returned",
                param="state",
            ) from None
        if fingerprint != self._fingerprint():
            raise ConfigError(
                "curriculum state was saved over other reset points (a different index or "
                "starts); resume with the index it was built from",
                param="state",
            )
        if not 0 <= int(stage) < self.stages:
            raise ConfigError(f"curriculum state has stage {stage!r}", param="state")
        self.stage = int(stage)
        self.evals_in_stage = int(evals)
        self.history = [dict(h) for h in history]

    @classmethod
    def from_state(
        cls, index: pd.DataFrame, state: dict[str, Any], *, starts: np.ndarray | None = None
    ) -> Curriculum:
        """The curriculum ``state_dict()`` saved, over the same ``index`` (and ``starts``)."""
        try:
            curriculum = cls(
                index,
                stages=state["stages"],
                promote_at=state["promote_at"],
                min_evals=state["min_evals"],
                include_earlier=state["include_earlier"],
                starts=starts,
            )
        except KeyError as exc:
            raise ConfigError(
                f"curriculum state lacks {exc.args[0]!r}; pass what state_dict() returned",
                param="state",
            ) from None
        curriculum.load_state_dict(state)
        return curriculum


__all__ = ["Curriculum"]
