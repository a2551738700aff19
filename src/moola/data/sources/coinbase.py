"""Coinbase candles: the Advanced Trade API's JSON payload and CSV exports of it.

Accepted layouts:

- ``{"candles": [{"start": "1700000000", "low": ..., "high": ..., "open": ..., "close": ...,
  "volume": ...}, ...]}`` as returned by ``GET /api/v3/brokerage/products/{id}/candles``
  (values are strings, ``start`` is epoch seconds, newest candle first);
- a bare JSON list of such candle objects;
- a JSON list of ``[time, low, high, open, close, volume]`` arrays (the older Coinbase
  Exchange API's order);
- a CSV file with columns start (or time / timestamp: epoch seconds or ISO 8601 text),
  low, high, open, close, volume.

Whatever the order in the file, the table comes out oldest first. The payload does not
carry its granularity; when ``timeframe`` is not given it is inferred from the most common
spacing of the candles, which must be one of Coinbase's granularities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError, SourceError
from moola.data.sources._common import (
    PathLike,
    Where,
    assemble,
    check_timeframe,
    parse_numbers,
    parse_timestamps,
    require_file,
    require_symbol,
    resolve_columns,
)

#: Coinbase candle granularities, in seconds, and moola's name for each.
GRANULARITIES: dict[int, str] = {
    60: "1m",
    300: "5m",
    900: "15m",
    1800: "30m",
    3600: "1h",
    7200: "2h",
    21600: "6h",
    86400: "1d",
}
_FIELDS = ("start", "low", "high", "open", "close", "volume")
_CSV_CANDIDATES = {
    "start": ("start", "time", "timestamp"),
    "low": ("low",),
    "high": ("high",),
    "open": ("open",),
    "close": ("close",),
    "volume": ("volume",),
}
_NO_SYMBOL = "Coinbase candles do not name their product"


def read_coinbase(
    path: PathLike, *, symbol: str | None = None, timeframe: str | None = None
) -> pd.DataFrame:
    """Read Coinbase candles (JSON payload, JSON list or CSV export) as canonical bars.

    ``symbol`` is the product, e.g. ``"BTC-USD"`` (required: the payload does not name it).
    ``timeframe`` is the candle granularity, e.g. ``"1h"``; when omitted it is inferred from
    the candles' spacing.

    Raises ``SourceError`` for a missing or malformed file, missing fields, unreadable
    times or non-numeric values (naming the candles / lines), and ``ConfigError`` when no
    symbol is given or the time frame cannot be inferred.
    """
    file = require_file(path)
    if timeframe is not None:
        check_timeframe(timeframe)
    symbol = require_symbol(symbol, Where(file), _NO_SYMBOL)
    if file.suffix.lower() == ".csv":
        raw, where = _read_csv(file)
    else:
        raw, where = _read_json(file)
    stamps = _parse_start(raw["start"], where)
    values = {name: parse_numbers(raw[name], name, where) for name in _FIELDS[1:]}
    if timeframe is None:
        timeframe = infer_granularity(stamps, where)
    return assemble(stamps, values, symbol=symbol, timeframe=timeframe)


def infer_granularity(stamps: pd.Series, where: Where) -> str:
    """The Coinbase granularity matching the most common spacing of ``stamps``."""
    seconds = (
        np.diff(np.unique(stamps.dt.tz_localize(None).to_numpy().view(np.int64))) // 1_000_000_000
    )
    values, counts = np.unique(seconds, return_counts=True)
    spacing = int(values[np.argmax(counts)]) if len(values) else None
    if spacing not in GRANULARITIES:
        raise ConfigError(
            f"{where.path}: cannot infer the candle granularity (most common spacing: "
            f"{'n/a, fewer than two candles' if spacing is None else f'{spacing} s'}). Pass "
            f"timeframe=, one of {list(GRANULARITIES.values())}."
        )
    return GRANULARITIES[spacing]


def _read_json(file: Path) -> tuple[pd.DataFrame, Where]:
    try:
        payload = json.loads(file.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise SourceError(f"{file}: not a UTF-8 text file, so not Coinbase JSON.") from None
    except json.JSONDecodeError as error:
        raise SourceError(
            f"{file}: not valid JSON ({error.msg} at line {error.lineno}, column "
            f"{error.colno}). The download may be truncated: fetch it again."
        ) from None
    if isinstance(payload, dict) and isinstance(payload.get("candles"), list):
        candles, label = payload["candles"], "candles[{}]"
    elif isinstance(payload, list):
        candles, label = payload, "[{}]"
    else:
        found = list(payload) if isinstance(payload, dict) else type(payload).__name__
        raise SourceError(
            f"{file}: expected a JSON object with a 'candles' list or a JSON list of candles, "
            f"found {found}. Save the API response body unchanged."
        )
    where = Where(file, label, 0)
    if all(isinstance(candle, dict) for candle in candles):
        raw = pd.DataFrame.from_records(candles, columns=None if candles else list(_FIELDS))
        missing = [name for name in _FIELDS if name not in raw.columns]
        if missing:
            raise SourceError(
                f"{file}: candles lack the field(s) {missing}; fields found: "
                f"{list(raw.columns)}. Each candle needs {list(_FIELDS)}."
            )
        absent = np.flatnonzero(raw[list(_FIELDS)].isna().any(axis=1).to_numpy())
        if len(absent):
            raise SourceError(
                f"{file}: candle(s) {where.rows(absent)} lack one of {list(_FIELDS)} or have "
                "it null. Fetch the candles again or remove those entries."
            )
        return raw[list(_FIELDS)].astype(object), where
    bad = [i for i, c in enumerate(candles) if not (isinstance(c, list) and len(c) == 6)]
    if bad:
        raise SourceError(
            f"{file}: entries {where.rows(np.asarray(bad))} are neither candle objects nor "
            "[time, low, high, open, close, volume] arrays. Save the API response unchanged."
        )
    return pd.DataFrame(candles, columns=list(_FIELDS), dtype=object), where


def _read_csv(file: Path) -> tuple[pd.DataFrame, Where]:
    where = Where(file, "line {}", 2)
    try:
        frame = pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise SourceError(
            f"{file}: not a readable CSV file ({str(error).strip()}). A Coinbase candle "
            "export has a header line 'start,low,high,open,close,volume' and one candle "
            "per line."
        ) from None
    names = resolve_columns(
        [str(name) for name in frame.columns],
        where=where,
        candidates=_CSV_CANDIDATES,
        required=_FIELDS,
    )
    return frame[[names[name] for name in _FIELDS]].set_axis(list(_FIELDS), axis=1), where


def _parse_start(raw: pd.Series, where: Where) -> pd.Series:
    """Epoch seconds (numbers or numeric text) or ISO 8601 text -> UTC timestamps."""
    raw = raw.reset_index(drop=True)
    numeric = pd.to_numeric(raw, errors="coerce")
    if len(raw) and numeric.notna().all():
        return parse_timestamps(numeric, "start", where, unit="s")
    return parse_timestamps(raw.astype("string"), "start", where)
