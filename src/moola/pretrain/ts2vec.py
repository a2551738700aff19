"""TS2Vec pretraining: hierarchical contrastive learning over two overlapping crops.

Yue et al., "TS2Vec: Towards Universal Representation of Time Series" (AAAI 2022). Each
window yields two random crops that share a segment; the encoder (with random timestamp
masking) represents both, and the representations of the shared segment must agree:

- instance-wise: at each timestamp, a window's two views against every other view in the
  batch (negatives: other windows at the same timestamp);
- temporal: within a window, a timestamp's two views against the other timestamps of both
  views (negatives: the same window at other times).

Both terms are computed at every scale, halving the length by max-pooling (kernel 2) until
one step is left (instance-wise only there), and averaged over scales. Pairs are scored
by plain dot products, without normalisation or temperature, as in the paper, in float32
even under the trainer's mixed precision.

Written by hand: the objective is a few tensor lines and no maintained package exposes it
apart from the authors' own training loop. ``TS2VecStep`` plugs it into the one training
loop, ``moola.training.trainer.Trainer.run``; it needs only ``(windows,)`` batches.
``moola.pipeline.pretrain.pretrain_ts2vec`` (``moola pretrain ts2vec``) runs it over a
registry's unlabeled corpus, streamed, with resumable checkpoints, and writes the encoder
as ``artifacts/encoders/dilconv_ts2vec_rel11_vN.pt`` (``ARCH``, ``OBJECTIVE``) with its
card; ``adapter_lstm`` loads it (``pretrained_encoder=PATH``).

Randomness: in training mode crops and masks come from torch's global RNG, which
``Trainer.run`` seeds, so a seeded run is repeatable on the CPU. In eval mode (validation)
crops come from a generator seeded afresh with ``eval_seed`` on every batch, so validation
losses compare across epochs and do not disturb the training stream.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from moola.core.errors import ConfigError
from moola.models.nn.ts2vec_encoder import TS2VecEncoder, TS2VecEncoderConfig

#: Name parts of the encoder artifacts TS2Vec pretraining writes: dilated-convolution
#: encoder, TS2Vec objective (``dilconv_ts2vec_rel11_vN``).
ARCH, OBJECTIVE = "dilconv", "ts2vec"

__all__ = [
    "ARCH",
    "OBJECTIVE",
    "CropPair",
    "TS2VecConfig",
    "TS2VecModel",
    "TS2VecStep",
    "crop_views",
    "hierarchical_contrastive_loss",
    "instance_contrastive_loss",
    "random_crops",
    "take_per_row",
    "temporal_contrastive_loss",
]


@dataclass(frozen=True, kw_only=True)
class TS2VecConfig:
    """The objective's hyperparameters (the encoder's shape lives in its own config).

    Parameters
    ----------
    alpha : float, default 0.5
        Weight of the instance-wise term; the temporal term weighs ``1 - alpha``.
    temporal_unit : int, default 0
        Scales (pooling levels) below this skip the temporal term; crops are at least
        ``2 ** (temporal_unit + 1)`` steps long.
    eval_seed : int, default 0
        Seed of the crops drawn in eval mode (validation loss).
    """

    alpha: float = 0.5
    temporal_unit: int = 0
    eval_seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.alpha, bool) or not 0.0 <= float(self.alpha) <= 1.0:
            raise ConfigError(
                f"TS2VecConfig.alpha={self.alpha!r} is invalid: pass 0 <= alpha <= 1."
            )
        for name in ("temporal_unit", "eval_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"TS2VecConfig.{name}={value!r} is invalid: pass an integer >= 0."
                )

    @property
    def min_crop(self) -> int:
        """Shortest overlap of the two crops: ``2 ** (temporal_unit + 1)``."""
        return 2 ** (self.temporal_unit + 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for an encoder card."""
        return asdict(self)


# ----------------------------------------------------------------------------- losses


