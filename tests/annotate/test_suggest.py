"""Suggestions are the weak pattern labels of each window's own bars, with their rule named;
no bar after a window's end can change one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from moola.annotate.suggest import suggest
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features.labels import weak_pattern_labels


def _market():
    market = generate_market(SyntheticMarketConfig(n_bars=6_000, n_patterns=20, seed=1))
    return market.bars, market.patterns["start"].to_numpy(np.int64)


def test_suggestions_are_the_weak_labels_with_their_rule_as_source():
    bars, starts = _market()
    labels, sources = suggest(bars, starts, 105)
    expected = weak_pattern_labels(bars, starts, 105)
    assert sum(label is not None for label in labels) >= len(starts) // 2  # mostly labelled
    for label, source, want, rule in zip(
        labels, sources, expected["label"], expected["source"], strict=True
    ):
        if label is None:
            assert source is None and pd.isna(want)
        else:
            assert label == want and source == f"weak_pattern_labels/{rule}"


def test_no_bar_after_a_window_changes_its_suggestion():
    bars, starts = _market()
    labels, sources = suggest(bars, starts, 105)
    for i, start in enumerate(starts[:6]):
        later = bars.copy()
        after = np.arange(len(bars)) > start + 104
        rng = np.random.default_rng(i)
        for column in ("open", "high", "low", "close"):
            later.loc[after, column] = later.loc[after, column] * rng.uniform(0.5, 2.0)
        moved_labels, moved_sources = suggest(later, [start], 105)
        assert (moved_labels[0], moved_sources[0]) == (labels[i], sources[i])
