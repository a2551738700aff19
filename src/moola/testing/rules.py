"""``check_rule``: a risk rule's streaming form gives its batch verdict, bar by bar.

A rule has one implementation with two faces (``moola.sim.propfirm``): ``check(equity,
trades)`` judges a finished equity curve, and ``stream()`` judges one bar at a time, as
the broker, the trading environment and the live runtime use it. If the two disagreed, a
backtest would pass a challenge that live trading fails (or halt where the backtest did
not). This checker proves them equal on the paths it is given, run in CI with hypothesis
over every rule an ``ExecutionConfig`` can hold.

For each path it streams the bars in time order and, after every bar ``i``, requires:

- ``stream.result()`` equals ``rule.check`` on the path cut after bar ``i`` (name, verdict,
  breach time, breach value to the bit, limit, detail): the streaming state at bar ``i``
  holds exactly what bars ``0..i`` imply, and the batch verdict at ``i`` needs no later
  bar (no lookahead on either side);
- ``update`` returned a :class:`~moola.sim.Breach` at bar ``i`` exactly when the batch
  form first reports a failure at a time (a loss limit crossed) at bar ``i``, with that
  time and value;
- after a breach, ``pre_trade`` refuses an order, naming the rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from moola.sim import Fill, Rule, RuleResult, market

EquityPath = pd.Series | tuple[pd.Series, Sequence[int]]


def _fill_at(time: Any, bar: int) -> Fill:
    return Fill(time, bar, max(bar - 1, 0), bar + 1, "market", 1.0, 1.0, 0.0, "check_rule")


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _diff(streamed: RuleResult, batch: RuleResult) -> list[str]:
    fields = ("name", "passed", "breach_time", "breach_value", "limit", "detail")
    return [
        f"{name}: streaming {getattr(streamed, name)!r} != batch {getattr(batch, name)!r}"
        for name in fields
        if not _same(getattr(streamed, name), getattr(batch, name))
    ]


def _split(path: EquityPath) -> tuple[pd.Series, list[int]]:
    if isinstance(path, tuple):
        equity, fill_bars = path
        return equity, sorted(int(b) for b in fill_bars)
    return path, []


def check_rule(rule: Rule, *paths: EquityPath) -> None:
    """Raise ``AssertionError`` unless ``rule``'s streaming form equals its batch form.

    Parameters
    ----------
    rule : moola.sim.Rule
        The rule, with its parameters.
    *paths : pd.Series or (pd.Series, sequence of int)
        Equity indexed by increasing timestamps; optionally with the bars at which a fill
        happened (one fill per entry; the batch form sees them as the trades table's
        ``entry_time``, as the backtest passes fills to ``MinimumTradingDays``).
    """
    if not isinstance(rule, Rule):
        raise TypeError(f"check_rule takes a moola.sim.Rule, got {type(rule).__name__}")
    if not paths:
        raise ValueError("check_rule needs at least one equity path")
    for number, path in enumerate(paths):
        equity, fill_bars = _split(path)
        if not equity.index.is_monotonic_increasing:
            raise ValueError(
                f"path {number}: the equity index must be increasing (bars arrive in order)"
            )
        _check_path(rule, number, equity, fill_bars)


def _check_path(rule: Rule, number: int, equity: pd.Series, fill_bars: Iterable[int]) -> None:
    stream = rule.stream()
    times = list(equity.index)
    values = equity.to_numpy(np.float64).tolist()
    fills_by_bar: dict[int, list[Fill]] = {}
    for bar in fill_bars:
        fills_by_bar.setdefault(bar, []).append(_fill_at(times[bar], bar))
    fill_times = [times[bar] for bar in sorted(fills_by_bar) for _ in fills_by_bar[bar]]
    breached = False
    for i, (time, value) in enumerate(zip(times, values, strict=True)):
        where = f"check_rule({rule!r}): path {number}, bar {i} ({time})"
        breach = stream.update(time, value, fills_by_bar.get(i, []))
        n_fills = sum(len(fills_by_bar.get(b, ())) for b in range(i + 1))
        trades = pd.DataFrame({"entry_time": pd.DatetimeIndex(fill_times[:n_fills])})
        batch = rule.check(equity.iloc[: i + 1], trades)
        problems = _diff(stream.result(), batch)
        batch_breach = not batch.passed and batch.breach_time is not None
        if breach is not None:
            if breached:
                problems.append("update returned a second breach")
            if not batch_breach or batch.breach_time != time:
                problems.append(f"update breached at {time}; batch says {batch.breach_time}")
            elif breach.value != batch.breach_value:
                problems.append(f"breach value {breach.value!r} != batch {batch.breach_value!r}")
            breached = True
        elif batch_breach and not breached:
            problems.append(f"batch breached at {batch.breach_time}; update returned None")
        if breached:
            reasons = stream.pre_trade(market(1.0), None)
            if not reasons or not any(rule.name in str(r) for r in reasons):
                problems.append(f"after the breach pre_trade allowed an order: {reasons!r}")
        if problems:
            raise AssertionError(f"{where}: " + "; ".join(problems))
