"""Training that survives being killed: epoch checkpoints of a fit, finished folds of an
out-of-fold run.

``EpochCheckpoints(directory, config_hash=...)`` is a training-loop callback that, after
every epoch, writes into ``directory``:

- ``best.pt`` when the epoch lowered the validation loss: the weights the fit ends with
  (``Trainer`` restores the best epoch's weights), ``{"format", "format_version",
  "kind": "best", "config_hash", "epoch", "val_loss", "state_dict"}``. A fit without
  validation data writes none (it ends with its last weights, which ``last.pt`` holds);
- ``last.pt``: the full loop state, ``{"format", "format_version", "kind": "last",
  "config_hash", "epoch", "loop": LoopState.snapshot()}`` (weights, optimiser, RNG states,
  step, loss histories, best weights, a fingerprint of the data).

Each file is written beside its destination and renamed into place (``moola.core.atomic``),
``best.pt`` before ``last.pt``, so a kill at any moment leaves the previous complete file,
never a torn one. ``load_checkpoint(dir / "last.pt", config_hash=...)`` reads one back with
``torch.load(weights_only=True)`` (no code runs while loading) and returns the snapshot for
``Trainer.fit(..., resume=...)``; it refuses, naming the file, anything else: a missing,
truncated or foreign file, a ``best.pt``, a snapshot written under another config hash. The
trainer refuses a snapshot of other data (its fingerprint differs) or other loop settings.

The config hash is the caller's identity of everything that decides the weights (model,
parameters, data, split, fold); this module only stores and compares it.

``FoldStore(directory, config_hash=...)`` keeps each finished fold of ``out_of_fold``: its
test indices, predicted values, and summary (sizes, timings, metrics) in ``fold-K.npz``,
written atomically. Run again with the same store, ``out_of_fold`` loads the finished folds
instead of fitting them again, and its result equals an uninterrupted run's bit for bit.
A fold written by another run (other split, labels, classes, config hash) is refused,
naming the file. The fold being fitted when the run was killed resumes too: each fold's
estimator, when it can resume (it has ``resume_from``, as ``NeuralEstimator`` does), writes
its epoch checkpoints under ``fold-K-epochs/`` and continues from ``last.pt``
(``resume_or_checkpoint``); they are deleted once the fold is stored.
"""

from __future__ import annotations

import io
import json
import shutil
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moola.core.atomic import atomic_write_bytes
from moola.core.errors import CheckpointError, ConfigError
from moola.training.callbacks import Callback, TrainingState

__all__ = [
    "FORMAT",
    "EpochCheckpoints",
    "FoldRecord",
    "FoldStore",
    "load_best",
    "load_checkpoint",
    "resume_or_checkpoint",
]

FORMAT = "moola-training-checkpoint"
FORMAT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"
_FOLD_FORMAT = "moola-oof-fold"
_FOLD_FORMAT_VERSION = 1


class EpochCheckpoints(Callback):
    """After every epoch write ``last.pt`` (the full loop state) and, when the validation
    loss improved, ``best.pt`` (those weights) into ``directory``; see the module docstring.

    Needs the ``LoopState`` that ``Trainer.run`` passes to its callbacks. ``saved_epochs``
    lists the epochs written by this fit (``last.pt``), ``best_epochs`` those that wrote
    ``best.pt``.
    """

    def __init__(self, directory: str | Path, *, config_hash: str | None = None) -> None:
        self.directory = Path(directory)
        self.config_hash = config_hash
        self.saved_epochs: list[int] = []
        self.best_epochs: list[int] = []

    @property
    def last_path(self) -> Path:
        """The full loop state of the latest epoch."""
        return self.directory / LAST

    @property
    def best_path(self) -> Path:
        """The weights of the epoch with the lowest validation loss so far."""
        return self.directory / BEST

    def on_train_start(self, state: TrainingState) -> None:
        self.saved_epochs, self.best_epochs = [], []

    def on_epoch_end(self, state: TrainingState) -> bool:
        snapshot = getattr(state, "snapshot", None)
        if snapshot is None:
            raise ConfigError("EpochCheckpoints needs Trainer.run's LoopState (snapshot()).")
        best = getattr(state, "best_weights", None)
        if best is not None and state.best_epoch == state.epoch:  # this epoch improved
            self._write(
                self.best_path,
                {
                    "kind": "best",
                    "epoch": state.epoch,
                    "val_loss": state.best_val_loss,
                    "state_dict": {k: v.detach().cpu() for k, v in best.items()},
                },
            )
            self.best_epochs.append(state.epoch)
        self._write(self.last_path, {"kind": "last", "epoch": state.epoch, "loop": snapshot()})
        self.saved_epochs.append(state.epoch)
        return False

    def _write(self, path: Path, body: dict[str, Any]) -> None:
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config_hash": self.config_hash,
            **body,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(path, buffer.getvalue(), overwrite=True)


