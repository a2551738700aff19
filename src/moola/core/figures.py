"""Off-screen matplotlib figures rendered to PNG bytes, for reports and run folders.

Figures are built on the Agg canvas directly (no pyplot, no global state, no display),
so plotting is safe in tests, servers and worker processes.
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100


def new_figure(size: tuple[int, int]) -> Figure:
    """An empty figure of ``size`` = (width, height) pixels."""
    width, height = size
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes; the figure is cleared afterwards to free its memory."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    fig.clear()
    return buffer.getvalue()
