"""Directional-change (intrinsic time) events, event-driven bars and causal DC features.

Directional change (Guillaume et al. 1997; Glattfelder, Dupuis & Olsen 2011) samples a
price series by its moves instead of the clock. It is defined here on CLOSE prices with a
relative threshold per direction:

- In an up-trend the running extreme is the highest close since the last event; a
  downward DC event is confirmed at the first close ``<= extreme * (1 - down)``.
- In a down-trend the running extreme is the lowest close since the last event; an
  upward DC event is confirmed at the first close ``>= extreme * (1 + up)``.
- The confirming close starts the new trend's running extreme. Among equal closes the
  earliest is the extreme.
- Initial trend: undecided until the first close that is at least ``up`` above the lowest
  close so far (an upward event whose extreme is that low) or at least ``down`` below the
  highest close so far (a downward event from that high). With a single first close this is
  "the first move of threshold size from the first close", extended to moves that start
  from a later low or high.

Each event splits the series into a DC segment (extreme -> confirmation, the move that
proves the reversal) and an overshoot (OS) segment (confirmation -> next extreme, the
trend's continuation). An OS segment ends at the next event's extreme, which is known only
when that next event is confirmed.

Typical thresholds (relative): FX majors 0.0005-0.001, volatile FX pairs 0.001-0.002,
crypto 0.005-0.01; a threshold well below the bars' typical close-to-close move makes an
event on nearly every bar.

Written by hand: TA-Lib and the usual libraries have no directional-change detector. The
scan is a single pass over the closes in plain Python (about 0.2 s per million bars); the
event table, the bars and the features around it are numpy-vectorised.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pydantic import Field

from moola.core.errors import ConfigError
from moola.data.schema import empty_bars, make_bars
from moola.features.base import Feature, FeatureParams, register_feature

EVENT_COLUMNS: tuple[str, ...] = (
    "direction",
    "extreme_ts",
    "extreme_price",
    "extreme_pos",
    "confirm_ts",
    "confirm_price",
    "confirm_pos",
    "threshold",
    "dc_return",
    "os_return",
    "os_bars",
)
DC_BAR_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "segment",
    "direction",
    "event",
    "start_ts",
    "end_ts",
    "start_pos",
    "end_pos",
    "known_pos",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "n_bars",
)
FEATURE_COLUMNS: tuple[str, ...] = (
    "dc_trend",
    "dc_bars_since_event",
    "dc_price_distance",
    "dc_overshoot_ratio",
)
# Bars of history DCFeature.lookback asks for: enough for _SYNC_EVENTS threshold-sized
# moves of a random walk whose per-bar log-return sd is _QUIET_BAR_SD (a quiet FX major on
# 1-minute bars), at least _MIN_LOOKBACK and at most _MAX_LOOKBACK.
_SYNC_EVENTS = 10
_QUIET_BAR_SD = 1e-4
_MIN_LOOKBACK = 1_000
_MAX_LOOKBACK = 100_000


def _check_threshold(value: float, flag: str) -> float:
    value = float(value)
    if not (0.0 < value < 1.0) or math.isnan(value):
        raise ConfigError(
            f"Directional-change threshold {flag}={value!r} must be a relative move in (0, 1), "
            "e.g. 0.0005 for FX majors, 0.002 for volatile pairs, 0.005-0.01 for crypto."
        )
    return value


def _one_symbol(bars: pd.DataFrame, what: str) -> None:
    if "symbol" in bars.columns and bars["symbol"].nunique(dropna=False) > 1:
        raise ConfigError(
            f"{what} works on the bars of one symbol; got symbols "
            f"{sorted(map(str, bars['symbol'].unique()))}. Select one symbol first "
            "(or use dc_tables, which goes symbol by symbol)."
        )


def _scan(close: list[float], up: float, down: float) -> tuple[list[int], list[int], list[int]]:
    """Directions (+1/-1), extreme positions and confirmation positions of every event."""
    directions: list[int] = []
    extremes: list[int] = []
    confirms: list[int] = []
    n = len(close)
    if n == 0:
        return directions, extremes, confirms
    up_factor, down_factor = 1.0 + up, 1.0 - down
    high = low = close[0]
    high_pos = low_pos = 0
    i = 1
    trend = 0
    while i < n:  # undecided: track both extremes until one side moves a threshold
        price = close[i]
        if price > high:
            high, high_pos = price, i
        elif price < low:
            low, low_pos = price, i
        if price >= low * up_factor:
            trend, extreme_pos = 1, low_pos
            break
        if price <= high * down_factor:
            trend, extreme_pos = -1, high_pos
            break
        i += 1
    if trend == 0:
        return directions, extremes, confirms
    directions.append(trend)
    extremes.append(extreme_pos)
    confirms.append(i)
    extreme, extreme_pos = close[i], i
    trigger = extreme * (down_factor if trend == 1 else up_factor)
    for j in range(i + 1, n):
        price = close[j]
        if trend == 1:
            if price > extreme:
                extreme, extreme_pos = price, j
                trigger = extreme * down_factor
            elif price <= trigger:
                directions.append(-1)
                extremes.append(extreme_pos)
                confirms.append(j)
                trend, extreme, extreme_pos = -1, price, j
                trigger = price * up_factor
        else:
            if price < extreme:
                extreme, extreme_pos = price, j
                trigger = extreme * up_factor
            elif price >= trigger:
                directions.append(1)
                extremes.append(extreme_pos)
                confirms.append(j)
                trend, extreme, extreme_pos = 1, price, j
                trigger = price * down_factor
    return directions, extremes, confirms


def _event_arrays(
    close: np.ndarray, up: float, down: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_scan`` as int64 arrays: direction (+1/-1), extreme and confirmation positions."""
    directions, extremes, confirms = _scan(close.tolist(), up, down)
    return (
        np.asarray(directions, dtype=np.int64),
        np.asarray(extremes, dtype=np.int64),
        np.asarray(confirms, dtype=np.int64),
    )


