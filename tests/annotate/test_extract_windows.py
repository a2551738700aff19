"""Free windows and the draw: no candidate overlaps a labeled, queued or blacklisted span
(by bar times, per symbol), nor another candidate, and all lie inside the data.

The property test compares ``free_starts`` with a brute-force check of every row on small
random markets (several symbols, time gaps, spans between bars) and checks every draw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from moola.annotate.extract import blocked_starts, draw_windows, free_starts
from moola.data.schema import make_bars

MINUTE = 60 * 10**9


def _market(draw: st.DrawFn) -> pd.DataFrame:
    """One to three symbols of 1-minute bars with a few time gaps."""
    frames = []
    for k in range(draw(st.integers(1, 3))):
        n = draw(st.integers(5, 160))
        steps = np.ones(n, dtype=np.int64)
        for _ in range(draw(st.integers(0, 3))):
            steps[draw(st.integers(0, n - 1))] = draw(st.integers(2, 30))
        stamps = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
            np.cumsum(steps), unit="min"
        )
        close = np.linspace(100, 101, n)
        frames.append(
            make_bars(stamps, close, close + 1, close - 1, close, symbol=f"S{k}", timeframe="1m")
        )
    return pd.concat(frames, ignore_index=True)


@st.composite
def cases(draw: st.DrawFn):
    bars = _market(draw)
    length = draw(st.integers(2, 20))
    context = draw(st.integers(0, 4))
    first = int(bars["timestamp"].iloc[0].value)
    occupied = {}
    for source in ("labeled", "queued", "blacklisted"):
        spans = {}
        for symbol in bars["symbol"].unique():
            k = draw(st.integers(0, 3))
            a = np.array([first + draw(st.integers(-5, 200)) * MINUTE // 2 for _ in range(k)])
            b = a + np.array([draw(st.integers(0, 40)) * MINUTE // 2 for _ in range(k)])
            spans[str(symbol)] = (a.astype(np.int64), b.astype(np.int64))
        occupied[source] = spans
    return bars, length, context, occupied, draw(st.integers(1, 12)), draw(st.integers(0, 99))


def _brute_force(bars, length, context, occupied) -> set[int]:
    times = bars["timestamp"].astype("int64").to_numpy()
    symbols = bars["symbol"].to_numpy()
    ok = set()
    for s in range(len(bars)):
        e = s + length - 1
        lo, hi = s - context, e + context
        if lo < 0 or hi >= len(bars) or symbols[lo] != symbols[s] or symbols[hi] != symbols[s]:
            continue
        if np.any(np.diff(times[s : e + 1]) != MINUTE):
            continue  # a gap inside the window
        clash = False
        for spans in occupied.values():
            a, b = spans.get(symbols[s], (np.array([]), np.array([])))
            clash |= bool(np.any((times[s] <= b) & (times[e] >= a)))
        if not clash:
            ok.add(s)
    return ok


@given(cases())
def test_free_windows_are_exactly_those_overlapping_nothing_and_draws_never_overlap(case):
    bars, length, context, occupied, n, seed = case
    starts, excluded = free_starts(bars, length, context, occupied)
    assert set(starts.tolist()) == _brute_force(bars, length, context, occupied)
    assert set(excluded) == {"labeled", "queued", "blacklisted"}

    times = bars["timestamp"].astype("int64").to_numpy()
    symbols = bars["symbol"].to_numpy()
    weights = np.random.default_rng(seed).random(len(starts))
    chosen = draw_windows(starts, length, n, weights, np.random.default_rng(seed))
    assert len(chosen) == len(set(chosen.tolist())) <= n
    assert set(chosen.tolist()) <= set(starts.tolist())  # inside the data, free
    for i, s in enumerate(chosen):
        for t in chosen[i + 1 :]:
            same = symbols[s] == symbols[t]
            apart = times[s + length - 1] < times[t] or times[t + length - 1] < times[s]
            assert not same or apart, (s, t)
    # The greedy draw stops early only when every free window clashes with a chosen one.
    if len(chosen) < n:
        for s in starts:
            assert any(abs(int(s) - int(t)) < length for t in chosen)


def test_a_span_between_two_bars_blocks_the_windows_holding_both():
    times = np.arange(10, dtype=np.int64) * MINUTE
    blocked = blocked_starts(times, 3, np.array([4 * MINUTE + 1]), np.array([4 * MINUTE + 2]))
    assert np.flatnonzero(blocked).tolist() == [3, 4]  # windows [3..5] and [4..6]


def test_session_weights_draw_the_heavy_windows_far_more_often():
    starts = np.arange(0, 2000, 10, dtype=np.int64)  # 200 disjoint windows of 10 bars
    heavy = starts < 1000
    weights = np.where(heavy, 9.0, 1.0)
    picks = np.concatenate(
        [draw_windows(starts, 10, 10, weights, np.random.default_rng(seed)) for seed in range(50)]
    )
    share = float(np.mean(picks < 1000))
    assert 0.8 < share < 0.97  # 0.9 expected (without replacement a little less)
    uniform = np.concatenate(
        [draw_windows(starts, 10, 10, None, np.random.default_rng(seed)) for seed in range(50)]
    )
    assert 0.4 < float(np.mean(uniform < 1000)) < 0.6


def test_the_draw_equals_a_greedy_pass_over_every_window_in_key_order():
    """Crowded starts: the smallest keys alone do not give k windows, so the draw reads on
    into the rest; it must match one greedy pass over the fully sorted keys."""
    starts = np.arange(5_000, dtype=np.int64)
    weights = np.random.default_rng(1).uniform(0.1, 1.0, len(starts))
    got = draw_windows(starts, 50, 100, weights, np.random.default_rng(2))
    keys = np.random.default_rng(2).exponential(size=len(starts)) / weights
    taken, expected = np.zeros(5_100, dtype=bool), []
    for s in starts[np.argsort(keys, kind="stable")]:
        if not taken[s : s + 50].any():
            taken[s : s + 50] = True
            expected.append(s)
        if len(expected) == 100:
            break
    assert got.tolist() == expected
    assert 60 < len(got) < 100  # more than the head's share, fewer than a perfect packing
