"""Out-of-fold (OOF) predictions: every sample predicted by a model that never saw it.

:func:`out_of_fold` walks the folds of a purged k-fold or walk-forward
:class:`~moola.data.splits.Split`, fits a fresh estimator on each fold's train indices
(its ``val`` indices, when the fold has them, go to ``fit`` as ``X_val``/``y_val`` for early
stopping only) and predicts the fold's test indices. The split is validated first
(``validate_split``: purge, embargo, ranges), and a sample tested by two folds is refused,
so each OOF row comes from exactly one model that neither trained nor early-stopped on it.
Samples no fold tests (walk-forward's first block, purged ones) keep NaN rows and
``covered=False``; evaluate and stack only the covered rows.

:func:`stack_oof` joins several base models' OOF probabilities into the input of a
stacking meta-learner (``moola.models.stack.StackingClassifier``). The meta-learner is
trained ONLY on these OOF predictions (never on in-sample predictions of the base models,
which are over-confident and would teach it to trust them); to report the stack's own
performance honestly, run the stacking itself inside an outer split, since the OOF
predictions of one split were all used to fit it.

Where the folds run is the caller's choice: ``out_of_fold(..., executor=...)`` takes any
:class:`FoldExecutor`, an object whose ``map(fn, items)`` returns ``fn(item)`` for each item
in the items' order. :class:`SerialExecutor` (the default) runs them one after another in
this process; a ``concurrent.futures`` ``ThreadPoolExecutor`` or ``ProcessPoolExecutor`` is
one as it is, and a tuning study or a Ray pool can supply its own. Each fold's work is the
top-level function :func:`fit_fold` applied to a :class:`FoldTask` holding the fold's
inputs, so both pickle and run in another process or on another machine (the
``make_estimator`` given must then pickle too: a class, a ``functools.partial`` or an
instance of a top-level class, not a lambda). Results do not depend on the executor:
each fold's estimator and metrics are seeded by the task alone.

A long run survives being killed: ``out_of_fold(..., store=FoldStore(directory))``
(``moola.training.checkpoints``) writes each finished fold (test indices, probabilities,
summary with its metrics and timings) atomically as it arrives, in this process, whatever
the executor; run again with the same store, the finished folds are loaded instead of
fitted, only the others go to the executor, and the result equals an uninterrupted run's
bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import pandas as pd

from moola.core.errors import CheckpointError, ConfigError, SplitError
from moola.core.hashing import sha256_bytes
from moola.data.splits import Split, validate_split
from moola.evaluation.metrics import classification_report
from moola.models.base import Estimator

if TYPE_CHECKING:
    from moola.training.checkpoints import FoldStore


@dataclass(frozen=True)
class FoldResult:
    """What one fold did: sizes, timings (seconds) and metrics on its test part."""

    index: int
    n_train: int
    n_val: int
    n_test: int
    fit_seconds: float
    predict_seconds: float
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        return {
            "index": self.index,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "fit_seconds": self.fit_seconds,
            "predict_seconds": self.predict_seconds,
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FoldResult:
        """The inverse of ``to_dict``."""
        return cls(
            index=int(data["index"]),
            n_train=int(data["n_train"]),
            n_val=int(data["n_val"]),
            n_test=int(data["n_test"]),
            fit_seconds=float(data["fit_seconds"]),
            predict_seconds=float(data["predict_seconds"]),
            metrics=dict(data["metrics"]),
        )


@dataclass(frozen=True)
class OOFResult:
    """Out-of-fold probabilities and how they were made.

    ``oof_proba`` is ``(N, K)`` with NaN rows where ``covered`` is False; ``fold_of`` gives
    the fold that predicted each sample (-1 if none); ``models`` holds the fold estimators
    when ``keep_models=True``, else ``None``.
    """

    oof_proba: np.ndarray
    covered: np.ndarray
    fold_of: np.ndarray
    folds: list[FoldResult]
    classes: list[str]
    split_hash: str
    total_seconds: float
    models: list[Estimator] | None = field(default=None, repr=False)

    @property
    def fold_metrics(self) -> list[dict[str, Any]]:
        """Each fold's classification report, in fold order."""
        return [fold.metrics for fold in self.folds]

    @property
    def coverage(self) -> float:
        """Fraction of samples with an OOF prediction."""
        return float(self.covered.mean()) if self.covered.size else 0.0

    def report(self, y: Any, *, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
        """:func:`~moola.evaluation.metrics.classification_report` over the covered samples."""
        labels = np.asarray(y)
        if labels.shape != self.covered.shape:
            raise ConfigError(
                f"Got {labels.shape} labels for {self.covered.size} OOF rows; pass the y given "
                "to out_of_fold."
            )
        return classification_report(
            labels[self.covered],
            self.oof_proba[self.covered],
            classes=self.classes,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no arrays): coverage, split hash, folds, timings."""
        return {
            "n_samples": int(self.covered.size),
            "n_covered": int(self.covered.sum()),
            "coverage": self.coverage,
            "classes": list(self.classes),
            "split_hash": self.split_hash,
            "total_seconds": self.total_seconds,
            "folds": [fold.to_dict() for fold in self.folds],
        }


_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class FoldExecutor(Protocol):
    """Where the folds run: ``map(fn, items)`` gives ``fn(item)`` for every item, in the
    order of ``items`` (whatever order the work itself finished in).

    Every ``concurrent.futures.Executor`` is one; so is :class:`SerialExecutor`.
    ``fn`` and the items pickle, so an executor may run them in other processes or on
    other machines.
    """

    def map(self, fn: Callable[[_Item], _Result], items: Iterable[_Item], /) -> Iterable[_Result]:
        """``fn(item)`` for each item, in order."""
        ...


class SerialExecutor:
    """The default :class:`FoldExecutor`: each fold in turn, in this process.

    The map is lazy, so fold ``k + 1`` starts only after the caller has handled fold ``k``
    (its ``on_fold_end`` runs between them, as a progress display expects).
    """

    def map(self, fn: Callable[[_Item], _Result], items: Iterable[_Item], /) -> Iterator[_Result]:
        """``fn(item)`` for each item, one at a time, in order."""
        return map(fn, items)


@dataclass(frozen=True)
class FoldTask:
    """One fold's work with its inputs: what :func:`fit_fold` needs, and nothing that ties
    it to this process (it pickles when ``make_estimator`` does)."""

    index: int
    make_estimator: Callable[[], Estimator]
    X_train: Any
    y_train: np.ndarray
    X_val: Any | None
    y_val: np.ndarray | None
    X_test: Any
    y_test: np.ndarray
    classes: tuple[str, ...]
    fold_bootstrap: int
    seed: int
    return_model: bool
    checkpoints: str | None = None
    """Directory for the fit's epoch checkpoints (a ``FoldStore``'s), or None."""
    config_hash: str | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class FoldOutput:
    """What one fold hands back: its summary, its test probabilities ``(n_test, K)`` and,
    when the task asked for it, the fitted estimator."""

    result: FoldResult
    proba: np.ndarray
    estimator: Estimator | None = field(default=None, repr=False)


def fit_fold(task: FoldTask) -> FoldOutput:
    """Fit a fresh estimator on the task's train part (``X_val``/``y_val``, when present,
    only for early stopping), predict its test part and score it.

    A top-level function of one picklable argument, so any :class:`FoldExecutor` can run it.
    With ``task.checkpoints``, an estimator trained epoch by epoch writes its epoch
    checkpoints there and resumes from the last one an interrupted fit left behind
    (``moola.training.checkpoints.resume_or_checkpoint``).
    """
    estimator = task.make_estimator()
    if task.checkpoints is not None:
        from moola.training.checkpoints import resume_or_checkpoint

        resume_or_checkpoint(estimator, task.checkpoints, config_hash=task.config_hash)
    tick = time.perf_counter()
    if task.X_val is not None:
        estimator.fit(task.X_train, task.y_train, X_val=task.X_val, y_val=task.y_val)
    else:
        estimator.fit(task.X_train, task.y_train)
    fit_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    proba = np.asarray(estimator.predict_proba(task.X_test), dtype=np.float64)
    predict_seconds = time.perf_counter() - tick
    n_test = len(task.y_test)
    if proba.shape != (n_test, task.n_classes):
        raise ConfigError(
            f"Fold {task.index}: {type(estimator).__name__}.predict_proba returned shape "
            f"{proba.shape}, expected ({n_test}, {task.n_classes}); the estimator must "
            f"return one column per class (set n_classes={task.n_classes} if a fold's train "
            "part lacks a class)."
        )
    result = FoldResult(
        index=task.index,
        n_train=len(task.y_train),
        n_val=0 if task.y_val is None else len(task.y_val),
        n_test=n_test,
        fit_seconds=fit_seconds,
        predict_seconds=predict_seconds,
        metrics=classification_report(
            task.y_test,
            proba,
            classes=list(task.classes),
            n_bootstrap=task.fold_bootstrap,
            seed=task.seed,
        ),
    )
    return FoldOutput(result, proba, estimator if task.return_model else None)


def _take(X: Any, idx: np.ndarray) -> Any:
    if isinstance(X, (pd.DataFrame, pd.Series)):
        return X.iloc[idx]
    return X[idx]


def _check_folds(split: Split, n: int) -> None:
    if not split.folds:
        raise SplitError(
            f"Split strategy {split.strategy!r} has no folds; out-of-fold predictions need a "
            "purged-kfold or walk-forward split (moola.data.splits.make_split)."
        )
    if split.spans and len(split.spans) != n:
        raise SplitError(
            f"The split was made for {len(split.spans)} samples but X has {n}; rebuild the "
            "split for this data."
        )
    validate_split(split)
    tested = np.zeros(n, dtype=np.int64)
    for k, fold in enumerate(split.folds):
        for part in ("train", "val", "test"):
            idx = np.asarray(getattr(fold, part), dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise SplitError(
                    f"Fold {k}: {part} indices run outside 0..{n - 1}; the split was made "
                    "for other data. Rebuild it."
                )
        if not fold.train or not fold.test:
            raise SplitError(f"Fold {k} has an empty train or test part; rebuild the split.")
        np.add.at(tested, np.asarray(fold.test, dtype=np.int64), 1)
    twice = np.flatnonzero(tested > 1)
    if twice.size:
        raise SplitError(
            f"{twice.size} sample(s) are in the test part of more than one fold, first "
            f"{twice[:5].tolist()}; out-of-fold predictions need each sample tested at most once."
        )


def out_of_fold(
    make_estimator: Callable[[], Estimator],
    X: Any,
    y: Any,
    split: Split,
    *,
    on_fold_end: Callable[[FoldResult, Estimator | None], None] | None = None,
    keep_models: bool = False,
    classes: Sequence[str] | None = None,
    fold_bootstrap: int = 200,
    seed: int = 0,
    executor: FoldExecutor | None = None,
    store: FoldStore | None = None,
) -> OOFResult:
    """Fit a fresh estimator per fold of ``split`` and predict the fold's test samples.

    Parameters
    ----------
    make_estimator : callable
        Returns a new, unfitted estimator each call (e.g. ``lambda: create("bilstm")``;
        ``functools.partial(create, "bilstm")`` when the executor runs folds in other
        processes, which must unpickle it).
    X : array (N, ...) or DataFrame
        Inputs; rows are indexed by the split's sample indices.
    y : (N,) int
        Class indices ``0..K-1``.
    split : Split
        A fold strategy (``purged-kfold``, ``walk-forward``) made for these N samples.
    on_fold_end : callable, optional
        Called with each fold's :class:`FoldResult` and fitted estimator (logging,
        checkpoints, pruning), in this process and in fold order, whatever the executor.
        A fold loaded from ``store`` comes with ``None`` for the estimator.
    keep_models : bool, default False
        Keep the fitted fold estimators in ``OOFResult.models`` (refused when ``store``
        already holds finished folds: their estimators were not kept).
    classes : sequence of str, optional
        Class names (default ``"0".."K-1"`` with ``K = max(y) + 1``).
    fold_bootstrap : int, default 200
        Bootstrap resamples of the per-fold metric intervals.
    seed : int, default 0
        Seed of those resamples (model seeds belong to ``make_estimator``).
    executor : FoldExecutor, optional
        Runs the folds (:func:`fit_fold` over one :class:`FoldTask` each); default
        :class:`SerialExecutor`. A ``concurrent.futures`` pool runs them in parallel with
        the same results.
    store : FoldStore, optional
        Keeps each finished fold on disk; folds it already holds for this run (same
        split, labels, classes, metric settings and store config hash) are loaded, not
        refitted. A fold it holds for another run raises ``CheckpointError``.
    """
    labels = np.asarray(y)
    n = len(X)
    if labels.ndim != 1 or labels.size != n:
        raise ConfigError(f"y must be 1-D with one label per row of X ({n}), got {labels.shape}.")
    if labels.dtype.kind not in "iu":
        raise ConfigError(f"y must hold integer class indices, got dtype {labels.dtype}.")
    labels = labels.astype(np.int64)
    n_classes = len(classes) if classes is not None else int(labels.max()) + 1
    names = [str(c) for c in classes] if classes is not None else [str(k) for k in range(n_classes)]
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ConfigError(f"y must lie in 0..{n_classes - 1} for classes {names}.")
    _check_folds(split, n)

    oof = np.full((n, n_classes), np.nan)
    fold_of = np.full(n, -1, dtype=np.int64)
    results: list[FoldResult] = []
    models: list[Estimator] = []
    started = time.perf_counter()
    identity = _run_identity(split, labels, names, fold_bootstrap, seed)
    stored = {} if store is None else _stored_folds(store, split, identity, n_classes)
    if stored and keep_models and store is not None:
        raise ConfigError(
            f"keep_models=True needs every fold's fitted estimator, but the fold store "
            f"{store.directory} already holds finished folds "
            f"{sorted(stored)}, whose estimators were not kept. Drop keep_models, or use a "
            "fresh store directory."
        )
    tasks = _fold_tasks(
        make_estimator,
        X,
        labels,
        split,
        classes=tuple(names),
        fold_bootstrap=fold_bootstrap,
        seed=seed,
        return_model=keep_models or on_fold_end is not None,
        skip=frozenset(stored),
        store=store,
    )
    outputs = iter((executor or SerialExecutor()).map(fit_fold, tasks))
    for k, fold in enumerate(split.folds or []):
        test = np.asarray(fold.test, dtype=np.int64)
        if k in stored:
            result, proba, estimator = stored[k][0], stored[k][1], None
        else:
            output = next(outputs)
            result, proba, estimator = output.result, output.proba, output.estimator
            if store is not None:
                store.save(k, identity=identity, test=test, values=proba, summary=result.to_dict())
                store.discard_checkpoints(k)  # the fold is kept: its epochs are not needed
        oof[test] = proba
        fold_of[test] = k
        results.append(result)
        if on_fold_end is not None and (estimator is not None or k in stored):
            on_fold_end(result, estimator)
        if keep_models and estimator is not None:
            models.append(estimator)
    return OOFResult(
        oof_proba=oof,
        covered=fold_of >= 0,
        fold_of=fold_of,
        folds=results,
        classes=names,
        split_hash=split.content_hash(),
        total_seconds=time.perf_counter() - started,
        models=models if keep_models else None,
    )


def _fold_tasks(
    make_estimator: Callable[[], Estimator],
    X: Any,
    labels: np.ndarray,
    split: Split,
    *,
    classes: tuple[str, ...],
    fold_bootstrap: int,
    seed: int,
    return_model: bool,
    skip: frozenset[int] = frozenset(),
    store: FoldStore | None = None,
) -> Iterator[FoldTask]:
    """One task per fold not in ``skip``, made as the executor asks for it (a serial run
    holds one fold's copy of the inputs at a time)."""
    for k, fold in enumerate(split.folds or []):
        if k in skip:
            continue
        train = np.asarray(fold.train, dtype=np.int64)
        val = np.asarray(fold.val, dtype=np.int64)
        test = np.asarray(fold.test, dtype=np.int64)
        yield FoldTask(
            index=k,
            make_estimator=make_estimator,
            X_train=_take(X, train),
            y_train=labels[train],
            X_val=_take(X, val) if val.size else None,
            y_val=labels[val] if val.size else None,
            X_test=_take(X, test),
            y_test=labels[test],
            classes=classes,
            fold_bootstrap=fold_bootstrap,
            seed=seed,
            return_model=return_model,
            checkpoints=None if store is None else str(store.checkpoint_dir(k)),
            config_hash=None if store is None else store.config_hash,
        )


def _run_identity(
    split: Split, labels: np.ndarray, classes: list[str], fold_bootstrap: int, seed: int
) -> dict[str, Any]:
    """What a stored fold must have been made with to stand in for a fit in this run
    (plain JSON values: a fold store keeps them in each fold's file)."""
    return {
        "split_hash": split.content_hash(),
        "n_samples": int(labels.size),
        "labels": sha256_bytes(np.ascontiguousarray(labels, dtype=np.int64).tobytes()),
        "classes": list(classes),
        "fold_bootstrap": int(fold_bootstrap),
        "seed": int(seed),
    }


def _stored_folds(
    store: FoldStore, split: Split, identity: dict[str, Any], n_classes: int
) -> dict[int, tuple[FoldResult, np.ndarray]]:
    """The folds ``store`` holds for this run, checked against the split's folds."""
    found: dict[int, tuple[FoldResult, np.ndarray]] = {}
    for k, fold in enumerate(split.folds or []):
        record = store.load(k, identity=identity)
        if record is None:
            continue
        test = np.asarray(fold.test, dtype=np.int64)
        values = np.asarray(record.values, dtype=np.float64)
        if not np.array_equal(record.test, test) or values.shape != (test.size, n_classes):
            raise CheckpointError(
                f"Fold file {store.path(k)} holds {values.shape} values for "
                f"{record.test.size} test samples, not ({test.size}, {n_classes}) for this "
                f"split's fold {k}; delete it to fit the fold again."
            )
        try:
            result = FoldResult.from_dict(record.summary)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"Fold file {store.path(k)} holds an unreadable fold summary "
                f"({type(exc).__name__}: {exc}); delete it to fit the fold again."
            ) from exc
        found[k] = (result, values)
    return found


def stack_oof(base_results: Mapping[str, OOFResult]) -> tuple[np.ndarray, np.ndarray]:
    """The meta-learner's training input from base models' OOF results.

    Returns ``X_meta`` ``(N, M * K)``: the base models' OOF probabilities side by side in
    the mapping's order (model ``m`` in columns ``m*K .. m*K + K - 1``), and ``covered``,
    the samples every base model predicted. Fit the meta-learner on ``X_meta[covered]``
    only. All results must come from the same split (same content hash) and classes.
    """
    if not base_results:
        raise ConfigError("stack_oof needs at least one base model's OOFResult.")
    items = list(base_results.items())
    first_name, first = items[0]
    for name, result in items[1:]:
        if result.split_hash != first.split_hash:
            raise ConfigError(
                f"Base models {first_name!r} and {name!r} were cross-validated on different "
                "splits; run every base model's out_of_fold on the same split before stacking."
            )
        if result.classes != first.classes:
            raise ConfigError(
                f"Base models {first_name!r} and {name!r} have different classes "
                f"({first.classes} vs {result.classes})."
            )
    X_meta = np.concatenate([result.oof_proba for _, result in items], axis=1)
    covered = np.logical_and.reduce([result.covered for _, result in items])
    return X_meta, covered
