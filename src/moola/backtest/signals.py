"""Turn a classifier's probabilities into per-bar target positions for a backtest.

``prob[t]`` is the model's probability that price goes up, known at bar ``t``'s close. The
rule has hysteresis so that a probability hovering near a threshold does not trade every
bar: a long is entered when ``prob >= long_threshold`` and held until ``prob <
exit_threshold``; a short (only when ``short_threshold`` is given) is entered when ``prob <=
short_threshold`` and held until ``prob > exit_threshold``. A bar beyond the opposite
entry threshold flips the position directly. A ``nan`` probability (no prediction, e.g. a
model's warm-up) closes the position.

Sizing scales the direction: ``"fixed"`` holds ``fraction`` of equity; ``"vol_target"``
holds ``min(fraction, target_vol / realised_vol[t])`` where ``realised_vol[t]`` is the
annualised standard deviation of the last ``vol_lookback`` log returns of ``close`` up to
and including bar ``t``: only the past, so a position never depends on a later bar. Until
``vol_lookback`` returns exist the vol-targeted position is 0.

The state machine is a short numba loop: each bar's state depends on the previous one.
"""

from __future__ import annotations

import math
from typing import Literal

import numba
import numpy as np
import pandas as pd

from moola.core.errors import ConfigError

Sizing = Literal["fixed", "vol_target"]
_MAX_SHOWN = 5


@numba.njit(cache=True, nogil=True)
def _direction(prob: np.ndarray, long_entry: float, short_entry: float, exit_at: float):
    """-1 / 0 / +1 per bar from the hysteresis rule (short_entry = -inf disables shorts)."""
    out = np.zeros(prob.size, dtype=np.int8)
    state = 0
    for t in range(prob.size):
        p = prob[t]
        if np.isnan(p):
            state = 0
        elif p >= long_entry:
            state = 1
        elif p <= short_entry:
            state = -1
        elif (state == 1 and p < exit_at) or (state == -1 and p > exit_at):
            state = 0
        out[t] = state
    return out


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    text = ", ".join(str(int(r)) for r in rows[:_MAX_SHOWN])
    if rows.size > _MAX_SHOWN:
        text += f" and {rows.size - _MAX_SHOWN} more"
    return text


def _check_thresholds(long_threshold: float, short_threshold: float | None, exit_at: float):
    if not 0.0 < long_threshold <= 1.0:
        raise ConfigError(f"long_threshold must be in (0, 1], got {long_threshold}.")
    if short_threshold is not None and not 0.0 <= short_threshold < long_threshold:
        raise ConfigError(
            f"short_threshold must be in [0, long_threshold={long_threshold}), got "
            f"{short_threshold}; pass None for long-only signals."
        )
    low = short_threshold if short_threshold is not None else 0.0
    if not low <= exit_at <= long_threshold:
        raise ConfigError(
            f"exit_threshold must lie between short_threshold ({short_threshold}) and "
            f"long_threshold ({long_threshold}) so that an exit never re-enters; got {exit_at}."
        )


def realised_volatility(close: np.ndarray, *, lookback: int, periods_per_year: float) -> np.ndarray:
    """Annualised std (ddof=1) of the last ``lookback`` log returns ending at each bar;
    ``nan`` where fewer than ``lookback`` returns exist. Uses no bar after ``t``."""
    close = np.asarray(close, dtype=np.float64)
    log_ret = np.full(close.size, np.nan)
    if close.size > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ret[1:] = np.diff(np.log(close))
    std = pd.Series(log_ret).rolling(lookback, min_periods=lookback).std(ddof=1).to_numpy()
    return std * math.sqrt(periods_per_year)


def positions_from_probabilities(
    prob: np.ndarray | pd.Series,
    *,
    long_threshold: float = 0.55,
    short_threshold: float | None = None,
    exit_threshold: float = 0.5,
    sizing: Sizing = "fixed",
    fraction: float = 1.0,
    close: np.ndarray | pd.Series | None = None,
    target_vol: float = 0.15,
    vol_lookback: int = 20,
    periods_per_year: float = 252.0,
) -> np.ndarray:
    """Target positions (fractions of equity in [-1, 1]) from up-probabilities.

    Parameters
    ----------
    prob : array of float
        Probability of an up move per bar, in [0, 1]; ``nan`` means no prediction (flat).
    long_threshold, short_threshold, exit_threshold : float
        Entry levels and the exit level of the hysteresis rule (module notes);
        ``short_threshold=None`` (default) never goes short. Need
        ``short_threshold <= exit_threshold <= long_threshold``.
    sizing : "fixed" or "vol_target"
        Constant ``fraction``, or volatility targeting capped at ``fraction``.
    fraction : float, default 1.0
        Largest position, in (0, 1].
    close : array of float, optional
        Close prices aligned with ``prob``; required for ``"vol_target"``.
    target_vol : float, default 0.15
        Annualised volatility the position aims at (0.15 = 15%).
    vol_lookback : int, default 20
        Returns in the trailing volatility estimate (>= 2).
    periods_per_year : float, default 252
        Bars per year, to annualise the realised volatility.

    Raises ``ConfigError`` for out-of-range probabilities (naming the rows), thresholds,
    sizing options, or a ``close`` of the wrong length.
    """
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 1:
        raise ConfigError(f"prob must be one probability per bar (1-D), got shape {p.shape}.")
    bad = ~np.isnan(p) & ((p < 0.0) | (p > 1.0))
    if bad.any():
        raise ConfigError(
            f"Probabilities must lie in [0, 1]; rows {_rows(bad)} do not. Pass the positive "
            "class's probability (e.g. predict_proba(...)[:, 1]), not a logit or a score."
        )
    _check_thresholds(long_threshold, short_threshold, exit_threshold)
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}.")
    short_entry = -math.inf if short_threshold is None else float(short_threshold)
    direction = _direction(p, float(long_threshold), short_entry, float(exit_threshold))
    if sizing == "fixed":
        return direction.astype(np.float64) * fraction
    if sizing != "vol_target":
        raise ConfigError(f"sizing must be 'fixed' or 'vol_target', not {sizing!r}.")
    if close is None:
        raise ConfigError("sizing='vol_target' needs close=, the close prices aligned with prob.")
    close_arr = np.asarray(close, dtype=np.float64)
    if close_arr.shape != p.shape:
        raise ConfigError(
            f"close has {close_arr.size} values but prob has {p.size}; align them bar by bar."
        )
    if vol_lookback < 2 or target_vol <= 0 or periods_per_year <= 0:
        raise ConfigError(
            "vol_target sizing needs vol_lookback >= 2, target_vol > 0 and periods_per_year "
            f"> 0; got {vol_lookback}, {target_vol} and {periods_per_year}."
        )
    vol = realised_volatility(close_arr, lookback=vol_lookback, periods_per_year=periods_per_year)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.minimum(fraction, target_vol / vol)  # vol 0 -> inf -> capped at fraction
    scale = np.where(np.isnan(scale), 0.0, scale)
    return direction.astype(np.float64) * scale
