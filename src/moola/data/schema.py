"""The canonical bar table every source produces and every consumer reads.

Columns, in order: ``timestamp`` (tz-aware UTC, the bar's open time), ``open``, ``high``,
``low``, ``close`` (float64), ``volume`` (float64, >= 0), ``symbol`` and ``timeframe``
(strings, e.g. ``"NQ"`` and ``"1m"``). Rows are sorted by symbol, then time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from moola.core.timeframes import parse_timeframe

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
NUMERIC_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")
BAR_COLUMNS: tuple[str, ...] = ("timestamp", *NUMERIC_COLUMNS, "symbol", "timeframe")


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


def is_canonical(frame: pd.DataFrame) -> bool:
    """True when ``frame`` has exactly the canonical columns, order and dtypes."""
    if tuple(frame.columns) != BAR_COLUMNS:
        return False
    if str(frame["timestamp"].dtype) != "datetime64[ns, UTC]":
        return False
    return all(frame[column].dtype == np.float64 for column in NUMERIC_COLUMNS)
