"""NeuralEstimator on ``LazyWindows`` (windows into a feature table, never stacked) learns
what it learns on the materialised ``(N, T, D)`` array: the same normaliser, the same
weights and the same predictions, for classification, regression and multitask (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moola.core.errors import ConfigError
from moola.data.windows import WindowSet
from moola.pipeline.feature_inputs import with_symbol_ids
from moola.training.neural import NeuralEstimator
from moola.training.window_dataset import LazyWindows

LENGTH = 8
LSTM = {"architecture": "simple_lstm", "hidden": 8, "epochs": 2, "batch_size": 16, "seed": 3}
MULTI = {
    "architecture": "cnn_lstm_attention",
    "task": "multitask",
    "heads": {"direction": 2, "volatility": "regression"},
    "conv_channels": (4,),
    "kernel_sizes": (3,),
    "lstm_hidden": 4,
    "attention_dim": 4,
    "fc": (4,),
    "epochs": 2,
    "batch_size": 16,
    "seed": 1,
}


def _table(n_rows: int = 160, n_features: int = 3, seed: int = 0) -> np.ndarray:
    """A float32 feature table far from mean 0 / std 1, per column, so the normaliser matters."""
    rng = np.random.default_rng(seed)
    scale = np.array([1.0, 30.0, 0.01, 5.0][:n_features], dtype=np.float32)
    values = rng.normal(size=(n_rows, n_features)).astype(np.float32) * scale + 7.0
    values[-1] = np.nan  # a row no window covers: never read, never refused
    return values


def _windows(n: int, seed: int = 1, with_ids: bool = False) -> LazyWindows:
    """``n`` overlapping windows (some share starts) over ``_table()``."""
    rng = np.random.default_rng(seed)
    values = _table()
    starts = rng.integers(0, len(values) - LENGTH - 1, size=n)
    ids = rng.integers(0, 3, size=n) if with_ids else None
    return LazyWindows(values, starts, LENGTH, ids)


def _materialised(lazy: LazyWindows) -> np.ndarray:
    """The ``(N, L, F[+1])`` array the pipeline builds from the same windows."""
    array = WindowSet(lazy.values, lazy.starts, lazy.length).materialise()
    if lazy.symbol_ids is None:
        return array
    return with_symbol_ids(array, lazy.symbol_ids)


def _same_weights(a: NeuralEstimator, b: NeuralEstimator) -> None:
    left, right = a.module_.state_dict(), b.module_.state_dict()
    assert left.keys() == right.keys()
    for key in left:
        torch.testing.assert_close(left[key], right[key], rtol=1e-5, atol=1e-6, msg=key)


def test_take_lays_out_windows_like_the_materialised_array_with_the_id_channel_last():
    lazy = _windows(30, with_ids=True)
    array = _materialised(lazy)
    assert lazy.shape == array.shape == (30, LENGTH, 4)
    picked = lazy.take(np.array([5, 0, 5, 29]))
    assert picked.dtype == np.float32
    np.testing.assert_array_equal(picked, array[[5, 0, 5, 29]])


def test_row_counts_count_the_windows_covering_each_row():
    lazy = LazyWindows(np.zeros((10, 1), np.float32), np.array([0, 2, 2, 6]), 3)
    np.testing.assert_array_equal(lazy.row_counts(), [1, 1, 3, 2, 2, 0, 1, 1, 1, 0])


def test_the_normaliser_equals_the_one_the_materialised_windows_give():
    lazy = _windows(50, with_ids=True)
    array = _materialised(lazy)
    # n_symbols=0: the id channel is an ordinary channel, its statistics computed like any.
    est_lazy = NeuralEstimator(**{**LSTM, "epochs": 1}).fit(lazy, np.arange(50) % 2)
    est_array = NeuralEstimator(**{**LSTM, "epochs": 1}).fit(array, np.arange(50) % 2)
    np.testing.assert_allclose(est_lazy.mean_, est_array.mean_, rtol=1e-6)
    np.testing.assert_allclose(est_lazy.std_, est_array.std_, rtol=1e-6)
    assert np.all(est_lazy.mean_[:3] > 5.0) and est_lazy.std_[1] > 10.0  # not an identity
    # n_symbols=3: the id is a code for the embedding, never scaled.
    embedded = NeuralEstimator(**{**LSTM, "epochs": 1, "n_symbols": 3}).fit(lazy, np.arange(50) % 2)
    assert (embedded.mean_[-1], embedded.std_[-1]) == (0.0, 1.0)
    np.testing.assert_allclose(embedded.mean_[:3], est_array.mean_[:3], rtol=1e-6)


@pytest.mark.parametrize("params", [{}, {"loss": "bce"}, {"n_symbols": 3}])
def test_classification_trains_the_weights_and_predicts_what_the_array_path_does(params):
    lazy, val = _windows(60, with_ids=True), _windows(20, seed=2, with_ids=True)
    y, y_val = np.arange(60) % 2, np.arange(20) % 2
    settings = {**LSTM, **params}
    est_lazy = NeuralEstimator(**settings).fit(lazy, y, X_val=val, y_val=y_val)
    est_array = NeuralEstimator(**settings).fit(
        _materialised(lazy), y, X_val=_materialised(val), y_val=y_val
    )
    _same_weights(est_lazy, est_array)
    assert est_lazy.training_summary_.val_loss_history == pytest.approx(
        est_array.training_summary_.val_loss_history, rel=1e-5
    )
    np.testing.assert_allclose(
        est_lazy.predict_proba(val), est_array.predict_proba(_materialised(val)), rtol=1e-5
    )


def test_regression_standardises_targets_and_matches_the_array_path():
    lazy, val = _windows(60), _windows(20, seed=2)
    rng = np.random.default_rng(4)
    y, y_val = rng.normal(100.0, 20.0, size=(60, 2)), rng.normal(100.0, 20.0, size=(20, 2))
    settings = {
        "architecture": "bilstm",
        "task": "regression",
        **{"hidden": 4, "num_layers": 1, "fc": (4,), "dropout": 0.2},
        **{"epochs": 2, "batch_size": 16, "seed": 2},
    }
    est_lazy = NeuralEstimator(**settings).fit(lazy, y, X_val=val, y_val=y_val)
    est_array = NeuralEstimator(**settings).fit(
        _materialised(lazy), y, X_val=_materialised(val), y_val=y_val
    )
    _same_weights(est_lazy, est_array)
    predicted = est_lazy.predict(val)
    assert predicted.shape == (20, 2) and predicted.dtype == np.float64
    np.testing.assert_allclose(predicted, est_array.predict(_materialised(val)), rtol=1e-5)


def test_multitask_matches_the_array_path_head_by_head():
    lazy, val = _windows(60), _windows(20, seed=2)
    rng = np.random.default_rng(5)

    def targets(n: int) -> np.ndarray:
        return np.stack([np.arange(n) % 2, rng.normal(20.0, 4.0, size=n)], axis=1)

    y, y_val = targets(60), targets(20)
    est_lazy = NeuralEstimator(**MULTI).fit(lazy, y, X_val=val, y_val=y_val)
    est_array = NeuralEstimator(**MULTI).fit(
        _materialised(lazy), y, X_val=_materialised(val), y_val=y_val
    )
    _same_weights(est_lazy, est_array)
    lazy_heads, array_heads = (
        est_lazy.predict_heads(val),
        est_array.predict_heads(_materialised(val)),
    )
    for name in MULTI["heads"]:
        np.testing.assert_allclose(lazy_heads[name], array_heads[name], rtol=1e-5, atol=1e-7)


def test_prediction_over_more_windows_than_one_chunk_equals_the_array_path(monkeypatch):
    from moola.training import neural

    lazy = _windows(40)
    est = NeuralEstimator(**LSTM).fit(lazy, np.arange(40) % 2)
    expected = est.predict_proba(_materialised(lazy))
    monkeypatch.setattr(neural, "_PREDICT_BATCH", 7)  # 40 windows: 6 chunks, the last of 5
    np.testing.assert_allclose(est.predict_proba(lazy), expected, rtol=1e-6)


def test_a_window_over_a_non_finite_row_is_refused_naming_it():
    lazy = _windows(10)
    covering = LazyWindows(lazy.values, np.append(lazy.starts, len(lazy.values) - LENGTH), LENGTH)
    with pytest.raises(ConfigError, match=r"windows \[10\]"):
        NeuralEstimator(**LSTM).fit(covering, np.arange(11) % 2)


def test_an_embedding_model_refuses_windows_without_symbol_ids():
    with pytest.raises(ConfigError, match="symbol_ids"):
        NeuralEstimator(**{**LSTM, "n_symbols": 3}).fit(_windows(10), np.arange(10) % 2)


def test_a_symbol_id_out_of_range_is_refused_naming_the_window():
    lazy = _windows(10, with_ids=True)
    ids = lazy.symbol_ids.copy()
    ids[4] = 3
    bad = LazyWindows(lazy.values, lazy.starts, LENGTH, ids)
    with pytest.raises(ConfigError, match="window 4 holds symbol id 3"):
        NeuralEstimator(**{**LSTM, "n_symbols": 3}).fit(bad, np.arange(10) % 2)


def test_windows_past_the_table_are_refused_at_construction():
    with pytest.raises(ConfigError, match=r"Windows \[1\]"):
        LazyWindows(np.zeros((10, 2), np.float32), np.array([0, 5]), 6)
