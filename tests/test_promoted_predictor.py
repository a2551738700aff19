"""A promoted model carries its Predictor: ``Predictor.from_promoted`` predicts as the run.

Promotion copies the run's manifest, model and calibrator into
``artifacts/models/promoted/<run_id>/`` under an anchored listing. Loaded from there the
Predictor gives exactly the run's probabilities, also once the run folder is gone; a
flipped byte in any promoted file is refused naming the file, with nothing written; and
a run whose Predictor cannot load is never promoted (no decision recorded, nothing copied).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from moola.core.errors import IntegrityError
from moola.data.registry import Registry
from moola.evaluation.gates import GateConfig
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.lifecycle import promote
from moola.pipeline.predictor import Predictor
from moola.pipeline.train import TrainConfig, run_training
from moola.tracking.journal import JsonlJournal
from moola.tracking.runs import RunStore

OPEN_GATES = GateConfig(min_accuracy=0.0, max_ece=1.0)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> tuple[Path, str]:
    """A data root with one out-of-fold run, promoted on its out-of-fold metrics."""
    registry = Registry(tmp_path_factory.mktemp("promoted") / "moola_data")
    raw, market = synthesize_raw(registry, "mkt", n_bars=8_000, n_patterns=32, seed=4)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    config = TrainConfig(model="logistic_regression", dataset="pat", split="kf", n_bootstrap=10)
    run_id = run_training(registry, config).run_id
    promote(registry, run_id, OPEN_GATES)
    return registry.root, run_id


@pytest.fixture
def root(lab, tmp_path) -> tuple[Path, str]:
    """A private copy of the lab's data root (tests below change files in it)."""
    source, run_id = lab
    copy = tmp_path / "moola_data"
    shutil.copytree(source, copy)
    return copy, run_id


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_from_promoted_gives_the_runs_own_probabilities(lab):
    root, run_id = lab
    from_run = Predictor.from_run(root, run_id)
    promoted = Predictor.from_promoted(root, run_id)
    X = Registry(root).load_labeled("pat").X
    np.testing.assert_array_equal(promoted.predict_proba(X), from_run.predict_proba(X))
    assert promoted.calibrator is not None
    for field in ("run_id", "manifest_sha256", "model", "view", "length", "columns", "classes"):
        assert getattr(promoted, field) == getattr(from_run, field), field
    assert (promoted.minority, promoted.threshold) == (from_run.minority, from_run.threshold)
    folder = RunStore(root).promoted_dir / run_id
    assert {"model.bin", "calibrator.json", "manifest.json", "promoted.json"} <= {
        p.name for p in folder.iterdir()
    }


def test_a_promoted_model_predicts_without_its_run_folder(root):
    root, run_id = root
    X = Registry(root).load_labeled("pat").X
    expected = Predictor.from_run(root, run_id).predict_proba(X)
    shutil.rmtree(RunStore(root).run_dir(run_id))
    np.testing.assert_array_equal(Predictor.from_promoted(root, run_id).predict_proba(X), expected)


@pytest.mark.parametrize("name", ["model.bin", "calibrator.json", "manifest.json"])
def test_a_flipped_byte_in_a_promoted_file_is_refused_naming_it(root, name):
    root, run_id = root
    path = RunStore(root).promoted_dir / run_id / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    before = _snapshot(root)
    with pytest.raises(IntegrityError) as caught:
        Predictor.from_promoted(root, run_id)
    assert name in str(caught.value)
    assert _snapshot(root) == before


def test_a_run_that_cannot_predict_is_never_promoted(root):
    root, run_id = root
    store = RunStore(root)
    source = store.run_dir(run_id)
    target = source.parent / f"{source.name}-elsewhere"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("evaluations", "backtests"))
    manifest = json.loads((target / "manifest.json").read_bytes())
    manifest["run_id"] = target.name
    manifest.pop("window", None)  # its window shape must come from its dataset, which...
    manifest["data"]["dataset"]["content_hash"] = "sha256:" + "0" * 64  # ...is not stored
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    (target / "manifest.json").write_bytes(data)
    store.anchors.record(f"run:{target.name}", data)
    decisions = len(JsonlJournal(root).read("gate_decision"))
    with pytest.raises(IntegrityError, match="content hash"):
        promote(Registry(root), target.name, OPEN_GATES)
    assert len(JsonlJournal(root).read("gate_decision")) == decisions
    assert not (store.promoted_dir / target.name).exists()
