"""A symbol id channel that the sequence models embed (issue 16, "many symbols").

With ``n_symbols=S > 0`` a window ``(T, F + 1)`` carries its symbol's id (``0..S-1``) in
the last channel; the module embeds it and the estimator leaves it unscaled. With
``n_symbols=0`` (the default) every model is the one built before the option existed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from moola.core.errors import ConfigError
from moola.models import validate_params
from moola.models.nn import build_module, config_of
from moola.training.neural import NeuralEstimator

SYMBOL_MODELS = ["bilstm", "transformer", "cnn_lstm_attention", "simple_lstm"]

#: Small shapes per architecture, dropout off: F features per step.
F = 3
SMALL = {
    "bilstm": {"input_dim": F, "hidden": 8, "fc": [8], "dropout": 0.0},
    "transformer": {
        "input_dim": F,
        "d_model": 16,
        "n_layers": 1,
        "heads": 2,
        "ffn": 16,
        "fc": [8],
        "dropout": 0.0,
    },
    "cnn_lstm_attention": {
        "input_dim": F,
        "conv_channels": [8],
        "kernel_sizes": [3],
        "lstm_hidden": 8,
        "attention_dim": 8,
        "fc": [8],
        "dropout": 0.0,
    },
    "simple_lstm": {"input_dim": F, "hidden": 8, "heads": 2, "fc": [8], "dropout": 0.0},
}


def _paired(n_pairs: int = 8, t: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``(2 * n_pairs, t, F + 1)``: each pair shares its features exactly; the
    first of a pair is symbol 0 with target 0, the second symbol 1 with target 1. Only
    the id tells them apart."""
    features = np.random.default_rng(seed).normal(size=(n_pairs, t, F))
    X = np.concatenate([np.repeat(features, 2, axis=0), np.zeros((2 * n_pairs, t, 1))], axis=2)
    X[1::2, :, -1] = 1.0
    y = np.tile([0, 1], n_pairs)
    return X, y


# -- the modules --------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", SYMBOL_MODELS)
def test_without_symbols_the_module_is_todays(architecture):
    """n_symbols=0 (given or not) builds, from one seed, the same weights under the same
    names, and a config without the new keys (a model file of before) rebuilds it."""
    states = []
    for extra in ({}, {"n_symbols": 0, "symbol_dim": 8}):
        torch.manual_seed(3)
        states.append(build_module(architecture, **SMALL[architecture], **extra).state_dict())
    plain, explicit = states
    assert list(plain) == list(explicit)
    assert all(torch.equal(plain[k], explicit[k]) for k in plain)
    assert not any(key.startswith("symbols.") for key in plain)
    torch.manual_seed(3)
    config = config_of(build_module(architecture, **SMALL[architecture]))
    old_style = {k: v for k, v in config.items() if k not in ("n_symbols", "symbol_dim")}
    build_module(**old_style).load_state_dict(plain, strict=True)


@pytest.mark.parametrize("architecture", SYMBOL_MODELS)
def test_the_embedding_separates_symbols_that_features_cannot(architecture):
    """Identical features, opposite targets: with the id embedded the module learns both;
    without it, each pair gets one output, so half the windows are wrong whatever it learns."""
    X, y = _paired()
    x, target = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    torch.manual_seed(0)
    module = build_module(architecture, **SMALL[architecture], n_symbols=2, symbol_dim=4)
    assert module.symbols.embedding.weight.shape == (2, 4)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(module(x), target).backward()
        optimizer.step()
    blind = build_module(architecture, **SMALL[architecture]).eval()
    with torch.no_grad():
        accuracy = (module.eval()(x).argmax(dim=1) == target).float().mean().item()
        without = blind(x[..., :-1])
    assert accuracy == 1.0
    assert torch.equal(without[0::2], without[1::2])  # a pair is one input without its id


@pytest.mark.parametrize("architecture", SYMBOL_MODELS)
@pytest.mark.parametrize("bad", [2.0, -1.0, 0.5, float("nan")])
def test_a_module_refuses_an_id_outside_its_symbols(architecture, bad):
    module = build_module(architecture, **SMALL[architecture], n_symbols=2)
    x = torch.zeros(2, 6, F + 1)
    x[1, :, -1] = bad
    with pytest.raises(ConfigError, match=r"symbol id .*n_symbols=2: ids are integers 0\.\.1"):
        module(x)


@pytest.mark.parametrize("architecture", SYMBOL_MODELS)
def test_a_module_with_symbols_wants_the_id_channel(architecture):
    module = build_module(architecture, **SMALL[architecture], n_symbols=2)
    with pytest.raises(ConfigError, match=r"3 features and, last, the symbol id channel"):
        module(torch.zeros(2, 6, F))


def test_simple_lstm_stays_causal_with_symbols():
    torch.manual_seed(0)
    module = build_module("simple_lstm", **SMALL["simple_lstm"], n_symbols=3).eval()
    x = torch.randn(2, 12, F + 1)
    x[..., -1] = torch.tensor([[2.0], [1.0]])
    changed = x.clone()
    changed[:, 7:, :-1] += 5.0
    with torch.no_grad():
        before, after = module.forward_sequence(x), module.forward_sequence(changed)
    assert module.is_causal
    torch.testing.assert_close(before[:, :7], after[:, :7], rtol=0, atol=1e-6)


