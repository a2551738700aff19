"""How a neural estimator trains (``TrainerConfig``): part of its parameters.

The training loop lives in ``moola.training.trainer``, which reads this config; the
schema lives here, beside the models, because epochs, learning rate, loss and patience are
parameters of a neural estimator like its width and depth: ``moola.models.params`` builds
every neural model's ``Params`` from these fields and the module config's, and must not
reach up into the training layer to do it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from moola.core.settings import DeviceName

__all__ = ["LOSS_NAMES", "LossName", "TrainerConfig"]

LossName = Literal["cross_entropy", "focal", "bce", "mse"]
LOSS_NAMES: tuple[str, ...] = ("cross_entropy", "focal", "bce", "mse")


class TrainerConfig(BaseModel):
    """How to train: frozen, keyword-only, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(100, ge=1, description="Maximum number of passes over the data.")
    batch_size: int = Field(32, ge=1, description="Samples per optimiser step.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="L2 (adam) or decoupled (adamw) decay.")
    optimizer: Literal["adam", "adamw"] = "adam"
    lr_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="After warm-up: cosine decay to 0 over the run, or constant."
    )
    warmup_epochs: int = Field(0, ge=0, description="Epochs of linear learning-rate warm-up.")
    grad_clip: float | None = Field(
        1.0, gt=0, description="Clip the global gradient norm to this (None: no clipping)."
    )
    loss: LossName = "cross_entropy"
    class_weights: Literal["balanced"] | None = Field(
        None, description="'balanced': weight classes by n / (K * count) of the training set."
    )
    focal_gamma: float = Field(2.0, ge=0, description="Focusing exponent of the focal loss.")
    patience: int | None = Field(
        10, ge=1, description="Early-stopping patience in epochs (needs validation data)."
    )
    min_delta: float = Field(0.0, ge=0, description="Smallest val-loss drop that counts.")
    seed: int = Field(0, ge=0, description="Seed of initial weights, shuffling and dropout.")
    device: DeviceName = "auto"
    mixed_precision: bool = Field(True, description="bf16/fp16 autocast on CUDA (no-op on CPU).")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0: in-process).")
