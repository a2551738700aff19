"""Resumable training: a fit killed after epoch k and resumed from its last.pt, and an
out-of-fold run killed after some folds and run again, end exactly where uninterrupted
runs end; checkpoints are never torn and refuse what they were not written for."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from moola.core.errors import CheckpointError, ConfigError
from moola.data.splits import purged_kfold
from moola.models import create
from moola.models.base import Estimator
from moola.training.callbacks import Callback, EpochProgress, TrainingState
from moola.training.checkpoints import (
    EpochCheckpoints,
    FoldStore,
    load_best,
    load_checkpoint,
)
from moola.training.oof import OOFResult, out_of_fold
from moola.training.trainer import Trainer


class TinyNet(nn.Module):
    """(B, T, D) -> (B, K): a GRU with dropout, so resuming must restore the RNG too."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 6, batch_first=True)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(x)  # (B, T, H)
        return self.out(self.drop(h[:, -1]))  # (B, K)


def _net() -> TinyNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TinyNet()


def _toy_data(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6, 3)).astype(np.float32)
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    return X, y


class Killed(Exception):
    """Stands for the process dying."""


class KillAfter(Callback):
    """Raises at the end of epoch ``epoch`` of fit number ``fit`` (1-based)."""

    def __init__(self, epoch: int, fit: int = 1) -> None:
        self.epoch, self.fit, self.fits = epoch, fit, 0

    def on_train_start(self, state: TrainingState) -> None:
        self.fits += 1

    def on_epoch_end(self, state: TrainingState) -> bool:
        if self.fits == self.fit and state.epoch == self.epoch:
            raise Killed(f"killed after epoch {state.epoch}")
        return False


class Epochs(Callback):
    """The (fit, epoch) pairs a run trained, and each epoch's weights."""

    def __init__(self) -> None:
        self.fits = 0
        self.seen: list[tuple[int, int]] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, state: TrainingState) -> None:
        self.fits += 1

    def on_epoch_end(self, state: TrainingState) -> bool:
        self.seen.append((self.fits, state.epoch))
        self.weights.append({k: v.clone() for k, v in state.module.state_dict().items()})
        return False

    @property
    def epochs(self) -> list[int]:
        return [epoch for _, epoch in self.seen]


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    wa, wb = a.state_dict(), b.state_dict()
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


# -- a fit killed after epoch k ----------------------------------------------------------

_FIT = {"epochs": 6, "batch_size": 8, "seed": 3, "patience": None}


def _fit(X, y, callbacks=(), resume=None):
    module = _net()
    summary = Trainer(**_FIT).fit(
        module, X[:32], y[:32], X[32:], y[32:], callbacks=callbacks, resume=resume
    )
    return module, summary


def test_a_fit_killed_after_epoch_k_resumes_to_the_uninterrupted_weights(tmp_path):
    X, y = _toy_data()
    full_module, full = _fit(X, y)

    writer = EpochCheckpoints(tmp_path, config_hash="cfg")
    with pytest.raises(Killed):
        _fit(X, y, callbacks=[writer, KillAfter(3)])
    assert writer.saved_epochs == [1, 2, 3]
    snapshot = load_checkpoint(tmp_path / "last.pt", config_hash="cfg")

    trained, updates = Epochs(), []
    progress = EpochProgress(fits=1, epochs=6, report=updates.append)
    resumed_module, resumed = _fit(
        X,
        y,
        callbacks=[EpochCheckpoints(tmp_path, config_hash="cfg"), trained, progress],
        resume=snapshot,
    )
    assert trained.epochs == [4, 5, 6]  # only the epochs the killed fit had not run
    assert [u.done for u in updates] == [4, 5, 6]  # progress counts the epochs run before
    assert resumed.train_loss_history == full.train_loss_history
    assert resumed.val_loss_history == full.val_loss_history
    assert (resumed.epochs_run, resumed.best_epoch) == (full.epochs_run, full.best_epoch)
    _assert_same_weights(resumed_module, full_module)


