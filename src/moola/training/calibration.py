"""Post-hoc probability calibration: Platt scaling, isotonic regression, temperature scaling.

A calibrator maps a model's probabilities to ones that match observed frequencies. It must
be fitted on predictions the model did not train on and that the final evaluation does not
use: validation predictions or out-of-fold (OOF) predictions. ``fit`` therefore takes an
``origin`` and refuses ``"test"`` with a ``LeakageError``: a calibrator fitted on test
predictions makes the test ECE and log loss meaningless.

Interface: ``fit(proba_or_logits, y, *, origin) -> self`` and ``transform(proba) -> proba``,
``(N, K)`` arrays with labels ``0..K-1``. Binary problems calibrate the positive class
(column 1) and set column 0 to its complement; multi-class Platt and isotonic calibrate each
class one-vs-rest and renormalise the rows (a row that becomes all zeros gets the uniform
distribution), as scikit-learn's ``CalibratedClassifierCV`` does.

Isotonic uses scikit-learn's ``IsotonicRegression``. Platt and temperature scaling are small
scipy fits written here: scikit-learn offers sigmoid calibration only wrapped around an
estimator (``CalibratedClassifierCV``), not on stored probabilities. Platt follows Platt
(1999) and scikit-learn: a logistic fit on the class's log-odds with smoothed targets
``(N+ + 1)/(N+ + 2)`` and ``1/(N- + 2)``, which keeps the fit finite on separable data.
Temperature scaling (Guo et al., 2017) fits one ``T > 0`` minimising the NLL of
``softmax(z / T)`` on logits ``z`` (log-probabilities when given probabilities).

Saving: a fitted calibrator is its fitted parameters, written as JSON
(``save_calibrator`` -> bytes, ``load_calibrator`` <- bytes; ``to_dict``/``from_dict``)::

    {"format": "moola-calibrator", "format_version": 1, "method": "platt",
     "n_classes": K, "origin": "oof", "params": {...}}

with ``params`` ``{"coef": {"<k>": [a, b]}}`` (Platt), ``{"columns": {"<k>":
{"X_thresholds": [...], "y_thresholds": [...], "X_min": .., "X_max": .., "increasing":
..}}}`` (isotonic: the fitted thresholds, from which scikit-learn's own ``__setstate__``
rebuilds the interpolation) or ``{"inputs": "proba", "temperature": T}``. Never a
pickle: run folders are shared, and unpickling a file runs whatever code it holds.
Loading validates every key, type, shape and range and raises ``CheckpointError`` naming
the file, so a hand-edited or crafted file never yields a calibrator that misbehaves later.
"""

from __future__ import annotations

import difflib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, log_softmax, logsumexp
from sklearn.isotonic import IsotonicRegression

from moola.core.errors import CheckpointError, ConfigError, LeakageError

Origin = Literal["validation", "oof"]
Inputs = Literal["proba", "logits"]
ORIGINS: tuple[str, ...] = ("validation", "oof")
_EPS = 1e-12
_LOG_T_BOUNDS = (-5.0, 5.0)  # temperature in [e^-5, e^5] ~ [0.0067, 148]
CALIBRATOR_FORMAT = "moola-calibrator"
CALIBRATOR_FORMAT_VERSION = 1
_DOCUMENT_KEYS = ("format", "format_version", "method", "n_classes", "origin", "params")


def _check_origin(origin: str) -> str:
    if origin == "test":
        raise LeakageError(
            "calibration is fitted only on validation or OOF predictions, never on test: "
            "fitting it on test predictions makes the test metrics meaningless. Pass "
            "origin='validation' (a held-out validation part) or origin='oof' (out-of-fold "
            "predictions)."
        )
    if origin not in ORIGINS:
        raise ConfigError(f"origin must be one of {list(ORIGINS)}, got {origin!r}.")
    return origin


def _as_matrix(values: Any, what: str, n_classes: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ConfigError(
            f"{what} must be a 2-D array (n_samples, n_classes >= 2), got shape {array.shape}."
        )
    if n_classes is not None and array.shape[1] != n_classes:
        raise ConfigError(
            f"{what} has {array.shape[1]} columns but the calibrator was fitted on "
            f"{n_classes} classes."
        )
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"{what} contains NaN or inf; calibrate only covered samples.")
    return array


