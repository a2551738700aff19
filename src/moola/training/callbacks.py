"""Callbacks: how a user extends the training loop without copying it.

As in Stable-Baselines3, the ``Trainer`` owns the one loop and calls each callback at
four points: ``on_train_start(state)``, ``on_step(state, loss) -> bool`` after each
optimiser step, ``on_epoch_end(state) -> bool`` and ``on_train_end(state)``. ``True`` from
either hook asks the loop to stop (one convention for both; SB3's ``on_step`` uses
``False``). ``state`` is the loop's
live ``TrainingState``: callbacks read it (losses, epoch, the module) and must not
change its fields.

``EpochProgress`` turns the epochs of several fits (the folds of an out-of-fold run and
its final fit) into ``ProgressUpdate``s of one known total, so a display can draw a bar
with an ETA from the first epoch on; it prints nothing itself.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from moola.core.atomic import atomic_write_bytes
from moola.core.errors import ConfigError

__all__ = [
    "Callback",
    "CheckpointCallback",
    "EarlyStopping",
    "EpochProgress",
    "ProgressCallback",
    "ProgressUpdate",
    "TrainingState",
]


@dataclass
class TrainingState:
    """What the loop knows at the end of an epoch; epochs count from 1."""

    module: nn.Module
    epochs: int
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    lr: float = 0.0
    train_loss: float = math.nan
    val_loss: float | None = None
    best_val_loss: float | None = None
    best_epoch: int | None = None
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def monitored_loss(self) -> float:
        """The validation loss when there is validation data, else the training loss."""
        return self.train_loss if self.val_loss is None else self.val_loss


class Callback:
    """Base class; override any of the four hooks (the defaults do nothing)."""

    def on_train_start(self, state: TrainingState) -> None:
        """Called once before the first epoch."""

    def on_step(self, state: TrainingState, loss: float) -> bool:
        """Called after each optimiser step with that batch's loss; return ``True`` to stop.

        A stop ends the epoch early: it is validated and passed to ``on_epoch_end`` as
        usual, then the loop ends. The trainer reads the loss off the device only when some
        callback overrides this hook, so the default costs nothing.
        """
        return False

    def on_epoch_end(self, state: TrainingState) -> bool:
        """Called after each epoch's training and validation; return ``True`` to stop."""
        return False

    def on_train_end(self, state: TrainingState) -> None:
        """Called once after the last epoch (also when the loop was stopped or raised)."""


class EarlyStopping(Callback):
    """Stop when the monitored loss has not improved by more than ``min_delta`` for
    ``patience`` epochs in a row.

    An epoch improves when its loss is below ``best - min_delta``. It monitors the
    validation loss, or the training loss when the run has no validation data.
    ``stopped_epoch`` is the epoch after which it stopped the loop (``None``: it did not).

    A resumed run starts with the losses of the epochs already run in ``state``;
    ``on_train_start`` replays them, so the count goes on where the interrupted run left it
    (and ``stopped_epoch`` is set if that run had already been stopped).
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ConfigError(f"EarlyStopping patience must be at least 1 (got {patience}).")
        if min_delta < 0:
            raise ConfigError(f"EarlyStopping min_delta must be >= 0 (got {min_delta}).")
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_train_start(self, state: TrainingState) -> None:
        self.best, self.wait, self.stopped_epoch = math.inf, 0, None
        history = state.val_losses or state.train_losses  # non-empty only when resumed
        for epoch, loss in enumerate(history, start=1):
            if self._update(loss, epoch):
                break

    def on_epoch_end(self, state: TrainingState) -> bool:
        return self._update(state.monitored_loss, state.epoch)

    def _update(self, loss: float, epoch: int) -> bool:
        """Count one epoch's monitored loss; ``True`` when patience has run out."""
        if loss < self.best - self.min_delta:
            self.best, self.wait = loss, 0
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False


