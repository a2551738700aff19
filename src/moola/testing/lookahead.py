"""The no-lookahead harness: proofs that features and labels see no future bar.

* ``check_feature``: the row at bar t computed from bars[: t + 1] must equal the row t
  of the full computation, at random cut points (early ones in the warm-up included,
  and the last bar). A feature that peeks ahead (``shift(-1)``, centred windows,
  full-sample normalisation, ``bfill``) changes its row t when the future is cut off.
* ``check_label``: a label at t may look ahead, but only up to the horizon end it
  records; computing it on bars[: horizon_end[t] + 1] must give the full-series value.
* ``check_incremental``: streaming the bars through ``FeatureSet.stream`` (bounded
  buffer, run-time path) gives the batch rows, which also proves every ``lookback()``.

Values are compared within ``rtol`` of the larger of the value and its column's mean
magnitude, so cancellation noise in near-zero values (a ratio of 1e-12 instead of 0)
does not count while any real change does; NaN positions must be equal.
Each check raises ``AssertionError`` naming the feature, column, bar and both values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from moola.features.base import Feature

if TYPE_CHECKING:
    from moola.features.featureset import FeatureSet

__all__ = ["check_feature", "check_incremental", "check_label"]


def check_feature(
    feature_or_set: Feature | FeatureSet,
    bars: pd.DataFrame,
    *,
    n_cuts: int = 20,
    seed: int = 0,
    rtol: float = 1e-9,
) -> None:
    """Assert that ``feature_or_set`` computed on bars[: t + 1] gives row t of the full
    computation, for ``n_cuts`` cut points t drawn with ``seed`` (plus the first bar, a
    bar inside the warm-up and the last bar). Also checks the output's index, columns
    and length against the contract."""
    what = _label(feature_or_set)
    full = _compute(feature_or_set, bars, what)
    _check_fast_rows(feature_or_set, bars)
    columns = list(full.columns)
    expected = full.to_numpy(dtype=np.float64)
    scale = _column_scale(expected)
    for t in _cut_points(len(bars), _lookback(feature_or_set), n_cuts, seed):
        partial = _compute(feature_or_set, bars.iloc[: t + 1], what)
        if list(partial.columns) != columns:
            raise AssertionError(
                f"{what}: columns on bars[:{t + 1}] are {list(partial.columns)}, on all bars "
                f"{columns}; columns must not depend on the data."
            )
        row = partial.to_numpy(dtype=np.float64)[-1]
        _compare(what, columns, t, row, expected[t], scale, rtol, "bars[: t + 1]", "all bars")


def check_label(
    label_fn: Callable[[pd.DataFrame], pd.DataFrame],
    bars: pd.DataFrame,
    horizon_end_column: str,
    *,
    n_cuts: int = 20,
    seed: int = 0,
    rtol: float = 1e-9,
    name: str | None = None,
) -> None:
    """Assert that each label depends on bars up to its recorded horizon end only.

    ``label_fn(bars)`` returns a frame aligned with ``bars``; ``horizon_end_column`` in it
    holds, for each row t, the last bar the label used: a row position into ``bars``
    (integer, or float with NaN where the label is undefined) or a timestamp (the last
    bar at or before it). For ``n_cuts`` rows t with a defined horizon end h (h >= t
    required), every column of row t computed on bars[: h + 1] must equal the full
    value. A label that records a horizon shorter than it really uses fails.
    """
    what = name or f"label {getattr(label_fn, '__name__', repr(label_fn))}"
    full = label_fn(bars)
    _check_aligned(full, bars, what)
    if horizon_end_column not in full:
        raise AssertionError(f"{what}: output has no column {horizon_end_column!r}.")
    ends = _horizon_positions(full[horizon_end_column], bars)
    rows = np.arange(len(bars))
    defined = rows[ends >= 0]
    early = defined[ends[defined] < defined]
    if len(early):
        t = int(early[0])
        raise AssertionError(
            f"{what}: row {t} records horizon end {int(ends[t])}, before the row itself; "
            "a label's horizon ends at or after its bar."
        )
    if len(defined) == 0:
        raise AssertionError(f"{what}: no row has a defined horizon end; nothing to check.")
    rng = np.random.default_rng(seed)
    picks = rng.choice(defined, size=min(n_cuts, len(defined)), replace=False)
    picks = np.unique(np.concatenate([picks, defined[:1], defined[-1:]]))
    numeric = [c for c in full.columns if pd.api.types.is_numeric_dtype(full[c])]
    others = [c for c in full.columns if c not in numeric]
    expected = full[numeric].to_numpy(dtype=np.float64)
    scale = _column_scale(expected)
    for t in picks:
        t = int(t)
        h = int(ends[t])
        partial = label_fn(bars.iloc[: h + 1])
        _check_aligned(partial, bars.iloc[: h + 1], what)
        row = partial[numeric].to_numpy(dtype=np.float64)[t]
        _compare(what, numeric, t, row, expected[t], scale, rtol, f"bars[: {h + 1}]", "all bars")
        for column in others:
            got, want = partial[column].iloc[t], full[column].iloc[t]
            if not (got == want or (pd.isna(got) and pd.isna(want))):
                raise AssertionError(
                    f"{what}: column '{column}' at bar {t} is {got!r} on bars[: {h + 1}] "
                    f"(up to its horizon end) but {want!r} on all bars: it looks past bar {h}."
                )


def check_incremental(
    feature_set: FeatureSet | Feature,
    bars: pd.DataFrame,
    *,
    start: int = 0,
    rtol: float = 1e-9,
) -> None:
    """Assert that ``feature_set.stream(bars[:start])`` fed bars[start:] one at a time
    returns the batch rows ``feature_set.compute(bars)`` (float32 columns within their
    own precision). A single ``Feature`` is wrapped in a one-entry set."""
    fset = _as_set(feature_set)
    what = f"feature set '{fset.name}' (incremental)"
    batch = fset.compute(bars)
    columns = list(batch.columns)
    expected = batch.to_numpy(dtype=np.float64)
    scale = _column_scale(expected)
    tolerance = np.array(
        [
            max(rtol, 4 * float(np.finfo(np.float32).eps)) if d == "float32" else rtol
            for d in fset.dtypes.values()
        ]
    )
    stream = fset.stream(bars.iloc[:start] if start else None)
    records = bars.iloc[start:].to_dict("records")
    for offset, bar in enumerate(records):
        t = start + offset
        got = stream.update(bar).to_numpy(dtype=np.float64)
        _compare(what, columns, t, got, expected[t], scale, tolerance, "stream", "batch")


# --------------------------------------------------------------------------- helpers


def _as_set(feature_set: FeatureSet | Feature) -> FeatureSet:
    from moola.features.featureset import FeatureSet

    if isinstance(feature_set, Feature):
        return FeatureSet._of([feature_set], name=feature_set.name)
    return feature_set


def _label(feature_or_set: Feature | FeatureSet) -> str:
    if isinstance(feature_or_set, Feature):
        return f"feature {feature_or_set!r}"
    return f"feature set '{feature_or_set.name}'"


def _lookback(feature_or_set: Feature | FeatureSet) -> int:
    if isinstance(feature_or_set, Feature):
        return feature_or_set.lookback()
    return feature_or_set.lookback


def _compute(feature_or_set: Feature | FeatureSet, bars: pd.DataFrame, what: str) -> pd.DataFrame:
    out = feature_or_set.compute(bars)
    _check_aligned(out, bars, what)
    if isinstance(feature_or_set, Feature):
        declared = list(feature_or_set.columns())
        if list(out.columns) != declared:
            raise AssertionError(
                f"{what}: compute returned columns {list(out.columns)}, columns() declares "
                f"{declared}."
            )
    return out


def _check_fast_rows(feature_or_set: Feature | FeatureSet, bars: pd.DataFrame) -> None:
    """A feature's optional ``compute_rows(bars, dtype)`` (the fast path a feature set
    takes) must equal ``compute(bars)`` converted to ``dtype``, bit for bit, NaN where NaN:
    otherwise a set would hold other values than the feature it names."""
    features = [feature_or_set] if isinstance(feature_or_set, Feature) else feature_or_set.features
    for feature in features:
        rows = getattr(feature, "compute_rows", None)
        if rows is None:
            continue
        what = _label(feature)
        expected = feature.compute(bars)
        for dtype in (np.dtype(np.float64), np.dtype(np.float32)):
            block = rows(bars, dtype)
            for position, column in enumerate(expected.columns):
                got = np.asarray(block[position])
                want = expected[column].to_numpy(dtype=dtype)
                if got.dtype != dtype or got.shape != want.shape:
                    raise AssertionError(
                        f"{what}: compute_rows(bars, {dtype}) gives column {column!r} as "
                        f"{got.dtype} {got.shape}, compute() as {dtype} {want.shape}."
                    )
                differ = ~((got == want) | (np.isnan(got) & np.isnan(want)))
                if differ.any():
                    t = int(np.flatnonzero(differ)[0])
                    raise AssertionError(
                        f"{what}: compute_rows(bars, {dtype}) gives {got[t]!r} for column "
                        f"{column!r} at bar {t}, compute() gives {want[t]!r}; the fast path "
                        "must equal the frame."
                    )


def _check_aligned(out: pd.DataFrame, bars: pd.DataFrame, what: str) -> None:
    if not isinstance(out, pd.DataFrame):
        raise AssertionError(f"{what}: returned {type(out).__name__}, not a DataFrame.")
    if len(out) != len(bars) or not out.index.equals(bars.index):
        raise AssertionError(
            f"{what}: output has {len(out)} rows / another index than its {len(bars)} bars; "
            "it must be aligned with the bars (same index)."
        )


def _cut_points(n: int, lookback: int, n_cuts: int, seed: int) -> np.ndarray:
    """Cut points: the first bar, some in the warm-up, random ones, and the last bar."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    warm = min(max(lookback, 2), n)
    n_warm = max(1, n_cuts // 4)
    fixed = [0, n - 1, min(warm - 1, n - 1)]
    picks = np.concatenate(
        [fixed, rng.integers(0, warm, n_warm), rng.integers(0, n, max(0, n_cuts - n_warm))]
    )
    return np.unique(picks)


def _column_scale(values: np.ndarray) -> np.ndarray:
    """Mean magnitude of each column's finite values (0 for a column with none)."""
    if values.size == 0:
        return np.zeros(values.shape[1] if values.ndim == 2 else 0)
    finite = np.where(np.isfinite(values), np.abs(values), np.nan)
    with np.errstate(all="ignore"):
        counts = np.isfinite(finite).sum(axis=0)
        scale = np.nansum(finite, axis=0) / np.maximum(counts, 1)
    return scale


def _compare(
    what: str,
    columns: list[str],
    t: int,
    got: np.ndarray,
    want: np.ndarray,
    scale: np.ndarray,
    rtol: float | np.ndarray,
    got_from: str,
    want_from: str,
) -> None:
    got_nan, want_nan = np.isnan(got), np.isnan(want)
    with np.errstate(invalid="ignore"):
        close = (got == want) | (np.abs(got - want) <= rtol * np.maximum(np.abs(want), scale))
    bad = np.flatnonzero((got_nan != want_nan) | (~close & ~want_nan & ~got_nan))
    if len(bad):
        i = int(bad[0])
        raise AssertionError(
            f"{what}: column '{columns[i]}' at bar {t} is {got[i]!r} computed from "
            f"{got_from} but {want[i]!r} from {want_from}"
            + (f" ({len(bad)} columns differ)" if len(bad) > 1 else "")
            + ": it depends on bars after t (lookahead) or on history beyond its lookback."
        )


def _horizon_positions(column: pd.Series, bars: pd.DataFrame) -> np.ndarray:
    """Horizon ends as row positions into ``bars``; -1 where undefined."""
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(column):
        stamps = bars["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64)
        ends = pd.to_datetime(column, utc=True)
        defined = ends.notna().to_numpy()
        values = ends.to_numpy(dtype="datetime64[ns]").view(np.int64)
        positions = np.searchsorted(stamps, values, side="right") - 1
        return np.where(defined, positions, -1).astype(np.int64)
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    return np.where(np.isfinite(values) & (values >= 0), values, -1).astype(np.int64)
