"""Classification metrics with bootstrap intervals: how good a model is, and how sure we are.

With a few dozen to a few hundred labelled windows a single accuracy is mostly noise, so
:func:`classification_report` gives every scalar metric with a 95% bootstrap percentile
interval, the minority class first, and calibration (ECE) next to discrimination.

Conventions:

- Labels are integer class indices ``0..K-1``; ``proba`` is ``(N, K)`` with rows summing
  to 1; the predicted class is ``argmax(proba)``.
- The *minority* class is the least frequent one in ``y_true`` (lowest index on ties)
  unless given. For binary problems it is the positive class of PR-AUC, ROC-AUC and
  Brier score; for ``K > 2`` those are macro one-vs-rest averages.
- Brier score is scikit-learn's: binary ``mean((p_pos - y_pos)^2)`` in ``[0, 1]``;
  multi-class ``mean(sum_k (p_k - onehot_k)^2)`` in ``[0, 2]``.
- ECE is top-label: confidence ``max_k p_k`` against "the argmax was right", binned either
  in ``n_bins`` equal-width bins ``[i/n, (i+1)/n)`` (the last one closed) or in ``n_bins``
  equal-mass bins (samples sorted by confidence, ties wrong-before-right so the result
  does not depend on sample order, cut into ``np.array_split``-sized groups).
  ``ECE = sum_b (n_b / N) |accuracy_b - confidence_b|``.
- A metric that is undefined on the data (ROC-AUC with one class present, ...) is ``None``.

Bootstrap: stratified by default (each resample keeps the class counts of ``y_true``, so
every present class is in every resample and the interval reflects sampling noise at the
observed prevalence); ``stratified=False`` draws plainly from all samples. A resample that
lacks a class a metric needs (plain bootstrap only) is skipped for that metric, and each
interval reports how many resamples it used. Intervals are percentile intervals.

Point estimates come from scikit-learn. ECE and the vectorised bootstrap are written here:
a resample is a row of draw counts over the original samples, so all ``B`` resamples are
scored at once with matrix products and cumulative sums over orderings computed once
(1000 resamples of 200 samples take about 0.1 s, where calling sklearn per resample and
metric takes seconds). The tests check every resample's values against sklearn.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from moola.core.errors import ConfigError

BinStrategy = Literal["uniform", "quantile"]
SCALAR_METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "pr_auc",
    "roc_auc",
    "log_loss",
    "brier",
    "ece",
    "ece_equal_mass",
)
PER_CLASS_METRICS: tuple[str, ...] = ("precision", "recall", "f1")
_PROBA_TOLERANCE = 1e-4  # rows of proba must sum to 1 within this
_CHUNK_CELLS = 2_000_000  # resampled cells (B * N) held in memory at once


# --------------------------------------------------------------------------- validation


def validate_proba(
    y_true: Any, proba: Any, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``y_true`` as ``(N,)`` int64 and ``proba`` as ``(N, K)`` float64, or ``ConfigError``
    naming what is wrong (shape, range, rows not summing to 1, labels out of range)."""
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ConfigError(
            f"Probabilities must be a 2-D array (n_samples, n_classes >= 2), got shape "
            f"{p.shape}; pass predict_proba(X), not predict(X)."
        )
    if n_classes is not None and p.shape[1] != n_classes:
        raise ConfigError(
            f"Probabilities have {p.shape[1]} columns but {n_classes} classes were given; "
            "give one column per class, in class order."
        )
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ConfigError(
            f"Labels must be 1-D with one per probability row: got labels of shape {y.shape} "
            f"and probabilities of shape {p.shape}."
        )
    if y.size == 0:
        raise ConfigError("No samples to evaluate: y_true and proba are empty.")
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ConfigError(
                f"Labels must be integer class indices 0..{p.shape[1] - 1}, got dtype "
                f"{y.dtype}; encode class names as indices first."
            )
    y = y.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= p.shape[1]))
    if bad.size:
        raise ConfigError(
            f"Labels at rows {bad[:5].tolist()} are outside 0..{p.shape[1] - 1} "
            f"(e.g. {int(y[bad[0]])}); labels must index the probability columns."
        )
    if not np.all(np.isfinite(p)):
        rows = np.flatnonzero(~np.isfinite(p).all(axis=1))
        raise ConfigError(
            f"Probabilities contain NaN or inf at rows {rows[:5].tolist()}; evaluate only "
            "covered samples (e.g. OOFResult.covered)."
        )
    if p.min() < 0 or p.max() > 1:
        raise ConfigError("Probabilities must lie in [0, 1]; apply softmax to logits first.")
    sums = p.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > _PROBA_TOLERANCE)
    if off.size:
        raise ConfigError(
            f"Probability rows must sum to 1; rows {off[:5].tolist()} sum to "
            f"{[round(float(s), 6) for s in sums[off[:5]]]}."
        )
    return y, p


