"""Bar time frames ("1m", "5m", "1h", "1d") and their durations."""

from __future__ import annotations

import re

import pandas as pd

from moola.core.errors import ConfigError

_UNITS = {"s": "s", "m": "min", "h": "h", "d": "D"}
_PATTERN = re.compile(r"^(\d+)([smhd])$")


def parse_timeframe(timeframe: str) -> pd.Timedelta:
    """Duration of one bar of ``timeframe`` (e.g. ``"1m"`` -> 1 minute).

    Raises ``ConfigError`` naming the accepted forms when the text is not a time frame.
    """
    match = _PATTERN.match(str(timeframe).strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ConfigError(
            f"Unknown timeframe {timeframe!r}. Use a positive count and a unit s, m, h or d, "
            "for example '1m', '5m', '1h' or '1d'."
        )
    count, unit = int(match.group(1)), match.group(2)
    return pd.Timedelta(count, unit=_UNITS[unit])