def _as_proba(values: Any, what: str, n_classes: int | None = None) -> np.ndarray:
    proba = _as_matrix(values, what, n_classes)
    if proba.min() < 0 or proba.max() > 1:
        raise ConfigError(
            f"{what} must be probabilities in [0, 1]; for logits use "
            "TemperatureScaler(inputs='logits')."
        )
    return proba


def _as_labels(y: Any, n_samples: int, n_classes: int) -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.size != n_samples:
        raise ConfigError(
            f"Calibration labels must be 1-D with one per row: got shape {labels.shape} for "
            f"{n_samples} rows."
        )
    if labels.dtype.kind not in "iub":
        raise ConfigError(f"Calibration labels must be class indices, got dtype {labels.dtype}.")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ConfigError(f"Calibration labels must lie in 0..{n_classes - 1}.")
    missing = np.flatnonzero(np.bincount(labels, minlength=n_classes) == 0)
    if missing.size:
        raise ConfigError(
            f"The calibration data has no samples of class(es) {missing.tolist()}; "
            "calibration needs at least one sample of every class (use more validation or "
            "OOF predictions)."
        )
    return labels


def _renormalise(proba: np.ndarray) -> np.ndarray:
    total = proba.sum(axis=1, keepdims=True)
    uniform = np.full_like(proba, 1.0 / proba.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, proba / np.where(total > 0, total, 1.0), uniform)


def _one_vs_rest_columns(n_classes: int) -> list[int]:
    """Columns calibrated separately: the positive class only when binary."""
    return [1] if n_classes == 2 else list(range(n_classes))


def _assemble(columns: dict[int, np.ndarray], n_samples: int, n_classes: int) -> np.ndarray:
    if n_classes == 2:
        positive = np.clip(columns[1], 0.0, 1.0)
        return np.column_stack([1.0 - positive, positive])
    out = np.empty((n_samples, n_classes))
    for k, values in columns.items():
        out[:, k] = np.clip(values, 0.0, 1.0)
    return _renormalise(out)


class Calibrator(ABC):
    """Maps probabilities to calibrated probabilities; fitted on validation or OOF only."""

    #: Name accepted by :func:`calibrate`.
    method: str = ""

    def fit(self, proba_or_logits: Any, y: Any, *, origin: Origin = "validation") -> Calibrator:
        """Learn the mapping from ``(N, K)`` predictions and their labels.

        ``origin`` says where the predictions come from; ``"test"`` raises
        ``LeakageError``. Returns ``self``.
        """
        self.origin_ = _check_origin(origin)
        values = self._validate_inputs(proba_or_logits, "Calibration inputs")
        labels = _as_labels(y, values.shape[0], values.shape[1])
        self.n_classes_ = int(values.shape[1])
        self._fit(values, labels)
        return self

    def transform(self, proba: Any) -> np.ndarray:
        """Calibrated probabilities, ``(N, K)`` float64, rows summing to 1."""
        if not hasattr(self, "n_classes_"):
            raise ConfigError(f"{type(self).__name__} is not fitted; call fit() first.")
        values = self._validate_inputs(proba, "Inputs to transform", self.n_classes_)
        return self._transform(values)

    def _validate_inputs(self, values: Any, what: str, n_classes: int | None = None) -> np.ndarray:
        return _as_proba(values, what, n_classes)

    def to_dict(self) -> dict[str, Any]:
        """The fitted calibrator as plain JSON values (see the module docstring)."""
        if not hasattr(self, "n_classes_"):
            raise ConfigError(f"{type(self).__name__} is not fitted; call fit() first.")
        return {
            "format": CALIBRATOR_FORMAT,
            "format_version": CALIBRATOR_FORMAT_VERSION,
            "method": self.method,
            "n_classes": self.n_classes_,
            "origin": self.origin_,
            "params": self._params(),
        }

    @classmethod
    def from_dict(cls, document: Any, path: str | Path = "<calibrator>") -> Calibrator:
        """Rebuild a calibrator from ``to_dict``'s output, validating every field.

        Raises ``CheckpointError`` naming ``path`` for another format or a newer version,
        an unknown method, missing or unexpected keys, or values of the wrong type, shape
        or range. Called on a subclass, it also refuses another method.
        """
        where = Path(path)
        if not isinstance(document, dict) or document.get("format") != CALIBRATOR_FORMAT:
            _refuse(where, f"it is not a moola calibrator (no 'format': '{CALIBRATOR_FORMAT}')")
        _exact_keys(document, _DOCUMENT_KEYS, where, "the calibrator")
        version = document["format_version"]
        if not _is_int(version) or version > CALIBRATOR_FORMAT_VERSION or version < 1:
            _refuse(
                where,
                f"its format version {version!r} is not one this moola reads "
                f"({CALIBRATOR_FORMAT_VERSION}); upgrade moola to load it",
            )
        method = document["method"]
        known = {c.method: c for c in CALIBRATORS.values()}
        if method not in known:
            _refuse(where, f"its method {method!r} is not one of {sorted(known)}")
        if cls is not Calibrator and known[method] is not cls:
            _refuse(where, f"it holds a {method!r} calibrator, not a {cls.method!r} one")
        n_classes = document["n_classes"]
        if not _is_int(n_classes) or n_classes < 2:
            _refuse(where, f"its n_classes {n_classes!r} is not an integer >= 2")
        if document["origin"] not in ORIGINS:
            _refuse(where, f"its origin {document['origin']!r} is not one of {list(ORIGINS)}")
        calibrator = known[method].__new__(known[method])
        calibrator.origin_ = document["origin"]
        calibrator.n_classes_ = int(n_classes)
        calibrator._restore(document["params"], where)
        return calibrator

    @abstractmethod
    def _fit(self, values: np.ndarray, y: np.ndarray) -> None:
        """Learn from validated ``(N, K)`` inputs and labels."""

    @abstractmethod
    def _transform(self, values: np.ndarray) -> np.ndarray:
        """Map validated ``(N, K)`` inputs to probabilities."""

    @abstractmethod
    def _params(self) -> dict[str, Any]:
        """The fitted parameters as plain JSON values."""

    @abstractmethod
    def _restore(self, params: Any, where: Path) -> None:
        """Set the fitted state from ``_params``' output; ``CheckpointError`` if invalid."""


