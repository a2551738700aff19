"""The TS2Vec encoder (Yue et al., "TS2Vec: Towards Universal Representation of Time
Series", AAAI 2022): a per-timestep representation of a window from dilated convolutions.

``(B, T, input_dim)`` -> input projection (``Linear``) -> timestamp masking (training only)
-> ``depth + 1`` residual blocks of two dilated ``Conv1d`` (kernel 3, dilation ``2**i``,
GELU before each) -> dropout -> ``(B, T, repr_dim)``. Every step keeps its own vector, so
the contrastive objective (``moola.pretrain.ts2vec``) can compare timestamps, and a
classifier can read per-step features or the max-pooled window vector (``encode``).

Written by hand because no maintained package ships the encoder as a plain module (the
authors' ``ts2vec`` repository is a script bundle with its own training loop). Layer names
follow that repository (``input_fc``, blocks of ``conv1``/``conv2``/``projector``) so the
architecture is easy to check against it. A model that takes pretrained TS2Vec weights holds
this module as the attribute ``encoder`` (tensor names ``encoder.input_fc.weight``,
``encoder.blocks.0.conv1.weight``, ...), as the pretraining model does; ``input_fc`` is
the layer that reads the input channels, so ``moola.pretrain.transfer`` refuses an artifact
whose ``input_fc.weight`` was trained on another feature set.

Not causal: each convolution is centred (it reads ``dilation`` steps ahead), as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from moola.core.errors import ConfigError
from moola.models.nn._layers import check_input, require_fraction, require_int

__all__ = ["TS2VecEncoder", "TS2VecEncoderConfig"]

_KERNEL = 3  # the paper's kernel size; padding = dilation keeps the length for kernel 3


@dataclass(frozen=True, kw_only=True)
class TS2VecEncoderConfig:
    """Shape of a :class:`TS2VecEncoder`; defaults are the paper's.

    Parameters
    ----------
    input_dim : int, default 11
        Channels per step (11 for ``moola.features.window.relative_windows``).
    hidden : int, default 64
        Width of the input projection and of the hidden convolution blocks.
    repr_dim : int, default 320
        Width of the output representation of each step.
    depth : int, default 10
        Hidden-width residual blocks; one more block maps to ``repr_dim``, so the dilations
        run ``1, 2, ..., 2**depth``. The receptive field is ``1 + 4 * (2**(depth+1) - 1)``
        steps; ``depth=4`` (125 steps) already covers a 105-bar window, and deeper blocks
        see mostly padding there, so a smaller depth is much cheaper at little cost.
    dropout : float, default 0.1
        Dropout on the output representation (training only).
    mask_prob : float, default 0.5
        Probability that a timestamp's projected input is zeroed during training
        (binomial timestamp masking); 0 turns masking off, as a classifier fine-tuning the
        encoder wants.
    """

    input_dim: int = 11
    hidden: int = 64
    repr_dim: int = 320
    depth: int = 10
    dropout: float = 0.1
    mask_prob: float = 0.5

    def __post_init__(self) -> None:
        for name in ("input_dim", "hidden", "repr_dim"):
            require_int(self, name)
        require_int(self, "depth", minimum=0)
        require_fraction(self, "dropout")
        require_fraction(self, "mask_prob")

    @property
    def receptive_field(self) -> int:
        """Steps one output step can see: ``1 + 4 * (2**(depth+1) - 1)``."""
        return 1 + 2 * (_KERNEL - 1) * (2 ** (self.depth + 1) - 1)


class _ConvBlock(nn.Module):
    """``x + conv2(gelu(conv1(gelu(x))))`` on ``(B, C, T)``; a 1x1 ``projector`` maps the
    residual when the width changes (and always in the final block, as in the paper)."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int, final: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_ch, out_ch, _KERNEL, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(out_ch, out_ch, _KERNEL, padding=dilation, dilation=dilation)
        self.projector = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch or final else None

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.projector is None else self.projector(x)  # (B, out, T)
        h = _same_conv(self.conv1, F.gelu(x))  # (B, out, T)
        h = _same_conv(self.conv2, F.gelu(h))  # (B, out, T)
        return h + residual


def _same_conv(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """``conv(x)``; when the dilation reaches past both ends of every window (dilation >=
    T) the side taps only ever read zero padding, so the centre tap alone gives the same
    numbers and gradients without convolving over ``2 * dilation`` padded steps."""
    if conv.dilation[0] >= x.shape[-1]:
        return F.conv1d(x, conv.weight[:, :, _KERNEL // 2 : _KERNEL // 2 + 1], conv.bias)
    return conv(x)


class TS2VecEncoder(nn.Module):
    """``(B, T, input_dim) -> (B, T, repr_dim)``: per-step TS2Vec representations.

    Size: 637,888 parameters at the defaults (input 11, hidden 64, repr 320, depth 10;
    the last block, 64 -> 320, holds 390,080 of them). At ``depth=4`` it is 489,664.

    ``forward(x, mask)``: ``mask`` is a boolean ``(B, T)`` tensor, True where a step is
    kept; without one, a training-mode encoder draws a binomial mask (keep probability
    ``1 - mask_prob``) from torch's global RNG and an eval-mode encoder masks nothing.
    """

    def __init__(self, config: TS2VecEncoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.input_fc = nn.Linear(c.input_dim, c.hidden)
        widths = [c.hidden] * c.depth + [c.repr_dim]
        self.blocks = nn.ModuleList(
            _ConvBlock(c.hidden if i == 0 else widths[i - 1], w, 2**i, final=i == c.depth)
            for i, w in enumerate(widths)
        )
        self.repr_dropout = nn.Dropout(c.dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        check_input(x, self.config.input_dim, type(self).__name__)
        B, T, _ = x.shape
        h = self.input_fc(x)  # (B, T, hidden)
        if mask is None and self.training and self.config.mask_prob > 0:
            mask = torch.rand(B, T, device=x.device) >= self.config.mask_prob  # (B, T)
        if mask is not None:
            if mask.shape != (B, T):
                raise ConfigError(
                    f"TS2VecEncoder got a mask of shape {tuple(mask.shape)} for input "
                    f"{tuple(x.shape)}; pass a boolean (batch, time) = ({B}, {T}) mask."
                )
            h = h * mask.unsqueeze(-1).to(h.dtype)  # masked steps become 0
        h = h.transpose(1, 2)  # (B, hidden, T)
        for block in self.blocks:
            h = block(h)  # (B, width, T)
        return self.repr_dropout(h.transpose(1, 2))  # (B, T, repr_dim)

    def encode(self, x: Tensor) -> Tensor:
        """The window's instance representation ``(B, repr_dim)``: the unmasked per-step
        representations max-pooled over time (the paper's full-series encoding)."""
        keep = torch.ones(x.shape[0], x.shape[1], dtype=torch.bool, device=x.device)
        return self.forward(x, keep).amax(dim=1)  # (B, repr_dim)
