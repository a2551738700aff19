"""Window-level price-action features: 20 scale-free numbers describing a chart window.

The pattern classifier labels whole windows (e.g. 105 bars: consolidation or
retracement). Tabular models and the dual-input network need each window summarised by
the quantities a chart reader looks at: how strong and clean the trend is, whether the
range is contracting, how deep the pullback from the extreme goes, how large the impulse
was. ``price_action_features`` computes them for N windows at once (numpy over the
``(N, T)`` arrays, in chunks to bound memory), and ``relative_windows`` (from
``moola.features.relative``) gives the bar-by-bar scale-free view for sequence models.

Every column is scale-free (unchanged when all prices are multiplied by a constant):
price distances are divided by the window's ATR, the mean true range of its bars (the
first bar's true range is its high - low). Each row depends on its own window only.
"Direction" ``d`` is +1 when the window's highest high is further above the first open
than its lowest low is below it, else -1; the "extreme" is that high (or low).

=========================  ==============================================================
``pa_trend_slope``         least-squares slope of the closes x (T - 1) / ATR: the fitted move
``pa_trend_r2``            R^2 of that line (0 for constant closes): how clean the trend is
``pa_range_compression``   range (max high - min low) of the last third / of the first third
``pa_pullback_depth``      (extreme - last close) x d / (extreme - opposite extreme before
                           it): the share of the move into the extreme given back
``pa_impulse``             largest |close change| over k = max(1, T // 10) bars / ATR
``pa_close_position``      (last close - min low) / (max high - min low), in [0, 1]
``pa_vol_ratio``           std of log returns, last half / first half
``pa_up_fraction``         share of bars with close > open
``pa_max_drawdown``        largest fall of the close from its running maximum / ATR
``pa_max_runup``           largest rise of the close from its running minimum / ATR
``pa_body_ratio``          mean |close - open| / (high - low)
``pa_upper_wick``          mean (high - max(open, close)) / (high - low)
``pa_lower_wick``          mean (min(open, close) - low) / (high - low)
``pa_net_move``            (last close - first open) / ATR
``pa_range_atr``           (max high - min low) / ATR
``pa_efficiency``          |last close - first close| / sum of |close changes| (Kaufman)
``pa_extreme_position``    bar index of the extreme / (T - 1): where the move peaked
``pa_late_move``           d x (last close - close before the last third) / ATR
``pa_tr_ratio``            mean true range of the last third / of the first third
``pa_inside_fraction``     share of bars t >= 1 inside bar t - 1's range (inside bars)
=========================  ==============================================================

Zero denominators: ratios of two like quantities (compression, vol ratio, TR ratio) are 1,
``pa_close_position`` is 0.5, bars with no range count 0 in the body and wick means, and
every other column is 0. Thirds hold ``T // 3`` bars and halves ``(T - 1) // 2`` returns,
so T must be at least 6.

Written by hand: TA-Lib computes over one 1-D series at a time, and these are per-window
summaries over N windows at once, a few numpy reductions each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError
from moola.features.price import ratio
from moola.features.relative import RELATIVE_COLUMNS, relative_windows

__all__ = [
    "PRICE_ACTION_COLUMNS",
    "RELATIVE_COLUMNS",
    "price_action_features",
    "relative_windows",
]

PRICE_ACTION_COLUMNS: tuple[str, ...] = (
    "pa_trend_slope",
    "pa_trend_r2",
    "pa_range_compression",
    "pa_pullback_depth",
    "pa_impulse",
    "pa_close_position",
    "pa_vol_ratio",
    "pa_up_fraction",
    "pa_max_drawdown",
    "pa_max_runup",
    "pa_body_ratio",
    "pa_upper_wick",
    "pa_lower_wick",
    "pa_net_move",
    "pa_range_atr",
    "pa_efficiency",
    "pa_extreme_position",
    "pa_late_move",
    "pa_tr_ratio",
    "pa_inside_fraction",
)
MIN_WINDOW_LENGTH = 6
_CHUNK = 32_768  # windows per batch: bounds the (chunk, T) temporaries


def price_action_features(
    windows: np.ndarray, columns: Sequence[str] = ("open", "high", "low", "close")
) -> pd.DataFrame:
    """The 20 ``PRICE_ACTION_COLUMNS`` of each window (see the module docstring).

    ``windows`` is ``(N, T, C)``; ``columns`` names its C channels and must include open,
    high, low and close (others, e.g. volume, are ignored). Returns N rows (RangeIndex)
    of float64. Raises ``ConfigError`` on a bad shape, a missing channel or T < 6.
    """
    values = np.asarray(windows)
    columns = tuple(columns)
    if values.ndim != 3 or values.shape[2] != len(columns):
        raise ConfigError(
            f"price_action_features needs windows shaped (N, T, {len(columns)}) for channels "
            f"{list(columns)}; got shape {values.shape}."
        )
    missing = [name for name in ("open", "high", "low", "close") if name not in columns]
    if missing:
        raise ConfigError(
            f"price_action_features: columns {list(columns)} lack {missing}; name the "
            "channels of `windows` in order, e.g. ('open', 'high', 'low', 'close')."
        )
    if values.shape[1] < MIN_WINDOW_LENGTH:
        raise ConfigError(
            f"price_action_features needs windows of at least {MIN_WINDOW_LENGTH} bars "
            f"(thirds and halves of the window); got {values.shape[1]}."
        )
    picks = [columns.index(name) for name in ("open", "high", "low", "close")]
    out = np.empty((values.shape[0], len(PRICE_ACTION_COLUMNS)))
    for start in range(0, values.shape[0], _CHUNK):
        chunk = values[start : start + _CHUNK][:, :, picks].astype(np.float64)
        out[start : start + len(chunk)] = _features(chunk)
    return pd.DataFrame(out, columns=list(PRICE_ACTION_COLUMNS))


def _features(ohlc: np.ndarray) -> np.ndarray:
    """The 20 columns for ``(n, T, 4)`` float64 OHLC windows -> ``(n, 20)``."""
    o, h, low, c = (ohlc[:, :, i] for i in range(4))
    n, length = c.shape
    rows = np.arange(n)
    third = length // 3
    half = (length - 1) // 2

    true_range = h - low
    true_range[:, 1:] = np.maximum(h[:, 1:], c[:, :-1]) - np.minimum(low[:, 1:], c[:, :-1])
    atr = true_range.mean(axis=1)

    x = np.arange(length, dtype=np.float64) - (length - 1) / 2.0
    dc = c - c.mean(axis=1, keepdims=True)
    # Element-wise sums, not a matrix product: BLAS would round a row differently
    # depending on how many windows are in the batch.
    sxy, sxx, syy = (dc * x).sum(axis=1), float((x * x).sum()), (dc * dc).sum(axis=1)
    slope = sxy / sxx
    r2 = ratio(sxy * sxy, sxx * syy, zero=0.0)

    top, bottom = h.max(axis=1), low.min(axis=1)
    span = top - bottom
    first_range = h[:, :third].max(axis=1) - low[:, :third].min(axis=1)
    last_range = h[:, -third:].max(axis=1) - low[:, -third:].min(axis=1)

    # The dominant extreme, the move into it and how much of it the last close gave back.
    up = (top - o[:, 0]) >= (o[:, 0] - bottom)
    direction = np.where(up, 1.0, -1.0)
    peak, trough = h.argmax(axis=1), low.argmin(axis=1)
    extreme_at = np.where(up, peak, trough)
    low_before_peak = np.minimum.accumulate(low, axis=1)[rows, peak]
    high_before_trough = np.maximum.accumulate(h, axis=1)[rows, trough]
    move = np.where(up, top - low_before_peak, high_before_trough - bottom)
    given_back = np.where(up, top - c[:, -1], c[:, -1] - bottom)

    step = max(1, length // 10)
    impulse = np.abs(c[:, step:] - c[:, :-step]).max(axis=1)

    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.diff(np.log(c), axis=1)
    vol_first, vol_last = returns[:, :half].std(axis=1), returns[:, -half:].std(axis=1)

    bar_range = h - low
    share = ratio(np.ones_like(bar_range), bar_range, zero=0.0)
    body = np.abs(c - o) * share
    upper = (h - np.maximum(o, c)) * share
    lower = (np.minimum(o, c) - low) * share

    drawdown = (np.maximum.accumulate(c, axis=1) - c).max(axis=1)
    runup = (c - np.minimum.accumulate(c, axis=1)).max(axis=1)
    path = np.abs(np.diff(c, axis=1)).sum(axis=1)
    late = direction * (c[:, -1] - c[:, length - third - 1])
    inside = (h[:, 1:] <= h[:, :-1]) & (low[:, 1:] >= low[:, :-1])

    columns = [
        ratio(slope * (length - 1), atr, zero=0.0),
        r2,
        ratio(last_range, first_range, zero=1.0),
        ratio(given_back, move, zero=0.0),
        ratio(impulse, atr, zero=0.0),
        ratio(c[:, -1] - bottom, span, zero=0.5),
        ratio(vol_last, vol_first, zero=1.0),
        (c > o).mean(axis=1),
        ratio(drawdown, atr, zero=0.0),
        ratio(runup, atr, zero=0.0),
        body.mean(axis=1),
        upper.mean(axis=1),
        lower.mean(axis=1),
        ratio(c[:, -1] - o[:, 0], atr, zero=0.0),
        ratio(span, atr, zero=0.0),
        ratio(np.abs(c[:, -1] - c[:, 0]), path, zero=0.0),
        extreme_at / (length - 1),
        ratio(late, atr, zero=0.0),
        ratio(true_range[:, -third:].mean(axis=1), true_range[:, :third].mean(axis=1), zero=1.0),
        inside.mean(axis=1),
    ]
    return np.column_stack(columns)
