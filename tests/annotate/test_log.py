"""The append-only annotation log: whole lines only, acknowledged means on disk, bad lines
reported by number while the rest is kept, sequence numbers never reused, and replay (undo)
equal to a plain model of what the annotator did."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moola.annotate.log import AnnotationLog, replay
from moola.annotate.model import Action, NewAction, WindowState


def _label(window: str = "w1", label: str = "consolidation") -> NewAction:
    return NewAction(window_id=window, kind="label", label=label)


def test_append_numbers_actions_and_reads_them_back(tmp_path):
    log = AnnotationLog(tmp_path / "normal" / "b1.jsonl")
    assert log.read().actions == () and log.read().ok
    first = log.append(_label())
    second = log.append(NewAction(window_id="w1", kind="grade", grade="A", elapsed_ms=1200))
    assert (first.seq, second.seq) == (1, 2)
    read = log.read()
    assert read.ok and read.actions == (first, second)
    lines = log.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3  # one JSON object per line


def test_sequence_numbers_continue_across_instances(tmp_path):
    path = tmp_path / "b.jsonl"
    AnnotationLog(path).append(_label())
    AnnotationLog(path).append(_label())
    assert [a.seq for a in AnnotationLog(path).actions()] == [1, 2]


def test_cut_short_last_line_is_left_out_and_next_append_starts_fresh(tmp_path):
    log = AnnotationLog(tmp_path / "b.jsonl")
    kept = [log.append(_label()), log.append(_label("w2"))]
    whole = _label("w3").model_dump_json().encode()
    with open(log.path, "ab") as handle:  # a write killed half-way
        handle.write(whole[: len(whole) // 2])
    read = log.read()
    assert read.actions == tuple(kept)
    assert [(p.line, p.kind) for p in read.problems] == [(3, "partial")]
    fresh = AnnotationLog(log.path).append(_label("w4"))
    read = log.read()
    assert read.actions == (*kept, fresh) and fresh.seq == 3
    assert [(p.line, p.kind) for p in read.problems] == [(3, "partial")]
    assert "line 3" in str(read.problems[0])


def test_corrupt_line_is_reported_with_its_number_and_the_rest_kept(tmp_path):
    log = AnnotationLog(tmp_path / "b.jsonl")
    actions = [log.append(_label(f"w{i}")) for i in range(4)]
    lines = log.path.read_bytes().split(b"\n")
    lines[1] = b'{"window_id": "w1", "kind": "label", "seq": 2, "label": "sideways", "at": 1}'
    lines[2] = b"\xff\xfe garbage"
    log.path.write_bytes(b"\n".join(lines))
    read = log.read()
    assert read.actions == (actions[0], actions[3])
    assert [(p.line, p.kind) for p in read.problems] == [(2, "corrupt"), (3, "corrupt")]
    assert "label" in read.problems[0].reason and "UTF-8" in read.problems[1].reason
    # numbers are never reused, even those only found on unreadable lines
    assert AnnotationLog(log.path).append(_label()).seq == 5


def test_a_line_whose_seq_goes_back_is_reported(tmp_path):
    log = AnnotationLog(tmp_path / "b.jsonl")
    first = log.append(_label())
    with open(log.path, "ab") as handle:
        handle.write(first.model_dump_json().encode() + b"\n")
    read = log.read()
    assert read.actions == (first,)
    assert read.problems[0].line == 2 and "out of order" in read.problems[0].reason


def test_before_runs_with_the_numbered_action_and_its_failure_writes_nothing(tmp_path):
    log = AnnotationLog(tmp_path / "b.jsonl")
    seen: list[Action] = []
    log.append(_label(), before=seen.append)
    assert seen[0].seq == 1 and log.path.read_bytes().count(b"\n") == 1

    def refuse(action: Action) -> None:
        raise RuntimeError("blacklist unavailable")

    with pytest.raises(RuntimeError, match="blacklist"):
        log.append(_label(), before=refuse)
    assert len(log.actions()) == 1 and log.append(_label()).seq == 2


def test_concurrent_appenders_get_distinct_numbers_and_whole_lines(tmp_path):
    path = tmp_path / "b.jsonl"

    def work(i: int) -> None:
        log = AnnotationLog(path)
        for _ in range(10):
            log.append(_label(f"w{i}"))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    read = AnnotationLog(path).read()
    assert read.ok and [a.seq for a in read.actions] == list(range(1, 41))


_CHILD = """
import sys
from moola.annotate.log import AnnotationLog
from moola.annotate.model import NewAction
log = AnnotationLog(sys.argv[1])
i = 0
while True:
    i += 1
    action = log.append(NewAction(window_id=f"w{i % 7}", kind="note", note="x" * (i % 300)))
    sys.stdout.write(f"{action.seq}\\n")
    sys.stdout.flush()
