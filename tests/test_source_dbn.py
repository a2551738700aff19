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
from moola.data.schema import BAR_COLUMNS, is_canonical
from moola.data.sources import read_dbn
from moola.data.sources.dbn import read_dbn_ticks
from moola.data.ticks import TICK_BAR_COLUMNS

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


def test_one_instrument_id_reused_by_two_symbols_on_different_days(tmp_path):
    d1, d2, d3 = dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)
    records = [bar(5, T0, 1, 1, 1, 1, 1), bar(5, T0 + DAY, 2, 2, 2, 2, 1)]
    path = write_dbn(
        tmp_path / "r.dbn", records, mappings={"AAA": [(d1, d2, 5)], "BBB": [(d2, d3, 5)]}
    )
    assert read_dbn(path)["symbol"].tolist() == ["AAA", "BBB"]


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


@pytest.mark.parametrize("schema", [dbn.Schema.MBO, dbn.Schema.MBP_10, dbn.Schema.DEFINITION])
def test_unsupported_schema_is_refused_by_name(tmp_path, schema):
    path = write_dbn(tmp_path / "t.dbn", [], schema=schema)
    with pytest.raises(SourceError, match=rf"t\.dbn: the DBN schema is '{schema}'.*'trades'"):
        read_dbn(path)
    with pytest.raises(SourceError, match=rf"t\.dbn: the DBN schema is '{schema}'"):
        read_dbn_ticks(path)


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


# Tick schemas: trades, tbbo and mbp-1 become 1-second bars (moola.data.ticks).
OPEN_NY = T0 + 14 * 3600 * 10**9 + 30 * MINUTE  # 2024-03-01 14:30 UTC, 09:30 New York
SEC = 10**9
PX = 10**9  # fixed-point price units per dollar
AAPL = {"AAPL": [(dt.date(2024, 3, 1), dt.date(2024, 3, 2), 7)]}


def trade(ts: int, price: float, size: int, iid: int = 7, **kw) -> dbn.TradeMsg:
    return dbn.TradeMsg(
        1, iid, ts, round(price * PX), size, dbn.Action.TRADE, dbn.Side.BID, 0, ts + 500, **kw
    )


def mbp1(ts: int, price: float, size: int, action, bid: float, ask: float) -> dbn.MBP1Msg:
    level = dbn.BidAskPair(bid_px=round(bid * PX), ask_px=round(ask * PX), bid_sz=1, ask_sz=1)
    return dbn.MBP1Msg(
        1, 7, ts, round(price * PX), size, action, dbn.Side.ASK, 0, ts + 500, levels=level
    )


