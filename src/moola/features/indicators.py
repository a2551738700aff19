"""Classic technical indicators, computed by TA-Lib and exposed as registered features.

Every feature here hands float64 numpy arrays of the bars to one TA-Lib function and
names its outputs; derived columns (ratios to the close, %B, width) are one numpy line
each. TA-Lib computes forward from the first bar it is given, so the value at bar t
depends on bars[: t + 1] only, and warm-up rows are NaN.

``lookback()`` is the history one value needs so that computing on the last
``lookback()`` bars gives the full series' last value, which sizes the run-time buffer:

* finite-window indicators (SMA, Bollinger bands, CCI, Williams %R, ROC, momentum,
  stochastic, MFI, windowed OBV) need exactly their window;
* recursive ones (EMA, RSI, MACD, ATR, NATR, ADX) never forget their seed, but its
  weight decays geometrically. Their lookback is the TA-Lib warm-up plus the bars it
  takes that weight to fall below 1e-12 (``_settle``): about 13.8 x (period + 1) bars for
  an EMA and 27.6 x period for Wilder's smoothing, e.g. 401 bars for RSI(14). The
  rounder ``max(10 * period, 300)`` leaves up to 5e-5 of the seed in Wilder averages,
  too much for the 1e-9 agreement between batch and run time that moola promises.
"""

from __future__ import annotations

import functools
import math
from abc import abstractmethod

import numba
import numpy as np
import pandas as pd
import talib
from pydantic import Field, model_validator

from moola.features.base import Feature, FeatureParams, register_feature

#: Weight the seed of a recursive indicator may keep within ``lookback()`` bars.
SETTLE_TOLERANCE = 1e-12


def _settle(alpha: float) -> int:
    """Bars after which a seed weighted by (1 - alpha) per bar keeps < SETTLE_TOLERANCE."""
    return math.ceil(math.log(SETTLE_TOLERANCE) / math.log1p(-alpha))


def _ema_settle(period: int) -> int:
    return _settle(2.0 / (period + 1))


def _wilder_settle(period: int) -> int:
    return _settle(1.0 / period) if period > 1 else 1


def _arrays(bars: pd.DataFrame, *names: str) -> list[np.ndarray]:
    return [np.ascontiguousarray(bars[name].to_numpy(dtype=np.float64)) for name in names]


@functools.lru_cache(maxsize=1024)
def _column_index(columns: tuple[str, ...]) -> pd.Index:
    """One shared (immutable) Index per column tuple: building it is most of a frame's cost."""
    return pd.Index(columns)


