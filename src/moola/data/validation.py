"""Check a bar table against the canonical rules; refuse it (strict) or repair it.

Every rule is checked on the whole table at once with numpy, and every violation is
collected (not only the first), so one run tells the user everything that is wrong with a
file. Schema problems (missing columns, wrong dtypes, no single parseable time frame, no
rows) cannot be repaired and raise at once. The rules, with the name each violation
carries:

``missing_value``
    ``timestamp`` is NaT, or ``symbol`` / ``timeframe`` is NA.
``non_finite``
    an OHLCV value is NaN or +-inf.
``non_positive_price``
    a price is zero or negative.
``negative_volume``
    volume is below zero.
``high_below_open_close`` / ``low_above_open_close``
    high < max(open, close), or low > min(open, close) (together they imply high >= low).
``off_grid``
    the timestamp is not a whole multiple of the bar duration counted from 1970-01-01
    UTC. For ``"1d"`` this means midnight UTC; a daily bar stamped 17:00 New York is off
    the grid. Because every on-grid timestamp is a multiple of the duration, the delta
    between two consecutive on-grid bars of a symbol is a whole number of bars: the
    spacing rule follows from this one and is not reported separately. Gaps (missing
    bars) are allowed here; ``moola.data.calendars.gap_report`` counts them.
``symbol_order``
    a row's symbol sorts before the previous row's: rows must be grouped by symbol in
    sorted order (then by time).
``duplicate_timestamp``
    the row has the same symbol and timestamp as an earlier row.
``non_monotonic``
    the row's timestamp is earlier than a preceding row of the same symbol (and is not a
    duplicate of one).

A table may also hold some of the declared extra columns of ``moola.data.schema``
(``EXTRA_COLUMNS``: ``trades``, ``vwap``, ``bid``, ``ask``, ``spread``, ``filled``, the
statistics of bars built from ticks), each with its dtype; they are kept, in declared
order, after the canonical columns, and checked where the columns a rule needs are present:

``non_finite_extra``
    ``vwap`` is NaN or +-inf, or ``bid`` / ``ask`` / ``spread`` is +-inf (a quote may be
    NaN: none known yet, or a side left empty).
``negative_trades``
    ``trades`` is below zero.
``vwap_outside_range``
    ``vwap`` is outside [low, high] on a bar with trades (``trades`` > 0; without a
    ``trades`` column, ``volume`` > 0), beyond a relative tolerance of 1e-9.
``crossed_quote``
    ``bid`` is above ``ask``.
``spread_mismatch``
    ``spread`` differs from ``ask - bid`` by more than 1e-9 of the price, or is not NaN
    while either side is missing.
``filled_with_volume``
    a ``filled`` bar (no trade in it: the last close carried) has volume or trades.

Any other column is refused by name in strict mode (repair drops it and records that).

Rows are 0-based positions in the table as given. Strict mode raises
``BarValidationError`` on any violation. Repair mode drops rows breaking a value rule (the
extra columns' rules included) or
off the grid, sorts by (symbol, timestamp) stably, drops exact duplicate rows, keeps the
first occurrence of duplicate timestamps with different values, re-validates, and records
each action in the report (which goes verbatim into the dataset manifest). Invalid rows
are dropped *before* duplicates are resolved, so a valid bar is kept in preference to an
invalid one with the same timestamp.

Written by hand because no library checks OHLC bar semantics (pandera and friends check
generic column constraints, not per-symbol ordering on a time grid), and the checks must
stay vectorised for tables of tens of millions of bars.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from moola.core.errors import BarValidationError, ConfigError
from moola.core.timeframes import parse_timeframe
from moola.data.schema import (
    BAR_COLUMNS,
    EXTRA_COLUMNS,
    NUMERIC_COLUMNS,
    PRICE_COLUMNS,
    extra_columns,
)

__all__ = [
    "FATAL_RULES",
    "RULES",
    "ValidationReport",
    "Violation",
    "validate_bars",
]

RULES: dict[str, str] = {
    "missing_value": "timestamp is NaT or symbol/timeframe is NA",
    "non_finite": "an OHLCV value is NaN or infinite",
    "non_positive_price": "a price is zero or negative",
    "negative_volume": "volume is negative",
    "high_below_open_close": "high is below max(open, close)",
    "low_above_open_close": "low is above min(open, close)",
    "non_finite_extra": "vwap is NaN or infinite, or bid/ask/spread is infinite",
    "negative_trades": "trades is negative",
    "vwap_outside_range": "vwap is outside [low, high] on a bar with trades",
    "crossed_quote": "bid is above ask",
    "spread_mismatch": "spread is not ask - bid (NaN when either side is missing)",
    "filled_with_volume": "a filled bar (no trade in it) has volume or trades",
    "off_grid": "timestamp is not a multiple of the bar duration since 1970-01-01 UTC",
    "symbol_order": "rows are not grouped by symbol in sorted order",
    "duplicate_timestamp": "same symbol and timestamp as an earlier row",
    "non_monotonic": "timestamp is earlier than a preceding row of the same symbol",
}
"""Row rules, in the order they are reported, with a one-line description."""

FATAL_RULES: dict[str, str] = {
    "schema": "a column is missing, unknown or has the wrong dtype",
    "timeframe": "the timeframe column does not hold exactly one parseable time frame",
    "empty": "the table has no rows",
}
"""Rules that cannot be repaired: they raise at once, in either mode (row is -1)."""

_VALUE_RULES = (
    "missing_value",
    "non_finite",
    "non_positive_price",
    "negative_volume",
    "high_below_open_close",
    "low_above_open_close",
    "non_finite_extra",
    "negative_trades",
    "vwap_outside_range",
    "crossed_quote",
    "spread_mismatch",
    "filled_with_volume",
)
_EXPECTED_DTYPES = {
    "timestamp": "datetime64[ns, UTC]",
    **dict.fromkeys(NUMERIC_COLUMNS, "float64"),
    "symbol": "string",
    "timeframe": "string",
    **EXTRA_COLUMNS,
}
# Relative tolerance of the vwap range and spread checks: float rounding of a mean of
# many trades, or of ask - bid computed elsewhere, is no violation.
_TOLERANCE = 1e-9
_MESSAGE_VIOLATIONS = 10
_REPAIR_ROWS = 100
_FIX = "Use mode='repair' to sort, drop exact duplicates and drop invalid rows, or fix the file."


@dataclass(frozen=True)
class Violation:
    """One broken rule at one row (``row`` is the 0-based position in the input table;
    -1 for table-level problems)."""

    rule: str
    row: int
    column: str | None
    value: object
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (the value as a number, string or None)."""
        return {
            "rule": self.rule,
            "row": self.row,
            "column": self.column,
            "value": _plain(self.value),
            "message": self.message,
        }


