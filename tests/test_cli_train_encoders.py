"""`moola train` for the dual-input model and with pretrained encoders, as a user types it.

enhanced_simple_lstm (window BiLSTM + MLP over the 20 price-action features) is the
pattern classifier's main line: it must train out of fold and held out, on relative or OHLC
windows, from scratch or fine-tuning a masked-AE encoder. A pretrained encoder given to
simple_lstm switches its encoder projection on; contradictions are refused in one line.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from moola.data.registry import Registry
from moola.features.window import price_action_features, relative_windows
from moola.models import create
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.inputs import model_inputs
from moola.pipeline.pretrain import MaskedAEPretrainConfig, pretrain_masked_ae
from moola.tracking.runs import RunStore
from tests.test_cli import run

# Tiny shapes: the tests check the path, not what it learns.
TINY_ENHANCED = {"epochs": 1, "feature_hidden": [8], "fc": [8], "batch_size": 16}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """30 planted patterns with a 3-fold and a forward-chaining split, and unlabeled windows."""
    root = tmp_path_factory.mktemp("cli-encoders")
    registry = Registry(root)
    raw, market = synthesize_raw(registry, "mkt", n_bars=12_000, n_patterns=30, seed=4)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc", purge=105, embargo=105)
    registry.write_unlabeled("unl", raw, length=105, stride=5)
    return root


@pytest.fixture(scope="module")
def encoder(root):
    """A masked-AE encoder (11 relative channels, 1 x 8) pretrained for one short epoch."""
    config = MaskedAEPretrainConfig(
        epochs=1, batch_size=32, hidden=8, num_layers=1, decoder_hidden=8, max_windows=64
    )
    return pretrain_masked_ae(Registry(root), "unl", config)


def _train(capsys, root, *args: str) -> tuple[int, str, dict | None]:
    """``moola train ARGS`` on the fixture data; exit code, stderr and the new manifest."""
    store = RunStore(root)
    before = len(store.results())
    code, _, err = run(capsys, "--data-root", str(root), "train", "--bootstrap", "20", *args)
    results = store.results()
    if len(results) == before:
        return code, err, None
    manifest = json.loads((store.run_dir(results[-1]["run_id"]) / "manifest.json").read_text())
    return code, err, {**manifest, "run_id": results[-1]["run_id"]}


@pytest.mark.parametrize(
    ("split", "inputs", "mode"),
    [("kf", "auto", "oof"), ("fc", "ohlc", "holdout")],
)
def test_enhanced_simple_lstm_trains_from_the_command_line(capsys, root, split, inputs, mode):
    code, err, manifest = _train(
        capsys,
        root,
        *("--model", "enhanced_simple_lstm", "--dataset", "pat", "--split", split),
        *("--inputs", inputs, "--params", json.dumps({**TINY_ENHANCED, "encoder_hidden": 8})),
    )
    assert code == 0, err
    view = "relative" if inputs == "auto" else inputs
    assert manifest["mode"] == mode
    assert manifest["inputs"] == f"{view}+price_action"
    assert manifest["resolved_params"]["n_features"] == 20
    assert manifest["metrics"]["metrics"]["accuracy"] is not None
    if mode == "holdout":  # the test part is scored through the same packed inputs
        code, out, err = run(
            capsys, "--data-root", str(root), "evaluate", manifest["run_id"], "--test"
        )
        assert code == 0, err
        assert "accuracy" in out


@pytest.mark.parametrize("split", ["kf", "fc"])
def test_enhanced_simple_lstm_fine_tunes_a_pretrained_encoder(capsys, root, encoder, split):
    params = {**TINY_ENHANCED, "epochs": 2, "freeze_epochs": 1}
    code, err, manifest = _train(
        capsys,
        root,
        *("--model", "enhanced_simple_lstm", "--dataset", "pat", "--split", split),
        *("--params", json.dumps(params), "--pretrained-encoder", str(encoder.path)),
    )
    assert code == 0, err
    load = manifest["training"]["training"]["pretrained_load"]
    assert load["matched_fraction"] == 1.0
    assert load["card"]["sha256"] == encoder.card["sha256"]
    assert load["fine_tuning"]["freeze_epochs"] == 1
    assert load["fine_tuning"]["unfrozen_after_epoch"] == 1
    assert load["fine_tuning"]["normaliser"] == "pretraining corpus"
    resolved = manifest["resolved_params"]
    assert resolved["pretrained_encoder"] == str(encoder.path)
    assert resolved["n_features"] == 20


def test_the_readme_fine_tune_of_simple_lstm_needs_only_the_encoder(capsys, root, encoder):
    code, err, manifest = _train(
        capsys,
        root,
        *("--model", "simple_lstm", "--dataset", "pat", "--split", "kf"),
        *("--params", '{"epochs": 1}', "--pretrained-encoder", str(encoder.path)),
    )
    assert code == 0, err
    assert manifest["resolved_params"]["encoder_projection"] is True  # recorded, not hidden
    assert manifest["training"]["training"]["pretrained_load"]["matched_fraction"] == 1.0


def test_what_cannot_take_an_encoder_or_its_inputs_is_refused_naming_the_fix(capsys, root, encoder):
    base = ("--dataset", "pat", "--split", "kf", "--pretrained-encoder", str(encoder.path))
    code, err, manifest = _train(
        capsys, root, "--model", "simple_lstm", *base, "--params", '{"encoder_projection": false}'
    )
    assert code != 0 and manifest is None
    assert "drop encoder_projection=False" in err
    code, err, manifest = _train(capsys, root, "--model", "bilstm", *base)
    assert code != 0 and manifest is None
    assert "'bilstm' holds no encoder" in err and "enhanced_simple_lstm" in err
    code, err, manifest = _train(
        capsys,
        root,
        *("--model", "enhanced_simple_lstm", "--dataset", "pat", "--split", "kf"),
        *("--inputs", "price_action"),
    )
    assert code != 0 and manifest is None
    assert "inputs='relative'" in err


def test_dual_input_windows_carry_their_own_features_on_step_zero():
    rng = np.random.default_rng(3)
    close = 100 * np.exp(rng.normal(0, 1e-3, size=(6, 30)).cumsum(axis=1))
    ohlc = np.stack([close, close * 1.001, close * 0.999, close], axis=-1)
    packed, view = model_inputs("relative", "enhanced_simple_lstm", ohlc)
    assert view == "relative+price_action" and packed.shape == (6, 30, 11 + 20)
    np.testing.assert_allclose(packed[:, :, :11], relative_windows(ohlc))
    np.testing.assert_allclose(packed[:, 0, 11:], price_action_features(ohlc).to_numpy())
    assert not packed[:, 1:, 11:].any()
    changed = ohlc.copy()
    changed[0, -1] *= 1.05  # a later bar of window 0 moves only window 0's inputs
    again, _ = model_inputs("relative", "enhanced_simple_lstm", changed)
    np.testing.assert_array_equal(again[1:], packed[1:])
    assert not np.array_equal(again[0, 0, 11:], packed[0, 0, 11:])
    # from Python the same array trains the estimator directly
    y = np.array([0, 1] * 3)
    model = create("enhanced_simple_lstm", encoder_hidden=4, **TINY_ENHANCED).fit(packed, y)
    assert model.predict_proba(packed).shape == (6, 2)


def test_from_python_an_encoder_alone_configures_simple_lstm(encoder, tiny_labeled_windows):
    X, y = tiny_labeled_windows
    model = create(
        "simple_lstm", pretrained_encoder=str(encoder.path), epochs=1, hidden=8, heads=2
    ).fit(X, y)
    assert model.module_config_["encoder_projection"] is True
    assert model.load_report_.matched_fraction == 1.0
