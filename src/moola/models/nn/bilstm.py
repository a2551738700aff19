"""BiLSTM: the stacked bidirectional LSTM of the per-symbol direction model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from moola.models.nn._layers import (
    MLPHead,
    Rate,
    Size,
    Size0,
    SymbolEmbedding,
    Widths,
    check_config,
    check_input,
)


@dataclass(frozen=True, kw_only=True)
class BiLSTMConfig:
    """Shape of a :class:`BiLSTM`.

    Parameters
    ----------
    input_dim : int, default 31
        Features per step (the crypto model's 31).
    seq_len : int, default 60
        Window length the model is meant for (recorded; any length runs).
    n_classes : int, default 2
        Output logits; 1 gives one logit for binary direction (apply a sigmoid; train
        with ``BCEWithLogitsLoss``) or one regression value.
    hidden : int, default 64
        LSTM width per direction.
    num_layers : int, default 2
        Stacked LSTM layers.
    fc : list of int, default (64,)
        Hidden widths of the head, which reads the ``2 * hidden`` (128) summary: the
        DOMAIN's "FC 128-64-1" is 128 in, 64 hidden, K out.
    dropout : float, default 0.2
        Dropout between LSTM layers and in the head.
    pooling : {"last", "mean"}, default "last"
        Summary of the top layer: each direction's final state, or the mean over time.
    n_symbols : int, default 0
        Symbols the model tells apart. With ``n_symbols > 0`` windows carry one more
        channel, last: the window's symbol id (``0..n_symbols - 1``), which is embedded
        (``symbol_dim`` wide) and concatenated to every step's features before the
        encoder (:class:`moola.models.nn._layers.SymbolEmbedding` says why there). 0: no id channel,
        and the module is exactly the one built before this option existed.
    symbol_dim : int, default 8
        Width of the symbol embedding (used only with ``n_symbols > 0``).
    """

    input_dim: Size = 31
    seq_len: Size = 60
    n_classes: Size = 2
    hidden: Size = 64
    num_layers: Size = 2
    fc: Widths = (64,)
    dropout: Rate = 0.2
    pooling: Literal["last", "mean"] = "last"
    n_symbols: Size0 = 0
    symbol_dim: Size = 8

    def __post_init__(self) -> None:
        check_config(self)


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM + MLP head: ``(B, T, D) -> (B, K)``.

    Size: 157,378 parameters at the defaults (input (60, 31), 2 x 64 x 2 layers, head
    128-64-2; 157,313 with ``n_classes=1``). DOMAIN.md's "~62K" cannot hold for this
    shape: the two bidirectional layers alone have 148,992 parameters (a unidirectional
    2 x 64 LSTM with a 64-64-1 head would be about 62K).
    """

    architecture = "bilstm"

    def __init__(self, config: BiLSTMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.lstm = nn.LSTM(
            c.input_dim + (c.symbol_dim if c.n_symbols else 0),
            c.hidden,
            num_layers=c.num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(c.dropout)
        self.head = MLPHead(2 * c.hidden, c.fc, c.n_classes, c.dropout)
        if c.n_symbols:  # built last: the layers above draw the same initial weights
            self.symbols = SymbolEmbedding(c.n_symbols, c.symbol_dim, type(self).__name__)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.config.input_dim, type(self).__name__, self.config.n_symbols)
        if self.config.n_symbols:
            x = self.symbols(x)  # (B, T, F + 1) -> (B, T, F + symbol_dim)
        seq, (h_n, _) = self.lstm(x)  # (B, T, 2H), (layers * 2, B, H)
        if self.config.pooling == "last":
            summary = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # (B, 2H): top layer fwd, bwd
        else:
            summary = seq.mean(dim=1)  # (B, 2H)
        return self.head(self.drop(summary))  # (B, K)