class PatternStep:
    """Training loss from the module (so it learns); the validation loss of epoch ``e`` is
    ``pattern[e - 1]`` (``EpochClock`` keeps ``epoch``, so it survives a resume)."""

    def __init__(self, pattern: list[float]) -> None:
        self.pattern, self.epoch = pattern, 1

    def __call__(self, module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        (x,) = batch
        if module.training:
            return (module(x) - 1.0).pow(2).mean()
        return torch.tensor(self.pattern[self.epoch - 1])


class EpochClock(Callback):
    def __init__(self, step: PatternStep) -> None:
        self.step = step

    def on_train_start(self, state: TrainingState) -> None:
        self.step.epoch = state.epoch + 1

    def on_epoch_end(self, state: TrainingState) -> bool:
        self.step.epoch = state.epoch + 1
        return False


_PATTERN = [3.0, 2.0, 1.0, 1.5, 1.2, 1.1, 0.1, 0.1]  # best at 3; patience 2 stops after 5


def _pattern_run(callbacks=(), resume=None):
    module = nn.Linear(2, 1)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[0.3, -0.2]]))
        module.bias.zero_()
    x = torch.linspace(-1, 1, 32).reshape(16, 2)
    step = PatternStep(_PATTERN)
    summary = Trainer(epochs=20, patience=2, batch_size=8, lr=0.05).run(
        module, [x], [x[:4]], step=step, callbacks=[EpochClock(step), *callbacks], resume=resume
    )
    return module, summary


def test_early_stopping_counts_on_across_a_resume_and_best_pt_holds_the_best_epoch(tmp_path):
    full_module, full = _pattern_run()
    assert (full.epochs_run, full.early_stop_epoch, full.best_epoch) == (5, 5, 3)

    writer, trained = EpochCheckpoints(tmp_path), Epochs()
    with pytest.raises(Killed):
        _pattern_run(callbacks=[writer, trained, KillAfter(4)])
    assert writer.best_epochs == [1, 2, 3]
    best = load_best(tmp_path / "best.pt")
    assert best["epoch"] == 3 and best["val_loss"] == pytest.approx(1.0)
    for key, value in trained.weights[2].items():  # epoch 3's weights
        assert torch.equal(best["state_dict"][key], value)

    # Epoch 4 did not improve; the resumed run must count it, so it stops after epoch 5.
    again = Epochs()
    module, summary = _pattern_run(
        callbacks=[EpochCheckpoints(tmp_path), again],
        resume=load_checkpoint(tmp_path / "last.pt"),
    )
    assert again.epochs == [5]
    assert (summary.epochs_run, summary.early_stop_epoch, summary.best_epoch) == (5, 5, 3)
    assert summary.val_loss_history == full.val_loss_history
    _assert_same_weights(module, full_module)  # the best epoch's weights, as uninterrupted
    for key, value in load_best(tmp_path / "best.pt")["state_dict"].items():
        assert torch.equal(module.state_dict()[key], value)


def test_resuming_a_finished_run_trains_no_further(tmp_path):
    full_module, _ = _pattern_run(callbacks=[EpochCheckpoints(tmp_path)])
    again = Epochs()
    module, summary = _pattern_run(callbacks=[again], resume=load_checkpoint(tmp_path / "last.pt"))
    assert again.epochs == []
    assert (summary.epochs_run, summary.early_stop_epoch, summary.best_epoch) == (5, 5, 3)
    _assert_same_weights(module, full_module)


# -- what a checkpoint refuses -----------------------------------------------------------


def _killed_run(tmp_path, epoch: int = 2, config_hash: str | None = "cfg"):
    X, y = _toy_data()
    with pytest.raises(Killed):
        _fit(
            X, y, callbacks=[EpochCheckpoints(tmp_path, config_hash=config_hash), KillAfter(epoch)]
        )
    return X, y, tmp_path / "last.pt"


def test_only_whole_checkpoints_are_ever_in_place(tmp_path, monkeypatch):
    import moola.core.atomic as atomic

    X, y = _toy_data()
    real_replace, calls = atomic.os.replace, []

    def dies_on_the_fourth_rename(src, dst):  # epoch 1: best, last; epoch 2: best, last
        calls.append(dst)
        if len(calls) == 4:
            raise Killed("killed while renaming")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", dies_on_the_fourth_rename)
    with pytest.raises(Killed):
        _fit(X, y, callbacks=[EpochCheckpoints(tmp_path)])
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # the previous, complete one


