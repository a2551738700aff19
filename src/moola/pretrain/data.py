"""Pretraining batches streamed from an unlabeled corpus, never materialised.

A corpus of millions of windows is a ``WindowSet``: bar values plus one start per window.
``UnlabeledWindows`` is a ``moola.training.trainer.BatchSource`` over it: the training loop
draws a seeded shuffled order over the whole corpus each epoch, and for each batch of
indices the source copies only those windows, turns them into the scale-free relative view
(``relative_windows``), normalises each channel with the corpus statistics, augments them
and (for the masked autoencoder) draws their masks; TS2Vec crops and masks inside its
training step, so it asks for windows only (``masks=False``). Every random number of a
batch comes from a generator seeded with ``(seed, key)``, ``key`` being the optimiser step
the batch feeds, so batches are the same with or without worker processes and when a run
resumes.
"""

from __future__ import annotations

import numpy as np
import torch

from moola.core.errors import ConfigError
from moola.data.windows import WindowSet
from moola.features.window import RELATIVE_COLUMNS, relative_windows
from moola.pretrain.augment import AugmentConfig, Augmenter
from moola.pretrain.masking import MaskKind, make_mask

__all__ = ["UnlabeledWindows", "corpus_indices", "fit_normaliser"]

_STATS_BATCH = 1024
_CHANNELS = len(RELATIVE_COLUMNS)  # the relative view: 11 per step


def corpus_indices(n_windows: int, max_windows: int | None, seed: int) -> np.ndarray:
    """Window indices a run trains on: all of them, or a seeded random ``max_windows``
    subset (sorted), so a smaller run is a sample of the whole corpus, not its start."""
    if n_windows < 1:
        raise ConfigError("The unlabeled dataset holds no windows; write a larger one.")
    if max_windows is None or max_windows >= n_windows:
        return np.arange(n_windows, dtype=np.int64)
    rng = np.random.default_rng([seed, 1])
    return np.sort(rng.choice(n_windows, size=max_windows, replace=False)).astype(np.int64)


def fit_normaliser(
    windows: WindowSet, indices: np.ndarray, n_sample: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation ``(D,)`` float32 of the relative view over a
    seeded sample of ``n_sample`` of ``indices`` (all steps of each window). A constant
    channel (e.g. volume change without volume) gets std 1: left unscaled."""
    rng = np.random.default_rng([seed, 2])
    take = indices if len(indices) <= n_sample else rng.choice(indices, n_sample, replace=False)
    total, squares, count = np.zeros(_CHANNELS), np.zeros(_CHANNELS), 0
    for first in range(0, len(take), _STATS_BATCH):
        x = relative_windows(windows.take(np.sort(take[first : first + _STATS_BATCH])))
        x = x.astype(np.float64).reshape(-1, _CHANNELS)  # (B * T, D)
        total += x.sum(axis=0)
        squares += (x * x).sum(axis=0)
        count += len(x)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    std = np.where(std > 1e-8 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


class UnlabeledWindows:
    """``BatchSource`` of ``(x (B, T, D) float32, mask (B, T) bool)`` pretraining batches,
    or of ``(x,)`` alone with ``masks=False``.

    Parameters
    ----------
    windows : WindowSet
        The corpus (OHLC, or OHLC + volume, per bar).
    indices : array of int
        The windows this source serves; sample ``i`` is window ``indices[i]``.
    mean, std : array (D,)
        Normaliser of the relative view (``fit_normaliser``).
    mask_ratio, mask_kind, block_length
        The masks (``moola.pretrain.masking.make_mask``).
    masks : bool, default True
        Draw a mask per window; False yields ``(x,)`` batches (objectives that mask
        inside their step, e.g. TS2Vec). The windows are the same either way.
    augment : AugmentConfig or None
        Augmentations applied before masking (None: none).
    seed : int
        Base seed of augmentation and masks.
    """

    def __init__(
        self,
        windows: WindowSet,
        indices: np.ndarray,
        *,
        mean: np.ndarray,
        std: np.ndarray,
        mask_ratio: float = 0.15,
        mask_kind: MaskKind = "random",
        block_length: int = 5,
        masks: bool = True,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.windows = windows
        self.indices = np.asarray(indices, dtype=np.int64)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if self.mean.shape != (self.n_channels,) or self.std.shape != (self.n_channels,):
            raise ConfigError(
                f"The normaliser has shapes {self.mean.shape} and {self.std.shape}, but the "
                f"relative view has {self.n_channels} channels."
            )
        self.mask_ratio, self.mask_kind, self.block_length = mask_ratio, mask_kind, block_length
        self.masks = masks
        self.augmenter = Augmenter(augment) if augment is not None else None
        self.seed = seed

    @property
    def n_channels(self) -> int:
        """Channels of the relative view: 11 (with or without a volume column)."""
        return _CHANNELS

    @property
    def length(self) -> int:
        return self.windows.length

    def __len__(self) -> int:
        return int(self.indices.size)

    def batch(self, indices: torch.Tensor, key: int) -> tuple[torch.Tensor, ...]:
        rows = self.indices[np.asarray(indices, dtype=np.int64)]
        x = relative_windows(self.windows.take(rows))  # (B, T, 11) float32
        x = (x - self.mean) / self.std
        rng = np.random.default_rng([self.seed, 3, key])
        if self.augmenter is not None:
            x = self.augmenter(x, rng)
        windows = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if not self.masks:
            return (windows,)
        mask = make_mask(
            len(rows),
            x.shape[1],
            rng,
            ratio=self.mask_ratio,
            kind=self.mask_kind,
            block_length=self.block_length,
        )
        return windows, torch.from_numpy(mask)
