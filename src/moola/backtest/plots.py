"""Backtest charts as PNG bytes: equity curve, drawdown, and trades marked on price.

Figures are drawn with matplotlib's Agg backend on a figure object that is never shown
and always closed, so the functions are safe in servers, tests and threads without a
display, and they return bytes rather than writing files (the caller decides where).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from moola.backtest.metrics import drawdown_series
from moola.core.figures import figure_png, new_figure

DEFAULT_SIZE: tuple[int, int] = (1000, 400)
_MAX_POINTS = 20_000  # longer series are thinned to this many points (charts, not data)


def _thin(n: int) -> np.ndarray:
    """Positions to plot: all of them, or an even subsample keeping first and last."""
    if n <= _MAX_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, _MAX_POINTS).astype(np.int64))


def _x(timestamps: pd.Series | None, n: int) -> np.ndarray:
    if timestamps is None:
        return np.arange(n)
    return pd.DatetimeIndex(timestamps).tz_convert(None).to_numpy()


def equity_png(
    equity_df: pd.DataFrame, *, size: tuple[int, int] = DEFAULT_SIZE, title: str = "Equity"
) -> bytes:
    """The equity curve (``equity`` column against ``timestamp``) as PNG bytes of ``size``
    pixels (width, height)."""
    fig = new_figure(size)
    ax = fig.add_subplot()
    keep = _thin(len(equity_df))
    stamps = equity_df["timestamp"] if "timestamp" in equity_df.columns else None
    x = _x(stamps, len(equity_df))[keep]
    ax.plot(x, equity_df["equity"].to_numpy(np.float64)[keep], color="tab:blue", lw=1.0)
    ax.set_title(title)
    ax.set_ylabel("equity")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return figure_png(fig)


def drawdown_png(
    equity_df: pd.DataFrame, *, size: tuple[int, int] = DEFAULT_SIZE, title: str = "Drawdown"
) -> bytes:
    """The drawdown below the running equity peak, in percent, as PNG bytes."""
    fig = new_figure(size)
    ax = fig.add_subplot()
    keep = _thin(len(equity_df))
    stamps = equity_df["timestamp"] if "timestamp" in equity_df.columns else None
    x = _x(stamps, len(equity_df))[keep]
    dd = -100.0 * drawdown_series(equity_df["equity"].to_numpy(np.float64))[keep]
    ax.fill_between(x, dd, 0.0, color="tab:red", alpha=0.4, lw=0)
    ax.plot(x, dd, color="tab:red", lw=0.8)
    ax.set_title(title)
    ax.set_ylabel("drawdown (%)")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return figure_png(fig)


def trades_png(
    bars: pd.DataFrame,
    trades_df: pd.DataFrame,
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    title: str = "Trades",
    max_trades: int = 2_000,
) -> bytes:
    """Close prices with each trade's entry (triangle: up = long, down = short) and exit
    (x) at its fill price, as PNG bytes. Only the last ``max_trades`` trades are marked."""
    fig = new_figure(size)
    ax = fig.add_subplot()
    keep = _thin(len(bars))
    x = _x(bars["timestamp"], len(bars))[keep]
    ax.plot(x, bars["close"].to_numpy(np.float64)[keep], color="0.3", lw=0.8, label="close")
    shown = trades_df.tail(max_trades)
    if len(shown):
        long = (shown["side"] == "long").to_numpy()
        entry_x = _x(shown["entry_time"], len(shown))
        exit_x = _x(shown["exit_time"], len(shown))
        entry_p = shown["entry_price"].to_numpy(np.float64)
        exit_p = shown["exit_price"].to_numpy(np.float64)
        ax.scatter(
            entry_x[long],
            entry_p[long],
            marker="^",
            color="tab:green",
            s=28,
            label="long entry",
            zorder=3,
        )
        ax.scatter(
            entry_x[~long],
            entry_p[~long],
            marker="v",
            color="tab:red",
            s=28,
            label="short entry",
            zorder=3,
        )
        ax.scatter(exit_x, exit_p, marker="x", color="black", s=20, label="exit", zorder=3)
        ax.legend(loc="best", fontsize="small")
    ax.set_title(title)
    ax.set_ylabel("price")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return figure_png(fig)
