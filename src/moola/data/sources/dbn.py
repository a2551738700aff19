"""Databento DBN files, plain or zstd: OHLCV bars (schemas ohlcv-1s / 1m / 1h / 1d) read
as stored, and trades, tbbo and mbp-1 ticks aggregated into 1-second bars.

The metadata header is decoded with ``databento_dbn``. The records that follow are
fixed-size structs, so when the file holds nothing else they are read in one go with
``numpy.frombuffer`` (a day of a liquid name's trades, or a year of one-second bars, is
tens of millions of records; one Python object per record would be far slower). Any other
content (extra record types, a torn last record) goes through a walk over the records'
length headers, which skips the other records and names a damaged one.

Tick schemas become 1-second bars through ``moola.data.ticks.ticks_to_bars`` (OHLC from
trade prices, volume, trade count, VWAP, last bid/ask and spread, quiet seconds carried
and flagged, a session filter): ``read_dbn`` returns their canonical bar columns, or
with ``extras=True`` (what ``moola data ingest`` asks for, so a raw dataset keeps them)
the full table that ``read_dbn_ticks`` returns. In trades and tbbo files every
record is a trade (tbbo adds the best bid and offer just before it); in mbp-1 files the
records with action ``T`` are trades and every record carries the book's top level after
the event.

Prices are fixed-point integers in units of 1e-9 (``databento_dbn.FIXED_PRICE_SCALE``);
``UNDEF_PRICE`` becomes NaN. ``ts_event`` is the bar's open time in UTC nanoseconds.
Symbols come from the metadata's symbol mappings (input symbol -> instrument id, per
date), so a continuous symbol such as ``ES.c.0`` labels every contract it rolled through.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import databento_dbn
import numpy as np
import pandas as pd
import zstandard
from pydantic import ValidationError

from moola.core.errors import ConfigError, SourceError
from moola.core.timeframes import parse_timeframe
from moola.data.schema import BAR_COLUMNS
from moola.data.sources._common import PathLike, Where, assemble, check_timeframe, require_file
from moola.data.ticks import (
    TICK_BAR_COLUMNS,
    US_EQUITIES_TIMEZONE,
    TickBarConfig,
    parse_session,
    ticks_to_bars,
)

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
#: Tick schemas, aggregated into 1-second bars: schema -> the record type it holds.
TICK_SCHEMAS: dict[str, int] = {
    "trades": databento_dbn.RType.MBP_0.value,
    "tbbo": databento_dbn.RType.MBP_1.value,
    "mbp-1": databento_dbn.RType.MBP_1.value,
}
#: The session ``read_dbn`` applies to tick files unless told otherwise.
DEFAULT_SESSION = "04:00-20:00"
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
#: A trade (rtype 0, 48 bytes) and an MBP-1 / TBBO record (rtype 1, 80 bytes: the trade's
# fields, then the top book level).
TRADE_RECORD = [
    ("length", "u1"),
    ("rtype", "u1"),
    ("publisher_id", "<u2"),
    ("instrument_id", "<u4"),
    ("ts_event", "<u8"),
    ("price", "<i8"),
    ("size", "<u4"),
    ("action", "u1"),
    ("side", "u1"),
    ("flags", "u1"),
    ("depth", "u1"),
    ("ts_recv", "<u8"),
    ("ts_in_delta", "<i4"),
    ("sequence", "<u4"),
]
_MBP1 = [
    *TRADE_RECORD,
    ("bid_px", "<i8"),
    ("ask_px", "<i8"),
    ("bid_sz", "<u4"),
    ("ask_sz", "<u4"),
    ("bid_ct", "<u4"),
    ("ask_ct", "<u4"),
]
_TRADE_ACTION = ord("T")


def read_dbn(
    path: PathLike,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    session: str | None = DEFAULT_SESSION,
    session_timezone: str = US_EQUITIES_TIMEZONE,
    first_session: str | dt.date | None = None,
    extras: bool = False,
) -> pd.DataFrame:
    """Read a Databento file (``.dbn`` or ``.dbn.zst``) as canonical bars.

    OHLCV schemas give their bars as stored. ``timeframe`` defaults to the file's schema
    (ohlcv-1m -> ``"1m"``); a different one is refused. The tick schemas ``trades``,
    ``tbbo`` and ``mbp-1`` give 1-second bars (``timeframe`` "1s") built by
    ``moola.data.ticks.ticks_to_bars`` inside ``session`` (``"HH:MM-HH:MM"`` local time in
    ``session_timezone``, default 04:00-20:00 America/New_York; ``None`` or ``"24h"``: all
    hours, UTC days), from ``first_session`` (a date, with the session before it kept as
    context) when given; ``read_dbn_ticks`` returns the same bars with the trade count,
    VWAP, quotes and the filled flag, and so does ``read_dbn`` with ``extras=True`` (the
    declared extra bar columns of ``moola.data.schema.EXTRA_COLUMNS``; OHLCV files have
    none, so it changes nothing for them). A second without trades carries the last close
    with zero volume, so in the canonical columns ``volume == 0`` marks it.

    ``symbol`` defaults to the symbols in the file's symbol mappings, several instruments
    giving a multi-symbol table; given, it names all bars, which is refused when the
    mappings show several symbols.

    Raises ``SourceError`` naming the file for a missing, truncated or corrupt file, an
    unsupported schema (e.g. mbo, mbp-10, definition) or records with no symbol mapping;
    ``ConfigError`` for a time frame the file contradicts, a bad session, or session
    options given for an OHLCV file.
    """
    file = require_file(path)
    data = _decompress(file)
    metadata, body_start = _metadata(data, file)
    schema = _schema(metadata, data, body_start)
    if schema in TICK_SCHEMAS:
        if timeframe is not None:
            check_timeframe(timeframe)
            if parse_timeframe(timeframe) != parse_timeframe("1s"):
                raise ConfigError(
                    f"{file}: holds {schema} ticks, which are read as 1-second bars, but "
                    f"timeframe={timeframe!r} was given. Omit timeframe (or pass '1s') and "
                    "resample the bars after reading."
                )
        config = _tick_config(file, session, session_timezone, first_session)
        bars = _tick_bars(file, data, body_start, metadata, schema, symbol, config)
        return bars if extras else bars.loc[:, list(BAR_COLUMNS)]
    if (
        session != DEFAULT_SESSION
        or session_timezone != US_EQUITIES_TIMEZONE
        or first_session is not None
    ):
        raise ConfigError(
            f"{file}: session, session_timezone and first_session apply to tick files "
            f"(schemas {', '.join(TICK_SCHEMAS)}); this file holds "
            f"{schema or 'OHLCV'} bars, which are read as stored. Leave them out."
        )
    where = Where(file, "record {}", 0)
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


def read_dbn_ticks(
    path: PathLike,
    *,
    symbol: str | None = None,
    session: str | None = DEFAULT_SESSION,
    session_timezone: str = US_EQUITIES_TIMEZONE,
    first_session: str | dt.date | None = None,
) -> pd.DataFrame:
    """Read a Databento ``trades``, ``tbbo`` or ``mbp-1`` file as 1-second bars with all of
    ``moola.data.ticks.TICK_BAR_COLUMNS`` (canonical columns, then ``trades``, ``vwap``,
    ``bid``, ``ask``, ``spread``, ``filled``), sorted by symbol then time.

    Options as in ``read_dbn``. Raises ``SourceError`` naming the file and the schema for
    any other schema, and for a truncated or corrupt file.
    """
    file = require_file(path)
    data = _decompress(file)
    metadata, body_start = _metadata(data, file)
    schema = _schema(metadata, data, body_start)
    if schema not in TICK_SCHEMAS:
        raise SourceError(
            f"{file}: the DBN schema is {schema or 'unknown'!r}; ticks are read from the "
            f"schemas {list(TICK_SCHEMAS)}. Use read_dbn for OHLCV bars, or request one of "
            "those from Databento."
        )
    config = _tick_config(file, session, session_timezone, first_session)
    return _tick_bars(file, data, body_start, metadata, schema, symbol, config)


def _schema(metadata: databento_dbn.Metadata, data: bytes, body_start: int) -> str | None:
    """The file's schema; for a mixed-schema stream (no schema in the metadata) the tick
    schema its first record belongs to, else None (OHLCV records decide later)."""
    if metadata.schema is not None:
        return str(metadata.schema)
    if len(data) > body_start + 1:
        rtype = data[body_start + 1]
        if rtype == databento_dbn.RType.MBP_0.value:
            return "trades"
        if rtype == databento_dbn.RType.MBP_1.value:
            return "mbp-1"
    return None


def _tick_config(
    file: Path, session: str | None, timezone: str, first_session: str | dt.date | None
) -> TickBarConfig:
    try:
        return TickBarConfig(
            session=parse_session(session), timezone=timezone, first_session=first_session
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'session_timezone' if error['loc'][0] == 'timezone' else error['loc'][0]}: "
            + str(error["msg"]).removeprefix("Value error, ")
            for error in error.errors()
        )
        raise ConfigError(f"{file}: bad tick bar options ({problems}).") from None


def _tick_bars(
    file: Path,
    data: bytes,
    body_start: int,
    metadata: databento_dbn.Metadata,
    schema: str,
    symbol: str | None,
    config: TickBarConfig,
) -> pd.DataFrame:
    """The file's tick records aggregated into 1-second bars, per symbol."""
    rtype = TICK_SCHEMAS[schema]
    fields = TRADE_RECORD if rtype == databento_dbn.RType.MBP_0.value else _MBP1
    records = _fixed_records(data, body_start, metadata, file, fields, {rtype}, schema)
    undefined = np.flatnonzero(records["ts_event"] == databento_dbn.UNDEF_TIMESTAMP)
    if len(undefined):
        raise SourceError(
            f"{file}: {schema} records without an event time (ts_event undefined) at "
            f"{Where(file, 'record {}', 0).rows(undefined)}. Request the data again."
        )
    names, codes = _symbol_codes(metadata, records, symbol, Where(file, "record {}", 0))
    price = _price(records["price"])
    size = records["size"].astype(np.float64)
    trade = records["action"] == _TRADE_ACTION if schema == "mbp-1" else None
    bid = _price(records["bid_px"]) if "bid_px" in records.dtype.names else None
    ask = _price(records["ask_px"]) if "ask_px" in records.dtype.names else None
    if codes is None:
        parts = [(names[0], slice(None))]
    else:
        order = np.argsort(codes, kind="stable")
        cuts = np.searchsorted(codes[order], np.arange(len(names) + 1))
        parts = [(name, order[cuts[i] : cuts[i + 1]]) for i, name in enumerate(names)]
    frames = [
        ticks_to_bars(
            records["ts_event"][rows],
            price[rows],
            size[rows],
            symbol=name,
            trade=None if trade is None else trade[rows],
            bid=None if bid is None else bid[rows],
            ask=None if ask is None else ask[rows],
            config=config,
        )
        for name, rows in parts
    ]
    if len(records) and not any(len(frame) for frame in frames):
        hours = (
            "at any hour"
            if config.session is None
            else f"between {config.session[0]:%H:%M:%S} and {config.session[1]:%H:%M:%S} "
            f"{config.timezone}"
        )
        raise SourceError(
            f"{file}: none of its {len(records):,} {schema} records is a trade {hours}, so "
            "there are no bars. Check the session (session='24h' keeps all hours) and "
            "first_session, or that the file holds trades."
        )
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True).loc[:, list(TICK_BAR_COLUMNS)]


