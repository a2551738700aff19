"""Raw datasets keep the declared extra bar columns (trade count, VWAP, quotes, filled):
validated by type and sense, stored and hashed with the bars, loaded back, and kept by
``moola data ingest`` of a Databento tick file."""

from __future__ import annotations

import hashlib
import json

import databento_dbn as dbn
import numpy as np
import pandas as pd
import pytest

from moola.core.errors import BarValidationError, RegistryError, SourceError
from moola.core.integrity import file_records
from moola.data._manifest import content_hash
from moola.data.registry import Registry
from moola.data.schema import BAR_COLUMNS, EXTRA_COLUMNS, make_bars
from moola.data.sources.dbn import read_dbn_ticks
from moola.data.ticks import TICK_BAR_COLUMNS, TickBarConfig, ticks_to_bars
from moola.data.validation import validate_bars
from moola.pipeline.ingest import combine_files, ingest_bars
from tests.test_cli import run
from tests.test_source_dbn import AAPL, OPEN_NY, SEC, mbp1, write_dbn

S = 10**9
T = pd.Timestamp("2024-03-01 14:30:00", tz="UTC").value  # 09:30 New York
NAN = np.nan


def tick_bars() -> pd.DataFrame:
    """Five 1-second bars with every extra column: trades, a quiet (filled) second, quotes
    from the second bar on (the first has none yet)."""
    return ticks_to_bars(
        np.array(
            [T + S // 10, T + 6 * S // 10, T + 11 * S // 10, T + 34 * S // 10, T + 45 * S // 10]
        ),
        np.array([100.0, 100.5, NAN, 99.5, 100.25]),
        np.array([100.0, 300.0, 0.0, 50.0, 10.0]),
        symbol="AAPL",
        trade=np.array([True, True, False, True, True]),
        bid=np.array([NAN, NAN, 99.75, NAN, NAN]),
        ask=np.array([NAN, NAN, 100.25, NAN, NAN]),
        config=TickBarConfig(session=None),
    )


def ohlcv_bars() -> pd.DataFrame:
    t = pd.date_range("2024-01-02", periods=50, freq="1min", tz="UTC")
    c = 100 + np.cumsum(np.sin(np.arange(50)))
    return make_bars(t, c, c + 1, c - 1, c + 0.5, np.arange(50.0), symbol="ES", timeframe="1m")


def violations(frame: pd.DataFrame) -> set[tuple[str, int, str | None]]:
    with pytest.raises(BarValidationError) as info:
        validate_bars(frame)
    return {(v.rule, v.row, v.column) for v in info.value.violations}


# --- validation -------------------------------------------------------------------------


def test_tick_bars_pass_strict_validation_with_their_extras_kept():
    bars = tick_bars()
    assert bars["filled"].tolist() == [False, True, True, False, False]
    assert np.isnan(bars["bid"].iloc[0]) and bars["spread"].iloc[1] == 0.5
    out, report = validate_bars(bars)
    pd.testing.assert_frame_equal(out, bars)
    assert tuple(out.columns) == TICK_BAR_COLUMNS and report.summary() == {}


def test_extras_given_in_another_order_come_back_in_declared_order():
    bars = tick_bars()
    shuffled = bars[[*BAR_COLUMNS, "filled", "vwap", "trades"]]
    out, _ = validate_bars(shuffled)
    assert list(out.columns) == [*BAR_COLUMNS, "trades", "vwap", "filled"]


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("trades", -1, {("negative_trades", 3, "trades")}),
        ("vwap", 101.0, {("vwap_outside_range", 3, "vwap")}),  # trades at 99.5 only
        ("vwap", NAN, {("non_finite_extra", 3, "vwap")}),
        ("bid", 100.5, {("crossed_quote", 3, "bid"), ("spread_mismatch", 3, "spread")}),
        ("bid", np.inf, {("non_finite_extra", 3, "bid")}),  # not also crossed, or a mismatch
        ("spread", 0.25, {("spread_mismatch", 3, "spread")}),
        ("volume", 5.0, {("filled_with_volume", 1, "filled")}),  # row 1 is a quiet second
    ],
)
def test_each_broken_extra_is_named_by_rule_row_and_column(column, value, expected):
    bars = tick_bars()
    row = 1 if column == "volume" else 3
    bars.loc[row, column] = value
    assert violations(bars) == expected


