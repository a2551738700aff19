"""Tiers: the highest threshold a confidence reaches, none below the lowest; thresholds
configurable and checked."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from moola.core.errors import ConfigError
from moola.runtime.tiers import TIERS, classify, confidence_of, tier_of, validate_tiers


@pytest.mark.parametrize(
    ("confidence", "tier"),
    [
        (1.0, "high"),
        (0.75, "high"),
        (0.7499, "medium"),
        (0.65, "medium"),
        (0.6499, "low"),
        (0.55, "low"),
        (0.5499, None),
        (0.5, None),
    ],
)
def test_default_thresholds(confidence, tier) -> None:
    assert tier_of(confidence) == tier


def test_classify_gives_confidence_tier_and_direction() -> None:
    assert classify(0.2) == (pytest.approx(0.8), "high", -1)
    assert classify(0.7) == (pytest.approx(0.7), "medium", 1)
    assert classify(0.5) == (0.5, None, 0)
    assert classify(0.46) == (pytest.approx(0.54), None, 0)


def test_custom_tiers() -> None:
    tiers = (("strong", 0.9), ("weak", 0.6))
    assert tier_of(0.95, tiers) == "strong"
    assert tier_of(0.7, tiers) == "weak"
    assert tier_of(0.59, tiers) is None


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ((), "empty"),
        ((("high", 0.6), ("low", 0.7)), "must not be below"),
        ((("high", 1.2),), r"\(0.5, 1\]"),
        ((("high", 0.4),), r"\(0.5, 1\]"),
        ((("high", float("nan")),), r"\(0.5, 1\]"),
        ((("a", 0.8), ("a", 0.6)), "distinct"),
        ((("a",),), "pairs"),
    ],
)
def test_bad_tiers_are_refused(tiers, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        validate_tiers(tiers)
    assert info.value.param == "tiers"


@pytest.mark.parametrize("value", [-0.1, 1.1, float("nan"), "high"])
def test_a_confidence_outside_0_1_is_refused(value) -> None:
    with pytest.raises(ConfigError, match="confidence"):
        tier_of(value)
    with pytest.raises(ConfigError, match="probability"):
        confidence_of(value)


order = [name for name, _ in TIERS] + [None]


@given(a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0))
def test_a_higher_confidence_never_earns_a_lower_tier(a, b) -> None:
    low, high = sorted((a, b))
    assert order.index(tier_of(high)) <= order.index(tier_of(low))


@given(p=st.floats(0.0, 1.0))
def test_up_and_down_are_judged_alike(p) -> None:
    # 1 - (1 - p) may differ from p in the last bit: keep away from the thresholds
    assume(all(abs(max(p, 1.0 - p) - t) > 1e-9 for _, t in TIERS))
    up, down = classify(p), classify(1.0 - p)
    assert up.tier == down.tier
    assert up.signal == -down.signal
    assert (up.signal == 0) == (up.tier is None)
