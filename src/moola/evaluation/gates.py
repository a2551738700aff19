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

Any other metric is gated by a :class:`MetricGate` (``parse_gate("ic>0.02")``), looked up
by :func:`metric_value` in a classification, regression or multi-task report (a head's
metric as ``<head>.<metric>``) or a flat mapping. The accuracy and ECE defaults are a
classifier's; :func:`default_gates` leaves them out for a regression or multi-task run.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from moola.core.errors import ConfigError

MISSING = "missing"
Op = Literal[">", ">=", "<", "<="]
_OPS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    ">": (operator.gt, "not above threshold"),
    ">=": (operator.ge, "below minimum"),
    "<": (operator.lt, "not below threshold"),
    "<=": (operator.le, "above maximum"),
}
_GATE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][\w.-]*?)\s*(?P<op>>=|<=|>|<)\s*"
    r"(?P<threshold>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_FORMS = (
    "write METRIC OP NUMBER with OP one of >, >=, <, <= (e.g. 'ic>0.02', 'rmse<0.01', "
    "'direction.accuracy>=0.55' for a head of a multi-task run)"
)
TASKS = ("classification", "regression", "multitask")


class MetricGate(BaseModel):
    """One threshold on any named metric: ``metric op threshold`` (``ic > 0.02``).

    ``metric`` is a name in the report (``ic``, ``rmse``, ``accuracy``), ``<head>.<metric>``
    for a multi-task run's head, or ``<metric>_ci_low``/``_ci_high`` for an end of its
    bootstrap interval.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: Annotated[str, Field(min_length=1)]
    op: Op
    threshold: Annotated[float, Field(allow_inf_nan=False)]

    def __str__(self) -> str:
        number = repr(self.threshold)  # exact, so the text parses back to this gate
        return f"{self.metric}{self.op}{number.removesuffix('.0')}"

    def check(self, value: Any) -> GateResult:
        """This gate's outcome for ``value`` (``None``/NaN/unparseable: failed, missing)."""
        name = str(self)
        number = _number(value)
        if number is None:
            return GateResult(
                name=name, threshold=self.threshold, value=None, passed=False, reason=MISSING
            )
        compare, why = _OPS[self.op]
        passed = bool(compare(number, self.threshold))
        return GateResult(
            name=name,
            threshold=self.threshold,
            value=number,
            passed=passed,
            reason=None if passed else why,
        )


def parse_gate(text: str) -> MetricGate:
    """``"ic>0.02"`` as a :class:`MetricGate`; ``ConfigError`` naming ``text`` and the
    accepted forms for anything else."""
    match = _GATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"Gate {text!r} is not a metric gate; {_FORMS}.", param="gate")
    return MetricGate(metric=match["metric"], op=match["op"], threshold=float(match["threshold"]))


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
    #: Thresholds on any metric, checked after the gates above; text (``"ic>0.02"``) is
    #: parsed with :func:`parse_gate`.
    metric_gates: tuple[MetricGate, ...] = ()

    @field_validator("metric_gates", mode="before")
    @classmethod
    def _parse_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = (value,)
        if isinstance(value, list | tuple):
            return tuple(parse_gate(v) if isinstance(v, str) else v for v in value)
        return value


def default_gates(task: str, **overrides: Any) -> GateConfig:
    """The default gates of a run of ``task``, with ``overrides`` (GateConfig fields).

    A classification run gets :class:`GateConfig`'s defaults (accuracy and ECE). A
    regression or multi-task run gets neither (a regression report has no accuracy, and
    a multi-task report names a head's as ``<head>.accuracy``): its evidence comes from
    ``metric_gates`` (``ic>0.02``) and the backtest gates.
    """
    if task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}.", param="task")
    base: dict[str, Any] = {}
    if task != "classification":
        base = {"min_accuracy": None, "max_ece": None}
    return GateConfig(**{**base, **overrides})


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


def _interval_end(report: Mapping[str, Any], name: str) -> Any:
    for suffix, end in (("_ci_low", "low"), ("_ci_high", "high")):
        if name.endswith(suffix):
            intervals = report.get("intervals")
            if isinstance(intervals, Mapping):
                interval = intervals.get(name[: -len(suffix)])
                if isinstance(interval, Mapping):
                    return interval.get(end)
    return None


def metric_value(metrics: Mapping[str, Any], name: str) -> Any:
    """The value of metric ``name`` in ``metrics``, or ``None`` when it is not there.

    ``metrics`` is a classification or regression report (``name`` in its ``metrics``;
    ``<metric>_ci_low``/``_ci_high`` from its ``intervals``; a classification report's
    ``minority_<precision|recall|f1>`` from its first ``per_class`` row), a multi-task report
    (``<head>.<metric>``, looked up in that head's report the same way) or a flat
    ``{name: value}`` mapping.
    """
    if metrics.get("task") == "multitask":
        head, _, rest = name.partition(".")
        heads = metrics.get("heads")
        if rest and isinstance(heads, Mapping) and isinstance(heads.get(head), Mapping):
            return metric_value(heads[head], rest)
        return None
    inner = metrics.get("metrics")
    if not isinstance(inner, Mapping):
        return metrics.get(name)
    if name in inner:
        return inner[name]
    if name.startswith("minority_"):
        per_class = metrics.get("per_class")
        if isinstance(per_class, list) and per_class and isinstance(per_class[0], Mapping):
            return per_class[0].get(name[len("minority_") :])
    return _interval_end(metrics, name)


def evaluate_gates(
    metrics: Mapping[str, Any],
    config: GateConfig | None = None,
    backtest_stats: Mapping[str, Any] | None = None,
) -> GateRecord:
    """Check ``metrics`` (a classification, regression or multi-task report, or a flat
    ``{name: value}`` mapping) and ``backtest_stats`` against ``config`` (default
    :class:`GateConfig`; see :func:`default_gates` for a regression run)."""
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
    checks.extend(gate.check(metric_value(metrics, gate.metric)) for gate in config.metric_gates)
    return GateRecord(
        gates=tuple(checks), passed=all(gate.passed for gate in checks), config=config
    )
