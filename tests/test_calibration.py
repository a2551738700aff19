"""Calibrators: they fix over-confidence on held-out data and refuse test predictions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit, softmax

from moola.core.errors import ConfigError, LeakageError, MoolaError
from moola.evaluation.metrics import classification_report
from moola.training.calibration import (
    IsotonicCalibrator,
    PlattCalibrator,
    TemperatureScaler,
    calibrate,
)

METHODS = ("platt", "isotonic", "temperature")


def _overconfident_binary(n: int = 2000, seed: int = 0):
    """True probabilities p, labels drawn from them, and over-confident reports of p."""
    rng = np.random.default_rng(seed)
    p_true = rng.beta(2, 2, n)
    y = (rng.random(n) < p_true).astype(np.int64)
    reported = expit(3.0 * logit(p_true))
    return np.column_stack([1 - reported, reported]), y, np.column_stack([1 - p_true, p_true])


def _overconfident_multiclass(n: int = 2000, k: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    p_true = rng.dirichlet(np.full(k, 2.0), n)
    y = (rng.random(n)[:, None] > np.cumsum(p_true, axis=1)).sum(axis=1)
    return softmax(3.0 * np.log(p_true), axis=1), y


def _scores(y, proba, classes):
    metrics = classification_report(y, proba, classes=classes, n_bootstrap=0)["metrics"]
    return metrics["ece"], metrics["log_loss"]


@pytest.mark.parametrize("method", METHODS)
def test_calibration_reduces_ece_and_log_loss_on_held_out_binary(method):
    proba, y, _ = _overconfident_binary()
    half = y.size // 2
    calibrator = calibrate(method, proba[:half], y[:half])
    calibrated = calibrator.transform(proba[half:])
    ece_raw, loss_raw = _scores(y[half:], proba[half:], ["a", "b"])
    ece_cal, loss_cal = _scores(y[half:], calibrated, ["a", "b"])
    assert ece_raw > 0.1
    assert ece_cal < ece_raw / 3
    assert loss_cal < loss_raw - 0.1
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)


@pytest.mark.parametrize("method", METHODS)
def test_calibration_reduces_ece_and_log_loss_on_held_out_multiclass(method):
    proba, y = _overconfident_multiclass()
    half = y.size // 2
    calibrated = calibrate(method, proba[:half], y[:half], origin="oof").transform(proba[half:])
    ece_raw, loss_raw = _scores(y[half:], proba[half:], ["a", "b", "c"])
    ece_cal, loss_cal = _scores(y[half:], calibrated, ["a", "b", "c"])
    assert ece_cal < ece_raw / 3
    assert loss_cal < loss_raw - 0.1
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert calibrated.min() >= 0 and calibrated.max() <= 1


def test_temperature_on_calibrated_probabilities_is_about_one():
    _, y, p_true = _overconfident_binary(n=6000, seed=4)
    scaler = TemperatureScaler().fit(p_true, y)
    assert scaler.temperature_ == pytest.approx(1.0, abs=0.1)
    np.testing.assert_allclose(scaler.transform(p_true), p_true, atol=0.03)


def test_temperature_softens_overconfidence_and_keeps_the_predicted_class():
    proba, y, _ = _overconfident_binary()
    scaler = TemperatureScaler().fit(proba, y)
    assert scaler.temperature_ == pytest.approx(3.0, rel=0.2)  # the planted over-confidence
    out = scaler.transform(proba)
    np.testing.assert_array_equal(out.argmax(axis=1), proba.argmax(axis=1))


def test_temperature_on_logits_equals_temperature_on_their_softmax():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (500, 3))
    y = rng.integers(0, 3, 500)
    from_logits = TemperatureScaler(inputs="logits").fit(logits, y)
    from_proba = TemperatureScaler().fit(softmax(logits, axis=1), y)
    assert from_logits.temperature_ == pytest.approx(from_proba.temperature_, rel=1e-4)
    np.testing.assert_allclose(
        from_logits.transform(logits), from_proba.transform(softmax(logits, axis=1)), atol=1e-6
    )


def test_isotonic_is_monotone_in_the_positive_probability():
    proba, y, _ = _overconfident_binary()
    calibrator = IsotonicCalibrator().fit(proba, y)
    grid = np.linspace(0, 1, 501)
    out = calibrator.transform(np.column_stack([1 - grid, grid]))
    assert np.all(np.diff(out[:, 1]) >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_platt_is_monotone_and_finite_on_separable_data():
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    y = np.array([0, 0, 1, 1])
    calibrator = PlattCalibrator().fit(proba, y)
    grid = np.linspace(0, 1, 101)
    out = calibrator.transform(np.column_stack([1 - grid, grid]))
    assert np.all(np.isfinite(out))
    assert np.all(np.diff(out[:, 1]) >= 0)
    # Platt's smoothed targets (3/4 and 1/4 here) keep the fit finite: an unsmoothed
    # logistic fit on separable data would send these to 0 and 1.
    fitted = calibrator.transform(proba)[:, 1]
    assert np.all((fitted > 0.1) & (fitted < 0.9))


@pytest.mark.parametrize("cls", [PlattCalibrator, IsotonicCalibrator, TemperatureScaler])
def test_fitting_on_test_predictions_is_refused(cls):
    proba, y, _ = _overconfident_binary(200)
    with pytest.raises(LeakageError, match="never on test"):
        cls().fit(proba, y, origin="test")
    with pytest.raises(ConfigError, match="origin"):
        cls().fit(proba, y, origin="train")
    assert issubclass(LeakageError, MoolaError)


def test_calibrate_refuses_test_and_unknown_methods():
    proba, y, _ = _overconfident_binary(200)
    with pytest.raises(LeakageError):
        calibrate("isotonic", proba, y, origin="test")
    with pytest.raises(ConfigError, match="Did you mean 'isotonic'"):
        calibrate("isotonc", proba, y)
    assert calibrate("platt", proba, y).origin_ == "validation"


def test_bad_inputs_raise_config_error():
    proba, y, _ = _overconfident_binary(200)
    with pytest.raises(ConfigError, match="not fitted"):
        PlattCalibrator().transform(proba)
    fitted = PlattCalibrator().fit(proba, y)
    with pytest.raises(ConfigError, match="2 classes"):
        fitted.transform(np.full((3, 3), 1 / 3))
    with pytest.raises(ConfigError, match="no samples of class"):
        IsotonicCalibrator().fit(proba, np.zeros(200, dtype=np.int64))
    with pytest.raises(ConfigError, match="one per row"):
        TemperatureScaler().fit(proba, y[:10])
    with pytest.raises(ConfigError, match="logits"):
        TemperatureScaler().fit(proba * 5, y)
