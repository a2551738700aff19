"""Rate limits: no window holds more signals than its limit, a denied signal spends
nothing and names the limit, the state survives a restart, and time never goes back."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moola.core.errors import ConfigError
from moola.runtime.ratelimit import RateLimiter, TokenBucket

HOUR = 3600.0
T0 = 1_700_000_000.0


def test_ten_an_hour_then_denied_naming_the_limit() -> None:
    limiter = RateLimiter()
    assert all(limiter.allow("low", T0 + i).allowed for i in range(10))
    decision = limiter.allow("low", T0 + 11)
    assert not decision.allowed
    assert decision.reason.startswith("rate_limit[all]")
    allowed, reason = limiter.allow("medium", T0 + HOUR)  # the first token is back
    assert allowed and reason == ""


def test_five_high_an_hour_and_a_denial_spends_nothing() -> None:
    limiter = RateLimiter()
    assert all(limiter.allow("high", T0 + i).allowed for i in range(5))
    denied = limiter.allow("high", T0 + 5)
    assert not denied.allowed and denied.reason.startswith("rate_limit[high]")
    # the denied high signal took no overall token: five other signals still fit
    assert all(limiter.allow("low", T0 + 6 + i).allowed for i in range(5))
    assert not limiter.allow("low", T0 + 20).allowed


def test_check_spends_nothing() -> None:
    limiter = RateLimiter({"all": (1, HOUR)})
    assert limiter.check("low", T0).allowed
    assert limiter.check("low", T0).allowed
    assert limiter.allow("low", T0).allowed
    assert not limiter.check("low", T0 + 1).allowed


def test_time_going_back_is_refused() -> None:
    limiter = RateLimiter()
    limiter.allow("low", T0 + 100)
    with pytest.raises(ConfigError, match="before the last time seen") as info:
        limiter.allow("high", T0 + 99)
    assert info.value.param == "now"


def test_datetimes_are_accepted() -> None:
    limiter = RateLimiter({"all": (1, HOUR)})
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert limiter.allow("low", start).allowed
    assert not limiter.allow("low", start + dt.timedelta(minutes=59)).allowed
    assert limiter.allow("low", dt.datetime(2024, 1, 1, 1)).allowed  # naive = UTC
    assert not limiter.allow("low", np.float64(limiter.state()["buckets"]["all"]["last"])).allowed
    with pytest.raises(ConfigError, match="now="):
        limiter.allow("low", "soon")


@pytest.mark.parametrize(
    "limits",
    [
        {"all": (0, HOUR)},
        {"all": (1.5, HOUR)},
        {"all": (10, 0)},
        {"all": (10, -1.0)},
        {},
        {"all": 3},
    ],
)
def test_bad_limits_are_refused(limits) -> None:
    with pytest.raises(ConfigError, match="limits") as info:
        RateLimiter(limits)
    assert info.value.param == "limits"


def test_a_tier_is_required() -> None:
    with pytest.raises(ConfigError, match="tier"):
        RateLimiter().allow(None, T0)  # type: ignore[arg-type]


def test_the_state_is_json_and_a_changed_config_keeps_the_spends() -> None:
    limiter = RateLimiter()
    for i in range(4):
        limiter.allow("high", T0 + i)
    state = json.loads(json.dumps(limiter.state()))
    again = RateLimiter.from_state(state)
    assert again.limits == limiter.limits
    assert again.allow("high", T0 + 10).allowed
    assert not again.allow("high", T0 + 11).allowed
    smaller = RateLimiter.from_state(state, {"all": (3, HOUR)})
    assert not smaller.allow("low", T0 + 12).allowed  # 4 spends kept, 3 allowed
    with pytest.raises(ConfigError, match="before the last time seen"):
        RateLimiter.from_state(state).allow("low", T0)


@pytest.mark.parametrize("state", [{}, {"version": 1}, {"version": 1, "buckets": {"all": {}}}])
def test_an_unreadable_state_is_refused(state) -> None:
    with pytest.raises(ConfigError, match="state"):
        RateLimiter.from_state(state)


def test_a_bucket_tells_when_its_next_token_is_back() -> None:
    bucket = TokenBucket(2, 60.0)
    bucket.spend(0.0)
    bucket.spend(10.0)
    assert bucket.available(30.0) == 0
    assert bucket.next_token_at(30.0) == 60.0
    assert bucket.available(60.0) == 1


LIMITS = {"all": (4, 100.0), "high": (2, 100.0)}
steps = st.lists(
    st.tuples(st.floats(0.0, 60.0), st.sampled_from(["high", "medium", "low"])),
    min_size=1,
    max_size=40,
)


def _run(limiter: RateLimiter, times, tiers):
    return [limiter.allow(tier, t).allowed for t, tier in zip(times, tiers, strict=True)]


@given(steps=steps, cut=st.integers(0, 40))
def test_no_window_holds_more_than_the_limits_and_a_restart_changes_nothing(steps, cut) -> None:
    times, t = [], T0
    for gap, _ in steps:
        t += gap
        times.append(t)
    tiers = [tier for _, tier in steps]
    decisions = _run(RateLimiter(LIMITS), times, tiers)
    for name, (capacity, window) in LIMITS.items():
        spent = [
            t
            for t, tier, ok in zip(times, tiers, decisions, strict=True)
            if ok and name in ("all", tier)
        ]
        for start in spent:
            assert sum(start <= s < start + window for s in spent) <= capacity
    # exact, not merely safe: a signal is allowed whenever its windows have room
    for i, (t, tier) in enumerate(zip(times, tiers, strict=True)):
        room = all(
            sum(
                1
                for s, k, ok in zip(times[:i], tiers[:i], decisions[:i], strict=True)
                if ok and name in ("all", k) and s > t - LIMITS[name][1]
            )
            < LIMITS[name][0]
            for name in LIMITS
            if name in ("all", tier)
        )
        assert decisions[i] == room
    cut = min(cut, len(times))
    first = RateLimiter(LIMITS)
    head = _run(first, times[:cut], tiers[:cut])
    restored = RateLimiter.from_state(json.loads(json.dumps(first.state())))
    assert head + _run(restored, times[cut:], tiers[cut:]) == decisions
