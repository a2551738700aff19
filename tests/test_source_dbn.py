"""Databento DBN OHLCV reader: files written with databento_dbn's own encoder."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import databento_dbn as dbn
import pandas as pd
import pytest
import zstandard

from moola.core.errors import ConfigError, SourceError
from moola.data.schema import is_canonical
from moola.data.sources import read_dbn

T0 = 1_709_251_200 * 10**9  # 2024-03-01 00:00:00 UTC in ns
MINUTE = 60 * 10**9
DAY = 86_400 * 10**9


@dataclass
class Interval:  # databento_dbn.MappingInterval protocol
    start_date: dt.date
    end_date: dt.date
    symbol: str


@dataclass
class Mapping:  # databento_dbn.SymbolMapping protocol
    raw_symbol: str
    intervals: list[Interval]


def bar(iid: int, ts: int, o: int, h: int, lo: int, c: int, v: int, **kw) -> dbn.OHLCVMsg:
    return dbn.OHLCVMsg(dbn.RType.OHLCV_1M.value, 1, iid, ts, o, h, lo, c, v, **kw)


def write_dbn(
    path: Path,
    records: list,
    *,
    mappings: dict[str, list[tuple[dt.date, dt.date, int]]] | None = None,
    schema: dbn.Schema | None = dbn.Schema.OHLCV_1M,
    compress: bool = False,
    ts_out: bool = False,
) -> Path:
    """Write a DBN file the way Databento does: encoded metadata, then raw records."""
    mappings = (
        {"ESH4": [(dt.date(2024, 3, 1), dt.date(2024, 3, 2), 5002)]}
        if mappings is None
        else mappings
    )
    metadata = dbn.Metadata(
        dataset="GLBX.MDP3",
        start=T0,
        end=T0 + 3 * DAY,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=schema,
        symbols=list(mappings),
        mappings=[
            Mapping(name, [Interval(a, b, str(iid)) for a, b, iid in spans])
            for name, spans in mappings.items()
        ],
        ts_out=ts_out,
    )
    data = metadata.encode() + b"".join(bytes(record) for record in records)
    if compress:
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


ES_BARS = [
    bar(5002, T0, 4_512_250_000_000, 4_513_000_000_000, 4_511_750_000_000, 4_512_500_000_000, 120),
    bar(5002, T0 + MINUTE, 4_512_500_000_000, 4_514_250_000_000, 4_512_250_000_000,
        4_514_000_000_000, 95),
    bar(5002, T0 + 2 * MINUTE, 4_514_000_000_000, 4_514_500_000_000, 4_513_000_000_000,
        4_513_250_000_000, 143),
]  # fmt: skip


@pytest.mark.parametrize(("name", "compress"), [("es.dbn", False), ("es.dbn.zst", True)])
def test_reads_ohlcv_1m_with_fixed_point_prices(tmp_path, name, compress):
    bars = read_dbn(write_dbn(tmp_path / name, ES_BARS, compress=compress))
    assert is_canonical(bars)
    assert len(bars) == 3
    assert bars["timestamp"].iloc[0] == pd.Timestamp("2024-03-01 00:00", tz="UTC")
    assert bars["timestamp"].iloc[-1] == pd.Timestamp("2024-03-01 00:02", tz="UTC")
    assert bars["open"].iloc[0] == 4512.25
    assert bars["low"].iloc[0] == 4511.75
    assert bars["close"].iloc[-1] == 4513.25
    assert bars["volume"].tolist() == [120.0, 95.0, 143.0]
    assert set(bars["symbol"]) == {"ESH4"}
    assert set(bars["timeframe"]) == {"1m"}


def test_records_out_of_order_come_back_ascending(tmp_path):
    bars = read_dbn(write_dbn(tmp_path / "es.dbn", ES_BARS[::-1]))
    assert bars["timestamp"].is_monotonic_increasing
    assert bars["open"].iloc[0] == 4512.25


def test_several_instruments_give_a_multi_symbol_table(tmp_path):
    nq = bar(5003, T0, 18_000_500_000_000, 18_010_000_000_000, 17_990_000_000_000,
             18_005_000_000_000, 40)  # fmt: skip
    path = write_dbn(
        tmp_path / "two.dbn",
        [ES_BARS[0], nq, ES_BARS[1]],
        mappings={
            "ESH4": [(dt.date(2024, 3, 1), dt.date(2024, 3, 2), 5002)],
            "NQH4": [(dt.date(2024, 3, 1), dt.date(2024, 3, 2), 5003)],
        },
    )
    bars = read_dbn(path)
    assert bars["symbol"].tolist() == ["ESH4", "ESH4", "NQH4"]
    assert bars.loc[bars["symbol"] == "NQH4", "close"].item() == 18005.0
    with pytest.raises(SourceError, match="several symbols"):
        read_dbn(path, symbol="ES")


def test_symbols_follow_the_mapping_dates_through_a_roll(tmp_path):
    # ES.c.0 is instrument 1 on Mar 1 and 2 from Mar 2; ES.c.1 is 2 on Mar 1 and 3 after.
    d1, d2, d3 = dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)
    records = [
        bar(1, T0, 1, 1, 1, 1, 1),
        bar(2, T0, 2, 2, 2, 2, 1),
        bar(2, T0 + DAY, 3, 3, 3, 3, 1),
        bar(3, T0 + DAY, 4, 4, 4, 4, 1),
    ]
    path = write_dbn(
        tmp_path / "roll.dbn",
        records,
        mappings={"ES.c.0": [(d1, d2, 1), (d2, d3, 2)], "ES.c.1": [(d1, d2, 2), (d2, d3, 3)]},
    )
    bars = read_dbn(path)
    front = bars[bars["symbol"] == "ES.c.0"]
    back = bars[bars["symbol"] == "ES.c.1"]
    assert (front["open"] * 1e9).round().tolist() == [1, 3]
    assert (back["open"] * 1e9).round().tolist() == [2, 4]


def test_caller_symbol_names_a_continuous_contract(tmp_path):
    d1, d2, d3 = dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)
    records = [bar(1, T0, 1, 1, 1, 1, 1), bar(2, T0 + DAY, 2, 2, 2, 2, 1)]
    path = write_dbn(tmp_path / "c.dbn", records, mappings={"ES.c.0": [(d1, d2, 1), (d2, d3, 2)]})
    assert read_dbn(path)["symbol"].tolist() == ["ES.c.0", "ES.c.0"]
    assert read_dbn(path, symbol="ES")["symbol"].tolist() == ["ES", "ES"]


def test_unmapped_instrument_asks_for_a_symbol(tmp_path):
    path = write_dbn(tmp_path / "x.dbn", [ES_BARS[0], bar(9, T0, 1, 1, 1, 1, 1)])
    with pytest.raises(SourceError, match=r"instrument id\(s\) \[9\].*symbol="):
        read_dbn(path)
    assert len(read_dbn(path, symbol="ES")) == 2


def test_timeframe_comes_from_the_schema_and_must_agree(tmp_path):
    hourly = [dbn.OHLCVMsg(dbn.RType.OHLCV_1H.value, 1, 5002, T0, 1, 1, 1, 1, 1)]
    path = write_dbn(tmp_path / "h.dbn", hourly, schema=dbn.Schema.OHLCV_1H)
    assert read_dbn(path)["timeframe"].iloc[0] == "1h"
    assert read_dbn(path, timeframe="60m")["timeframe"].iloc[0] == "60m"
    with pytest.raises(ConfigError, match="1h bars"):
        read_dbn(path, timeframe="5m")


def test_non_ohlcv_schema_is_refused_by_name(tmp_path):
    path = write_dbn(tmp_path / "t.dbn", [], schema=dbn.Schema.TRADES)
    with pytest.raises(SourceError, match="'trades'"):
        read_dbn(path)


@pytest.mark.parametrize(
    ("keep", "message"),
    [(5, "not a DBN file"), (200, "inside its metadata"), (-30, "truncated")],
)
def test_truncated_file_is_a_source_error(tmp_path, keep, message):
    data = write_dbn(tmp_path / "full.dbn", ES_BARS).read_bytes()
    (tmp_path / "cut.dbn").write_bytes(data[:keep])
    with pytest.raises(SourceError, match=rf"cut\.dbn.*{message}"):
        read_dbn(tmp_path / "cut.dbn")


def test_other_records_are_skipped_and_a_damaged_one_is_named(tmp_path):
    heartbeat = dbn.SystemMsg(T0, "heartbeat")
    path = write_dbn(tmp_path / "mixed.dbn", [ES_BARS[0], heartbeat, ES_BARS[1]])
    assert read_dbn(path)["volume"].tolist() == [120.0, 95.0]
    # A trade record (rtype 0) whose header claims 16 bytes: databento_dbn's decoder
    # panics on it (a Rust abort, not an exception); the reader names it instead.
    short_trade = bytes([4, 0]) + bytes(14)
    data = write_dbn(tmp_path / "full.dbn", ES_BARS).read_bytes()
    (tmp_path / "bad.dbn").write_bytes(data + short_trade + bytes([4, 0]))
    with pytest.raises(SourceError, match=r"bad\.dbn.*truncated"):
        read_dbn(tmp_path / "bad.dbn")
    (tmp_path / "zero.dbn").write_bytes(data + bytes(16))
    with pytest.raises(SourceError, match=r"zero\.dbn.*record 3 at byte \d+ declares 0 bytes"):
        read_dbn(tmp_path / "zero.dbn")


def test_truncated_zstd_and_garbage_are_source_errors(tmp_path):
    data = write_dbn(tmp_path / "es.dbn.zst", ES_BARS, compress=True).read_bytes()
    (tmp_path / "cut.dbn.zst").write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"cut\.dbn\.zst.*damaged"):
        read_dbn(tmp_path / "cut.dbn.zst")
    (tmp_path / "junk.dbn").write_bytes(b"these are not the bytes you are looking for")
    with pytest.raises(SourceError, match="not a DBN file"):
        read_dbn(tmp_path / "junk.dbn")


def test_missing_file(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        read_dbn(tmp_path / "nope.dbn")


def test_other_records_are_skipped_and_bars_kept(tmp_path):
    system = dbn.SystemMsg(T0, "heartbeat")
    path = write_dbn(tmp_path / "mixed.dbn", [ES_BARS[0], system, ES_BARS[1]])
    bars = read_dbn(path)
    assert bars["open"].tolist() == [4512.25, 4512.5]


def test_records_with_send_timestamps(tmp_path):
    records = [bar(5002, T0, 4_512_250_000_000, 1, 1, 1, 7, ts_out=T0 + 5)]
    bars = read_dbn(write_dbn(tmp_path / "live.dbn", records, ts_out=True))
    assert bars["open"].tolist() == [4512.25]
    assert bars["volume"].tolist() == [7.0]


def test_undefined_price_becomes_nan(tmp_path):
    records = [bar(5002, T0, dbn.UNDEF_PRICE, 1_000_000_000, 1_000_000_000, 1_000_000_000, 1)]
    bars = read_dbn(write_dbn(tmp_path / "u.dbn", records))
    assert math.isnan(bars["open"].iloc[0])
    assert bars["close"].iloc[0] == 1.0


def test_zstd_file_of_several_frames(tmp_path):
    whole = write_dbn(tmp_path / "plain.dbn", ES_BARS).read_bytes()
    compressor = zstandard.ZstdCompressor()
    cut = len(whole) - 2 * 56  # the last two records go in a second frame
    data = compressor.compress(whole[:cut]) + compressor.compress(whole[cut:])
    (tmp_path / "frames.dbn.zst").write_bytes(data)
    bars = read_dbn(tmp_path / "frames.dbn.zst")
    assert bars["close"].tolist() == [4512.5, 4514.0, 4513.25]