def _refuse(where: Path, problem: str) -> NoReturn:
    raise CheckpointError(
        f"Calibrator file {where} cannot be used: {problem}. It was not written by this "
        "moola (or was edited); retrain the run to get a new one."
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _exact_keys(mapping: Any, keys: tuple[str, ...], where: Path, what: str) -> None:
    if not isinstance(mapping, dict):
        _refuse(where, f"{what} is not a JSON object")
    missing = [k for k in keys if k not in mapping]
    extra = sorted(str(k) for k in mapping if k not in keys)
    if missing or extra:
        problems = [f"lacks {missing}"] if missing else []
        problems += [f"has unexpected keys {extra}"] if extra else []
        _refuse(where, f"{what} " + " and ".join(problems))


def _finite(value: Any, where: Path, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        _refuse(where, f"{what} is {value!r}, not a finite number")
    return float(value)


def _finite_vector(value: Any, where: Path, what: str) -> np.ndarray:
    if not isinstance(value, list) or not value:
        _refuse(where, f"{what} is not a non-empty list of numbers")
    return np.array([_finite(v, where, what) for v in value], dtype=np.float64)


def _class_keys(params: Any, where: Path, n_classes: int, what: str) -> dict[int, Any]:
    """``{"<k>": value}`` with exactly the calibrated columns of ``n_classes`` -> ``{k: value}``."""
    expected = tuple(str(k) for k in _one_vs_rest_columns(n_classes))
    _exact_keys(params, expected, where, what)
    return {int(k): params[k] for k in expected}


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def _platt_fit(score: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of ``P(target) = sigmoid(a * score + b)`` by Platt's smoothed-target NLL."""
    n_pos = float(target.sum())
    n_neg = float(target.size - n_pos)
    t = np.where(target, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss_and_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = params[0] * score + params[1]
        # NLL of sigmoid(z) against soft targets t, in a numerically stable form.
        loss = np.sum(np.logaddexp(0.0, z) - t * z)
        residual = expit(z) - t
        return float(loss), np.array([np.dot(residual, score), residual.sum()])

    # The score is already a log-odds, so the identity map is the natural start.
    result = minimize(loss_and_grad, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return float(result.x[0]), float(result.x[1])


class PlattCalibrator(Calibrator):
    """Platt (sigmoid) scaling of each class's log-odds: ``sigmoid(a * logit(p) + b)``."""

    method = "platt"

    def _fit(self, values: np.ndarray, y: np.ndarray) -> None:
        self.coef_: dict[int, tuple[float, float]] = {
            k: _platt_fit(_log_odds(values[:, k]), y == k)
            for k in _one_vs_rest_columns(values.shape[1])
        }

    def _transform(self, values: np.ndarray) -> np.ndarray:
        columns = {k: expit(a * _log_odds(values[:, k]) + b) for k, (a, b) in self.coef_.items()}
        return _assemble(columns, values.shape[0], values.shape[1])

    def _params(self) -> dict[str, Any]:
        return {"coef": {str(k): [a, b] for k, (a, b) in self.coef_.items()}}

    def _restore(self, params: Any, where: Path) -> None:
        _exact_keys(params, ("coef",), where, "the Platt parameters")
        coef = {}
        for k, pair in _class_keys(params["coef"], where, self.n_classes_, "coef").items():
            if not isinstance(pair, list) or len(pair) != 2:
                _refuse(where, f"coef of class {k} is {pair!r}, not a pair [a, b]")
            coef[k] = (
                _finite(pair[0], where, f"coef[{k}][0]"),
                _finite(pair[1], where, f"coef[{k}][1]"),
            )
        self.coef_ = coef


class IsotonicCalibrator(Calibrator):
    """Isotonic (monotone, non-parametric) regression of each class's indicator on its
    probability; out-of-range inputs are clipped to the fitted range."""

    method = "isotonic"

    def _fit(self, values: np.ndarray, y: np.ndarray) -> None:
        self.regressors_: dict[int, IsotonicRegression] = {
            k: IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                values[:, k], (y == k).astype(np.float64)
            )
            for k in _one_vs_rest_columns(values.shape[1])
        }

    def _transform(self, values: np.ndarray) -> np.ndarray:
        columns = {k: reg.predict(values[:, k]) for k, reg in self.regressors_.items()}
        return _assemble(columns, values.shape[0], values.shape[1])

    def _params(self) -> dict[str, Any]:
        return {
            "columns": {
                str(k): {
                    "X_thresholds": reg.X_thresholds_.tolist(),
                    "y_thresholds": reg.y_thresholds_.tolist(),
                    "X_min": float(reg.X_min_),
                    "X_max": float(reg.X_max_),
                    "increasing": bool(reg.increasing_),
                }
                for k, reg in self.regressors_.items()
            }
        }

    def _restore(self, params: Any, where: Path) -> None:
        _exact_keys(params, ("columns",), where, "the isotonic parameters")
        columns = _class_keys(params["columns"], where, self.n_classes_, "columns")
        self.regressors_ = {k: _isotonic(fitted, where, k) for k, fitted in columns.items()}


_ISOTONIC_KEYS = ("X_thresholds", "y_thresholds", "X_min", "X_max", "increasing")


def _isotonic(fitted: Any, where: Path, k: int) -> IsotonicRegression:
    """A fitted ``IsotonicRegression`` rebuilt from its thresholds (validated first).

    scikit-learn's ``__setstate__`` rebuilds the interpolation from ``X_thresholds_`` and
    ``y_thresholds_``, exactly as after unpickling, so ``predict`` is the fitted one's.
    """
    _exact_keys(fitted, _ISOTONIC_KEYS, where, f"the isotonic fit of class {k}")
    x = _finite_vector(fitted["X_thresholds"], where, f"X_thresholds of class {k}")
    y = _finite_vector(fitted["y_thresholds"], where, f"y_thresholds of class {k}")
    if x.shape != y.shape:
        _refuse(where, f"class {k} has {x.size} X_thresholds but {y.size} y_thresholds")
    if np.any(np.diff(x) < 0) or y.min() < 0.0 or y.max() > 1.0:
        _refuse(where, f"class {k}'s thresholds are not sorted, or map outside [0, 1]")
    low = _finite(fitted["X_min"], where, f"X_min of class {k}")
    high = _finite(fitted["X_max"], where, f"X_max of class {k}")
    if not isinstance(fitted["increasing"], bool) or low > high:
        _refuse(where, f"class {k} has X_min > X_max or a non-boolean 'increasing'")
    regressor = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    regressor.__setstate__(
        {
            **regressor.__getstate__(),  # carries the running sklearn version
            "increasing_": fitted["increasing"],
            "X_min_": np.float64(low),
            "X_max_": np.float64(high),
            "X_thresholds_": x,
            "y_thresholds_": y,
        }
    )
    return regressor


class TemperatureScaler(Calibrator):
    """One temperature ``T`` for all classes: ``softmax(z / T)``.

    Parameters
    ----------
    inputs : {"proba", "logits"}, default "proba"
        What ``fit`` and ``transform`` receive: probabilities (their logs are used as
        logits) or raw logits.

    ``T > 1`` softens over-confident predictions, ``T < 1`` sharpens under-confident ones;
    it never changes the predicted class.
    """

    method = "temperature"

    def __init__(self, inputs: Inputs = "proba") -> None:
        self.inputs = inputs

    def _validate_inputs(self, values: Any, what: str, n_classes: int | None = None) -> np.ndarray:
        if self.inputs == "logits":
            return _as_matrix(values, what, n_classes)
        if self.inputs == "proba":
            return _as_proba(values, what, n_classes)
        raise ConfigError(f"inputs must be 'proba' or 'logits', got {self.inputs!r}.")

    def _logits(self, values: np.ndarray) -> np.ndarray:
        if self.inputs == "logits":
            return values
        return np.log(np.clip(values, _EPS, 1.0))

    def _fit(self, values: np.ndarray, y: np.ndarray) -> None:
        z = self._logits(values)
        z_true = z[np.arange(y.size), y]

        def nll(log_t: float) -> float:
            scaled = z / np.exp(log_t)
            return float(np.mean(logsumexp(scaled, axis=1) - z_true / np.exp(log_t)))

        result = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded")
        self.temperature_ = float(np.exp(result.x))

    def _transform(self, values: np.ndarray) -> np.ndarray:
        return np.exp(log_softmax(self._logits(values) / self.temperature_, axis=1))

    def _params(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "temperature": self.temperature_}

    def _restore(self, params: Any, where: Path) -> None:
        _exact_keys(params, ("inputs", "temperature"), where, "the temperature parameters")
        if params["inputs"] not in ("proba", "logits"):
            _refuse(where, f"inputs is {params['inputs']!r}, not 'proba' or 'logits'")
        temperature = _finite(params["temperature"], where, "temperature")
        if temperature <= 0:
            _refuse(where, f"temperature is {temperature}, not > 0")
        self.inputs = params["inputs"]
        self.temperature_ = temperature


CALIBRATORS: dict[str, type[Calibrator]] = {
    "platt": PlattCalibrator,
    "sigmoid": PlattCalibrator,
    "isotonic": IsotonicCalibrator,
    "temperature": TemperatureScaler,
}


def calibrate(
    method: str, val_proba: Any, val_y: Any, *, origin: Origin = "validation"
) -> Calibrator:
    """Fit the calibrator named ``method`` (``platt``/``sigmoid``, ``isotonic``,
    ``temperature``) on validation (or, with ``origin="oof"``, out-of-fold) probabilities."""
    key = str(method).strip().lower()
    if key not in CALIBRATORS:
        close = difflib.get_close_matches(key, list(CALIBRATORS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Unknown calibration method {method!r}; allowed: {', '.join(CALIBRATORS)}.{hint}"
        )
    return CALIBRATORS[key]().fit(val_proba, val_y, origin=origin)


def save_calibrator(calibrator: Calibrator) -> bytes:
    """The fitted ``calibrator`` as UTF-8 JSON bytes (a run's ``calibrator.json``)."""
    return (json.dumps(calibrator.to_dict(), indent=2, allow_nan=False) + "\n").encode()


def load_calibrator(data: bytes, path: str | Path) -> Calibrator:
    """Rebuild a calibrator from ``save_calibrator``'s bytes, read from ``path``.

    No code in the file runs: it is parsed as JSON and every field is validated.
    Raises ``CheckpointError`` naming ``path`` if it is not valid JSON or not a calibrator.
    """
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(
            f"Calibrator file {path} is not valid JSON ({type(exc).__name__}: {exc}); it is "
            "corrupt or not a moola calibrator. Retrain the run to get a new one."
        ) from None
    return Calibrator.from_dict(document, path)