@dataclass(frozen=True)
class ValidationReport:
    """What validation found and what repair did.

    ``violations`` are those found in the input (sorted by row), at most
    ``max_violations_per_rule`` of each rule; ``violation_counts`` has the exact totals.
    ``repairs`` are plain dicts (action, count, first input rows, ...) in the order done.
    """

    n_input: int
    n_output: int
    violations: tuple[Violation, ...]
    repairs: tuple[dict, ...]
    violation_counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        """Number of violations per rule (exact, even when the list was capped)."""
        if self.violation_counts:
            return dict(self.violation_counts)
        counts: dict[str, int] = {}
        for violation in self.violations:
            counts[violation.rule] = counts.get(violation.rule, 0) + 1
        return counts

    def to_dict(self, max_violations: int | None = 100) -> dict[str, Any]:
        """JSON-serialisable form for manifests; lists at most ``max_violations``."""
        listed = self.violations if max_violations is None else self.violations[:max_violations]
        return {
            "n_input": self.n_input,
            "n_output": self.n_output,
            "summary": self.summary(),
            "violations": [violation.to_dict() for violation in listed],
            "violations_listed": len(listed),
            "repairs": [dict(repair) for repair in self.repairs],
        }


def validate_bars(
    bars: pd.DataFrame,
    *,
    mode: Literal["strict", "repair"] = "strict",
    source: str = "<bars>",
    max_violations_per_rule: int | None = 10_000,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check ``bars`` against the canonical bar rules and return a canonical table.

    Parameters
    ----------
    bars : pandas.DataFrame
        A bar table (see ``moola.data.schema``), in any row order.
    mode : {"strict", "repair"}, default "strict"
        ``"strict"`` raises ``BarValidationError`` if any rule is broken; ``"repair"``
        drops, sorts and de-duplicates (see the module docstring) and records what it did.
    source : str, default "<bars>"
        Name of the file the bars came from, used in error messages.
    max_violations_per_rule : int or None, default 10_000
        Keep at most this many ``Violation`` objects per rule (counts stay exact), so a
        wholly wrong 10M-row file does not build millions of objects. None keeps all.

    Returns
    -------
    (pandas.DataFrame, ValidationReport)
        The bars in canonical column order, then the extra columns they hold in declared
        order, with a fresh RangeIndex (a clean input comes back equal to itself), and
        the report.
    """
    if mode not in ("strict", "repair"):
        raise ConfigError(f"Unknown validation mode {mode!r}. Use 'strict' or 'repair'.")
    extra = _check_schema(bars, source, allow_extra=mode == "repair")
    columns = [*BAR_COLUMNS, *extra_columns(bars)]
    timeframe = _check_timeframe(bars, source)
    arrays = _Arrays.of(bars, timeframe)
    findings = _find_violations(arrays)
    counts = {rule: n for rule in RULES if (n := _count(findings, rule))}
    violations = _build_violations(findings, arrays, max_violations_per_rule)

    if mode == "strict":
        if counts:
            raise BarValidationError(
                _strict_message(source, counts, violations), violations, param="mode"
            )
        out = bars.loc[:, columns].reset_index(drop=True)
        report = ValidationReport(len(bars), len(out), (), (), {})
        return out, report

    positions, repairs = _repair_positions(arrays, findings)
    if extra:
        repairs.insert(
            0, {"action": "dropped_extra_columns", "count": len(extra), "columns": extra}
        )
    if len(positions) == 0:
        raise BarValidationError(
            f"Bars from {source}: repair left no rows ({len(bars)} rows in, violations "
            f"{_format_counts(counts)}). Fix the file: every row broke a rule.",
            violations,
        )
    out = bars.take(positions).loc[:, columns].reset_index(drop=True)
    leftover = _find_violations(_Arrays.of(out, timeframe))
    if leftover:  # a bug in repair, not in the user's data
        raise RuntimeError(f"repair left violations: {[f.rule for f in leftover]}")
    report = ValidationReport(len(bars), len(out), tuple(violations), tuple(repairs), counts)
    return out, report


# --- schema -----------------------------------------------------------------------------


def _dtype_ok(column: str, dtype: Any) -> bool:
    if column == "timestamp":
        return (
            isinstance(dtype, pd.DatetimeTZDtype)
            and dtype.unit == "ns"
            and str(dtype.tz) in ("UTC", "utc")
        )
    if column in NUMERIC_COLUMNS:
        return dtype == np.float64
    if column in EXTRA_COLUMNS:
        return isinstance(dtype, np.dtype) and dtype == np.dtype(EXTRA_COLUMNS[column])
    return isinstance(dtype, pd.StringDtype)


def _check_schema(bars: pd.DataFrame, source: str, *, allow_extra: bool) -> list[str]:
    """Raise on missing columns or wrong dtypes; return the unknown column names (neither
    canonical nor declared extras)."""
    if not isinstance(bars, pd.DataFrame):
        raise BarValidationError(
            f"Bars from {source}: expected a pandas DataFrame, got {type(bars).__name__}."
        )
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    extra = [str(c) for c in bars.columns if c not in BAR_COLUMNS and c not in EXTRA_COLUMNS]
    repeated = sorted({str(c) for c in bars.columns[bars.columns.duplicated()]})
    wrong = [
        (c, str(bars[c].dtype))
        for c in (*BAR_COLUMNS, *EXTRA_COLUMNS)
        if c in bars.columns and c not in repeated and not _dtype_ok(c, bars[c].dtype)
    ]
    problems: list[Violation] = []
    for column in missing:
        problems.append(Violation("schema", -1, column, None, f"column {column!r} is missing"))
    for column in repeated:
        problems.append(Violation("schema", -1, column, None, f"column {column!r} appears twice"))
    for column, dtype in wrong:
        problems.append(
            Violation(
                "schema",
                -1,
                column,
                dtype,
                f"column {column!r} has dtype {dtype}, expected {_EXPECTED_DTYPES.get(column)}",
            )
        )
    if extra and not allow_extra:
        for column in extra:
            problems.append(Violation("schema", -1, column, None, f"unexpected column {column!r}"))
    if problems:
        expected = ", ".join(f"{c} {_EXPECTED_DTYPES[c]}" for c in BAR_COLUMNS)
        extras = ", ".join(f"{c} {dtype}" for c, dtype in EXTRA_COLUMNS.items())
        details = "; ".join(p.message for p in problems)
        raise BarValidationError(
            f"Bars from {source} do not have the canonical schema: {details}. Expected exactly "
            f"the columns {expected}, optionally followed by any of the extra columns "
            f"{extras}. Build the table with moola.data.make_bars, or fix the "
            "source's column mapping (timestamps must be tz-aware UTC, e.g. "
            "pd.to_datetime(..., utc=True).astype('datetime64[ns, UTC]')).",
            problems,
        )
    if len(bars) == 0:
        raise BarValidationError(
            f"Bars from {source}: the table has no rows. Check the file and any date filter.",
            [Violation("empty", -1, None, 0, "the table has no rows")],
        )
    return extra


def _check_timeframe(bars: pd.DataFrame, source: str) -> str:
    """The table's one time frame; raise if there are several, none, or it does not parse."""
    column = bars["timeframe"]
    values = [str(v) for v in column.dropna().unique()]
    if len(values) == 1:
        try:
            parse_timeframe(values[0])
        except ConfigError as error:
            message = f"Bars from {source}: column 'timeframe' holds {values[0]!r}. {error}"
            raise BarValidationError(
                message, [Violation("timeframe", -1, "timeframe", values[0], str(error))]
            ) from None
        return values[0]
    if not values:
        message = "column 'timeframe' has no value (all rows are NA)"
    else:
        counts = column.value_counts()
        listed = ", ".join(f"{v!r} ({int(n)} rows)" for v, n in counts.items())
        message = f"column 'timeframe' holds {len(values)} values: {listed}"
    raise BarValidationError(
        f"Bars from {source}: {message}. A bar table holds exactly one time frame; split the "
        "file by time frame or set the right one in the source options.",
        [Violation("timeframe", -1, "timeframe", values, message)],
    )


# --- row rules --------------------------------------------------------------------------


class _Arrays(NamedTuple):
    """The table's columns as numpy arrays, with symbols as sorted integer codes."""

    t: np.ndarray  # int64 ns since epoch; NaT where t_na
    t_na: np.ndarray  # bool
    codes: np.ndarray  # int64 symbol codes in sorted symbol order, -1 for NA
    symbols: np.ndarray  # code -> symbol
    tf_na: np.ndarray  # bool
    values: dict[str, np.ndarray]  # float64 OHLCV
    extras: dict[str, np.ndarray]  # the declared extra columns present, with their dtypes
    timeframe: str
    step: int  # bar duration in ns

    @classmethod
    def of(cls, bars: pd.DataFrame, timeframe: str) -> _Arrays:
        stamps = pd.DatetimeIndex(bars["timestamp"])
        codes, symbols = pd.factorize(bars["symbol"], sort=True)
        return cls(
            t=stamps.asi8,
            t_na=stamps.isna(),
            codes=codes.astype(np.int64, copy=False),
            symbols=np.asarray(symbols, dtype=object),
            tf_na=bars["timeframe"].isna().to_numpy(),
            values={c: bars[c].to_numpy(dtype=np.float64) for c in NUMERIC_COLUMNS},
            extras={c: bars[c].to_numpy() for c in extra_columns(bars)},
            timeframe=timeframe,
            step=parse_timeframe(timeframe).value,
        )


class _Finding(NamedTuple):
    """All rows breaking one rule in one column; ``detail`` holds per-row message context."""

    rule: str
    column: str | None
    rows: np.ndarray
    detail: tuple[np.ndarray, ...] = ()


def _find_violations(a: _Arrays) -> list[_Finding]:
    """Every violation of every row rule, as row arrays (no per-row Python)."""
    found: list[_Finding] = []

    def add(rule: str, column: str | None, mask: np.ndarray, *detail: np.ndarray) -> None:
        if mask.any():
            rows = np.flatnonzero(mask)
            found.append(_Finding(rule, column, rows, tuple(d[rows] for d in detail)))

    add("missing_value", "timestamp", a.t_na)
    add("missing_value", "symbol", a.codes < 0)
    add("missing_value", "timeframe", a.tf_na)

    v = a.values
    finite = {c: np.isfinite(v[c]) for c in NUMERIC_COLUMNS}
    all_finite = all(f.all() for f in finite.values())
    for column in NUMERIC_COLUMNS:
        if not all_finite:
            add("non_finite", column, ~finite[column])
    for column in PRICE_COLUMNS:
        add(
            "non_positive_price",
            column,
            v[column] <= 0 if all_finite else (v[column] <= 0) & finite[column],
        )
    add(
        "negative_volume",
        "volume",
        v["volume"] < 0 if all_finite else (v["volume"] < 0) & finite["volume"],
    )
    # Comparisons with NaN are False, and inf rows are already reported as non_finite.
    top = np.maximum(v["open"], v["close"])
    bottom = np.minimum(v["open"], v["close"])
    prices_finite = (
        None if all_finite else np.logical_and.reduce([finite[c] for c in PRICE_COLUMNS])
    )
    high_bad = v["high"] < top
    low_bad = v["low"] > bottom
    if prices_finite is not None:
        high_bad &= prices_finite
        low_bad &= prices_finite
    add("high_below_open_close", "high", high_bad, top)
    add("low_above_open_close", "low", low_bad, bottom)
    if a.extras:
        found.extend(_extra_findings(a, finite))

    add("off_grid", "timestamp", (a.t % a.step != 0) & ~a.t_na)
    found.extend(_order_findings(a))
    return found


def _extra_findings(a: _Arrays, finite: dict[str, np.ndarray]) -> list[_Finding]:
    """The extra columns' rules, each where the columns it needs are present. A value
    broken in a way another rule reports (NaN or inf) is not reported again here."""
    found: list[_Finding] = []

    def add(rule: str, column: str, mask: np.ndarray, *detail: np.ndarray) -> None:
        if mask.any():
            rows = np.flatnonzero(mask)
            found.append(_Finding(rule, column, rows, tuple(d[rows] for d in detail)))

    x, v = a.extras, a.values
    for column in ("vwap", "bid", "ask", "spread"):
        if column in x:
            bad = ~np.isfinite(x[column]) if column == "vwap" else np.isinf(x[column])
            add("non_finite_extra", column, bad)
    if "trades" in x:
        add("negative_trades", "trades", x["trades"] < 0)
    if "vwap" in x:
        vwap, low, high = x["vwap"], v["low"], v["high"]
        traded = x["trades"] > 0 if "trades" in x else v["volume"] > 0
        outside = (vwap < low - _TOLERANCE * np.abs(low)) | (
            vwap > high + _TOLERANCE * np.abs(high)
        )
        checked = traded & np.isfinite(vwap) & finite["low"] & finite["high"]
        add("vwap_outside_range", "vwap", outside & checked, low, high)
    if "bid" in x and "ask" in x:
        bid, ask = x["bid"], x["ask"]
        both = np.isfinite(bid) & np.isfinite(ask)
        add("crossed_quote", "bid", (bid > ask) & both, ask)
        if "spread" in x:
            spread = x["spread"]
            with np.errstate(invalid="ignore"):  # inf - inf where a quote is inf
                expected = np.where(both, ask - bid, np.nan)
                tolerance = _TOLERANCE * np.maximum(np.abs(bid), np.abs(ask))
                close = np.abs(spread - expected) <= tolerance
            wrong = np.where(both, ~close, ~np.isnan(spread))
            quoted = ~(np.isinf(bid) | np.isinf(ask) | np.isinf(spread))
            add("spread_mismatch", "spread", wrong & quoted, expected)
    if "filled" in x:
        trades = x["trades"] if "trades" in x else np.zeros(len(a.t), dtype=np.int64)
        busy = ((v["volume"] != 0) & finite["volume"]) | (trades != 0)
        add("filled_with_volume", "filled", x["filled"] & busy, trades)
    return found


def _order_findings(a: _Arrays) -> list[_Finding]:
    """symbol_order, duplicate_timestamp and non_monotonic, on rows with a timestamp and
    symbol. The common case (already sorted, no duplicates) costs two comparisons."""
    keyed = ~a.t_na & (a.codes >= 0)
    all_keyed = bool(keyed.all())
    pos = np.arange(len(a.t)) if all_keyed else np.flatnonzero(keyed)
    c = a.codes if all_keyed else a.codes[pos]
    t = a.t if all_keyed else a.t[pos]
    if len(c) < 2:
        return []
    if _strictly_ordered(c, t):
        return []

    found: list[_Finding] = []
    behind = np.flatnonzero(c[1:] < c[:-1]) + 1
    if len(behind):
        found.append(
            _Finding(
                "symbol_order",
                "symbol",
                pos[behind],
                (a.symbols[c[behind]], a.symbols[c[behind - 1]]),
            )
        )
    order, start, first = _runs(c, t)
    dup = order[~start]  # positions within the keyed subset, not first of their key
    is_dup = np.zeros(len(c), dtype=bool)
    is_dup[dup] = True
    if len(dup):
        original = order[first[~start]]
        by_row = np.argsort(dup, kind="stable")  # lexsort order -> input order
        rows, original = pos[dup[by_row]], pos[original[by_row]]
        exact = _rows_equal(a, rows, original)
        found.append(_Finding("duplicate_timestamp", "timestamp", rows, (original, exact)))
    running_max = pd.Series(t).groupby(c).cummax().to_numpy()
    late = (t < running_max) & ~is_dup
    if late.any():
        rows = np.flatnonzero(late)
        found.append(_Finding("non_monotonic", "timestamp", pos[rows], (running_max[rows],)))
    return found


def _strictly_ordered(codes: np.ndarray, t: np.ndarray) -> bool:
    """True when rows are sorted by symbol and strictly increasing in time within each."""
    ahead = codes[1:] > codes[:-1]
    return bool((ahead | ((codes[1:] == codes[:-1]) & (t[1:] > t[:-1]))).all())


def _runs(codes: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable order by (symbol, time), whether each sorted row starts a new key, and for
    each sorted row the sorted index of its key's first (earliest input) row."""
    n = len(codes)
    if n < 2 or _strictly_ordered(codes, t):
        everything = np.arange(n)
        return everything, np.ones(n, dtype=bool), everything
    order = np.lexsort((t, codes))  # lexsort is stable: ties keep input order
    cs, ts = codes[order], t[order]
    start = np.ones(len(order), dtype=bool)
    start[1:] = (cs[1:] != cs[:-1]) | (ts[1:] != ts[:-1])
    first = np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))
    return order, start, first


