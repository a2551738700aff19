"""Time-series augmentations applied on the fly to ``(B, T, D)`` batches.

Pretraining sees each window many times; small, label-free distortions make the encoder
learn what a window's shape is rather than its exact numbers. The five transforms are the
standard ones of Um et al. (2017, "Data augmentation of wearable sensor data") and Iwana &
Uchida (2021): jitter (additive noise), scaling (one factor per window and channel),
magnitude warp (a smooth random curve multiplies each channel), time warp (a smooth,
monotone distortion of time) and window slicing (crop a random span and stretch it back to
``T`` steps).

Each transform takes a ``numpy.random.Generator`` and draws from it only, so a batch is a
pure function of its inputs and the generator's state. Strength zero (``sigma=0`` or
``ratio=1``) returns the input unchanged. ``Augmenter(config)`` composes them, applying each
to every window independently with its probability.

Written by hand: tsaug and tsai implement these one window at a time (or need their own
tensor types); these are a few vectorised numpy lines over the whole batch, with smooth
curves from ``scipy.interpolate.CubicSpline`` as in the reference implementations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.interpolate import CubicSpline

from moola.core.errors import ConfigError
from moola.core.settings import parse_config

__all__ = [
    "AugmentConfig",
    "Augmenter",
    "jitter",
    "magnitude_warp",
    "scaling",
    "time_warp",
    "time_warp_path",
    "window_slice",
]

_MIN_SPEED = 0.05  # floor of time warp's local speed: keeps the warped time strictly rising


def _check(x: np.ndarray) -> np.ndarray:
    values = np.asarray(x)
    if values.ndim != 3 or values.shape[1] < 2:
        raise ConfigError(
            f"Augmentations take batches shaped (B, T, D) with T >= 2; got shape {values.shape}."
        )
    return values


def _check_sigma(sigma: float, name: str) -> None:
    if not sigma >= 0:
        raise ConfigError(f"{name} sigma must be >= 0 (got {sigma}); 0 turns it off.")


def jitter(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.1) -> np.ndarray:
    """``x`` plus Gaussian noise of standard deviation ``sigma`` at every value."""
    x = _check(x)
    _check_sigma(sigma, "jitter")
    if sigma == 0:
        return x.copy()
    return (x + rng.normal(0.0, sigma, size=x.shape)).astype(x.dtype, copy=False)


def scaling(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.1) -> np.ndarray:
    """``x`` times one factor ~ N(1, sigma^2) per window and channel."""
    x = _check(x)
    _check_sigma(sigma, "scaling")
    if sigma == 0:
        return x.copy()
    factors = rng.normal(1.0, sigma, size=(x.shape[0], 1, x.shape[2]))  # (B, 1, D)
    return (x * factors).astype(x.dtype, copy=False)


def _smooth_curves(
    rng: np.random.Generator, shape: tuple[int, int, int], sigma: float, knots: int
) -> np.ndarray:
    """Cubic splines through ``knots + 2`` evenly spaced values ~ N(1, sigma^2):
    ``(B, T, C)`` curves, one per window and channel, smooth in time."""
    batch, length, channels = shape
    at = np.linspace(0.0, length - 1.0, knots + 2)
    values = rng.normal(1.0, sigma, size=(batch, knots + 2, channels))
    return CubicSpline(at, values, axis=1)(np.arange(length, dtype=np.float64))


def magnitude_warp(
    x: np.ndarray, rng: np.random.Generator, sigma: float = 0.15, knots: int = 4
) -> np.ndarray:
    """``x`` times a smooth random curve (a spline through ``knots`` interior values ~
    N(1, sigma^2)), one curve per window and channel."""
    x = _check(x)
    _check_sigma(sigma, "magnitude warp")
    if sigma == 0:
        return x.copy()
    return (x * _smooth_curves(rng, x.shape, sigma, knots)).astype(x.dtype, copy=False)


def _resample(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``x`` ``(B, T, D)`` read at fractional time ``positions`` ``(B, T_out)`` in
    ``[0, T - 1]`` by linear interpolation -> ``(B, T_out, D)``; integer positions are exact."""
    length = x.shape[1]
    left = np.clip(np.floor(positions).astype(np.int64), 0, length - 2)  # (B, T_out)
    frac = (positions - left)[:, :, None]  # (B, T_out, 1), in [0, 1]
    lo = np.take_along_axis(x, left[:, :, None], axis=1)
    hi = np.take_along_axis(x, left[:, :, None] + 1, axis=1)
    return (lo * (1.0 - frac) + hi * frac).astype(x.dtype, copy=False)


