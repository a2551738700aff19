"""Backtest statistics, charts and probability signals, checked against hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from moola.backtest import metrics
from moola.backtest.plots import drawdown_png, equity_png, trades_png
from moola.backtest.signals import positions_from_probabilities, realised_volatility
from moola.core.errors import ConfigError
from tests.conftest import random_walk_bars

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _equity_df(values, position=None) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC"),
            "equity": np.asarray(values, dtype=float),
            "position": np.ones(n) if position is None else np.asarray(position, dtype=float),
        }
    )


def _trades(pnl, fees=None) -> pd.DataFrame:
    n = len(pnl)
    return pd.DataFrame(
        {
            "entry_time": pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC"),
            "exit_time": pd.date_range("2024-01-02", periods=n, freq="D", tz="UTC"),
            "side": ["long"] * n,
            "size": np.full(n, 2.0),
            "entry_price": np.full(n, 100.0),
            "exit_price": np.full(n, 105.0),
            "pnl": np.asarray(pnl, dtype=float),
            "fees": np.zeros(n) if fees is None else np.asarray(fees, dtype=float),
            "bars_held": np.full(n, 3),
            "return": np.asarray(pnl, dtype=float) / 200.0,
        }
    )


# ---- equity statistics ---------------------------------------------------------------


def test_small_series_by_hand():
    equity = np.array([100.0, 110.0, 99.0, 121.0])
    assert metrics.total_return(equity) == pytest.approx(0.21)
    # 3 intervals at 3 periods per year = exactly one year: CAGR = total return.
    assert metrics.cagr(equity, 3) == pytest.approx(0.21)
    dd = metrics.max_drawdown(equity)
    assert dd.depth == pytest.approx(0.10)  # 110 -> 99
    assert (dd.start, dd.trough, dd.recovery, dd.bars) == (1, 2, 3, 2)
    assert metrics.calmar(equity, 3) == pytest.approx(2.1)
    np.testing.assert_allclose(metrics.drawdown_series(equity), [0, 0, 0.1, 0], atol=1e-12)
    # Sortino: mean(0.1, -0.1, 22/99) over sqrt(mean(0, 0.01, 0)), times sqrt(3).
    mean = (0.1 - 0.1 + 22 / 99) / 3
    assert metrics.sortino(equity, 3) == pytest.approx(mean / math.sqrt(0.01 / 3) * math.sqrt(3))


def test_sharpe_and_volatility_match_numpy():
    rng = np.random.default_rng(3)
    equity = 1000 * np.cumprod(1 + rng.normal(0.0005, 0.01, 500))
    r = equity[1:] / equity[:-1] - 1
    assert metrics.sharpe(equity, 252) == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(252))
    assert metrics.annual_volatility(equity, 252) == pytest.approx(r.std(ddof=1) * np.sqrt(252))
    assert metrics.cagr(equity, 252) == pytest.approx((equity[-1] / equity[0]) ** (252 / 499) - 1)


def test_drawdown_without_recovery_runs_to_the_end():
    dd = metrics.max_drawdown(np.array([100.0, 120.0, 90.0, 100.0, 95.0]))
    assert dd.depth == pytest.approx(0.25)
    assert (dd.start, dd.trough, dd.recovery, dd.bars) == (1, 2, None, 3)


def test_flat_equity_has_nan_ratios_and_no_drawdown():
    equity = np.full(10, 100.0)
    assert math.isnan(metrics.sharpe(equity, 252))
    assert math.isnan(metrics.sortino(equity, 252))
    assert math.isnan(metrics.calmar(equity, 252))
    assert metrics.annual_volatility(equity, 252) == 0.0
    assert metrics.max_drawdown(equity) == metrics.Drawdown(0.0, None, None, None, 0)


def test_compute_stats_agrees_to_the_bit_with_the_single_statistic_functions():
    # compute_stats shares its reductions between statistics; each must still equal
    # what the documented one-statistic function gives on the same equity.
    rng = np.random.default_rng(3)
    equity = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 500)))
    stats = metrics.compute_stats(_equity_df(equity), _trades([]), periods_per_year=252)
    assert stats["annual_volatility"] == metrics.annual_volatility(equity, 252)
    assert stats["sharpe"] == metrics.sharpe(equity, 252)
    assert stats["sortino"] == metrics.sortino(equity, 252)
    deepest = metrics.drawdown_series(equity)
    assert stats["max_drawdown"] == deepest.max()
    assert stats["max_drawdown_trough"] == str(
        _equity_df(equity)["timestamp"][deepest.argmax()].isoformat()
    )


def test_drawdown_of_a_series_that_never_had_a_positive_peak_is_zero():
    # the running peak is not positive, so there is no fraction below it to report
    assert metrics.max_drawdown(np.array([-5.0, -7.0, -6.0])) == metrics.Drawdown(
        0.0, None, None, None, 0
    )
    dd = metrics.max_drawdown([100.0, 50.0, -10.0, 120.0])  # a list is fine
    assert (dd.depth, dd.start, dd.trough, dd.recovery, dd.bars) == (1.1, 0, 2, 3, 3)


def test_trade_statistics_by_hand():
    stats = metrics.trade_stats(_trades([10.0, -5.0, 20.0], fees=[1.0, 1.0, 1.0]))
    assert stats["n_trades"] == 3
    assert stats["win_rate"] == pytest.approx(2 / 3)
    assert stats["profit_factor"] == pytest.approx(30 / 5)
    assert stats["expectancy"] == pytest.approx(25 / 3)
    assert stats["avg_win"] == pytest.approx(15.0)
    assert stats["avg_loss"] == pytest.approx(-5.0)
    assert stats["trade_fees"] == pytest.approx(3.0)
    assert stats["traded_notional"] == pytest.approx(3 * 2 * (100 + 105))


def test_compute_stats_is_json_with_documented_edge_values():
    # All trades win: profit factor is inf, written as the string "inf".
    stats = metrics.compute_stats(
        _equity_df([100, 110, 99, 121], position=[0, 1, 1, 0]),
        _trades([5.0, 6.0], fees=[0.5, 0.25]),
        periods_per_year=3,
    )
    text = json.dumps(stats, allow_nan=False)
    assert json.loads(text)["profit_factor"] == "inf"
    assert stats["max_drawdown"] == pytest.approx(0.1)
    assert stats["max_drawdown_start"] == "2024-01-02T00:00:00+00:00"
    assert stats["max_drawdown_recovery"] == "2024-01-04T00:00:00+00:00"
    assert stats["exposure"] == pytest.approx(0.5)
    assert stats["costs_paid"] == pytest.approx(0.75)  # no fills table: the trades' fees
    assert stats["n_trades"] == 2 and stats["win_rate"] == 1.0
    # Notional 2 trades * 2 units * 205 over mean equity 107.5; the series spans one year.
    assert stats["turnover"] == pytest.approx(820 / 107.5)
    assert stats["turnover_per_year"] == pytest.approx(820 / 107.5)


def test_compute_stats_without_trades_and_flat_equity():
    stats = metrics.compute_stats(
        _equity_df([100.0] * 5, position=[0] * 5), _trades([]), periods_per_year=252
    )
    json.dumps(stats, allow_nan=False)
    assert stats["n_trades"] == 0
    assert stats["sharpe"] is None and stats["win_rate"] is None
    assert stats["profit_factor"] is None and stats["expectancy"] is None
    assert stats["max_drawdown"] == 0.0 and stats["max_drawdown_start"] is None
    assert stats["exposure"] == 0.0 and stats["costs_paid"] == 0.0


def test_fills_give_exact_costs_and_turnover_including_an_open_position():
    # Buy 10 at 100.5 (reference open 100), sell 4 at 109.0 (reference 110): 6 still open.
    fills = pd.DataFrame(
        {"qty": [10.0, -4.0], "price": [100.5, 109.0], "fee": [1.0, 2.5],
         "reference": [100.0, 110.0]}
    )  # fmt: skip
    trades = _trades([30.0], fees=[3.0])  # the trades table would only hold the 4 closed
    stats = metrics.compute_stats(
        _equity_df([100, 99, 98], position=[10, 10, 6]), trades, periods_per_year=2,
        fills_df=fills,
    )  # fmt: skip
    assert stats["commission_paid"] == pytest.approx(3.5)
    assert stats["spread_slippage_paid"] == pytest.approx(10 * 0.5 + 4 * 1.0)
    assert stats["costs_paid"] == pytest.approx(12.5)
    assert stats["traded_notional"] == pytest.approx(1005 + 436)
    assert stats["turnover"] == pytest.approx(1441 / 99)
    # Without fills, costs are the closed trades' fees and no spread/slippage is known.
    plain = metrics.compute_stats(_equity_df([100, 99, 98]), trades, periods_per_year=2)
    assert plain["costs_paid"] == 3.0 and plain["spread_slippage_paid"] == 0.0


def test_periods_per_year():
    assert metrics.periods_per_year("1d") == 252
    assert metrics.periods_per_year("1h") == 252 * 24
    assert metrics.periods_per_year("1m", hours_per_day=6.5) == pytest.approx(252 * 390)
    assert metrics.periods_per_year("1d", days_per_year=365) == 365
    with pytest.raises(ConfigError, match="timeframe"):
        metrics.periods_per_year("fortnight")
    stamps = pd.date_range("2020-01-01", periods=366, freq="D", tz="UTC")
    assert metrics.observed_periods_per_year(stamps) == pytest.approx(365.25)
    with pytest.raises(ConfigError, match="periods_per_year"):
        metrics.compute_stats(_equity_df([1, 2]), _trades([]), periods_per_year=0)


# ---- charts ----------------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_charts_are_png_of_the_requested_size():
    bars = random_walk_bars(300)
    equity = _equity_df(100 + np.cumsum(np.random.default_rng(0).normal(0, 1, 300)))
    equity["timestamp"] = bars["timestamp"]
    trades = _trades([3.0, -2.0])
    trades["entry_time"] = bars["timestamp"].iloc[[10, 100]].to_numpy()
    trades["exit_time"] = bars["timestamp"].iloc[[50, 150]].to_numpy()
    trades.loc[1, "side"] = "short"
    assert _png_size(equity_png(equity, size=(640, 320))) == (640, 320)
    assert _png_size(drawdown_png(equity, size=(500, 250))) == (500, 250)
    assert _png_size(trades_png(bars, trades, size=(800, 300))) == (800, 300)
    assert _png_size(trades_png(bars, trades.iloc[0:0])) == (1000, 400)


# ---- positions from probabilities ------------------------------------------------------


def test_hysteresis_long_only():
    prob = [0.5, 0.56, 0.52, 0.50, 0.49, 0.54, 0.55, np.nan, 0.6]
    pos = positions_from_probabilities(prob, long_threshold=0.55, exit_threshold=0.5)
    # enter at 0.56, hold through 0.52 and 0.50 (exit needs < 0.5), exit at 0.49,
    # 0.54 does not enter, 0.55 does, nan closes, 0.6 re-enters.
    np.testing.assert_array_equal(pos, [0, 1, 1, 1, 0, 0, 1, 0, 1])


def test_hysteresis_long_short_flip_and_fraction():
    prob = [0.7, 0.3, 0.45, 0.52, 0.6, 0.48]
    pos = positions_from_probabilities(
        prob, long_threshold=0.6, short_threshold=0.4, exit_threshold=0.5, fraction=0.5
    )
    # long, flip short, hold short (0.45 <= 0.5), exit short (> 0.5), long, exit long.
    np.testing.assert_array_equal(pos, [0.5, -0.5, -0.5, 0, 0.5, 0])


def test_bad_probabilities_and_thresholds_are_named():
    with pytest.raises(ConfigError, match=r"rows 1, 3"):
        positions_from_probabilities([0.5, 1.2, 0.4, -0.1])
    with pytest.raises(ConfigError, match="exit_threshold"):
        positions_from_probabilities([0.5], long_threshold=0.6, exit_threshold=0.7)
    with pytest.raises(ConfigError, match="short_threshold"):
        positions_from_probabilities([0.5], long_threshold=0.6, short_threshold=0.7)
    with pytest.raises(ConfigError, match="close="):
        positions_from_probabilities([0.5], sizing="vol_target")
    with pytest.raises(ConfigError, match="sizing"):
        positions_from_probabilities([0.5], sizing="kelly")  # type: ignore[arg-type]


def test_vol_target_sizing_by_hand():
    # Log returns alternate +a, -a: sample std over 4 returns = a * sqrt(4/3).
    a = 0.01
    close = 100 * np.exp(np.cumsum([0, a, -a, a, -a, a, -a]))
    prob = np.full(close.size, 0.9)
    pos = positions_from_probabilities(
        prob, sizing="vol_target", close=close, target_vol=0.05, vol_lookback=4,
        periods_per_year=100, fraction=1.0,
    )  # fmt: skip
    vol = a * math.sqrt(4 / 3) * 10
    np.testing.assert_allclose(pos[:4], 0.0)  # fewer than 4 returns yet
    np.testing.assert_allclose(pos[4:], 0.05 / vol)
    capped = positions_from_probabilities(
        prob, sizing="vol_target", close=close, target_vol=5.0, vol_lookback=4, fraction=0.8
    )
    np.testing.assert_allclose(capped[4:], 0.8)


def test_vol_target_position_ignores_future_bars():
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
    prob = rng.uniform(0, 1, 400)
    kwargs = dict(sizing="vol_target", short_threshold=0.45, vol_lookback=30)
    base = positions_from_probabilities(prob, close=close, **kwargs)
    for t in (50, 200, 398):
        future_close, future_prob = close.copy(), prob.copy()
        future_close[t + 1 :] *= rng.uniform(0.5, 2.0, 399 - t)
        future_prob[t + 1 :] = rng.uniform(0, 1, 399 - t)
        changed = positions_from_probabilities(future_prob, close=future_close, **kwargs)
        np.testing.assert_array_equal(changed[: t + 1], base[: t + 1])
    vol = realised_volatility(close, lookback=30, periods_per_year=252)
    assert np.isnan(vol[:30]).all() and np.isfinite(vol[30:]).all()
