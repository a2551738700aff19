"""Self-supervised pretraining: objectives (masked autoencoder, TS2Vec), augmentations,
encoder artifacts and transfer. The runs over a registry corpus are in
``moola.pipeline.pretrain`` (``moola pretrain masked-ae | ts2vec``).

Names are imported on first use (PEP 562), so ``import moola.pretrain`` stays light and
pulls in torch only when a torch-backed name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moola.pretrain.artifacts import (
        EncoderArtifact,
        ResumeCheckpoint,
        load_encoder_artifact,
        load_training_checkpoint,
        write_encoder_artifact,
    )
    from moola.pretrain.augment import AugmentConfig, Augmenter
    from moola.pretrain.data import UnlabeledWindows
    from moola.pretrain.masked_ae import (
        MaskedAEConfig,
        MaskedAEStep,
        MaskedAutoencoder,
        masked_mse,
    )
    from moola.pretrain.masking import block_mask, make_mask, random_mask
    from moola.pretrain.transfer import LoadReport, encoder_shape, load_pretrained_encoder
    from moola.pretrain.ts2vec import TS2VecConfig, TS2VecModel, TS2VecStep

_EXPORTS = {
    "EncoderArtifact": "moola.pretrain.artifacts",
    "ResumeCheckpoint": "moola.pretrain.artifacts",
    "load_encoder_artifact": "moola.pretrain.artifacts",
    "load_training_checkpoint": "moola.pretrain.artifacts",
    "write_encoder_artifact": "moola.pretrain.artifacts",
    "AugmentConfig": "moola.pretrain.augment",
    "Augmenter": "moola.pretrain.augment",
    "UnlabeledWindows": "moola.pretrain.data",
    "MaskedAEConfig": "moola.pretrain.masked_ae",
    "MaskedAEStep": "moola.pretrain.masked_ae",
    "MaskedAutoencoder": "moola.pretrain.masked_ae",
    "masked_mse": "moola.pretrain.masked_ae",
    "block_mask": "moola.pretrain.masking",
    "make_mask": "moola.pretrain.masking",
    "random_mask": "moola.pretrain.masking",
    "LoadReport": "moola.pretrain.transfer",
    "encoder_shape": "moola.pretrain.transfer",
    "load_pretrained_encoder": "moola.pretrain.transfer",
    "TS2VecConfig": "moola.pretrain.ts2vec",
    "TS2VecModel": "moola.pretrain.ts2vec",
    "TS2VecStep": "moola.pretrain.ts2vec",
}

__all__ = [
    "AugmentConfig",
    "Augmenter",
    "EncoderArtifact",
    "LoadReport",
    "MaskedAEConfig",
    "MaskedAEStep",
    "MaskedAutoencoder",
    "ResumeCheckpoint",
    "TS2VecConfig",
    "TS2VecModel",
    "TS2VecStep",
    "UnlabeledWindows",
    "block_mask",
    "encoder_shape",
    "load_encoder_artifact",
    "load_pretrained_encoder",
    "load_training_checkpoint",
    "make_mask",
    "masked_mse",
    "random_mask",
    "write_encoder_artifact",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'moola.pretrain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
