"""Golden test: the full statistics of a backtest on a small bundled bars-and-signals pair.

Like backtesting.py's pinned statistics on its bundled GOOG data: every key of
``BacktestResult.stats`` (returns, risk, trades, costs, prop-firm verdicts) is pinned, floats
to 1e-12 relative, the rest exactly, for both engines. A change to fills, costs, sizing,
accounting, annualisation or any statistic's formula fails here; if the change is meant,
say why in the commit and re-pin the numbers.

The fixture ``tests/fixtures/golden_bars_signals.csv`` holds 320 hourly bars of one symbol
(a seeded random walk rounded to cents) and a target position per bar in {-1, -0.5, 0, 0.5,
1}, held for 3 to 24 bars at a time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from moola.backtest import run
from moola.data.schema import make_bars
from moola.sim import ExecutionConfig

FIXTURE = Path(__file__).parent / "fixtures" / "golden_bars_signals.csv"
TERMS = dict(initial_cash=100_000.0, commission=0.0005, spread=0.02, slippage=1.0)
RTOL = 1e-12

GOLDEN_STATS: dict[str, Any] = {
    "start": "2024-01-02T00:00:00+00:00",
    "end": "2024-01-15T07:00:00+00:00",
    "bars": 320,
    "periods_per_year": 6048.0,
    "initial_equity": 100000.0,
    "final_equity": 105801.43276749298,
    "total_return": 0.058014327674929866,
    "cagr": 1.9130057527156845,
    "annual_volatility": 0.3215364916247448,
    "sharpe": 3.485756383664471,
    "sortino": 5.125459583568553,
    "calmar": 40.8066663007065,
    "max_drawdown": 0.04687973623276753,
    "max_drawdown_start": "2024-01-08T15:00:00+00:00",
    "max_drawdown_trough": "2024-01-11T19:00:00+00:00",
    "max_drawdown_recovery": "2024-01-12T09:00:00+00:00",
    "max_drawdown_bars": 90,
    "exposure": 0.790625,
    "n_trades": 13,
    "win_rate": 0.46153846153846156,
    "profit_factor": 1.5053236174323863,
    "expectancy": 354.7151020859205,
    "avg_trade_return": 0.008076966064334268,
    "avg_win": 2289.454727203332,
    "avg_loss": -1303.6331480147178,
    "best_trade": 4169.601015703993,
    "worst_trade": -2675.7236467200128,
    "avg_bars_held": 23.615384615384617,
    "gross_profit": 13736.72836321999,
    "gross_loss": 9125.432036103024,
    "net_pnl": 4611.2963271169665,
    "traded_notional": 1798976.9730140003,
    "turnover": 17.413982079836785,
    "turnover_per_year": 330.1559988051814,
    "commission_paid": 899.4884865070001,
    "spread_slippage_paid": 347.5787460000172,
    "costs_paid": 1247.0672325070173,
    "engine": "vectorised",
    "instrument": "GOLD",
    "final_position": -468.0,
    "rejected_orders": 0,
    "prop_firm": {
        "passed": False,
        "rules": [
            {
                "name": "daily_loss_limit",
                "passed": True,
                "breach_time": None,
                "breach_value": None,
                "limit": 0.05,
                "detail": "worst daily loss 4.41% of the initial balance (limit "
                "5.00%, days in Europe/Prague)",
            },
            {
                "name": "total_loss_limit",
                "passed": True,
                "breach_time": None,
                "breach_value": None,
                "limit": 0.1,
                "detail": "worst loss 2.95% of the initial balance 100,000.00 (limit 10.00%)",
            },
            {
                "name": "profit_target",
                "passed": False,
                "breach_time": None,
                "breach_value": None,
                "limit": 0.1,
                "detail": "best gain 8.83% of the initial balance never reached the target 10.00%",
            },
            {
                "name": "minimum_trading_days",
                "passed": True,
                "breach_time": "2024-01-05T10:00:00+00:00",
                "breach_value": 12.0,
                "limit": 4.0,
                "detail": "12 trading days; the minimum 4 was reached at 2024-01-05 10:00:00+00:00",
            },
        ],
    },
    "risk": {
        "breaches": 0,
        "first_breach_rule": None,
        "first_breach_time": None,
        "denied_orders": 0,
    },
}


def _golden_pair() -> tuple[pd.DataFrame, pd.Series]:
    table = pd.read_csv(FIXTURE)
    bars = make_bars(
        table["timestamp"],
        table["open"],
        table["high"],
        table["low"],
        table["close"],
        table["volume"],
        symbol="GOLD",
        timeframe="1h",
    )
    return bars, table["position"]


def _assert_pinned(actual: Any, expected: Any, where: str = "stats") -> None:
    """``actual`` equals ``expected``: same keys and lengths, floats within RTOL, the rest
    exactly; the message names the first differing entry."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not a dict"
        assert list(actual) == list(expected), f"{where}: keys {list(actual)} != {list(expected)}"
        for key, value in expected.items():
            _assert_pinned(actual[key], value, f"{where}[{key!r}]")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r}"
        for i, (got, value) in enumerate(zip(actual, expected, strict=True)):
            _assert_pinned(got, value, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(actual, float) and math.isclose(
            actual, expected, rel_tol=RTOL, abs_tol=RTOL
        ), f"{where}: {actual!r} != pinned {expected!r}"
    else:
        assert type(actual) is type(expected) and actual == expected, (
            f"{where}: {actual!r} != pinned {expected!r}"
        )


@pytest.mark.parametrize("engine", ["vectorised", "event"])
def test_backtest_stats_match_the_pinned_values(engine):
    bars, positions = _golden_pair()
    result = run(bars, positions.to_numpy(), ExecutionConfig(engine=engine, **TERMS))
    _assert_pinned(result.stats, {**GOLDEN_STATS, "engine": engine})


def test_the_golden_check_fails_on_a_changed_statistic():
    bars, positions = _golden_pair()
    stats = run(bars, positions.to_numpy(), ExecutionConfig(**TERMS)).stats
    nudged = {**stats, "sharpe": stats["sharpe"] * (1 + 1e-9)}
    with pytest.raises(AssertionError, match=r"stats\['sharpe'\]"):
        _assert_pinned(nudged, GOLDEN_STATS)
    with pytest.raises(AssertionError, match="keys"):
        _assert_pinned({k: v for k, v in stats.items() if k != "cagr"}, GOLDEN_STATS)
    rules = stats["prop_firm"]["rules"]
    changed = {**stats, "prop_firm": {**stats["prop_firm"], "rules": rules[:-1]}}
    with pytest.raises(AssertionError, match="rules"):
        _assert_pinned(changed, GOLDEN_STATS)
