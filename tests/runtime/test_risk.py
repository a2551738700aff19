"""The risk gate: the backtest's own rules (moola.sim) halt live trading exactly where they
judge the finished equity curve breached, deny every order while halted until a person
unlocks, deny oversized orders with the rule's reason, and survive a restart."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moola.core.errors import ConfigError
from moola.runtime.risk import AccountState, RiskGate
from moola.runtime.sizing import position_size
from moola.sim import Bar, Broker, BrokerState, ExecutionConfig, MaxPosition, market

EXECUTION = ExecutionConfig(instrument="crypto", initial_cash=10_000.0)
START = pd.Timestamp("2024-03-30 20:00", tz="UTC")  # the Prague clock change is near


def _gate(execution: ExecutionConfig = EXECUTION, **settings) -> RiskGate:
    return RiskGate(execution, **({"max_position": 5.0, "max_open_positions": 2} | settings))


def _buy(qty: float) -> SimpleNamespace:
    return SimpleNamespace(side="buy", qty=qty)


def _account(**values) -> AccountState:
    return AccountState(**({"equity": 10_000.0, "price": 100.0} | values))


def _feed(gate: RiskGate, times, equity) -> list[str | None]:
    out = []
    for t, e in zip(times, equity, strict=True):
        breach = gate.update(t, e)
        out.append(None if breach is None else breach.rule)
    return out


paths = st.tuples(
    st.lists(st.integers(1, 9), min_size=2, max_size=60),  # hours between marks
    st.lists(st.floats(-0.035, 0.03), min_size=60, max_size=60),  # returns
    st.sampled_from(["UTC", "Europe/Prague"]),
)


def _path(drawn):
    gaps, returns, tz = drawn
    times = START + pd.to_timedelta(np.cumsum([0, *gaps[1:]]), unit="h")
    equity = 10_000.0 * np.cumprod(1.0 + np.asarray(returns[: len(gaps)]))
    return pd.DatetimeIndex(times), equity.tolist(), tz


@given(drawn=paths)
def test_the_gate_halts_where_the_rules_judge_the_finished_curve(drawn) -> None:
    times, equity, tz = _path(drawn)
    gate = _gate(EXECUTION.model_copy(update={"timezone": tz}))
    breaches = _feed(gate, times, equity)
    series = pd.Series(equity, index=times)
    expected = {}
    for rule in (gate.daily_limit, gate.total_limit):
        verdict = rule.check(series)
        if not verdict.passed:
            expected[rule.name] = times.get_loc(verdict.breach_time)
    seen = {b["rule"]: times.get_loc(pd.Timestamp(b["time"])) for b in gate.breaches}
    assert seen == expected
    # update returns a breach on the first bar where a limit breaches (the one that halts)
    halts = [i for i, rule in enumerate(breaches) if rule is not None]
    assert halts[:1] == sorted(expected.values())[:1]
    # each limit breaches once, on its own bar; the first one halted the gate
    assert sorted(b["rule"] for b in gate.breaches) == sorted(expected)
    if expected:
        first = min(expected.values())
        assert gate.halted is not None and gate.flatten_requested
        assert gate.halted.split(" breached")[0] == next(
            name for name in ("daily_loss_limit", "total_loss_limit") if expected.get(name) == first
        )
    else:
        assert gate.halted is None


@given(
    drawn=paths,
    qty=st.floats(0.001, 10.0),
    side=st.sampled_from(["buy", "sell"]),
    position=st.floats(-5.0, 5.0),
)
def test_no_order_is_allowed_while_halted(drawn, qty, side, position) -> None:
    times, equity, _ = _path(drawn)
    gate = _gate()
    _feed(gate, times, [*equity[:-1], equity[0] * 0.5])  # the last mark breaches both
    assert gate.halted is not None
    reasons = gate.check(SimpleNamespace(side=side, qty=qty), _account(position=position))
    assert len(reasons) == 1 and reasons[0].startswith("risk gate halted: ")
    assert "breached" in reasons[0]


@given(drawn=paths, cut=st.integers(0, 60))
def test_a_restart_from_the_state_halts_and_denies_as_an_uninterrupted_run(drawn, cut) -> None:
    times, equity, tz = _path(drawn)
    execution = EXECUTION.model_copy(update={"timezone": tz})
    straight = _gate(execution)
    expected = _feed(straight, times, equity)
    cut = min(cut, len(times))
    first = _gate(execution)
    head = _feed(first, times[:cut], equity[:cut])
    state = json.loads(json.dumps(first.state(), allow_nan=False))
    restored = RiskGate.from_state(state, execution, max_position=5.0, max_open_positions=2)
    assert head + _feed(restored, times[cut:], equity[cut:]) == expected
    assert restored.state() == straight.state()
    assert restored.check(_buy(1.0), _account()) == straight.check(_buy(1.0), _account())


def test_unlock_is_recorded_and_rebases_the_breached_limit() -> None:
    gate = _gate()
    times = pd.date_range("2024-01-01 01:00", periods=4, freq="h", tz="UTC")
    _feed(gate, times[:3], [10_000.0, 9_800.0, 9_400.0])  # 6% down in the day
    assert gate.halted.startswith("daily_loss_limit breached")
    with pytest.raises(ConfigError, match="reason"):
        gate.unlock("ana", " ")
    record = gate.unlock("ana", "reviewed the losing trades")
    assert record["person"] == "ana" and record["reason"] == "reviewed the losing trades"
    assert record["lifted"]["rule"] == "daily_loss_limit"
    assert record["restarted"] == ["daily_loss_limit"]
    assert gate.halted is None and not gate.flatten_requested
    assert gate.check(_buy(1.0), _account(equity=9_400.0)) == []
    assert gate.state()["unlocks"][0]["person"] == "ana"
    # the day's limit now measures from 9,400: a further 6% halts again
    assert gate.update(times[3], 9_400.0 * 0.94).rule == "daily_loss_limit"
    with pytest.raises(ConfigError, match="not halted"):
        _gate().unlock("ana", "nothing to do")


def test_an_order_over_max_position_is_denied_with_the_rules_reason() -> None:
    gate = _gate(max_position=2.0, max_open_positions=3)
    account = _account(position=1.5, open_orders=(0.25,))
    reasons = gate.check(_buy(0.5), account)
    state = BrokerState(
        bar=0,
        time=None,
        position=1.5,
        cash=math.nan,
        equity=10_000.0,
        open_orders=(market(0.25),),
        day_start_balance=math.nan,
        halted=None,
        price=100.0,
    )
    assert reasons == MaxPosition(units=2.0).pre_trade(market(0.5), state)
    assert gate.check(_buy(0.25), account) == []  # exactly at the limit
    assert gate.check(SimpleNamespace(side="sell", qty=1.5), account) == []  # toward flat


@given(
    position=st.floats(-3.0, 3.0),
    working=st.lists(st.floats(-2.0, 2.0).filter(lambda q: abs(q) > 1e-3), max_size=3),
    qty=st.floats(-4.0, 4.0).filter(lambda q: abs(q) > 1e-3),
    limit=st.floats(0.5, 4.0),
    count=st.integers(1, 3),
)
def test_position_limits_deny_exactly_as_the_rules(position, working, qty, limit, count) -> None:
    gate = _gate(max_position=limit, max_open_positions=count)
    account = _account(position=position, open_orders=tuple(working), equity=1e9)
    reasons = gate.check(SimpleNamespace(qty=qty), account)
    state = BrokerState(
        bar=0,
        time=None,
        position=position,
        cash=math.nan,
        equity=1e9,
        open_orders=tuple(market(q) for q in working),
        day_start_balance=math.nan,
        halted=None,
        price=100.0,
    )
    expected = [
        *gate.max_position.pre_trade(market(qty), state),
        *gate.max_open_positions.pre_trade(market(qty), state),
    ]
    # no other symbol is held, so the position reasons are the rules' own, exactly
    assert [r for r in reasons if r.startswith(("max_position", "max_open_positions"))] == expected


def test_other_symbols_count_toward_max_open_positions() -> None:
    gate = _gate(max_open_positions=2)
    denied = gate.check(_buy(1.0), _account(other_open_positions=2))
    assert denied and denied[0].startswith("max_open_positions: 2 other symbol(s)")
    assert gate.check(_buy(1.0), _account(other_open_positions=1)) == []
    assert gate.check(_buy(1.0), _account(position=1.0, other_open_positions=2)) == []


def test_a_sized_order_passes_risk_per_trade_and_one_lot_more_does_not() -> None:
    gate = _gate(max_position=1e6)
    size = position_size(10_000.0, 100.0, 0.8, risk_per_trade=0.01, atr_multiple=2.0, lot=0.01)
    account = _account()
    assert gate.check(_buy(size.units), account, stop_distance=size.stop_distance) == []
    over = gate.check(_buy(size.units + 0.02), account, stop_distance=size.stop_distance)
    assert len(over) == 1 and over[0].startswith("risk_per_trade")


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"price": math.nan}, "price"),
        ({"equity": math.inf}, "equity"),
        ({"equity": 0.0}, "equity"),
        ({"price": 0.0}, "price"),
        ({"open_orders": (None,)}, "open_orders"),
        ({"other_open_positions": -1}, "other_open_positions"),
    ],
)
def test_an_account_that_cannot_be_judged_is_denied(values, named) -> None:
    reasons = _gate().check(_buy(1.0), _account(**values))
    assert len(reasons) == 1 and f"account {named}" in reasons[0]
    assert "fail closed" in reasons[0]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"max_position": 0.0}, "max_position"),
        ({"max_open_positions": 0}, "max_open_positions"),
        ({"risk_per_trade": -0.01}, "risk_per_trade"),
        ({"daily_loss": math.nan}, "daily_loss"),
        ({"total_loss": 1.5}, "total_loss"),
        ({"initial_equity": -1.0}, "initial_equity"),
    ],
)
def test_bad_settings_are_refused_naming_them(settings, named) -> None:
    with pytest.raises(ConfigError, match=named) as info:
        _gate(**settings)
    assert info.value.param == named


def test_bad_input_is_refused() -> None:
    gate = _gate()
    gate.update(START, 10_000.0)
    with pytest.raises(ConfigError, match="time order"):
        gate.update(START - pd.Timedelta(hours=1), 10_000.0)
    with pytest.raises(ConfigError, match="not finite"):
        gate.update(START + pd.Timedelta(hours=1), math.nan)
    with pytest.raises(ConfigError, match="side"):
        gate.check(SimpleNamespace(side="hold", qty=1.0), _account())
    with pytest.raises(ConfigError, match="version"):
        gate.load_state({"version": 99})
    with pytest.raises(ConfigError, match="cannot be read"):
        gate.load_state({"version": gate.state()["version"], "streams": {}})


def test_the_gate_halts_on_the_bar_the_backtest_broker_does() -> None:
    """The same rule objects in a sim Broker (``moola backtest``'s event engine, flattening
    on a breach) and in the gate fed the broker's equity halt on the same bar."""
    gate = _gate(max_position=1e6)
    broker = Broker(gate.backtest_execution(), symbol="BTC-USD")
    rng = np.random.default_rng(3)
    price = 100.0
    times = pd.date_range("2024-01-01", periods=300, freq="h", tz="UTC")
    gate_halt = None
    for i, t in enumerate(times):
        step = price * (1.0 + rng.normal(-0.004, 0.02))
        bar = Bar(t, price, max(price, step) * 1.001, min(price, step) * 0.999, step, 1.0)
        price = step
        broker.advance(bar)
        if gate.update(t, broker.state.equity) is not None and gate_halt is None:
            gate_halt = i
        if i == 0:
            broker.submit(market(90.0))  # nearly all-in, so the limits are reached
    breaches = broker.breaches
    assert gate_halt is not None and not breaches.empty
    assert int(breaches["bar"].iloc[0]) == gate_halt
    assert breaches["rule"].iloc[0] == gate.halted.split(" breached")[0]
