"""A torch ``Dataset`` over stored feature windows that never materialises the corpus.

``Registry.load_feature_windows`` gives windows as start positions into one float32 feature
table (one row per bar). A model wants ``(L, F)`` tensors; stacking every window would cost
N x L x F values (1M windows of 60 x 31 float32: 7.4 GB) for what is a 3-symbol table of a
few hundred MB. ``FeatureWindowDataset`` keeps the table (the loaded array itself) and one
int64 start per selected window, and ``dataset[i]`` is rows ``start .. start + L - 1`` of the
table as a tensor sharing its memory: a view, copied only when the ``DataLoader`` stacks a
batch (which it fetches with one numpy gather, ``__getitems__``).

Pickling it (``DataLoader(num_workers > 0)``) sends the table and the starts once per
worker, never per window; with the default ``fork`` start method nothing is sent at all.

It is also a ``moola.training.trainer.BatchSource``: ``Trainer.run(module, dataset,
step=...)`` trains on it directly, each optimiser step's batch gathered from the table by
``dataset.batch(indices, key)`` (targets in the dtype the loss named by ``loss`` takes), so
a run over a split part trains on the same values in the same order as ``Trainer.fit`` over
the materialised ``(N, L, F)`` arrays without ever making them.

``LazyWindows`` is the bare form of the same idea for ``NeuralEstimator``: a table, starts,
a length and optional symbol ids, standing in for the ``(N, L, F[+1])`` array wherever the
estimator takes windows (``fit``, ``predict*``); it gathers the windows a batch asks for
(``take``) and says how many windows cover each row (``row_counts``, the weights of the
estimator's normaliser).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate

from moola.core.errors import ConfigError
from moola.models.training_params import LOSS_NAMES

if TYPE_CHECKING:
    from moola.data.registry import FeatureWindows

__all__ = ["FeatureWindowDataset", "LazyWindows"]


def _selected(indices: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
    """``indices`` as int64 positions into the ``n`` windows (all of them when ``None``)."""
    if indices is None:
        return np.arange(n, dtype=np.int64)
    index = np.asarray(indices)
    if index.size == 0:
        return np.empty(0, dtype=np.int64)
    if index.ndim != 1 or index.dtype.kind not in "iu":
        raise ConfigError(
            "indices must be a 1-D sequence of integer window positions (e.g. split.train), "
            f"got shape {index.shape} of dtype {index.dtype}.",
            param="indices",
        )
    index = index.astype(np.int64, copy=False)
    bad = np.flatnonzero((index < 0) | (index >= n))
    if bad.size:
        raise ConfigError(
            f"indices {index[bad[:5]].tolist()} (at positions {bad[:5].tolist()}) are out of "
            f"range for {n} windows (valid: 0..{n - 1}).",
            param="indices",
        )
    return index


def _pick(values: np.ndarray, selected: np.ndarray | None) -> np.ndarray:
    """``values`` itself (no copy) when every window is kept, else the selected ones."""
    return values if selected is None else values[selected]


# Symbols are hashed this many at a time: pandas' object hashing allocates ~50 bytes per
# value, which over 1M windows would be a transient 0.4x of a (60, 31) feature table.
_CHUNK = 1 << 16


def _sorted_names(symbols: np.ndarray) -> tuple[str, ...]:
    """Every distinct symbol, sorted (so ids do not depend on bar or split order)."""
    names: set[str] = set()
    for first in range(0, symbols.size, _CHUNK):
        names.update(str(s) for s in pd.unique(symbols[first : first + _CHUNK]))
    return tuple(sorted(names))


def _symbol_codes(symbols: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """The id of each symbol in ``index``, in the narrowest unsigned integer type (a few
    symbols: one byte per window); items widen it to int64."""
    codes = np.empty(symbols.size, dtype=np.min_scalar_type(max(len(index) - 1, 0)))
    for first in range(0, symbols.size, _CHUNK):
        local, names = pd.factorize(symbols[first : first + _CHUNK])
        lookup = np.array([index[str(name)] for name in names], dtype=codes.dtype)
        codes[first : first + local.size] = lookup[local]
    return codes


def _checked_table(values: np.ndarray) -> np.ndarray:
    """The feature table itself (never a copy), refused unless C-contiguous float32."""
    if values.dtype != np.float32 or values.ndim != 2 or not values.flags.c_contiguous:
        raise ConfigError(
            f"The feature table must be a 2-D C-contiguous float32 array, got {values.dtype} "
            f"of shape {values.shape}; load the windows with Registry.load_feature_windows.",
            param="windows",
        )
    return values


# Losses that read one real-valued target per sample; the others take int64 class indices.
_FLOAT_TARGET_LOSSES = ("bce", "mse")


def _target_dtype(loss: str | None) -> torch.dtype:
    """The dtype of the targets ``loss`` takes, as ``Trainer.fit`` converts them: float32
    for ``bce``/``mse``, int64 class indices otherwise (and when no loss is named)."""
    if loss is None:
        return torch.int64
    if loss not in LOSS_NAMES:
        raise ConfigError(
            f"Unknown loss {loss!r}; use one of {', '.join(LOSS_NAMES)} (or None for int64 "
            "class indices).",
            param="loss",
        )
    return torch.float32 if loss in _FLOAT_TARGET_LOSSES else torch.int64


def _tensor(values: np.ndarray) -> torch.Tensor:
    """``values`` as a tensor sharing its memory; a read-only buffer (a memory map opened
    ``r``) is shared too, without torch's warning: nothing here writes through it."""
    if values.flags.writeable:
        return torch.from_numpy(values)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(values)


