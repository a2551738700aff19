"""Metrics, plots, promotion gates and self-contained HTML reports."""

from moola.evaluation.report import Section, render_report, table_html

__all__ = ["Section", "render_report", "table_html"]
