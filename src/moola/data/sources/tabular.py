"""CSV and Parquet bar files with any column names, time zone or epoch unit.

pandas and PyArrow do the reading; this module only finds the bar columns (by name,
case-insensitively, or by the caller's ``columns=`` mapping) and hands the cells to the
shared parsers, which name the rows of any problem. Values are not checked against the
OHLC rules here: that is ``moola.data.validation``'s job.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from moola.core.errors import ConfigError, SourceError
from moola.data.sources._common import (
    PathLike,
    Where,
    assemble,
    check_timeframe,
    file_timeframe,
    one_symbol,
    parse_numbers,
    parse_timestamps,
    require_file,
    require_symbol,
    resolve_columns,
)

#: Canonical name -> accepted column names (case-insensitive, in order of preference).
COLUMN_CANDIDATES: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "datetime", "time", "date"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "volume": ("volume",),
    "symbol": ("symbol",),
    "timeframe": ("timeframe",),
}
_REQUIRED = ("timestamp", "open", "high", "low", "close")
_NO_SYMBOL = "the file has no 'symbol' column, so it does not say which instrument it holds"


def read_csv_bars(
    path: PathLike,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    columns: Mapping[str, str] | None = None,
    timezone: str = "UTC",
    timestamp_unit: str | None = None,
) -> pd.DataFrame:
    """Read a comma-separated bar file into the canonical bar table (sorted by time).

    Parameters
    ----------
    path : str or path-like
        The CSV file; the first line names the columns.
    symbol : str, optional
        The instrument. Required unless the file has a ``symbol`` column; given for a
        file with one symbol in its ``symbol`` column, it renames it.
    timeframe : str, optional
        The bar length, e.g. ``"1m"``. Required unless the file has a ``timeframe``
        column (as tables moola writes do), which must then agree with it.
    columns : mapping, optional
        Canonical name -> column name in the file, for names not found automatically.
        Without it ``timestamp`` is the first of timestamp / datetime / time / date (or
        ``date`` + ``time`` joined when both exist and neither of the first two does),
        and open, high, low, close, volume, symbol, timeframe match case-insensitively. A missing
        ``volume`` becomes 0.
    timezone : str, default "UTC"
        IANA zone of timestamps written without a zone or offset, e.g.
        ``"America/New_York"`` (daylight saving applied). Timestamps with an offset, and
        epoch numbers, are absolute and converted to UTC whatever this says.
    timestamp_unit : {"s", "ms", "us", "ns"}, optional
        Unit of epoch-number timestamps.

    Raises
    ------
    SourceError
        Missing or malformed file, columns not found, unparseable timestamps, text in a
        numeric column, or local times that do not exist / are ambiguous in ``timezone``.
    ConfigError
        Unknown ``timeframe``, ``timezone``, ``timestamp_unit`` or ``columns`` key, or no
        symbol where one is needed.
    """
    file = require_file(path)
    if timeframe is not None:
        check_timeframe(timeframe)
    where = Where(file, "line {}", 2)
    # The whole file is read (no usecols): pandas then refuses lines with extra fields
    # instead of silently cutting them.
    frame = _read_csv(file)
    _refuse_duplicates(file, _csv_header(file))
    header = [str(name) for name in frame.columns]
    if len(header) == 1 and (sep := next((s for s in ";\t|" if s in header[0]), None)):
        raise SourceError(
            f"{file}: the header line {header[0]!r} seems separated by {sep!r}, not commas. "
            "Save the file comma-separated; for a HistData.com file pass format='histdata'."
        )
    resolved, stamp_columns = _pick_columns(header, where, columns)
    return _to_bars(
        frame, resolved, stamp_columns, where, symbol, timeframe, timezone, timestamp_unit
    )


def read_parquet_bars(
    path: PathLike,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    columns: Mapping[str, str] | None = None,
    timezone: str = "UTC",
    timestamp_unit: str | None = None,
) -> pd.DataFrame:
    """Read a Parquet bar file into the canonical bar table (sorted by time).

    Options and errors as :func:`read_csv_bars`; rows in messages are counted from 1.
    Timestamp columns stored as Parquet timestamps need no parsing: zone-aware ones are
    converted to UTC, naive ones are read as wall-clock time in ``timezone``.
    """
    file = require_file(path)
    if timeframe is not None:
        check_timeframe(timeframe)
    where = Where(file, "row {}", 1)
    try:
        header = list(pq.read_schema(file).names)
        _refuse_duplicates(file, header)
        resolved, stamp_columns = _pick_columns(header, where, columns)
        wanted = list(dict.fromkeys([*resolved.values(), *stamp_columns]))
        frame = pq.read_table(file, columns=wanted).to_pandas(ignore_metadata=True)
    except (pa.ArrowException, OSError) as error:
        raise SourceError(
            f"{file}: not a readable Parquet file ({error}). The file may be truncated or "
            "corrupt: download or export it again. If it is a CSV file, pass format='csv'."
        ) from None
    return _to_bars(
        frame, resolved, stamp_columns, where, symbol, timeframe, timezone, timestamp_unit
    )


def _read_csv(file: Path, **options) -> pd.DataFrame:
    try:
        return pd.read_csv(file, **options)
    except pd.errors.EmptyDataError:
        raise SourceError(
            f"{file}: the file is empty. A bar CSV starts with a header line such as "
            "'timestamp,open,high,low,close,volume'."
        ) from None
    except pd.errors.ParserError as error:
        raise SourceError(
            f"{file}: not a well-formed CSV file ({str(error).strip()}). Every line must have "
            "as many comma-separated fields as the header line; fix or remove the line named."
        ) from None
    except UnicodeDecodeError:
        raise SourceError(
            f"{file}: not a UTF-8 text file. If it is a Parquet file pass format='parquet'; "
            "if it is text in another encoding, save it as UTF-8."
        ) from None


def _csv_header(file: Path) -> list[str]:
    """The header line's names as written (pandas renames a repeated ``close`` to
    ``close.1``, which would hide the repetition)."""
    with file.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def _refuse_duplicates(file: Path, header: list[str]) -> None:
    """Two columns with one name: which one holds the bars is a guess, so refuse."""
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise SourceError(
            f"{file}: the column name(s) {repeated} appear more than once in the header; "
            "rename or remove the extra column(s) so each name is used once."
        )


def _pick_columns(
    header: list[str], where: Where, columns: Mapping[str, str] | None
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Resolved canonical -> file columns, and the column(s) holding the timestamp."""
    lower = {name.strip().lower(): name for name in header}
    date_and_time = (
        not (columns and "timestamp" in columns)
        and {"date", "time"} <= lower.keys()
        and not {"timestamp", "datetime"} & lower.keys()
    )
    required = [name for name in _REQUIRED if not (date_and_time and name == "timestamp")]
    resolved = resolve_columns(
        header, where=where, candidates=COLUMN_CANDIDATES, required=required, mapping=columns
    )
    if date_and_time:
        return resolved, (lower["date"], lower["time"])
    return resolved, (resolved["timestamp"],)


