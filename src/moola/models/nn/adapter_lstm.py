"""AdapterLSTM: a frozen, pretrained TS2Vec encoder read by small trainable parts.

For tiny labeled sets: the encoder (pretrained on unlabeled bars by ``moola pretrain
ts2vec``, artifact ``dilconv_ts2vec_rel11_vN``) stays fixed, and only bottleneck adapters
on its per-step representations, a small LSTM and an MLP head learn from the labels.
Freezing keeps the number of trained weights near the ~70K budget of ``simple_lstm`` while
reading a representation learned from far more windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from moola.models.nn._layers import (
    MLPHead,
    Rate,
    Size,
    Size0,
    Widths,
    check_config,
    check_input,
)
from moola.models.nn.ts2vec_encoder import TS2VecEncoder, TS2VecEncoderConfig

__all__ = ["AdapterLSTM", "AdapterLSTMConfig", "BottleneckAdapter"]


@dataclass(frozen=True, kw_only=True)
class AdapterLSTMConfig:
    """Shape of an :class:`AdapterLSTM`.

    Parameters
    ----------
    input_dim : int, default 11
        Channels per step (11 for the relative view the encoder is pretrained on).
    seq_len : int, default 105
        Window length the model is meant for (recorded; any length runs).
    n_classes : int, default 2
        Output logits; 1 gives a single binary logit.
    encoder_hidden, encoder_repr_dim, encoder_depth : int, default 64, 320, 10
        Shape of the TS2Vec encoder; it must match the pretrained one.
    freeze_encoder : bool, default True
        Build the encoder with ``requires_grad=False`` (see :class:`AdapterLSTM`).
    adapter_dim : int, default 16
        Bottleneck width ``r`` of each adapter (``repr -> r -> repr``).
    n_adapters : int, default 1
        Adapters stacked on the per-step representations (0: none).
    lstm_hidden : int, default 32
        Width of the unidirectional LSTM over the adapted steps.
    fc : list of int, default (32,)
        Hidden widths of the MLP head.
    dropout : float, default 0.1
        Dropout on the head's input and inside the head (the encoder's own output dropout
        is 0.1, active only while it trains).
    """

    input_dim: Size = 11
    seq_len: Size = 105
    n_classes: Size = 2
    encoder_hidden: Size = 64
    encoder_repr_dim: Size = 320
    encoder_depth: Size0 = 10
    freeze_encoder: bool = True
    adapter_dim: Size = 16
    n_adapters: Size0 = 1
    lstm_hidden: Size = 32
    fc: Widths = (32,)
    dropout: Rate = 0.1

    def __post_init__(self) -> None:
        check_config(self)

    def encoder_config(self) -> TS2VecEncoderConfig:
        """The encoder's config; timestamp masking off (it is a pretraining device)."""
        return TS2VecEncoderConfig(
            input_dim=self.input_dim,
            hidden=self.encoder_hidden,
            repr_dim=self.encoder_repr_dim,
            depth=self.encoder_depth,
            mask_prob=0.0,
        )


class BottleneckAdapter(nn.Module):
    """``x + up(gelu(down(x)))`` per step, ``dim -> r -> dim`` (Houlsby et al., 2019).

    ``up`` starts at zero, so a new adapter is the identity and training starts from the
    pretrained representation itself.
    """

    def __init__(self, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.up(F.gelu(self.down(x)))  # (..., dim)


class AdapterLSTM(nn.Module):
    """TS2Vec encoder -> bottleneck adapters -> LSTM -> MLP head: ``(B, T, D) -> (B, K)``.

    Size: 705,138 parameters at the defaults (input (105, 11), encoder 64/320/depth 10),
    of which 67,250 train with the encoder frozen: the encoder holds 637,888, one adapter
    320-16-320 holds 10,576, the LSTM 320 -> 32 holds 45,312, and the head
    (32 + 320) -> 32 -> 2 holds 11,362.

    The head reads the LSTM's last state beside the max-pool over time of the adapted
    steps: that max-pool is the window vector TS2Vec is trained to make discriminative
    (the paper's instance representation), and the LSTM adds the order of the steps.

    The encoder is the attribute ``encoder``, a :class:`TS2VecEncoder` (timestamp
    masking off), so a TS2Vec checkpoint's ``encoder.*`` tensors load under the same
    names: ``pretrained_encoder=PATH`` (``moola train --pretrained-encoder``) loads an
    artifact of ``moola pretrain ts2vec`` and, unless set, takes ``encoder_hidden``,
    ``encoder_repr_dim`` and ``encoder_depth`` from its card. With ``freeze_encoder``
    its parameters have ``requires_grad=False``, so the trainer's optimiser leaves them
    out, and while none of them trains the encoder stays in eval mode (no dropout) even
    when the model is put in training mode. Gradual unfreezing: give
    ``encoder_parameters()`` and ``head_parameters()`` their own optimiser parameter
    groups (e.g. a smaller learning rate for the encoder) and call
    ``set_encoder_trainable(True)`` at the chosen epoch; the next ``train()`` call then
    puts the encoder in training mode (the estimator does this with
    ``freeze_encoder=False, freeze_epochs=N``).

    Not causal: the encoder's convolutions are centred, so a step's features read ahead.
    """

    architecture = "adapter_lstm"

    def __init__(self, config: AdapterLSTMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = TS2VecEncoder(c.encoder_config())
        self.adapters = nn.ModuleList(
            BottleneckAdapter(c.encoder_repr_dim, c.adapter_dim) for _ in range(c.n_adapters)
        )
        self.lstm = nn.LSTM(c.encoder_repr_dim, c.lstm_hidden, batch_first=True)
        self.drop = nn.Dropout(c.dropout)
        self.head = MLPHead(c.lstm_hidden + c.encoder_repr_dim, c.fc, c.n_classes, c.dropout)
        self.set_encoder_trainable(not c.freeze_encoder)

    # -- parameter groups ---------------------------------------------------------------

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """The encoder's parameters (frozen by default)."""
        return self.encoder.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Everything after the encoder: adapters, LSTM and MLP head."""
        for name, parameter in self.named_parameters():
            if not name.startswith("encoder."):
                yield parameter

    def set_encoder_trainable(self, trainable: bool) -> None:
        """Freeze (False) or unfreeze (True) the encoder's parameters."""
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(trainable)
        if not trainable:
            self.encoder.eval()

    @property
    def encoder_frozen(self) -> bool:
        """True while no encoder parameter requires gradients."""
        return not any(p.requires_grad for p in self.encoder.parameters())

    def train(self, mode: bool = True) -> AdapterLSTM:
        """As ``nn.Module.train``, but a frozen encoder stays in eval mode."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    # -- forward ------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.config.input_dim, type(self).__name__)
        z = self.encoder(x)  # (B, T, R)
        for adapter in self.adapters:
            z = adapter(z)  # (B, T, R)
        h, _ = self.lstm(z)  # (B, T, H)
        features = torch.cat([h[:, -1], z.amax(dim=1)], dim=-1)  # (B, H + R)
        return self.head(self.drop(features))  # (B, K)
