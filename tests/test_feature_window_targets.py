"""Feature windows with regression and multi-task targets (``build_feature_windows(...,
labels=[...], targets=[...])``): each target is the labels table's value at the window's
last bar, the window's horizon end is the latest of its targets', an undefined target
leaves the window out (counted), bad targets are refused before anything is written, and
no target or window sees a bar after the moment it describes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.features.labels import build_labels
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.pipeline.labels import store_labels
from tests.conftest import random_walk_bars
from tests.test_feature_windows import COLUMNS, LENGTH, SPEC

# name -> (label kind, parameters): horizons differ so the latest horizon end is visible.
LABELS = {
    "fwd": ("forward-return", {"horizon": 5}),
    "vol": ("realized-vol", {"horizon": 8}),
    "trend": ("trend-strength", {"horizon": 3}),
    "regime": ("vol-regime", {"horizon": 4, "window": 30}),
}


def _market(registry: Registry, bars: pd.DataFrame, name: str = "mkt") -> None:
    """Raw ``name`` with every labels table of ``LABELS`` built over it."""
    raw = ingest_bars(registry, bars, name=name, sources=[{"test": name}], mode="repair").ref
    stored = registry.load_raw(raw.name, raw.version)
    for label, (kind, params) in LABELS.items():
        table = build_labels(stored, kind, **params)
        store_labels(registry, label, table, raw=raw, kind=kind, params=params)


def _listing(registry: Registry) -> list[str]:
    return [str(info.ref) for info in registry.list()]


def test_multitask_targets_are_the_labels_at_each_windows_last_bar(registry):
    _market(registry, random_walk_bars(260))
    ref = build_feature_windows(
        registry,
        "mkt",
        SPEC,
        name="fw",
        length=LENGTH,
        labels="fwd,vol,trend",
        targets=["label", "realized_vol", "trend_strength"],
    )
    meta = registry.meta(ref)
    assert meta["task"] == "multitask"
    assert [(t["name"], t["kind"], t["source"]) for t in meta["targets"]] == [
        ("label", "classification", "labels/fwd@v1"),
        ("realized_vol", "regression", "labels/vol@v1"),
        ("trend_strength", "regression", "labels/trend@v1"),
    ]
    assert "classes" not in meta["targets"][1]

    data = registry.load_feature_windows("fw")
    assert data.task == "multitask" and data.targets == tuple(meta["targets"])
    assert data.Y.shape == (len(data.table), 3) and data.Y.dtype == np.float64
    assert data.y is data.Y
    ends = data.table["end"].to_numpy()
    tables = {name: registry.load_table("labels", name) for name in ("fwd", "vol", "trend")}
    classes = meta["targets"][0]["classes"]
    assert classes == sorted({str(int(v)) for v in tables["fwd"]["label"].iloc[ends]})
    expected_codes = [classes.index(str(int(v))) for v in tables["fwd"]["label"].iloc[ends]]
    np.testing.assert_array_equal(data.Y[:, 0], expected_codes)
    np.testing.assert_array_equal(data.Y[:, 1], tables["vol"]["realized_vol"].iloc[ends])
    np.testing.assert_array_equal(data.Y[:, 2], tables["trend"]["trend_strength"].iloc[ends])
    assert data.table["y_label"].tolist() == [
        str(int(v)) for v in tables["fwd"]["label"].iloc[ends]
    ]
    # The horizon end is the latest of the three (realized-vol looks 8 bars ahead).
    latest = np.max([t["horizon_end"].iloc[ends].to_numpy() for t in tables.values()], axis=0)
    np.testing.assert_array_equal(data.table["horizon_end"], latest)
    assert (data.table["horizon_end"] == data.table["end"] + 8).all()
    stamps = tables["vol"]["horizon_end_ts"].iloc[ends].reset_index(drop=True)
    assert data.table["horizon_end_ts"].reset_index(drop=True).equals(stamps)
    # Splits read the window's time through that horizon end (purging stays honest).
    spans = registry.sample_spans(ref)[1]
    assert (spans == data.table["horizon_end_ts"].astype("int64").to_numpy()).all()
    np.testing.assert_array_equal(
        data.X[3],
        registry.load_table("features", "mkt-small")[COLUMNS].to_numpy(np.float32)[
            data.table["start"].iloc[3] : data.table["start"].iloc[3] + LENGTH
        ],
    )


def test_one_float_target_is_a_regression_dataset(registry):
    _market(registry, random_walk_bars(200))
    ref = build_feature_windows(
        registry, "mkt", SPEC, name="fw", length=LENGTH, labels="trend", stride=2
    )  # no targets: the table's recorded target, trend_strength, a float
    meta = registry.meta(ref)
    assert meta["task"] == "regression" and "classes" not in meta
    assert meta["targets"] == [
        {"name": "trend_strength", "kind": "regression", "source": "labels/trend@v1"}
    ]
    data = registry.load_feature_windows("fw")
    assert "label" not in data.table.columns and data.classes == ()
    assert data.y.shape == (len(data.table),) and data.y.dtype == np.float64
    trend = registry.load_table("labels", "trend")["trend_strength"]
    np.testing.assert_array_equal(data.y, trend.iloc[data.table["end"]].to_numpy())
    assert ((data.y >= 0) & (data.y <= 1)).all()
    assert "regression: trend_strength" in registry.summary(ref)
    _, _, split = make_and_store_split(registry, ref, "forward-chaining")
    assert len(split.train) and len(split.test)


def test_the_class_kind_comes_from_the_label_kind_and_the_dtype(registry):
    _market(registry, random_walk_bars(200))
    raw = registry.resolve("raw", "mkt")
    table = registry.load_table("labels", "fwd")
    table["side"] = np.where(table["label"] > 0, "up", "down")  # strings: classes by name
    table.loc[table["label"].isna(), "side"] = None
    registry.write_table("labels", "sided", table, parents=[raw], meta={"target": "side"})
    build_feature_windows(
        registry,
        "mkt",
        SPEC,
        name="fw",
        length=LENGTH,
        labels=["regime", "sided"],
        targets=["vol_regime", "side", "forward_return", "regime:realized_vol"],
    )
    data = registry.load_feature_windows("fw")
    kinds = {t["name"]: (t["kind"], t.get("classes")) for t in data.targets}
    assert kinds == {
        "vol_regime": ("classification", ["0", "1", "2"]),
        "side": ("classification", ["down", "up"]),
        "forward_return": ("regression", None),
        "realized_vol": ("regression", None),
    }
    assert data.table["y_side"].tolist() == [
        "up" if v > 0 else "down" for v in table["label"].iloc[data.table["end"]]
    ]
    assert set(np.unique(data.Y[:, 0])) <= {0.0, 1.0, 2.0}


def test_undefined_targets_leave_the_window_out_and_are_counted(registry):
    _market(registry, random_walk_bars(200))
    ref = build_feature_windows(
        registry,
        "mkt",
        SPEC,
        name="fw",
        length=LENGTH,
        labels="regime,fwd",
        targets=["vol_regime", "fwd:label"],
    )
    features = registry.load_table("features", "mkt-small")[COLUMNS].to_numpy()
    regime, fwd = registry.load_table("labels", "regime"), registry.load_table("labels", "fwd")
    expected = {"warmup": 0, "gaps": 0, "unlabeled": 0}
    kept = []
    for start in range(len(features) - LENGTH + 1):  # brute force, window by window
        end = start + LENGTH - 1
        if np.isnan(features[start : end + 1]).any():
            expected["warmup"] += 1
        elif any(
            pd.isna(t[column].iloc[end]) or t["horizon_end"].iloc[end] < 0
            for t, column in ((regime, "vol_regime"), (fwd, "label"))
        ):
            expected["unlabeled"] += 1
        else:
            kept.append(start)
    assert registry.meta(ref)["excluded"] == expected
    assert expected["unlabeled"] > 20  # vol-regime's warm-up (window + horizon) and the end
    assert registry.load_feature_windows("fw").table["start"].tolist() == kept


def test_bad_targets_are_refused_naming_table_and_column_with_nothing_written(registry):
    _market(registry, random_walk_bars(200))
    raw = registry.resolve("raw", "mkt")
    broken = registry.load_table("labels", "vol")
    broken.loc[57, "realized_vol"] = np.inf
    registry.write_table(
        "labels", "inf", broken, parents=[raw], meta={"label_kind": "realized-vol"}
    )
    registry.write_table("labels", "nohorizon", broken.drop(columns="horizon_end"), parents=[raw])
    before = _listing(registry)
    stamp = str(broken["timestamp"].iloc[57])

    def refused(match: str, **kwargs) -> None:
        with pytest.raises(ConfigError, match=match):
            build_feature_windows(registry, "mkt", SPEC, name="fw", length=LENGTH, **kwargs)

    refused(
        rf"labels/inf@v1 column 'realized_vol' holds 1 infinite value\(s\), the first at "
        rf"{re.escape(stamp)} \(bar 57\)",
        labels="inf",
        targets=["realized_vol"],
    )
    refused(
        "labels/fwd@v1 has no label column 'nope'; its columns are label, forward_return",
        labels="fwd",
        targets=["nope"],
    )
    refused(
        r"No labels table of raw/mkt@v1 has a label column 'nope' \(labels/fwd@v1 has label, "
        r"forward_return; labels/vol@v1 has realized_vol\)",
        labels="fwd,vol",
        targets=["label", "nope"],
    )
    refused(
        r"'realized_vol' is in both labels/vol@v1 and labels/regime@v1; name the one meant "
        r"as LABELS:realized_vol",
        labels="vol,regime",
        targets=["realized_vol"],
    )
    refused("Several labels tables are given: name the target columns", labels="vol,fwd")
    refused("give labels too", targets=["label"])
    refused("labels/nohorizon@v1 has no horizon_end column", labels="nohorizon")
    assert _listing(registry) == before


@pytest.mark.parametrize("cut", [110, 173])
def test_no_lookahead_targets_settled_before_a_cut_are_the_same_on_cut_bars(registry, cut):
    bars = random_walk_bars(230)
    _market(registry, bars, "full")
    full_raw = [registry.resolve("labels", name) for name in LABELS]
    _market(registry, bars.iloc[:cut].reset_index(drop=True), "cut")
    cut_raw = [registry.resolve("labels", name) for name in LABELS]  # the @v2 tables
    targets = ["label", "realized_vol", "trend_strength", "vol_regime"]
    for name, labels in (("full", full_raw), ("cut", cut_raw)):
        build_feature_windows(
            registry,
            name,
            SPEC,
            name=name,
            length=LENGTH,
            labels=[ref.pinned for ref in labels],
            targets=[f"{ref.name}:{column}" for ref, column in zip(labels, targets, strict=True)],
        )
    full, part = registry.load_feature_windows("full"), registry.load_feature_windows("cut")
    assert (part.table["horizon_end"] <= cut - 1).all()  # no target looks past the cut
    settled = np.flatnonzero(full.table["horizon_end"].to_numpy() <= cut - 1)
    assert part.table["end"].tolist() == full.table["end"].iloc[settled].tolist()
    for i, j in enumerate(settled):
        np.testing.assert_array_equal(part.X[i], full.X[j])
    # Classes may differ between the two (a class absent before the cut): compare names.
    for k, target in enumerate(full.targets):
        if target["kind"] == "classification":
            names_full = np.asarray(target["classes"])[full.Y[settled, k].astype(int)]
            names_part = np.asarray(part.targets[k]["classes"])[part.Y[:, k].astype(int)]
            assert names_part.tolist() == names_full.tolist()
        else:
            np.testing.assert_array_equal(part.Y[:, k], full.Y[settled, k])
