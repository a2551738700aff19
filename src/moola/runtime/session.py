"""Running and operating a session from its config: what ``moola live`` calls.

``run_session`` wires one session of a ``LiveConfig`` -- members from the promoted runs,
the feed (replayed or polled), the journal, the broker (paper, or Coinbase with the
environment's credentials) and the notifier -- and runs ``moola.runtime.engine.Engine``
over it. ``open_journal`` finds the mode's journal; ``set_kill_switch``, ``unlock_halt``
and ``session_status`` are what an operator does to a journal while (or between) engines
run: every one of them writes the journal first, and an engine reads it before its next
order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from moola.core.errors import ConfigError, MoolaError
from moola.features.featureset import load_feature_set
from moola.runtime.config import LiveConfig
from moola.runtime.engine import (
    ENGINE_STATE_KEY,
    HALT_KEY,
    KILL_SWITCH_KEY,
    DecisionParts,
    Engine,
    SessionResult,
)
from moola.runtime.feed import PollingFeed, open_feed
from moola.runtime.members import load_members

__all__ = ["open_journal", "run_session", "session_status", "set_kill_switch", "unlock_halt"]


def run_session(
    root: str | Path,
    config: LiveConfig,
    *,
    replay: str | None = None,
    max_bars: int | None = None,
    env: Mapping[str, str] | None = None,
    on_bar: Callable[[int, int], None] | None = None,
    session_id: str | None = None,
) -> SessionResult:
    """Run one session of ``config`` under data root ``root``: members from the promoted
    runs, the journal at ``config.journal_url`` (default ``live/<mode>.db`` under ``root``),
    bars replayed from ``replay`` (a raw dataset or bars file) or, without one, polled live
    from the config's ``feed:`` section (``moola.runtime.feed.open_feed``: a source that
    cannot be reached is an error before anything is opened). In live mode a replayed bar's
    age is judged by the wall clock, so historical bars are refused as stale: nothing
    reaches a real broker from a replay. A polled session stops when the kill switch is
    turned on while it waits for a bar (open orders cancelled), on Ctrl-C, or at
    ``max_bars``.

    ``session_id``: resume that session (open, of this config) instead of starting one,
    e.g. after a crash: a paper session's book is rebuilt from its journal and the replay
    goes on after the last bar it decided (``Engine.start``)."""
    from moola.runtime.brokers import PaperBroker

    env = os.environ if env is None else env
    if config.mode == "live":
        _live_credentials(config, env)  # before anything is loaded or opened
    feature_set = load_feature_set(config.feature_set)
    members = load_members(root, config, feature_set)
    feed = open_feed(root, config, replay=replay)
    journal = open_journal(root, config.mode, config, env)
    notifier = None
    if config.notifier_url:
        from moola.runtime.notify import WebhookNotifier

        notifier = WebhookNotifier(config.notifier_url)
    if config.mode == "live":
        from moola.runtime.brokers.coinbase import CoinbaseAdvancedTrade

        broker: Any = CoinbaseAdvancedTrade.from_config(
            config.coinbase, _live_credentials(config, env)
        )
    else:
        broker = PaperBroker(config.execution, config.symbols)
    engine = Engine(
        config,
        journal,
        broker,
        members,
        feed,
        feature_set=feature_set,
        env=env,
        on_bar=on_bar,
        # a paper broker lives in memory: a new session gets a new book, a resumed one the
        # book its journal rebuilds
        resume_book=config.mode == "live" or session_id is not None,
        notifier=notifier,
    )
    if isinstance(feed, PollingFeed):
        # a kill switch that flattens waits for the next bars: they close the positions
        feed.stop_when = lambda: None if engine.flattens_on_kill() else _kill_reason(env, journal)
    try:
        if session_id is not None:
            engine.start(session_id)
        return engine.run(max_bars)
    finally:
        if isinstance(feed, PollingFeed):
            feed.close()
        if notifier is not None:
            notifier.close()
        journal.close()


def _kill_reason(env: Mapping[str, str], journal: Any) -> str | None:
    """Why the kill switch is on (environment or journal), or None when it is off."""
    from moola.runtime.killswitch import KillSwitch

    state = KillSwitch().is_on(env, journal.get_state(KILL_SWITCH_KEY))
    return f"kill switch on ({state.source}): {state.reason}" if state.on else None


def _live_credentials(config: LiveConfig, env: Mapping[str, str]) -> Any:
    """Live mode needs broker credentials; without them, a clear error (nothing started)."""
    from moola.runtime.brokers import Credentials

    try:
        return Credentials.from_env(env)
    except MoolaError as exc:
        raise ConfigError(
            f"mode 'live' with broker {config.broker!r} needs broker credentials in the "
            f"environment: {exc}",
            param="mode",
        ) from None


def open_journal(
    root: str | Path,
    mode: str,
    config: LiveConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """The ``mode`` journal: ``config.journal_url`` when given, else ``journal_url`` (DB_URL
    variables, or ``live/<mode>.db`` under ``root``)."""
    from moola.tracking.livedb import LiveJournal, journal_url

    url = (config.journal_url if config is not None else None) or journal_url(
        Path(root),
        mode,
        os.environ if env is None else env,  # type: ignore[arg-type]
    )
    return LiveJournal(url)


def set_kill_switch(journal: Any, on: bool, *, by: str = "", reason: str = "") -> dict[str, Any]:
    """Turn the journal's kill switch on or off (recorded as an event, read before every
    order by every engine on this journal). Returns the stored value."""
    from moola.runtime.killswitch import KillSwitch

    value = KillSwitch.journal_value(on, by=by, reason=reason)
    journal.record_event(None, "kill_on" if on else "kill_off", value)
    journal.set_state(KILL_SWITCH_KEY, value)
    return value


def unlock_halt(journal: Any, config: LiveConfig, *, person: str, reason: str) -> dict[str, Any]:
    """Lift a risk halt: the person and reason are recorded (an ``unlock`` event and the
    risk gate's state) before the halt is cleared. Not halted -> ``ConfigError``."""
    state = dict(journal.get_state(ENGINE_STATE_KEY) or {})
    parts = DecisionParts.from_config(config, {"risk": state.get("risk")})
    halt = journal.get_state(HALT_KEY)
    if parts.risk.halted:
        record = parts.risk.unlock(person, reason)
    elif isinstance(halt, Mapping) and halt.get("on"):  # halted in a book since replaced
        for name, value in (("person", person), ("reason", reason)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"unlock: say who unlocks and why ({name} is empty).")
        record = {"person": person.strip(), "reason": reason.strip(), "lifted": dict(halt)}
    else:
        raise ConfigError("unlock: trading is not halted; there is nothing to unlock.")
    journal.record_event(None, "unlock", {**record, "person": person, "reason": reason})
    journal.set_state(ENGINE_STATE_KEY, {**state, "risk": parts.risk.state()})
    journal.set_state(HALT_KEY, None)
    return record


def session_status(journal: Any) -> dict[str, Any]:
    """What ``moola live status`` shows: the journal's status (sessions, latest positions,
    pending intents) with the kill switch, the risk halt, and each rate limit's use
    (signals spent in its window, of its capacity, as of the last decision)."""
    info = dict(journal.status())
    state = info.get("state", {}).get(ENGINE_STATE_KEY) or {}
    risk = state.get("risk") or {}
    halt = risk.get("halt")
    kill = info.get(KILL_SWITCH_KEY)
    buckets = (state.get("rate") or {}).get("buckets", {})
    info["kill"] = "on" if isinstance(kill, Mapping) and kill.get("on") else "off"
    if isinstance(kill, Mapping) and kill.get("on"):
        info["kill"] += f" (by {kill.get('by') or '?'}: {kill.get('reason') or 'no reason'})"
    info["halt"] = "none" if not halt else str(halt.get("reason"))
    info["rate_limits"] = {
        name: f"{len(b.get('spent', []))}/{b.get('capacity')}" for name, b in buckets.items()
    }
    info["signals_last_hour"] = info["rate_limits"].get("all", "0")
    info.update(_day_pnl(risk))
    return info


def _day_pnl(risk: Mapping[str, Any]) -> dict[str, Any]:
    """Day PnL and the loss limits' use, from the risk gate's state (None where unknown):
    equity at the last mark against the start of its day and the initial equity."""
    last = (risk.get("last") or {}).get("equity")
    streams = risk.get("streams") or {}
    sod = (streams.get("daily_loss_limit") or {}).get("day_sod")
    initial = (streams.get("total_loss_limit") or {}).get("initial")
    numbers = [v if isinstance(v, int | float) else None for v in (last, sod, initial)]
    last, sod, initial = numbers
    return {
        "equity": last,
        "day_pnl": None if last is None or sod is None else last - sod,
        "day_loss_used": None if not (last is not None and sod) else max(0.0, 1 - last / sod),
        "total_loss_used": None
        if not (last is not None and initial)
        else max(0.0, 1 - last / initial),
    }
