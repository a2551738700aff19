"""``FeatureWindowDataset``: stored feature windows as torch items that are rows of the one
feature table (no N x L x F copy), picked by a split's indices, the same through DataLoader
workers as in-process."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from moola.core.errors import ConfigError
from moola.data.registry import FeatureWindows, Registry
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry
from moola.features.labels import build_labels
from moola.models.nn import build_module
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.training import window_dataset
from moola.training.trainer import BatchSource, Trainer
from moola.training.window_dataset import FeatureWindowDataset
from tests.conftest import random_walk_bars

SPEC = FeatureSetSpec(
    name="small",
    features=[
        FeatureSpecEntry(name="sma", params={"period": 5}),
        FeatureSpecEntry(name="rsi", params={"period": 3}),
    ],
)
LENGTH = 12


def _windows(registry: Registry, *, labels: bool = True) -> FeatureWindows:
    """Feature windows over two symbols (BBB first in the bars, so ids are not bar order)."""
    bars = pd.concat(
        [
            random_walk_bars(120, symbol="BBB", seed=1),
            random_walk_bars(100, symbol="AAA", seed=2),
        ],
        ignore_index=True,
    )
    raw = ingest_bars(registry, bars, name="two", sources=[{"test": "two"}], mode="repair").ref
    if labels:
        table = build_labels(
            registry.load_raw("two").reset_index(drop=True), "forward-return", horizon=5
        )
        registry.write_table("labels", "two", table, parents=[raw], meta={"target": "label"})
    build_feature_windows(
        registry, "two", SPEC, name="fw", length=LENGTH, labels="two" if labels else None
    )
    return registry.load_feature_windows("fw")


@pytest.fixture
def windows(registry) -> FeatureWindows:
    return _windows(registry)


def test_items_are_the_windows_rows_and_labels_of_the_picked_indices(windows):
    picked = np.array([7, 0, len(windows) - 1, 40])
    data = FeatureWindowDataset(windows, picked)
    assert len(data) == 4 and data.shape == (4, LENGTH, len(windows.columns))
    for i, w in enumerate(picked):
        x, y = data[i]
        assert x.dtype == torch.float32 and x.shape == (LENGTH, len(windows.columns))
        np.testing.assert_array_equal(x.numpy(), windows.X[w])
        assert y.dtype == torch.int64 and int(y) == windows.y[w]
    x, _ = data[-1]
    np.testing.assert_array_equal(x.numpy(), windows.X[40])
    with pytest.raises(IndexError, match="out of range"):
        data[4]
    # A DataLoader's batched fetch gives the same items.
    for got, want in zip(data.__getitems__([3, 0, -1]), [data[3], data[0], data[-1]], strict=True):
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_symbol_ids_follow_a_sorted_mapping_whatever_the_indices(windows, monkeypatch):
    monkeypatch.setattr(window_dataset, "_CHUNK", 7)  # symbols are hashed in chunks
    bbb = np.flatnonzero(windows.symbols == "BBB")[:3]
    data = FeatureWindowDataset(windows, bbb, with_symbol_id=True)
    assert data.symbols == ("AAA", "BBB") and data.symbol_index == {"AAA": 0, "BBB": 1}
    _, _, symbol_id = data[0]
    assert symbol_id.dtype == torch.int64 and int(symbol_id) == 1
    every = FeatureWindowDataset(windows, with_symbol_id=True)
    ids = np.array([int(every[i][2]) for i in range(len(every))])
    np.testing.assert_array_equal(ids, [every.symbol_index[s] for s in windows.symbols])


def test_unlabeled_windows_give_x_alone(registry):
    windows = _windows(registry, labels=False)
    assert windows.y is None
    (x,) = FeatureWindowDataset(windows)[3]
    np.testing.assert_array_equal(x.numpy(), windows.X[3])


def test_the_dataset_holds_the_table_and_starts_not_the_windows(windows):
    data = FeatureWindowDataset(windows, with_symbol_id=True)
    table = windows.X.values
    assert data.values is table  # the table itself, not a copy
    held = [v for v in vars(data).values() if isinstance(v, (np.ndarray, torch.Tensor))]
    assert all(v.ndim <= 2 for v in held)
    n = len(windows)
    # Over all windows the starts and labels are the loaded ones (shared); ids take a byte.
    assert np.shares_memory(data.starts, windows.X.starts)
    assert data.labels.data_ptr() == windows.y.ctypes.data
    assert data.nbytes_overhead == (8 + 8 + 1) * n
    assert sum(v.nbytes for v in held) < table.nbytes + 4 * 8 * n
    x, _, _ = data[5]
    assert x.data_ptr() == table[windows.X.starts[5] :].ctypes.data  # a view of the table
    # What a spawned DataLoader worker receives: the table and the per-window arrays once.
    sent = len(pickle.dumps(data))
    assert table.nbytes < sent < table.nbytes + (8 + 8 + 1) * n + 4096


def test_bad_indices_are_refused_naming_the_parameter(windows):
    with pytest.raises(ConfigError, match="out of range") as err:
        FeatureWindowDataset(windows, [0, len(windows)])
    assert err.value.param == "indices"
    with pytest.raises(ConfigError, match="integer"):
        FeatureWindowDataset(windows, [0.5, 1.0])


def _batches(data: FeatureWindowDataset, **loader: object) -> list[list[torch.Tensor]]:
    return list(DataLoader(data, batch_size=16, shuffle=False, **loader))


@pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true")
def test_two_workers_yield_the_same_batches_as_in_process(windows):
    """In-process with torch's default collation, against 2 spawned workers with the
    dataset's own (the batch it gathered in one piece): the same tensors in the same order."""
    picked = np.arange(len(windows))[::-2]
    data = FeatureWindowDataset(windows, picked, with_symbol_id=True)
    serial = _batches(data)
    parallel = _batches(
        data,
        num_workers=2,
        multiprocessing_context="spawn",
        pin_memory=True,
        collate_fn=FeatureWindowDataset.collate,
    )
    assert len(parallel) == len(serial) == -(-len(data) // 16)
    for got, want in zip(parallel, serial, strict=True):
        assert len(got) == 3
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype
            torch.testing.assert_close(g, w, rtol=0, atol=0)
    np.testing.assert_array_equal(serial[0][0].numpy(), windows.X.take(picked[:16]))
    np.testing.assert_array_equal(serial[0][1].numpy(), windows.y[picked[:16]])


def _module(n_out: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_module("bilstm", input_dim=3, seq_len=LENGTH, n_classes=n_out, hidden=8, fc=(8,))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    ("loss", "n_out", "y_dtype"), [("bce", 1, torch.float32), ("cross_entropy", 2, torch.int64)]
)
def test_trainer_over_the_dataset_ends_with_the_weights_of_a_fit_over_the_arrays(
    windows, loss, n_out, y_dtype
):
    """``Trainer.run`` over split parts (a ``BatchSource``) trains on the same values in
    the same order as ``Trainer.fit`` over the materialised windows: identical weights."""
    order = np.random.default_rng(5).permutation(len(windows))
    train, val = order[:130], order[130:]
    trainer = Trainer(epochs=2, batch_size=16, seed=3, loss=loss)
    initial = _module(n_out)
    by_arrays, lazy = copy.deepcopy(initial), copy.deepcopy(initial)
    fitted = trainer.fit(
        by_arrays, windows.X.take(train), windows.y[train], windows.X.take(val), windows.y[val]
    )
    train_part = FeatureWindowDataset(windows, train, loss=loss)
    assert isinstance(train_part, BatchSource)
    x, y = train_part.batch(torch.tensor([4, 0]), key=0)
    np.testing.assert_array_equal(x.numpy(), windows.X.take(train[[4, 0]]))
    assert y.dtype == y_dtype and y.tolist() == windows.y[train[[4, 0]]].tolist()
    ran = trainer.run(
        lazy,
        train_part,
        FeatureWindowDataset(windows, val, loss=loss),
        step=trainer.build_step(windows.y[train]),
    )
    assert not _same_weights(by_arrays, initial)  # it trained
    assert _same_weights(lazy, by_arrays)
    assert ran.train_loss_history == fitted.train_loss_history
    assert ran.val_loss_history == fitted.val_loss_history


def test_trainer_with_two_dataloader_workers_trains_the_same_weights(windows):
    """With ``num_workers=2`` the Trainer builds the dataset's batches in worker processes
    (a ``DataLoader`` over the batch source): the same weights as in-process."""
    train = np.arange(0, len(windows), 2)
    weights = []
    for workers in (0, 2):
        module = _module(1)
        trainer = Trainer(epochs=2, batch_size=16, seed=1, loss="bce", num_workers=workers)
        data = FeatureWindowDataset(windows, train, loss="bce")
        trainer.run(module, data, step=trainer.build_step(windows.y[train]))
        weights.append(module)
    assert _same_weights(*weights)


def test_an_unknown_loss_is_refused_naming_the_parameter(windows):
    with pytest.raises(ConfigError, match="Unknown loss 'bec'") as err:
        FeatureWindowDataset(windows, loss="bec")
    assert err.value.param == "loss"
    (_, y) = FeatureWindowDataset(windows, loss="mse")[0]
    assert y.dtype == torch.float32 and float(y) == windows.y[0]