def _class_index(value: Any, classes: Sequence[str], what: str) -> int:
    names = [str(c) for c in classes]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) < len(names):
            return int(value)
    elif str(value) in names:
        return names.index(str(value))
    raise ConfigError(f"{what}={value!r} is not one of the classes {names} (or their indices).")


# --------------------------------------------------------------------------- row kernels
# A bootstrap resample is a row of integer weights over the N original samples (how often
# each was drawn); the point estimate is the row of ones. Every kernel below maps ``(R, N)``
# weights to ``(R,)`` values, NaN where the metric is undefined for that row. Sorting and
# binning depend only on the original samples, so they are done once, in ``_prepare``.


@dataclass(frozen=True)
class _Ranking:
    """One score column sorted ascending, with each sorted position's tie group bounds."""

    order: np.ndarray
    first: np.ndarray
    last: np.ndarray


def _ranking(score: np.ndarray) -> _Ranking:
    order = np.argsort(score, kind="stable")
    s = score[order]
    new = np.ones(s.size, dtype=bool)
    new[1:] = s[1:] != s[:-1]
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:] - 1, s.size - 1)
    group = np.cumsum(new) - 1
    return _Ranking(order=order, first=starts[group], last=ends[group])


@dataclass(frozen=True)
class _Prepared:
    """Per-sample quantities every kernel reads (fixed across resamples)."""

    indicators: np.ndarray  # (N, 3K): y == k | pred == k | both, per class k
    correct: np.ndarray  # (N,) 1.0 where argmax is right
    loss: np.ndarray  # (N,) per-sample log loss
    squared: np.ndarray  # (N,) per-sample Brier term
    uniform_gap: np.ndarray  # (N, n_bins) correct - confidence in the sample's width bin
    mass_order: np.ndarray  # samples by (confidence, correct)
    mass_gap: np.ndarray  # correct - confidence in that order
    mass_bounds: np.ndarray  # equal-mass bin boundaries as positions 0..N
    ranked: list[tuple[np.ndarray, _Ranking]]  # (is positive, ranking) per scored column
    needed: np.ndarray  # classes balanced accuracy averages over
    n_classes: int