def _frame(bars: pd.DataFrame, columns: tuple[str, ...], values: list[np.ndarray]) -> pd.DataFrame:
    """A frame on ``bars``' index holding ``values`` (one array per column) without copies."""
    data = dict(zip(columns, values, strict=True))
    return pd.DataFrame(data, index=bars.index, columns=_column_index(columns), copy=False)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, *, zero: float) -> np.ndarray:
    """numerator / denominator, with ``zero`` where the denominator is 0 (NaN stays NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(numerator, denominator)
    out[denominator == 0.0] = zero
    return out


def _distance(close: np.ndarray, average: np.ndarray) -> np.ndarray:
    """close / average - 1, in one pass (this runs on every bar of long histories)."""
    out = np.empty(close.shape)
    _distance_rows(close, average, out)
    return out


# The kernels below write each derived column in one pass over the bars (numpy takes a
# pass and a temporary per operation). They do numpy's operations in numpy's order, IEEE
# division without fast-math, so the values are those of the numpy lines they replace.


@numba.njit(cache=True, error_model="numpy")
def _distance_rows(close: np.ndarray, average: np.ndarray, out: np.ndarray) -> None:
    """out = close / average - 1.0."""
    for i in range(close.shape[0]):
        out[i] = close[i] / average[i] - 1.0


@numba.njit(cache=True, error_model="numpy")
def _band_rows(
    close: np.ndarray,
    upper: np.ndarray,
    middle: np.ndarray,
    lower: np.ndarray,
    percent_b: np.ndarray,
    width: np.ndarray,
) -> None:
    """percent_b = _ratio(close - lower, upper - lower, zero=0.5) and width = (upper -
    lower) / middle."""
    for i in range(close.shape[0]):
        spread = upper[i] - lower[i]
        percent_b[i] = 0.5 if spread == 0.0 else (close[i] - lower[i]) / spread
        width[i] = spread / middle[i]


class _TalibFeature(Feature):
    """A feature whose columns are arrays computed from the bar columns in one pass."""

    @abstractmethod
    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        """One array per column of ``columns()``, aligned with ``bars``."""

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        return _frame(bars, self.columns(), self._values(bars))

    def compute_rows(self, bars: pd.DataFrame, dtype: np.dtype) -> list[np.ndarray]:
        """``compute(bars)``'s columns as arrays of ``dtype``, without the frame (what
        ``FeatureSet.compute`` takes: building a frame costs as much as a TA-Lib call)."""
        values = self._values(bars)
        return values if dtype == np.float64 else [v.astype(dtype) for v in values]

    def update_last(self, bars: pd.DataFrame) -> np.ndarray:
        """The last row of ``compute(bars)`` without building a frame (the run-time path)."""
        return np.array([values[-1] for values in self._values(bars)])


class _PeriodParams(FeatureParams):
    period: int = Field(14, ge=2, le=100_000, description="Window length in bars.")


# ---------------------------------------------------------------- moving averages


class _MovingAverageParams(FeatureParams):
    period: int = Field(20, ge=2, le=100_000, description="Window length in bars.")


class _MovingAverage(_TalibFeature):
    """Moving average of the close and the close's distance to it (close / ma - 1)."""

    Params = _MovingAverageParams
    _talib = staticmethod(talib.SMA)

    def columns(self) -> tuple[str, ...]:
        p = self.params.period
        return (f"{self.name}_{p}", f"{self.name}_{p}_ratio")

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        (close,) = _arrays(bars, "close")
        average = self._talib(close, timeperiod=self.params.period)
        return [average, _distance(close, average)]


@register_feature
class SMA(_MovingAverage):
    """Simple moving average of the close (``sma_<p>``) and ``sma_<p>_ratio`` = close/sma - 1."""

    name = "sma"

    def lookback(self) -> int:
        return self.params.period


@register_feature
class EMA(_MovingAverage):
    """Exponential moving average (``ema_<p>``) and ``ema_<p>_ratio`` = close/ema - 1."""

    name = "ema"
    _talib = staticmethod(talib.EMA)

    def lookback(self) -> int:
        return self.params.period + _ema_settle(self.params.period)


# ---------------------------------------------------------------- oscillators


@register_feature
class RSI(_TalibFeature):
    """Wilder's relative strength index of the close, 0-100 (``rsi_<p>``)."""

    name = "rsi"
    Params = _PeriodParams

    def columns(self) -> tuple[str, ...]:
        return (f"rsi_{self.params.period}",)

    def lookback(self) -> int:
        return self.params.period + 1 + _wilder_settle(self.params.period)

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        (close,) = _arrays(bars, "close")
        return [talib.RSI(close, timeperiod=self.params.period)]


class MACDParams(FeatureParams):
    fast: int = Field(12, ge=2, le=100_000, description="Fast EMA period.")
    slow: int = Field(26, ge=2, le=100_000, description="Slow EMA period (above fast).")
    signal: int = Field(9, ge=1, le=100_000, description="Signal-line EMA period.")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MACDParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow})")
        return self


@register_feature
class MACD(_TalibFeature):
    """MACD line (fast EMA - slow EMA), its signal EMA and the histogram (line - signal)."""

    name = "macd"
    Params = MACDParams

    def columns(self) -> tuple[str, ...]:
        return ("macd", "macd_signal", "macd_hist")

    def lookback(self) -> int:
        p = self.params
        warmup = p.slow + p.signal - 1
        return warmup + _ema_settle(p.slow) + (_ema_settle(p.signal) if p.signal > 1 else 0)

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        (close,) = _arrays(bars, "close")
        p = self.params
        line, signal, hist = talib.MACD(
            close, fastperiod=p.fast, slowperiod=p.slow, signalperiod=p.signal
        )
        return [line, signal, hist]


