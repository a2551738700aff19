"""Shared machinery of the scikit-learn-based estimators: one saved file, one label rule.

``save_estimator`` writes a fitted estimator to ONE file, a pickled dict::

    {"format": "moola-model", "format_version": 1, "model": <registry name>,
     "class": <module.QualName>, "params": <constructor params>,
     "n_features_in": ..., "classes": [0, ..., K-1], "moola_version": ...,
     "library_versions": {"sklearn": ..., "lightgbm": ..., "aeon": ..., "numpy": ...},
     "state": {<learned attributes, the ones ending in "_">}}

``load_estimator`` rebuilds it and refuses, with a ``CheckpointError`` naming the file,
anything it cannot trust to predict: a file that is not a moola model, a corrupt or
truncated one, one saved by another model class, or one of a newer format. Files written
with other library versions load with a warning naming them, since scikit-learn and
LightGBM do not promise identical predictions across versions.

Pickle runs code while it loads: only load model files you (or your pipeline) wrote.

Labels follow one convention for every estimator here (``SklearnEstimator``): integer
class indices ``0..K-1``, with K from the ``n_classes`` parameter or ``max(y) + 1``.
``predict_proba`` always returns K columns in index order; a class absent from a training
fold gets probability 0. Fitting on fewer than two distinct classes is refused.
"""

from __future__ import annotations

import pickle
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from moola.core.atomic import atomic_write_bytes
from moola.core.errors import CheckpointError, ConfigError
from moola.models.base import Estimator

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SklearnEstimator",
    "check_finite",
    "library_versions",
    "load_estimator",
    "save_estimator",
]

FORMAT = "moola-model"
FORMAT_VERSION = 1
#: Distribution names of the libraries whose versions a saved model records.
_LIBRARIES = {"sklearn": "scikit-learn", "lightgbm": "lightgbm", "aeon": "aeon", "numpy": "numpy"}
_PICKLE_PROTOCOL = 5