def _mass_bounds(n: int, n_bins: int) -> np.ndarray:
    """Boundaries (0 .. n) cutting ``n`` sorted samples into ``n_bins`` near-equal groups,
    the larger ones first (``np.array_split`` sizes); empty groups are dropped."""
    sizes = np.full(n_bins, n // n_bins)
    sizes[: n % n_bins] += 1
    return np.concatenate([[0], np.cumsum(sizes[sizes > 0])])


def _prepare(y: np.ndarray, p: np.ndarray, positive: int, n_bins: int) -> _Prepared:
    n, n_classes = p.shape
    pred = p.argmax(axis=1)
    confidence = p.max(axis=1)
    correct = (pred == y).astype(np.float64)
    true_k = y[:, None] == np.arange(n_classes)
    pred_k = pred[:, None] == np.arange(n_classes)
    eps = np.finfo(np.float64).eps
    if n_classes == 2:
        squared = (p[:, positive] - (y == positive)) ** 2
        columns = [positive]
    else:
        squared = ((p - true_k) ** 2).sum(axis=1)
        columns = list(range(n_classes))
    width_bin = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], confidence, "right")
    mass_order = np.lexsort((correct, confidence))
    return _Prepared(
        indicators=np.concatenate([true_k, pred_k, true_k & pred_k], axis=1).astype(np.float64),
        correct=correct,
        loss=-np.log(np.clip(p[np.arange(n), y], eps, 1 - eps)),
        squared=squared,
        uniform_gap=(width_bin[:, None] == np.arange(n_bins)) * (correct - confidence)[:, None],
        mass_order=mass_order,
        mass_gap=(correct - confidence)[mass_order],
        mass_bounds=_mass_bounds(n, n_bins),
        ranked=[(y == k, _ranking(p[:, k])) for k in columns],
        needed=np.flatnonzero(np.bincount(y, minlength=n_classes) > 0),
        n_classes=n_classes,
    )


def _ranking_rows(w: np.ndarray, pos: np.ndarray, rank: _Ranking) -> tuple[np.ndarray, ...]:
    """ROC-AUC and average precision of one score column under weights ``w``.

    AUC is the Mann-Whitney statistic (a tie between a positive and a negative counts 1/2);
    AP, as sklearn, is the mean over positives of the precision among samples scoring at
    least as high (ties share one threshold).
    """
    rows = w.shape[0]
    ws = w[:, rank.order]
    wp = ws * pos[rank.order]
    wn = ws - wp
    zero = np.zeros((rows, 1))
    cum_neg = np.concatenate([zero, np.cumsum(wn, axis=1)], axis=1)
    cum_pos = np.concatenate([zero, np.cumsum(wp, axis=1)], axis=1)
    n_pos, n_neg = cum_pos[:, -1], cum_neg[:, -1]
    below = cum_neg[:, rank.first]
    tied = cum_neg[:, rank.last + 1] - below
    pos_at_least = n_pos[:, None] - cum_pos[:, rank.first]
    all_at_least = pos_at_least + n_neg[:, None] - below
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (wp * (below + 0.5 * tied)).sum(axis=1) / (n_pos * n_neg)
        precision = np.where(wp > 0, pos_at_least / all_at_least, 0.0)
        ap = (wp * precision).sum(axis=1) / n_pos
    auc = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    return auc, np.where(n_pos > 0, ap, np.nan)


def _ece_mass_rows(w: np.ndarray, prep: _Prepared) -> np.ndarray:
    """Equal-mass ECE of each weighted row: the row's samples (a sample of weight c counts c
    times) sorted by ``(confidence, correct)`` and cut at ``mass_bounds``."""
    rows, n = w.shape
    ws = w[:, prep.mass_order]
    end = np.cumsum(ws, axis=1)  # position after each sample's copies
    gap_sum = np.cumsum(ws * prep.mass_gap, axis=1)
    # Sum of gaps over the first t positions, t at each boundary: find the sample covering
    # position t (row-wise searchsorted, rows kept apart by an offset) and remove its copies
    # beyond t.
    offset = (np.arange(rows) * (n + 1))[:, None]
    hit = np.searchsorted((end + offset).ravel(), (prep.mass_bounds + offset).ravel())
    hit = hit.reshape(rows, -1) - (np.arange(rows) * n)[:, None]
    hit = np.minimum(hit, n - 1)
    covered = np.take_along_axis(gap_sum, hit, axis=1) - prep.mass_gap[hit] * (
        np.take_along_axis(end, hit, axis=1) - prep.mass_bounds
    )
    covered[:, 0] = 0.0
    return np.abs(np.diff(covered, axis=1)).sum(axis=1) / n


