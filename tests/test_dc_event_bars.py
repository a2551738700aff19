"""Directional-change bars as raw bars: aggregated right, never early, windowable."""

from __future__ import annotations

import numpy as np
import pandas as pd

from moola.data.registry import Registry
from moola.features.dc import dc_event_bars, detect_dc_events
from tests.conftest import random_walk_bars
from tests.test_cli import run


def test_each_event_bar_aggregates_its_source_bars_and_is_stamped_at_confirmation():
    bars = random_walk_bars(3_000, seed=4)
    events = detect_dc_events(bars, up=0.002)
    out = dc_event_bars(bars, up=0.002)
    assert len(out) == len(events) > 10
    confirm = events["confirm_pos"].to_numpy()
    k = 5
    span = bars.iloc[confirm[k - 1] + 1 : confirm[k] + 1]
    row = out.iloc[k]
    assert row["timestamp"] == bars["timestamp"].iloc[confirm[k]]
    assert row["open"] == span["open"].iloc[0] and row["close"] == span["close"].iloc[-1]
    assert row["high"] == span["high"].max() and row["low"] == span["low"].min()
    assert np.isclose(row["volume"], span["volume"].sum())
    assert out["timestamp"].is_monotonic_increasing and out["timestamp"].is_unique


def test_event_bars_computed_on_the_past_alone_are_the_same():
    bars = random_walk_bars(4_000, seed=9)
    full = dc_event_bars(bars, up=0.002)
    for t in (500, 1_777, 3_100):
        past = dc_event_bars(bars.iloc[: t + 1], up=0.002)
        known = full[full["timestamp"] <= bars["timestamp"].iloc[t]].reset_index(drop=True)
        pd.testing.assert_frame_equal(past, known)


def test_bars_dc_as_raw_stores_bars_that_data_windows_can_window(capsys, tmp_path):
    root = tmp_path / "moola_data"
    Registry(root).write_raw("es", random_walk_bars(5_000, seed=2), sources=[{"path": "t"}])
    code, out, err = run(
        capsys,
        "--data-root",
        str(root),
        "bars",
        "dc",
        "--raw",
        "es",
        "--threshold",
        "0.002",
        "--as-raw",
        "es-dc",
    )
    assert code == 0, err
    assert "--allow-gaps" in out
    registry = Registry(root)
    stored = registry.load_raw("es-dc")
    assert registry.manifest(registry.resolve("raw", "es-dc"))["parents"][0]["name"] == "es"
    code, out, err = run(
        capsys,
        "--data-root",
        str(root),
        "data",
        "windows",
        "es-dc",
        "--name",
        "dcw",
        "--length",
        "10",
        "--allow-gaps",
    )
    assert code == 0, err
    assert len(registry.load_unlabeled("dcw")) == len(stored) - 9
