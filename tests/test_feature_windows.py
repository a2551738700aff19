"""Feature windows (``build_feature_windows``, ``Registry.load_feature_windows``): windows
of ``length`` rows of a feature table stored once per (raw version, feature set), with
warm-up, gap and unlabeled windows left out and counted, labels at the window's last bar,
and no window or label seeing a bar after the moment it describes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError, RegistryError
from moola.data.registry import Registry
from moola.data.windows import WindowSet, labeled_windows_table
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry
from moola.features.labels import build_labels
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from tests.conftest import random_walk_bars

# A small set with a short warm-up: 4 NaN rows (sma 5), then settled values.
SPEC = FeatureSetSpec(
    name="small",
    features=[
        FeatureSpecEntry(name="sma", params={"period": 5}),
        FeatureSpecEntry(name="rsi", params={"period": 3}),
    ],
)
COLUMNS = ["sma_5", "sma_5_ratio", "rsi_3"]
LENGTH = 12
HORIZON = 5


def _store(registry: Registry, bars: pd.DataFrame, name: str, *, labels: bool = True):
    """Ingest ``bars`` as raw ``name`` and, with ``labels``, a forward-return labels table."""
    raw = ingest_bars(registry, bars, name=name, sources=[{"test": name}], mode="repair").ref
    if labels:
        table = build_labels(bars.reset_index(drop=True), "forward-return", horizon=HORIZON)
        registry.write_table("labels", name, table, parents=[raw], meta={"target": "label"})
    return raw


def _gappy_bars(n: int = 200) -> pd.DataFrame:
    """One symbol with two missing stretches of bars (gaps)."""
    bars = random_walk_bars(n)
    return bars.drop(index=[*range(60, 63), 130]).reset_index(drop=True)


def test_the_feature_table_is_stored_once_and_windows_are_rows_of_it(registry):
    _store(registry, random_walk_bars(200), "mkt")
    first = build_feature_windows(registry, "mkt", SPEC, name="fw", length=LENGTH, labels="mkt")
    second = build_feature_windows(registry, "mkt", SPEC, name="fu", length=LENGTH, stride=4)
    assert registry.names("features") == ["mkt-small"]
    assert registry.versions("features", "mkt-small") == [1]  # the second build reused it
    features = registry.resolve("features", "mkt-small")
    for ref in (first, second):
        assert features.to_dict() in registry.manifest(ref)["parents"]
    assert first.kind == "labeled" and second.kind == "unlabeled"

    table = registry.load_table("features", "mkt-small")[COLUMNS].to_numpy(np.float32)
    data = registry.load_feature_windows("fw")
    assert isinstance(data.X, WindowSet) and data.columns == tuple(COLUMNS)
    assert data.X.shape == (len(data.table), LENGTH, len(COLUMNS))
    assert np.shares_memory(data.X[0], data.X[1])  # views of one table, not copies
    starts = data.table["start"].to_numpy()
    for i in (0, 7, len(data.table) - 1):
        np.testing.assert_array_equal(data.X[i], table[starts[i] : starts[i] + LENGTH])
    np.testing.assert_array_equal(data.X.materialise()[7], data.X[7])
    assert len(data.y) == len(data.table) and data.symbols[0] == "TEST"
    unlabeled = registry.load_feature_windows("fu")
    assert unlabeled.y is None
    assert (np.diff(unlabeled.table["start"].to_numpy()) % 4 == 0).all()


def test_exclusions_are_counted_exactly_and_labels_come_from_the_last_bar(registry):
    bars = _gappy_bars()
    raw = _store(registry, bars, "gappy")
    ref = build_feature_windows(registry, "gappy", SPEC, name="fw", length=LENGTH, labels="gappy")
    stored = registry.load_raw(raw.name, raw.version)
    features = registry.load_table("features", "gappy-small")[COLUMNS].to_numpy()
    labels = registry.load_table("labels", "gappy")
    stamps = stored["timestamp"]
    expected = {"warmup": 0, "gaps": 0, "unlabeled": 0}
    kept = []
    for start in range(len(stored) - LENGTH + 1):  # brute force, window by window
        end = start + LENGTH - 1
        steps = stamps.iloc[start : end + 1].diff().dropna()
        if (steps != pd.Timedelta("1min")).any():
            expected["gaps"] += 1
        elif np.isnan(features[start : end + 1]).any():
            expected["warmup"] += 1
        elif labels["horizon_end"].iloc[end] < 0 or pd.isna(labels["label"].iloc[end]):
            expected["unlabeled"] += 1
        else:
            kept.append(start)
    meta = registry.meta(ref)
    assert meta["excluded"] == expected
    assert expected["gaps"] > 0 and expected["warmup"] == 4 and expected["unlabeled"] == HORIZON
    data = registry.load_feature_windows("fw")
    assert data.table["start"].tolist() == kept
    ends = data.table["end"].to_numpy()
    assert data.table["label"].tolist() == labels["label"].iloc[ends].astype(int).tolist()
    assert data.table["horizon_end"].tolist() == labels["horizon_end"].iloc[ends].tolist()
    assert (data.table["horizon_end"] > data.table["end"]).all()


@pytest.mark.parametrize("cut", [90, 141, 200])
def test_no_lookahead_windows_ending_before_a_cut_are_the_same_on_cut_bars(registry, cut):
    bars = random_walk_bars(240)
    _store(registry, bars, "full")
    _store(registry, bars.iloc[:cut].reset_index(drop=True), "cut")
    build_feature_windows(registry, "full", SPEC, name="full", length=LENGTH, labels="full")
    build_feature_windows(registry, "cut", SPEC, name="cut", length=LENGTH, labels="cut")
    full, part = registry.load_feature_windows("full"), registry.load_feature_windows("cut")
    assert (part.table["horizon_end"] <= cut - 1).all()  # no label looks past the cut
    by_end = {int(end): i for i, end in enumerate(full.table["end"])}
    # Every full window whose label is settled before the cut is there, identical.
    settled = full.table.index[full.table["horizon_end"] <= cut - 1]
    assert sorted(part.table["end"]) == sorted(full.table["end"].iloc[settled])
    for i, end in enumerate(part.table["end"]):
        j = by_end[int(end)]
        np.testing.assert_array_equal(part.X[i], full.X[j])
        assert part.table["label"].iloc[i] == full.table["label"].iloc[j]
        assert part.table["horizon_end"].iloc[i] == full.table["horizon_end"].iloc[j]


def test_windows_of_many_symbols_stay_inside_one_symbol(registry):
    a = random_walk_bars(100, symbol="AAA", seed=1)
    b = random_walk_bars(90, symbol="BBB", seed=2)
    _store(registry, pd.concat([a, b], ignore_index=True), "two", labels=False)
    ref = build_feature_windows(registry, "two", SPEC, name="fw", length=LENGTH)
    data = registry.load_feature_windows("fw")
    bars = registry.load_raw("two")
    symbols = bars["symbol"].astype(str).to_numpy()
    for start, symbol in zip(data.table["start"], data.symbols, strict=True):
        assert set(symbols[start : start + LENGTH]) == {symbol}
    # Per symbol: every start past its 4 warm-up rows; none across the boundary.
    per_symbol = data.table["symbol"].astype(str).value_counts().to_dict()
    assert per_symbol == {"AAA": 100 - LENGTH + 1 - 4, "BBB": 90 - LENGTH + 1 - 4}
    assert registry.meta(ref)["excluded"] == {"warmup": 8, "gaps": 0}


def _nothing_written(registry: Registry) -> bool:
    return not any(registry.names(kind) for kind in ("features", "labeled", "unlabeled"))


def test_bad_inputs_are_refused_before_anything_is_written(registry):
    _store(registry, random_walk_bars(120), "mkt")
    with pytest.raises(ConfigError, match=r"warms up over 1,827 bars, .* TEST: 120"):
        build_feature_windows(registry, "mkt", "intraday31", name="fw", length=LENGTH)
    with pytest.raises(ConfigError, match="no label column 'nope'"):
        build_feature_windows(
            registry, "mkt", SPEC, name="fw", length=LENGTH, labels="mkt", label_column="nope"
        )
    _store(registry, random_walk_bars(120, seed=5), "mkt")  # raw mkt@v2: other bars
    with pytest.raises(RegistryError, match="built from raw/mkt@v1, not from raw/mkt@v2"):
        build_feature_windows(registry, "mkt@v2", SPEC, name="fw", length=LENGTH, labels="mkt@v1")
    assert _nothing_written(registry)


def test_no_window_left_stores_no_feature_table_either(registry):
    bars = random_walk_bars(300)  # gaps every 10 bars: no 12-bar run without one
    _store(registry, bars.drop(index=range(0, 300, 10)).reset_index(drop=True), "holes")
    with pytest.raises(ConfigError, match="No window of 12 bars"):
        build_feature_windows(registry, "holes", SPEC, name="fw", length=LENGTH)
    assert _nothing_written(registry)


def test_feature_windows_are_not_read_as_price_windows(registry):
    _store(registry, random_walk_bars(100), "mkt")
    build_feature_windows(registry, "mkt", SPEC, name="fw", length=LENGTH, labels="mkt")
    with pytest.raises(RegistryError, match="load_feature_windows"):
        registry.load_labeled("fw")


def test_one_class_label_is_stored_as_before_and_loads_as_one_target(registry):
    _store(registry, random_walk_bars(150), "mkt")
    ref = build_feature_windows(registry, "mkt", SPEC, name="fw", length=LENGTH, labels="mkt")
    same = build_feature_windows(
        registry, "mkt", SPEC, name="fw2", length=LENGTH, labels="mkt", targets=["label"]
    )
    assert same.content_hash == ref.content_hash  # targets=[COL] is the same dataset
    data = registry.load_feature_windows("fw")
    # The table the one-label form always stored: label ints, its horizon, no y_ columns.
    bars, labels = registry.load_raw("mkt"), registry.load_table("labels", "mkt")
    ends = data.table["end"].to_numpy()
    expected = labeled_windows_table(
        bars, data.table["start"].to_numpy(), LENGTH,
        labels["label"].iloc[ends].to_numpy().astype(np.int64), source="labels:mkt@v1",
    )  # fmt: skip
    expected["horizon_end"] = labels["horizon_end"].iloc[ends].to_numpy(np.int64)
    expected["horizon_end_ts"] = labels["horizon_end_ts"].iloc[ends].to_numpy()
    pd.testing.assert_frame_equal(data.table, expected)
    assert data.task == "classification" and data.classes == ("-1", "1")
    assert data.targets == (
        {
            "name": "label",
            "kind": "classification",
            "classes": ["-1", "1"],
            "source": "labels/mkt@v1",
        },
    )
    assert data.y.dtype == np.int64
    np.testing.assert_array_equal(data.Y[:, 0], data.y)
    # Times of the windows' last bars: one datetime64 array in UTC, not Timestamp objects.
    assert data.timestamps.dtype == np.dtype("datetime64[ns]")
    utc = data.table["end_ts"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    np.testing.assert_array_equal(data.timestamps, utc)