"""


def test_kill_at_random_moments_loses_no_acknowledged_entry(tmp_path):
    path = tmp_path / "normal" / "b.jsonl"
    rng = random.Random(19)
    acknowledged: set[int] = set()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, env=env
        )
        try:
            assert child.stdout is not None
            acknowledged.add(int(child.stdout.readline()))  # it is appending now
            threading.Event().wait(rng.uniform(0.0, 0.15))
            os.kill(child.pid, signal.SIGKILL)
            out, _ = child.communicate()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        acknowledged.update(int(line) for line in out.split() if line.strip())
        read = AnnotationLog(path).read()
        seqs = [a.seq for a in read.actions]
        assert not [p for p in read.problems if p.kind == "corrupt"]
        assert acknowledged <= set(seqs)
        assert seqs == sorted(set(seqs))  # monotonic across restarts, none reused
    assert len(acknowledged) > 5


# ---------------------------------------------------------------- replay vs a plain model

_WINDOWS = ("a", "b", "c")
_new_actions = st.one_of(
    st.builds(
        NewAction,
        window_id=st.sampled_from(_WINDOWS),
        kind=st.just("label"),
        label=st.sampled_from(["consolidation", "retracement", "neither"]),
    ),
    st.builds(
        NewAction,
        window_id=st.sampled_from(_WINDOWS),
        kind=st.just("grade"),
        grade=st.sampled_from(["A", "B", "C", "D"]),
    ),
    st.builds(
        NewAction,
        window_id=st.sampled_from(_WINDOWS),
        kind=st.just("note"),
        note=st.sampled_from(["", "n1", "n2"]),
    ),
    st.builds(
        NewAction, window_id=st.sampled_from(_WINDOWS), kind=st.sampled_from(["skip", "undo"])
    ),
)


def _plain_model(actions: list[Action]) -> dict[str, dict]:
    """What the annotator sees: undo removes the window's latest action not yet removed."""
    removed: set[int] = set()
    for i, action in enumerate(actions):
        if action.kind != "undo":
            continue
        for j in range(i - 1, -1, -1):
            prior = actions[j]
            if prior.window_id == action.window_id and prior.kind != "undo" and j not in removed:
                removed.add(j)
                break
    out: dict[str, dict] = {}
    for window in {a.window_id for a in actions}:
        live = [
            a
            for i, a in enumerate(actions)
            if a.window_id == window and a.kind != "undo" and i not in removed
        ]
        labels = [a.label for a in live if a.kind == "label"]
        grades = [a.grade for a in live if a.kind == "grade"]
        notes = [a.note for a in live if a.kind == "note"]
        decisive = [a.kind for a in live if a.kind in ("label", "grade", "skip")]
        out[window] = {
            "label": labels[-1] if labels else None,
            "grade": grades[-1] if grades else None,
            "note": (notes[-1] or None) if notes else None,
            "skipped": bool(decisive) and decisive[-1] == "skip",
        }
    return out


@given(st.lists(_new_actions, max_size=30))
def test_replay_equals_a_plain_model(new_actions):
    from datetime import UTC, datetime

    actions = [
        Action(**a.model_dump(), seq=i + 1, at=datetime(2024, 1, 1, tzinfo=UTC))
        for i, a in enumerate(new_actions)
    ]
    states = replay(actions)
    expected = _plain_model(actions)
    assert set(states) == set(expected)
    for window, state in states.items():
        assert isinstance(state, WindowState)
        got = {k: getattr(state, k) for k in ("label", "grade", "note", "skipped")}
        assert got == expected[window], window


def test_replay_undo_restores_the_previous_grade():
    from datetime import UTC, datetime

    steps = [
        _label(),
        NewAction(window_id="w1", kind="grade", grade="B"),
        NewAction(window_id="w1", kind="grade", grade="D"),
        NewAction(window_id="w1", kind="undo"),
    ]
    at = datetime(2024, 1, 1, tzinfo=UTC)
    actions = [Action(**a.model_dump(), seq=i + 1, at=at) for i, a in enumerate(steps)]
    state = replay(actions)["w1"]
    assert (state.label, state.grade, state.seqs) == ("consolidation", "B", (1, 2))
    assert state.accepted


def test_log_path_is_not_created_by_reading(tmp_path: Path):
    AnnotationLog(tmp_path / "x" / "b.jsonl").read()
    assert not (tmp_path / "x").exists()


def test_a_reader_sees_what_another_writer_appended_after_its_last_read(tmp_path):
    reader, writer = AnnotationLog(tmp_path / "b.jsonl"), AnnotationLog(tmp_path / "b.jsonl")
    first = writer.append(_label())
    assert reader.read().actions == (first,)
    second = writer.append(_label("w2"))
    assert reader.read().actions == (first, second)
    with open(reader.path, "ab") as handle:
        handle.write(b'{"window_id": "w3", "ki')
    assert reader.read().problems[0].line == 3
    third = writer.append(_label("w3"))
    read = reader.read()
    assert read.actions == (first, second, third) and read.problems[0].line == 3


@given(st.lists(st.one_of(st.just(-1), st.integers(1, 120)), min_size=1, max_size=12))
def test_any_mix_of_appends_and_cut_short_writes_reads_back_every_acknowledged_action(
    tmp_path_factory, steps
):
    """-1: an acknowledged append; k > 0: an append killed after k bytes of its write."""
    log = AnnotationLog(tmp_path_factory.mktemp("log") / "b.jsonl")
    reader = AnnotationLog(log.path)
    acknowledged = []
    for step in steps:
        if step < 0:
            acknowledged.append(AnnotationLog(log.path).append(_label(f"w{len(acknowledged)}")))
        else:
            torn = Action(**_label("torn").model_dump(), seq=999, at="2024-01-01T00:00:00Z")
            line = torn.model_dump_json().encode() + b"\n"
            data = log.path.read_bytes() if log.path.exists() else b""
            if data and not data.endswith(b"\n"):
                line = b"\n" + line  # as append writes after a cut-short line
            with open(log.path, "ab") as handle:
                handle.write(line[: min(step, len(line) - 1)])
        read = reader.read()
        assert read.actions == tuple(acknowledged)
        assert all(p.kind == "partial" for p in read.problems)
        assert [a.seq for a in read.actions] == sorted({a.seq for a in read.actions})
