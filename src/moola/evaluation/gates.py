"""Promotion gates: the thresholds a model must clear before it may be promoted.

A gate compares one number (accuracy, ECE, Sharpe, drawdown) with a threshold. Each
enabled gate yields a :class:`GateResult`; the model passes only if every enabled gate
passes. A gate whose number is missing (no backtest for a Sharpe gate, an undefined metric)
FAILS with reason ``"missing"``: promotion needs evidence, not its absence. A gate set to
``None`` is disabled and not evaluated. The :class:`GateRecord` is meant to be stored with
the promoted model, before the promotion happens.

Where the numbers come from: ``accuracy``, ``ece`` and the accuracy interval from the dict of
:func:`moola.evaluation.metrics.classification_report` (its ``metrics``/``intervals``) or
from a flat ``{name: value}`` mapping; ``sharpe`` and ``max_drawdown`` (a positive fraction
of the peak, 0.1 = 10%) from ``moola.backtest.metrics.compute_stats``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

MISSING = "missing"


class GateConfig(BaseModel):
    """Thresholds; ``None`` disables a gate.

    ``min_accuracy_ci_low`` gates the lower end of the accuracy's bootstrap interval: the
    stricter, honest choice on small data, where the point estimate is mostly noise.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_accuracy: float | None = 0.68
    max_ece: float | None = 0.05
    min_sharpe: float | None = None
    max_drawdown: float | None = None
    min_accuracy_ci_low: float | None = None


class GateResult(BaseModel):
    """One gate's outcome; ``reason`` is ``None`` when it passed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    threshold: float
    value: float | None
    passed: bool
    reason: str | None = None


class GateRecord(BaseModel):
    """Every enabled gate's outcome and the verdict (all passed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gates: tuple[GateResult, ...]
    passed: bool
    config: GateConfig

    @property
    def failed(self) -> tuple[GateResult, ...]:
        """The gates that did not pass."""
        return tuple(gate for gate in self.gates if not gate.passed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable record (infinite values as the strings ``"inf"``/``"-inf"``)."""
        record = self.model_dump()
        for gate in record["gates"]:
            value = gate["value"]
            if value is not None and math.isinf(value):
                gate["value"] = "inf" if value > 0 else "-inf"
        return record


def _number(value: Any) -> float | None:
    """A finite or infinite float, or ``None`` for missing/NaN/unparseable values
    (``compute_stats`` writes infinities as ``"inf"``/``"-inf"``)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _check(name: str, threshold: float, value: Any, *, at_least: bool) -> GateResult:
    number = _number(value)
    if number is None:
        return GateResult(name=name, threshold=threshold, value=None, passed=False, reason=MISSING)
    passed = number >= threshold if at_least else number <= threshold
    reason = None if passed else ("below minimum" if at_least else "above maximum")
    return GateResult(name=name, threshold=threshold, value=number, passed=passed, reason=reason)


def _accuracy_ci_low(metrics: Mapping[str, Any]) -> Any:
    intervals = metrics.get("intervals")
    if isinstance(intervals, Mapping):
        accuracy = intervals.get("accuracy")
        if isinstance(accuracy, Mapping):
            return accuracy.get("low")
    return metrics.get("accuracy_ci_low")


def evaluate_gates(
    metrics: Mapping[str, Any],
    config: GateConfig | None = None,
    backtest_stats: Mapping[str, Any] | None = None,
) -> GateRecord:
    """Check ``metrics`` (a classification report or a flat ``{name: value}`` mapping) and
    ``backtest_stats`` against ``config`` (default :class:`GateConfig`)."""
    config = config or GateConfig()
    flat = metrics.get("metrics") if isinstance(metrics.get("metrics"), Mapping) else metrics
    stats = backtest_stats or {}
    checks: list[GateResult] = []
    if config.min_accuracy is not None:
        checks.append(_check("accuracy", config.min_accuracy, flat.get("accuracy"), at_least=True))
    if config.min_accuracy_ci_low is not None:
        checks.append(
            _check(
                "accuracy_ci_low",
                config.min_accuracy_ci_low,
                _accuracy_ci_low(metrics),
                at_least=True,
            )
        )
    if config.max_ece is not None:
        checks.append(_check("ece", config.max_ece, flat.get("ece"), at_least=False))
    if config.min_sharpe is not None:
        checks.append(_check("sharpe", config.min_sharpe, stats.get("sharpe"), at_least=True))
    if config.max_drawdown is not None:
        checks.append(
            _check("max_drawdown", config.max_drawdown, stats.get("max_drawdown"), at_least=False)
        )
    return GateRecord(
        gates=tuple(checks), passed=all(gate.passed for gate in checks), config=config
    )
