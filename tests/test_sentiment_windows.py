"""Sentiment beside price features in ``moola train``: a sentiment table joined onto
feature windows (``--extra-features``) trains the CNN-LSTM-attention multi-task model, its
columns scaled by statistics of the training windows' rows only and recorded in the run."""

from __future__ import annotations

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.features.labels import build_labels
from moola.features.scaling import window_rows
from moola.features.sentiment import SENTIMENT_COLUMNS
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.predictor import Predictor
from moola.pipeline.train import TrainConfig, run_training
from tests.conftest import random_walk_bars
from tests.test_feature_windows import COLUMNS, LENGTH, SPEC
from tests.test_feature_windows_extra import store_market


def test_a_multitask_run_trains_on_price_and_sentiment_windows(registry):
    bars = random_walk_bars(300)
    raw, _, _ = store_market(registry, bars, "mkt")
    labels = build_labels(bars, "forward-return", horizon=5)
    registry.write_table("labels", "mkt", labels, parents=[raw], meta={"target": "label"})
    ref = build_feature_windows(
        registry,
        "mkt",
        SPEC,
        name="mt",
        length=LENGTH,
        labels="mkt",
        targets=["label", "forward_return"],
        extra_features="mkt-sent",
    )
    make_and_store_split(registry, ref, "forward-chaining", name="fc")
    config = TrainConfig(
        model="cnn_lstm_attention", dataset="mt", split="fc", params={"epochs": 1}, n_bootstrap=5
    )
    result = run_training(registry, config)
    manifest = result.manifest
    assert manifest["task"] == "multitask"
    assert set(manifest["metrics"]["heads"]) == {"label", "forward_return"}
    scaler = manifest["scaling"]
    assert scaler["columns"] == [*COLUMNS, *SENTIMENT_COLUMNS]
    assert scaler["methods"][len(COLUMNS) :] == ["zscore"] * len(SENTIMENT_COLUMNS)
    # The sentiment columns' statistics come from the training windows' rows alone.
    data = registry.load_feature_windows("mt")
    split = registry.load_split("fc", expect_dataset=data.ref)[0]
    rows = window_rows(data.X.starts[np.asarray(split.train)], LENGTH)
    sentiment = data.X.values[rows][:, len(COLUMNS) :].astype(np.float64)
    np.testing.assert_allclose(
        scaler["center"][len(COLUMNS) :], sentiment.mean(axis=0), rtol=1e-6, atol=1e-9
    )
    assert rows.max() < data.X.starts[np.asarray(split.test)].min()  # no test row in the fit
    # The run loads for prediction on windows built with the sentiment table; bars alone
    # cannot give the joined columns, and saying so beats predicting without them.
    predictor = Predictor.from_run(registry.root, result.run_id)
    windows = data.X.take(np.asarray(split.test)[:4])
    heads = predictor.predict_heads(windows)
    assert set(heads) == {"label", "forward_return"}
    assert all(len(values) == 4 for values in heads.values())
    with pytest.raises(ConfigError, match="bars alone cannot give them"):
        predictor.predict_heads(registry.load_raw("mkt"))
