"""check_source over every source format: tiny sample files written here (DBN with
databento_dbn's own encoder), and the checker catches a reader that breaks the contract."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from moola.core.errors import SourceError
from moola.data.schema import make_bars
from moola.data.sources import SOURCE_FORMATS, read_csv_bars
from moola.testing import check_source
from tests.test_source_dbn import ES_BARS, write_dbn

CSV = (
    "timestamp,open,high,low,close,volume\n"
    "2024-03-01 00:00,10.0,10.5,9.5,10.2,5\n"
    "2024-03-01 00:01,10.2,10.8,10.1,10.6,7\n"
    "2024-03-01 00:02,10.6,10.7,10.0,10.1,3\n"
)
HISTDATA = [
    "20240308 165700;1.093600;1.093720;1.093590;1.093700;0",
    "20240308 165800;1.093700;1.093710;1.093640;1.093660;0",
    "20240308 165900;1.093660;1.093680;1.093520;1.093540;0",
]
CANDLES = [
    {"start": str(1699999200 + 60 * k), "low": "1", "high": "2", "open": "1.5",
     "close": "1.8", "volume": "3"}
    for k in (2, 1, 0)
]  # fmt: skip


def _csv(tmp: Path) -> tuple[Path, dict]:
    path = tmp / "bars.csv"
    path.write_text(CSV)
    return path, {"symbol": "NQ", "timeframe": "1m"}


def _parquet(tmp: Path) -> tuple[Path, dict]:
    bars = make_bars(
        pd.date_range("2024-03-01", periods=3, freq="1min", tz="UTC"),
        [10.0, 10.2, 10.6], [10.5, 10.8, 10.7], [9.5, 10.1, 10.0], [10.2, 10.6, 10.1],
        [5.0, 7.0, 3.0], symbol="NQ", timeframe="1m",
    )  # fmt: skip
    path = tmp / "bars.parquet"
    bars.to_parquet(path)
    return path, {}


def _histdata(tmp: Path) -> tuple[Path, dict]:
    path = tmp / "DAT_ASCII_EURUSD_M1_202403.csv"
    path.write_text("\n".join(HISTDATA) + "\n")
    return path, {}


def _histdata_zip(tmp: Path) -> tuple[Path, dict]:
    path = tmp / "HISTDATA_COM_ASCII_EURUSD_M1202403.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("DAT_ASCII_EURUSD_M1_202403.csv", "\n".join(HISTDATA) + "\n")
    return path, {"symbol": "EURUSD"}


def _coinbase(tmp: Path) -> tuple[Path, dict]:
    path = tmp / "candles.json"
    path.write_text(json.dumps(CANDLES))
    return path, {"symbol": "BTC-USD"}


def _dbn(tmp: Path) -> tuple[Path, dict]:
    return write_dbn(tmp / "es.dbn", ES_BARS), {}


def _dbn_zst(tmp: Path) -> tuple[Path, dict]:
    return write_dbn(tmp / "es.dbn.zst", ES_BARS, compress=True), {}


SAMPLES = {
    "csv": [_csv],
    "parquet": [_parquet],
    "histdata": [_histdata, _histdata_zip],
    "coinbase": [_coinbase],
    "dbn": [_dbn, _dbn_zst],
}
CASES = [(fmt, make) for fmt in SOURCE_FORMATS for make in SAMPLES[fmt]]


def test_every_format_has_a_sample():
    assert set(SAMPLES) == set(SOURCE_FORMATS)


@pytest.mark.parametrize(("fmt", "make"), CASES, ids=[m.__name__[1:] for _, m in CASES])
def test_every_reader_passes(tmp_path, fmt, make):
    path, options = make(tmp_path)
    before = path.read_bytes()
    bars = check_source(fmt, path, **options)
    assert len(bars) == 3
    assert path.read_bytes() == before  # the sample is not touched


def test_a_reader_function_is_accepted(tmp_path):
    path, options = _csv(tmp_path)
    check_source(read_csv_bars, path, **options)


def test_unsorted_bars_fail(tmp_path):
    path, options = _csv(tmp_path)

    def backwards(file, **kw):
        return read_csv_bars(file, **kw).iloc[::-1].reset_index(drop=True)

    with pytest.raises(AssertionError, match="not sorted"):
        check_source(backwards, path, **options)


def test_naive_timestamps_fail(tmp_path):
    path, options = _csv(tmp_path)

    def naive(file, **kw):
        bars = read_csv_bars(file, **kw)
        bars["timestamp"] = bars["timestamp"].dt.tz_localize(None)
        return bars

    with pytest.raises(AssertionError, match="datetime64"):
        check_source(naive, path, **options)


def test_duplicate_timestamps_fail(tmp_path):
    path, options = _csv(tmp_path)

    def doubled(file, **kw):
        bars = read_csv_bars(file, **kw)
        return pd.concat([bars, bars.iloc[[-1]]], ignore_index=True)

    with pytest.raises(AssertionError, match="duplicate"):
        check_source(doubled, path, **options)


def test_bars_that_fail_validation_fail(tmp_path):
    path, options = _csv(tmp_path)

    def high_below_low(file, **kw):
        bars = read_csv_bars(file, **kw)
        bars.loc[0, "high"] = 1.0
        return bars

    with pytest.raises(AssertionError, match="strict validation"):
        check_source(high_below_low, path, **options)


def test_a_reader_with_hidden_state_fails(tmp_path):
    path, options = _csv(tmp_path)
    calls = []

    def drifting(file, **kw):
        calls.append(file)
        bars = read_csv_bars(file, **kw)
        bars["volume"] += len(calls)
        return bars

    with pytest.raises(AssertionError, match="twice"):
        check_source(drifting, path, **options)


def test_a_crash_on_a_damaged_file_fails(tmp_path):
    path, options = _csv(tmp_path)
    good = path.read_bytes()

    def fragile(file, **kw):
        if Path(file).read_bytes() != good:
            raise KeyError("close")
        return read_csv_bars(file, **kw)

    with pytest.raises(AssertionError, match=r"crashed.*KeyError"):
        check_source(fragile, path, **options)


def test_an_error_that_does_not_name_the_file_fails(tmp_path):
    path, options = _csv(tmp_path)
    good = path.read_bytes()

    def anonymous(file, **kw):
        if Path(file).read_bytes() != good:
            raise SourceError("something is wrong")
        return read_csv_bars(file, **kw)

    with pytest.raises(AssertionError, match="does not name the file"):
        check_source(anonymous, path, **options)


def test_accepting_an_empty_file_fails(tmp_path):
    path, options = _csv(tmp_path)

    def lenient(file, **kw):
        if Path(file).stat().st_size == 0:
            return read_csv_bars(path, **kw).iloc[0:0]
        return read_csv_bars(file, **kw)

    with pytest.raises(AssertionError, match="must be refused"):
        check_source(lenient, path, **options)


def test_bad_arguments(tmp_path):
    path, _ = _csv(tmp_path)
    with pytest.raises(ValueError, match="unknown source format"):
        check_source("xlsx", path)
    with pytest.raises(ValueError, match="does not exist"):
        check_source("csv", tmp_path / "missing.csv")
