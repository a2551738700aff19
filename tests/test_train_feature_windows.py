"""Training on feature windows (issue 16): ``run_training`` on a feature-windows dataset
fits each fold's scaler on that fold's training windows only, trains sequence models on
whole scaled windows and tabular models on the last row, and records the scaler in the
run (manifest and ``scaler.json``) with the feature table it applies to."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry
from moola.features.labels import build_labels
from moola.features.scaling import Scaler, fit_scaler, window_rows
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_inputs import ScaledWindowModel, load_feature_training_data
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.pipeline.train import TrainConfig, run_training
from moola.tracking.runs import RunStore
from tests.conftest import random_walk_bars

SPEC = FeatureSetSpec(
    name="small",
    features=[
        FeatureSpecEntry(name="sma", params={"period": 5}),
        FeatureSpecEntry(name="rsi", params={"period": 3}, scale="robust"),
    ],
)
COLUMNS = ("sma_5", "sma_5_ratio", "rsi_3")
LENGTH = 10


@pytest.fixture
def windows(registry: Registry) -> Registry:
    """Labeled feature windows ``fw`` over 400 random-walk bars with a 3-fold walk-forward
    split ``wf`` and a forward-chaining split ``fc``."""
    bars = random_walk_bars(400)
    raw = ingest_bars(registry, bars, name="mkt", sources=[{"test": "mkt"}], mode="repair").ref
    labels = build_labels(bars.reset_index(drop=True), "forward-return", horizon=5)
    registry.write_table("labels", "mkt", labels, parents=[raw], meta={"target": "label"})
    ref = build_feature_windows(registry, "mkt", SPEC, name="fw", length=LENGTH, labels="mkt")
    make_and_store_split(registry, ref, "walk-forward", name="wf", n_splits=3)
    make_and_store_split(registry, ref, "forward-chaining", name="fc")
    return registry


def _train(registry: Registry, model: str, split: str = "wf", **params):
    config = TrainConfig(
        model=model, dataset="fw", split=split, params=params, n_bootstrap=20, seed=3
    )
    return run_training(registry, config)


def test_each_fold_fits_its_scaler_on_its_own_training_rows(windows):
    data = load_feature_training_data(windows, "fw", "wf")
    fold = data.split.folds[-1]
    train = data.X[np.asarray(fold.train)]
    model = ScaledWindowModel(
        _tiny_logreg(), COLUMNS, dict(data.audit["scaling"]), "features_last_row"
    ).fit(train, data.y[np.asarray(fold.train)])
    rows = window_rows(train.starts, LENGTH)
    expected = fit_scaler(train.values, COLUMNS, data.audit["scaling"], rows)
    assert model.scaler_ == expected
    assert data.audit["scaling"] == {"sma_5": "zscore", "sma_5_ratio": "zscore", "rsi_3": "robust"}
    # No row a validation or test window covers, and no later row, reaches the fit.
    test_rows = window_rows(data.X.windows.starts[np.asarray(fold.test)], LENGTH)
    assert rows.max() < test_rows.min()
    # Changing every row after the training rows leaves the fitted scaler unchanged.
    altered = train.values.copy()
    altered[rows.max() + 1 :] *= 100.0
    moved = data.X.windows.__class__(altered, train.starts, LENGTH)
    assert fit_scaler(moved.values, COLUMNS, data.audit["scaling"], rows) == expected


def test_a_tabular_run_trains_on_the_last_row_and_records_its_scaler(windows):
    result = _train(windows, "logistic_regression")
    manifest = result.manifest
    assert result.mode == "oof" and manifest["inputs"] == "features_last_row"
    assert manifest["window"]["columns"] == list(COLUMNS)
    assert manifest["window"]["features"] == "mkt-small@v1"
    store = RunStore(windows.root)
    stored = json.loads((result.run_dir / "scaler.json").read_text())
    assert stored == manifest["scaling"]
    scaler = Scaler.from_dict(stored, COLUMNS)
    # The final model's scaler is fitted on the rows of every covered window.
    data = load_feature_training_data(windows, "fw", "wf")
    predictions = windows.load_table("predictions", result.run_id)
    covered = predictions["covered"].to_numpy()
    rows = window_rows(data.X.windows.starts[covered], LENGTH)
    assert scaler == fit_scaler(data.X.windows.values, COLUMNS, data.audit["scaling"], rows)
    assert set(predictions["symbol"]) == {"TEST"}
    assert store.train_manifest(result.run_dir).model == "logistic_regression"


def test_a_sequence_model_trains_on_whole_windows_in_a_holdout_run(windows):
    result = _train(windows, "bilstm", split="fc", epochs=2, hidden=8, batch_size=64)
    assert result.mode == "holdout" and result.manifest["inputs"] == "features"
    assert result.manifest["training"]["training"]["epochs_run"] >= 1
    predictions = windows.load_table("predictions", result.run_id)
    val = predictions[predictions["covered"]]
    assert len(val) == result.manifest["data"]["counts"]["val"]
    classes = result.manifest["data"]["classes"]
    proba = val[[f"p_{c}" for c in classes]].to_numpy()
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)


def test_models_and_inputs_that_cannot_read_feature_windows_are_refused(windows):
    with pytest.raises(ConfigError, match="feature windows"):
        config = TrainConfig(model="logistic_regression", dataset="fw", split="wf", inputs="ohlc")
        run_training(windows, config)
    with pytest.raises(ConfigError, match="price-action"):
        run_training(windows, TrainConfig(model="enhanced_simple_lstm", dataset="fw", split="wf"))
    assert not windows.names("predictions")


def _tiny_logreg():
    from moola.models import create

    return create("logistic_regression")
