"""A backtest records its risk: the rules streamed bar by bar give one breach table from
both engines, denied orders are kept, and both tables are written with the result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moola.backtest import run
from moola.backtest.run import risk_summary
from moola.sim import BREACH_COLUMNS, ExecutionConfig
from tests.conftest import random_walk_bars

# Tight limits, so random targets on a random walk breach them; the other two rules never
# breach but see every bar and every fill.
RULES = [
    {"rule": "daily_loss_limit", "pct": 0.004, "timezone": "Europe/Prague"},
    {"rule": "total_loss_limit", "pct": 0.01},
    {"rule": "profit_target", "pct": 0.02},
    {"rule": "minimum_trading_days", "days": 3},
]
TERMS = {"initial_cash": 50_000.0, "spread": 0.01, "slippage": 1.0, "commission": 2e-4}


def _market(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    bars = random_walk_bars(n, timeframe="1h", seed=seed)
    rng = np.random.default_rng(seed)
    target = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], n // 8 + 1).repeat(8)[:n]
    return bars, target


def _both(bars, target, latency: int = 1):
    return [
        run(
            bars, target, ExecutionConfig(engine=engine, latency_bars=latency, rules=RULES, **TERMS)
        )
        for engine in ("vectorised", "event")
    ]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 5_000), n=st.integers(20, 300), latency=st.integers(1, 3))
def test_both_engines_record_the_same_breaches(seed, n, latency) -> None:
    bars, target = _market(n, seed)
    vec, evt = _both(bars, target, latency)
    assert list(vec.breaches.columns) == list(BREACH_COLUMNS)
    pd.testing.assert_frame_equal(vec.breaches, evt.breaches)
    pd.testing.assert_frame_equal(vec.rejections, evt.rejections)
    np.testing.assert_array_equal(vec.equity["equity"], evt.equity["equity"])


def test_the_breaches_are_the_streamed_first_crossings() -> None:
    bars, target = _market(300, seed=7)
    vec, evt = _both(bars, target)
    assert vec.breaches["rule"].tolist() == ["daily_loss_limit", "total_loss_limit"]
    pd.testing.assert_frame_equal(vec.breaches, evt.breaches)
    # Recording changes nothing: trading went on after the breaches, as without rules.
    free = run(bars, target, ExecutionConfig(rules="none", **TERMS))
    np.testing.assert_array_equal(vec.equity["equity"], free.equity["equity"])
    assert free.breaches.empty
    # The batch verdicts stay the batch verdicts (on bar close times).
    verdicts = {r["name"]: r["passed"] for r in vec.stats["prop_firm"]["rules"]}
    assert verdicts["daily_loss_limit"] is False and verdicts["total_loss_limit"] is False
    first = vec.breaches.iloc[0]
    assert risk_summary(vec.breaches, vec.rejections) == {
        "breaches": 2,
        "first_breach_rule": "daily_loss_limit",
        "first_breach_time": first["timestamp"],
        "denied_orders": 0,
    }


@pytest.mark.parametrize("on_breach", ["halt", "flatten"])
def test_a_halting_backtest_records_the_breach_and_the_denied_orders(on_breach) -> None:
    bars, target = _market(300, seed=7)
    config = ExecutionConfig(engine="event", on_breach=on_breach, rules=RULES, **TERMS)
    result = run(bars, target, config)
    (breach,) = result.breaches.itertuples()  # the first breach halts: no second one
    assert breach.rule == "daily_loss_limit"
    denied = result.rejections
    assert len(denied) > 0 and (denied["bar"] > breach.bar).all()
    assert denied["reason"].str.startswith("broker halted: daily_loss_limit breached").all()
    assert risk_summary(result.breaches, denied)["denied_orders"] == len(denied)
    last = result.equity["position"].iloc[breach.bar + 2 :]
    assert (last == (0.0 if on_breach == "flatten" else last.iloc[0])).all()


def test_to_dir_writes_the_breaches_and_the_denied_orders(tmp_path) -> None:
    bars, target = _market(300, seed=7)
    config = ExecutionConfig(engine="event", on_breach="halt", rules=RULES, **TERMS)
    result = run(bars, target, config)
    out = result.to_dir(tmp_path / "bt")
    breaches = pd.read_csv(out / "breaches.csv")
    assert list(breaches.columns) == list(BREACH_COLUMNS)
    assert breaches["rule"].tolist() == ["daily_loss_limit"]
    assert len(pd.read_csv(out / "rejections.csv")) == len(result.rejections)


def test_the_stats_carry_the_risk_summary() -> None:
    bars, target = _market(300, seed=7)
    config = ExecutionConfig(engine="event", on_breach="halt", rules=RULES, **TERMS)
    result = run(bars, target, config)
    risk = result.stats["risk"]
    assert risk["breaches"] == 1 and risk["first_breach_rule"] == "daily_loss_limit"
    assert risk["first_breach_time"] == result.breaches["timestamp"].iloc[0].isoformat()
    assert risk["denied_orders"] == len(result.rejections) > 0
    assert run(bars, target, ExecutionConfig(rules="none", **TERMS)).stats["risk"] == {
        "breaches": 0,
        "first_breach_rule": None,
        "first_breach_time": None,
        "denied_orders": 0,
    }
