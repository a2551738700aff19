"""Promotion gates: thresholds, missing evidence fails, disabled gates are skipped; gates on
any metric of a classification, regression or multi-task report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from moola.core.errors import ConfigError
from moola.evaluation.gates import (
    GateConfig,
    MetricGate,
    default_gates,
    evaluate_gates,
    parse_gate,
)
from moola.evaluation.metrics import classification_report
from moola.evaluation.regression import (
    flat_regression_metrics,
    multitask_report,
    regression_report,
)


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


# --------------------------------------------------------------------------- metric gates


@pytest.mark.parametrize(
    ("text", "metric", "op", "threshold"),
    [
        ("ic>0.02", "ic", ">", 0.02),
        (" rmse <= 1e-3 ", "rmse", "<=", 0.001),
        ("r2>=-0.5", "r2", ">=", -0.5),
        ("direction.accuracy<.9", "direction.accuracy", "<", 0.9),
        ("ic_ci_low>0", "ic_ci_low", ">", 0.0),
    ],
)
def test_parse_gate_reads_metric_op_and_threshold(text, metric, op, threshold):
    gate = parse_gate(text)
    assert (gate.metric, gate.op, gate.threshold) == (metric, op, threshold)
    assert parse_gate(str(gate)) == gate


@pytest.mark.parametrize(
    "text", ["ic=0.02", "ic==0.02", "ic>", ">0.02", "ic>>0.02", "ic>nan", "ic>inf", "ic>0.1x", ""]
)
def test_parse_gate_refuses_other_text_naming_it_and_the_accepted_forms(text):
    with pytest.raises(ConfigError, match=r"is not a metric gate.*OP one of >, >=, <, <=") as info:
        parse_gate(text)
    assert repr(text) in str(info.value) and info.value.param == "gate"
    with pytest.raises(ConfigError, match="is not a metric gate"):
        GateConfig(metric_gates=[text])


def _regression(ic_strength: float):
    rng = np.random.default_rng(0)
    y = rng.normal(0, 0.01, 300)
    return regression_report(y, ic_strength * y + rng.normal(0, 0.01, 300), n_bootstrap=200)


def test_a_regression_run_passes_or_fails_an_ic_gate():
    config = default_gates("regression", metric_gates=("ic>0.02", "rmse<0.1"))
    good = evaluate_gates(_regression(1.0), config)
    assert good.passed and [g.name for g in good.gates] == ["ic>0.02", "rmse<0.1"]
    assert _by_name(good)["ic>0.02"].value > 0.5
    backwards = _regression(-0.5)  # ranks the windows the wrong way round
    assert backwards["metrics"]["ic"] < 0.02
    bad = evaluate_gates(backwards, config)
    assert not bad.passed
    assert [(g.name, g.reason) for g in bad.failed] == [("ic>0.02", "not above threshold")]
    json.dumps(bad.to_dict(), allow_nan=False)


def test_metric_gates_read_intervals_heads_and_flat_mappings_and_missing_ones_fail():
    report = _regression(1.0)
    ci = evaluate_gates(report, default_gates("regression", metric_gates=["ic_ci_low>0.9"]))
    assert _by_name(ci)["ic_ci_low>0.9"].value == report["intervals"]["ic"]["low"]
    assert not ci.passed and ci.failed[0].reason == "not above threshold"
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    p1 = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.15, 80), 0.01, 0.99)
    direction = classification_report(y, np.column_stack([1 - p1, p1]), classes=["a", "b"])
    both = multitask_report({"direction": direction, "volatility": report})
    config = default_gates(
        "multitask",
        metric_gates=["direction.accuracy>=0.5", "volatility.ic>0.02", "direction.minority_f1>0"],
    )
    record = evaluate_gates(both, config)
    assert record.passed
    assert _by_name(record)["volatility.ic>0.02"].value == report["metrics"]["ic"]
    assert _by_name(record)["direction.minority_f1>0"].value == direction["per_class"][0]["f1"]
    flat = evaluate_gates(flat_regression_metrics(both), config)
    assert [g.value for g in flat.gates] == [g.value for g in record.gates]
    asked = ["ic>0", "volatility.sharpe>0", "sentiment.ic>0", "mae_ci_mid<1"]
    config = default_gates("multitask", metric_gates=asked)
    found_in = {"multitask": both, "regression": report, "flat": {"mae": 0.1}}
    missing = {
        kind: [g.name for g in evaluate_gates(target, config).failed if g.reason == "missing"]
        for kind, target in found_in.items()
    }
    assert missing == {"multitask": asked, "regression": asked[1:], "flat": asked}
    undefined = regression_report(np.full(20, 0.01), np.linspace(0, 1, 20), n_bootstrap=0)
    judged = evaluate_gates(undefined, default_gates("regression", metric_gates=["ic>0"]))
    assert [(g.name, g.value, g.reason) for g in judged.gates] == [("ic>0", None, "missing")]


def test_default_gates_keep_classification_defaults_and_drop_them_for_regression():
    assert default_gates("classification") == GateConfig()
    regression = default_gates("regression")
    assert regression.min_accuracy is None and regression.max_ece is None
    assert default_gates("multitask", min_sharpe=1.0).min_sharpe == 1.0
    assert evaluate_gates(_regression(1.0), regression).gates == ()
    # with the classifier's defaults, a regression report has no accuracy: it fails, missing
    assert {g.reason for g in evaluate_gates(_regression(1.0)).failed} == {"missing"}
    with pytest.raises(ConfigError, match="task must be one of"):
        default_gates("forecast")
    with pytest.raises(ValidationError):
        default_gates("regression", min_acuracy=0.5)


def test_metric_gate_ops_compare_at_equality_as_written():
    flat = {"ic": 0.02}
    outcomes = {
        text: evaluate_gates(flat, default_gates("regression", metric_gates=[text])).passed
        for text in ("ic>0.02", "ic>=0.02", "ic<0.02", "ic<=0.02")
    }
    assert outcomes == {"ic>0.02": False, "ic>=0.02": True, "ic<0.02": False, "ic<=0.02": True}
    with pytest.raises(ValidationError):
        MetricGate(metric="ic", op="=", threshold=0.0)
    with pytest.raises(ValidationError):
        MetricGate(metric="ic", op=">", threshold=float("nan"))
