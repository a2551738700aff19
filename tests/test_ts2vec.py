"""TS2Vec: the dilated-convolution encoder, the hierarchical contrastive loss, the
overlapping crops, and pretraining through the one training loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from moola.core.errors import ConfigError
from moola.models.nn.ts2vec_encoder import TS2VecEncoder, TS2VecEncoderConfig
from moola.pretrain.ts2vec import (
    CropPair,
    TS2VecConfig,
    TS2VecModel,
    TS2VecStep,
    crop_views,
    hierarchical_contrastive_loss,
    instance_contrastive_loss,
    random_crops,
    temporal_contrastive_loss,
)
from moola.training.trainer import Trainer

TINY = {"hidden": 16, "repr_dim": 16, "depth": 2, "dropout": 0.0}


def _x(batch: int, T: int, D: int = 11, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, T, D, generator=torch.Generator().manual_seed(seed))


def _corpus(n: int = 192, T: int = 32, seed: int = 0) -> np.ndarray:
    """``(n, T, 11)`` noisy sines, each window with its own frequency, phase and channel
    amplitudes: structure a contrastive encoder can learn to tell apart."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.03, 0.3, size=(n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    amp = rng.uniform(0.5, 2.0, size=(n, 1, 11))
    t, c = np.arange(T).reshape(1, T, 1), np.arange(11).reshape(1, 1, 11)
    noise = 0.1 * rng.normal(size=(n, T, 11))
    return (amp * np.sin(2 * np.pi * freq * t + phase + c) + noise).astype(np.float32)


# ----------------------------------------------------------------------------- encoder


def test_encoder_shapes_and_encode_is_the_max_over_time():
    torch.manual_seed(0)
    encoder = TS2VecEncoder(TS2VecEncoderConfig(**TINY)).eval()
    x = _x(3, 20)
    with torch.no_grad():
        z = encoder(x)
        pooled = encoder.encode(x)
    assert z.shape == (3, 20, 16)
    torch.testing.assert_close(pooled, z.max(dim=1).values)


def test_default_encoder_size_matches_the_conv_formula():
    def conv(cin: int, cout: int, k: int) -> int:
        return cin * cout * k + cout

    # Linear 11 -> 64; 10 blocks 64 -> 64 (two k=3 convs); final block 64 -> 320 with
    # two k=3 convs and a 1x1 projector of the residual
    expected = (11 * 64 + 64) + 10 * 2 * conv(64, 64, 3)
    expected += conv(64, 320, 3) + conv(320, 320, 3) + conv(64, 320, 1)
    encoder = TS2VecEncoder(TS2VecEncoderConfig())
    assert sum(p.numel() for p in encoder.parameters()) == expected == 637_888
    assert "637,888 parameters" in TS2VecEncoder.__doc__


def test_receptive_field_reaches_exactly_as_far_as_stated():
    # depth 1: blocks with dilations 1 and 2, two k=3 convs each: 1 + 2*(1+1+2+2) = 13 steps
    config = TS2VecEncoderConfig(**{**TINY, "depth": 1})
    assert config.receptive_field == 13
    torch.manual_seed(0)
    encoder = TS2VecEncoder(config).eval()
    x = _x(1, 41)
    changed = x.clone()
    changed[0, 20] += 3.0
    with torch.no_grad():
        moved = (encoder(changed) - encoder(x)).abs().amax(dim=-1)[0] > 1e-6  # (T,)
    assert moved[14:27].all()  # steps 20 - 6 .. 20 + 6 see step 20
    assert not moved[:14].any()
    assert not moved[27:].any()


def test_long_dilations_give_the_plain_convolution_result():
    # depth 5 on 8 steps: dilations 8..32 reach past both ends (shortcut path)
    torch.manual_seed(0)
    encoder = TS2VecEncoder(TS2VecEncoderConfig(**{**TINY, "depth": 5})).eval()
    x = _x(2, 8)
    with torch.no_grad():
        h = encoder.input_fc(x).transpose(1, 2)
        for block in encoder.blocks:
            residual = h if block.projector is None else block.projector(h)
            h = block.conv2(F.gelu(block.conv1(F.gelu(h)))) + residual
        torch.testing.assert_close(encoder(x), h.transpose(1, 2), rtol=1e-5, atol=1e-6)