class BBandsParams(FeatureParams):
    period: int = Field(20, ge=2, le=100_000, description="Window of the mean and deviation.")
    nbdev: float = Field(2.0, gt=0, le=100, description="Band distance in standard deviations.")


@register_feature
class BBands(_TalibFeature):
    """Bollinger bands of the close: upper, middle (SMA), lower, %B and relative width.

    ``bb_percent_b`` = (close - lower) / (upper - lower), 0.5 when the bands coincide (a
    flat window); ``bb_width`` = (upper - lower) / middle.
    """

    name = "bbands"
    Params = BBandsParams

    def columns(self) -> tuple[str, ...]:
        return ("bb_upper", "bb_middle", "bb_lower", "bb_percent_b", "bb_width")

    def lookback(self) -> int:
        return self.params.period

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        (close,) = _arrays(bars, "close")
        p = self.params
        upper, middle, lower = talib.BBANDS(
            close, timeperiod=p.period, nbdevup=p.nbdev, nbdevdn=p.nbdev, matype=0
        )
        percent_b, width = np.empty(close.shape), np.empty(close.shape)
        _band_rows(close, upper, middle, lower, percent_b, width)
        return [upper, middle, lower, percent_b, width]


@register_feature
class CCI(_TalibFeature):
    """Commodity channel index of the typical price (``cci_<p>``)."""

    name = "cci"
    Params = _PeriodParams

    def columns(self) -> tuple[str, ...]:
        return (f"cci_{self.params.period}",)

    def lookback(self) -> int:
        return self.params.period

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        high, low, close = _arrays(bars, "high", "low", "close")
        cci = talib.CCI(high, low, close, timeperiod=self.params.period)
        return [cci]


@register_feature
class WILLR(_TalibFeature):
    """Williams %R, -100 (close at the window's low) to 0 (at its high) (``willr_<p>``)."""

    name = "willr"
    Params = _PeriodParams

    def columns(self) -> tuple[str, ...]:
        return (f"willr_{self.params.period}",)

    def lookback(self) -> int:
        return self.params.period

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        high, low, close = _arrays(bars, "high", "low", "close")
        willr = talib.WILLR(high, low, close, timeperiod=self.params.period)
        return [willr]


class _ChangeParams(FeatureParams):
    period: int = Field(10, ge=1, le=100_000, description="Bars back to compare with.")


@register_feature
class ROC(_TalibFeature):
    """Rate of change of the close over ``period`` bars, in percent (``roc_<p>``)."""

    name = "roc"
    Params = _ChangeParams

    def columns(self) -> tuple[str, ...]:
        return (f"roc_{self.params.period}",)

    def lookback(self) -> int:
        return self.params.period + 1

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        (close,) = _arrays(bars, "close")
        return [talib.ROC(close, timeperiod=self.params.period)]


@register_feature
class MOM(_TalibFeature):
    """Momentum: close minus the close ``period`` bars earlier (``mom_<p>``)."""

    name = "mom"
    Params = _ChangeParams

    def columns(self) -> tuple[str, ...]:
        return (f"mom_{self.params.period}",)

    def lookback(self) -> int:
        return self.params.period + 1

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        (close,) = _arrays(bars, "close")
        return [talib.MOM(close, timeperiod=self.params.period)]


class StochParams(FeatureParams):
    fastk_period: int = Field(5, ge=1, le=100_000, description="Raw %K window.")
    slowk_period: int = Field(3, ge=1, le=100_000, description="SMA smoothing of %K.")
    slowd_period: int = Field(3, ge=1, le=100_000, description="SMA of slow %K giving %D.")


@register_feature
class Stoch(_TalibFeature):
    """Slow stochastic oscillator (SMA-smoothed): ``stoch_k`` and ``stoch_d``, 0-100."""

    name = "stoch"
    Params = StochParams

    def columns(self) -> tuple[str, ...]:
        return ("stoch_k", "stoch_d")

    def lookback(self) -> int:
        p = self.params
        return p.fastk_period + p.slowk_period + p.slowd_period - 2

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        high, low, close = _arrays(bars, "high", "low", "close")
        p = self.params
        k, d = talib.STOCH(
            high,
            low,
            close,
            fastk_period=p.fastk_period,
            slowk_period=p.slowk_period,
            slowk_matype=0,
            slowd_period=p.slowd_period,
            slowd_matype=0,
        )
        return [k, d]


