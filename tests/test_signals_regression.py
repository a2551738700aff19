"""Signal policies on a regression model's predictions: SignHold and ScaledHold (issue 16).

What a user relies on: a backtest of forecasts trades the targets the environment and the
live engine would get bar by bar (batch and step forms agree), a long needs a prediction
above the threshold and a short one below its negative, and the default scale of
``scaled`` is the spread of predictions already made, never of later ones.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moola.backtest.signals import ScaledHold, SignHold, sign_targets
from moola.core.errors import ConfigError
from moola.testing import check_policy


def _predictions(seed: int, n: int, nan_share: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.01, n) + rng.normal(0.0, 0.002)
    x[rng.uniform(size=n) < nan_share] = np.nan  # bars without a decision
    return x


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 150),
    threshold=st.floats(0.0, 0.02),
    hold_bars=st.integers(1, 30),
    allow_short=st.booleans(),
    nan_share=st.sampled_from([0.0, 0.5, 0.95]),
)
def test_sign_hold_streams_its_batch_targets(seed, n, threshold, hold_bars, allow_short, nan_share):
    policy = SignHold(threshold=threshold, hold_bars=hold_bars, allow_short=allow_short)
    check_policy(policy, _predictions(seed, n, nan_share))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 150),
    scale=st.one_of(st.none(), st.floats(0.001, 0.05)),
    lookback=st.one_of(st.none(), st.integers(2, 40)),
    min_history=st.integers(2, 30),
    hold_bars=st.integers(1, 30),
    allow_short=st.booleans(),
    nan_share=st.sampled_from([0.0, 0.5, 0.9]),
)
def test_scaled_hold_streams_its_batch_targets_and_never_looks_ahead(
    seed, n, scale, lookback, min_history, hold_bars, allow_short, nan_share
):
    """check_policy also recomputes every cut ``predictions[: t + 1]``: a scale that read a
    later prediction would give another target at ``t``."""
    policy = ScaledHold(
        scale=scale,
        lookback=lookback,
        min_history=min_history,
        hold_bars=hold_bars,
        allow_short=allow_short,
    )
    check_policy(policy, _predictions(seed, n, nan_share))


def test_sign_hold_goes_long_above_and_short_below_the_threshold_and_holds():
    x = np.array([0.003, np.nan, -0.003, 0.001, np.nan, np.nan, np.nan, -0.0025])
    policy = SignHold(threshold=0.002, hold_bars=2, allow_short=True)
    assert policy.positions(x).tolist() == [1, 1, -1, 0, 0, 0, 0, -1]
    long_only = SignHold(threshold=0.002, hold_bars=2)  # shorts are asked for
    assert long_only.positions(x).tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    # strictly above: a prediction equal to the threshold stays flat
    assert sign_targets(np.array([0.002, -0.002, 0.0021]), 0.002, True).tolist() == [0, 0, 1]


def test_the_default_scale_is_the_spread_of_earlier_predictions_only():
    rng = np.random.default_rng(4)
    x = rng.normal(0.0, 0.01, 60)
    policy = ScaledHold(hold_bars=1, min_history=5, allow_short=True)
    positions = policy.positions(x)
    assert (positions[:5] == 0).all()  # fewer than 5 earlier predictions: flat
    for t in (5, 17, 59):
        expected = float(np.clip(x[t] / np.std(x[:t], ddof=1), -1, 1))
        assert positions[t] == pytest.approx(expected, rel=1e-12)
    # A later, wild prediction changes no earlier position (the std over all OOF
    # predictions would shrink every one of them).
    wild = x.copy()
    wild[40] = 5.0
    assert (policy.positions(wild)[:40] == positions[:40]).all()
    assert not np.allclose(positions[5:40], np.clip(x[5:40] / np.std(wild, ddof=1), -1, 1))
    trailing = ScaledHold(hold_bars=1, min_history=5, lookback=10, allow_short=True).positions(x)
    assert trailing[30] == pytest.approx(x[30] / np.std(x[20:30], ddof=1), rel=1e-12)


def test_a_given_scale_clips_and_long_only_drops_shorts():
    x = np.array([0.005, -0.02, 0.03, -0.004])
    both = ScaledHold(scale=0.01, hold_bars=1, allow_short=True)
    assert both.positions(x).tolist() == [0.5, -1.0, 1.0, -0.4]
    long_only = ScaledHold(scale=0.01, hold_bars=1)
    assert long_only.positions(x).tolist() == [0.5, 0.0, 1.0, 0.0]
    constant = ScaledHold(hold_bars=1, min_history=2).positions(np.full(5, 0.01))
    assert constant.tolist() == [0.0] * 5  # no spread yet: nothing to size by


def test_regression_policies_are_typed_hashed_and_refuse_bad_inputs():
    policy = SignHold(threshold=0.001, hold_bars=5, allow_short=True)
    assert policy.params == {
        "policy": "sign",
        "hold_bars": 5,
        "allow_short": True,
        "threshold": 0.001,
    }
    assert policy.policy_hash != SignHold(threshold=0.002, hold_bars=5).policy_hash
    assert ScaledHold(hold_bars=5).params["scale"] is None
    with pytest.raises(ConfigError, match="threshold"):
        SignHold(threshold=-0.1, hold_bars=5)
    with pytest.raises(ConfigError, match=r"unknown key 'scal'. Did you mean 'scale'"):
        ScaledHold(scal=0.1, hold_bars=5)
    with pytest.raises(ConfigError, match="scale"):
        ScaledHold(scale=0.0, hold_bars=5)
    with pytest.raises(ConfigError, match=r"rows 1 are infinite"):
        policy.positions(np.array([0.0, math.inf]))
    with pytest.raises(ConfigError, match="must be finite"):
        policy.stepper().step(-math.inf)
    # a regression policy takes any real prediction (not a probability in [0, 1])
    assert policy.positions(np.array([3.0, -2.0])).tolist() == [1.0, -1.0]
