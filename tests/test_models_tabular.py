"""Tabular classifiers on window features: skill on planted patterns, labels, shapes, saving.

Also covers the shared save/load format (``moola.models._persist``): round trips, and the
refusals a user meets with a wrong, corrupt, foreign or newer file.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import CheckpointError, ConfigError
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features.window import price_action_features
from moola.models import create
from moola.models._persist import FORMAT_VERSION, HEADER_MEMBER
from moola.models.stack import StackingClassifier
from moola.models.tabular import TABULAR_KINDS, TabularClassifier


def planted_windows(seed: int = 3, n_patterns: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(N, 105, 4) OHLC windows of a synthetic market's planted patterns, y = retracement."""
    config = SyntheticMarketConfig(seed=seed, n_bars=60_000, n_patterns=n_patterns)
    market = generate_market(config)
    ohlc = market.bars[["open", "high", "low", "close"]].to_numpy()
    X = np.stack([ohlc[s : s + 105] for s in market.patterns["start"]]).astype(np.float32)
    y = (market.patterns["label"] == "retracement").to_numpy().astype(np.int64)
    return X, y


@pytest.fixture(scope="module")
def benchmark() -> tuple[pd.DataFrame, np.ndarray, int]:
    """Price-action features, labels and the chronological 70% cut."""
    X, y = planted_windows()
    return price_action_features(X), y, int(0.7 * len(y))


