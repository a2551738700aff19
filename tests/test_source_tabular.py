"""CSV and Parquet bar readers: column matching, time zones, epoch units, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moola.core.errors import ConfigError, SourceError
from moola.data.schema import BAR_COLUMNS, is_canonical, make_bars
from moola.data.sources import read_csv_bars, read_parquet_bars

FIXTURES = Path(__file__).parent / "fixtures"
NY = "America/New_York"


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_new_york_csv_across_spring_forward():
    # Local 01:30 EST is 06:30 UTC; the next bar, 03:00 EDT, is 07:00 UTC (clocks jumped).
    bars = read_csv_bars(
        FIXTURES / "src_bars_new_york.csv", symbol="NQ", timeframe="30m", timezone=NY
    )
    assert is_canonical(bars)
    assert bars["timestamp"].tolist() == [
        utc("2024-03-10 05:30"),
        utc("2024-03-10 06:00"),
        utc("2024-03-10 06:30"),
        utc("2024-03-10 07:00"),
        utc("2024-03-10 07:30"),
    ]
    assert bars["open"].iloc[0] == 18010.25
    assert bars["close"].iloc[-1] == 18009.50
    assert bars["volume"].iloc[3] == 655.0
    assert set(bars["symbol"]) == {"NQ"} and set(bars["timeframe"]) == {"30m"}


def test_fall_back_repeated_hour_is_resolved_from_row_order(tmp_path):
    path = write(
        tmp_path,
        "time,open,high,low,close\n"
        + "".join(
            f"2024-11-03 {t},1,1,1,1\n" for t in ("00:30", "01:00", "01:30", "01:00", "01:30")
        ),
    )
    bars = read_csv_bars(path, symbol="ES", timeframe="30m", timezone=NY)
    # 00:30-01:30 EDT is 04:30-05:30 UTC; the repeat, 01:00-01:30 EST, is 06:00-06:30 UTC.
    assert bars["timestamp"].tolist() == [
        utc("2024-11-03 04:30"),
        utc("2024-11-03 05:00"),
        utc("2024-11-03 05:30"),
        utc("2024-11-03 06:00"),
        utc("2024-11-03 06:30"),
    ]


def test_local_time_that_never_happened_names_the_row(tmp_path):
    path = write(
        tmp_path,
        "timestamp,open,high,low,close\n"
        "2024-03-10 01:30,1,1,1,1\n2024-03-10 02:30,1,1,1,1\n2024-03-10 03:00,1,1,1,1\n",
    )
    with pytest.raises(SourceError, match=r"line 3 \('2024-03-10 02:30'\) never happened"):
        read_csv_bars(path, symbol="ES", timeframe="30m", timezone=NY)


def test_undecidable_repeated_local_time_names_the_row(tmp_path):
    path = write(tmp_path, "timestamp,open,high,low,close\n2024-11-03 01:30,1,1,1,1\n")
    with pytest.raises(SourceError, match=r"line 2 .* happened twice"):
        read_csv_bars(path, symbol="ES", timeframe="1d", timezone=NY)


def test_utc_offsets_are_converted_whatever_the_zone(tmp_path):
    path = write(
        tmp_path,
        "timestamp,open,high,low,close\n"
        "2024-03-10T01:59:00-05:00,1,1,1,1\n2024-03-10T03:00:00-04:00,2,2,2,2\n",
    )
    bars = read_csv_bars(path, symbol="ES", timeframe="1m", timezone=NY)
    assert bars["timestamp"].tolist() == [utc("2024-03-10 06:59"), utc("2024-03-10 07:00")]


def test_epoch_numbers_need_and_use_timestamp_unit(tmp_path):
    path = write(tmp_path, "time,open,high,low,close\n1700000000000,1,1,1,1\n")
    with pytest.raises(SourceError, match="timestamp_unit"):
        read_csv_bars(path, symbol="X", timeframe="1m")
    bars = read_csv_bars(path, symbol="X", timeframe="1m", timestamp_unit="ms")
    assert bars["timestamp"].iloc[0] == utc("2023-11-14 22:13:20")
    with pytest.raises(SourceError, match="outside the years"):
        read_csv_bars(path, symbol="X", timeframe="1m", timestamp_unit="s")
    with pytest.raises(ConfigError, match="timestamp_unit"):
        read_csv_bars(path, symbol="X", timeframe="1m", timestamp_unit="minutes")


def test_rows_come_back_ascending_with_nothing_dropped(tmp_path):
    path = write(
        tmp_path,
        "Timestamp,Open,High,Low,Close,Volume\n"
        "2024-01-02 00:02,3,3,3,3,1\n2024-01-02 00:00,1,1,1,1,1\n"
        "2024-01-02 00:01,2,,2,2,1\n2024-01-02 00:01,9,9,9,9,1\n",
    )
    bars = read_csv_bars(path, symbol="X", timeframe="1m")
    assert bars["open"].tolist() == [1.0, 2.0, 9.0, 3.0]  # duplicates kept, file order
    assert np.isnan(bars["high"].iloc[1])  # empty cell kept as NaN for validation to judge


def test_volume_is_optional(tmp_path):
    path = write(tmp_path, "date,open,high,low,close\n2024-01-02,1,2,0.5,1.5\n")
    bars = read_csv_bars(path, symbol="X", timeframe="1d")
    assert bars["volume"].tolist() == [0.0]
    assert tuple(bars.columns) == BAR_COLUMNS


def test_columns_mapping(tmp_path):
    path = write(tmp_path, "When,First,Max,Min,Last,Qty\n2024-01-02 09:30,1,2,0.5,1.5,10\n")
    mapping = {"timestamp": "When", "open": "First", "high": "Max", "low": "Min"}
    bars = read_csv_bars(
        path, symbol="X", timeframe="1m", columns={**mapping, "close": "Last", "volume": "Qty"}
    )
    assert bars["timestamp"].iloc[0] == utc("2024-01-02 09:30")
    values = bars[["open", "high", "low", "close", "volume"]].iloc[0].tolist()
    assert values == [1.0, 2.0, 0.5, 1.5, 10.0]


def test_separate_date_and_time_columns_are_joined(tmp_path):
    path = write(tmp_path, "Date,Time,Open,High,Low,Close\n2024-01-02,09:30,1,2,0.5,1.5\n")
    bars = read_csv_bars(path, symbol="X", timeframe="1m", timezone=NY)
    assert bars["timestamp"].iloc[0] == utc("2024-01-02 14:30")  # 09:30 EST


def test_clock_time_without_a_date_is_refused(tmp_path):
    path = write(tmp_path, "Date,Time,Open,High,Low,Close\n2024-01-02,09:30,1,2,0.5,1.5\n")
    with pytest.raises(SourceError, match=r"column 'Time' .* line 2 \('09:30'\)"):
        read_csv_bars(path, symbol="X", timeframe="1m", columns={"timestamp": "Time"})


def test_missing_column_lists_what_was_found_and_expected(tmp_path):
    path = write(tmp_path, "timestamp,open,high,low,last\n2024-01-02,1,1,1,1\n")
    with pytest.raises(SourceError) as caught:
        read_csv_bars(path, symbol="X", timeframe="1d")
    message = str(caught.value)
    assert "'close'" in message and "'last'" in message and "columns=" in message
    assert str(path) in message


def test_bad_columns_mapping(tmp_path):
    path = write(tmp_path, "timestamp,open,high,low,close\n2024-01-02,1,1,1,1\n")
    with pytest.raises(SourceError, match="no such column"):
        read_csv_bars(path, symbol="X", timeframe="1d", columns={"close": "Last"})
    with pytest.raises(ConfigError, match="did you mean 'close'"):
        read_csv_bars(path, symbol="X", timeframe="1d", columns={"clsoe": "close"})


def test_unparseable_timestamps_name_rows_and_values(tmp_path):
    path = write(
        tmp_path,
        "timestamp,open,high,low,close\n2024-01-02,1,1,1,1\nyesterday,1,1,1,1\n"
        "2024-01-04,1,1,1,1\n2024-13-45,1,1,1,1\n",
    )
    with pytest.raises(SourceError, match=r"line 3 \('yesterday'\), line 5 \('2024-13-45'\)"):
        read_csv_bars(path, symbol="X", timeframe="1d")


def test_non_numeric_values_name_column_rows_and_values(tmp_path):
    path = write(
        tmp_path,
        "timestamp,open,high,low,close\n2024-01-02,1,1,1,1\n2024-01-03,1,1,1,n/a?\n",
    )
    with pytest.raises(SourceError, match=r"column 'close' .* line 3 \('n/a\?'\)"):
        read_csv_bars(path, symbol="X", timeframe="1d")


def test_symbol_column_gives_a_multi_symbol_table(tmp_path):
    path = write(
        tmp_path,
        "symbol,timestamp,open,high,low,close\n"
        "NQ,2024-01-02,5,5,5,5\nES,2024-01-03,2,2,2,2\nES,2024-01-02,1,1,1,1\n",
    )
    bars = read_csv_bars(path, symbol=None, timeframe="1d")
    assert bars["symbol"].tolist() == ["ES", "ES", "NQ"]
    assert bars["open"].tolist() == [1.0, 2.0, 5.0]
    with pytest.raises(SourceError, match="several symbols"):
        read_csv_bars(path, symbol="ES", timeframe="1d")


def test_repeated_hour_is_resolved_per_symbol_in_an_interleaved_file(tmp_path):
    rows = [("ES", "01:00", 1), ("NQ", "01:00", 2), ("ES", "01:30", 3), ("NQ", "01:30", 4)]
    rows += [("ES", "01:00", 5), ("NQ", "01:00", 6), ("ES", "01:30", 7), ("NQ", "01:30", 8)]
    path = write(
        tmp_path,
        "symbol,timestamp,open,high,low,close\n"
        + "".join(f"{s},2024-11-03 {t},{v},{v},{v},{v}\n" for s, t, v in rows),
    )
    bars = read_csv_bars(path, timeframe="30m", timezone=NY)
    es = bars[bars["symbol"] == "ES"]
    # EDT 01:00, 01:30 -> 05:00, 05:30 UTC; then EST 01:00, 01:30 -> 06:00, 06:30 UTC.
    assert es["timestamp"].tolist() == [
        utc("2024-11-03 05:00"),
        utc("2024-11-03 05:30"),
        utc("2024-11-03 06:00"),
        utc("2024-11-03 06:30"),
    ]
    assert es["open"].tolist() == [1.0, 3.0, 5.0, 7.0]
    assert bars.loc[bars["symbol"] == "NQ", "open"].tolist() == [2.0, 4.0, 6.0, 8.0]


def test_caller_symbol_renames_a_one_symbol_file(tmp_path):
    path = write(tmp_path, "symbol,timestamp,open,high,low,close\nESH4,2024-01-02,1,1,1,1\n")
    assert read_csv_bars(path, symbol="ES", timeframe="1d")["symbol"].tolist() == ["ES"]


def test_symbol_is_required_without_a_symbol_column(tmp_path):
    path = write(tmp_path, "timestamp,open,high,low,close\n2024-01-02,1,1,1,1\n")
    with pytest.raises(ConfigError, match="symbol="):
        read_csv_bars(path, symbol=None, timeframe="1d")


def test_unreadable_csv_files(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        read_csv_bars(tmp_path / "missing.csv", symbol="X", timeframe="1m")
    with pytest.raises(SourceError, match="empty"):
        read_csv_bars(write(tmp_path, ""), symbol="X", timeframe="1m")
    ragged = write(
        tmp_path, "timestamp,open,high,low,close\n2024-01-02,1,1,1,1\n2024,1,1,1,1,1,1\n"
    )
    with pytest.raises(SourceError, match="5 fields in line 3, saw 7"):
        read_csv_bars(ragged, symbol="X", timeframe="1m")
    semicolons = write(tmp_path, "timestamp;open;high;low;close\n2024-01-02;1;1;1;1\n")
    with pytest.raises(SourceError, match="';'"):
        read_csv_bars(semicolons, symbol="X", timeframe="1m")
    with pytest.raises(ConfigError, match="timeframe"):
        read_csv_bars(semicolons, symbol="X", timeframe="1 minute")


def test_parquet_with_zone_aware_timestamps_and_symbols(tmp_path):
    frame = pd.DataFrame(
        {
            "Timestamp": pd.to_datetime(["2024-03-08 09:30", "2024-03-11 09:30"]).tz_localize(NY),
            "Open": [100.0, 101.0],
            "High": [102.0, 103.0],
            "Low": [99.0, 100.5],
            "Close": [101.0, 102.5],
            "Volume": [1000, 2000],
            "Symbol": ["SPY", "SPY"],
        }
    )
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    bars = read_parquet_bars(path, timeframe="1m")
    assert is_canonical(bars)
    # 09:30 EST = 14:30 UTC before the switch, 09:30 EDT = 13:30 UTC after.
    assert bars["timestamp"].tolist() == [utc("2024-03-08 14:30"), utc("2024-03-11 13:30")]
    assert bars["close"].tolist() == [101.0, 102.5]
    assert bars["symbol"].tolist() == ["SPY", "SPY"]


def test_parquet_naive_epoch_and_bad_values(tmp_path):
    table = pa.table(
        {"ts": pa.array([1_700_000_000, 1_700_000_060]), "open": ["1.5", "x"],
         "high": [2.0, 2.0], "low": [1.0, 1.0], "close": [1.5, 1.5]}
    )  # fmt: skip
    path = tmp_path / "bars.pq"
    pq.write_table(table, path)
    with pytest.raises(SourceError, match=r"column 'open' .* row 2 \('x'\)"):
        read_parquet_bars(
            path, symbol="X", timeframe="1m", timestamp_unit="s", columns={"timestamp": "ts"}
        )


def test_a_repeated_column_name_is_refused_not_guessed(tmp_path):
    # pandas would read the second close as 'close.1' and volume would silently become 0.
    path = write(tmp_path, "timestamp,open,high,low,close,close\n2024-01-02,1,2,0.5,1.5,1.2\n")
    with pytest.raises(SourceError, match=r"bars\.csv: the column name\(s\) \['close'\]"):
        read_csv_bars(path, symbol="X", timeframe="1m")
    table = pa.Table.from_arrays(
        [pa.array(["2024-01-02"]), *(pa.array([1.0]) for _ in range(5))],
        names=["timestamp", "open", "high", "low", "close", "open"],
    )
    pq.write_table(table, tmp_path / "twice.parquet")
    with pytest.raises(SourceError, match=r"twice\.parquet: the column name\(s\) \['open'\]"):
        read_parquet_bars(tmp_path / "twice.parquet", symbol="X", timeframe="1m")


def test_corrupt_parquet_is_a_source_error(tmp_path):
    frame = pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-02"]), "open": [1.0]})
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    (tmp_path / "cut.parquet").write_bytes(path.read_bytes()[:-40])
    with pytest.raises(SourceError, match=r"cut\.parquet.*not a readable Parquet"):
        read_parquet_bars(tmp_path / "cut.parquet", symbol="X", timeframe="1m")


def test_a_table_moola_wrote_reads_back_unchanged(tmp_path):
    es = make_bars(
        pd.to_datetime(["2024-01-02 14:30", "2024-01-02 14:31"], utc=True),
        [1.0, 2.0], [1.5, 2.5], [0.5, 1.5], [1.2, 2.2], [10.0, 20.0],
        symbol="ES", timeframe="1m",
    )  # fmt: skip
    nq = make_bars(
        pd.to_datetime(["2024-01-02 14:30"], utc=True), [9.0], [9.5], [8.5], [9.2], [5.0],
        symbol="NQ", timeframe="1m",
    )  # fmt: skip
    table = pd.concat([es, nq], ignore_index=True)
    table.to_parquet(tmp_path / "bars.parquet", index=False)
    pd.testing.assert_frame_equal(read_parquet_bars(tmp_path / "bars.parquet"), table)
    with pytest.raises(ConfigError, match="says '1m' but timeframe='5m'"):
        read_parquet_bars(tmp_path / "bars.parquet", timeframe="5m")
