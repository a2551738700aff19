"""Bars in, validated and versioned; windows and leakage-free splits out."""

from moola.data.schema import BAR_COLUMNS, make_bars

__all__ = ["BAR_COLUMNS", "make_bars"]
