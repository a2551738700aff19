"""check_rule: every rule an ExecutionConfig can hold gives the same verdict streamed bar by
bar as on the finished curve (same breach, same time), across DST in several time zones;
every order rule keeps its promise over a broker's random run (no false accepts, no
unfounded denials, nothing after a halt); and the checker catches rules that are wrong."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from moola.sim import (
    Broker,
    DailyLossLimit,
    MaxPosition,
    MinimumTradingDays,
    RiskPerTrade,
    Rule,
    RuleResult,
    RuleStream,
    TotalLossLimit,
)
from moola.sim.execution import RULE_SPECS
from moola.sim.propfirm import _DailyLossStream, _DayClock
from moola.testing import OrderInvariant, check_order_rule, check_rule
from moola.testing.rules import Book, _fill_at, is_order_rule, order_invariant

ZONES = ["UTC", "Europe/Prague", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]
# Weeks holding a DST change in both hemispheres (Prague/New York in March and
# October/November; Sydney in April and October).
DST_STARTS = ["2024-03-08", "2024-03-29", "2024-04-04", "2024-10-01", "2024-10-25", "2024-11-01"]


@st.composite
def equity_paths(draw, max_bars: int = 40) -> tuple[pd.Series, list[int]]:
    """Random equity on increasing stamps (gaps of 20 min to 9 h) around a DST change,
    with moves big enough to cross 5% daily and 10% total limits, and random fill bars."""
    n = draw(st.integers(1, max_bars))
    start = pd.Timestamp(draw(st.sampled_from(DST_STARTS)), tz="UTC")
    start += pd.Timedelta(minutes=draw(st.integers(0, 24 * 60)))
    gaps = draw(st.lists(st.integers(20, 540), min_size=n, max_size=n))
    moves = draw(st.lists(st.floats(-0.04, 0.04), min_size=n, max_size=n))
    stamps = start + pd.to_timedelta(np.cumsum(gaps) - gaps[0], unit="min")
    values = 100_000.0 * np.cumprod(1.0 + np.asarray(moves))
    fills = draw(st.lists(st.integers(0, n - 1), max_size=8))
    return pd.Series(values, index=pd.DatetimeIndex(stamps)), fills


def _registered(timezone: str) -> list:
    """One rule of every registered equity kind, with limits the random paths can cross
    (the order rules have their own proof, below)."""
    rules = []
    for spec in RULE_SPECS:
        if is_order_rule(spec().build()):
            continue
        fields = spec.model_fields
        values = {}
        if "timezone" in fields:
            values["timezone"] = timezone
        if "days" in fields:
            values["days"] = 2
        rules.append(spec(**values).build())
    rules += [
        DailyLossLimit(pct=0.03, timezone=timezone, basis="initial"),
        DailyLossLimit(pct=0.05, timezone=timezone, initial_balance=101_000.0),
        TotalLossLimit(pct=0.05),
    ]
    return rules


@pytest.mark.parametrize("timezone", ZONES)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_registered_rule_streams_its_batch_verdict(timezone, data) -> None:
    paths = [data.draw(equity_paths()) for _ in range(2)]
    for rule in _registered(timezone):
        check_rule(rule, *paths)


def test_the_registry_covers_the_rules_the_issue_names() -> None:
    names = {spec.model_fields["rule"].default for spec in RULE_SPECS}
    assert {
        "daily_loss_limit",
        "total_loss_limit",
        "max_position",
        "max_open_positions",
        "risk_per_trade",
        "trading_halt",
    } <= names


def _over_prague_dst() -> pd.Series:
    """Hourly bars through the night clocks go forward in Prague (02:00 -> 03:00 CEST on
    31 March 2024, 01:00 UTC): the Prague day starts at 23:00 UTC before, 22:00 UTC after."""
    stamps = pd.date_range("2024-03-30 20:00", "2024-03-31 23:00", freq="1h", tz="UTC")
    values = np.full(len(stamps), 100_000.0)
    values[stamps >= pd.Timestamp("2024-03-30 23:00", tz="UTC")] = 99_000.0  # Prague day 2
    values[stamps >= pd.Timestamp("2024-03-31 21:00", tz="UTC")] = 94_000.0  # still day 2
    return pd.Series(values, index=stamps)


def test_daily_rule_breaches_at_the_same_bar_streamed_across_dst() -> None:
    equity = _over_prague_dst()
    rule = DailyLossLimit(pct=0.05, timezone="Europe/Prague")
    batch = rule.check(equity)
    assert batch.breach_time == pd.Timestamp("2024-03-31 21:00", tz="UTC")
    stream = rule.stream()
    breaches = [stream.update(t, v) for t, v in equity.items()]
    hits = [b for b in breaches if b is not None]
    assert len(hits) == 1 and hits[0].time == batch.breach_time
    assert hits[0].value == batch.breach_value
    check_rule(rule, equity)


@dataclass(frozen=True)
class _UtcDaysDailyLoss(DailyLossLimit):
    """A deliberately wrong streaming form: it rolls days at UTC midnight whatever the
    rule's time zone."""

    def stream(self) -> RuleStream:
        stream = _DailyLossStream(self)
        stream._clock = _DayClock("UTC")
        return stream


