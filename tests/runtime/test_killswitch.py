"""The kill switch: on from the environment or the journal, naming the source; an unknown
KILL_SWITCH value fails closed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moola.runtime.killswitch import KillSwitch

OFF_VALUES = {"", "0", "false", "no", "off"}


@pytest.mark.parametrize("value", ["1", "true", "TRUE", " yes ", "On"])
def test_the_environment_turns_it_on(value) -> None:
    state = KillSwitch().is_on({"KILL_SWITCH": value})
    assert state.on and state.source == "env"
    on, source = state
    assert (on, source) == (True, "env")


@pytest.mark.parametrize("value", ["0", "false", "No", "OFF", ""])
def test_off_values_leave_it_off(value) -> None:
    state = KillSwitch().is_on({"KILL_SWITCH": value})
    assert not state.on and state.source is None
    assert not state


def test_an_unknown_value_fails_closed_naming_it() -> None:
    state = KillSwitch().is_on({"KILL_SWITCH": "ture"})
    assert state.on and state.source == "env"
    assert "'ture'" in state.reason and "fail closed" in state.reason


def test_the_journal_turns_it_on_and_the_environment_is_named_first() -> None:
    switch = KillSwitch()
    stored = switch.journal_value(True, by="ana", reason="exchange outage")
    state = switch.is_on({}, stored)
    assert (state.on, state.source) == (True, "journal")
    assert "ana" in state.reason and "exchange outage" in state.reason
    assert switch.is_on({"KILL_SWITCH": "1"}, stored).source == "env"
    assert not switch.is_on({}, switch.journal_value(False)).on
    assert not switch.is_on({}, None).on


def test_an_unreadable_journal_state_fails_closed() -> None:
    state = KillSwitch().is_on({}, {"on": "maybe"})
    assert state.on and state.source == "journal"
    assert "fail closed" in state.reason


def test_the_process_environment_is_the_default(monkeypatch) -> None:
    monkeypatch.setenv("KILL_SWITCH", "yes")
    assert KillSwitch().is_on().on
    monkeypatch.delenv("KILL_SWITCH")
    assert not KillSwitch().is_on().on


@given(
    env=st.one_of(st.none(), st.text(max_size=8), st.sampled_from(sorted(OFF_VALUES))),
    journal=st.sampled_from([None, True, False, {"on": True}, {"on": False}]),
)
def test_off_only_when_both_sources_say_off(env, journal) -> None:
    environ = {} if env is None else {"KILL_SWITCH": env}
    state = KillSwitch().is_on(environ, journal)
    env_off = env is None or env.strip().lower() in OFF_VALUES
    journal_on = journal is True or (isinstance(journal, dict) and journal["on"])
    assert state.on == (not env_off or journal_on)
    if not env_off:
        assert state.source == "env"
    elif journal_on:
        assert state.source == "journal"
    else:
        assert state.source is None