def _rows(w: np.ndarray, prep: _Prepared) -> dict[str, np.ndarray]:
    """Every scalar metric and per-class precision/recall/F1 (``"k:name"``) per row."""
    k = prep.n_classes
    total = w.sum(axis=1)
    counts = w @ prep.indicators
    support, predicted, tp = counts[:, :k], counts[:, k : 2 * k], counts[:, 2 * k :]
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / support
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = 2.0 * tp / (support + predicted)
    present = support > 0
    values = {
        "accuracy": (w @ prep.correct) / total,
        "balanced_accuracy": np.where(
            present[:, prep.needed].all(axis=1), recall[:, prep.needed].mean(axis=1), np.nan
        ),
        "log_loss": (w @ prep.loss) / total,
        "brier": (w @ prep.squared) / total,
        "ece": np.abs(w @ prep.uniform_gap).sum(axis=1) / total,
        "ece_equal_mass": _ece_mass_rows(w, prep),
    }
    aucs, aps = zip(*(_ranking_rows(w, pos, rank) for pos, rank in prep.ranked), strict=True)
    values["roc_auc"] = np.mean(aucs, axis=0)  # macro one-vs-rest; NaN if a class is missing
    values["pr_auc"] = np.mean(aps, axis=0)
    for c in range(k):
        for name, array in (("precision", precision), ("recall", recall), ("f1", f1)):
            values[f"{c}:{name}"] = np.where(present[:, c], array[:, c], np.nan)
    return values


# --------------------------------------------------------------------------- calibration


def _check_strategy(strategy: str) -> str:
    if strategy not in ("uniform", "quantile"):
        raise ConfigError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}.")
    return strategy


def expected_calibration_error(
    y_true: Any, proba: Any, *, n_bins: int = 10, strategy: BinStrategy = "uniform"
) -> float:
    """Top-label ECE with ``n_bins`` equal-width (``"uniform"``) or equal-mass
    (``"quantile"``) bins; see the module docstring for the bin rules."""
    y, p = validate_proba(y_true, proba)
    strategy = _check_strategy(strategy)
    prep = _prepare(y, p, 0, _check_bins(n_bins))
    ones = np.ones((1, y.size))
    if strategy == "uniform":
        return float(np.abs(ones @ prep.uniform_gap).sum() / y.size)
    return float(_ece_mass_rows(ones, prep)[0])


def reliability_bins(
    y_true: Any, proba: Any, *, n_bins: int = 10, strategy: BinStrategy = "uniform"
) -> dict[str, list[Any]]:
    """The reliability table behind the ECE: per bin its ``[low, high]`` confidence edges,
    sample ``count``, mean ``confidence`` and ``accuracy`` (``None`` for an empty bin).

    Uniform bins are the fixed ``[i/n, (i+1)/n)`` (the last one closed); quantile bins
    report the lowest and highest confidence they hold.
    """
    y, p = validate_proba(y_true, proba)
    strategy = _check_strategy(strategy)
    n_bins = _check_bins(n_bins)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        bins = np.searchsorted(edges[1:-1], confidence, side="right")
        low, high = edges[:-1].tolist(), edges[1:].tolist()
    else:
        bounds = _mass_bounds(y.size, n_bins)
        bins = np.empty(y.size, dtype=np.int64)
        bins[np.lexsort((correct, confidence))] = (
            np.searchsorted(bounds, np.arange(y.size), side="right") - 1
        )
        n_bins = bounds.size - 1
        low = [float(confidence[bins == b].min()) for b in range(n_bins)]
        high = [float(confidence[bins == b].max()) for b in range(n_bins)]
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    hit_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    return {
        "low": low,
        "high": high,
        "count": count.tolist(),
        "confidence": [float(c / n) if n else None for c, n in zip(conf_sum, count, strict=True)],
        "accuracy": [float(h / n) if n else None for h, n in zip(hit_sum, count, strict=True)],
    }


