"""Portfolio accounting and the sizing rule, against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.sim import (
    TRADE_COLUMNS,
    Instrument,
    Portfolio,
    SimResult,
    crypto_instrument,
    equity_instrument,
    futures_instrument,
)

STOCK = equity_instrument("ABC")
NQ = futures_instrument("NQ")


def test_long_round_trip() -> None:
    pf = Portfolio(10_000.0, STOCK)
    pf.fill("t0", 10, 100.0, fee=1.0)
    assert pf.mark("t0", 102.0) == pytest.approx(10_019.0)  # 9_999 cash + 20 unrealised
    assert pf.unrealised == pytest.approx(20.0)
    assert (pf.position, pf.avg_price, pf.cash) == (10.0, 100.0, 9_999.0)
    (trade,) = pf.fill("t1", -10, 105.0, fee=1.0)
    pf.mark("t1", 106.0)
    assert pf.position == 0.0 and pf.unrealised == 0.0
    assert pf.realised == pytest.approx(50.0)  # gross, before fees
    assert pf.fees == pytest.approx(2.0)
    assert pf.cash == pytest.approx(10_048.0) and pf.equity == pytest.approx(10_048.0)
    assert (trade.side, trade.size, trade.entry_price, trade.exit_price) == (
        "long",
        10.0,
        100.0,
        105.0,
    )
    assert (trade.entry_time, trade.exit_time, trade.bars_held) == ("t0", "t1", 1)
    assert trade.pnl == pytest.approx(48.0) and trade.fees == pytest.approx(2.0)
    assert trade.ret == pytest.approx(48.0 / 1_000.0)


def test_short_round_trip_with_point_value() -> None:
    pf = Portfolio(100_000.0, NQ)  # 20 USD per point
    pf.fill(0, -2, 15_000.0, fee=4.0)
    pf.mark(0, 14_990.0)
    assert pf.unrealised == pytest.approx(400.0)  # -2 * (14_990 - 15_000) * 20
    assert pf.equity == pytest.approx(100_396.0)
    (trade,) = pf.fill(1, 2, 14_950.0, fee=4.0)
    assert trade.side == "short"
    assert pf.realised == pytest.approx(2_000.0)  # 2 * 50 points * 20
    assert trade.pnl == pytest.approx(1_992.0)
    assert trade.ret == pytest.approx(1_992.0 / (2 * 15_000.0 * 20))
    assert pf.cash == pytest.approx(101_992.0)


def test_flip_long_to_short_in_one_fill_closes_then_opens() -> None:
    pf = Portfolio(10_000.0, STOCK)
    pf.fill(0, 10, 100.0, fee=1.0)
    (closed,) = pf.fill(1, -30, 110.0, fee=3.0)
    # the closing third of the fill carries a third of its fee
    assert closed.side == "long" and closed.size == 10.0
    assert closed.fees == pytest.approx(2.0)  # 1 entry + 3 * 10/30 exit
    assert closed.pnl == pytest.approx(98.0)  # 10 * 10 - 2
    assert (pf.position, pf.avg_price) == (-20.0, 110.0)
    (second,) = pf.fill(2, 20, 100.0, fee=2.0)
    assert second.side == "short" and second.size == 20.0 and second.entry_time == 1
    assert second.fees == pytest.approx(4.0)  # 2 left of the flip fee + 2 exit
    assert second.pnl == pytest.approx(196.0)  # 20 * 10 - 4
    assert pf.realised == pytest.approx(300.0) and pf.fees == pytest.approx(6.0)
    assert pf.cash == pytest.approx(10_294.0)
    assert sum(t.pnl for t in pf.trades) == pytest.approx(pf.cash - 10_000.0)


def test_partial_exit_realises_pro_rata_at_average_price() -> None:
    pf = Portfolio(10_000.0, STOCK)
    pf.fill(0, 10, 100.0, fee=2.0)
    pf.fill(1, 10, 110.0, fee=2.0)
    assert pf.avg_price == pytest.approx(105.0)
    (part,) = pf.fill(2, -5, 120.0, fee=1.0)
    assert part.size == 5.0 and part.entry_price == pytest.approx(105.0)
    assert part.fees == pytest.approx(2.0)  # 4 entry fees * 5/20 + 1 exit
    assert part.pnl == pytest.approx(73.0)  # 5 * 15 - 2
    assert part.ret == pytest.approx(73.0 / (5 * 105.0))
    assert (pf.position, pf.avg_price) == (15.0, pytest.approx(105.0))
    (rest,) = pf.fill(3, -15, 100.0, fee=3.0)
    assert rest.fees == pytest.approx(6.0)  # 3 entry fees left + 3 exit
    assert rest.pnl == pytest.approx(-81.0)  # 15 * -5 - 6
    assert pf.position == 0.0
    assert part.pnl + rest.pnl == pytest.approx(pf.cash - 10_000.0)


def test_unrealised_marks_follow_the_close() -> None:
    pf = Portfolio(50_000.0, NQ)
    pf.fill(0, 3, 15_000.25, fee=0.0)
    pf.mark(0, 15_010.75)
    assert pf.unrealised == pytest.approx(630.0)  # 3 * 10.5 points * 20
    pf.mark(1, 14_990.25)
    assert pf.unrealised == pytest.approx(-600.0)  # 3 * -10 * 20
    assert pf.equity == pytest.approx(49_400.0)


def test_bars_held_counts_marks_between_entry_and_exit() -> None:
    pf = Portfolio(10_000.0, STOCK)
    pf.fill("a", 1, 10.0)  # before the first mark: bar 0
    for t in range(3):
        pf.mark(t, 10.0)
    (trade,) = pf.fill("b", -1, 11.0)
    assert trade.bars_held == 3


def test_trades_frame_has_the_documented_columns() -> None:
    pf = Portfolio(10_000.0, STOCK)
    assert tuple(pf.trades_frame().columns) == TRADE_COLUMNS
    pf.fill(0, 1, 10.0)
    pf.fill(1, -1, 12.0)
    frame = pf.trades_frame()
    assert tuple(frame.columns) == TRADE_COLUMNS
    assert frame.loc[0, "return"] == pytest.approx(0.2) and frame.loc[0, "side"] == "long"


def test_sizing_rounds_toward_zero_to_whole_lots() -> None:
    assert STOCK.units_for(0.5, 10_000.0, 33.0) == 151.0  # 5_000 / 33 = 151.5
    assert STOCK.units_for(-0.5, 10_000.0, 33.0) == -151.0
    assert NQ.units_for(1.0, 100_000.0, 15_000.0) == 0.0  # 1/3 of a contract
    assert NQ.units_for(1.0, 1_000_000.0, 15_000.0) == 3.0  # 3.33 contracts
    btc = crypto_instrument("BTC-USD")
    assert btc.units_for(1.0, 1_000.0, 30_000.0) == pytest.approx(0.03333333, abs=1e-12)


def test_sizing_clips_to_max_leverage_and_stops_when_blown() -> None:
    assert STOCK.units_for(2.0, 10_000.0, 100.0) == 100.0  # clipped to 1x
    lev = Instrument(symbol="X", max_leverage=3.0)
    assert lev.units_for(2.0, 10_000.0, 100.0) == 200.0
    assert STOCK.units_for(1.0, -5.0, 100.0) == 0.0


def test_instrument_refuses_nonsense() -> None:
    with pytest.raises(ConfigError, match="point_value"):
        Instrument(symbol="X", point_value=0.0)
    with pytest.raises(ConfigError, match="known roots"):
        futures_instrument("ZZ")


def test_drawdown_is_measured_from_the_running_peak() -> None:
    eq = np.array([100.0, 110.0, 99.0, 121.0])
    res = SimResult(
        timestamp=np.arange(4),
        equity=eq,
        cash=eq,
        position=np.zeros(4),
        price=np.ones(4),
        fills=None,
        trades=None,
        initial_cash=100.0,
    )
    np.testing.assert_allclose(res.drawdown, [0.0, 0.0, -0.1, 0.0])
    assert list(res.equity_frame().columns) == [
        "timestamp",
        "equity",
        "cash",
        "position",
        "price",
        "drawdown",
    ]
