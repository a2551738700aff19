"""NeuralEstimator(task="regression"): learns values in their own units from standardised
targets, saves and loads them, and refuses what contradicts a regression (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moola.core.errors import CheckpointError, ConfigError
from moola.models import create
from moola.training.neural import NeuralEstimator

BILSTM = {"hidden": 8, "num_layers": 1, "fc": (8,), "dropout": 0.0}
TRANSFORMER = {"d_model": 16, "n_layers": 1, "heads": 2, "ffn": 32, "fc": (16,), "dropout": 0.0}
FAST = {"epochs": 15, "batch_size": 32, "lr": 1e-2, "seed": 0}


def _linear(n: int = 160, t: int = 6, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``(n, t, d)`` and a target that is a linear function of the last step, far
    from 0 and wider than 1 (so predictions in standardised units would be visibly off)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, t, d))
    y = 50.0 + 8.0 * X[:, -1, 0] - 5.0 * X[:, -1, 1]
    return X, y


def _r2(pred: np.ndarray, y: np.ndarray) -> float:
    return 1.0 - float(((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())


@pytest.mark.parametrize(("name", "params"), [("bilstm", BILSTM), ("transformer", TRANSFORMER)])
def test_a_linear_function_of_the_last_step_is_learned_in_target_units(name, params):
    X, y = _linear()
    est = create(name, task="regression", **params, **FAST).fit(X[:120], y[:120])
    assert est.task == "regression" and est.trainer_config_.loss == "mse"
    pred = est.predict(X[120:])
    assert pred.shape == (40,) and pred.dtype == np.float64
    assert _r2(pred, y[120:]) > 0.5
    assert abs(pred.mean() - y[120:].mean()) < 0.3 * y[120:].std()  # units, not z-scores


def test_targets_are_standardised_with_the_training_targets_only():
    X, y = _linear()
    est = NeuralEstimator("bilstm", task="regression", **BILSTM, epochs=1)
    est.fit(X[:100], y[:100], X_val=X[100:], y_val=y[100:] + 1_000.0)
    assert est.targets_.mean == pytest.approx((y[:100].mean(),))
    assert est.targets_.std == pytest.approx((y[:100].std(),))


def test_several_targets_give_one_column_each_and_survive_save_and_load(tmp_path):
    X, y = _linear()
    Y = np.stack([y, -3.0 * y], axis=1)  # (N, 2)
    est = NeuralEstimator("bilstm", task="regression", **BILSTM, epochs=2).fit(X, Y)
    pred = est.predict(X)
    assert pred.shape == (len(X), 2) and pred.dtype == np.float64
    path = tmp_path / "reg.pt"
    est.save(path)
    loaded = NeuralEstimator.load(path)
    assert loaded.task == "regression"
    np.testing.assert_array_equal(loaded.predict(X), pred)
    payload = torch.load(path, weights_only=True)
    assert payload["task"] == "regression" and payload["targets"]["n_targets"] == 2


def test_a_regressor_has_no_class_probabilities():
    X, y = _linear(n=40)
    est = NeuralEstimator("bilstm", task="regression", **BILSTM, epochs=1).fit(X, y)
    with pytest.raises(ConfigError, match="regressor"):
        est.predict_proba(X)


@pytest.mark.parametrize("loss", ["cross_entropy", "focal", "bce"])
def test_a_classification_loss_is_refused_for_a_regression(loss):
    X, y = _linear(n=20)
    with pytest.raises(ConfigError, match=f"loss='{loss}' is a classification loss"):
        create("bilstm", task="regression", loss=loss)
    with pytest.raises(ConfigError, match=f"loss='{loss}' is a classification loss"):
        NeuralEstimator("bilstm", task="regression", loss=loss).fit(X, y)
    with pytest.raises(ConfigError, match="loss='mse' is a regression loss"):
        create("bilstm", loss="mse")


def test_an_unsupported_task_is_refused_naming_the_models_that_support_it():
    with pytest.raises(ConfigError, match="does not support task='regression'") as info:
        create("simple_lstm", task="regression")
    assert "bilstm" in str(info.value) and "transformer" in str(info.value)
    X, y = _linear(n=20)
    with pytest.raises(ConfigError, match="Models that support regression: bilstm"):
        NeuralEstimator("simple_lstm", task="regression").fit(X, y)
    with pytest.raises(ConfigError, match="unknown task 'forecast'"):
        create("bilstm", task="forecast")


def test_a_sigmoid_output_or_class_parameters_are_refused_for_a_regression():
    with pytest.raises(ConfigError, match="output='sigmoid'"):
        create("transformer", task="regression", output="sigmoid")
    with pytest.raises(ConfigError, match="class_weights='balanced' is for classification"):
        create("bilstm", task="regression", class_weights="balanced")


def test_non_finite_or_misshapen_targets_are_refused_naming_rows():
    X, y = _linear(n=20)
    bad = y.copy()
    bad[[3, 7]] = [np.nan, np.inf]
    est = NeuralEstimator("bilstm", task="regression", **BILSTM, epochs=1)
    with pytest.raises(ConfigError, match=r"NaN or infinite regression targets in rows \[3, 7\]"):
        est.fit(X, bad)
    with pytest.raises(ConfigError, match=r"shaped \(N,\) or \(N, K\)"):
        est.fit(X, y[:-1])


def test_an_input_width_mismatch_names_both_widths(tmp_path):
    X, y = _linear(n=40)
    with pytest.raises(ConfigError, match="input_dim=5 but X has 3 channels"):
        NeuralEstimator("bilstm", task="regression", input_dim=5, **BILSTM).fit(X, y)
    est = NeuralEstimator("bilstm", task="regression", **BILSTM, epochs=1).fit(X, y)
    with pytest.raises(
        ConfigError, match="X has 4 channels per step but this bilstm model was trained on 3"
    ):
        est.predict(np.zeros((2, 6, 4)))
    path = tmp_path / "m.pt"
    est.save(path)
    with pytest.raises(CheckpointError, match=r"m\.pt: X has 4 channels per step .* on 3"):
        NeuralEstimator.load(path).predict(np.zeros((2, 6, 4)))
