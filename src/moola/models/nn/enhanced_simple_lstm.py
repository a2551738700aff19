"""EnhancedSimpleLSTM: windows through a (pretrainable) BiLSTM encoder, engineered features
through an MLP, fused before the classifier head.

The estimator interface passes one array, so the module also takes the features packed into
the window: ``x`` of shape ``(B, T, D + F)`` whose last ``F`` channels of the FIRST time step
hold the ``F`` engineered features (the last ``F`` channels of steps 1..T-1 are ignored; fill
them with zeros). ``pack_features`` builds that array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from moola.core.errors import ConfigError
from moola.models.nn._layers import (
    MLPHead,
    Rate,
    Size,
    Size0,
    SomeWidths,
    Widths,
    check_config,
)
from moola.models.nn.encoders import BiLSTMEncoder, BiLSTMEncoderConfig


@dataclass(frozen=True, kw_only=True)
class EnhancedSimpleLSTMConfig:
    """Shape of an :class:`EnhancedSimpleLSTM`.

    Parameters
    ----------
    input_dim : int, default 4
        Sequence channels ``D`` (not counting packed features).
    seq_len : int, default 105
        Window length the model is meant for (recorded; any length runs).
    n_classes : int, default 2
        Output logits; 1 gives a single binary logit.
    n_features : int, default 20
        Engineered features ``F`` per window; 0 drops the feature branch.
    encoder_hidden, encoder_layers : int, default 128, 2
        The BiLSTM encoder (2 x 128 -> 256-d, the masked-autoencoder's shape).
    encoder_dropout : float, default 0.2
        Dropout between encoder layers.
    pooling : {"mean", "last"}, default "mean"
        How the encoder summarises the window.
    feature_hidden : list of int, default (64, 32)
        Widths of the feature MLP (its output is the last width).
    fc : list of int, default (128, 64)
        Hidden widths of the head over the fused vector.
    dropout : float, default 0.1
        Dropout in the feature MLP and the head.
    """

    input_dim: Size = 4
    seq_len: Size = 105
    n_classes: Size = 2
    n_features: Size0 = 20
    encoder_hidden: Size = 128
    encoder_layers: Size = 2
    encoder_dropout: Rate = 0.2
    pooling: Literal["mean", "last"] = "mean"
    feature_hidden: SomeWidths = (64, 32)
    fc: Widths = (128, 64)
    dropout: Rate = 0.1

    def __post_init__(self) -> None:
        check_config(self)


def pack_features(x: Tensor, features: Tensor) -> Tensor:
    """``(B, T, D)`` windows + ``(B, F)`` features -> ``(B, T, D + F)`` single array.

    The features sit in the last ``F`` channels of step 0; other steps carry zeros there.
    """
    packed = x.new_zeros(x.shape[0], x.shape[1], features.shape[-1])  # (B, T, F)
    packed[:, 0] = features
    return torch.cat([x, packed], dim=-1)


class EnhancedSimpleLSTM(nn.Module):
    """BiLSTM encoder over windows + MLP over features, concatenated, then an MLP head.

    ``forward(x, features)`` with ``x (B, T, D)`` and ``features (B, F)``, or
    ``forward(x)`` with ``x (B, T, D + F)`` packed as the module docstring says;
    returns logits ``(B, K)``. Features are used as given: the estimator standardises them.

    Size: 581,282 parameters at the defaults (input (105, 4), 20 features, encoder 2 x 128
    x 2 layers = 532,480 of them). The encoder is the attribute ``encoder``, a
    :class:`BiLSTMEncoder`, so a masked-autoencoder checkpoint's ``encoder.lstm.*`` tensors
    load here under the same names; the feature MLP and head start untrained.
    """

    architecture = "enhanced_simple_lstm"

    def __init__(self, config: EnhancedSimpleLSTMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = BiLSTMEncoder(
            BiLSTMEncoderConfig(
                input_dim=c.input_dim,
                hidden=c.encoder_hidden,
                num_layers=c.encoder_layers,
                dropout=c.encoder_dropout,
                pooling=c.pooling,
            )
        )
        fused = 2 * c.encoder_hidden
        if c.n_features > 0:
            # an MLP whose last layer is also followed by ReLU + dropout before fusion
            *hidden, out = c.feature_hidden
            self.feature_mlp = nn.Sequential(
                MLPHead(c.n_features, hidden, out, c.dropout), nn.ReLU(), nn.Dropout(c.dropout)
            )
            fused += out
        self.head = MLPHead(fused, c.fc, c.n_classes, c.dropout)

    def forward(self, x: Tensor, features: Tensor | None = None) -> Tensor:
        c = self.config
        D, F = c.input_dim, c.n_features
        if x.dim() != 3:
            raise ConfigError(
                f"EnhancedSimpleLSTM got input of shape {tuple(x.shape)}; pass windows "
                "shaped (batch, time, channels)."
            )
        if features is None and F > 0:
            if x.shape[-1] != D + F:
                raise ConfigError(
                    f"EnhancedSimpleLSTM got x with {x.shape[-1]} channels and no features; "
                    f"it expects {D} window channels + {F} packed feature channels = {D + F} "
                    "(features in the last channels of step 0), or forward(x, features)."
                )
            x, features = x[..., :D], x[:, 0, D:]  # (B, T, D), (B, F)
        elif features is not None and (features.dim() != 2 or features.shape[-1] != F):
            raise ConfigError(
                f"EnhancedSimpleLSTM got features of shape {tuple(features.shape)} but was "
                f"built for (B, {F}); rebuild it with n_features={features.shape[-1]}."
            )
        _, pooled = self.encoder(x)  # (B, 2*encoder_hidden)
        if F > 0:
            pooled = torch.cat([pooled, self.feature_mlp(features)], dim=-1)  # (B, fused)
        return self.head(pooled)  # (B, K)
