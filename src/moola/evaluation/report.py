"""Self-contained HTML reports: one file, inline CSS, no external assets, opens offline.

Besides the building blocks (:class:`Section`, :func:`table_html`, :func:`image_html`,
:func:`render_report`), the sections of a forecasting run: :func:`forecast_sections` renders
a regression report (headline metrics with intervals, per symbol, IC over time, the
predicted-vs-actual and IC-over-time charts) or a multi-task report (a summary of the heads,
then each head's own sections), from the report dicts of ``moola.evaluation.regression`` and
``moola.evaluation.metrics`` and the PNG bytes of ``moola.evaluation.plots``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moola.core.errors import ConfigError

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d2330;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #dde2ea;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #dde2ea;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f5f9}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#667085;font-size:.85rem}pre{background:#f6f8fa;padding:.8rem;overflow:auto;
font-size:.8rem}
"""


@dataclass(frozen=True)
class Section:
    """One titled part of a report; ``body`` is trusted HTML built with these helpers."""

    title: str
    body: str
    note: str = ""
    #: Shown folded (``<details>``): long raw material a reader opens on purpose.
    collapsed: bool = False


def table_html(rows: Sequence[Mapping[str, Any]], columns: Iterable[str] | None = None) -> str:
    """An HTML table of ``rows`` (dicts), numbers right-aligned, all text escaped."""
    rows = list(rows)
    if not rows:
        return '<p class="muted">(none)</p>'
    columns = list(columns) if columns is not None else list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            text = (
                f"{value:,.4g}" if isinstance(value, float) else f"{value:,}" if numeric else value
            )
            css = ' class="num"' if numeric else ""
            cells.append(f"<td{css}>{html.escape(str(text))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def pre_html(text: str) -> str:
    """Preformatted, escaped text (manifests, JSON)."""
    return f"<pre>{html.escape(text)}</pre>"


def image_html(png: bytes, alt: str) -> str:
    """An inline (base64) PNG image, so the report stays one self-contained file."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'
    )


def render_report(title: str, sections: Sequence[Section], *, subtitle: str = "") -> str:
    """A complete HTML document with the given sections."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">{html.escape(subtitle)}</p>' if subtitle else "",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.note:
            parts.append(f'<p class="muted">{html.escape(section.note)}</p>')
        if section.collapsed:
            parts.append(f"<details><summary>show</summary>{section.body}</details>")
        else:
            parts.append(section.body)
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- forecasting runs

#: Run-folder names of a regression head's charts (``plots.regression_pngs`` makes them).
PREDICTED_VS_ACTUAL = "predicted_vs_actual.png"
IC_OVER_TIME = "ic_over_time.png"
_REGRESSION_COLUMNS = ("mae", "rmse", "r2", "sign_accuracy", "ic")


def _fmt(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return "-" if value != value else f"{value:.4g}"  # NaN != NaN
    return str(value)


def _cell(value: Any) -> Any:
    """A number for :func:`table_html` to right-align, or "-" where it is undefined."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return value
    return "-" if value is None or isinstance(value, float) else value


def metrics_table_html(report: Mapping[str, Any]) -> str:
    """A report's headline metrics (classification or regression), each with its bootstrap
    interval: columns metric, value and ``[low, high]`` ("-" where undefined)."""
    intervals = report.get("intervals") or {}
    rows = []
    for name, value in report["metrics"].items():
        interval = intervals.get(name) or {}
        rows.append(
            {
                "metric": name,
                "value": _cell(value),
                "interval": f"[{_fmt(interval.get('low'))}, {_fmt(interval.get('high'))}]"
                if interval
                else "-",
            }
        )
    return table_html(rows)


def _level(report: Mapping[str, Any]) -> str:
    confidence = (report.get("bootstrap") or {}).get("confidence")
    if not report.get("intervals") or confidence is None:
        return "no bootstrap intervals"
    return f"{100 * confidence:g}% bootstrap intervals"


def _images(plots: Mapping[str, bytes] | None, names: Sequence[str]) -> str:
    plots = plots or {}
    return "".join(image_html(plots[name], name) for name in names if name in plots)


def regression_sections(
    report: Mapping[str, Any],
    *,
    plots: Mapping[str, bytes] | None = None,
    heading: str = "",
) -> list[Section]:
    """The sections of one regression report: headline metrics with intervals, per-symbol
    metrics (when the report has them), the IC per period (folded) and the charts found in
    ``plots`` (:data:`PREDICTED_VS_ACTUAL`, :data:`IC_OVER_TIME`). ``heading`` prefixes
    each title (a multi-task head's name)."""
    prefix = f"{heading}: " if heading else ""
    target = report.get("target", "value")
    sections = [
        Section(
            f"{prefix}Regression metrics ({target}), {_level(report)}",
            metrics_table_html(report),
            f"{report['n']:,} windows. IC is the Spearman rank correlation of prediction and "
            "outcome; sign accuracy counts windows whose outcome is not 0.",
        )
    ]
    per_symbol = report.get("per_symbol")
    if per_symbol:
        rows = [
            {"symbol": symbol, "n": row.get("n")}
            | {name: _cell(row.get(name)) for name in _REGRESSION_COLUMNS}
            for symbol, row in per_symbol.items()
        ]
        sections.append(Section(f"{prefix}Per symbol", table_html(rows)))
    over_time = report.get("ic_over_time")
    if over_time:
        rows = [
            {"period": row["period"], "ic": _cell(row["ic"]), "n": row["n"]} for row in over_time
        ]
        defined = [row["ic"] for row in over_time if row["ic"] is not None]
        positive = sum(1 for value in defined if value > 0)
        sections.append(
            Section(
                f"{prefix}IC per {report.get('ic_period', 'period')}",
                table_html(rows),
                f"IC above 0 in {positive} of {len(defined)} periods with a defined IC.",
                collapsed=True,
            )
        )
    charts = _images(plots, (PREDICTED_VS_ACTUAL, IC_OVER_TIME))
    if charts:
        sections.append(Section(f"{prefix}Plots", charts))
    return sections


def _classification_sections(
    report: Mapping[str, Any], *, plots: Mapping[str, bytes] | None, heading: str
) -> list[Section]:
    sections = [
        Section(
            f"{heading}: Classification metrics, {_level(report)}",
            metrics_table_html(report),
            f"{report['n_samples']:,} windows; minority class {report['minority']}.",
        ),
        Section(
            f"{heading}: Per class (minority first)",
            table_html(report["per_class"], ["class", "precision", "recall", "f1", "support"]),
        ),
    ]
    charts = _images(plots, sorted(plots or {}))
    if charts:
        sections.append(Section(f"{heading}: Plots", charts))
    return sections


_HEAD_SUMMARY = {
    "regression": ("ic", "rmse", "r2", "sign_accuracy"),
    "classification": ("accuracy", "balanced_accuracy", "log_loss", "ece"),
}


def multitask_sections(
    report: Mapping[str, Any], *, plots: Mapping[str, Mapping[str, bytes]] | None = None
) -> list[Section]:
    """The sections of a multi-task report: one summary row per head (its task and main
    metrics), then each head's own sections, titled by head; ``plots`` maps a head's name
    to its charts."""
    plots = plots or {}
    summary, parts = [], []
    for head, inner in report["heads"].items():
        task = "regression" if inner.get("task") == "regression" else "classification"
        metrics = inner["metrics"]
        summary.append(
            {
                "head": head,
                "task": task,
                "n": inner.get("n", inner.get("n_samples")),
                "main metrics": ", ".join(
                    f"{name} {_fmt(metrics.get(name))}" for name in _HEAD_SUMMARY[task]
                ),
            }
        )
        if task == "regression":
            parts.extend(regression_sections(inner, plots=plots.get(head), heading=head))
        else:
            parts.extend(_classification_sections(inner, plots=plots.get(head), heading=head))
    heads = Section(
        "Heads",
        table_html(summary),
        "One model, one report per target; a head's metric is named '<head>.<metric>' "
        "in gates and flat metrics.",
    )
    return [heads, *parts]


def forecast_sections(
    report: Mapping[str, Any],
    *,
    plots: Mapping[str, bytes] | Mapping[str, Mapping[str, bytes]] | None = None,
) -> list[Section]:
    """The metric sections of a regression or multi-task run's report (``report["task"]``);
    a classification report keeps the run report's own sections (``ConfigError`` here)."""
    task = report.get("task")
    if task == "regression":
        return regression_sections(report, plots=plots)  # type: ignore[arg-type]
    if task == "multitask":
        return multitask_sections(report, plots=plots)  # type: ignore[arg-type]
    raise ConfigError(
        f"forecast_sections renders a regression or multitask report, not task {task!r}; "
        "a classification run's report is built from its own sections.",
        param="report",
    )
