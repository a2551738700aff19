"""Exact position accounting for one instrument, shared by every engine.

Every instrument is accounted as **cash-settled PnL** (how futures are, and an exact,
simple form for the rest): no notional changes hands on a fill, so

- ``cash = initial_cash + realised - fees``
- ``unrealised = position * (last_close - avg_price) * point_value``
- ``equity = cash + unrealised``

``avg_price`` is the volume-weighted entry price of the open position. Adding to a
position moves it; reducing a position realises ``closed * (price - avg_price) *
point_value`` (sign flipped for shorts) pro rata and leaves ``avg_price`` unchanged; a fill
that crosses zero (a flip) closes the old position in full and opens the remainder at the
fill price.

Each fill that reduces a position appends one :class:`Trade` for the closed quantity, so a
partial exit is its own trade row. A trade's ``fees`` are its share of the entry fees (pro
rata to the closed fraction of the position) plus its share of the exit fill's fee (pro
rata to quantity, so a flip splits its fee between the closed and the opened part);
``pnl`` is net of those fees and ``return`` is ``pnl / (size * entry_price *
point_value)``. Bars are counted by :meth:`Portfolio.mark` calls: a fill belongs to the bar
whose ``mark`` comes next, and ``bars_held`` is the difference of those bar numbers.

The vectorised kernel in ``moola.sim.vectorised`` repeats this arithmetic operation by
operation; the tests hold the two to identical results.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd

from moola.sim.instruments import Instrument

TRADE_COLUMNS: tuple[str, ...] = (
    "entry_time",
    "exit_time",
    "side",
    "size",
    "entry_price",
    "exit_price",
    "pnl",
    "fees",
    "bars_held",
    "return",
)


@dataclass(frozen=True)
class Trade:
    """One closed (part of a) position. ``side`` is ``"long"`` or ``"short"``; ``size`` is
    the closed quantity in units (positive)."""

    entry_time: Any
    exit_time: Any
    side: str
    size: float
    entry_price: float
    exit_price: float
    pnl: float
    fees: float
    bars_held: int
    ret: float


def trades_frame(trades: list[Trade]) -> pd.DataFrame:
    """The trades table (columns ``TRADE_COLUMNS``) from a list of trades."""
    # A shallow tuple per trade: dataclasses.astuple deep-copies every timestamp.
    row = operator.attrgetter(*(f.name for f in fields(Trade)))
    frame = pd.DataFrame([row(t) for t in trades], columns=list(TRADE_COLUMNS))
    if frame.empty:
        frame = frame.astype(
            {c: "float64" for c in ("size", "entry_price", "exit_price", "pnl", "fees")}
        ).astype({"bars_held": "int64", "return": "float64"})
    frame["side"] = pd.Categorical(frame["side"], categories=["long", "short"])
    return frame


class Portfolio:
    """Cash, position and PnL of one instrument under the cash-settled PnL convention."""

    def __init__(self, initial_cash: float, instrument: Instrument) -> None:
        self.initial_cash = float(initial_cash)
        self.instrument = instrument
        self._pv = float(instrument.point_value)
        self._dust = instrument.dust
        self.cash = float(initial_cash)
        self.position = 0.0
        self.avg_price = 0.0
        self.realised = 0.0
        self.fees = 0.0
        self.last_price: float | None = None
        self.last_time: Any = None
        self.bar = 0
        self.trades: list[Trade] = []
        self._entry_time: Any = None
        self._entry_bar = 0
        self._open_fees = 0.0

    @property
    def unrealised(self) -> float:
        """PnL of the open position at the last mark (0 before any mark)."""
        if self.last_price is None:
            return 0.0
        return self.position * (self.last_price - self.avg_price) * self._pv

    @property
    def equity(self) -> float:
        """Cash plus unrealised PnL."""
        return self.cash + self.unrealised

    def mark(self, time: Any, close: float) -> float:
        """Close the current bar at price ``close``; returns equity."""
        self.last_price = float(close)
        self.last_time = time
        self.bar += 1
        return self.equity

    def fill(self, time: Any, qty: float, price: float, fee: float = 0.0) -> list[Trade]:
        """Apply a fill of ``qty`` signed units at ``price`` paying ``fee``.

        Returns the trades it closed (empty, or one).
        """
        qty, price, fee = float(qty), float(price), float(fee)
        pv = self._pv
        self.cash = self.cash - fee
        self.fees = self.fees + fee
        pos = self.position
        aq = abs(qty)
        closed_trades: list[Trade] = []
        if qty == 0.0:
            return closed_trades
        if pos == 0.0 or (pos > 0.0) == (qty > 0.0):
            new = pos + qty
            if pos == 0.0:
                self._entry_time, self._entry_bar, self._open_fees = time, self.bar, fee
                self.avg_price = price
            else:
                self._open_fees = self._open_fees + fee
                self.avg_price = (self.avg_price * abs(pos) + price * aq) / abs(new)
            self.position = new
            return closed_trades
        apos = abs(pos)
        closed = min(aq, apos)
        sign = 1.0 if pos > 0.0 else -1.0
        gross = closed * (price - self.avg_price) * pv * sign
        self.cash = self.cash + gross
        self.realised = self.realised + gross
        rem = aq - closed
        full = apos - closed <= self._dust
        entry_fee = self._open_fees if full else self._open_fees * (closed / apos)
        exit_fee = fee if rem <= self._dust else fee * (closed / aq)
        fees = entry_fee + exit_fee
        pnl = gross - fees
        trade = Trade(
            entry_time=self._entry_time,
            exit_time=time,
            side="long" if pos > 0.0 else "short",
            size=closed,
            entry_price=self.avg_price,
            exit_price=price,
            pnl=pnl,
            fees=fees,
            bars_held=self.bar - self._entry_bar,
            ret=pnl / (closed * self.avg_price * pv),
        )
        self.trades.append(trade)
        closed_trades.append(trade)
        if rem > self._dust:  # flip: open the remainder at the fill price
            self.position = rem if qty > 0.0 else -rem
            self.avg_price = price
            self._entry_time, self._entry_bar = time, self.bar
            self._open_fees = fee - exit_fee
        elif full:
            self.position = 0.0
            self.avg_price = 0.0
            self._open_fees = 0.0
        else:
            self.position = pos + qty
            self._open_fees = self._open_fees - entry_fee
        return closed_trades

    def trades_frame(self) -> pd.DataFrame:
        """The trades closed so far as a table (columns ``TRADE_COLUMNS``)."""
        return trades_frame(self.trades)
