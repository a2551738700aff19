"""Zero-shot forecasts of a foundation model as an ensemble member: ``fm_forecast``.

A forecasting backbone (``moola.models.foundation``: Chronos-Bolt, TimesFM 2.5) read from
a local folder forecasts the deciles of the next ``horizon`` closes of each window (its
last channel; the card's ``ohlc`` input view ends with the close). Nothing is learned: the
forecast is turned into the task's answer by arithmetic alone, so it runs under the same
purged out-of-fold protocol as any model (each fold "fits" in no time and predicts the
test windows from their own bars) and its OOF probabilities can be a stacking base run:
the honest test of whether a generic forecaster knows anything a trained model does not.

- ``task="regression"``: the median forecast return ``close[t + h] / close[t] - 1`` over
  the next ``horizon`` bars (targets ``(N,)``); targets ``(N, K)`` are read as multi-step
  returns over the next 1..K bars, column ``j`` the median return to bar ``t + j + 1``.
- ``task="classification"`` (two classes, class 1 = up): ``P(up) = 1 - F(0)``, where
  ``F`` is the forecast return's CDF over the next ``horizon`` bars, interpolated linearly
  between the deciles and held at the outermost decile beyond them (0.1 / 0.9: the model
  says nothing about its tails, so no probability is more certain than 0.9 from it).

``fit`` checks the shapes and labels, records the classes (or target width), the window
shape and the weights' content hash (as ``fm_probe`` does: the folder is the user's and is
not saved in the model file; prediction reloads it and refuses changed weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field

from moola.core.errors import ConfigError
from moola.models._persist import SklearnEstimator, check_finite
from moola.models.base import regression_targets

if TYPE_CHECKING:
    from moola.models.foundation.base import Backbone
    from moola.models.params import ModelParams

__all__ = ["DECILES", "FoundationForecaster", "fm_forecast_params", "prob_up"]

#: The levels read from the backbone (both forecasting kinds give them exactly).
DECILES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def prob_up(returns: np.ndarray, levels: tuple[float, ...] = DECILES) -> np.ndarray:
    """``P(return > 0)`` per row of forecast return quantiles ``returns`` ``(N, L)`` at
    ``levels``: one minus the CDF at 0, interpolated linearly between the levels and held
    at the outermost level beyond them."""
    values = np.sort(np.asarray(returns, dtype=np.float64), axis=1)  # monotone for interp
    q = np.asarray(levels, dtype=np.float64)
    cdf = np.array([np.interp(0.0, row, q, left=q[0], right=q[-1]) for row in values])
    return 1.0 - cdf


class FoundationForecaster(SklearnEstimator):
    """A frozen forecasting backbone's zero-shot quantiles as probabilities or values.

    Parameters
    ----------
    backbone : "chronos" or "timesfm", default "chronos"
        Which adapter reads the folder (``moola.models.foundation.BACKBONES``).
    path : str
        Folder of the backbone's weights (required).
    backbone_sha256 : str or None, default None
        Content hash the folder must have; None accepts what is there at fit (and
        records it), after which the fitted hash is required.
    horizon : int, default 1
        Bars ahead whose cumulative return is forecast.
    task : {"classification", "regression"}, default "classification"
    n_classes : int or None, default None
        Must be 2 (or None) for classification: class 1 = up, class 0 = not up.
    random_state : int, default 0
        Unused (the forecast is deterministic); kept so every model takes a seed.
    """

    name = "fm_forecast"
    input_kind = "sequence"

    def __init__(
        self,
        backbone: str = "chronos",
        *,
        path: str = "",
        backbone_sha256: str | None = None,
        horizon: int = 1,
        task: str = "classification",
        n_classes: int | None = None,
        random_state: int = 0,
    ) -> None:
        params: dict[str, Any] = {
            "backbone": backbone,
            "path": path,
            "backbone_sha256": backbone_sha256,
            "horizon": horizon,
            "n_classes": n_classes,
            "random_state": random_state,
        }
        if task != "classification":  # stored only when set, as tabular models do
            params["task"] = task
        super().__init__(**params)
        self._backbone: Backbone | None = None

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> FoundationForecaster:
        """Check ``X`` (N, T, C) and ``y``, record the classes or target width and the
        weights' hash; nothing is trained."""
        shape = np.asarray(X).shape
        if len(shape) != 3 or shape[0] == 0:
            raise ConfigError(
                f"fm_forecast: X must be windows shaped (N, T, C); got shape {shape}."
            )
        if self.task == "regression":
            targets = regression_targets(y, shape[0], "fm_forecast: y")
            self.n_classes_ = 0
            self.n_targets_ = int(targets.shape[1])
            self.target_ndim_ = int(np.ndim(y))
        elif self.task == "classification":
            if self.params["n_classes"] not in (None, 2):
                raise ConfigError(
                    f"fm_forecast classifies up (1) vs not up (0); n_classes must be 2, got "
                    f"{self.params['n_classes']}."
                )
            self._labels(y, shape[0], n_classes=2)
        else:
            raise ConfigError(
                f"fm_forecast: task={self.task!r}; use 'classification' or 'regression'."
            )
        self.backbone_sha256_ = self._loaded().sha256
        self.n_timepoints_, self.n_features_in_ = int(shape[1]), int(shape[2])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(N, 2)``: P(not up), P(up) over the next ``horizon`` bars."""
        self._require_fitted()
        if self.task == "regression":
            raise ConfigError(
                "fm_forecast was fitted with task='regression': it has no class "
                "probabilities; call predict(X) for its forecast returns."
            )
        horizon = int(self.params["horizon"])
        returns = self.forecast_returns(X, horizon)[:, horizon - 1, :]
        up = prob_up(returns)
        return np.column_stack([1.0 - up, up])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class indices (classification) or median forecast returns (regression)."""
        if self.task != "regression":
            return super().predict(X)
        self._require_fitted()
        median = DECILES.index(0.5)
        if self.target_ndim_ == 1:
            horizon = int(self.params["horizon"])
            return self.forecast_returns(X, horizon)[:, horizon - 1, median].copy()
        steps = self.n_targets_
        return self.forecast_returns(X, steps)[:, :steps, median].copy()

    def forecast_returns(self, X: Any, horizon: int) -> np.ndarray:
        """Deciles ``(N, horizon, 9)`` of the cumulative return to each of the next
        ``horizon`` bars: forecast close / last close - 1."""
        values = np.asarray(X, dtype=np.float64)
        if hasattr(self, "n_timepoints_") and values.shape[1:] != (
            self.n_timepoints_,
            self.n_features_in_,
        ):
            raise ConfigError(
                f"fm_forecast: X has shape {values.shape} but was fitted on windows of "
                f"{self.n_timepoints_} steps x {self.n_features_in_} channels."
            )
        last = values[:, -1, -1]
        if not (np.isfinite(last).all() and (last > 0).all()):
            raise ConfigError(
                "fm_forecast: the windows' last channel must be a positive price (the close; "
                "use inputs='ohlc'); found values <= 0 or not finite."
            )
        quantiles = self._loaded().forecast(values, horizon, DECILES)
        returns = quantiles / last[:, None, None] - 1.0
        check_finite(returns.reshape(len(returns), -1), "fm_forecast: forecast returns")
        return returns

    def _loaded(self) -> Backbone:
        if self._backbone is None:
            from moola.models.foundation.base import backbone_for

            fitted = getattr(self, "backbone_sha256_", None)
            self._backbone = backbone_for(self.name, self.params, fitted)
        return self._backbone


def fm_forecast_params(model_name: str, fixed: Any = None) -> type[ModelParams]:
    """The ``Params`` model of ``fm_forecast`` (``moola.models.params``)."""
    from moola.models.params import NClasses, Seed, from_signature

    return from_signature(
        model_name,
        FoundationForecaster,
        {
            "backbone": Literal["chronos", "timesfm"],
            "path": str,
            "backbone_sha256": Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")] | None,
            "horizon": Annotated[int, Field(ge=1, le=512)],
            "task": Literal["classification", "regression"],
            "n_classes": NClasses,
            "random_state": Seed,
        },
    )
