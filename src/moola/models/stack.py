"""The stacking meta-learner: a small classifier over base models' out-of-fold probabilities.

Contract (what makes stacking honest): ``X`` is ``(N, M*K)``, the class probabilities of
M base models concatenated model by model (model 1's K columns, then model 2's, ...),
and every row must be an OUT-OF-FOLD prediction: made by a base model that never trained
on that sample. In-fold predictions are too good (the base model has seen the label), so
a meta-learner fitted on them learns to trust whichever base model overfits most. This
class cannot tell the two apart from the numbers; the out-of-fold driver
(``moola.training.oof``) is the one place that builds ``X`` and guarantees it. At predict
time ``X`` holds the base models' probabilities on new samples, in the same model order.

The meta-learner is deliberately small: logistic regression (default; its weights say
how much each base model is trusted) or a random forest, both from
``moola.models.tabular`` with their defaults (class-balanced, seeded).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field

from moola.core.errors import ConfigError
from moola.models._persist import SklearnEstimator, check_finite
from moola.models.tabular import TabularClassifier, tabular_params

if TYPE_CHECKING:
    from moola.models.params import ModelParams

__all__ = ["META_LEARNERS", "StackingClassifier", "stack_params"]

META_LEARNERS: tuple[str, ...] = ("logistic_regression", "random_forest")
_RANGE_TOLERANCE = 1e-6  # rounding of float32 probabilities, clipped away
_SUM_TOLERANCE = 1e-3  # base-model rows must sum to 1 within this (float32 calibrators)


class StackingClassifier(SklearnEstimator):
    """Meta-learner over base models' out-of-fold probabilities ``(N, M*K)``.

    Parameters
    ----------
    meta : str, default "logistic_regression"
        ``"logistic_regression"`` or ``"random_forest"``.
    base_names : sequence of str or None, default None
        Names of the M base models, in column-block order. When given, ``X`` must have
        M*K columns with each model's K probabilities summing to 1 per row, and K sets the
        number of classes; ``feature_names_`` then reads ``"<model>:p<k>"``.
    random_state : int, default 0
        Seed of the meta-learner.
    n_classes : int or None, default None
        Number of classes K; ``None`` takes K from ``base_names``, else ``max(y) + 1``.
    **params
        Passed to the meta-learner's model (e.g. ``C=0.5``).
    """

    name = "stack"
    input_kind = "probabilities"

    def __init__(
        self,
        meta: str = "logistic_regression",
        base_names: Sequence[str] | None = None,
        *,
        random_state: int = 0,
        n_classes: int | None = None,
        **params: Any,
    ) -> None:
        super().__init__(
            meta=meta,
            base_names=None if base_names is None else list(base_names),
            random_state=random_state,
            n_classes=n_classes,
            **params,
        )

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> StackingClassifier:
        """Fit on out-of-fold probabilities ``X`` (N, M*K) and labels ``y``; no early stop."""
        meta = self.params["meta"]
        if meta not in META_LEARNERS:
            close = difflib.get_close_matches(str(meta), META_LEARNERS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"stack: unknown meta-learner {meta!r}.{hint} Choose one of {list(META_LEARNERS)}."
            )
        values = self._probabilities(X, n_features=None)
        per_model = self._classes_per_model(values)
        n_classes = self.params["n_classes"]
        if n_classes is None:
            n_classes = per_model
        elif per_model is not None and n_classes != per_model:
            raise ConfigError(
                f"stack: n_classes={n_classes} but X holds {per_model} probabilities per base "
                "model; they must agree (or leave n_classes unset)."
            )
        labels = self._labels(y, len(values), n_classes)
        extra = {
            k: v
            for k, v in self.params.items()
            if k not in ("meta", "base_names", "random_state", "n_classes")
        }
        self.meta_ = TabularClassifier(
            meta,
            random_state=self.params["random_state"],
            n_classes=self.n_classes_,
            **extra,
        ).fit(values, labels)
        self.n_features_in_ = values.shape[1]
        self.feature_names_ = self._column_names(values.shape[1], per_model)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, K)`` float64 from the base models' probabilities ``X``."""
        self._require_fitted()
        values = self._probabilities(X, n_features=self.n_features_in_)
        self._classes_per_model(values)
        return self.meta_.predict_proba(values)

    def _probabilities(self, X: Any, n_features: int | None) -> np.ndarray:
        """``X`` as a finite ``(N, M*K)`` float64 array of probabilities, after checks."""
        values = np.asarray(X, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] == 0:
            raise ConfigError(
                f"stack: X must be (N, M*K) base-model probabilities (M models x K classes, "
                f"concatenated); got shape {values.shape}."
            )
        if n_features is not None and values.shape[1] != n_features:
            raise ConfigError(
                f"stack: X has {values.shape[1]} columns but the meta-learner was fitted on "
                f"{n_features}; give it the same base models in the same order."
            )
        check_finite(values, "stack: X")
        if values.min() < -_RANGE_TOLERANCE or values.max() > 1.0 + _RANGE_TOLERANCE:
            raise ConfigError(
                f"stack: X must hold probabilities in [0, 1]; found values in "
                f"[{values.min():.4g}, {values.max():.4g}]. Pass base models' predict_proba "
                "outputs (out of fold), not scores or features."
            )
        return np.clip(values, 0.0, 1.0)

    def _classes_per_model(self, values: np.ndarray) -> int | None:
        """K from ``base_names`` (None without them), after checking each model's block."""
        names = self.params["base_names"]
        if names is None:
            return None
        if len(names) == 0 or len(set(names)) != len(names):
            raise ConfigError(f"stack: base_names must be non-empty and unique; got {names}.")
        n_columns = values.shape[1]
        if n_columns % len(names) or n_columns // len(names) < 2:
            raise ConfigError(
                f"stack: X has {n_columns} columns, which is not {len(names)} base models "
                f"({names}) x K >= 2 classes. Concatenate each model's full predict_proba."
            )
        per_model = n_columns // len(names)
        sums = values.reshape(len(values), len(names), per_model).sum(axis=2)  # (N, M)
        bad = np.abs(sums - 1.0) > _SUM_TOLERANCE
        if bad.any():
            row, model = (int(i) for i in np.argwhere(bad)[0])
            raise ConfigError(
                f"stack: base model '{names[model]}' probabilities do not sum to 1 (row {row} "
                f"sums to {sums[row, model]:.6g}); X's columns must be each model's full "
                "predict_proba, concatenated in base_names order."
            )
        return per_model

    def _column_names(self, n_columns: int, per_model: int | None) -> list[str]:
        """``"<model>:p<k>"`` per column with ``base_names``, else ``"p<j>"``."""
        names = self.params["base_names"]
        if names is None or per_model is None:
            return [f"p{j}" for j in range(n_columns)]
        return [f"{model}:p{k}" for model in names for k in range(per_model)]


