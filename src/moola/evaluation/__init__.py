"""Metrics, plots, promotion gates and self-contained HTML reports.

The report builders are imported here; the metrics and gates on first use (PEP 562), so
``import moola.evaluation`` does not pull in scikit-learn and scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from moola.evaluation.report import (
    Section,
    forecast_sections,
    metrics_table_html,
    multitask_sections,
    regression_sections,
    render_report,
    table_html,
)

if TYPE_CHECKING:
    from moola.evaluation.gates import (
        GateConfig,
        MetricGate,
        default_gates,
        evaluate_gates,
        parse_gate,
    )
    from moola.evaluation.metrics import classification_report
    from moola.evaluation.regression import (
        flat_regression_metrics,
        multitask_report,
        regression_report,
    )

_EXPORTS = {
    "GateConfig": "moola.evaluation.gates",
    "MetricGate": "moola.evaluation.gates",
    "default_gates": "moola.evaluation.gates",
    "evaluate_gates": "moola.evaluation.gates",
    "parse_gate": "moola.evaluation.gates",
    "classification_report": "moola.evaluation.metrics",
    "flat_regression_metrics": "moola.evaluation.regression",
    "multitask_report": "moola.evaluation.regression",
    "regression_report": "moola.evaluation.regression",
}

__all__ = [
    "GateConfig",
    "MetricGate",
    "Section",
    "classification_report",
    "default_gates",
    "evaluate_gates",
    "flat_regression_metrics",
    "forecast_sections",
    "metrics_table_html",
    "multitask_report",
    "multitask_sections",
    "parse_gate",
    "regression_report",
    "regression_sections",
    "render_report",
    "table_html",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'moola.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
