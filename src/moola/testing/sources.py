"""``check_source``: a source reader turns a sample file into clean canonical bars, or
refuses a damaged file with a ``MoolaError`` that names it.

Every reader in ``moola.data.sources`` promises the table of ``moola.data.schema``: the
canonical columns and dtypes, UTC open times, rows sorted by symbol then time, no repeated
``(symbol, timestamp)``. A reader that broke this would hand every consumer a table they
must re-check; one that crashed with a ``KeyError`` or ``struct.error`` on a half-written
download would leave the user with a traceback instead of a file name. This checker, run
in CI over every format in ``SOURCE_FORMATS``, requires for a good sample file:

- the bars are canonical (columns, order, dtypes, UTC), non-empty, sorted by symbol then
  time, with no duplicate timestamp per symbol;
- ``moola.data.validation.validate_bars`` in strict mode accepts them unchanged;
- reading the file twice gives identical frames (no hidden state, no clock);

and, for copies of the file with the same name in a temporary folder:

- a truncated copy (cut at several points) is either read as a shorter canonical table
  (a text file cut at a line end is a valid file) or refused with a ``MoolaError`` whose
  message names the file; any other exception fails the check;
- an empty copy is refused with a ``MoolaError`` naming the file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import MoolaError
from moola.data.schema import BAR_COLUMNS, NUMERIC_COLUMNS
from moola.data.sources import SOURCE_FORMATS, read_bars
from moola.data.validation import validate_bars

Reader = Callable[..., pd.DataFrame]


def _reader(name_or_reader: str | Reader) -> tuple[str, Reader]:
    if isinstance(name_or_reader, str):
        key = name_or_reader.strip().lower()
        if key not in SOURCE_FORMATS:
            raise ValueError(
                f"check_source: unknown source format {name_or_reader!r}; "
                f"one of {', '.join(SOURCE_FORMATS)}, or pass a reader function."
            )

        def read(path: Path, **options: Any) -> pd.DataFrame:
            return read_bars(path, format=key, **options)

        return f"format {key!r}", read
    if callable(name_or_reader):
        return f"reader {getattr(name_or_reader, '__name__', repr(name_or_reader))}", name_or_reader
    raise TypeError(
        "check_source takes a format name or a reader function, got "
        f"{type(name_or_reader).__name__}"
    )


def _schema_problems(frame: object) -> list[str]:
    """What makes ``frame`` not a canonical bar table (empty list when it is one)."""
    if not isinstance(frame, pd.DataFrame):
        return [f"returned {type(frame).__name__}, not a pandas DataFrame"]
    problems: list[str] = []
    if tuple(frame.columns) != BAR_COLUMNS:
        return [f"columns {list(frame.columns)} != canonical {list(BAR_COLUMNS)}"]
    if str(frame["timestamp"].dtype) != "datetime64[ns, UTC]":
        problems.append(f"timestamp dtype {frame['timestamp'].dtype}, expected datetime64[ns, UTC]")
    problems += [
        f"column {column!r} has dtype {frame[column].dtype}, expected float64"
        for column in NUMERIC_COLUMNS
        if frame[column].dtype != np.float64
    ]
    problems += [
        f"column {column!r} has dtype {frame[column].dtype}, expected strings"
        for column in ("symbol", "timeframe")
        if not pd.api.types.is_string_dtype(frame[column].dtype)
    ]
    return problems


def _order_problems(frame: pd.DataFrame) -> list[str]:
    problems: list[str] = []
    keys = frame[["symbol", "timestamp"]].reset_index(drop=True)
    ordered = keys.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    if not keys.equals(ordered):
        first = int(np.flatnonzero((keys != ordered).any(axis=1).to_numpy())[0])
        problems.append(
            f"rows are not sorted by symbol then time (first out of place: row {first})"
        )
    repeated = keys.duplicated(keep=False)
    if repeated.any():
        rows = np.flatnonzero(repeated.to_numpy())[:5].tolist()
        problems.append(f"duplicate (symbol, timestamp) at rows {rows}")
    return problems


def _read(read: Reader, path: Path, options: dict[str, Any], what: str, label: str) -> object:
    try:
        return read(path, **options)
    except MoolaError as error:
        raise AssertionError(f"{label} refused {what} {path.name}: {error}") from error
    except Exception as error:
        raise AssertionError(
            f"{label} crashed on {what} {path.name} with {type(error).__name__}: {error} "
            "(readers raise MoolaError naming the file)"
        ) from error


def _check_refusal(
    read: Reader, path: Path, options: dict[str, Any], label: str, what: str, may_read: int
) -> None:
    """A damaged copy: a clean ``MoolaError`` naming the file, or (``may_read`` >= 0) a
    canonical table of at most ``may_read`` rows."""
    try:
        frame = read(path, **options)
    except MoolaError as error:
        if path.name not in str(error):
            raise AssertionError(
                f"{label}: the error for {what} does not name the file {path.name!r}: {error}"
            ) from error
        return
    except Exception as error:
        raise AssertionError(
            f"{label} crashed on {what} with {type(error).__name__}: {error}; a damaged file "
            "must raise MoolaError (SourceError) naming the file"
        ) from error
    if may_read < 0:
        raise AssertionError(f"{label} read {what} without an error; it must be refused")
    problems = _schema_problems(frame)
    if problems:
        raise AssertionError(f"{label} read {what} into a non-canonical table: {problems}")
    assert isinstance(frame, pd.DataFrame)
    if len(frame) > may_read:
        raise AssertionError(
            f"{label} read {len(frame)} rows from {what}, more than the {may_read} of the "
            "whole file"
        )


def check_source(
    name_or_reader: str | Reader, sample_path: str | Path, **options: Any
) -> pd.DataFrame:
    """Raise ``AssertionError`` unless the reader turns ``sample_path`` into clean canonical
    bars and refuses truncated or empty copies of it cleanly.

    Parameters
    ----------
    name_or_reader : str or callable
        A format of ``moola.data.sources.SOURCE_FORMATS`` (read through ``read_bars``) or a
        reader ``reader(path, **options) -> DataFrame``.
    sample_path : str or Path
        A good sample file of the format, with at least one bar. It is not modified; the
        damaged copies are written to a temporary folder under the same file name.
    **options
        Passed to the reader (e.g. ``symbol=``, ``timeframe=``).

    Returns
    -------
    pandas.DataFrame
        The bars read from the sample, for further checks by the caller.
    """
    label, read = _reader(name_or_reader)
    path = Path(sample_path)
    if not path.is_file():
        raise ValueError(f"check_source: sample file {path} does not exist")

    frame = _read(read, path, options, "the sample file", label)
    problems = _schema_problems(frame)
    if problems:
        raise AssertionError(f"{label}: {path.name} is not read into canonical bars: {problems}")
    assert isinstance(frame, pd.DataFrame)
    if frame.empty:
        raise AssertionError(f"{label}: {path.name} read into no bars; give a sample with bars")
    problems = _order_problems(frame)
    if problems:
        raise AssertionError(f"{label}: bars of {path.name}: {'; '.join(problems)}")
    try:
        validated, _ = validate_bars(frame, mode="strict", source=str(path))
    except MoolaError as error:
        raise AssertionError(
            f"{label}: bars of {path.name} fail strict validation: {error}"
        ) from error
    try:
        pd.testing.assert_frame_equal(validated, frame.reset_index(drop=True))
    except AssertionError as error:
        raise AssertionError(
            f"{label}: strict validation changed the bars of {path.name}: {error}"
        ) from error

    again = _read(read, path, options, "the sample file (second read)", label)
    try:
        pd.testing.assert_frame_equal(again, frame)  # type: ignore[arg-type]
    except AssertionError as error:
        raise AssertionError(
            f"{label}: reading {path.name} twice gives different frames: {error}"
        ) from error

    data = path.read_bytes()
    cuts = sorted({len(data) - 1, (2 * len(data)) // 3, len(data) // 2, len(data) // 5, 1} - {0})
    cuts = [cut for cut in cuts if 0 < cut < len(data)]
    with tempfile.TemporaryDirectory(prefix="moola-check-source-") as folder:
        copy = Path(folder) / path.name
        for cut in cuts:
            copy.write_bytes(data[:cut])
            what = f"{path.name} cut to {cut} of {len(data)} bytes"
            _check_refusal(read, copy, options, label, what, len(frame))
        copy.write_bytes(b"")
        _check_refusal(read, copy, options, label, f"an empty {path.name}", -1)
    return frame
