"""Per-feature normalisation fitted on the training part only (issue 16, Normalisation).

A feature set says how each column is scaled (``FeatureSet.scaling``: ``"zscore"``,
``"robust"`` or ``"none"``). ``fit_scaler`` learns the statistics from the training rows
of a feature table and nothing else; ``Scaler.transform`` applies them, unchanged, to the
training, validation and test windows and at inference; ``Scaler.to_dict`` /
``Scaler.from_dict`` is the JSON form that a run manifest and a model artifact store.

Which rows are "the training part" for windows: the union of the feature rows the
training windows cover, rows ``start .. start + length - 1`` of each (``window_rows``).
Each row counts once however many overlapping windows hold it, so a stride-1 window set
and a thinned one over the same bars fit the same statistics; rows outside every
training window (warm-up, gaps, validation and test rows, and the rows after the last
training window that a label horizon looks at) never reach the fit.

Statistics, per column, computed in float64 over those rows:

* ``zscore``: centre = mean, scale = population standard deviation (``ddof=0``);
* ``robust``: centre = median, scale = interquartile range ``q75 - q25`` (numpy's
  default linear interpolation);
* ``none``: centre 0, scale 1 (the column passes through).

A spread of zero (a constant column in training) or a spread that is not finite gives
scale 1, so that column is only centred instead of divided by zero. Non-finite values in
the training rows are refused (the column and row are named): feature windows never hold
a warm-up NaN, so one there means the rows are not what the caller thinks.

Pure numpy: no torch, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from moola.core.errors import ConfigError

__all__ = [
    "DEFAULT_SCALE",
    "SCALE_METHODS",
    "Scaler",
    "fit_scaler",
    "window_rows",
]

#: The normalisation methods a feature set entry may name (``scale:``).
SCALE_METHODS: tuple[str, ...] = ("zscore", "robust", "none")
#: The method of an entry that names none.
DEFAULT_SCALE = "zscore"
#: Version of the ``Scaler.to_dict`` layout.
_FORMAT = 1


@dataclass(frozen=True, eq=False)
class Scaler:
    """Per-column ``(x - center) / scale``, fitted by ``fit_scaler``.

    ``columns`` and ``methods`` are in the feature table's column order; ``center_`` and
    ``scale_`` are float64 ``(F,)`` arrays; ``n_rows_`` is how many training rows the fit
    saw (for the manifest).
    """

    columns: tuple[str, ...]
    methods: tuple[str, ...]
    center_: np.ndarray
    scale_: np.ndarray
    n_rows_: int

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``X`` (any ``(..., F)`` array, F = ``len(columns)``) scaled column by column.

        Returns a new array of ``X``'s float dtype (float32 stays float32; other dtypes
        become float64); the arithmetic is done in float64.
        """
        values = np.asarray(X)
        if values.ndim < 1 or values.shape[-1] != len(self.columns):
            raise ConfigError(
                f"Scaler.transform needs an array whose last axis holds the "
                f"{len(self.columns)} columns {list(self.columns)}; got shape {values.shape}."
            )
        dtype = values.dtype if values.dtype.kind == "f" else np.dtype(np.float64)
        out = (values.astype(np.float64, copy=False) - self.center_) / self.scale_
        return out.astype(dtype, copy=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what a run manifest and a model artifact store); floats are
        written at full precision, so ``from_dict`` gives back the same bits."""
        return {
            "format": _FORMAT,
            "columns": list(self.columns),
            "methods": list(self.methods),
            "center": [float(v) for v in self.center_],
            "scale": [float(v) for v in self.scale_],
            "n_rows": int(self.n_rows_),
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        columns: Sequence[str] | None = None,
        methods: Mapping[str, str] | None = None,
    ) -> Scaler:
        """A scaler stored by ``to_dict``, checked against what it will be applied to.

        ``columns`` (the feature table's columns, in order) and ``methods`` (the feature
        set's ``scaling``), when given, must equal the stored ones: a model applied to
        other columns, or to a set whose scaling changed since the fit, is refused with
        the columns that differ.
        """
        try:
            stored_columns = tuple(str(c) for c in data["columns"])
            stored_methods = tuple(str(m) for m in data["methods"])
            center = np.array(data["center"], dtype=np.float64)
            scale = np.array(data["scale"], dtype=np.float64)
            n_rows = int(data["n_rows"])
            layout = int(data.get("format", _FORMAT))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"Stored scaler is malformed ({type(exc).__name__}: {exc}); it needs "
                "columns, methods, center, scale and n_rows as written by Scaler.to_dict."
            ) from None
        if layout != _FORMAT:
            raise ConfigError(
                f"Stored scaler has format {layout}; this moola reads format {_FORMAT}."
            )
        n = len(stored_columns)
        if not (len(stored_methods) == center.shape[0] == scale.shape[0] == n):
            raise ConfigError(
                f"Stored scaler is malformed: {n} columns but {len(stored_methods)} methods, "
                f"{center.shape[0]} centres and {scale.shape[0]} scales."
            )
        unknown = sorted({m for m in stored_methods if m not in SCALE_METHODS})
        if unknown:
            raise ConfigError(
                f"Stored scaler names unknown method(s) {unknown}; known: "
                f"{', '.join(SCALE_METHODS)}."
            )
        if not (np.isfinite(center).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ConfigError("Stored scaler has a non-finite centre or a non-positive scale.")
        if columns is not None:
            _check_columns(stored_columns, tuple(columns))
        if methods is not None:
            _check_methods(stored_columns, stored_methods, methods)
        return cls(stored_columns, stored_methods, center, scale, n_rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scaler):
            return NotImplemented
        return (
            self.columns == other.columns
            and self.methods == other.methods
            and self.n_rows_ == other.n_rows_
            and self.center_.tobytes() == other.center_.tobytes()
            and self.scale_.tobytes() == other.scale_.tobytes()
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: compared, never hashed


def window_rows(starts: np.ndarray | Sequence[int], length: int) -> np.ndarray:
    """Sorted unique feature-table rows covered by windows of ``length`` starting at
    ``starts``: the union of ``[start, start + length - 1]`` over the windows (the rows
    ``fit_scaler`` fits on for a window set's training windows).

    ``starts`` for the training windows of a ``FeatureWindows`` ``fw`` are
    ``fw.X.starts[train_index]`` and ``length`` is ``fw.X.length``.
    """
    if int(length) != length or length < 1:
        raise ConfigError(f"Window length must be a positive integer, got {length!r}.")
    first = np.asarray(starts)
    if first.ndim != 1 or (first.size and first.dtype.kind not in "iu"):
        raise ConfigError("Window starts must be a 1-D array of integer row positions.")
    if first.size and first.min() < 0:
        raise ConfigError(f"Window starts must be >= 0, got {int(first.min())}.")
    first = np.unique(first.astype(np.int64, copy=False))
    if first.size == 0:
        return first
    # Runs of consecutive covered rows, without an (N, length) array: a row is covered
    # when the last start at or before it is within length - 1 of it.
    candidates = np.arange(int(first[0]), int(first[-1]) + int(length), dtype=np.int64)
    last_start = first[np.searchsorted(first, candidates, side="right") - 1]
    return candidates[candidates - last_start < length]


def fit_scaler(
    X: np.ndarray,
    columns: Sequence[str],
    methods: Mapping[str, str] | str,
    rows: np.ndarray | Sequence[int],
) -> Scaler:
    """Fit per-column statistics on rows ``rows`` of the feature table ``X`` only.

    ``X`` is ``(n_rows, F)`` (a stored feature table, e.g. ``FeatureWindows.X.values``;
    a memmap is read only at ``rows``), ``columns`` its F column names, ``methods`` the
    method of every column (``FeatureSet.scaling``) or one method for all, and ``rows``
    the training rows (``window_rows`` of the training windows; repeated rows count
    once). See the module docstring for the statistics.
    """
    values = X
    if not isinstance(values, np.ndarray) or values.ndim != 2:
        raise ConfigError(
            f"fit_scaler needs a 2-D feature table (n_rows, F), got shape "
            f"{getattr(values, 'shape', None)}; for windows pass the table they view "
            "(WindowSet.values) and window_rows(...) of the training windows."
        )
    names = tuple(str(c) for c in columns)
    if len(names) != values.shape[1]:
        raise ConfigError(
            f"fit_scaler got {len(names)} column names for a table of {values.shape[1]} "
            "columns; give one name per column, in order."
        )
    if len(set(names)) != len(names):
        twice = sorted({c for c in names if names.count(c) > 1})
        raise ConfigError(f"fit_scaler got column name(s) {twice} more than once.")
    chosen = _methods_for(names, methods)
    picked = np.asarray(rows)
    if picked.ndim != 1 or (picked.size and picked.dtype.kind not in "iu"):
        raise ConfigError("Training rows must be a 1-D array of integer row positions.")
    picked = np.unique(picked.astype(np.int64, copy=False))
    if picked.size == 0:
        raise ConfigError("fit_scaler got no training rows; a scaler needs at least one row.")
    if picked[0] < 0 or picked[-1] >= values.shape[0]:
        raise ConfigError(
            f"Training rows must lie in 0..{values.shape[0] - 1} (the table's rows); got "
            f"{int(picked[0])}..{int(picked[-1])}."
        )
    center = np.zeros(len(names), dtype=np.float64)
    scale = np.ones(len(names), dtype=np.float64)
    for j, (name, method) in enumerate(zip(names, chosen, strict=True)):
        if method == "none":
            continue
        column = np.asarray(values[picked, j], dtype=np.float64)  # (n_train,)
        bad = np.flatnonzero(~np.isfinite(column))
        if bad.size:
            raise ConfigError(
                f"Column '{name}' has {bad.size} non-finite value(s) in the training rows, "
                f"first at row {int(picked[bad[0]])} ({column[bad[0]]}); a scaler is fitted "
                "on settled rows only (leave warm-up rows out of the windows)."
            )
        if method == "zscore":
            center[j] = column.mean()
            spread = column.std()
        else:  # robust
            q25, center[j], q75 = np.percentile(column, [25.0, 50.0, 75.0])
            spread = q75 - q25
        scale[j] = spread if math.isfinite(spread) and spread > 0 else 1.0
    return Scaler(names, chosen, center, scale, int(picked.size))


def _methods_for(columns: tuple[str, ...], methods: Mapping[str, str] | str) -> tuple[str, ...]:
    """Each column's method, checked: known, and given for exactly these columns."""
    if isinstance(methods, str):
        chosen = tuple(methods for _ in columns)
    else:
        missing = [c for c in columns if c not in methods]
        extra = [c for c in methods if c not in set(columns)]
        if missing or extra:
            raise ConfigError(
                f"Scaling methods do not match the table's columns: no method for {missing}, "
                f"methods for unknown column(s) {extra}."
            )
        chosen = tuple(str(methods[c]) for c in columns)
    unknown = [(c, m) for c, m in zip(columns, chosen, strict=True) if m not in SCALE_METHODS]
    if unknown:
        shown = ", ".join(f"'{c}': {m!r}" for c, m in unknown[:5])
        raise ConfigError(
            f"Unknown scaling method for column(s) {shown}; use one of {', '.join(SCALE_METHODS)}."
        )
    return chosen


def _check_columns(stored: tuple[str, ...], given: tuple[str, ...]) -> None:
    if stored == given:
        return
    missing = [c for c in stored if c not in given]
    extra = [c for c in given if c not in stored]
    detail = (
        f"missing {missing}, not fitted {extra}"
        if missing or extra
        else "the same columns in another order"
    )
    raise ConfigError(
        f"Scaler was fitted on columns {list(stored)} but is applied to {list(given)} "
        f"({detail}); use the feature set the model was trained with."
    )


def _check_methods(
    columns: tuple[str, ...], stored: tuple[str, ...], given: Mapping[str, str]
) -> None:
    changed = [
        f"'{c}': fitted {m!r}, now {given.get(c)!r}"
        for c, m in zip(columns, stored, strict=True)
        if given.get(c) != m
    ]
    extra = [c for c in given if c not in set(columns)]
    if changed or extra:
        more = f"; not fitted: {extra}" if extra else ""
        raise ConfigError(
            f"Scaler methods differ from the feature set's scaling for column(s) "
            f"{', '.join(changed) or '(none)'}{more}; refit the scaler or use the set it "
            "was fitted with."
        )