def _thresholds(up: float, down: float | None) -> tuple[float, float]:
    up = _check_threshold(up, "up")
    return up, (up if down is None else _check_threshold(down, "down"))


def detect_dc_events(
    bars: pd.DataFrame, *, up: float = 0.001, down: float | None = None
) -> pd.DataFrame:
    """Directional-change events of one symbol's bars, one row per event, in time order.

    ``up`` is the relative threshold of upward events (price rising from a low), ``down``
    that of downward events (``None``: same as ``up``). Columns: ``direction`` ("up" /
    "down"), ``extreme_ts/_price/_pos`` (the turning point where the event's move began),
    ``confirm_ts/_price/_pos`` (the close that confirmed it; positions are row positions in
    ``bars``), ``threshold`` (the one that applied), ``dc_return`` (log confirm / extreme
    price), and the overshoot of the previous trend, which ran from the previous event's
    confirmation to this event's extreme: ``os_return`` (log extreme / previous confirm
    price; >= 0 after an up-trend, <= 0 after a down-trend) and ``os_bars`` (bars in it);
    both NaN for the first event. A flat or too quiet series gives no rows.
    """
    up, down = _thresholds(up, down)
    _one_symbol(bars, "detect_dc_events")
    close = bars["close"].to_numpy(dtype=np.float64)
    sign, extreme_pos, confirm_pos = _event_arrays(close, up, down)
    extreme_price = close[extreme_pos]
    confirm_price = close[confirm_pos]
    os_return = np.full(len(sign), np.nan)
    os_bars = np.full(len(sign), np.nan)
    if len(sign) > 1:
        os_return[1:] = np.log(extreme_price[1:] / confirm_price[:-1])
        os_bars[1:] = extreme_pos[1:] - confirm_pos[:-1]
    stamps = bars["timestamp"].reset_index(drop=True)
    return pd.DataFrame(
        {
            "direction": _direction_names(sign > 0),
            "extreme_ts": stamps.iloc[extreme_pos].reset_index(drop=True),
            "extreme_price": extreme_price,
            "extreme_pos": extreme_pos,
            "confirm_ts": stamps.iloc[confirm_pos].reset_index(drop=True),
            "confirm_price": confirm_price,
            "confirm_pos": confirm_pos,
            "threshold": np.where(sign > 0, up, down).astype(np.float64),
            "dc_return": np.log(confirm_price / extreme_price),
            "os_return": os_return,
            "os_bars": os_bars,
        },
        columns=list(EVENT_COLUMNS),
    )