def test_a_truncated_or_foreign_last_pt_is_refused_naming_it(tmp_path):
    _, _, last = _killed_run(tmp_path)
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{last}.*corrupt, truncated"):
        load_checkpoint(last)
    last.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=str(last)):
        load_checkpoint(last)
    torch.save({"format": "moola-checkpoint", "state_dict": {}}, last)
    with pytest.raises(CheckpointError, match=f"{last} is not a moola training checkpoint"):
        load_checkpoint(last)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    best = tmp_path / "best.pt"
    with pytest.raises(CheckpointError, match=f"{best} holds the best epoch's weights only"):
        load_checkpoint(best)


def test_a_checkpoint_of_another_config_or_other_data_is_refused_naming_it(tmp_path):
    X, y, last = _killed_run(tmp_path)
    with pytest.raises(CheckpointError, match=f"{last} was written by a fit of another config"):
        load_checkpoint(last, config_hash="other")
    snapshot = load_checkpoint(last, config_hash="cfg")
    X_other = X.copy()
    X_other[-1] += 1.0  # the last validation sample differs
    with pytest.raises(CheckpointError, match=f"checkpoint {last}: it was taken on other"):
        _fit(X_other, y, resume=snapshot)
    with pytest.raises(CheckpointError, match=f"checkpoint {last}: it was taken with epochs=6"):
        Trainer(**{**_FIT, "epochs": 7}).fit(
            _net(), X[:32], y[:32], X[32:], y[32:], resume=snapshot
        )


# -- out-of-fold runs that are killed ----------------------------------------------------


