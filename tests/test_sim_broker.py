"""The steppable Broker: a hand loop over it equals both engines, it never fills early, and
it refuses what it must (halted broker, pre-trade denials, bad bars) with a recorded reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moola.backtest.metrics import compute_stats
from moola.core.errors import BarValidationError, ConfigError
from moola.sim import (
    Accepted,
    Bar,
    Broker,
    Denied,
    EventEngine,
    ExecutionConfig,
    SimResult,
    TargetPositionStrategy,
    backtest_positions,
    crypto_instrument,
    equity_instrument,
    futures_instrument,
    market,
)
from tests.conftest import random_walk_bars

INSTRUMENTS = {
    "stock": equity_instrument("ABC"),
    "nq": futures_instrument("NQ"),
    "btc": crypto_instrument("BTC-USD"),
}
# Costs a streaming broker reproduces to the bit (no history-based slippage terms).
EXACT_COSTS = {
    "none": {},
    "fixed": {
        "spread": 0.02,
        "slippage": {"model": "fixed_bps", "bps": 1.5},
        "commission": {"per_unit": 0.01, "rate": 1e-4, "minimum": 1.0},
    },
    "rate": {"spread": 0.05, "commission": 2e-4},
}


def _config(instrument: str, costs: dict, latency: int, cash: float) -> ExecutionConfig:
    return ExecutionConfig(
        instrument=INSTRUMENTS[instrument],
        initial_cash=cash,
        latency_bars=latency,
        rules="none",
        **costs,
    )


def _bars_of(bars: pd.DataFrame):
    times = list(pd.DatetimeIndex(bars["timestamp"]))
    columns = [bars[c].to_numpy(np.float64).tolist() for c in ("open", "high", "low", "close")]
    volume = bars["volume"].to_numpy(np.float64).tolist()
    rows = zip(times, *columns, volume, strict=True)
    return [Bar(t, o, h, lo, c, v) for t, o, h, lo, c, v in rows]


def hand_loop(bars: pd.DataFrame, target: np.ndarray, config: ExecutionConfig) -> SimResult:
    """What a user writes: step the broker, re-size when the target changes."""
    broker = Broker(config)
    inst = broker.instrument
    prev = committed = 0.0
    for i, bar in enumerate(_bars_of(bars)):
        broker.advance(bar)
        f = float(target[i])
        if f == prev:
            continue
        prev = f
        dq = inst.units_for(f, broker.state.equity, bar.close) - committed
        if abs(dq) > inst.dust:
            committed += dq
            assert isinstance(broker.submit(market(dq, tag="target")), Accepted)
    return broker.result()


def _engines(bars, target, config: ExecutionConfig) -> tuple[SimResult, SimResult]:
    columns = [bars[c] for c in ("open", "high", "low", "close", "volume")]
    vec = backtest_positions(*columns, target, config, timestamp=bars["timestamp"])
    evt = EventEngine(bars, config).run(TargetPositionStrategy(target))
    return vec, evt


def _stats(result: SimResult, bars: pd.DataFrame, point_value: float) -> dict:
    fills = result.fills.copy()
    fills["reference"] = bars["open"].to_numpy()[fills["bar"].to_numpy(np.int64)]
    return compute_stats(
        result.equity_frame(),
        result.trades,
        periods_per_year=252 * 390,
        point_value=point_value,
        fills_df=fills,
    )


def _assert_same(a: SimResult, b: SimResult) -> None:
    np.testing.assert_array_equal(a.equity, b.equity)
    np.testing.assert_array_equal(a.cash, b.cash)
    np.testing.assert_array_equal(a.position, b.position)
    pd.testing.assert_frame_equal(a.fills, b.fills, check_categorical=False)
    pd.testing.assert_frame_equal(a.trades, b.trades)
    pd.testing.assert_frame_equal(a.equity_frame(), b.equity_frame())


def _targets(seed: int, n: int, levels: list[float]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    target = np.asarray(levels)[rng.integers(0, len(levels), n)]
    target = np.where(rng.random(n) < 0.6, np.nan, target)
    return pd.Series(target).ffill().fillna(0.0).to_numpy()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 120),
    levels=st.lists(st.sampled_from([-1.0, -0.5, -0.3, 0.0, 0.25, 0.5, 1.0]), min_size=1),
    instrument=st.sampled_from(sorted(INSTRUMENTS)),
    costs=st.sampled_from(sorted(EXACT_COSTS)),
    latency=st.integers(1, 3),
)
def test_vectorised_event_engine_and_a_hand_loop_over_broker_agree_bit_for_bit(
    seed, n, levels, instrument, costs, latency
) -> None:
    bars = random_walk_bars(n, seed=seed)
    target = _targets(seed, n, levels)
    cash = 2_000_000.0 if instrument == "nq" else 10_000.0
    config = _config(instrument, EXACT_COSTS[costs], latency, cash)
    vec, evt = _engines(bars, target, config)
    hand = hand_loop(bars, target, config)
    _assert_same(vec, evt)
    _assert_same(vec, hand)
    pv = config.build_instrument().point_value
    assert _stats(hand, bars, pv) == _stats(vec, bars, pv) == _stats(evt, bars, pv)


@pytest.mark.parametrize(
    "slippage",
    [{"model": "volatility_scaled", "k": 0.3, "window": 5}, {"model": "square_root_impact"}],
)
def test_history_based_slippage_streams_to_within_float_rounding(slippage) -> None:
    # The engines compute these terms with one pandas rolling pass over all bars; a broker
    # fed bar by bar computes each bar's term from the last window of bars. The rolling sum
    # then starts from a different bar, so the last bits may differ: 1e-9 relative, not 0.
    bars = random_walk_bars(400, seed=5)
    target = _targets(5, 400, [-1.0, 0.0, 0.5, 1.0])
    config = _config("stock", {"spread": 0.01, "slippage": slippage}, 2, 10_000.0)
    vec, _ = _engines(bars, target, config)
    hand = hand_loop(bars, target, config)
    assert len(vec.fills) > 20
    np.testing.assert_allclose(hand.fills["price"], vec.fills["price"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(hand.equity, vec.equity, rtol=1e-9, atol=0)
    np.testing.assert_array_equal(hand.position, vec.position)


@pytest.mark.parametrize("latency", [1, 3])
def test_a_decision_never_fills_before_its_bar_plus_latency(latency) -> None:
    bars = random_walk_bars(200, seed=11)
    target = _targets(11, 200, [-1.0, 0.0, 1.0])
    config = _config("stock", EXACT_COSTS["fixed"], latency, 10_000.0)
    full = hand_loop(bars, target, config)
    assert len(full.fills) > 10
    assert (full.fills["bar"] - full.fills["decision_bar"] == latency).all()
    # the past does not depend on the future: cut the bars and every earlier number stays
    cut = 120
    head = hand_loop(bars.iloc[:cut], target[:cut], config)
    np.testing.assert_array_equal(head.equity, full.equity[:cut])
    early = full.fills[full.fills["bar"] < cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(head.fills, early, check_categorical=False)


def _broker(**terms) -> tuple[Broker, list[Bar]]:
    bars = _bars_of(random_walk_bars(50, seed=2))
    config = ExecutionConfig(instrument="equity", initial_cash=10_000.0, rules="none", **terms)
    return Broker(config, symbol="ABC"), bars


def test_submit_cancel_and_state() -> None:
    broker, bars = _broker(latency_bars=2)
    broker.advance(bars[0])
    accepted = broker.submit(market(10.0))
    assert isinstance(accepted, Accepted) and accepted.order.id == 1
    assert broker.state.open_orders == (accepted.order,)
    assert broker.advance(bars[1]) == []  # latency 2: not yet
    fills = broker.advance(bars[2])
    assert [(f.bar, f.decision_bar, f.qty, f.price) for f in fills] == [(2, 0, 10.0, bars[2].open)]
    state = broker.state
    assert state.position == 10.0 and state.open_orders == ()
    assert state.equity == pytest.approx(10_000.0 + 10.0 * (bars[2].close - bars[2].open))
    second = broker.submit(market(-5.0))
    assert isinstance(second, Accepted) and broker.cancel(second.order.id)
    broker.advance(bars[3])
    broker.advance(bars[4])
    assert broker.state.position == 10.0  # the cancelled order never filled


def test_leverage_refusal_is_a_recorded_denial() -> None:
    broker, bars = _broker()
    broker.advance(bars[0])
    capped = broker.submit(market(1_000_000.0))  # ~100 shares fit in 10_000 of cash
    refused = broker.submit(market(150.0))  # nothing left after the capped order
    assert isinstance(capped, Accepted) and capped.capped and 0 < capped.order.qty < 101
    assert isinstance(refused, Denied) and refused.reasons == ("max_leverage",)
    assert list(broker.rejections["reason"]) == ["capped to max_leverage", "max_leverage"]


def test_an_order_after_a_halt_is_denied_naming_the_halt() -> None:
    broker, bars = _broker()
    broker.advance(bars[0])
    pending = broker.submit(market(5.0))
    broker.halt("daily loss limit breached")
    assert broker.state.halted == "daily loss limit breached" and broker.pending == ()
    outcome = broker.submit(market(5.0))
    assert isinstance(outcome, Denied)
    assert outcome.reasons == ("broker halted: daily loss limit breached",)
    assert broker.advance(bars[1]) == []  # the order pending at the halt was withdrawn
    assert isinstance(pending, Accepted) and broker.state.position == 0.0
    row = broker.rejections.iloc[-1]
    assert row["order_id"] == outcome.order.id and "halted" in row["reason"]
    assert broker.result().rejections.shape[0] == 1


class _MaxPosition:
    """A pre-trade rule as the next slice will write them: reasons, empty = allowed."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.seen: list[float] = []

    def pre_trade(self, order, state) -> list[str]:
        self.seen.append(state.position)
        if abs(state.position + order.qty) > self.limit:
            return [f"position {state.position + order.qty:g} above the limit {self.limit:g}"]
        return []


