"""The bidirectional LSTM encoder shared by classifiers and masked-autoencoder pretraining.

One class, so weights learned by pretraining load into a classifier by name: every model
that can take a pretrained encoder holds it as the attribute ``encoder``, so its
``state_dict`` keys are ``encoder.lstm.weight_ih_l0``, ``encoder.lstm.bias_hh_l1_reverse``,
... exactly as in the pretraining model (which should also call its encoder ``encoder``).
A loader copies the ``encoder.*`` tensors whose names and shapes match and reports the
fraction matched (moola aborts below 80%).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from moola.models.nn._layers import check_input, require_choice, require_fraction, require_int


@dataclass(frozen=True, kw_only=True)
class BiLSTMEncoderConfig:
    """Shape of a :class:`BiLSTMEncoder`.

    Parameters
    ----------
    input_dim : int, default 4
        Channels per time step (4 for OHLC, 11 for the relative view).
    hidden : int, default 128
        LSTM width per direction; the encoder's output is ``2 * hidden`` (256 by default).
    num_layers : int, default 2
        Stacked LSTM layers.
    dropout : float, default 0.2
        Dropout between stacked layers (none with one layer).
    pooling : {"mean", "last"}, default "mean"
        How ``pooled`` summarises the sequence: the mean over time, or the final state of
        each direction (forward at step T-1, backward at step 0).
    """

    input_dim: int = 4
    hidden: int = 128
    num_layers: int = 2
    dropout: float = 0.2
    pooling: Literal["mean", "last"] = "mean"

    def __post_init__(self) -> None:
        for name in ("input_dim", "hidden", "num_layers"):
            require_int(self, name)
        require_fraction(self, "dropout")
        require_choice(self, "pooling", ("mean", "last"))

    @property
    def output_dim(self) -> int:
        """Width of the encoder's outputs: ``2 * hidden``."""
        return 2 * self.hidden


class BiLSTMEncoder(nn.Module):
    """``(B, T, input_dim) -> (sequence (B, T, 2*hidden), pooled (B, 2*hidden))``.

    Not causal: the backward direction reads the future of each step, so the encoder
    suits whole-window classification, not step-by-step streaming.
    Default size (input 4, 2 x 128, 2 layers): 532,480 parameters.
    """

    def __init__(self, config: BiLSTMEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(
            config.input_dim,
            config.hidden,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_input(x, self.config.input_dim, type(self).__name__)
        seq, _ = self.lstm(x)  # (B, T, 2H)
        if self.config.pooling == "mean":
            pooled = seq.mean(dim=1)  # (B, 2H)
        else:
            H = self.config.hidden
            # forward direction's state after step T-1, backward direction's after step 0
            pooled = torch.cat([seq[:, -1, :H], seq[:, 0, H:]], dim=-1)  # (B, 2H)
        return seq, pooled
