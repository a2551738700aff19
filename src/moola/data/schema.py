"""The canonical bar table every source produces and every consumer reads.

Columns, in order: ``timestamp`` (tz-aware UTC, the bar's open time), ``open``, ``high``,
``low``, ``close`` (float64), ``volume`` (float64, >= 0), ``symbol`` and ``timeframe``
(strings, e.g. ``"NQ"`` and ``"1m"``). Rows are sorted by symbol, then time.

A table may carry some of the declared ``EXTRA_COLUMNS`` after the canonical ones, in
their declared order: the per-bar statistics of 1-second bars built from ticks
(``moola.data.ticks``), which a raw dataset stores beside the OHLCV columns. No other
column is a bar column: ``moola.data.validation`` refuses unknown ones by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from moola.core.timeframes import parse_timeframe

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
NUMERIC_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")
BAR_COLUMNS: tuple[str, ...] = ("timestamp", *NUMERIC_COLUMNS, "symbol", "timeframe")

EXTRA_COLUMNS: dict[str, str] = {
    "trades": "int64",  # trades in the bar, >= 0
    "vwap": "float64",  # size-weighted mean trade price; within [low, high] when trades > 0
    "bid": "float64",  # last best bid known at the bar's end; NaN when none is known
    "ask": "float64",  # last best ask known at the bar's end, >= bid; NaN when none
    "spread": "float64",  # ask - bid; NaN when either side is missing
    "filled": "bool",  # no trade in the bar: the last close carried, volume 0
}
"""Optional bar columns, in the order they follow the canonical ones, with their dtypes."""


def make_bars(
    timestamp: Sequence | np.ndarray | pd.Series | pd.DatetimeIndex,
    open: Sequence[float] | np.ndarray,
    high: Sequence[float] | np.ndarray,
    low: Sequence[float] | np.ndarray,
    close: Sequence[float] | np.ndarray,
    volume: Sequence[float] | np.ndarray | None = None,
    *,
    symbol: str,
    timeframe: str,
) -> pd.DataFrame:
    """Build a canonical bar table from column arrays (timestamps must already be UTC-aware
    or naive UTC). Values are not validated here: see ``moola.data.validation``."""
    parse_timeframe(timeframe)
    stamps = pd.to_datetime(pd.Series(timestamp), utc=True).reset_index(drop=True)
    n = len(stamps)
    frame = pd.DataFrame(
        {
            "timestamp": stamps.astype("datetime64[ns, UTC]"),
            "open": np.asarray(open, dtype=np.float64),
            "high": np.asarray(high, dtype=np.float64),
            "low": np.asarray(low, dtype=np.float64),
            "close": np.asarray(close, dtype=np.float64),
            "volume": (np.zeros(n) if volume is None else np.asarray(volume, dtype=np.float64)),
        }
    )
    frame["symbol"] = constant_strings(symbol, n)
    frame["timeframe"] = constant_strings(timeframe, n)
    return frame


def constant_strings(value: str, n: int) -> pd.Series:
    """A "string" column of ``n`` copies of ``value``, built without a Python list (fast at 10M)."""
    return pd.Series(pd.array([value], dtype="string").take(np.zeros(n, dtype=np.intp)))


def empty_bars() -> pd.DataFrame:
    """A canonical bar table with no rows (right columns and dtypes)."""
    return make_bars([], [], [], [], [], [], symbol="", timeframe="1m").iloc[0:0]


def extra_columns(frame: pd.DataFrame) -> tuple[str, ...]:
    """The declared ``EXTRA_COLUMNS`` that ``frame`` holds, in declared order."""
    return tuple(column for column in EXTRA_COLUMNS if column in frame.columns)


def is_canonical(frame: pd.DataFrame) -> bool:
    """True when ``frame`` has exactly the canonical columns, order and dtypes."""
    if tuple(frame.columns) != BAR_COLUMNS:
        return False
    if str(frame["timestamp"].dtype) != "datetime64[ns, UTC]":
        return False
    return all(frame[column].dtype == np.float64 for column in NUMERIC_COLUMNS)
