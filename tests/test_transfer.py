"""Transfer: pretrained encoders into classifiers, with a load report and a freeze schedule."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from moola.core.errors import CheckpointError, ConfigError
from moola.data.registry import Registry
from moola.models import create
from moola.models.nn import build_module
from moola.models.nn.encoders import BiLSTMEncoder, BiLSTMEncoderConfig
from moola.pipeline.datasets import synthesize_raw
from moola.pipeline.pretrain import MaskedAEPretrainConfig, pretrain_masked_ae
from moola.pretrain.artifacts import load_encoder_artifact, write_encoder_artifact
from moola.pretrain.transfer import LoadReport, load_pretrained_encoder
from moola.training.neural import NeuralEstimator


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny masked-AE encoder (11 inputs, 1 x 8) pretrained on a synthetic corpus."""
    registry = Registry(tmp_path_factory.mktemp("transfer"))
    raw, _ = synthesize_raw(registry, "mkt", n_bars=3000, seed=9)
    registry.write_unlabeled("unl", raw, length=105, stride=5)
    config = MaskedAEPretrainConfig(
        epochs=1, batch_size=32, hidden=8, num_layers=1, decoder_hidden=8, max_windows=64
    )
    return pretrain_masked_ae(registry, "unl", config)


def _artifact(root, input_dim: int, hidden: int, layers: int, name: str = "x"):
    encoder = BiLSTMEncoder(
        BiLSTMEncoderConfig(input_dim=input_dim, hidden=hidden, num_layers=layers)
    )
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    card = {"encoder": {"config": {"input_dim": input_dim, "hidden": hidden, "num_layers": layers}}}
    return write_encoder_artifact(root, "bilstm", "mae", name, state, card).path


def _target(input_dim: int = 11, hidden: int = 8, layers: int = 1):
    return build_module(
        "simple_lstm",
        input_dim=input_dim,
        encoder_projection=True,
        encoder_hidden=hidden,
        encoder_layers=layers,
    )


def _encoder_tensors(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}


def test_a_pretrained_encoder_loads_fully_and_the_model_trains(pretrained, tiny_labeled_windows):
    X, y = tiny_labeled_windows
    model = create(
        "simple_lstm",
        encoder_projection=True,
        encoder_hidden=8,
        encoder_layers=1,
        pretrained_encoder=str(pretrained.path),
        epochs=1,
    ).fit(X, y)
    report = model.load_report_
    assert report.matched_fraction == 1.0 and report.n_target == 8
    assert not (report.missing or report.unexpected or report.shape_mismatched)
    assert report.card["unlabeled"]["name"] == "unl"
    assert report.card["sha256"] == pretrained.card["sha256"]  # the exact bytes loaded
    assert report.fine_tuning["encoder_lr_scale"] == 0.1
    assert model.predict_proba(X).shape == (40, 2)
    assert "matched 8/8 encoder tensors (100.0%)" in report.summary()


def test_fine_tuning_scales_inputs_as_the_encoder_saw_them_in_pretraining(
    pretrained, tiny_labeled_windows
):
    X, y = tiny_labeled_windows
    params = {"encoder_projection": True, "encoder_hidden": 8, "encoder_layers": 1, "epochs": 1}
    tuned = create("simple_lstm", pretrained_encoder=str(pretrained.path), **params).fit(X, y)
    scratch = create("simple_lstm", **params).fit(X, y)
    corpus = pretrained.card["normaliser"]
    np.testing.assert_allclose(tuned.mean_, corpus["mean"], rtol=1e-6)
    np.testing.assert_allclose(tuned.std_, corpus["std"], rtol=1e-6)
    assert tuned.load_report_.fine_tuning["normaliser"] == "pretraining corpus"
    np.testing.assert_allclose(scratch.mean_, X.mean(axis=(0, 1), dtype=np.float64), atol=1e-9)
    assert not np.allclose(scratch.mean_, tuned.mean_)


