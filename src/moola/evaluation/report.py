"""Self-contained HTML reports: one file, inline CSS, no external assets, opens offline."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
