"""Splits: every strategy leaves train strictly before (and apart from) what it is scored on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from moola.core.errors import LeakageError, SplitError
from moola.data.splits import (
    Fold,
    Split,
    durations_to_units,
    forward_chaining,
    make_split,
    purged_kfold,
    stratified,
    validate_split,
    walk_forward,
)

FAST = settings(max_examples=150, deadline=None)


# --------------------------------------------------------------------------- references


def _separated(ei: int, sj: int, purge: int) -> bool:
    """Brute-force rule: sample i ends more than ``purge`` before sample j starts."""
    return ei + purge < sj


def _apart(i: int, j: int, s, e, purge: int) -> bool:
    return _separated(e[i], s[j], purge) or _separated(e[j], s[i], purge)


def _brute_conflicts(a, b, s, e, purge) -> list[int]:
    return sorted({i for i in a for j in b if not _apart(i, j, s, e, purge)})


def _assert_partition(parts: list[list[int]], n: int, cover: bool) -> None:
    seen = [i for part in parts for i in part]
    assert len(seen) == len(set(seen))
    assert all(0 <= i < n for i in seen)
    if cover:
        assert sorted(seen) == list(range(n))


def _assert_chain(parts: list[list[int]], s, e, purge: int, embargo: int) -> None:
    """Each part lies wholly after every earlier one: gap > purge, start > end + embargo."""
    for k, later in enumerate(parts):
        earlier = [i for part in parts[:k] for i in part]
        for i in earlier:
            for j in later:
                assert _separated(e[i], s[j], purge), (i, j)
                assert s[j] > e[i] + embargo, (i, j)


# --------------------------------------------------------------------------- data


@st.composite
def spans(draw, max_times: int = 40):
    """Sample spans: random starts and lengths, each span repeated for 1-3 'symbols',
    in random order (overlap is about time, not symbol)."""
    n_times = draw(st.integers(4, max_times))
    starts = np.array(draw(st.lists(st.integers(0, 400), min_size=n_times, max_size=n_times)))
    if draw(st.booleans()):  # fixed-length windows, like a WindowSet
        lengths = np.full(n_times, draw(st.integers(1, 30)))
    else:  # label horizons of varying length
        lengths = np.array(draw(st.lists(st.integers(1, 30), min_size=n_times, max_size=n_times)))
    copies = draw(st.integers(1, 3))
    s = np.tile(starts, copies)
    e = s + np.tile(lengths, copies) - 1
    order = np.array(draw(st.permutations(range(s.size))))
    return s[order].astype(np.int64), e[order].astype(np.int64)


gaps = st.integers(0, 12)


# --------------------------------------------------------------------------- forward chaining


def test_forward_chaining_hand_example():
    # Spans [i, i + 1], 10 samples, 20 % val, 20 % test. Train candidates 0..5 must end
    # before val's first start 6: 5 ([5, 6]) is purged. Val 6, 7 must end before test's
    # first start 8: 7 ([7, 8]) is purged.
    s = np.arange(10)
    split = forward_chaining(s, s + 1, val_fraction=0.2, test_fraction=0.2)
    assert (split.train, split.val, split.test, split.purged) == (
        [0, 1, 2, 3, 4],
        [6],
        [8, 9],
        [5, 7],
    )
    assert split.counts == {"train": 5, "val": 1, "test": 2, "purged": 2}
    assert split.spans[5] == (5, 6)
    validate_split(split, s, s + 1)


def test_forward_chaining_embargo_drops_the_head_of_later_parts():
    # Point spans 0..19: train 0..9, val 10..14, test 15..19. Embargo 2: val must start
    # after 9 + 2 (drops 10, 11); test after 14 + 2 (drops 15, 16).
    s = np.arange(20)
    split = forward_chaining(s, s, val_fraction=0.25, test_fraction=0.25, embargo=2)
    assert split.train == list(range(10))
    assert split.val == [12, 13, 14]
    assert split.test == [17, 18, 19]
    assert split.purged == [10, 11, 15, 16]


def test_disjoint_point_spans_lose_nothing():
    s = np.arange(100) * 3
    split = forward_chaining(s, s, val_fraction=0.2, test_fraction=0.1)
    assert split.purged == []
    assert split.counts == {"train": 70, "val": 20, "test": 10, "purged": 0}


def test_samples_sharing_a_start_stay_in_one_part():
    # Three symbols with identical spans [t, t + 1], t = 0..19 (sample 3t + k). The count
    # cuts (train 38, test 7) fall inside a time; they move left so a time is never split:
    # val starts at t = 12, test at t = 17. Purge 1: train ends must be < 12 - 1, val ends
    # < 17 - 1.
    s = np.repeat(np.arange(20), 3)
    split = forward_chaining(s, s + 1, val_fraction=0.25, test_fraction=0.12, purge=1)
    times = {
        part: sorted(set(s[getattr(split, part)].tolist())) for part in ("train", "val", "test")
    }
    assert times == {"train": list(range(10)), "val": [12, 13, 14], "test": [17, 18, 19]}
    assert sorted(set(s[split.purged].tolist())) == [10, 11, 15, 16]
    assert split.counts == {"train": 30, "val": 9, "test": 9, "purged": 12}
    validate_split(split)


@FAST
@given(spans(), st.sampled_from([0.0, 0.1, 0.2, 0.3]), st.sampled_from([0.1, 0.2, 0.3]), gaps, gaps)
def test_forward_chaining_never_leaks(data, val_fraction, test_fraction, purge, embargo):
    s, e = data
    try:
        split = forward_chaining(
            s,
            e,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            purge=purge,
            embargo=embargo,
        )
    except SplitError:
        assume(False)
    validate_split(split, s, e)
    _assert_partition([split.train, split.val, split.test, split.purged], s.size, cover=True)
    _assert_chain([split.train, split.val, split.test], s, e, purge, embargo)
    assert split.train and split.test and (split.val or val_fraction == 0)


# --------------------------------------------------------------------------- purged k-fold


def test_purged_kfold_hand_example():
    # Spans [i, i + 1], 3 folds of starts {0,1,2}, {3,4,5}, {6..9}, embargo 2.
    s = np.arange(10)
    split = purged_kfold(s, s + 1, n_folds=3, embargo=2)
    got = [(f.train, f.test, f.purged) for f in split.folds]
    assert got == [
        # test [0, 3]: 3 overlaps; 4 and 5 start within 2 after its end.
        ([6, 7, 8, 9], [0, 1, 2], [3, 4, 5]),
        # test [3, 6]: 2 and 6 overlap; 7 and 8 are embargoed.
        ([0, 1, 9], [3, 4, 5], [2, 6, 7, 8]),
        # test [6, 10]: 5 overlaps; nothing after the last fold to embargo.
        ([0, 1, 2, 3, 4], [6, 7, 8, 9], [5]),
    ]
    assert split.train == list(range(10)) and split.test == []
    validate_split(split, s, s + 1)


@FAST
@given(spans(), st.integers(2, 5), gaps, gaps)
def test_purged_kfold_never_leaks(data, n_folds, purge, embargo):
    s, e = data
    try:
        split = purged_kfold(s, e, n_folds=n_folds, purge=purge, embargo=embargo)
    except SplitError:
        assume(False)
    validate_split(split, s, e)
    tested = sorted(i for fold in split.folds for i in fold.test)
    assert tested == list(range(s.size))  # every sample is tested exactly once
    for fold in split.folds:
        _assert_partition([fold.train, fold.test, fold.purged], s.size, cover=True)
        assert _brute_conflicts(fold.train, fold.test, s, e, purge) == []
        hi = max(e[fold.test])
        assert not any(hi < s[i] <= hi + embargo for i in fold.train)


# --------------------------------------------------------------------------- walk-forward


def test_walk_forward_hand_example():
    # Spans [i, i + 1]; 2 test blocks of 3 at the end: {4,5,6}, {7,8,9}. Purge 1: train
    # must end before start - 1. Embargo 1: test must start after last train end + 1.
    s = np.arange(10)
    split = walk_forward(s, s + 1, n_splits=2, test_size=3, purge=1, embargo=1)
    got = [(f.train, f.test, f.purged) for f in split.folds]
    assert got == [([0, 1], [4, 5, 6], [2, 3]), ([0, 1, 2, 3, 4], [7, 8, 9], [5, 6])]
    rolling = walk_forward(s, s, n_splits=2, test_size=3, train_size=2)
    assert [(f.train, f.test) for f in rolling.folds] == [([2, 3], [4, 5, 6]), ([5, 6], [7, 8, 9])]


def test_walk_forward_test_size_defaults_like_time_series_split():
    # 14 samples, 3 folds: blocks of 14 // 4 = 3 tile the end, the first trains on 5.
    s = np.arange(14)
    split = walk_forward(s, s, n_splits=3)
    assert [f.test for f in split.folds] == [[5, 6, 7], [8, 9, 10], [11, 12, 13]]
    assert split.folds[0].train == [0, 1, 2, 3, 4]
    with pytest.raises(SplitError, match="3 samples cannot hold 3 walk-forward folds"):
        walk_forward(np.arange(3), np.arange(3), n_splits=3)


@FAST
@given(spans(), st.integers(1, 4), st.integers(1, 8), st.none() | st.integers(1, 20), gaps, gaps)
def test_walk_forward_never_leaks(data, n_splits, test_size, train_size, purge, embargo):
    s, e = data
    try:
        split = walk_forward(
            s,
            e,
            n_splits=n_splits,
            test_size=test_size,
            train_size=train_size,
            purge=purge,
            embargo=embargo,
        )
    except SplitError:
        assume(False)
    validate_split(split, s, e)
    assert len(split.folds) == n_splits
    for fold in split.folds:
        _assert_partition([fold.train, fold.test, fold.purged], s.size, cover=False)
        _assert_chain([fold.train, fold.test], s, e, purge, embargo)
        if train_size is not None:
            assert len(fold.train) <= train_size


# --------------------------------------------------------------------------- validate_split


@FAST
@given(spans(max_times=25), gaps, st.data())
def test_validate_split_detects_exactly_the_brute_force_overlaps(data, purge, draw):
    s, e = data
    assignment = draw.draw(st.lists(st.sampled_from("tvx"), min_size=s.size, max_size=s.size))
    parts = {key: [i for i, a in enumerate(assignment) if a == key] for key in "tvx"}
    split = Split(
        strategy="custom",
        params={"purge": purge},
        train=parts["t"],
        val=parts["v"],
        test=parts["x"],
        spans=list(zip(s.tolist(), e.tolist(), strict=True)),
    )
    leaks = _brute_conflicts(parts["t"], parts["v"] + parts["x"], s, e, purge) + _brute_conflicts(
        parts["v"], parts["x"], s, e, purge
    )
    if leaks:
        with pytest.raises(LeakageError):
            validate_split(split, s, e)
    else:
        validate_split(split, s, e)


def _spans_of(s, e):
    return list(zip(np.asarray(s).tolist(), np.asarray(e).tolist(), strict=True))


def test_hand_built_leaking_split_names_the_offenders():
    s = np.arange(10)
    e = s + 4
    split = Split(strategy="custom", train=list(range(6)), val=[6, 7, 8, 9], spans=_spans_of(s, e))
    # Train 2..5 end at 6..9, on or after val's first start 6.
    with pytest.raises(LeakageError, match=r"4 train sample.*train 2 \[2, 6\] vs val 6 \[6, 10\]"):
        validate_split(split, s, e)
    # With a purge of 2 a train end must be < 6 - 2: train 0 ([0, 4]) and 1 ([1, 5]) are not.
    purged = split.model_copy(
        update={"train": [0, 1], "purged": [2, 3, 4, 5], "params": {"purge": 2}}
    )
    with pytest.raises(LeakageError, match=r"train 0 \[0, 4\] vs val 6.*train 1 \[1, 5\]"):
        validate_split(purged, s, e)
    validate_split(purged.model_copy(update={"params": {"purge": 0}}), s, e)


def test_overlap_is_about_time_not_symbol():
    # Two symbols, same bar times: sample 0 (symbol A) and sample 1 (symbol B) share [0, 4].
    s = np.array([0, 0, 10, 10])
    e = s + 4
    split = Split(strategy="custom", train=[0, 2], test=[1, 3], spans=_spans_of(s, e))
    with pytest.raises(LeakageError, match=r"train 0 .* vs test 1"):
        validate_split(split)


@pytest.mark.parametrize(
    ("update", "match"),
    [
        ({"val": [3, 4]}, r"more than once.*sample 3 is in \['train', 'val'\]"),
        ({"test": [12]}, r"outside 0\.\.9: \[12\]"),
        ({"train": [0, 1, 2]}, r"in no part and not purged, first \[3\]"),
    ],
)
def test_structural_errors_are_named(update, match):
    s = np.arange(10)
    split = Split(
        strategy="custom",
        train=[0, 1, 2, 3],
        val=[5, 6],
        test=[8, 9],
        purged=[4, 7],
        spans=_spans_of(s, s),
    )
    validate_split(split)
    with pytest.raises(SplitError, match=match):
        validate_split(split.model_copy(update=update))


def test_split_made_for_other_samples_is_refused():
    s = np.arange(10)
    split = forward_chaining(s, s, val_fraction=0.2, test_fraction=0.2)
    with pytest.raises(SplitError, match="other samples"):
        validate_split(split, s, s + 1)


def test_fold_leak_is_reported_with_its_fold():
    s = np.arange(6)
    split = Split(
        strategy="custom",
        train=list(range(6)),
        folds=[
            Fold(train=[3, 4, 5], test=[0, 1]),
            Fold(train=[0, 1, 2], test=[3, 4]),
        ],
        spans=_spans_of(s, s + 1),
    )
    with pytest.raises(LeakageError, match=r"Fold 1: .*train 2 \[2, 3\] vs test 3"):
        validate_split(split)


def test_embargo_violations_are_refused():
    s = np.arange(20)
    split = forward_chaining(s, s, val_fraction=0.25, test_fraction=0.25, embargo=2)
    leaky = split.model_copy(update={"val": [11, 12, 13, 14], "purged": [10, 15, 16]})
    with pytest.raises(LeakageError, match=r"val sample.*\[11\]"):
        validate_split(leaky)
    kfold = purged_kfold(s, s, n_folds=2, embargo=3)
    fold = kfold.folds[0]
    moved = Fold(
        train=[*fold.train, 10], test=fold.test, purged=[i for i in fold.purged if i != 10]
    )
    with pytest.raises(LeakageError, match="embargo"):
        validate_split(kfold.model_copy(update={"folds": [moved, kfold.folds[1]]}))


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("name", ["random", "shuffle", "Random_Split"])
def test_random_split_is_refused(name):
    s = np.arange(50)
    with pytest.raises(LeakageError, match="forward-chaining"):
        make_split(name, s, s)


def test_unknown_strategy_and_parameter_are_named():
    s = np.arange(50)
    with pytest.raises(SplitError, match="Did you mean 'forward-chaining'"):
        make_split("forward_chain", s, s)
    with pytest.raises(SplitError, match="Did you mean 'n_folds'"):
        make_split("purged-kfold", s, s, n_fold=3)


def test_stratified_needs_time_independence():
    labels = ["a"] * 30 + ["b"] * 10
    with pytest.raises(LeakageError, match=r"serially correlated") as raised:
        stratified(labels, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert "purged-kfold" in str(raised.value)
    with pytest.raises(LeakageError):
        make_split("stratified", labels=labels, seed=0)


def test_stratified_keeps_class_shares_and_is_deterministic():
    labels = np.array(["a"] * 30 + ["b"] * 10)
    split = stratified(labels, val_fraction=0.2, test_fraction=0.2, seed=7, time_independent=True)
    assert split.time_independent
    assert split.counts == {"train": 24, "val": 8, "test": 8, "purged": 0}
    assert sorted(labels[split.test].tolist()) == ["a"] * 6 + ["b"] * 2
    validate_split(split)
    again = make_split(
        "stratified",
        labels=labels,
        val_fraction=0.2,
        test_fraction=0.2,
        seed=7,
        time_independent=True,
    )
    assert again.content_hash() == split.content_hash()
    other = stratified(labels, val_fraction=0.2, test_fraction=0.2, seed=8, time_independent=True)
    assert other.test != split.test


# --------------------------------------------------------------------------- units, identity


@pytest.mark.parametrize(
    ("amount", "unit", "bar", "expected"),
    [
        (3, "bars", None, 3),
        ("30min", "bars", "1m", 30),
        ("30min", "bars", "7min", 5),  # 30 / 7 = 4.3 rounds up: never a shorter gap
        (pd.Timedelta(hours=1), "bars", "5m", 12),
        (3, "ns", "5m", 3 * 300 * 10**9),
        ("30min", "ns", None, 1800 * 10**9),
    ],
)
def test_durations_to_units(amount, unit, bar, expected):
    assert durations_to_units(amount, unit=unit, bar_duration=bar) == expected


@pytest.mark.parametrize(
    ("amount", "unit", "bar"),
    [
        (3, "ns", None),
        ("30min", "bars", None),
        (-1, "bars", None),
        ("soon", "ns", None),
        (2.0, "ns", None),  # a float would otherwise read as 2 ns
        (3, "ns", 60),
    ],
)
def test_durations_to_units_rejects(amount, unit, bar):
    with pytest.raises(SplitError):
        durations_to_units(amount, unit=unit, bar_duration=bar)


@pytest.mark.parametrize(
    ("amount", "unit", "expected"),
    [
        ("105", "bars", 105),  # digits are a bar count, never 105 ns
        (" 12 ", "ns", 12 * 60 * 10**9),
        ("1h", "bars", 60),
        ("30min", "ns", 1800 * 10**9),
        ("0", "ns", 0),
    ],
)
def test_gap_text_reads_as_bars_or_a_duration(amount, unit, expected):
    assert durations_to_units(amount, unit=unit, bar_duration="1m", name="purge") == expected


@pytest.mark.parametrize("amount", ["-3", "-30min", "1.5", "soon", "", "1e3"])
def test_a_bad_gap_names_its_parameter(amount):
    with pytest.raises(SplitError, match="embargo"):
        durations_to_units(amount, unit="ns", bar_duration="1m", name="embargo")


def test_make_split_reads_a_bar_count_given_as_text():
    s = np.arange(0, 400, 10)
    as_text = make_split("forward-chaining", s, s + 9, purge="15", embargo="20")
    as_int = make_split("forward-chaining", s, s + 9, purge=15, embargo=20)
    assert as_text.content_hash() == as_int.content_hash()
    with pytest.raises(SplitError, match="purge"):
        make_split("forward-chaining", s, s + 9, purge="-15")


def test_make_split_converts_durations_and_timestamps():
    s = np.arange(40)
    by_bars = make_split("forward-chaining", s, s + 2, purge="3min", bar_duration="1m")
    assert by_bars.params["purge"] == 3 and by_bars.spans_unit == "bars"
    stamps = pd.Series(pd.date_range("2024-01-02", periods=40, freq="1min", tz="UTC"))
    ends = stamps + pd.Timedelta(minutes=2)
    by_time = make_split("walk-forward", stamps, ends, n_splits=2, test_size=5, purge="3min")
    assert by_time.spans_unit == "ns"
    assert by_time.params["purge"] == 180 * 10**9
    assert by_time.spans[0] == (stamps[0].value, ends[0].value)
    validate_split(by_time, stamps, ends)


def test_split_is_frozen_and_round_trips_with_its_hash():
    s = np.arange(30)
    split = purged_kfold(s, s + 3, n_folds=3, purge=1, name="demo")
    with pytest.raises(ValidationError):
        split.train = []  # type: ignore[misc]
    loaded = Split.model_validate_json(split.model_dump_json())
    assert loaded == split
    assert loaded.content_hash() == split.content_hash()
    assert split.model_copy(update={"name": "other"}).content_hash() == split.content_hash()
    moved = split.model_copy(update={"purged": [0]})
    assert moved.content_hash() != split.content_hash()


def test_bad_spans_are_refused():
    with pytest.raises(SplitError, match="end before they start"):
        forward_chaining([0, 5], [3, 4])
    with pytest.raises(SplitError, match="one of each"):
        purged_kfold([0, 1, 2], [0, 1])
    with pytest.raises(SplitError, match="purge"):
        forward_chaining(np.arange(10), np.arange(10), purge=-1)
