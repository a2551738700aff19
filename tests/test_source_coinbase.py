"""Coinbase candles reader: API JSON payload, plain lists, CSV exports, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from moola.core.errors import ConfigError, SourceError
from moola.data.schema import is_canonical
from moola.data.sources import read_coinbase

FIXTURES = Path(__file__).parent / "fixtures"
CANDLE = {
    "start": "1699999200",
    "low": "1",
    "high": "2",
    "open": "1.5",
    "close": "1.8",
    "volume": "3",
}


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_api_payload_newest_first_comes_back_oldest_first():
    bars = read_coinbase(FIXTURES / "src_coinbase_candles.json", symbol="BTC-USD")
    assert is_canonical(bars)
    assert len(bars) == 5
    # start 1699999200 is 2023-11-14 22:00:00 UTC; the payload lists it last.
    assert bars["timestamp"].iloc[0] == utc("2023-11-14 22:00")
    assert bars[["open", "high", "low", "close"]].iloc[0].tolist() == [
        36533.10,
        36541.47,
        36512.35,
        36525.99,
    ]
    assert bars["volume"].iloc[0] == 8.17750268
    assert bars["timestamp"].iloc[-1] == utc("2023-11-14 22:04")
    assert bars["close"].iloc[-1] == 36544.31
    assert set(bars["timeframe"]) == {"1m"}  # inferred from the 60 s spacing
    assert set(bars["symbol"]) == {"BTC-USD"}


def test_plain_list_and_exchange_arrays(tmp_path):
    second = {**CANDLE, "start": "1699999500", "open": "1.8"}
    (tmp_path / "list.json").write_text(json.dumps([second, CANDLE]))
    bars = read_coinbase(tmp_path / "list.json", symbol="ETH-USD", timeframe="5m")
    assert bars["timestamp"].tolist() == [utc("2023-11-14 22:00"), utc("2023-11-14 22:05")]
    assert bars["open"].tolist() == [1.5, 1.8]
    # Coinbase Exchange order: [time, low, high, open, close, volume]
    (tmp_path / "arrays.json").write_text(json.dumps([[1699999200, 1, 2, 1.5, 1.8, 3]]))
    bars = read_coinbase(tmp_path / "arrays.json", symbol="ETH-USD", timeframe="1h")
    assert bars[["low", "high", "open", "close", "volume"]].iloc[0].tolist() == [1, 2, 1.5, 1.8, 3]


def test_csv_export_with_iso_times():
    bars = read_coinbase(FIXTURES / "src_coinbase_candles.csv", symbol="BTC-USD")
    assert bars["timestamp"].tolist() == [
        utc("2023-11-14 22:02"),
        utc("2023-11-14 22:03"),
        utc("2023-11-14 22:04"),
    ]
    assert bars["open"].iloc[0] == 36517.08
    assert bars["volume"].iloc[-1] == 7.91283472


def test_csv_export_with_epoch_seconds(tmp_path):
    path = tmp_path / "candles.csv"
    path.write_text("time,low,high,open,close,volume\n1700006400,1,2,1.5,1.8,3\n")
    bars = read_coinbase(path, symbol="BTC-USD", timeframe="1d")
    assert bars["timestamp"].tolist() == [utc("2023-11-15 00:00")]


def test_missing_fields_are_listed(tmp_path):
    candle = {key: value for key, value in CANDLE.items() if key != "volume"}
    (tmp_path / "c.json").write_text(json.dumps({"candles": [candle]}))
    with pytest.raises(SourceError, match=r"lack the field\(s\) \['volume'\]"):
        read_coinbase(tmp_path / "c.json", symbol="BTC-USD", timeframe="1m")
    (tmp_path / "c.csv").write_text("start,low,high,open,close\n1699999200,1,2,1.5,1.8\n")
    with pytest.raises(SourceError, match="'volume'"):
        read_coinbase(tmp_path / "c.csv", symbol="BTC-USD", timeframe="1m")


def test_bad_values_name_the_candle(tmp_path):
    candles = [CANDLE, {**CANDLE, "start": "1699999260", "high": "lots"}]
    (tmp_path / "c.json").write_text(json.dumps({"candles": candles}))
    with pytest.raises(SourceError, match=r"column 'high' .* candles\[1\] \('lots'\)"):
        read_coinbase(tmp_path / "c.json", symbol="BTC-USD", timeframe="1m")
    candles = [CANDLE, {**CANDLE, "start": "soon"}]
    (tmp_path / "c.json").write_text(json.dumps({"candles": candles}))
    with pytest.raises(SourceError, match=r"candles\[1\] \('soon'\)"):
        read_coinbase(tmp_path / "c.json", symbol="BTC-USD", timeframe="1m")


def test_truncated_or_wrong_json(tmp_path):
    text = (FIXTURES / "src_coinbase_candles.json").read_text()
    (tmp_path / "cut.json").write_text(text[:200])
    with pytest.raises(SourceError, match=r"cut\.json: not valid JSON .* line 3"):
        read_coinbase(tmp_path / "cut.json", symbol="BTC-USD")
    (tmp_path / "other.json").write_text(json.dumps({"error": "unauthorized"}))
    with pytest.raises(SourceError, match=r"'candles' list.*\['error'\]"):
        read_coinbase(tmp_path / "other.json", symbol="BTC-USD")


def test_symbol_and_timeframe_requirements(tmp_path):
    with pytest.raises(ConfigError, match="symbol="):
        read_coinbase(FIXTURES / "src_coinbase_candles.json")
    (tmp_path / "one.json").write_text(json.dumps({"candles": [CANDLE]}))
    with pytest.raises(ConfigError, match="granularity"):
        read_coinbase(tmp_path / "one.json", symbol="BTC-USD")
    assert len(read_coinbase(tmp_path / "one.json", symbol="BTC-USD", timeframe="6h")) == 1
