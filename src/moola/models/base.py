"""The estimator contract every moola model follows, neural or not.

Pipelines never special-case a model: each is created by ``moola.models.create(name,
**params)`` and used through these methods. Inputs are float arrays shaped ``(N, T, D)``
for sequence models and ``(N, F)`` for tabular ones. As in scikit-learn, ``__init__`` only
stores parameters, ``fit`` returns ``self``, and learned state ends in ``_``.

What ``y`` holds and ``predict`` returns depends on the estimator's ``task`` (its ``task``
parameter, ``"classification"`` when not given):

- ``classification``: ``y`` integer class indices ``0..K-1`` ``(N,)``; ``predict_proba``
  gives ``(N, K)`` probabilities and ``predict`` the most probable index ``(N,)`` int64;
- ``regression``: ``y`` float targets ``(N,)`` or ``(N, K)``; ``predict`` returns float64
  values of the same shape, in the targets' units; ``predict_proba`` raises ``ConfigError``;
- ``multitask``: ``y`` ``(N, H)`` float64, one column per head (class heads hold class
  indices as floats); ``predict`` returns ``(N, H)`` float64 (class heads: the argmax
  index) and ``predict_heads`` each head's values or probabilities.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from moola.core.errors import ConfigError

InputKind = Literal["sequence", "tabular", "probabilities"]
Task = Literal["classification", "regression", "multitask"]
#: Every task an estimator may learn (see the module docstring).
TASKS: tuple[str, ...] = ("classification", "regression", "multitask")


def regression_targets(y: Any, n: int, what: str = "y") -> np.ndarray:
    """Regression targets ``(N, K)`` float64 for ``n`` samples: numeric, finite, one row per
    sample (``(N,)`` becomes ``(N, 1)``); refused naming ``what`` and the first bad rows."""
    values = np.asarray(y)
    if values.ndim not in (1, 2) or len(values) != n or values.size == 0:
        raise ConfigError(
            f"{what} must be regression targets shaped (N,) or (N, K) with one row per "
            f"sample ({n}); got shape {values.shape}."
        )
    if values.dtype.kind not in "iuf":
        raise ConfigError(
            f"{what} must hold numbers for task='regression'; got dtype {values.dtype}."
        )
    values = values.astype(np.float64).reshape(n, -1)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ConfigError(
            f"{what} holds NaN or infinite regression targets in rows "
            f"{np.flatnonzero(bad)[:5].tolist()}; drop those samples (a target must be finite)."
        )
    return values


class Estimator(ABC):
    """Base class: ``fit`` / ``predict_proba`` / ``predict`` / ``save`` / ``load``."""

    #: Registry name of the model (e.g. ``"simple_lstm"``).
    name: ClassVar[str]
    #: What ``X`` must look like: ``(N, T, D)`` windows, ``(N, F)`` features, or
    #: ``(N, M*K)`` base-model probabilities (the stacking meta-learner).
    input_kind: ClassVar[InputKind]
    #: Training-loop callbacks of later fits (``with_callbacks``); none by default.
    callbacks: tuple[Any, ...] = ()

    def __init__(self, **params: Any) -> None:
        self.params = dict(params)

    @property
    def task(self) -> str:
        """What this estimator learns: its ``task`` parameter, ``"classification"`` if unset."""
        return str(self.params.get("task") or "classification")

    @abstractmethod
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> Estimator:
        """Learn from ``X``, ``y``; ``X_val``/``y_val`` only steer early stopping."""

    @abstractmethod
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, ``(N, K)`` float64, rows summing to 1."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable class index per sample, ``(N,)`` int64 (a classifier's; regressors
        and multi-task models override it, see the module docstring)."""
        return np.asarray(self.predict_proba(X)).argmax(axis=1).astype(np.int64)

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write everything needed to predict (config, weights, normaliser) to ``path``."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> Estimator:
        """Rebuild a fitted estimator from ``save``'s output; refuses incompatible files."""

    def with_callbacks(self, *callbacks: Any) -> Estimator:
        """Attach training-loop callbacks (``moola.training.callbacks.Callback``) to this
        estimator's later fits and return ``self``: a progress display, a reporter.

        They observe; they are not parameters (not in ``get_params``, never saved).
        Estimators not trained epoch by epoch (scikit-learn ones) ignore them.
        """
        self.callbacks = tuple(callbacks)
        return self

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters: what a run manifest records to rebuild the model."""
        return dict(self.params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"
