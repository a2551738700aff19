"""The ensemble: one probability of "up" from the members' probabilities, weighted.

Each member (a per-symbol direction model, a multi-symbol trend model, an RL policy) gives
the probability that the price goes up, or nothing. ``combine`` takes their weighted mean
over the members that answered with a fresh, valid probability, the weights renormalised
over those members; the members left out are named with the reason, so the journal says
what the decision was made from (``EnsembleResult.to_dict``). With no member left the
probability is ``None``: no signal, never a made-up 0.5.

Pure computing: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from moola.core.errors import ConfigError
from moola.core.numbers import as_number

__all__ = ["DEFAULT_WEIGHTS", "EnsembleResult", "MemberOutput", "combine", "validate_weights"]

#: The crypto signal bot's weights (DOMAIN.md): direction 0.35, trend 0.40, RL 0.25.
DEFAULT_WEIGHTS: dict[str, float] = {"direction": 0.35, "trend": 0.40, "rl": 0.25}


@dataclass(frozen=True)
class MemberOutput:
    """One member's answer for one bar.

    ``value``: the probability that the price goes up, in [0, 1]; ``None`` when the member
    gave nothing (no model output, too few bars). ``stale``: the member's input was not
    the current bar (a lagging feed), so its value is not used.
    """

    member: str
    run_id: str | None
    value: float | None
    stale: bool = False


@dataclass(frozen=True)
class EnsembleResult:
    """What ``combine`` made of the members' outputs.

    ``probability``: the weighted mean (``None`` when no member could be used).
    ``weights_used``: member -> weight after renormalising (they sum to 1), for the members
    used. ``missing``: the members left out, in weight order; ``reasons`` says why for each.
    ``renormalised``: True when a weighted member was left out, so the used weights were
    scaled up.
    """

    probability: float | None
    weights_used: dict[str, float]
    missing: tuple[str, ...]
    renormalised: bool
    reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON values for the journal."""
        return {
            "probability": self.probability,
            "weights_used": dict(self.weights_used),
            "missing": list(self.missing),
            "renormalised": self.renormalised,
            "reasons": dict(self.reasons),
        }


def validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """``weights`` as floats, or ``ConfigError`` naming the bad one: each finite and
    ``>= 0``, at least one positive, member names non-empty."""
    if not isinstance(weights, Mapping) or not weights:
        raise ConfigError(
            f"weights={weights!r}: give a mapping of member name to weight, e.g. "
            f"{DEFAULT_WEIGHTS}.",
            param="weights",
        )
    checked: dict[str, float] = {}
    for name, weight in weights.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"weights: member name {name!r} must be a non-empty string.", param="weights"
            )
        value = as_number(weight)
        if isinstance(weight, bool) or not math.isfinite(value) or value < 0.0:
            raise ConfigError(
                f"weights[{name!r}]={weight!r}: a weight must be a finite number >= 0.",
                param="weights",
            )
        checked[name] = value
    if not any(checked.values()):
        raise ConfigError(
            f"weights={checked}: every weight is 0; give at least one member a positive weight.",
            param="weights",
        )
    return checked


def _unusable(output: MemberOutput) -> str | None:
    """Why ``output`` cannot be used, or ``None`` when it can."""
    if output.value is None:
        return "no output"
    if output.stale:
        return "stale"
    try:
        value = float(output.value)
    except (TypeError, ValueError):
        return f"not a probability: {output.value!r}"
    if not (0.0 <= value <= 1.0):  # NaN fails too
        return f"not a probability: {output.value!r}"
    return None


def combine(
    outputs: Sequence[MemberOutput], weights: Mapping[str, float] = DEFAULT_WEIGHTS
) -> EnsembleResult:
    """The weighted mean of the usable members' probabilities, renormalised over them.

    A member is left out (named in ``missing``, with a reason) when it gave no output, is
    stale, gave a value that is not a probability in [0, 1], or did not answer at all (a
    weighted member absent from ``outputs``). A usable member of weight 0 counts for
    nothing. ``weights`` are validated (``validate_weights``); an output from a member that
    has no weight, or two outputs from one member, is a ``ConfigError`` naming it.
    """
    checked = validate_weights(weights)
    seen: dict[str, MemberOutput] = {}
    for output in outputs:
        if output.member not in checked:
            raise ConfigError(
                f"outputs: member {output.member!r} has no weight; weights name {sorted(checked)}.",
                param="weights",
            )
        if output.member in seen:
            raise ConfigError(
                f"outputs: member {output.member!r} answered twice; give one output per member.",
                param="outputs",
            )
        seen[output.member] = output
    reasons: dict[str, str] = {}
    used: dict[str, tuple[float, float]] = {}  # member -> (weight, value)
    for name, weight in checked.items():
        output = seen.get(name)
        why = "absent" if output is None else _unusable(output)
        if why is not None:
            reasons[name] = why
        elif weight > 0.0:
            used[name] = (weight, float(output.value))  # type: ignore[union-attr, arg-type]
    missing = tuple(name for name in checked if name in reasons)
    renormalised = any(checked[name] > 0.0 for name in missing)
    total = math.fsum(w for w, _ in used.values())
    if not used or total <= 0.0:
        return EnsembleResult(None, {}, missing, renormalised, reasons)
    # normalise first: w * v of a tiny weight would underflow before the division
    weights_used = {name: w / total for name, (w, _) in used.items()}
    probability = math.fsum(weights_used[name] * v for name, (_, v) in used.items())
    probability = min(1.0, max(0.0, probability))  # rounding may not leave [0, 1]
    return EnsembleResult(probability, weights_used, missing, renormalised, reasons)
