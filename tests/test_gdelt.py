"""The GDELT GKG 2.1 reader on hand-made files in the real format (tests/fixtures/gdelt):
what it keeps per record, the FX relevance filter, malformed lines counted with file and
line, and files that are not GKG 2.1 refused by name."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from moola.core.errors import ConfigError, SourceError
from moola.data.sources.gdelt import GKG_COLUMNS, NEWS_COLUMNS, Relevance, read_gkg, record_texts

FIXTURES = Path(__file__).parent / "fixtures" / "gdelt"
BATCH_1015 = FIXTURES / "20240102101500.gkg.csv.zip"
BATCH_1030 = FIXTURES / "20240102103000.gkg.csv.zip"


def test_fixtures_are_real_gkg_files():
    """One tab-separated .gkg.csv per zip, 27 fields on the good lines, no header."""
    with zipfile.ZipFile(BATCH_1015) as archive:
        assert archive.namelist() == ["20240102101500.gkg.csv"]
        lines = archive.read("20240102101500.gkg.csv").decode().splitlines()
    assert [len(line.split("\t")) for line in lines[:5]] == [len(GKG_COLUMNS)] * 5
    assert not lines[0].startswith("GKGRECORDID")


def test_a_record_keeps_time_themes_countries_orgs_tone_and_url():
    read = read_gkg(BATCH_1015, relevance=Relevance(themes=()))
    records = read.records
    assert list(records.columns) == list(NEWS_COLUMNS)
    assert str(records["published"].dtype) == "datetime64[ns, UTC]"
    ecb = records.set_index("record_id").loc["20240102101500-1"]
    assert ecb["published"] == pd.Timestamp("2024-01-02 10:15:00", tz="UTC")
    assert ecb["themes"] == "ECON_CENTRALBANK;ECON_INTEREST_RATES;TAX_FNCACT_PRESIDENT"
    assert ecb["countries"] == "GM"  # Germany and Frankfurt, both FIPS GM, once
    assert ecb["organizations"] == "european central bank;bundesbank"
    assert ecb["url"] == "https://www.reuters.com/markets/ecb-holds-rates"
    assert ecb["source"] == "reuters.com"
    assert ecb["tone"] == pytest.approx(-3.21428571428571)
    assert ecb["negative"] == pytest.approx(5.0)
    assert ecb["word_count"] == 541
    assert (ecb["file"], ecb["line"]) == ("20240102101500.gkg.csv.zip!20240102101500.gkg.csv", 1)
    fed = records.set_index("record_id").loc["20240102101500-2"]
    assert fed["quotations"].startswith("inflation is moving sustainably")


def test_malformed_lines_are_counted_with_file_and_line():
    read = read_gkg([BATCH_1015, BATCH_1030], relevance=Relevance(themes=()))
    report = read.report
    assert report.lines == 10
    assert report.malformed == {
        "26 fields instead of 27": 1,
        "bad V2Tone (not 7 numbers)": 1,
        "bad DATE (not YYYYMMDDHHMMSS)": 1,
        "duplicate record id": 1,
    }
    where = {(e.reason, e.file.split("!")[0], e.line) for e in report.examples}
    assert ("26 fields instead of 27", BATCH_1015.name, 6) in where
    assert ("bad V2Tone (not 7 numbers)", BATCH_1015.name, 7) in where
    assert ("bad DATE (not YYYYMMDDHHMMSS)", BATCH_1030.name, 2) in where
    assert ("duplicate record id", BATCH_1030.name, 3) in where
    # every line is accounted for: kept, not relevant, or malformed
    assert report.kept + report.irrelevant + report.n_malformed == report.lines
    assert len(read.records) == report.kept == 6
    assert read.records["published"].is_monotonic_increasing
    assert "line 6" in report.summary()


def test_eurusd_filter_keeps_euro_area_and_us_news():
    read = read_gkg([BATCH_1015, BATCH_1030], relevance=Relevance(pair="EUR/USD"))
    kept = set(read.records["record_id"])
    # ECB (Germany), Fed (US), ECB named without a location, euro-area inflation (France)
    assert kept == {"20240102101500-1", "20240102101500-2", "20240102101500-T5", "20240102103000-1"}
    # football (no economic theme) and the Bank of Japan (Japan) are not EUR/USD news
    assert read.report.irrelevant == 2


def test_usdjpy_filter_keeps_japan_and_us_news():
    read = read_gkg(BATCH_1015, relevance=Relevance(pair="USDJPY"))
    assert set(read.records["record_id"]) == {"20240102101500-2", "20240102101500-4"}


def test_theme_filter_matches_prefixes():
    read = read_gkg(BATCH_1015, relevance=Relevance(themes=("econ",)))
    assert "20240102101500-3" not in set(read.records["record_id"])  # football
    assert len(read.records) == 4


def test_a_pair_without_a_table_needs_countries():
    with pytest.raises(ConfigError, match="No built-in countries for currency 'SEK'"):
        read_gkg(BATCH_1015, relevance=Relevance(pair="EURSEK"))
    custom = Relevance(pair="EURSEK", countries=("GM", "SW"), keywords=("krona",))
    assert len(read_gkg(BATCH_1015, relevance=custom).records) == 1


def test_wrong_delimiter_is_refused_naming_the_file():
    with pytest.raises(SourceError, match=r"bad_delimiter\.gkg\.csv.*no tab.*','-separated"):
        read_gkg(FIXTURES / "bad_delimiter.gkg.csv.zip")


def test_missing_columns_are_refused_naming_them():
    with pytest.raises(SourceError) as caught:
        read_gkg(FIXTURES / "missing_columns.gkg.csv.zip")
    message = str(caught.value)
    assert "missing_columns.gkg.csv" in message
    assert "most lines have 15" in message and "V2Tone" in message


def test_damaged_and_empty_files_are_refused(tmp_path):
    truncated = tmp_path / "20240102101500.gkg.csv.zip"
    truncated.write_bytes(BATCH_1015.read_bytes()[:200])
    with pytest.raises(SourceError, match=r"20240102101500\.gkg\.csv\.zip"):
        read_gkg(truncated)
    empty = tmp_path / "empty.gkg.csv"
    empty.write_text("")
    with pytest.raises(SourceError, match="empty"):
        read_gkg(empty)


def test_unzipped_file_reads_the_same(tmp_path):
    plain = tmp_path / "20240102101500.gkg.csv"
    with zipfile.ZipFile(BATCH_1015) as archive:
        plain.write_bytes(archive.read("20240102101500.gkg.csv"))
    zipped = read_gkg(BATCH_1015, relevance=Relevance(themes=())).records
    unzipped = read_gkg(plain, relevance=Relevance(themes=())).records
    pd.testing.assert_frame_equal(
        zipped.drop(columns="file"), unzipped.drop(columns="file"), check_like=False
    )


def test_record_texts_prefer_quotations_then_themes_and_names():
    records = read_gkg(BATCH_1015, relevance=Relevance(themes=())).records.set_index("record_id")
    texts = dict(zip(records.index, record_texts(records), strict=True))
    assert texts["20240102101500-2"].startswith("inflation is moving sustainably")
    assert texts["20240102101500-1"].startswith("econ centralbank, econ interest rates")
    assert "Christine Lagarde" in texts["20240102101500-1"]


def test_a_header_line_and_windows_line_ends_are_read_alike(tmp_path):
    """Tools that re-save GKG files add a header row or CRLF line ends; the records and the
    line numbers of malformed lines stay those of the file."""
    with zipfile.ZipFile(BATCH_1015) as archive:
        text = archive.read("20240102101500.gkg.csv").decode()
    changed = tmp_path / "20240102101500.gkg.csv"
    changed.write_bytes(("\t".join(GKG_COLUMNS) + "\n" + text).replace("\n", "\r\n").encode())
    plain = read_gkg(BATCH_1015, relevance=Relevance(themes=()))
    read = read_gkg(changed, relevance=Relevance(themes=()))
    assert read.records["record_id"].tolist() == plain.records["record_id"].tolist()
    assert read.records["url"].tolist() == plain.records["url"].tolist()
    assert read.report.malformed == plain.report.malformed
    assert sorted(e.line for e in read.report.examples) == [7, 8]  # one line further down