@dataclass(frozen=True)
class _OffByOneTotalLoss(TotalLossLimit):
    """A deliberately wrong streaming form: it reports the breach one bar late."""

    def stream(self) -> RuleStream:
        inner = super().stream()

        class Late(RuleStream):
            rule = self
            pending = None

            def update(self, time, equity, fills=()):
                out, self.pending = self.pending, inner.update(time, equity, fills)
                return out

            def result(self):
                return inner.result()

        return Late()


def test_check_rule_fails_a_wrong_streaming_rule() -> None:
    equity = _over_prague_dst()
    wrong_days = _UtcDaysDailyLoss(pct=0.05, timezone="Europe/Prague")
    with pytest.raises(AssertionError, match=r"breach_value: streaming 0\.0505"):
        check_rule(wrong_days, equity)
    falling = pd.Series(
        [100_000.0, 95_000.0, 89_000.0, 88_000.0],
        index=pd.date_range("2024-01-02", periods=4, freq="1h", tz="UTC"),
    )
    check_rule(TotalLossLimit(pct=0.10), falling)
    with pytest.raises(AssertionError, match="update returned None"):
        check_rule(_OffByOneTotalLoss(pct=0.10), falling)


def test_a_breach_needs_no_later_bar() -> None:
    """No lookahead: the breach found on the whole path is found, at the same time, by the
    stream fed only the bars up to it, and the batch form on that prefix agrees."""
    equity = _over_prague_dst()
    rule = DailyLossLimit(pct=0.05, timezone="Europe/Prague")
    full = rule.check(equity)
    upto = equity.loc[: full.breach_time]
    stream = rule.stream()
    hits = [stream.update(t, v) for t, v in upto.items()]
    assert hits[-1] is not None and hits[-1].time == full.breach_time
    assert all(h is None for h in hits[:-1])
    assert rule.check(upto).breach_time == full.breach_time
    changed = equity.copy()
    changed.loc[changed.index > full.breach_time] = 1e9  # the future cannot undo it
    assert rule.check(changed).breach_time == full.breach_time


def test_trading_days_stream_counts_days_with_a_fill() -> None:
    """Days in Prague, bars every 2 h from 29 Mar 20:00 UTC, clocks forward on 31 Mar: the
    fill at bar 25 (31 Mar 22:00 UTC) is on 1 April in Prague, the same day as bar 26's,
    so the fourth trading day comes with bar 40 (2 Apr 04:00 UTC), not bar 26 as in UTC."""
    equity = pd.Series(
        100_000.0, index=pd.date_range("2024-03-29 20:00", periods=60, freq="2h", tz="UTC")
    )
    rule = MinimumTradingDays(days=4, timezone="Europe/Prague")
    fill_bars = [0, 2, 25, 26, 40]
    check_rule(rule, (equity, fill_bars), (equity, []))
    stream = rule.stream()
    for i, (time, value) in enumerate(equity.items()):
        stream.update(time, value, [_fill_at(time, i)] if i in fill_bars else [])
    result = stream.result()
    assert result.passed and result.breach_value == 4.0
    assert result.breach_time == pd.Timestamp("2024-04-02 04:00", tz="UTC")


# --------------------------------------------------------------------------- order rules

ORDER_RULES = {
    spec.model_fields["rule"].default: spec for spec in RULE_SPECS if is_order_rule(spec().build())
}
_PARAMETERS = {
    "max_position": {"units": st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0])},
    "max_open_positions": {"count": st.integers(1, 3)},
    "risk_per_trade": {
        "pct": st.sampled_from([0.005, 0.01, 0.02]),
        "stop_pct": st.sampled_from([0.005, 0.01, 0.03]),
    },
    "trading_halt": {"reason": st.sampled_from(["kill switch", "news [FOMC]"])},
}


def test_every_registered_rule_has_a_proof() -> None:
    """Equity rules are proved on equity paths (above); every order rule has a promise its
    run is held to, and the order rules are the four the issue names."""
    assert set(ORDER_RULES) == {"max_position", "max_open_positions", "risk_per_trade",
                                "trading_halt"}  # fmt: skip
    for spec in ORDER_RULES.values():
        order_invariant(spec().build())
    assert set(_PARAMETERS) == set(ORDER_RULES)


