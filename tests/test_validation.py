"""Bar validation: every rule is reported with its row, strict refuses, repair fixes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import BarValidationError, ConfigError
from moola.core.timeframes import parse_timeframe
from moola.data.schema import BAR_COLUMNS, make_bars
from moola.data.validation import RULES, ValidationReport, Violation, validate_bars

START = pd.Timestamp("2024-01-02 14:00", tz="UTC")
MINUTE = pd.Timedelta(minutes=1)


def bars(n: int = 6, symbol: str = "A", timeframe: str = "1m", start=START) -> pd.DataFrame:
    """``n`` clean bars: open 100+i, close 100.5+i, high close+1, low open-1, volume 10."""
    step = parse_timeframe(timeframe)
    i = np.arange(n, dtype=float)
    return make_bars(
        [start + k * step for k in range(n)],
        100 + i,
        101.5 + i,
        99 + i,
        100.5 + i,
        np.full(n, 10.0),
        symbol=symbol,
        timeframe=timeframe,
    )


def raised(frame: pd.DataFrame, **kwargs) -> BarValidationError:
    with pytest.raises(BarValidationError) as info:
        validate_bars(frame, **kwargs)
    return info.value


def found(frame: pd.DataFrame) -> set[tuple[str, int, str | None]]:
    return {(v.rule, v.row, v.column) for v in raised(frame).violations}


# --- clean input ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["strict", "repair"])
def test_clean_frame_passes_unchanged(mode):
    frame = pd.concat([bars(symbol="A"), bars(symbol="B")], ignore_index=True)
    out, report = validate_bars(frame, mode=mode)
    pd.testing.assert_frame_equal(out, frame)
    assert report.n_input == report.n_output == 12
    assert report.violations == () and report.repairs == () and report.summary() == {}


def test_same_timestamp_in_two_symbols_is_fine():
    frame = pd.concat([bars(symbol="ES"), bars(symbol="NQ")], ignore_index=True)
    assert (frame["timestamp"].iloc[:6].to_numpy() == frame["timestamp"].iloc[6:].to_numpy()).all()
    validate_bars(frame)


def test_output_has_fresh_range_index_and_canonical_column_order():
    frame = bars().set_axis(range(10, 16))[list(reversed(BAR_COLUMNS))]
    out, _ = validate_bars(frame)
    assert list(out.columns) == list(BAR_COLUMNS)
    assert isinstance(out.index, pd.RangeIndex) and out.index[0] == 0


# --- each rule, with its row, column and value -------------------------------------------


def test_non_finite_values():
    frame = bars()
    frame.loc[2, "close"] = np.nan
    frame.loc[4, "volume"] = np.inf
    error = raised(frame)
    assert [(v.rule, v.row, v.column) for v in error.violations] == [
        ("non_finite", 2, "close"),
        ("non_finite", 4, "volume"),
    ]
    assert np.isnan(error.violations[0].value) and error.violations[1].value == np.inf


def test_non_positive_price_and_negative_volume():
    frame = bars()
    frame.loc[1, "low"] = 0.0
    frame.loc[3, "volume"] = -5.0
    error = raised(frame)
    assert [(v.rule, v.row, v.column, v.value) for v in error.violations] == [
        ("non_positive_price", 1, "low", 0.0),
        ("negative_volume", 3, "volume", -5.0),
    ]


def test_high_and_low_must_bracket_open_and_close():
    frame = bars()
    frame.loc[1, "high"] = 100.8  # open 101, close 101.5
    frame.loc[4, "low"] = 104.2  # open 104, close 104.5
    error = raised(frame)
    assert [(v.rule, v.row, v.column, v.value) for v in error.violations] == [
        ("high_below_open_close", 1, "high", 100.8),
        ("low_above_open_close", 4, "low", 104.2),
    ]
    assert "101.5" in error.violations[0].message  # max(open, close)


def test_off_grid_timestamp():
    frame = bars()
    frame.loc[3, "timestamp"] += pd.Timedelta(seconds=30)
    error = raised(frame)
    assert [(v.rule, v.row, v.column) for v in error.violations] == [("off_grid", 3, "timestamp")]
    assert error.violations[0].value == START + 3 * MINUTE + pd.Timedelta(seconds=30)


def test_daily_grid_is_midnight_utc():
    daily = bars(4, timeframe="1d", start=pd.Timestamp("2024-01-02", tz="UTC"))
    daily["timeframe"] = pd.array(["1d"] * 4, dtype="string")
    validate_bars(daily)
    daily.loc[2, "timestamp"] += pd.Timedelta(hours=17)
    assert found(daily) == {("off_grid", 2, "timestamp")}


def test_duplicate_timestamps_and_non_monotonic_rows_are_reported_separately():
    frame = bars(7)
    # minutes: 0, 1, 2, 2 (duplicate), 5, 3 (late), 4 (late)
    minutes = [0, 1, 2, 2, 5, 3, 4]
    frame["timestamp"] = pd.Series([START + m * MINUTE for m in minutes]).dt.as_unit("ns")
    error = raised(frame)
    assert [(v.rule, v.row) for v in error.violations] == [
        ("duplicate_timestamp", 3),
        ("non_monotonic", 5),
        ("non_monotonic", 6),
    ]
    assert "row 2" in error.violations[0].message
    assert "different values" in error.violations[0].message


def test_a_late_copy_of_an_earlier_bar_is_a_duplicate_not_non_monotonic():
    frame = pd.concat([bars(4), bars(4).iloc[[1]]], ignore_index=True)
    error = raised(frame)
    assert [(v.rule, v.row) for v in error.violations] == [("duplicate_timestamp", 4)]
    assert "exact copy" in error.violations[0].message


def test_missing_keys():
    frame = bars()
    frame.loc[1, "timestamp"] = pd.NaT
    frame.loc[2, "symbol"] = pd.NA
    frame.loc[4, "timeframe"] = pd.NA
    assert found(frame) == {
        ("missing_value", 1, "timestamp"),
        ("missing_value", 2, "symbol"),
        ("missing_value", 4, "timeframe"),
    }


def test_order_rules_report_input_rows_when_some_keys_are_missing():
    frame = bars(6)
    frame.loc[1, "timestamp"] = pd.NaT
    frame.loc[4, "timestamp"] = frame.loc[2, "timestamp"]
    assert found(frame) == {
        ("missing_value", 1, "timestamp"),
        ("duplicate_timestamp", 4, "timestamp"),
    }


def test_symbols_must_be_grouped_in_sorted_order():
    frame = pd.concat([bars(3, symbol="B"), bars(3, symbol="A")], ignore_index=True)
    assert found(frame) == {("symbol_order", 3, "symbol")}


def test_interleaved_symbols_are_checked_per_symbol():
    a, b = bars(3, symbol="A"), bars(3, symbol="B")
    frame = pd.concat([a, b], ignore_index=True).iloc[[0, 3, 1, 4, 2, 5]].reset_index(drop=True)
    # each symbol's own times increase, so only the order of symbols is wrong
    assert found(frame) == {("symbol_order", 2, "symbol"), ("symbol_order", 4, "symbol")}


# --- all violations, strict message ------------------------------------------------------


def test_all_violations_are_reported_not_only_the_first():
    frame = bars(8)
    frame.loc[0, "open"] = np.nan
    frame.loc[2, "high"] = 50.0
    frame.loc[3, "volume"] = -1.0
    frame.loc[5, "timestamp"] += pd.Timedelta(seconds=1)
    frame.loc[7, "timestamp"] = frame.loc[6, "timestamp"]
    error = raised(frame)
    assert {(v.rule, v.row) for v in error.violations} == {
        ("non_finite", 0),
        ("high_below_open_close", 2),  # high 50 is also below low 101: implied by this rule
        ("negative_volume", 3),
        ("off_grid", 5),
        ("duplicate_timestamp", 7),
    }
    assert [v.row for v in error.violations] == sorted(v.row for v in error.violations)


def test_strict_message_names_source_counts_rows_and_fix():
    frame = bars(30)
    frame.loc[[4, 9, 17], "volume"] = -1.0
    frame.loc[12, "timestamp"] += pd.Timedelta(seconds=5)
    error = raised(frame, source="data/es_1m.csv")
    message = str(error)
    assert "data/es_1m.csv" in message
    assert "negative_volume 3" in message and "off_grid 1" in message
    for row in (4, 9, 12, 17):
        assert f"row {row}," in message
    assert "column 'volume'" in message
    assert "mode='repair'" in message and error.param == "mode"  # the CLI says --mode


def test_strict_message_lists_first_ten_and_keeps_full_list():
    frame = bars(40)
    frame.loc[:, "volume"] = -1.0
    error = raised(frame)
    assert len(error.violations) == 40
    assert "row 9," in str(error) and "row 10," not in str(error)
    assert "30 more" in str(error)


def test_violation_list_can_be_capped_while_counts_stay_exact():
    frame = bars(20)
    frame["volume"] = -1.0
    _, report = validate_bars(
        pd.concat([frame, bars(1, start=START + 20 * MINUTE)], ignore_index=True),
        mode="repair",
        max_violations_per_rule=5,
    )
    assert [v.row for v in report.violations] == [0, 1, 2, 3, 4]
    assert report.summary() == {"negative_volume": 20}
    with pytest.raises(BarValidationError, match="negative_volume 20"):
        validate_bars(frame, max_violations_per_rule=0)


# --- schema ------------------------------------------------------------------------------


def test_missing_column_raises_naming_it():
    error = raised(bars().drop(columns=["volume"]), mode="repair")
    assert "'volume' is missing" in str(error)
    assert [(v.rule, v.column) for v in error.violations] == [("schema", "volume")]


@pytest.mark.parametrize(
    ("column", "change", "expected"),
    [
        ("volume", lambda s: s.astype("int64"), "float64"),
        ("timestamp", lambda s: s.dt.tz_localize(None), "datetime64[ns, UTC]"),
        ("timestamp", lambda s: s.dt.tz_convert("America/New_York"), "datetime64[ns, UTC]"),
        ("timestamp", lambda s: s.dt.as_unit("us"), "datetime64[ns, UTC]"),
        ("symbol", lambda s: s.astype(object), "string"),
    ],
)
def test_wrong_dtype_raises_naming_column_and_expected_dtype(column, change, expected):
    frame = bars()
    frame[column] = change(frame[column])
    error = raised(frame, mode="repair")
    assert f"column {column!r} has dtype" in str(error)
    assert f"expected {expected}" in str(error)


def test_repeated_column_raises():
    frame = bars()
    frame = pd.concat([frame, frame[["close"]]], axis=1)
    assert "'close' appears twice" in str(raised(frame, mode="repair"))


def test_unknown_column_is_refused_in_strict_and_dropped_in_repair():
    frame = bars().assign(open_interest=1.0)  # not one of the declared extra columns
    assert "unexpected column 'open_interest'" in str(raised(frame))
    out, report = validate_bars(frame, mode="repair")
    pd.testing.assert_frame_equal(out, bars())
    assert report.repairs[0]["action"] == "dropped_extra_columns"
    assert report.repairs[0]["columns"] == ["open_interest"]


def test_declared_extra_columns_are_kept():
    frame = bars().assign(trades=np.full(6, 3, dtype=np.int64), vwap=100.75 + np.arange(6.0))
    for mode in ("strict", "repair"):
        out, report = validate_bars(frame, mode=mode)
        pd.testing.assert_frame_equal(out, frame)
        assert report.repairs == ()


def test_mixed_timeframes_raise():
    frame = bars()
    frame.loc[2, "timeframe"] = "5m"
    message = str(raised(frame, mode="repair"))
    assert "'1m' (5 rows)" in message and "'5m' (1 rows)" in message


def test_unparseable_timeframe_raises():
    frame = bars()
    frame["timeframe"] = pd.array(["1x"] * 6, dtype="string")
    assert "'1x'" in str(raised(frame))


def test_empty_table_raises():
    assert "no rows" in str(raised(bars().iloc[0:0]))


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="repair"):
        validate_bars(bars(), mode="fix")  # type: ignore[arg-type]


# --- repair ------------------------------------------------------------------------------


def test_repair_sorts_deduplicates_drops_and_reports_counts():
    clean = pd.concat([bars(6, symbol="A"), bars(4, symbol="B")], ignore_index=True)
    # input rows 0-9: clean rows shuffled so B comes first
    frame = clean.iloc[[6, 7, 8, 9, 0, 1, 2, 3, 4, 5]].reset_index(drop=True)
    extra = clean.iloc[[1, 1, 2, 7]].copy()  # rows 10, 11: exact copies of A@1
    extra.iloc[2, extra.columns.get_loc("close")] = 102.0  # row 12: conflicts with A@2
    extra.iloc[3, extra.columns.get_loc("high")] = 1.0  # row 13: invalid copy of B@1
    off = bars(1, symbol="A", start=START + 10 * MINUTE + pd.Timedelta(seconds=7))  # row 14
    frame = pd.concat([frame, extra, off], ignore_index=True)

    out, report = validate_bars(frame, mode="repair", source="x.parquet")

    pd.testing.assert_frame_equal(out, clean)
    validate_bars(out)  # the output is clean
    actions = {r["action"]: r for r in report.repairs}
    assert [r["action"] for r in report.repairs] == [
        "dropped_invalid_rows",
        "dropped_off_grid",
        "sorted",
        "dropped_exact_duplicates",
        "dropped_conflicting_duplicates",
    ]
    assert actions["dropped_invalid_rows"]["count"] == 1
    assert actions["dropped_invalid_rows"]["rows"] == [13]
    assert actions["dropped_invalid_rows"]["by_rule"] == {"high_below_open_close": 1}
    assert actions["dropped_off_grid"]["rows"] == [14]
    assert actions["dropped_exact_duplicates"] == {
        "action": "dropped_exact_duplicates",
        "count": 2,
        "rows": [10, 11],
    }
    assert actions["dropped_conflicting_duplicates"]["count"] == 1
    assert actions["dropped_conflicting_duplicates"]["rows"] == [12]
    assert report.n_input == 15 and report.n_output == 10
    assert report.summary()["duplicate_timestamp"] == 4
    json.dumps(report.to_dict())  # goes into a manifest verbatim


def test_repair_keeps_the_first_of_conflicting_duplicates():
    frame = bars(3)
    later = frame.iloc[[1]].assign(close=101.25)
    out, _ = validate_bars(pd.concat([frame, later], ignore_index=True), mode="repair")
    assert out["close"].tolist() == [100.5, 101.5, 102.5]


def test_repair_prefers_a_valid_bar_over_an_invalid_duplicate():
    frame = bars(3)
    first = frame.iloc[[1]].assign(close=np.nan)
    data = pd.concat([frame.iloc[[0]], first, frame.iloc[1:]], ignore_index=True)
    out, report = validate_bars(data, mode="repair")
    pd.testing.assert_frame_equal(out, frame)
    assert [r["action"] for r in report.repairs] == ["dropped_invalid_rows"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_repair_recovers_a_clean_table_from_shuffled_copies(seed):
    rng = np.random.default_rng(seed)
    clean = pd.concat([bars(50, symbol=s) for s in ("AAPL", "ES", "NQ")], ignore_index=True)
    copies = rng.choice(len(clean), size=40)
    messy = pd.concat([clean, clean.iloc[copies]], ignore_index=True)
    messy = messy.iloc[rng.permutation(len(messy))].reset_index(drop=True)
    out, report = validate_bars(messy, mode="repair")
    pd.testing.assert_frame_equal(out, clean)
    by_action = {r["action"]: r["count"] for r in report.repairs}
    assert by_action["dropped_exact_duplicates"] == 40
    assert set(by_action) == {"sorted", "dropped_exact_duplicates"}


def test_repair_that_leaves_no_rows_raises():
    frame = bars(3)
    frame["volume"] = -1.0
    assert "no rows" in str(raised(frame, mode="repair"))


def test_report_round_trips_to_json():
    frame = bars()
    frame.loc[1, "close"] = np.nan
    frame.loc[2, "timestamp"] += pd.Timedelta(seconds=1)
    _, report = validate_bars(frame, mode="repair")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["summary"] == {"non_finite": 1, "off_grid": 1}
    assert data["violations"][0]["value"] == "nan"
    assert (
        data["violations"][1]["value"] == (START + 2 * MINUTE + pd.Timedelta(seconds=1)).isoformat()
    )
    assert set(report.summary()) <= set(RULES)


def test_report_summary_counts_violations_when_built_by_hand():
    violations = (
        Violation("off_grid", 1, "timestamp", None, ""),
        Violation("off_grid", 2, "timestamp", None, ""),
        Violation("non_finite", 3, "open", None, ""),
    )
    assert ValidationReport(3, 0, violations, ()).summary() == {"off_grid": 2, "non_finite": 1}


# --- real prices ---------------------------------------------------------------------------


def test_real_sp500_daily_bars_validate():
    """arch's S&P 500 daily bars (1999-01-04 to 2018-12-31, 5031 rows) are clean: no
    missing values, highs and lows bracket open and close, dates increase. Checked by
    hand with pandas when this test was written; the validator must agree."""
    sp500 = pytest.importorskip("arch.data.sp500").load()
    frame = make_bars(
        sp500.index,
        sp500["Open"],
        sp500["High"],
        sp500["Low"],
        sp500["Close"],
        sp500["Volume"],
        symbol="SPX",
        timeframe="1d",
    )
    assert (sp500["High"] >= sp500[["Open", "Close"]].max(axis=1)).all()
    assert (sp500["Low"] <= sp500[["Open", "Close"]].min(axis=1)).all()
    out, report = validate_bars(frame, source="arch sp500")
    pd.testing.assert_frame_equal(out, frame)
    assert report.n_output == 5031

    broken = frame.copy()
    broken.loc[100, "high"] = broken.loc[100, "close"] - 1.0
    assert found(broken) == {("high_below_open_close", 100, "high")}