def test_masking_is_random_in_training_and_off_in_eval():
    torch.manual_seed(0)
    encoder = TS2VecEncoder(TS2VecEncoderConfig(**TINY))
    x = _x(2, 12)
    encoder.train()
    assert not torch.equal(encoder(x), encoder(x))  # a fresh binomial mask per call
    encoder.eval()
    torch.testing.assert_close(encoder(x), encoder(x))
    keep = torch.ones(2, 12, dtype=torch.bool)
    torch.testing.assert_close(encoder(x), encoder(x, keep))
    # every step masked: the projected input is all zeros, whatever x was
    none = torch.zeros(2, 12, dtype=torch.bool)
    torch.testing.assert_close(encoder(x, none), encoder(_x(2, 12, seed=5), none))


def test_encoder_rejects_wrong_channels_and_mask_shapes():
    encoder = TS2VecEncoder(TS2VecEncoderConfig(**TINY))
    with pytest.raises(ConfigError, match="input_dim=4"):
        encoder(_x(2, 10, D=4))
    with pytest.raises(ConfigError, match=r"\(2, 10\)"):
        encoder(_x(2, 10), torch.ones(2, 9, dtype=torch.bool))
    with pytest.raises(ConfigError, match="mask_prob"):
        TS2VecEncoderConfig(mask_prob=1.0)


# ----------------------------------------------------------------------------- loss


def test_instance_loss_by_hand():
    # two windows, one step, orthogonal unit vectors, identical views: each row's
    # candidates have similarities {0, 1 (positive), 0}, so each term is log(1 + 2/e)
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    z = torch.stack([e1, e2]).unsqueeze(1)  # (B=2, T=1, C=2)
    expected = math.log(1 + 2 / math.e)
    assert instance_contrastive_loss(z, z).item() == pytest.approx(expected, rel=1e-6)
    # length 1: only alpha * instance, one scale
    assert hierarchical_contrastive_loss(z, z, alpha=0.5).item() == pytest.approx(
        0.5 * expected, rel=1e-6
    )


def test_temporal_loss_by_hand_and_scale_averaging():
    # one window, two steps e1, e2: the temporal term mirrors the instance one above; a
    # batch of one has no instance term; scales: T=2 (temporal) and T=1 (nothing) -> / 2
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B=1, T=2, C=2)
    expected = math.log(1 + 2 / math.e)
    assert temporal_contrastive_loss(z, z).item() == pytest.approx(expected, rel=1e-6)
    assert instance_contrastive_loss(z, z).item() == 0.0
    assert hierarchical_contrastive_loss(z, z, alpha=0.5).item() == pytest.approx(
        0.5 * expected / 2, rel=1e-6
    )
    # temporal_unit=1 skips the temporal term at scale 0: nothing is left
    assert hierarchical_contrastive_loss(z, z, temporal_unit=1).item() == 0.0


def test_matching_views_score_lower_than_shuffled_ones():
    for seed in range(5):
        z = _x(8, 16, D=32, seed=seed)
        noisy = z + 0.1 * _x(8, 16, D=32, seed=seed + 100)
        shuffled = z[torch.randperm(8, generator=torch.Generator().manual_seed(seed))]
        shuffled = shuffled[:, torch.randperm(16, generator=torch.Generator().manual_seed(seed))]
        matched = hierarchical_contrastive_loss(z, noisy).item()
        assert matched < hierarchical_contrastive_loss(z, shuffled).item()


def test_loss_ignores_the_order_of_windows_in_the_batch():
    z1, z2 = _x(6, 12, D=8, seed=1), _x(6, 12, D=8, seed=2)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(
        hierarchical_contrastive_loss(z1, z2), hierarchical_contrastive_loss(z1[perm], z2[perm])
    )


def test_loss_rejects_misaligned_views():
    with pytest.raises(ConfigError, match="one shape"):
        hierarchical_contrastive_loss(_x(2, 5, 3), _x(2, 6, 3))


# ----------------------------------------------------------------------------- crops


