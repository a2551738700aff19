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
window) are NaN in all three columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib
from pydantic import Field, model_validator

from moola.features.base import Feature, FeatureParams, register_feature
from moola.features.price import atr_lookback, column, frame

__all__ = ["VolatilityRegime", "atr_percentile_rank"]


def atr_percentile_rank(atr: np.ndarray, window: int) -> np.ndarray:
    """Percentile rank (0-1) of each value among the trailing ``window`` values, itself
    included; NaN until ``window`` non-NaN values are available."""
    ranks = pd.Series(atr).rolling(window, min_periods=window).rank(method="average")
    return ((ranks.to_numpy(dtype=np.float64) - 1.0) / (window - 1)).astype(np.float64)


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
        high, low, close = (column(bars, name) for name in ("high", "low", "close"))
        atr = talib.ATR(high, low, close, timeperiod=p.atr_period)
        rank = atr_percentile_rank(atr, p.window)
        is_low = rank < p.low_quantile
        is_high = rank > p.high_quantile
        values = [is_low, ~(is_low | is_high), is_high]
        warm = ~np.isnan(rank)
        values = [np.where(warm, flag, np.nan) for flag in values]
        return frame(bars, self.columns(), values)
