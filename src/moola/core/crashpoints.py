"""Named crash points: where the restart-safety test kills the process (issue 18).

In ``moola.core`` so the journal (``moola.tracking``) can place points too; the runtime
names it as ``moola.runtime.crashpoints``.

``crash_point(name)`` is called at the places of the live loop where a crash would leave
the journal, the broker and the engine's saved state out of step (between a journal write
and the broker call, mid-fill, mid-migration, ...). It does nothing unless the
environment variable ``MOOLA_CRASH_AT`` names it, as ``name`` (the first time the point
is reached) or ``name@N`` (the N-th time): then the process kills itself with SIGKILL --
no ``finally``, no ``atexit``, no flush, as a power cut or the OOM killer would.

The variable is read once, at import: unarmed, a call is one comparison and a return.
``CRASH_POINTS`` lists every name placed in the code with what it sits between;
``tests/runtime/test_crash.py`` kills a paper session at each one and restarts it.
"""

from __future__ import annotations

import os
import signal

from moola.core.errors import ConfigError

__all__ = ["CRASH_POINTS", "ENV_VAR", "arm", "crash_point", "parse_target"]

#: The environment variable that arms one crash point: ``name`` or ``name@N``.
ENV_VAR = "MOOLA_CRASH_AT"

#: Every crash point placed in the code, (name, what the crash falls between), in the
#: order a session reaches them.
CRASH_POINTS: tuple[tuple[str, str], ...] = (
    ("livedb.migrate_begin", "the migration transaction is open, before any DDL runs"),
    ("livedb.migrate_applied", "the DDL ran and the revision is stamped, before the commit"),
    ("engine.session_started", "the session row is committed, before reconciliation"),
    ("engine.reconciled", "reconciliation with the broker done, before the first bar"),
    ("engine.bar_received", "a bar updated the features, before the broker advances"),
    ("paper.bar_advanced", "the paper kernel filled this bar's orders, before they are mapped"),
    (
        "engine.fill_before_journal",
        "a fill came back from the broker, before it is queued for the bar's transaction",
    ),
    (
        "livedb.fill_before_commit",
        "a bar's fills are written in its group's record_steps transaction, before the commit",
    ),
    (
        "engine.fill_journaled",
        "a fill is queued for the bar's transaction, before the position moves",
    ),
    (
        "engine.fill_marked",
        "the engine's position moved by the fill, before its snapshot is queued",
    ),
    (
        "engine.position_recorded",
        "the position snapshot is queued, before the next fill or the risk mark",
    ),
    (
        "engine.fill_state_saved",
        "every fill of the bar is queued (committed with the decision), before the risk mark",
    ),
    ("engine.risk_marked", "the risk gate is marked with the bar's equity, before deciding"),
    (
        "engine.decided",
        "a bar's decision is made in memory (maybe mid-group), before anything is journaled",
    ),
    (
        "engine.group_decided",
        "every bar of the bar time's group is decided in memory, before its transaction",
    ),
    (
        "livedb.state_before_commit",
        "the engine state written in record_steps' transaction, uncommitted",
    ),
    (
        "livedb.step_before_commit",
        "the group's iterations, decisions and intents written, before the commit",
    ),
    (
        "engine.step_recorded",
        "record_steps committed (the group's fills, status marks, positions, decisions, "
        "intents, engine state), before refusals are notified",
    ),
    ("engine.state_saved", "the group is decided and the state saved, before any submit"),
    (
        "engine.group_next_submit",
        "one intent of the group is sent (the group's acks are journaled together after its "
        "last submit), before the group's next submit",
    ),
    ("engine.before_submit", "an intent is journaled and the state saved, before broker.submit"),
    ("paper.order_placed", "the paper kernel took the order, before the ack is kept"),
    ("engine.submitted", "broker.submit returned, before the group's acks are journaled"),
    (
        "livedb.mark_before_commit",
        "the intents' new statuses are written (one mark, or a group's acks), before the commit",
    ),
    (
        "engine.ack_journaled",
        "the group's acks are journaled (one transaction), before the next bar",
    ),
    ("engine.session_ending", "the feed ended, before the session row is closed"),
    ("engine.session_ended", "the session row is closed, before the process returns"),
)

_NAMES = frozenset(name for name, _ in CRASH_POINTS)


def parse_target(value: str | None) -> tuple[str, int] | None:
    """``name`` or ``name@N`` -> (name, N); None for an empty value. An unknown name or a
    count that is not a positive integer -> ``ConfigError`` naming the variable."""
    if not value:
        return None
    name, _, count = value.partition("@")
    if name not in _NAMES:
        raise ConfigError(
            f"{ENV_VAR}={value!r} names no crash point; valid: {', '.join(sorted(_NAMES))}.",
            param=ENV_VAR,
        )
    try:
        n = int(count) if count else 1
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(
            f"{ENV_VAR}={value!r}: the count after '@' must be a positive integer.",
            param=ENV_VAR,
        )
    return name, n


_TARGET = parse_target(os.environ.get(ENV_VAR))
_hits: dict[str, int] = {}


def arm(value: str | None) -> None:
    """Arm ``value`` (as ``MOOLA_CRASH_AT`` would; None disarms) and restart the counts:
    for a process forked after import, which the variable read at import cannot reach."""
    global _TARGET
    _TARGET = parse_target(value)
    _hits.clear()


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL when ``MOOLA_CRASH_AT`` arms ``name`` and this is
    the time it counts; otherwise return at once."""
    if _TARGET is None or _TARGET[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)
