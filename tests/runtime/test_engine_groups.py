"""Group commit (issue 18): the engine decides a bar time's symbols one after the other,
as it decides one bar, journals them all in one transaction, then sends their intents.

Deciding a group must change no decision, fill or equity: a session run in groups
(``ReplayFeed.groups``) and the same session fed one bar at a time (a plain iterator of
bars: groups of one) journal the same rows, but for times and ids. It holds because a
paper symbol trades in a sleeve of its own: an order sent later in the minute changes
neither the balances nor the open orders another symbol of the same minute reads. A kill
switch seen mid-group stops the group there, and an intent decided earlier in it is never
sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd
import pytest

from moola.runtime.brokers import PaperBroker
from moola.runtime.engine import Engine
from moola.runtime.feed import ReplayFeed
from moola.tracking.livedb import LiveJournal
from tests.runtime._lab import SYMBOLS, MinuteFlip, scripted_config, two_symbol_bars

RISK = {"max_position": 1000.0}
RATE = {"all_per_window": 1000, "high_per_window": 1000}


def _config(risk=None, rate=None):
    return scripted_config(risk=risk or RISK, rate_limits=rate or RATE)


def _bars(case: str) -> pd.DataFrame:
    bars = two_symbol_bars(150, 5)
    stamp = bars["timestamp"]
    if case == "gap":  # ETH has no bar at 00:50 and 00:51: BTC's are groups of one
        gone = (bars["symbol"] == "ETH") & stamp.dt.minute.isin([50, 51]) & (stamp.dt.hour == 0)
        bars = bars[~gone]
    if case == "halt":  # BTC falls 30% while held: a loss-limit halt, then flatten
        crash = (bars["symbol"] == "BTC") & (stamp >= pd.Timestamp("2024-01-01 00:35", tz="UTC"))
        crash &= stamp < pd.Timestamp("2024-01-01 01:05", tz="UTC")
        for column in ("open", "high", "low", "close"):
            bars.loc[crash, column] *= 0.7
    return bars.reset_index(drop=True)


CASES = {
    "orders": {},
    "gap": {},
    "rate_limited": {"rate": {"all_per_window": 3, "high_per_window": 3}},
    "halt": {"risk": {"max_position": 1000.0, "daily_loss": 0.02}},
}


def _run(path, case: str, *, grouped: bool):
    config = _config(**CASES[case])
    journal = LiveJournal(f"sqlite:///{path}")
    feed = ReplayFeed(_bars(case), config.symbols, "1m", config.staleness)
    broker = PaperBroker(config.execution, config.symbols)
    bars = feed if grouped else (fb for fb in feed)  # a plain iterator: one bar at a time
    engine = Engine(config, journal, broker, [MinuteFlip()], bars, env={})
    log = []
    submit = broker.submit
    broker.submit = lambda intent: log.append(intent.client_order_id) or submit(intent)
    record = journal.record_steps
    journal.record_steps = lambda s, steps, state=None: (
        log.append(len(steps)) or record(s, steps, state)
    )
    result = engine.run()
    return journal, result, log, broker


def _rows(journal: LiveJournal, session_id: str) -> dict:
    """The session's journal rows without ids, times of writing or client order ids (a
    hash of the session id)."""
    record = journal.session_record(session_id)
    iterations = [
        (
            it.symbol,
            it.bar_time,
            it.feature_hash,
            json.dumps(it.bar, sort_keys=True),
            [(m.member, m.value, m.stale, m.weight) for m in it.members],
            (
                it.decision.probability,
                it.decision.calibrated,
                it.decision.tier,
                it.decision.signal,
                it.decision.action,
                it.decision.reasons,
                json.dumps(it.decision.detail, sort_keys=True),
            ),
            [(i.symbol, i.side, i.qty, i.order_type, i.status, i.detail) for i in it.intents],
        )
        for it in record.iterations
    ]
    hidden = {"client_order_id", "broker_order_id", "decision_id"}
    events = sorted(
        json.dumps([e["kind"], {k: v for k, v in e["payload"].items() if k not in hidden}])
        for e in journal.events(session_id)
    )
    return {
        "iterations": iterations,
        "fills": [(f.symbol, f.qty, f.price, f.fee, f.time) for f in record.fills],
        "positions": [
            (p.symbol, p.qty, p.avg_price, p.equity, p.cash, p.at) for p in record.positions
        ],
        "events": events,
        "engine": record.state.get("engine"),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_a_session_decided_in_groups_journals_what_one_bar_at_a_time_journals(tmp_path, case):
    grouped, g_result, g_log, g_broker = _run(tmp_path / "grouped.db", case, grouped=True)
    single, s_result, s_log, s_broker = _run(tmp_path / "single.db", case, grouped=False)
    got, want = _rows(grouped, g_result.session_id), _rows(single, s_result.session_id)
    assert len(want["iterations"]) == s_result.decided == g_result.decided > 250
    assert got == want
    assert g_broker.balances() == s_broker.balances()
    assert g_broker.positions() == s_broker.positions()
    assert (g_result.intents, g_result.refused) == (s_result.intents, s_result.refused)
    # grouped: one transaction per bar time (both symbols, or one where the other has no
    # bar), each group's intents sent after it; one by one: a transaction per bar
    commits = [n for n in g_log if isinstance(n, int)]
    assert [n for n in s_log if isinstance(n, int)] == [1] * s_result.decided
    assert max(commits) == 2 and sum(commits) == g_result.decided
    if case == "gap":
        assert commits.count(1) == 2
    assert len(commits) == len(set(grouped.signals(include_flat=True)["bar_time"]))
    sent = [c for c in g_log if isinstance(c, str)]
    assert len(sent) == g_result.intents >= 4
    rows = grouped.signals(include_flat=True)
    actions = rows.groupby("bar_time")["action"].apply(list)
    if case == "rate_limited":  # the limit fell inside a group: BTC's order sent, ETH's not
        assert ["order", "rate_limited"] in actions.tolist()
    if case == "halt":  # halted, both held symbols flattened, then every order denied
        assert [e["kind"] for e in grouped.events(g_result.session_id, "halt")] == ["halt"]
        assert sorted(rows.loc[rows["action"] == "flatten", "symbol"]) == ["BTC", "ETH"]
    grouped.close()
    single.close()


@dataclass(frozen=True)
class KillAtEth(MinuteFlip):
    """MinuteFlip that turns the environment's kill switch on when it is asked about ETH's
    bar at ``minute`` (after BTC's bar of that minute was decided)."""

    env: dict = field(default_factory=dict)
    minute: int = 30

    def value(self, symbol, bars, rows):
        if symbol == "ETH" and bars["timestamp"].iloc[-1].minute == self.minute:
            self.env["KILL_SWITCH"] = "true"
        return super().value(symbol, bars, rows)


@pytest.mark.parametrize("grouped", [True, False])
def test_a_kill_switch_seen_mid_group_journals_the_group_and_sends_nothing_more(tmp_path, grouped):
    """BTC buys at 00:30, then ETH's bar of 00:30 sees the kill switch: the group is
    journaled up to the kill (BTC's decision and intent, ETH's ``killed``) and the loop
    stops. In a group BTC's intent was never sent (the kill switch is read before every
    order): it is marked cancelled with the reason in the group's transaction. One bar at
    a time it was sent, then cancelled at the broker: the journal ends the same."""
    config = _config()
    env: dict = {}
    journal = LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}")
    feed = ReplayFeed(_bars("orders"), config.symbols, "1m", config.staleness)
    broker = PaperBroker(config.execution, config.symbols)
    sent = []
    submit = broker.submit
    broker.submit = lambda intent: sent.append(intent) or submit(intent)
    bars = feed if grouped else (fb for fb in feed)
    engine = Engine(config, journal, broker, [KillAtEth(env=env)], bars, env=env)
    result = engine.run()
    assert "kill switch on (env)" in result.stopped
    rows = journal.signals(include_flat=True)
    last = rows[rows["bar_time"] == rows["bar_time"].max()]
    assert last["bar_time"].iloc[0].minute == 30
    assert list(zip(last["symbol"], last["action"], strict=True)) == [
        ("BTC", "order"),
        ("ETH", "killed"),
    ]
    (btc,) = last[last["symbol"] == "BTC"].itertuples()
    assert btc.status == "cancelled" and not broker.open_orders()
    assert [i.client_order_id for i in sent].count(btc.client_order_id) == (0 if grouped else 1)
    detail = journal.session_record(result.session_id).intents[-1].detail
    assert "kill switch on (env)" in detail
    assert journal.pending_intents() == []
    journal.close()


