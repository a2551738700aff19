"""Volatility regime: is the market calm, normal or wild compared with its own recent past?

The same signal means different things in a quiet and a volatile market (a 20-point move
is noise in one and a breakout in the other), so models and risk rules condition on the
regime. The regime is the percentile rank of the current ATR (TA-Lib) among the ATR
values of the trailing ``window`` bars, the current one included, cut at two quantiles
into a one-hot low / medium / high. Only trailing windows are used, never the whole
series, so the value at bar t depends on bars[: t + 1] only.

The percentile rank of the current value among the ``window`` values is
``(rank - 1) / (window - 1)`` with ties given their average rank (pandas' rolling rank):
0 for the lowest value of the window, 1 for the highest, 0.5 when all are equal. A bar is
``low`` when that rank is below ``low_quantile``, ``high`` when above ``high_quantile``,
``medium`` otherwise. The first ``atr_period + window - 1`` bars (ATR warm-up plus a full
window) are NaN in all three columns. Like pandas' rolling windows, an infinite ATR counts
as missing, and a window holding a missing value gives NaN.

Both the rank and the regime are computed by numba kernels over a histogram of the
window's values by bucket (``_key_space``): a value's bucket is the top bits of its
float64 bit pattern made order-preserving, so buckets follow the values' order
(``x < y`` gives ``bucket(x) <= bucket(y)``, equal values share a bucket) on a roughly
logarithmic scale, with at most ``_KEYS`` buckets over the series' range. A bar adds
its value to the histogram and removes the one leaving the window, O(1) each.

* ``atr_percentile_rank`` keeps a pointer at the current value's bucket and the count of
  values in the buckets below it; the pointer walks from bucket to bucket as the ATR moves
  (a few buckets a bar: the ATR moves little), and the values sharing the current bucket,
  kept in a first-in first-out list per bucket, are compared one by one.
* ``VolatilityRegime`` needs only which side of the two cut points the rank falls on. The
  rank is a monotone function of the integer ``m = 2 * below + equal`` (values below the
  current one, and equal to it, itself included), so each cut is a smallest ``m``
  (``_cuts``), found once, and each cut is followed by a pointer held at the bucket where
  that ``m`` is reached (``_hold``), moved at most a bucket or a few per bar. A value in a
  bucket below (above) a cut's bucket is below (above) it; only a value in the cut's own
  bucket is counted exactly, against the whole window (rare: a few bars in a thousand on
  ATRs; on series made of a few distinct values, every bar, O(window)).

Both reproduce pandas' rank bit for bit (the average rank of ties is a whole or half
number, exact in floating point; tests compare with pandas and a brute-force count on
series with ties, gaps, runs and signed zeros). The run-time path ranks only the last
value, against its trailing window.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
import talib
from pydantic import Field, model_validator

from moola.features.base import Feature, FeatureParams, register_feature
from moola.features.price import atr_lookback, column, frame, need_a_bar

__all__ = ["VolatilityRegime", "atr_percentile_rank", "atr_regime", "last_percentile_rank"]


def atr_percentile_rank(atr: np.ndarray, window: int) -> np.ndarray:
    """Percentile rank (0-1) of each value among the trailing ``window`` values, itself
    included; NaN unless all ``window`` values are finite.

    Equal to ``(pd.Series(atr).rolling(window, min_periods=window).rank() - 1) /
    (window - 1)``, bit for bit.
    """
    values = np.ascontiguousarray(atr, dtype=np.float64)
    out = np.empty(len(values))
    _rolling_percentile(values, int(window), out)
    return out


def atr_regime(
    atr: np.ndarray, window: int, low: float, high: float, dtype: np.dtype | type = np.float64
) -> np.ndarray:
    """The regime one-hot, shape (3, n) of ``dtype``: rows (rank < ``low``, neither, rank >
    ``high``) as 0/1 of the percentile rank ``atr_percentile_rank(atr, window)``, NaN where
    it is NaN; found without computing the rank (see the module docstring), the values
    the same."""
    values = np.ascontiguousarray(atr, dtype=np.float64)
    out = np.empty((3, len(values)), dtype=dtype)
    _rolling_regime(values, int(window), float(low), float(high), out)
    return out


def last_percentile_rank(atr: np.ndarray, window: int) -> float:
    """``atr_percentile_rank(atr, window)[-1]`` from the last ``window`` values alone."""
    return float(_last_percentile(np.ascontiguousarray(atr, dtype=np.float64), int(window)))


@numba.njit(cache=True)
def _last_percentile(values: np.ndarray, window: int) -> float:
    """The percentile rank of the last value among the last ``window`` (see above)."""
    n = values.shape[0]
    if n < window:
        return np.nan
    value = values[n - 1]
    below = 0
    equal = 0  # the value itself included
    for i in range(n - window, n):
        if not np.isfinite(values[i]):
            return np.nan
        below += values[i] < value
        equal += values[i] == value
    return _percentile(below, equal, window)


@numba.njit(cache=True, inline="always")
def _percentile(below: int, equal: int, window: int) -> float:
    """(rank - 1) / (window - 1) for the average rank ``below + (equal + 1) / 2`` of a value
    with ``below`` smaller values and ``equal`` equal ones (itself included). The rank is
    a whole or half number, exact in float64, as is pandas' sum-of-ranks formula."""
    return ((2 * below + equal + 1) * 0.5 - 1.0) / (window - 1)