@pytest.mark.parametrize("kind", TABULAR_KINDS)
def test_each_kind_beats_the_majority_baseline_on_a_chronological_holdout(benchmark, kind):
    features, y, cut = benchmark
    model = TabularClassifier(kind).fit(features[:cut], y[:cut])
    proba = model.predict_proba(features[cut:])
    assert proba.shape == (len(y) - cut, 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    accuracy = (model.predict(features[cut:]) == y[cut:]).mean()
    baseline = max(y[cut:].mean(), 1 - y[cut:].mean())
    assert accuracy >= baseline + 0.1, (kind, accuracy, baseline)
    # The minority class (retracement) is found, not ignored.
    assert model.predict(features[cut:])[y[cut:] == 1].mean() > 0.7


@pytest.mark.parametrize("kind", ["random_forest", "gradient_boosting"])
def test_same_seed_gives_identical_probabilities(benchmark, kind):
    features, y, cut = benchmark
    # Subsampling makes the boosting seed matter too.
    params = {"subsample": 0.7, "subsample_freq": 1} if kind == "gradient_boosting" else {}
    runs = [
        TabularClassifier(kind, random_state=seed, **params)
        .fit(features[:cut], y[:cut])
        .predict_proba(features[cut:])
        for seed in (5, 5, 6)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("kind", TABULAR_KINDS)
def test_save_load_round_trip_predicts_identically(benchmark, kind, tmp_path):
    features, y, cut = benchmark
    model = TabularClassifier(kind).fit(features[:cut], y[:cut])
    path = tmp_path / f"{kind}.pkl"
    model.save(path)
    loaded = TabularClassifier.load(path)
    assert loaded.name == kind and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(
        loaded.predict_proba(features[cut:]), model.predict_proba(features[cut:])
    )


def test_dataframe_columns_are_matched_by_name(benchmark):
    features, y, cut = benchmark
    model = TabularClassifier("logistic_regression").fit(features[:cut], y[:cut])
    assert model.feature_names_ == list(features.columns)
    test = features[cut:]
    shuffled = test[list(reversed(test.columns))]
    np.testing.assert_allclose(model.predict_proba(shuffled), model.predict_proba(test))
    np.testing.assert_allclose(model.predict_proba(test.to_numpy()), model.predict_proba(test))
    with pytest.raises(ConfigError, match=r"missing \['pa_trend_slope'\]"):
        model.predict_proba(test.drop(columns="pa_trend_slope"))


def _toy(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, (X[:, 0] > 0).astype(np.int64)


def test_bad_inputs_raise_config_errors_that_say_what_is_wrong():
    X, y = _toy()
    model = TabularClassifier("logistic_regression")
    with pytest.raises(ConfigError, match="2-D"):
        model.fit(X[:, :, None], y)
    with pytest.raises(ConfigError, match="NaN"):
        model.fit(np.where(np.arange(60)[:, None] == 7, np.nan, X), y)
    with pytest.raises(ConfigError, match="1 distinct class"):
        model.fit(X, np.zeros(60, dtype=int))
    with pytest.raises(ConfigError, match="integer class indices"):
        model.fit(X, y + 0.5)
    with pytest.raises(ConfigError, match="one label per sample"):
        model.fit(X, y[:-1])
    with pytest.raises(ConfigError, match="not fitted"):
        model.predict_proba(X)
    with pytest.raises(ConfigError, match="not fitted"):
        model.save("unused.pkl")
    with pytest.raises(ConfigError, match="has 2 features but the model was fitted on 3"):
        model.fit(X, y).predict_proba(X[:, :2])
    with pytest.raises(ConfigError, match="Did you mean 'random_forest'"):
        TabularClassifier("random_forests").fit(X, y)
    with pytest.raises(ConfigError, match="Did you mean 'n_estimators'"):
        TabularClassifier("random_forest", n_estimator=10).fit(X, y)


def test_user_parameters_reach_the_underlying_model():
    X, y = _toy()
    model = TabularClassifier("random_forest", n_estimators=7).fit(X, y)
    assert len(model.model_.estimators_) == 7


def test_classes_absent_from_training_get_zero_probability_in_their_column():
    X, y = _toy()
    labels = np.where(y == 1, 2, 0)  # classes 0 and 2 only
    proba = TabularClassifier("logistic_regression").fit(X, labels).predict_proba(X)
    assert proba.shape == (60, 3)
    assert (proba[:, 1] == 0).all()
    assert (proba.argmax(axis=1) == labels).mean() > 0.9
    # n_classes declares classes that even the highest label misses.
    wide = TabularClassifier("gradient_boosting", n_classes=4).fit(X, y).predict_proba(X)
    assert wide.shape == (60, 4) and (wide[:, 2:] == 0).all()
    np.testing.assert_allclose(wide.sum(axis=1), 1.0)


# --- the saved-model file format, shared by every scikit-learn-based estimator ---------


@pytest.fixture
def saved(tmp_path):
    X, y = _toy()
    model = TabularClassifier("logistic_regression").fit(X, y)
    path = tmp_path / "model.pkl"
    model.save(path)
    return path, model, X


def _header(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(HEADER_MEMBER))


def _rewrite(path, **changes) -> None:
    """Rewrite the model file's JSON header with ``changes``, its payload unchanged."""
    header = {**_header(path), **changes}
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            if name != HEADER_MEMBER:
                target.writestr(name, source.read(name))
        target.writestr(HEADER_MEMBER, json.dumps(header))
    path.write_bytes(buffer.getvalue())


def test_saved_file_records_what_it_is_and_what_made_it(saved):
    path, _, _ = saved
    payload = _header(path)
    assert payload["format"] == "moola-model" and payload["format_version"] == 2
    assert payload["model"] == "logistic_regression"
    assert payload["class"] == "moola.models.tabular.TabularClassifier"
    assert payload["n_features_in"] == 3 and payload["classes"] == [0, 1]
    assert set(payload["library_versions"]) == {"sklearn", "lightgbm", "aeon", "numpy"}
    assert "moola_version" in payload


def test_truncated_file_is_refused_naming_it(saved):
    path, _, _ = saved
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"model\.pkl.*corrupt, truncated"):
        TabularClassifier.load(path)


@pytest.mark.parametrize("content", [b"timestamp,open\n1,2\n", b"PK\x03\x04 not a zip"])
def test_a_file_that_is_not_a_moola_model_is_refused(tmp_path, content):
    path = tmp_path / "other.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"other\.pkl (is not a moola model|cannot be read)"):
        TabularClassifier.load(path)


def test_a_pickle_is_refused_unread_with_the_migrate_command(tmp_path):
    path = tmp_path / "old.bin"
    path.write_bytes(pickle.dumps({"format": "moola-model", "format_version": 1}))
    with pytest.raises(CheckpointError, match=r"old\.bin is in moola's old pickle.*runs migrate"):
        TabularClassifier.load(path)


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        TabularClassifier.load(tmp_path / "nope.pkl")


def test_file_saved_by_another_model_class_is_refused(tmp_path):
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8]] * 10)
    path = tmp_path / "stack.pkl"
    StackingClassifier().fit(probabilities, np.array([0, 1] * 10)).save(path)
    with pytest.raises(CheckpointError, match=r"stack\.pkl holds a 'stack' model.*StackingCl"):
        TabularClassifier.load(path)