def _price(raw: np.ndarray) -> np.ndarray:
    """Fixed-point 1e-9 prices as floats; ``UNDEF_PRICE`` becomes NaN."""
    prices = raw / databento_dbn.FIXED_PRICE_SCALE
    undefined = raw == databento_dbn.UNDEF_PRICE
    if undefined.any():
        prices[undefined] = np.nan
    return prices


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
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # no copy of a one-frame file


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
    return _fixed_records(data, body_start, metadata, file, _RECORD, set(_RTYPE_TIMEFRAMES), "bar")


def _fixed_records(
    data: bytes,
    body_start: int,
    metadata: databento_dbn.Metadata,
    file: Path,
    fields: list[tuple[str, str]],
    rtypes: set[int],
    what: str,
) -> np.ndarray:
    """The file's records of the types ``rtypes`` as a structured array with ``fields``:
    in one ``frombuffer`` when the body holds only such records, else by a walk."""
    dtype = np.dtype(fields + ([("ts_out", "<u8")] if metadata.ts_out else []))
    body = memoryview(data)[body_start:]
    if len(body) % dtype.itemsize == 0:
        records = np.frombuffer(body, dtype=dtype)
        rtype = records["rtype"]
        if (records["length"] == dtype.itemsize // 4).all() and (
            (rtype == next(iter(rtypes))).all()
            if len(rtypes) == 1
            else np.isin(rtype, list(rtypes)).all()
        ):
            return records
    return _decode_records(data, body_start, file, np.dtype(fields), rtypes, what)


