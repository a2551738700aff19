"""Regression metrics: hand-computed values, scipy/sklearn agreement (also per bootstrap
resample), intervals, per-symbol and over-time views, bad input, multi-task reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from moola.core.errors import ConfigError
from moola.evaluation.metrics import _weights, classification_report
from moola.evaluation.regression import (
    REGRESSION_METRICS,
    _prepare,
    _rows,
    flat_regression_metrics,
    multitask_report,
    regression_report,
)


def _data(n: int = 200, seed: int = 0, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 0.01, n)
    pred = 0.4 * y + rng.normal(0, 0.01, n)
    if ties:  # rounded values and a run of equal predictions: ranks with ties
        y = np.round(y, 3)
        pred[: n // 5] = pred[0]
    return y, pred


def test_metrics_match_hand_computed_values_on_four_rows():
    y = [1.0, -2.0, 3.0, 0.0]
    pred = [2.0, -1.0, -1.0, 1.0]  # errors 1, 1, -4, 1; signs right, right, wrong, (y=0)
    metrics = regression_report(y, pred, n_bootstrap=0)["metrics"]
    assert metrics["mae"] == pytest.approx(7 / 4)
    assert metrics["rmse"] == pytest.approx(math.sqrt(19 / 4))
    assert metrics["r2"] == pytest.approx(1 - 19 / 13)  # SST around the mean 0.5 is 13
    assert metrics["sign_accuracy"] == pytest.approx(2 / 3)  # the row with y = 0 is left out
    # ranks y (3, 1, 4, 2), pred (4, 1.5, 1.5, 3): cov 0.5, sums of squares 5 and 4.5
    assert metrics["ic"] == pytest.approx(0.5 / math.sqrt(5 * 4.5))


@pytest.mark.parametrize("ties", [False, True])
def test_metrics_match_scipy_and_sklearn_on_random_data(ties):
    y, pred = _data(ties=ties)
    metrics = regression_report(y, pred, n_bootstrap=0)["metrics"]
    assert metrics["mae"] == pytest.approx(mean_absolute_error(y, pred))
    assert metrics["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, pred)))
    assert metrics["r2"] == pytest.approx(r2_score(y, pred))
    assert metrics["ic"] == pytest.approx(spearmanr(y, pred).statistic)
    moved = y != 0
    assert metrics["sign_accuracy"] == pytest.approx(
        np.mean(np.sign(pred[moved]) == np.sign(y[moved]))
    )


@pytest.mark.parametrize("ties", [False, True])
def test_every_bootstrap_resample_is_scored_as_scipy_and_sklearn_score_its_rows(ties):
    y, pred = _data(n=120, seed=3, ties=ties)
    idx = np.random.default_rng(1).integers(0, y.size, (6, y.size))
    values = _rows(_weights(idx), _prepare(y, pred))
    for row, drawn in enumerate(idx):
        ys, ps = y[drawn], pred[drawn]
        assert values["ic"][row] == pytest.approx(spearmanr(ys, ps).statistic, abs=1e-12)
        assert values["r2"][row] == pytest.approx(r2_score(ys, ps), abs=1e-12)
        assert values["mae"][row] == pytest.approx(mean_absolute_error(ys, ps))
        assert values["rmse"][row] == pytest.approx(math.sqrt(mean_squared_error(ys, ps)))
        moved = ys != 0
        assert values["sign_accuracy"][row] == pytest.approx(
            np.mean(np.sign(ps[moved]) == np.sign(ys[moved]))
        )


def test_a_perfect_predictor_scores_perfectly_and_a_monotone_one_ranks_perfectly():
    y, _ = _data()
    perfect = regression_report(y, y, n_bootstrap=50)["metrics"]
    assert perfect["ic"] == pytest.approx(1.0)
    assert perfect["sign_accuracy"] == 1.0 and perfect["r2"] == 1.0 and perfect["mae"] == 0.0
    monotone = regression_report(y, y**3, n_bootstrap=0)["metrics"]
    assert monotone["ic"] == pytest.approx(1.0) and monotone["r2"] < 1.0


def test_intervals_contain_the_estimate_and_one_seed_gives_one_answer():
    y, pred = _data()
    report = regression_report(y, pred, n_bootstrap=300, seed=7)
    for name in REGRESSION_METRICS:
        interval = report["intervals"][name]
        assert interval["low"] <= report["metrics"][name] <= interval["high"], name
        assert interval["level"] == 0.95 and interval["n_resamples"] == 300
    assert regression_report(y, pred, n_bootstrap=300, seed=7) == report
    assert regression_report(y, pred, n_bootstrap=300, seed=8) != report
    assert regression_report(y, pred, n_bootstrap=0)["intervals"] is None
    json.dumps(report, allow_nan=False)


def test_per_symbol_metrics_are_the_metrics_of_that_symbols_rows_alone():
    y, pred = _data(n=150)
    symbols = np.array(["BTC-USD", "ETH-USD", "SOL-USD"])[np.arange(150) % 3]
    report = regression_report(y, pred, symbols=symbols, n_bootstrap=0)
    assert sorted(report["per_symbol"]) == ["BTC-USD", "ETH-USD", "SOL-USD"]
    for symbol, row in report["per_symbol"].items():
        alone = regression_report(y[symbols == symbol], pred[symbols == symbol], n_bootstrap=0)
        assert row == {**alone["metrics"], "n": 50}


def test_ic_over_time_is_the_ic_of_each_periods_rows_in_time_order():
    y, pred = _data(n=240)
    hours = pd.date_range("2024-03-01", periods=240, freq="1h", tz="UTC")  # 10 days
    report = regression_report(y, pred, times=hours, n_bootstrap=0)
    assert report["ic_period"] == "day"
    periods = report["ic_over_time"]
    assert [p["period"] for p in periods] == [f"2024-03-{d:02d}" for d in range(1, 11)]
    assert all(p["n"] == 24 for p in periods)
    first = hours < pd.Timestamp("2024-03-02", tz="UTC")
    assert periods[0]["ic"] == pytest.approx(spearmanr(y[first], pred[first]).statistic)
    days = pd.date_range("2023-01-01", periods=240, freq="1D", tz="UTC")  # 8 months
    assert regression_report(y, pred, times=days, n_bootstrap=0)["ic_period"] == "month"
    minutes = pd.date_range("2024-03-01", periods=240, freq="1min", tz="UTC")  # 4 hours
    short = regression_report(y, pred, times=minutes, n_bootstrap=0)
    assert short["ic_period"] == "hour" and len(short["ic_over_time"]) == 4


def test_undefined_metrics_are_none_not_nan():
    y, pred = _data(n=40)
    flat_y = regression_report(np.full(40, 0.01), pred, n_bootstrap=30)
    assert flat_y["metrics"]["r2"] is None and flat_y["metrics"]["ic"] is None
    assert flat_y["intervals"]["r2"] is None and flat_y["intervals"]["ic"] is None
    assert flat_y["metrics"]["mae"] is not None
    flat_pred = regression_report(y, np.zeros(40), n_bootstrap=30)
    assert flat_pred["metrics"]["ic"] is None and flat_pred["metrics"]["r2"] is not None
    assert flat_pred["metrics"]["sign_accuracy"] == 0.0  # a zero prediction has no sign
    no_moves = regression_report(np.zeros(40), pred, n_bootstrap=30)
    assert no_moves["metrics"]["sign_accuracy"] is None
    one_row = regression_report([0.1], [0.2], n_bootstrap=10, times=["2024-01-01"])
    assert one_row["ic_over_time"] == [{"period": "2024-01-01 00:00", "ic": None, "n": 1}]
    for report in (flat_y, flat_pred, no_moves, one_row):
        json.dumps(report, allow_nan=False)


@pytest.mark.parametrize(
    ("y", "pred", "match"),
    [
        ([0.1, 0.2, np.nan, 0.3], [0.1, 0.2, 0.3, 0.4], r"^y holds NaN or inf at row 2"),
        ([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, np.inf], r"^pred holds NaN or inf at row 3"),
        ([0.1, 0.2, 0.3], [0.1, 0.2], "y has 3 rows but pred has 2"),
        (np.ones((3, 2)), np.ones((3, 2)), "y must be 1-D"),
        ([], [], "No rows"),
        (["a", "b"], [0.1, 0.2], "y must hold numbers"),
    ],
)
def test_bad_input_is_refused_naming_the_argument(y, pred, match):
    with pytest.raises(ConfigError, match=match):
        regression_report(y, pred, n_bootstrap=0)


def test_bad_symbols_and_times_are_refused():
    y, pred = _data(n=4)
    with pytest.raises(ConfigError, match="symbols must be 1-D with one entry per row"):
        regression_report(y, pred, symbols=["a", "b"], n_bootstrap=0)
    with pytest.raises(ConfigError, match="times must be 1-D with one entry per row of y"):
        regression_report(y, pred, times=["2024-01-01"], n_bootstrap=0)
    with pytest.raises(ConfigError, match="times has no timestamp at row 1"):
        regression_report(y, pred, times=["2024-01-01", None, "2024-01-02", "2024-01-03"])
    with pytest.raises(ConfigError, match="n_bootstrap"):
        regression_report(y, pred, n_bootstrap=-1)


def test_multitask_report_keeps_each_heads_report_and_flat_names_head_dot_metric():
    y, pred = _data(n=80)
    labels = (y > 0).astype(int)
    p_up = np.clip(0.5 + 20 * pred, 0.01, 0.99)
    direction = classification_report(
        labels, np.column_stack([1 - p_up, p_up]), classes=["down", "up"], n_bootstrap=0
    )
    volatility = regression_report(np.abs(y), np.abs(pred), n_bootstrap=0, target="volatility")
    report = multitask_report({"direction": direction, "volatility": volatility})
    assert report["task"] == "multitask"
    assert report["heads"]["volatility"] is volatility
    flat = flat_regression_metrics(report)
    assert flat["volatility.ic"] == volatility["metrics"]["ic"]
    assert flat["direction.accuracy"] == direction["metrics"]["accuracy"]
    assert flat["direction.minority_f1"] == direction["per_class"][0]["f1"]
    assert set(flat_regression_metrics(volatility)) == set(REGRESSION_METRICS)
    with pytest.raises(ConfigError, match=r"without '\.'"):
        multitask_report({"a.b": volatility})
    with pytest.raises(ConfigError, match="not a metrics report"):
        multitask_report({"volatility": {"mae": 0.1}})
    with pytest.raises(ConfigError, match="at least one head"):
        multitask_report({})


# --------------------------------------------------------------------------- the HTML report


def _forecast(n: int = 240):
    y, pred = _data(n=n)
    symbols = np.array(["BTC-USD", "ETH-USD", "SOL-USD"])[np.arange(n) % 3]
    times = pd.date_range("2024-03-01", periods=n, freq="1h", tz="UTC")
    report = regression_report(
        y, pred, symbols=symbols, times=times, n_bootstrap=100, target="ret_15m"
    )
    return y, pred, symbols, report


def test_a_regression_report_renders_headline_intervals_symbols_and_both_charts():
    from moola.evaluation.plots import regression_pngs
    from moola.evaluation.report import forecast_sections, render_report

    y, pred, symbols, report = _forecast()
    pngs = regression_pngs(y, pred, report, symbols)
    assert set(pngs) == {"predicted_vs_actual.png", "ic_over_time.png"}
    sections = forecast_sections(report, plots=pngs)
    titles = [s.title for s in sections]
    assert titles == [
        "Regression metrics (ret_15m), 95% bootstrap intervals",
        "Per symbol",
        "IC per day",
        "Plots",
    ]
    page = render_report("moola run r", sections)
    low, high = report["intervals"]["ic"]["low"], report["intervals"]["ic"]["high"]
    assert f"[{low:.4g}, {high:.4g}]" in page
    for symbol in ("BTC-USD", "ETH-USD", "SOL-USD"):
        assert f"<td>{symbol}</td>" in page
    assert page.count("data:image/png;base64,") == 2
    bare = regression_report(y, pred, n_bootstrap=0)
    assert [s.title for s in forecast_sections(bare)] == [
        "Regression metrics (value), no bootstrap intervals"
    ]


def test_a_multitask_report_renders_a_summary_and_each_heads_sections():
    from moola.evaluation.report import forecast_sections, render_report

    y, pred, _, volatility = _forecast()
    labels = (y > 0).astype(int)
    p_up = np.clip(0.5 + 20 * pred, 0.01, 0.99)
    direction = classification_report(
        labels, np.column_stack([1 - p_up, p_up]), classes=["down", "up"], n_bootstrap=50
    )
    report = multitask_report({"direction": direction, "volatility": volatility})
    sections = forecast_sections(report)
    titles = [s.title for s in sections]
    assert titles[0] == "Heads"
    assert "direction: Per class (minority first)" in titles
    assert "volatility: Per symbol" in titles
    page = render_report("moola run m", sections)
    assert "<td>direction</td><td>classification</td>" in page
    assert "<td>volatility</td><td>regression</td>" in page
    with pytest.raises(ConfigError, match="not task None"):
        forecast_sections(direction)
