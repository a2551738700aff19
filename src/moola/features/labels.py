"""Supervised targets over one symbol's canonical bars, each with the horizon it looks at.

A label needs future bars by definition. The rule that keeps it honest: every producer
returns, next to its label column(s), ``horizon_end``, the row position of the last bar the
label at row t looks at, and the value at t depends on ``bars[: horizon_end[t] + 1]`` only.
Splits purge training rows whose ``horizon_end`` reaches into the test period.
``moola.testing.check_label`` proves the rule for every producer here.

Rows whose horizon runs past the end of the data are missing (NaN label,
``horizon_end = -1``), never computed from a partial future; label columns are float64 so
that they can hold NaN. Classes are -1/0/1 (direction-like) or 0/1/2 (ordered regimes).

Producers: ``forward_return_direction``, ``triple_barrier``, ``trend_strength``,
``realized_volatility``, ``volatility_regime_target`` (one row per bar), and
``weak_pattern_labels`` (one row per window, rule-based pre-annotation for human review).
``LABELS`` maps the names the CLI uses to producers; ``build_labels`` runs one over a bar
table of one or more symbols.

Written by hand: the triple-barrier method (López de Prado, *Advances in Financial Machine
Learning*, ch. 3) has no maintained library with OHLC (high/low) touches and a recorded
horizon; the others are a few lines of numpy. ATR comes from TA-Lib.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import talib
from numpy.lib.stride_tricks import sliding_window_view

from moola.core.errors import ConfigError

MISSING_POS = -1
# Rows per block of the triple-barrier scan: bounds its (rows x horizon) work arrays.
_SCAN_CELLS = 4_000_000


# --------------------------------------------------------------------------- checks
def _check_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ConfigError(f"Label parameter {name}={value!r} must be an integer >= {minimum}.")
    return int(value)


def _check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    number = float(value)
    if not np.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"Label parameter {name}={value!r} must be a finite number {bound}.")
    return number


def _one_symbol(bars: pd.DataFrame, what: str) -> None:
    missing = [c for c in ("timestamp", "high", "low", "close") if c not in bars.columns]
    if missing:
        raise ConfigError(
            f"{what} needs the canonical bar table; it lacks column(s) {missing} "
            "(build it with moola.data.schema.make_bars or a source reader)."
        )
    if "symbol" in bars.columns and bars["symbol"].nunique(dropna=False) > 1:
        raise ConfigError(
            f"{what} labels the bars of one symbol; got {bars['symbol'].nunique()} symbols. "
            "Use build_labels, which goes symbol by symbol."
        )


def _close(bars: pd.DataFrame) -> np.ndarray:
    return bars["close"].to_numpy(dtype=np.float64)


def _fixed_horizon_end(n: int, horizon: int) -> np.ndarray:
    """``t + horizon`` where that bar exists, else ``MISSING_POS``."""
    end = np.arange(n, dtype=np.int64) + horizon
    end[end >= n] = MISSING_POS
    return end


def _forward_window_sum(values: np.ndarray, horizon: int) -> np.ndarray:
    """Sum of ``values[t + 1 .. t + horizon]`` at each t; NaN where that runs past the end.

    A trailing rolling sum (pandas, compensated summation) read ``horizon`` rows later, so
    the value at t uses exactly the rows it names.
    """
    trailing = pd.Series(values).rolling(horizon, min_periods=horizon).sum().to_numpy()
    out = np.full(len(values), np.nan)
    if len(values) > horizon:
        out[:-horizon] = trailing[horizon:]
    return out


def _log_returns(close: np.ndarray) -> np.ndarray:
    """``r[i] = log(close[i] / close[i - 1])``; ``r[0] = NaN``."""
    returns = np.full(len(close), np.nan)
    returns[1:] = np.diff(np.log(close))
    return returns


# ------------------------------------------------------------------------ producers
def forward_return_direction(
    bars: pd.DataFrame, horizon: int, neutral_band: float = 0.0
) -> pd.DataFrame:
    """Direction of the close ``horizon`` bars ahead: ``label`` in {-1, 0, 1}.

    ``forward_return = log(close[t + horizon] / close[t])``; the label is 1 above
    ``neutral_band``, -1 below ``-neutral_band`` and 0 within it (band inclusive). With the
    default band 0 the label is 0 only for an exactly unchanged close (flat or coarsely
    quoted prices). ``horizon_end = t + horizon``.
    """
    _one_symbol(bars, "forward_return_direction")
    horizon = _check_int(horizon, "horizon")
    band = _check_positive(neutral_band, "neutral_band", allow_zero=True)
    close = _close(bars)
    n = len(close)
    forward = np.full(n, np.nan)
    if n > horizon:
        forward[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    label = np.where(forward > band, 1.0, np.where(forward < -band, -1.0, 0.0))
    label[np.isnan(forward)] = np.nan
    return pd.DataFrame(
        {
            "label": label,
            "forward_return": forward,
            "horizon_end": _fixed_horizon_end(n, horizon),
        },
        index=bars.index,
    )


def triple_barrier(
    bars: pd.DataFrame,
    *,
    horizon: int,
    pt_mult: float,
    sl_mult: float,
    atr_period: int = 14,
) -> pd.DataFrame:
    """Which of three barriers the price touches first after bar t.

    Entry is the close of bar t. The profit-take barrier is ``close[t] + pt_mult * ATR[t]``,
    the stop-loss ``close[t] - sl_mult * ATR[t]``, with ATR (TA-Lib, ``atr_period``) as known
    at the close of t; the vertical barrier is bar ``t + horizon``. Bars ``t + 1 ..
    t + horizon`` are scanned: a high at or above the profit-take is a touch of it, a low at
    or below the stop a touch of the stop. When both fall inside one bar's range the stop
    is assumed first (the worse outcome: the bar's path is unknown).

    Columns: ``label`` (1 profit-take first, -1 stop first, 0 neither by the vertical
    barrier), ``touch_pos``/``touch_ts`` (the bar of the touch; ``t + horizon`` for the
    vertical barrier), ``pt_price``/``sl_price`` (the barriers), ``horizon_end`` (=
    ``touch_pos``: the label looks no further). A label whose barriers are touched before the
    data ends is known even when ``t + horizon`` lies beyond it; otherwise rows near the end
    and the ATR warm-up are missing (``touch_pos = horizon_end = -1``).
    """
    _one_symbol(bars, "triple_barrier")
    horizon = _check_int(horizon, "horizon")
    atr_period = _check_int(atr_period, "atr_period")
    pt_mult = _check_positive(pt_mult, "pt_mult")
    sl_mult = _check_positive(sl_mult, "sl_mult")
    close = _close(bars)
    high = bars["high"].to_numpy(dtype=np.float64)
    low = bars["low"].to_numpy(dtype=np.float64)
    n = len(close)
    atr = talib.ATR(high, low, close, timeperiod=atr_period) if n else np.empty(0)
    pt_price = close + pt_mult * atr
    sl_price = close - sl_mult * atr

    # Row t sees highs/lows of bars t+1 .. t+horizon; beyond the data nothing is touched.
    future_high = sliding_window_view(
        np.concatenate([high[1:], np.full(horizon, -np.inf)]), horizon
    )
    future_low = sliding_window_view(np.concatenate([low[1:], np.full(horizon, np.inf)]), horizon)
    label = np.full(n, np.nan)
    touch = np.full(n, MISSING_POS, dtype=np.int64)
    block = max(1, _SCAN_CELLS // horizon)
    for first in range(0, n, block):
        rows = np.arange(first, min(n, first + block))
        hit_pt = future_high[rows] >= pt_price[rows, None]  # (rows, horizon)
        hit_sl = future_low[rows] <= sl_price[rows, None]
        hit = hit_pt | hit_sl
        step = hit.argmax(axis=1)
        touched = hit[np.arange(len(rows)), step]
        stop = hit_sl[np.arange(len(rows)), step]
        vertical = rows + horizon < n
        label[rows] = np.where(touched, np.where(stop, -1.0, 1.0), np.where(vertical, 0.0, np.nan))
        touch[rows] = np.where(touched, rows + 1 + step, np.where(vertical, rows + horizon, -1))
    unknown = np.isnan(atr)
    label[unknown] = np.nan
    touch[unknown | np.isnan(label)] = MISSING_POS
    stamps = bars["timestamp"].reset_index(drop=True)
    touch_ts = stamps.iloc[np.maximum(touch, 0)].set_axis(bars.index)
    touch_ts = touch_ts.where(touch != MISSING_POS, pd.NaT)
    return pd.DataFrame(
        {
            "label": label,
            "touch_pos": touch,
            "touch_ts": touch_ts,
            "pt_price": np.where(unknown, np.nan, pt_price),
            "sl_price": np.where(unknown, np.nan, sl_price),
            "horizon_end": touch.copy(),
        },
        index=bars.index,
    )


def trend_strength(bars: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """How straight the path of the next ``horizon`` closes is, in [0, 1].

    The efficiency ratio (Kaufman) of log closes over bars t .. t + horizon:
    ``|log close[t + h] - log close[t]| / sum |log close[i] - log close[i - 1]|``, 1 for a
    straight move, near 0 for chop that goes nowhere; 0 for a flat path. Direction-free
    (pair it with ``forward_return_direction`` for the sign). ``horizon_end = t + horizon``.
    """
    _one_symbol(bars, "trend_strength")
    horizon = _check_int(horizon, "horizon")
    close = _close(bars)
    n = len(close)
    log_close = np.log(close)
    net = np.full(n, np.nan)
    if n > horizon:
        net[:-horizon] = np.abs(log_close[horizon:] - log_close[:-horizon])
    path = _forward_window_sum(np.abs(_log_returns(close)), horizon)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(path > 0, net / path, 0.0)
    ratio = np.clip(ratio, 0.0, 1.0)
    ratio[np.isnan(net)] = np.nan
    return pd.DataFrame(
        {"trend_strength": ratio, "horizon_end": _fixed_horizon_end(n, horizon)},
        index=bars.index,
    )


def realized_volatility(bars: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Realised volatility of the next ``horizon`` bars: ``sqrt(sum r_i^2)`` of the close
    log returns ``r_i`` for i = t + 1 .. t + horizon (per horizon, not annualised).
    ``horizon_end = t + horizon``."""
    _one_symbol(bars, "realized_volatility")
    horizon = _check_int(horizon, "horizon")
    close = _close(bars)
    variance = _forward_window_sum(_log_returns(close) ** 2, horizon)
    return pd.DataFrame(
        {
            "realized_vol": np.sqrt(np.clip(variance, 0.0, None)),
            "horizon_end": _fixed_horizon_end(len(close), horizon),
        },
        index=bars.index,
    )


def volatility_regime_target(
    bars: pd.DataFrame,
    horizon: int,
    *,
    window: int = 1440,
    low_quantile: float = 0.33,
    high_quantile: float = 0.67,
) -> pd.DataFrame:
    """The regime the next ``horizon`` bars' realised volatility falls in: 0 low, 1 medium,
    2 high.

    The cut points are the ``low_quantile`` and ``high_quantile`` of the trailing realised
    volatility (same ``horizon``, over bars up to t) across the last ``window`` bars, so
    they use only the past; the value compared with them is ``realized_volatility`` at t.
    Columns ``vol_regime``, ``realized_vol``, ``vol_low``/``vol_high`` (the cut points) and
    ``horizon_end = t + horizon``; missing during the ``window + horizon`` warm-up and near
    the end.
    """
    _one_symbol(bars, "volatility_regime_target")
    horizon = _check_int(horizon, "horizon")
    window = _check_int(window, "window", minimum=2)
    if not (0.0 < float(low_quantile) < float(high_quantile) < 1.0):
        raise ConfigError(
            f"Label parameters low_quantile={low_quantile!r}, high_quantile={high_quantile!r} "
            "must satisfy 0 < low_quantile < high_quantile < 1."
        )
    close = _close(bars)
    squared = pd.Series(_log_returns(close) ** 2)
    trailing = np.sqrt(squared.rolling(horizon, min_periods=horizon).sum().clip(lower=0.0))
    cuts = trailing.rolling(window, min_periods=window)
    vol_low = cuts.quantile(float(low_quantile)).to_numpy()
    vol_high = cuts.quantile(float(high_quantile)).to_numpy()
    forward = realized_volatility(bars, horizon)["realized_vol"].to_numpy()
    regime = np.where(forward < vol_low, 0.0, np.where(forward > vol_high, 2.0, 1.0))
    unknown = np.isnan(forward) | np.isnan(vol_low) | np.isnan(vol_high)
    regime[unknown] = np.nan
    end = _fixed_horizon_end(len(close), horizon)
    end[unknown] = MISSING_POS
    return pd.DataFrame(
        {
            "vol_regime": regime,
            "realized_vol": forward,
            "vol_low": vol_low,
            "vol_high": vol_high,
            "horizon_end": end,
        },
        index=bars.index,
    )


# ---------------------------------------------------------------- weak window labels
WEAK_LABEL_COLUMNS: tuple[str, ...] = (
    "symbol",
    "start",
    "end",
    "start_ts",
    "end_ts",
    "label",
    "grade",
    "source",
    "impulse",
    "retrace",
    "tail_range",
    "horizon_end",
)
RETRACEMENT_RULE = "rule:impulse-pullback"
CONSOLIDATION_RULE = "rule:tight-tail"


def weak_pattern_labels(
    bars: pd.DataFrame,
    starts: Sequence[int] | np.ndarray | pd.DataFrame,
    length: int,
    *,
    min_impulse: float = 5.0,
    min_retrace: float = 0.25,
    max_retrace: float = 0.8,
    tail_fraction: float = 0.4,
    max_tail_range: float = 3.0,
) -> pd.DataFrame:
    """Rule-based ``retracement`` / ``consolidation`` guesses for windows, for human review.

    ``starts`` are window start positions in ``bars`` (or a windows table with a ``start``
    column); a window is ``length`` bars. Measured in units of the window's mean bar range
    (high - low) on closes:

    - ``impulse``: the largest close-to-close run inside the window (a rise from a running
      low, or a fall from a running high, whichever is bigger), and ``retrace``: the share
      of it given back by the window's last close.
    - ``tail_range``: high-low range of the last ``tail_fraction`` of the window.

    With a move (impulse >= ``min_impulse``), a window is ``consolidation`` (source
    ``"rule:tight-tail"``) when the price then went quiet (``tail_range <=
    max_tail_range``), and ``retracement`` (source ``"rule:impulse-pullback"``) when it did
    not and gave back ``min_retrace`` to ``max_retrace`` of the move; otherwise the rules
    abstain (``label`` and ``source`` missing). The defaults were set on the synthetic
    market's planted patterns (``moola.data.sources.synthetic``), where they label most
    windows and mislabel few; on real data they are a first guess for a reviewer.

    ``grade`` is always missing: grading is the reviewer's. The rule's name in ``source``
    keeps these apart from human labels; drop the unlabelled rows before using the table as
    a labels file. ``horizon_end`` is the window's last bar.
    """
    length = _check_int(length, "length", minimum=2)
    min_impulse = _check_positive(min_impulse, "min_impulse")
    max_tail_range = _check_positive(max_tail_range, "max_tail_range")
    if not (0.0 <= min_retrace <= max_retrace):
        raise ConfigError(
            f"Label parameters min_retrace={min_retrace!r}, max_retrace={max_retrace!r} must "
            "satisfy 0 <= min_retrace <= max_retrace."
        )
    if not (0.0 < tail_fraction <= 1.0):
        raise ConfigError(f"Label parameter tail_fraction={tail_fraction!r} must be in (0, 1].")
    positions = _window_starts(bars, starts, length)
    close = sliding_window_view(_close(bars), length)[positions]  # (N, T)
    high = sliding_window_view(bars["high"].to_numpy(np.float64), length)[positions]
    low = sliding_window_view(bars["low"].to_numpy(np.float64), length)[positions]
    scale = (high - low).mean(axis=1)
    scale = np.where(scale > 0, scale, np.nan)
    rows = np.arange(len(positions))

    rise = close - np.minimum.accumulate(close, axis=1)
    fall = np.maximum.accumulate(close, axis=1) - close
    rise_end, fall_end = rise.argmax(axis=1), fall.argmax(axis=1)
    rise_size, fall_size = rise[rows, rise_end], fall[rows, fall_end]
    rising = rise_size >= fall_size
    size = np.where(rising, rise_size, fall_size)
    peak = close[rows, np.where(rising, rise_end, fall_end)]
    given_back = np.where(rising, peak - close[:, -1], close[:, -1] - peak)
    with np.errstate(invalid="ignore", divide="ignore"):
        retrace = np.where(size > 0, given_back / size, 0.0)
    impulse = size / scale
    tail = max(1, round(length * tail_fraction))
    tail_range = (high[:, -tail:].max(axis=1) - low[:, -tail:].min(axis=1)) / scale

    moved = impulse >= min_impulse
    quiet = tail_range <= max_tail_range
    is_retracement = moved & ~quiet & (retrace >= min_retrace) & (retrace <= max_retrace)
    is_consolidation = moved & quiet
    label = pd.Series(pd.NA, index=rows, dtype="string")
    source = pd.Series(pd.NA, index=rows, dtype="string")
    label[is_retracement], source[is_retracement] = "retracement", RETRACEMENT_RULE
    label[is_consolidation], source[is_consolidation] = "consolidation", CONSOLIDATION_RULE
    ends = positions + length - 1
    stamps = bars["timestamp"].reset_index(drop=True)
    symbols = (
        bars["symbol"].astype("string").reset_index(drop=True).iloc[positions]
        if "symbol" in bars.columns
        else pd.Series([pd.NA] * len(positions), dtype="string")
    )
    return pd.DataFrame(
        {
            "symbol": symbols.reset_index(drop=True),
            "start": positions,
            "end": ends,
            "start_ts": stamps.iloc[positions].reset_index(drop=True),
            "end_ts": stamps.iloc[ends].reset_index(drop=True),
            "label": label.reset_index(drop=True),
            "grade": pd.Series(pd.NA, index=rows, dtype="string"),
            "source": source.reset_index(drop=True),
            "impulse": impulse,
            "retrace": retrace,
            "tail_range": tail_range,
            "horizon_end": ends,
        },
        columns=list(WEAK_LABEL_COLUMNS),
    )


def _window_starts(
    bars: pd.DataFrame, starts: Sequence[int] | np.ndarray | pd.DataFrame, length: int
) -> np.ndarray:
    if isinstance(starts, pd.DataFrame):
        if "start" not in starts.columns:
            raise ConfigError(
                f"The windows table has no 'start' column (columns: {list(starts.columns)}); "
                "pass window start positions or a table from moola.data.windows."
            )
        starts = starts["start"].to_numpy()
    positions = np.asarray(starts)
    if positions.ndim != 1 or (positions.size and positions.dtype.kind not in "iu"):
        raise ConfigError("Window starts must be a 1-D sequence of integer bar positions.")
    positions = positions.astype(np.int64)
    bad = np.flatnonzero((positions < 0) | (positions > len(bars) - length))
    if bad.size:
        raise ConfigError(
            f"Window start(s) {positions[bad[:5]].tolist()} are outside the {len(bars)} bars "
            f"for length {length}; valid starts are 0..{len(bars) - length}."
        )
    if "symbol" in bars.columns and positions.size:
        symbol = bars["symbol"].astype("string").to_numpy()
        crossing = np.flatnonzero(symbol[positions] != symbol[positions + length - 1])
        if crossing.size:
            raise ConfigError(
                f"Window(s) starting at {positions[crossing[:5]].tolist()} cross a symbol "
                "boundary; take starts from moola.data.windows.window_starts."
            )
    return positions


# ------------------------------------------------------------------------- registry
LabelProducer = Callable[..., pd.DataFrame]

LABELS: dict[str, LabelProducer] = {
    "forward-return": forward_return_direction,
    "triple-barrier": triple_barrier,
    "trend-strength": trend_strength,
    "realized-vol": realized_volatility,
    "vol-regime": volatility_regime_target,
}
TARGETS: dict[str, str] = {
    "forward-return": "label",
    "triple-barrier": "label",
    "trend-strength": "trend_strength",
    "realized-vol": "realized_vol",
    "vol-regime": "vol_regime",
}
_POSITION_COLUMNS: tuple[str, ...] = ("horizon_end", "touch_pos")


def label_producer(name: str) -> LabelProducer:
    """The producer registered as ``name`` (``_`` and ``-`` are the same)."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in LABELS:
        close = difflib.get_close_matches(key, LABELS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"Unknown label kind '{name}'.{hint} Known: {', '.join(LABELS)}.")
    return LABELS[key]


def check_label_params(name: str, params: dict[str, Any], *, as_flags: bool = False) -> None:
    """Refuse parameters the producer ``name`` does not take, or required ones left out.

    With ``as_flags`` the message names command-line flags (``--pt-mult``) instead of
    parameters (``pt_mult``).
    """
    signature = inspect.signature(label_producer(name))
    accepted = list(signature.parameters.values())[1:]  # after ``bars``

    def show(names: list[str]) -> str:
        return ", ".join("--" + n.replace("_", "-") if as_flags else n for n in names)

    unknown = sorted(set(params) - {p.name for p in accepted})
    if unknown:
        raise ConfigError(
            f"Label '{name}' takes no {show(unknown)}; it takes {show([p.name for p in accepted])}."
        )
    required = [
        p.name for p in accepted if p.default is inspect.Parameter.empty and p.name not in params
    ]
    if required:
        raise ConfigError(f"Label '{name}' needs {show(required)}.")


def build_labels(bars: pd.DataFrame, name: str, **params: Any) -> pd.DataFrame:
    """Labels ``name`` over a bar table of one or more symbols, symbol by symbol.

    Returns ``timestamp``, ``symbol``, the producer's columns and ``horizon_end_ts`` (the
    open time of bar ``horizon_end``, NaT where missing), one row per bar in the order of
    ``bars``. Positions (``horizon_end``, ``touch_pos``) are row positions in ``bars`` as
    given (reset index), so they never point into another symbol's rows.
    """
    producer = label_producer(name)
    check_label_params(name, params)
    frame = bars.reset_index(drop=True)
    if "symbol" in frame.columns:
        groups = frame.groupby(frame["symbol"].astype(str), sort=False).indices
    else:
        groups = {"": np.arange(len(frame))}
    parts = []
    for rows in groups.values():
        if np.any(np.diff(rows) != 1):
            raise ConfigError(
                "build_labels needs each symbol's bars in one contiguous, time-sorted block "
                "(canonical order: by symbol, then time)."
            )
        part = producer(frame.iloc[rows].reset_index(drop=True), **params)
        for column in _POSITION_COLUMNS:
            if column in part.columns:
                values = part[column].to_numpy()
                part[column] = np.where(values == MISSING_POS, MISSING_POS, values + int(rows[0]))
        part.index = rows
        parts.append(part)
    labels = pd.concat(parts).sort_index() if parts else producer(frame, **params)
    end = labels["horizon_end"].to_numpy()
    stamps = frame["timestamp"]
    end_ts = stamps.iloc[np.maximum(end, 0)].set_axis(frame.index) if len(frame) else stamps
    end_ts = end_ts.where(end != MISSING_POS, pd.NaT)
    out = pd.DataFrame(
        {
            "timestamp": frame["timestamp"],
            "symbol": frame["symbol"].astype("string")
            if "symbol" in frame.columns
            else pd.Series(pd.NA, index=frame.index, dtype="string"),
        }
    )
    out = pd.concat([out, labels.reset_index(drop=True)], axis=1)
    out["horizon_end_ts"] = end_ts
    return out