#: Buckets of the histogram (see the module docstring): the ATR of a window of 1,440 1-minute
#: bars spans one or two octaves of a series spanning six or seven, a few hundred to a
#: thousand buckets, about one value each.
_KEYS = 4096
_SIGN = np.uint64(1 << 63)


@numba.njit(cache=True, inline="always")
def _ordered(bits: np.ndarray, i: int) -> np.uint64:
    """The bits of the finite float ``i`` as an unsigned integer in the floats' order (-0.0
    taken as +0.0, its equal): flip all bits of a negative number, the sign of the rest."""
    u = bits[i]
    if u == _SIGN:
        u = np.uint64(0)
    if u & _SIGN:
        return ~u
    return u | _SIGN


@numba.njit(cache=True)
def _key_space(values: np.ndarray) -> tuple[np.uint64, np.uint64]:
    """(shift, base): bucket(x) = (ordered bits of x >> shift) - base lies in [0, _KEYS)
    for every finite x of ``values``, with the smallest such shift."""
    bits = values.view(np.uint64)
    lo = np.uint64(0xFFFFFFFFFFFFFFFF)
    hi = np.uint64(0)
    for i in range(values.shape[0]):
        if np.isfinite(values[i]):
            u = _ordered(bits, i)
            lo = min(lo, u)
            hi = max(hi, u)
    shift = np.uint64(0)
    while hi > lo and (hi >> shift) - (lo >> shift) >= np.uint64(_KEYS):
        shift += np.uint64(1)
    return shift, lo >> shift