def _decode_records(
    data: bytes, body_start: int, file: Path, dtype: np.dtype, rtypes: set[int], what: str
) -> np.ndarray:
    """Slow path for mixed or damaged content: walk the records one by one by their length
    headers, keeping those of the types ``rtypes`` (``what`` names them in errors).

    Done here rather than with databento_dbn's decoder because the decoder panics (a Rust
    abort printed with its backtrace, uncatchable as an ordinary error) on a record shorter
    than its type; this walk names the record and byte instead.
    """
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
                f"{file}: the DBN file of {what} records is truncated ({len(data) - offset} "
                f"bytes of an incomplete record after {count} whole records). Download it "
                "again."
            )
        if data[offset + 1] in rtypes:
            if length < dtype.itemsize:
                raise SourceError(
                    f"{file}: the DBN records are corrupt ({what} record {count} at byte "
                    f"{offset} has {length} of its {dtype.itemsize} bytes). Download the file "
                    "again."
                )
            offsets.append(offset)
        offset += length
        count += 1
    flat = np.frombuffer(data, dtype=np.uint8)
    rows = flat[np.asarray(offsets, dtype=np.int64)[:, None] + np.arange(dtype.itemsize)]
    return rows.copy().view(dtype).reshape(-1)


def _timeframe(
    metadata: databento_dbn.Metadata, bars: np.ndarray, timeframe: str | None, file: Path
) -> str:
    schema = str(metadata.schema) if metadata.schema is not None else None
    if schema is not None and schema not in SCHEMA_TIMEFRAMES:
        raise SourceError(
            f"{file}: the DBN schema is {schema!r}; moola reads bars from the schemas "
            f"{list(SCHEMA_TIMEFRAMES)} and ticks (made into 1-second bars) from "
            f"{list(TICK_SCHEMAS)}. Request one of those from Databento."
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
    """Each bar's symbol (see ``_symbol_codes``): one name, or a label per record."""
    names, codes = _symbol_codes(metadata, bars, symbol, where)
    if codes is None:
        return names[0]
    return pd.Series(pd.array(names, dtype="string").take(codes))


def _symbol_codes(
    metadata: databento_dbn.Metadata, bars: np.ndarray, symbol: str | None, where: Where
) -> tuple[list[str], np.ndarray | None]:
    """Each record's symbol: the caller's, or the input symbol mapped to its instrument on
    the record's UTC date (mapping end dates are exclusive; an instrument with a single
    symbol keeps it on days its intervals do not cover). Returns the names and, when there
    are several, each record's index into them (None: every record has ``names[0]``)."""
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
    present = np.flatnonzero(np.bincount(codes + 1, minlength=len(names) + 1)[1:])
    distinct = [names[code] for code in present]
    if symbol is not None:
        if len(distinct) > 1:
            raise SourceError(
                f"{where.path}: the file holds several symbols ({', '.join(distinct[:10])}) "
                f"but symbol={symbol!r} was given. Pass symbol=None to read them all as a "
                "multi-symbol table."
            )
        return [symbol], None
    if len(intervals) == 0 and len(set(metadata.symbols)) == 1:
        return [metadata.symbols[0]], None
    missing = np.flatnonzero(codes < 0)
    if len(distinct) == 1 and not len(missing):
        return distinct, None
    if len(missing):
        ids = sorted({int(i) for i in instrument_ids[missing]})
        raise SourceError(
            f"{where.path}: no symbol mapping for instrument id(s) {ids[:10]} at "
            f"{where.rows(missing)}. Pass symbol= to name the bars, or request the data "
            "with stype_out='instrument_id' so the file carries its symbol mappings."
        )
    return names, codes


def _codes_by_date(
    intervals: pd.DataFrame, instrument_ids: np.ndarray, ts_event: np.ndarray
) -> np.ndarray:
    """Per record, the ``code`` of the interval covering its (instrument, UTC date); -1 if
    none. Matched once per distinct (instrument, date) pair: a day of ticks is millions of
    records but a handful of pairs."""
    if len(intervals) == 0 or len(ts_event) == 0:
        return np.full(len(ts_event), -1, dtype=np.int64)
    day_ns = 86_400 * 10**9
    first_day, last_day = int(ts_event.min()) // day_ns, int(ts_event.max()) // day_ns
    if (
        first_day >= 0
        and last_day - first_day < 366
        and (instrument_ids == instrument_ids[0]).all()
    ):
        # One instrument (a typical tick file): match each day once, not each record.
        days = np.arange(first_day, last_day + 1, dtype=np.int64)
        per_day = _match_pairs(intervals, np.full(len(days), instrument_ids[0]), days)
        if (per_day == per_day[0]).all():
            return np.full(len(ts_event), per_day[0], dtype=np.int64)
        return per_day[ts_event // day_ns - first_day]
    day = ts_event // day_ns
    # Records come in time order, so equal pairs come in long runs: factorize one key per run.
    key = instrument_ids * (1 << 24) + day
    runs = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    run_codes, _ = pd.factorize(key[runs], sort=False)
    # factorize numbers pairs by first appearance: a new pair is a new running maximum.
    first = runs[np.flatnonzero(np.diff(np.maximum.accumulate(run_codes), prepend=-1) > 0)]
    codes = _match_pairs(intervals, instrument_ids[first], day[first])
    return np.repeat(codes[run_codes], np.diff(np.r_[runs, len(key)]))


def _match_pairs(
    intervals: pd.DataFrame, instrument_ids: np.ndarray, days: np.ndarray
) -> np.ndarray:
    """Per (instrument, UTC day number) pair, the ``code`` of the interval covering it; -1
    if none (mapping end dates are exclusive)."""
    day_ns = 86_400 * 10**9
    codes = np.full(len(days), -1, dtype=np.int64)
    keys = pd.DataFrame(
        {
            "position": np.arange(len(days)),
            "instrument_id": np.asarray(instrument_ids, dtype=np.int64),
            "day": (np.asarray(days, dtype=np.int64) * day_ns).view("datetime64[ns]"),
        }
    ).sort_values("day", kind="stable")
    spans = intervals.assign(
        start=pd.to_datetime(intervals["start"]).astype("datetime64[ns]"),
        end=pd.to_datetime(intervals["end"]).astype("datetime64[ns]"),
    ).sort_values("start", kind="stable")
    matched = pd.merge_asof(
        keys, spans, left_on="day", right_on="start", by="instrument_id", direction="backward"
    )
    covered = (matched["end"] > matched["day"]).to_numpy()
    codes[matched["position"].to_numpy()[covered]] = matched["code"].to_numpy()[covered]
    return codes
