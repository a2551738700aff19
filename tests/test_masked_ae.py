"""Masks, the masked autoencoder and its loss, streamed batches, and the Trainer path."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.features.window import relative_windows
from moola.pipeline.datasets import synthesize_raw
from moola.pretrain.augment import AugmentConfig
from moola.pretrain.data import UnlabeledWindows, corpus_indices, fit_normaliser
from moola.pretrain.masked_ae import MaskedAEConfig, MaskedAEStep, MaskedAutoencoder, masked_mse
from moola.pretrain.masking import block_mask, make_mask, masked_count, random_mask
from moola.training.trainer import BatchSource, Trainer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    registry = Registry(tmp_path_factory.mktemp("mae"))
    raw, _ = synthesize_raw(registry, "mkt", n_bars=6000, seed=3)
    registry.write_unlabeled("unl", raw, length=105, stride=5)
    return registry.load_unlabeled("unl")


def _source(corpus, **kwargs) -> UnlabeledWindows:
    indices = corpus_indices(len(corpus), kwargs.pop("max_windows", None), 0)
    mean, std = fit_normaliser(corpus, indices, 512, 0)
    return UnlabeledWindows(corpus, indices, mean=mean, std=std, **kwargs)


# ---------------------------------------------------------------------------- masking


def test_random_mask_hides_exactly_the_ratio_of_steps_in_every_window():
    mask = random_mask(500, 105, np.random.default_rng(0), 0.15)
    assert mask.shape == (500, 105) and mask.dtype == bool
    assert np.all(mask.sum(axis=1) == 16)  # round(0.15 * 105) = 16
    hit = mask.mean(axis=0)  # every step is hidden about 15% of the time
    assert hit.min() > 0.05 and hit.max() < 0.3


def test_block_mask_hides_contiguous_runs_with_the_exact_count():
    mask = block_mask(400, 105, np.random.default_rng(1), ratio=0.2, block_length=7)
    assert np.all(mask.sum(axis=1) == 21)  # 3 blocks of 7
    edges = np.diff(mask.astype(np.int8), axis=1, prepend=0, append=0)
    runs = (edges == 1).sum(axis=1)
    assert runs.min() >= 1 and runs.max() <= 3  # touching blocks read as one run
    # every run is made of whole blocks
    for row in mask[:50]:
        starts = np.flatnonzero(np.diff(np.r_[0, row.astype(np.int8)]) == 1)
        ends = np.flatnonzero(np.diff(np.r_[row.astype(np.int8), 0]) == -1)
        assert np.all((ends - starts + 1) % 7 == 0)
    assert mask[:, 0].any() and mask[:, -1].any()  # blocks reach both ends of the window


def test_masks_are_a_function_of_the_generator_state():
    for kind in ("random", "block"):
        a = make_mask(8, 50, np.random.default_rng(4), kind=kind)
        b = make_mask(8, 50, np.random.default_rng(4), kind=kind)
        c = make_mask(8, 50, np.random.default_rng(5), kind=kind)
        assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_mask_settings_outside_their_range_are_config_errors():
    assert masked_count(10, 0.01) == 1 and masked_count(10, 0.99) == 9
    for ratio in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError, match="mask ratio"):
            random_mask(2, 10, np.random.default_rng(0), ratio)
    with pytest.raises(ConfigError, match="block_length"):
        block_mask(2, 10, np.random.default_rng(0), 0.3, block_length=0)
    with pytest.raises(ConfigError, match="mask kind"):
        make_mask(2, 10, np.random.default_rng(0), kind="span")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ model


def test_the_encoder_is_the_attribute_transfer_expects():
    model = MaskedAutoencoder(MaskedAEConfig(input_dim=11, hidden=8, num_layers=2))
    names = [k for k in model.state_dict() if k.startswith("encoder.")]
    assert "encoder.lstm.weight_ih_l0" in names and "encoder.lstm.bias_hh_l1_reverse" in names
    assert len(names) == 16


@pytest.mark.parametrize("token", ["learned", "zeros"])
def test_hidden_steps_cannot_leak_into_the_reconstruction(token):
    torch.manual_seed(0)
    model = MaskedAutoencoder(MaskedAEConfig(input_dim=5, hidden=6, num_layers=1, mask_token=token))
    model.eval()
    x = torch.randn(3, 20, 5)
    mask = torch.zeros(3, 20, dtype=torch.bool)
    mask[:, 5:9] = True
    changed = x.clone()
    changed[:, 5:9] += 100.0  # only hidden steps differ
    out = model(x, mask)
    assert out.shape == (3, 20, 5)
    assert torch.equal(out, model(changed, mask))
    assert not torch.equal(out, model(changed, torch.zeros_like(mask)))


def test_masked_mse_counts_only_hidden_steps():
    target = torch.zeros(1, 4, 2)
    reconstruction = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [9.0, 9.0], [0.0, 3.0]]])
    mask = torch.tensor([[True, True, False, True]])
    # per-step means over channels: 1, 2, (81 ignored), 4.5 -> mean over hidden steps 7.5 / 3
    assert masked_mse(reconstruction, target, mask).item() == pytest.approx(2.5)


# --------------------------------------------------------------------- streamed batches


def test_a_batch_is_the_normalised_relative_view_of_its_windows(corpus):
    source = _source(corpus, augment=None)
    assert isinstance(source, BatchSource) and len(source) == len(corpus)
    x, mask = source.batch(torch.tensor([3, 0, 7]), key=0)
    assert x.shape == (3, 105, 11) and x.dtype == torch.float32
    assert mask.shape == (3, 105) and mask.dtype == torch.bool and int(mask.sum()) == 3 * 16
    expected = (relative_windows(corpus.take([3, 0, 7])) - source.mean) / source.std
    assert np.allclose(x.numpy(), expected, atol=1e-6)
    sample = source.batch(torch.arange(len(source)), key=0)[0].numpy()
    assert np.allclose(sample.mean(axis=(0, 1)), 0.0, atol=0.05)


def test_batches_depend_on_their_key_only(corpus):
    source = _source(corpus, augment=AugmentConfig(), mask_kind="block")
    rows = torch.tensor([1, 2, 3, 4])
    a, b, c = source.batch(rows, 5), source.batch(rows, 5), source.batch(rows, 6)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])


def test_a_subset_is_a_seeded_sample_of_the_whole_corpus():
    subset = corpus_indices(1000, 100, seed=3)
    assert len(subset) == 100 == len(np.unique(subset)) and np.all(np.diff(subset) > 0)
    assert subset.max() > 500  # not just the start of the corpus
    assert np.array_equal(subset, corpus_indices(1000, 100, seed=3))
    assert np.array_equal(corpus_indices(50, None, 0), np.arange(50))


def test_the_trainer_lowers_the_masked_loss_over_a_streamed_corpus(corpus):
    source = _source(corpus, max_windows=256, augment=None)
    torch.manual_seed(0)
    model = MaskedAutoencoder(MaskedAEConfig(hidden=16, num_layers=1, decoder_hidden=16))
    initial = copy.deepcopy(model)
    summary = Trainer(epochs=4, batch_size=32, lr=3e-3, device="cpu").run(
        model, source, step=MaskedAEStep()
    )
    assert summary.n_train == 256 and len(summary.train_loss_history) == 4
    probe = source.batch(torch.arange(256), key=999)
    with torch.no_grad():
        before = MaskedAEStep()(initial.eval(), probe).item()
        after = MaskedAEStep()(model.eval(), probe).item()
    assert after < 0.95 * before  # random-walk returns set a high floor; the rest is learnt


def test_streamed_batches_do_not_depend_on_worker_processes(corpus):
    source = _source(corpus, max_windows=64, augment=AugmentConfig())
    weights = []
    for workers in (0, 1):
        torch.manual_seed(0)
        model = MaskedAutoencoder(MaskedAEConfig(hidden=4, num_layers=1, decoder_hidden=4))
        Trainer(epochs=1, batch_size=32, device="cpu", num_workers=workers).run(
            model, source, step=MaskedAEStep()
        )
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
