"""MiniRocket on scale-free windows: skill on planted patterns, determinism, shapes, saving."""

from __future__ import annotations

import numpy as np
import pytest

from moola.core.errors import CheckpointError, ConfigError
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features.window import relative_windows
from moola.models.minirocket import MiniRocketClassifier
from moola.models.tabular import TabularClassifier

N_KERNELS = 1_000  # ~1k features keep the tests fast; the default is 10k


@pytest.fixture(scope="module")
def benchmark() -> tuple[np.ndarray, np.ndarray, int]:
    """relative_windows of a synthetic market's planted patterns, labels, 70% cut."""
    market = generate_market(SyntheticMarketConfig(seed=3, n_bars=60_000, n_patterns=200))
    ohlc = market.bars[["open", "high", "low", "close"]].to_numpy()
    X = np.stack([ohlc[s : s + 105] for s in market.patterns["start"]]).astype(np.float32)
    y = (market.patterns["label"] == "retracement").to_numpy().astype(np.int64)
    return relative_windows(X), y, int(0.7 * len(y))


@pytest.fixture(scope="module")
def fitted(benchmark) -> MiniRocketClassifier:
    windows, y, cut = benchmark
    return MiniRocketClassifier(N_KERNELS, random_state=0).fit(windows[:cut], y[:cut])


def test_beats_the_majority_baseline_on_a_chronological_holdout(benchmark, fitted):
    windows, y, cut = benchmark
    assert windows.shape[1:] == (105, 11)
    proba = fitted.predict_proba(windows[cut:])
    assert proba.shape == (len(y) - cut, 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    accuracy = (fitted.predict(windows[cut:]) == y[cut:]).mean()
    baseline = max(y[cut:].mean(), 1 - y[cut:].mean())
    assert accuracy >= baseline + 0.1, (accuracy, baseline)


def test_same_seed_gives_identical_probabilities(benchmark, fitted):
    windows, y, cut = benchmark
    again = MiniRocketClassifier(N_KERNELS, random_state=0).fit(windows[:cut], y[:cut])
    np.testing.assert_array_equal(
        again.predict_proba(windows[cut:]), fitted.predict_proba(windows[cut:])
    )
    other = MiniRocketClassifier(N_KERNELS, random_state=1).fit(windows[:cut], y[:cut])
    assert not np.array_equal(
        other.predict_proba(windows[cut:]), fitted.predict_proba(windows[cut:])
    )


def test_save_load_round_trip_predicts_identically(benchmark, fitted, tmp_path):
    windows, _, cut = benchmark
    path = tmp_path / "minirocket.pkl"
    fitted.save(path)
    loaded = MiniRocketClassifier.load(path)
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(
        loaded.predict_proba(windows[cut:]), fitted.predict_proba(windows[cut:])
    )


def test_loading_another_models_file_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "lr.pkl"
    TabularClassifier().fit(rng.normal(size=(20, 3)), np.arange(20) % 2).save(path)
    with pytest.raises(CheckpointError, match=r"lr\.pkl holds a 'logistic_regression' model"):
        MiniRocketClassifier.load(path)


def test_bad_shapes_raise_config_errors(fitted):
    rng = np.random.default_rng(0)
    y = np.arange(20) % 2
    model = MiniRocketClassifier(100)
    with pytest.raises(ConfigError, match=r"at least 9 steps.*T = 8"):
        model.fit(rng.normal(size=(20, 8, 3)), y)
    with pytest.raises(ConfigError, match=r"\(N, T, D\).*X\[:, :, None\]"):
        model.fit(rng.normal(size=(20, 30)), y)
    with pytest.raises(ConfigError, match="NaN"):
        model.fit(np.full((20, 30, 2), np.nan), y)
    with pytest.raises(ConfigError, match="1 distinct class"):
        model.fit(rng.normal(size=(20, 30, 2)), np.zeros(20, dtype=int))
    # A fitted model predicts windows of its training length and channels only.
    with pytest.raises(ConfigError, match=r"50 steps x 11 channels.*105 x 11"):
        fitted.predict_proba(rng.normal(size=(4, 50, 11)))
    with pytest.raises(ConfigError, match="105 steps x 4 channels"):
        fitted.predict_proba(rng.normal(size=(4, 105, 4)))


def test_short_univariate_windows_work():
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    X = rng.normal(size=(40, 9, 1)) + 2.0 * y[:, None, None] * np.linspace(0, 1, 9)[None, :, None]
    model = MiniRocketClassifier(84, random_state=0).fit(X, y)
    assert model.predict_proba(X).shape == (40, 2)
    assert (model.predict(X) == y).mean() > 0.8


def test_minirocket_runs_numba_on_its_own_threads_not_a_second_openmp_pool(fitted):
    """A second OpenMP runtime beside torch's made later torch training crawl (~40x)."""
    import os

    import numba

    if "NUMBA_THREADING_LAYER" in os.environ:
        pytest.skip("the user chose numba's threading layer")
    assert numba.threading_layer() == "workqueue"
