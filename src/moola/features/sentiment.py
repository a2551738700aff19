"""News sentiment per bar: scored news items aligned to bars with an explicit publication lag.

An item published at time p is *usable* at u = p + ``lag`` and reaches the first bar that
opens at or after u, never earlier: a bar that opens at 10:30 with a 15-minute lag sees the
items published at or before 10:15. Bar t collects the items usable in (open[t-1],
open[t]]; the first bar collects those usable within one bar (its ``timeframe``) before it
opens. Items usable earlier than that are *before* the bars, items usable after the last
bar opens are *after* them: both are left out and counted (``AlignStats``), since a news
stream normally runs past the bars it is joined to and a shorter bar table (the
no-lookahead harness cuts one) must give the same rows. Whether a news set that misses
the bars entirely is an input mistake is for the caller (``moola.pipeline.sentiment``
refuses it).

Columns (``SENTIMENT_COLUMNS``), with each item weighted by its confidence when
``weighting="confidence"`` (weight 1 otherwise):

==================  ======================================================================
``sent_count``      items reaching this bar
``sent_mean``       their weighted mean sentiment (0 when none: no news is neutral)
``sent_std``        their weighted standard deviation, the disagreement (0 under two items)
``sent_decayed``    exponentially decayed sentiment: sum of w v d^age / sum of w d^age
                    over every item so far, age in bars, d = 0.5 ** (1 / half_life)
``sent_intensity``  the decayed weight, sum of w d^age: how much recent news there is
``sent_surprise``   this bar's mean minus the mean of the items of the previous
                    ``baseline`` bars (0 when either has none)
==================  ======================================================================

numpy and pandas only; written by hand because no library aligns irregular timestamped
items to bar opens with a lag (a merge_asof would join each bar to one item, not count them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import field_validator

from moola.core.errors import ConfigError
from moola.core.timeframes import parse_timeframe
from moola.features.base import Feature, FeatureParams

__all__ = [
    "SENTIMENT_COLUMNS",
    "SENTIMENT_SCALING",
    "AlignStats",
    "SentimentFeature",
    "SentimentParams",
    "align_items",
    "sentiment_features",
]

SENTIMENT_COLUMNS: tuple[str, ...] = (
    "sent_count",
    "sent_mean",
    "sent_std",
    "sent_decayed",
    "sent_intensity",
    "sent_surprise",
)
#: How each column is scaled for a model (``moola.features.scaling``), fitted on training
#: rows only: z-scores throughout; a count or intensity that is 0 on most bars has an
#: interquartile range of 0, which would leave ``robust`` scaling only centring it.
SENTIMENT_SCALING: dict[str, str] = {column: "zscore" for column in SENTIMENT_COLUMNS}
ITEM_COLUMNS = ("published", "sentiment")  # required; "confidence" optional


class SentimentParams(FeatureParams):
    """``lag``: publication lag (pandas offset text, e.g. ``"15min"``, >= 0);
    ``half_life``: of the decayed sentiment, in bars; ``baseline``: bars of the trailing
    baseline of the surprise; ``weighting``: ``"none"`` or ``"confidence"``."""

    lag: str = "15min"
    half_life: float = 4.0
    baseline: int = 96
    weighting: Literal["none", "confidence"] = "none"

    @field_validator("lag")
    @classmethod
    def _lag(cls, value: str) -> str:
        try:
            lag = pd.Timedelta(value)
        except (ValueError, TypeError):
            raise ValueError(f"{value!r} is not a duration such as '15min' or '1h'") from None
        if pd.isna(lag) or lag < pd.Timedelta(0):
            raise ValueError(f"must be a duration of 0 or more, got {value!r}")
        return str(value)

    @field_validator("half_life")
    @classmethod
    def _half_life(cls, value: float) -> float:
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"must be a positive number of bars, got {value}")
        return value

    @field_validator("baseline")
    @classmethod
    def _baseline(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be 1 bar or more, got {value}")
        return value

    def lag_delta(self) -> pd.Timedelta:
        return pd.Timedelta(self.lag)


@dataclass(frozen=True)
class AlignStats:
    """How the items met the bars: used, before the first bar's window, after the last bar."""

    items: int
    used: int
    before: int
    after: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def align_items(
    published: pd.Series | pd.DatetimeIndex,
    bar_opens: pd.Series | pd.DatetimeIndex,
    *,
    lag: pd.Timedelta,
    first_window: pd.Timedelta,
) -> np.ndarray:
    """Bar position each item reaches (see the module docstring): ``-1`` before the bars,
    ``len(bar_opens)`` after the last bar opens.

    Both time columns must be tz-aware UTC; ``bar_opens`` sorted ascending.
    """
    usable = _utc_ns(published, "published") + lag.value
    opens = _utc_ns(bar_opens, "bar open times")
    if len(opens) and np.any(np.diff(opens) <= 0):
        raise ConfigError("Bar open times must be strictly increasing (one symbol, sorted).")
    position = np.searchsorted(opens, usable, side="left")
    if len(opens):
        early = (position == 0) & (usable <= opens[0] - first_window.value)
        position = np.where(early, -1, position)
    return position


