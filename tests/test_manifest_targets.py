"""Run manifests name their task and targets (issue 16).

What a user relies on: a run written before tasks existed still reads, as one
classification target over its classes; a regression or multitask run reads with its
targets, scaler and feature window; a manifest whose targets do not fit its task is
refused naming the field; and the predictions-table columns of each target are where
the contract puts them.
"""

from __future__ import annotations

import copy

import pytest

from moola.core.errors import ConfigError, IntegrityError
from moola.tracking.manifest import TargetSpec, parse_train_manifest

DATASET = {"kind": "labeled", "name": "fw", "version": 1, "content_hash": "sha256:00"}
SPLIT = {"name": "kf", "version": 1, "split_hash": "sha256:11"}


def _manifest(**changes) -> dict:
    """A training manifest as a run written before tasks existed has it."""
    manifest = {
        "run_id": "r1",
        "kind": "train",
        "mode": "oof",
        "config": {"model": "logistic_regression"},
        "config_hash": "sha256:22",
        "inputs": "relative",
        "seed": 0,
        "data": {"dataset": DATASET, "classes": ["down", "up"], "split": SPLIT},
        "metrics": {},
    }
    manifest.update(changes)
    return manifest


def _regression(**changes) -> dict:
    data = {"dataset": DATASET, "split": SPLIT}  # a regression run has no classes
    changes.setdefault("targets", [{"name": "ret", "kind": "regression"}])
    return _manifest(task="regression", data=data, **changes)


def test_a_manifest_from_before_tasks_has_one_classification_target():
    parsed = parse_train_manifest(_manifest(), "r1", "manifest.json")
    assert parsed.task == "classification" and parsed.scaling is None
    assert parsed.targets == (
        TargetSpec(name="label", kind="classification", classes=("down", "up")),
    )
    assert parsed.target() is parsed.targets[0] and parsed.target("label") is parsed.targets[0]
    assert parsed.prediction_columns(parsed.target()) == {
        "actual": "label",
        "down": "p_down",
        "up": "p_up",
    }
    assert "targets" not in parsed.original  # the dict as read


def test_a_regression_run_reads_with_its_targets_scaler_and_feature_window():
    scaler = {"columns": ["rsi"], "methods": ["zscore"], "center": [50.0], "scale": [10.0]}
    window = {"length": 60, "columns": ["rsi"], "features": "intraday31@v1"}
    parsed = parse_train_manifest(_regression(scaling=scaler, window=window), "r1", "m")
    assert parsed.task == "regression" and parsed.classes == ()
    assert parsed.scaling == scaler and parsed.window.features == "intraday31@v1"
    target = parsed.target()
    assert target.kind == "regression" and target.classes is None
    assert parsed.prediction_columns(target) == {"actual": "y_ret", "pred": "pred_ret"}
    old_window = parse_train_manifest(
        _manifest(window={"length": 5, "columns": ["close"]}), "r1", "m"
    )
    assert old_window.window.features is None


def test_a_multitask_run_names_each_heads_columns_and_a_target_must_be_picked():
    targets = [
        {"name": "direction", "kind": "classification", "classes": ["down", "up"]},
        {"name": "vol", "kind": "regression"},
    ]
    parsed = parse_train_manifest(_manifest(task="multitask", targets=targets), "r1", "m")
    direction = parsed.target("direction")
    assert parsed.prediction_columns(direction) == {
        "actual": "y_direction",
        "down": "p_direction_down",
        "up": "p_direction_up",
    }
    assert parsed.prediction_columns(parsed.target("vol"))["pred"] == "pred_vol"
    with pytest.raises(ConfigError, match=r"targets direction, vol; name the one") as info:
        parsed.target()
    assert info.value.param == "target"
    with pytest.raises(ConfigError, match=r"'volume' is not a target.*Did you mean 'vol'"):
        parsed.target("volume")


@pytest.mark.parametrize(
    ("manifest", "said"),
    [
        (_regression(targets=[]), "targets: missing: a regression run names its targets"),
        (
            _regression(targets=[{"name": "ret", "kind": "classification"}]),
            "'ret' is a classification target: it names its classes",
        ),
        (
            _regression(targets=[{"name": "ret", "kind": "regression", "classes": ["a", "b"]}]),
            "'ret' is a regression target: it has no classes",
        ),
        (
            _regression(targets=[{"name": "r", "kind": "regression"}] * 2),
            "targets: names repeat",
        ),
        (
            _manifest(targets=[{"name": "ret", "kind": "regression"}]),
            "a classification run has one classification target, got ret (regression)",
        ),
        (
            _manifest(targets=[{"name": "label", "kind": "classification", "classes": ["a", "b"]}]),
            "are not the run's classes ['down', 'up'] (data.classes)",
        ),
        (_manifest(task="forecast"), "task"),
        (_regression(targets=[{"name": "ret", "kind": "ordinal"}]), "targets.0.kind"),
    ],
)
def test_targets_that_do_not_fit_the_task_are_refused_naming_the_field(manifest, said):
    with pytest.raises(IntegrityError) as caught:
        parse_train_manifest(copy.deepcopy(manifest), "r9", "runs/r9/manifest.json")
    message = str(caught.value)
    assert "r9" in message and said in message, message


def test_a_classification_manifest_without_classes_is_refused_naming_them():
    manifest = _manifest()
    manifest["data"].pop("classes")
    with pytest.raises(IntegrityError, match=r"data\.classes: missing"):
        parse_train_manifest(manifest, "r1", "m")
