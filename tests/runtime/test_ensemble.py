"""The ensemble: a weighted mean over the members that answered, renormalised, with the
members left out named; bad weights refused."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moola.core.errors import ConfigError
from moola.runtime.ensemble import DEFAULT_WEIGHTS, MemberOutput, combine, validate_weights


def _out(member: str, value: float | None, *, stale: bool = False) -> MemberOutput:
    return MemberOutput(member, f"run-{member}", value, stale)


def test_all_members_give_the_weighted_mean() -> None:
    result = combine([_out("direction", 0.8), _out("trend", 0.6), _out("rl", 0.3)])
    assert result.probability == pytest.approx(0.35 * 0.8 + 0.40 * 0.6 + 0.25 * 0.3)
    assert result.missing == ()
    assert not result.renormalised
    assert result.weights_used == pytest.approx(DEFAULT_WEIGHTS)


def test_a_missing_member_is_named_and_the_rest_renormalised() -> None:
    result = combine([_out("direction", 0.8), _out("trend", 0.6)])
    assert result.probability == pytest.approx((0.35 * 0.8 + 0.40 * 0.6) / 0.75)
    assert result.missing == ("rl",)
    assert result.reasons == {"rl": "absent"}
    assert result.renormalised
    assert sum(result.weights_used.values()) == pytest.approx(1.0)
    assert set(result.weights_used) == {"direction", "trend"}


def test_stale_empty_and_invalid_outputs_are_dropped_with_reasons() -> None:
    result = combine(
        [_out("direction", 0.9, stale=True), _out("trend", None), _out("rl", math.nan)]
    )
    assert result.probability is None
    assert result.missing == ("direction", "trend", "rl")
    assert result.reasons["direction"] == "stale"
    assert result.reasons["trend"] == "no output"
    assert "not a probability" in result.reasons["rl"]
    out_of_range = combine([_out("direction", 1.2), _out("trend", 0.7)])
    assert out_of_range.probability == pytest.approx(0.7)
    assert out_of_range.missing == ("direction", "rl")


def test_no_member_means_no_probability() -> None:
    result = combine([])
    assert result.probability is None
    assert result.weights_used == {}
    assert result.missing == ("direction", "trend", "rl")


def test_the_result_is_a_json_value_for_the_journal() -> None:
    result = combine([_out("direction", 0.8), _out("rl", None)])
    assert json.loads(json.dumps(result.to_dict()))["missing"] == ["trend", "rl"]


@pytest.mark.parametrize(
    ("weights", "named"),
    [
        ({"direction": -0.1, "trend": 0.4}, "weights['direction']"),
        ({"direction": math.nan, "trend": 0.4}, "weights['direction']"),
        ({"direction": math.inf}, "weights['direction']"),
        ({"direction": True}, "weights['direction']"),
        ({"direction": 0.0, "trend": 0.0}, "every weight is 0"),
        ({}, "weights="),
    ],
)
def test_bad_weights_are_refused_naming_them(weights, named) -> None:
    with pytest.raises(ConfigError, match=r"weights") as info:
        combine([_out("direction", 0.6)], weights)
    assert named in str(info.value)
    assert info.value.param == "weights"


def test_an_unweighted_or_repeated_member_is_refused() -> None:
    with pytest.raises(ConfigError, match="'sentiment' has no weight"):
        combine([_out("sentiment", 0.6)])
    with pytest.raises(ConfigError, match="'trend' answered twice"):
        combine([_out("trend", 0.6), _out("trend", 0.7)])


def test_a_zero_weight_member_counts_for_nothing() -> None:
    result = combine([_out("direction", 0.9), _out("trend", 0.1)], {"direction": 1, "trend": 0})
    assert result.probability == pytest.approx(0.9)
    assert result.weights_used == {"direction": 1.0}
    assert not result.renormalised


probabilities = st.one_of(st.none(), st.floats(0.0, 1.0))
weight = st.one_of(st.just(0.0), st.floats(1e-6, 10.0))


@given(
    values=st.fixed_dictionaries({m: probabilities for m in DEFAULT_WEIGHTS}),
    stale=st.fixed_dictionaries({m: st.booleans() for m in DEFAULT_WEIGHTS}),
    weights=st.fixed_dictionaries({m: weight for m in DEFAULT_WEIGHTS}),
    scale=st.floats(0.01, 100.0),
)
def test_the_mean_uses_exactly_the_usable_members(values, stale, weights, scale) -> None:
    if not any(weights.values()):
        weights["trend"] = 1.0
    outputs = [_out(m, values[m], stale=stale[m]) for m in DEFAULT_WEIGHTS]
    result = combine(outputs, weights)
    usable = {m: values[m] for m in DEFAULT_WEIGHTS if values[m] is not None and not stale[m]}
    counted = {m: v for m, v in usable.items() if weights[m] > 0}
    assert set(result.missing) == set(DEFAULT_WEIGHTS) - set(usable)
    if not counted:
        assert result.probability is None
        return
    assert min(counted.values()) - 1e-12 <= result.probability <= max(counted.values()) + 1e-12
    # renormalising: the same as combining the usable members alone, at any weight scale
    scaled = {m: w * scale for m, w in weights.items()}
    again = combine([_out(m, v) for m, v in usable.items()], scaled)
    assert again.probability == pytest.approx(result.probability, rel=1e-9, abs=1e-12)
    assert sum(result.weights_used.values()) == pytest.approx(1.0)


def test_validate_weights_returns_floats() -> None:
    assert validate_weights({"a": 1, "b": 0.5}) == {"a": 1.0, "b": 0.5}
