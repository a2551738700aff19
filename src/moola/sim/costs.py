"""Trading costs: spread, slippage and commission, each a tiny model with one method.

Fill price of a market or stop order with reference price ``p`` (the open, or the stop
level) and quantity ``q`` at bar ``i``::

    buy:  p + half_spread[i] + slippage_i(p, q)
    sell: p - half_spread[i] - slippage_i(p, q)

and the order pays ``commission.fee(q, fill_price, point_value)``. Limit orders fill at
their limit (or a better open) and pay commission only: see ``moola.sim.orders``.

Contracts (all models are frozen dataclasses; arrays are float64):

- ``SpreadModel.half_spread(n_bars) -> array`` of shape ``(1,)`` (constant, broadcast) or
  ``(n_bars,)``: half the bid-ask spread in price units, paid on every market/stop fill.
- ``SlippageModel.terms(high, low, close, volume) -> SlippageTerms`` of three per-bar
  arrays (each shape ``(1,)`` or ``(n,)``) such that the per-unit slippage in price units is
  ``rate[i] * p + fixed[i] + impact[i] * sqrt(|q|)``. Every term at bar ``i`` is built only
  from bars ``< i``: a fill at bar ``i``'s open cannot know that bar's range or volume.
- ``CommissionModel.fee(qty, price, point_value) -> fee`` in account currency, elementwise.

The engines precompute these arrays once, so the vectorised kernel reads plain arrays.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError


def _as_float_array(value: float | np.ndarray, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.ndim != 1 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ConfigError(f"{name} must be finite, non-negative numbers; got {value!r}.")
    return arr


@dataclass(frozen=True)
class SpreadModel:
    """Bid-ask spread in price units: one number, or one per bar (e.g. from quote data).

    Half of it is paid on each market or stop fill.
    """

    spread: float | np.ndarray = 0.0

    def half_spread(self, n_bars: int) -> np.ndarray:
        """Per-bar half spread, shape ``(1,)`` for a constant or ``(n_bars,)``."""
        arr = _as_float_array(self.spread, "SpreadModel.spread")
        if arr.shape[0] not in (1, n_bars):
            raise ConfigError(
                f"SpreadModel.spread has {arr.shape[0]} values but the bars have {n_bars} "
                f"rows; pass one number or one value per bar."
            )
        return arr * 0.5


class SlippageTerms(NamedTuple):
    """Per-bar slippage coefficients; each array has shape ``(1,)`` or ``(n,)``."""

    rate: np.ndarray
    fixed: np.ndarray
    impact: np.ndarray

    def per_unit(self, i: int, price: float, qty: float) -> float:
        """Slippage per unit (price units) at bar ``i`` for reference ``price`` and ``qty``.

        The vectorised kernel repeats exactly this arithmetic.
        """
        r = self.rate[i if self.rate.shape[0] > 1 else 0]
        x = self.fixed[i if self.fixed.shape[0] > 1 else 0]
        m = self.impact[i if self.impact.shape[0] > 1 else 0]
        return float(r * price + x + m * math.sqrt(abs(qty)))


def no_slippage() -> SlippageTerms:
    """Terms of a model without slippage."""
    zero = np.zeros(1)
    return SlippageTerms(zero, zero, zero)


class SlippageModel(ABC):
    """Base of slippage models: one method, :meth:`terms` (see the module docstring)."""

    @abstractmethod
    def terms(
        self, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
    ) -> SlippageTerms:
        """Per-bar coefficients, each at bar ``i`` built from bars ``< i`` only."""


@dataclass(frozen=True)
class FixedBps(SlippageModel):
    """A fixed fraction of the reference price: ``bps / 10_000 * p`` per unit."""

    bps: float = 1.0

    def terms(self, high, low, close, volume) -> SlippageTerms:
        rate = _as_float_array(self.bps, "FixedBps.bps") * 1e-4
        zero = np.zeros(1)
        return SlippageTerms(rate, zero, zero)


def _prior_rolling(values: np.ndarray, window: int, how: str) -> np.ndarray:
    """Rolling statistic over the ``window`` bars before each bar (NaN-free, 0 at start)."""
    series = pd.Series(values, dtype=np.float64)
    if how == "mean":
        stat = series.rolling(window, min_periods=1).mean()
    else:
        stat = series.rolling(window, min_periods=2).std(ddof=1)
    return np.nan_to_num(stat.shift(1).to_numpy(dtype=np.float64), nan=0.0)


def _check_window(window: int, name: str) -> None:
    if not (isinstance(window, int) and window >= 1):
        raise ConfigError(f"{name}.window must be a positive integer; got {window!r}.")


@dataclass(frozen=True)
class VolatilityScaled(SlippageModel):
    """``k`` times the recent bar range: ``k * mean(high - low)`` over the previous
    ``window`` bars (fewer at the start, 0 at bar 0), in price units per unit."""

    k: float = 0.1
    window: int = 20

    def terms(self, high, low, close, volume) -> SlippageTerms:
        _check_window(self.window, "VolatilityScaled")
        rng = np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64)
        fixed = self.k * _prior_rolling(rng, self.window, "mean")
        zero = np.zeros(1)
        return SlippageTerms(zero, fixed, zero)


@dataclass(frozen=True)
class SquareRootImpact(SlippageModel):
    """Square-root market impact: ``k * sigma * sqrt(|q| / V)`` per unit, where ``sigma``
    is the sample std of close-to-close price changes and ``V`` the mean volume, both over
    the previous ``window`` bars. Bars with no prior volume (``V == 0``, e.g. FX sources
    that report none) get no impact."""

    k: float = 1.0
    window: int = 20

    def terms(self, high, low, close, volume) -> SlippageTerms:
        _check_window(self.window, "SquareRootImpact")
        close = np.asarray(close, dtype=np.float64)
        diffs = np.diff(close, prepend=np.nan)
        # sigma at bar i uses diffs up to bar i-1 (diff[j] = close[j] - close[j-1]).
        sigma = _prior_rolling(diffs, self.window, "std")
        vol = _prior_rolling(np.asarray(volume, dtype=np.float64), self.window, "mean")
        with np.errstate(divide="ignore", invalid="ignore"):
            impact = np.where(vol > 0, self.k * sigma / np.sqrt(vol), 0.0)
        zero = np.zeros(1)
        return SlippageTerms(zero, zero, impact.astype(np.float64))


@dataclass(frozen=True)
class CommissionModel:
    """Broker fees per order: ``per_unit * |q| + rate * |q| * price * point_value``,
    at least ``minimum`` for any non-zero order, 0 for no order."""

    per_unit: float = 0.0
    rate: float = 0.0
    minimum: float = 0.0

    def fee(
        self, qty: float | np.ndarray, price: float | np.ndarray, point_value: float = 1.0
    ) -> float | np.ndarray:
        """Fee in account currency for each order (scalars in, a float out)."""
        aq = np.abs(np.asarray(qty, dtype=np.float64))
        raw = self.per_unit * aq + self.rate * (aq * np.asarray(price, np.float64) * point_value)
        out = np.where(aq > 0, np.maximum(raw, self.minimum), 0.0)
        return float(out) if out.ndim == 0 else out


def resolve_slippage(model: SlippageModel | None, high, low, close, volume) -> SlippageTerms:
    """Terms of ``model`` (no slippage when ``None``)."""
    if model is None:
        return no_slippage()
    return model.terms(high, low, close, volume)
