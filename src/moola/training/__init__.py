"""Training: the one loop (``Trainer``), its callbacks and losses, ``NeuralEstimator``, and
out-of-fold predictions (``out_of_fold``) over folds run by a ``FoldExecutor``, and
``FeatureWindowDataset`` (stored feature windows as torch items, never materialised).
Runs resume: ``EpochCheckpoints`` and ``load_checkpoint`` for a fit, ``FoldStore`` for the
folds of an out-of-fold run.

Names are imported on first use (PEP 562), so ``import moola.training`` stays light and
pulls in torch only when a torch-backed name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moola.training.callbacks import (
        Callback,
        CheckpointCallback,
        EarlyStopping,
        ProgressCallback,
        TrainingState,
    )
    from moola.training.checkpoints import (
        EpochCheckpoints,
        FoldStore,
        load_best,
        load_checkpoint,
    )
    from moola.training.losses import FocalLoss, balanced_class_weights, build_loss
    from moola.training.neural import NeuralEstimator
    from moola.training.oof import (
        FoldExecutor,
        FoldResult,
        OOFResult,
        SerialExecutor,
        out_of_fold,
        stack_oof,
    )
    from moola.training.trainer import (
        StepFn,
        SupervisedStep,
        Trainer,
        TrainerConfig,
        TrainingSummary,
        scheduled_lr,
    )
    from moola.training.window_dataset import FeatureWindowDataset

_EXPORTS = {
    "Callback": "moola.training.callbacks",
    "CheckpointCallback": "moola.training.callbacks",
    "EarlyStopping": "moola.training.callbacks",
    "ProgressCallback": "moola.training.callbacks",
    "TrainingState": "moola.training.callbacks",
    "EpochCheckpoints": "moola.training.checkpoints",
    "FoldStore": "moola.training.checkpoints",
    "load_best": "moola.training.checkpoints",
    "load_checkpoint": "moola.training.checkpoints",
    "FocalLoss": "moola.training.losses",
    "balanced_class_weights": "moola.training.losses",
    "build_loss": "moola.training.losses",
    "NeuralEstimator": "moola.training.neural",
    "FoldExecutor": "moola.training.oof",
    "FoldResult": "moola.training.oof",
    "OOFResult": "moola.training.oof",
    "SerialExecutor": "moola.training.oof",
    "out_of_fold": "moola.training.oof",
    "stack_oof": "moola.training.oof",
    "StepFn": "moola.training.trainer",
    "SupervisedStep": "moola.training.trainer",
    "Trainer": "moola.training.trainer",
    "TrainerConfig": "moola.training.trainer",
    "TrainingSummary": "moola.training.trainer",
    "scheduled_lr": "moola.training.trainer",
    "FeatureWindowDataset": "moola.training.window_dataset",
}

__all__ = [
    "Callback",
    "CheckpointCallback",
    "EarlyStopping",
    "EpochCheckpoints",
    "FeatureWindowDataset",
    "FocalLoss",
    "FoldExecutor",
    "FoldResult",
    "FoldStore",
    "NeuralEstimator",
    "OOFResult",
    "ProgressCallback",
    "SerialExecutor",
    "StepFn",
    "SupervisedStep",
    "Trainer",
    "TrainerConfig",
    "TrainingState",
    "TrainingSummary",
    "balanced_class_weights",
    "build_loss",
    "load_best",
    "load_checkpoint",
    "out_of_fold",
    "scheduled_lr",
    "stack_oof",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'moola.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