def _logreg_data(n: int = 160, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(0, 1, (n, 4))
    X[:, 0] += 1.2 * y
    starts = np.arange(n) * 2
    return X, y, purged_kfold(starts, starts + 4, n_folds=4, purge=1, embargo=2)


class Counting:
    """An estimator factory that counts the estimators it made."""

    def __init__(self, make) -> None:
        self.make, self.made = make, 0

    def __call__(self) -> Estimator:
        self.made += 1
        return self.make()


def _stop_after(index: int):
    def on_fold_end(result, _estimator):
        if result.index == index:
            raise Killed(f"killed after fold {index}")

    return on_fold_end


def _same_oof(a: OOFResult, b: OOFResult) -> None:
    assert a.oof_proba.tobytes() == b.oof_proba.tobytes()  # bit for bit, NaN rows included
    np.testing.assert_array_equal(a.fold_of, b.fold_of)
    assert a.fold_metrics == b.fold_metrics
    assert [(f.index, f.n_train, f.n_val, f.n_test) for f in a.folds] == [
        (f.index, f.n_train, f.n_val, f.n_test) for f in b.folds
    ]


make_logreg = partial(create, "logistic_regression", random_state=0)


def test_an_oof_run_killed_after_two_of_four_folds_reruns_to_the_same_result(tmp_path):
    X, y, split = _logreg_data()
    full = out_of_fold(make_logreg, X, y, split, fold_bootstrap=20)
    store = FoldStore(tmp_path / "folds", config_hash="cfg")
    with pytest.raises(Killed):
        out_of_fold(
            make_logreg, X, y, split, fold_bootstrap=20, store=store, on_fold_end=_stop_after(1)
        )
    assert sorted(p.name for p in store.directory.glob("*.npz")) == ["fold-000.npz", "fold-001.npz"]

    factory, ends = Counting(make_logreg), []
    rerun = out_of_fold(
        factory,
        X,
        y,
        split,
        fold_bootstrap=20,
        store=FoldStore(tmp_path / "folds", config_hash="cfg"),
        on_fold_end=lambda result, estimator: ends.append((result.index, estimator is None)),
    )
    assert factory.made == 2  # folds 2 and 3 only
    assert ends == [(0, True), (1, True), (2, False), (3, False)]
    _same_oof(rerun, full)
    with ThreadPoolExecutor(max_workers=2) as pool:  # every fold stored now: nothing is fitted
        again = out_of_fold(
            Counting(make_logreg), X, y, split, fold_bootstrap=20, store=store, executor=pool
        )
    _same_oof(again, full)
    assert [f.to_dict() for f in again.folds] == [f.to_dict() for f in rerun.folds]


def test_a_fold_store_refuses_another_runs_folds_and_keep_models(tmp_path):
    X, y, split = _logreg_data()
    store = FoldStore(tmp_path, config_hash="cfg")
    with pytest.raises(Killed):
        out_of_fold(
            make_logreg, X, y, split, fold_bootstrap=20, store=store, on_fold_end=_stop_after(0)
        )
    fold0 = store.path(0)
    with pytest.raises(
        CheckpointError, match=f"{fold0} was written by another out-of-fold run.*labels"
    ):
        out_of_fold(make_logreg, X, 1 - y, split, fold_bootstrap=20, store=store)
    with pytest.raises(CheckpointError, match=f"{fold0} .*config_hash: stored 'cfg', now 'other'"):
        out_of_fold(
            make_logreg,
            X,
            y,
            split,
            fold_bootstrap=20,
            store=FoldStore(tmp_path, config_hash="other"),
        )
    with pytest.raises(ConfigError, match="keep_models=True needs every fold's fitted estimator"):
        out_of_fold(make_logreg, X, y, split, fold_bootstrap=20, store=store, keep_models=True)
    fold0.write_bytes(fold0.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=f"{fold0} cannot be read"):
        out_of_fold(make_logreg, X, y, split, fold_bootstrap=20, store=store)


class TinyTorch(Estimator):
    """A ``TinyNet`` trained by ``Trainer`` that can resume, as the pipeline's neural
    estimators do: ``resume_from(snapshot)`` is used by the next fit."""

    name = "test_tiny_torch"
    input_kind = "sequence"
    _resume: dict | None = None

    def resume_from(self, snapshot: dict | None) -> TinyTorch:
        self._resume = snapshot
        return self

    def fit(self, X, y, *, X_val=None, y_val=None):
        self.module_ = _net()  # seeded: the same initial weights in every fit
        resume, self._resume = self._resume, None
        Trainer(epochs=4, batch_size=8, seed=1).fit(
            self.module_, X, y, X_val, y_val, callbacks=self.callbacks, resume=resume
        )
        return self

    def predict_proba(self, X):
        with torch.no_grad():
            logits = self.module_(torch.from_numpy(np.asarray(X, dtype=np.float32)))
        return torch.softmax(logits.double(), dim=1).numpy()

    def save(self, path):
        raise NotImplementedError

    @classmethod
    def load(cls, path):
        raise NotImplementedError


def test_an_oof_run_killed_inside_a_fold_resumes_that_fold_from_its_epochs(tmp_path):
    X, _ = _toy_data(96)
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    starts = np.arange(len(X)) * 2
    split = purged_kfold(starts, starts + 4, n_folds=4, purge=1, embargo=2)
    full = out_of_fold(TinyTorch, X, y, split, fold_bootstrap=10)

    store = FoldStore(tmp_path, config_hash="cfg")
    killer = KillAfter(epoch=2, fit=2)  # fold 1 dies after its second epoch
    with pytest.raises(Killed):
        out_of_fold(
            lambda: TinyTorch().with_callbacks(killer), X, y, split, fold_bootstrap=10, store=store
        )
    assert store.path(0).exists() and not store.path(1).exists()
    assert not store.checkpoint_dir(0).exists()  # a stored fold's epochs are deleted
    assert load_checkpoint(store.checkpoint_dir(1) / "last.pt", config_hash="cfg")["epoch"] == 1

    trained = Epochs()
    rerun = out_of_fold(
        lambda: TinyTorch().with_callbacks(trained), X, y, split, fold_bootstrap=10, store=store
    )
    # Fold 0 is loaded; fold 1 goes on from epoch 2 (the killer ran before the writer);
    # folds 2 and 3 train from the start.
    assert trained.seen == [(1, 2), (1, 3), (1, 4)] + [(f, e) for f in (2, 3) for e in range(1, 5)]
    _same_oof(rerun, full)
    assert not any(p.is_dir() for p in tmp_path.iterdir())
