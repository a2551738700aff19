"""Masked-autoencoder pretraining of the BiLSTM encoder on unlabeled windows.

The model (``MaskedAutoencoder``) hides some time steps of each window, encodes the window
with a ``BiLSTMEncoder`` held as the attribute ``encoder`` (so its tensors are named
``encoder.lstm.*``, exactly as in the classifiers that load them) and reconstructs every
step with a small per-step MLP decoder. The loss is the mean squared error over the hidden
steps only (``masked_mse``): visible steps are trivially copied and would teach nothing.

Hidden steps are replaced by a learned mask token (one vector of ``input_dim`` values,
initialised at 0, the mean of normalised inputs) or, with ``mask_token="zeros"``, by zeros.
A learned token lets the encoder tell "hidden" from "a step that happens to be average".

``MaskedAEStep`` is the step function the one training loop (``Trainer.run``) calls; it is
to pretraining what ``SupervisedStep`` is to supervised training. ``pretrain_masked_ae``
runs it over a registry's unlabeled dataset, streamed (``moola.pretrain.data``), with
resumable checkpoints, and writes the encoder artifact (``moola.pretrain.artifacts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from moola.models.nn._layers import check_input, require_choice, require_fraction, require_int
from moola.models.nn.encoders import BiLSTMEncoder, BiLSTMEncoderConfig

__all__ = [
    "MaskedAEConfig",
    "MaskedAEStep",
    "MaskedAutoencoder",
    "masked_mse",
]

ARCH, OBJECTIVE = "bilstm", "mae"


@dataclass(frozen=True, kw_only=True)
class MaskedAEConfig:
    """Shape of a :class:`MaskedAutoencoder`.

    Parameters
    ----------
    input_dim : int, default 11
        Channels per step (11 for the relative view).
    hidden, num_layers, dropout : int, int, float, default 128, 2, 0.2
        The ``BiLSTMEncoder`` (``2 * hidden`` wide outputs).
    decoder_hidden : int, default 128
        Width of the per-step MLP decoder's hidden layer.
    mask_token : {"learned", "zeros"}, default "learned"
        What replaces hidden steps at the encoder's input.
    """

    input_dim: int = 11
    hidden: int = 128
    num_layers: int = 2
    dropout: float = 0.2
    decoder_hidden: int = 128
    mask_token: Literal["learned", "zeros"] = "learned"

    def __post_init__(self) -> None:
        for name in ("input_dim", "hidden", "num_layers", "decoder_hidden"):
            require_int(self, name)
        require_fraction(self, "dropout")
        require_choice(self, "mask_token", ("learned", "zeros"))

    @property
    def encoder_config(self) -> BiLSTMEncoderConfig:
        """The encoder's config (what a target model's encoder must match)."""
        return BiLSTMEncoderConfig(
            input_dim=self.input_dim,
            hidden=self.hidden,
            num_layers=self.num_layers,
            dropout=self.dropout,
        )


class MaskedAutoencoder(nn.Module):
    """``(x (B, T, D), mask (B, T) bool) -> reconstruction (B, T, D)``.

    Hidden steps (``mask`` True) reach the encoder as the mask token; the decoder maps
    each step's encoder state ``(B, T, 2H)`` back to ``D`` values.
    """

    architecture = "masked_ae"

    def __init__(self, config: MaskedAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = BiLSTMEncoder(config.encoder_config)
        if config.mask_token == "learned":
            self.mask_token = nn.Parameter(torch.zeros(config.input_dim))
        else:
            self.register_buffer("mask_token", torch.zeros(config.input_dim))
        self.decoder = nn.Sequential(
            nn.Linear(2 * config.hidden, config.decoder_hidden),
            nn.GELU(),
            nn.Linear(config.decoder_hidden, config.input_dim),
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        check_input(x, self.config.input_dim, type(self).__name__)
        hidden = mask.unsqueeze(-1)  # (B, T, 1)
        x = torch.where(hidden, self.mask_token.to(x.dtype), x)  # (B, T, D)
        seq, _ = self.encoder(x)  # (B, T, 2H)
        return self.decoder(seq)  # (B, T, D)


def masked_mse(reconstruction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the hidden steps only (all channels), in float32."""
    per_step = (reconstruction.float() - target.float()).pow(2).mean(dim=-1)  # (B, T)
    weights = mask.to(per_step.dtype)
    return (per_step * weights).sum() / weights.sum().clamp_min(1.0)


class MaskedAEStep(nn.Module):
    """``masked_mse(module(x, mask), x, mask)`` for a batch ``(x, mask)``."""

    def forward(self, module: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        x, mask = batch
        return masked_mse(module(x, mask), x, mask)


# ------------------------------------------------------------------------------ the run
