"""Databento DBN files of OHLCV bars (schemas ohlcv-1s / 1m / 1h / 1d), plain or zstd.

The metadata header is decoded with ``databento_dbn``. The bar records that follow are
fixed-size structs, so when the file holds nothing else they are read in one go with
``numpy.frombuffer`` (a year of one-second bars is tens of millions of records; one
Python object per record would be far slower). Any other content (extra record types, a
torn last record) goes through ``databento_dbn.DBNDecoder``, which is also what reports a
damaged file.

Prices are fixed-point integers in units of 1e-9 (``databento_dbn.FIXED_PRICE_SCALE``);
``UNDEF_PRICE`` becomes NaN. ``ts_event`` is the bar's open time in UTC nanoseconds.
Symbols come from the metadata's symbol mappings (input symbol -> instrument id, per
date), so a continuous symbol such as ``ES.c.0`` labels every contract it rolled through.
"""

from __future__ import annotations

from pathlib import Path

import databento_dbn
import numpy as np
import pandas as pd
import zstandard

from moola.core.errors import ConfigError, SourceError
from moola.core.timeframes import parse_timeframe
from moola.data.sources._common import PathLike, Where, assemble, check_timeframe, require_file

#: DBN schema -> moola time frame. ohlcv-eod is left out: its bars follow trading
#: sessions, not UTC days, so "1d" bars opening at ts_event would be a different thing.
SCHEMA_TIMEFRAMES: dict[str, str] = {
    "ohlcv-1s": "1s",
    "ohlcv-1m": "1m",
    "ohlcv-1h": "1h",
    "ohlcv-1d": "1d",
}
_RTYPE_TIMEFRAMES: dict[int, str] = {
    databento_dbn.RType.OHLCV_1S.value: "1s",
    databento_dbn.RType.OHLCV_1M.value: "1m",
    databento_dbn.RType.OHLCV_1H.value: "1h",
    databento_dbn.RType.OHLCV_1D.value: "1d",
}
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_HEADER_BYTES = 16  # every DBN record starts with a 16-byte header
# One OHLCV record as DBN lays it out (little-endian): a 16-byte record header, then bar.
_RECORD = [
    ("length", "u1"),  # record size in 4-byte words
    ("rtype", "u1"),
    ("publisher_id", "<u2"),
    ("instrument_id", "<u4"),
    ("ts_event", "<u8"),
    ("open", "<i8"),
    ("high", "<i8"),
    ("low", "<i8"),
    ("close", "<i8"),
    ("volume", "<u8"),
]
_PRICES = ("open", "high", "low", "close")


def read_dbn(
    path: PathLike, *, symbol: str | None = None, timeframe: str | None = None
) -> pd.DataFrame:
    """Read a Databento OHLCV file (``.dbn`` or ``.dbn.zst``) as canonical bars.

    ``timeframe`` defaults to the file's schema (ohlcv-1m -> ``"1m"``); a different one
    is refused. ``symbol`` defaults to the symbols in the file's symbol mappings, several
    instruments giving a multi-symbol table; given, it names all bars, which is refused
    when the mappings show several symbols.

    Raises ``SourceError`` for a missing, truncated or corrupt file, a non-OHLCV schema or
    bars with no symbol mapping; ``ConfigError`` for a time frame the file contradicts.
    """
    file = require_file(path)
    where = Where(file, "record {}", 0)
    data = _decompress(file)
    metadata, body_start = _metadata(data, file)
    bars = _records(data, body_start, metadata, file)
    timeframe = _timeframe(metadata, bars, timeframe, file)
    prices = {
        name: np.where(
            bars[name] == databento_dbn.UNDEF_PRICE,
            np.nan,
            bars[name] / databento_dbn.FIXED_PRICE_SCALE,
        )
        for name in _PRICES
    }
    prices["volume"] = bars["volume"].astype(np.float64)
    stamps = pd.Series(pd.to_datetime(bars["ts_event"].astype(np.int64), unit="ns", utc=True))
    labels = _symbols(metadata, bars, symbol, where)
    return assemble(stamps, prices, symbol=labels, timeframe=timeframe)


def _decompress(file: Path) -> bytes:
    """The file's bytes, un-zstd'ed (frame by frame) when they start with the zstd magic."""
    data = file.read_bytes()
    if not data.startswith(_ZSTD_MAGIC):
        return data
    chunks = []
    try:
        while data:
            frame = zstandard.ZstdDecompressor().decompressobj()
            chunks.append(frame.decompress(data))
            if not frame.eof:
                raise zstandard.ZstdError("the last compressed frame is incomplete")
            data = frame.unused_data
    except zstandard.ZstdError as error:
        raise SourceError(
            f"{file}: the zstd compression is damaged ({error}); the file is probably "
            "truncated. Download it again."
        ) from None
    return b"".join(chunks)


