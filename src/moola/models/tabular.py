"""Classifiers on engineered features (N, F): the baselines every sequence model must beat.

One estimator, three kinds, each a scikit-learn-compatible model with a seeded
``random_state``:

- ``logistic_regression``: StandardScaler + LogisticRegression (``class_weight="balanced"``,
  so the minority class is not ignored on small, imbalanced sets);
- ``random_forest``: RandomForestClassifier (300 trees, ``class_weight="balanced"``);
- ``gradient_boosting``: LightGBM ``LGBMClassifier``, deterministic and single-threaded,
  with small leaves (``min_child_samples=5``) because LightGBM's default of 20 samples per
  leaf barely splits a labeled set of a few hundred windows.

``task="regression"`` (``gradient_boosting`` only, ``moola models list`` shows the tasks
of each model) fits LightGBM's ``LGBMRegressor`` with the same defaults on float targets
``(N,)`` or ``(N, K)``, one regressor per target column (LightGBM has no multi-output
trees); ``predict`` returns float64 values shaped like the targets and ``predict_proba``
is refused. The fitted regressors are kept as their LightGBM boosters, the one LightGBM
type the model file trusts, and predict exactly as the regressors do.

Extra keyword parameters go to the underlying model and override these defaults (e.g.
``create("logistic_regression", C=0.1)``). ``tabular_params(kind)`` is each kind's
``Params`` model (``moola.models.params``): a field per parameter of the library model,
its default read from the model ``_build`` makes (the one place moola's defaults are
written), bounds on the ones worth tuning, and scikit-learn's own parameter constraints
checked on the rest before any fit. ``X`` may be a pandas DataFrame: its column
names are remembered, and a DataFrame given to ``predict_proba`` is reordered to them.
Validation data is accepted and ignored: none of these kinds early-stops here, since a
validation fold of a few dozen windows makes the stopping point noise.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from moola.core.errors import ConfigError
from moola.models._params import params_checked_by_library
from moola.models._persist import SklearnEstimator, check_finite
from moola.models.base import regression_targets

if TYPE_CHECKING:
    from moola.models.params import ModelParams

__all__ = ["TABULAR_KINDS", "TabularClassifier", "tabular_params"]

TABULAR_KINDS: tuple[str, ...] = ("logistic_regression", "random_forest", "gradient_boosting")


def _build(
    kind: str, random_state: int, params: dict[str, Any], task: str = "classification"
) -> BaseEstimator:
    """The unfitted library model of ``kind`` for ``task``, defaults overridden by
    ``params`` (a regression is LightGBM's ``LGBMRegressor``)."""
    if task == "regression" and kind != "gradient_boosting":
        raise ConfigError(
            f"{kind} does not support task='regression' (it is a classifier); use "
            "gradient_boosting (LightGBM, alias lightgbm), bilstm or transformer for a "
            "regression target."
        )
    if kind == "logistic_regression":
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        model: BaseEstimator = LogisticRegression(
            class_weight="balanced", max_iter=2_000, random_state=random_state
        )
    elif kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(
            n_estimators=300, class_weight="balanced", n_jobs=1, random_state=random_state
        )
    elif kind == "gradient_boosting":
        from lightgbm import LGBMClassifier, LGBMRegressor

        model = (LGBMRegressor if task == "regression" else LGBMClassifier)(
            n_estimators=200,
            learning_rate=0.05,
            num_leaves=15,
            min_child_samples=5,
            verbose=-1,
            deterministic=True,
            force_col_wise=True,  # LightGBM's determinism needs a fixed histogram layout
            n_jobs=1,
            random_state=random_state,
        )
    else:
        close = difflib.get_close_matches(str(kind), TABULAR_KINDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"TabularClassifier: unknown kind {kind!r}.{hint} Choose one of {list(TABULAR_KINDS)}."
        )
    _set_params(model, kind, params)
    if kind == "logistic_regression":
        return Pipeline([("scale", StandardScaler()), ("model", model)])
    return model


def _set_params(model: BaseEstimator, kind: str, params: dict[str, Any]) -> None:
    """Apply user parameters; unknown names get a 'did you mean' from the model's own list."""
    known = model.get_params(deep=False)
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{kind}: unknown parameter '{key}'.{hint} It takes: {', '.join(sorted(known))}."
            )
    try:
        model.set_params(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{kind}: bad parameter value ({exc}).") from exc


_Positive = Annotated[float, Field(gt=0)]
_NonNegative = Annotated[float, Field(ge=0)]
_Fraction = Annotated[float, Field(gt=0, le=1)]
_Count = Annotated[int, Field(ge=1)]

#: Typed, bounded library parameters per kind (the ones a search space tunes); the other
#: library parameters are fields too, checked by the library's own constraints.
_TYPED: dict[str, dict[str, Any]] = {
    "logistic_regression": {"C": _Positive, "max_iter": _Count, "tol": _Positive},
    "random_forest": {
        "n_estimators": _Count,
        "max_depth": _Count | None,
        "ccp_alpha": _NonNegative,
        "bootstrap": bool,
    },
    "gradient_boosting": {
        "n_estimators": _Count,
        "learning_rate": _Positive,
        "num_leaves": Annotated[int, Field(ge=2, le=131_072)],
        "max_depth": int,  # <= 0: no limit
        "min_child_samples": Annotated[int, Field(ge=0)],
        "min_child_weight": _NonNegative,
        "min_split_gain": _NonNegative,
        "subsample": _Fraction,
        "subsample_freq": Annotated[int, Field(ge=0)],
        "colsample_bytree": _Fraction,
        "reg_alpha": _NonNegative,
        "reg_lambda": _NonNegative,
    },
}


def _library_model(model: BaseEstimator) -> BaseEstimator:
    """The classifier inside ``model`` (the last step of a pipeline)."""
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def tabular_params(model_name: str, fixed: Any = None) -> type[ModelParams]:
    """The ``Params`` model of tabular kind ``model_name`` (see the module docstring).

    ``kind`` is fixed to the kind; ``random_state``, ``n_classes`` and ``task`` (the kinds the
    card lists) are the ``TabularClassifier``'s own; every other field is a parameter of
    the library model with the default moola gives it.
    """
    from moola.models.params import NClasses, Seed, from_signature
    from moola.models.registry import require_active

    kind = model_name
    tasks = require_active(kind).tasks
    library = _library_model(_build(kind, 0, {})).get_params(deep=False)
    library.pop("random_state")
    typed = _TYPED[kind]
    extra = {key: (typed.get(key, Any), default) for key, default in library.items()}

    def library_constraints(params: Any) -> Any:
        """scikit-learn's own checks of every library parameter, without fitting."""
        model = _library_model(
            _build(kind, params.random_state, {k: getattr(params, k) for k in library})
        )
        if kind != "gradient_boosting":  # LightGBM declares no constraints: it checks at fit
            model._validate_params()
        return params

    return from_signature(
        kind,
        TabularClassifier,
        {"random_state": Seed, "n_classes": NClasses, "task": Literal[tasks]},
        fixed={"kind": kind},
        extra_fields=extra,
        validators=[library_constraints, _no_classes_for_regression],
    )


def _no_classes_for_regression(params: Any) -> Any:
    if params.task == "regression" and params.n_classes is not None:
        raise ValueError(
            f"n_classes={params.n_classes} is for classification, but task='regression'; drop it"
        )
    return params


class TabularClassifier(SklearnEstimator):
    """A model on ``(N, F)`` features: logistic regression, random forest or LightGBM (which
    also learns ``task="regression"``).

    Parameters
    ----------
    kind : str, default "logistic_regression"
        One of ``TABULAR_KINDS``; the registry sets it from the model name.
    random_state : int, default 0
        Seed of the underlying model (same seed and data give the same probabilities).
    n_classes : int or None, default None
        Number of classes K; ``None`` takes ``max(y) + 1``. Set it when a training fold
        may miss the highest class, so every fold predicts K columns.
    task : {"classification", "regression"}, default "classification"
        ``"regression"`` (``gradient_boosting`` only): float targets, ``predict`` values.
    **params
        Passed to the underlying model (``LogisticRegression``, ``RandomForestClassifier``
        or ``LGBMClassifier``), overriding moola's defaults.
    """

    input_kind = "tabular"

    def __init__(
        self,
        kind: str = "logistic_regression",
        *,
        random_state: int = 0,
        n_classes: int | None = None,
        task: str = "classification",
        **params: Any,
    ) -> None:
        if task != "classification":  # stored only when set: older files lack it
            params["task"] = task
        super().__init__(kind=kind, random_state=random_state, n_classes=n_classes, **params)

    @property
    def name(self) -> str:  # the registry name is the kind
        """Registry name of this model: its ``kind``."""
        return str(self.params["kind"])

    def fit(
        self,
        X: np.ndarray | pd.DataFrame,
        y: np.ndarray,
        *,
        X_val: np.ndarray | pd.DataFrame | None = None,
        y_val: np.ndarray | None = None,
    ) -> TabularClassifier:
        """Fit on features ``X`` (N, F) and class indices ``y`` (N,) (a regression: float
        targets ``(N,)`` or ``(N, K)``); validation is ignored."""
        names = [str(c) for c in X.columns] if isinstance(X, pd.DataFrame) else None
        values = self._matrix(X, "X")
        extra = {
            k: v
            for k, v in self.params.items()
            if k not in ("kind", "random_state", "n_classes", "task")
        }
        kind, seed, task = self.params["kind"], self.params["random_state"], self.task
        if task not in ("classification", "regression"):
            raise ConfigError(
                f"{self.name}: task={task!r} is not one a tabular model learns; use "
                "'classification' or 'regression' (gradient_boosting only)."
            )
        if task == "regression":
            targets = regression_targets(y, len(values), f"{self.name}: y")
            boosters = []
            for column in range(targets.shape[1]):
                model = _build(kind, seed, extra, task)
                with params_checked_by_library(self.name, extra):
                    model.fit(values, targets[:, column])
                boosters.append(model.booster_)
            self.model_ = boosters
            self.n_classes_ = 0
            self.n_targets_ = targets.shape[1]
            self.target_ndim_ = np.ndim(y)
        else:
            labels = self._labels(y, len(values))
            model = _build(kind, seed, extra)
            with params_checked_by_library(self.name, extra):
                model.fit(values, labels)
            self.model_ = model
        self.feature_names_ = names
        self.n_features_in_ = values.shape[1]
        return self

    def predict(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Class indices ``(N,)`` int64, or a regression's values ``(N,)`` / ``(N, K)``
        float64 (shaped like the training targets)."""
        if self.task != "regression":
            return super().predict(X)
        values = self._checked(X)
        out = np.stack([b.predict(values) for b in self.model_], axis=1).astype(np.float64)
        return out[:, 0] if self.target_ndim_ == 1 else out

    def predict_proba(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Class probabilities ``(N, K)`` float64, columns in class-index order."""
        if self.task == "regression":
            raise ConfigError(
                f"{self.name} was fitted with task='regression': it is a regressor and has no "
                "class probabilities; call predict(X) for its values."
            )
        values = self._checked(X)
        return self._full_proba(self.model_.predict_proba(values), self.model_.classes_)

    def _checked(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """``X`` as the fitted model's feature matrix, or a ``ConfigError`` naming both widths."""
        self._require_fitted()
        values = self._matrix(self._aligned(X), "X")
        if values.shape[1] != self.n_features_in_:
            raise ConfigError(
                f"{self.name}: X has {values.shape[1]} features but the model was fitted on "
                f"{self.n_features_in_}; give it the same feature columns."
            )
        return values

    def _aligned(self, X: np.ndarray | pd.DataFrame) -> np.ndarray | pd.DataFrame:
        """A DataFrame reordered to the training columns; other inputs unchanged."""
        if not isinstance(X, pd.DataFrame) or self.feature_names_ is None:
            return X
        given = [str(c) for c in X.columns]
        missing = [c for c in self.feature_names_ if c not in given]
        extra = [c for c in given if c not in self.feature_names_]
        if missing or extra:
            raise ConfigError(
                f"{self.name}: X's columns differ from the training features: missing "
                f"{missing}, unexpected {extra}. Build X with the same feature set."
            )
        return X.set_axis(given, axis=1)[self.feature_names_]

    def _matrix(self, X: np.ndarray | pd.DataFrame, what: str) -> np.ndarray:
        """``X`` as a finite 2-D float64 array, or a ``ConfigError`` saying what is wrong."""
        if isinstance(X, pd.DataFrame):
            non_numeric = [
                str(c) for c, t in X.dtypes.items() if not pd.api.types.is_numeric_dtype(t)
            ]
            if non_numeric:
                raise ConfigError(
                    f"{self.name}: {what} has non-numeric columns {non_numeric}; tabular "
                    "models take numeric features only."
                )
        values = np.asarray(X, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] == 0:
            raise ConfigError(
                f"{self.name}: {what} must be 2-D (N samples, F features); got shape "
                f"{values.shape}. Windows (N, T, D) go to a sequence model, or summarise "
                "them first (moola.features.window.price_action_features)."
            )
        check_finite(values, f"{self.name}: {what}")
        return values
