"""The moola networks: pure torch modules, each built from one frozen config dataclass.

No I/O, no device choice, no training loop here (``moola.training`` owns those). Every
module takes windows ``(B, T, D)`` and returns logits ``(B, n_classes)`` (or, for the
multi-task CNN-LSTM, a dict of heads), keeps its config as ``module.config``, and names
its architecture in ``module.architecture``. ``build_module(name, **kwargs)`` is the one
place an architecture name becomes a module; ``config_of`` gives back the kwargs (JSON
ready) that rebuild it.

A config field's annotated type (``Size``, ``Size0``, ``Rate``, ``Widths``, a ``Literal``)
is the one statement of what it may hold: the config checks it when built, and the
model's ``Params`` (``moola.models.params``) reads it to validate parameters and search
spaces before any training.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from moola.models.nn._layers import (
    AttentionPooling,
    MLPHead,
    MultiTaskLoss,
    SinusoidalPositionalEncoding,
    unknown_key_error,
)
from moola.models.nn.adapter_lstm import AdapterLSTM, AdapterLSTMConfig
from moola.models.nn.bilstm import BiLSTM, BiLSTMConfig
from moola.models.nn.cnn_lstm_attention import CNNLSTMAttention, CNNLSTMAttentionConfig
from moola.models.nn.encoders import BiLSTMEncoder, BiLSTMEncoderConfig
from moola.models.nn.enhanced_simple_lstm import (
    EnhancedSimpleLSTM,
    EnhancedSimpleLSTMConfig,
    pack_features,
)
from moola.models.nn.simple_lstm import SimpleLSTM, SimpleLSTMConfig
from moola.models.nn.transformer import TransformerConfig, TransformerModel

#: Architecture name -> (config class, module class).
ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "simple_lstm": (SimpleLSTMConfig, SimpleLSTM),
    "enhanced_simple_lstm": (EnhancedSimpleLSTMConfig, EnhancedSimpleLSTM),
    "bilstm": (BiLSTMConfig, BiLSTM),
    "cnn_lstm_attention": (CNNLSTMAttentionConfig, CNNLSTMAttention),
    "transformer": (TransformerConfig, TransformerModel),
    "adapter_lstm": (AdapterLSTMConfig, AdapterLSTM),
}


def build_module(architecture: str, **config_kwargs: Any) -> nn.Module:
    """A freshly initialised module of ``architecture`` with config ``config_kwargs``.

    Unknown architectures or config keys, and invalid values, raise ``ConfigError`` naming
    them and the valid choices. Initial weights come from torch's global RNG: seed it
    (``torch.manual_seed``) for reproducible builds.
    """
    if architecture not in ARCHITECTURES:
        raise unknown_key_error("architecture", architecture, list(ARCHITECTURES))
    config_cls, module_cls = ARCHITECTURES[architecture]
    valid = [f.name for f in dataclasses.fields(config_cls)]
    for key in config_kwargs:
        if key not in valid:
            raise unknown_key_error(f"{architecture} config key", key, valid)
    return module_cls(config_cls(**config_kwargs))


def config_of(module: nn.Module) -> dict[str, Any]:
    """``{"architecture": name, **config}`` with lists for tuples (JSON/YAML ready).

    ``build_module(**config_of(m))`` builds a module of the same shape as ``m``.
    """
    architecture = getattr(module, "architecture", None)
    if architecture not in ARCHITECTURES or not isinstance(module, ARCHITECTURES[architecture][1]):
        raise TypeError(
            f"config_of() takes a module from moola.models.nn.ARCHITECTURES, got "
            f"{type(module).__name__}."
        )
    config = dataclasses.asdict(module.config)
    return {
        "architecture": architecture,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
    }


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``module`` (only those with ``requires_grad``, if
    ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "ARCHITECTURES",
    "AdapterLSTM",
    "AdapterLSTMConfig",
    "AttentionPooling",
    "BiLSTM",
    "BiLSTMConfig",
    "BiLSTMEncoder",
    "BiLSTMEncoderConfig",
    "CNNLSTMAttention",
    "CNNLSTMAttentionConfig",
    "EnhancedSimpleLSTM",
    "EnhancedSimpleLSTMConfig",
    "MLPHead",
    "MultiTaskLoss",
    "SimpleLSTM",
    "SimpleLSTMConfig",
    "SinusoidalPositionalEncoding",
    "TransformerConfig",
    "TransformerModel",
    "build_module",
    "config_of",
    "count_parameters",
    "pack_features",
]
