"""``check_model``: the conformance checker every ACTIVE model card must pass.

As scikit-learn's ``parametrize_with_checks``, shipped as library code and run in CI over
everything registered (``tests/test_check_model.py``): a new model is proven to honour the
``Estimator`` contract (``moola.models.base``) before anything trains it for real.

On tiny seeded data (40 windows of 20 bars of OHLC, or what the card's input kind needs)
and tiny sizes (one epoch, a few hidden units), it checks that

- ``fit`` returns the estimator itself and leaves its parameters as they were given;
- ``predict_proba`` gives finite ``(N, K)`` probabilities in [0, 1], rows summing to 1;
- ``save`` then ``load`` (through a temporary folder) predicts the same probabilities;
- two fits with one seed predict the same probabilities.

A model whose card lists ``"regression"`` in its ``tasks`` is also checked as a regressor
(``task="regression"``), once with one float target ``(N,)`` and once with two ``(N, 2)``:
``fit`` returns itself with its parameters unchanged; ``predict`` gives finite float64
values shaped like the targets; ``predict_proba`` is refused with ``ConfigError``;
``save``/``load`` and a second fit with the same seed predict the same values.

A failed check raises ``AssertionError`` naming the model and the check.
"""

from __future__ import annotations

import copy
import functools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from moola.core.errors import ConfigError
from moola.models import create, model_card
from moola.models.base import Estimator
from moola.pipeline.inputs import model_inputs, model_params

__all__ = ["TINY_PARAMS", "check_model", "tiny_data"]

#: Sizes small enough that every check of a model runs in seconds on one core.
TINY_PARAMS: dict[str, dict[str, Any]] = {
    "simple_lstm": {"hidden": 8, "heads": 2, "encoder_hidden": 8, "encoder_layers": 1},
    "enhanced_simple_lstm": {"encoder_hidden": 8, "encoder_layers": 1},
    "bilstm": {"hidden": 8, "num_layers": 1},
    "cnn_lstm_attention": {"lstm_hidden": 8, "attention_dim": 8},
    "transformer": {"d_model": 16, "n_layers": 1, "heads": 2},
    "adapter_lstm": {
        "encoder_hidden": 8,
        "encoder_repr_dim": 8,
        "encoder_depth": 1,
        "lstm_hidden": 8,
        "adapter_dim": 4,
    },
    "minirocket": {"n_kernels": 84},
    "random_forest": {"n_estimators": 5},
    "gradient_boosting": {"n_estimators": 5},
}
_NEURAL_TINY = {"epochs": 1, "batch_size": 16}
_N, _LENGTH, _CLASSES = 40, 20, 2