def load_checkpoint(path: str | Path, *, config_hash: str | None = None) -> dict[str, Any]:
    """The loop snapshot in ``last.pt`` at ``path``, for ``Trainer.fit(..., resume=...)``.

    With ``config_hash``, a checkpoint written under another one is refused. The snapshot
    carries ``"checkpoint": str(path)`` so the trainer's own refusals (other data, other
    epochs or seed) name the file too. ``CheckpointError`` naming ``path`` otherwise.
    """
    path = Path(path)
    payload = _read(path, config_hash)
    if payload.get("kind") != "last":
        raise CheckpointError(
            f"Checkpoint {path} holds the best epoch's weights only ({payload.get('kind')!r}), "
            f"not a training state to resume; resume from {LAST} in the same directory."
        )
    loop = payload.get("loop")
    if not isinstance(loop, dict) or loop.get("format") != "moola-loop-state":
        raise CheckpointError(
            f"Checkpoint {path} is incomplete: it holds no training-loop snapshot. Delete it "
            "and start the fit afresh."
        )
    return {**loop, "checkpoint": str(path)}


def resume_or_checkpoint(
    estimator: Any, directory: str | Path, *, config_hash: str | None = None
) -> Any:
    """Make ``estimator``'s next fit resumable through ``directory`` and return it.

    An estimator that can resume (it has ``resume_from(snapshot)``) gets an
    ``EpochCheckpoints(directory, config_hash=...)`` beside its callbacks, and, when
    ``directory`` holds the ``last.pt`` of an interrupted fit, resumes from it (refused,
    naming the file, if it was another config's or is unreadable). Other estimators are
    returned as they are: they are not trained epoch by epoch.
    """
    resume_from = getattr(estimator, "resume_from", None)
    if resume_from is None:
        return estimator
    directory = Path(directory)
    callbacks = tuple(getattr(estimator, "callbacks", ()))
    estimator.with_callbacks(*callbacks, EpochCheckpoints(directory, config_hash=config_hash))
    last = directory / LAST
    if last.exists():
        resume_from(load_checkpoint(last, config_hash=config_hash))
    return estimator


def load_best(path: str | Path, *, config_hash: str | None = None) -> dict[str, Any]:
    """``{"epoch", "val_loss", "state_dict"}`` of the ``best.pt`` at ``path``
    (``CheckpointError`` naming it, as ``load_checkpoint``)."""
    path = Path(path)
    payload = _read(path, config_hash)
    if payload.get("kind") != "best" or not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(
            f"Checkpoint {path} holds no best-epoch weights ({payload.get('kind')!r}); "
            f"read {BEST}, written beside {LAST} by EpochCheckpoints."
        )
    return {k: payload.get(k) for k in ("epoch", "val_loss", "state_dict")}


def _read(path: Path, config_hash: str | None) -> dict[str, Any]:
    """The checked payload of an ``EpochCheckpoints`` file."""
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint {path} does not exist (or is not a file); nothing to resume from."
        )
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: we refuse them
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or holding arbitrary objects
        raise CheckpointError(
            f"Checkpoint {path} cannot be read: it is corrupt, truncated or not written by "
            f"EpochCheckpoints ({type(exc).__name__}). Delete it and start the fit afresh."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a moola training checkpoint (no 'format': '{FORMAT}'); it was "
            "not written by EpochCheckpoints."
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"Checkpoint {path} has format version {version!r}; this moola reads up to "
            f"{FORMAT_VERSION}. Upgrade moola, or start the fit afresh."
        )
    saved = payload.get("config_hash")
    if config_hash is not None and saved != config_hash:
        raise CheckpointError(
            f"Checkpoint {path} was written by a fit of another config (config hash {saved}, "
            f"this one is {config_hash}); resume only the run that wrote it, or delete "
            f"{path.parent} to start afresh."
        )
    return payload


