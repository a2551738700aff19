"""``moola train --model fm_probe``: a frozen foundation model's embeddings under the same
purged out-of-fold protocol as every model, with its weights folder named and hashed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.models import create
from moola.models.foundation import directory_sha256
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.testing.foundation import tiny_chronos_bolt, tiny_kronos, tiny_timesfm
from moola.tracking.runs import RunStore
from tests.test_cli import run


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm-probe")
    registry = Registry(root)
    raw, market = synthesize_raw(registry, "mkt", n_bars=12_000, n_patterns=40, seed=3)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm-weights")
    return {
        "chronos": tiny_chronos_bolt(root / "chronos"),
        "kronos": tiny_kronos(root / "kronos"),
        "timesfm": tiny_timesfm(root / "timesfm"),
    }


@pytest.mark.parametrize("kind", ["chronos", "kronos", "timesfm"])
def test_train_records_the_weights_folder_and_hash_in_the_manifest(capsys, root, weights, kind):
    params = json.dumps({"backbone": kind, "path": str(weights[kind])})
    code, _, err = run(
        capsys,
        "--data-root",
        str(root),
        "train",
        "--model",
        "fm_probe",
        "--params",
        params,
        "--dataset",
        "pat",
        "--split",
        "kf",
        "--bootstrap",
        "20",
    )
    assert code == 0, err
    store = RunStore(root)
    line = store.results()[-1]
    assert line["model"] == "fm_probe"
    params = store.manifest(store.run_dir(line["run_id"]))["resolved_params"]
    assert params["backbone"] == kind and params["path"] == str(weights[kind])
    assert params["backbone_sha256"] == directory_sha256(weights[kind])


def test_a_saved_probe_reloads_its_folder_and_refuses_changed_weights(weights, tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(30) % 2
    X = 100 * np.exp(np.cumsum(rng.normal(0, 1e-2, (30, 50, 1)) * (1 + y[:, None, None]), axis=1))
    X = np.repeat(X, 4, axis=2)
    folder = tmp_path / "weights"
    tiny_chronos_bolt(folder)
    model = create("fm_probe", backbone="chronos", path=str(folder)).fit(X, y)
    assert model.get_params()["backbone_sha256"] is None  # fit changes no parameter
    proba = model.predict_proba(X)
    model.save(tmp_path / "model.bin")
    loaded = type(model).load(tmp_path / "model.bin")
    np.testing.assert_array_equal(loaded.predict_proba(X), proba)
    tiny_chronos_bolt(folder, seed=1)  # other weights, same place
    with pytest.raises(ConfigError, match="changed since they were recorded"):
        type(model).load(tmp_path / "model.bin").predict_proba(X)
    with pytest.raises(ConfigError, match="fm_probe needs path"):
        create("fm_probe").fit(X, y)
