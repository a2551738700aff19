"""``Predictor``: a run's model applied to raw bars gives exactly the run's own numbers.

For a tabular out-of-fold run and a neural one, ``Predictor.from_run(...).predict_proba``
on the raw bars of the run's windows equals the pipeline's path (``model_inputs`` ->
estimator -> calibrator) to 1e-9; a run whose files do not match its manifest, or one
still holding a pickle, is refused before anything loads.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from moola.core.errors import CheckpointError, IntegrityError, MoolaError
from moola.core.integrity import file_records
from moola.data.registry import Registry
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.inputs import model_inputs
from moola.pipeline.predictor import Predictor, load_model_files
from moola.pipeline.train import TrainConfig, run_training
from moola.tracking.runs import RunStore

TINY_LSTM = {"epochs": 1, "batch_size": 16, "hidden": 8, "heads": 2, "fc": [8]}


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Registry:
    """Planted-pattern windows (105 bars) with a 3-fold purged split: tiny, but real."""
    registry = Registry(tmp_path_factory.mktemp("predictor"))
    raw, market = synthesize_raw(registry, "mkt", n_bars=12_000, n_patterns=48, seed=3)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    return registry


@pytest.fixture(scope="module")
def runs(lab) -> dict[str, str]:
    out = {}
    for model, params in (("logistic_regression", {}), ("simple_lstm", TINY_LSTM)):
        config = TrainConfig(model=model, dataset="pat", split="kf", params=params, n_bootstrap=10)
        out[model] = run_training(lab, config).run_id
    return out


def _pipeline_proba(
    registry: Registry, run_id: str, windows: np.ndarray | None = None
) -> np.ndarray:
    """The final model's probabilities for raw ``windows`` (default: all the run's
    windows), computed the way the pipeline does."""
    store = RunStore(registry.root)
    run_dir = store.run_dir(run_id)
    config = TrainConfig.model_validate(store.manifest(run_dir)["config"])
    if windows is None:
        windows = registry.load_labeled("pat").X
    X, _ = model_inputs(config.inputs, config.model, windows)
    estimator, calibrator = load_model_files(store, run_dir, config.model)
    proba = estimator.predict_proba(X)
    return proba if calibrator is None else calibrator.transform(proba)


@pytest.mark.parametrize("model", ["logistic_regression", "simple_lstm"])
def test_predictor_on_raw_bars_gives_the_runs_own_probabilities(lab, runs, model):
    predictor = Predictor.from_run(lab.root, runs[model])
    data = lab.load_labeled("pat")
    expected = _pipeline_proba(lab, runs[model])
    assert predictor.calibrator is not None and predictor.length == 105
    assert predictor.classes == tuple(data.classes)
    np.testing.assert_allclose(predictor.predict_proba(data.X), expected, rtol=0, atol=1e-9)
    # The same windows cut from the raw bar frame, one at a time (a live decision's input),
    # against the pipeline on that one window: a float32 network's sums can differ in the
    # last bits between batch sizes, so like is compared with like.
    bars = lab.load_raw("mkt")
    starts = data.table["start"].to_numpy()
    for i in (0, len(starts) // 2, len(starts) - 1):
        window = bars.iloc[: starts[i] + predictor.length]  # history up to the window's end
        one = _pipeline_proba(lab, runs[model], data.X[i : i + 1])
        np.testing.assert_allclose(predictor.predict_proba(window), one, rtol=0, atol=1e-9)
        np.testing.assert_allclose(one, expected[i : i + 1], rtol=0, atol=1e-6)
    manifest = RunStore(lab.root).manifest(RunStore(lab.root).run_dir(runs[model]))
    assert predictor.threshold == manifest["calibration"].get("threshold")
    assert predictor.manifest_sha256 == RunStore(lab.root).manifest_hash(
        RunStore(lab.root).run_dir(runs[model])
    )


def test_decide_applies_the_recorded_minority_threshold(lab, runs):
    predictor = Predictor.from_run(lab.root, runs["logistic_regression"])
    minority = predictor.minority or predictor.classes[0]
    m = predictor.classes.index(minority)
    pinned = Predictor(**{**vars(predictor), "minority": minority, "threshold": 0.3})
    proba = np.zeros((3, 2))
    proba[:, m] = [0.29, 0.3, 0.6]
    proba[:, 1 - m] = 1 - proba[:, m]
    other = predictor.classes[1 - m]
    assert pinned.decide(proba).tolist() == [other, minority, minority]
    argmax = Predictor(**{**vars(predictor), "threshold": None})
    assert argmax.decide(proba).tolist() == [other, other, minority]


def _copy_run(registry: Registry, run_id: str, label: str) -> tuple[str, Path]:
    """A copy of a run under a new id, its manifest anchored as written by moola."""
    store = RunStore(registry.root)
    source = store.run_dir(run_id)
    target = source.parent / f"{source.name}-{label}"
    shutil.copytree(source, target)
    return target.name, target


def _rewrite_manifest(registry: Registry, target: Path, files: list[str]) -> None:
    manifest = json.loads((target / "manifest.json").read_bytes())
    manifest["run_id"] = target.name
    manifest["files"] = file_records(target, sorted(files))
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    (target / "manifest.json").write_bytes(data)
    RunStore(registry.root).anchors.record(f"run:{target.name}", data)


def test_a_run_whose_model_file_changed_is_refused_naming_it(lab, runs):
    run_id, target = _copy_run(lab, runs["logistic_regression"], "flipped")
    files = json.loads((target / "manifest.json").read_bytes())["files"]
    _rewrite_manifest(lab, target, list(files))  # intact and anchored under its new id
    Predictor.from_run(lab.root, run_id)
    model = bytearray((target / "model.bin").read_bytes())
    model[len(model) // 2] ^= 0x01
    (target / "model.bin").write_bytes(bytes(model))
    with pytest.raises(IntegrityError, match=r"model\.bin"):
        Predictor.from_run(lab.root, run_id)


def test_a_run_still_holding_a_pickle_is_refused_with_the_migrate_hint(lab, runs):
    run_id, target = _copy_run(lab, runs["logistic_regression"], "pickled")
    (target / "calibrator.json").unlink()
    (target / "calibrator.pkl").write_bytes(pickle.dumps({"not": "read"}))
    files = set(json.loads((target / "manifest.json").read_bytes())["files"])
    _rewrite_manifest(lab, target, sorted((files - {"calibrator.json"}) | {"calibrator.pkl"}))
    with pytest.raises(CheckpointError, match=rf"moola runs migrate {run_id} --trust"):
        Predictor.from_run(lab.root, run_id)


def test_the_manifests_window_is_used_so_the_dataset_need_not_be_stored(lab, runs):
    """A run that records its window predicts without its labeled dataset; one written
    before runs recorded it falls back to the dataset's meta, which must match."""
    source = runs["logistic_regression"]
    data = lab.load_labeled("pat")
    expected = Predictor.from_run(lab.root, source).predict_proba(data.X)
    meta = lab.meta(lab.resolve("labeled", "pat", 1))
    window = {"length": int(meta["length"]), "columns": list(meta["columns"])}
    for label, recorded in (("windowed", window), ("unwindowed", None)):
        run_id, target = _copy_run(lab, source, label)
        manifest = json.loads((target / "manifest.json").read_bytes())
        manifest["run_id"] = target.name
        manifest["data"]["dataset"]["version"] = 99  # no such version is stored
        manifest.pop("window", None)
        if recorded is not None:
            manifest["window"] = recorded
        data_bytes = (json.dumps(manifest, indent=2) + "\n").encode()
        (target / "manifest.json").write_bytes(data_bytes)
        RunStore(lab.root).anchors.record(f"run:{target.name}", data_bytes)
        if recorded is None:
            with pytest.raises(MoolaError, match=r"pat"):
                Predictor.from_run(lab.root, run_id)
            continue
        predictor = Predictor.from_run(lab.root, run_id)
        assert (predictor.length, list(predictor.columns)) == (window["length"], window["columns"])
        np.testing.assert_array_equal(predictor.predict_proba(data.X), expected)