def test_a_spread_without_both_quotes_must_be_nan():
    bars = tick_bars()
    bars.loc[0, "spread"] = 0.5  # row 0 has no quote yet
    assert violations(bars) == {("spread_mismatch", 0, "spread")}
    bars = tick_bars()
    bars.loc[2, "spread"] = NAN  # both quotes known: the spread is too
    assert violations(bars) == {("spread_mismatch", 2, "spread")}


def test_rounding_of_a_vwap_or_spread_is_no_violation():
    bars = tick_bars()
    bars.loc[3, "vwap"] = 99.5 * (1 + 1e-12)  # one trade at 99.5: high = low = 99.5
    bars.loc[2, "spread"] = 0.5 + 1e-12
    validate_bars(bars)


def test_strict_message_names_the_rule_row_column_and_value():
    bars = tick_bars()
    bars.loc[4, "trades"] = -2
    with pytest.raises(BarValidationError, match=r"row 4, column 'trades', value -2: trades -2"):
        validate_bars(bars, source="t.dbn")


@pytest.mark.parametrize(
    ("column", "cast", "expected"),
    [
        ("trades", lambda s: s.astype(float), "int64"),
        ("filled", lambda s: s.astype("boolean"), "bool"),
        ("vwap", lambda s: s.astype("float32"), "float64"),
    ],
)
def test_an_extra_of_the_wrong_dtype_is_refused_naming_it(column, cast, expected):
    bars = tick_bars()
    bars[column] = cast(bars[column])
    for mode in ("strict", "repair"):
        with pytest.raises(
            BarValidationError, match=rf"'{column}' has dtype .*expected {expected}"
        ):
            validate_bars(bars, mode=mode)


def test_unknown_columns_are_refused_by_name_and_repair_drops_only_them():
    bars = tick_bars().assign(open_interest=1.0)
    with pytest.raises(BarValidationError) as info:
        validate_bars(bars)
    message = str(info.value)
    assert "unexpected column 'open_interest'" in message
    assert "trades int64, vwap float64" in message  # the declared extras are listed
    out, report = validate_bars(bars, mode="repair")
    pd.testing.assert_frame_equal(out, tick_bars())
    assert report.repairs[0] == {
        "action": "dropped_extra_columns",
        "count": 1,
        "columns": ["open_interest"],
    }


def test_repair_drops_rows_breaking_an_extras_rule_and_records_them():
    bars = tick_bars()
    bars.loc[3, "trades"] = -1
    bars.loc[4, "bid"] = 101.0  # crossed (ask 100.25) and so the spread is wrong too
    out, report = validate_bars(bars, mode="repair")
    assert out["timestamp"].tolist() == tick_bars()["timestamp"].iloc[:3].tolist()
    dropped = report.repairs[0]
    assert dropped["action"] == "dropped_invalid_rows" and dropped["rows"] == [3, 4]
    assert dropped["by_rule"] == {"negative_trades": 1, "crossed_quote": 1, "spread_mismatch": 1}


def test_duplicates_that_differ_only_in_an_extra_conflict():
    bars = tick_bars()
    copy = bars.iloc[[0]].copy()
    for trades, action in ((2, "dropped_exact_duplicates"), (5, "dropped_conflicting_duplicates")):
        copy["trades"] = trades  # row 0 has 2 trades
        doubled = pd.concat([bars.iloc[:1], copy, bars.iloc[1:]], ignore_index=True)
        out, report = validate_bars(doubled, mode="repair")
        assert [r["action"] for r in report.repairs] == [action]
        pd.testing.assert_frame_equal(out, bars)


# --- registry ---------------------------------------------------------------------------

SOURCE = [{"generator": "test"}]


def test_extras_are_stored_recorded_hashed_and_loaded(tmp_path):
    registry = Registry(tmp_path)
    bars = tick_bars()
    ref = registry.write_raw("aapl", bars, sources=SOURCE)
    meta = registry.meta(ref)
    assert meta["extras"] == list(EXTRA_COLUMNS)
    assert meta["columns"]["trades"] == "int64" and meta["columns"]["filled"] == "bool"
    loaded = registry.load_raw("aapl")
    pd.testing.assert_frame_equal(loaded, bars)
    changed = bars.copy()
    changed.loc[3, "trades"] = 2  # only an extra differs: another content hash
    assert registry.write_raw("aapl", changed, sources=SOURCE).content_hash != ref.content_hash
    assert "+ trades, vwap, bid, ask, spread, filled" in registry.summary(ref)


