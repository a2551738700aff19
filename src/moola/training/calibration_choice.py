"""Choosing a calibration honestly: compared out of fold, never at the minority's expense.

Platt scaling on an imbalanced set can lower every minority probability below 0.5: the
log loss improves a little while the minority class is never predicted again (a user saw
minority F1 fall from 0.48 to 0.004, and the calibrated number was the headline). So the
default calibration is not a fixed method but a choice made on evidence:

1. every candidate (``none``, ``platt``, ``isotonic``, ``temperature``) is cross-fitted on
   the out-of-fold predictions (each fold calibrated by a calibrator fitted on the other
   folds), so each is scored on predictions its calibrator never saw;
2. a candidate whose minority-class F1 or balanced accuracy falls below the lower end of
   the uncalibrated value's bootstrap interval is *refused*, with the reason recorded;
3. among the rest (``none`` always qualifies) the lowest log loss wins.

For two classes the decision threshold of the minority class is chosen the same way: the
threshold that maximises balanced accuracy is picked on the other folds and applied to
each fold (so the reported thresholded metrics are out of fold too); the threshold picked
on all out-of-fold predictions is recorded for use at prediction time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, log_loss

from moola.training.calibration import CALIBRATORS, calibrate

__all__ = [
    "CANDIDATES",
    "CalibrationChoice",
    "choose_calibration",
    "contiguous_blocks",
    "cross_fitted",
]

CANDIDATES: tuple[str, ...] = ("none", "platt", "isotonic", "temperature")
_THRESHOLDS = np.round(np.linspace(0.05, 0.95, 91), 4)


@dataclass(frozen=True)
class CalibrationChoice:
    """The chosen method, the evidence, and the minority decision threshold (binary)."""

    method: str
    reason: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    threshold: float | None = None
    thresholded: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cross_fitted(
    method: str, proba: np.ndarray, y: np.ndarray, groups: Sequence[np.ndarray]
) -> np.ndarray:
    """``proba`` calibrated group by group, each by a calibrator fitted on the other groups.

    ``groups`` are disjoint index arrays (the folds' test parts, or blocks of a validation
    part). A group whose complement lacks a class keeps its uncalibrated values.
    """
    if method == "none":
        return proba.copy()
    out = proba.copy()
    every = np.concatenate([np.asarray(g, dtype=np.int64) for g in groups])
    for group in groups:
        group = np.asarray(group, dtype=np.int64)
        others = np.setdiff1d(every, group)
        if len(group) == 0 or len(np.unique(y[others])) < 2:
            continue
        fitted = calibrate(method, proba[others], y[others], origin="oof")
        out[group] = fitted.transform(proba[group])
    return out


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y`` (scikit-learn's definition, without
    its warning when a small fold holds one class)."""
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def _scores(y: np.ndarray, proba: np.ndarray, minority: int) -> dict[str, float]:
    pred = proba.argmax(axis=1)
    clipped = np.clip(proba, 1e-12, 1.0)
    return {
        "log_loss": float(
            log_loss(y, clipped / clipped.sum(1, keepdims=True), labels=list(range(proba.shape[1])))
        ),
        "balanced_accuracy": float(_balanced_accuracy(y, pred)),
        "minority_f1": float(
            f1_score(y, pred, labels=[minority], average="macro", zero_division=0)
        ),
    }


def _best_threshold(y: np.ndarray, p_minority: np.ndarray, minority: int) -> float:
    """The minority threshold with the best balanced accuracy (ties: closest to 0.5)."""
    best, best_score = 0.5, -1.0
    for t in sorted(_THRESHOLDS, key=lambda v: abs(v - 0.5)):
        pred = np.where(p_minority >= t, minority, 1 - minority)
        score = _balanced_accuracy(y, pred)
        if score > best_score + 1e-12:
            best, best_score = float(t), score
    return best


def _thresholded(
    y: np.ndarray, proba: np.ndarray, minority: int, groups: Sequence[np.ndarray]
) -> tuple[float, dict[str, float]]:
    """Cross-fitted thresholded predictions and their metrics; the all-data threshold."""
    p = proba[:, minority]
    pred = np.empty(len(y), dtype=np.int64)
    every = np.concatenate([np.asarray(g, dtype=np.int64) for g in groups])
    for group in groups:
        group = np.asarray(group, dtype=np.int64)
        others = np.setdiff1d(every, group)
        t = _best_threshold(y[others], p[others], minority) if len(others) else 0.5
        pred[group] = np.where(p[group] >= t, minority, 1 - minority)
    metrics = {
        "balanced_accuracy": float(_balanced_accuracy(y[every], pred[every])),
        "minority_f1": float(
            f1_score(y[every], pred[every], labels=[minority], average="macro", zero_division=0)
        ),
    }
    return _best_threshold(y[every], p[every], minority), metrics


def choose_calibration(
    proba: np.ndarray,
    y: np.ndarray,
    groups: Sequence[np.ndarray],
    *,
    minority: int,
    floors: dict[str, float | None],
    methods: Sequence[str] = CANDIDATES,
) -> tuple[CalibrationChoice, dict[str, np.ndarray]]:
    """Compare ``methods`` out of fold on ``proba`` (covered rows indexed by ``groups``).

    ``floors`` holds the lowest acceptable ``minority_f1`` and ``balanced_accuracy`` (the
    lower ends of the uncalibrated values' bootstrap intervals; None skips a floor).
    Returns the choice and each method's cross-fitted probabilities.
    """
    unknown = [m for m in methods if m != "none" and m not in CALIBRATORS]
    if unknown:
        raise ValueError(f"unknown calibration candidates {unknown}")
    every = np.concatenate([np.asarray(g, dtype=np.int64) for g in groups])
    fitted = {m: cross_fitted(m, proba, y, groups) for m in methods}
    candidates = []
    for method in methods:
        row: dict[str, Any] = {
            "method": method,
            **_scores(y[every], fitted[method][every], minority),
        }
        lowered = [
            f"{metric} {row[metric]:.3f} < {floor:.3f}"
            for metric, floor in floors.items()
            if method != "none" and floor is not None and row[metric] < floor
        ]
        row["eligible"] = not lowered
        row["refused_because"] = (
            "lowers " + " and ".join(lowered) + " (below the uncalibrated interval)"
            if lowered
            else None
        )
        candidates.append(row)
    eligible = [row for row in candidates if row["eligible"]]
    best = min(eligible, key=lambda row: (row["log_loss"], row["method"] != "none"))
    refused = [row["method"] for row in candidates if not row["eligible"]]
    reason = (
        f"lowest out-of-fold log loss ({best['log_loss']:.4f}) among "
        + ", ".join(row["method"] for row in eligible)
        + (f"; refused: {', '.join(refused)}" if refused else "")
    )
    threshold = thresholded = None
    if proba.shape[1] == 2:
        threshold, thresholded = _thresholded(y, fitted[best["method"]], minority, groups)
    choice = CalibrationChoice(best["method"], reason, candidates, threshold, thresholded)
    for row in choice.candidates:
        row["chosen"] = row["method"] == choice.method
    return choice, fitted


def contiguous_blocks(indices: np.ndarray, k: int = 5) -> list[np.ndarray]:
    """``indices`` cut into ``k`` contiguous blocks (time order kept) for a holdout part."""
    k = max(2, min(k, len(indices) // 10 or 2))
    return [block for block in np.array_split(np.asarray(indices), k) if len(block)]
