"""Annotation stats: sessions of bar times, keeper rates by session and batch (what
extraction weighs by), class and grade balance per labeled version, labelling speed and
Cohen's kappa where a window was labelled twice."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from moola.annotate import stats
from moola.annotate.commit import commit_batch
from moola.annotate.model import NewAction
from moola.annotate.stats import (
    SESSIONS,
    annotation_stats,
    keeper_rates,
    session_codes,
    session_of,
)
from moola.annotate.store import BatchStore, write_batch
from moola.features.sessions import FUTURES_SUB_SESSIONS
from tests.annotate._batches import make_batch, store_raw


@pytest.fixture
def raw(registry):
    return store_raw(registry)  # 1-minute bars from 2024-01-02 00:00 UTC (19:00 New York)


def _store(registry, raw, starts, **kwargs):
    batch = make_batch(registry, raw, starts, **kwargs)
    write_batch(registry.root, batch)
    return BatchStore(registry.root, batch)


def _do(store, i, label=None, grade=None, *, by="", ms=None, skip=False):
    window_id = store.batch.windows[i].window_id
    if skip:
        store.record(NewAction(window_id=window_id, kind="skip", by=by, elapsed_ms=ms))
    if label:
        store.record(
            NewAction(window_id=window_id, kind="label", label=label, by=by, elapsed_ms=ms)
        )
    if grade:
        store.record(NewAction(window_id=window_id, kind="grade", grade=grade, by=by))


def test_session_of_follows_new_york_wall_clock_and_daylight_saving():
    times = pd.to_datetime(
        [
            "2024-01-02 00:00",  # 19:00 New York (winter)
            "2024-01-02 08:00",  # 03:00
            "2024-01-02 14:29",  # 09:29
            "2024-07-01 13:30",  # 09:30 (summer)
            "2024-07-01 16:00",  # 12:00
            "2024-01-02 22:30",  # 17:30: the daily break
        ],
        utc=True,
    )
    expected = ["asia", "europe", "europe", "us_morning", "us_afternoon", "break"]
    assert session_of(times).tolist() == expected
    assert session_of(times.as_unit("ns").asi8).tolist() == expected
    assert set(expected) == set(SESSIONS)


def test_session_of_by_half_hour_buckets_equals_the_wall_clock_across_dst_changes():
    # The bucketed path holds because every boundary is on New York's half-hour grid.
    assert all(m % 30 == 0 for _, start, end in FUTURES_SUB_SESSIONS for m in (start, end))
    rng = np.random.default_rng(7)
    days = pd.date_range("2000", "2040", freq="D", tz="America/New_York")
    offsets = np.array([t.utcoffset().total_seconds() for t in days])
    moved = days[1:][offsets[1:] != offsets[:-1]].as_unit("ns").asi8  # the clock changed
    assert len(moved) == 80
    hours = 3600 * 10**9
    near = np.repeat(moved, 200) + rng.integers(-36 * hours, 36 * hours, len(moved) * 200)
    two_years = rng.integers(pd.Timestamp("2023").value, pd.Timestamp("2025").value, 30_000)
    century = rng.integers(pd.Timestamp("1900").value, pd.Timestamp("2100").value, 500)
    for times in (near, two_years, century, near - near % (60 * 10**9)):
        assert session_codes(times).tolist() == stats._by_clock(times).tolist()
    old = np.array([pd.Timestamp("1850-06-01 12:00").value])  # local mean time: exact path
    assert session_codes(old).tolist() == stats._by_clock(old).tolist()
    assert session_of(near).tolist() == [SESSIONS[c] for c in session_codes(near)]


def test_no_history_means_no_rates(registry):
    assert keeper_rates(registry.root) == {}


def test_keeper_rates_by_session_count_judged_windows_of_normal_batches(registry, raw):
    # rows 0..479 open in asia (before 03:00 New York), 480.. in europe
    store = _store(registry, raw, [0, 30, 60, 90, 120, 480, 520])
    _do(store, 0, "consolidation", "A")
    _do(store, 1, "retracement", "D")
    _do(store, 2, "neither", "C")
    _do(store, 3, grade="D")
    _do(store, 4, skip=True)  # not judged
    _do(store, 5, "retracement", "B")
    _do(store, 6, "consolidation")  # labelled, not graded: not judged yet
    review = _store(registry, raw, [0], name="r1", kind="review", labeled="x@v1", given=["neither"])
    _do(review, 0, "retracement", "A")  # review batches do not count
    assert keeper_rates(registry.root) == {"asia": 0.5, "europe": 1.0}
    stats = annotation_stats(registry.root)
    assert stats.keeper_by_batch["b1"].model_dump() == {"accepted": 3, "judged": 5, "rate": 0.6}
    assert "r1" not in stats.keeper_by_batch


def test_balance_lists_every_labeled_version(registry, raw):
    store = _store(registry, raw, [0, 30, 60])
    _do(store, 0, "consolidation", "A")
    _do(store, 1, "consolidation", "B")
    commit_batch(registry, "b1", into="pat")
    _do(store, 2, "retracement", "B")
    commit_batch(registry, "b1", into="pat")
    balance = {b.dataset: b for b in annotation_stats(registry.root).balance}
    assert balance["pat@v1"].classes == {"consolidation": 2}
    assert balance["pat@v2"].classes == {"consolidation": 2, "retracement": 1}
    assert balance["pat@v2"].grades == {"A": 1, "B": 2}


def test_speed_is_the_median_time_per_window_and_windows_per_hour(registry, raw):
    store = _store(registry, raw, [0, 30, 60])
    _do(store, 0, "consolidation", "A", ms=4000)
    _do(store, 1, "retracement", "B", ms=10000)
    _do(store, 2, "neither", "C", ms=6000)
    window = store.batch.windows[2].window_id
    store.record(NewAction(window_id=window, kind="undo", elapsed_ms=2000))  # time still spent
    speed = annotation_stats(registry.root).speed
    assert speed.median_s == 8.0 and speed.windows == 3
    # the undo took the third window's grade back (labelled only): two windows judged
    assert speed.windows_per_hour == pytest.approx(2 * 3600 / 22.0)


def test_kappa_where_a_window_was_labelled_in_two_batches_or_by_two_people(registry, raw):
    first = _store(registry, raw, [0, 30, 60, 90], name="b1")
    second = _store(registry, raw, [0, 30, 60, 90, 200], name="b2")  # same spans, another batch
    for i, label in enumerate(["consolidation", "consolidation", "retracement", "retracement"]):
        _do(first, i, label, "A")
    for i, label in enumerate(["consolidation", "retracement", "retracement", "retracement"]):
        _do(second, i, label, "A")
    _do(second, 4, "neither", by="ann")
    _do(second, 4, "neither", by="bob")
    kappa = annotation_stats(registry.root).agreement
    a = ["consolidation", "consolidation", "retracement", "retracement", "neither"]
    b = ["consolidation", "retracement", "retracement", "retracement", "neither"]
    observed = np.mean(np.array(a) == np.array(b))
    chance = sum((a.count(c) / 5) * (b.count(c) / 5) for c in set(a) | set(b))
    assert (kappa.pairs, kappa.windows) == (5, 5)
    assert kappa.agreement == pytest.approx(observed)
    assert kappa.kappa == pytest.approx((observed - chance) / (1 - chance))


def test_stats_are_json_ready(registry, raw):
    store = _store(registry, raw, [0])
    _do(store, 0, "consolidation", "A", ms=1000)
    commit_batch(registry, "b1", into="pat")
    values = annotation_stats(registry.root).to_dict()
    assert json.loads(json.dumps(values)) == values
    assert values["balance"]["pat@v1"]["class consolidation"] == 1