@numba.njit(cache=True)
def _rolling_percentile(values: np.ndarray, window: int, out: np.ndarray) -> None:
    """out[t] = percentile rank of values[t] among values[t - window + 1 : t + 1]; NaN while
    the window is short or holds a non-finite value (see ``atr_percentile_rank``)."""
    bits = values.view(np.uint64)
    shift, base = _key_space(values)
    count = np.zeros(_KEYS, dtype=np.int64)  # finite values of the window per bucket
    head = np.full(_KEYS, -1, dtype=np.int64)  # per bucket, its values' slots, oldest first
    tail = np.empty(_KEYS, dtype=np.int64)
    after = np.empty(window, dtype=np.int64)  # the next slot of the same bucket, or -1
    ring = np.empty(window)  # slot t % window: the value of bar t
    at = 0  # the pointer's bucket
    under = 0  # values in the buckets below it
    missing = 0  # non-finite values in the window
    for t in range(values.shape[0]):
        slot = t % window
        if t >= window:  # the value leaving the window: the oldest of its bucket
            if not np.isfinite(values[t - window]):
                missing -= 1
            else:
                k = np.int64((_ordered(bits, t - window) >> shift) - base)
                count[k] -= 1
                under -= k < at
                head[k] = after[head[k]]
        value = values[t]
        if not np.isfinite(value):
            missing += 1
            out[t] = np.nan
            continue
        k = np.int64((_ordered(bits, t) >> shift) - base)
        count[k] += 1
        under += k < at
        ring[slot] = value
        after[slot] = -1
        if head[k] < 0:
            head[k] = slot
        else:
            after[tail[k]] = slot
        tail[k] = slot
        if missing or t < window - 1:
            out[t] = np.nan
            continue
        while at < k:
            under += count[at]
            at += 1
        while at > k:
            at -= 1
            under -= count[at]
        below = under
        equal = 0  # the value itself included
        s = head[k]
        while s >= 0:
            below += ring[s] < value
            equal += ring[s] == value
            s = after[s]
        out[t] = _percentile(below, equal, window)


@numba.njit(cache=True)
def _cuts(window: int, low: float, high: float) -> tuple[int, int]:
    """The smallest m = 2 * below + equal whose rank is not below ``low``, and the smallest
    whose rank is above ``high`` (2 * window + 1 if none): the rank is monotone in m."""
    below_low = above_high = 2 * window + 1
    for m in range(2 * window, -1, -1):
        rank = ((m + 1) * 0.5 - 1.0) / (window - 1)  # _percentile's arithmetic
        if not rank < low:
            below_low = m
        if rank > high:
            above_high = m
    return below_low, above_high


@numba.njit(cache=True, inline="always")
def _hold(count: np.ndarray, at: int, under: int, cut: int) -> tuple[int, int]:
    """Move a cut's pointer ``at`` (``under``: values in the buckets below it) to where
    2 * under <= cut <= 2 * (under + count[at]) + 1: then every value in a bucket below has
    m < cut, every value in a bucket above has m >= cut."""
    while at > 0 and 2 * under > cut:
        at -= 1
        under -= count[at]
    while at < _KEYS - 1 and 2 * (under + count[at]) + 1 < cut:
        under += count[at]
        at += 1
    return at, under


@numba.njit(cache=True)
def _rolling_regime(
    values: np.ndarray, window: int, low: float, high: float, out: np.ndarray
) -> None:
    """out[:, t] = the one-hot (rank < low, neither, rank > high) of the percentile rank of
    values[t] in its trailing window, or NaN where the rank is NaN; equal to ``_one_hot``
    of ``atr_percentile_rank`` without computing the rank (see the module docstring)."""
    bits = values.view(np.uint64)
    shift, base = _key_space(values)
    cut_low, cut_high = _cuts(window, low, high)
    count = np.zeros(_KEYS, dtype=np.int64)
    ring = np.empty(window)
    at_low = under_low = at_high = under_high = 0
    missing = 0
    slot = 0  # t % window
    for t in range(values.shape[0]):
        if t >= window:
            if not np.isfinite(values[t - window]):
                missing -= 1
            else:
                k = np.int64((_ordered(bits, t - window) >> shift) - base)
                count[k] -= 1
                under_low -= k < at_low
                under_high -= k < at_high
        value = values[t]
        ring[slot] = value
        slot = slot + 1 if slot + 1 < window else 0
        if not np.isfinite(value):
            missing += 1
            out[0, t] = out[1, t] = out[2, t] = np.nan
            continue
        k = np.int64((_ordered(bits, t) >> shift) - base)
        count[k] += 1
        under_low += k < at_low
        under_high += k < at_high
        if missing or t < window - 1:
            out[0, t] = out[1, t] = out[2, t] = np.nan
            continue
        at_low, under_low = _hold(count, at_low, under_low, cut_low)
        at_high, under_high = _hold(count, at_high, under_high, cut_high)
        if k in (at_low, at_high):  # in a cut's bucket: count exactly
            below = equal = 0
            for i in range(window):
                below += ring[i] < value
                equal += ring[i] == value
            m = 2 * below + equal
            is_low, is_high = m < cut_low, m >= cut_high
        else:
            is_low, is_high = k < at_low, k > at_high
        out[0, t] = 1.0 if is_low else 0.0
        out[1, t] = 0.0 if (is_low or is_high) else 1.0
        out[2, t] = 1.0 if is_high else 0.0