def _full_precision(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Autocast switched off on CUDA (the trainer's mixed precision); a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", enabled=False)
    return contextlib.nullcontext()


def _contrast_pairs(a: Tensor, b: Tensor) -> Tensor:
    """Mean InfoNCE over groups ``(G, N, C)``: item ``n`` of ``a`` and of ``b`` are
    positives; every other of the ``2N - 1`` items in the group is a negative."""
    N = a.shape[1]
    z = torch.cat([a, b], dim=1).float()  # (G, 2N, C)
    with _full_precision(z.device):  # unnormalised dot products overflow bf16's precision
        sim = z @ z.transpose(1, 2)  # (G, 2N, 2N)
    self_pair = torch.eye(2 * N, dtype=torch.bool, device=z.device)
    log_p = F.log_softmax(sim.masked_fill(self_pair, float("-inf")), dim=-1)  # (G, 2N, 2N)
    i = torch.arange(N, device=z.device)
    rows = torch.cat([i, i + N])  # each item's positive is its other view
    cols = torch.cat([i + N, i])
    return -log_p[:, rows, cols].mean()


def instance_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Instance-wise term for views ``(B, T, C)``: at each timestamp, each window's two
    views are positives against the other windows' views. 0 for a batch of one."""
    if z1.shape[0] == 1:
        return z1.new_zeros((), dtype=torch.float32)
    return _contrast_pairs(z1.transpose(0, 1), z2.transpose(0, 1))  # groups = timestamps


def temporal_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Temporal term for views ``(B, T, C)``: in each window, a timestamp's two views are
    positives against the other timestamps of both views. 0 for a single step."""
    if z1.shape[1] == 1:
        return z1.new_zeros((), dtype=torch.float32)
    return _contrast_pairs(z1, z2)  # groups = windows


def hierarchical_contrastive_loss(
    z1: Tensor, z2: Tensor, *, alpha: float = 0.5, temporal_unit: int = 0
) -> Tensor:
    """The TS2Vec loss of two aligned views ``(B, T, C)`` of the same steps.

    At scale ``d = 0, 1, ...`` (length ``T``, ``T // 2``, ... by max-pooling with kernel
    2): ``alpha * instance + (1 - alpha) * temporal`` (temporal only when
    ``d >= temporal_unit``); at length 1 only ``alpha * instance``. Returns the sum over
    scales divided by the number of scales.
    """
    if z1.shape != z2.shape or z1.dim() != 3:
        raise ConfigError(
            f"hierarchical_contrastive_loss needs two (B, T, C) views of one shape; got "
            f"{tuple(z1.shape)} and {tuple(z2.shape)}."
        )
    loss = z1.new_zeros((), dtype=torch.float32)
    scales = 0
    while z1.shape[1] > 1:
        if alpha != 0:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        if scales >= temporal_unit and alpha != 1:
            loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)
        scales += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)  # (B, T//2, C)
        z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
    if alpha != 0:
        loss = loss + alpha * instance_contrastive_loss(z1, z2)
    scales += 1
    return loss / scales


# ----------------------------------------------------------------------------- crops


@dataclass(frozen=True)
class CropPair:
    """Two crops of windows of length ``T`` that share ``[left, right)`` (shifted by each
    row's ``offsets``): view 1 is ``[eleft, right)``, view 2 is ``[left, eright)``, so the
    shared segment is view 1's last ``overlap`` steps and view 2's first ``overlap``.

    ``eleft <= left < right <= eright``; every row's views lie inside ``[0, T)``.
    """

    left: int
    right: int
    eleft: int
    eright: int
    offsets: Tensor  # (B,) int64, one shift per window

    @property
    def overlap(self) -> int:
        """Length of the shared segment."""
        return self.right - self.left

    def view1(self) -> tuple[Tensor, int]:
        """Start of view 1 in each row ``(B,)`` and its length."""
        return self.offsets + self.eleft, self.right - self.eleft

    def view2(self) -> tuple[Tensor, int]:
        """Start of view 2 in each row ``(B,)`` and its length."""
        return self.offsets + self.left, self.eright - self.left


def _randint(low: int, high: int, generator: torch.Generator | None, size: int = 1) -> Tensor:
    """``size`` integers uniform in ``[low, high)`` from ``generator`` (CPU)."""
    return torch.randint(low, high, (size,), generator=generator)


def random_crops(
    batch_size: int, length: int, *, min_crop: int = 2, generator: torch.Generator | None = None
) -> CropPair:
    """Draw the paper's two overlapping crops for a batch of windows of ``length`` steps.

    Overlap length uniform in ``[min_crop, length]``, its position uniform; each view
    extends it outwards by a random amount; each row then gets its own shift that keeps
    both views inside the window. Draws from ``generator`` (default: torch's global RNG).
    """
    if length < min_crop:
        raise ConfigError(
            f"TS2Vec needs windows of at least {min_crop} steps (2 ** (temporal_unit + 1)); "
            f"got {length}. Use longer windows or a smaller temporal_unit."
        )
    overlap = int(_randint(min_crop, length + 1, generator))
    left = int(_randint(0, length - overlap + 1, generator))
    right = left + overlap
    eleft = int(_randint(0, left + 1, generator))
    eright = int(_randint(right, length + 1, generator))
    offsets = _randint(-eleft, length - eright + 1, generator, batch_size)  # (B,)
    return CropPair(left, right, eleft, eright, offsets)


def take_per_row(x: Tensor, starts: Tensor, length: int) -> Tensor:
    """``x[b, starts[b] : starts[b] + length]`` for every row: ``(B, T, D) -> (B, length, D)``."""
    steps = starts.to(x.device).unsqueeze(1) + torch.arange(length, device=x.device)  # (B, L)
    rows = torch.arange(x.shape[0], device=x.device).unsqueeze(1)  # (B, 1)
    return x[rows, steps]


def crop_views(x: Tensor, crops: CropPair) -> tuple[Tensor, Tensor]:
    """The two crops of windows ``x (B, T, D)``: view 1 and view 2 (see :class:`CropPair`)."""
    return take_per_row(x, *crops.view1()), take_per_row(x, *crops.view2())


# ----------------------------------------------------------------------------- model & step


class TS2VecModel(nn.Module):
    """What TS2Vec pretraining trains: a :class:`TS2VecEncoder` under the attribute
    ``encoder``, so its tensors are named ``encoder.*`` as in every model that loads them
    (e.g. ``adapter_lstm``). ``forward`` is the encoder's."""

    def __init__(self, config: TS2VecEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = TS2VecEncoder(config)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.encoder(x, mask)  # (B, T, repr_dim)


class TS2VecStep(nn.Module):
    """The TS2Vec loss of ``module`` on a batch ``(windows,)``: a ``Trainer.run`` step.

    ``module(view)`` must map ``(B, L, D)`` to per-step representations ``(B, L, C)``
    (a :class:`TS2VecModel` or a bare :class:`TS2VecEncoder`). Extra arrays in the batch
    are ignored. See the module docstring for where the randomness comes from.
    """

    def __init__(self, config: TS2VecConfig | None = None) -> None:
        super().__init__()
        self.config = config or TS2VecConfig()

    def forward(self, module: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        x = batch[0]  # (B, T, D)
        c = self.config
        generator = None if module.training else torch.Generator().manual_seed(c.eval_seed)
        crops = random_crops(x.shape[0], x.shape[1], min_crop=c.min_crop, generator=generator)
        view1, view2 = crop_views(x, crops)
        z1 = module(view1)[:, -crops.overlap :]  # (B, overlap, C): shared part of view 1
        z2 = module(view2)[:, : crops.overlap]  # (B, overlap, C): shared part of view 2
        return hierarchical_contrastive_loss(z1, z2, alpha=c.alpha, temporal_unit=c.temporal_unit)
