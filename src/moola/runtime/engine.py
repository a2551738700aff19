"""The decision loop: the closed bars of one bar time in, their journaled order intents out.

The feed hands over the symbols' bars of one bar time as a group (``groups()`` of
``moola.runtime.feed``; a group never waits on a later bar). Each bar of the group
(``Engine.step_group``; ``Engine.step`` is a group of one) is decided in turn, in the
feed's order, as follows:

1. incremental features (``IncrementalFeatures``: the same code as batch, row for row);
2. the paper broker advances over the bar (orders decided earlier fill at its prices; a
   live broker is asked what became of its working orders, a final one's fills and
   status queued together); fills and positions are queued for the group's transaction
   (step 6) and the risk gate is marked with the new equity (a loss-limit breach halts
   it, is journaled as a halt at once, and requests a flatten);
3. members -> weighted ensemble (renormalised over missing or stale members; each member
   calibrated by its run unless ``calibration`` is off) -> tier (no tier: no signal);
4. the kill switch (environment or journal) is read on every bar: on, open orders are
   cancelled, an intent decided earlier in the group is withdrawn (never sent, marked
   cancelled) and the loop stops at this bar; with ``kill_switch.flatten`` each held
   symbol is closed at its next bar instead (a ``flatten`` decision naming the kill switch,
   journaled before it is sent, not judged by risk or rate limits; the switch's own
   flatten orders are not cancelled) and the loop stops once nothing is held or working;
   a halted gate flattens each held symbol at its next bar;
5. a signal becomes an order: +1 on a flat symbol buys ``position_size`` units (risk per
   trade over an ``atr_multiple`` ATR stop, capped by ``max_position``), -1 on a held
   symbol sells it (spot: no shorts); the order passes the feed check (gap, staleness),
   the risk gate (the backtest's rule objects) and the rate limits, in that order; a
   refusal is the decision's action with its reasons, and nothing is sent; while an order
   of the symbol is still working at a broker that settles its orders (acknowledged and
   not final, or sent with its answer lost: ``OrderUnsure``, kept ``sent`` and asked about
   each bar), no new order is decided for it (``hold``, naming the order);
6. then, for the whole group: each bar's fills (their intents marked filled, then a
   settled order's final status) and position snapshots, the iteration (bar, feature
   hash), member outputs, decision, a refusal's event, the ``OrderIntent`` -- with a
   deterministic client order id, a hash of session, symbol, bar time and decision --
   and the engine state (positions, last bar decided, risk and rate-limit state) are
   journaled in ONE transaction (``record_steps``, one durable commit for all the
   symbols of the bar time: all or nothing); only then the group's intents go to
   ``broker.submit``, one by one, and their acks are journaled together after the last
   (``mark_intents``: one more commit per group, not one per order; a crash before it
   leaves them sent without their ack, which a restart settles from the broker). If any
   journal write fails (``JournalError``) the loop stops and nothing more is sent: risk
   fails closed.
   A notifier, when given, hears of it last.

Deciding a group changes no decision: the orders of a group are sent after every bar of
it is decided, but a paper symbol trades in a sleeve of its own, so an order sent later
in the minute changes neither the balances (cash, equity) nor the open orders that
another symbol of the minute reads (sizing, ``AccountState``); the risk gate and rate
limits are spent as each bar is decided, as before. A halt or kill switch seen mid-group
withdraws the group's unsent intents where, bar by bar, they would have been sent and
then cancelled: the journal ends with the same intents, cancelled with the same reason.

The kill switch is read before every order: the journal keeps the value it read and, on
SQLite, reads the row again only when another connection has committed since (``PRAGMA
data_version``), so the check costs microseconds, not a transaction.

On start the engine rebuilds its state from the journal (kill switch, halt, risk and
rate-limit state, expected positions, the last bar decided per symbol) and reconciles it
with the broker: a position or open order the journal does not account for makes it
refuse to trade, saying why (``ReconcileError``). An intent already recorded is never
recorded or sent again: a restarted session replaying the same bars skips bars it already
decided (they only warm up features) and a client id the journal knows is not sent twice.

The decision parts (ensemble, tiers, rate limits, kill switch, risk gate, sizing) live in
their own modules of ``moola.runtime`` and are passed in as ``DecisionParts``; the journal
is ``moola.tracking.livedb.LiveJournal`` and the broker a ``moola.runtime.brokers``
adapter. ``moola.runtime.session.run_session`` wires them from a ``LiveConfig`` for
``moola live run``.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from moola.core.crashpoints import crash_point
from moola.core.errors import BrokerError, ConfigError, JournalError, MoolaError
from moola.core.hashing import sha256_json
from moola.features.base import create_feature
from moola.features.featureset import FeatureSet, IncrementalFeatures, load_feature_set
from moola.runtime.brokers.base import OrderUnsure, SettlingBroker
from moola.runtime.config import LiveConfig
from moola.runtime.feed import BAR_FIELDS, FeedBar
from moola.runtime.members import Member

if TYPE_CHECKING:
    from moola.runtime.brokers import BrokerAdapter

__all__ = [
    "DecisionParts",
    "Engine",
    "ReconcileError",
    "SessionResult",
    "client_order_id",
]

#: The journal's state key of the kill switch (``moola live kill`` writes it).
KILL_SWITCH_KEY = "kill_switch"
#: The journal's state key of the engine's own state, one JSON value rebuilt on every
#: start: ``positions`` (symbol -> units), ``last_bars`` (symbol -> last bar decided),
#: ``rate`` (the rate limiter's buckets) and ``risk`` (the risk gate: loss limits, halt).
ENGINE_STATE_KEY = "engine"
_QTY_EPS = 1e-9
#: Intent statuses the broker may hold without the journal having its answer.
IN_FLIGHT = ("pending", "sent")
#: Decision actions that refuse an order (each also recorded as an event of that kind).
REFUSALS = ("killed", "refused_bar", "denied", "rate_limited")
#: The journal's state keys for the halt (``moola live status`` reports them).
HALT_KEY = "halt"
#: The detail of an intent that reconciliation expired: recorded, never sent before a
#: restart (a paper book being rebuilt does not place it).
EXPIRED_DETAIL = "recorded but not sent before a restart; expired"
#: Intent statuses of an order a live broker may still hold: each bar the engine asks a
#: broker with ``order_status`` what became of them and journals a final state (filled,
#: cancelled, expired with what filled and the broker's reason, rejected).
WORKING = ("sent", "acknowledged", "partially_filled")


class ReconcileError(MoolaError):
    """The journal and the broker disagree on a restart: the engine refuses to trade."""


def client_order_id(session_id: str, symbol: str, bar_time: Any, decision: Mapping) -> str:
    """The deterministic client order id of a decision: a hash of the session, the symbol,
    the bar time and the decision (signal, side, quantity), 32 hex characters."""
    key = sha256_json(
        {
            "session": session_id,
            "symbol": symbol,
            "bar_time": pd.Timestamp(bar_time).isoformat(),
            "decision": dict(decision),
        }
    )
    return "moola-" + key.removeprefix("sha256:")[:32]


@dataclass
class DecisionParts:
    """The decision parts one session uses, built from ``moola.runtime``'s modules by
    ``from_config`` (tests may pass others with the same methods).

    ``combine(outputs, weights) -> EnsembleResult`` (``moola.runtime.ensemble``);
    ``tier_of(confidence) -> str | None`` (``tiers``, with the config's thresholds);
    ``limiter``: a ``RateLimiter``; ``kill``: a ``KillSwitch``; ``risk``: a ``RiskGate``
    (the backtest's own rule objects); ``size(equity, price, atr, buying_power=None) ->
    units`` (``sizing.position_size`` with the config's risk settings, capped at what
    ``buying_power`` pays for, with a live buy's cost allowance: ``_buy_cost_rate``).
    """

    combine: Callable[..., Any]
    tier_of: Callable[[float], str | None]
    limiter: Any
    kill: Any
    risk: Any
    size: Callable[[float, float, float], float]

    @classmethod
    def from_config(
        cls, config: LiveConfig, state: Mapping[str, Any] | None = None
    ) -> DecisionParts:
        """The real parts for ``config``, rate-limit and risk state restored from ``state``
        (the journal's value under ``ENGINE_STATE_KEY``). A state that cannot be read is a
        ``ConfigError``: the engine refuses to trade rather than start with full buckets or
        without its halt."""
        from moola.runtime import ensemble, killswitch, ratelimit, risk, sizing, tiers

        state = state or {}
        limits = config.rate_limits.limits()
        if state.get("rate"):
            limiter = ratelimit.RateLimiter.from_state(state["rate"], limits)
        else:
            limiter = ratelimit.RateLimiter(limits)
        gate = risk.RiskGate(
            config.execution,
            max_position=config.risk.max_position,
            max_open_positions=config.risk.max_open_positions,
            risk_per_trade=config.risk.risk_per_trade,
            daily_loss=config.risk.daily_loss,
            total_loss=config.risk.total_loss,
        )
        if state.get("risk"):
            gate.load_state(state["risk"])
        table = config.tiers.as_tuple()

        def size(
            equity: float, price: float, atr: float, buying_power: float | None = None
        ) -> float:
            return float(
                sizing.position_size(
                    equity,
                    price,
                    atr,
                    risk_per_trade=config.risk.risk_per_trade,
                    atr_multiple=config.risk.atr_multiple,
                    max_position=config.risk.max_position,
                    buying_power=buying_power,
                    cost_rate=_buy_cost_rate(config),
                ).units
            )

        return cls(
            combine=ensemble.combine,
            tier_of=lambda confidence: tiers.tier_of(confidence, table),
            limiter=limiter,
            kill=killswitch.KillSwitch(),
            risk=gate,
            size=size,
        )


@dataclass
class SessionResult:
    """What a session did: bars seen and decided, intents sent, refusals by kind, and why
    it stopped."""

    session_id: str
    bars: int = 0
    decided: int = 0
    signals: int = 0
    intents: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    stopped: str = "feed ended"


class Engine:
    """The decision loop of one session (module docstring).

    Parameters
    ----------
    config : LiveConfig
    journal : LiveJournal
        Where every step is written before anything acts on it.
    broker : BrokerAdapter
        Paper or real; a paper broker (with ``on_bar``) is advanced by the engine.
    members : sequence of Member
        The loaded ensemble members (``load_members``).
    feed : ReplayFeed or PollingFeed (or any iterable of ``FeedBar``)
        A feed with ``groups()`` hands over each bar time's bars together (decided as one
        group, one transaction); any other iterable is taken one bar at a time.
    parts : DecisionParts, optional
        Default: ``DecisionParts.from_config(config, state)`` with the journal's state.
    feature_set : FeatureSet, optional
        Default: ``config.feature_set``.
    env : mapping, optional
        Where ``KILL_SWITCH`` is read (default ``os.environ``).
    on_bar : callable, optional
        Called after each bar with ``(done, total)`` (progress display).
    resume_book : bool, default True
        Rebuild positions, the last bar decided per symbol, the risk gate's loss history
        and the rate-limit buckets from the journal (a broker that outlives the process).
        False for a fresh paper broker, which may replay any period: its book, loss limits
        and buckets start anew, while the kill switch and a halt still carry over (a halt
        until a person unlocks it).
    notifier : WebhookNotifier, optional
        Told of signals sent, denials, halts and errors, always after the journal (a
        notifier never raises into the loop).
    """

    def __init__(
        self,
        config: LiveConfig,
        journal: Any,
        broker: BrokerAdapter,
        members: Sequence[Member],
        feed: Any,
        *,
        parts: DecisionParts | None = None,
        feature_set: FeatureSet | None = None,
        env: Mapping[str, str] | None = None,
        on_bar: Callable[[int, int], None] | None = None,
        resume_book: bool = True,
        notifier: Any = None,
    ) -> None:
        self.config = config
        self.resume_book = resume_book
        self.notifier = notifier
        self.journal = journal
        self.broker = broker
        self.members = tuple(members)
        self.feed = feed
        self.parts = parts
        self.feature_set = feature_set or load_feature_set(config.feature_set)
        self.env = os.environ if env is None else env
        self.on_bar = on_bar
        self.session_id: str | None = None
        self._working: dict[str, str] = {}  # client order id -> symbol, asked each bar
        self._unsent: dict[str, str] = {}  # the group's intents not sent yet -> symbol
        self._flattening: set[str] = set()  # the kill switch's flatten orders: not cancelled
        self._stopped: str | None = None  # a resumed session's loop had stopped: why

    # ------------------------------------------------------------------ start

    def start(self, session_id: str | None = None) -> str:
        """Open (or resume, with ``session_id``) a session: rebuild state from the journal,
        reconcile with the broker. Raises ``ReconcileError`` (recorded) when they disagree.

        Resuming (``session_id`` and ``resume_book``): the session must be open and of this
        config (``ConfigError`` otherwise); the engine state is the one its last bar saved,
        and a paper broker (one with ``on_bar``, fresh) gets its book back by replaying the
        session's journaled bars and orders (``_rebuild_paper_book``), so the session goes
        on where it was killed; one whose loop had already stopped for the kill switch (its
        last decision ``killed``: the crash came before its row was closed) decides no more
        bars and ends with that stop's reason, as it would have ended."""
        journal = self.journal
        record = None
        if session_id is not None and self.resume_book:
            record = self._resumable(session_id)
        state = dict(journal.get_state(ENGINE_STATE_KEY) or {})
        self.carried_halt: str | None = None
        if record is not None and record.iterations:
            self._check_state_is_the_sessions(record, state)
        if not self.resume_book or (record is not None and not record.iterations):
            halt = journal.get_state(HALT_KEY)
            if isinstance(halt, Mapping) and halt.get("on"):
                self.carried_halt = str(halt.get("reason") or "halted")
            state.update(positions=None, last_bars=None, risk=None, rate=None)
        if self.parts is None:
            self.parts = DecisionParts.from_config(self.config, state)
        if session_id is None:
            session_id = journal.start_session(
                self.config.mode, self.config.resolved(), self.config.config_hash
            )
            for member in self.members:  # what loading could not check, once a session
                if getattr(member, "note", ""):
                    journal.record_event(
                        session_id,
                        "member_note",
                        {"member": member.name, "run_id": member.run_id, "note": member.note},
                    )
        self.session_id = session_id
        crash_point("engine.session_started")
        self.positions: dict[str, float] = {
            s: float((state.get("positions") or {}).get(s, 0.0)) for s in self.config.symbols
        }
        self.last_bars: dict[str, pd.Timestamp] = {
            s: pd.Timestamp(t) for s, t in (state.get("last_bars") or {}).items()
        }
        self._features = {s: IncrementalFeatures(self.feature_set) for s in self.config.symbols}
        depth = max([m.bars_needed for m in self.members] + [self.config.risk.atr_period * 4, 2])
        rows = max([m.rows_needed for m in self.members] + [1])
        self._bars = {s: deque(maxlen=depth) for s in self.config.symbols}
        self._rows = {s: deque(maxlen=rows) for s in self.config.symbols}
        self._prices: dict[str, float] = {}
        self._queued = _BarWrites()
        self._atr = create_feature("atr", period=self.config.risk.atr_period)
        if record is not None and hasattr(self.broker, "on_bar"):
            self._rebuild_paper_book(record)
        self._stopped = _stopped_by(record)
        if record is not None:  # a kill switch's flatten orders placed before the restart
            self._flattening = {
                intent.client_order_id
                for it in record.iterations
                if it.decision is not None and it.decision.action == "flatten"
                for intent in it.intents
            }
        self._reconcile()
        self._working = self._working_orders()
        crash_point("engine.reconciled")
        return session_id

    def _resumable(self, session_id: str) -> Any:
        """The journal's record of ``session_id`` when this engine may resume it: open, of
        this mode and config. ``ConfigError`` naming what differs otherwise (or that the
        journal has no such session)."""
        from moola.tracking.livedb import UnknownSession

        try:
            record = self.journal.session_record(session_id)
        except UnknownSession as exc:
            raise ConfigError(
                f"session {session_id!r} can not be resumed: {exc}", param="session"
            ) from None
        info = record.session
        if info.ended_at is not None:
            raise ConfigError(
                f"session {session_id} ended at {info.ended_at.isoformat()} "
                f"({info.end_reason}): an ended session is not resumed; start a new one.",
                param="session",
            )
        if info.mode != self.config.mode:
            raise ConfigError(
                f"session {session_id} is a {info.mode} session; this config is "
                f"{self.config.mode}: resume it in its own mode.",
                param="session",
            )
        if info.config_hash != self.config.config_hash:
            raise ConfigError(
                f"session {session_id} was started with another config ({info.config_hash}, "
                f"this one is {self.config.config_hash}): resume it with the config it "
                "recorded (`moola live status` lists sessions) or start a new session.",
                param="session",
            )
        return record

    @staticmethod
    def _check_state_is_the_sessions(record: Any, state: Mapping[str, Any]) -> None:
        """The journal keeps one engine state; resuming a session needs it to be the one
        the session's last bar saved (it is written in that bar's transaction). Another
        session's state (one ran on this journal since) -> ``ReconcileError``."""
        last: dict[str, pd.Timestamp] = {}
        for it in record.iterations:
            when = pd.Timestamp(it.bar_time)
            last[it.symbol] = max(last.get(it.symbol, when), when)
        saved = {s: pd.Timestamp(t) for s, t in (state.get("last_bars") or {}).items()}
        if saved != last:
            raise ReconcileError(
                f"The journal's engine state is not session {record.session.id}'s (its last "
                f"bars {sorted((s, t.isoformat()) for s, t in saved.items())}, the session's "
                f"{sorted((s, t.isoformat()) for s, t in last.items())}): another session ran "
                "on this journal since; the session can not be resumed, start a new one."
            )

    def _rebuild_paper_book(self, record: Any) -> None:
        """Give a fresh paper broker the book the session had: replay its journaled bars
        in the order they were recorded, each bar's orders placed right after it as the
        loop placed them (the ones the journal still holds as pending too: they died with
        the book before their ack was journaled, and are acknowledged now, once), and the
        orders a kill switch or halt cancelled withdrawn at the bar they were. The fills
        this gives must be the journal's, each one, or the engine refuses to trade."""
        from moola.runtime.brokers import OrderIntent
        from moola.sim import Bar

        broker = self.broker
        if broker.fills() or any(abs(q) > _QTY_EPS for q in broker.positions().values()):
            raise ReconcileError(
                "A paper session is resumed on a fresh paper broker: this one already holds "
                "fills or positions."
            )
        cancelled = sorted(
            (i for i in record.intents if i.status == "cancelled" and i.detail != EXPIRED_DETAIL),
            key=lambda i: i.updated_at,
        )
        due = 0
        replayed: list[Any] = []
        acks: list[tuple[Any, Any]] = []
        for it in record.iterations:
            bar = dict(it.bar)
            bar["timestamp"] = pd.Timestamp(bar["timestamp"])
            replayed += broker.on_bar(it.symbol, Bar(*(bar[name] for name in BAR_FIELDS)))
            while due < len(cancelled) and cancelled[due].updated_at <= it.recorded_at:
                broker.cancel(cancelled[due].client_order_id)  # at the bar it was cancelled
                due += 1
            for intent in it.intents:
                if intent.status == "cancelled" and intent.detail == EXPIRED_DETAIL:
                    continue  # never sent before a restart
                order = OrderIntent(
                    client_order_id=intent.client_order_id,
                    symbol=intent.symbol,
                    side=intent.side,
                    qty=intent.qty,
                    order_type=intent.order_type,
                    limit_price=intent.limit_price,
                    decided_at=bar["timestamp"],
                )
                try:
                    ack: Any = broker.submit(order)
                except BrokerError as exc:
                    ack = exc
                if intent.status in IN_FLIGHT:
                    acks.append((intent, ack))
        for intent in cancelled[due:]:  # cancelled at a bar whose record the crash lost
            broker.cancel(intent.client_order_id)
        journaled = {f.fill_id: (f.client_order_id, f.qty, f.price, f.fee) for f in record.fills}
        rebuilt = {
            f.fill_id: (f.client_order_id, float(f.qty), float(f.price), float(f.fee))
            for f in replayed
        }
        if rebuilt != journaled:
            differ = sorted(set(rebuilt) ^ set(journaled)) or sorted(
                k for k in rebuilt if rebuilt[k] != journaled[k]
            )
            raise ReconcileError(
                f"The paper book rebuilt from session {record.session.id}'s journal does not "
                f"give its fills (differing: {differ[:5]}): the engine will not trade; start "
                "a new session."
            )
        for intent, ack in acks:  # journaled once, as the loop would have after submit
            coid = intent.client_order_id
            if isinstance(ack, BrokerError):
                self.journal.mark_intent(coid, "rejected", detail=str(ack))
            else:
                status = "acknowledged" if ack.accepted else "rejected"
                self.journal.mark_intent(coid, status, ack.broker_order_id or None, ack.detail)

    def _reconcile(self) -> None:
        """Refuse to trade when the broker holds what the journal does not account for."""
        problems = []
        held = self.broker.positions()
        for symbol in sorted(set(held) | set(self.positions)):
            expected, actual = self.positions.get(symbol, 0.0), float(held.get(symbol, 0.0))
            if abs(expected - actual) > _QTY_EPS:
                problems.append(
                    f"position {symbol}: the journal expects {expected:g}, the broker holds "
                    f"{actual:g}"
                )
        open_orders = self.broker.open_orders()
        for intent in open_orders:
            status = self.journal.intent_status(intent.client_order_id)
            if status is None:
                problems.append(
                    f"open order {intent.client_order_id} ({intent.side} {intent.qty:g} "
                    f"{intent.symbol}) at the broker is not in the journal"
                )
        pending_intents = self.journal.pending_intents(None)
        known: set[str] = set()
        if pending_intents and isinstance(self.broker, SettlingBroker):
            known = {  # one question per pending order, not the account's whole history
                p["client_order_id"]
                for p in pending_intents
                if self.broker.order_status(p["client_order_id"]) is not None
            }
        elif pending_intents:
            known = {o.client_order_id for o in open_orders} | {
                f.client_order_id for f in self.broker.fills()
            }
        for pending in pending_intents:
            coid = pending["client_order_id"]
            if coid in known:
                self.journal.mark_intent(coid, "sent", detail="found at the broker on restart")
            else:  # recorded, never sent before the crash: its bar has passed, never send it
                self.journal.mark_intent(coid, "cancelled", detail=EXPIRED_DETAIL)
        if problems:
            reason = "; ".join(problems)
            self.journal.record_event(self.session_id, "reconcile_failed", {"reason": reason})
            raise ReconcileError(
                f"The journal and the broker disagree, so the engine will not trade: {reason}. "
                "Resolve it at the broker (or in the journal) and start again."
            )

    def _working_orders(self) -> dict[str, str]:
        """The journal's intents a broker with ``order_status`` may still hold (``WORKING``,
        of any session: an order acknowledged just before a restart is settled after it),
        client order id -> symbol. Empty for a broker that reports fills itself (paper)."""
        if not callable(getattr(self.broker, "order_status", None)):
            return {}
        working = self.journal.intents_by_status(WORKING)  # indexed: not every decision
        return {row["client_order_id"]: row["symbol"] for row in working}

    def _settle_orders(self) -> list[Any]:
        """Ask the broker what became of each working order; returns the fills of the
        final ones the journal does not hold yet (the bar journals them with its step),
        read per order (``order_fills``) where the broker offers it.

        A final order's status is queued for the bar's transaction, written there after
        its fills (which mark it filled), so no crash keeps one without the other: an
        order the exchange cancelled or expired (an immediate-or-cancel buy whose limit
        was below the ask) ends ``cancelled`` / ``expired`` with the units it filled and
        the exchange's reason, a partial fill keeping its fill; so it is not left
        "acknowledged" (open exposure, reconciled as working) and, its id being
        journaled, never sent again. A broker that cannot answer now is recorded and
        asked again at the next bar."""
        fills: list[Any] = []
        broker_fills: list[Any] | None = None
        order_fills = getattr(self.broker, "order_fills", None)  # a SettlingBroker
        for coid in list(self._working):
            try:
                status = self.broker.order_status(coid)  # type: ignore[attr-defined]
            except BrokerError as exc:
                self.journal.record_event(
                    self.session_id, "broker_error", {"client_order_id": coid, "reason": str(exc)}
                )
                continue
            if status is None or not status.final:
                continue
            if status.filled_qty > _QTY_EPS:
                if callable(order_fills):  # that order's fills only, not the account's
                    its = list(order_fills(coid))
                else:
                    if broker_fills is None:
                        broker_fills = self.broker.fills()
                    its = broker_fills
                known = {f["fill_id"] for f in self.journal.fills(coid)}
                fills += [f for f in its if f.client_order_id == coid and f.fill_id not in known]
            detail = (
                f"{status.state} at the broker: filled {status.filled_qty:g} of "
                f"{status.qty:g}" + (f"; {status.reason}" if status.reason else "")
            )
            self._queued.marks.append((coid, status.state, detail))
            del self._working[coid]
        return fills

    # ------------------------------------------------------------------ loop

    def run(self, max_bars: int | None = None) -> SessionResult:
        """Process the feed's bars (at most ``max_bars`` new ones) and end the session."""
        if max_bars is not None and max_bars <= 0:
            raise ConfigError(f"max_bars must be positive; got {max_bars}.", param="max_bars")
        if self.session_id is None:
            self.start()
        assert self.session_id is not None
        result = SessionResult(self.session_id)
        total = len(self.feed) if hasattr(self.feed, "__len__") else 0
        if max_bars is not None and total:
            total = min(total, max_bars)
        stopped = "feed ended"
        try:
            # a resumed session whose loop had already stopped (the crash came before its
            # row was closed) decides nothing more: it ends as it would have ended
            for group in () if self._stopped else self._groups():
                if max_bars is not None:
                    group = self._up_to(group, max_bars - result.decided)
                result.bars += len(group)
                stop = self.step_group(group, result)
                if self.on_bar is not None:
                    for done in range(result.bars - len(group) + 1, result.bars + 1):
                        self.on_bar(done, total)
                if stop:
                    stopped = stop
                    break
                if max_bars is not None and result.decided >= max_bars:
                    stopped = f"max_bars {max_bars} reached"
                    break
            else:  # the feed ended by itself: a polled feed says why (Ctrl-C, kill switch)
                reason = getattr(self.feed, "stop_reason", None)
                if self._stopped:
                    stopped = self._stopped
                elif reason:
                    stopped = f"feed stopped: {reason}"
                    if reason.startswith("kill switch"):
                        self._cancel_open_orders(reason)
        except JournalError as exc:
            stopped = f"journal error: {exc}"
            result.stopped = stopped
            if self.notifier is not None:  # the journal cannot hold it: told, then raised
                self.notifier.error(f"trading stopped, nothing more is sent: {stopped}")
            raise
        result.stopped = stopped
        crash_point("engine.session_ending")
        self.journal.end_session(self.session_id, stopped)
        crash_point("engine.session_ended")
        return result

    def _groups(self) -> Iterator[Sequence[FeedBar]]:
        """The feed's bars as groups of one bar time (its ``groups()``: a ``ReplayFeed`` or
        ``PollingFeed``); any other iterable of ``FeedBar`` one bar at a time, since
        grouping it would mean waiting for its next bar."""
        groups = getattr(self.feed, "groups", None)
        if callable(groups):
            return iter(groups())
        return ([fb] for fb in self.feed)

    def _up_to(self, group: Sequence[FeedBar], decide: int) -> list[FeedBar]:
        """The bars of ``group`` up to the ``decide``-th that is decided (a bar decided
        before a restart only warms up): ``max_bars`` is kept within a group too."""
        out: list[FeedBar] = []
        for fb in group:
            if decide <= 0:
                break
            out.append(fb)
            last = self.last_bars.get(fb.symbol)
            if last is None or fb.time > last:
                decide -= 1
        return out

    def step(self, fb: FeedBar, result: SessionResult | None = None) -> str | None:
        """One closed bar (module docstring): a group of one. Returns why the loop must
        stop, or None."""
        return self.step_group([fb], result)

    def step_group(
        self, group: Sequence[FeedBar], result: SessionResult | None = None
    ) -> str | None:
        """The closed bars of one bar time, one per symbol (module docstring): each decided
        in turn as ``step`` decides a bar (broker advance, then decision), all journaled in
        ONE transaction, then the group's intents sent. Returns why the loop must stop, or
        None; a stop (the kill switch) ends the group at the bar that saw it."""
        assert self.session_id is not None and self.parts is not None
        result = result or SessionResult(self.session_id)
        self._unsent = {}
        steps: list[_Step] = []
        stop = None
        for fb in group:
            decided = self._decide_bar(fb, result)
            if decided is None:
                continue
            steps.append(decided)
            if decided.stop:
                stop = decided.stop
                break
        if not steps:
            return None
        crash_point("engine.group_decided")
        # Every bar's fills, marks and positions, iteration, member outputs, decision and
        # intents, a refusal's event, and the engine state saying these bars are decided
        # (with the rate limiter's spend): ONE durable transaction, before anything acts on
        # it, so a restart can never find a decision without the state (it would decide
        # the bar again) nor the state without the decision, nor a fill without its
        # position or its order's final status, nor one symbol's bar of the group without
        # the others'.
        self.journal.record_steps(
            self.session_id,
            [step.record() for step in steps],
            state={ENGINE_STATE_KEY: self._state()},
        )
        crash_point("engine.step_recorded")
        for step in steps:
            action = step.decision["action"]
            if action in REFUSALS:
                result.refused[action] = result.refused.get(action, 0) + 1
                if self.notifier is not None:
                    if action == "killed":
                        self.notifier.halt("; ".join(step.decision["reasons"]))
                    else:
                        self.notifier.denial(
                            symbol=step.fb.symbol,
                            reasons=step.decision["reasons"],
                            side=step.decision.get("side"),
                        )
        crash_point("engine.state_saved")
        result.decided += len(steps)
        first = True
        acks: list[dict[str, Any]] = []
        sent: list[tuple[_Step, dict[str, Any]]] = []
        for step in steps:
            for intent in step.intents:
                if self._unsent.pop(intent["client_order_id"], None) is None:
                    continue  # withdrawn in the group (kill switch, halt): never sent
                if not first:
                    crash_point("engine.group_next_submit")
                first = False
                crash_point("engine.before_submit")
                if self._submit(intent, step.fb.time, result, acks):
                    sent.append((step, intent))
        if acks:
            # the group's acks: ONE durable commit after all its submits (a crash before it
            # leaves them sent without their ack, which a restart settles from the broker)
            self.journal.mark_intents(acks)
            crash_point("engine.ack_journaled")
        if self.notifier is not None:
            for step, intent in sent:  # after the journal holds the acks
                self.notifier.signal(
                    symbol=step.fb.symbol,
                    side=intent["side"],
                    tier=step.decision["tier"] or step.decision["action"],
                    probability=step.decision["probability"] or 0.5,
                    qty=intent["qty"],
                    price=float(step.fb.bar["close"]),
                    bar_time=step.fb.time.isoformat(),
                )
        return stop

    def _decide_bar(self, fb: FeedBar, result: SessionResult) -> _Step | None:
        """Features, broker advance and decision of one bar, nothing journaled yet (the
        group's ``record_steps`` does); None for a bar decided before a restart (it only
        warms up)."""
        assert self.session_id is not None
        symbol, bar, time = fb.symbol, fb.bar, fb.time
        self._bars[symbol].append(bar)
        row = self._features[symbol].update({**bar, "symbol": symbol})
        self._rows[symbol].append(row)
        self._prices[symbol] = float(bar["close"])
        last = self.last_bars.get(symbol)
        if last is not None and time <= last:
            self._warm_members(symbol)  # decided before a restart: it only warms up
            return None
        crash_point("engine.bar_received")
        self._queued = _BarWrites()
        self._advance_broker(symbol, bar, fb.closed_at)
        outputs, decision, order, stop = self._decide(fb, result)
        crash_point("engine.decided")
        intents = []
        if order is not None:
            side, qty = order
            coid = client_order_id(
                self.session_id,
                symbol,
                time,
                {"signal": decision["signal"], "side": side, "qty": qty},
            )
            if self.journal.intent_status(coid) is None:  # never recorded or sent twice
                intents.append(_intent_record(coid, symbol, side, qty))
                self._unsent[coid] = symbol
                if decision["action"] == "flatten" and stop is None:
                    self._flattening.add(coid)  # a kill switch's cancel keeps it
        self.last_bars[symbol] = time
        queued = self._queued
        if decision["action"] in REFUSALS:
            queued.events.append(
                (
                    decision["action"],
                    {"decision_id": None, "symbol": symbol, "reasons": decision["reasons"]},
                )
            )
        return _Step(fb, feature_hash(row), outputs, decision, intents, queued, stop)

    def _warm_members(self, symbol: str) -> None:
        """A bar decided before a restart: members that keep a state of their own bar by
        bar (``warm``: an RL policy's window and book) see it as they did then."""
        warming = [m for m in self.members if callable(getattr(m, "warm", None))]
        if warming:
            bars = pd.DataFrame(list(self._bars[symbol]))
            for member in warming:
                member.warm(symbol, bars)

    def _advance_broker(self, symbol: str, bar: Mapping[str, Any], closed_at: Any) -> None:
        """Paper: fill what is due at this bar; journal fills and positions; mark the risk
        gate (a new breach is journaled as a halt)."""
        parts = self.parts
        assert parts is not None
        fills = []
        on_bar = getattr(self.broker, "on_bar", None)
        if on_bar is not None:
            from moola.sim import Bar

            fills = on_bar(symbol, Bar(*(bar[name] for name in BAR_FIELDS)))
        elif self._working:
            fills = self._settle_orders()
        for fill in fills:
            crash_point("engine.fill_before_journal")
            self._journal_fill(fill)
        if fills:
            crash_point("engine.fill_state_saved")
        equity = float(self.broker.balances().get("equity", 0.0))
        was = parts.risk.halted
        parts.risk.update(closed_at, equity, fills)
        crash_point("engine.risk_marked")
        if parts.risk.halted and not was:
            reason = str(parts.risk.halted)
            self.journal.record_event(self.session_id, "halt", {"reason": reason})
            self.journal.set_state(HALT_KEY, {"on": True, "reason": reason})
            if self.notifier is not None:
                self.notifier.halt(reason)
            self._cancel_open_orders(f"halted: {reason}")

    def _cancel_open_orders(self, why: str, keep: Collection[str] = ()) -> None:
        """Cancel every open order at the broker (but those in ``keep``: the kill switch's
        flatten orders) and mark its intent cancelled in the journal, so the journal never
        shows as working an order that will not fill. An intent an earlier bar of this
        group decided is not at the broker yet: it is withdrawn (never sent) and marked
        cancelled in the group's transaction."""
        for intent in self.broker.open_orders():
            coid = intent.client_order_id
            if coid in keep:
                continue
            if self.broker.cancel(coid) and self.journal.intent_status(coid) is not None:
                self.journal.mark_intent(coid, "cancelled", detail=why)
                self._working.pop(coid, None)
        for coid in list(self._unsent):
            if coid in keep:
                continue
            del self._unsent[coid]
            self._queued.marks.append((coid, "cancelled", why))

    def _journal_fill(self, fill: Any) -> None:
        """Queue a fill (its intent marked filled) and the position snapshot after it for
        the group's one transaction (``record_steps``): journaled with the decision
        they inform, all or nothing, and before anything is sent."""
        self._queued.fills.append(_fill_record(fill) | {"client_order_id": fill.client_order_id})
        crash_point("engine.fill_journaled")
        self.positions[fill.symbol] = self.positions.get(fill.symbol, 0.0) + float(fill.qty)
        if abs(self.positions[fill.symbol]) <= _QTY_EPS:
            self.positions[fill.symbol] = 0.0
        crash_point("engine.fill_marked")
        balances = self.broker.balances()
        self._queued.positions.append(
            {
                "symbol": fill.symbol,
                "qty": self.positions[fill.symbol],
                "avg_price": float(fill.price),
                "equity": float(balances.get("equity", 0.0)),
                "cash": float(sum(v for k, v in balances.items() if k != "equity")),
                "at": pd.Timestamp(fill.time).isoformat(),
            }
        )
        crash_point("engine.position_recorded")

    def _decide(
        self, fb: FeedBar, result: SessionResult
    ) -> tuple[list[dict[str, Any]], dict[str, Any], tuple[str, float] | None, str | None]:
        """Members -> ensemble -> tier -> order -> kill switch, feed check, risk, rate
        limits: (member outputs, decision, order (side, qty) or None, why to stop or None).
        Nothing is written here; ``step`` journals it all at once."""
        parts = self.parts
        assert parts is not None
        from moola.runtime.ensemble import MemberOutput

        symbol, time = fb.symbol, fb.time
        bars = pd.DataFrame(list(self._bars[symbol]))
        reads_rows = any(m.rows_needed for m in self.members)
        rows = pd.DataFrame(list(self._rows[symbol])) if reads_rows else None
        answers = [
            MemberOutput(m.name, m.run_id, m.value(symbol, bars, rows), False) for m in self.members
        ]
        outputs = [
            {"member": m.name, "run_id": m.run_id, "value": o.value, "stale": o.stale}
            | {"weight": m.weight}
            for m, o in zip(self.members, answers, strict=True)
        ]
        ensemble = parts.combine(answers, self.config.weights)
        probability = ensemble.probability
        decision: dict[str, Any] = {
            "probability": probability,
            "calibrated": probability if self.config.calibration else None,
            "tier": None,
            "signal": 0,
            "action": "none",
            "reasons": [],
            "weights_used": ensemble.weights_used,
            "missing": list(ensemble.missing),
        }
        if ensemble.missing:  # why each is missing, in the member's words where it has them
            decision["missing_reasons"] = self._missing_reasons(symbol, ensemble)
        reasons = decision["reasons"]
        if fb.refused:  # recorded with the decision, whatever it is
            reasons.append(fb.refused)
        if parts.risk.halted or self.carried_halt:
            self._follow_unlock()
        kill = parts.kill.is_on(self.env, self.journal.get_state(KILL_SWITCH_KEY))
        if kill.on and self.config.kill_switch.flatten:
            why = f"kill switch on ({kill.source}): {kill.reason}"
            order, stop = self._flatten_on_kill(symbol, why, decision)
            return outputs, decision, order, stop
        if kill.on:
            why = f"kill switch on ({kill.source}): {kill.reason}"
            self._cancel_open_orders(why)
            reasons.append(why)
            decision["action"] = "killed"
            return outputs, decision, None, why
        held = self.positions.get(symbol, 0.0)
        working = self._working_order(symbol)
        if parts.risk.halted and parts.risk.flatten_requested and abs(held) > _QTY_EPS:
            if working is not None:  # its fills move the position: flattened once it ends
                decision["action"] = "hold"
                reasons.append(f"halted: {parts.risk.halted}")
                reasons.append(f"an order is working for {symbol}: {working}")
                return outputs, decision, None, None
            decision["action"] = "flatten"
            reasons.append(f"halted: {parts.risk.halted}")
            return outputs, decision, ("sell" if held > 0 else "buy", abs(held)), None
        if self.carried_halt and parts.risk.halted is None:  # a fresh book, still halted
            reasons.append(
                f"halted: {self.carried_halt}; a person must unlock it before trading goes on"
            )
            if probability is None:
                return outputs, decision, None, None
        if probability is None:
            reasons.append("no member has a value (warm-up or all missing)")
            return outputs, decision, None, None
        tier = parts.tier_of(max(probability, 1.0 - probability))
        decision["tier"] = tier
        if tier is None:
            reasons.append("confidence below the lowest tier")
            return outputs, decision, None, None
        decision["signal"] = signal = 1 if probability >= 0.5 else -1
        result.signals += 1
        order = self._order_for(symbol, signal, bars)
        if order is None:
            decision["action"] = "hold"
            reasons.append("no order: already at the signal's target position")
            return outputs, decision, None, None
        if working is not None:  # not settled yet (or unsure): nothing bought twice
            decision["action"] = "hold"
            reasons.append(f"an order is working for {symbol}: {working}")
            return outputs, decision, None, None
        side, qty, stop_distance = order
        decision.update(side=side, qty=qty)
        if fb.refused:
            decision["action"] = "refused_bar"
            return outputs, decision, None, None
        intent = self._intent("risk-check", symbol, side, qty, time)
        account = self._account(symbol, time)
        denied = list(parts.risk.check(intent, account, stop_distance=stop_distance))
        if self.carried_halt and not denied:
            denied = [r for r in reasons if r.startswith("halted: ")]
        if denied:
            decision["action"] = "denied"
            reasons.extend(denied)
            return outputs, decision, None, None
        allowed, why = parts.limiter.allow(tier, time)
        if not allowed:
            decision["action"] = "rate_limited"
            reasons.append(why)
            return outputs, decision, None, None
        decision["action"] = "order"
        return outputs, decision, (side, qty), None

    def _flatten_on_kill(
        self, symbol: str, why: str, decision: dict[str, Any]
    ) -> tuple[tuple[str, float] | None, str | None]:
        """The kill switch is on and ``kill_switch.flatten`` set: (order, why to stop).

        Open orders are cancelled (the kill switch's own flatten orders kept), then a held
        ``symbol`` with no order working is closed by a market order (``flatten``, its
        reason naming the kill switch), journaled with the bar before it is sent; the risk
        gate and rate limits do not judge it (closing only lowers risk). A symbol whose
        flatten order is still working holds. The loop stops (``killed``) once nothing is
        held and no order is open or working."""
        reasons = decision["reasons"]
        reasons.append(why)
        self._cancel_open_orders(why, keep=self._flattening)
        open_symbols = {o.symbol for o in self.broker.open_orders()}
        held = self.positions.get(symbol, 0.0)
        working = self._working_order(symbol)
        if abs(held) > _QTY_EPS and working is None and symbol not in open_symbols:
            decision["action"] = "flatten"
            reasons.append(f"kill switch flattens {symbol}: closing {held:g} units")
            return ("sell" if held > 0 else "buy", abs(held)), None
        still = sorted(
            {s for s, q in self.positions.items() if abs(q) > _QTY_EPS}
            | open_symbols
            | set(self._working.values())
        )
        if not still:
            decision["action"] = "killed"
            reasons.append("kill switch flattened every position")
            return None, why
        decision["action"] = "hold"
        reasons.append(f"kill switch flattening: waiting for {', '.join(still)} to close")
        return None, None

    def flattens_on_kill(self) -> bool:
        """True when the kill switch flattens (``kill_switch.flatten``) and something is
        held or working: a polled feed turned off by the kill switch keeps handing bars
        over until the engine has closed every position (and stops the loop itself)."""
        if not self.config.kill_switch.flatten:
            return False
        held = any(abs(q) > _QTY_EPS for q in getattr(self, "positions", {}).values())
        return held or bool(self._working)

    def _working_order(self, symbol: str) -> str | None:
        """The client order id of an order still working for ``symbol`` at a broker that
        settles its orders (acknowledged and not final, or sent with its answer lost:
        ``OrderUnsure``), or None. While there is one, no new order is decided for the
        symbol: the position it will leave is not known yet, so a second buy could double
        it."""
        for coid, held_by in self._working.items():
            if held_by == symbol:
                return coid
        return None

    def _missing_reasons(self, symbol: str, ensemble: Any) -> dict[str, str]:
        """Member name -> why it gave the ensemble nothing for ``symbol``: the member's own
        ``missing_reason(symbol)`` where it has one (an RL policy trained on another symbol,
        its windows still filling), else the ensemble's reason (absent, stale, no value)."""
        members = {m.name: m for m in self.members}
        reasons: dict[str, str] = {}
        for name in ensemble.missing:
            explain = getattr(members.get(name), "missing_reason", None)
            why = explain(symbol) if callable(explain) else None
            reasons[name] = str(why or ensemble.reasons.get(name) or "missing")
        return reasons

    def _follow_unlock(self) -> None:
        """A person unlocked the halt (``unlock_halt``, maybe from another process, which
        clears the journal's halt): lift this engine's halt too, recording the same person
        and reason in its risk state."""
        halt = self.journal.get_state(HALT_KEY)
        if isinstance(halt, Mapping) and halt.get("on"):
            return
        unlocks = self.journal.events(kind="unlock")
        if not unlocks:
            return
        payload = unlocks[-1]["payload"]
        if self.parts is not None and self.parts.risk.halted:
            self.parts.risk.unlock(str(payload["person"]), str(payload["reason"]))
        self.carried_halt = None

    def _submit(
        self,
        record: Mapping[str, Any],
        time: Any,
        result: SessionResult,
        acks: list[dict[str, Any]],
    ) -> bool:
        """Hand a journaled intent to the broker; its ack is added to ``acks`` (journaled
        with the group's others in one transaction), a broker error journaled at once.
        True when the broker accepted it."""
        coid = record["client_order_id"]
        intent = self._intent(coid, record["symbol"], record["side"], record["qty"], time)
        try:
            ack = self.broker.submit(intent)
            crash_point("engine.submitted")
        except OrderUnsure as exc:  # it may be working or filled: asked about, never resent
            self.journal.mark_intent(coid, "sent", detail=str(exc))
            self.journal.record_event(
                self.session_id, "broker_error", {"client_order_id": coid, "reason": str(exc)}
            )
            if callable(getattr(self.broker, "order_status", None)):
                self._working[coid] = record["symbol"]  # settled by order_status next bar
            result.refused["broker_error"] = result.refused.get("broker_error", 0) + 1
            if self.notifier is not None:
                self.notifier.error(f"broker may hold {coid}: {exc}")
            return False
        except BrokerError as exc:
            self.journal.mark_intent(coid, "rejected", detail=str(exc))
            self.journal.record_event(
                self.session_id, "broker_error", {"client_order_id": coid, "reason": str(exc)}
            )
            result.refused["broker_error"] = result.refused.get("broker_error", 0) + 1
            if self.notifier is not None:
                self.notifier.error(f"broker refused {coid}: {exc}")
            return False
        status = "acknowledged" if ack.accepted else "rejected"
        acks.append(
            {
                "client_order_id": coid,
                "status": status,
                "broker_order_id": ack.broker_order_id or None,
                "detail": ack.detail,
            }
        )
        if ack.accepted and callable(getattr(self.broker, "order_status", None)):
            self._working[coid] = record["symbol"]  # asked what became of it each bar
        result.intents += 1
        return ack.accepted

    def _order_for(
        self, symbol: str, signal: int, bars: pd.DataFrame
    ) -> tuple[str, float, float] | None:
        """(side, qty, stop distance) taking ``symbol`` to the signal's target: a flat
        symbol buys the sized units on +1 (risk per trade over an ``atr_multiple`` ATR
        stop), a held one is closed on -1 (spot: no shorts); a long is not resized while
        the signal stays +1. None when there is nothing to do or no ATR yet."""
        assert self.parts is not None
        current = self.positions.get(symbol, 0.0)
        atr = self._current_atr(bars)
        if not (math.isfinite(atr) and atr > 0):
            return None
        stop_distance = self.config.risk.atr_multiple * atr
        if signal > 0 and abs(current) <= _QTY_EPS:
            equity = float(self.broker.balances().get("equity", 0.0))
            power = self._buying_power(symbol)
            units = self.parts.size(equity, self._prices[symbol], atr, power)
            return ("buy", float(units), stop_distance) if units > _QTY_EPS else None
        if signal < 0 and current > _QTY_EPS:
            return ("sell", float(current), stop_distance)
        return None

    def _buying_power(self, symbol: str) -> float | None:
        """What a buy of ``symbol`` may spend (``sizing.position_size``'s ``buying_power``):
        a paper sleeve's ``max_leverage * equity`` (the kernel's own limit: more would be
        cut), a spot account's quote balance available now (``available``: not the funds
        held for open orders; Coinbase refuses a buy it cannot pay for); None for a broker
        that says neither."""
        sleeves = getattr(self.broker, "brokers_", None)
        if isinstance(sleeves, Mapping) and symbol in sleeves:
            sleeve = sleeves[symbol]
            return float(sleeve.instrument.max_leverage * sleeve.portfolio.equity)
        quote = getattr(self.broker, "quote_currency", None)
        if quote is not None:
            available = getattr(self.broker, "available", None)
            if callable(available):
                return float(available(quote))
            return float(self.broker.balances().get(quote, 0.0))
        return None

    def _current_atr(self, bars: pd.DataFrame) -> float:
        """Wilder's ATR of a symbol's recent ``bars`` (``moola.features``' ``atr``)."""
        if len(bars) <= self.config.risk.atr_period:
            return float("nan")
        last = getattr(self._atr, "update_last", None)  # the last row, without a frame
        if last is not None:
            return float(last(bars)[0])
        return float(self._atr.compute(bars).to_numpy(dtype=np.float64)[-1, 0])

    def _intent(self, coid: str, symbol: str, side: str, qty: float, time: Any) -> Any:
        from moola.runtime.brokers import OrderIntent

        return OrderIntent(client_order_id=coid, symbol=symbol, side=side, qty=qty, decided_at=time)

    def _account(self, symbol: str, time: Any) -> Any:
        """The account as ``symbol``'s order sees it (``moola.runtime.risk.AccountState``)."""
        from moola.runtime.risk import AccountState

        balances = self.broker.balances()
        working = tuple(o.signed_qty for o in self.broker.open_orders() if o.symbol == symbol)
        others = sum(1 for s, q in self.positions.items() if s != symbol and abs(q) > _QTY_EPS)
        return AccountState(
            equity=float(balances.get("equity", 0.0)),
            price=self._prices[symbol],
            position=self.positions.get(symbol, 0.0),
            open_orders=working,
            other_open_positions=others,
            time=time,
        )

    def _state(self) -> dict[str, Any]:
        """The engine's state as the journal keeps it (``ENGINE_STATE_KEY``)."""
        parts = self.parts
        assert parts is not None
        return {
            "positions": self.positions,
            "last_bars": {s: t.isoformat() for s, t in self.last_bars.items()},
            "rate": parts.limiter.state(),
            "risk": parts.risk.state(),
        }


@dataclass
class _BarWrites:
    """What a bar adds to its group's transaction besides the decision: fills (each marks
    its intent filled), position snapshots, events (kind, payload) and intent status
    marks (client order id, status, detail; written after the fills: a broker's final
    answer, or an intent of the group withdrawn by a kill switch or halt)."""

    fills: list[dict[str, Any]] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    marks: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class _Step:
    """One bar decided in a group, waiting for the group's transaction."""

    fb: FeedBar
    feature_hash: str
    outputs: list[dict[str, Any]]
    decision: dict[str, Any]
    intents: list[dict[str, Any]]
    writes: _BarWrites
    stop: str | None

    def record(self) -> dict[str, Any]:
        """The step as ``LiveJournal.record_steps`` takes it."""
        writes = self.writes
        return {
            "symbol": self.fb.symbol,
            "bar_time": self.fb.time.isoformat(),
            "feature_hash": self.feature_hash,
            "bar": _bar_record(self.fb.bar),
            "outputs": self.outputs,
            "decision": self.decision,
            "intents": self.intents,
            "fills": writes.fills,
            "marks": [
                {"client_order_id": coid, "status": status, "detail": detail}
                for coid, status, detail in writes.marks
            ],
            "positions": writes.positions,
            "events": writes.events,
        }


def feature_hash(row: pd.Series) -> str:
    """SHA-256 of a feature row's values (NaN as null): what the journal records per bar."""
    return sha256_json([float(v) if math.isfinite(v) else None for v in row.tolist()])


def _intent_record(coid: str, symbol: str, side: str, qty: float) -> dict[str, Any]:
    return {
        "client_order_id": coid,
        "symbol": symbol,
        "side": side,
        "qty": qty,
        "order_type": "market",
        "limit_price": None,
    }


def _bar_record(bar: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (pd.Timestamp(v).isoformat() if k == "timestamp" else v) for k, v in bar.items()}


def _fill_record(fill: Any) -> dict[str, Any]:
    return {
        "fill_id": fill.fill_id,
        "symbol": fill.symbol,
        "qty": float(fill.qty),
        "price": float(fill.price),
        "fee": float(fill.fee),
        "time": pd.Timestamp(fill.time).isoformat(),
    }


def _stopped_by(record: Any) -> str | None:
    """Why a resumed session's loop had already stopped: its last journaled decision is
    the kill switch's stop (``killed``), whose reason naming the kill switch is the stop's
    (``run`` ends the session with it, deciding nothing more); None otherwise."""
    iterations = [] if record is None else [it for it in record.iterations if it.decision]
    if not iterations or iterations[-1].decision.action != "killed":
        return None
    reasons = iterations[-1].decision.reasons
    return next((r for r in reasons if r.startswith("kill switch on")), None)


def _buy_cost_rate(config: LiveConfig) -> float:
    """What a buy pays on top of ``qty * price``, as a fraction of it, for sizing within
    the buying power: live, the commission rate and the limit Coinbase's buy is sent at
    (``max_slippage_bps`` above the last price: the exchange holds that much); paper,
    nothing (the kernel's leverage limit counts the notional alone)."""
    if config.mode != "live":
        return 0.0
    commission = config.execution.commission
    rate = float(getattr(commission, "rate", 0.0) or 0.0)
    return (1.0 + config.coinbase.max_slippage_bps / 1e4) * (1.0 + rate) - 1.0