def _direction_names(is_up: np.ndarray) -> pd.Series:
    """ "up"/"down" as a categorical-backed string column (fast for many rows)."""
    codes = pd.Categorical.from_codes(is_up.astype(np.int8), categories=["down", "up"])
    return pd.Series(codes).astype("string")


def dc_bars(bars: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Event-driven bars: OHLCV aggregated over each DC segment and each complete OS segment.

    Every bar after the first event's extreme belongs to exactly one segment: DC segment k
    covers bars ``extreme_pos[k] + 1 .. confirm_pos[k]``, OS segment k covers
    ``confirm_pos[k] + 1 .. extreme_pos[k + 1]`` (dropped when empty: no overshoot). Bars
    before the first extreme and the still-running OS after the last event are left out.
    OHLCV: first open, highest high, lowest low, last close, summed volume over the segment.

    Columns: ``timestamp``, ``segment`` ("dc"/"os"), ``direction`` of the move ("up"/"down"),
    ``event`` (row of ``events``), ``start_ts/end_ts`` and ``start_pos/end_pos`` (first and
    last bar, inclusive), ``known_pos`` (the bar at whose close the segment is known: its
    confirmation for DC, the NEXT confirmation for OS, since an OS ends at an extreme seen
    as such only then), OHLCV and ``n_bars``.

    As a bar source: ``timestamp`` is the open time of bar ``known_pos``, following the
    canonical convention that a row is known at the close of the bar it is stamped with, so
    a consumer keyed by ``timestamp`` never sees a segment before it is complete. An OS and
    the following DC share that timestamp; for a canonical table with unique timestamps
    (``moola.data.schema.make_bars`` with the source ``timeframe``) either keep one segment
    kind, or merge OS k-1 with DC k into one bar per event (confirmation to confirmation).
    """
    _one_symbol(bars, "dc_bars")
    n_events = len(events)
    extreme_pos = events["extreme_pos"].to_numpy(dtype=np.int64)
    confirm_pos = events["confirm_pos"].to_numpy(dtype=np.int64)
    up = (events["direction"].astype(str) == "up").to_numpy()
    k = np.arange(n_events)
    # Interleave DC k and OS k (OS only for k < n - 1), in time order.
    seg_start = np.empty(2 * n_events, dtype=np.int64)
    seg_end = np.empty(2 * n_events, dtype=np.int64)
    seg_known = np.empty(2 * n_events, dtype=np.int64)
    seg_start[0::2], seg_end[0::2], seg_known[0::2] = extreme_pos + 1, confirm_pos, confirm_pos
    seg_start[1::2] = confirm_pos + 1
    seg_end[1::2] = np.append(extreme_pos[1:], -1)
    seg_known[1::2] = np.append(confirm_pos[1:], -1)
    is_dc = np.tile([True, False], n_events)
    seg_event = np.repeat(k, 2)
    seg_up = np.repeat(up, 2)
    keep = seg_end >= seg_start
    seg_start, seg_end, seg_known = seg_start[keep], seg_end[keep], seg_known[keep]
    is_dc, seg_event, seg_up = is_dc[keep], seg_event[keep], seg_up[keep]

    opens = bars["open"].to_numpy(dtype=np.float64)
    # Segments tile bars seg_start[0]..seg_end[-1] without gaps, so reduceat's groups
    # (start i up to start i + 1) are exactly the segments once the arrays end at the last.
    stop = int(seg_end[-1]) + 1 if len(seg_start) else 0

    def per_segment(ufunc: np.ufunc, column: str) -> np.ndarray:
        if not len(seg_start):
            return np.empty(0)
        return ufunc.reduceat(bars[column].to_numpy(dtype=np.float64)[:stop], seg_start)

    high = per_segment(np.maximum, "high")
    low = per_segment(np.minimum, "low")
    volume = per_segment(np.add, "volume")
    stamps = bars["timestamp"].reset_index(drop=True)
    return pd.DataFrame(
        {
            "timestamp": stamps.iloc[seg_known].reset_index(drop=True),
            "segment": pd.Series(
                pd.Categorical.from_codes(is_dc.astype(np.int8), categories=["os", "dc"])
            ).astype("string"),
            "direction": _direction_names(seg_up),
            "event": seg_event,
            "start_ts": stamps.iloc[seg_start].reset_index(drop=True),
            "end_ts": stamps.iloc[seg_end].reset_index(drop=True),
            "start_pos": seg_start,
            "end_pos": seg_end,
            "known_pos": seg_known,
            "open": opens[seg_start],
            "high": high,
            "low": low,
            "close": bars["close"].to_numpy(dtype=np.float64)[seg_end],
            "volume": volume,
            "n_bars": seg_end - seg_start + 1,
        },
        columns=list(DC_BAR_COLUMNS),
    )


def dc_tables(
    bars: pd.DataFrame, *, up: float = 0.001, down: float | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events and DC bars of a bar table of one or more symbols, with a ``symbol`` column.

    Positions (``*_pos``) stay row positions in ``bars`` as given, so they index it
    directly whatever the number of symbols.
    """
    events_parts, bars_parts = [], []
    frame = bars.reset_index(drop=True)
    groups = (
        frame.groupby(frame["symbol"].astype(str), sort=False).indices
        if "symbol" in frame.columns and len(frame)
        else {"": np.arange(len(frame))}
    )
    positions = {
        "events": ("extreme_pos", "confirm_pos"),
        "bars": ("start_pos", "end_pos", "known_pos"),
    }
    for symbol, rows in groups.items():
        part = frame.iloc[rows].reset_index(drop=True)
        events = detect_dc_events(part, up=up, down=down)
        segments = dc_bars(part, events)
        for table, columns in ((events, positions["events"]), (segments, positions["bars"])):
            for column in columns:  # positions in the symbol's bars -> in ``bars``
                table[column] = np.asarray(rows, dtype=np.int64)[table[column].to_numpy()]
            table.insert(0, "symbol", pd.Series([symbol] * len(table), dtype="string"))
        events_parts.append(events)
        bars_parts.append(segments)
    return (
        pd.concat(events_parts, ignore_index=True),
        pd.concat(bars_parts, ignore_index=True),
    )


def dc_event_bars(
    bars: pd.DataFrame, *, up: float = 0.001, down: float | None = None
) -> pd.DataFrame:
    """Canonical bars in intrinsic time: one bar per directional-change event.

    Bar k spans the source bars after event k-1's confirmation up to event k's
    confirmation (the overshoot of k-1 and the directional change of k; the first bar
    starts after the first event's extreme). It is stamped with the open time of its
    confirmation bar, so, as for any canonical bar, it is known at that bar's close and a
    consumer keyed by ``timestamp`` never sees it early: computing on ``bars[: t + 1]``
    gives the same event bars for every confirmation up to ``t``. The ``timeframe`` stays
    the source's (the bars are irregular: window them with gaps allowed). Each symbol is
    scanned on its own.
    """
    frame = bars.reset_index(drop=True)
    parts = []
    groups = frame.groupby(frame["symbol"].astype(str), sort=True).indices if len(frame) else {}
    for symbol, rows in groups.items():
        part = frame.iloc[rows].reset_index(drop=True)
        events = detect_dc_events(part, up=up, down=down)
        if not len(events):
            continue
        confirm = events["confirm_pos"].to_numpy(dtype=np.int64)
        start = np.concatenate([[int(events["extreme_pos"].iloc[0]) + 1], confirm[:-1] + 1])
        high = np.maximum.reduceat(part["high"].to_numpy(np.float64)[: confirm[-1] + 1], start)
        low = np.minimum.reduceat(part["low"].to_numpy(np.float64)[: confirm[-1] + 1], start)
        volume = np.add.reduceat(part["volume"].to_numpy(np.float64)[: confirm[-1] + 1], start)
        parts.append(
            make_bars(
                part["timestamp"].iloc[confirm].reset_index(drop=True),
                part["open"].to_numpy(np.float64)[start],
                high,
                low,
                part["close"].to_numpy(np.float64)[confirm],
                volume,
                symbol=symbol,
                timeframe=str(part["timeframe"].iloc[0]),
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else empty_bars()


def dc_features(
    bars: pd.DataFrame, *, up: float = 0.001, down: float | None = None
) -> pd.DataFrame:
    """Causal per-bar directional-change state (see ``DCFeature``), aligned with ``bars``."""
    up, down = _thresholds(up, down)
    _one_symbol(bars, "dc_features")
    close = bars["close"].to_numpy(dtype=np.float64)
    sign, extreme_pos, confirm_pos = _event_arrays(close, up, down)
    n = len(close)
    out = np.full((n, len(FEATURE_COLUMNS)), np.nan)
    if len(sign):
        first = int(confirm_pos[0])
        rows = np.arange(first, n)
        last = np.searchsorted(confirm_pos, rows, side="right") - 1  # event in force at row
        trend = sign[last].astype(np.float64)
        here = close[first:]
        out[first:, 0] = trend
        out[first:, 1] = rows - confirm_pos[last]
        out[first:, 2] = np.log(here / close[extreme_pos[last]])
        threshold = np.where(trend > 0, up, down)
        out[first:, 3] = trend * (here / close[confirm_pos[last]] - 1.0) / threshold + 0.0
    return pd.DataFrame(out, index=bars.index, columns=list(FEATURE_COLUMNS))


@register_feature
class DCFeature(Feature):
    """Directional-change state at each bar, from events confirmed at or before it.

    Columns: ``dc_trend`` (+1 after an upward event, -1 after a downward one),
    ``dc_bars_since_event`` (bars since the last confirmation; 0 on it),
    ``dc_price_distance`` (log close / extreme price of the last confirmed event: the move
    since the turning point, positive in an up-trend), ``dc_overshoot_ratio`` (the
    overshoot so far in units of the trend's threshold: ``trend * (close / confirm price -
    1) / threshold``, 0 at the confirmation, negative while price moves back). NaN until
    the first event is confirmed.
    """

    name = "dc"

    class Params(FeatureParams):
        up: float = Field(0.001, gt=0.0, lt=1.0, description="Upward-event threshold.")
        down: float | None = Field(
            None, gt=0.0, lt=1.0, description="Downward-event threshold (None: same as up)."
        )

    def columns(self) -> tuple[str, ...]:
        return FEATURE_COLUMNS

    def lookback(self) -> int:
        """A heuristic: DC state depends on the whole path since the first bar.

        A run started at a later bar rejoins the full-history run once both confirm a
        common event; on random walks that happened by the late run's second event in every
        trial. A threshold-sized move of a random walk takes about ``(threshold / sd)**2``
        bars, so this asks for 10 such moves at a per-bar sd of 0.0001 (quiet FX on 1-minute
        bars), 1,000 to 100,000 bars. Quieter bars need more; an engine that keeps the
        detector running from the first bar needs no buffer and is exact.
        """
        down = self.params.down if self.params.down is not None else self.params.up
        per_event = (max(self.params.up, down) / _QUIET_BAR_SD) ** 2
        return int(min(_MAX_LOOKBACK, max(_MIN_LOOKBACK, math.ceil(_SYNC_EVENTS * per_event))))

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        return dc_features(bars, up=self.params.up, down=self.params.down)