def test_pre_trade_rules_deny_before_the_order_reaches_the_book() -> None:
    rule = _MaxPosition(10.0)
    bars = _bars_of(random_walk_bars(10, seed=3))
    broker = Broker(ExecutionConfig(initial_cash=10_000.0, rules="none"), rules=[rule])
    broker.advance(bars[0])
    assert isinstance(broker.submit(market(8.0)), Accepted)
    broker.advance(bars[1])
    outcome = broker.submit(market(5.0))
    assert isinstance(outcome, Denied) and outcome.reasons == ("position 13 above the limit 10",)
    broker.advance(bars[2])
    assert broker.state.position == 8.0 and rule.seen == [0.0, 8.0]
    assert broker.rejections["reason"].tolist() == ["position 13 above the limit 10"]


def test_bad_use_is_refused_clearly() -> None:
    broker, bars = _broker()
    with pytest.raises(ConfigError, match="before the first bar"):
        broker.submit(market(1.0))
    with pytest.raises(BarValidationError, match=r"Bar 0 .* non-finite"):
        broker.advance(bars[0]._replace(close=float("nan")))
    with pytest.raises(ConfigError, match="ExecutionConfig"):
        Broker({"initial_cash": 1.0})  # type: ignore[arg-type]


def test_day_start_balance_is_the_equity_before_the_day_began() -> None:
    bars = _bars_of(random_walk_bars(48, seed=4, timeframe="60m"))  # two UTC days
    broker = Broker(ExecutionConfig(initial_cash=10_000.0, rules="none"))
    equity = []
    for i, bar in enumerate(bars):
        broker.advance(bar)
        if i == 0:
            broker.submit(market(50.0))
        equity.append(broker.state.equity)
        expected = 10_000.0 if i < 24 else equity[23]
        assert broker.state.day_start_balance == expected
    assert equity[23] != 10_000.0