class FeatureWindowDataset(Dataset):
    """Feature windows as ``(x, y)`` items: ``x`` a float32 ``(L, F)`` tensor, ``y`` the
    window's class index (int64, or float32 when ``loss`` is ``"bce"`` or ``"mse"``).

    ``windows`` is a ``FeatureWindows`` (``Registry.load_feature_windows``); ``indices``
    keeps only those windows, in that order (a split part such as ``split.train``): item
    ``i`` is window ``indices[i]``. With ``with_symbol_id`` an item is ``(x, y, symbol_id)``,
    the id (int64) an index into ``symbols`` (every symbol of ``windows``, sorted, so the
    ids are the same whatever ``indices`` picks). Unlabeled windows give ``(x,)`` or
    ``(x, symbol_id)``.

    ``x`` is a view of the feature table. Over all windows the dataset shares the
    ``WindowSet``'s starts and the labels (no copy) and adds one byte per window for symbol
    ids when asked; over ``indices`` it holds one start and label (int64) per item picked.

    ``loss`` names the loss the targets feed (``TrainerConfig.loss``): ``"bce"`` and
    ``"mse"`` get float32 targets (0.0 / 1.0 for binary direction), the others and ``None``
    int64 class indices. ``batch(indices, key)`` makes the dataset a ``BatchSource`` for
    ``Trainer.run``.
    """

    def __init__(
        self,
        windows: FeatureWindows,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        with_symbol_id: bool = False,
        loss: str | None = None,
    ) -> None:
        self.target_dtype = _target_dtype(loss)
        n = len(windows.X)
        selected = None if indices is None else _selected(indices, n)
        self.length = int(windows.X.length)
        self.columns: tuple[str, ...] = tuple(windows.columns)
        self.values = _checked_table(windows.X.values)
        self._offsets = np.arange(self.length, dtype=np.int64)  # rows of a window, from its start
        # All windows: the WindowSet's own starts and labels, shared; a part: its subset.
        self.starts = _pick(np.asarray(windows.X.starts, dtype=np.int64), selected)
        self.labels: torch.Tensor | None = None
        task = getattr(windows, "task", None) or "classification"
        if windows.y is not None and task == "classification":
            labels = _pick(np.asarray(windows.y, dtype=np.int64), selected)
            self.labels = torch.from_numpy(labels)
        elif windows.y is not None:  # values (regression) or one column per head (multitask)
            if self.target_dtype != torch.float32:
                raise ConfigError(
                    f"{windows.ref} has {task} targets; they are values, not class indices: "
                    "build the dataset with loss='mse' (the loss that reads them).",
                    param="loss",
                )
            source = windows.Y if task == "multitask" else windows.y
            values = _pick(np.asarray(source, dtype=np.float32), selected)
            self.labels = torch.from_numpy(np.ascontiguousarray(values))
        symbols = np.asarray(windows.symbols, dtype=object)
        self.symbols: tuple[str, ...] = _sorted_names(symbols)
        self.symbol_index: dict[str, int] = {s: k for k, s in enumerate(self.symbols)}
        self.with_symbol_id = bool(with_symbol_id)
        self.symbol_ids: np.ndarray | None = None
        if self.with_symbol_id:
            codes = _symbol_codes(symbols, self.symbol_index)
            self.symbol_ids = codes if selected is None else codes[selected]

    def __len__(self) -> int:
        return int(self.starts.size)

    def __repr__(self) -> str:
        return (
            f"FeatureWindowDataset(n={len(self)}, length={self.length}, "
            f"features={self.values.shape[1]}, labeled={self.labels is not None}, "
            f"symbols={len(self.symbols)})"
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape the items would have if stacked: ``(N, L, F)`` (never made here)."""
        return (len(self), self.length, int(self.values.shape[1]))

    @property
    def nbytes_overhead(self) -> int:
        """Bytes held beyond the feature table: starts, labels and symbol ids."""
        held = self.starts.nbytes
        if self.labels is not None:
            held += self.labels.numel() * self.labels.element_size()
        if self.symbol_ids is not None:
            held += self.symbol_ids.nbytes
        return int(held)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"Item {i} out of range for {n} windows.")
        start = int(self.starts[i])
        item: tuple[torch.Tensor, ...] = (_tensor(self.values[start : start + self.length]),)
        if self.labels is not None:
            item += (self.labels[i].to(self.target_dtype),)
        if self.symbol_ids is not None:
            item += (torch.tensor(int(self.symbol_ids[i]), dtype=torch.int64),)
        return item

    def _gather(self, index: np.ndarray) -> list[torch.Tensor]:
        """The stacked ``(x, y[, symbol_id])`` of items ``index`` (int64, negatives count
        from the end): the windows' rows taken from the table in one call, ``(B, L, F)``."""
        n = len(self)
        bad = (index < -n) | (index >= n)
        if bad.any():
            raise IndexError(f"Item(s) {index[bad][:5].tolist()} out of range for {n} windows.")
        rows = (self.starts[index][:, None] + self._offsets).reshape(-1)  # (B * L,)
        x = self.values.take(rows, axis=0).reshape(index.size, self.length, self.values.shape[1])
        stacked = [torch.from_numpy(x)]
        if self.labels is not None:
            stacked.append(self.labels[torch.from_numpy(index)].to(self.target_dtype))
        if self.symbol_ids is not None:
            stacked.append(torch.from_numpy(self.symbol_ids[index].astype(np.int64)))
        return stacked

    def batch(self, indices: torch.Tensor, key: int) -> tuple[torch.Tensor, ...]:
        """``BatchSource.batch`` for ``Trainer.run``: the stacked ``(x, y[, symbol_id])`` of
        items ``indices`` (a 1-D int64 tensor), as ``Trainer.fit`` would index them out of
        the materialised arrays. Nothing here is random, so ``key`` is not used."""
        del key
        return tuple(self._gather(indices.numpy().astype(np.int64, copy=False)))

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, ...]]:
        """Items ``indices`` (what a ``DataLoader`` asks per batch), gathered from the table
        in one indexing call instead of one Python call per window; equal to
        ``[self[i] for i in indices]``."""
        return _Batch(self._gather(np.asarray(indices, dtype=np.int64).reshape(-1)))

    @staticmethod
    def collate(items: Sequence[tuple[torch.Tensor, ...]]) -> list[torch.Tensor]:
        """``DataLoader(..., collate_fn=FeatureWindowDataset.collate)``: the batch the
        dataset already gathered in one piece, instead of ``default_collate`` stacking its
        items again one tensor at a time (the same values and types either way)."""
        if isinstance(items, _Batch):
            return list(items.stacked)
        return default_collate(list(items))


