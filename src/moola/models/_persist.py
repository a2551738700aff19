"""Shared machinery of the scikit-learn-based estimators: one safe model file, one label rule.

``save_estimator`` writes a fitted estimator to ONE file (``model.bin`` in a run): a zip
archive made by skops (``skops.io.dumps``) holding the learned attributes (the ones
ending in ``_``), plus one more member, ``moola.json``, the moola header::

    {"format": "moola-model", "format_version": 2, "model": <registry name>,
     "class": <module.QualName>, "params": <constructor params>,
     "n_features_in": ..., "classes": [0, ..., K-1], "moola_version": ...,
     "library_versions": {"sklearn": ..., "lightgbm": ..., "aeon": ..., "numpy": ...}}

Why skops and not pickle: run folders are shared between users, and unpickling a file
runs whatever code its author put in it (a crafted ``model.bin`` ran a shell command under
``moola evaluate``). skops describes every object by its type name and builds only the
types the reader trusts. ``load_estimator`` therefore reads the JSON header first and
checks the format and the class before any object is built, then refuses a file naming
any type outside ``TRUSTED_TYPES`` (the scikit-learn, LightGBM, aeon and moola types our
own estimators produce, on top of skops's defaults: builtin containers, numpy arrays and
scikit-learn's public estimators) with a ``CheckpointError`` naming the file and the
types; it never trusts whatever a file declares.

It also refuses, naming the file, anything else it cannot trust to predict: a file that is
not a moola model, a corrupt or truncated one, one saved by another model class, one of a
newer format, and a format-1 file (a pickle, written by moola before this format): those
are converted once, by someone who trusts them, with ``moola runs migrate``. Files
written with other library versions load with a warning naming them, since scikit-learn
and LightGBM do not promise identical predictions across versions.

Labels follow one convention for every estimator here (``SklearnEstimator``): integer
class indices ``0..K-1``, with K from the ``n_classes`` parameter or ``max(y) + 1``.
``predict_proba`` always returns K columns in index order; a class absent from a training
fold gets probability 0. Fitting on fewer than two distinct classes is refused.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
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
    "HEADER_MEMBER",
    "TRUSTED_TYPES",
    "SklearnEstimator",
    "check_finite",
    "is_legacy_pickle",
    "library_versions",
    "load_estimator",
    "model_file_bytes",
    "read_header",
    "save_estimator",
]

FORMAT = "moola-model"
FORMAT_VERSION = 2
#: The zip member holding the moola header (JSON) beside skops's ``schema.json``.
HEADER_MEMBER = "moola.json"
#: Types a model file may name beyond skops's own trusted defaults: exactly what
#: TabularClassifier (random forest trees, LightGBM), MiniRocketClassifier (aeon's
#: transform) and StackingClassifier (a TabularClassifier meta-learner) hold once fitted.
TRUSTED_TYPES: tuple[str, ...] = (
    "aeon.transformations.collection.convolution_based._minirocket.MiniRocket",
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "moola.models.tabular.TabularClassifier",
    "sklearn.tree._tree.Tree",
)
#: Distribution names of the libraries whose versions a saved model records.
_LIBRARIES = {"sklearn": "scikit-learn", "lightgbm": "lightgbm", "aeon": "aeon", "numpy": "numpy"}
_ZIP_MAGIC = b"PK\x03\x04"
_HEADER_LIMIT = 1 << 20  # a header is a few hundred bytes; refuse to parse megabytes of it
_MIGRATE_HINT = (
    "If you trust where it came from, convert its run with `moola runs migrate RUN --trust` "
    "(which unpickles it once, recorded in the journal); otherwise retrain."
)

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


def is_legacy_pickle(data: bytes) -> bool:
    """Whether ``data`` is a pickle (every protocol >= 2 pickle starts with PROTO, 0x80):
    a format-1 model file or an old ``calibrator.pkl``."""
    return data[:1] == b"\x80"


def model_file_bytes(estimator: Estimator) -> bytes:
    """The bytes ``save_estimator`` writes for fitted ``estimator`` (header + skops payload).

    Raises ``ConfigError`` if the estimator has not been fitted or its parameters cannot
    be written as JSON.
    """
    import skops.io as sio

    state = {key: value for key, value in vars(estimator).items() if key.endswith("_")}
    if "n_features_in_" not in state or "n_classes_" not in state:
        raise ConfigError(
            f"Cannot save {type(estimator).__name__}: it is not fitted. Call fit(X, y) first."
        )
    params = estimator.get_params()
    try:
        same = json.loads(json.dumps(params)) == params
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ConfigError(
            f"Cannot save {type(estimator).__name__}: its parameters {params!r} are not plain "
            "JSON values (str, number, bool, None, list, dict with str keys), which a model "
            "file's header records."
        )
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": estimator.name,
        "class": _qualified_name(type(estimator)),
        "params": params,
        "n_features_in": int(state["n_features_in_"]),
        "classes": list(range(int(state["n_classes_"]))),
        "moola_version": _moola_version(),
        "library_versions": library_versions(),
    }
    buffer = io.BytesIO(sio.dumps(state, compression=zipfile.ZIP_DEFLATED))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(HEADER_MEMBER, json.dumps(header, indent=2) + "\n")
    return buffer.getvalue()


def save_estimator(estimator: Estimator, path: str | Path) -> None:
    """Write fitted ``estimator`` to ``path`` (one file, replaced atomically if present).

    Raises ``ConfigError`` if the estimator has not been fitted.
    """
    atomic_write_bytes(path, model_file_bytes(estimator), overwrite=True)


def load_estimator(cls: type[E], path: str | Path) -> E:
    """Rebuild a ``cls`` saved by ``save_estimator`` at ``path``; no code in it runs.

    Raises ``CheckpointError`` (naming ``path``) for a missing file, a file that is not a
    moola model, a corrupt or truncated one, one saved by another class, one in a newer
    or the old pickle format, or one naming a type outside ``TRUSTED_TYPES``; warns when
    it was saved with other library versions.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Model file {path} does not exist (or is not a file).")
    data = path.read_bytes()
    header = read_header(data, path, cls)
    _warn_on_version_change(header.get("library_versions"), path)
    state = _read_state(data, path)
    estimator = cls(**header["params"])
    vars(estimator).update(state)
    return estimator


