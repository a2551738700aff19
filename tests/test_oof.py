"""Out-of-fold predictions: each sample predicted by a model that never saw it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.linear_model import LogisticRegression

from moola.core.errors import ConfigError, SplitError
from moola.data.splits import Fold, Split, forward_chaining, purged_kfold, walk_forward
from moola.models.base import Estimator
from moola.training.oof import FoldResult, out_of_fold, stack_oof


class _LogReg(Estimator):
    """scikit-learn's LogisticRegression behind the Estimator interface (tests only)."""

    name = "test_logreg"
    input_kind = "tabular"

    def fit(self, X, y, *, X_val=None, y_val=None):
        self.model_ = LogisticRegression().fit(X, y)
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X).astype(np.float64)

    def save(self, path):
        raise NotImplementedError

    @classmethod
    def load(cls, path):
        raise NotImplementedError


class _Memoriser(Estimator):
    """Predicts the remembered label of any sample id it was fitted or validated on, and
    1/2-1/2 otherwise: a perfect detector of samples leaking into prediction."""

    name = "test_memoriser"
    input_kind = "tabular"

    def fit(self, X, y, *, X_val=None, y_val=None):
        self.seen_ = dict(zip(X[:, 0].astype(int).tolist(), y.tolist(), strict=True))
        if X_val is not None:
            self.seen_.update(zip(X_val[:, 0].astype(int).tolist(), y_val.tolist(), strict=True))
        self.val_ids_ = None if X_val is None else X_val[:, 0].astype(int).tolist()
        return self

    def predict_proba(self, X):
        out = np.full((len(X), 2), 0.5)
        for row, sample in enumerate(X[:, 0].astype(int)):
            if sample in self.seen_:
                out[row] = np.eye(2)[self.seen_[sample]]
        return out

    def save(self, path):
        raise NotImplementedError

    @classmethod
    def load(cls, path):
        raise NotImplementedError


def _windows(n: int, length: int = 5):
    """Overlapping sample spans [2i, 2i + length - 1] on a bar axis."""
    starts = np.arange(n) * 2
    return starts, starts + length - 1


