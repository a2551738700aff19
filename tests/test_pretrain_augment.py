"""Augmentations: shapes, determinism, identity at zero strength, time warp's time axis."""

from __future__ import annotations

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.pretrain.augment import (
    AugmentConfig,
    Augmenter,
    jitter,
    magnitude_warp,
    scaling,
    time_warp,
    time_warp_path,
    window_slice,
)

TRANSFORMS = {
    "jitter": lambda x, rng, s: jitter(x, rng, s),
    "scaling": lambda x, rng, s: scaling(x, rng, s),
    "magnitude_warp": lambda x, rng, s: magnitude_warp(x, rng, s),
    "time_warp": lambda x, rng, s: time_warp(x, rng, s),
    "window_slice": lambda x, rng, s: window_slice(x, rng, 1.0 - s),
}


def _batch(b: int = 16, t: int = 50, d: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(b, t, d)).astype(np.float32)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_each_transform_keeps_shape_and_dtype_and_leaves_its_input_alone(name):
    x = _batch()
    before = x.copy()
    out = TRANSFORMS[name](x, np.random.default_rng(1), 0.2)
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.array_equal(x, before)
    assert not np.array_equal(out, x)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_same_generator_state_gives_the_same_batch(name):
    x = _batch()
    first = TRANSFORMS[name](x, np.random.default_rng(7), 0.2)
    again = TRANSFORMS[name](x, np.random.default_rng(7), 0.2)
    other = TRANSFORMS[name](x, np.random.default_rng(8), 0.2)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_zero_strength_is_the_identity(name):
    x = _batch()
    assert np.array_equal(TRANSFORMS[name](x, np.random.default_rng(0), 0.0), x)


def test_augmenter_at_zero_strength_or_zero_probability_is_the_identity():
    x = _batch()
    zero_strength = AugmentConfig(
        jitter_p=1,
        jitter_sigma=0,
        scaling_p=1,
        scaling_sigma=0,
        magnitude_warp_p=1,
        magnitude_warp_sigma=0,
        time_warp_p=1,
        time_warp_sigma=0,
        window_slice_p=1,
        window_slice_ratio=1,
    )
    never = AugmentConfig(
        jitter_p=0, scaling_p=0, magnitude_warp_p=0, time_warp_p=0, window_slice_p=0
    )
    for config in (zero_strength, never):
        assert np.array_equal(Augmenter(config)(x, np.random.default_rng(0)), x)


def test_time_warp_path_is_strictly_rising_from_first_to_last_step():
    path = time_warp_path(200, 105, np.random.default_rng(3), sigma=0.5)
    assert path.shape == (200, 105)
    assert np.all(path[:, 0] == 0.0) and np.all(path[:, -1] == 104.0)
    assert np.all(np.diff(path, axis=1) > 0)
    assert np.abs(path - np.arange(105)).max() > 1.0  # it does warp


def test_time_warp_keeps_the_endpoints_and_the_order_of_a_rising_series():
    ramp = np.broadcast_to(np.arange(60, dtype=np.float32)[None, :, None], (8, 60, 2)).copy()
    out = time_warp(ramp, np.random.default_rng(0), sigma=0.3)
    assert np.array_equal(out[:, 0], ramp[:, 0]) and np.array_equal(out[:, -1], ramp[:, -1])
    assert np.all(np.diff(out, axis=1) > 0)  # a monotone time warp keeps a ramp rising
    assert not np.allclose(out, ramp)


def test_window_slice_stretches_a_crop_of_the_window_back_to_full_length():
    # On a ramp x[t] = t, a crop of L steps at s stretched to T steps is the line from s to
    # s + L - 1 with slope (L - 1) / (T - 1).
    T, ratio = 40, 0.75
    L = round(ratio * T)
    ramp = np.broadcast_to(np.arange(T, dtype=np.float64)[None, :, None], (32, T, 1)).copy()
    out = window_slice(ramp, np.random.default_rng(5), ratio)[:, :, 0]
    starts = out[:, 0]
    assert np.all(starts == np.round(starts)) and starts.min() >= 0 and starts.max() <= T - L
    assert np.allclose(out[:, -1], starts + L - 1)
    assert np.allclose(np.diff(out, axis=1), (L - 1) / (T - 1))
    assert len(np.unique(starts)) > 1


def test_scaling_multiplies_each_window_and_channel_by_one_factor():
    x = np.abs(_batch()) + 1.0
    out = scaling(x, np.random.default_rng(0), sigma=0.2)
    factors = out / x
    assert np.allclose(factors, factors[:, :1, :], rtol=1e-5)
    assert factors[:, 0, :].std() > 0.05


def test_jitter_adds_noise_of_the_requested_size():
    x = np.zeros((64, 100, 4), dtype=np.float32)
    noise = jitter(x, np.random.default_rng(0), sigma=0.1)
    assert abs(float(noise.std()) - 0.1) < 0.005 and abs(float(noise.mean())) < 0.005


def test_magnitude_warp_multiplies_by_a_smooth_curve_around_one():
    ones = np.ones((32, 105, 2), dtype=np.float64)
    curve = magnitude_warp(ones, np.random.default_rng(0), sigma=0.15)
    assert abs(curve.mean() - 1.0) < 0.05
    # It varies over the window (range ~0.4) but slowly from step to step (~0.01): white
    # noise of the same size would change as much from one step to the next as overall.
    steps = np.median(np.abs(np.diff(curve, axis=1)))
    ranges = np.median(np.ptp(curve, axis=1))
    assert ranges > 0.2 and steps < ranges / 20


def test_augmenter_applies_each_transform_to_about_its_share_of_windows():
    x = _batch(b=2000, t=20, d=2)
    config = AugmentConfig(
        jitter_p=0.25, scaling_p=0, magnitude_warp_p=0, time_warp_p=0, window_slice_p=0
    )
    out = Augmenter(config)(x, np.random.default_rng(0))
    changed = np.any(out != x, axis=(1, 2)).mean()
    assert 0.2 < changed < 0.3
    again = Augmenter(config)(x, np.random.default_rng(0))
    assert np.array_equal(out, again)


def test_bad_shapes_and_settings_are_config_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="B, T, D"):
        jitter(np.zeros((5, 3)), rng)
    with pytest.raises(ConfigError, match="sigma"):
        scaling(_batch(), rng, sigma=-1)
    with pytest.raises(ConfigError, match="ratio"):
        window_slice(_batch(), rng, ratio=0)
    with pytest.raises(ConfigError, match="unknown key 'jitter'"):
        Augmenter({"jitter": 0.1})
