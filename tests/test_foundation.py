"""Foundation-model backbones read from a local folder: shapes, determinism, recorded
hashes, and a clear refusal for every wrong folder (nothing is ever downloaded)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moola.core.errors import CheckpointError, ConfigError
from moola.models.foundation import directory_sha256, load_backbone
from moola.testing.foundation import tiny_chronos_bolt, tiny_kronos, tiny_timesfm


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm")
    return {
        "chronos": tiny_chronos_bolt(root / "chronos", context_length=64),
        "kronos": tiny_kronos(root / "kronos", context_length=64),
        "timesfm": tiny_timesfm(root / "timesfm"),
    }


def _ohlc(n=6, t=40, seed=0):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-2, (n, t)), axis=1))
    open_ = np.concatenate([np.full((n, 1), 100.0), close[:, :-1]], axis=1)
    high, low = np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999
    return np.stack([open_, high, low, close], axis=2)


@pytest.mark.parametrize(
    ("kind", "width"), [("chronos", 4 * 16), ("kronos", 16), ("timesfm", 4 * 32)]
)
def test_embeddings_have_the_documented_shape_and_repeat_exactly(folders, kind, width):
    windows = _ohlc()
    first = load_backbone(kind, folders[kind]).embed(windows)
    again = load_backbone(kind, folders[kind]).embed(windows)  # a fresh load, same folder
    assert first.shape == (6, width) and first.dtype == np.float64
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    # each window's embedding is its own: a batch of one gives the same row
    np.testing.assert_allclose(
        load_backbone(kind, folders[kind]).embed(windows[2:3]), first[2:3], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("kind", ["chronos", "timesfm"])
def test_forecasts_are_quantiles_of_the_last_channel(folders, kind):
    backbone = load_backbone(kind, folders[kind])
    windows = _ohlc()
    quantiles = backbone.forecast(windows, 5, (0.1, 0.5, 0.9))
    assert quantiles.shape == (6, 5, 3) and np.isfinite(quantiles).all()
    np.testing.assert_array_equal(quantiles, backbone.forecast(windows, 5, (0.1, 0.5, 0.9)))
    # only the last channel is forecast: changing the others changes nothing
    changed = windows.copy()
    changed[:, :, 0] *= 2
    np.testing.assert_allclose(backbone.forecast(changed, 5, (0.1, 0.5, 0.9)), quantiles)
    with pytest.raises(ConfigError, match="does not forecast"):
        load_backbone("kronos", folders["kronos"]).forecast(windows, 5, (0.5,))


def test_the_loaded_folder_and_its_hash_are_what_was_read(folders, tmp_path):
    backbone = load_backbone("chronos", folders["chronos"])
    assert backbone.path == folders["chronos"]
    assert backbone.sha256 == directory_sha256(folders["chronos"])
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in folders["chronos"].iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    assert directory_sha256(copy) == backbone.sha256  # the hash is of content, not place
    config = json.loads((copy / "config.json").read_text())
    config["d_ff"] = 64
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="changed since they were recorded") as error:
        load_backbone("chronos", copy, sha256=backbone.sha256)
    assert str(copy) in str(error.value) and backbone.sha256 in str(error.value)


def test_wrong_folders_are_refused_naming_the_path_and_the_fix(folders, tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as error:
        load_backbone("chronos", tmp_path / "nowhere")
    assert "amazon/chronos-bolt-small" in str(error.value)  # where the weights come from
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"lacks config\.json") as error:
        load_backbone("chronos", empty)
    assert "never downloads" in str(error.value)
    with pytest.raises(ConfigError, match=r"lacks tokenizer/config\.json"):
        load_backbone("kronos", folders["chronos"])
    # a folder of another architecture: Kronos's model config is not a Chronos checkpoint
    with pytest.raises(CheckpointError, match="not a Chronos-Bolt checkpoint"):
        load_backbone("chronos", folders["kronos"] / "model")
    with pytest.raises(ConfigError, match="backbone must be one of"):
        load_backbone("timesfm9", folders["chronos"])


def test_windows_longer_than_the_context_or_of_the_wrong_width_are_refused(folders):
    chronos = load_backbone("chronos", folders["chronos"])
    with pytest.raises(ConfigError, match="at most 64 bars, but the windows have 80"):
        chronos.embed(_ohlc(t=80))
    kronos = load_backbone("kronos", folders["kronos"])
    with pytest.raises(ConfigError, match="OHLC, OHLCV or OHLCV\\+amount"):
        kronos.embed(_ohlc()[:, :, :3])
    assert kronos.embed(np.concatenate([_ohlc(), np.ones((6, 40, 1))], axis=2)).shape == (6, 16)
    with pytest.raises(ConfigError, match="NaN"):
        chronos.embed(np.full((2, 10, 4), np.nan))


def test_timesfm_reads_its_sizes_off_the_checkpoint_and_refuses_other_architectures(
    folders, tmp_path
):
    # the package builds the 200M sizes; the adapter reads them off the tensor shapes
    wider = load_backbone("timesfm", tiny_timesfm(tmp_path / "wide", model_dims=48))
    assert wider.embed(_ohlc(n=2)).shape == (2, 4 * 48)
    backbone = load_backbone("timesfm", folders["timesfm"])
    # windows that are not a whole number of patches are padded on the left: forecasts
    # depend on the window, one window alone or in a batch
    odd = _ohlc(n=3, t=37)
    quantiles = backbone.forecast(odd, 3, (0.1, 0.25, 0.5, 0.9))
    np.testing.assert_allclose(
        backbone.forecast(odd[1:2], 3, (0.1, 0.25, 0.5, 0.9)), quantiles[1:2]
    )
    assert (np.diff(quantiles, axis=2) >= -1e-9).all()  # levels never cross
    with pytest.raises(ConfigError, match=r"\[0\.1, 0\.9\]"):
        backbone.forecast(odd, 3, (0.05, 0.5))
    # a Chronos folder holds config.json and model.safetensors too: refused by its tensors
    with pytest.raises(CheckpointError, match=r"not a TimesFM 2\.5 checkpoint"):
        load_backbone("timesfm", folders["chronos"])