class ProgressCallback(Callback):
    """A rich progress bar over epochs showing the latest train and validation loss.

    Silent when ``verbose`` is False or the output is not a terminal (logs, CI, pipes).
    """

    def __init__(self, verbose: bool = True, description: str = "training") -> None:
        self.verbose = verbose
        self.description = description
        self._progress: Any = None
        self._task: Any = None

    def on_train_start(self, state: TrainingState) -> None:
        if not self.verbose:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("train {task.fields[train]}  val {task.fields[val]}"),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(
            self.description, total=state.epochs, train="-", val="-"
        )
        self._progress.start()

    def on_epoch_end(self, state: TrainingState) -> bool:
        if self._progress is not None:
            val = "-" if state.val_loss is None else f"{state.val_loss:.4f}"
            self._progress.update(
                self._task, completed=state.epoch, train=f"{state.train_loss:.4f}", val=val
            )
        return False

    def on_train_end(self, state: TrainingState) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@dataclass(frozen=True)
class ProgressUpdate:
    """Work done so far out of a known total, and what was just finished.

    ``done`` and ``total`` count units of work (epochs, folds); ``detail`` says what the
    last unit was (``"fit 2/6 epoch 3/30 train 0.612 val 0.655"``).
    """

    done: int
    total: int
    detail: str


class EpochProgress(Callback):
    """Report each epoch of ``fits`` fits of ``epochs`` epochs as a ``ProgressUpdate``.

    The total, ``fits x epochs``, is known before the first epoch. A fit that stops early
    counts its remaining epochs as done when it ends, so the total stays true and the
    progress never runs backwards. Pass one instance to every fit of the run.
    """

    def __init__(self, fits: int, epochs: int, report: Callable[[ProgressUpdate], None]) -> None:
        if fits < 1 or epochs < 1:
            raise ConfigError(f"EpochProgress needs fits >= 1 and epochs >= 1 ({fits}, {epochs}).")
        self.fits, self.epochs, self.report = fits, epochs, report
        self.fit = 0
        self.done = 0

    @property
    def total(self) -> int:
        """Epochs over all fits."""
        return self.fits * self.epochs

    def on_train_start(self, state: TrainingState) -> None:
        self.fit += 1
        self.done = min(self.done + state.epoch, self.total)  # a resumed fit's earlier epochs

    def on_epoch_end(self, state: TrainingState) -> bool:
        self.done = min(self.done + 1, self.total)
        val = "" if state.val_loss is None else f" val {state.val_loss:.4f}"
        detail = (
            f"fit {self.fit}/{self.fits} epoch {state.epoch}/{state.epochs} "
            f"train {state.train_loss:.4f}{val}"
        )
        self.report(ProgressUpdate(self.done, self.total, detail))
        return False

    def on_train_end(self, state: TrainingState) -> None:
        finished = min(self.fit * self.epochs, self.total)
        if finished > self.done:  # stopped early: its remaining epochs will not run
            self.done = finished
            self.report(
                ProgressUpdate(
                    self.done,
                    self.total,
                    f"fit {self.fit}/{self.fits} stopped early after epoch {state.epoch}",
                )
            )


class CheckpointCallback(Callback):
    """Write the module's weights to ``path`` when the monitored loss improves (or every
    epoch with ``best_only=False``), atomically, so a crash never leaves a torn file.

    The file is ``torch.save`` of ``{"format": "moola-checkpoint", "format_version": 1,
    "epoch", "train_loss", "val_loss", "state_dict"}``.
    """

    FORMAT = "moola-checkpoint"

    def __init__(self, path: str | Path, *, best_only: bool = True) -> None:
        self.path = Path(path)
        self.best_only = best_only
        self.best = math.inf
        self.saved_epochs: list[int] = []

    def on_train_start(self, state: TrainingState) -> None:
        self.best, self.saved_epochs = math.inf, []

    def on_epoch_end(self, state: TrainingState) -> bool:
        loss = state.monitored_loss
        if self.best_only and not loss < self.best:
            return False
        self.best = min(self.best, loss)
        self._write(state)
        return False

    def _write(self, state: TrainingState) -> None:
        import torch

        payload = {
            "format": self.FORMAT,
            "format_version": 1,
            "epoch": state.epoch,
            "train_loss": state.train_loss,
            "val_loss": state.val_loss,
            "state_dict": {k: v.detach().cpu() for k, v in state.module.state_dict().items()},
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(self.path, buffer.getvalue(), overwrite=True)
        self.saved_epochs.append(state.epoch)
