"""The Broker enforces risk rules: every rule's pre_trade before an order is accepted, every
rule's update on every mark. With ``on_breach="halt"`` a breach halts it (``"flatten"``
also closes the position), at the bar the batch rule names, and later orders are denied
naming the breach; with ``"record"`` (the default) each rule's first breach is recorded
and trading goes on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.sim import (
    Accepted,
    Bar,
    Broker,
    DailyLossLimit,
    Denied,
    ExecutionConfig,
    Rule,
    RuleResult,
    TotalLossLimit,
    limit,
    market,
)


def _falling_bars(n: int = 48, start: str = "2024-03-30 12:00") -> list[Bar]:
    """Hourly bars: flat at 100 for 12 h, then down 1% a bar for 8 bars, then flat."""
    times = pd.date_range(start, periods=n, freq="1h", tz="UTC")
    close = np.full(n, 100.0)
    close[12:20] = 100.0 * 0.99 ** np.arange(1, 9)
    close[20:] = close[19]
    opens = np.concatenate(([100.0], close[:-1]))
    return [
        Bar(t, o, max(o, c), min(o, c), c, 1_000.0)
        for t, o, c in zip(times, opens, close, strict=True)
    ]


def _halting(on_breach: str = "halt", **terms) -> ExecutionConfig:
    return ExecutionConfig(initial_cash=100_000.0, engine="event", on_breach=on_breach, **terms)


def _run(broker: Broker, bars: list[Bar], qty: float = 900.0) -> list:
    outcomes = []
    for i, bar in enumerate(bars):
        broker.advance(bar)
        if i == 0:
            outcomes.append(broker.submit(market(qty)))
        if i == 30:
            outcomes.append(broker.submit(market(10.0)))
    return outcomes


def _equity_series(broker: Broker) -> pd.Series:
    frame = broker.result().equity_frame()
    return pd.Series(frame["equity"].to_numpy(), index=pd.DatetimeIndex(frame["timestamp"]))


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Prague", "America/New_York"])
def test_a_breach_halts_at_the_bar_the_batch_rule_names(timezone) -> None:
    rule = {"rule": "daily_loss_limit", "pct": 0.03, "timezone": timezone}
    broker = Broker(_halting(rules=[rule]))
    bars = _falling_bars()
    outcomes = _run(broker, bars)
    assert isinstance(outcomes[0], Accepted)
    batch = DailyLossLimit(pct=0.03, timezone=timezone).check(_equity_series(broker))
    breaches = broker.breaches
    assert len(breaches) == 1 and not batch.passed
    assert breaches["timestamp"].iloc[0] == batch.breach_time
    assert breaches["value"].iloc[0] == batch.breach_value
    assert breaches["rule"].iloc[0] == "daily_loss_limit"
    # The order after the halt is denied naming the breach, and recorded.
    late = outcomes[1]
    assert isinstance(late, Denied)
    assert late.reasons[0].startswith("broker halted: daily_loss_limit breached")
    assert broker.rejections["reason"].iloc[-1] == late.reasons[0]
    assert broker.state.halted is not None


def test_no_lookahead_the_halt_comes_from_bars_up_to_it() -> None:
    """Fed only the bars up to the breach, the broker halts at the same bar; what comes
    after cannot move it."""
    rules = [{"rule": "total_loss_limit", "pct": 0.05}]
    bars = _falling_bars()
    full = Broker(_halting(rules=rules))
    _run(full, bars)
    bar = int(full.breaches["bar"].iloc[0])
    prefix = Broker(_halting(rules=rules))
    _run(prefix, bars[: bar + 1])
    assert prefix.breaches.equals(full.breaches)
    assert (
        TotalLossLimit(pct=0.05).check(_equity_series(prefix)).breach_time
        == (full.breaches["timestamp"].iloc[0])
    )


def test_flatten_on_breach_closes_the_position_one_latency_later() -> None:
    rules = [{"rule": "total_loss_limit", "pct": 0.05}]
    broker = Broker(_halting("flatten", rules=rules, latency_bars=2))
    bars = _falling_bars()
    _run(broker, bars)
    assert broker.state.halted is not None
    breach = broker.breaches.iloc[0]
    assert breach["flatten_qty"] == -900.0
    positions = broker.result().position
    assert positions[int(breach["bar"]) + 1] == 900.0  # not before latency_bars
    assert positions[int(breach["bar"]) + 2] == 0.0
    fills = broker.result().fills
    assert fills["tag"].iloc[-1] == "flatten" and fills["qty"].iloc[-1] == -900.0


def test_without_flatten_the_position_stays_and_pending_orders_are_withdrawn() -> None:
    rules = [{"rule": "total_loss_limit", "pct": 0.05}]
    broker = Broker(_halting(rules=rules))
    bars = _falling_bars()
    for i, bar in enumerate(bars):
        broker.advance(bar)
        if i == 0:
            broker.submit(market(900.0))
            broker.submit(limit(-900.0, 150.0))  # a take-profit that never fills
    assert broker.breaches["flatten_qty"].iloc[0] == 0.0
    assert broker.state.position == 900.0 and broker.pending == ()


def test_record_mode_records_each_rules_first_breach_and_keeps_trading() -> None:
    """The default: breaches are recorded (each rule once, at the bar its batch form
    names), nothing is halted, and a breached loss limit refuses no order."""
    rules = [
        {"rule": "daily_loss_limit", "pct": 0.03},
        {"rule": "total_loss_limit", "pct": 0.05},
    ]
    broker = Broker(ExecutionConfig(initial_cash=100_000.0, rules=rules))
    assert broker.on_breach == "record"
    outcomes = _run(broker, _falling_bars())
    assert all(isinstance(o, Accepted) for o in outcomes)  # the order after the breaches too
    assert broker.state.halted is None and broker.rejections.empty
    breaches = broker.breaches
    assert breaches["rule"].tolist() == ["daily_loss_limit", "total_loss_limit"]
    assert (breaches["flatten_qty"] == 0.0).all()
    equity = _equity_series(broker)
    for rule, row in zip(
        (DailyLossLimit(pct=0.03), TotalLossLimit(pct=0.05)), breaches.itertuples(), strict=True
    ):
        batch = rule.check(equity)
        assert (row.timestamp, row.value) == (batch.breach_time, batch.breach_value)


def test_on_breach_given_to_the_broker_overrides_the_config() -> None:
    """A broker steps bar by bar whatever the config's engine, so it may halt even on a
    config made for the vectorised engine."""
    rules = [{"rule": "total_loss_limit", "pct": 0.05}]
    broker = Broker(ExecutionConfig(rules=rules), on_breach="halt")
    _run(broker, _falling_bars())
    assert broker.state.halted is not None and len(broker.breaches) == 1
    with pytest.raises(ConfigError, match="on_breach"):
        Broker(ExecutionConfig(rules=rules), on_breach="stop")  # type: ignore[arg-type]


def _broker_at(rules: list[dict], position: float = 0.0) -> Broker:
    broker = Broker(ExecutionConfig(initial_cash=100_000.0, rules=rules))
    bars = _falling_bars()
    broker.advance(bars[0])
    if position:
        assert isinstance(broker.submit(market(position)), Accepted)
        broker.advance(bars[1])
    return broker


def test_closing_orders_stacked_on_one_side_are_judged_as_the_entries_they_become() -> None:
    """A close is never refused, but a second sell stacked on a working close would take
    the position through flat and beyond: it is judged with the working orders counted."""
    broker = _broker_at([{"rule": "max_position", "units": 100}], position=80.0)
    assert isinstance(broker.submit(market(-80.0)), Accepted)  # closes: always allowed
    denied = broker.submit(market(-150.0))  # 80 - 80 - 150 = -150 units once both fill
    assert isinstance(denied, Denied) and denied.reasons[0].startswith("max_position")
    assert isinstance(broker.submit(market(-90.0)), Accepted)  # -90: within the limit
    broker = _broker_at([{"rule": "max_open_positions", "count": 1}], position=10.0)
    assert isinstance(broker.submit(market(-10.0)), Accepted)
    denied = broker.submit(market(-20.0))  # if the close fills first, this opens a short
    assert isinstance(denied, Denied) and denied.reasons[0].startswith("max_open_positions")


def test_order_limits_deny_before_the_book_and_name_the_rule() -> None:
    broker = _broker_at([{"rule": "max_position", "units": 100}], position=80.0)
    denied = broker.submit(market(30.0))
    assert isinstance(denied, Denied) and denied.reasons[0].startswith("max_position")
    assert broker.pending == ()
    assert isinstance(broker.submit(market(20.0)), Accepted)
    assert isinstance(broker.submit(market(-200.0)), Denied)  # a flip to -120 adds exposure
    assert isinstance(broker.submit(market(-100.0)), Accepted)  # back to flat: allowed

    broker = _broker_at([{"rule": "max_open_positions", "count": 1}], position=10.0)
    assert isinstance(broker.submit(market(5.0)), Denied)
    assert isinstance(broker.submit(market(-10.0)), Accepted)

    # 1% risk on a 2% stop: at most 50% of equity in added exposure (500 units at 100).
    broker = _broker_at([{"rule": "risk_per_trade", "pct": 0.01, "stop_pct": 0.02}])
    assert isinstance(broker.submit(market(500.0)), Accepted)
    denied = broker.submit(market(501.0))
    assert isinstance(denied, Denied) and "risk_per_trade" in denied.reasons[0]

    broker = _broker_at([{"rule": "trading_halt", "reason": "KILL_SWITCH=true"}])
    denied = broker.submit(market(1.0))
    assert isinstance(denied, Denied) and denied.reasons == ("trading_halt: KILL_SWITCH=true",)
    assert broker.rejections["reason"].tolist() == ["trading_halt: KILL_SWITCH=true"]


def test_every_rule_is_asked_and_every_reason_recorded() -> None:
    rules = [
        {"rule": "max_position", "units": 10},
        {"rule": "risk_per_trade", "pct": 0.001},
    ]
    broker = _broker_at(rules)
    denied = broker.submit(market(1_000.0))
    assert isinstance(denied, Denied)
    assert [r.split(":")[0] for r in denied.reasons] == ["max_position", "risk_per_trade"]


@pytest.mark.parametrize(
    ("rule", "names"),
    [
        ({"rule": "daily_loss_limit", "pct": -0.05}, ["daily_loss_limit", "pct"]),
        ({"rule": "total_loss_limit", "pct": 1.5}, ["total_loss_limit", "pct"]),
        ({"rule": "max_position", "units": 0}, ["max_position", "units"]),
        ({"rule": "max_open_positions", "count": 0}, ["max_open_positions", "count"]),
        ({"rule": "risk_per_trade", "pct": 1.01}, ["risk_per_trade", "pct"]),
        ({"rule": "risk_per_trade", "stop_pct": -0.01}, ["risk_per_trade", "stop_pct"]),
    ],
)
def test_an_impossible_limit_is_a_config_error_naming_rule_and_parameter(rule, names) -> None:
    with pytest.raises(ConfigError) as caught:
        ExecutionConfig(rules=[rule])
    for name in names:
        assert name in str(caught.value)


def test_brokers_sharing_rule_objects_keep_their_own_state() -> None:
    """A rule is frozen parameters; each broker streams it afresh, so one broker's breach
    never halts another built from the same rule objects."""
    rules = (TotalLossLimit(pct=0.05),)
    config = ExecutionConfig(initial_cash=100_000.0, rules="none")
    losing, idle = Broker(config, rules=rules), Broker(config, rules=rules)
    bars = _falling_bars()
    _run(losing, bars)
    for bar in bars:
        idle.advance(bar)
    assert len(losing.breaches) == 1 and idle.state.halted is None and idle.breaches.empty


def test_a_rule_without_a_streaming_form_is_refused_by_the_broker() -> None:
    """A batch-only custom rule still judges finished curves, but a broker will not take a
    rule it could not enforce bar by bar."""

    class BatchOnly(Rule):
        name = "batch_only"

        def check(self, equity, trades=None) -> RuleResult:
            return RuleResult(self.name, True, None, None, 0.0, "")

    equity = pd.Series([1.0], index=pd.DatetimeIndex(["2024-01-01"], tz="UTC"))
    assert BatchOnly().check(equity).passed
    with pytest.raises(ConfigError, match="BatchOnly has no streaming form"):
        Broker(ExecutionConfig(rules="none"), rules=[BatchOnly()])


def test_a_non_finite_mark_is_refused_by_the_streaming_rules() -> None:
    stream = DailyLossLimit().stream()
    with pytest.raises(ConfigError, match=r"daily_loss_limit\.update: equity nan"):
        stream.update(pd.Timestamp("2024-01-01", tz="UTC"), float("nan"))
