"""The compiled backtest takes its terms as one ExecutionConfig, like moola.backtest.run;
the old keyword arguments still work for one release, with a DeprecationWarning."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.sim import (
    CommissionModel,
    ExecutionConfig,
    FixedBps,
    SimResult,
    backtest_positions,
    futures_instrument,
)
from tests.conftest import random_walk_bars

TERMS = ExecutionConfig(
    instrument="futures:NQ",
    initial_cash=500_000.0,
    commission={"per_unit": 2.5},
    spread=0.25,
    slippage=1.0,
    latency_bars=2,
)


def _columns(bars: pd.DataFrame) -> list[pd.Series]:
    return [bars[c] for c in ("open", "high", "low", "close", "volume")]


def _target(n: int) -> np.ndarray:
    return np.where(np.arange(n) % 30 < 15, 1.0, -0.5)


def _assert_same(a: SimResult, b: SimResult) -> None:
    pd.testing.assert_frame_equal(a.equity_frame(), b.equity_frame())
    pd.testing.assert_frame_equal(a.fills, b.fills)
    pd.testing.assert_frame_equal(a.trades, b.trades)


def test_an_execution_config_and_the_old_keywords_give_the_same_backtest():
    bars = random_walk_bars(200, symbol="NQ", seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new form warns about nothing
        new = backtest_positions(
            *_columns(bars), _target(200), TERMS, symbol="NQ", timestamp=bars["timestamp"]
        )
    with pytest.warns(DeprecationWarning, match="execution=moola.sim.ExecutionConfig"):
        old = backtest_positions(
            *_columns(bars),
            _target(200),
            instrument=futures_instrument("NQ"),
            initial_cash=500_000.0,
            commission=CommissionModel(per_unit=2.5),
            spread=0.25,
            slippage=FixedBps(1.0),
            latency_bars=2,
            timestamp=bars["timestamp"],
        )
    _assert_same(new, old)
    assert len(new.trades) > 5 and (new.fills["decision_bar"] == new.fills["bar"] - 2).all()


def test_a_bare_instrument_kind_takes_the_symbol_and_a_mapping_is_validated():
    bars = random_walk_bars(120, seed=5)
    cols, target = _columns(bars), _target(120)
    named = backtest_positions(*cols, target, {"instrument": "futures:NQ"})
    bare = backtest_positions(*cols, target, {"instrument": "futures"}, symbol="NQ")
    _assert_same(named, bare)
    equity = backtest_positions(*cols, target)  # default terms: an equity, 100k cash
    assert equity.initial_cash == 100_000.0
    assert not np.array_equal(equity.equity, named.equity)  # NQ's $20 point value
    with pytest.raises(ConfigError, match="spread"):
        backtest_positions(*cols, target, {"spread": -1.0})
    with pytest.raises(ConfigError, match="ExecutionConfig"):
        backtest_positions(*cols, target, "futures:NQ")


def test_terms_given_twice_or_misspelt_are_refused_naming_them():
    bars = random_walk_bars(20, seed=6)
    cols = _columns(bars)
    with pytest.raises(ConfigError, match="not both"):
        backtest_positions(*cols, np.zeros(20), TERMS, spread=0.1)
    with pytest.raises(ConfigError, match="Did you mean 'latency_bars'"):
        backtest_positions(*cols, np.zeros(20), latency_bar=2)


def test_drawdown_and_times_come_without_copies_and_equal_the_formulas():
    bars = random_walk_bars(300, seed=7)
    stamps = bars["timestamp"]
    result = backtest_positions(*_columns(bars), _target(300), TERMS, timestamp=stamps)
    # the kernel's drawdown is SimResult.drawdown's formula, to the bit
    plain = SimResult(
        timestamp=result.timestamp,
        equity=result.equity,
        cash=result.cash,
        position=result.position,
        price=result.price,
        fills=result.fills,
        trades=result.trades,
        initial_cash=result.initial_cash,
    )
    np.testing.assert_array_equal(result.drawdown, plain.drawdown)
    assert result.drawdown.max() == 0.0 and result.drawdown.min() < 0.0
    # times in another zone or unit are the same instants; the result cannot write them
    prague = stamps.dt.tz_convert("Europe/Prague").astype("datetime64[us, Europe/Prague]")
    other = backtest_positions(*_columns(bars), _target(300), TERMS, timestamp=prague)
    np.testing.assert_array_equal(other.timestamp, result.timestamp)
    assert result.timestamp.dtype == np.dtype("datetime64[ns]")
    with pytest.raises(ValueError, match="read-only"):
        result.timestamp[0] = result.timestamp[1]
    frame = result.equity_frame()
    assert frame["timestamp"].equals(stamps)
    assert list(frame.columns) == ["timestamp", "equity", "cash", "position", "price", "drawdown"]
