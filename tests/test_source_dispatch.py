"""read_bars: choosing the reader by format name or file extension, and checking options."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import databento_dbn as dbn
import pandas as pd
import pytest

import moola.data.sources as sources
from moola.core.errors import ConfigError, SourceError
from moola.data.sources import SOURCE_FORMATS, read_bars

FIXTURES = Path(__file__).parent / "fixtures"
HISTDATA = FIXTURES / "src_DAT_ASCII_EURUSD_M1_202403.csv"


def test_public_api():
    assert SOURCE_FORMATS == ("csv", "parquet", "histdata", "coinbase", "dbn")
    for name in ("read_bars", "read_csv_bars", "read_parquet_bars", "read_histdata"):
        assert name in sources.__all__
    assert {"read_coinbase", "read_dbn", "SOURCE_FORMATS"} <= set(sources.__all__)


def test_extension_picks_the_reader(tmp_path):
    ny = read_bars(FIXTURES / "src_bars_new_york.csv", symbol="NQ", timeframe="30m")
    assert ny["open"].iloc[0] == 18010.25
    coinbase = read_bars(FIXTURES / "src_coinbase_candles.json", symbol="BTC-USD")
    assert coinbase["close"].iloc[-1] == 36544.31
    frame = pd.DataFrame({"date": pd.to_datetime(["2024-01-02"]), "open": [1.0], "high": [2.0],
                          "low": [0.5], "close": [1.5]})  # fmt: skip
    frame.to_parquet(tmp_path / "bars.pq")
    assert read_bars(tmp_path / "bars.pq", symbol="X", timeframe="1d")["high"].tolist() == [2.0]
    metadata = dbn.Metadata(
        dataset="GLBX.MDP3",
        start=0,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=dbn.Schema.OHLCV_1D,
        symbols=["ESH4"],
    )
    record = dbn.OHLCVMsg(dbn.RType.OHLCV_1D.value, 1, 7, 0, 4_512_250_000_000, 0, 0, 0, 1)
    (tmp_path / "es.dbn").write_bytes(metadata.encode() + bytes(record))
    bars = read_bars(tmp_path / "es.dbn")
    assert bars[["open", "symbol", "timeframe"]].iloc[0].tolist() == [4512.25, "ESH4", "1d"]


def test_histdata_is_recognised_by_its_layout(tmp_path):
    renamed = tmp_path / "eurusd.txt"
    shutil.copy(HISTDATA, renamed)
    bars = read_bars(renamed, symbol="EURUSD")
    assert bars["timestamp"].iloc[4] == pd.Timestamp("2024-03-10 22:00", tz="UTC")
    archive = tmp_path / "HISTDATA_COM_ASCII_EURUSD_M1202403.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(HISTDATA, "DAT_ASCII_EURUSD_M1_202403.csv")
    pd.testing.assert_frame_equal(read_bars(archive), bars)


def test_explicit_format_wins_over_the_extension(tmp_path):
    odd = tmp_path / "candles.data"
    shutil.copy(FIXTURES / "src_coinbase_candles.json", odd)
    with pytest.raises(SourceError, match=r"extension '\.data'.*coinbase"):
        read_bars(odd, symbol="BTC-USD")
    assert len(read_bars(odd, format="coinbase", symbol="BTC-USD")) == 5
    assert len(read_bars(odd, format="Coinbase", symbol="BTC-USD")) == 5


def test_unknown_format_lists_the_valid_ones_and_suggests():
    with pytest.raises(SourceError, match=r"Did you mean 'parquet'\?.*csv, parquet, histdata"):
        read_bars(HISTDATA, format="parqet")
    with pytest.raises(SourceError, match="Valid formats: csv, parquet, histdata, coinbase, dbn"):
        read_bars(HISTDATA, format="excel")


def test_options_are_checked_against_the_reader():
    path = FIXTURES / "src_bars_new_york.csv"
    with pytest.raises(ConfigError, match=r"no option 'timezon'\. Did you mean 'timezone'\?"):
        read_bars(path, symbol="NQ", timeframe="30m", timezon="America/New_York")
    with pytest.raises(ConfigError, match=r"no 'timeframe' column.*Pass timeframe="):
        read_bars(path, symbol="NQ")
    bars = read_bars(path, symbol="NQ", timeframe="30m", timezone="America/New_York")
    assert bars["timestamp"].iloc[0] == pd.Timestamp("2024-03-10 05:30", tz="UTC")


def test_missing_file(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        read_bars(tmp_path / "nothing.csv", timeframe="1m")