def _to_bars(
    frame: pd.DataFrame,
    resolved: dict[str, str],
    stamp_columns: tuple[str, ...],
    where: Where,
    symbol: str | None,
    timeframe: str | None,
    timezone: str,
    timestamp_unit: str | None,
) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    if "timeframe" in resolved:
        timeframe = file_timeframe(
            frame[resolved["timeframe"]], timeframe, where, resolved["timeframe"]
        )
    elif timeframe is None:
        raise ConfigError(
            f"{where.path}: the file has no 'timeframe' column, so it does not say how long "
            "its bars are. Pass timeframe=, for example timeframe='1m'.",
            param="timeframe",
        )
    if len(stamp_columns) == 2:
        date, time = (frame[name].astype("string") for name in stamp_columns)
        raw_stamps, stamp_name = date + " " + time, " + ".join(stamp_columns)
    else:
        raw_stamps, stamp_name = frame[stamp_columns[0]], stamp_columns[0]
    if "symbol" in resolved:
        labels = one_symbol(frame[resolved["symbol"]], symbol, where, resolved["symbol"])
    else:
        labels = require_symbol(symbol, where, _NO_SYMBOL)
    stamps = parse_timestamps(
        raw_stamps,
        stamp_name,
        where,
        timezone=timezone,
        unit=timestamp_unit,
        groups=None if isinstance(labels, str) else labels,
    )
    values = {
        name: parse_numbers(frame[resolved[name]], resolved[name], where)
        for name in ("open", "high", "low", "close", "volume")
        if name in resolved
    }
    return assemble(stamps, values, symbol=labels, timeframe=timeframe)
