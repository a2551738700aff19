"""The kill switch: stop trading, from the environment or from the journal.

Two sources turn it on: the environment variable ``KILL_SWITCH`` (``1``, ``true``, ``yes``
or ``on``, any case; ``0``, ``false``, ``no``, ``off`` or empty is off) and the journal's
stored state (``moola live kill on|off`` writes ``{"on": true, ...}``). Either one is
enough; the environment is named first when both are on. A ``KILL_SWITCH`` value that is
neither on nor off (``"maybe"``, ``"ture"``) turns it ON with a reason naming the value:
a switch meant to stop money moving fails closed. The engine checks it before every order.

Pure computing: the environment and the journal state are passed in (``os.environ`` by
default); nothing is read or written here. ``journal_state``/``journal_value`` give the
JSON value the engine stores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ENV_VAR", "KillState", "KillSwitch"]

ENV_VAR = "KILL_SWITCH"
_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True)
class KillState:
    """Whether the switch is on, which source turned it on (``"env"``, ``"journal"`` or
    ``None`` when off) and a sentence saying why. Unpacks as ``on, source = state``."""

    on: bool
    source: str | None
    reason: str

    def __iter__(self) -> Iterator[Any]:
        return iter((self.on, self.source))

    def __bool__(self) -> bool:
        return self.on


class KillSwitch:
    """Reads the two sources (module notes); holds no state of its own."""

    env_var: str = ENV_VAR

    def is_on(self, env: Mapping[str, str] | None = None, journal_state: Any = None) -> KillState:
        """The switch's state from ``env`` (default ``os.environ``) and the journal's stored
        value (``None``: never set; ``{"on": bool, ...}`` or a bare bool)."""
        environ = os.environ if env is None else env
        raw = environ.get(self.env_var)
        if raw is not None:
            value = str(raw).strip().lower()
            if value in _ON:
                return KillState(True, "env", f"{self.env_var}={raw!r} in the environment")
            if value not in _OFF:
                return KillState(
                    True,
                    "env",
                    f"{self.env_var}={raw!r} is neither on (1/true/yes/on) nor off "
                    "(0/false/no/off); treated as on (fail closed)",
                )
        on, why = _journal_on(journal_state)
        if on:
            return KillState(True, "journal", why)
        return KillState(False, None, "off (environment and journal)")

    @staticmethod
    def journal_value(on: bool, *, by: str = "", reason: str = "") -> dict[str, Any]:
        """The JSON value to store in the journal for ``moola live kill on|off``."""
        return {"on": bool(on), "by": by, "reason": reason}


def _journal_on(state: Any) -> tuple[bool, str]:
    """(on, why) from the journal's stored value; a value of an unknown shape is on."""
    if state is None:
        return False, ""
    if isinstance(state, bool):
        return state, "the journal's kill state is on"
    if isinstance(state, Mapping) and isinstance(state.get("on"), bool):
        if not state["on"]:
            return False, ""
        by, reason = state.get("by") or "", state.get("reason") or ""
        detail = "".join((f" by {by}" if by else "", f": {reason}" if reason else ""))
        return True, f"kill switch turned on in the journal{detail}"
    return True, f"the journal's kill state {state!r} is unreadable; treated as on (fail closed)"