def read_header(data: bytes, path: Path, cls: type | None = None) -> dict[str, Any]:
    """The checked moola header of model-file bytes ``data`` (read from ``path``).

    Checks the format, the version and (given ``cls``) the class, and that the payload
    names only trusted types, all before any object is built. ``CheckpointError`` names
    ``path`` otherwise.
    """
    if is_legacy_pickle(data):
        raise CheckpointError(
            f"Model file {path} is in moola's old pickle format (format 1), which runs "
            f"whatever code the file holds while it loads; moola no longer reads it. "
            + _MIGRATE_HINT
        )
    if not data.startswith(_ZIP_MAGIC):
        raise CheckpointError(
            f"{path} is not a moola model file (it is not an archive written by "
            "Estimator.save). Point to the file a moola model was saved to."
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo(HEADER_MEMBER)
            if info.file_size > _HEADER_LIMIT:
                raise CheckpointError(f"Model file {path} has an oversized header; refused.")
            header = json.loads(archive.read(info))
    except KeyError:
        raise CheckpointError(
            f"{path} is not a moola model file (it has no {HEADER_MEMBER} header); it was not "
            "written by Estimator.save."
        ) from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CheckpointError(
            f"Model file {path} cannot be read: it is corrupt, truncated or not a moola "
            f"model ({type(exc).__name__}: {exc}). Save the model again."
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a moola model file (no 'format': '{FORMAT}' header); it was not "
            "written by Estimator.save."
        )
    missing = [key for key in ("format_version", "class", "params") if key not in header]
    if missing:
        raise CheckpointError(f"Model file {path} is incomplete: its header lacks {missing}.")
    _check_header(header, cls, path)
    _check_types(data, path)
    return header


def _check_header(header: dict[str, Any], cls: type | None, path: Path) -> None:
    saved_version = header["format_version"]
    if not isinstance(saved_version, int) or saved_version > FORMAT_VERSION:
        raise CheckpointError(
            f"Model file {path} has format version {saved_version!r}, newer than the "
            f"{FORMAT_VERSION} this moola ({_moola_version()}) reads; upgrade moola to load it."
        )
    if saved_version < FORMAT_VERSION:
        raise CheckpointError(
            f"Model file {path} has format version {saved_version}, which this moola no "
            "longer reads. " + _MIGRATE_HINT
        )
    if not isinstance(header["params"], dict):
        raise CheckpointError(f"Model file {path} is corrupt: its 'params' is not an object.")
    if cls is None:
        return
    expected = _qualified_name(cls)
    if header["class"] != expected:
        raise CheckpointError(
            f"Model file {path} holds a '{header.get('model')}' model saved by "
            f"{header['class']}, not a {expected}. Load it with that class's load(), or "
            "point to a file saved by this model."
        )


def _check_types(data: bytes, path: Path) -> None:
    """Refuse a payload naming any type outside ``TRUSTED_TYPES`` (nothing is built)."""
    import skops.io as sio

    try:
        named = sio.get_untrusted_types(data=data)
    except Exception as exc:  # a malformed schema: refuse it as corrupt
        raise CheckpointError(
            f"Model file {path} cannot be read: its payload is corrupt, truncated or not "
            f"moola's ({type(exc).__name__}: {exc}). Save the model again."
        ) from None
    untrusted = sorted(set(named) - set(TRUSTED_TYPES))
    if untrusted:
        raise CheckpointError(
            f"Model file {path} names types moola does not trust to load: {untrusted}. A "
            "moola model holds only scikit-learn, LightGBM, aeon, numpy and moola types; "
            "this file was crafted or written by other software, and was not loaded."
        )


def _read_state(data: bytes, path: Path) -> dict[str, Any]:
    """The learned attributes of a checked model file, built from trusted types only."""
    import skops.io as sio

    try:
        state = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as exc:  # truncated arrays, types this installation lacks, ...
        raise CheckpointError(
            f"Model file {path} cannot be read: it is corrupt, truncated, or refers to code "
            f"this installation lacks ({type(exc).__name__}: {exc}). Save the model again."
        ) from None
    if not isinstance(state, dict) or "n_features_in_" not in state:
        raise CheckpointError(f"Model file {path} holds no fitted state; save a fitted model.")
    bad = [key for key in state if not (isinstance(key, str) and key.endswith("_"))]
    if bad:
        raise CheckpointError(
            f"Model file {path} is corrupt: its state has non-learned entries {bad[:5]}."
        )
    return state


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
    """Base of estimators saved as skops files: the label rule, save and load.

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
