"""The training loop: one skeleton for every model moola trains.

``Trainer`` owns everything a module must not: the device, mixed precision, seeding,
batching, the optimiser and learning-rate schedule, gradient clipping, validation, early
stopping and restoring the best weights. Models are pure ``nn.Module``s; what one step
computes is a *step function* ``step(module, batch) -> loss``. ``fit`` trains a classifier
or regressor with the configured loss; pretraining objectives call ``run`` with their own
step, and users extend either through callbacks (``moola.training.callbacks``).

Reproducibility: a fit seeds torch (inside ``torch.random.fork_rng``, so the caller's
CPU random state is untouched) and shuffles with its own seeded ``torch.Generator``; two fits
with one seed and one initial module give identical weights on the CPU.

Data too large to hold as arrays (a pretraining corpus) comes as a ``BatchSource``: the loop
still draws the shuffled order, and the source builds each batch on demand. Long runs resume:
at the end of an epoch a callback may save ``state.snapshot()`` (weights, optimiser, RNG
states, step, losses; ``moola.training.checkpoints.EpochCheckpoints`` does, every epoch), and
``run(..., resume=snapshot)`` (or ``fit(..., resume=snapshot)``) continues from it, ending
(on the CPU) with the weights and loss histories an uninterrupted run would have. Early
stopping replays the restored losses, so it stops at the epoch it would have stopped at; a
snapshot of a run that had already stopped (or run every epoch) trains no further and ends
with that run's weights. A snapshot records a cheap fingerprint of the training and
validation data (sizes, dtypes and the bytes of the first, middle and last sample), so a
resume over other data is refused. A parameter group's ``lr_scale`` (1 by default)
multiplies the scheduled learning rate for that group.

Learning rate per optimiser step ``s`` of ``S`` (``W`` warm-up steps = ``warmup_epochs``
x steps per epoch): ``lr * (s + 1) / W`` while ``s < W``, then with the cosine schedule
``lr * (1 + cos(pi * (s - W) / (S - W))) / 2`` (the constant schedule keeps ``lr``).

Several processes: when this process is one of a ``torch.distributed`` group (``moola ...
--nproc N`` starts one through torchrun; ``moola.training.distributed``), ``run`` trains
data-parallel: each process takes its share of every global batch of ``batch_size`` rows,
gradients are summed over the processes after each backward pass, losses before any
callback sees them, and the weights (equal at the start, sent from rank 0) stay equal on
every process after every step. The losses follow a single-process run with the same
global batch. Callbacks run on every process with the same state; the caller gives
writing callbacks to rank 0 only.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from moola.core.devices import select_device
from moola.core.errors import CheckpointError, ConfigError
from moola.models.training_params import TrainerConfig
from moola.training import distributed
from moola.training.callbacks import Callback, EarlyStopping, TrainingState
from moola.training.losses import balanced_class_weights, build_loss

__all__ = [
    "BatchSource",
    "LoopState",
    "StepFn",
    "SupervisedStep",
    "Trainer",
    "TrainerConfig",
    "TrainingSummary",
    "scheduled_lr",
]

#: One training or validation step: the mean loss of ``module`` on ``batch``.
StepFn = Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor]

_EVAL_BATCH = 1024  # samples per validation batch: no gradients, so larger is fine
_CLASSIFICATION_LOSSES = ("cross_entropy", "focal")
_SNAPSHOT_FORMAT = "moola-loop-state"


@runtime_checkable
class BatchSource(Protocol):
    """Training (or validation) samples built on demand instead of held as arrays.

    ``len(source)`` is the number of samples; ``source.batch(indices, key)`` returns the
    tuple of CPU tensors for the samples at ``indices`` (a 1-D int64 tensor). ``key`` is a
    number unique to the batch within its pass (the optimiser step it feeds, or the batch's
    position in a validation pass): a source that draws random numbers (augmentation,
    masks) should derive them from ``key``, so that batches do not depend on worker
    processes and are the same when a run resumes.
    """

    def __len__(self) -> int: ...

    def batch(self, indices: torch.Tensor, key: int) -> tuple[torch.Tensor, ...]: ...


def trainer_config(**values: Any) -> TrainerConfig:
    """``TrainerConfig(**values)``, with invalid values reported as one ``ConfigError``."""
    try:
        return TrainerConfig(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(root)"
            if error["type"] == "extra_forbidden":
                valid = ", ".join(TrainerConfig.model_fields)
                problems.append(f"unknown key '{key}' (valid keys: {valid})")
            else:
                problems.append(f"'{key}': {error['msg']}")
        raise ConfigError("Invalid trainer config: " + "; ".join(problems) + ".") from None


@dataclass(frozen=True)
class TrainingSummary:
    """What a fit did; goes into run manifests and saved models (``to_dict``)."""

    epochs_run: int
    early_stop_epoch: int | None
    best_epoch: int | None
    best_val_loss: float | None
    train_loss_history: tuple[float, ...]
    val_loss_history: tuple[float, ...]
    wall_time_s: float
    device: str
    samples_per_s: float
    n_train: int
    n_val: int

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (lists, floats, ints, strings, None)."""
        out = asdict(self)
        out["train_loss_history"] = list(self.train_loss_history)
        out["val_loss_history"] = list(self.val_loss_history)
        return out