# --------------------------------------------------------------------- finished folds


@dataclass(frozen=True)
class FoldRecord:
    """One finished fold as stored: its test indices, predicted values (probabilities
    ``(n_test, K)`` or predictions) and summary (``FoldResult.to_dict()``)."""

    test: np.ndarray
    values: np.ndarray
    summary: dict[str, Any]


class FoldStore:
    """Each finished fold of an out-of-fold run, one ``fold-K.npz`` per fold in
    ``directory``; see the module docstring.

    ``out_of_fold(..., store=FoldStore(dir, config_hash=h))`` saves each fold as it
    finishes and, on a rerun, loads the finished ones. ``config_hash`` names what the
    folds' estimators were (model and parameters); ``out_of_fold`` adds the split, labels,
    classes and metric settings to each fold's identity.
    """

    def __init__(self, directory: str | Path, *, config_hash: str | None = None) -> None:
        self.directory = Path(directory)
        self.config_hash = config_hash

    def path(self, index: int) -> Path:
        """The file of fold ``index``."""
        return self.directory / f"fold-{index:03d}.npz"

    def checkpoint_dir(self, index: int) -> Path:
        """Where fold ``index``'s fit keeps its epoch checkpoints while it runs."""
        return self.directory / f"fold-{index:03d}-epochs"

    def discard_checkpoints(self, index: int) -> None:
        """Delete fold ``index``'s epoch checkpoints (once the fold itself is stored)."""
        shutil.rmtree(self.checkpoint_dir(index), ignore_errors=True)

    def save(
        self,
        index: int,
        *,
        identity: dict[str, Any],
        test: np.ndarray,
        values: np.ndarray,
        summary: dict[str, Any],
    ) -> None:
        """Write fold ``index`` atomically (replacing an earlier copy)."""
        meta = {
            "format": _FOLD_FORMAT,
            "format_version": _FOLD_FORMAT_VERSION,
            "index": int(index),
            "identity": {**identity, "config_hash": self.config_hash},
            "summary": summary,
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            test=np.asarray(test, dtype=np.int64),
            values=np.asarray(values),
            meta=np.array(json.dumps(meta, allow_nan=True)),
        )
        atomic_write_bytes(self.path(index), buffer.getvalue(), overwrite=True)

    def load(self, index: int, *, identity: dict[str, Any]) -> FoldRecord | None:
        """Fold ``index`` if it was stored (``None`` if not); ``CheckpointError`` naming the
        file when it is unreadable or was written by another run."""
        path = self.path(index)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                test, values = stored["test"], stored["values"]
                meta = json.loads(str(stored["meta"][()]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise CheckpointError(
                f"Fold file {path} cannot be read: it is corrupt or truncated "
                f"({type(exc).__name__}). Delete it; the fold is then fitted again."
            ) from exc
        if not isinstance(meta, dict) or meta.get("format") != _FOLD_FORMAT:
            raise CheckpointError(f"{path} is not a moola out-of-fold fold file.")
        if meta.get("format_version") != _FOLD_FORMAT_VERSION or meta.get("index") != index:
            raise CheckpointError(
                f"Fold file {path} holds fold {meta.get('index')!r} in format version "
                f"{meta.get('format_version')!r}, not fold {index} in version "
                f"{_FOLD_FORMAT_VERSION}; delete it to fit the fold again."
            )
        expected = {**identity, "config_hash": self.config_hash}
        saved = meta.get("identity") or {}
        differ = sorted(k for k in set(expected) | set(saved) if saved.get(k) != expected.get(k))
        if differ:
            details = "; ".join(
                f"{k}: stored {saved.get(k)!r}, now {expected.get(k)!r}" for k in differ
            )
            raise CheckpointError(
                f"Fold file {path} was written by another out-of-fold run ({details}). Use a "
                f"fresh store directory, or delete {self.directory} to start over."
            )
        return FoldRecord(test=test, values=values, summary=meta["summary"])
