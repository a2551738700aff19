"""The one-command ablation: the CNN-LSTM-attention multi-task model with and without the
sentiment columns, on the same windows, seed and purged time split. News built to carry
the next bars' direction must show up as a direction gain with an interval above 0; the
volatility and regime heads, which the news says nothing about, are reported as well."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from moola.core.errors import ConfigError
from moola.core.settings import load_settings
from moola.data.registry import Registry
from moola.features.sentiment import SentimentParams
from moola.pipeline.sentiment import NEWS_KIND, NEWS_TABLE, sentiment_ablation
from tests.conftest import random_walk_bars
from tests.test_sentiment_pipeline import cli_app

HORIZON = 5


def store_informative_news(registry: Registry):
    """1,500 one-minute bars and, every other bar, an item published 15m20s before the
    bar opens whose sentiment is the sign of the next HORIZON bars' return (plus noise)."""
    bars = random_walk_bars(1_500, symbol="EURUSD", start="2024-01-02 00:00")
    raw = registry.write_raw("eurusd", bars, sources=[{"path": "random walk", "sha256": "-"}])
    close = bars["close"].to_numpy()
    forward = np.log(close[HORIZON:] / close[:-HORIZON])
    rows = np.arange(0, len(forward), 2)
    rng = np.random.default_rng(0)
    items = pd.DataFrame(
        {
            "published": bars["timestamp"].iloc[rows].to_numpy() - pd.Timedelta("15min20s"),
            "sentiment": np.clip(
                np.sign(forward[rows]) * 0.8 + rng.normal(0, 0.2, len(rows)), -1, 1
            ),
            "confidence": 1.0,
        }
    )
    items["published"] = pd.to_datetime(items["published"], utc=True)
    news = registry.write_table(
        NEWS_KIND, "news-tone", items, parents=[], meta={"table": NEWS_TABLE}
    )
    return raw, news


def test_informative_news_lifts_direction_accuracy(registry):
    raw, news = store_informative_news(registry)
    result = sentiment_ablation(
        registry,
        raw,
        news,
        params=SentimentParams(lag="15min", baseline=10),
        length=8,
        horizon=HORIZON,
        regime_window=60,
        model={"epochs": 4, "lr": 5e-3},
        n_bootstrap=100,
    )
    with_, without = result.arms["with_sentiment"], result.arms["without_sentiment"]
    assert set(with_) == {
        "direction_accuracy",
        "direction_base_rate",
        "volatility_mse",
        "volatility_rank_corr",
        "regime_accuracy",
    }
    gain = result.difference["direction_accuracy"]
    assert gain["difference"] == pytest.approx(
        with_["direction_accuracy"] - without["direction_accuracy"]
    )
    assert gain["low"] > 0.0  # the news carries the direction; price alone does not
    assert with_["direction_accuracy"] > with_["direction_base_rate"] + 0.05
    assert result.windows["train"] > 500 and result.windows["test"] > 200
    assert result.settings["price_columns"] == 11 and result.settings["sentiment_columns"] == 6


def test_ablation_refuses_too_little_data(registry):
    raw, news = store_informative_news(registry)
    with pytest.raises(ConfigError, match="complete windows"):
        sentiment_ablation(registry, raw, news, length=1_480, regime_window=60, model={"epochs": 1})
    with pytest.raises(ConfigError, match="test_fraction"):
        sentiment_ablation(registry, raw, news, test_fraction=0.95)


def test_cli_ablation_prints_and_writes_the_comparison(tmp_path):
    home = tmp_path / "home"
    store_informative_news(Registry(load_settings(home=home).data_root))
    out = tmp_path / "ablation.json"
    result = CliRunner().invoke(
        cli_app(),
        ["--data-root", str(home), "sentiment", "ablation", "--raw", "eurusd",
         "--news", "news-tone", "--length", "8", "--regime-window", "60", "--epochs", "1",
         "--stride", "3", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "with sentiment" in result.output and "95% interval" in result.output
    written = json.loads(out.read_text())
    assert set(written["arms"]) == {"with_sentiment", "without_sentiment"}
    assert written["settings"]["stride"] == 3