_OWN = ("meta", "base_names", "random_state", "n_classes")  # the rest go to the meta-learner


class _StackParams:
    """What ``stack_params`` adds to the signature's fields: the meta-learner's parameters
    checked by that meta-learner's own Params model, and resolved with its defaults."""

    def resolved(self) -> dict[str, Any]:
        """The stack's own parameters and the chosen meta-learner's, defaults filled."""
        given = {k: getattr(self, k) for k in self.model_fields_set if k not in _OWN}  # type: ignore[attr-defined]
        meta = _meta_params(self.meta).model_validate(given)  # type: ignore[attr-defined]
        return {
            **{k: getattr(self, k) for k in _OWN},
            **{k: v for k, v in meta.resolved().items() if k not in ("kind", *_OWN)},
        }


def _optional(annotation: Any, metadata: list[Any]) -> Any:
    """``annotation`` with its bounds (``metadata``), or None."""
    return (Annotated[annotation, *metadata] if metadata else annotation) | None


def _meta_params(meta: str) -> type[ModelParams]:
    from moola.models.params import params_model

    return params_model(meta)


def stack_params(model_name: str, fixed: Any = None) -> type[ModelParams]:
    """The ``Params`` model of ``stack``: ``meta``, ``base_names``, ``random_state`` and
    ``n_classes``, plus every parameter of the meta-learners (None: the meta-learner's
    default). A meta-learner parameter must belong to the chosen ``meta`` and pass its
    Params model (``tabular_params``)."""
    from moola.models.params import ModelParams, NClasses, Seed, from_signature

    meta_fields = {
        key: field
        for meta in META_LEARNERS
        for key, field in tabular_params(meta).model_fields.items()
        if key not in ("kind", *_OWN)
    }

    def meta_learner(params: Any) -> Any:
        names = params.base_names
        if names is not None and len(set(names)) != len(names):
            raise ValueError(f"base_names must be unique; got {names}")
        given = {k: getattr(params, k) for k in params.model_fields_set if k not in _OWN}
        others = sorted(k for k in given if k not in _meta_params(params.meta).model_fields)
        if others:
            raise ValueError(
                f"{others} are not parameters of meta={params.meta!r}; drop them or choose "
                "the meta-learner they belong to"
            )
        try:
            _meta_params(params.meta).model_validate(given)
        except ConfigError as exc:  # a value the library's set_params cannot take
            raise ValueError(str(exc)) from None
        return params

    class StackBase(_StackParams, ModelParams):
        """ModelParams resolved with the chosen meta-learner's defaults."""

    return from_signature(
        model_name,
        StackingClassifier,
        {
            "meta": Literal[META_LEARNERS],
            "base_names": Annotated[list[str], Field(min_length=1)] | None,
            "random_state": Seed,
            "n_classes": NClasses,
        },
        base=StackBase,
        extra_fields={
            key: (_optional(field.annotation, field.metadata), None)
            for key, field in meta_fields.items()
        },
        validators=[meta_learner],
    )