def test_a_pretrained_encoder_reads_the_features_only():
    """simple_lstm's pretrained encoder keeps its width (the artifact's F channels); the id
    joins the projected steps before the LSTM."""
    module = build_module(
        "simple_lstm", **SMALL["simple_lstm"], encoder_projection=True, n_symbols=2, symbol_dim=4
    )
    assert module.encoder.lstm.input_size == F
    assert module.lstm.input_size == 8 + 4
    assert module(torch.zeros(1, 5, F + 1)).shape == (1, 2)


def test_config_with_symbols_round_trips_through_json():
    module = build_module("transformer", **SMALL["transformer"], n_symbols=5, symbol_dim=3)
    rebuilt = build_module(**json.loads(json.dumps(config_of(module))))
    assert rebuilt.config == module.config
    rebuilt.load_state_dict(module.state_dict(), strict=True)


# -- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", SYMBOL_MODELS)
def test_params_declare_the_symbol_options(architecture):
    resolved = validate_params(architecture, {"n_symbols": 3, "symbol_dim": 4})
    assert (resolved["n_symbols"], resolved["symbol_dim"]) == (3, 4)
    assert validate_params(architecture, {})["n_symbols"] == 0
    with pytest.raises(ConfigError, match=r"'n_symbols' .*(got n_symbols=-1)"):
        validate_params(architecture, {"n_symbols": -1})
    with pytest.raises(ConfigError, match=r"'symbol_dim' .*(got symbol_dim=0)"):
        validate_params(architecture, {"symbol_dim": 0})


# -- the estimator ------------------------------------------------------------------------

FIT = {"epochs": 40, "batch_size": 16, "lr": 1e-2, "seed": 0}


@pytest.fixture(scope="module")
def symbol_fit() -> tuple[NeuralEstimator, np.ndarray, np.ndarray]:
    X, y = _paired(n_pairs=16)
    X[..., :-1] = X[..., :-1] * 40.0 + 100.0  # features far from unit scale: they get scaled
    params = {k: v for k, v in SMALL["bilstm"].items() if k != "input_dim"}
    est = NeuralEstimator("bilstm", **params, **FIT, n_symbols=2, symbol_dim=4)
    return est.fit(X, y), X, y


def test_the_estimator_separates_symbols_that_features_cannot(symbol_fit):
    est, X, y = symbol_fit
    assert (est.predict(X) == y).all()
    params = {k: v for k, v in SMALL["bilstm"].items() if k != "input_dim"}
    blind = NeuralEstimator("bilstm", **params, **FIT).fit(X[..., :-1], y)
    proba = blind.predict_proba(X[..., :-1])
    np.testing.assert_array_equal(proba[0::2], proba[1::2])
    assert (blind.predict(X[..., :-1]) == y).mean() == 0.5


def test_the_estimator_infers_features_and_leaves_the_id_unscaled(symbol_fit):
    est, X, _ = symbol_fit
    assert est.module_config_["input_dim"] == F and est.n_channels_ == F + 1
    assert (est.mean_[-1], est.std_[-1]) == (0.0, 1.0)
    np.testing.assert_allclose(est.mean_[:-1], X[..., :-1].mean(axis=(0, 1)))
    assert (est.std_[:-1] > 10).all()  # the features are scaled, the id is not


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (2.0, r"window 1 holds symbol id 2 .*n_symbols=2: ids are integers 0\.\.1"),
        (-1.0, r"window 1 holds symbol id -1 .*n_symbols=2"),
        (0.5, r"window 1 holds symbol id 0\.5 .*n_symbols=2"),
    ],
)
def test_the_estimator_refuses_a_bad_id_at_fit_and_predict(symbol_fit, value, words):
    est, X, y = symbol_fit
    bad = X.copy()
    bad[1, :, -1] = value
    fresh = NeuralEstimator("bilstm", hidden=8, epochs=1, n_symbols=2)
    with pytest.raises(ConfigError, match=words):
        fresh.fit(bad, y)
    with pytest.raises(ConfigError, match=words.replace("window 1", "X_val window 1")):
        fresh.fit(X, y, X_val=bad, y_val=y)
    with pytest.raises(ConfigError, match=words):
        est.predict(bad)


def test_the_estimator_refuses_a_window_that_changes_symbol(symbol_fit):
    est, X, _ = symbol_fit
    mixed = X.copy()
    mixed[3, 5:, -1] = 0.0  # window 3 is symbol 1 up to step 5
    with pytest.raises(ConfigError, match=r"window 3 holds symbol ids \[0\.0, 1\.0\]"):
        est.predict(mixed)


def test_the_estimator_needs_a_feature_beside_the_id():
    X = np.zeros((4, 5, 1))
    with pytest.raises(ConfigError, match="leaving no features"):
        NeuralEstimator("bilstm", n_symbols=2, epochs=1).fit(X, np.array([0, 1, 0, 1]))


def test_a_given_input_dim_counts_the_features_without_the_id():
    X, y = _paired(n_pairs=2)
    with pytest.raises(ConfigError, match=r"input_dim=4 .*\+ the symbol id channel"):
        NeuralEstimator("bilstm", input_dim=F + 1, n_symbols=2, epochs=1).fit(X, y)


def test_save_and_load_keep_the_symbols(symbol_fit, tmp_path):
    est, X, _ = symbol_fit
    path = tmp_path / "model.pt"
    est.save(path)
    loaded = NeuralEstimator.load(path)
    assert loaded.module_config_["n_symbols"] == 2 and loaded.get_params()["n_symbols"] == 2
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    bad = X.copy()
    bad[0, :, -1] = 7.0
    with pytest.raises(ConfigError, match=r"symbol id 7 .*n_symbols=2"):
        loaded.predict(bad)
