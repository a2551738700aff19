"""Batches are write-once and listed; each batch's log follows from its kind (normal and
review never mix); replay gives state, resume position and progress; a D grade is
blacklisted before it is acknowledged and stays blacklisted after an undo."""

from __future__ import annotations

import random

import pytest

from moola.annotate.model import NewAction
from moola.annotate.store import BatchStore, list_batches, log_path, read_batch, write_batch
from moola.core.errors import ConfigError, IntegrityError
from moola.data.blacklist import read_blacklist
from tests.annotate._batches import make_batch, store_raw


@pytest.fixture
def raw(registry):
    return store_raw(registry)


def _act(window, kind, **fields):
    return NewAction(window_id=window.window_id, kind=kind, **fields)


def test_batch_is_written_once_read_back_and_listed(registry, raw):
    batch = make_batch(registry, raw, [0, 40, 80])
    path = write_batch(registry.root, batch)
    assert path == registry.root / "annotations" / "batches" / "b1.json"
    assert read_batch(registry.root, "b1") == batch
    with pytest.raises(ConfigError, match="'b1' already exists") as caught:
        write_batch(
            registry.root,
            make_batch(registry, raw, [200], name="b1", kind="review", labeled="x@v1"),
        )
    assert caught.value.param == "name"
    assert read_batch(registry.root, "b1") == batch  # the first one is untouched
    write_batch(
        registry.root, make_batch(registry, raw, [200], name="r1", kind="review", labeled="x@v1")
    )
    assert [b.name for b in list_batches(registry.root)] == ["b1", "r1"]
    assert [b.name for b in list_batches(registry.root, kind="review")] == ["r1"]


def test_missing_or_damaged_batch_is_named(registry, raw):
    write_batch(registry.root, make_batch(registry, raw, [0]))
    with pytest.raises(ConfigError, match=r"'nope'.*Known batches: b1"):
        read_batch(registry.root, "nope")
    (registry.root / "annotations" / "batches" / "bad.json").write_text("{}")
    with pytest.raises(IntegrityError, match=r"bad\.json"):
        read_batch(registry.root, "bad")
    with pytest.raises(ConfigError):
        read_batch(registry.root, "../escape")


def test_normal_and_review_logs_are_separate_stores(registry, raw):
    normal = make_batch(registry, raw, [0], name="n1")
    review = make_batch(registry, raw, [0], name="r1", kind="review", labeled="x@v1")
    assert log_path(registry.root, normal).parent.name == "normal"
    assert log_path(registry.root, review).parent.name == "review"
    BatchStore(registry.root, normal).record(_act(normal.windows[0], "label", label="neither"))
    assert BatchStore(registry.root, review).state().actions == ()


def test_state_resume_and_progress_follow_the_log(registry, raw):
    batch = make_batch(registry, raw, [0, 40, 80, 120])
    write_batch(registry.root, batch)
    store = BatchStore.open(registry.root, "b1")
    w = batch.windows
    assert store.state().resume == 0
    store.record(_act(w[0], "label", label="retracement", elapsed_ms=3000))
    assert store.state().resume == 0  # labelled, not graded yet
    store.record(_act(w[0], "grade", grade="B"))
    store.record(_act(w[1], "skip"))
    store.record(_act(w[2], "label", label="consolidation"))
    store.record(_act(w[2], "grade", grade="A"))
    store.record(_act(w[2], "undo"))
    state = BatchStore.open(registry.root, "b1").state()  # as after a restart
    assert state.resume == 2
    assert (state.state(w[0].window_id).label, state.state(w[0].window_id).grade) == (
        "retracement",
        "B",
    )
    assert state.state(w[2].window_id).grade is None
    p = state.progress
    assert (p.total, p.decided, p.accepted, p.skipped, p.remaining) == (4, 2, 1, 1, 2)


def test_an_action_on_a_window_outside_the_batch_is_refused(registry, raw):
    batch = make_batch(registry, raw, [0])
    store = BatchStore(registry.root, batch)
    with pytest.raises(ConfigError, match="no window 'other'"):
        store.record(NewAction(window_id="other", kind="skip"))
    assert not store.log.path.exists()


def test_grade_d_is_blacklisted_before_acknowledgement_and_stays_after_undo(registry, raw):
    batch = make_batch(registry, raw, [0, 40])
    store = BatchStore(registry.root, batch)
    window = batch.windows[1]
    action = store.record(_act(window, "grade", grade="D"))
    entries = read_blacklist(registry.root).entries
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.symbol, entry.reason) == ("ES", "grade D")
    assert (
        entry.start_ts == window.start_ts.isoformat() and entry.end_ts == window.end_ts.isoformat()
    )
    assert (
        window.window_id in entry.source
        and raw in entry.source
        and f"seq {action.seq}" in entry.source
    )
    store.record(_act(window, "undo"))
    assert BatchStore(registry.root, batch).state().state(window.window_id).grade is None
    assert len(read_blacklist(registry.root)) == 1  # permanent


def test_a_failing_blacklist_write_leaves_the_d_unacknowledged(registry, raw, monkeypatch):
    batch = make_batch(registry, raw, [0])
    store = BatchStore(registry.root, batch)

    def broken(root, entries):
        raise OSError("disk full")

    monkeypatch.setattr("moola.annotate.store.add_entries", broken)
    with pytest.raises(OSError, match="disk full"):
        store.record(_act(batch.windows[0], "grade", grade="D"))
    assert store.state().actions == ()


def test_state_kept_up_to_date_equals_a_fresh_replay_as_the_log_grows_or_is_replaced(registry, raw):
    batch = make_batch(registry, raw, [0, 40, 80, 120, 160])
    write_batch(registry.root, batch)
    served, writer = BatchStore(registry.root, batch), BatchStore(registry.root, batch)
    rng = random.Random(3)
    choices = [
        {"kind": "label", "label": "retracement"},
        {"kind": "label", "label": "neither"},
        {"kind": "grade", "grade": "B"},
        {"kind": "note", "note": "wick"},
        {"kind": "skip"},
        {"kind": "undo"},
        {"kind": "undo"},
    ]
    for _ in range(12):  # another process appends a few, then the server asks
        for _ in range(rng.randint(1, 6)):
            writer.record(_act(rng.choice(batch.windows), **rng.choice(choices)))
        fresh = BatchStore(registry.root, batch).state()
        got = served.state()
        assert (got.windows, got.resume, got.progress) == (
            fresh.windows,
            fresh.resume,
            fresh.progress,
        )
    # The log replaced by a shorter one (restored from a backup): replayed from scratch.
    path = log_path(registry.root, batch)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3]))
    assert served.state().windows == BatchStore(registry.root, batch).state().windows
    assert len(served.state().actions) == 3
