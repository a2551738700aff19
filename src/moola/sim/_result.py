"""The result of a simulation run, identical in shape for both engines."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FILL_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "bar",
    "decision_bar",
    "order_id",
    "type",
    "qty",
    "price",
    "fee",
    "tag",
)
ORDER_TYPE_CATEGORIES: tuple[str, ...] = ("market", "limit", "stop")
SIDE_CATEGORIES: tuple[str, ...] = ("long", "short")
REJECTION_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "bar",
    "order_id",
    "requested_qty",
    "accepted_qty",
    "reason",
)


def utc_index(stamps: np.ndarray) -> pd.DatetimeIndex:
    """Naive-UTC ``datetime64`` values as a UTC ``DatetimeIndex``; a view, not a copy,
    when they are nanoseconds (``tz_localize`` would copy and check every value)."""
    stamps = np.asarray(stamps)
    if stamps.dtype == np.dtype("datetime64[ns]"):
        # integers with a zoned dtype are read as UTC epoch nanoseconds
        return pd.DatetimeIndex(stamps.view(np.int64), dtype="datetime64[ns, UTC]", copy=False)
    return pd.DatetimeIndex(stamps).tz_localize("UTC")


def empty_rejections() -> pd.DataFrame:
    """A rejections table with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in REJECTION_COLUMNS})


@dataclass(frozen=True)
class SimResult:
    """Per-bar accounting arrays plus the fills and trades tables of one run.

    Attributes
    ----------
    timestamp : np.ndarray, shape (n,)
        Bar times (``datetime64[ns]`` UTC values), or bar numbers when none were given.
    equity, cash, position, price : np.ndarray, shape (n,)
        Marked at each bar's close (``price`` is the close); see ``moola.sim.portfolio``.
    fills : pd.DataFrame
        One row per fill, columns ``FILL_COLUMNS``; ``bar`` is the bar it filled in and
        ``decision_bar`` the bar whose close submitted the order.
    trades : pd.DataFrame
        Closed trades, columns ``moola.sim.portfolio.TRADE_COLUMNS``.
    initial_cash : float
    rejections : pd.DataFrame
        Orders the leverage limit capped or refused (event engine), ``REJECTION_COLUMNS``.

    An engine that computed the per-bar drawdown on the way (the compiled kernel) passes
    it as ``_drawdown``; it must equal what :attr:`drawdown` computes, to the bit.
    ``equity_frame()`` does not copy the arrays: treat them as read-only.
    """

    timestamp: np.ndarray
    equity: np.ndarray
    cash: np.ndarray
    position: np.ndarray
    price: np.ndarray
    fills: pd.DataFrame
    trades: pd.DataFrame
    initial_cash: float
    rejections: pd.DataFrame = field(default_factory=empty_rejections)
    _drawdown: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def drawdown(self) -> np.ndarray:
        """``equity / running_max(equity, initial_cash) - 1`` per bar (0 at new highs,
        negative below)."""
        if self._drawdown is not None:
            return self._drawdown
        peak = np.maximum(self.equity, self.initial_cash)
        np.maximum.accumulate(peak, out=peak)
        out = np.divide(self.equity, peak, out=peak)
        out -= 1.0
        return out

    def equity_frame(self) -> pd.DataFrame:
        """Per-bar table: ``timestamp, equity, cash, position, price, drawdown``.

        The columns are the result's arrays themselves, not copies (a million bars would
        otherwise cost 40 MB and 10 ms per call).
        """
        stamps = self.timestamp
        if np.issubdtype(np.asarray(stamps).dtype, np.datetime64):
            stamps = utc_index(stamps)
        return pd.DataFrame(
            {
                "timestamp": stamps,
                "equity": self.equity,
                "cash": self.cash,
                "position": self.position,
                "price": self.price,
                "drawdown": self.drawdown,
            },
            copy=False,
        )