@register_feature
class MFI(_TalibFeature):
    """Money flow index, a volume-weighted RSI over a finite window, 0-100 (``mfi_<p>``)."""

    name = "mfi"
    Params = _PeriodParams

    def columns(self) -> tuple[str, ...]:
        return (f"mfi_{self.params.period}",)

    def lookback(self) -> int:
        return self.params.period + 1

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        high, low, close, volume = _arrays(bars, "high", "low", "close", "volume")
        mfi = talib.MFI(high, low, close, volume, timeperiod=self.params.period)
        return [mfi]


# ---------------------------------------------------------------- volatility and trend


@register_feature
class ATR(_TalibFeature):
    """Wilder's average true range, in price units (``atr_<p>``)."""

    name = "atr"
    Params = _PeriodParams

    def columns(self) -> tuple[str, ...]:
        return (f"atr_{self.params.period}",)

    def lookback(self) -> int:
        return self.params.period + 1 + _wilder_settle(self.params.period)

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        high, low, close = _arrays(bars, "high", "low", "close")
        atr = talib.ATR(high, low, close, timeperiod=self.params.period)
        return [atr]


@register_feature
class NATR(_TalibFeature):
    """Average true range as a percentage of the close (``natr_<p>``)."""

    name = "natr"
    Params = _PeriodParams

    def columns(self) -> tuple[str, ...]:
        return (f"natr_{self.params.period}",)

    def lookback(self) -> int:
        return self.params.period + 1 + _wilder_settle(self.params.period)

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        high, low, close = _arrays(bars, "high", "low", "close")
        natr = talib.NATR(high, low, close, timeperiod=self.params.period)
        return [natr]


@register_feature
class ADX(_TalibFeature):
    """Wilder's average directional index, trend strength 0-100 (``adx_<p>``).

    ADX smooths DX, itself made of smoothed directional movements: two Wilder averages
    in series, hence twice their settling time in ``lookback``.
    """

    name = "adx"
    Params = _PeriodParams

    def columns(self) -> tuple[str, ...]:
        return (f"adx_{self.params.period}",)

    def lookback(self) -> int:
        return 2 * self.params.period + 2 * _wilder_settle(self.params.period)

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        high, low, close = _arrays(bars, "high", "low", "close")
        adx = talib.ADX(high, low, close, timeperiod=self.params.period)
        return [adx]


# ---------------------------------------------------------------- volume


class OBVParams(FeatureParams):
    period: int = Field(20, ge=1, le=100_000, description="Bars the volume flow is summed over.")


@register_feature
class OBV(_TalibFeature):
    """On-balance volume over the last ``period`` bars.

    TA-Lib's OBV is a running total from the first bar, so its level depends on where
    the data starts and no bounded history reproduces it. This feature keeps what does
    not: ``obv_<p>`` = OBV(t) - OBV(t - p), the signed volume of the last ``p`` bars, and
    ``obv_<p>_ratio``, that flow over the total volume of those bars (-1 to 1; 0 when
    they traded nothing).
    """

    name = "obv"
    Params = OBVParams

    def columns(self) -> tuple[str, ...]:
        p = self.params.period
        return (f"obv_{p}", f"obv_{p}_ratio")

    def lookback(self) -> int:
        return self.params.period + 1

    def _values(self, bars: pd.DataFrame) -> list[np.ndarray]:
        close, volume = _arrays(bars, "close", "volume")
        p = self.params.period
        obv = talib.OBV(close, volume)
        flow = np.full(close.shape, np.nan)
        total = np.full(close.shape, np.nan)
        if close.size > p:
            flow[p:] = obv[p:] - obv[:-p]
            window_volume = talib.SUM(volume, timeperiod=p) if p > 1 else volume.copy()
            total[p:] = window_volume[p:]
        return [flow, _ratio(flow, total, zero=0.0)]
