"""Weak-label suggestions for windows about to be labelled.

A suggestion is a first guess shown beside the chart, never a label: the annotator
confirms or overrides it, and the source it came from travels with it so a suggestion can
never pass for a human label. The guesses are the rule-based pattern labels of
``moola.features.labels.weak_pattern_labels`` (impulse then pullback -> ``retracement``,
impulse then a quiet tail -> ``consolidation``; otherwise the rules abstain and the
window has no suggestion).

No lookahead: each window's suggestion is computed on that window's own bars only (rows
``start .. start + length - 1``); no context bar shown after it, and no later bar of the
raw table, can change it (a test moves every later bar and checks).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from moola.features.labels import weak_pattern_labels

__all__ = ["SUGGESTION_SOURCE_PREFIX", "Suggestions", "suggest"]

SUGGESTION_SOURCE_PREFIX = "weak_pattern_labels"
"""Suggestion sources read ``weak_pattern_labels/<rule>``, e.g.
``weak_pattern_labels/rule:tight-tail``."""

Suggestions = tuple[list[str | None], list[str | None]]


def suggest(bars: pd.DataFrame, starts: Sequence[int] | np.ndarray, length: int) -> Suggestions:
    """``(labels, sources)``, one per window start in ``starts`` (rows of ``bars``).

    ``labels[i]`` is ``"consolidation"``, ``"retracement"`` or None (the rules abstain);
    ``sources[i]`` names the rule that fired (None with no suggestion). Windows shorter
    than two bars get no suggestion (the rules need a move).
    """
    positions = np.asarray(starts, dtype=np.int64)
    if positions.size == 0 or length < 2:
        return [None] * positions.size, [None] * positions.size
    # Only the window's bars are read: cut each window out first, so no bar after a
    # window's end is even passed to the rules.
    cols = ["timestamp", "open", "high", "low", "close"]
    rows = (positions[:, None] + np.arange(length)).ravel()
    cut = bars[cols].iloc[rows].reset_index(drop=True)
    table = weak_pattern_labels(cut, np.arange(positions.size) * length, length)
    labels = [None if pd.isna(value) else str(value) for value in table["label"]]
    sources = [
        None if pd.isna(value) else f"{SUGGESTION_SOURCE_PREFIX}/{value}"
        for value in table["source"]
    ]
    return labels, sources