def test_max_bars_stops_inside_a_group_and_the_next_run_goes_on_from_there(tmp_path):
    """``max_bars`` counts bars, not groups: a run may end after BTC's bar of a minute; a
    restart on the same journal and broker decides ETH's bar of that minute and goes on,
    ending where one uninterrupted run ends."""
    whole, whole_result, _, whole_broker = _run(tmp_path / "whole.db", "orders", grouped=True)
    config = _config()
    journal = LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}")
    broker = PaperBroker(config.execution, config.symbols)

    def engine():
        feed = ReplayFeed(_bars("orders"), config.symbols, "1m", config.staleness)
        return Engine(config, journal, broker, [MinuteFlip()], feed, env={})

    first = engine().run(max_bars=61)
    assert first.decided == 61 and first.stopped == "max_bars 61 reached"
    rows = journal.signals(include_flat=True)
    assert (
        rows["symbol"].iloc[-1] == "BTC" and (rows["bar_time"] == rows["bar_time"].max()).sum() == 1
    )
    second = engine().run()
    assert first.decided + second.decided == whole_result.decided
    assert broker.balances() == whole_broker.balances()
    assert broker.positions() == whole_broker.positions()
    assert first.intents + second.intents == whole_result.intents
    journal.close()
    whole.close()


class Marks:
    """The journal, each ``mark_intents`` / ``mark_intent`` call kept in ``calls`` with the
    client ids the broker had taken by then."""

    def __init__(self, inner, sent):
        self._inner, self._sent, self.calls = inner, sent, []

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name not in ("mark_intents", "mark_intent"):
            return attr

        def call(*args, **kwargs):
            self.calls.append((name, args, [i.client_order_id for i in self._sent]))
            return attr(*args, **kwargs)

        return call


