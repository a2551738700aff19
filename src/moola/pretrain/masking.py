"""Which time steps a masked autoencoder hides: random steps or contiguous blocks.

Both return a ``(B, T)`` bool mask (True = hidden) with exactly ``k = round(ratio * T)``
hidden steps per window (at least 1, at most ``T - 1``), so every window contributes the
same number of reconstruction targets. Random masking (BERT's 15%) hides scattered steps,
which an LSTM can often fill by interpolating its neighbours; block masking hides runs of
``block_length`` steps, which forces it to model the shape of a move. Randomness comes only
from the ``numpy.random.Generator`` passed in: one generator state, one mask.

Written by hand: a few vectorised numpy lines; the libraries that ship masking (tsai,
transformers) tie it to their own models and tensor types.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from moola.core.errors import ConfigError

__all__ = ["MaskKind", "block_mask", "make_mask", "masked_count", "random_mask"]

MaskKind = Literal["random", "block"]


def masked_count(length: int, ratio: float) -> int:
    """Steps hidden per window: ``round(ratio * length)`` kept within ``[1, length - 1]``."""
    if not 0 < ratio < 1:
        raise ConfigError(
            f"mask ratio must be in (0, 1) (got {ratio}); 0.15 hides 15% of the steps."
        )
    if length < 2:
        raise ConfigError(f"Masking needs windows of at least 2 steps (got {length}).")
    return min(length - 1, max(1, round(ratio * length)))


def random_mask(
    batch: int, length: int, rng: np.random.Generator, ratio: float = 0.15
) -> np.ndarray:
    """``(B, T)`` bool: ``masked_count(T, ratio)`` steps per window, chosen uniformly."""
    k = masked_count(length, ratio)
    hidden = np.argsort(rng.random((batch, length)), axis=1)[:, :k]  # (B, k) distinct steps
    mask = np.zeros((batch, length), dtype=bool)
    np.put_along_axis(mask, hidden, True, axis=1)
    return mask


def block_mask(
    batch: int,
    length: int,
    rng: np.random.Generator,
    ratio: float = 0.15,
    block_length: int = 5,
) -> np.ndarray:
    """``(B, T)`` bool: ``masked_count(T, ratio)`` steps per window in non-overlapping runs
    of ``block_length`` (the last run takes the remainder), at uniformly random places.

    Runs may touch (then they read as one longer run); they never overlap, so the count
    is exact.
    """
    if int(block_length) != block_length or block_length < 1:
        raise ConfigError(f"block_length must be a positive integer (got {block_length!r}).")
    k = masked_count(length, ratio)
    n_blocks = -(-k // block_length)  # ceil
    sizes = np.full(n_blocks, block_length, dtype=np.int64)
    sizes[-1] = k - block_length * (n_blocks - 1)
    # Lay out free visible steps and n_blocks blocks as free + n_blocks items in a row:
    # every choice of the blocks' item positions is equally likely.
    free = length - k
    items = free + n_blocks
    at = np.sort(np.argsort(rng.random((batch, items)), axis=1)[:, :n_blocks], axis=1)
    before = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # masked steps before each block
    starts = at - np.arange(n_blocks)[None, :] + before[None, :]  # (B, n_blocks)
    steps = np.arange(length)[None, None, :]  # (1, 1, T)
    inside = (steps >= starts[:, :, None]) & (steps < (starts + sizes)[:, :, None])
    return inside.any(axis=1)


def make_mask(
    batch: int,
    length: int,
    rng: np.random.Generator,
    *,
    ratio: float = 0.15,
    kind: MaskKind = "random",
    block_length: int = 5,
) -> np.ndarray:
    """``random_mask`` or ``block_mask`` by ``kind``."""
    if kind == "random":
        return random_mask(batch, length, rng, ratio)
    if kind == "block":
        return block_mask(batch, length, rng, ratio, block_length)
    raise ConfigError(f"Unknown mask kind {kind!r}; use 'random' or 'block'.")
