"""Bar-range and volume features: how wide and how busy a bar is against its recent norm.

``spread`` measures the bar's high-low range raw, as a share of the price and in units of
the average true range, so a model sees whether a bar is unusually wide for the current
volatility. ``volume`` compares the bar's volume with its moving average and gives the
direction volume is moving in (rising participation confirms a move, fading volume does
not). Averages come from TA-Lib (``ATR``, ``SMA``, ``LINEARREG_SLOPE``), which computes
forward from the first bar it is given, so the value at bar t depends on bars[: t + 1]
only; warm-up rows are NaN.

Ratios whose denominator is 0 (a flat market with ATR 0, or a market with no recorded
volume) are defined as 1.0, "as usual": a zero average forces the current bar to be 0
as well, so the bar equals its norm; ``volume_trend`` is then 0 (no trend).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pandas as pd
import talib
from pydantic import Field

from moola.features.base import Feature, FeatureParams, register_feature

__all__ = ["Spread", "Volume", "atr_lookback", "ema_lookback"]

#: Weight the seed of a recursive average (ATR, EMA) may keep within ``lookback()`` bars:
#: the same rule as ``moola.features.indicators``.
SETTLE_TOLERANCE = 1e-12


def _settle(alpha: float) -> int:
    """Bars after which a seed weighted by (1 - alpha) per bar keeps < SETTLE_TOLERANCE."""
    return math.ceil(math.log(SETTLE_TOLERANCE) / math.log1p(-alpha))


def atr_lookback(period: int) -> int:
    """Bars one TA-Lib ATR(period) value needs to agree with the full series within 1e-12.

    ATR is Wilder-smoothed: it never forgets its seed, whose weight decays by (1 - 1/period)
    per bar, so the lookback is the warm-up (period + 1 bars) plus the bars that weight
    takes to fall below ``SETTLE_TOLERANCE``.
    """
    return period + 1 + (_settle(1.0 / period) if period > 1 else 0)


def ema_lookback(period: int) -> int:
    """Bars one TA-Lib EMA(period) value needs to agree with the full series within 1e-12."""
    return period + _settle(2.0 / (period + 1))


def column(bars: pd.DataFrame, name: str) -> np.ndarray:
    """One bar column as a contiguous float64 array (the form TA-Lib takes)."""
    return np.ascontiguousarray(bars[name].to_numpy(dtype=np.float64))


def ratio(numerator: np.ndarray, denominator: np.ndarray, *, zero: float) -> np.ndarray:
    """numerator / denominator, with ``zero`` where the denominator is 0 (NaN stays NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = numerator / denominator
    return np.where(denominator == 0.0, zero, out)


def frame(
    bars: pd.DataFrame, columns: tuple[str, ...], values: list[np.ndarray] | np.ndarray
) -> pd.DataFrame:
    """A float64 frame of ``values`` (one array per column, or a float64 array of shape
    ``(len(columns), len(bars))`` taken without a copy) on ``bars``' index."""
    if isinstance(values, np.ndarray) and values.ndim == 2 and values.dtype == np.float64:
        data = values
        if data.shape != (len(columns), len(bars)):
            raise ValueError(f"values of shape {data.shape} for {len(columns)} columns")
    else:
        data = np.empty((len(columns), len(bars)))  # one row per column: pandas' block layout
        for row, value in zip(data, values, strict=True):
            row[:] = value
    return pd.DataFrame(data.T, index=bars.index, columns=list(columns), copy=False)


def need_a_bar(bars: pd.DataFrame) -> None:
    """``update_last`` gives the last row: refuse bars without one, as indexing would."""
    if len(bars) == 0:
        raise IndexError("update_last needs at least one bar; got an empty bar table.")


# The kernels below write each column in one pass over the bars (numpy would take one pass
# per operation). They repeat ``ratio``'s arithmetic operation by operation (IEEE division,
# no fast-math), so the values are those of the numpy expressions in their docstrings.


@numba.njit(cache=True, error_model="numpy")
def _spread_rows(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray, out: np.ndarray
) -> None:
    """out[:, i] = spread, ratio(spread, close, zero=nan), atr, ratio(spread, atr, zero=1)."""
    for i in range(high.shape[0]):
        spread = high[i] - low[i]
        out[0, i] = spread
        out[1, i] = np.nan if close[i] == 0.0 else spread / close[i]
        out[2, i] = atr[i]
        out[3, i] = 1.0 if atr[i] == 0.0 else spread / atr[i]


@numba.njit(cache=True, error_model="numpy")
def _volume_rows(
    volume: np.ndarray, average: np.ndarray, slope: np.ndarray, period: float, out: np.ndarray
) -> None:
    """out[:, i] = average, ratio(volume, average, zero=1), ratio(slope * period, average,
    zero=0)."""
    for i in range(volume.shape[0]):
        mean = average[i]
        out[0, i] = mean
        out[1, i] = 1.0 if mean == 0.0 else volume[i] / mean
        out[2, i] = 0.0 if mean == 0.0 else (slope[i] * period) / mean


class SpreadParams(FeatureParams):
    atr_period: int = Field(14, ge=1, le=100_000, description="ATR window in bars.")


@register_feature
class Spread(Feature):
    """The bar's range: ``spread`` = high - low, ``spread_pct`` = spread / close, ``atr``
    (TA-Lib ATR over ``atr_period`` bars) and ``spread_atr`` = spread / atr.

    ``spread`` and ``spread_pct`` are defined from the first bar; ``atr`` and
    ``spread_atr`` are NaN for the first ``atr_period`` bars (ATR needs the previous close).
    """

    name = "spread"
    Params = SpreadParams

    def columns(self) -> tuple[str, ...]:
        return ("spread", "spread_pct", "atr", "spread_atr")

    def lookback(self) -> int:
        return atr_lookback(self.params.atr_period)

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        return frame(bars, self.columns(), self.compute_rows(bars, np.dtype(np.float64)))

    def compute_rows(self, bars: pd.DataFrame, dtype: np.dtype) -> np.ndarray:
        """``compute(bars)``'s columns as the rows of a (4, n) array of ``dtype``."""
        high, low, close = (column(bars, name) for name in ("high", "low", "close"))
        atr = talib.ATR(high, low, close, timeperiod=self.params.atr_period)
        out = np.empty((4, len(bars)))
        _spread_rows(high, low, close, atr, out)
        return out.astype(dtype, copy=False)

    def update_last(self, bars: pd.DataFrame) -> np.ndarray:
        """The last row of ``compute(bars)``: the ATR still runs over all ``bars`` (it is
        recursive), the rest over the last bar only (the run-time path)."""
        need_a_bar(bars)
        high, low, close = (column(bars, name) for name in ("high", "low", "close"))
        atr = talib.ATR(high, low, close, timeperiod=self.params.atr_period)
        out = np.empty((4, 1))
        _spread_rows(high[-1:], low[-1:], close[-1:], atr[-1:], out)
        return out[:, 0]


class VolumeParams(FeatureParams):
    period: int = Field(20, ge=2, le=100_000, description="Averaging window in bars.")


@register_feature
class Volume(Feature):
    """Participation: ``volume_ma`` (simple moving average of volume over ``period`` bars),
    ``volume_ratio`` = volume / volume_ma, and ``volume_trend``, the least-squares slope of
    volume over the last ``period`` bars times ``period`` over volume_ma: by how much of
    its average the volume rose (> 0) or fell (< 0) across the window. The ratio and trend
    are scale-free, so they compare across symbols. NaN for the first ``period - 1`` bars.
    """

    name = "volume"
    Params = VolumeParams

    def columns(self) -> tuple[str, ...]:
        return ("volume_ma", "volume_ratio", "volume_trend")

    def lookback(self) -> int:
        return self.params.period

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        return frame(bars, self.columns(), self.compute_rows(bars, np.dtype(np.float64)))

    def compute_rows(self, bars: pd.DataFrame, dtype: np.dtype) -> np.ndarray:
        """``compute(bars)``'s columns as the rows of a (3, n) array of ``dtype``."""
        out = np.empty((3, len(bars)))
        self._rows(column(bars, "volume"), out, slice(None))
        return out.astype(dtype, copy=False)

    def update_last(self, bars: pd.DataFrame) -> np.ndarray:
        """The last row of ``compute(bars)`` (the run-time path). The averages run over all
        ``bars``: TA-Lib's running sums start at the first bar, so a shorter input could
        differ in the last bits."""
        need_a_bar(bars)
        out = np.empty((3, 1))
        self._rows(column(bars, "volume"), out, slice(-1, None))
        return out[:, 0]

    def _rows(self, volume: np.ndarray, out: np.ndarray, rows: slice) -> None:
        """Write the columns of the bars ``rows`` into ``out`` (the averages see all bars)."""
        period = self.params.period
        average = talib.SMA(volume, timeperiod=period)
        slope = talib.LINEARREG_SLOPE(volume, timeperiod=period)
        _volume_rows(volume[rows], average[rows], slope[rows], float(period), out)
