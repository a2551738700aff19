"""``backtest_run(start=...)``: a run's signals backtested on a period alone (held-out bars).

The data: a seeded synthetic futures market, windows of 50 bars every 60 bars labelled by
the direction of the next 20 bars, and a one-fold walk-forward split whose test block (the
last 30% of the windows) is the only part the run predicts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.data.windows import labeled_windows_table, window_starts
from moola.features.labels import forward_return_direction
from moola.pipeline.backtests import backtest_run
from moola.pipeline.datasets import make_and_store_split, synthesize_raw
from moola.pipeline.train import TrainConfig, run_training

LENGTH, STRIDE, HORIZON = 50, 60, 20
OPTIONS = {"long_class": "up", "short_class": "down", "hold_bars": HORIZON, "spread": 0.25}


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> tuple[Registry, str, pd.DataFrame, pd.Timestamp]:
    registry = Registry(tmp_path_factory.mktemp("home"))
    raw, _ = synthesize_raw(registry, "mkt", n_bars=20_000, seed=5, calendar="futures")
    bars = registry.load_raw("mkt")
    starts = window_starts(bars, LENGTH + HORIZON + 1, stride=STRIDE)
    direction = forward_return_direction(bars, HORIZON)["label"].to_numpy()[starts + LENGTH - 1]
    labels = np.where(direction > 0, "up", "down")
    table = labeled_windows_table(bars, starts, LENGTH, labels)
    ref = registry.write_labeled("dir", raw, table, length=LENGTH)
    n_test = int(0.3 * len(table))
    make_and_store_split(
        registry,
        ref,
        "walk-forward",
        name="wf1",
        folds=1,
        test_size=n_test,
        purge=HORIZON,
        embargo=HORIZON,
    )
    config = TrainConfig(
        model="logistic_regression", dataset="dir", split="wf1", calibration="none", n_bootstrap=20
    )
    run_id = run_training(registry, config).run_id
    held_out_start = pd.Timestamp(table["start_ts"].iloc[len(table) - n_test])
    return registry, run_id, bars, held_out_start


def test_start_cuts_the_bars_and_keeps_the_same_trades(lab):
    registry, run_id, bars, held_out_start = lab
    whole, whole_record = backtest_run(registry, run_id, **OPTIONS)
    held, record = backtest_run(registry, run_id, start=held_out_start, **OPTIONS)
    first = int(bars["timestamp"].searchsorted(held_out_start))
    assert held.equity["timestamp"].iloc[0] == bars["timestamp"].iloc[first]
    assert len(held.equity) == len(bars) - first == held.stats["bars"]
    assert len(whole.equity) == len(bars)
    # Flat before the held-out period, so the trades are the same; the statistics are not.
    assert len(held.trades) > 0 and (held.trades["entry_time"] >= held_out_start).all()
    pd.testing.assert_frame_equal(held.trades, whole.trades)
    assert held.stats["total_return"] == pytest.approx(whole.stats["total_return"])
    assert record["start"] == str(held_out_start) and whole_record["start"] is None
    assert record["counts"]["before_start"] == 0 and record["leakage_check"]["passed"]
    assert record["counts"]["checked"] == whole_record["counts"]["checked"]


def test_predictions_decided_before_start_are_dropped_and_counted(lab):
    registry, run_id, _, held_out_start = lab
    later = held_out_start + pd.Timedelta(days=3)
    result, record = backtest_run(registry, run_id, start=later.tz_localize(None), **OPTIONS)
    counts = record["counts"]
    assert counts["before_start"] > 0
    assert counts["before_start"] + counts["checked"] == counts["covered"]
    assert result.equity["timestamp"].iloc[0] >= later
    assert (result.trades["entry_time"] > later).all()


@pytest.mark.parametrize("start", ["2100-01-01", "not a time"])
def test_a_start_after_the_data_or_not_a_time_is_refused(lab, start):
    registry, run_id, _, _ = lab
    with pytest.raises(ConfigError, match="start="):
        backtest_run(registry, run_id, start=start, **OPTIONS)