def test_a_frozen_encoder_keeps_its_pretrained_weights(pretrained, tiny_labeled_windows):
    X, y = tiny_labeled_windows
    model = NeuralEstimator(
        "simple_lstm",
        encoder_projection=True,
        encoder_hidden=8,
        encoder_layers=1,
        pretrained_encoder=str(pretrained.path),
        freeze_epochs=2,
        epochs=2,
    ).fit(X, y)
    after = _encoder_tensors(model.module_)
    assert all(torch.equal(after[k], v) for k, v in pretrained.state_dict.items())
    assert model.load_report_.frozen_parameters == sum(v.numel() for v in after.values())
    assert model.load_report_.fine_tuning["unfrozen_after_epoch"] is None
    assert all(p.requires_grad for p in model.module_.parameters())  # fitted: none frozen


def test_the_encoder_trains_after_its_freeze_at_its_scaled_learning_rate(
    pretrained, tiny_labeled_windows
):
    X, y = tiny_labeled_windows

    def fit(**params):
        return NeuralEstimator(
            "simple_lstm",
            encoder_projection=True,
            encoder_hidden=8,
            encoder_layers=1,
            pretrained_encoder=str(pretrained.path),
            epochs=2,
            **params,
        ).fit(X, y)

    def encoder_change(model) -> float:
        after = _encoder_tensors(model.module_)
        return max((after[k] - v).abs().max().item() for k, v in pretrained.state_dict.items())

    unfrozen = fit(freeze_epochs=1, encoder_lr_scale=1.0)
    assert unfrozen.load_report_.fine_tuning["unfrozen_after_epoch"] == 1
    assert encoder_change(unfrozen) > 1e-4
    crawling = fit(encoder_lr_scale=1e-6)  # Adam moves a weight by about lr per step
    assert encoder_change(crawling) < 1e-6
    config = dict(crawling.module_config_)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the estimator's seed: the weights its fit started from
        initial = build_module(config.pop("architecture"), **config)
    projection = (
        crawling.module_.pretrained_projection.weight - initial.pretrained_projection.weight
    )
    assert projection.abs().max().item() > 1e-4  # the rest of the model trains at full lr


def test_the_load_report_survives_save_and_load(pretrained, tiny_labeled_windows, tmp_path):
    X, y = tiny_labeled_windows
    model = NeuralEstimator(
        "simple_lstm",
        encoder_projection=True,
        encoder_hidden=8,
        encoder_layers=1,
        pretrained_encoder=str(pretrained.path),
        epochs=1,
    ).fit(X, y)
    model.save(tmp_path / "model.pt")
    loaded = NeuralEstimator.load(tmp_path / "model.pt")
    assert loaded.load_report_ == model.load_report_
    assert LoadReport.from_dict(model.load_report_.to_dict()) == model.load_report_


def test_an_encoder_of_another_input_dimension_is_refused_with_the_fraction(tmp_path):
    path = _artifact(tmp_path, input_dim=11, hidden=8, layers=1)
    target = _target(input_dim=4)
    before = _encoder_tensors(target)
    with pytest.raises(CheckpointError) as error:
        load_pretrained_encoder(target, path)
    message = str(error.value)
    assert str(path) in message and "6/8 (75.0%)" in message and "below the 80%" in message
    assert "encoder.lstm.weight_ih_l0 artifact [32, 11] vs model [32, 4]" in message
    assert "input_dim 11" in message and "input_dim 4" in message
    assert all(torch.equal(before[k], v) for k, v in _encoder_tensors(target).items())


def test_a_deeper_encoder_of_another_input_dimension_is_refused_too(tmp_path):
    path = _artifact(tmp_path, input_dim=11, hidden=8, layers=2)
    with pytest.raises(CheckpointError, match=r"14/16 \(87\.5%\).*input layer does not fit"):
        load_pretrained_encoder(_target(input_dim=4, layers=2), path)