def test_newer_format_version_is_refused(saved):
    path, _, _ = saved
    _rewrite(path, format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match=r"newer.*upgrade moola"):
        TabularClassifier.load(path)


def test_other_library_versions_load_with_a_warning_naming_them(saved):
    path, model, X = saved
    payload = _header(path)
    _rewrite(path, library_versions={**payload["library_versions"], "sklearn": "0.1.0"})
    with pytest.warns(UserWarning, match=r"scikit-learn 0\.1\.0 \(now "):
        loaded = TabularClassifier.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


# -- regression (issue 16) ------------------------------------------------------------------


def _linear_features(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, 50.0 + 8.0 * X[:, 0] - 5.0 * X[:, 1]


def test_lightgbm_regression_learns_values_in_target_units(tmp_path):
    X, y = _linear_features()
    model = create("lightgbm", task="regression").fit(X[:200], y[:200])
    assert model.name == "gradient_boosting" and model.task == "regression"
    pred = model.predict(X[200:])
    assert pred.shape == (100,) and pred.dtype == np.float64
    r2 = 1.0 - ((pred - y[200:]) ** 2).sum() / ((y[200:] - y[200:].mean()) ** 2).sum()
    assert r2 > 0.5
    with pytest.raises(ConfigError, match="regressor"):
        model.predict_proba(X)
    path = tmp_path / "reg.bin"
    model.save(path)
    loaded = TabularClassifier.load(path)
    assert loaded.task == "regression"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_lightgbm_regression_fits_one_regressor_per_target_column():
    X, y = _linear_features(n=120)
    Y = np.stack([y, -2.0 * X[:, 2]], axis=1)
    model = TabularClassifier("gradient_boosting", task="regression", n_estimators=20).fit(X, Y)
    pred = model.predict(X)
    assert pred.shape == (120, 2) and pred.dtype == np.float64
    single = TabularClassifier("gradient_boosting", task="regression", n_estimators=20)
    np.testing.assert_array_equal(single.fit(X, Y[:, 1]).predict(X), pred[:, 1])


def test_regression_is_refused_for_the_classifier_only_kinds_naming_the_alternatives():
    X, y = _linear_features(n=30)
    for name in ("logreg", "logistic_regression", "random_forest"):
        with pytest.raises(ConfigError, match="does not support task='regression'") as info:
            create(name, task="regression")
        assert "gradient_boosting" in str(info.value) and "bilstm" in str(info.value)
    with pytest.raises(ConfigError, match=r"use gradient_boosting .*bilstm or transformer"):
        TabularClassifier("logistic_regression", task="regression").fit(X, y)


def test_bad_regression_targets_and_widths_are_refused():
    X, y = _linear_features(n=30)
    model = TabularClassifier("gradient_boosting", task="regression", n_estimators=5)
    bad = y.copy()
    bad[2] = np.nan
    with pytest.raises(ConfigError, match="NaN or infinite"):
        model.fit(X, bad)
    with pytest.raises(ConfigError, match="n_classes=3 is for classification"):
        create("gradient_boosting", task="regression", n_classes=3)
    model.fit(X, y)
    with pytest.raises(ConfigError, match="X has 3 features but the model was fitted on 4"):
        model.predict(X[:, :3])
