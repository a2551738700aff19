"""NeuralEstimator: learns planted patterns, finds nothing in noise, saves and loads safely."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from moola.core.errors import CheckpointError, ConfigError
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features.window import relative_windows
from moola.models import create
from moola.training.neural import NeuralEstimator

SMALL = {"hidden": 16, "heads": 2, "fc": (16,)}
FAST = {"epochs": 10, "batch_size": 16, "lr": 3e-3, "class_weights": "balanced"}


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray]:
    """Relative windows ``(160, 105, 11)`` of planted patterns; y = 1 for retracements."""
    market = generate_market(SyntheticMarketConfig(n_bars=40_000, n_patterns=160, seed=3))
    ohlc = market.bars[["open", "high", "low", "close"]].to_numpy(np.float64)
    starts = market.patterns["start"].to_numpy()
    windows = np.stack([ohlc[s : s + 105] for s in starts])
    y = (market.patterns["label"].to_numpy() == "retracement").astype(np.int64)
    return relative_windows(windows), y


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(0).permutation(160)
    return order[:110], order[110:]


@pytest.fixture(scope="module")
def fitted(planted, split) -> NeuralEstimator:
    X, y = planted
    train, _ = split
    return NeuralEstimator("simple_lstm", **SMALL, **FAST).fit(X[train], y[train])


def _tiny(n: int = 24, d: int = 3, t: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=5.0, scale=3.0, size=(n, t, d))
    y = np.arange(n) % 2
    return X, y


def _tiny_fit(**params) -> tuple[NeuralEstimator, np.ndarray]:
    X, y = _tiny()
    est = NeuralEstimator(**{"architecture": "simple_lstm", **SMALL, "epochs": 2, **params})
    return est.fit(X, y), X


# -- learning ----------------------------------------------------------------------------


def test_learns_planted_patterns_better_than_the_majority_baseline(planted, split, fitted):
    X, y = planted
    _, test = split
    proba = fitted.predict_proba(X[test])
    majority = max(y[test].mean(), 1 - y[test].mean())
    accuracy = (proba.argmax(axis=1) == y[test]).mean()
    assert accuracy >= majority + 0.1
    assert roc_auc_score(y[test], proba[:, 1]) > 0.85


def test_shuffled_labels_stay_near_chance(planted, split):
    # Labels permuted over the whole set carry no information about the windows: a model
    # that still scored well out of sample would be reading labels through a leak.
    X, y = planted
    train, test = split
    y_null = np.random.default_rng(100).permutation(y)
    est = NeuralEstimator("simple_lstm", **SMALL, **FAST).fit(X[train], y_null[train])
    proba = est.predict_proba(X[test])
    assert balanced_accuracy_score(y_null[test], proba.argmax(axis=1)) < 0.65
    assert 0.3 < roc_auc_score(y_null[test], proba[:, 1]) < 0.7


def test_probabilities_are_float64_rows_summing_to_one(planted, split, fitted):
    X, _ = planted
    _, test = split
    proba = fitted.predict_proba(X[test])
    assert proba.dtype == np.float64
    assert proba.shape == (len(test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert fitted.predict(X[test]).dtype == np.int64


def test_a_prediction_does_not_depend_on_the_rest_of_the_batch(planted, fitted):
    X, _ = planted
    alone = fitted.predict_proba(X[:3])
    among_others = fitted.predict_proba(X[:60])[:3]
    np.testing.assert_allclose(alone, among_others, rtol=1e-5, atol=1e-7)


def test_normaliser_uses_training_statistics_per_channel(planted, split, fitted):
    X, _ = planted
    train, _ = split
    X_train = X[train].astype(np.float64)
    np.testing.assert_allclose(fitted.mean_, X_train.mean(axis=(0, 1)), rtol=1e-9, atol=1e-12)
    std = X_train.std(axis=(0, 1))
    expected = np.where(std > 1e-12 * np.maximum(1.0, np.abs(fitted.mean_)), std, 1.0)
    np.testing.assert_allclose(fitted.std_, expected, rtol=1e-9)


def test_shapes_are_inferred_from_the_data(fitted):
    config = fitted.module_config_
    assert (config["input_dim"], config["seq_len"], config["n_classes"]) == (11, 105, 2)
    assert fitted.training_summary_.epochs_run == 10


# -- parameters --------------------------------------------------------------------------


def test_name_and_params_report_the_architecture():
    est = NeuralEstimator("bilstm", hidden=8, epochs=3)
    assert est.name == "bilstm"
    assert est.input_kind == "sequence"
    assert est.get_params() == {"architecture": "bilstm", "hidden": 8, "epochs": 3}
    via_registry = create("simple_lstm", hidden=8)
    assert isinstance(via_registry, NeuralEstimator)
    assert via_registry.name == "simple_lstm"


def test_unknown_params_are_named_with_the_valid_ones():
    X, y = _tiny()
    with pytest.raises(ConfigError) as info:
        NeuralEstimator("simple_lstm", epochz=3, colour="red").fit(X, y)
    message = str(info.value)
    assert "'epochz' (did you mean 'epochs'?)" in message
    assert "'colour'" in message
    assert "hidden" in message and "batch_size" in message
    with pytest.raises(ConfigError, match="Unknown architecture 'simple_lstn'"):
        NeuralEstimator("simple_lstn").fit(X, y)
    with pytest.raises(ConfigError, match="'lr'"):
        NeuralEstimator("simple_lstm", lr=-1).fit(X, y)


def test_fit_refuses_unusable_labels():
    X, y = _tiny()
    with pytest.raises(ConfigError, match="single class"):
        NeuralEstimator("simple_lstm").fit(X, np.zeros(len(X), dtype=int))
    with pytest.raises(ConfigError, match="regression"):
        NeuralEstimator("simple_lstm", loss="mse").fit(X, y)
    with pytest.raises(ConfigError, match="shaped"):
        NeuralEstimator("simple_lstm").fit(X[:, :, 0], y)


def test_bce_trains_one_logit_and_returns_two_columns():
    est, X = _tiny_fit(loss="bce", class_weights="balanced")
    assert est.module_config_["n_classes"] == 1
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_validation_data_steers_early_stopping():
    X, y = _tiny()
    est = NeuralEstimator("simple_lstm", **SMALL, epochs=30, patience=2, lr=1e-2)
    est.fit(X[:16], y[:16], X_val=X[16:], y_val=y[16:])
    summary = est.training_summary_
    assert summary.best_epoch is not None
    assert summary.epochs_run < 30
    assert summary.best_val_loss == min(summary.val_loss_history)


def test_multi_task_and_dual_input_architectures_fit():
    X, y = _tiny()
    est = NeuralEstimator(
        "cnn_lstm_attention", lstm_hidden=8, regime_head=True, volatility_head=True, epochs=1
    )
    assert est.fit(X, y).predict_proba(X).shape == (len(X), 2)
    # enhanced_simple_lstm: 3 window channels + 2 packed feature channels.
    X5 = np.concatenate([X, np.zeros((len(X), X.shape[1], 2))], axis=2)
    X5[:, 0, 3:] = np.random.default_rng(1).normal(size=(len(X), 2))
    dual = NeuralEstimator("enhanced_simple_lstm", n_features=2, encoder_hidden=8, epochs=1)
    dual.fit(X5, y)
    assert dual.module_config_["input_dim"] == 3
    np.testing.assert_allclose(dual.mean_[3:], X5[:, 0, 3:].mean(axis=0))
    assert dual.predict_proba(X5).shape == (len(X), 2)


def test_predicting_other_channels_or_unfitted_is_refused():
    est, X = _tiny_fit()
    with pytest.raises(ConfigError, match="4 channels per step but this simple_lstm model"):
        est.predict_proba(np.zeros((2, 12, 4)))
    with pytest.raises(ConfigError, match="not fitted"):
        NeuralEstimator("simple_lstm").predict_proba(X)
    with pytest.raises(ConfigError, match="not fitted"):
        NeuralEstimator("simple_lstm").save("unused.pt")


def test_same_seed_same_probabilities_and_seed_matters():
    a, X = _tiny_fit(seed=3)
    b, _ = _tiny_fit(seed=3)
    c, _ = _tiny_fit(seed=4)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


# -- saving and loading ------------------------------------------------------------------


def test_a_checkpoint_alone_predicts_identically(planted, split, fitted, tmp_path):
    X, _ = planted
    _, test = split
    path = tmp_path / "model.pt"
    fitted.save(path)
    loaded = NeuralEstimator.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X[test]), fitted.predict_proba(X[test]))
    assert loaded.name == "simple_lstm"
    assert loaded.get_params() == fitted.get_params()
    assert loaded.training_summary_ == fitted.training_summary_
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "moola-model" and payload["format_version"] == 2
    assert payload["task"] == "classification" and payload["targets"] is None
    assert loaded.task == "classification"
    assert payload["class"] == "moola.training.neural.NeuralEstimator"
    assert payload["module_config"]["hidden"] == 16
    assert set(payload["library_versions"]) == {"torch", "numpy"}
    assert not list(tmp_path.glob(".tmp-*"))  # the temporary file was renamed into place


def test_a_format_1_file_still_loads_as_the_classifier_it_is(tmp_path):
    est, X = _tiny_fit()
    path = tmp_path / "m.pt"
    est.save(path)
    payload = torch.load(path, weights_only=True)
    old = {k: v for k, v in payload.items() if k not in ("task", "targets", "head_history")}
    torch.save({**old, "format_version": 1}, path)
    loaded = NeuralEstimator.load(path)
    assert loaded.task == "classification"
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))


def test_a_format_1_transformer_with_a_sigmoid_output_loads(tmp_path):
    """Format 1 named the transformer's sigmoid output ``task="regression"`` (a module key,
    also in its params); it loads as ``output="sigmoid"``, a classifier file as before."""
    X, y = _tiny()
    est = NeuralEstimator("transformer", d_model=8, n_layers=1, heads=2, fc=(8,), epochs=1)
    est.fit(X, y)
    path = tmp_path / "t.pt"
    est.save(path)
    payload = torch.load(path, weights_only=True)
    module_config = {k: v for k, v in payload["module_config"].items() if k != "output"}
    torch.save(
        {
            **payload,
            "format_version": 1,
            "module_config": {**module_config, "task": "regression"},
            "params": {**payload["params"], "task": "regression"},
        },
        path,
    )
    loaded = NeuralEstimator.load(path)
    assert loaded.module_config_["output"] == "sigmoid" and loaded.task == "classification"
    assert "task" not in loaded.get_params() and loaded.get_params()["output"] == "sigmoid"


def test_loaded_model_refuses_other_feature_dimensions(tmp_path):
    est, _ = _tiny_fit()
    path = tmp_path / "m.pt"
    est.save(path)
    with pytest.raises(CheckpointError, match=r"m\.pt: X has 5 channels per step"):
        NeuralEstimator.load(path).predict_proba(np.zeros((2, 12, 5)))


def test_load_refuses_foreign_corrupt_and_mismatched_files(tmp_path):
    est, _ = _tiny_fit()
    good = tmp_path / "good.pt"
    est.save(good)

    with pytest.raises(CheckpointError, match="does not exist"):
        NeuralEstimator.load(tmp_path / "missing.pt")

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"truncated\.pt cannot be read"):
        NeuralEstimator.load(truncated)

    pickled = tmp_path / "pickled.pkl"
    pickled.write_bytes(pickle.dumps({"format": "moola-model", "class": "x"}))
    with pytest.raises(CheckpointError, match=r"pickled\.pkl cannot be read"):
        NeuralEstimator.load(pickled)

    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match=r"other\.pt is not a moola model file"):
        NeuralEstimator.load(other)

    payload = torch.load(good, weights_only=True)
    foreign = tmp_path / "foreign.pt"
    torch.save({**payload, "class": "moola.models.tabular.TabularClassifier"}, foreign)
    with pytest.raises(
        CheckpointError, match=r"saved by moola\.models\.tabular\.TabularClassifier"
    ):
        NeuralEstimator.load(foreign)

    newer = tmp_path / "newer.pt"
    torch.save({**payload, "format_version": 99}, newer)
    with pytest.raises(CheckpointError, match="format version 99"):
        NeuralEstimator.load(newer)

    with pytest.raises(CheckpointError, match="'simple_lstm' network, not 'bilstm'"):
        NeuralEstimator.load(good, architecture="bilstm")

    wrong_shape = tmp_path / "wrong_shape.pt"
    torch.save({**payload, "module_config": {**payload["module_config"], "hidden": 8}}, wrong_shape)
    with pytest.raises(CheckpointError, match="cannot be rebuilt"):
        NeuralEstimator.load(wrong_shape)
