"""Labels files: a person's (or tool's) labels of chart windows, read and checked row by row.

A labels file (CSV or Parquet) has a ``label`` column and either ``start`` (the bar
position of the window's first bar) or ``start_ts`` (its open time, plus ``symbol`` when
the bars hold several), and optionally ``grade`` (A-D; D blacklists the row) and
``source``. A file with ``timestamp`` instead, as ``moola labels build --out`` writes
(one label per bar, describing what follows it), gives each window's *last* bar: the
window ends at the labelled bar (``moola.data.label_ends``), and rows whose label or
``horizon_end_ts`` is missing, or where no complete window ends, are left out and counted.

Every problem is a ``SourceError`` naming the file, the column and the rows
(CSV lines counted with the header as line 1, Parquet rows from 1), because these files
are typed or exported by hand and a bad cell must be easy to find.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from moola.core.errors import SourceError
from moola.data.label_ends import windows_ending_at
from moola.data.sources._common import Where
from moola.data.windows import GRADES

BLACKLISTED_GRADE = "D"
_PARQUET = (".parquet", ".pq")


@dataclass(frozen=True)
class LabelRows:
    """The rows of a labels file that become windows (grade D rows dropped).

    ``horizons`` (UTC open time of the last bar each label looks at) and ``skipped``
    (rows left out, by reason: see ``moola.data.label_ends``) come from a ``timestamp``
    file; a ``start``/``start_ts`` file has none and skips nothing.
    """

    starts: np.ndarray
    labels: list
    grades: list | None
    sources: list[str] | None
    dropped: int
    horizons: pd.Series | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    blacklisted_starts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    """Window starts of the grade D rows (for the data root's blacklist)."""


def read_labels_file(
    path: Path, bars: pd.DataFrame, *, length: int, allow_gaps: bool = False
) -> LabelRows:
    """Read ``path`` and resolve each row to a window start over ``bars`` of ``length``.

    Raises ``SourceError`` naming the file, column and rows of: a missing, unreadable or
    empty file, missing columns, starts that are not whole bar positions or fall outside
    the bars, timestamps that do not parse or match no bar, missing labels (in a
    ``start``/``start_ts`` file), and grades other than A-D. ``allow_gaps`` lets a
    ``timestamp`` file's windows span missing bars.
    """
    table = _read(path)
    where = Where(path, "row {}", 1) if path.suffix.lower() in _PARQUET else Where(path)
    if "label" not in table.columns or not (
        {"start", "start_ts", "timestamp"} & set(table.columns)
    ):
        raise SourceError(
            f"Labels file {path} needs a 'label' column and a 'start' (bar position of the "
            "window's first bar), 'start_ts' (its open time) or 'timestamp' (open time of the "
            f"window's last bar, as `moola labels build --out` writes) column; it has "
            f"{list(map(str, table.columns))}."
        )
    if table.empty:
        raise SourceError(f"Labels file {path} has no rows: add one row per labelled window.")
    rows = np.arange(len(table))
    horizons, skipped = None, {}
    if "start" in table.columns:
        starts = _positions(table["start"], where)
        _check_range(starts, table, where, n_bars=len(bars), length=length)
    elif "start_ts" in table.columns:
        starts = _stamp_positions(table, bars, where, "start_ts")
        _check_range(starts, table, where, n_bars=len(bars), length=length)
    else:
        ends = _stamp_positions(table, bars, where, "timestamp")
        defined = table["label"].notna().to_numpy().copy()
        if "horizon_end_ts" in table.columns:
            horizon = _stamps(table["horizon_end_ts"])
            defined &= horizon.notna().to_numpy()
        chosen = windows_ending_at(bars, ends, defined, length=length, allow_gaps=allow_gaps)
        rows, starts, skipped = chosen.rows, chosen.starts, chosen.dropped
        if "horizon_end_ts" in table.columns:
            horizons = horizon.iloc[rows].reset_index(drop=True)
    labels = _labels(table["label"], where, rows)
    grades = None
    if "grade" in table.columns:
        every = _grades(table["grade"], where)
        grades = [every[row] for row in rows]
    keep = np.array([g != BLACKLISTED_GRADE for g in grades or [None] * len(rows)], dtype=bool)
    sources = table["source"].iloc[rows].astype(str).tolist() if "source" in table.columns else None
    return LabelRows(
        starts=starts[keep],
        labels=[v for v, k in zip(labels, keep, strict=True) if k],
        grades=[g for g, k in zip(grades, keep, strict=True) if k] if grades else None,
        sources=[s for s, k in zip(sources, keep, strict=True) if k] if sources else None,
        dropped=int((~keep).sum()),
        horizons=horizons[keep].reset_index(drop=True) if horizons is not None else None,
        skipped=skipped,
        blacklisted_starts=np.asarray(starts)[~keep].astype(np.int64),
    )


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SourceError(f"Labels file {path} does not exist.")
    try:
        if path.suffix.lower() in _PARQUET:
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise SourceError(
            f"Labels file {path} is empty; its first line names the columns, e.g. "
            "'start,label' or 'start_ts,label'."
        ) from None
    except UnicodeDecodeError:
        raise SourceError(
            f"Labels file {path} is not UTF-8 text; save it as UTF-8 CSV (or use a "
            ".parquet file name for Parquet)."
        ) from None
    except Exception as exc:  # pandas and pyarrow raise many types for a corrupt file
        raise SourceError(f"Cannot read labels file {path}: {exc}") from None


def _refuse(where: Where, column: str, rows: np.ndarray, values: pd.Series, what: str) -> None:
    raise SourceError(
        f"Labels file {where.path}, column '{column}', {what}: {where.rows(rows, values)}."
    )


def _positions(column: pd.Series, where: Where) -> np.ndarray:
    """Whole, non-negative bar positions; text, blanks and fractions are refused by row."""
    try:
        values = pd.to_numeric(column, errors="coerce").astype(np.float64).to_numpy()
    except (TypeError, ValueError):  # cells that are not scalars (Parquet lists, ...)
        values = np.full(len(column), np.nan)
    if column.dtype == bool:
        values[:] = np.nan
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        _refuse(where, "start", bad, column, "not a bar position (a whole number)")
    fractional = np.flatnonzero(values != np.floor(values))
    if fractional.size:
        _refuse(where, "start", fractional, column, "not a whole bar position")
    if (np.abs(values) > 2**62).any():
        _refuse(where, "start", np.flatnonzero(np.abs(values) > 2**62), column, "too large")
    return values.astype(np.int64)


def _stamps(raw: pd.Series) -> pd.Series:
    """UTC timestamps of a column; NaT where a cell is not one."""
    try:
        return pd.to_datetime(raw, utc=True, errors="coerce", format="mixed")
    except (TypeError, ValueError):  # cells that are not scalars (Parquet lists, ...)
        return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")


def _stamp_positions(
    table: pd.DataFrame, bars: pd.DataFrame, where: Where, column: str
) -> np.ndarray:
    """The bar position of each row's ``column`` time (and ``symbol``) in ``bars``."""
    raw = table[column]
    stamps = _stamps(raw)
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if bad.size:
        _refuse(where, column, bad, raw, "not a timestamp (e.g. 2024-03-01 14:30:00)")
    keys = pd.DataFrame({"timestamp": stamps})
    if "symbol" in table.columns:
        keys["symbol"] = table["symbol"].astype(str)
    elif bars["symbol"].nunique() > 1:
        raise SourceError(
            f"Labels file {where.path} has no 'symbol' column but the bars hold several "
            "symbols; add a symbol column."
        )
    lookup = bars[["timestamp", *(["symbol"] if "symbol" in keys else [])]].copy()
    if "symbol" in lookup:
        lookup["symbol"] = lookup["symbol"].astype(str)
    lookup["position"] = np.arange(len(bars), dtype=np.int64)
    merged = keys.merge(lookup, how="left", on=list(keys.columns))
    missing = np.flatnonzero(merged["position"].isna().to_numpy())
    if missing.size:
        what = "start" if column == "start_ts" else "bar"
        _refuse(
            where,
            column,
            missing,
            raw,
            f"{what} times that match no bar in the dataset (bar open times, UTC)",
        )
    return merged["position"].to_numpy(np.int64)


def _check_range(
    starts: np.ndarray, table: pd.DataFrame, where: Where, *, n_bars: int, length: int
) -> None:
    bad = np.flatnonzero((starts < 0) | (starts > n_bars - length))
    if bad.size:
        column = "start" if "start" in table.columns else "start_ts"
        _refuse(
            where,
            column,
            bad,
            table[column],
            f"windows of {length} bars outside the {n_bars} bars (valid starts are "
            f"0..{n_bars - length})",
        )


def _labels(column: pd.Series, where: Where, rows: np.ndarray) -> list:
    """Class names (text) or class indices (whole numbers) of ``rows``; a blank label is
    refused. Errors name the file's rows, whichever subset ``rows`` is."""
    chosen = column.iloc[rows]
    missing = rows[chosen.isna().to_numpy()]
    if missing.size:
        _refuse(where, "label", missing, column, "no label")
    if chosen.dtype.kind == "f":
        values = chosen.to_numpy()
        fractional = rows[values != np.floor(values)]
        if fractional.size:
            _refuse(
                where,
                "label",
                fractional,
                column,
                "not a class (a name, or a whole-number index); a continuous target such as "
                "trend strength must be binned into classes first",
            )
        return chosen.astype(np.int64).tolist()
    if chosen.dtype.kind in "iu":
        return chosen.astype(np.int64).tolist()
    return chosen.astype(str).tolist()


def _grades(column: pd.Series, where: Where) -> list:
    """Grades A-D (case and spaces forgiven) or None for ungraded rows."""
    grades = [None if _blank(g) else str(g).strip().upper() for g in column]
    bad = np.flatnonzero([g is not None and g not in GRADES for g in grades])
    if bad.size:
        _refuse(where, "grade", bad, column, f"not one of {sorted(GRADES)} (or blank)")
    return grades


def _blank(value: object) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))
