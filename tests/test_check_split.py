"""check_split over every split strategy, with hypothesis over small random sample spans,
and the checker catches leaky, overlapping, incomplete and non-deterministic splits."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from moola.core.errors import SplitError
from moola.data.splits import LEAKAGE_FREE_STRATEGIES, STRATEGIES, Fold, Split, make_split
from moola.testing import check_split

PARAMS = {
    "forward-chaining": [{"val_fraction": 0.2, "test_fraction": 0.2}, {"val_fraction": 0.0}],
    "purged-kfold": [{"n_folds": 3}, {"n_folds": 4}],
    "walk-forward": [{"n_splits": 3}, {"n_splits": 2, "train_size": 6}],
}


def builder(strategy: str, params: dict, purge: int, embargo: int):
    if strategy == "stratified":

        def build(starts, ends):
            labels = [i % 3 for i in range(len(starts))]
            return make_split("stratified", labels=labels, time_independent=True, seed=7)

        return build

    def build(starts, ends):
        return make_split(strategy, starts, ends, purge=purge, embargo=embargo, **params)

    return build


@st.composite
def spans(draw):
    """12 to 40 samples in any order, starts 0..60 (ties allowed), lengths 0..6."""
    n = draw(st.integers(12, 40))
    starts = draw(st.lists(st.integers(0, 60), min_size=n, max_size=n))
    lengths = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    s = np.asarray(starts, dtype=np.int64)
    return s, s + np.asarray(lengths, dtype=np.int64)


CASES = [(strategy, params) for strategy in STRATEGIES for params in PARAMS.get(strategy, [{}])]


def test_every_strategy_is_covered():
    assert {strategy for strategy, _ in CASES} == set(STRATEGIES)


@pytest.mark.parametrize(("strategy", "params"), CASES, ids=[f"{s}-{p}" for s, p in CASES])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(samples=spans(), purge=st.integers(0, 3), embargo=st.integers(0, 3))
def test_every_strategy_passes(strategy, params, samples, purge, embargo):
    starts, ends = samples
    try:
        check_split(builder(strategy, params, purge, embargo), starts, ends)
    except SplitError:  # too few samples or distinct starts for these parts: refused up front
        assume(False)


def test_a_built_split_and_timestamps_are_accepted():
    stamps = pd.Series(pd.date_range("2024-03-01", periods=30, freq="1min", tz="UTC"))
    ends = stamps + pd.Timedelta(minutes=1)
    for strategy in ("forward-chaining", "purged-kfold", "walk-forward"):
        params = PARAMS[strategy][0]
        split = make_split(strategy, stamps, ends, purge="1min", embargo="1min", **params)
        check_split(split, stamps, ends)
        check_split(lambda s, e, st=strategy, p=params: make_split(st, s, e, **p), stamps, ends)


STARTS = np.arange(10)
ENDS = STARTS + 4  # windows of 5 bars: neighbours overlap


def leaky(**fields):
    return Split(
        strategy="forward-chaining",
        params={"purge": 0, "embargo": 0},
        spans=list(zip(STARTS.tolist(), ENDS.tolist(), strict=True)),
        **fields,
    )


def test_a_train_window_overlapping_test_fails():
    split = leaky(train=[0, 1, 2, 3, 4, 5, 6], test=[7, 8, 9])  # train 6 = [6, 10] vs 7 = [7, 11]
    with pytest.raises(AssertionError, match=r"overlap.*train 3 \[3, 7\] vs test 7"):
        check_split(lambda s, e: split, STARTS, ENDS)
    with pytest.raises(AssertionError, match="overlap"):
        check_split(split, STARTS, ENDS)


def test_a_train_window_within_purge_fails():
    starts = np.arange(0, 50, 5)
    ends = starts + 2  # disjoint, 2 bars apart
    split = make_split("forward-chaining", starts, ends, val_fraction=0.0, test_fraction=0.3)
    check_split(split, starts, ends)
    within = split.model_copy(update={"params": {**split.params, "purge": 3}})
    with pytest.raises(AssertionError, match="within purge=3"):
        check_split(lambda s, e: within, starts, ends)


def test_a_test_part_inside_the_embargo_fails():
    starts = np.arange(0, 50, 5)
    ends = starts + 2
    split = make_split("forward-chaining", starts, ends, val_fraction=0.0, test_fraction=0.3)
    embargoed = split.model_copy(update={"params": {**split.params, "embargo": 3}})
    with pytest.raises(AssertionError, match="embargo 3"):
        check_split(lambda s, e: embargoed, starts, ends)


def test_a_sample_in_two_parts_or_in_none_fails():
    starts, ends = np.arange(10) * 10, np.arange(10) * 10 + 1
    shared = leaky(train=[0, 1, 2, 3, 4, 5, 6, 7], test=[7, 8, 9]).model_copy(
        update={"spans": list(zip(starts.tolist(), ends.tolist(), strict=True))}
    )
    with pytest.raises(AssertionError, match=r"in both train and test, first \[7\]"):
        check_split(lambda s, e: shared, starts, ends)
    missing = shared.model_copy(update={"train": [0, 1, 2, 3, 4, 5]})
    with pytest.raises(AssertionError, match=r"in no part and not purged, first \[6\]"):
        check_split(lambda s, e: missing, starts, ends)
    outside = shared.model_copy(update={"train": [0, 1, 2, 3, 4, 5, 6, 12]})
    with pytest.raises(AssertionError, match=r"outside 0\.\.9"):
        check_split(lambda s, e: outside, starts, ends)


def test_folds_with_overlapping_tests_fail():
    starts, ends = np.arange(12) * 10, np.arange(12) * 10 + 1
    split = make_split("purged-kfold", starts, ends, n_folds=3)
    folds = list(split.folds)
    folds[1] = Fold(train=[0, 1, 2, 3, 8, 9, 10, 11], test=[3, 4, 5, 6, 7])
    bad = split.model_copy(update={"folds": folds})
    with pytest.raises(AssertionError, match="fold 1: 1 sample"):
        check_split(lambda s, e: bad, starts, ends)
    folds[1] = Fold(train=[0, 1, 2, 8, 9, 10, 11], test=[3, 4, 5, 6, 7])
    bad = split.model_copy(update={"folds": folds})
    with pytest.raises(AssertionError, match=r"in both fold 0 test and fold 1 test"):
        check_split(lambda s, e: bad, starts, ends)


def test_a_non_deterministic_split_fails():
    counter = itertools.count()

    def drifting(starts, ends):
        labels = [i % 2 for i in range(len(starts))]
        return make_split("stratified", labels=labels, time_independent=True, seed=next(counter))

    with pytest.raises(AssertionError, match="deterministic"):
        check_split(drifting, np.arange(40), np.arange(40))


def test_a_builder_that_modifies_its_inputs_fails():
    def sorting(starts, ends):
        split = make_split("forward-chaining", starts, ends)
        starts[0] = -1
        return split

    with pytest.raises(AssertionError, match="modified"):
        check_split(sorting, np.arange(20), np.arange(20))


# --------------------------------------------------------------------------- several symbols

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
TIME_PARAMS = {
    "forward-chaining": {},
    "purged-kfold": {"folds": 3},
    "walk-forward": {"folds": 3},
}


@pytest.fixture(scope="module")
def three_symbols(tmp_path_factory):
    """A 3-symbol synthetic market on one time grid and its windows (20 bars, stride 5)."""
    from moola.data.registry import Registry
    from moola.pipeline.datasets import synthesize_raw

    registry = Registry(tmp_path_factory.mktemp("three"))
    raw, _ = synthesize_raw(registry, "c3", n_bars=400, symbols=SYMBOLS, calendar="crypto")
    windows = registry.write_unlabeled("c3-windows", raw, length=20, stride=5)
    return registry, windows


def test_every_time_strategy_passes_on_three_symbols(three_symbols):
    from moola.pipeline.datasets import make_and_store_split

    registry, windows = three_symbols
    starts, ends = registry.sample_spans(windows)
    symbols = registry.sample_windows(windows)[0]
    assert sorted(set(symbols.tolist())) == list(SYMBOLS)
    assert set(TIME_PARAMS) == set(LEAKAGE_FREE_STRATEGIES)
    for strategy, params in TIME_PARAMS.items():
        for purge, embargo in ((0, 0), ("10min", 3)):
            split = make_and_store_split(
                registry, windows, strategy, purge=purge, embargo=embargo, **params
            )[2]
            assert split.symbols == symbols.tolist()
            check_split(split, starts, ends, symbols=symbols)
            check_split(split, starts, ends)  # the recorded symbols suffice


@pytest.mark.parametrize("strategy", LEAKAGE_FREE_STRATEGIES)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(samples=spans(), purge=st.integers(0, 3), embargo=st.integers(0, 3), seed=st.integers(0, 9))
def test_every_time_strategy_passes_with_symbols_of_any_times(
    strategy, samples, purge, embargo, seed
):
    """Symbols need not share a grid: each sample gets one of three at random."""
    starts, ends = samples
    symbols = np.asarray(SYMBOLS)[np.random.default_rng(seed).integers(0, 3, starts.size)]
    params = PARAMS[strategy][0]
    try:
        check_split(
            lambda s, e: make_split(
                strategy, s, e, symbols=symbols, purge=purge, embargo=embargo, **params
            ),
            starts,
            ends,
            symbols=symbols,
        )
    except SplitError:
        assume(False)


def _leaky_three_symbol_split(split, symbols, spans):
    """Move the first val sample of a symbol other than the last train sample's into train."""
    last_train = max(split.train, key=lambda i: spans[i][1])
    other = [i for i in split.val if symbols[i] != symbols[last_train]]
    first = min(other, key=lambda i: spans[i][0])
    return split.model_copy(
        update={"train": sorted([*split.train, first]), "val": sorted(set(split.val) - {first})}
    )


