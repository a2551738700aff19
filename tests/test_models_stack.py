"""The stacking meta-learner: learns whom to trust from out-of-fold probabilities, checks them."""

from __future__ import annotations

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features.window import price_action_features
from moola.models.stack import StackingClassifier
from moola.models.tabular import TabularClassifier


def _two_class(p: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - p, p])


def informed_and_noise(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, 4) of an informative base model and a pure-noise one, labels."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    informed = 1.0 / (1.0 + np.exp(-(2.0 * (2 * y - 1) + rng.normal(0, 1.2, n))))
    noise = rng.random(n)
    return np.hstack([_two_class(informed), _two_class(noise)]), y


@pytest.mark.parametrize("meta", ["logistic_regression", "random_forest"])
def test_learns_to_trust_the_informative_base_model(meta):
    X, y = informed_and_noise()
    cut = 210
    stack = StackingClassifier(meta, base_names=["good", "noise"]).fit(X[:cut], y[:cut])
    accuracy = (stack.predict(X[cut:]) == y[cut:]).mean()
    baseline = max(y[cut:].mean(), 1 - y[cut:].mean())
    assert accuracy >= baseline + 0.1, (accuracy, baseline)
    # Swapping the noise model's numbers for other noise barely moves the prediction.
    rng = np.random.default_rng(9)
    reshuffled = X[cut:].copy()
    reshuffled[:, 2:] = _two_class(rng.random(len(reshuffled)))
    agreement = (stack.predict(reshuffled) == stack.predict(X[cut:])).mean()
    assert agreement > 0.85, agreement
    assert stack.feature_names_ == ["good:p0", "good:p1", "noise:p0", "noise:p1"]


def test_stack_over_out_of_fold_base_models_on_planted_patterns():
    """An honest stack: base probabilities from forward (train-before-predict) folds only."""
    market = generate_market(SyntheticMarketConfig(seed=4, n_bars=60_000, n_patterns=200))
    ohlc = market.bars[["open", "high", "low", "close"]].to_numpy()
    windows = np.stack([ohlc[s : s + 105] for s in market.patterns["start"]])
    features = price_action_features(windows).to_numpy()
    y = (market.patterns["label"] == "retracement").to_numpy().astype(np.int64)
    blocks = np.array_split(np.arange(len(y)), 5)
    oof, rows = [], []
    for k in range(1, 5):  # predict block k with models trained on blocks before it
        train = np.concatenate(blocks[:k])
        bases = [TabularClassifier(kind) for kind in ("logistic_regression", "random_forest")]
        probs = [m.fit(features[train], y[train]).predict_proba(features[blocks[k]]) for m in bases]
        oof.append(np.hstack(probs))
        rows.append(blocks[k])
    X, target = np.vstack(oof), y[np.concatenate(rows)]
    cut = int(0.6 * len(target))
    stack = StackingClassifier(base_names=["lr", "rf"]).fit(X[:cut], target[:cut])
    accuracy = (stack.predict(X[cut:]) == target[cut:]).mean()
    baseline = max(target[cut:].mean(), 1 - target[cut:].mean())
    assert accuracy >= baseline + 0.1, (accuracy, baseline)


def test_save_load_round_trip_and_determinism(tmp_path):
    X, y = informed_and_noise()
    stack = StackingClassifier("random_forest", base_names=["a", "b"], random_state=3).fit(X, y)
    again = StackingClassifier("random_forest", base_names=["a", "b"], random_state=3).fit(X, y)
    np.testing.assert_array_equal(stack.predict_proba(X), again.predict_proba(X))
    path = tmp_path / "stack.pkl"
    stack.save(path)
    loaded = StackingClassifier.load(path)
    assert loaded.get_params() == stack.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X), stack.predict_proba(X))


def test_number_of_classes_comes_from_the_base_models():
    rng = np.random.default_rng(0)
    raw = rng.random((60, 2, 3))
    X = (raw / raw.sum(axis=2, keepdims=True)).reshape(60, 6)  # two 3-class base models
    y = X[:, :3].argmax(axis=1) % 2  # class 2 never occurs in training
    proba = StackingClassifier(base_names=["a", "b"]).fit(X, y).predict_proba(X)
    assert proba.shape == (60, 3) and (proba[:, 2] == 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_inputs_that_are_not_base_model_probabilities_are_refused():
    X, y = informed_and_noise(60)
    named = StackingClassifier(base_names=["good", "noise"])
    with pytest.raises(ConfigError, match=r"probabilities in \[0, 1\].*not scores"):
        named.fit(X * 3.0, y)
    with pytest.raises(ConfigError, match="5 columns, which is not 2 base models"):
        named.fit(np.hstack([X, X[:, :1]]), y)
    broken = X.copy()
    broken[4, 2] = 0.0  # the noise model's row 4 no longer sums to 1
    with pytest.raises(ConfigError, match=r"'noise' probabilities do not sum to 1 \(row 4"):
        named.fit(broken, y)
    with pytest.raises(ConfigError, match=r"\(N, M\*K\)"):
        named.fit(X[:, :, None], y)
    with pytest.raises(ConfigError, match="n_classes=3 but X holds 2"):
        StackingClassifier(base_names=["good", "noise"], n_classes=3).fit(X, y)
    with pytest.raises(ConfigError, match="Did you mean 'random_forest'"):
        StackingClassifier("random-forest").fit(X, y)
    fitted = StackingClassifier().fit(X, y)
    with pytest.raises(ConfigError, match="2 columns but the meta-learner was fitted on 4"):
        fitted.predict_proba(X[:, :2])


def test_identity():
    assert StackingClassifier.name == "stack"
    assert StackingClassifier.input_kind == "probabilities"
