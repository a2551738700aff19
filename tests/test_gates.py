"""Promotion gates: thresholds, missing evidence fails, disabled gates are skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from moola.evaluation.gates import GateConfig, evaluate_gates
from moola.evaluation.metrics import classification_report


def _by_name(record):
    return {gate.name: gate for gate in record.gates}


def test_defaults_gate_accuracy_and_ece_only():
    record = evaluate_gates({"accuracy": 0.71, "ece": 0.03})
    assert record.passed
    assert [g.name for g in record.gates] == ["accuracy", "ece"]
    gates = _by_name(record)
    assert gates["accuracy"].threshold == 0.68 and gates["accuracy"].value == 0.71
    assert gates["ece"].threshold == 0.05 and gates["ece"].reason is None


def test_each_threshold_fails_on_its_side_and_passes_at_equality():
    low = evaluate_gates({"accuracy": 0.6, "ece": 0.08})
    assert not low.passed
    assert {g.name: g.reason for g in low.failed} == {
        "accuracy": "below minimum",
        "ece": "above maximum",
    }
    assert evaluate_gates({"accuracy": 0.68, "ece": 0.05}).passed


def test_missing_values_fail_unless_the_gate_is_disabled():
    config = GateConfig(min_sharpe=1.0, max_drawdown=0.1)
    record = evaluate_gates({"accuracy": 0.9, "ece": None}, config)
    gates = _by_name(record)
    assert not record.passed
    assert gates["ece"].reason == "missing" and gates["ece"].value is None
    assert gates["sharpe"].reason == "missing"  # no backtest given
    assert gates["max_drawdown"].reason == "missing"
    disabled = GateConfig(max_ece=None, min_accuracy=None)
    assert evaluate_gates({}, disabled).gates == ()
    assert evaluate_gates({}, disabled).passed


def test_backtest_gates_read_compute_stats_fields():
    config = GateConfig(min_sharpe=1.0, max_drawdown=0.1)
    metrics = {"accuracy": 0.75, "ece": 0.02}
    good = evaluate_gates(metrics, config, {"sharpe": 1.4, "max_drawdown": 0.08})
    assert good.passed
    deep = evaluate_gates(metrics, config, {"sharpe": 1.4, "max_drawdown": 0.15})
    assert [g.name for g in deep.failed] == ["max_drawdown"]
    flat = evaluate_gates(metrics, config, {"sharpe": None, "max_drawdown": 0.0})
    assert _by_name(flat)["sharpe"].reason == "missing"  # compute_stats writes NaN as None
    perfect = evaluate_gates(metrics, config, {"sharpe": "inf", "max_drawdown": 0.0})
    assert perfect.passed
    as_dict = perfect.to_dict()
    assert _by_name(perfect)["sharpe"].value == float("inf")
    assert [g["value"] for g in as_dict["gates"] if g["name"] == "sharpe"] == ["inf"]
    json.dumps(as_dict, allow_nan=False)


def test_gates_read_a_classification_report_and_its_interval():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p1 = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.15, 60), 0.01, 0.99)
    report = classification_report(y, np.column_stack([1 - p1, p1]), classes=["a", "b"])
    config = GateConfig(min_accuracy=0.5, max_ece=1.0, min_accuracy_ci_low=0.5)
    record = evaluate_gates(report, config)
    gates = _by_name(record)
    assert gates["accuracy"].value == report["metrics"]["accuracy"]
    assert gates["accuracy_ci_low"].value == report["intervals"]["accuracy"]["low"]
    assert gates["accuracy_ci_low"].value < gates["accuracy"].value
    strict = GateConfig(min_accuracy=0.5, max_ece=1.0, min_accuracy_ci_low=0.99)
    assert [g.name for g in evaluate_gates(report, strict).failed] == ["accuracy_ci_low"]
    no_intervals = classification_report(
        y, np.column_stack([1 - p1, p1]), classes=["a", "b"], n_bootstrap=0
    )
    assert _by_name(evaluate_gates(no_intervals, config))["accuracy_ci_low"].reason == "missing"


def test_record_to_dict_is_complete_json():
    record = evaluate_gates({"accuracy": 0.5, "ece": 0.01})
    data = record.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["passed"] is False
    assert data["config"]["min_accuracy"] == 0.68
    assert data["gates"][0] == {
        "name": "accuracy",
        "threshold": 0.68,
        "value": 0.5,
        "passed": False,
        "reason": "below minimum",
    }


def test_gate_config_is_frozen_and_rejects_unknown_keys():
    with pytest.raises(ValidationError):
        GateConfig(min_acuracy=0.7)
    config = GateConfig()
    with pytest.raises(ValidationError):
        config.min_accuracy = 0.1