def sentiment_features(
    items: pd.DataFrame, bars: pd.DataFrame, params: SentimentParams | None = None
) -> tuple[pd.DataFrame, AlignStats]:
    """``SENTIMENT_COLUMNS`` aligned with ``bars`` (same index) from scored ``items``.

    ``items`` has ``published`` (UTC) and ``sentiment`` in [-1, 1], and ``confidence`` in
    [0, 1] for ``weighting="confidence"``; ``bars`` is one symbol's canonical bars sorted by
    time (its ``timeframe`` sizes the first bar's window). Raises ``ConfigError`` naming the
    column when one is missing, not UTC, or out of range.
    """
    params = params or SentimentParams()
    _check_items(items, params)
    n = len(bars)
    if n == 0:
        empty = pd.DataFrame({c: np.empty(0) for c in SENTIMENT_COLUMNS}, index=bars.index)
        return empty, AlignStats(len(items), 0, 0, len(items))
    step = parse_timeframe(str(bars["timeframe"].iloc[0]))
    position = align_items(
        items["published"], bars["timestamp"], lag=params.lag_delta(), first_window=step
    )
    inside = (position >= 0) & (position < n)
    stats = AlignStats(
        items=len(items),
        used=int(inside.sum()),
        before=int((position < 0).sum()),
        after=int((position >= n).sum()),
    )
    at = position[inside]
    value = items["sentiment"].to_numpy(dtype=np.float64)[inside]
    if params.weighting == "confidence":
        weight = items["confidence"].to_numpy(dtype=np.float64)[inside]
    else:
        weight = np.ones(len(at))
    count = np.bincount(at, minlength=n).astype(np.float64)
    w_sum = np.bincount(at, weights=weight, minlength=n)
    wv_sum = np.bincount(at, weights=weight * value, minlength=n)
    wvv_sum = np.bincount(at, weights=weight * value * value, minlength=n)
    has = w_sum > 0
    safe = np.where(has, w_sum, 1.0)
    mean = np.where(has, wv_sum / safe, 0.0)
    var = np.where(has, wvv_sum / safe - mean * mean, 0.0)
    std = np.where(count >= 2, np.sqrt(np.clip(var, 0.0, None)), 0.0)

    decay = 0.5 ** (1.0 / params.half_life)
    intensity = _decayed_sum(w_sum, decay)
    weighted = _decayed_sum(wv_sum, decay)
    live = intensity > 1e-12
    decayed = np.where(live, weighted / np.where(live, intensity, 1.0), 0.0)

    b = params.baseline
    c_w = np.concatenate([[0.0], np.cumsum(w_sum)])
    c_wv = np.concatenate([[0.0], np.cumsum(wv_sum)])
    rows = np.arange(n)
    lo = np.maximum(rows - b, 0)
    base_w = c_w[rows] - c_w[lo]  # bars t-b .. t-1
    base_wv = c_wv[rows] - c_wv[lo]
    base_has = base_w > 1e-12
    base_mean = np.where(base_has, base_wv / np.where(base_has, base_w, 1.0), 0.0)
    surprise = np.where(has & base_has, mean - base_mean, 0.0)

    out = pd.DataFrame(
        {
            "sent_count": count,
            "sent_mean": mean,
            "sent_std": std,
            "sent_decayed": decayed,
            "sent_intensity": intensity,
            "sent_surprise": surprise,
        },
        index=bars.index,
    )
    return out, stats


