"""Signal policies: one set of typed parameters, a batch and a step form that agree.

What a user relies on: the targets a backtest trades (``positions``) are the ones the
environment and the live engine get bar by bar (``stepper().step``), no target uses a later
bar, and the parameters are validated once and hashed into the record.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moola.backtest.signals import (
    Hysteresis,
    PolicyStepper,
    ThresholdHold,
    positions_from_probabilities,
)
from moola.core.errors import ConfigError
from moola.testing import check_policy
from tests.conftest import random_walk_bars


def _probabilities(rng: np.random.Generator, n: int, columns: int, nan_share: float):
    p = rng.uniform(0.0, 1.0, (n, columns))
    p[rng.uniform(size=n) < nan_share] = np.nan  # bars without a decision
    return p[:, 0] if columns == 1 else p


def _bars(n: int, seed: int, flat_from: int | None):
    bars = random_walk_bars(n, seed=seed)
    if flat_from is not None and flat_from < n:  # a stretch of zero volatility
        bars.loc[flat_from:, "close"] = bars["close"].iloc[flat_from]
    return bars


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 120),
    threshold=st.floats(0.05, 1.0),
    hold_bars=st.integers(1, 40),
    columns=st.sampled_from([1, 2]),
    nan_share=st.sampled_from([0.0, 0.5, 0.95]),
)
def test_threshold_hold_streams_its_batch_targets(
    seed, n, threshold, hold_bars, columns, nan_share
):
    rng = np.random.default_rng(seed)
    policy = ThresholdHold(threshold=threshold, hold_bars=hold_bars)
    check_policy(policy, _probabilities(rng, n, columns, nan_share), _bars(n, seed, None))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 120),
    levels=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
    shorts=st.booleans(),
    sizing=st.sampled_from(["fixed", "vol_target"]),
    fraction=st.floats(0.1, 1.0),
    vol_lookback=st.integers(2, 30),
    nan_share=st.sampled_from([0.0, 0.2]),
    flat_from=st.one_of(st.none(), st.integers(0, 120)),
)
def test_hysteresis_streams_its_batch_targets(
    seed, n, levels, shorts, sizing, fraction, vol_lookback, nan_share, flat_from
):
    low, exit_at, high = sorted(levels)
    if high == 0.0 or (shorts and low == high):
        return  # no valid policy: the long entry must be above 0 and above the short one
    policy = Hysteresis(
        long_threshold=high,
        short_threshold=low if shorts else None,
        exit_threshold=exit_at,
        sizing=sizing,
        fraction=fraction,
        target_vol=0.2,
        vol_lookback=vol_lookback,
        periods_per_year=98_280.0,
    )
    rng = np.random.default_rng(seed)
    check_policy(policy, _probabilities(rng, n, 1, nan_share), _bars(n, seed, flat_from))


def test_threshold_hold_holds_then_later_decisions_replace_earlier():
    # (p_long, p_short): long at bar 1, short at bar 3 replaces it, a flat decision at
    # bar 7 ends the long of bar 6, and bar 9's long expires after hold_bars = 3.
    nan = math.nan
    p = np.array(
        [[nan, nan], [0.7, 0.3], [nan, nan], [0.2, 0.8], [nan, nan], [nan, nan],
         [0.6, 0.4], [0.45, 0.55], [nan, nan], [0.9, 0.1], [nan, nan], [nan, nan], [nan, nan]]
    )  # fmt: skip
    policy = ThresholdHold(threshold=0.6, hold_bars=3)
    expected = [0, 1, 1, -1, -1, -1, 1, 0, 0, 1, 1, 1, 0]
    assert policy.positions(p).tolist() == expected
    stepper = policy.stepper()
    assert [stepper.step(row) for row in p] == expected


def test_policy_parameters_are_typed_frozen_and_hashed():
    with pytest.raises(ConfigError, match=r"unknown key 'hold_bar'\. Did you mean 'hold_bars'"):
        ThresholdHold(threshold=0.5, hold_bar=3)
    with pytest.raises(ConfigError, match="hold_bars"):
        ThresholdHold(threshold=0.5, hold_bars=0)
    with pytest.raises(ConfigError, match=r"vol_lookbak.*Did you mean 'vol_lookback'"):
        Hysteresis(vol_lookbak=10)
    with pytest.raises(ConfigError, match="exit_threshold"):
        Hysteresis(long_threshold=0.6, exit_threshold=0.7)
    policy = ThresholdHold(threshold=0.5, hold_bars=np.int64(30))
    with pytest.raises(Exception, match="frozen"):
        policy.hold_bars = 5  # type: ignore[misc]
    assert policy.params == {"policy": "threshold_hold", "threshold": 0.5, "hold_bars": 30}
    assert policy.policy_hash == ThresholdHold(hold_bars=30, threshold=0.5).policy_hash
    assert policy.policy_hash != ThresholdHold(threshold=0.5, hold_bars=31).policy_hash
    assert policy.policy_hash != Hysteresis().policy_hash
    assert policy.policy_hash.startswith("sha256:")


def test_bad_inputs_are_named():
    policy = ThresholdHold(threshold=0.5, hold_bars=2)
    with pytest.raises(ConfigError, match="rows 1"):
        policy.positions([0.2, 1.5])
    with pytest.raises(ConfigError, match="partly nan"):
        policy.positions([[0.2, math.nan]])
    with pytest.raises(ConfigError, match=r"shape \(n, 2\)"):
        policy.positions(np.zeros((3, 3)))
    with pytest.raises(ConfigError, match="1-D"):
        Hysteresis().positions(np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="2 rows but there are 3"):
        policy.positions([0.1, 0.2, 0.3], random_walk_bars(2))
    with pytest.raises(ConfigError, match="close"):
        Hysteresis(sizing="vol_target").positions([0.5, 0.6])
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        policy.stepper().step(-0.1)


def test_positions_from_probabilities_is_the_hysteresis_batch_form():
    bars = random_walk_bars(300, seed=4)
    prob = np.random.default_rng(4).uniform(0, 1, 300)
    kwargs = dict(short_threshold=0.4, sizing="vol_target", vol_lookback=15, fraction=0.7)
    np.testing.assert_array_equal(
        positions_from_probabilities(prob, close=bars["close"], **kwargs),
        Hysteresis(**kwargs).positions(prob, bars),
    )


# ------------------------------------------------------------- the checker catches


class _NeverExpires(PolicyStepper):
    """A wrong streaming form: it forgets that a decision expires after hold_bars."""

    def __init__(self, threshold: float) -> None:
        self.threshold, self.value = threshold, 0.0

    def step(self, probability, bar=None):
        if not math.isnan(probability):
            self.value = 1.0 if probability >= self.threshold else 0.0
        return self.value


class _ForgetfulHold(ThresholdHold):
    def stepper(self):
        return _NeverExpires(self.threshold)


class _PeeksAhead(Hysteresis):
    """A wrong batch form: it trades the next bar's probability."""

    def _positions(self, p, close):
        return super()._positions(np.append(p[1:], p[-1:]), close)


def test_check_policy_fails_a_streaming_form_that_differs_from_the_batch():
    p = [0.9, math.nan, math.nan, math.nan]
    check_policy(ThresholdHold(threshold=0.5, hold_bars=2), p)
    with pytest.raises(AssertionError, match=r"streaming vs batch differs at bar 2: 1\.0 != 0\.0"):
        check_policy(_ForgetfulHold(threshold=0.5, hold_bars=2), p)


def test_check_policy_fails_a_batch_form_that_looks_ahead():
    p = np.random.default_rng(0).uniform(0, 1, 60)
    check_policy(Hysteresis(), p)
    with pytest.raises(AssertionError, match="lookahead"):
        check_policy(_PeeksAhead(), p, n_cuts=30)
