"""Bars in, validated and versioned; windows and leakage-free splits out."""

from moola.data._manifest import DatasetRef
from moola.data.registry import LabeledData, LabeledPart, Registry
from moola.data.schema import BAR_COLUMNS, make_bars
from moola.data.splits import Fold, Split, make_split, validate_split
from moola.data.ticks import TICK_BAR_COLUMNS, TickBarConfig, ticks_to_bars
from moola.data.validation import ValidationReport, validate_bars
from moola.data.windows import WindowSet, labeled_windows_table, window_starts

__all__ = [
    "BAR_COLUMNS",
    "TICK_BAR_COLUMNS",
    "DatasetRef",
    "Fold",
    "LabeledData",
    "LabeledPart",
    "Registry",
    "Split",
    "TickBarConfig",
    "ValidationReport",
    "WindowSet",
    "labeled_windows_table",
    "make_bars",
    "make_split",
    "ticks_to_bars",
    "validate_bars",
    "validate_split",
    "window_starts",
]
