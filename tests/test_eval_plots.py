"""Evaluation plots: PNG bytes out, ConfigError for inputs of the wrong shape."""

from __future__ import annotations

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.evaluation.plots import (
    confusion_png,
    learning_curve_png,
    pr_curve_png,
    reliability_png,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _data(n: int = 80, k: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k)) + (y[:, None] == np.arange(k))
    return y, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


@pytest.mark.parametrize("k", [2, 3])
def test_every_plot_returns_png_bytes(k):
    y, p = _data(k=k)
    names = [f"c{i}" for i in range(k)]
    assert reliability_png(y, p).startswith(PNG)
    assert reliability_png(y, p, strategy="quantile", n_bins=5).startswith(PNG)
    assert confusion_png(np.eye(k) * 5 + 1, names).startswith(PNG)
    assert confusion_png(np.eye(k) * 5 + 1, names, normalize=True).startswith(PNG)
    assert pr_curve_png(y, p, names).startswith(PNG)
    assert learning_curve_png([1.0, 0.8, 0.7], [1.1, 0.9, 0.95], best_epoch=2).startswith(PNG)
    assert learning_curve_png([1.0]).startswith(PNG)


def test_size_sets_the_pixel_dimensions():
    png = learning_curve_png([1.0, 0.5], size=(320, 240))
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (320, 240)


@pytest.mark.parametrize(
    "call",
    [
        lambda y, p: reliability_png(y, p[:, 0]),
        lambda y, p: reliability_png(y[:-1], p),
        lambda y, p: pr_curve_png(y, p[:-1]),
        lambda y, p: pr_curve_png(y, p, ["only-one"]),
        lambda y, p: confusion_png(np.ones((2, 3))),
        lambda y, p: confusion_png(np.ones(4)),
        lambda y, p: confusion_png(np.ones((2, 2)), ["a", "b", "c"]),
        lambda y, p: learning_curve_png(np.ones((3, 2))),
        lambda y, p: learning_curve_png([1.0, 0.9], [1.0]),
        lambda y, p: learning_curve_png([]),
        lambda y, p: learning_curve_png([1.0, 0.9], best_epoch=3),
    ],
)
def test_wrong_shapes_raise_config_error(call):
    y, p = _data()
    with pytest.raises(ConfigError):
        call(y, p)


def test_labelled_market_and_example_windows_render_and_check_their_inputs():
    import pandas as pd

    from moola.evaluation.plots import example_windows_png, labelled_market_png

    times = pd.date_range("2024-01-01", periods=500, freq="1min", tz="UTC")
    close = 100 + np.cumsum(np.random.default_rng(0).normal(size=500))
    windows = pd.DataFrame(
        {"start_ts": times[[10, 200]], "end_ts": times[[50, 260]], "label": ["a", "b"]}
    )
    assert labelled_market_png(times, close, windows).startswith(b"\x89PNG")
    examples = {"a": [close[10:50], close[300:340]], "b": [close[200:260]]}
    assert example_windows_png(examples).startswith(b"\x89PNG")
    with pytest.raises(ConfigError, match="label"):
        labelled_market_png(times, close, windows.drop(columns="label"))
    with pytest.raises(ConfigError, match="one length"):
        labelled_market_png(times, close[:-1], windows)
    with pytest.raises(ConfigError, match="no windows"):
        example_windows_png({"a": []})


def test_regression_plots_return_deterministic_png_bytes_and_check_their_inputs():
    from moola.evaluation.plots import ic_over_time_png, predicted_vs_actual_png

    rng = np.random.default_rng(0)
    y = rng.normal(0, 0.01, 300)
    pred = 0.4 * y + rng.normal(0, 0.01, 300)
    symbols = np.array(["BTC-USD", "ETH-USD", "SOL-USD"])[np.arange(300) % 3]
    scatter = predicted_vs_actual_png(y, pred, symbols)
    assert scatter.startswith(PNG) and scatter == predicted_vs_actual_png(y, pred, symbols)
    assert predicted_vs_actual_png(y, pred).startswith(PNG)
    periods = [
        {"period": "2024-01", "ic": 0.05, "n": 100},
        {"period": "2024-02", "ic": -0.02, "n": 100},
        {"period": "2024-03", "ic": None, "n": 1},
    ]
    bars = ic_over_time_png(periods)
    assert bars.startswith(PNG) and bars == ic_over_time_png(periods)
    assert ic_over_time_png([{"period": "2024-01", "ic": None, "n": 1}]).startswith(PNG)
    with pytest.raises(ConfigError, match="pred holds NaN or inf at row 4"):
        predicted_vs_actual_png(y, np.where(np.arange(300) == 4, np.nan, pred))
    with pytest.raises(ConfigError, match="symbols must be 1-D"):
        predicted_vs_actual_png(y, pred, symbols[:-1])
    with pytest.raises(ConfigError, match="no periods"):
        ic_over_time_png([])
    with pytest.raises(ConfigError, match="row 1 is not"):
        ic_over_time_png([periods[0], {"ic": 0.1}])