TRADES = [
    trade(OPEN_NY + SEC // 10, 100.25, 100),
    trade(OPEN_NY + 6 * SEC // 10, 100.5, 300),
    trade(OPEN_NY + 5 * SEC // 2, 100.0, 50),
]


@pytest.mark.parametrize(("name", "compress"), [("t.dbn", False), ("t.dbn.zst", True)])
def test_trades_file_becomes_one_second_bars(tmp_path, name, compress):
    path = write_dbn(
        tmp_path / name, TRADES, mappings=AAPL, schema=dbn.Schema.TRADES, compress=compress
    )
    bars = read_dbn(path)
    assert is_canonical(bars)
    assert bars["timestamp"].tolist() == [
        pd.Timestamp(OPEN_NY + i * SEC, tz="UTC") for i in range(3)
    ]
    assert bars[["open", "high", "low", "close", "volume"]].values.tolist() == [
        [100.25, 100.5, 100.25, 100.5, 400.0],
        [100.5, 100.5, 100.5, 100.5, 0.0],  # a quiet second: close carried, no volume
        [100.0, 100.0, 100.0, 100.0, 50.0],
    ]
    assert set(bars["symbol"]) == {"AAPL"} and set(bars["timeframe"]) == {"1s"}
    ticks = read_dbn_ticks(path)
    assert tuple(ticks.columns) == TICK_BAR_COLUMNS
    pd.testing.assert_frame_equal(ticks.loc[:, list(BAR_COLUMNS)], bars)
    assert ticks["trades"].tolist() == [2, 0, 1]
    assert ticks["vwap"].tolist() == [100.4375, 100.5, 100.0]  # (10025 + 30150) / 400
    assert ticks["filled"].tolist() == [False, True, False]
    assert ticks["bid"].isna().all()  # a trades file has no quotes


def test_tbbo_quotes_are_the_last_in_each_second(tmp_path):
    records = [
        mbp1(OPEN_NY + SEC // 10, 50.0, 10, dbn.Action.TRADE, 49.75, 50.25),
        mbp1(OPEN_NY + SEC // 2, 50.5, 20, dbn.Action.TRADE, 50.25, 50.5),
        mbp1(OPEN_NY + 3 * SEC // 2, 50.25, 5, dbn.Action.TRADE, 50.0, 50.5),
    ]
    path = write_dbn(tmp_path / "q.dbn", records, mappings=AAPL, schema=dbn.Schema.TBBO)
    ticks = read_dbn_ticks(path)
    assert ticks["close"].tolist() == [50.5, 50.25]
    assert ticks["bid"].tolist() == [50.25, 50.0]
    assert ticks["ask"].tolist() == [50.5, 50.5]
    assert ticks["spread"].tolist() == [0.25, 0.5]


def test_mbp1_book_updates_are_quotes_not_trades(tmp_path):
    records = [
        mbp1(OPEN_NY, 50.0, 10, dbn.Action.TRADE, 49.75, 50.25),
        mbp1(OPEN_NY + SEC // 4, 51.0, 300, dbn.Action.ADD, 49.75, 50.0),  # ask improves
        mbp1(OPEN_NY + 5 * SEC // 4, 49.5, 7, dbn.Action.CANCEL, 49.5, 50.0),
        mbp1(OPEN_NY + 9 * SEC // 4, 50.0, 4, dbn.Action.TRADE, 49.5, 50.0),
    ]
    path = write_dbn(tmp_path / "b.dbn", records, mappings=AAPL, schema=dbn.Schema.MBP_1)
    ticks = read_dbn_ticks(path)
    assert ticks[["high", "volume", "trades", "filled"]].values.tolist() == [
        [50.0, 10.0, 1, False],  # the add at 51 is no trade
        [50.0, 0.0, 0, True],
        [50.0, 4.0, 1, False],
    ]
    assert ticks["bid"].tolist() == [49.75, 49.5, 49.5]
    assert ticks["ask"].tolist() == [50.0, 50.0, 50.0]


def test_tick_records_with_send_times_and_other_records(tmp_path):
    stamped = [trade(r.ts_event, r.price / PX, r.size, ts_out=r.ts_event + 9) for r in TRADES]
    path = write_dbn(
        tmp_path / "live.dbn", stamped, mappings=AAPL, schema=dbn.Schema.TRADES, ts_out=True
    )
    plain = write_dbn(tmp_path / "p.dbn", TRADES, mappings=AAPL, schema=dbn.Schema.TRADES)
    mixed = write_dbn(
        tmp_path / "m.dbn",
        [TRADES[0], dbn.SystemMsg(T0, "heartbeat"), *TRADES[1:]],
        mappings=AAPL,
        schema=dbn.Schema.TRADES,
    )
    nameless = write_dbn(tmp_path / "n.dbn", TRADES, mappings=AAPL, schema=None)  # mixed stream
    pd.testing.assert_frame_equal(read_dbn_ticks(path), read_dbn_ticks(plain))
    pd.testing.assert_frame_equal(read_dbn_ticks(nameless), read_dbn_ticks(plain))
    pd.testing.assert_frame_equal(read_dbn_ticks(mixed), read_dbn_ticks(plain))


def test_several_instruments_give_bars_per_symbol(tmp_path):
    mappings = {**AAPL, "MSFT": [(dt.date(2024, 3, 1), dt.date(2024, 3, 2), 8)]}
    records = [TRADES[0], trade(OPEN_NY + SEC // 5, 400.0, 1, iid=8), *TRADES[1:]]
    path = write_dbn(tmp_path / "two.dbn", records, mappings=mappings, schema=dbn.Schema.TRADES)
    bars = read_dbn(path)
    assert bars["symbol"].tolist() == ["AAPL"] * 3 + ["MSFT"]
    assert bars["close"].iloc[-1] == 400.0
    with pytest.raises(SourceError, match="several symbols"):
        read_dbn(path, symbol="AAPL")


def test_tick_session_and_time_frame_options(tmp_path):
    early = OPEN_NY - 5 * 3600 * SEC - 30 * MINUTE - SEC  # 03:59:59 New York
    path = write_dbn(
        tmp_path / "s.dbn",
        [trade(early, 99.0, 1), *TRADES],
        mappings=AAPL,
        schema=dbn.Schema.TRADES,
    )
    assert len(read_dbn(path)) == 3  # the pre-market trade is out of 04:00-20:00
    all_day = read_dbn(path, session="24h")
    assert all_day["timestamp"].iloc[0] == pd.Timestamp(early, tz="UTC")
    assert len(all_day) == 5.5 * 3600 + 1 + 3
    assert len(read_dbn(path, session="03:00-04:00", session_timezone="America/New_York")) == 1
    assert len(read_dbn(path, timeframe="1s")) == 3
    with pytest.raises(ConfigError, match=r"s\.dbn: holds trades ticks.*timeframe='1m'"):
        read_dbn(path, timeframe="1m")
    with pytest.raises(ConfigError, match="'HH:MM-HH:MM'"):
        read_dbn(path, session="9 to 5")
    with pytest.raises(ConfigError, match=r"s\.dbn: bad tick bar options \(session_timezone"):
        read_dbn(path, session_timezone="Mars/Olympus")
    with pytest.raises(
        SourceError, match=r"s\.dbn: none of its 4 trades records is a trade between"
    ):
        read_dbn(path, session="21:00-22:00")
    with pytest.raises(ConfigError, match="apply to tick files"):
        read_dbn(write_dbn(tmp_path / "es.dbn", ES_BARS), session="24h")


def test_truncated_tick_file_names_file_and_schema(tmp_path):
    data = write_dbn(tmp_path / "t.dbn", TRADES, mappings=AAPL, schema=dbn.Schema.TRADES)
    (tmp_path / "cut.dbn").write_bytes(data.read_bytes()[:-10])
    with pytest.raises(SourceError, match=r"cut\.dbn: the DBN file of trades records is truncated"):
        read_dbn(tmp_path / "cut.dbn")
    with pytest.raises(SourceError, match=r"cut\.dbn.*trades records is truncated"):
        read_dbn_ticks(tmp_path / "cut.dbn")


def moola(*argv: str) -> int:
    """Run the ``moola`` command line; its exit code."""
    from moola.cli.main import main

    try:
        main(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


def test_ingest_command_stores_one_second_bars_from_ticks(tmp_path, capsys):
    path = write_dbn(
        tmp_path / "aapl.trades.dbn.zst",
        TRADES,
        mappings=AAPL,
        schema=dbn.Schema.TRADES,
        compress=True,
    )
    root = str(tmp_path / "data")
    code = moola("--data-root", root, "data", "ingest", str(path), "--name", "aapl")
    out = capsys.readouterr().out
    assert code == 0 and "raw/aapl@v1" in out and "(3 bars)" in out
    whole = write_dbn(tmp_path / "y.dbn", TRADES, mappings=AAPL, schema=dbn.Schema.TRADES)
    bad = tmp_path / "x.trades.dbn"
    bad.write_bytes(whole.read_bytes()[:-3])
    code = moola("--data-root", root, "data", "ingest", str(bad), "--name", "x", "--session", "24h")
    err = " ".join(capsys.readouterr().err.split())
    assert code != 0 and "x.trades.dbn" in err and "truncated" in err
    assert not list((tmp_path / "data").rglob("x"))
