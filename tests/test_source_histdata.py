"""HistData.com Generic ASCII M1 reader: fixed EST -> UTC, zips, duplicates, errors."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from moola.core.errors import ConfigError, SourceError
from moola.data.schema import is_canonical
from moola.data.sources import read_histdata

FIXTURE = Path(__file__).parent / "fixtures" / "src_DAT_ASCII_EURUSD_M1_202403.csv"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def write(tmp_path: Path, lines: list[str], name: str = "eurusd.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fixed_est_is_utc_minus_five_on_both_sides_of_the_us_dst_change():
    bars = read_histdata(FIXTURE)
    assert is_canonical(bars)
    assert len(bars) == 10
    assert set(bars["symbol"]) == {"EURUSD"}  # from the HistData file name
    assert set(bars["timeframe"]) == {"1m"}
    # Friday 2024-03-08 16:56 EST, before US clocks moved: 21:56 UTC.
    assert bars["timestamp"].iloc[0] == utc("2024-03-08 21:56")
    assert bars[["open", "high", "low", "close"]].iloc[0].tolist() == [
        1.09361,
        1.09365,
        1.09357,
        1.0936,
    ]
    # Sunday 2024-03-10 17:00, after New York switched to EDT: still +5 h, 22:00 UTC
    # (a DST-aware zone would say 21:00).
    assert bars["timestamp"].iloc[4] == utc("2024-03-10 22:00")
    assert bars["open"].iloc[4] == 1.09388
    assert bars["timestamp"].iloc[-1] == utc("2024-03-11 07:00")
    assert bars["close"].iloc[-1] == 1.094
    assert bars["volume"].eq(0).all()


def test_zip_as_histdata_ships_it(tmp_path):
    archive = tmp_path / "HISTDATA_COM_ASCII_EURUSD_M1202403.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(FIXTURE, "DAT_ASCII_EURUSD_M1_202403.csv")
        zipped.writestr("DAT_ASCII_EURUSD_M1_202403.txt", "HistData.com status report")
    bars = read_histdata(archive)
    pd.testing.assert_frame_equal(bars, read_histdata(FIXTURE))


def test_zip_with_several_csv_files_is_refused(tmp_path):
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(FIXTURE, "a.csv")
        zipped.write(FIXTURE, "b.csv")
    with pytest.raises(SourceError, match=r"exactly one \.csv.*'a\.csv', 'b\.csv'"):
        read_histdata(archive, symbol="EURUSD")


def test_duplicates_keep_the_first_line_and_are_reported(tmp_path, caplog):
    path = write(
        tmp_path,
        [
            "20240102 000000;1.1;1.2;1.0;1.1;0",
            "20240102 000100;1.1;1.3;1.0;1.2;0",
            "20240102 000100;1.1;1.3;1.0;1.2;0",  # exact duplicate
            "20240102 000100;9.9;9.9;9.9;9.9;0",  # same time, other values
            "20240102 000200;1.2;1.3;1.1;1.3;0",
        ],
    )
    with caplog.at_level(logging.WARNING, logger="moola.data.sources.histdata"):
        bars = read_histdata(path, symbol="EURUSD")
    assert bars["open"].tolist() == [1.1, 1.1, 1.2]
    assert bars["high"].iloc[1] == 1.3
    assert "dropped 1 exact duplicate" in caplog.text
    assert "1 line(s) repeating an earlier timestamp" in caplog.text


def test_bad_lines_are_named(tmp_path):
    short = write(tmp_path, ["20240102 000000;1.1;1.2;1.0;1.1;0", "20240102 000100;1.1;1.3;1.0"])
    with pytest.raises(SourceError, match=r"missing fields at line 2\. Every line needs the 6"):
        read_histdata(short, symbol="EURUSD")
    stamp = write(tmp_path, ["20240102 000000;1;1;1;1;0", "2024-01-02 00:01;1;1;1;1;0"])
    with pytest.raises(SourceError, match=r"line 2 \('2024-01-02 00:01'\)"):
        read_histdata(stamp, symbol="EURUSD")
    price = write(tmp_path, ["20240102 000000;1;1;1;1;0", "20240102 000100;1;1;1;abc;0"])
    with pytest.raises(SourceError, match=r"column 'close' .* line 2 \('abc'\)"):
        read_histdata(price, symbol="EURUSD")
    comma = write(tmp_path, ["timestamp,open,high,low,close", "2024-01-02,1,1,1,1"])
    with pytest.raises(SourceError, match=r"missing fields at line 1, line 2.* not a HistData"):
        read_histdata(comma, symbol="EURUSD")
    long = write(tmp_path, ["20240102 000000;1;1;1;1;0", "20240102 000100;1;1;1;1;0;7"])
    with pytest.raises(SourceError, match="Expected 6 fields in line 2, saw 7"):
        read_histdata(long, symbol="EURUSD")
    far = write(tmp_path, ["20240102 000000;1;1;1;1;0", "30240102 000100;1;1;1;1;0"])
    with pytest.raises(SourceError, match=r"outside the years 1677-2262 at line 2 \('3024"):
        read_histdata(far, symbol="EURUSD")
    blank = write(tmp_path, ["20240102 000000;1;1;1;1;0", "", "20240102 000200;1;1;1;1;0", ""])
    with pytest.raises(SourceError, match=r"eurusd\.csv: blank line or missing fields at line 2\."):
        read_histdata(blank, symbol="EURUSD")


def test_missing_empty_or_binary_files(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        read_histdata(tmp_path / "DAT_ASCII_EURUSD_M1_2024.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SourceError, match="empty"):
        read_histdata(tmp_path / "empty.csv", symbol="EURUSD")
    (tmp_path / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(SourceError, match="not a text file"):
        read_histdata(tmp_path / "binary.csv", symbol="EURUSD")


def test_symbol_is_required_when_the_name_does_not_carry_it(tmp_path):
    path = write(tmp_path, ["20240102 000000;1;1;1;1;0"], name="prices.csv")
    with pytest.raises(ConfigError, match="symbol="):
        read_histdata(path)
    assert read_histdata(path, symbol="GBPUSD")["symbol"].tolist() == ["GBPUSD"]