def _metadata(data: bytes, file: Path) -> tuple[databento_dbn.Metadata, int]:
    """The decoded metadata and the offset of the first record."""
    if not data.startswith(b"DBN") or len(data) < 8:
        raise SourceError(
            f"{file}: not a DBN file (it does not start with the 'DBN' header). Pass a "
            "Databento .dbn or .dbn.zst file, or name the right format."
        )
    body_start = 8 + int.from_bytes(data[4:8], "little")
    if len(data) < body_start:
        raise SourceError(
            f"{file}: the DBN file ends inside its metadata header ({len(data)} of "
            f"{body_start} bytes); it is truncated. Download it again."
        )
    try:
        return databento_dbn.Metadata.decode(data[:body_start]), body_start
    except BaseException as error:  # DBNError, or a Rust panic on a damaged header
        if not isinstance(error, databento_dbn.DBNError) and not _is_panic(error):
            raise
        raise SourceError(
            f"{file}: the DBN metadata header is corrupt ({error}). Download the file again."
        ) from None


def _is_panic(error: BaseException) -> bool:
    """A Rust panic raised through pyo3 (a ``BaseException``, not an ``Exception``)."""
    return type(error).__name__ == "PanicException"


def _records(
    data: bytes, body_start: int, metadata: databento_dbn.Metadata, file: Path
) -> np.ndarray:
    """The file's OHLCV records as a structured array with the ``_RECORD`` fields."""
    dtype = np.dtype(_RECORD + ([("ts_out", "<u8")] if metadata.ts_out else []))
    body = memoryview(data)[body_start:]
    if len(body) % dtype.itemsize == 0:
        records = np.frombuffer(body, dtype=dtype)
        if (records["length"].astype(np.int64) * 4 == dtype.itemsize).all() and np.isin(
            records["rtype"], list(_RTYPE_TIMEFRAMES)
        ).all():
            return records
    return _decode_records(data, body_start, file)


def _decode_records(data: bytes, body_start: int, file: Path) -> np.ndarray:
    """Slow path for mixed or damaged content: walk the records one by one by their length
    headers, keeping the OHLCV bars.

    Done here rather than with databento_dbn's decoder because the decoder panics (a Rust
    abort printed with its backtrace, uncatchable as an ordinary error) on a record shorter
    than its type; this walk names the record and byte instead.
    """
    dtype = np.dtype(_RECORD)
    offsets: list[int] = []
    offset, count = body_start, 0
    while offset < len(data):
        length = data[offset] * 4
        if length < _HEADER_BYTES:
            raise SourceError(
                f"{file}: the DBN records are corrupt (record {count} at byte {offset} declares "
                f"{length} bytes, less than a record header). Download the file again."
            )
        if offset + length > len(data):
            raise SourceError(
                f"{file}: the DBN file is truncated ({len(data) - offset} bytes of an "
                f"incomplete record after {count} whole records). Download it again."
            )
        if data[offset + 1] in _RTYPE_TIMEFRAMES:
            if length < dtype.itemsize:
                raise SourceError(
                    f"{file}: the DBN records are corrupt (bar record {count} at byte {offset} "
                    f"has {length} of its {dtype.itemsize} bytes). Download the file again."
                )
            offsets.append(offset)
        offset += length
        count += 1
    rows = np.zeros(len(offsets), dtype)
    for row, start in enumerate(offsets):
        rows[row] = np.frombuffer(data, dtype, count=1, offset=start)[0]
    return rows


