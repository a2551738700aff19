"""TransformerModel: the multi-symbol trend-strength (or classification) transformer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from moola.models.nn._layers import (
    MLPHead,
    Rate,
    SinusoidalPositionalEncoding,
    Size,
    Size0,
    SymbolEmbedding,
    Widths,
    check_config,
    check_input,
    require_divisible,
)


@dataclass(frozen=True, kw_only=True)
class TransformerConfig:
    """Shape of a :class:`TransformerModel`.

    Parameters
    ----------
    input_dim : int, default 31
        Features per step.
    seq_len : int, default 100
        Window length; the position table is built for it (longer windows still run).
    n_classes : int, default 2
        Outputs: class logits, or one value per regression target.
    output : {"linear", "sigmoid"}, default "linear"
        ``"sigmoid"`` squashes each output into [0, 1], for training directly on a target
        known to lie there (a trend strength) with ``Trainer`` and ``loss="mse"``.
        ``NeuralEstimator`` keeps ``"linear"``: it trains regression on standardised targets
        (which a sigmoid could not reach) and classification on logits. Model files written
        before this field was named ``output`` (``task="regression"``) load as ``"sigmoid"``.
    d_model : int, default 128
        Width of the encoder (a multiple of ``heads``).
    n_layers : int, default 4
        Encoder layers.
    heads : int, default 8
        Attention heads per layer.
    ffn : int, default 512
        Width of each layer's feed-forward block.
    dropout : float, default 0.1
        Dropout in the encoder, after the positions, and in the head.
    pooling : {"mean", "cls"}, default "mean"
        Summary of the sequence: mean over steps, or a learned [CLS] token's output.
    fc : list of int, default (512,)
        Hidden widths of the head: the DOMAIN's "head 128-512-1" is d_model 128 in,
        512 hidden, K out.
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
    seq_len: Size = 100
    n_classes: Size = 2
    output: Literal["linear", "sigmoid"] = "linear"
    d_model: Size = 128
    n_layers: Size = 4
    heads: Size = 8
    ffn: Size = 512
    dropout: Rate = 0.1
    pooling: Literal["mean", "cls"] = "mean"
    fc: Widths = (512,)
    n_symbols: Size0 = 0
    symbol_dim: Size = 8

    def __post_init__(self) -> None:
        check_config(self)
        require_divisible(self, "d_model", "heads")


class TransformerModel(nn.Module):
    """Input projection + sinusoidal positions + pre-LN encoder + MLP head.

    ``(B, T, D) -> (B, K)`` outputs: logits or regression values (in [0, 1] with
    ``output="sigmoid"``).
    Layers are pre-LayerNorm (``norm_first=True``, with a final LayerNorm), which trains
    more stably than post-LN with warm-up and small data.

    Size: 864,514 parameters at the defaults (input (100, 31), d_model 128, 4 layers,
    8 heads, FFN 512, head 128-512-2; 864,001 with one output).
    """

    architecture = "transformer"

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.input_proj = nn.Linear(c.input_dim + (c.symbol_dim if c.n_symbols else 0), c.d_model)
        self.pos = SinusoidalPositionalEncoding(c.d_model, c.seq_len)
        self.drop = nn.Dropout(c.dropout)
        if c.pooling == "cls":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c.d_model))
            nn.init.normal_(self.cls_token, std=0.02)
        layer = nn.TransformerEncoderLayer(
            c.d_model, c.heads, c.ffn, c.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, c.n_layers, norm=nn.LayerNorm(c.d_model), enable_nested_tensor=False
        )
        self.head = MLPHead(c.d_model, c.fc, c.n_classes, c.dropout)
        if c.n_symbols:  # built last: the layers above draw the same initial weights
            self.symbols = SymbolEmbedding(c.n_symbols, c.symbol_dim, type(self).__name__)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.config.input_dim, type(self).__name__, self.config.n_symbols)
        if self.config.n_symbols:
            x = self.symbols(x)  # (B, T, F + 1) -> (B, T, F + symbol_dim)
        z = self.drop(self.pos(self.input_proj(x)))  # (B, T, d_model)
        if self.config.pooling == "cls":
            cls = self.cls_token.expand(z.shape[0], -1, -1)  # (B, 1, d_model), no position
            z = torch.cat([cls, z], dim=1)  # (B, 1 + T, d_model)
        h = self.encoder(z)  # (B, T', d_model)
        summary = h[:, 0] if self.config.pooling == "cls" else h.mean(dim=1)  # (B, d_model)
        out = self.head(summary)  # (B, K)
        return torch.sigmoid(out) if self.config.output == "sigmoid" else out
