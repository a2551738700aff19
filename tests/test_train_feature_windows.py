"""Training on feature windows (issue 16): ``run_training`` on a feature-windows dataset
fits each fold's scaler on that fold's training windows only, trains sequence models on
whole scaled windows and tabular models on the last row, and records the scaler in the
run (manifest and ``scaler.json``) with the feature table it applies to."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry
from moola.features.labels import build_labels
from moola.features.scaling import Scaler, fit_scaler, window_rows
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_inputs import (
    ScaledWindowModel,
    load_feature_training_data,
    with_symbol_ids,
)
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.pipeline.train import TrainConfig, run_training
from moola.tracking.runs import RunStore
from tests.conftest import random_walk_bars, store_labeled_pair

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


@pytest.mark.parametrize("model", ["logistic_regression", "bilstm"])
def test_the_predictor_of_a_feature_window_run_predicts_as_the_run_did(windows, model):
    from moola.pipeline.predictor import Predictor

    params = {"epochs": 1, "hidden": 8} if model == "bilstm" else {}
    result = _train(windows, model, split="fc", **params)
    predictor = Predictor.from_run(windows.root, result.run_id)
    bars = windows.load_raw("mkt")
    data = load_feature_training_data(windows, "fw", "fc")
    i = int(data.val.indices[5])  # a validation window: its last bar and the bars before
    end = int(data.X.windows.starts[i]) + LENGTH
    # Computed on the bars up to the window's last bar only, the features equal the
    # stored table's (computed on all bars): nothing later reaches a decision.
    from_bars = predictor.windows(bars.iloc[:end])
    np.testing.assert_array_equal(from_bars[0], data.X.windows[i])
    proba = predictor.estimator.predict_proba(predictor.inputs_of(bars.iloc[:end]))
    stored = windows.load_table("predictions", result.run_id)
    columns = [f"p_{c}" for c in predictor.classes]
    np.testing.assert_allclose(proba[0], stored.loc[i, columns].to_numpy(float), atol=1e-6)
    with pytest.raises(ConfigError, match="warm-up"):
        predictor.windows(bars.iloc[:LENGTH])


@pytest.fixture
def forecasting(windows: Registry) -> Registry:
    """Feature windows ``fr`` whose target is the forward return (a regression), with a
    walk-forward split ``frw`` and a forward-chaining split ``frc``."""
    ref = build_feature_windows(
        windows, "mkt", SPEC, name="fr", length=LENGTH, labels="mkt", targets=["forward_return"]
    )
    make_and_store_split(windows, ref, "walk-forward", name="frw", n_splits=3)
    make_and_store_split(windows, ref, "forward-chaining", name="frc")
    return windows


def test_a_regression_run_predicts_values_out_of_fold_and_scores_them(forecasting):
    config = TrainConfig(
        model="bilstm",
        dataset="fr",
        split="frw",
        params={"epochs": 2, "hidden": 8},
        n_bootstrap=20,
    )
    result = run_training(forecasting, config)
    manifest = result.manifest
    assert manifest["task"] == "regression"
    assert [(t["name"], t["kind"]) for t in manifest["targets"]] == [
        ("forward_return", "regression")
    ]
    assert manifest["resolved_params"]["task"] == "regression"
    assert manifest["calibration"]["method"] == "none" and manifest["scaling"] is not None
    assert set(manifest["metrics"]["metrics"]) == {"mae", "rmse", "r2", "sign_accuracy", "ic"}
    assert "TEST" in manifest["metrics"]["per_symbol"]
    predictions = forecasting.load_table("predictions", result.run_id)
    covered = predictions["covered"].to_numpy()
    assert np.isfinite(predictions.loc[covered, "pred_forward_return"]).all()
    assert predictions.loc[~covered, "pred_forward_return"].isna().all()
    # The actual column is the stored target at each window's last bar.
    data = load_feature_training_data(forecasting, "fr", "frw")
    np.testing.assert_array_equal(predictions["y_forward_return"].to_numpy(), data.y)
    # Every metric is computed from the covered rows alone.
    from moola.evaluation.regression import regression_report

    again = regression_report(
        data.y[covered], predictions.loc[covered, "pred_forward_return"], n_bootstrap=0
    )
    assert again["metrics"] == pytest.approx(manifest["metrics"]["metrics"])
    assert (result.run_dir / "predicted_vs_actual.png").exists()
    line = RunStore(forecasting.root).results()[-1]
    assert line["metrics"]["ic"] == manifest["metrics"]["metrics"]["ic"]


def test_a_regression_target_refuses_class_only_settings(forecasting):
    with pytest.raises(ConfigError, match="calibrat"):
        run_training(
            forecasting,
            TrainConfig(model="bilstm", dataset="fr", split="frw", calibration="platt"),
        )
    with pytest.raises(ConfigError, match="task"):
        run_training(
            forecasting,
            TrainConfig(
                model="bilstm", dataset="fr", split="frw", params={"task": "classification"}
            ),
        )


def test_a_multitask_run_scores_each_head_and_records_their_weights(windows):
    ref = build_feature_windows(
        windows,
        "mkt",
        SPEC,
        name="mt",
        length=LENGTH,
        labels="mkt",
        targets=["label", "forward_return"],
    )
    make_and_store_split(windows, ref, "forward-chaining", name="mtc")
    config = TrainConfig(
        model="cnn_lstm_attention",
        dataset="mt",
        split="mtc",
        params={"epochs": 2},
        n_bootstrap=10,
    )
    result = run_training(windows, config)
    manifest = result.manifest
    assert manifest["task"] == "multitask"
    heads = manifest["resolved_params"]["heads"]
    classes = manifest["targets"][0]["classes"]
    assert heads == {"label": len(classes), "forward_return": "regression"}
    report = manifest["metrics"]
    assert report["heads"]["forward_return"]["task"] == "regression"
    assert "accuracy" in report["heads"]["label"]["metrics"]
    predictions = windows.load_table("predictions", result.run_id)
    val = predictions[predictions["covered"]]
    proba = val[[f"p_label_{c}" for c in classes]].to_numpy()
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert set(val["y_label"]) <= set(classes)
    assert np.isfinite(val["pred_forward_return"]).all()
    line = RunStore(windows.root).results()[-1]
    assert "forward_return.ic" in line["metrics"] and "label.accuracy" in line["metrics"]
    history = manifest["training"]["training"]["heads"]  # per head, per epoch
    epochs = manifest["training"]["training"]["epochs_run"]
    for key in ("head_losses_history", "head_weights_history"):
        assert set(history[key]) == {"label", "forward_return"}
        assert all(len(values) == epochs for values in history[key].values())


def test_a_regression_run_from_the_command_line_to_report_and_promotion(capsys, forecasting):
    from tests.test_cli import run

    root = str(forecasting.root)
    code, out, err = run(
        capsys,
        "--data-root", root, "train", "--model", "lightgbm", "--dataset", "fr",
        "--split", "frw", "--bootstrap", "20", "--params", '{"n_estimators": 20}',
    )  # fmt: skip
    assert code == 0, err
    assert "ic" in out and "rmse" in out
    run_id = RunStore(forecasting.root).results()[-1]["run_id"]
    code, out, err = run(capsys, "--data-root", root, "report", run_id)
    assert code == 0, err
    html = (RunStore(forecasting.root).run_dir(run_id) / "report.html").read_text()
    assert "Regression metrics (forward_return)" in html and "sign_accuracy" in html
    # The classifier's accuracy/ECE defaults do not apply; metric gates do.
    code, _, err = run(capsys, "--data-root", root, "promote", run_id, "--gate", "ic>0.99")
    assert code != 0 and "ic" in err and "not promoted" in err
    code, _, err = run(capsys, "--data-root", root, "promote", run_id, "--gate", "ic=>1")
    assert code != 0 and "--gate" in err
    code, out, err = run(capsys, "--data-root", root, "promote", run_id, "--gate", "ic>-1")
    assert code == 0 and "promoted" in out, err
    promoted = RunStore(forecasting.root).promoted_dir / run_id
    assert (promoted / "scaler.json").exists()


def test_a_regression_holdout_run_scores_its_test_part_once_with_its_predictor(capsys, forecasting):
    from moola.pipeline.lifecycle import evaluate_test
    from moola.pipeline.predictor import Predictor
    from tests.test_cli import run

    config = TrainConfig(
        model="bilstm", dataset="fr", split="frc", params={"epochs": 2, "hidden": 8}
    )
    result = run_training(forecasting, config)
    predictor = Predictor.from_run(forecasting.root, result.run_id)
    assert predictor.task == "regression"
    data = load_feature_training_data(forecasting, "fr", "frc")
    test = np.asarray(data.test.indices)
    values = predictor.predict(data.X[test].materialise())
    assert values.shape == (len(test),) and np.isfinite(values).all()
    # Bars up to a test window's last bar give that window's prediction.
    i = int(test[3])
    end = int(data.X.windows.starts[i]) + LENGTH
    bars = forecasting.load_raw("mkt").iloc[:end]
    assert predictor.predict(bars)[0] == pytest.approx(values[3], rel=1e-6, abs=1e-9)
    with pytest.raises(ConfigError, match="one regression target"):
        predictor.predict_heads(bars)

    code, out, err = run(
        capsys, "--data-root", str(forecasting.root), "evaluate", result.run_id, "--test"
    )
    assert code == 0, err
    assert "test part" in out and "ic" in out
    report = evaluate_test(forecasting, result.run_id, allow_reuse=True, n_bootstrap=0)
    assert report["task"] == "regression" and report["n"] == len(test)
    from moola.evaluation.regression import regression_report

    expected = regression_report(data.y[test], values, n_bootstrap=0)
    assert report["metrics"] == pytest.approx(expected["metrics"])


def test_a_stack_learns_from_feature_window_base_runs(windows):
    bases = [_train(windows, "logistic_regression").run_id, _train(windows, "lightgbm").run_id]
    config = TrainConfig(
        model="stack", dataset="fw", split="wf", base_runs=bases, n_bootstrap=10, seed=3
    )
    result = run_training(windows, config)
    assert result.manifest["inputs"] == "oof_probabilities"
    predictions = windows.load_table("predictions", result.run_id)
    assert predictions["covered"].any() and set(predictions["symbol"]) == {"TEST"}


def test_a_stratified_split_of_regression_windows_is_refused(forecasting):
    from moola.core.errors import SplitError

    ref = forecasting.resolve("labeled", "fr")
    with pytest.raises(SplitError, match="regression task"):
        make_and_store_split(forecasting, ref, "stratified", name="bad")
    assert forecasting.split_versions("bad") == []  # nothing written


def test_moola_train_shows_each_epoch_of_every_fit(capsys, windows):
    from tests.test_cli import run

    code, out, err = run(
        capsys,
        "--data-root", str(windows.root), "train", "--model", "bilstm", "--dataset", "fw",
        "--split", "wf", "--params", '{"epochs": 2, "hidden": 8}', "--bootstrap", "10",
    )  # fmt: skip
    assert code == 0, err
    folds = len(load_feature_training_data(windows, "fw", "wf").split.folds)
    fits = folds + 1  # one per fold, then the final model on every covered window
    assert f"fit 1/{fits} epoch 1/2" in out and f"fit {fits}/{fits} epoch 2/2" in out
    assert f"[{2 * fits}/{2 * fits}" in out  # the whole run's epochs, counted up front
    assert "checkpoints:" in out


@pytest.fixture
def two_symbols(registry: Registry) -> Registry:
    """Feature windows ``pair`` over two raws (symbols AAA and BBB on one time grid) with a
    forward-chaining split ``pair-fc``."""
    store_labeled_pair(registry)
    ref = build_feature_windows(
        registry, "aaa,bbb", SPEC, name="pair", length=LENGTH, labels=["aaa", "bbb"],
        targets=["forward_return"],
    )  # fmt: skip
    make_and_store_split(registry, ref, "forward-chaining", name="pair-fc")
    return registry


def test_a_model_over_several_symbols_embeds_each_windows_symbol(two_symbols):
    from moola.pipeline.predictor import Predictor

    config = TrainConfig(
        model="bilstm", dataset="pair", split="pair-fc", params={"epochs": 1, "hidden": 8}
    )
    result = run_training(two_symbols, config)
    assert result.manifest["resolved_params"]["n_symbols"] == 2
    predictor = Predictor.from_run(two_symbols.root, result.run_id)
    assert predictor.symbols == ("AAA", "BBB")
    data = load_feature_training_data(two_symbols, "pair", "pair-fc")
    stored = two_symbols.load_table("predictions", result.run_id)
    for symbol in ("AAA", "BBB"):  # a validation window of each symbol, from its own bars
        i = int(next(k for k in data.val.indices if data.table["symbol"].iloc[k] == symbol))
        offset = 0 if symbol == "AAA" else len(two_symbols.load_raw("aaa"))
        end = int(data.X.windows.starts[i]) - offset + LENGTH
        bars = two_symbols.load_raw(symbol.lower()).iloc[:end]
        value = predictor.predict(bars)[0]
        assert value == pytest.approx(stored.loc[i, "pred_forward_return"], rel=1e-5, abs=1e-9)
    # The same windows told they are the other symbol get another prediction: the id is read.
    windows = data.X[np.asarray(data.val.indices[:8])].materialise()
    ids = np.asarray(data.X.symbol_ids[np.asarray(data.val.indices[:8])], dtype=np.float32)
    with_ids = [with_symbol_ids(windows, ids), with_symbol_ids(windows, 1 - ids)]
    as_given, swapped = (predictor.predict(x) for x in with_ids)
    assert not np.allclose(as_given, swapped)
    other = random_walk_bars(40, symbol="CCC")
    with pytest.raises(ConfigError, match="CCC"):
        predictor.inputs_of(other)


def test_symbol_embedding_can_be_turned_off_and_must_count_the_symbols(two_symbols):
    off = TrainConfig(
        model="bilstm",
        dataset="pair",
        split="pair-fc",
        params={"epochs": 1, "hidden": 8, "n_symbols": 0},
    )
    assert run_training(two_symbols, off).manifest["resolved_params"]["n_symbols"] == 0
    wrong = off.model_copy(update={"params": {"epochs": 1, "n_symbols": 3}})
    with pytest.raises(ConfigError, match="2 symbols"):
        run_training(two_symbols, wrong)


def test_the_lazy_dataset_gives_regression_targets_as_values(forecasting):
    from moola.training.window_dataset import FeatureWindowDataset

    windows = forecasting.load_feature_windows("fr")
    dataset = FeatureWindowDataset(windows, loss="mse")
    _, y = dataset[7]
    assert y.dtype == torch.float32 and float(y) == pytest.approx(float(windows.y[7]), rel=1e-6)
    assert float(y) != int(float(y))  # a return, not a truncated class index
    with pytest.raises(ConfigError, match="regression targets"):
        FeatureWindowDataset(windows)


def test_a_per_symbol_model_trains_on_that_symbols_windows_only(capsys, two_symbols):
    from tests.test_cli import run

    code, _, err = run(
        capsys,
        "--data-root", str(two_symbols.root), "train", "--model", "lightgbm", "--dataset",
        "pair", "--split", "pair-fc", "--symbol", "BBB", "--bootstrap", "10",
        "--params", '{"n_estimators": 10}',
    )  # fmt: skip
    assert code == 0, err
    result = RunStore(two_symbols.root).results()[-1]
    manifest = RunStore(two_symbols.root).manifest(
        RunStore(two_symbols.root).run_dir(result["run_id"])
    )
    assert manifest["config"]["symbols"] == ["BBB"] and manifest["data"]["symbols"] == ["BBB"]
    predictions = two_symbols.load_table("predictions", result["run_id"])
    assert set(predictions.loc[predictions["covered"], "symbol"]) == {"BBB"}
    data = load_feature_training_data(two_symbols, "pair", "pair-fc", symbols=["BBB"])
    everything = load_feature_training_data(two_symbols, "pair", "pair-fc")
    bbb = everything.table["symbol"].to_numpy() == "BBB"
    for part in ("train", "val", "test"):  # the same split, AAA's windows left out
        expected = [i for i in getattr(everything.split, part) if bbb[i]]
        assert getattr(data.split, part) == expected
    with pytest.raises(ConfigError, match="CCC"):
        load_feature_training_data(two_symbols, "pair", "pair-fc", symbols=["CCC"])


def test_a_neural_run_never_materialises_its_windows(windows, monkeypatch):
    from moola.data.windows import WindowSet

    def refuse(self):
        raise AssertionError("a fold's windows were materialised")

    monkeypatch.setattr(WindowSet, "materialise", refuse)
    result = _train(windows, "bilstm", epochs=1, hidden=8)
    predictions = windows.load_table("predictions", result.run_id)
    assert predictions["covered"].any()
