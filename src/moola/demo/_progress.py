"""How the demo's training runs report progress: epochs of neural fits, folds of the rest.

A run over a purged 5-fold split makes six fits: one per fold, then the final one on all
covered windows. A neural model's fits report each epoch through an ``EpochProgress``
callback (total ``6 x epochs``, known before the first epoch); the others report each
fold as it ends, through ``run_training``'s ``"fold"`` events (total: the folds; a
regression run's events carry its IC instead of an accuracy and no fit time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moola.training.callbacks import EpochProgress, ProgressUpdate

Report = Callable[[ProgressUpdate], None]


def epoch_progress(report: Report, folds: int, epochs: int) -> EpochProgress:
    """A callback for every fit of a neural out-of-fold run: ``folds`` fits and the final."""
    return EpochProgress(folds + 1, epochs, report)


def fold_events(report: Report, folds: int) -> Callable[[str, dict[str, Any]], None]:
    """A ``run_training`` event sink that reports each finished fold: its training
    windows, its fit time and its score (accuracy of a classifier, IC of a regression
    target), each when the event has it."""

    def on_event(kind: str, info: dict[str, Any]) -> None:
        if kind != "fold":
            return
        done = int(info["fold"]) + 1
        detail = f"fold {done}/{folds}: {info['train']} train windows"
        if info.get("fit_s") is not None:
            detail += f", {info['fit_s']:.1f} s"
        if info.get("accuracy") is not None:
            detail += f", accuracy {info['accuracy']:.3f}"
        if info.get("ic") is not None:
            detail += f", IC {info['ic']:+.3f}"
        report(ProgressUpdate(done, folds, detail))

    return on_event
