"""Encoder artifacts: write-once versions with cards, resumable pretraining, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from moola.cli.pretrain import app
from moola.core.errors import (
    CheckpointError,
    ConfigError,
    DeviceError,
    RegistryError,
    VersionExistsError,
)
from moola.core.settings import Settings
from moola.data.registry import Registry
from moola.models.nn.encoders import BiLSTMEncoder, BiLSTMEncoderConfig
from moola.pipeline.datasets import synthesize_raw
from moola.pipeline.pretrain import MaskedAEPretrainConfig, pretrain_masked_ae
from moola.pretrain import artifacts
from moola.pretrain.artifacts import (
    load_encoder_artifact,
    load_training_checkpoint,
    write_encoder_artifact,
)
from moola.training.trainer import Trainer

TINY = {"hidden": 6, "num_layers": 1, "decoder_hidden": 8, "batch_size": 32, "max_windows": 96}


def _registry(root) -> Registry:
    registry = Registry(root)
    raw, _ = synthesize_raw(registry, "mkt", n_bars=3000, seed=5)
    registry.write_unlabeled("unl", raw, length=105, stride=5)
    return registry


@pytest.fixture
def registry(tmp_path) -> Registry:
    return _registry(tmp_path)


def _encoder_state(input_dim: int = 11, hidden: int = 4) -> dict[str, torch.Tensor]:
    encoder = BiLSTMEncoder(BiLSTMEncoderConfig(input_dim=input_dim, hidden=hidden, num_layers=1))
    return {f"encoder.{k}": v for k, v in encoder.state_dict().items()}


def _encoders(root) -> list[str]:
    directory = artifacts.encoder_dir(root)
    return sorted(p.name for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


# ------------------------------------------------------------------------ artifacts


def test_artifacts_are_versioned_write_once_with_a_card_beside_them(tmp_path):
    state = _encoder_state()
    first = write_encoder_artifact(tmp_path, "bilstm", "mae", "rel11", state, {"epochs": 3})
    second = write_encoder_artifact(tmp_path, "bilstm", "mae", "rel11", state, {"epochs": 4})
    assert first.path.name == "bilstm_mae_rel11_v1.pt" and second.version == 2
    card = json.loads(first.card_path.read_text())
    assert card["name"] == "bilstm_mae_rel11" and card["version"] == 1 and card["epochs"] == 3
    assert card["tensors"]["encoder.lstm.weight_ih_l0"] == [16, 11]
    assert card["library_versions"]["torch"] == torch.__version__
    import hashlib

    assert card["sha256"] == hashlib.sha256(first.path.read_bytes()).hexdigest()
    loaded = load_encoder_artifact(first.path)
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in state.items())
    with pytest.raises(VersionExistsError, match="v1 already exists"):
        write_encoder_artifact(tmp_path, "bilstm", "mae", "rel11", state, {}, version=1)


def test_a_failed_card_write_leaves_no_half_artifact(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(artifacts, "atomic_write_text", broken)
    with pytest.raises(OSError, match="disk full"):
        write_encoder_artifact(tmp_path, "bilstm", "mae", "rel11", _encoder_state(), {})
    assert _encoders(tmp_path) == []


def test_only_encoder_tensors_go_into_an_encoder_artifact(tmp_path):
    state = {**_encoder_state(), "decoder.0.weight": torch.zeros(2, 2)}
    with pytest.raises(ConfigError, match=r"decoder\.0\.weight"):
        write_encoder_artifact(tmp_path, "bilstm", "mae", "rel11", state, {})


def test_corrupt_and_foreign_files_are_checkpoint_errors_naming_the_file(tmp_path):
    good = write_encoder_artifact(tmp_path, "bilstm", "mae", "rel11", _encoder_state(), {})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.path.read_bytes()[:200])
    model_file = tmp_path / "model.pt"
    torch.save({"format": "moola-model", "state_dict": {}}, model_file)
    for path in (truncated, model_file, tmp_path / "absent.pt"):
        with pytest.raises(CheckpointError, match=path.name):
            load_encoder_artifact(path)
    with pytest.raises(CheckpointError, match="not a moola pretraining checkpoint"):
        load_training_checkpoint(good.path)


# ------------------------------------------------------------------ pretraining runs


class _Interrupt(Exception):
    pass


def _stop_after_first_epoch(epoch: int, loss: float) -> None:
    if epoch == 1:
        raise _Interrupt


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    config = MaskedAEPretrainConfig(epochs=2, device="cpu", **TINY)
    straight_registry = _registry(tmp_path / "a")
    straight = pretrain_masked_ae(straight_registry, "unl", config)

    registry = _registry(tmp_path / "b")
    with pytest.raises(_Interrupt):
        pretrain_masked_ae(registry, "unl", config, on_epoch=_stop_after_first_epoch)
    assert _encoders(registry.root) == [next(iter(_checkpoints(registry)))]  # no artifact yet
    checkpoint = artifacts.encoder_dir(registry.root) / "checkpoints" / _checkpoints(registry)[0]
    assert load_training_checkpoint(checkpoint)["loop"]["epoch"] == 1
    resumed = pretrain_masked_ae(registry, "unl", config, resume=checkpoint)

    assert straight.state_dict.keys() == resumed.state_dict.keys()
    for key, value in straight.state_dict.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    assert resumed.card["loss_curve"] == straight.card["loss_curve"]
    assert resumed.card["resumed_from_epoch"] == 1 and straight.card["resumed_from_epoch"] is None
    assert not checkpoint.exists()  # removed once the artifact is written
    assert straight.card["unlabeled"]["content_hash"].startswith("sha256:")
    assert straight.card["hyperparameters"]["mask_ratio"] == 0.15


def _checkpoints(registry) -> list[str]:
    return sorted(p.name for p in (artifacts.encoder_dir(registry.root) / "checkpoints").iterdir())


class _Snapshot:
    """Keeps ``state.snapshot()`` after ``epoch`` and stops the loop there."""

    def __init__(self, epoch: int) -> None:
        self.epoch, self.snapshot = epoch, None

    def on_train_start(self, state) -> None:
        return None

    def on_epoch_end(self, state) -> bool:
        if state.epoch == self.epoch:
            self.snapshot = state.snapshot()
            return True
        return False

    def on_train_end(self, state) -> None:
        return None


def test_the_trainer_resumes_a_supervised_run_with_validation_exactly():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 8, 3)).astype(np.float32)
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    X_val, y_val = X[:16] + 0.1, y[:16]

    def fresh():
        torch.manual_seed(1)
        return torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Dropout(0.3), torch.nn.Linear(24, 2)
        )

    trainer = Trainer(epochs=4, batch_size=16, warmup_epochs=1, patience=None, device="cpu")
    straight = fresh()
    full = trainer.fit(straight, X, y, X_val, y_val)
    interrupted = fresh()
    keeper = _Snapshot(epoch=2)
    trainer.fit(interrupted, X, y, X_val, y_val, callbacks=[keeper])
    resumed = fresh()  # a new process would start from fresh weights and the snapshot
    step = trainer.build_step(y)
    rest = trainer.run(resumed, (X, y), (X_val, y_val), step=step, resume=keeper.snapshot)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert rest.train_loss_history == full.train_loss_history
    assert rest.val_loss_history == full.val_loss_history and rest.best_epoch == full.best_epoch
    other = Trainer(epochs=4, batch_size=8, patience=None, device="cpu")
    with pytest.raises(CheckpointError, match="steps_per_epoch"):
        other.run(fresh(), (X, y), step=step, resume=keeper.snapshot)


def test_resuming_with_other_settings_is_refused(registry):
    config = MaskedAEPretrainConfig(epochs=2, device="cpu", **TINY)
    with pytest.raises(_Interrupt):
        pretrain_masked_ae(registry, "unl", config, on_epoch=_stop_after_first_epoch)
    checkpoint = artifacts.encoder_dir(registry.root) / "checkpoints" / _checkpoints(registry)[0]
    other = MaskedAEPretrainConfig(epochs=2, device="cpu", **{**TINY, "hidden": 7})
    with pytest.raises(CheckpointError, match="hidden: 6 -> 7"):
        pretrain_masked_ae(registry, "unl", other, resume=checkpoint)


# --------------------------------------------------------------------------- the CLI


def _invoke(root, *args: str):
    return CliRunner().invoke(app, list(args), obj=Settings(home=root))


def test_cli_writes_and_prints_the_artifact_and_its_card(registry):
    result = _invoke(
        registry.root, "masked-ae", "--unlabeled", "unl@v1", "--epochs", "1",
        "--batch-size", "32", "--hidden", "4", "--layers", "1", "--max-windows", "64",
        "--device", "cpu", "--no-augment",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    path = artifacts.encoder_dir(registry.root) / "bilstm_mae_rel11_v1.pt"
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["unlabeled"]["name"] == "unl" and card["unlabeled"]["windows_used"] == 64
    assert card["hyperparameters"]["augment"] is None and card["encoder"]["config"]["hidden"] == 4
    flat = result.output.replace("\n", "")
    assert "bilstm_mae_rel11_v1" in flat and card["sha256"][:16] in flat and "unl@v1" in flat


@pytest.mark.parametrize(
    ("args", "error", "text"),
    [
        (["--device", "cuda"], DeviceError, "cuda"),
        (["--batch-size", "500"], ConfigError, "fewer than one batch of 500"),
        (["--unlabeled", "nope"], RegistryError, "nope"),
    ],
)
def test_cli_bad_input_is_a_clear_error_and_writes_nothing(registry, args, error, text):
    base = {"--unlabeled": "unl", "--epochs": "1", "--hidden": "4", "--max-windows": "64"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    result = _invoke(registry.root, "masked-ae", *[x for kv in base.items() for x in kv])
    assert result.exit_code != 0 and isinstance(result.exception, error)
    assert text in str(result.exception)
    assert _encoders(registry.root) == []


def test_cli_refuses_a_corrupt_resume_checkpoint(registry, tmp_path):
    corrupt = tmp_path / "run.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    result = _invoke(registry.root, "masked-ae", "--resume", str(corrupt))
    assert isinstance(result.exception, CheckpointError) and "run.ckpt" in str(result.exception)
    assert _encoders(registry.root) == []