def _informative(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(0, 1, (n, 3))
    X[:, 0] += 1.5 * y
    return X, y


def test_no_prediction_comes_from_a_model_that_saw_the_sample():
    n = 120
    X = np.arange(n, dtype=float)[:, None]
    y = np.random.default_rng(0).integers(0, 2, n)
    for split in (
        purged_kfold(*_windows(n), n_folds=5, purge=1, embargo=2),
        walk_forward(*_windows(n), n_splits=4, test_size=20, purge=1, embargo=2),
    ):
        result = out_of_fold(_Memoriser, X, y, split)
        covered = result.oof_proba[result.covered]
        np.testing.assert_array_equal(covered, 0.5)  # never a remembered label
        assert np.isnan(result.oof_proba[~result.covered]).all()


def test_shuffled_labels_give_chance_accuracy_and_real_labels_do_not():
    X, y = _informative()
    n = y.size
    split = purged_kfold(*_windows(n), n_folds=5, purge=2, embargo=2)
    low, high = binom.interval(0.99, n, 0.5)
    for seed in range(3):
        shuffled = np.random.default_rng(seed).permutation(y)
        result = out_of_fold(_LogReg, X, shuffled, split)
        assert result.covered.all()
        accuracy = result.report(shuffled, n_bootstrap=0)["metrics"]["accuracy"]
        assert low / n <= accuracy <= high / n
    honest = out_of_fold(_LogReg, X, y, split).report(y, n_bootstrap=0)["metrics"]["accuracy"]
    assert honest > high / n  # the check above can fail: real signal is detected


def test_walk_forward_leaves_the_first_block_uncovered():
    X, y = _informative(100)
    split = walk_forward(*_windows(100), n_splits=3, test_size=20, purge=2)
    result = out_of_fold(_LogReg, X, y, split, classes=["down", "up"])
    tested = np.zeros(100, dtype=bool)
    for k, fold in enumerate(split.folds):
        tested[fold.test] = True
        assert (result.fold_of[fold.test] == k).all()
    np.testing.assert_array_equal(result.covered, tested)
    assert not result.covered[:40].any()
    assert np.isnan(result.oof_proba[~result.covered]).all()
    np.testing.assert_allclose(result.oof_proba[result.covered].sum(axis=1), 1.0)
    assert result.coverage == pytest.approx(tested.mean())
    report = result.report(y, n_bootstrap=20)
    assert report["n_samples"] == tested.sum() and report["classes"] == ["down", "up"]


def test_fold_val_goes_to_fit_only_when_the_fold_has_one():
    n = 30
    X = np.arange(n, dtype=float)[:, None]
    y = np.arange(n) % 2
    spans = [(i, i) for i in range(n)]
    split = Split(
        strategy="walk-forward",
        params={"purge": 0, "embargo": 0},
        train=list(range(n)),
        folds=[
            Fold(train=list(range(10)), val=list(range(10, 14)), test=list(range(14, 20))),
            Fold(train=list(range(20)), test=list(range(20, 30))),
        ],
        spans=spans,
    )
    seen: list[tuple[FoldResult, Estimator]] = []
    result = out_of_fold(
        _Memoriser, X, y, split, keep_models=True, on_fold_end=lambda r, e: seen.append((r, e))
    )
    assert result.models[0].val_ids_ == list(range(10, 14))
    assert result.models[1].val_ids_ is None
    assert [r.index for r, _ in seen] == [0, 1]
    assert [e for _, e in seen] == result.models
    assert [(f.n_train, f.n_val, f.n_test) for f in result.folds] == [(10, 4, 6), (20, 0, 10)]
    assert result.folds[1].metrics["n_samples"] == 10
    assert result.fold_metrics == [f.metrics for f in result.folds]
    summary = result.to_dict()
    json.dumps(summary, allow_nan=False)
    assert summary["n_covered"] == 16 and summary["split_hash"] == split.content_hash()
    assert out_of_fold(_Memoriser, X, y, split).models is None


def test_splits_that_cannot_give_oof_predictions_are_refused():
    X, y = _informative(60)
    with pytest.raises(SplitError, match="no folds"):
        out_of_fold(_LogReg, X, y, forward_chaining(*_windows(60)))
    with pytest.raises(SplitError, match="made for 50 samples"):
        out_of_fold(_LogReg, X, y, purged_kfold(*_windows(50), n_folds=3))
    twice = Split(
        strategy="walk-forward",
        params={"purge": 0, "embargo": 0},
        train=list(range(60)),
        folds=[Fold(train=list(range(30)), test=list(range(30, 60)))] * 2,
        spans=[(i, i) for i in range(60)],
    )
    with pytest.raises(SplitError, match="more than one fold"):
        out_of_fold(_LogReg, X, y, twice)


def test_wrong_probability_shape_names_the_fold():
    X, y = _informative(60)
    split = purged_kfold(*_windows(60), n_folds=3)
    with pytest.raises(ConfigError, match=r"Fold 0.*expected"):
        out_of_fold(_LogReg, X, y, split, classes=["a", "b", "c"])


def test_stack_oof_feeds_a_meta_learner_only_covered_oof_rows():
    X, y = _informative(200, seed=3)
    noise = np.random.default_rng(9).normal(0, 1, (200, 2))
    split = walk_forward(*_windows(200), n_splits=4, test_size=40, purge=2)
    good = out_of_fold(_LogReg, X, y, split)
    bad = out_of_fold(_LogReg, noise, y, split)
    X_meta, covered = stack_oof({"good": good, "bad": bad})
    assert X_meta.shape == (200, 4)
    np.testing.assert_array_equal(X_meta[:, :2], good.oof_proba)
    np.testing.assert_array_equal(X_meta[:, 2:], bad.oof_proba)
    np.testing.assert_array_equal(covered, good.covered & bad.covered)
    assert not np.isnan(X_meta[covered]).any()
    # A stand-in meta-learner (StackingClassifier's role) fitted on the OOF rows only
    # learns to rely on the informative base model.
    meta = LogisticRegression().fit(X_meta[covered][:, [1, 3]], y[covered])
    assert meta.coef_[0, 0] > 3 * abs(meta.coef_[0, 1])


def test_stack_oof_refuses_results_from_different_splits():
    X, y = _informative(100)
    a = out_of_fold(_LogReg, X, y, purged_kfold(*_windows(100), n_folds=3))
    b = out_of_fold(_LogReg, X, y, purged_kfold(*_windows(100), n_folds=4))
    with pytest.raises(ConfigError, match="different splits"):
        stack_oof({"a": a, "b": b})
    with pytest.raises(ConfigError):
        stack_oof({})


def test_stack_oof_output_fits_the_registered_stacking_classifier():
    pytest.importorskip("moola.models.stack")
    from moola.models import create

    X, y = _informative(150, seed=5)
    split = purged_kfold(*_windows(150), n_folds=3)
    results = {
        "a": out_of_fold(_LogReg, X, y, split),
        "b": out_of_fold(_LogReg, X[:, 1:], y, split),
    }
    X_meta, covered = stack_oof(results)
    meta = create("stack").fit(X_meta[covered], y[covered])
    assert meta.predict_proba(X_meta[covered]).shape == (int(covered.sum()), 2)
