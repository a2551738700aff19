"""``moola pretrain masked-ae``: pretrain a BiLSTM masked autoencoder on an unlabeled corpus.

Orchestration (registry in, encoder artifact out) over the pieces in ``moola.pretrain``
(objective, masking, augmentation, streamed batches, artifacts) and the one training loop
in ``moola.training``. It lives here, above both, so that ``moola.pretrain`` stays below
``moola.training``: the neural estimator loads pretrained encoders through
``moola.pretrain.transfer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from moola.core.devices import select_device
from moola.core.errors import CheckpointError, ConfigError
from moola.core.settings import DeviceName
from moola.pretrain.augment import AugmentConfig
from moola.pretrain.masked_ae import (
    ARCH,
    OBJECTIVE,
    MaskedAEConfig,
    MaskedAEStep,
    MaskedAutoencoder,
)

if TYPE_CHECKING:
    from moola.data.registry import Registry
    from moola.pretrain.artifacts import EncoderArtifact


class MaskedAEPretrainConfig(BaseModel):
    """Everything that decides a masked-AE pretraining run's result; frozen, no unknown keys.

    ``device`` and ``num_workers`` decide only where and how fast it runs. Worker processes
    and pinned memory are used on CUDA only (on the CPU they compete with the model for
    the same cores).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "adamw"] = "adamw"
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    hidden: int = Field(128, ge=1)
    num_layers: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    decoder_hidden: int = Field(128, ge=1)
    mask_token: Literal["learned", "zeros"] = "learned"
    mask_ratio: float = Field(0.15, gt=0, lt=1)
    mask_kind: Literal["random", "block"] = "random"
    block_length: int = Field(5, ge=1)
    augment: AugmentConfig | None = Field(
        default_factory=AugmentConfig, description="None: no augmentation."
    )
    max_windows: int | None = Field(None, ge=1, description="Seeded subset of the corpus.")
    normaliser_windows: int = Field(4096, ge=2, description="Windows the normaliser sees.")
    seed: int = Field(0, ge=0)
    device: DeviceName = "auto"
    mixed_precision: bool = True
    num_workers: int = Field(2, ge=0, description="DataLoader workers (CUDA only).")

    #: Keys that do not change the weights (on one device): may differ on resume.
    RUNTIME_KEYS: ClassVar[tuple[str, ...]] = ("device", "num_workers")

    def module_config(self, input_dim: int) -> MaskedAEConfig:
        return MaskedAEConfig(
            input_dim=input_dim,
            hidden=self.hidden,
            num_layers=self.num_layers,
            dropout=self.dropout,
            decoder_hidden=self.decoder_hidden,
            mask_token=self.mask_token,
        )

    def result_dict(self) -> dict[str, Any]:
        """The config without the runtime keys: what a resume must match."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.RUNTIME_KEYS}


def pretrain_masked_ae(
    registry: Registry,
    unlabeled: str,
    config: MaskedAEPretrainConfig,
    *,
    resume: str | Path | None = None,
    checkpoint: str | Path | None = None,
    version: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> EncoderArtifact:
    """Pretrain a masked autoencoder on ``unlabeled`` (``NAME`` or ``NAME@vN``) and write
    its encoder as a new artifact version (with its card); returns the artifact.

    A resumable checkpoint is written after every epoch to ``checkpoint`` (default: beside
    the artifacts, see ``artifacts.checkpoint_path``) and removed once the artifact is
    written. ``resume`` continues an interrupted run from such a checkpoint: the dataset
    and every setting but the device must match. ``on_epoch(epoch, loss)`` reports progress.
    Everything is checked (dataset size, device, resume file) before anything is written.
    """
    from moola.data.registry import parse_ref
    from moola.pretrain import artifacts
    from moola.pretrain.data import UnlabeledWindows, corpus_indices, fit_normaliser
    from moola.pretrain.masking import masked_count
    from moola.training.trainer import Trainer

    device = select_device(config.device)
    name, wanted = parse_ref(unlabeled)
    ref = registry.resolve("unlabeled", name, wanted)
    windows = registry.load_unlabeled(ref.name, ref.version)
    masked_count(windows.length, config.mask_ratio)  # windows long enough to mask?
    indices = corpus_indices(len(windows), config.max_windows, config.seed)
    if len(indices) < config.batch_size:
        raise ConfigError(
            f"unlabeled/{ref.name}@v{ref.version} gives {len(indices)} windows, fewer than "
            f"one batch of {config.batch_size}. Lower --batch-size, raise --max-windows, or "
            "write a larger unlabeled dataset."
        )
    dataset = {**ref.to_dict(), "windows": len(windows), "windows_used": len(indices)}
    snapshot = None
    if resume is not None:
        saved = artifacts.load_training_checkpoint(resume)
        _check_resume(saved, config, dataset, Path(resume))
        snapshot = saved["loop"]
        mean = np.asarray(saved["normaliser"]["mean"], dtype=np.float32)
        std = np.asarray(saved["normaliser"]["std"], dtype=np.float32)
    else:
        mean, std = fit_normaliser(windows, indices, config.normaliser_windows, config.seed)
    source = UnlabeledWindows(
        windows,
        indices,
        mean=mean,
        std=std,
        mask_ratio=config.mask_ratio,
        mask_kind=config.mask_kind,
        block_length=config.block_length,
        augment=config.augment,
        seed=config.seed,
    )
    features = f"rel{source.n_channels}"
    artifacts.check_version_free(
        registry.root, artifacts.artifact_stem(ARCH, OBJECTIVE, features), version
    )
    if checkpoint is None:  # continue writing where the resumed run wrote
        checkpoint = resume or artifacts.checkpoint_path(
            registry.root, ARCH, OBJECTIVE, features, ref.name, ref.version
        )
    ckpt_path = Path(checkpoint)
    module_config = config.module_config(source.n_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        module = MaskedAutoencoder(module_config)
    trainer = Trainer(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        optimizer=config.optimizer,
        lr_schedule=config.lr_schedule,
        warmup_epochs=config.warmup_epochs,
        grad_clip=config.grad_clip,
        patience=None,
        seed=config.seed,
        device=str(device.type),
        mixed_precision=config.mixed_precision,
        num_workers=config.num_workers if device.type == "cuda" else 0,
    )
    extra = {
        "config": config.model_dump(mode="json"),
        "dataset": dataset,
        "normaliser": {"mean": mean.tolist(), "std": std.tolist()},
    }
    started = time.perf_counter()
    callbacks = [artifacts.ResumeCheckpoint(ckpt_path, extra), _EpochReport(on_epoch)]
    summary = trainer.run(module, source, step=MaskedAEStep(), callbacks=callbacks, resume=snapshot)
    resumed_epoch = None if snapshot is None else int(snapshot["epoch"])
    wall = float(snapshot["elapsed_s"]) if snapshot is not None else 0.0
    wall += time.perf_counter() - started
    card = {
        "arch": ARCH,
        "objective": OBJECTIVE,
        "features": features,
        "encoder": {
            "class": "moola.models.nn.encoders.BiLSTMEncoder",
            "config": _plain_config(module_config.encoder_config),
        },
        "unlabeled": dataset,
        "hyperparameters": config.result_dict(),
        "model_config": _plain_config(module_config),
        "normaliser": extra["normaliser"],
        "epochs": summary.epochs_run,
        "loss_curve": list(summary.train_loss_history),
        "final_loss": summary.train_loss_history[-1] if summary.train_loss_history else None,
        "wall_time_s": wall,
        "windows_per_s": summary.samples_per_s,
        "device": summary.device,
        "resumed_from_epoch": resumed_epoch,
    }
    encoder_state = {
        f"encoder.{k}": v.detach().cpu() for k, v in module.encoder.state_dict().items()
    }
    artifact = artifacts.write_encoder_artifact(
        registry.root, ARCH, OBJECTIVE, features, encoder_state, card, version=version
    )
    ckpt_path.unlink(missing_ok=True)
    return artifact


class _EpochReport:
    """Training-loop callback (the ``Callback`` hooks) calling ``report(epoch, loss)``."""

    def __init__(self, report: Callable[[int, float], None] | None) -> None:
        self.report = report

    def on_train_start(self, state: Any) -> None:
        return None

    def on_epoch_end(self, state: Any) -> bool:
        if self.report is not None:
            self.report(state.epoch, state.train_loss)
        return False

    def on_train_end(self, state: Any) -> None:
        return None


def _plain_config(config: Any) -> dict[str, Any]:
    return asdict(config)


def _check_resume(
    saved: dict[str, Any], config: MaskedAEPretrainConfig, dataset: dict[str, Any], path: Path
) -> None:
    """Refuse a checkpoint of another dataset or other result-changing settings."""
    saved_dataset = saved.get("dataset", {})
    for key in ("name", "version", "content_hash", "windows_used"):
        if saved_dataset.get(key) != dataset.get(key):
            raise CheckpointError(
                f"Checkpoint {path} was written while pretraining on "
                f"unlabeled/{saved_dataset.get('name')}@v{saved_dataset.get('version')} "
                f"({key} {saved_dataset.get(key)!r}), not on unlabeled/{dataset['name']}@v"
                f"{dataset['version']} ({key} {dataset.get(key)!r}). Resume with the same "
                "--unlabeled dataset and --max-windows."
            )
    try:
        saved_config = MaskedAEPretrainConfig(**saved["config"]).result_dict()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"Checkpoint {path} holds settings this moola cannot read ({exc}); start a new run."
        ) from exc
    now = config.result_dict()
    differ = [
        f"{k}: {saved_config.get(k)!r} -> {now.get(k)!r}"
        for k in now
        if saved_config.get(k) != now.get(k)
    ]
    if differ:
        raise CheckpointError(
            f"Checkpoint {path} was written with other settings ({'; '.join(differ)}). "
            "Resume with the settings of the interrupted run (omit the flags to take them "
            "from the checkpoint)."
        )
