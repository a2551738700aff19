"""Sizing: the stop atr_multiple ATRs away loses at most risk_per_trade of equity, in whole
lots, capped by max_position; nothing to size on gives 0 units and says why."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moola.core.errors import ConfigError
from moola.runtime.sizing import position_size


def test_one_percent_at_two_atr() -> None:
    size = position_size(10_000.0, 100.0, 0.5, risk_per_trade=0.01, atr_multiple=2.0, lot=0.01)
    assert size.units == pytest.approx(100.0)  # 100 risked / (2 * 0.5) per unit
    assert size.stop_distance == pytest.approx(1.0)
    assert size.risk == pytest.approx(100.0)
    assert size.reason == ""


def test_units_round_down_to_lots() -> None:
    size = position_size(10_000.0, 100.0, 0.7, lot=1.0)  # 100 / 1.4 = 71.4
    assert size.units == 71.0
    exact = position_size(3.0, 10.0, 0.5, risk_per_trade=0.1, atr_multiple=2.0, lot=0.1)
    assert exact.units == pytest.approx(0.3)  # 0.3 / 0.1 is 2.999... in floats: still 3 lots


def test_max_position_caps_and_says_so() -> None:
    size = position_size(10_000.0, 100.0, 0.5, lot=0.01, max_position=2.5)
    assert size.units == pytest.approx(2.5)
    assert "max_position" in size.reason


@pytest.mark.parametrize(
    ("equity", "price", "atr", "named"),
    [
        (10_000.0, 100.0, 0.0, "atr"),
        (10_000.0, 100.0, math.nan, "atr"),
        (10_000.0, 100.0, -1.0, "atr"),
        (10_000.0, math.nan, 1.0, "price"),
        (0.0, 100.0, 1.0, "equity"),
    ],
)
def test_nothing_to_size_on_gives_zero_units_with_the_reason(equity, price, atr, named) -> None:
    size = position_size(equity, price, atr)
    assert size.units == 0.0
    assert size.reason.startswith(named)


def test_a_budget_below_one_lot_gives_zero_units() -> None:
    size = position_size(100.0, 50_000.0, 500.0, lot=1.0)  # 1 / 1000 of a unit
    assert size.units == 0.0
    assert "less than one lot" in size.reason


@pytest.mark.parametrize(
    "settings",
    [
        {"risk_per_trade": 0.0},
        {"risk_per_trade": -0.01},
        {"risk_per_trade": 1.5},
        {"risk_per_trade": math.nan},
        {"atr_multiple": 0.0},
        {"lot": -1.0},
        {"max_position": 0.0},
        {"point_value": math.inf},
    ],
)
def test_bad_settings_are_refused_naming_them(settings) -> None:
    (name,) = settings
    with pytest.raises(ConfigError, match=name) as info:
        position_size(10_000.0, 100.0, 1.0, **settings)
    assert info.value.param == name


@given(
    equity=st.floats(100.0, 1e7),
    atr=st.floats(1e-3, 1e3),
    risk=st.floats(0.001, 0.05),
    multiple=st.floats(0.5, 5.0),
    lot=st.sampled_from([1e-8, 1e-3, 0.1, 1.0]),
)
def test_a_sized_trade_risks_at_most_the_budget_and_one_more_lot_exceeds_it(
    equity, atr, risk, multiple, lot
) -> None:
    size = position_size(equity, 100.0, atr, risk_per_trade=risk, atr_multiple=multiple, lot=lot)
    budget = risk * equity
    assert size.units >= 0.0
    assert size.units * multiple * atr <= budget * (1.0 + 1e-9)
    assert (size.units + lot) * multiple * atr > budget * (1.0 - 1e-9)
    assert math.isclose(size.units / lot, round(size.units / lot), abs_tol=1e-6)
