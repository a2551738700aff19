"""Lazy windows: views equal explicit slices, no window crosses a symbol or a gap, no copies."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import MoolaError
from moola.data.schema import make_bars
from moola.data.windows import (
    WindowError,
    WindowSet,
    labeled_windows_table,
    window_starts,
)


def _bars(symbol: str, stamps: pd.DatetimeIndex, timeframe: str = "1m", seed: int = 0):
    rng = np.random.default_rng(seed)
    close = 100 + rng.standard_normal(len(stamps)).cumsum()
    return make_bars(
        stamps,
        close + rng.standard_normal(len(stamps)),
        close + 2,
        close - 2,
        close,
        rng.random(len(stamps)),
        symbol=symbol,
        timeframe=timeframe,
    )


def _minutes(start: str, count: int) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=count, freq="1min", tz="UTC")


def _gappy_market(seed: int) -> pd.DataFrame:
    """Two symbols of 1m bars with random gaps (and one duplicate stamp)."""
    rng = np.random.default_rng(seed)
    frames = []
    for symbol in ("AAA", "BBB"):
        steps = rng.choice([1] * 14 + [2, 7], size=80)
        minutes = np.concatenate([[0], np.cumsum(steps)])
        minutes[40] = minutes[39]  # a duplicate stamp is a break too
        stamps = pd.DatetimeIndex(
            pd.Timestamp("2024-01-02", tz="UTC") + pd.to_timedelta(minutes, "m")
        )
        frames.append(_bars(symbol, stamps, seed=seed))
    return pd.concat(frames, ignore_index=True)


def _brute_starts(bars: pd.DataFrame, length: int, allow_gaps: bool) -> list[int]:
    """Reference: check every candidate window bar by bar."""
    symbols = bars["symbol"].tolist()
    stamps = bars["timestamp"].tolist()
    good = []
    for s in range(len(bars) - length + 1):
        ok = all(symbols[k] == symbols[s] for k in range(s, s + length))
        if ok and not allow_gaps:
            ok = all(
                pd.Timedelta(0) < stamps[k + 1] - stamps[k] <= pd.Timedelta(minutes=1)
                for k in range(s, s + length - 1)
            )
        if ok:
            good.append(s)
    return good


# --------------------------------------------------------------------------- window_starts


def test_contiguous_single_symbol_gives_every_start():
    bars = _bars("NQ", _minutes("2024-01-02", 300))
    np.testing.assert_array_equal(window_starts(bars, 105), np.arange(196))
    assert window_starts(bars, 105).dtype == np.int64


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("length", [1, 3, 10])
@pytest.mark.parametrize("allow_gaps", [False, True])
def test_starts_match_brute_force_on_symbols_and_gaps(seed, length, allow_gaps):
    bars = _gappy_market(seed)
    starts = window_starts(bars, length, allow_gaps=allow_gaps)
    expected = _brute_starts(bars, length, allow_gaps)
    if allow_gaps:
        # Without the gap rule only symbol boundaries break windows; the duplicate stamp
        # and the gaps must then be crossed by some window.
        assert len(expected) == 2 * (81 - length + 1)
    np.testing.assert_array_equal(starts, expected)


def test_no_window_crosses_a_symbol_boundary():
    a = _bars("AAA", _minutes("2024-01-02", 50))
    b = _bars("BBB", _minutes("2024-01-02 00:50", 50))  # continues a's clock exactly
    bars = pd.concat([a, b], ignore_index=True)
    starts = window_starts(bars, 10)
    np.testing.assert_array_equal(starts, np.r_[np.arange(41), np.arange(50, 91)])


def test_stride_counts_from_each_run_start():
    # Bars 0..4, then a 10-minute gap, bars 5..9. Hand-computed for length 2, stride 2:
    # run one: windows at 0, 2 ([4, 5] crosses the gap); run two: 5, 7.
    minutes = [0, 1, 2, 3, 4, 14, 15, 16, 17, 18]
    stamps = pd.DatetimeIndex(pd.Timestamp("2024-01-02", tz="UTC") + pd.to_timedelta(minutes, "m"))
    bars = _bars("NQ", stamps)
    assert window_starts(bars, 2, stride=2).tolist() == [0, 2, 5, 7]
    assert window_starts(bars, 2, stride=2, allow_gaps=True).tolist() == [0, 2, 4, 6, 8]


def test_gap_threshold_follows_the_timeframe():
    stamps = pd.date_range("2024-01-02", periods=20, freq="5min", tz="UTC")
    assert window_starts(_bars("NQ", stamps, timeframe="5m"), 20).tolist() == [0]
    assert window_starts(_bars("NQ", stamps, timeframe="1m"), 20).tolist() == []


def test_too_few_bars_and_bad_arguments():
    bars = _bars("NQ", _minutes("2024-01-02", 5))
    assert window_starts(bars, 6).size == 0
    for kwargs in ({"length": 0}, {"length": 3, "stride": 0}):
        with pytest.raises(WindowError):
            window_starts(bars, **kwargs)
    with pytest.raises(MoolaError, match="symbol"):
        window_starts(bars.drop(columns="symbol"), 3)


# --------------------------------------------------------------------------- WindowSet


def _root(array: np.ndarray) -> object:
    """The object at the end of the ``.base`` chain (the buffer's owner)."""
    owner: object = array
    while getattr(owner, "base", None) is not None:
        owner = owner.base
    return owner


@pytest.fixture()
def market() -> pd.DataFrame:
    return _gappy_market(11)


def test_single_window_is_a_view_equal_to_the_slice(market):
    ws = WindowSet.from_bars(market, length=5)
    values = market[["open", "high", "low", "close"]].to_numpy(np.float32)
    assert len(ws) == len(window_starts(market, 5))
    for i in (0, 7, len(ws) - 1, -1):
        start = ws.starts[i]
        window = ws[i]
        assert window.shape == (5, 4)
        np.testing.assert_array_equal(window, values[start : start + 5])
        assert np.shares_memory(window, ws.values)
        assert _root(window) is _root(ws.values)
    with pytest.raises(IndexError):
        ws[len(ws)]


def test_batches_copy_only_the_selected_windows(market):
    ws = WindowSet.from_bars(market, length=4, columns=("close", "volume"), dtype=np.float64)
    values = market[["close", "volume"]].to_numpy()
    pick = np.array([3, 0, 9, 9, len(ws) - 1])
    mask = np.zeros(len(ws), dtype=bool)
    mask[[1, 5, 6]] = True
    cases = {
        "slice": (ws[2:8:3], ws.starts[2:8:3]),
        "array": (ws[pick], ws.starts[pick]),
        "list": (ws[pick.tolist()], ws.starts[pick]),
        "mask": (ws[mask], ws.starts[mask]),
        "take": (ws.take(pick), ws.starts[pick]),
    }
    for name, (batch, starts) in cases.items():
        expected = np.stack([values[s : s + 4] for s in starts])
        np.testing.assert_array_equal(batch, expected, err_msg=name)
        assert batch.shape == (len(starts), 4, 2)
        assert batch.nbytes == len(starts) * 4 * 2 * 8
        assert not np.shares_memory(batch, ws.values), name
    with pytest.raises(WindowError):
        ws[mask[:-1]]


def test_iter_batches_covers_requested_windows_in_order(market):
    ws = WindowSet.from_bars(market, length=6)
    batches = list(ws.iter_batches(7))
    assert [len(b) for b in batches[:-1]] == [7] * (len(batches) - 1)
    np.testing.assert_array_equal(np.concatenate(batches), ws[:])
    order = np.array([5, 1, 4, 2])
    picked = np.concatenate(list(ws.iter_batches(3, indices=order)))
    np.testing.assert_array_equal(picked, ws.take(order))


def test_spans_are_inclusive_bar_positions(market):
    ws = WindowSet.from_bars(market, length=8)
    spans = ws.spans()
    np.testing.assert_array_equal(spans[:, 0], ws.starts)
    np.testing.assert_array_equal(spans[:, 1], ws.starts + 7)
    assert (
        market["symbol"].to_numpy()[spans[:, 0]] == market["symbol"].to_numpy()[spans[:, 1]]
    ).all()


def test_large_window_set_holds_only_its_starts():
    n_bars, length = 300_000, 105
    stamps = pd.date_range("2024-01-02", periods=n_bars, freq="1min", tz="UTC")
    bars = _bars("NQ", stamps)
    dense_bytes = (n_bars - length + 1) * length * 4 * 4  # what a copy would cost (~500 MB)

    tracemalloc.start()
    ws = WindowSet.from_bars(bars, length=length)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert len(ws) == n_bars - length + 1
    assert ws.nbytes_overhead == ws.starts.nbytes == 8 * len(ws)
    assert ws.values.nbytes == n_bars * 4 * 4
    assert peak < dense_bytes / 20
    assert not np.shares_memory(ws[:1], ws.values)  # a batch is its own copy
    assert _root(ws[12345]) is _root(ws.values)

    values = ws.values
    tracemalloc.start()
    again = WindowSet(values, ws.starts, length)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000  # the constructor copies neither the bars nor the starts
    assert again.values is values


def test_memmap_values_stay_on_disk(tmp_path):
    path = tmp_path / "bars.f32"
    data = np.arange(200 * 3, dtype=np.float32).reshape(200, 3)
    data.tofile(path)
    values = np.memmap(path, dtype=np.float32, mode="r", shape=(200, 3))
    ws = WindowSet(values, np.array([0, 50, 195]), 5)
    assert _root(ws[1]) is _root(values)
    np.testing.assert_array_equal(ws[[2, 0]], np.stack([data[195:200], data[0:5]]))


def test_window_set_rejects_bad_inputs():
    values = np.zeros((10, 2), dtype=np.float32)
    with pytest.raises(WindowError, match="outside"):
        WindowSet(values, np.array([0, 7]), 4)
    with pytest.raises(WindowError, match="2-D"):
        WindowSet(np.zeros(10), np.array([0]), 4)
    with pytest.raises(WindowError):
        WindowSet(values, np.array([0.5]), 4)


# --------------------------------------------------------------------------- labeled table


def test_labeled_table_points_back_to_the_right_bars(market):
    starts = window_starts(market, 6)[[0, 10, 30, -1]]
    table = labeled_windows_table(
        market,
        starts,
        6,
        ["retracement", "consolidation", "retracement", "consolidation"],
        grades=["A", None, "C", "B"],
    )
    assert list(table.columns) == [
        "symbol",
        "start",
        "end",
        "start_ts",
        "end_ts",
        "label",
        "grade",
        "source",
    ]
    for row in table.itertuples():
        window = market.iloc[row.start : row.end + 1]
        assert len(window) == 6
        assert (window["symbol"] == row.symbol).all()
        assert window["timestamp"].iloc[0] == row.start_ts
        assert window["timestamp"].iloc[-1] == row.end_ts
    assert table["label"].tolist() == [
        "retracement",
        "consolidation",
        "retracement",
        "consolidation",
    ]
    assert table["grade"].isna().tolist() == [False, True, False, False]
    assert table["grade"].dropna().tolist() == ["A", "C", "B"]
    assert (table["source"] == "human").all()
    assert str(table["start_ts"].dtype) == "datetime64[ns, UTC]"


def test_labeled_table_keeps_integer_labels(market):
    table = labeled_windows_table(market, [0, 1], 3, np.array([1, 0]), source="planted")
    assert table["label"].dtype == np.int64
    assert table["label"].tolist() == [1, 0]
    assert table["source"].tolist() == ["planted", "planted"]


@pytest.mark.parametrize(
    ("starts", "labels", "grades", "match"),
    [
        ([0, 1], ["a"], None, "labels"),
        ([0], ["a"], ["A", "B"], "grades"),
        ([-1], ["a"], None, "outside"),
        ([79], ["a"], None, "symbol boundary"),  # AAA has 81 bars: [79, 83] crosses
        ([0], ["a"], ["E"], "Grade"),
        ([0, 1], ["a", 2], None, "mix"),
        ([0, 1], ["a", None], None, "missing"),
        ([0], [1.5], None, "whole-number class indices"),
    ],
)
def test_labeled_table_rejects_bad_inputs(market, starts, labels, grades, match):
    with pytest.raises(WindowError, match=match) as raised:
        labeled_windows_table(market, starts, 5, labels, grades=grades)
    assert isinstance(raised.value, MoolaError)
