"""CNNLSTMAttention: Conv1d features -> bidirectional LSTM -> attention pooling -> heads.

The FX sequence model. Its heads share the trunk and are trained together with
:class:`moola.models.nn.MultiTaskLoss`. Two ways to say which heads it has:

- ``heads={"direction": 2, "volatility": "regression", "regime": 3}``: one head per entry,
  in order, each ``"regression"`` (one value per window) or a number of classes (logits);
  ``forward`` returns ``{name: (B,) values | (B, C) logits}``. This is what
  ``NeuralEstimator(task="multitask", heads=...)`` builds;
- ``heads=None`` (the default): a direction head of ``n_classes`` logits, plus optional
  ``volatility_head`` (regression) and ``regime_head`` (``n_regimes`` classes) flags; with
  only the direction head ``forward`` returns its logits tensor (the classifier).

Convolutions use 'same' padding (centred kernels). That is safe here: a window holds only
bars at or before its decision time, so a kernel reaching "ahead" of step t inside the
window still sees nothing after the window's end. (Causal padding would matter only for
per-step streaming outputs, which this model does not give.)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from moola.core.errors import ConfigError
from moola.models.nn._layers import (
    AttentionPooling,
    Heads,
    MLPHead,
    Rate,
    Size,
    Size0,
    SomeWidths,
    SymbolEmbedding,
    Widths,
    check_config,
    check_input,
    head_width,
)


@dataclass(frozen=True, kw_only=True)
class CNNLSTMAttentionConfig:
    """Shape of a :class:`CNNLSTMAttention`.

    Parameters
    ----------
    input_dim : int, default 4
        Channels per step.
    seq_len : int, default 120
        Window length the model is meant for (recorded; any length runs).
    n_classes : int, default 2
        Direction classes (logits); 1 gives a single binary logit.
    conv_channels : list of int, default (32, 64)
        Output channels of each Conv1d layer.
    kernel_sizes : list of int, default (3, 5)
        Kernel size of each Conv1d layer (same length as ``conv_channels``).
    lstm_hidden : int, default 64
        LSTM width per direction.
    lstm_layers : int, default 1
        Stacked LSTM layers.
    attention_dim : int, default 64
        Width of the additive attention scorer.
    fc : list of int, default (64,)
        Hidden widths of each head.
    dropout : float, default 0.2
        Dropout after each convolution, between LSTM layers, and in the heads.
    volatility_head : bool, default False
        Add a regression head ``"volatility"`` (one value per window).
    regime_head : bool, default False
        Add a classification head ``"regime"`` with ``n_regimes`` logits.
    n_regimes : int, default 3
        Regime classes (low / medium / high volatility).
    heads : dict or None, default None
        Output heads, name -> ``"regression"`` or a number of classes >= 2, in output
        order. When given, it replaces the direction head and the two flags (which must
        stay off; ``n_classes`` and ``n_regimes`` are then unused).
    n_symbols : int, default 0
        Symbols the model tells apart. With ``n_symbols > 0`` windows carry one more
        channel, last: the window's symbol id (``0..n_symbols - 1``), which is embedded
        (``symbol_dim`` wide) and concatenated to every step's features before the
        encoder (:class:`moola.models.nn._layers.SymbolEmbedding` says why there). 0: no id channel,
        and the module is exactly the one built before this option existed.
    symbol_dim : int, default 8
        Width of the symbol embedding (used only with ``n_symbols > 0``).
    """

    input_dim: Size = 4
    seq_len: Size = 120
    n_classes: Size = 2
    conv_channels: SomeWidths = (32, 64)
    kernel_sizes: SomeWidths = (3, 5)
    lstm_hidden: Size = 64
    lstm_layers: Size = 1
    attention_dim: Size = 64
    fc: Widths = (64,)
    dropout: Rate = 0.2
    volatility_head: bool = False
    regime_head: bool = False
    n_regimes: Size = 3
    heads: Heads = None
    n_symbols: Size0 = 0
    symbol_dim: Size = 8

    def __post_init__(self) -> None:
        check_config(self)
        if self.heads is not None and (self.volatility_head or self.regime_head):
            raise ConfigError(
                f"CNNLSTMAttentionConfig.heads={self.heads!r} names every head; drop "
                "volatility_head/regime_head (or list those heads in heads)."
            )
        if len(self.conv_channels) != len(self.kernel_sizes):
            raise ConfigError(
                f"CNNLSTMAttentionConfig.conv_channels={list(self.conv_channels)} and "
                f"kernel_sizes={list(self.kernel_sizes)} must have the same length "
                "(one kernel size per convolution layer)."
            )

    @property
    def tasks(self) -> tuple[str, ...]:
        """Names of the heads, in output order (``direction`` first without ``heads``)."""
        if self.heads is not None:
            return tuple(self.heads)
        extra = (("volatility",) if self.volatility_head else ()) + (
            ("regime",) if self.regime_head else ()
        )
        return ("direction", *extra)


class CNNLSTMAttention(nn.Module):
    """``(B, T, D)`` -> direction logits ``(B, K)``, or a dict of heads.

    With ``config.heads`` it always returns ``{name: (B,) | (B, C)}``, one entry per head.

    With only the direction head, ``forward`` returns the logits tensor. With auxiliary
    heads it returns ``{"direction": (B, K), "volatility": (B,), "regime": (B, n_regimes)}``
    (only the heads configured). Volatility is an unconstrained value: train it on a
    log or standardised volatility target.

    Size: 93,986 parameters at the defaults (input (120, 4), conv 32/64 with kernels 3/5,
    BiLSTM 2 x 64, attention 64, direction head 128-64-2).
    """

    architecture = "cnn_lstm_attention"

    def __init__(self, config: CNNLSTMAttentionConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        layers: list[nn.Module] = []
        width = c.input_dim + (c.symbol_dim if c.n_symbols else 0)
        for channels, kernel in zip(c.conv_channels, c.kernel_sizes, strict=True):
            layers += [
                nn.Conv1d(width, channels, kernel, padding="same"),
                nn.ReLU(),
                nn.Dropout(c.dropout),
            ]
            width = channels
        self.conv = nn.Sequential(*layers)
        self.lstm = nn.LSTM(
            width,
            c.lstm_hidden,
            num_layers=c.lstm_layers,
            batch_first=True,
            bidirectional=True,
            dropout=c.dropout if c.lstm_layers > 1 else 0.0,
        )
        self.pool = AttentionPooling(2 * c.lstm_hidden, c.attention_dim)
        trunk = 2 * c.lstm_hidden
        if c.n_symbols:  # here: the heads branch below returns early
            self.symbols = SymbolEmbedding(c.n_symbols, c.symbol_dim, type(self).__name__)
        if c.heads is not None:
            self.heads = nn.ModuleDict(
                {
                    name: MLPHead(trunk, c.fc, head_width(kind), c.dropout)
                    for name, kind in c.heads.items()
                }
            )
            return
        self.direction_head = MLPHead(trunk, c.fc, c.n_classes, c.dropout)
        if c.volatility_head:
            self.volatility_head = MLPHead(trunk, c.fc, 1, c.dropout)
        if c.regime_head:
            self.regime_head = MLPHead(trunk, c.fc, c.n_regimes, c.dropout)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The shared trunk: pooled ``(B, 2*lstm_hidden)`` and attention weights ``(B, T)``."""
        check_input(x, self.config.input_dim, type(self).__name__, self.config.n_symbols)
        if self.config.n_symbols:
            x = self.symbols(x)  # (B, T, F + 1) -> (B, T, F + symbol_dim)
        z = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, D, T) -> (B, T, C)
        h, _ = self.lstm(z)  # (B, T, 2H)
        return self.pool(h)  # (B, 2H), (B, T)

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        pooled, _ = self.encode(x)
        if self.config.heads is not None:
            return {
                name: head(pooled).squeeze(-1) if kind == "regression" else head(pooled)
                for (name, kind), head in zip(
                    self.config.heads.items(), self.heads.values(), strict=True
                )
            }  # regression (B,), classes (B, C)
        direction = self.direction_head(pooled)  # (B, K)
        if len(self.config.tasks) == 1:
            return direction
        out = {"direction": direction}
        if self.config.volatility_head:
            out["volatility"] = self.volatility_head(pooled).squeeze(-1)  # (B,)
        if self.config.regime_head:
            out["regime"] = self.regime_head(pooled)  # (B, n_regimes)
        return out
