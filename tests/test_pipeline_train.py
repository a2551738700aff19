"""Training runs end to end: honest OOF metrics, lineage, test ledger, gates, stacking."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from moola.core.errors import ConfigError, LeakageError
from moola.data.registry import Registry
from moola.evaluation.gates import GateConfig
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.lifecycle import evaluate_test, promote, write_report
from moola.pipeline.train import TrainConfig, run_training
from moola.tracking.journal import JsonlJournal
from moola.tracking.runs import RunStore


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Registry:
    """Planted-pattern windows with a purged k-fold split, a forward split, and a
    copy whose labels are shuffled (the same windows, so only the labels differ)."""
    registry = Registry(tmp_path_factory.mktemp("lab"))
    raw, market = synthesize_raw(registry, "mkt", n_bars=60_000, n_patterns=160, seed=11)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=5, embargo=105)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc", purge=105, embargo=105)
    table = registry.load_labeled("pat").table.copy()
    table["label"] = np.random.default_rng(0).permutation(table["label"].to_numpy())
    shuffled = registry.write_labeled("shuffled", raw, table, length=105)
    make_and_store_split(
        registry, shuffled, "purged-kfold", name="kf-shuffled", folds=5, embargo=105
    )
    return registry


def _train(registry: Registry, **fields) -> object:
    config = TrainConfig(**{"n_bootstrap": 100, **fields})
    return run_training(registry, config)


def test_oof_run_records_lineage_and_beats_the_majority_class(lab):
    result = _train(lab, model="logistic_regression", dataset="pat", split="kf")
    manifest = result.manifest
    assert result.mode == "oof"
    dataset = lab.resolve("labeled", "pat")
    assert manifest["data"]["dataset"]["content_hash"] == dataset.content_hash
    split_file = json.loads(lab.split_path("kf", 1).read_text())
    assert manifest["data"]["split"]["split_hash"] == split_file["split_hash"]
    assert manifest["data"]["val_synthetic_count"] == manifest["data"]["test_synthetic_count"] == 0
    majority = max(result.report["class_counts"].values()) / result.report["n_samples"]
    assert result.report["metrics"]["accuracy"] > majority + 0.1
    predictions = lab.manifest(lab.resolve("predictions", result.run_id))
    assert predictions["parents"][0]["content_hash"] == dataset.content_hash
    for name in ("manifest.json", "model.bin", "calibrator.json", "reliability.png"):
        assert (result.run_dir / name).is_file()
    line = RunStore(lab.root).results()[-1]
    assert line["run_id"] == result.run_id and line["metrics"]["accuracy"] is not None


def test_same_seed_reproduces_the_metrics(lab):
    first = _train(lab, model="random_forest", dataset="pat", split="kf", seed=5)
    second = _train(lab, model="random_forest", dataset="pat", split="kf", seed=5)
    assert first.report["metrics"] == second.report["metrics"]


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("logistic_regression", {}),
        ("gradient_boosting", {}),
        ("minirocket", {"n_kernels": 840}),
        ("simple_lstm", {"epochs": 4, "batch_size": 32}),
    ],
)
def test_shuffled_labels_stay_within_chance(lab, model, params):
    """If anything leaked labels (normalisation, folds, features), this would fail."""
    result = _train(lab, model=model, dataset="shuffled", split="kf-shuffled", params=params)
    n = result.report["n_samples"]
    majority = max(result.report["class_counts"].values()) / n
    upper = stats.binom.ppf(0.995, n, majority) / n
    assert result.report["metrics"]["accuracy"] <= upper
    assert result.report["metrics"]["roc_auc"] < 0.7


def test_test_part_is_scored_once_and_promotion_lists_failed_gates(lab):
    result = _train(lab, model="logistic_regression", dataset="pat", split="fc")
    assert result.mode == "holdout"
    with pytest.raises(ConfigError, match="no test evaluation"):
        promote(lab, result.run_id)
    report = evaluate_test(lab, result.run_id, n_bootstrap=50)
    assert report["n_samples"] == len(lab.load_labeled("pat", split="fc").test)
    with pytest.raises(LeakageError, match="already looked at"):
        evaluate_test(lab, result.run_id)
    with pytest.raises(ConfigError, match=r"Failed gates: accuracy"):
        promote(lab, result.run_id, GateConfig(min_accuracy=1.01, max_ece=1.0))
    decision = JsonlJournal(lab.root).read("gate_decision")[-1].payload
    assert decision.run_id == result.run_id and not decision.gates["passed"]
    promoted = promote(lab, result.run_id, GateConfig(min_accuracy=0.0, max_ece=1.0))
    assert (lab.root / "artifacts/models/promoted" / result.run_id / "gate.json").is_file()
    assert promoted["basis"] == "test"
    html = write_report(lab, result.run_id).read_text()
    assert "Test part" in html and "<img" in html


def test_stack_learns_from_oof_predictions_only(lab):
    base = [
        _train(lab, model=m, dataset="pat", split="kf").run_id
        for m in ("logistic_regression", "random_forest")
    ]
    stacked = _train(lab, model="stack", dataset="pat", split="kf", base_runs=base)
    majority = max(stacked.report["class_counts"].values()) / stacked.report["n_samples"]
    assert stacked.report["metrics"]["accuracy"] > majority
    holdout = _train(lab, model="logistic_regression", dataset="pat", split="fc").run_id
    with pytest.raises(LeakageError, match="out-of-fold"):
        _train(lab, model="stack", dataset="pat", split="kf", base_runs=[holdout])


def test_legacy_and_unknown_models_are_refused_before_any_work(lab):
    before = len(RunStore(lab.root).results())
    with pytest.raises(ConfigError, match="retired"):
        _train(lab, model="rwkv_ts", dataset="pat", split="kf")
    with pytest.raises(ConfigError, match="Did you mean 'minirocket'"):
        _train(lab, model="minirockett", dataset="pat", split="kf")
    assert len(RunStore(lab.root).results()) == before


def test_default_calibration_is_chosen_out_of_fold_and_recorded(lab):
    result = _train(lab, model="logistic_regression", dataset="pat", split="kf")
    record = result.manifest["calibration"]
    assert record["requested"] == "auto"
    methods = {row["method"]: row for row in record["candidates"]}
    assert set(methods) == {"none", "platt", "isotonic", "temperature"}
    assert [m for m, row in methods.items() if row["chosen"]] == [record["method"]]
    assert methods[record["method"]]["eligible"]
    assert 0.0 < record["threshold"] < 1.0 and "minority_f1" in record["thresholded"]
    has_calibrator = RunStore(lab.root).has_file(result.run_dir, "calibrator.json")
    assert has_calibrator == (record["method"] != "none")
    explicit = _train(
        lab, model="logistic_regression", dataset="pat", split="kf", calibration="isotonic"
    )
    assert explicit.manifest["calibration"] == {"requested": "isotonic", "method": "isotonic"}


def test_the_report_shows_the_calibration_choice_with_the_chosen_method_marked(lab):
    result = _train(lab, model="logistic_regression", dataset="pat", split="kf")
    html = write_report(lab, result.run_id).read_text()
    assert "Calibration, chosen out of fold" in html
    chosen = result.manifest["calibration"]["method"]
    assert f"\u2713 {chosen}" in html and "decision threshold chosen out of fold" in html