E = TypeVar("E", bound=Estimator)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a saved model depends on ("missing" if absent)."""
    found = {}
    for key, distribution in _LIBRARIES.items():
        try:
            found[key] = version(distribution)
        except PackageNotFoundError:
            found[key] = "missing"
    return found


def _moola_version() -> str:
    from moola import __version__

    return __version__


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def save_estimator(estimator: Estimator, path: str | Path) -> None:
    """Write fitted ``estimator`` to ``path`` (one file, replaced atomically if present).

    Raises ``ConfigError`` if the estimator has not been fitted.
    """
    state = {key: value for key, value in vars(estimator).items() if key.endswith("_")}
    if "n_features_in_" not in state or "n_classes_" not in state:
        raise ConfigError(
            f"Cannot save {type(estimator).__name__} to {path}: it is not fitted. "
            "Call fit(X, y) first."
        )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": estimator.name,
        "class": _qualified_name(type(estimator)),
        "params": estimator.get_params(),
        "n_features_in": state["n_features_in_"],
        "classes": list(range(state["n_classes_"])),
        "moola_version": _moola_version(),
        "library_versions": library_versions(),
        "state": state,
    }
    atomic_write_bytes(path, pickle.dumps(payload, protocol=_PICKLE_PROTOCOL), overwrite=True)


def load_estimator(cls: type[E], path: str | Path) -> E:
    """Rebuild a ``cls`` saved by ``save_estimator`` at ``path``.

    Raises ``CheckpointError`` (naming ``path``) for a missing file, a file that is not a
    moola model, a corrupt or truncated one, one saved by another class or one in a newer
    format; warns when it was saved with other library versions.
    """
    path = Path(path)
    payload = _read_payload(path)
    _check_header(payload, cls, path)
    _warn_on_version_change(payload["library_versions"], path)
    state = payload["state"]
    if not isinstance(state, dict) or "n_features_in_" not in state:
        raise CheckpointError(f"Model file {path} holds no fitted state; save a fitted model.")
    estimator = cls(**payload["params"])
    vars(estimator).update(state)
    return estimator


def _read_payload(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"Model file {path} does not exist (or is not a file).")
    data = path.read_bytes()
    if not data.startswith(b"\x80"):  # every pickle of protocol >= 2 starts with PROTO
        raise CheckpointError(
            f"{path} is not a moola model file (it is not a pickle written by "
            "Estimator.save). Point to the file a moola model was saved to."
        )
    try:
        payload = pickle.loads(data)
    except Exception as exc:  # truncated/corrupt bytes, or classes that no longer exist
        raise CheckpointError(
            f"Model file {path} cannot be read: it is corrupt, truncated, or refers to code "
            f"this installation lacks ({type(exc).__name__}: {exc}). Save the model again."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a moola model file (no 'format': '{FORMAT}' header); it was not "
            "written by Estimator.save."
        )
    missing = [key for key in ("format_version", "class", "params", "state") if key not in payload]
    if missing:
        raise CheckpointError(f"Model file {path} is incomplete: it lacks {missing}.")
    return payload


def _check_header(payload: dict[str, Any], cls: type, path: Path) -> None:
    saved_version = payload["format_version"]
    if not isinstance(saved_version, int) or saved_version > FORMAT_VERSION:
        raise CheckpointError(
            f"Model file {path} has format version {saved_version!r}, newer than the "
            f"{FORMAT_VERSION} this moola ({_moola_version()}) reads; upgrade moola to load it."
        )
    expected = _qualified_name(cls)
    if payload["class"] != expected:
        raise CheckpointError(
            f"Model file {path} holds a '{payload.get('model')}' model saved by "
            f"{payload['class']}, not a {expected}. Load it with that class's load(), or "
            "point to a file saved by this model."
        )


def _warn_on_version_change(saved: Any, path: Path) -> None:
    if not isinstance(saved, dict):
        return
    now = library_versions()
    changed = [
        f"{_LIBRARIES.get(key, key)} {was} (now {now[key]})"
        for key, was in saved.items()
        if key in now and was != now[key]
    ]
    if changed:
        warnings.warn(
            f"Model file {path} was saved with {', '.join(changed)}; predictions may differ "
            "slightly from the saved model's. Retrain to be sure.",
            UserWarning,
            stacklevel=3,
        )


def check_finite(values: np.ndarray, what: str) -> None:
    """Raise ``ConfigError`` if ``values`` holds NaN or infinity, naming the first rows."""
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
        raise ConfigError(
            f"{what} holds {int(bad.sum())} NaN/infinite values (rows {rows[:5].tolist()}"
            f"{' ...' if len(rows) > 5 else ''}); drop or fill them before fitting/predicting."
        )


class SklearnEstimator(Estimator):
    """Base of estimators whose state is picklable: the label rule, save and load.

    Subclasses call ``_labels`` in ``fit`` and ``_full_proba`` in ``predict_proba``.
    """

    def _labels(self, y: Any, n_samples: int, n_classes: int | None = None) -> np.ndarray:
        """Validated labels as int64; sets ``n_classes_``. ``y`` must index classes 0..K-1.

        K is ``n_classes`` if given, else the ``n_classes`` parameter, else ``max(y) + 1``.
        """
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != n_samples:
            raise ConfigError(
                f"{type(self).__name__}.fit: y must be 1-D with one label per sample "
                f"({n_samples}); got shape {labels.shape}."
            )
        if labels.dtype.kind not in "iub" and not (
            labels.dtype.kind == "f" and np.all(np.mod(labels, 1) == 0)
        ):
            raise ConfigError(
                f"{type(self).__name__}.fit: y must hold integer class indices 0..K-1; got "
                f"dtype {labels.dtype}. Map labels to indices first (e.g. np.unique(..., "
                "return_inverse=True))."
            )
        labels = labels.astype(np.int64)
        if n_samples and labels.min() < 0:
            raise ConfigError(
                f"{type(self).__name__}.fit: y holds negative class index {labels.min()}; "
                "class indices run 0..K-1."
            )
        present = np.unique(labels)
        if len(present) < 2:
            raise ConfigError(
                f"{type(self).__name__}.fit: y holds {len(present)} distinct class(es) "
                f"({present.tolist()}) in {n_samples} samples; a classifier needs at least 2. "
                "Use a split (or fold) whose training part contains every class."
            )
        if n_classes is None:
            n_classes = self.params.get("n_classes")
        if n_classes is None:
            n_classes = int(present.max()) + 1
        elif present.max() >= n_classes:
            raise ConfigError(
                f"{type(self).__name__}.fit: y holds class index {present.max()} but "
                f"n_classes={n_classes}; class indices run 0..n_classes-1."
            )
        self.n_classes_ = int(n_classes)
        return labels

    def _full_proba(self, proba: np.ndarray, fitted_classes: np.ndarray) -> np.ndarray:
        """``(N, len(fitted_classes))`` -> ``(N, K)`` float64, absent classes at 0.

        Rows are renormalised in float64: a classifier fitted on float32 features (e.g.
        MiniRocket's) returns float32 probabilities whose rows miss 1 by ~1e-7.
        """
        out = np.zeros((len(proba), self.n_classes_), dtype=np.float64)
        out[:, np.asarray(fitted_classes, dtype=np.int64)] = proba
        return out / out.sum(axis=1, keepdims=True)

    def _require_fitted(self) -> None:
        if not hasattr(self, "n_classes_"):
            raise ConfigError(f"{type(self).__name__} is not fitted; call fit(X, y) first.")

    def save(self, path: str | Path) -> None:
        """Write the fitted model to one file (see ``moola.models._persist``)."""
        save_estimator(self, path)

    @classmethod
    def load(cls, path: str | Path) -> SklearnEstimator:
        """Rebuild a model written by ``save``; ``CheckpointError`` if the file is unusable."""
        return load_estimator(cls, path)
