"""Where out-of-fold folds run is the caller's choice; the results are not."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.data.splits import purged_kfold
from moola.models import create
from moola.training.oof import OOFResult, SerialExecutor, out_of_fold

make_logreg = partial(create, "logistic_regression", random_state=0)


def _data(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray, object]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(0, 1, (n, 4))
    X[:, 0] += 1.2 * y
    starts = np.arange(n) * 2
    return X, y, purged_kfold(starts, starts + 4, n_folds=4, purge=1, embargo=2)


def _same(a: OOFResult, b: OOFResult) -> None:
    np.testing.assert_array_equal(a.oof_proba, b.oof_proba)
    np.testing.assert_array_equal(a.fold_of, b.fold_of)
    assert a.fold_metrics == b.fold_metrics
    assert [(f.n_train, f.n_val, f.n_test) for f in a.folds] == [
        (f.n_train, f.n_val, f.n_test) for f in b.folds
    ]


class _Reversed:
    """An executor that finishes the work last item first, yet hands results back in order
    (as a pool whose last fold is quickest does)."""

    def __init__(self) -> None:
        self.ran: list[int] = []

    def map(self, fn, items, /):
        done = []
        for item in reversed(list(items)):
            self.ran.append(item.index)
            done.append(fn(item))
        return list(reversed(done))


class _Recording:
    """A logistic-regression factory that notes the thread each fold's estimator is made on."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def __call__(self):
        self.threads.append(threading.get_ident())
        return make_logreg()


def test_a_thread_pool_gives_the_serial_results_and_fold_ends_fire_in_order_here():
    X, y, split = _data()
    serial = out_of_fold(make_logreg, X, y, split, fold_bootstrap=20)
    caller = threading.get_ident()
    seen: list[tuple[int, int]] = []
    factory = _Recording()
    with ThreadPoolExecutor(max_workers=2) as pool:
        pooled = out_of_fold(
            factory,
            X,
            y,
            split,
            fold_bootstrap=20,
            executor=pool,
            on_fold_end=lambda result, _: seen.append((result.index, threading.get_ident())),
        )
    _same(serial, pooled)
    assert len(factory.threads) == len(split.folds) and caller not in factory.threads
    assert seen == [(k, caller) for k in range(len(split.folds))]


def test_a_custom_executor_finishing_out_of_order_keeps_fold_order_and_models():
    X, y, split = _data()
    serial = out_of_fold(make_logreg, X, y, split, fold_bootstrap=20, keep_models=True)
    ends: list[int] = []
    executor = _Reversed()
    backwards = out_of_fold(
        make_logreg,
        X,
        y,
        split,
        fold_bootstrap=20,
        keep_models=True,
        executor=executor,
        on_fold_end=lambda result, _: ends.append(result.index),
    )
    _same(serial, backwards)
    assert executor.ran == [3, 2, 1, 0]
    assert ends == [0, 1, 2, 3]
    for a, b in zip(serial.models, backwards.models, strict=True):
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_a_process_pool_gives_the_serial_results():
    """Each fold's work and inputs pickle: two fresh processes reproduce the serial run."""
    X, y, split = _data()
    serial = out_of_fold(make_logreg, X, y, split, fold_bootstrap=20, executor=SerialExecutor())
    context = multiprocessing.get_context("spawn")  # no fork of a threaded test process
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        pooled = out_of_fold(make_logreg, X, y, split, fold_bootstrap=20, executor=pool)
    _same(serial, pooled)
    assert pooled.models is None


def test_a_fold_that_fails_in_a_pool_raises_its_own_error_here():
    X, y, split = _data()
    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(ConfigError, match="Fold 0"):
        out_of_fold(make_logreg, X, y, split, classes=["a", "b", "c"], executor=pool)