def test_crops_share_the_overlap_on_known_indices():
    T = 12
    x = torch.arange(3 * T, dtype=torch.float32).reshape(3, T, 1)  # x[b, t] = 12 b + t
    crops = CropPair(left=3, right=7, eleft=1, eright=9, offsets=torch.tensor([0, -1, 3]))
    view1, view2 = crop_views(x, crops)
    # view 1 = [offset + 1, offset + 7), view 2 = [offset + 3, offset + 9)
    expected1 = [[1, 2, 3, 4, 5, 6], [12, 13, 14, 15, 16, 17], [28, 29, 30, 31, 32, 33]]
    expected2 = [[3, 4, 5, 6, 7, 8], [14, 15, 16, 17, 18, 19], [30, 31, 32, 33, 34, 35]]
    assert view1[..., 0].tolist() == expected1
    assert view2[..., 0].tolist() == expected2
    assert crops.overlap == 4
    assert (
        view1[:, -4:, 0].tolist()
        == view2[:, :4, 0].tolist()
        == [
            [3, 4, 5, 6],
            [14, 15, 16, 17],
            [30, 31, 32, 33],
        ]
    )


def test_random_crops_stay_inside_the_window_and_overlap_enough():
    T, B = 20, 16
    x = torch.arange(T, dtype=torch.float32).repeat(B, 1).unsqueeze(-1)  # x[b, t] = t
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        crops = random_crops(B, T, min_crop=4, generator=generator)
        assert 0 <= crops.eleft <= crops.left < crops.right <= crops.eright <= T
        assert crops.overlap >= 4
        for start, length in (crops.view1(), crops.view2()):
            assert (start >= 0).all() and (start + length <= T).all()
        view1, view2 = crop_views(x, crops)
        assert torch.equal(view1[:, -crops.overlap :], view2[:, : crops.overlap])


def test_windows_shorter_than_the_smallest_crop_are_a_config_error():
    with pytest.raises(ConfigError, match="temporal_unit"):
        random_crops(4, 3, min_crop=4)
    with pytest.raises(ConfigError, match="alpha"):
        TS2VecConfig(alpha=1.5)


# ----------------------------------------------------------------------------- step & loop


def _pretrain(seed: int, epochs: int = 5, X: np.ndarray | None = None):
    torch.manual_seed(seed)
    model = TS2VecModel(TS2VecEncoderConfig(**TINY))
    X = _corpus() if X is None else X
    trainer = Trainer(epochs=epochs, batch_size=32, lr=3e-3, seed=seed, device="cpu")
    summary = trainer.run(model, (X,), step=TS2VecStep())
    return model, summary


def test_pretraining_loss_is_finite_and_decreases():
    X = _corpus()
    step = TS2VecStep()  # eval mode: fixed crops, no masking, so before and after compare
    torch.manual_seed(0)
    with torch.no_grad():
        before = step(TS2VecModel(TS2VecEncoderConfig(**TINY)).eval(), (torch.from_numpy(X),))
    model, summary = _pretrain(seed=0, epochs=6, X=X)  # 6 x 6 = 36 optimiser steps
    with torch.no_grad():
        after = step(model.eval(), (torch.from_numpy(X),))
    losses = summary.train_loss_history
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert after.item() < 0.9 * before.item()


def test_same_seed_same_encoder_and_losses():
    X = _corpus(n=96)
    model_a, summary_a = _pretrain(seed=3, epochs=2, X=X)
    model_b, summary_b = _pretrain(seed=3, epochs=2, X=X)
    assert summary_a.train_loss_history == summary_b.train_loss_history
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, model_b.state_dict()[key]), key
    _, summary_c = _pretrain(seed=4, epochs=2, X=X)
    assert summary_c.train_loss_history != summary_a.train_loss_history


def test_pretrained_tensors_are_named_like_the_encoder_attribute():
    model = TS2VecModel(TS2VecEncoderConfig(**TINY))
    names = set(model.state_dict())
    assert "encoder.input_fc.weight" in names
    assert "encoder.blocks.0.conv1.weight" in names
    assert all(name.startswith("encoder.") for name in names)


def test_eval_step_is_repeatable_and_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    model = TS2VecModel(TS2VecEncoderConfig(**TINY)).eval()
    step = TS2VecStep(TS2VecConfig(eval_seed=1))
    batch = (torch.from_numpy(_corpus(n=8)),)
    torch.manual_seed(123)
    with torch.no_grad():
        first, second = step(model, batch), step(model, batch)
    after = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(1))  # no draws from the global generator
    assert torch.isfinite(first) and first.item() == second.item()
