"""The metrics pack: sklearn-equal point estimates, hand-checked ECE, honest bootstrap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from moola.core.errors import ConfigError
from moola.evaluation import metrics as M
from moola.evaluation.metrics import (
    classification_report,
    expected_calibration_error,
    reliability_bins,
)


def _binary(n: int = 200, seed: int = 0, minority_rate: float = 0.3):
    """Labels with class 1 the minority and informative, tie-rich probabilities."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < minority_rate).astype(np.int64)
    p1 = np.clip(0.3 + 0.35 * (y - 0.3) + rng.normal(0, 0.2, n), 0, 1).round(2)
    return y, np.column_stack([1 - p1, p1])


def _multiclass(n: int = 300, k: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k)) + 1.5 * (y[:, None] == np.arange(k))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def test_binary_point_metrics_equal_sklearn():
    y, p = _binary()
    report = classification_report(y, p, classes=["consolidation", "retracement"], n_bootstrap=0)
    m = report["metrics"]
    pred = p.argmax(axis=1)
    assert report["minority"] == "retracement"
    assert m["accuracy"] == accuracy_score(y, pred)
    assert m["balanced_accuracy"] == balanced_accuracy_score(y, pred)
    assert m["pr_auc"] == average_precision_score(y, p[:, 1])
    assert m["roc_auc"] == roc_auc_score(y, p[:, 1])
    assert m["log_loss"] == log_loss(y, p)
    assert m["brier"] == brier_score_loss(y, p[:, 1])
    assert report["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(y, pred)
    by_class = {row["index"]: row for row in report["per_class"]}
    for k in (0, 1):
        assert by_class[k]["precision"] == precision[k]
        assert by_class[k]["recall"] == recall[k]
        assert by_class[k]["f1"] == f1[k]
        assert by_class[k]["support"] == support[k]
    assert report["intervals"] is None


def test_minority_is_listed_first_and_is_the_positive_class():
    y, p = _binary()
    y, p = 1 - y, p[:, ::-1]  # now class 0 is the rare one
    report = classification_report(y, p, classes=["a", "b"], n_bootstrap=0)
    assert report["minority"] == "a"
    assert [row["class"] for row in report["per_class"]] == ["a", "b"]
    assert report["metrics"]["pr_auc"] == average_precision_score(y == 0, p[:, 0])
    assert report["metrics"]["brier"] == brier_score_loss(y == 0, p[:, 0])
    chosen = classification_report(y, p, classes=["a", "b"], minority="b", n_bootstrap=0)
    assert [row["class"] for row in chosen["per_class"]] == ["b", "a"]
    assert chosen["metrics"]["pr_auc"] == average_precision_score(y == 1, p[:, 1])
    assert classification_report(y, p, classes=["a", "b"], minority=1, n_bootstrap=0)[
        "minority"
    ] == ("b")


def test_multiclass_point_metrics_equal_sklearn():
    y, p = _multiclass()
    y[:40] = 2  # make class 2 the most frequent, so the minority is 0 or 1
    report = classification_report(y, p, classes=["x", "y", "z"], n_bootstrap=0)
    m = report["metrics"]
    onehot = (y[:, None] == np.arange(3)).astype(int)
    assert m["pr_auc"] == average_precision_score(onehot, p, average="macro")
    assert m["roc_auc"] == roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert m["log_loss"] == log_loss(y, p)
    assert m["brier"] == brier_score_loss(y, p)
    counts = np.bincount(y)
    assert report["per_class"][0]["index"] == int(np.argmin(counts))
    assert report["per_class"][0]["support"] == counts.min()


def test_undefined_metrics_are_none_and_report_is_strict_json():
    y = np.zeros(12, dtype=np.int64)
    p = np.tile([0.7, 0.3], (12, 1))
    report = classification_report(y, p, classes=["a", "b"], n_bootstrap=50)
    assert report["metrics"]["roc_auc"] is None
    assert report["metrics"]["pr_auc"] is None
    assert report["intervals"]["roc_auc"] is None
    assert report["per_class"][0]["class"] == "b" and report["per_class"][0]["recall"] is None
    json.dumps(report, allow_nan=False)
    json.dumps(classification_report(*_multiclass(), classes=["x", "y", "z"]), allow_nan=False)


# ------------------------------------------------------------------ ECE, hand-computed

# Confidences 0.95 (wrong), 0.85 (wrong), 0.75 (right), 0.55 (right).
_Y = np.array([0, 0, 1, 0])
_P = np.column_stack([1 - np.array([0.95, 0.85, 0.75, 0.45]), [0.95, 0.85, 0.75, 0.45]])


def test_ece_equal_width_by_hand():
    # 10 bins: each sample alone, |acc - conf| = 0.95, 0.85, 0.25, 0.45 -> mean 0.625.
    assert expected_calibration_error(_Y, _P, n_bins=10) == pytest.approx(0.625)
    # 2 bins: all in [0.5, 1]: accuracy 0.5, mean confidence 0.775 -> 0.275.
    assert expected_calibration_error(_Y, _P, n_bins=2) == pytest.approx(0.275)


def test_ece_equal_mass_by_hand():
    # 2 equal-mass bins: {0.55, 0.75} acc 1 conf 0.65 -> 0.35; {0.85, 0.95} acc 0 conf 0.9.
    expected = 0.5 * 0.35 + 0.5 * 0.9
    assert expected_calibration_error(_Y, _P, n_bins=2, strategy="quantile") == pytest.approx(
        expected
    )
    report = classification_report(_Y, _P, classes=["a", "b"], n_bootstrap=0, ece_bins=2)
    assert report["metrics"]["ece"] == pytest.approx(0.275)
    assert report["metrics"]["ece_equal_mass"] == pytest.approx(expected)


def test_reliability_bins_edges_are_left_closed_with_last_closed():
    y = np.array([0, 1, 0])
    p = np.array([[0.5, 0.5], [0.0, 1.0], [0.2, 0.8]])  # confidences 0.5, 1.0, 0.8
    bins = reliability_bins(y, p, n_bins=2)
    assert bins["low"] == [0.0, 0.5] and bins["high"] == [0.5, 1.0]
    assert bins["count"] == [0, 3]
    assert bins["accuracy"] == [
        None,
        pytest.approx(2 / 3),
    ]  # argmax of [.5, .5] is 0: right; 0.8 wrong
    assert bins["confidence"][1] == pytest.approx((0.5 + 1.0 + 0.8) / 3)


def test_ece_is_small_for_calibrated_probabilities():
    rng = np.random.default_rng(3)
    p1 = rng.random(20_000)
    y = (rng.random(p1.size) < p1).astype(int)
    p = np.column_stack([1 - p1, p1])
    assert expected_calibration_error(y, p) < 0.02
    overconfident = np.column_stack([1 - (p1 > 0.5), p1 > 0.5]).astype(float)
    assert expected_calibration_error(y, overconfident) > 0.2


# ------------------------------------------------------------------ bootstrap


def test_vectorised_bootstrap_rows_equal_sklearn_on_the_same_resamples():
    """Each resample's metrics, computed in one vectorised pass from draw counts, equal
    the sklearn-based point estimates recomputed on that resample's drawn samples."""
    for y, p, names in ((*_binary(), ["a", "b"]), (*_multiclass(), ["x", "y", "z"])):
        idx = M._resample_indices(y, 15, np.random.default_rng(7), stratified=False)
        positive = int(np.argmin(np.bincount(y)))
        rows = M._rows(M._weights(idx), M._prepare(y, p, positive, 10))
        for r in range(idx.shape[0]):
            yr, pr = y[idx[r]], p[idx[r]]
            expected = classification_report(
                yr, pr, classes=names, minority=positive, n_bootstrap=0
            )["metrics"]
            for name in M.SCALAR_METRICS:
                assert rows[name][r] == pytest.approx(expected[name], abs=1e-12), name
            precision, recall, f1, _ = precision_recall_fscore_support(
                yr, pr.argmax(1), labels=list(range(len(names))), zero_division=0
            )
            for k in range(len(names)):
                assert rows[f"{k}:precision"][r] == pytest.approx(precision[k])
                assert rows[f"{k}:recall"][r] == pytest.approx(recall[k])
                assert rows[f"{k}:f1"][r] == pytest.approx(f1[k])


def test_equal_mass_ece_does_not_depend_on_sample_order():
    y, p = _binary(101)  # many tied confidences
    shuffled = np.random.default_rng(0).permutation(y.size)
    for bins in (3, 10):
        a = expected_calibration_error(y, p, n_bins=bins, strategy="quantile")
        b = expected_calibration_error(y[shuffled], p[shuffled], n_bins=bins, strategy="quantile")
        assert a == pytest.approx(b, abs=1e-15)


def test_intervals_are_deterministic_per_seed_and_bracket_the_estimate():
    y, p = _binary()
    a = classification_report(y, p, classes=["a", "b"], seed=5)
    b = classification_report(y, p, classes=["a", "b"], seed=5)
    c = classification_report(y, p, classes=["a", "b"], seed=6)
    assert a["intervals"] == b["intervals"]
    assert a["intervals"] != c["intervals"]
    for name in M.SCALAR_METRICS:
        interval = a["intervals"][name]
        assert interval["n_resamples"] == 1000  # stratified: every class in every resample
        assert interval["low"] <= interval["high"]
        assert interval["low"] - 0.02 <= a["metrics"][name] <= interval["high"] + 0.02, name
    recall = a["intervals"]["per_class"]["b"]["recall"]
    assert recall["low"] < a["per_class"][0]["recall"] < recall["high"]


def test_plain_bootstrap_skips_resamples_missing_a_class():
    y = np.zeros(30, dtype=np.int64)
    y[[4, 17]] = 1  # P(no minority in a resample) = (28/30)^30 ~ 0.13
    p = np.tile([0.6, 0.4], (30, 1))
    p[[4, 17, 20]] = [0.3, 0.7]
    report = classification_report(y, p, classes=["a", "b"], stratified=False, seed=1)
    intervals = report["intervals"]
    assert intervals["accuracy"]["n_resamples"] == 1000
    used = intervals["roc_auc"]["n_resamples"]
    assert 800 < used < 990
    assert intervals["pr_auc"]["n_resamples"] == used
    assert intervals["balanced_accuracy"]["n_resamples"] == used
    assert intervals["per_class"]["b"]["recall"]["n_resamples"] == used
    assert report["bootstrap"]["resampling"] == "plain"


def test_intervals_narrow_with_more_data():
    small = classification_report(*_binary(60, seed=2), classes=["a", "b"])
    large = classification_report(*_binary(2000, seed=2), classes=["a", "b"])
    for name in ("accuracy", "roc_auc", "ece"):
        width_small = small["intervals"][name]["high"] - small["intervals"][name]["low"]
        width_large = large["intervals"][name]["high"] - large["intervals"][name]["low"]
        assert width_large < width_small / 2, name


# ------------------------------------------------------------------ input errors


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        (np.array([0, 1]), np.array([0.2, 0.8]), "2-D"),
        (np.array([0, 1, 1]), np.array([[0.2, 0.8], [0.5, 0.5]]), "one per probability row"),
        (np.array([0, 2]), np.array([[0.2, 0.8], [0.5, 0.5]]), "outside 0..1"),
        (np.array([0, 1]), np.array([[0.2, 0.9], [0.5, 0.5]]), "sum to 1"),
        (np.array([0, 1]), np.array([[np.nan, 0.8], [0.5, 0.5]]), "NaN"),
        (np.array(["a", "b"]), np.array([[0.2, 0.8], [0.5, 0.5]]), "integer class indices"),
    ],
)
def test_bad_inputs_raise_config_error(y, p, match):
    with pytest.raises(ConfigError, match=match):
        classification_report(y, p, classes=["a", "b"])


def test_bad_options_raise_config_error():
    y, p = _binary(20)
    with pytest.raises(ConfigError, match="3 classes"):
        classification_report(y, p, classes=["a", "b", "c"])
    with pytest.raises(ConfigError, match="minority"):
        classification_report(y, p, classes=["a", "b"], minority="c")
    with pytest.raises(ConfigError, match="n_bootstrap"):
        classification_report(y, p, classes=["a", "b"], n_bootstrap=-1)
    with pytest.raises(ConfigError, match="strategy"):
        expected_calibration_error(y, p, strategy="equal")
