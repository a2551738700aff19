"""Higher time frames seen from a lower one, without ever peeking at an unfinished bar.

A 1-minute model gains from knowing whether the 5-minute, 15-minute and hourly trends
agree. The classic leak is to use the hourly bar that is still forming: at 10:20 the
10:00 hourly bar's close is the 11:00 price, which nobody knows at 10:20. Here:

* ``resample_bars`` aggregates bars to a coarser time frame. A higher bar is labelled by
  its **open** time and covers ``[t, t + duration)``; buckets are aligned to the Unix epoch
  in UTC (hourly bars start on the hour, daily bars at 00:00 UTC). Open, high, low, close
  and volume are first, max, min, last and sum. A bucket is complete once its last base
  bar (the one opening at ``t + duration - base``) is there or a later bucket has started;
  the trailing bucket of a symbol that lacks its last base bar is *incomplete* and is
  dropped by default (``drop_incomplete=False`` keeps it). A market that closes before a
  bucket ends (a Friday close inside a daily bucket) leaves that last bucket incomplete
  until the next bar arrives: the data cannot tell a closed market from a late bar.
* ``align_higher_timeframe`` gives each base bar the row of the latest higher bar that had
  **closed** when the base bar closed: ``higher open + higher duration <= base open +
  base duration``. The higher bar still in progress is never used, whatever it holds.
* ``multi_timeframe`` (feature) measures the trend on each higher time frame from closed
  higher bars only and summarises whether the time frames agree.

Written by hand: TA-Lib has no resampling, and pandas' ``resample`` labels and closes
buckets by its own rules; bar-close semantics are the point of this module, so they are
spelled out here (numpy ``reduceat`` over bucket boundaries, ``searchsorted`` to align).
The EMAs and ATR are TA-Lib's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib
from pydantic import Field, field_validator, model_validator

from moola.core.errors import ConfigError
from moola.core.timeframes import parse_timeframe
from moola.data.schema import make_bars
from moola.features.base import Feature, FeatureParams, register_feature
from moola.features.price import atr_lookback, column, ema_lookback, frame, ratio

__all__ = ["MultiTimeframe", "align_higher_timeframe", "resample_bars"]


def _bar_timeframe(bars: pd.DataFrame) -> str:
    """The one time frame of ``bars`` (its ``timeframe`` column)."""
    if "timeframe" not in bars.columns:
        raise ConfigError(
            "The bars have no 'timeframe' column, so their bar length is unknown; build "
            "them with moola.data.schema.make_bars."
        )
    found = [str(value) for value in bars["timeframe"].unique()]
    if len(found) != 1:
        raise ConfigError(
            f"The bars mix time frames {sorted(found)}; resample one time frame at a time "
            "(filter the table on its 'timeframe' column)."
        )
    return str(found[0])


def _open_ns(stamps: pd.Series | pd.Index) -> np.ndarray:
    index = pd.DatetimeIndex(stamps)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return index.as_unit("ns").asi8


def _multiple(base: str, timeframe: str, where: str) -> int:
    """How many ``base`` bars make one ``timeframe`` bar; ConfigError unless a whole number."""
    base_ns, higher_ns = parse_timeframe(base).value, parse_timeframe(timeframe).value
    if higher_ns < base_ns or higher_ns % base_ns:
        raise ConfigError(
            f"{where}: timeframe {timeframe!r} is not a multiple of the bars' timeframe "
            f"{base!r}; use a whole multiple of {base!r} (for 1m bars e.g. '5m', '15m', '1h')."
        )
    return higher_ns // base_ns


def resample_bars(
    bars: pd.DataFrame, timeframe: str, *, drop_incomplete: bool = True
) -> pd.DataFrame:
    """Aggregate canonical ``bars`` to ``timeframe``, a whole multiple of their time frame.

    Returns a canonical bar table (one row per non-empty bucket, labelled by its open
    time); see the module docstring for buckets and completeness. Works per symbol.
    Raises ``ConfigError`` naming ``timeframe`` when it is not a multiple of the bars'.
    """
    base = _bar_timeframe(bars) if len(bars) else "1m"
    _multiple(base, timeframe, "resample_bars")
    name = str(timeframe).strip().lower()
    base_ns, step = parse_timeframe(base).value, parse_timeframe(name).value
    if not len(bars):
        out = bars.copy()
        out["timeframe"] = out["timeframe"].astype("string")
        return out
    opens = _open_ns(bars["timestamp"])
    bucket = opens - opens % step
    codes, symbols = pd.factorize(bars["symbol"])
    new_symbol = np.concatenate([[True], codes[1:] != codes[:-1]])
    first = np.flatnonzero(new_symbol | np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    last = np.concatenate([first[1:], [len(bars)]]) - 1
    o, h, low, c, v = (column(bars, n) for n in ("open", "high", "low", "close", "volume"))
    out = make_bars(
        pd.DatetimeIndex(bucket[first].view("datetime64[ns]")).tz_localize("UTC"),
        o[first],
        np.maximum.reduceat(h, first),
        np.minimum.reduceat(low, first),
        c[last],
        np.add.reduceat(v, first),
        symbol="",
        timeframe=name,
    )
    out["symbol"] = pd.array(np.asarray(symbols, dtype=object)[codes[first]], dtype="string")
    if drop_incomplete:
        # The last bucket of each symbol is complete only when its last base bar is there.
        ends_symbol = np.concatenate([new_symbol[1:], [True]])[last]
        complete = ~ends_symbol | (opens[last] == bucket[first] + step - base_ns)
        out = out.loc[complete].reset_index(drop=True)
    return out


def _closed_rows(higher_opens: np.ndarray, higher_ns: int, base_bars: pd.DataFrame) -> np.ndarray:
    """Per base bar, the position of the last higher bar closed by the base bar's close
    (-1 for none). ``higher_opens`` (ns) must be increasing."""
    base_ns = parse_timeframe(_bar_timeframe(base_bars)).value if len(base_bars) else 0
    base_close = _open_ns(base_bars["timestamp"]) + base_ns
    return np.searchsorted(higher_opens + higher_ns, base_close, side="right") - 1


def align_higher_timeframe(
    higher_features: pd.DataFrame, base_bars: pd.DataFrame, higher_timeframe: str
) -> pd.DataFrame:
    """Each base bar's row of ``higher_features`` from the latest higher bar closed by then.

    ``higher_features`` has one row per higher bar of one symbol, sorted by time, with the
    higher bars' open times in a ``timestamp`` column (dropped from the result) or as its
    ``DatetimeIndex``. ``base_bars`` is a canonical bar table of the same symbol. A higher
    bar opening at H is used by a base bar opening at b only when ``H + higher duration <=
    b + base duration``; base bars before the first closed higher bar get NaN. The result
    has ``base_bars``' index and ``higher_features``' other columns.
    """
    higher_ns = parse_timeframe(higher_timeframe).value
    features = higher_features
    if "timestamp" in features.columns:
        opens = _open_ns(features["timestamp"])
        features = features.drop(columns="timestamp")
    elif isinstance(features.index, pd.DatetimeIndex):
        opens = _open_ns(features.index)
    else:
        raise ConfigError(
            "align_higher_timeframe: higher_features needs the higher bars' open times, as "
            "a 'timestamp' column or a DatetimeIndex."
        )
    if np.any(np.diff(opens) <= 0):
        raise ConfigError(
            "align_higher_timeframe: higher_features must be sorted by time with one row "
            "per higher bar (of one symbol); sort it or split it by symbol first."
        )
    row = _closed_rows(opens, higher_ns, base_bars)
    aligned = features.reset_index(drop=True).reindex(row)
    aligned.index = base_bars.index
    return aligned


class MultiTimeframeParams(FeatureParams):
    timeframes: tuple[str, ...] = Field(
        ("5m", "15m", "1h"), min_length=1, description="Higher time frames to summarise."
    )
    fast: int = Field(10, ge=1, le=100_000, description="Fast EMA, in higher bars.")
    slow: int = Field(30, ge=2, le=100_000, description="Slow EMA and ATR, in higher bars.")

    @field_validator("timeframes")
    @classmethod
    def _check_timeframes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = []
        for timeframe in value:
            try:
                parse_timeframe(timeframe)
            except ConfigError as error:
                raise ValueError(str(error)) from None
            names.append(str(timeframe).strip().lower())
        if len(set(names)) != len(names):
            raise ValueError(f"timeframes {list(value)} repeat a time frame; list each once.")
        return tuple(names)

    @model_validator(mode="after")
    def _check_periods(self) -> MultiTimeframeParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow}).")
        return self


@register_feature
class MultiTimeframe(Feature):
    """Trend on each higher time frame and how well the time frames agree.

    Per time frame ``tf`` (``mtf_trend_<tf>``): (EMA(fast) - EMA(slow)) / ATR(slow) of
    the closed ``tf`` bars, a signed trend strength in ATR units (0 when ATR is 0); its
    sign is the time frame's direction. ``mtf_direction`` = sign(#up - #down), the
    majority direction (0 on a tie); ``mtf_alignment`` = share of time frames whose
    direction equals ``mtf_direction`` (1 when all agree); ``mtf_strength`` = mean
    |trend| of the time frames that agree with a non-zero ``mtf_direction`` (0 when there
    is none). NaN until every time frame has ``slow + 1`` closed bars.

    Every time frame must be a whole multiple of the bars' time frame (``ConfigError``
    naming it otherwise). ``lookback()`` counts 1-minute base bars, an upper bound for
    any coarser base.
    """

    name = "multi_timeframe"
    Params = MultiTimeframeParams

    def columns(self) -> tuple[str, ...]:
        trends = (f"mtf_trend_{tf}" for tf in self.params.timeframes)
        return ("mtf_alignment", "mtf_direction", "mtf_strength", *trends)

    def lookback(self) -> int:
        p = self.params
        higher = max(ema_lookback(p.slow), atr_lookback(p.slow)) + 1  # +1: the bar in progress
        minute = pd.Timedelta(minutes=1)
        longest = max(parse_timeframe(tf) for tf in p.timeframes)
        return higher * max(1, -(-longest // minute))

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        if len(bars):
            base = _bar_timeframe(bars)
            for timeframe in p.timeframes:
                _multiple(base, timeframe, "Feature 'multi_timeframe'")
        trends = [self._trend(bars, timeframe) for timeframe in p.timeframes]
        trend = np.stack(trends)  # (n_timeframes, n_bars)
        direction = np.sign(trend)
        majority = np.sign((direction > 0).sum(axis=0) - (direction < 0).sum(axis=0))
        agree = direction == majority
        alignment = agree.mean(axis=0)
        agreeing = agree & (majority != 0)
        strength = ratio((np.abs(trend) * agreeing).sum(axis=0), agreeing.sum(axis=0), zero=0.0)
        warm = ~np.isnan(trend).any(axis=0)
        summary = [np.where(warm, x, np.nan) for x in (alignment, majority, strength)]
        return frame(bars, self.columns(), [*summary, *trends])

    def _trend(self, bars: pd.DataFrame, timeframe: str) -> np.ndarray:
        """(EMA fast - EMA slow) / ATR of the closed ``timeframe`` bars, per base bar."""
        p = self.params
        if not len(bars):
            return np.empty(0)
        higher = resample_bars(bars, timeframe)
        h, low, c = (column(higher, n) for n in ("high", "low", "close"))
        spread = talib.EMA(c, timeperiod=p.fast) - talib.EMA(c, timeperiod=p.slow)
        trend = ratio(spread, talib.ATR(h, low, c, timeperiod=p.slow), zero=0.0)
        row = _closed_rows(_open_ns(higher["timestamp"]), parse_timeframe(timeframe).value, bars)
        return np.where(row >= 0, trend[np.maximum(row, 0)] if len(trend) else np.nan, np.nan)
