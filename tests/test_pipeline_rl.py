"""RL runs read their periods from a registry split (issue 17): the training period is
the training windows' span, the evaluation period the val (or a fold's test) windows'
span, each with its own bars only; an evaluation period that starts before training ends
is refused."""

from __future__ import annotations

import pandas as pd
import pytest

from moola.core.errors import ConfigError, LeakageError
from moola.data.registry import Registry
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry
from moola.features.labels import build_labels
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.pipeline.rl import load_rl_data
from tests.conftest import random_walk_bars

SPEC = FeatureSetSpec(
    name="small",
    features=[
        FeatureSpecEntry(name="sma", params={"period": 5}),
        FeatureSpecEntry(name="rsi", params={"period": 3}),
    ],
)


@pytest.fixture
def rl_registry(registry: Registry) -> Registry:
    """Unlabeled feature windows ``fw`` (length 10) over 600 bars, a forward-chaining
    split ``fc`` and a 3-fold walk-forward split ``wf``; labeled windows ``lw`` with a
    shuffled (time-independent) split ``shuffled``."""
    bars = random_walk_bars(600)
    raw = ingest_bars(registry, bars, name="mkt", sources=[{"test": "mkt"}], mode="repair").ref
    ref = build_feature_windows(registry, "mkt", SPEC, name="fw", length=10)
    make_and_store_split(registry, ref, "forward-chaining", name="fc")
    make_and_store_split(registry, ref, "walk-forward", name="wf", n_splits=3)
    labels = build_labels(bars.reset_index(drop=True), "forward-return", horizon=5)
    registry.write_table("labels", "mkt", labels, parents=[raw], meta={"target": "label"})
    lw = build_feature_windows(registry, "mkt", SPEC, name="lw", length=10, labels="mkt")
    make_and_store_split(registry, lw, "stratified", name="shuffled", time_independent=True, seed=0)
    return registry


def test_periods_follow_the_split_and_hold_their_own_bars_only(rl_registry):
    data = load_rl_data(rl_registry, "fw", "fc")
    assert data.symbol == "TEST" and data.window == 10
    assert data.feature_set is not None and data.feature_set.name == "small"
    assert data.train.last < data.evaluation.first
    bars = rl_registry.load_raw("mkt")
    for period in (data.train, data.evaluation):
        stamps = period.bars["timestamp"]
        assert stamps.is_monotonic_increasing
        # Exactly the raw bars between the period's first and last bar, nothing else.
        inside = bars[(bars["timestamp"] >= period.first) & (bars["timestamp"] <= period.last)]
        pd.testing.assert_frame_equal(period.bars, inside.reset_index(drop=True))
    record = data.record()
    assert record["split"]["name"] == "fc" and record["raw"]["name"] == "mkt"
    assert record["periods"]["evaluation"]["part"] == "val"


def test_the_test_part_is_a_later_period_than_val(rl_registry):
    val = load_rl_data(rl_registry, "fw", "fc")
    test = load_rl_data(rl_registry, "fw", "fc", part="test")
    assert test.evaluation.first > val.evaluation.last
    assert test.train.bars.equals(val.train.bars)


def test_a_walk_forward_fold_gives_its_train_and_test_periods(rl_registry):
    last = load_rl_data(rl_registry, "fw", "wf")
    first = load_rl_data(rl_registry, "fw", "wf", fold=0)
    n = len(last.split.folds)
    assert first.evaluation.part == "fold 0 test" and last.evaluation.part == f"fold {n - 1} test"
    assert first.evaluation.last < last.evaluation.first
    assert len(first.train.bars) < len(last.train.bars)
    with pytest.raises(ConfigError, match=f"{n} folds") as err:
        load_rl_data(rl_registry, "fw", "wf", fold=n)
    assert err.value.param == "fold"
    with pytest.raises(ConfigError, match="none is held out"):
        load_rl_data(rl_registry, "fw", "wf", part="test")


def test_an_evaluation_period_inside_training_is_refused(rl_registry):
    with pytest.raises(LeakageError, match="trained on") as err:
        load_rl_data(rl_registry, "lw", "shuffled")
    assert err.value.param == "split"


def test_bad_inputs_name_what_is_wrong(rl_registry):
    with pytest.raises(ConfigError, match="is a raw") as err:
        load_rl_data(rl_registry, "mkt", "fc")
    assert err.value.param == "dataset"
    with pytest.raises(ConfigError, match="holds TEST") as err:
        load_rl_data(rl_registry, "fw", "fc", symbol="ES")
    assert err.value.param == "symbol"
    with pytest.raises(ConfigError, match="val or test") as err:
        load_rl_data(rl_registry, "fw", "fc", part="train")
    assert err.value.param == "part"