def time_warp_path(
    batch: int, length: int, rng: np.random.Generator, sigma: float = 0.15, knots: int = 4
) -> np.ndarray:
    """Warped times ``(B, T)``: strictly rising from exactly 0 to exactly ``T - 1``.

    Local speed is a smooth random curve ~ N(1, sigma^2) (floored at 0.05); time is its
    running sum, rescaled to span the window. ``sigma=0`` gives ``0, 1, ..., T - 1``.
    """
    _check_sigma(sigma, "time warp")
    if sigma == 0:
        return np.broadcast_to(np.arange(length, dtype=np.float64), (batch, length)).copy()
    speed = np.maximum(_smooth_curves(rng, (batch, length, 1), sigma, knots)[:, :, 0], _MIN_SPEED)
    elapsed = np.concatenate([np.zeros((batch, 1)), np.cumsum(speed[:, 1:], axis=1)], axis=1)
    path = elapsed / elapsed[:, -1:] * (length - 1)
    path[:, -1] = length - 1  # exactly, whatever the rounding
    return path


def time_warp(
    x: np.ndarray, rng: np.random.Generator, sigma: float = 0.15, knots: int = 4
) -> np.ndarray:
    """``x`` read along a smooth monotone warp of time (``time_warp_path``): some spans
    play faster, others slower; the first and last steps stay where they are."""
    x = _check(x)
    if sigma == 0:
        _check_sigma(sigma, "time warp")
        return x.copy()
    return _resample(x, time_warp_path(x.shape[0], x.shape[1], rng, sigma, knots))


def window_slice(x: np.ndarray, rng: np.random.Generator, ratio: float = 0.9) -> np.ndarray:
    """A random span of ``round(ratio * T)`` steps of each window, stretched back to ``T``
    steps by linear interpolation (``ratio=1`` returns ``x``)."""
    x = _check(x)
    if not 0 < ratio <= 1:
        raise ConfigError(f"window slice ratio must be in (0, 1] (got {ratio}); 1 turns it off.")
    batch, length = x.shape[:2]
    span = min(length, max(2, round(ratio * length)))
    if span == length:
        return x.copy()
    starts = rng.integers(0, length - span + 1, size=(batch, 1))  # (B, 1)
    positions = starts + np.linspace(0.0, span - 1.0, length)[None, :]  # (B, T)
    return _resample(x, positions)


class AugmentConfig(BaseModel):
    """Which augmentations ``Augmenter`` applies, how often and how strongly.

    Each ``*_p`` is the probability that a window gets that transform (independently per
    window and transform); 0 turns it off. Strengths are in the units of the (normalised)
    inputs. Frozen; unknown keys are errors.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    jitter_p: float = Field(0.5, ge=0, le=1)
    jitter_sigma: float = Field(0.1, ge=0)
    scaling_p: float = Field(0.5, ge=0, le=1)
    scaling_sigma: float = Field(0.1, ge=0)
    magnitude_warp_p: float = Field(0.3, ge=0, le=1)
    magnitude_warp_sigma: float = Field(0.15, ge=0)
    time_warp_p: float = Field(0.3, ge=0, le=1)
    time_warp_sigma: float = Field(0.15, ge=0)
    window_slice_p: float = Field(0.3, ge=0, le=1)
    window_slice_ratio: float = Field(0.9, gt=0, le=1)
    knots: int = Field(4, ge=1, description="Interior knots of the warp curves.")


class Augmenter:
    """Applies the augmentations of ``config`` to ``(B, T, D)`` batches.

    Order: window slice, time warp (time), magnitude warp, scaling (amplitude), jitter
    (noise). ``augmenter(x, rng)`` returns a new float array; ``x`` is not changed.
    """

    def __init__(self, config: AugmentConfig | dict[str, Any] | None = None) -> None:
        if config is None:
            config = AugmentConfig()
        elif isinstance(config, dict):
            config = parse_config(AugmentConfig, config, where="augmentation config")
        self.config = config

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.config
        out = np.array(_check(x), copy=True)
        steps = (
            (c.window_slice_p, lambda v: window_slice(v, rng, c.window_slice_ratio)),
            (c.time_warp_p, lambda v: time_warp(v, rng, c.time_warp_sigma, c.knots)),
            (c.magnitude_warp_p, lambda v: magnitude_warp(v, rng, c.magnitude_warp_sigma, c.knots)),
            (c.scaling_p, lambda v: scaling(v, rng, c.scaling_sigma)),
            (c.jitter_p, lambda v: jitter(v, rng, c.jitter_sigma)),
        )
        for probability, transform in steps:
            if probability <= 0:
                continue
            chosen = rng.random(out.shape[0]) < probability  # (B,)
            if chosen.any():
                out[chosen] = transform(out[chosen])
        return out

    def __repr__(self) -> str:
        return f"Augmenter({self.config!r})"