@numba.njit(cache=True)
def _one_hot(rank: np.ndarray, low: float, high: float, out: np.ndarray) -> None:
    """out[:, t] = (rank < low, neither, rank > high) as 0/1, or NaN where rank is NaN."""
    for t in range(rank.shape[0]):
        r = rank[t]
        if r != r:
            out[0, t] = out[1, t] = out[2, t] = np.nan
        else:
            is_low = r < low
            is_high = r > high
            out[0, t] = 1.0 if is_low else 0.0
            out[1, t] = 0.0 if (is_low or is_high) else 1.0
            out[2, t] = 1.0 if is_high else 0.0


class VolatilityRegimeParams(FeatureParams):
    atr_period: int = Field(14, ge=1, le=100_000, description="ATR window in bars.")
    window: int = Field(
        1440, ge=3, le=10_000_000, description="Trailing bars the ATR is ranked against."
    )
    low_quantile: float = Field(0.33, gt=0.0, lt=1.0, description="Rank below which: low.")
    high_quantile: float = Field(0.67, gt=0.0, lt=1.0, description="Rank above which: high.")

    @model_validator(mode="after")
    def _check_order(self) -> VolatilityRegimeParams:
        if self.low_quantile >= self.high_quantile:
            raise ValueError(
                f"low_quantile ({self.low_quantile}) must be below high_quantile "
                f"({self.high_quantile}), e.g. 0.33 and 0.67."
            )
        return self


@register_feature
class VolatilityRegime(Feature):
    """One-hot ATR regime: ``vol_regime_low``, ``vol_regime_medium``, ``vol_regime_high``.

    See the module docstring for the percentile rule; NaN (all three) during warm-up.
    """

    name = "volatility_regime"
    Params = VolatilityRegimeParams

    def columns(self) -> tuple[str, ...]:
        return ("vol_regime_low", "vol_regime_medium", "vol_regime_high")

    def lookback(self) -> int:
        return self.params.window - 1 + atr_lookback(self.params.atr_period)

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        out = atr_regime(self._atr(bars), p.window, p.low_quantile, p.high_quantile)
        return frame(bars, self.columns(), out)

    def compute_rows(self, bars: pd.DataFrame, dtype: np.dtype) -> np.ndarray:
        """``compute(bars)``'s columns as the rows of a (3, n) array of ``dtype``, written in
        that dtype directly (0, 1 and NaN are exact in float32)."""
        p = self.params
        return atr_regime(self._atr(bars), p.window, p.low_quantile, p.high_quantile, dtype)

    def update_last(self, bars: pd.DataFrame) -> np.ndarray:
        """The last row of ``compute(bars)``: the last ATR ranked within its trailing window
        only (the run-time path)."""
        need_a_bar(bars)
        p = self.params
        rank = np.array([last_percentile_rank(self._atr(bars), p.window)])
        out = np.empty((3, 1))
        _one_hot(rank, p.low_quantile, p.high_quantile, out)
        return out[:, 0]

    def _atr(self, bars: pd.DataFrame) -> np.ndarray:
        high, low, close = (column(bars, name) for name in ("high", "low", "close"))
        return talib.ATR(high, low, close, timeperiod=self.params.atr_period)