def tiny_data(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``X`` shaped for model ``name`` and labels ``y`` (both classes present)."""
    rng = np.random.default_rng(seed)
    y = np.arange(_N) % _CLASSES
    rng.shuffle(y)
    if model_card(name).input_kind == "probabilities":  # two base models' probabilities
        first = rng.uniform(0.05, 0.95, (_N, 2))
        first[:, 1] = 1.0 - first[:, 0]
        return np.hstack([first, first[:, ::-1]]), y
    drift = np.where(y == 1, 1e-3, -1e-3)[:, None]
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, (_N, _LENGTH)) + drift, axis=1))
    open_ = np.concatenate([np.full((_N, 1), 100.0), close[:, :-1]], axis=1)
    wick = np.abs(rng.normal(0, 5e-4, (_N, _LENGTH))) * close
    ohlc = np.stack(
        [open_, np.maximum(open_, close) + wick, np.minimum(open_, close) - wick, close], axis=2
    )  # (N, T, 4)
    X, _ = model_inputs("auto", name, ohlc)
    return X, y


@functools.cache
def _tiny_backbone() -> Path:
    """A tiny random Chronos-Bolt folder for ``fm_probe``'s and ``fm_forecast``'s checks
    (once per process)."""
    from moola.testing.foundation import tiny_chronos_bolt

    return tiny_chronos_bolt(Path(tempfile.mkdtemp(prefix="moola-tiny-chronos-")) / "chronos")


def _build(name: str, params: dict[str, Any]) -> Estimator:
    return create(name, **copy.deepcopy(params))


def _proba(name: str, estimator: Estimator, X: np.ndarray, what: str) -> np.ndarray:
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    assert proba.shape == (len(X), _CLASSES), (
        f"{name}: {what} probabilities have shape {proba.shape}, expected {(len(X), _CLASSES)}"
    )
    assert np.isfinite(proba).all(), f"{name}: {what} probabilities are not all finite"
    assert ((proba >= 0) & (proba <= 1)).all(), f"{name}: {what} probabilities leave [0, 1]"
    np.testing.assert_allclose(
        proba.sum(axis=1), 1.0, atol=1e-6, err_msg=f"{name}: {what} rows do not sum to 1"
    )
    return proba


def check_model(name: str, *, params: dict[str, Any] | None = None, seed: int = 0) -> None:
    """Run every conformance check on ACTIVE model ``name`` (see the module docstring).

    ``params`` override the tiny defaults (``TINY_PARAMS``); ``seed`` seeds the data and
    the model. A model that learns ``task="regression"`` is checked as a regressor too.
    """
    card = model_card(name)
    neural = card.entry_point.startswith("moola.training")
    tiny = {
        **(_NEURAL_TINY if neural else {}),
        **TINY_PARAMS.get(name, {}),
        "seed" if neural else "random_state": seed,
        **(params or {}),
    }
    if name in ("fm_probe", "fm_forecast") and "path" not in tiny:
        tiny["path"] = str(_tiny_backbone())
    given = model_params(name, tiny)
    X, y = tiny_data(name, seed)

    estimator = _build(name, given)
    before = copy.deepcopy(estimator.get_params())
    fitted = estimator.fit(X, y)
    assert fitted is estimator, f"{name}: fit returned {type(fitted).__name__}, not self"
    after = estimator.get_params()
    assert after == before, f"{name}: fit changed its parameters from {before} to {after}"
    proba = _proba(name, estimator, X, "fitted")

    with tempfile.TemporaryDirectory(prefix="moola-check-model-") as tmp:
        path = Path(tmp) / "model.bin"
        estimator.save(path)
        loaded = type(estimator).load(path)
    restored = _proba(name, loaded, X, "reloaded")
    np.testing.assert_allclose(
        restored, proba, rtol=1e-6, atol=1e-9, err_msg=f"{name}: save/load changed predictions"
    )

    again = _proba(name, _build(name, given).fit(X, y), X, "refitted")
    np.testing.assert_allclose(
        again, proba, rtol=1e-6, atol=1e-9, err_msg=f"{name}: one seed, two answers"
    )

    if "regression" in card.tasks:
        regression = {k: v for k, v in tiny.items() if k not in ("n_classes", "task")}
        _check_regression(name, model_params(name, {**regression, "task": "regression"}), X, seed)


def _values(
    name: str, estimator: Estimator, X: np.ndarray, shape: tuple[int, ...], what: str
) -> np.ndarray:
    """``estimator.predict(X)``, checked: a float64 ndarray of ``shape``, all finite."""
    values = estimator.predict(X)
    assert isinstance(values, np.ndarray) and values.dtype == np.float64, (
        f"{name}: {what} regression predictions are {getattr(values, 'dtype', type(values))}, "
        "expected float64"
    )
    assert values.shape == shape, (
        f"{name}: {what} regression predictions have shape {values.shape}, expected {shape}"
    )
    assert np.isfinite(values).all(), f"{name}: {what} regression predictions are not finite"
    return values


def _check_regression(name: str, given: dict[str, Any], X: np.ndarray, seed: int) -> None:
    """The regressor's checks (module docstring) on float targets of one and two columns."""
    rng = np.random.default_rng(seed + 1)
    for targets in (rng.normal(0.0, 1e-3, len(X)), rng.normal(0.0, 1e-3, (len(X), 2))):
        shape = targets.shape
        estimator = _build(name, given)
        before = copy.deepcopy(estimator.get_params())
        fitted = estimator.fit(X, targets)
        assert fitted is estimator, (
            f"{name}: regression fit returned {type(fitted).__name__}, not self"
        )
        after = estimator.get_params()
        assert after == before, (
            f"{name}: regression fit changed its parameters from {before} to {after}"
        )
        values = _values(name, estimator, X, shape, "fitted")
        try:
            estimator.predict_proba(X)
        except ConfigError:
            pass
        else:
            raise AssertionError(
                f"{name}: predict_proba of a regressor gave probabilities; it must raise "
                "ConfigError"
            )

        with tempfile.TemporaryDirectory(prefix="moola-check-model-") as tmp:
            path = Path(tmp) / "model.bin"
            estimator.save(path)
            loaded = type(estimator).load(path)
        restored = _values(name, loaded, X, shape, "reloaded")
        np.testing.assert_allclose(
            restored,
            values,
            rtol=1e-6,
            atol=1e-12,
            err_msg=f"{name}: save/load changed regression predictions",
        )
        again = _values(name, _build(name, given).fit(X, targets), X, shape, "refitted")
        np.testing.assert_allclose(
            again, values, rtol=1e-6, atol=1e-12, err_msg=f"{name}: one seed, two regressions"
        )
