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

A failed check raises ``AssertionError`` naming the model and the check.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

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
    the model.
    """
    card = model_card(name)
    neural = card.entry_point.startswith("moola.training")
    given = {
        **(_NEURAL_TINY if neural else {}),
        **TINY_PARAMS.get(name, {}),
        "seed" if neural else "random_state": seed,
        **(params or {}),
    }
    given = model_params(name, given)
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