def _check_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ConfigError(f"The number of ECE bins must be a positive integer, got {n_bins!r}.")
    return int(n_bins)


# --------------------------------------------------------------------------- bootstrap


def _resample_indices(
    y: np.ndarray, n: int, rng: np.random.Generator, stratified: bool
) -> np.ndarray:
    """``(n, N)`` bootstrap indices into ``y``: per class (stratified) or over all samples."""
    if not stratified:
        return rng.integers(0, y.size, size=(n, y.size))
    parts = []
    for k in np.unique(y):
        members = np.flatnonzero(y == k)
        parts.append(members[rng.integers(0, members.size, size=(n, members.size))])
    return np.concatenate(parts, axis=1)


def _weights(idx: np.ndarray) -> np.ndarray:
    """``(R, N)`` draw counts of each sample from ``(R, N)`` resample indices."""
    rows, n = idx.shape
    flat = (idx + (np.arange(rows) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def _bootstrap(
    y: np.ndarray, prep: _Prepared, *, n_bootstrap: int, seed: int, stratified: bool
) -> dict[str, np.ndarray]:
    """Per-resample values of every scalar and per-class metric (NaN = skipped)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // y.size)
    collected: dict[str, list[np.ndarray]] = {}
    done = 0
    while done < n_bootstrap:
        size = min(chunk, n_bootstrap - done)
        values = _rows(_weights(_resample_indices(y, size, rng, stratified)), prep)
        for name, rows in values.items():
            collected.setdefault(name, []).append(rows)
        done += size
    return {name: np.concatenate(parts) for name, parts in collected.items()}


def _interval(values: np.ndarray, confidence: float) -> dict[str, Any]:
    used = values[np.isfinite(values)]
    if used.size == 0:
        return {"low": None, "high": None, "n_resamples": 0}
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(used, [tail, 100.0 - tail])
    return {"low": float(low), "high": float(high), "n_resamples": int(used.size)}


# --------------------------------------------------------------------------- the report


def _float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _point_metrics(
    y: np.ndarray, p: np.ndarray, prep: _Prepared, positive: int
) -> dict[str, float | None]:
    """Scalar metrics from scikit-learn (ECE from the kernels), ``None`` where undefined."""
    n_classes = p.shape[1]
    labels = list(range(n_classes))
    pred = p.argmax(axis=1)
    all_present = np.unique(y).size == n_classes
    result: dict[str, float | None] = {
        "accuracy": float(accuracy_score(y, pred)),
        "log_loss": float(log_loss(y, p, labels=labels)),
    }
    with warnings.catch_warnings():
        # sklearn warns when predictions name a class absent from y_true; ignored, as it is.
        warnings.simplefilter("ignore")
        result["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
    if n_classes == 2:
        target = (y == positive).astype(np.int64)
        both = 0 < target.sum() < y.size
        result["pr_auc"] = float(average_precision_score(target, p[:, positive])) if both else None
        result["roc_auc"] = float(roc_auc_score(target, p[:, positive])) if both else None
        result["brier"] = float(brier_score_loss(target, p[:, positive]))
    else:
        onehot = (y[:, None] == np.arange(n_classes)).astype(np.int64)
        result["pr_auc"] = (
            float(average_precision_score(onehot, p, average="macro")) if all_present else None
        )
        result["roc_auc"] = (
            float(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=labels))
            if all_present
            else None
        )
        result["brier"] = float(brier_score_loss(y, p, labels=labels))
    kernels = _rows(np.ones((1, y.size)), prep)
    result["ece"] = float(kernels["ece"][0])
    result["ece_equal_mass"] = float(kernels["ece_equal_mass"][0])
    return {name: result[name] for name in SCALAR_METRICS}


def classification_report(
    y_true: Any,
    proba: Any,
    *,
    classes: Sequence[str],
    minority: str | int | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ece_bins: int = 10,
    stratified: bool = True,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Every metric a run reports, as a JSON-serialisable dict.

    Parameters
    ----------
    y_true : (N,) int
        True class indices ``0..K-1``.
    proba : (N, K) float
        Predicted probabilities, columns in ``classes`` order.
    classes : sequence of str
        Class names, one per column.
    minority : str or int, optional
        The class reported first and used as the positive class of binary PR-AUC,
        ROC-AUC and Brier; default the least frequent class in ``y_true``.
    n_bootstrap : int, default 1000
        Bootstrap resamples for the intervals; 0 skips them (``"intervals"`` is ``None``).
    seed : int, default 0
        Seed of the resampling (same seed, same intervals).
    ece_bins : int, default 10
        Bins of both ECE variants.
    stratified : bool, default True
        Resample within each class (see the module docstring) or from all samples.
    confidence : float, default 0.95
        Coverage of the percentile intervals.

    Returns
    -------
    dict
        ``n_samples``, ``classes``, ``class_counts``, ``minority``; ``metrics`` (name ->
        value or ``None``: accuracy, balanced_accuracy, pr_auc, roc_auc, log_loss, brier,
        ece, ece_equal_mass); ``per_class`` (list of ``{class, index, precision, recall,
        f1, support}``, minority first, then class order); ``confusion_matrix`` (rows true,
        columns predicted, in ``classes`` order); ``intervals`` (metric -> ``{low, high,
        n_resamples}``, and ``per_class`` -> class -> metric -> the same); ``bootstrap``
        (the resampling settings); ``ece_bins``.
    """
    names = [str(c) for c in classes]
    y, p = validate_proba(y_true, proba, n_classes=len(names))
    n_bins = _check_bins(ece_bins)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)):
        raise ConfigError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}.")
    if n_bootstrap < 0:
        raise ConfigError(f"n_bootstrap must be >= 0, got {n_bootstrap}.")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}.")
    n_classes = len(names)
    counts = np.bincount(y, minlength=n_classes)
    positive = (
        int(np.argmin(counts)) if minority is None else _class_index(minority, names, "minority")
    )
    order = [positive, *[k for k in range(n_classes) if k != positive]]
    pred = p.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=list(range(n_classes)), zero_division=0
    )
    per_class = [
        {
            "class": names[k],
            "index": k,
            "precision": float(precision[k]),
            "recall": float(recall[k]) if counts[k] else None,
            "f1": float(f1[k]) if counts[k] else None,
            "support": int(support[k]),
        }
        for k in order
    ]
    prep = _prepare(y, p, positive, n_bins)
    metrics = _point_metrics(y, p, prep, positive)
    intervals: dict[str, Any] | None = None
    if n_bootstrap > 0:
        draws = _bootstrap(y, prep, n_bootstrap=int(n_bootstrap), seed=seed, stratified=stratified)
        intervals = {
            name: _interval(draws[name], confidence) if metrics[name] is not None else None
            for name in SCALAR_METRICS
        }
        intervals["per_class"] = {
            names[k]: {
                name: _interval(draws[f"{k}:{name}"], confidence) if counts[k] else None
                for name in PER_CLASS_METRICS
            }
            for k in order
        }
    return {
        "n_samples": int(y.size),
        "classes": names,
        "class_counts": {names[k]: int(counts[k]) for k in range(n_classes)},
        "minority": names[positive],
        "metrics": {name: None if v is None else _float(v) for name, v in metrics.items()},
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y, pred, labels=list(range(n_classes))).tolist(),
        "intervals": intervals,
        "bootstrap": {
            "n_bootstrap": int(n_bootstrap),
            "resampling": "stratified" if stratified else "plain",
            "method": "percentile",
            "confidence": float(confidence),
            "seed": int(seed),
        },
        "ece_bins": n_bins,
    }
