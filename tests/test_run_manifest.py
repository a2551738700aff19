"""Typed run manifests: a training run's manifest.json read once through the tracking store.

A run written by ``run_training`` parses into a ``TrainManifest`` whose fields are the
dict's values; newer keys (a future field) and older shapes (no ``window``) still load;
a manifest that does not fit is refused naming the run and the field; a run that is not
a training run is refused as such.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from moola.core.errors import ConfigError, IntegrityError
from moola.data.registry import Registry
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.train import TrainConfig, run_training
from moola.tracking import TrainManifest, WindowSpec
from moola.tracking.runs import RunStore


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> tuple[Registry, str]:
    registry = Registry(tmp_path_factory.mktemp("manifest"))
    raw, market = synthesize_raw(registry, "mkt", n_bars=8_000, n_patterns=32, seed=5)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    config = TrainConfig(model="logistic_regression", dataset="pat", split="kf", n_bootstrap=10)
    return registry, run_training(registry, config).run_id


def _variant(registry: Registry, run_id: str, label: str, edit) -> Path:
    """A copy of the run under a new id whose manifest ``edit`` changed, anchored as if
    moola wrote it (so only the manifest's shape is under test)."""
    store = RunStore(registry.root)
    source = store.run_dir(run_id)
    target = source.parent / f"{source.name}-{label}"
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_bytes())
    manifest["run_id"] = target.name
    edit(manifest)
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    (target / "manifest.json").write_bytes(data)
    store.anchors.record(f"run:{target.name}", data)
    return target


def test_a_training_runs_manifest_reads_typed_with_the_dicts_values(lab):
    registry, run_id = lab
    store = RunStore(registry.root)
    run_dir = store.run_dir(run_id)
    raw = store.manifest(run_dir)
    manifest = store.train_manifest(run_dir)
    assert isinstance(manifest, TrainManifest)
    assert manifest.run_id == run_id and manifest.mode == "oof"
    assert manifest.model == "logistic_regression" == raw["config"]["model"]
    assert manifest.config == raw["config"] and manifest.config_hash == raw["config_hash"]
    assert manifest.classes == tuple(raw["data"]["classes"])
    assert manifest.data.dataset.model_dump() == raw["data"]["dataset"]
    assert manifest.data.dataset.ref == registry.resolve("labeled", "pat", 1)
    assert manifest.split.split_hash == raw["data"]["split"]["split_hash"]
    assert manifest.split.pinned == "kf@v1"
    assert manifest.predictions.model_dump() == raw["predictions"]
    assert manifest.calibration.threshold == raw["calibration"].get("threshold")
    assert manifest.metrics == raw["metrics"] and manifest.inputs == raw["inputs"]
    assert manifest.original == raw  # the dict as read, unknown keys and all
    with pytest.raises(ValueError):  # frozen
        manifest.mode = "holdout"


def test_newer_and_older_manifests_load(lab):
    registry, run_id = lab
    store = RunStore(registry.root)

    def newer(manifest):
        manifest["window"] = {"length": 105, "columns": ["open", "high", "low", "close"]}
        manifest["a_field_from_the_future"] = {"x": 1}

    parsed = store.train_manifest(_variant(registry, run_id, "newer", newer))
    assert parsed.window == WindowSpec(length=105, columns=("open", "high", "low", "close"))
    assert parsed.original["a_field_from_the_future"] == {"x": 1}

    def older(manifest):
        for key in ("window", "threads", "calibrated_metrics", "calibration", "libraries"):
            manifest.pop(key, None)

    parsed = store.train_manifest(_variant(registry, run_id, "older", older))
    assert parsed.window is None and parsed.calibration.threshold is None


@pytest.mark.parametrize(
    ("label", "edit", "field"),
    [
        ("nomode", lambda m: m.pop("mode"), "mode"),
        ("badmode", lambda m: m.update(mode="sometimes"), "mode"),
        ("noclasses", lambda m: m["data"].pop("classes"), "data.classes"),
        ("badwindow", lambda m: m.update(window={"length": 0, "columns": ["close"]}), "window"),
        ("nomodel", lambda m: m["config"].pop("model"), "config"),
        ("nosplit", lambda m: m["data"].pop("split"), "data.split"),
    ],
)
def test_a_manifest_that_does_not_fit_is_refused_naming_run_and_field(lab, label, edit, field):
    registry, run_id = lab
    store = RunStore(registry.root)
    target = _variant(registry, run_id, label, edit)
    with pytest.raises(IntegrityError) as caught:
        store.train_manifest(target)
    message = str(caught.value)
    assert target.name in message and field in message and "manifest" in message


def test_a_run_that_is_not_a_training_run_is_refused_as_such(lab):
    registry, run_id = lab
    target = _variant(registry, run_id, "demo", lambda m: m.update(kind="demo"))
    with pytest.raises(ConfigError, match=r"is a demo run, not a training run"):
        RunStore(registry.root).train_manifest(target)


def test_a_changed_manifest_byte_is_still_an_integrity_error(lab):
    registry, run_id = lab
    target = _variant(registry, run_id, "flipped", lambda m: None)
    data = (target / "manifest.json").read_bytes().replace(b'"oof"', b'"OOF"', 1)
    (target / "manifest.json").write_bytes(data)
    with pytest.raises(IntegrityError, match=r"manifest\.json"):
        RunStore(registry.root).train_manifest(target)
