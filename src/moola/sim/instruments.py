"""What is traded: tick size, contract multiplier, lot size and leverage limit.

An ``Instrument`` is a frozen description that the costs, the portfolio and both engines
read. All instruments are accounted the same way, as cash-settled PnL (see
``moola.sim.portfolio``): a position of ``q`` units marked at ``p`` is worth
``q * (p - avg_price) * point_value`` of unrealised PnL; no notional changes hands.

Sizing rule (shared by both engines, implemented once in :meth:`Instrument.units_for`):
``units = round_units(f * equity / (price * point_value))`` where ``f`` is the target
fraction of equity clipped to ``[-max_leverage, max_leverage]``, ``equity`` and ``price``
are the equity and close at the decision bar, and ``round_units`` rounds toward zero to a
whole multiple of ``lot_size`` (whole units when ``lot_size == 1``). A non-positive equity
sizes every target to zero (the account is blown; nothing new is opened).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from moola.core.errors import ConfigError

if TYPE_CHECKING:
    from moola.sim.costs import CommissionModel


@dataclass(frozen=True, kw_only=True)
class Instrument:
    """A tradable contract.

    Parameters
    ----------
    symbol : str
        Name, e.g. ``"NQ"`` or ``"EURUSD"``.
    tick_size : float, default 0.01
        Minimum price increment (limit/stop prices are not snapped to it; it is metadata
        for strategies and for ``VolatilityScaled``-style models).
    point_value : float, default 1.0
        Currency value of a one-point move for one unit (contract multiplier).
    currency : str, default "USD"
        Currency of ``point_value`` and of the account.
    lot_size : float, default 1.0
        Smallest tradable quantity step (1 = whole units, 1e-8 for crypto).
    max_leverage : float, default 1.0
        Largest ``|position| * price * point_value / equity`` an order may create.
    commission : CommissionModel or None
        Default commission when an engine is given none.
    """

    symbol: str
    tick_size: float = 0.01
    point_value: float = 1.0
    currency: str = "USD"
    lot_size: float = 1.0
    max_leverage: float = 1.0
    commission: CommissionModel | None = None

    def __post_init__(self) -> None:
        for name in ("tick_size", "point_value", "lot_size", "max_leverage"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(
                    f"Instrument {self.symbol!r}: {name}={value!r} must be a positive "
                    f"finite number."
                )

    @property
    def dust(self) -> float:
        """Quantities smaller than this are treated as zero (float noise on lot sums)."""
        return self.lot_size * 1e-6

    def round_units(self, units: float) -> float:
        """Round ``units`` toward zero to a whole multiple of ``lot_size``."""
        return math.trunc(units / self.lot_size) * self.lot_size

    def units_for(self, fraction: float, equity: float, price: float) -> float:
        """Signed units that put ``fraction`` of ``equity`` into the position at ``price``.

        This is the sizing rule of the module docstring; both engines call exactly this
        arithmetic so their fills agree to the bit.
        """
        lev = self.max_leverage
        f = min(max(fraction, -lev), lev)
        if equity <= 0.0 or price <= 0.0:
            return 0.0
        raw = f * equity / (price * self.point_value)
        return math.trunc(raw / self.lot_size) * self.lot_size


# Contract specs of common futures: (tick_size, point_value).
FUTURES_SPECS: dict[str, tuple[float, float]] = {
    "ES": (0.25, 50.0),
    "MES": (0.25, 5.0),
    "NQ": (0.25, 20.0),
    "MNQ": (0.25, 2.0),
    "YM": (1.0, 5.0),
    "MYM": (1.0, 0.5),
    "RTY": (0.1, 50.0),
    "M2K": (0.1, 5.0),
    "CL": (0.01, 1000.0),
    "MCL": (0.01, 100.0),
    "GC": (0.1, 100.0),
    "MGC": (0.1, 10.0),
}


def equity_instrument(symbol: str, *, max_leverage: float = 1.0) -> Instrument:
    """A cash equity or ETF: cent ticks, whole shares, no leverage by default."""
    return Instrument(symbol=symbol, tick_size=0.01, point_value=1.0, max_leverage=max_leverage)


def futures_instrument(root: str, *, max_leverage: float = 10.0) -> Instrument:
    """A futures contract by root symbol (``"NQ"``: tick 0.25, point value 20)."""
    key = root.upper()
    if key not in FUTURES_SPECS:
        known = ", ".join(sorted(FUTURES_SPECS))
        raise ConfigError(
            f"Unknown futures root {root!r}; known roots: {known}. Build an Instrument(...) "
            f"with tick_size and point_value for others."
        )
    tick, point_value = FUTURES_SPECS[key]
    return Instrument(
        symbol=key, tick_size=tick, point_value=point_value, max_leverage=max_leverage
    )


def fx_instrument(pair: str, *, max_leverage: float = 30.0) -> Instrument:
    """A spot FX pair quoted in its quote currency; units are base-currency units.

    Pip-fraction ticks (0.00001, or 0.001 for JPY pairs), one-unit lots.
    """
    pair = pair.upper().replace("/", "")
    tick = 0.001 if pair.endswith("JPY") else 0.00001
    quote = pair[3:6] if len(pair) >= 6 else "USD"
    return Instrument(
        symbol=pair,
        tick_size=tick,
        point_value=1.0,
        currency=quote,
        lot_size=1.0,
        max_leverage=max_leverage,
    )


def crypto_instrument(symbol: str, *, max_leverage: float = 1.0) -> Instrument:
    """A spot crypto pair: cent ticks, 1e-8 lots (one satoshi), no leverage by default."""
    return Instrument(
        symbol=symbol, tick_size=0.01, point_value=1.0, lot_size=1e-8, max_leverage=max_leverage
    )
