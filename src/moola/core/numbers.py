"""Reading a user's number: one home for "a float, or NaN when it is not a number".

Settings, weights, probabilities and journal fields arrive as whatever YAML, JSON or a
caller gave: ``"0.5"``, ``None``, ``[1]``. Each check in moola turns the value into a float
first and judges the float (finite? in range?), so a value that is not a number at all
must become something every such judgement refuses: NaN. Whether ``True`` counts as 1 is
each caller's decision (most refuse bools by ``isinstance`` before or after).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["as_number"]


def as_number(value: Any) -> float:
    """``float(value)``; NaN when ``value`` is not a number (so a finiteness or range check
    refuses it with the caller's own message)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
