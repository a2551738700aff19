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

The rank is computed by a numba kernel that keeps the trailing window sorted (each bar
removes the value that leaves and inserts the new one; see ``_rolling_percentile``), a
few times faster than pandas' skip list, and reproduces pandas' rank bit for bit (the
average rank of ties is a whole or half number, exact in floating point). The run-time
path ranks only the last value, against its trailing window.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
import talib
from pydantic import Field, model_validator

from moola.features.base import Feature, FeatureParams, register_feature
from moola.features.price import atr_lookback, column, frame, need_a_bar

__all__ = ["VolatilityRegime", "atr_percentile_rank", "last_percentile_rank"]


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


# The window's finite values are kept sorted in consecutive blocks of at most 2 * per
# values (block b's values <= block b + 1's), so a bar costs a walk over a few blocks, a
# count over one and a shift within one, instead of a shift through the whole window.
# All blocks in use are non-empty; a block that fills up or empties makes the blocks be
# dealt out afresh, ``per`` values each (rare: every few thousand bars on a random walk).
# ``per`` is _BLOCK, or the square root of the window for windows over 4,096 bars, so that
# the blocks stay few.
_BLOCK = 64


@numba.njit(cache=True)
def _deal(
    vals: np.ndarray, cnt: np.ndarray, cap: int, per: int, size: int, spare: np.ndarray
) -> int:
    """Deal the ``size`` sorted values out evenly over ceil(size / per) blocks (at least
    one); returns the number of blocks in use."""
    k = 0
    for b in range(cnt.shape[0]):
        for i in range(cnt[b]):
            spare[k] = vals[b * cap + i]
            k += 1
        cnt[b] = 0
    blocks = max(1, (size + per - 1) // per)
    k = 0
    for b in range(blocks):
        take = (size - k) // (blocks - b)
        for i in range(take):
            vals[b * cap + i] = spare[k + i]
        cnt[b] = take
        k += take
    return blocks


@numba.njit(cache=True, inline="always")
def _find(vals: np.ndarray, cnt: np.ndarray, cap: int, blocks: int, value: float, b: int) -> int:
    """The first block whose largest value is >= ``value`` (the last block if none), walked
    to from block ``b`` (the ATR moves little from bar to bar)."""
    b = min(b, blocks - 1)
    while b > 0 and vals[(b - 1) * cap + cnt[b - 1] - 1] >= value:
        b -= 1
    while b < blocks - 1 and vals[b * cap + cnt[b] - 1] < value:
        b += 1
    return b


@numba.njit(cache=True, inline="always")
def _count(vals: np.ndarray, start: int, n: int, value: float) -> tuple[int, int]:
    """(values < ``value``, values == ``value``) in vals[start : start + n]; unsigned
    indices let LLVM vectorise the loop."""
    below = np.int64(0)
    equal = np.int64(0)
    for i in range(np.uint64(start), np.uint64(start + n)):
        below += np.int64(vals[i] < value)
        equal += np.int64(vals[i] == value)
    return below, equal


@numba.njit(cache=True)
def _rolling_percentile(values: np.ndarray, window: int, out: np.ndarray) -> None:
    """out[t] = percentile rank of values[t] among values[t - window + 1 : t + 1]; NaN while
    the window is short or holds a non-finite value (see ``atr_percentile_rank``)."""
    per = max(_BLOCK, int(np.sqrt(window)))
    cap = 2 * per
    vals = np.empty(((window + per - 1) // per + 1) * cap)  # block b: vals[b * cap:]
    cnt = np.zeros(vals.shape[0] // cap, dtype=np.int64)
    spare = np.empty(window)
    blocks = 1
    size = 0  # finite values in the window
    missing = 0  # non-finite values in the window
    at_in = 0
    at_out = 0
    one = np.uint64(1)
    for t in range(values.shape[0]):
        if t >= window:  # the value leaving the window
            leaving = values[t - window]
            if not np.isfinite(leaving):
                missing -= 1
            else:
                b = at_out = _find(vals, cnt, cap, blocks, leaving, at_out)
                m = cnt[b]
                pos = b * cap + _count(vals, b * cap, m, leaving)[0]  # an equal value
                for i in range(np.uint64(pos), np.uint64(b * cap + m - 1)):
                    vals[i] = vals[i + one]
                cnt[b] = m - 1
                size -= 1
                if m == 1 and blocks > 1:
                    blocks = _deal(vals, cnt, cap, per, size, spare)
        value = values[t]
        if not np.isfinite(value):
            missing += 1
            out[t] = np.nan
            continue
        below = 0
        equal = 1  # the value itself
        b = 0
        pos = 0
        if size:
            b = _find(vals, cnt, cap, blocks, value, at_in)
            m = cnt[b]
            pos, same = _count(vals, b * cap, m, value)
            below = pos
            for c in range(b):  # every value in an earlier block is smaller
                below += cnt[c]
            equal += same
            run_on = pos + same == m  # equal values may go on at the start of the next blocks
            c = b + 1
            while run_on and c < blocks:
                same = _count(vals, c * cap, cnt[c], value)[1]
                equal += same
                run_on = same == cnt[c]
                c += 1
            if cnt[b] == cap:
                blocks = _deal(vals, cnt, cap, per, size, spare)
                b = _find(vals, cnt, cap, blocks, value, 0)
                pos = _count(vals, b * cap, cnt[b], value)[0]
        at_in = b
        start = np.uint64(b * cap + pos)
        k = np.uint64(b * cap + cnt[b])
        while k > start:
            vals[k] = vals[k - one]
            k -= one
        vals[start] = value
        cnt[b] += 1
        size += 1
        if missing == 0 and t >= window - 1:
            out[t] = _percentile(below, equal, window)
        else:
            out[t] = np.nan


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
        rank = atr_percentile_rank(self._atr(bars), p.window)
        out = np.empty((3, len(bars)))
        _one_hot(rank, p.low_quantile, p.high_quantile, out)
        return frame(bars, self.columns(), out)

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
