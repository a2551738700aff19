"""Backtest signals: positions -> trades, equity, statistics, prop-firm checks, charts.

``run(bars, positions, ...)`` is the entry point; it simulates through ``moola.sim`` and
returns a :class:`BacktestResult` that can write itself to a directory. Probabilities
become positions through a :class:`SignalPolicy` (:class:`ThresholdHold`,
:class:`Hysteresis` for probabilities; :class:`SignHold`, :class:`ScaledHold` for a regression
model's predicted values; batch ``positions`` and bar-by-bar ``stepper().step``, equal) or
:func:`positions_from_probabilities`; :func:`compute_stats` gives the statistics of any
equity curve and trades table.
"""

from __future__ import annotations

from moola.backtest.metrics import compute_stats, observed_periods_per_year, periods_per_year
from moola.backtest.run import (
    ENGINES,
    BacktestResult,
    align_positions,
    check_bars,
    resolve_instrument,
    run,
)
from moola.backtest.signals import (
    Hysteresis,
    PolicyStepper,
    ScaledHold,
    SignalPolicy,
    SignHold,
    ThresholdHold,
    positions_from_probabilities,
    sign_targets,
)

__all__ = [
    "ENGINES",
    "BacktestResult",
    "Hysteresis",
    "PolicyStepper",
    "ScaledHold",
    "SignHold",
    "SignalPolicy",
    "ThresholdHold",
    "align_positions",
    "check_bars",
    "compute_stats",
    "observed_periods_per_year",
    "periods_per_year",
    "positions_from_probabilities",
    "resolve_instrument",
    "run",
    "sign_targets",
]
