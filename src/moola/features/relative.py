"""The scale-free view of a bar: its shape and its move, with the price level divided out.

Neural models and pooled tabular models must not learn the price level (NQ at 15,000 and
EURUSD at 1.08 should look alike when they move alike), so each bar is described by 11
numbers that do not change when all prices are multiplied by a constant:

==========================  =====================================================
``rel_open``                log(open / previous close): the gap into the bar
``rel_high``                log(high / previous close)
``rel_low``                 log(low / previous close)
``rel_close``               log(close / previous close): the bar's log return
``rel_range``               log(high / low)
``rel_body``                (close - open) / (high - low), in [-1, 1]
``rel_upper_wick``          (high - max(open, close)) / (high - low), in [0, 1]
``rel_lower_wick``          (min(open, close) - low) / (high - low), in [0, 1]
``rel_close_pos``           (close - low) / (high - low), in [0, 1]
``rel_log_volume_change``   log((1 + volume) / (1 + previous volume))
``rel_true_range``          log(max(high, prev close) / min(low, prev close))
==========================  =====================================================

A bar with no range (high == low) has ``rel_body``, both wicks 0 and ``rel_close_pos``
0.5 (the close sits in the middle of a zero-width range), so no value is NaN after the
first bar. Volume changes use ``1 + volume`` so that a bar with no volume is finite.

As a bar feature (``relative``), the first bar has no previous bar: the six columns
that need one are NaN there. For windows (``relative_windows``, the input of the neural
models) each window must stand alone, so its first bar is described relative to its own
open (previous close := own open, previous volume := own volume): its ``rel_open`` and
``rel_log_volume_change`` are 0.

Written by hand: TA-Lib has no scale-free bar encoding, and this is a few numpy lines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError
from moola.features.base import Feature, register_feature
from moola.features.price import column, frame

__all__ = ["RELATIVE_COLUMNS", "Relative", "relative_windows"]

RELATIVE_COLUMNS: tuple[str, ...] = (
    "rel_open",
    "rel_high",
    "rel_low",
    "rel_close",
    "rel_range",
    "rel_body",
    "rel_upper_wick",
    "rel_lower_wick",
    "rel_close_pos",
    "rel_log_volume_change",
    "rel_true_range",
)


def _relative(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    previous_close: np.ndarray,
    previous_volume: np.ndarray,
) -> list[np.ndarray]:
    """The 11 columns (``RELATIVE_COLUMNS`` order) for arrays of any equal shape."""
    span = high - low
    flat = span == 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        share = 1.0 / np.where(flat, 1.0, span)
        share[flat] = 0.0
        log_previous = np.log(previous_close)
        log_high, log_low = np.log(high), np.log(low)
        true_high = np.maximum(log_high, log_previous)
        true_low = np.minimum(log_low, log_previous)
        close_pos = (close - low) * share
        close_pos[flat] = 0.5
        return [
            np.log(open_) - log_previous,
            log_high - log_previous,
            log_low - log_previous,
            np.log(close) - log_previous,
            log_high - log_low,
            (close - open_) * share,
            (high - np.maximum(open_, close)) * share,
            (np.minimum(open_, close) - low) * share,
            close_pos,
            np.log1p(volume) - np.log1p(previous_volume),
            true_high - true_low,
        ]


@register_feature
class Relative(Feature):
    """The 11 scale-free columns of each bar (``RELATIVE_COLUMNS``, see the module
    docstring); the first bar's columns that need a previous bar are NaN."""

    name = "relative"

    def columns(self) -> tuple[str, ...]:
        return RELATIVE_COLUMNS

    def lookback(self) -> int:
        return 2

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        o, h, low, c, v = (
            column(bars, name) for name in ("open", "high", "low", "close", "volume")
        )
        previous_close = np.concatenate([[np.nan], c[:-1]]) if len(c) else c
        previous_volume = np.concatenate([[np.nan], v[:-1]]) if len(v) else v
        return frame(
            bars, self.columns(), _relative(o, h, low, c, v, previous_close, previous_volume)
        )


def relative_windows(windows: np.ndarray, volume: np.ndarray | None = None) -> np.ndarray:
    """The scale-free view of each window: ``(N, T, 4|5)`` -> ``(N, T, 11)`` float32.

    ``windows`` holds open, high, low, close (and optionally volume as a fifth channel)
    per bar; ``volume``, shape ``(N, T)``, may be given separately instead. Channels are
    ``RELATIVE_COLUMNS``; each window is described on its own, its first bar relative to
    its own open (see the module docstring). Without volume, ``rel_log_volume_change`` is 0.
    """
    values = np.asarray(windows, dtype=np.float64)
    if values.ndim != 3 or values.shape[2] not in (4, 5):
        raise ConfigError(
            f"relative_windows needs windows shaped (N, T, 4) open/high/low/close or "
            f"(N, T, 5) with volume last; got shape {values.shape}."
        )
    if values.shape[2] == 5:
        if volume is not None:
            raise ConfigError(
                "relative_windows got volume twice: as a fifth channel and as `volume`; "
                "pass one of them."
            )
        volume = values[:, :, 4]
    if volume is None:
        volume = np.zeros(values.shape[:2])
    volume = np.asarray(volume, dtype=np.float64)
    if volume.shape != values.shape[:2]:
        raise ConfigError(
            f"relative_windows: volume has shape {volume.shape}, expected {values.shape[:2]} "
            "(one value per window and bar)."
        )
    o, h, low, c = (values[:, :, i] for i in range(4))
    previous_close = np.concatenate([o[:, :1], c[:, :-1]], axis=1)
    previous_volume = np.concatenate([volume[:, :1], volume[:, :-1]], axis=1)
    channels = _relative(o, h, low, c, volume, previous_close, previous_volume)
    return np.stack(channels, axis=-1).astype(np.float32)