def _rows_equal(a: _Arrays, rows: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Whether input rows ``rows`` and ``other`` hold the same values (NaN equals NaN)."""
    equal = a.tf_na[rows] == a.tf_na[other]
    for column in NUMERIC_COLUMNS:
        x, y = a.values[column][rows], a.values[column][other]
        equal &= (x == y) | (np.isnan(x) & np.isnan(y))
    for values in a.extras.values():
        x, y = values[rows], values[other]
        equal &= (x == y) | (np.isnan(x) & np.isnan(y)) if values.dtype.kind == "f" else x == y
    return equal


def _count(findings: list[_Finding], rule: str) -> int:
    return sum(len(f.rows) for f in findings if f.rule == rule)


# --- violations and messages ------------------------------------------------------------


def _stamp(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), tz="UTC")


def _formatter(a: _Arrays, rule: str, column: str | None) -> Callable[..., tuple[object, str]]:
    """For one rule and column: (row, *detail) -> (value, message)."""
    v = a.values
    if rule == "missing_value":
        return lambda row: (None, f"{column} is missing")
    if rule == "non_finite":
        return lambda row: (float(v[column][row]), f"{column} is {v[column][row]}")
    if rule == "non_positive_price":
        return lambda row: (float(v[column][row]), f"{column} {v[column][row]} is not > 0")
    if rule == "negative_volume":
        return lambda row: (float(v[column][row]), f"volume {v[column][row]} is negative")
    if rule == "high_below_open_close":
        return lambda row, top: (
            float(v["high"][row]),
            f"high {v['high'][row]} is below max(open, close) = {top}",
        )
    if rule == "low_above_open_close":
        return lambda row, bottom: (
            float(v["low"][row]),
            f"low {v['low'][row]} is above min(open, close) = {bottom}",
        )
    x = a.extras
    if rule == "non_finite_extra":
        return lambda row: (float(x[column][row]), f"{column} is {x[column][row]}")
    if rule == "negative_trades":
        return lambda row: (int(x["trades"][row]), f"trades {x['trades'][row]} is negative")
    if rule == "vwap_outside_range":
        return lambda row, low, high: (
            float(x["vwap"][row]),
            f"vwap {x['vwap'][row]} is outside [low, high] = [{low}, {high}] on a bar with trades",
        )
    if rule == "crossed_quote":
        return lambda row, ask: (
            float(x["bid"][row]),
            f"bid {x['bid'][row]} is above ask {ask}",
        )
    if rule == "spread_mismatch":
        return lambda row, expected: (
            float(x["spread"][row]),
            f"spread {x['spread'][row]} is not ask - bid = {expected}"
            if np.isfinite(expected)
            else f"spread {x['spread'][row]} is given but bid or ask is missing (must be NaN)",
        )
    if rule == "filled_with_volume":
        return lambda row, trades: (
            float(v["volume"][row]),
            f"filled bar has volume {v['volume'][row]} and {trades} trades; a filled bar "
            "carries the last close with no trade in it",
        )
    if rule == "off_grid":
        return lambda row: (
            _stamp(a.t[row]),
            f"timestamp {_stamp(a.t[row])} is not on the {a.timeframe} grid "
            f"(a whole number of {a.timeframe} bars since 1970-01-01 UTC)",
        )
    if rule == "symbol_order":
        return lambda row, symbol, before: (
            str(symbol),
            f"symbol {symbol!r} comes after {before!r}: rows must be sorted by symbol, then time",
        )
    if rule == "duplicate_timestamp":
        return lambda row, original, exact: (
            _stamp(a.t[row]),
            f"symbol {a.symbols[a.codes[row]]!r} already has timestamp {_stamp(a.t[row])} at "
            f"row {original} ({'exact copy' if exact else 'different values'})",
        )
    if rule == "non_monotonic":
        return lambda row, latest: (
            _stamp(a.t[row]),
            f"timestamp {_stamp(a.t[row])} is earlier than {_stamp(latest)}, already seen "
            f"for symbol {a.symbols[a.codes[row]]!r}",
        )
    raise AssertionError(rule)


def _build_violations(findings: list[_Finding], a: _Arrays, cap: int | None) -> list[Violation]:
    """Violation objects sorted by row (then rule order), at most ``cap`` per rule."""
    rank = {rule: i for i, rule in enumerate(RULES)}
    built: list[Violation] = []
    for rule in RULES:
        parts = [f for f in findings if f.rule == rule]
        if not parts:
            continue
        rows = np.concatenate([f.rows for f in parts])
        which = np.concatenate([np.full(len(f.rows), i) for i, f in enumerate(parts)])
        index = np.concatenate([np.arange(len(f.rows)) for f in parts])
        keep = np.argsort(rows, kind="stable")[:cap]
        formatters = [_formatter(a, rule, f.column) for f in parts]
        for k in keep:
            part = parts[which[k]]
            row = int(rows[k])
            value, message = formatters[which[k]](row, *(d[index[k]] for d in part.detail))
            built.append(Violation(rule, row, part.column, value, message))
    built.sort(key=lambda x: (x.row, rank[x.rule]))
    return built


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{rule} {n}" for rule, n in counts.items())


def _strict_message(source: str, counts: dict[str, int], violations: list[Violation]) -> str:
    total = sum(counts.values())
    lines = [
        f"Bars from {source} break {len(counts)} validation rule(s), {total} violation(s) in "
        f"all: {_format_counts(counts)}. First violations:"
    ]
    for violation in violations[:_MESSAGE_VIOLATIONS]:
        lines.append(
            f"  row {violation.row}, column {violation.column!r}, value "
            f"{_show(violation.value)}: {violation.message}"
        )
    listed = min(len(violations), _MESSAGE_VIOLATIONS)
    if total > listed:
        lines.append(f"  ... and {total - listed} more (see .violations).")
    lines.append(_FIX)
    return "\n".join(lines)


def _show(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return repr(value) if isinstance(value, str) else str(value)


def _plain(value: object) -> object:
    """A JSON-friendly copy of a violation value."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- repair -----------------------------------------------------------------------------


def _rows_listed(rows: np.ndarray) -> list[int]:
    return [int(r) for r in np.sort(rows)[:_REPAIR_ROWS]]


def _repair_positions(a: _Arrays, findings: list[_Finding]) -> tuple[np.ndarray, list[dict]]:
    """Input positions of the repaired table, in output order, and the actions taken."""
    n = len(a.t)
    repairs: list[dict] = []
    invalid = np.zeros(n, dtype=bool)
    by_rule: dict[str, int] = {}
    for f in findings:
        if f.rule in _VALUE_RULES:
            invalid[f.rows] = True
            by_rule[f.rule] = by_rule.get(f.rule, 0) + len(f.rows)
    if invalid.any():
        rows = np.flatnonzero(invalid)
        repairs.append(
            {
                "action": "dropped_invalid_rows",
                "count": len(rows),
                "by_rule": by_rule,
                "rows": _rows_listed(rows),
            }
        )
    off_grid = np.zeros(n, dtype=bool)
    for f in findings:
        if f.rule == "off_grid":
            off_grid[f.rows] = True
    off_grid &= ~invalid
    if off_grid.any():
        rows = np.flatnonzero(off_grid)
        repairs.append(
            {"action": "dropped_off_grid", "count": len(rows), "rows": _rows_listed(rows)}
        )

    kept = np.flatnonzero(~(invalid | off_grid))
    order, start, first = _runs(a.codes[kept], a.t[kept])
    moved = kept[order] != kept
    if moved.any():
        repairs.append(
            {
                "action": "sorted",
                "by": ["symbol", "timestamp"],
                "count": int(moved.sum()),
                "rows": _rows_listed(kept[moved]),
            }
        )
    dup = kept[order[~start]]
    if len(dup):
        original = kept[order[first[~start]]]
        exact = _rows_equal(a, dup, original)
        for action, mask in (
            ("dropped_exact_duplicates", exact),
            ("dropped_conflicting_duplicates", ~exact),
        ):
            if mask.any():
                entry = {
                    "action": action,
                    "count": int(mask.sum()),
                    "rows": _rows_listed(dup[mask]),
                }
                if action == "dropped_conflicting_duplicates":
                    entry["kept"] = "first occurrence"
                repairs.append(entry)
    return kept[order[start]], repairs