def test_a_groups_acks_are_journaled_in_one_transaction_after_all_its_submits(tmp_path):
    """Both symbols order at the same minutes: their acks go to the journal in ONE
    ``mark_intents`` call (one durable commit), made after the group's last submit; no
    ack is journaled on its own. Every intent still ends acknowledged (then filled)."""
    config = _config()
    feed = ReplayFeed(_bars("orders"), config.symbols, "1m", config.staleness)
    broker = PaperBroker(config.execution, config.symbols)
    sent: list = []
    submit = broker.submit
    broker.submit = lambda intent: sent.append(intent) or submit(intent)
    journal = Marks(LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}"), sent)
    Engine(config, journal, broker, [MinuteFlip(period=15)], feed, env={}).run()
    assert not [c for c in journal.calls if c[0] == "mark_intent"]
    pairs = [c for c in journal.calls if len(c[1][0]) == len(SYMBOLS)]
    assert len(pairs) >= 3  # groups where both symbols ordered
    for _, (marks,), sent_by_then in journal.calls:
        acked = [m["client_order_id"] for m in marks]
        assert {m["status"] for m in marks} == {"acknowledged"}
        assert sent_by_then[-len(acked) :] == acked  # right after the group's submits
    assert len(sent) == sum(len(c[1][0]) for c in journal.calls)
    assert journal.pending_intents() == []