def test_a_leak_across_symbols_is_caught(three_symbols):
    registry, windows = three_symbols
    starts, ends = registry.sample_spans(windows)
    symbols = registry.sample_windows(windows)[0]
    split = make_split("forward-chaining", starts, ends, symbols=symbols)
    bad = _leaky_three_symbol_split(split, symbols, split.spans)
    with pytest.raises(AssertionError, match="leakage across symbols"):
        check_split(bad, starts, ends, symbols=symbols)
    with pytest.raises(AssertionError, match="leakage across symbols"):
        check_split(lambda s, e: bad, starts, ends)
    unrecorded = split.model_copy(update={"symbols": []})
    with pytest.raises(AssertionError, match="records none"):
        check_split(unrecorded, starts, ends, symbols=symbols)


def test_a_purged_kfold_train_sample_near_another_symbols_test_fold_is_caught():
    # A: [1, 2] [3, 4] ...; B: points at 0, 2, 4, ...  Fold 1 starts with B's sample at 8,
    # which A's [7, 8] reaches: A's own test samples start at 9, so only B's purges it.
    starts = np.r_[np.arange(1, 24, 2), np.arange(0, 24, 2)]
    ends = np.r_[np.arange(1, 24, 2) + 1, np.arange(0, 24, 2)]
    symbols = np.array(["A"] * 12 + ["B"] * 12)
    split = make_split("purged-kfold", starts, ends, n_folds=3, symbols=symbols)
    check_split(split, starts, ends, symbols=symbols)
    folds = list(split.folds)
    fold = folds[1]
    test_b = [i for i in fold.test if symbols[i] == "B"]
    lo = min(starts[i] for i in test_b)
    # the A sample ending exactly at B's first test start, put back into train
    back = [i for i in fold.purged if symbols[i] == "A" and ends[i] == lo]
    assert back, "the fold purges an A sample because of B's test start"
    folds[1] = Fold(
        train=sorted([*fold.train, back[0]]),
        test=fold.test,
        purged=sorted(set(fold.purged) - {back[0]}),
    )
    bad = split.model_copy(update={"folds": folds})
    with pytest.raises(AssertionError, match=r"fold 1: train sample .* of A .* B's test period"):
        check_split(lambda s, e: bad, starts, ends)