class _Batch(Sequence):
    """Items of one batch, read lazily from the stacked tensors they are views of: a
    sequence of ``(x, y[, symbol_id])`` as ``default_collate`` expects, and the stacked
    tensors themselves for ``FeatureWindowDataset.collate`` (no per-item work then)."""

    def __init__(self, stacked: list[torch.Tensor]) -> None:
        self.stacked = stacked

    def __len__(self) -> int:
        return int(self.stacked[0].shape[0])

    def __getitem__(self, j: int) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        if not -len(self) <= j < len(self):
            raise IndexError(f"Item {j} out of range for a batch of {len(self)}.")
        return tuple(part[j] for part in self.stacked)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return zip(*(part.unbind(0) for part in self.stacked), strict=True)


class LazyWindows:
    """Windows into a float32 feature table, given to ``NeuralEstimator`` in place of the
    ``(N, L, F)`` array they would make: each is ``length`` rows of ``values`` from its
    start, never copied until a batch asks for it (``take``).

    ``values`` is the ``(n_rows, F)`` table (kept, not copied; C-contiguous float32),
    ``starts`` one row position per window. With ``symbol_ids`` (one per window) a window
    gets its id as one more, last channel, the same on every step, laid out as
    ``moola.pipeline.feature_inputs.with_symbol_ids`` lays it out (float32).
    """

    def __init__(
        self,
        values: np.ndarray,
        starts: Sequence[int] | np.ndarray,
        length: int,
        symbol_ids: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        self.values = _checked_table(values)
        if isinstance(length, bool) or int(length) != length or length < 1:
            raise ConfigError(f"length must be an integer >= 1, got {length!r}.", param="length")
        self.length = int(length)
        starts = np.asarray(starts)
        if starts.ndim != 1 or (starts.size and starts.dtype.kind not in "iu"):
            raise ConfigError(
                f"starts must be a 1-D array of integer row positions, got shape {starts.shape} "
                f"of dtype {starts.dtype}.",
                param="starts",
            )
        self.starts = starts.astype(np.int64, copy=False)
        n_rows = self.values.shape[0]
        bad = np.flatnonzero((self.starts < 0) | (self.starts + self.length > n_rows))
        if bad.size:
            raise ConfigError(
                f"Windows {bad[:5].tolist()} start at rows {self.starts[bad[:5]].tolist()}, "
                f"but a window of {self.length} rows must start in 0..{n_rows - self.length} "
                f"of a table of {n_rows} rows.",
                param="starts",
            )
        self.symbol_ids: np.ndarray | None = None
        if symbol_ids is not None:
            ids = np.asarray(symbol_ids)
            if ids.shape != self.starts.shape:
                raise ConfigError(
                    f"symbol_ids must hold one id per window ({self.starts.size}); got shape "
                    f"{ids.shape}.",
                    param="symbol_ids",
                )
            self.symbol_ids = ids
        self._offsets = np.arange(self.length, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.starts.size)

    def __repr__(self) -> str:
        return (
            f"LazyWindows(n={len(self)}, length={self.length}, features="
            f"{self.values.shape[1]}, symbol_ids={self.symbol_ids is not None})"
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, L, C)`` of the array the windows would make (C: features, + 1 with ids)."""
        channels = int(self.values.shape[1]) + (self.symbol_ids is not None)
        return (len(self), self.length, channels)

    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Windows ``indices`` as a new float32 ``(k, L, C)`` array: their rows gathered from
        the table in one call (and the id channel last, with ``symbol_ids``)."""
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        rows = (self.starts[index][:, None] + self._offsets).reshape(-1)  # (k * L,)
        n_features = self.values.shape[1]
        if self.symbol_ids is None:
            return self.values.take(rows, axis=0).reshape(index.size, self.length, n_features)
        out = np.empty((index.size, self.length, n_features + 1), dtype=np.float32)
        out[:, :, :-1] = self.values.take(rows, axis=0).reshape(index.size, self.length, -1)
        out[:, :, -1] = np.asarray(self.symbol_ids[index], dtype=np.float32)[:, None]
        return out

    def row_counts(self) -> np.ndarray:
        """How many windows cover each table row, ``(n_rows,)`` int64 (a difference array
        over the starts: +1 at a start, -1 one past its end), so statistics over every
        window and step are sums over rows weighted by these counts."""
        n_rows = self.values.shape[0]
        delta = np.bincount(self.starts, minlength=n_rows + 1)
        delta -= np.bincount(self.starts + self.length, minlength=n_rows + 1)
        return np.cumsum(delta[:n_rows])
