"""``fm_forecast``: a foundation model's zero-shot forecasts as a member, nothing trained:
P(up) read off the forecast deciles, the median forecast return as a regression, run
under the same purged OOF protocol and stacked like any base run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.models import create
from moola.models.fm_forecast import DECILES, prob_up
from moola.models.foundation import directory_sha256, load_backbone
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.testing.foundation import tiny_chronos_bolt, tiny_timesfm
from moola.tracking.runs import RunStore
from tests.test_cli import run


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm-forecast-weights")
    return {"chronos": tiny_chronos_bolt(root / "chronos"), "timesfm": tiny_timesfm(root / "tfm")}


def _windows(n=12, t=30, seed=0):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-2, (n, t)), axis=1))
    open_ = np.concatenate([np.full((n, 1), 100.0), close[:, :-1]], axis=1)
    return np.stack([open_, np.maximum(open_, close), np.minimum(open_, close), close], axis=2)


def test_prob_up_is_one_minus_the_interpolated_cdf_at_zero():
    deciles = np.linspace(-0.04, 0.04, 9)  # 0 is the median
    rows = np.stack([deciles, deciles + 1.0, deciles - 1.0, deciles + 0.015])
    up = prob_up(rows)
    # median at 0; all above 0: held at the top decile; all below: the bottom one;
    # shifted by 0.015 (deciles -0.025, -0.015, -0.005, +0.005, ...): 0 lies halfway from
    # the 0.3 to the 0.4 decile, F(0) = 0.35
    np.testing.assert_allclose(up, [0.5, 0.9, 0.1, 1.0 - 0.35])
    assert DECILES[4] == 0.5


@pytest.mark.parametrize("kind", ["chronos", "timesfm"])
def test_probabilities_and_values_are_read_off_the_backbones_forecast(weights, kind):
    X = _windows()
    y = np.arange(len(X)) % 2
    horizon = 3
    model = create("fm_forecast", backbone=kind, path=str(weights[kind]), horizon=horizon)
    assert model.fit(X, y) is model
    deciles = load_backbone(kind, weights[kind]).forecast(X, horizon, DECILES)
    returns = deciles[:, horizon - 1, :] / X[:, -1, -1][:, None] - 1.0
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba[:, 1], prob_up(returns))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert model.backbone_sha256_ == directory_sha256(weights[kind])
    # the labels are not learned from: other labels, the same probabilities
    np.testing.assert_array_equal(
        create("fm_forecast", backbone=kind, path=str(weights[kind]), horizon=horizon)
        .fit(X, 1 - y)
        .predict_proba(X),
        proba,
    )

    regressor = create(
        "fm_forecast", backbone=kind, path=str(weights[kind]), horizon=horizon, task="regression"
    ).fit(X, np.zeros(len(X)))
    np.testing.assert_allclose(regressor.predict(X), returns[:, DECILES.index(0.5)])
    multi = regressor.fit(X, np.zeros((len(X), 2))).predict(X)  # the next 1 and 2 bars
    steps = deciles / X[:, -1, -1][:, None, None] - 1.0
    np.testing.assert_allclose(multi, steps[:, :2, 4], rtol=1e-6)
    with pytest.raises(ConfigError, match="no class probabilities"):
        regressor.predict_proba(X)


def test_bad_settings_and_windows_are_refused_naming_the_fix(weights):
    X = _windows()
    path = str(weights["chronos"])
    with pytest.raises(ConfigError, match="n_classes must be 2"):
        create("fm_forecast", path=path, n_classes=3).fit(X, np.arange(len(X)) % 3)
    with pytest.raises(ConfigError, match="backbone"):
        create("fm_forecast", backbone="kronos", path=path)  # Kronos embeds only
    with pytest.raises(ConfigError, match="fm_forecast needs path"):
        create("fm_forecast").fit(X, np.arange(len(X)) % 2)
    relative = X.copy()
    relative[:, :, 3] -= 100.0  # not a price: a return-like last channel
    model = create("fm_forecast", path=path).fit(X, np.arange(len(X)) % 2)
    with pytest.raises(ConfigError, match="positive price"):
        model.predict_proba(relative)
    with pytest.raises(ConfigError, match="fitted on windows of 30 steps"):
        model.predict_proba(X[:, :20])


def test_it_runs_out_of_fold_and_stacks_with_a_trained_model(capsys, tmp_path, weights):
    root = tmp_path / "root"
    registry = Registry(root)
    raw, market = synthesize_raw(registry, "mkt", n_bars=8_000, n_patterns=30, seed=4)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    common = ["--data-root", str(root), "train", "--dataset", "pat", "--split", "kf"]
    params = json.dumps({"backbone": "chronos", "path": str(weights["chronos"]), "horizon": 5})
    code, _, err = run(capsys, *common, "--model", "fm_forecast", "--params", params)
    assert code == 0, err
    code, _, err = run(capsys, *common, "--model", "logistic_regression")
    assert code == 0, err
    store = RunStore(root)
    forecast_run, trained_run = (line["run_id"] for line in store.results()[-2:])
    resolved = store.manifest(store.run_dir(forecast_run))["resolved_params"]
    assert resolved["backbone_sha256"] == directory_sha256(weights["chronos"])
    code, _, err = run(
        capsys,
        *common,
        "--model",
        "stack",
        "--base-run",
        forecast_run,
        "--base-run",
        trained_run,
    )
    assert code == 0, err
    assert store.results()[-1]["model"] == "stack"