@pytest.mark.parametrize(
    "name",
    sorted(ORDER_RULES),
)
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    phases=(Phase.explicit, Phase.generate),  # a seed does not shrink: keep the one found
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_order_rule_keeps_its_promise(name, data) -> None:
    params = {key: data.draw(strategy, label=key) for key, strategy in _PARAMETERS[name].items()}
    rule = ORDER_RULES[name](**params).build()
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    halt_at = data.draw(st.one_of(st.none(), st.integers(1, 29)), label="halt_at")
    path = data.draw(equity_paths(max_bars=10), label="equity")  # its trivial batch form too
    check_rule(rule, path, seed=seed, n_bars=30, halt_at=halt_at)


def test_one_seed_one_run() -> None:
    """The run is reproducible: a failure's seed replays it."""
    wrong = _IgnoresWorkingOrders(units=1.0)
    messages = []
    for _ in range(2):
        with pytest.raises(AssertionError) as caught:
            check_order_rule(wrong, seed=3)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "seed=3" in messages[0]


@dataclass(frozen=True)
class _IgnoresWorkingOrders(MaxPosition):
    """A deliberately wrong limit: it forgets the working orders, so split orders pass."""

    def pre_trade(self, order, state) -> list[str]:
        after = state.position + order.qty
        if abs(after) > abs(state.position) and abs(after) > self.units:
            return [f"{self.name}: would hold {after:g}"]
        return []


@dataclass(frozen=True)
class _TooStrictRisk(RiskPerTrade):
    """A deliberately wrong limit: it refuses orders risking half of what is allowed."""

    def pre_trade(self, order, state) -> list[str]:
        return RiskPerTrade(pct=self.pct / 2, stop_pct=self.stop_pct).pre_trade(order, state)


@dataclass(frozen=True)
class _UnnamedRisk(RiskPerTrade):
    """A deliberately wrong limit: its denials do not say which rule refused."""

    def pre_trade(self, order, state) -> list[str]:
        return [r.replace(self.name, "limit") for r in super().pre_trade(order, state)]


def test_check_rule_fails_a_wrong_order_rule() -> None:
    with pytest.raises(AssertionError, match=r"\(c\) bar \d+, order \d+ .*: accepted, yet it"):
        check_rule(_IgnoresWorkingOrders(units=1.0), seed=0)
    with pytest.raises(AssertionError, match=r"\(b\) .*denied, yet accepting it keeps"):
        check_rule(_TooStrictRisk(pct=0.01, stop_pct=0.01), seed=0, halt_at=None)
    with pytest.raises(AssertionError, match="do not name risk_per_trade"):
        check_rule(_UnnamedRisk(pct=0.01, stop_pct=0.01), seed=0, halt_at=None)
    check_rule(RiskPerTrade(pct=0.01, stop_pct=0.01), seed=0, halt_at=None)  # the right one


class _NeverShort(OrderInvariant):
    """A user's promise for a user's rule: the position never goes short."""

    def holds(self, book: Book) -> str | None:
        return "short" if book.side(buy=False) < 0 else None

    def admits(self, book: Book, qty: float) -> bool | None:
        return book.side(qty > 0) + qty >= 0 or qty > 0

    def scale(self, price: float, equity: float, point_value: float) -> float:
        return 1.0


@dataclass(frozen=True)
class _LongOnly(Rule):
    """A user's order rule: no order may take the position short (working sells count)."""

    name: str = "long_only"

    def check(self, equity, trades=None) -> RuleResult:
        return RuleResult(self.name, True, None, None, 0.0, "judged before each order")

    def stream(self):
        return self

    def update(self, time, equity, fills=()):
        return None

    def pre_trade(self, order, state) -> list[str]:
        working = sum(o.qty for o in state.open_orders if o.qty < 0)
        if order.qty < 0 and state.position + working + order.qty < 0:
            return [f"{self.name}: no shorts"]
        return []


def test_a_rule_moola_does_not_register_is_checked_against_a_given_promise() -> None:
    with pytest.raises(TypeError, match="invariant="):
        check_rule(_LongOnly(), seed=0)  # no promise known for it
    check_rule(_LongOnly(), seed=1, invariant=_NeverShort())


def test_check_rule_fails_a_broker_that_trades_after_a_halt(monkeypatch) -> None:
    check_rule(RiskPerTrade(pct=0.01, stop_pct=0.01), seed=0, halt_at=5)
    monkeypatch.setattr(Broker, "halt", lambda self, reason: None)  # a kill switch that fails
    with pytest.raises(AssertionError, match=r"\(d\) bar \d+, order \d+ .*accepted after"):
        check_rule(RiskPerTrade(pct=0.01, stop_pct=0.01), seed=0, halt_at=5)
