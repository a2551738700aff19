"""A linear probe on a frozen foundation model: the honest test of its representations.

``fm_probe`` embeds each window with a pretrained backbone read from a local folder
(``moola.models.foundation``: Chronos-Bolt, Kronos, TimesFM 2.5), never updates it, and fits
StandardScaler + LogisticRegression (L2, balanced classes) on the embeddings, the same
classifier head as MiniRocket's. Put beside moola's own pretrained encoder and a model
trained from scratch on the same purged folds, it answers the question the field keeps
asking: do generic or financial foundation models know anything about *these* markets'
patterns?

The backbone is not saved in the model file (it is the user's, often hundreds of MB):
the file records its folder and the content hash read at fit (``backbone_sha256_``; a run
also records it in its manifest's parameters), and prediction reloads the folder and
refuses it if the hash differs. Windows are
the raw OHLC bars by default (the card's input view), which the backbones expect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field

from moola.core.errors import ConfigError
from moola.models._params import non_default, params_checked_by_library
from moola.models._persist import SklearnEstimator, check_finite
from moola.models.linear import scaled_logistic

if TYPE_CHECKING:
    from moola.models.foundation.base import Backbone
    from moola.models.params import ModelParams

__all__ = ["FoundationProbe", "fm_probe_params"]


class FoundationProbe(SklearnEstimator):
    """Frozen backbone embeddings + StandardScaler + LogisticRegression on ``(N, T, C)``.

    Parameters
    ----------
    backbone : "chronos", "kronos" or "timesfm", default "chronos"
        Which adapter reads the folder (``moola.models.foundation.BACKBONES``).
    path : str
        Folder of the backbone's weights (required; see ``BACKBONES[kind].download_hint``).
    backbone_sha256 : str or None, default None
        Content hash of ``path`` (``directory_sha256``) the folder must have; None accepts
        what is there at fit (and records it), after which the fitted hash is required.
    C : float, default 1.0
        Inverse L2 strength of the logistic regression.
    class_weight : "balanced" or None, default "balanced"
    random_state : int, default 0
    n_classes : int or None, default None
    """

    name = "fm_probe"
    input_kind = "sequence"

    def __init__(
        self,
        backbone: str = "chronos",
        *,
        path: str = "",
        backbone_sha256: str | None = None,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        random_state: int = 0,
        n_classes: int | None = None,
    ) -> None:
        super().__init__(
            backbone=backbone,
            path=path,
            backbone_sha256=backbone_sha256,
            C=C,
            class_weight=class_weight,
            random_state=random_state,
            n_classes=n_classes,
        )
        self._backbone: Backbone | None = None

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> FoundationProbe:
        """Embed windows ``X`` (N, T, C) with the frozen backbone and fit the probe;
        validation data is not used (a linear probe has nothing to stop early)."""
        features = self._embeddings(X)
        labels = self._labels(y, len(features))
        p = self.params
        with params_checked_by_library(self.name, non_default(type(self), p)):
            classifier = scaled_logistic(
                C=p["C"], class_weight=p["class_weight"], random_state=p["random_state"]
            )
            classifier.fit(features, labels)
        self.classifier_ = classifier
        self.backbone_sha256_ = self._loaded().sha256
        self.n_features_in_ = int(np.asarray(X).shape[2])
        self.n_timepoints_ = int(np.asarray(X).shape[1])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, K)`` float64 for windows of the training shape."""
        self._require_fitted()
        shape = np.asarray(X).shape
        if len(shape) != 3 or shape[1:] != (self.n_timepoints_, self.n_features_in_):
            raise ConfigError(
                f"fm_probe: X has shape {shape} but the probe was fitted on windows of "
                f"{self.n_timepoints_} steps x {self.n_features_in_} channels."
            )
        proba = self.classifier_.predict_proba(self._embeddings(X))
        return self._full_proba(proba, self.classifier_.classes_)

    def embed(self, X: np.ndarray) -> np.ndarray:
        """The frozen backbone's embeddings ``(N, E)`` of windows ``X`` (what the probe reads)."""
        return self._embeddings(X)

    def _embeddings(self, X: Any) -> np.ndarray:
        features = self._loaded().embed(np.asarray(X))
        check_finite(features, "fm_probe: backbone embeddings")
        return features

    def _loaded(self) -> Backbone:
        """The backbone, read once, its folder's hash checked against the fitted (or given)
        one."""
        if self._backbone is None:
            from moola.models.foundation.base import backbone_for

            fitted = getattr(self, "backbone_sha256_", None)
            self._backbone = backbone_for(self.name, self.params, fitted)
        return self._backbone


def fm_probe_params(model_name: str, fixed: Any = None) -> type[ModelParams]:
    """The ``Params`` model of ``fm_probe`` (``moola.models.params``)."""
    from moola.models.params import NClasses, Seed, from_signature

    return from_signature(
        model_name,
        FoundationProbe,
        {
            "backbone": Literal["chronos", "kronos", "timesfm"],
            "path": str,  # required at fit (an empty path is refused naming it)
            "backbone_sha256": Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")] | None,
            "C": Annotated[float, Field(gt=0)],
            "class_weight": Literal["balanced"] | None,
            "random_state": Seed,
            "n_classes": NClasses,
        },
    )