def test_another_width_or_depth_below_80_percent_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"0/8 \(0\.0%\)"):
        load_pretrained_encoder(_target(hidden=16), _artifact(tmp_path, 11, 8, 1, "w"))
    with pytest.raises(CheckpointError, match=r"8/16 \(50\.0%\).*Missing from the artifact"):
        load_pretrained_encoder(_target(layers=2), _artifact(tmp_path, 11, 8, 1, "d"))


def test_extra_artifact_layers_are_reported_but_the_load_goes_through(tmp_path):
    report = load_pretrained_encoder(_target(layers=1), _artifact(tmp_path, 11, 8, 2, "deep"))
    assert report.matched_fraction == 1.0
    assert "encoder.lstm.weight_ih_l1" in report.unexpected
    assert "unexpected in the artifact" in report.summary()


def test_copied_tensors_are_the_artifacts_and_freezing_counts_them(tmp_path):
    path = _artifact(tmp_path, 11, 8, 1)
    target = _target()
    report = load_pretrained_encoder(target, path, freeze=True)
    saved = load_encoder_artifact(path).state_dict
    assert all(torch.equal(v, saved[k]) for k, v in _encoder_tensors(target).items())
    assert report.frozen_parameters == sum(v.numel() for v in saved.values())
    frozen = [n for n, p in target.named_parameters() if not p.requires_grad]
    assert sorted(frozen) == sorted(saved)


def test_files_that_are_not_encoders_and_models_without_one_are_refused(tmp_path, pretrained):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"corrupt\.pt"):
        load_pretrained_encoder(_target(), corrupt)
    weights = tmp_path / "weights.pt"
    torch.save(_target().state_dict(), weights)
    with pytest.raises(CheckpointError, match=r"has no card weights\.json"):
        load_pretrained_encoder(_target(), weights)
    (tmp_path / "weights.json").write_text(
        json.dumps({"sha256": hashlib.sha256(weights.read_bytes()).hexdigest()})
    )
    with pytest.raises(CheckpointError, match="not a moola encoder artifact"):
        load_pretrained_encoder(_target(), weights)
    with pytest.raises(CheckpointError, match="has no 'encoder'"):
        load_pretrained_encoder(build_module("simple_lstm", input_dim=11), pretrained.path)


def test_freezing_without_a_pretrained_encoder_is_a_config_error(tiny_labeled_windows):
    X, y = tiny_labeled_windows
    with pytest.raises(ConfigError, match="freeze_epochs=2"):
        NeuralEstimator("simple_lstm", freeze_epochs=2, epochs=1).fit(X, y)
    with pytest.raises(ConfigError, match="encoder_lr_scale"):
        NeuralEstimator("simple_lstm", encoder_lr_scale=0, epochs=1).fit(X, y)


def test_moola_train_loads_the_encoder_and_records_the_load_report(pretrained, tmp_path, capsys):
    import json

    from moola.cli.main import main
    from moola.pipeline.datasets import make_and_store_split, planted_labeled
    from moola.tracking.runs import RunStore

    registry = Registry(tmp_path)
    raw, market = synthesize_raw(registry, "mkt", n_bars=12_000, n_patterns=30, seed=4)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    params = {"encoder_projection": True, "encoder_hidden": 8, "encoder_layers": 1, "epochs": 1}
    try:
        main(
            [
                "--data-root",
                str(tmp_path),
                "train",
                "--model",
                "simple_lstm",
                "--dataset",
                "pat",
                "--split",
                "kf",
                "--bootstrap",
                "20",
                "--params",
                json.dumps(params),
                "--pretrained-encoder",
                str(pretrained.path),
            ]
        )
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    run_id = RunStore(tmp_path).results()[-1]["run_id"]
    manifest = json.loads((RunStore(tmp_path).run_dir(run_id) / "manifest.json").read_text())
    load = manifest["training"]["training"]["pretrained_load"]
    assert load["matched_fraction"] == 1.0
    assert manifest["resolved_params"]["pretrained_encoder"] == str(pretrained.path)
