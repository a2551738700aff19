"""A multi-task run's report shows each class head's reliability and confusion charts."""

from __future__ import annotations

import base64

from moola.data.registry import Registry
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry
from moola.features.labels import build_labels
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.pipeline.lifecycle import write_report
from moola.pipeline.train import TrainConfig, run_training
from moola.tracking.runs import RunStore
from tests.conftest import random_walk_bars

SPEC = FeatureSetSpec(
    name="small",
    features=[
        FeatureSpecEntry(name="sma", params={"period": 5}),
        FeatureSpecEntry(name="rsi", params={"period": 3}, scale="robust"),
    ],
)


def test_a_multitask_report_shows_the_class_heads_charts(registry: Registry):
    bars = random_walk_bars(400)
    raw = ingest_bars(registry, bars, name="mkt", sources=[{"test": "mkt"}], mode="repair").ref
    labels = build_labels(bars.reset_index(drop=True), "forward-return", horizon=5)
    registry.write_table("labels", "mkt", labels, parents=[raw], meta={"target": "label"})
    ref = build_feature_windows(
        registry, "mkt", SPEC, name="mt", length=10, labels="mkt",
        targets=["label", "forward_return"],
    )  # fmt: skip
    make_and_store_split(registry, ref, "forward-chaining", name="mtc")
    config = TrainConfig(
        model="cnn_lstm_attention", dataset="mt", split="mtc", params={"epochs": 1},
        n_bootstrap=10,
    )  # fmt: skip
    run_id = run_training(registry, config).run_id

    html = write_report(registry, run_id).read_text()
    store = RunStore(registry.root)
    run_dir = store.run_dir(run_id)
    plots = html[html.index("label: Plots") :]
    for stored, shown in [
        ("reliability_label.png", "reliability.png"),
        ("confusion_label.png", "confusion.png"),
    ]:
        png = base64.b64encode(store.read_bytes(run_dir, stored)).decode("ascii")
        assert f'alt="{shown}" src="data:image/png;base64,{png}"' in plots, stored
    # The regression head keeps its own charts; no class chart is drawn for it.
    assert store.has_file(run_dir, "predicted_vs_actual_forward_return.png")
    assert not store.has_file(run_dir, "reliability_forward_return.png")
    assert 'alt="predicted_vs_actual.png"' in html
