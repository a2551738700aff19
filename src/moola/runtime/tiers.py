"""Signal tiers: how sure the ensemble is, in three steps (high, medium, low) or none.

The confidence of a probability ``p`` of "up" is ``max(p, 1 - p)``: how far the ensemble
leans either way. A confidence at or above a tier's threshold earns that tier (the highest
one reached); below the lowest there is no signal. The defaults are the crypto signal bot's
(DOMAIN.md): high >= 0.75, medium >= 0.65, low >= 0.55.

Pure computing: no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

from moola.core.errors import ConfigError
from moola.core.numbers import as_number

__all__ = ["TIERS", "Signal", "classify", "confidence_of", "tier_of", "validate_tiers"]

#: (name, threshold) from the highest tier down.
TIERS: tuple[tuple[str, float], ...] = (("high", 0.75), ("medium", 0.65), ("low", 0.55))


def validate_tiers(tiers: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """``tiers`` checked, or ``ConfigError`` naming the problem: at least one ``(name,
    threshold)``, names distinct and non-empty, thresholds finite in (0.5, 1] and not rising
    from the first (highest) tier to the last (a tier equal to the one above it is never
    reached, as in ``LiveConfig.tiers``)."""
    try:
        pairs = tuple((name, float(threshold)) for name, threshold in tiers)
    except (TypeError, ValueError):
        raise ConfigError(
            f"tiers={tiers!r}: give (name, threshold) pairs, highest first, e.g. {TIERS}.",
            param="tiers",
        ) from None
    if not pairs:
        raise ConfigError(f"tiers is empty; give at least one, e.g. {TIERS}.", param="tiers")
    names = [name for name, _ in pairs]
    if any(not isinstance(n, str) or not n.strip() for n in names) or len(set(names)) != len(names):
        raise ConfigError(
            f"tiers: names {names} must be distinct, non-empty strings.", param="tiers"
        )
    for name, threshold in pairs:
        if not (math.isfinite(threshold) and 0.5 < threshold <= 1.0):
            raise ConfigError(
                f"tiers: threshold of {name!r} is {threshold}; a confidence threshold must "
                "be in (0.5, 1] (confidence = max(p, 1 - p)).",
                param="tiers",
            )
    for (upper, hi), (lower, lo) in itertools.pairwise(pairs):
        if not hi >= lo:
            raise ConfigError(
                f"tiers: {upper!r} ({hi}) must not be below {lower!r} ({lo}); list the tiers "
                "from the highest threshold down.",
                param="tiers",
            )
    return pairs


def confidence_of(probability: float) -> float:
    """``max(p, 1 - p)`` of a probability of "up" in [0, 1] (``ConfigError`` otherwise)."""
    p = _probability(probability, "probability")
    return max(p, 1.0 - p)


def _probability(value: float, name: str) -> float:
    p = as_number(value)
    if not (0.0 <= p <= 1.0):
        raise ConfigError(f"{name}={value!r}: must be a number in [0, 1].", param=name)
    return p


def tier_of(confidence: float, tiers: Sequence[tuple[str, float]] = TIERS) -> str | None:
    """The highest tier whose threshold ``confidence`` reaches, or ``None`` (no signal).

    ``confidence`` is ``max(p, 1 - p)``, in [0, 1]; a value outside (or NaN) is a
    ``ConfigError`` naming it."""
    value = _probability(confidence, "confidence")
    for name, threshold in validate_tiers(tiers):
        if value >= threshold:
            return name
    return None


class Signal(NamedTuple):
    """A probability's tier and direction: ``signal`` is 1 (up), -1 (down) or 0 (none)."""

    confidence: float
    tier: str | None
    signal: int


def classify(probability: float, tiers: Sequence[tuple[str, float]] = TIERS) -> Signal:
    """Confidence, tier and direction of a probability of "up": 1 when ``p > 0.5``, -1
    when ``p < 0.5``, and 0 when the confidence earns no tier."""
    p = _probability(probability, "probability")
    confidence = max(p, 1.0 - p)
    tier = tier_of(confidence, tiers)
    if tier is None:
        return Signal(confidence, None, 0)
    return Signal(confidence, tier, 1 if p > 0.5 else -1)
