"""``moola pretrain ts2vec``: TS2Vec encoder artifacts from a registry corpus, resumable
runs, the CLI, and fine-tuning ``adapter_lstm`` from the artifact (frozen encoder)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from moola.cli.pretrain import app
from moola.core.errors import CheckpointError, ConfigError, DeviceError, RegistryError
from moola.core.settings import Settings
from moola.data.registry import Registry
from moola.models import create
from moola.models.nn import build_module
from moola.models.nn.adapter_lstm import AdapterLSTM, AdapterLSTMConfig
from moola.models.nn.encoders import BiLSTMEncoder, BiLSTMEncoderConfig
from moola.pipeline.datasets import synthesize_raw
from moola.pipeline.pretrain import (
    MaskedAEPretrainConfig,
    TS2VecPretrainConfig,
    pretrain_masked_ae,
    pretrain_ts2vec,
)
from moola.pretrain import artifacts
from moola.pretrain.artifacts import load_encoder_artifact, write_encoder_artifact
from moola.pretrain.data import UnlabeledWindows, corpus_indices, fit_normaliser
from moola.pretrain.transfer import encoder_shape, load_pretrained_encoder

TINY = {"hidden": 8, "repr_dim": 16, "depth": 2, "batch_size": 32, "max_windows": 64}
MAE_TINY = {"hidden": 4, "num_layers": 1, "decoder_hidden": 4, "batch_size": 32, "max_windows": 64}
HEAD = {"adapter_dim": 4, "lstm_hidden": 4, "fc": [8], "epochs": 2}


def _registry(root) -> Registry:
    registry = Registry(root)
    raw, _ = synthesize_raw(registry, "mkt", n_bars=3000, seed=9)
    registry.write_unlabeled("unl", raw, length=105, stride=5)
    return registry


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Registry:
    return _registry(tmp_path_factory.mktemp("ts2vec_corpus"))


@pytest.fixture(scope="module")
def artifact(corpus):
    """A tiny TS2Vec encoder (hidden 8, repr 16, depth 2), one epoch over 64 windows."""
    return pretrain_ts2vec(corpus, "unl", TS2VecPretrainConfig(epochs=1, device="cpu", **TINY))


def _encoders(root) -> list[str]:
    directory = artifacts.encoder_dir(root)
    return sorted(p.name for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def _bilstm_artifact(root, *, with_class: bool = True):
    encoder = BiLSTMEncoder(BiLSTMEncoderConfig(input_dim=11, hidden=8, num_layers=1))
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    card = {"encoder": {"config": {"input_dim": 11, "hidden": 8, "num_layers": 1}}}
    if with_class:
        card["encoder"]["class"] = "moola.models.nn.encoders.BiLSTMEncoder"
    return write_encoder_artifact(root, "bilstm", "mae", "rel11", state, card).path


class _Interrupt(Exception):
    pass


def _stop_after_first_epoch(epoch: int, loss: float) -> None:
    if epoch == 1:
        raise _Interrupt


def _interrupted(registry: Registry, pretrain, config, checkpoint):
    with pytest.raises(_Interrupt):
        pretrain(registry, "unl", config, checkpoint=checkpoint, on_epoch=_stop_after_first_epoch)
    return checkpoint


# ------------------------------------------------------------------------ the artifact


def test_the_artifact_holds_adapter_lstm_encoder_tensors_and_a_full_card(artifact):
    assert artifact.path.name == "dilconv_ts2vec_rel11_v1.pt"
    target = AdapterLSTM(AdapterLSTMConfig(encoder_hidden=8, encoder_repr_dim=16, encoder_depth=2))
    names = {k for k in target.state_dict() if k.startswith("encoder.")}
    assert set(artifact.state_dict) == names  # exactly adapter_lstm's encoder, no decoder
    card = json.loads(artifact.card_path.read_text())
    assert card["encoder"]["class"] == "moola.models.nn.ts2vec_encoder.TS2VecEncoder"
    assert card["encoder"]["config"] == {
        "input_dim": 11,
        "hidden": 8,
        "repr_dim": 16,
        "depth": 2,
        "dropout": 0.1,
        "mask_prob": 0.5,
    }
    assert card["objective"] == "ts2vec" and card["arch"] == "dilconv"
    assert card["objective_config"]["alpha"] == 0.5 and card["features"] == "rel11"
    assert len(card["normaliser"]["mean"]) == len(card["normaliser"]["std"]) == 11
    assert len(card["loss_curve"]) == 1 and card["final_loss"] == card["loss_curve"][0]
    assert np.isfinite(card["final_loss"]) and card["windows_per_s"] > 0
    assert card["unlabeled"]["name"] == "unl" and card["unlabeled"]["windows_used"] == 64
    assert card["hyperparameters"]["repr_dim"] == 16 and "device" not in card["hyperparameters"]
    assert card["sha256"] == load_encoder_artifact(artifact.path).sha256
    assert encoder_shape(artifact.path, "adapter_lstm") == {
        "encoder_hidden": 8,
        "encoder_repr_dim": 16,
        "encoder_depth": 2,
    }
    assert encoder_shape(artifact.path, "simple_lstm") == {}


def test_ts2vec_batches_are_the_masked_ae_windows_without_masks(corpus):
    windows = corpus.load_unlabeled("unl")
    indices = corpus_indices(len(windows), 64, 0)
    mean, std = fit_normaliser(windows, indices, 64, 0)
    rows = torch.tensor([0, 5, 9])
    plain = UnlabeledWindows(windows, indices, mean=mean, std=std, masks=False)
    masked = UnlabeledWindows(windows, indices, mean=mean, std=std)
    (x,) = plain.batch(rows, key=3)
    assert torch.equal(x, masked.batch(rows, key=3)[0])


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    config = TS2VecPretrainConfig(epochs=2, device="cpu", **TINY)
    straight = pretrain_ts2vec(_registry(tmp_path / "a"), "unl", config)
    registry = _registry(tmp_path / "b")
    with pytest.raises(_Interrupt):
        pretrain_ts2vec(registry, "unl", config, on_epoch=_stop_after_first_epoch)
    checkpoint = artifacts.checkpoint_path(registry.root, "dilconv", "ts2vec", "rel11", "unl", 1)
    assert _encoders(registry.root) == [checkpoint.name]  # no artifact yet
    resumed = pretrain_ts2vec(registry, "unl", config, resume=checkpoint)
    assert straight.state_dict.keys() == resumed.state_dict.keys()
    for key, value in straight.state_dict.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    assert resumed.card["loss_curve"] == straight.card["loss_curve"]
    assert resumed.card["resumed_from_epoch"] == 1 and not checkpoint.exists()


def test_a_checkpoint_of_the_other_objective_is_refused_both_ways(corpus, tmp_path):
    mae = MaskedAEPretrainConfig(epochs=2, device="cpu", **MAE_TINY)
    mae_ckpt = _interrupted(corpus, pretrain_masked_ae, mae, tmp_path / "mae.ckpt")
    config = TS2VecPretrainConfig(epochs=2, device="cpu", **TINY)
    with pytest.raises(CheckpointError, match="moola pretrain masked-ae --resume") as error:
        pretrain_ts2vec(corpus, "unl", config, resume=mae_ckpt)
    assert str(mae_ckpt) in str(error.value)
    ts2vec_ckpt = _interrupted(corpus, pretrain_ts2vec, config, tmp_path / "ts2vec.ckpt")
    with pytest.raises(CheckpointError, match="moola pretrain ts2vec --resume"):
        pretrain_masked_ae(corpus, "unl", mae, resume=ts2vec_ckpt)


# --------------------------------------------------------------------------- the CLI


def _invoke(root, *args: str):
    return CliRunner().invoke(app, list(args), obj=Settings(home=root))


def test_cli_writes_and_prints_the_ts2vec_artifact(tmp_path):
    registry = _registry(tmp_path)
    result = _invoke(
        registry.root, "ts2vec", "--unlabeled", "unl@v1", "--epochs", "1", "--batch-size", "32",
        "--hidden", "8", "--repr-dim", "16", "--depth", "2", "--max-windows", "64",
        "--lr", "0.002", "--seed", "3", "--device", "cpu", "--no-augment",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    path = artifacts.encoder_dir(registry.root) / "dilconv_ts2vec_rel11_v1.pt"
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["encoder"]["config"]["repr_dim"] == 16 and card["encoder"]["config"]["depth"] == 2
    assert card["hyperparameters"]["augment"] is None and card["hyperparameters"]["seed"] == 3
    assert card["hyperparameters"]["lr"] == 0.002
    flat = result.output.replace("\n", "")
    assert "dilconv_ts2vec_rel11_v1" in flat and card["sha256"][:16] in flat
    assert "ts2vec (overlapping crops" in flat
    assert _encoders(registry.root) == sorted([path.name, path.with_suffix(".json").name])


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Registry:
    """A corpus nothing is ever written into (the CLI error cases)."""
    return _registry(tmp_path_factory.mktemp("ts2vec_clean"))


@pytest.mark.parametrize(
    ("drop", "args", "error", "text"),
    [
        ("--epochs", [], ConfigError, "needs --epochs"),
        ("--unlabeled", [], ConfigError, "needs --unlabeled"),
        (None, ["--unlabeled", "nope"], RegistryError, "nope"),
        (None, ["--batch-size", "500"], ConfigError, "fewer than one batch of 500"),
        (None, ["--device", "cuda"], DeviceError, "cuda"),
        (None, ["--device", "tpu"], ConfigError, "device"),
    ],
)
def test_cli_bad_input_is_a_clear_error_and_writes_nothing(clean, drop, args, error, text):
    if args[:2] == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    base = {"--unlabeled": "unl", "--epochs": "1", "--hidden": "4", "--max-windows": "64"}
    base.pop(drop, None)
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    result = _invoke(clean.root, "ts2vec", *[x for kv in base.items() for x in kv])
    assert result.exit_code != 0 and isinstance(result.exception, error), result.output
    assert text in str(result.exception)
    assert _encoders(clean.root) == []


def test_cli_refuses_a_masked_ae_checkpoint_and_a_corrupt_one(clean, corpus, tmp_path):
    mae = MaskedAEPretrainConfig(epochs=2, device="cpu", **MAE_TINY)
    checkpoint = _interrupted(corpus, pretrain_masked_ae, mae, tmp_path / "mae.ckpt")
    result = _invoke(clean.root, "ts2vec", "--resume", str(checkpoint))
    assert isinstance(result.exception, CheckpointError)
    assert "masked-ae" in str(result.exception) and str(checkpoint) in str(result.exception)
    corrupt = tmp_path / "run.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    result = _invoke(clean.root, "ts2vec", "--resume", str(corrupt))
    assert isinstance(result.exception, CheckpointError) and "run.ckpt" in str(result.exception)
    assert _encoders(clean.root) == []


# --------------------------------------------------------------- transfer: adapter_lstm


def test_adapter_lstm_fine_tunes_from_the_artifact_with_the_encoder_frozen(
    artifact, tiny_labeled_windows
):
    X, y = tiny_labeled_windows
    model = create("adapter_lstm", pretrained_encoder=str(artifact.path), **HEAD).fit(X, y)
    report = model.load_report_
    assert report.matched_fraction == 1.0 and report.n_target == len(artifact.state_dict)
    assert not (report.missing or report.unexpected or report.shape_mismatched)
    n_encoder = sum(v.numel() for v in artifact.state_dict.values())
    assert report.frozen_parameters == report.matched_parameters == n_encoder
    assert report.fine_tuning["encoder_frozen"] is True
    assert report.fine_tuning["normaliser"] == "pretraining corpus"
    assert f"matched {report.n_target}/{report.n_target} encoder tensors (100.0%)" in (
        report.summary()
    )
    config = model.module_config_  # the encoder's shape came from the card
    assert (config["encoder_hidden"], config["encoder_repr_dim"], config["encoder_depth"]) == (
        8,
        16,
        2,
    )
    after = {f"encoder.{k}": v for k, v in model.module_.encoder.state_dict().items()}
    assert all(torch.equal(after[k], v) for k, v in artifact.state_dict.items())
    assert model.predict_proba(X).shape == (40, 2)


def test_an_explicit_encoder_shape_that_differs_is_reported(artifact, tiny_labeled_windows):
    X, y = tiny_labeled_windows
    with pytest.raises(CheckpointError) as error:
        create(
            "adapter_lstm", pretrained_encoder=str(artifact.path), encoder_repr_dim=32, **HEAD
        ).fit(X, y)
    message = str(error.value)
    assert str(artifact.path) in message and "repr_dim 16" in message and "repr_dim 32" in message
    assert "encoder_repr_dim" in message


def test_a_ts2vec_encoder_of_another_width_is_refused_even_above_80_percent(tmp_path):
    from moola.models.nn.ts2vec_encoder import TS2VecEncoder, TS2VecEncoderConfig

    shape = {"input_dim": 11, "hidden": 8, "repr_dim": 16, "depth": 8}
    encoder = TS2VecEncoder(TS2VecEncoderConfig(**shape))
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    card = {"encoder": {"class": "x.TS2VecEncoder", "config": shape}}
    path = write_encoder_artifact(tmp_path, "dilconv", "ts2vec", "rel11", state, card).path
    target = build_module(
        "adapter_lstm", encoder_hidden=8, encoder_repr_dim=32, encoder_depth=8
    )  # only the last block (6 of 40 tensors) differs
    with pytest.raises(CheckpointError, match=r"34/40 \(85\.0%\).*loads only whole") as error:
        load_pretrained_encoder(target, path)
    assert "repr_dim 16" in str(error.value) and "repr_dim 32" in str(error.value)


def test_another_input_dimension_is_refused_at_the_input_projection(artifact):
    target = build_module(
        "adapter_lstm", input_dim=4, encoder_hidden=8, encoder_repr_dim=16, encoder_depth=2
    )
    with pytest.raises(CheckpointError, match="input layer does not fit") as error:
        load_pretrained_encoder(target, artifact.path)
    assert "encoder.input_fc.weight artifact [8, 11] vs model [8, 4]" in str(error.value)


def test_freeze_epochs_needs_an_encoder_the_model_lets_train(artifact, tiny_labeled_windows):
    X, y = tiny_labeled_windows
    with pytest.raises(ConfigError, match="freeze_encoder=False"):
        create("adapter_lstm", pretrained_encoder=str(artifact.path), freeze_epochs=1, **HEAD).fit(
            X, y
        )
    model = create(
        "adapter_lstm",
        pretrained_encoder=str(artifact.path),
        freeze_encoder=False,
        freeze_epochs=1,
        encoder_lr_scale=1.0,
        **HEAD,
    ).fit(X, y)
    report = model.load_report_
    assert report.frozen_parameters == report.matched_parameters  # frozen for epoch 1
    assert report.fine_tuning["unfrozen_after_epoch"] == 1
    assert report.fine_tuning["encoder_frozen"] is False
    after = {f"encoder.{k}": v for k, v in model.module_.encoder.state_dict().items()}
    assert any(not torch.equal(after[k], v) for k, v in artifact.state_dict.items())


# ------------------------------------------------------- cross-architecture refusals


@pytest.mark.parametrize("with_class", [True, False])
def test_a_masked_ae_encoder_is_refused_by_adapter_lstm(tmp_path, tiny_labeled_windows, with_class):
    path = _bilstm_artifact(tmp_path, with_class=with_class)
    X, y = tiny_labeled_windows
    with pytest.raises(CheckpointError) as error:
        create("adapter_lstm", pretrained_encoder=str(path), **HEAD).fit(X, y)
    message = str(error.value)
    assert str(path) in message and "BiLSTMEncoder" in message and "fits simple_lstm" in message
    assert "moola pretrain ts2vec" in message


def test_a_ts2vec_encoder_is_refused_by_simple_lstm(artifact, tiny_labeled_windows):
    X, y = tiny_labeled_windows
    with pytest.raises(CheckpointError) as error:
        create(
            "simple_lstm",
            encoder_projection=True,
            encoder_hidden=8,
            encoder_layers=1,
            pretrained_encoder=str(artifact.path),
            epochs=1,
        ).fit(X, y)
    message = str(error.value)
    assert str(artifact.path) in message and "fits adapter_lstm" in message
    assert "moola pretrain masked-ae" in message
    target = build_module("simple_lstm", input_dim=11, encoder_projection=True)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match="TS2VecEncoder"):
        load_pretrained_encoder(target, artifact.path)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_moola_train_fine_tunes_adapter_lstm_from_the_artifact(artifact, tmp_path, capsys):
    from moola.cli.main import main
    from moola.pipeline.datasets import make_and_store_split, planted_labeled
    from moola.tracking.runs import RunStore

    registry = Registry(tmp_path)
    raw, market = synthesize_raw(registry, "mkt", n_bars=12_000, n_patterns=30, seed=4)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    params = {"adapter_dim": 4, "lstm_hidden": 4, "fc": [8], "epochs": 1}
    try:
        main(
            [
                "--data-root", str(tmp_path), "train", "--model", "adapter_lstm",
                "--dataset", "pat", "--split", "kf", "--bootstrap", "20",
                "--params", json.dumps(params), "--pretrained-encoder", str(artifact.path),
            ]
        )  # fmt: skip
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    run_id = RunStore(tmp_path).results()[-1]["run_id"]
    manifest = json.loads((RunStore(tmp_path).run_dir(run_id) / "manifest.json").read_text())
    load = manifest["training"]["training"]["pretrained_load"]
    assert load["matched_fraction"] == 1.0 and load["frozen_parameters"] > 0


def test_windows_too_short_for_the_crops_are_refused_before_anything_is_written(clean):
    config = TS2VecPretrainConfig(epochs=1, device="cpu", temporal_unit=7, **TINY)
    with pytest.raises(ConfigError, match=r"unlabeled/unl@v1 holds windows of 105 steps.*256"):
        pretrain_ts2vec(clean, "unl", config)
    assert _encoders(clean.root) == []