def _timeframe(
    metadata: databento_dbn.Metadata, bars: np.ndarray, timeframe: str | None, file: Path
) -> str:
    schema = str(metadata.schema) if metadata.schema is not None else None
    if schema is not None and schema not in SCHEMA_TIMEFRAMES:
        raise SourceError(
            f"{file}: the DBN schema is {schema!r}; moola reads bars only from the schemas "
            f"{list(SCHEMA_TIMEFRAMES)}. Request one of those from Databento."
        )
    if schema is not None:
        inferred = SCHEMA_TIMEFRAMES[schema]
    else:  # mixed-schema stream: the records must agree among themselves
        kinds = {_RTYPE_TIMEFRAMES.get(rtype) for rtype in np.unique(bars["rtype"]).tolist()}
        if len(kinds) > 1:
            raise SourceError(
                f"{file}: the file mixes bars of different lengths (record types "
                f"{np.unique(bars['rtype']).tolist()}). Split it per schema."
            )
        inferred = kinds.pop() if kinds else None
    if timeframe is None:
        if inferred is None:
            raise ConfigError(
                f"{file}: neither the metadata nor the records say how long the bars are. "
                "Pass timeframe=, for example timeframe='1m'."
            )
        return inferred
    check_timeframe(timeframe)
    if inferred is not None and parse_timeframe(timeframe) != parse_timeframe(inferred):
        raise ConfigError(
            f"{file}: holds {inferred} bars (schema {schema or 'from records'}) but "
            f"timeframe={timeframe!r} was given. Omit timeframe to use the file's, or "
            "resample the bars after reading."
        )
    return timeframe


def _symbols(
    metadata: databento_dbn.Metadata, bars: np.ndarray, symbol: str | None, where: Where
) -> str | pd.Series:
    """Each bar's symbol: the caller's, or the input symbol mapped to its instrument on the
    bar's UTC date (mapping end dates are exclusive; an instrument with a single symbol
    keeps it on days its intervals do not cover)."""
    names = sorted(metadata.mappings)
    intervals = pd.DataFrame(
        [
            (int(interval["symbol"]), code, interval["start_date"], interval["end_date"])
            for code, name in enumerate(names)
            for interval in metadata.mappings[name]
            if str(interval["symbol"]).isdigit()
        ],
        columns=["instrument_id", "code", "start", "end"],
    )
    instrument_ids = bars["instrument_id"].astype(np.int64)
    codes = _codes_by_date(intervals, instrument_ids, bars["ts_event"].astype(np.int64))
    unmapped = codes < 0
    if unmapped.any() and len(intervals):
        per_instrument = intervals.groupby("instrument_id")["code"].unique()
        only = {key: int(found[0]) for key, found in per_instrument.items() if len(found) == 1}
        filled = pd.Series(instrument_ids[unmapped]).map(only).fillna(-1)
        codes[unmapped] = filled.to_numpy(dtype=np.int64)
    distinct = [names[code] for code in np.unique(codes[codes >= 0])]
    if symbol is not None:
        if len(distinct) > 1:
            raise SourceError(
                f"{where.path}: the file holds several symbols ({', '.join(distinct[:10])}) "
                f"but symbol={symbol!r} was given. Pass symbol=None to read them all as a "
                "multi-symbol table."
            )
        return symbol
    if len(intervals) == 0 and len(set(metadata.symbols)) == 1:
        return metadata.symbols[0]
    missing = np.flatnonzero(codes < 0)
    if len(distinct) == 1 and not len(missing):
        return distinct[0]
    if len(missing):
        ids = sorted({int(i) for i in instrument_ids[missing]})
        raise SourceError(
            f"{where.path}: no symbol mapping for instrument id(s) {ids[:10]} at "
            f"{where.rows(missing)}. Pass symbol= to name the bars, or request the data "
            "with stype_out='instrument_id' so the file carries its symbol mappings."
        )
    return pd.Series(pd.array(names, dtype="string").take(codes))


def _codes_by_date(
    intervals: pd.DataFrame, instrument_ids: np.ndarray, ts_event: np.ndarray
) -> np.ndarray:
    """Per bar, the ``code`` of the interval covering its (instrument, UTC date); -1 if none."""
    codes = np.full(len(ts_event), -1, dtype=np.int64)
    if len(intervals) == 0 or len(ts_event) == 0:
        return codes
    day_ns = 86_400 * 10**9
    bars = pd.DataFrame(
        {
            "position": np.arange(len(ts_event)),
            "instrument_id": instrument_ids,
            "day": (ts_event // day_ns * day_ns).view("datetime64[ns]"),
        }
    ).sort_values("day", kind="stable")
    spans = intervals.assign(
        start=pd.to_datetime(intervals["start"]).astype("datetime64[ns]"),
        end=pd.to_datetime(intervals["end"]).astype("datetime64[ns]"),
    ).sort_values("start", kind="stable")
    matched = pd.merge_asof(
        bars, spans, left_on="day", right_on="start", by="instrument_id", direction="backward"
    )
    covered = (matched["end"] > matched["day"]).to_numpy()
    codes[matched["position"].to_numpy()[covered]] = matched["code"].to_numpy()[covered]
    return codes