class SentimentFeature(Feature):
    """The sentiment columns as a ``Feature`` over bars, for the no-lookahead harness and
    for code that computes features per bar table.

    Unlike the bar features it needs data besides the bars, the scored ``items``, so it is
    built with them (``SentimentFeature(items, lag="15min")``) and is not in the global
    ``FEATURES`` registry (a feature set YAML cannot carry news items, and its decayed
    column remembers every item, so it has no bounded streaming buffer).
    ``last_stats`` holds the ``AlignStats`` of the latest ``compute``.
    """

    name = "sentiment"
    Params = SentimentParams

    def __init__(self, items: pd.DataFrame, **params: Any) -> None:
        super().__init__(**params)
        _check_items(items, self.params)  # type: ignore[arg-type]
        self.items = items
        self.last_stats: AlignStats | None = None

    def columns(self) -> tuple[str, ...]:
        return SENTIMENT_COLUMNS

    def lookback(self) -> int:
        """The baseline plus the bars over which an item's decayed weight falls below 1e-6
        (the decayed columns keep a vanishing memory of every earlier item)."""
        params: SentimentParams = self.params  # type: ignore[assignment]
        return params.baseline + math.ceil(20 * params.half_life)

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        out, self.last_stats = sentiment_features(self.items, bars, self.params)  # type: ignore[arg-type]
        return out


def _utc_ns(times: pd.Series | pd.DatetimeIndex, what: str) -> np.ndarray:
    index = pd.DatetimeIndex(times)
    if index.tz is None:
        raise ConfigError(
            f"The {what} have no time zone; sentiment alignment needs UTC times "
            "(tz_localize('UTC') if they are UTC, tz_convert('UTC') otherwise).",
            param="published" if what == "published" else "bars",
        )
    if index.hasnans:
        raise ConfigError(f"The {what} hold missing times (NaT); remove those rows.")
    return index.tz_convert("UTC").as_unit("ns").asi8


def _check_items(items: pd.DataFrame, params: SentimentParams) -> None:
    needed = [*ITEM_COLUMNS] + (["confidence"] if params.weighting == "confidence" else [])
    missing = [c for c in needed if c not in items.columns]
    if missing:
        raise ConfigError(
            f"Sentiment items lack column(s) {missing} (they have {list(items.columns)}). "
            "Score the news first (moola.pipeline.sentiment.score_news) to get 'sentiment' "
            "and 'confidence'.",
            param="items",
        )
    for column, low in (("sentiment", -1.0), ("confidence", 0.0)):
        if column not in needed:
            continue
        values = items[column].to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~((values >= low) & (values <= 1.0)))
        if len(bad):
            raise ConfigError(
                f"Sentiment items: column {column!r} must lie in [{low:g}, 1]; row {int(bad[0])} "
                f"holds {values[bad[0]]!r} ({len(bad)} row(s) outside).",
                param="items",
            )


def _decayed_sum(x: np.ndarray, decay: float) -> np.ndarray:
    """y[t] = x[t] + decay * y[t-1], y[-1] = 0: an exponentially decayed running sum.

    pandas' adjusted EWM mean is sum d^k x[t-k] / sum d^k; multiplying back by the
    geometric sum (1 - d^(t+1)) / (1 - d) gives the recursion without a Python loop.
    """
    if len(x) == 0:
        return x.astype(np.float64)
    mean = pd.Series(x).ewm(alpha=1.0 - decay, adjust=True).mean().to_numpy()
    norm = (1.0 - decay ** np.arange(1, len(x) + 1)) / (1.0 - decay)
    return mean * norm
