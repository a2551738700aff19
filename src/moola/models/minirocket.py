"""MiniRocket: random convolution features + a linear classifier, the fixed-feature control.

MiniRocket (Dempster et al., 2021) turns each series into thousands of "proportion of
positive values" features from fixed-weight, dilated convolutions whose biases are drawn
from the training data. With a linear model on top it is a strong, fast time-series
classifier that learns nothing deep, so a learned sequence model that cannot beat it on
the same folds has not earned its complexity.

The transform is aeon's (``aeon.transformations.collection.convolution_based.MiniRocket``),
fitted on the training windows only. The classifier is StandardScaler + LogisticRegression
(L2, ``C=0.1``, ``class_weight="balanced"``) rather than the paper's RidgeClassifierCV:
moola's pipeline calibrates, stacks and gates on ``predict_proba``, which a ridge
classifier does not have, and its internal leave-one-out choice of alpha is not
chronological. Strong L2 keeps the linear model sane with ~10,000 features and a few
hundred windows.

Input is moola's ``(N, T, D)`` (e.g. ``relative_windows(X)``, D = 11), transposed here to
aeon's ``(N, D, T)``; MiniRocket's kernels span 9 steps, so T must be at least 9, and a
fitted model predicts windows of its training length and channel count only.

aeon runs the transform on numba's parallel threads. Numba's default OpenMP layer brings
a second OpenMP runtime beside torch's, and in one process the two pools spin against each
other: torch training after MiniRocket ran up to ~40x slower on 2 cores. So unless the user
chose one (``NUMBA_THREADING_LAYER``), numba is told to use its own "workqueue" threads.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field

from moola.core.errors import ConfigError
from moola.models._params import non_default, params_checked_by_library
from moola.models._persist import SklearnEstimator, check_finite
from moola.models.linear import scaled_logistic

if TYPE_CHECKING:
    from moola.models.params import ModelParams

__all__ = ["MIN_TIMEPOINTS", "MiniRocketClassifier", "minirocket_params"]

#: MiniRocket's kernels have length 9.
MIN_TIMEPOINTS = 9


def use_workqueue_threads() -> None:
    """Run numba's parallel code on its "workqueue" threads unless the user chose a layer;
    must happen before numba's first parallel launch (later it has no effect)."""
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"


class MiniRocketClassifier(SklearnEstimator):
    """aeon's MiniRocket transform + StandardScaler + LogisticRegression on ``(N, T, D)``.

    Parameters
    ----------
    n_kernels : int, default 10_000
        Number of features to generate (aeon rounds down to a multiple of 84).
    max_dilations_per_kernel : int, default 32
        Largest number of dilations per kernel.
    C : float, default 0.1
        Inverse L2 strength of the logistic regression.
    class_weight : "balanced" or None, default "balanced"
        Reweights classes inversely to their frequency (minority classes count fully).
    random_state : int, default 0
        Seed of the transform's channel and bias sampling (and of the classifier).
    n_jobs : int, default 1
        Threads for the transform.
    n_classes : int or None, default None
        Number of classes K; ``None`` takes ``max(y) + 1``.
    """

    name = "minirocket"
    input_kind = "sequence"

    def __init__(
        self,
        n_kernels: int = 10_000,
        *,
        max_dilations_per_kernel: int = 32,
        C: float = 0.1,
        class_weight: str | None = "balanced",
        random_state: int = 0,
        n_jobs: int = 1,
        n_classes: int | None = None,
    ) -> None:
        super().__init__(
            n_kernels=n_kernels,
            max_dilations_per_kernel=max_dilations_per_kernel,
            C=C,
            class_weight=class_weight,
            random_state=random_state,
            n_jobs=n_jobs,
            n_classes=n_classes,
        )

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> MiniRocketClassifier:
        """Fit the transform and classifier on windows ``X`` (N, T, D); validation is ignored.

        MiniRocket has nothing to early-stop, so ``X_val``/``y_val`` are not used.
        """
        from aeon.transformations.collection.convolution_based import MiniRocket

        series = self._series(X)
        labels = self._labels(y, len(series))
        p = self.params
        with params_checked_by_library(self.name, non_default(type(self), p)):
            if int(p["n_kernels"]) < 1:
                raise ConfigError(f"minirocket: n_kernels must be >= 1; got {p['n_kernels']}.")
            transform = MiniRocket(
                n_kernels=int(p["n_kernels"]),
                max_dilations_per_kernel=int(p["max_dilations_per_kernel"]),
                n_jobs=int(p["n_jobs"]),
                random_state=int(p["random_state"]),
            )
            features = transform.fit_transform(series)  # (N, n_features)
            classifier = scaled_logistic(
                C=p["C"], class_weight=p["class_weight"], random_state=p["random_state"]
            )
            classifier.fit(features, labels)
        self.transform_ = transform
        self.classifier_ = classifier
        self.n_features_in_ = series.shape[1]  # channels D
        self.n_timepoints_ = series.shape[2]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, K)`` float64 for windows of the training shape."""
        self._require_fitted()
        series = self._series(X)
        if series.shape[1:] != (self.n_features_in_, self.n_timepoints_):
            raise ConfigError(
                f"minirocket: X has windows of {series.shape[2]} steps x {series.shape[1]} "
                f"channels but the model was fitted on {self.n_timepoints_} x "
                f"{self.n_features_in_}; give it windows built the same way."
            )
        features = self.transform_.transform(series)
        proba = self.classifier_.predict_proba(features)
        return self._full_proba(proba, self.classifier_.classes_)

    def _series(self, X: Any) -> np.ndarray:
        """moola's ``(N, T, D)`` as aeon's ``(N, D, T)`` float64, after shape checks."""
        use_workqueue_threads()  # every path into aeon's transform passes here
        values = np.asarray(X, dtype=np.float64)
        if values.ndim != 3:
            raise ConfigError(
                f"minirocket needs windows shaped (N, T, D); got shape {values.shape}. "
                "For (N, T) univariate windows add a channel axis: X[:, :, None]."
            )
        if values.shape[1] < MIN_TIMEPOINTS:
            raise ConfigError(
                f"minirocket needs windows of at least {MIN_TIMEPOINTS} steps (its kernels "
                f"span 9); got T = {values.shape[1]} in shape {values.shape}."
            )
        if values.shape[0] == 0 or values.shape[2] == 0:
            raise ConfigError(f"minirocket: X is empty (shape {values.shape}).")
        check_finite(values, "minirocket: X")
        return np.ascontiguousarray(values.transpose(0, 2, 1))  # (N, D, T)


def minirocket_params(model_name: str, fixed: Any = None) -> type[ModelParams]:
    """The ``Params`` model of ``minirocket``: the classifier's parameters, typed and
    bounded, defaults read from its signature (``moola.models.params``)."""
    from moola.models.params import NClasses, Seed, from_signature

    count = Annotated[int, Field(ge=1)]
    return from_signature(
        model_name,
        MiniRocketClassifier,
        {
            "n_kernels": count,
            "max_dilations_per_kernel": count,
            "C": Annotated[float, Field(gt=0)],
            "class_weight": Literal["balanced"] | None,
            "random_state": Seed,
            "n_jobs": int,
            "n_classes": NClasses,
        },
    )
