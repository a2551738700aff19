"""Intrabar fill rules of market, limit and stop orders, including gaps, by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.schema import make_bars
from moola.sim import (
    CommissionModel,
    EventEngine,
    ExecutionConfig,
    FixedBps,
    equity_instrument,
    limit,
    market,
    stop,
)
from moola.sim.orders import limit_fill_price, reference_price, stop_fill_price

STOCK = equity_instrument("ABC")


def _bars(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    o, h, lo, c = (list(col) for col in zip(*rows, strict=True))
    stamps = pd.date_range("2024-01-02 14:30", periods=len(rows), freq="1min", tz="UTC")
    return make_bars(stamps, o, h, lo, c, [1000.0] * len(rows), symbol="ABC", timeframe="1m")


# ---- the rules as pure functions: (is_buy, level, open, high, low) -> reference price ----


@pytest.mark.parametrize(
    ("is_buy", "level", "bar", "expected"),
    [
        (True, 99.0, (100.0, 101.0, 98.5), 99.0),  # trades through: fills at the limit
        (True, 99.0, (100.0, 101.0, 99.0), math.nan),  # low only touches: no fill
        (True, 99.0, (98.0, 98.5, 97.0), 98.0),  # gap down through it: the better open
        (False, 101.0, (100.0, 101.5, 99.0), 101.0),
        (False, 101.0, (100.0, 101.0, 99.0), math.nan),  # high only touches: no fill
        (False, 101.0, (102.0, 103.0, 101.5), 102.0),  # gap up: the better open
    ],
)
def test_limit_rule(is_buy, level, bar, expected) -> None:
    got = limit_fill_price(is_buy, level, *bar)
    assert got == expected or (math.isnan(expected) and math.isnan(got))


@pytest.mark.parametrize(
    ("is_buy", "level", "bar", "expected"),
    [
        (True, 101.0, (100.0, 101.0, 99.0), 101.0),  # high reaches the stop: triggers
        (True, 101.0, (100.0, 100.9, 99.0), math.nan),
        (True, 101.0, (102.0, 103.0, 101.5), 102.0),  # gap up through it: the worse open
        (False, 99.0, (100.0, 101.0, 99.0), 99.0),
        (False, 99.0, (100.0, 101.0, 99.1), math.nan),
        (False, 99.0, (98.0, 98.5, 97.0), 98.0),  # gap down: the worse open
    ],
)
def test_stop_rule(is_buy, level, bar, expected) -> None:
    got = stop_fill_price(is_buy, level, *bar)
    assert got == expected or (math.isnan(expected) and math.isnan(got))


def test_rules_are_vectorised() -> None:
    got = limit_fill_price(
        np.array([True, True, False]),
        np.array([99.0, 99.0, 101.0]),
        np.array([100.0, 98.0, 100.0]),
        np.array([101.0, 98.5, 101.0]),
        np.array([99.0, 97.0, 99.0]),
    )
    np.testing.assert_array_equal(got, [np.nan, 98.0, np.nan])
    assert reference_price(market(1), 100.0, 101.0, 99.0) == 100.0
    assert reference_price(stop(-1, 99.0), 100.0, 101.0, 99.5) is None


def test_orders_refuse_nonsense() -> None:
    with pytest.raises(ConfigError):
        market(0)
    with pytest.raises(ConfigError):
        limit(1, -5.0)


# ---- the rules inside the event engine, with costs ----


def _run(bars, script, **kwargs):
    """Run a strategy that submits ``script[i]`` (a list of orders) at bar i."""

    def on_bar(ctx):
        return script.get(ctx.i)

    terms = ExecutionConfig.from_terms(
        instrument=STOCK, initial_cash=10_000.0, prop_firm_rules="none", **kwargs
    )
    return EventEngine(bars, terms).run(on_bar)


def test_market_order_fills_next_open_plus_half_spread_slippage_and_fee() -> None:
    bars = _bars([(100, 100.5, 99.5, 100), (101, 102, 100, 101.5), (102, 103, 101, 102)])
    res = _run(
        bars,
        {0: [market(10)], 1: [market(-10)]},
        spread=0.2,
        slippage=FixedBps(10.0),
        commission=CommissionModel(per_unit=1.0),
    )
    buy, sell = res.fills.itertuples()
    assert (buy.bar, buy.decision_bar) == (1, 0)
    assert buy.price == pytest.approx(101.0 + 0.1 + 0.101)  # open + half spread + 10 bps
    assert sell.price == pytest.approx(102.0 - 0.1 - 0.102)
    assert buy.fee == pytest.approx(10.0)
    (trade,) = res.trades.itertuples()
    assert trade.pnl == pytest.approx(10 * (101.798 - 101.201) - 20.0)


def test_latency_delays_the_fill() -> None:
    bars = _bars([(100, 101, 99, 100), (101, 102, 100, 101), (103, 104, 102, 103)])
    res = _run(bars, {0: [market(5)]}, latency_bars=2)
    assert list(res.fills["bar"]) == [2] and res.fills["price"].iloc[0] == 103.0


def _bracket_run(last_bar):
    """Long 10 at 100; at bar 1 a stop-loss at 98 and a take-profit at 103 (one group)."""
    bars = _bars([(100, 100, 100, 100), (100, 100.5, 99.5, 100), last_bar])
    script = {0: [market(10)], 1: [stop(-10, 98.0, oco="b"), limit(-10, 103.0, oco="b")]}
    return _run(bars, script)


def test_stop_and_target_in_one_bar_assume_the_stop() -> None:
    res = _bracket_run((100, 104, 97, 101))  # both levels inside the bar
    assert list(res.fills["type"]) == ["market", "stop"]
    assert res.fills["price"].iloc[-1] == 98.0
    assert res.trades["pnl"].iloc[0] == pytest.approx(-20.0)
    assert res.position[-1] == 0.0  # the take-profit was cancelled, no short opened


def test_gap_through_the_stop_fills_at_the_worse_open() -> None:
    res = _bracket_run((96, 97, 95, 96))
    assert res.fills["price"].iloc[-1] == 96.0
    assert res.trades["pnl"].iloc[0] == pytest.approx(-40.0)


def test_gap_through_the_target_fills_at_the_open_first() -> None:
    # opens above the take-profit, later trades below the stop: the open came first
    res = _bracket_run((104, 105, 97, 98))
    assert list(res.fills["type"]) == ["market", "limit"]
    assert res.fills["price"].iloc[-1] == 104.0
    assert res.trades["pnl"].iloc[0] == pytest.approx(40.0)


def test_limit_touched_but_not_traded_through_stays_pending() -> None:
    bars = _bars([(100, 100, 100, 100), (100, 101, 99, 100), (100, 101, 98.9, 100)])
    seen = []

    def on_bar(ctx):
        seen.append(len(ctx.pending))
        return [limit(5, 99.0)] if ctx.i == 0 else None

    res = EventEngine(bars, ExecutionConfig.from_terms(instrument=STOCK, rules="none")).run(on_bar)
    # bar 1 low == 99: not filled; bar 2 low 98.9 < 99: filled at the limit
    assert seen == [0, 1, 0]
    assert list(res.fills["bar"]) == [2] and res.fills["price"].iloc[0] == 99.0


def test_stop_fill_pays_spread_and_slippage_limit_fill_does_not() -> None:
    bars = _bars([(100, 100, 100, 100), (100, 101, 98, 100), (100, 101, 98, 100)])
    script = {0: [stop(2, 100.5)], 1: [limit(-2, 100.5)]}
    res = _run(bars, script, spread=0.2, slippage=FixedBps(100.0))
    stop_fill, limit_fill = res.fills.itertuples()
    assert stop_fill.price == pytest.approx(100.5 + 0.1 + 1.005)  # 100 bps of 100.5
    assert limit_fill.price == 100.5


def test_leverage_limit_caps_and_refuses_orders() -> None:
    bars = _bars([(100, 100, 100, 100)] * 3)
    res = _run(bars, {0: [market(150)], 1: [market(1)]})
    # 10_000 equity at 100 allows 100 shares: the first order is capped, the second refused
    assert list(res.fills["qty"]) == [100.0]
    assert list(res.rejections["accepted_qty"]) == [100.0, 0.0]
    assert list(res.rejections["requested_qty"]) == [150.0, 1.0]
