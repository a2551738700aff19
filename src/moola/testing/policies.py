"""The signal-policy checker: a policy's batch and step forms agree, and neither looks ahead.

A backtest trades ``policy.positions(probabilities, bars)``; the trading environment and
the live engine trade ``policy.stepper().step(probability, bar)`` bar by bar. When the two
differ, live trading diverges from the backtest. ``check_policy`` proves, on the data it is
given (run it under hypothesis for many):

* **no lookahead**: the batch target at bar ``t`` computed from ``probabilities[: t + 1]``
  and ``bars[: t + 1]`` equals the target at ``t`` computed from everything, at random cut
  points plus the first and last bar;
* **batch == streaming**: a fresh stepper fed the bars one at a time returns the batch
  targets exactly (bit for bit, ``nan`` where they are ``nan``);
* **state lives in the stepper**: a second fresh stepper, started after the first has run,
  gives the same first targets again.

Each failure raises ``AssertionError`` naming the policy, the check, the bar and both
values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from moola.backtest.signals import SignalPolicy

__all__ = ["check_policy"]

_RESTART_BARS = 50  # bars a second stepper replays


def check_policy(
    policy: SignalPolicy,
    probabilities: Any,
    bars: pd.DataFrame | None = None,
    *,
    n_cuts: int = 10,
    seed: int = 0,
) -> None:
    """Assert that ``policy``'s step form gives its batch targets and that a target uses
    no later bar (module notes). ``probabilities`` has one row per bar; ``bars`` (aligned,
    with a ``close``) is needed by policies that read prices."""
    what = f"{type(policy).__name__} {policy.params}"
    p = np.asarray(probabilities, dtype=np.float64)
    n = len(p)
    batch = np.asarray(policy.positions(p, bars), dtype=np.float64)
    if batch.shape != (n,):
        raise AssertionError(f"{what}: positions returned shape {batch.shape}, expected ({n},).")
    finite = batch[~np.isnan(batch)]
    if ((finite < -1.0) | (finite > 1.0)).any():
        raise AssertionError(f"{what}: a target lies outside [-1, 1]: {finite.tolist()[:5]}.")

    for t in _cut_points(n, n_cuts, seed):
        cut = None if bars is None else bars.iloc[: t + 1]
        partial = np.asarray(policy.positions(p[: t + 1], cut), dtype=np.float64)
        _same(what, "lookahead (bars[: t + 1] vs all bars)", t, partial[-1], batch[t])

    records = _records(bars, n)
    stepper = policy.stepper()
    for t in range(n):
        _same(what, "streaming vs batch", t, stepper.step(_row(p, t), records[t]), batch[t])
    again = policy.stepper()
    for t in range(min(n, _RESTART_BARS)):
        _same(what, "a second stepper vs batch", t, again.step(_row(p, t), records[t]), batch[t])


def _same(what: str, check: str, t: int, got: float, expected: float) -> None:
    got, expected = float(got), float(expected)
    if got == expected or (np.isnan(got) and np.isnan(expected)):
        return
    raise AssertionError(f"{what}: {check} differs at bar {t}: {got!r} != {expected!r}.")


def _row(p: np.ndarray, t: int) -> Any:
    return float(p[t]) if p.ndim == 1 else p[t].copy()


def _records(bars: pd.DataFrame | None, n: int) -> list[dict[str, Any] | None]:
    if bars is None:
        return [None] * n
    return bars.to_dict("records")


def _cut_points(n: int, n_cuts: int, seed: int) -> np.ndarray:
    if n == 0:
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    random = rng.integers(0, n, size=min(n_cuts, n))
    return np.unique(np.concatenate([[0, n - 1], random]))