def scheduled_lr(
    step: int, *, base_lr: float, warmup_steps: int, total_steps: int, schedule: str = "cosine"
) -> float:
    """Learning rate of optimiser step ``step`` (0-based) of ``total_steps``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class LoopState(TrainingState):
    """``TrainingState`` plus the loop's optimiser, shuffling generator and best weights;
    ``snapshot()`` captures all a run needs to resume after this epoch."""

    optimizer: torch.optim.Optimizer | None = None
    generator: torch.Generator | None = None
    best_weights: dict[str, torch.Tensor] | None = None
    n_train: int = 0
    seed: int = 0
    data_fingerprint: str | None = None
    grad_scaler: Any = None

    def snapshot(self) -> dict[str, Any]:
        """Plain values and CPU tensors (``torch.load(weights_only=True)`` safe).

        On CUDA it holds the device's random state too (dropout draws from it there), and
        the grad scaler's state under fp16; equal weights after a resume on a GPU also need
        deterministic kernels, which the loop does not switch on."""
        if self.optimizer is None or self.generator is None:
            raise ConfigError("snapshot() is only available while Trainer.run is running.")
        return {
            "format": _SNAPSHOT_FORMAT,
            "epoch": self.epoch,
            "step": self.step,
            "lr": self.lr,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "n_train": self.n_train,
            "seed": self.seed,
            "data_fingerprint": self.data_fingerprint,
            "train_losses": list(self.train_losses),
            "val_losses": list(self.val_losses),
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "elapsed_s": self.elapsed_s,
            "module": {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),  # not the live tensors
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": _cuda_rng_state(self.module),
            "grad_scaler": None if self.grad_scaler is None else self.grad_scaler.state_dict(),
            "best_weights": None
            if self.best_weights is None
            else {k: v.detach().cpu().clone() for k, v in self.best_weights.items()},
        }


class SupervisedStep(nn.Module):
    """``loss(module(x), y)`` for a batch ``(x, y)``; a dict output uses its ``head``."""

    def __init__(self, loss: nn.Module, head: str = "direction") -> None:
        super().__init__()
        self.loss = loss
        self.head = head

    def forward(self, module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch
        output = module(x)
        if isinstance(output, dict):
            output = output[self.head]
        return self.loss(output, y)


class Trainer:
    """Trains ``nn.Module``s with one loop; see the module docstring.

    ``Trainer(config)`` or ``Trainer(**config_values)`` (``TrainerConfig`` fields).
    Subclasses may override ``build_optimizer``.
    """

    def __init__(self, config: TrainerConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = trainer_config(**overrides)
        elif overrides:
            config = trainer_config(**{**config.model_dump(), **overrides})
        self.config = config

    # -- extension points ---------------------------------------------------------------

    def build_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        """The optimiser over ``module``'s trainable parameters."""
        cfg = self.config
        params = [p for p in module.parameters() if p.requires_grad]
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def build_step(self, y: np.ndarray, n_classes: int | None = None) -> SupervisedStep:
        """The supervised step for the configured loss; class weights come from ``y``."""
        cfg = self.config
        weights = None
        if cfg.class_weights == "balanced":
            if cfg.loss == "mse":
                raise ConfigError("class_weights='balanced' does not apply to loss='mse'.")
            if cfg.loss == "bce":  # binary: weights of the (rounded) 0/1 targets
                weights = balanced_class_weights(np.rint(y), 2)
            else:
                k = n_classes if n_classes is not None else int(np.max(y)) + 1
                weights = balanced_class_weights(y, k)
        return SupervisedStep(
            build_loss(cfg.loss, class_weights=weights, focal_gamma=cfg.focal_gamma)
        )

    # -- entry points -------------------------------------------------------------------

    def fit(
        self,
        module: nn.Module,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        callbacks: Sequence[Callback] = (),
        *,
        n_classes: int | None = None,
        resume: dict[str, Any] | None = None,
    ) -> TrainingSummary:
        """Train ``module`` on ``(X, y)`` with the configured loss; see ``run``.

        ``y`` holds class indices for ``cross_entropy``/``focal`` and floats (targets in
        [0, 1] for ``bce``) otherwise. ``n_classes`` sizes balanced class weights
        (default: ``max(y) + 1``). ``resume`` is a ``LoopState.snapshot()`` of an
        interrupted fit of this config on these arrays (``checkpoints.load_checkpoint``
        reads one from disk); ``module`` must be built as that fit's was.
        """
        if (X_val is None) != (y_val is None):
            raise ConfigError("Pass both X_val and y_val, or neither.")
        train = _supervised_arrays(X, y, self.config.loss, "X", "y")
        val = None
        if X_val is not None and y_val is not None:
            val = _supervised_arrays(X_val, y_val, self.config.loss, "X_val", "y_val")
        step = self.build_step(train[1], n_classes)
        return self.run(module, train, val, step=step, callbacks=callbacks, resume=resume)

    def run(
        self,
        module: nn.Module,
        train: Sequence[np.ndarray | torch.Tensor] | BatchSource,
        val: Sequence[np.ndarray | torch.Tensor] | BatchSource | None = None,
        *,
        step: StepFn,
        callbacks: Sequence[Callback] = (),
        resume: dict[str, Any] | None = None,
    ) -> TrainingSummary:
        """Train ``module`` in place with ``step`` over aligned arrays ``train``.

        Each batch is the tuple of ``train`` arrays at the same shuffled rows (or, for a
        ``BatchSource``, what it builds for those rows). With ``val`` the loop also computes
        the validation loss each epoch, stops early after ``patience`` epochs without
        improvement, and restores the weights of the epoch with the lowest validation loss.
        ``resume`` is a ``LoopState.snapshot()`` of an earlier run of this config over the
        same data: training continues after its epoch (a ``CheckpointError`` refuses one of
        other data or settings). Returns the ``TrainingSummary``.
        """
        cfg = self.config
        started = time.perf_counter()
        device = select_device(cfg.device)
        train_t = train if isinstance(train, BatchSource) else _as_tensors(train, "train")
        val_t: Any = None
        if val is not None:
            val_t = val if isinstance(val, BatchSource) else _as_tensors(val, "val")
        n = _n_samples(train_t)
        processes = distributed.current()  # None: one process
        world = 1 if processes is None else processes.world_size
        if processes is not None and n < 2 * world:
            raise ConfigError(
                f"{n} training samples cannot be shared by {world} processes; use fewer "
                "processes or more data."
            )
        # Each batch must give every process at least 2 rows (batch statistics).
        order_chunks = _chunk_sizes(n, cfg.batch_size, 2 * world)
        steps_per_epoch = len(order_chunks)
        n_used = sum(order_chunks)
        total_steps = steps_per_epoch * cfg.epochs
        warmup_steps = cfg.warmup_epochs * steps_per_epoch
        callbacks = list(callbacks)
        early: EarlyStopping | None = None
        if val_t is not None and cfg.patience is not None:
            early = EarlyStopping(cfg.patience, cfg.min_delta)
            callbacks.append(early)
        # Only these get on_step: reading each step's loss off the device is a sync. A
        # callback need not subclass Callback (duck typing): one without the hook is skipped.
        step_callbacks = [
            c
            for c in callbacks
            if getattr(type(c), "on_step", Callback.on_step) is not Callback.on_step
        ]

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            generator = torch.Generator().manual_seed(cfg.seed)
            module.to(device)
            if isinstance(step, nn.Module):
                step.to(device)
            optimizer = self.build_optimizer(module)
            autocast, scaler = _mixed_precision(device, cfg.mixed_precision)
            state = LoopState(
                module=module,
                epochs=cfg.epochs,
                steps_per_epoch=steps_per_epoch,
                optimizer=optimizer,
                generator=generator,
                n_train=n,
                seed=cfg.seed,
                data_fingerprint=_data_fingerprint(train_t, val_t),
                grad_scaler=scaler,
            )
            if resume is not None:
                _restore(state, resume, device)
            distributed.broadcast_module(module)  # equal weights on every process
            first_epoch = state.epoch + 1
            resumed_s = state.elapsed_s
            early_stop_epoch = None
            for callback in callbacks:
                callback.on_train_start(state)
            last_epoch = cfg.epochs
            if early is not None and early.stopped_epoch is not None:
                # Resumed from a run that early stopping had already ended: no more epochs.
                early_stop_epoch, last_epoch = early.stopped_epoch, state.epoch
            try:
                for epoch in range(first_epoch, last_epoch + 1):
                    module.train()
                    loss_sum = torch.zeros((), device=device)
                    seen, stop_now = 0, False
                    order = torch.randperm(n, generator=generator)
                    batches = self._batches(
                        train_t, order, order_chunks, device, state.step, shard=processes
                    )
                    for batch, global_rows in zip(batches, order_chunks, strict=True):
                        lr = scheduled_lr(
                            state.step,
                            base_lr=cfg.lr,
                            warmup_steps=warmup_steps,
                            total_steps=total_steps,
                            schedule=cfg.lr_schedule,
                        )
                        for group in optimizer.param_groups:
                            group["lr"] = lr * group.get("lr_scale", 1.0)
                        with autocast():
                            loss = step(module, batch)
                        optimizer.zero_grad(set_to_none=True)
                        rows = batch[0].shape[0]
                        if scaler is not None:  # fp16 on CUDA: scale to keep small grads alive
                            scaler.scale(loss).backward()
                            distributed.average_gradients(module, rows, global_rows)
                            scaler.unscale_(optimizer)
                            self._clip(module)
                            scaler.step(optimizer)
                            scaler.update()
                        else:
                            loss.backward()
                            distributed.average_gradients(module, rows, global_rows)
                            self._clip(module)
                            optimizer.step()
                        loss_sum += loss.detach().float() * rows
                        seen += rows
                        state.step += 1
                        state.lr = lr
                        if step_callbacks:
                            value = float(loss.detach().float().item())
                            if processes is not None:  # the global batch's loss
                                value = distributed.sum_over_ranks([value * rows])[0] / global_rows
                            stops = [c.on_step(state, value) for c in step_callbacks]
                            if distributed.any_rank(any(stops)):
                                stop_now = True
                                break

                    state.epoch = epoch
                    total, seen = distributed.sum_over_ranks([loss_sum, seen])  # one sync
                    state.train_loss = total / seen
                    if not math.isfinite(state.train_loss):
                        raise ConfigError(
                            f"Training loss became {state.train_loss} in epoch {epoch}: the run "
                            f"diverged. Lower lr (now {cfg.lr:g}), keep grad_clip set, or check "
                            "the inputs for extreme values."
                        )
                    state.train_losses.append(state.train_loss)
                    if val_t is not None:
                        state.val_loss = self.evaluate(module, val_t, step, device, autocast)
                        state.val_losses.append(state.val_loss)
                        if state.best_val_loss is None or state.val_loss < state.best_val_loss:
                            state.best_val_loss, state.best_epoch = state.val_loss, epoch
                            state.best_weights = {
                                k: v.detach().clone() for k, v in module.state_dict().items()
                            }
                    state.elapsed_s = resumed_s + time.perf_counter() - started
                    stops = [callback.on_epoch_end(state) for callback in callbacks]
                    if distributed.any_rank(any(stops)) or stop_now:
                        early_stop_epoch = epoch
                        break

                if state.best_weights is not None:
                    module.load_state_dict(state.best_weights)
            finally:  # also when the loop raises: progress bars and the like must close
                module.eval()
                for callback in callbacks:
                    callback.on_train_end(state)

        wall = time.perf_counter() - started
        epochs_now = state.epoch - first_epoch + 1  # epochs this call ran (after a resume)
        return TrainingSummary(
            epochs_run=state.epoch,
            early_stop_epoch=early_stop_epoch,
            best_epoch=state.best_epoch,
            best_val_loss=state.best_val_loss,
            train_loss_history=tuple(state.train_losses),
            val_loss_history=tuple(state.val_losses),
            wall_time_s=wall,
            device=str(device),
            samples_per_s=n_used * epochs_now / wall if wall > 0 else math.inf,
            n_train=n,
            n_val=0 if val_t is None else _n_samples(val_t),
        )

    @torch.no_grad()
    def evaluate(
        self,
        module: nn.Module,
        arrays: Sequence[torch.Tensor] | BatchSource,
        step: StepFn,
        device: torch.device,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> float:
        """Mean of ``step``'s loss over ``arrays`` in eval mode (batches weighted by size);
        in a process group each process takes its share of the rows and the sums are
        added up, so every process gets the mean over all of them."""
        module.eval()
        n = _n_samples(arrays)
        total = torch.zeros((), device=device)
        order = distributed.shard(torch.arange(n), distributed.current())
        if len(order):
            sizes = _chunk_sizes(len(order), _EVAL_BATCH, 0)
            for batch in self._batches(arrays, order, sizes, device):
                with autocast():
                    total += step(module, batch).detach().float() * batch[0].shape[0]
        return distributed.sum_over_ranks([total])[0] / n

    # -- helpers ------------------------------------------------------------------------

    def _clip(self, module: nn.Module) -> None:
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(module.parameters(), self.config.grad_clip)

    def _batches(
        self,
        tensors: Sequence[torch.Tensor] | BatchSource,
        order: torch.Tensor,
        sizes: list[int],
        device: torch.device,
        first_key: int = 0,
        shard: distributed.DistContext | None = None,
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches of ``tensors`` at rows ``order`` split by ``sizes``, on ``device``; a
        ``BatchSource``'s batch ``i`` is built with key ``first_key + i``. With ``shard``
        (a process group) each batch is this process's share of those rows."""
        on_cuda = device.type == "cuda"
        chunks = [distributed.shard(c, shard) for c in order[: sum(sizes)].split(sizes)]
        if isinstance(tensors, BatchSource):
            yield from self._source_batches(tensors, chunks, device, first_key)
            return
        if self.config.num_workers > 0:
            from torch.utils.data import DataLoader, TensorDataset

            loader = DataLoader(
                TensorDataset(*tensors),
                batch_sampler=[chunk.tolist() for chunk in chunks],
                num_workers=self.config.num_workers,
                pin_memory=on_cuda,
                # Workers' base seed from its own generator, not torch's global one, which
                # dropout draws from: results then do not depend on num_workers.
                generator=torch.Generator().manual_seed(0),
            )
            for batch in loader:
                yield tuple(t.to(device, non_blocking=on_cuda) for t in batch)
            return
        for index in chunks:
            if on_cuda:  # pinned host memory lets the copy overlap with compute
                yield tuple(t[index].pin_memory().to(device, non_blocking=True) for t in tensors)
            elif device.type == "cpu":
                yield tuple(t[index] for t in tensors)
            else:
                yield tuple(t[index].to(device) for t in tensors)

    def _source_batches(
        self,
        source: BatchSource,
        chunks: Sequence[torch.Tensor],
        device: torch.device,
        first_key: int,
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """``source``'s batches for ``chunks``, built in worker processes when configured."""
        on_cuda = device.type == "cuda"
        if self.config.num_workers > 0:
            from torch.utils.data import DataLoader

            loader = DataLoader(
                _KeyedBatches(source, list(chunks), first_key),
                batch_size=None,  # each item already is a batch
                num_workers=self.config.num_workers,
                pin_memory=on_cuda,
                generator=torch.Generator().manual_seed(0),
            )
            for batch in loader:
                yield tuple(t.to(device, non_blocking=on_cuda) for t in batch)
            return
        for i, index in enumerate(chunks):
            batch = source.batch(index, first_key + i)
            if device.type == "cpu":
                yield tuple(batch)
            elif on_cuda:
                yield tuple(t.pin_memory().to(device, non_blocking=True) for t in batch)
            else:
                yield tuple(t.to(device) for t in batch)


class _KeyedBatches:
    """Map-style dataset whose item ``i`` is ``source.batch(chunks[i], first_key + i)``."""

    def __init__(self, source: BatchSource, chunks: list[torch.Tensor], first_key: int) -> None:
        self.source, self.chunks, self.first_key = source, chunks, first_key

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return self.source.batch(self.chunks[i], self.first_key + i)


def _n_samples(data: Sequence[torch.Tensor] | BatchSource) -> int:
    return len(data) if isinstance(data, BatchSource) else int(data[0].shape[0])


def _data_fingerprint(train: Sequence[torch.Tensor] | BatchSource, val: Any) -> str:
    """A cheap identity of the training and validation data: each array's shape, dtype and
    the bytes of its first, middle and last sample (a ``BatchSource``: its type and length).

    Not a content hash (that would read every sample each fit): it catches a resume over
    other data (another fold, another dataset version or scaling) in microseconds."""
    digest = hashlib.sha256()
    for part in (train, val):
        if part is None:
            digest.update(b"none;")
        elif isinstance(part, BatchSource):
            name = f"{type(part).__module__}.{type(part).__qualname__}"
            digest.update(f"source {name} {len(part)};".encode())
        else:
            for tensor in part:
                n = int(tensor.shape[0])
                digest.update(f"{tuple(tensor.shape)} {tensor.dtype};".encode())
                for row in sorted({0, n // 2, n - 1}) if n else ():
                    sample = tensor[row].contiguous().reshape(-1).view(torch.uint8)
                    digest.update(sample.numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def _cuda_rng_state(module: nn.Module) -> torch.Tensor | None:
    """The random state of the CUDA device ``module`` trains on (None off CUDA)."""
    parameter = next(module.parameters(), None)
    if parameter is None or parameter.device.type != "cuda":
        return None
    return torch.cuda.get_rng_state(parameter.device)


def _restore(state: LoopState, snapshot: dict[str, Any], device: torch.device) -> None:
    """Put the loop back where ``snapshot`` was taken; refuses one of another run's shape.

    A snapshot read by ``checkpoints.load_checkpoint`` carries its file's path under
    ``"checkpoint"``; the errors name it."""
    if not isinstance(snapshot, dict) or snapshot.get("format") != _SNAPSHOT_FORMAT:
        raise CheckpointError(
            "The resume state is not a Trainer loop snapshot (LoopState.snapshot()); pass "
            "the 'loop' entry of a checkpoint written during training."
        )
    where = snapshot.get("checkpoint")
    source = "the checkpoint" if where is None else f"checkpoint {where}"
    for key in ("n_train", "steps_per_epoch", "epochs", "seed"):
        saved, now = snapshot.get(key), getattr(state, key)
        if saved != now:
            raise CheckpointError(
                f"Cannot resume from {source}: it was taken with {key}={saved} but this run "
                f"has {key}={now}. Resume with the same data and trainer settings."
            )
    saved_data = snapshot.get("data_fingerprint")
    if saved_data is not None and saved_data != state.data_fingerprint:
        raise CheckpointError(
            f"Cannot resume from {source}: it was taken on other training or validation "
            f"data (fingerprint {saved_data}, this run's is {state.data_fingerprint}). "
            "Resume with the same data, or start the fit afresh."
        )
    try:
        state.module.load_state_dict(snapshot["module"])
        if state.optimizer is not None:
            state.optimizer.load_state_dict(snapshot["optimizer"])
        if state.generator is not None:
            state.generator.set_state(snapshot["generator"])
        torch.set_rng_state(snapshot["torch_rng"])
        cuda_rng = snapshot.get("cuda_rng")
        if cuda_rng is not None and device.type == "cuda":  # dropout draws from it there
            torch.cuda.set_rng_state(cuda_rng, device)
        scaler_state = snapshot.get("grad_scaler")
        if state.grad_scaler is not None and scaler_state is not None:
            state.grad_scaler.load_state_dict(scaler_state)
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"Cannot resume from {source}: its state does not fit this module or "
            f"optimiser ({type(exc).__name__}: {exc})."
        ) from exc
    state.epoch, state.step = int(snapshot["epoch"]), int(snapshot["step"])
    state.lr = float(snapshot.get("lr", 0.0))
    state.train_losses = [float(v) for v in snapshot["train_losses"]]
    state.val_losses = [float(v) for v in snapshot["val_losses"]]
    if state.train_losses:
        state.train_loss = state.train_losses[-1]
    if state.val_losses:
        state.val_loss = state.val_losses[-1]
    state.best_val_loss, state.best_epoch = snapshot["best_val_loss"], snapshot["best_epoch"]
    best = snapshot.get("best_weights")
    state.best_weights = None if best is None else {k: v.to(device) for k, v in best.items()}
    state.elapsed_s = float(snapshot.get("elapsed_s", 0.0))


def _chunk_sizes(n: int, batch_size: int, min_last: int = 2) -> list[int]:
    """Batch sizes covering ``n`` rows; a trailing batch smaller than ``min_last`` is
    dropped when other batches exist (a 1-sample batch breaks batch statistics)."""
    if n < 1:
        raise ConfigError("The training (or validation) arrays are empty; pass samples.")
    sizes = [batch_size] * (n // batch_size)
    if n % batch_size:
        sizes.append(n % batch_size)
    if len(sizes) > 1 and sizes[-1] < min_last:
        sizes.pop()
    return sizes


def _as_tensors(arrays: Sequence[np.ndarray | torch.Tensor], what: str) -> list[torch.Tensor]:
    """CPU tensors (floats as float32) of one length."""
    tensors = []
    for array in arrays:
        if isinstance(array, torch.Tensor):
            tensor = array.detach().cpu()
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(array))
        if tensor.is_floating_point():
            tensor = tensor.float()
        tensors.append(tensor)
    lengths = {t.shape[0] for t in tensors}
    if len(lengths) != 1:
        raise ConfigError(f"The {what} arrays must have one length; got {sorted(lengths)}.")
    return tensors


def _supervised_arrays(
    X: np.ndarray, y: np.ndarray, loss: str, x_name: str, y_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as finite float32 and ``y`` as int64 class indices or float32 targets."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).reshape(-1)
    if X.shape[0] != y.shape[0]:
        raise ConfigError(
            f"{x_name} has {X.shape[0]} samples but {y_name} has {y.shape[0]}; they must match."
        )
    if not np.isfinite(X).all():
        bad = int(np.argwhere(~np.isfinite(X).reshape(X.shape[0], -1).all(axis=1))[0, 0])
        raise ConfigError(
            f"{x_name} holds NaN or infinite values (first at sample {bad}); "
            "clean or drop those samples before training."
        )
    if loss in _CLASSIFICATION_LOSSES:
        if not np.issubdtype(y.dtype, np.integer) and not np.all(np.mod(y, 1) == 0):
            raise ConfigError(
                f"{y_name} must hold integer class indices for loss={loss!r}; "
                "use loss='mse' for real-valued targets."
            )
        y = y.astype(np.int64)
        if y.size and y.min() < 0:
            raise ConfigError(f"{y_name} holds negative class indices; classes are 0..K-1.")
        return X, y
    y = y.astype(np.float32)
    if not np.isfinite(y).all():
        raise ConfigError(f"{y_name} holds NaN or infinite targets; drop those samples.")
    return X, y


def _mixed_precision(
    device: torch.device, enabled: bool
) -> tuple[Callable[[], contextlib.AbstractContextManager[Any]], Any]:
    """An autocast context factory and a grad scaler (fp16 only); no-ops off CUDA."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler
