"""Costs: spread, slippage and commission models, each checked against hand arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.sim import CommissionModel, FixedBps, SpreadModel, SquareRootImpact, VolatilityScaled


def test_fixed_spread_is_half_paid_per_fill() -> None:
    np.testing.assert_array_equal(SpreadModel(0.5).half_spread(3), [0.25])


def test_per_bar_spread_is_halved_bar_by_bar() -> None:
    half = SpreadModel(np.array([0.2, 0.4, 0.6])).half_spread(3)
    np.testing.assert_allclose(half, [0.1, 0.2, 0.3])


@pytest.mark.parametrize("spread", [np.array([0.1, 0.2]), -0.1, np.nan])
def test_bad_spread_is_refused(spread) -> None:
    with pytest.raises(ConfigError, match="spread"):
        SpreadModel(spread).half_spread(3)


def test_fixed_bps_is_a_fraction_of_the_reference_price() -> None:
    terms = FixedBps(2.0).terms(None, None, None, None)
    # 2 bps of 100 = 0.02 per unit, whatever the size
    assert terms.per_unit(0, 100.0, 5.0) == pytest.approx(0.02)
    assert terms.per_unit(7, 50.0, 1e6) == pytest.approx(0.01)


def test_volatility_scaled_uses_the_range_of_previous_bars_only() -> None:
    high = np.array([11.0, 12.0, 14.0, 13.0])
    low = np.array([10.0, 10.0, 11.0, 12.0])  # ranges 1, 2, 3, 1
    terms = VolatilityScaled(k=0.5, window=2).terms(high, low, None, None)
    # bar 0: nothing before -> 0; bar 1: 0.5*1; bar 2: 0.5*mean(1,2); bar 3: 0.5*mean(2,3)
    np.testing.assert_allclose(terms.fixed, [0.0, 0.5, 0.75, 1.25])
    assert terms.per_unit(3, 999.0, 123.0) == pytest.approx(1.25)


def test_square_root_impact_is_k_sigma_sqrt_q_over_v() -> None:
    close = np.array([100.0, 101.0, 103.0, 102.0, 104.0])  # changes +1, +2, -1, +2
    volume = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    terms = SquareRootImpact(k=2.0, window=3).terms(None, None, close, volume)
    # bar 3: sigma = std(+1, +2) = sqrt(0.5), V = mean(10, 20, 30) = 20
    # bar 4: sigma = std(+1, +2, -1) = sqrt(7/3), V = mean(20, 30, 40) = 30
    np.testing.assert_allclose(terms.impact[3:], [2 * np.sqrt(0.5 / 20), 2 * np.sqrt(7 / 90)])
    # fewer than two price changes before bars 0..2 -> no sigma -> no impact
    np.testing.assert_array_equal(terms.impact[:3], [0.0, 0.0, 0.0])
    # 9 units at bar 3: 2 * sqrt(0.5) * sqrt(9 / 20)
    assert terms.per_unit(3, 100.0, -9.0) == pytest.approx(2 * np.sqrt(0.5) * np.sqrt(9 / 20))


def test_square_root_impact_is_zero_without_volume() -> None:
    close = np.array([100.0, 101.0, 103.0, 102.0])
    terms = SquareRootImpact(k=1.0, window=3).terms(None, None, close, np.zeros(4))
    np.testing.assert_array_equal(terms.impact, np.zeros(4))


def test_commission_per_unit_plus_notional_rate_with_minimum() -> None:
    model = CommissionModel(per_unit=0.5, rate=0.001, minimum=2.0)
    assert model.fee(10, 100.0) == pytest.approx(6.0)  # 10*0.5 + 0.001*1000
    assert model.fee(1, 100.0) == pytest.approx(2.0)  # 0.6 raised to the minimum
    assert model.fee(0, 100.0) == 0.0  # no order, no minimum
    assert model.fee(-10, 100.0, point_value=20.0) == pytest.approx(25.0)  # 5 + 0.001*20000


def test_commission_accepts_arrays() -> None:
    model = CommissionModel(per_unit=0.5, rate=0.001, minimum=2.0)
    fees = model.fee(np.array([10.0, 1.0, 0.0, -4.0]), np.array([100.0, 100.0, 100.0, 1000.0]))
    np.testing.assert_allclose(fees, [6.0, 2.0, 0.0, 6.0])  # last: 2 + 0.001*4000