def test_write_raw_refuses_unknown_misordered_or_mistyped_extras(tmp_path):
    registry = Registry(tmp_path)
    bars = tick_bars()
    with pytest.raises(RegistryError, match=r"Unknown columns: \['note'\]"):
        registry.write_raw("x", bars.assign(note=1), sources=SOURCE)
    with pytest.raises(RegistryError, match="in that order"):
        registry.write_raw("x", bars[[*BAR_COLUMNS, "vwap", "trades"]], sources=SOURCE)
    with pytest.raises(RegistryError, match="trades is float64, not int64"):
        registry.write_raw("x", bars.astype({"trades": float}), sources=SOURCE)
    assert registry.versions("raw", "x") == []


def test_ohlcv_only_raws_are_stored_exactly_as_before(tmp_path):
    """No ``extras`` key, the parquet of the canonical frame, and meta.json byte for byte
    what moola wrote before extras existed (its SHA-256 taken at commit 0c86eb6)."""
    registry = Registry(tmp_path)
    bars = ohlcv_bars()
    ref = ingest_bars(registry, bars, name="es", sources=SOURCE).ref
    folder = registry.dataset_dir("raw", "es", 1)
    meta = folder / "meta.json"
    assert hashlib.sha256(meta.read_bytes()).hexdigest() == (
        "374534859e4aed177470dbf2a31454980727638ad2064f29ca211d35ddecef77"
    )
    assert "extras" not in json.loads(meta.read_bytes())
    expected = tmp_path / "expected"
    expected.mkdir()
    bars.to_parquet(expected / "bars.parquet", index=False)
    assert ref.content_hash == content_hash(file_records(expected, ["bars.parquet"]))
    pd.testing.assert_frame_equal(registry.load_raw("es"), bars)


# --- ingest -----------------------------------------------------------------------------

TBBO = [
    mbp1(OPEN_NY + SEC // 10, 50.0, 10, dbn.Action.TRADE, 49.75, 50.25),
    mbp1(OPEN_NY + SEC // 2, 50.5, 30, dbn.Action.TRADE, 50.25, 50.5),
    mbp1(OPEN_NY + 5 * SEC // 2, 50.25, 5, dbn.Action.TRADE, 50.0, 50.5),
]


def test_ingest_of_a_tick_file_keeps_and_shows_its_extras(capsys, tmp_path):
    path = write_dbn(tmp_path / "aapl.tbbo.dbn", TBBO, mappings=AAPL, schema=dbn.Schema.TBBO)
    root = str(tmp_path / "data")
    code, out, err = run(capsys, "--data-root", root, "data", "ingest", str(path), "--name", "aapl")
    assert code == 0, err
    assert "raw/aapl@v1" in out and "extra columns: trades, vwap, bid, ask, spread, filled" in out
    registry = Registry(root)
    stored = registry.load_raw("aapl")
    pd.testing.assert_frame_equal(stored, read_dbn_ticks(path))
    assert stored["trades"].tolist() == [2, 0, 1]
    assert stored["filled"].tolist() == [False, True, False]
    assert stored["vwap"].iloc[0] == (50.0 * 10 + 50.5 * 30) / 40
    source = registry.manifest(registry.resolve("raw", "aapl"))["sources"][0]
    assert source["options"] == {"extras": True}
    code, out, _ = run(capsys, "--data-root", root, "data", "show", "aapl")
    assert code == 0
    assert "extra columns: trades (int64), vwap (float64), bid (float64)" in out
    code, out, _ = run(capsys, "--data-root", root, "data", "ingest", str(path), "--name", "aapl")
    assert code == 0 and "already holds these bytes" in out


def test_files_with_different_extras_do_not_combine():
    ticks = tick_bars()
    later = ticks.assign(timestamp=ticks["timestamp"] + pd.Timedelta(minutes=1))
    with pytest.raises(SourceError, match=r"a\.dbn: trades, vwap.*; b\.csv: none"):
        combine_files([ticks, later.loc[:, list(BAR_COLUMNS)]], ["a.dbn", "b.csv"])
    conflicting = later.copy()
    conflicting.loc[0, "timestamp"] = ticks["timestamp"].iloc[0]
    conflicting.loc[0, ["open", "high", "low", "close", "volume", "vwap"]] = ticks.loc[
        0, ["open", "high", "low", "close", "volume", "vwap"]
    ].to_numpy()
    conflicting.loc[0, "trades"] = 9  # same OHLCV, another trade count
    with pytest.raises(SourceError, match="differ between files"):
        combine_files([ticks, conflicting], ["a.dbn", "b.dbn"])
