"""``moola pretrain``: pretrain an encoder on an unlabeled corpus, write its artifact.

Two objectives share one run (``_pretrain``): resolve the registry's unlabeled dataset,
check its size, fit the corpus normaliser, stream normalised, augmented relative-view
batches (``moola.pretrain.data.UnlabeledWindows``) through the one training loop
(``Trainer.run``) with a resumable checkpoint after every epoch, and write the encoder
(``encoder.*`` tensors only) as a new artifact version with its card:

- ``pretrain_masked_ae`` (``moola pretrain masked-ae``): a BiLSTM masked autoencoder
  (``moola.pretrain.masked_ae``) -> ``bilstm_mae_rel11_vN``, for ``simple_lstm``
  (``encoder_projection=True``) and ``enhanced_simple_lstm``;
- ``pretrain_ts2vec`` (``moola pretrain ts2vec``): a dilated-convolution TS2Vec encoder
  trained by hierarchical contrast of overlapping crops (``moola.pretrain.ts2vec``; it
  crops and masks inside its step, so batches carry no masks) -> ``dilconv_ts2vec_rel11_vN``,
  for ``adapter_lstm``.

What differs between them (the model, its step, its batches, its window check, its card
fields) is a few methods of its config class; everything else lives here once.

Several processes (``moola pretrain ... --nproc N``, started by torchrun): every process
reads the corpus and trains its share of each batch (``moola.training.distributed``);
only rank 0 writes the epoch checkpoints and the artifact, and the other ranks return the
artifact it wrote. The card records how many processes trained it.

Orchestration (registry in, encoder artifact out) over the pieces in ``moola.pretrain``
and ``moola.training``. It lives here, above both, so that ``moola.pretrain`` stays below
``moola.training``: the neural estimator loads pretrained encoders through
``moola.pretrain.transfer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from moola.core.devices import select_device
from moola.core.errors import CheckpointError, ConfigError
from moola.core.settings import DeviceName
from moola.models.nn.ts2vec_encoder import TS2VecEncoderConfig
from moola.pretrain import masked_ae, ts2vec
from moola.pretrain.augment import AugmentConfig
from moola.pretrain.masked_ae import MaskedAEConfig, MaskedAEStep, MaskedAutoencoder
from moola.pretrain.ts2vec import TS2VecConfig, TS2VecModel, TS2VecStep
from moola.training import distributed

if TYPE_CHECKING:
    from moola.data.registry import DatasetRef, Registry
    from moola.data.windows import WindowSet
    from moola.pretrain.artifacts import EncoderArtifact
    from moola.training.trainer import Trainer, TrainingSummary

__all__ = [
    "MaskedAEPretrainConfig",
    "PretrainConfig",
    "TS2VecPretrainConfig",
    "pretrain_masked_ae",
    "pretrain_ts2vec",
    "read_resume_checkpoint",
]

EpochReport = Callable[[int, float], None]


@dataclass(frozen=True)
class _Parts:
    """What an objective trains: ``module`` (its encoder is ``module.encoder``), the loop
    ``step``, and the card fields only this objective has."""

    module: nn.Module
    step: nn.Module
    card: dict[str, Any] = field(default_factory=dict)


class PretrainConfig(BaseModel):
    """Settings every pretraining objective shares; frozen, no unknown keys.

    A subclass adds its model's settings and fills in the objective hooks (``build``,
    ``check_windows``, ``source_options``, ``describe``). ``device`` and ``num_workers``
    decide only where and how fast a run goes. Worker processes and pinned memory are used
    on CUDA only (on the CPU they compete with the model for the same cores).
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
    #: Artifact name parts and the CLI subcommand of the objective.
    ARCH: ClassVar[str]
    OBJECTIVE: ClassVar[str]
    COMMAND: ClassVar[str]

    def result_dict(self) -> dict[str, Any]:
        """The config without the runtime keys: what a resume must match."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.RUNTIME_KEYS}

    # -- objective hooks ----------------------------------------------------------------

    def build(self, input_dim: int) -> _Parts:
        """A freshly initialised model (from torch's global RNG) and its step."""
        raise NotImplementedError

    def check_windows(self, length: int, dataset: str) -> None:
        """Raise ``ConfigError`` if windows of ``length`` steps cannot train this objective."""

    def source_options(self) -> dict[str, Any]:
        """Keyword arguments of ``UnlabeledWindows`` beyond the shared ones."""
        return {}

    def describe(self) -> str:
        """One line on the objective's settings, for printed summaries."""
        return self.OBJECTIVE


class MaskedAEPretrainConfig(PretrainConfig):
    """Everything that decides a masked-AE pretraining run's result (see the base class)."""

    hidden: int = Field(128, ge=1)
    num_layers: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    decoder_hidden: int = Field(128, ge=1)
    mask_token: Literal["learned", "zeros"] = "learned"
    mask_ratio: float = Field(0.15, gt=0, lt=1)
    mask_kind: Literal["random", "block"] = "random"
    block_length: int = Field(5, ge=1)

    ARCH: ClassVar[str] = masked_ae.ARCH
    OBJECTIVE: ClassVar[str] = masked_ae.OBJECTIVE
    COMMAND: ClassVar[str] = "masked-ae"

    def module_config(self, input_dim: int) -> MaskedAEConfig:
        return MaskedAEConfig(
            input_dim=input_dim,
            hidden=self.hidden,
            num_layers=self.num_layers,
            dropout=self.dropout,
            decoder_hidden=self.decoder_hidden,
            mask_token=self.mask_token,
        )

    def build(self, input_dim: int) -> _Parts:
        config = self.module_config(input_dim)
        return _Parts(MaskedAutoencoder(config), MaskedAEStep(), {"model_config": asdict(config)})

    def check_windows(self, length: int, dataset: str) -> None:
        from moola.pretrain.masking import masked_count

        masked_count(length, self.mask_ratio)  # windows long enough to mask?

    def source_options(self) -> dict[str, Any]:
        return {
            "mask_ratio": self.mask_ratio,
            "mask_kind": self.mask_kind,
            "block_length": self.block_length,
        }

    def describe(self) -> str:
        return f"{self.OBJECTIVE} (mask {self.mask_kind} {self.mask_ratio:g})"


class TS2VecPretrainConfig(PretrainConfig):
    """Everything that decides a TS2Vec pretraining run's result (see the base class).

    ``hidden``, ``repr_dim``, ``depth``, ``dropout`` and ``mask_prob`` shape the
    ``TS2VecEncoder`` (defaults: the paper's; ``depth=4`` already sees a whole 105-bar
    window); ``alpha`` and ``temporal_unit`` weigh the loss (``TS2VecConfig``).
    """

    hidden: int = Field(64, ge=1)
    repr_dim: int = Field(320, ge=1)
    depth: int = Field(10, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    mask_prob: float = Field(0.5, ge=0, lt=1)
    alpha: float = Field(0.5, ge=0, le=1)
    temporal_unit: int = Field(0, ge=0)

    ARCH: ClassVar[str] = ts2vec.ARCH
    OBJECTIVE: ClassVar[str] = ts2vec.OBJECTIVE
    COMMAND: ClassVar[str] = "ts2vec"

    def encoder_config(self, input_dim: int) -> TS2VecEncoderConfig:
        return TS2VecEncoderConfig(
            input_dim=input_dim,
            hidden=self.hidden,
            repr_dim=self.repr_dim,
            depth=self.depth,
            dropout=self.dropout,
            mask_prob=self.mask_prob,
        )

    def objective_config(self) -> TS2VecConfig:
        return TS2VecConfig(alpha=self.alpha, temporal_unit=self.temporal_unit)

    def build(self, input_dim: int) -> _Parts:
        config, objective = self.encoder_config(input_dim), self.objective_config()
        card = {"model_config": asdict(config), "objective_config": objective.to_dict()}
        return _Parts(TS2VecModel(config), TS2VecStep(objective), card)

    def check_windows(self, length: int, dataset: str) -> None:
        shortest = self.objective_config().min_crop
        if length < shortest:
            raise ConfigError(
                f"{dataset} holds windows of {length} steps; TS2Vec crops need at least "
                f"{shortest} (2 ** (temporal_unit + 1)). Write longer windows or lower "
                "temporal_unit."
            )

    def source_options(self) -> dict[str, Any]:
        return {"masks": False}  # TS2VecStep crops and masks inside the step

    def describe(self) -> str:
        return (
            f"{self.OBJECTIVE} (overlapping crops, timestamp masking {self.mask_prob:g}, "
            f"alpha {self.alpha:g})"
        )


_CONFIGS: tuple[type[PretrainConfig], ...] = (MaskedAEPretrainConfig, TS2VecPretrainConfig)


# ------------------------------------------------------------------------- entry points


def pretrain_masked_ae(
    registry: Registry,
    unlabeled: str,
    config: MaskedAEPretrainConfig,
    *,
    resume: str | Path | None = None,
    checkpoint: str | Path | None = None,
    version: int | None = None,
    on_epoch: EpochReport | None = None,
) -> EncoderArtifact:
    """Pretrain a BiLSTM masked autoencoder on ``unlabeled`` (``NAME`` or ``NAME@vN``) and
    write its encoder as a new ``bilstm_mae_rel11`` version (with its card); returns it.

    A resumable checkpoint is written after every epoch to ``checkpoint`` (default: beside
    the artifacts, see ``artifacts.checkpoint_path``) and removed once the artifact is
    written. ``resume`` continues an interrupted run from such a checkpoint: the dataset
    and every setting but the device must match. ``on_epoch(epoch, loss)`` reports progress.
    Everything is checked (dataset size, device, resume file) before anything is written.
    """
    return _pretrain(registry, unlabeled, config, resume, checkpoint, version, on_epoch)


def pretrain_ts2vec(
    registry: Registry,
    unlabeled: str,
    config: TS2VecPretrainConfig,
    *,
    resume: str | Path | None = None,
    checkpoint: str | Path | None = None,
    version: int | None = None,
    on_epoch: EpochReport | None = None,
) -> EncoderArtifact:
    """Pretrain a TS2Vec encoder on ``unlabeled`` (``NAME`` or ``NAME@vN``) and write it as
    a new ``dilconv_ts2vec_rel11`` version (with its card); returns the artifact.

    Its ``encoder.*`` tensors are named as ``adapter_lstm``'s ``encoder`` names them, and
    the card's ``encoder.config`` (a ``TS2VecEncoderConfig``) gives that model its encoder
    shape. Checkpoints, ``resume``, ``version`` and ``on_epoch`` as in
    ``pretrain_masked_ae``; a masked-AE checkpoint is refused.
    """
    return _pretrain(registry, unlabeled, config, resume, checkpoint, version, on_epoch)


def read_resume_checkpoint(path: str | Path, config_cls: type[PretrainConfig]) -> dict[str, Any]:
    """The pretraining checkpoint at ``path``, if an interrupted run of ``config_cls``'s
    objective wrote it; ``CheckpointError`` naming the file (and the command that resumes
    it) otherwise."""
    from moola.pretrain.artifacts import load_training_checkpoint

    saved = load_training_checkpoint(path)
    objective = saved.get("objective", MaskedAEPretrainConfig.OBJECTIVE)  # older: masked-AE only
    if objective != config_cls.OBJECTIVE:
        command = {c.OBJECTIVE: c.COMMAND for c in _CONFIGS}.get(objective, "another objective")
        raise CheckpointError(
            f"Checkpoint {path} was written by `moola pretrain {command}` (objective "
            f"{objective!r}), not by `moola pretrain {config_cls.COMMAND}`. Resume it with "
            f"`moola pretrain {command} --resume {path}`, or start a new "
            f"{config_cls.COMMAND} run instead of resuming this one."
        )
    return saved


# ------------------------------------------------------------------------- the shared run


def _pretrain(
    registry: Registry,
    unlabeled: str,
    config: PretrainConfig,
    resume: str | Path | None,
    checkpoint: str | Path | None,
    version: int | None,
    on_epoch: EpochReport | None,
) -> EncoderArtifact:
    """One pretraining run of ``config``'s objective; see ``pretrain_masked_ae``."""
    from moola.pretrain import artifacts
    from moola.pretrain.data import UnlabeledWindows

    device = select_device(config.device)
    ref, windows = _load_corpus(registry, unlabeled)
    config.check_windows(windows.length, f"unlabeled/{ref.name}@v{ref.version}")
    indices = _training_indices(ref, len(windows), config)
    dataset = {**ref.to_dict(), "windows": len(windows), "windows_used": len(indices)}
    snapshot, mean, std = _starting_point(windows, indices, config, dataset, resume)
    source = UnlabeledWindows(
        windows,
        indices,
        mean=mean,
        std=std,
        augment=config.augment,
        seed=config.seed,
        **config.source_options(),
    )
    features = f"rel{source.n_channels}"
    stem = artifacts.artifact_stem(config.ARCH, config.OBJECTIVE, features)
    artifacts.check_version_free(registry.root, stem, version)
    ckpt_path = Path(  # a resumed run keeps writing where it wrote
        checkpoint
        or resume
        or artifacts.checkpoint_path(
            registry.root, config.ARCH, config.OBJECTIVE, features, ref.name, ref.version
        )
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        parts = config.build(source.n_channels)
    normaliser = {"mean": mean.tolist(), "std": std.tolist()}
    extra = {
        "arch": config.ARCH,
        "objective": config.OBJECTIVE,
        "config": config.model_dump(mode="json"),
        "dataset": dataset,
        "normaliser": normaliser,
    }
    started = time.perf_counter()
    main = distributed.is_main_process()  # only rank 0 of a process group writes
    callbacks: list[Any] = [_EpochReport(on_epoch)]
    if main:
        callbacks.insert(0, artifacts.ResumeCheckpoint(ckpt_path, extra))
    summary = _trainer(config, device).run(
        parts.module, source, step=parts.step, callbacks=callbacks, resume=snapshot
    )
    wall = (
        time.perf_counter() - started + (0.0 if snapshot is None else float(snapshot["elapsed_s"]))
    )
    card = _card(config, parts, dataset, normaliser, summary, snapshot, wall)
    if not main:
        return _artifact_from_rank0()
    encoder = parts.module.encoder
    state = {f"encoder.{k}": v.detach().cpu() for k, v in encoder.state_dict().items()}
    try:
        artifact = artifacts.write_encoder_artifact(
            registry.root, config.ARCH, config.OBJECTIVE, features, state, card, version=version
        )
    except BaseException as exc:  # tell the waiting ranks, then fail here
        distributed.broadcast_object(f"{_FAILED}{type(exc).__name__}: {exc}")
        raise
    ckpt_path.unlink(missing_ok=True)
    distributed.broadcast_object(str(artifact.path))  # no-op with one process
    return artifact


_FAILED = "rank 0 could not write the encoder: "


def _artifact_from_rank0() -> EncoderArtifact:
    """On a non-zero rank: the artifact rank 0 wrote (its path comes by broadcast)."""
    from moola.pretrain.artifacts import load_encoder_artifact

    sent = distributed.broadcast_object(None)
    if not sent or sent.startswith(_FAILED):
        raise CheckpointError(sent or "rank 0 wrote no encoder.")
    return load_encoder_artifact(sent)


def _load_corpus(registry: Registry, unlabeled: str) -> tuple[DatasetRef, WindowSet]:
    """The unlabeled dataset ``NAME`` or ``NAME@vN`` (``RegistryError`` if unknown)."""
    from moola.data.registry import parse_ref

    name, wanted = parse_ref(unlabeled)
    ref = registry.resolve("unlabeled", name, wanted)
    return ref, registry.load_unlabeled(ref.name, ref.version)


def _training_indices(ref: DatasetRef, n_windows: int, config: PretrainConfig) -> np.ndarray:
    """The windows the run trains on; ``ConfigError`` if they fill less than one batch."""
    from moola.pretrain.data import corpus_indices

    indices = corpus_indices(n_windows, config.max_windows, config.seed)
    if len(indices) < config.batch_size:
        raise ConfigError(
            f"unlabeled/{ref.name}@v{ref.version} gives {len(indices)} windows, fewer than "
            f"one batch of {config.batch_size}. Lower batch_size, raise max_windows, or "
            "write a larger unlabeled dataset.",
            param="batch_size",
        )
    return indices


def _starting_point(
    windows: WindowSet,
    indices: np.ndarray,
    config: PretrainConfig,
    dataset: dict[str, Any],
    resume: str | Path | None,
) -> tuple[dict[str, Any] | None, np.ndarray, np.ndarray]:
    """``(loop snapshot or None, normaliser mean, std)``: a checked checkpoint's, or a fresh
    start with the normaliser fitted on a seeded sample of the corpus."""
    from moola.pretrain.data import fit_normaliser

    if resume is None:
        mean, std = fit_normaliser(windows, indices, config.normaliser_windows, config.seed)
        return None, mean, std
    saved = read_resume_checkpoint(resume, type(config))
    _check_resume(saved, config, dataset, Path(resume))
    mean = np.asarray(saved["normaliser"]["mean"], dtype=np.float32)
    std = np.asarray(saved["normaliser"]["std"], dtype=np.float32)
    return saved["loop"], mean, std


def _trainer(config: PretrainConfig, device: torch.device) -> Trainer:
    from moola.training.trainer import Trainer

    return Trainer(
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


def _card(
    config: PretrainConfig,
    parts: _Parts,
    dataset: dict[str, Any],
    normaliser: dict[str, Any],
    summary: TrainingSummary,
    snapshot: dict[str, Any] | None,
    wall: float,
) -> dict[str, Any]:
    """The encoder card's run fields (``write_encoder_artifact`` adds names, tensors,
    versions and provenance). ``encoder.class`` and ``encoder.config`` rebuild the encoder;
    ``normaliser`` is the scale its inputs must have."""
    encoder = parts.module.encoder
    losses = list(summary.train_loss_history)
    return {
        "arch": config.ARCH,
        "objective": config.OBJECTIVE,
        "encoder": {
            "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
            "config": asdict(encoder.config),
        },
        "unlabeled": dataset,
        "hyperparameters": config.result_dict(),
        **parts.card,
        "normaliser": normaliser,
        "epochs": summary.epochs_run,
        "loss_curve": losses,
        "final_loss": losses[-1] if losses else None,
        "wall_time_s": wall,
        "windows_per_s": summary.samples_per_s,
        "device": summary.device,
        "processes": _processes(),
        "resumed_from_epoch": None if snapshot is None else int(snapshot["epoch"]),
    }


def _processes() -> int:
    """How many processes train the run (1 without a process group)."""
    group = distributed.current()
    return 1 if group is None else group.world_size


class _EpochReport:
    """Training-loop callback (the ``Callback`` hooks) calling ``report(epoch, loss)``."""

    def __init__(self, report: EpochReport | None) -> None:
        self.report = report

    def on_train_start(self, state: Any) -> None:
        return None

    def on_epoch_end(self, state: Any) -> bool:
        if self.report is not None:
            self.report(state.epoch, state.train_loss)
        return False

    def on_train_end(self, state: Any) -> None:
        return None


def _check_resume(
    saved: dict[str, Any], config: PretrainConfig, dataset: dict[str, Any], path: Path
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
                "unlabeled dataset and max_windows."
            )
    try:
        saved_config = type(config)(**saved["config"]).result_dict()
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
