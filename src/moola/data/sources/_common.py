"""Shared machinery of the bar readers: file checks, column matching, parsing that names
the offending rows, and assembly of the canonical bar table.

Each reader only knows its file layout; everything that turns raw cells into canonical
columns (and every error a user sees while that happens) lives here so that all formats
report problems the same way.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError, SourceError
from moola.core.timeframes import parse_timeframe
from moola.data.schema import make_bars

PathLike = str | os.PathLike[str]

EPOCH_UNITS: tuple[str, ...] = ("s", "ms", "us", "ns")
MAX_SHOWN = 5  # offending rows quoted in an error message

_TIME_ONLY = r"\s*\d{1,2}:\d{2}(:\d{2}(\.\d*)?)?\s*"
_NS_MIN = pd.Timestamp.min.tz_localize("UTC")
_NS_MAX = pd.Timestamp.max.tz_localize("UTC")


@dataclass(frozen=True)
class Where:
    """Where values come from, so errors can point at them.

    ``row_format`` turns a 0-based position into the user's idea of a row, after adding
    ``first_row``: ``"line {}"`` with 2 for a CSV with a header line, ``"candles[{}]"``
    with 0 for a JSON list.
    """

    path: Path
    row_format: str = "line {}"
    first_row: int = 2

    def rows(self, positions: np.ndarray, raw: pd.Series | None = None) -> str:
        """Name the first few ``positions`` (with their raw values) and how many in all."""
        shown = []
        for position in positions[:MAX_SHOWN]:
            label = self.row_format.format(int(position) + self.first_row)
            if raw is not None:
                label += f" ({_show(raw.iloc[int(position)])})"
            shown.append(label)
        text = ", ".join(shown)
        if len(positions) > MAX_SHOWN:
            text += f" and {len(positions) - MAX_SHOWN} more ({len(positions)} rows in all)"
        return text


def _show(value: object) -> str:
    """A raw cell as the user would recognise it in an error message."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "empty"
    return repr(value.item() if isinstance(value, np.generic) else value)


def require_file(path: PathLike) -> Path:
    """The path as a ``Path`` when it names a readable file; ``SourceError`` otherwise."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise SourceError(
            f"Source file {str(resolved)!r} does not exist. Check the path (relative paths "
            f"are taken from {os.getcwd()!r}) and that the download finished."
        )
    if not resolved.is_file():
        raise SourceError(
            f"Source path {str(resolved)!r} is not a file (it is a directory or a special "
            "file). Pass the path of one data file."
        )
    return resolved


def check_timeframe(timeframe: str) -> str:
    """The time frame, after checking it parses (``ConfigError`` otherwise)."""
    parse_timeframe(timeframe)
    return timeframe


def require_symbol(symbol: str | None, where: Where, reason: str) -> str:
    """The caller's symbol; ``ConfigError`` (saying why it is needed) when there is none."""
    if symbol is None or not str(symbol).strip():
        raise ConfigError(
            f"{where.path}: {reason}. Pass symbol=..., for example symbol='EURUSD'.",
            param="symbol",
        )
    return str(symbol).strip()


def zone(timezone: str) -> ZoneInfo:
    """The IANA time zone named ``timezone``; ``ConfigError`` naming it when unknown."""
    try:
        return ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"Unknown time zone {timezone!r}. Use an IANA name such as 'UTC', "
            "'America/New_York' or 'Europe/London'."
        ) from None


def resolve_columns(
    found: Sequence[str],
    *,
    where: Where,
    candidates: Mapping[str, Sequence[str]],
    required: Iterable[str],
    mapping: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Map canonical names to column names of the file.

    ``mapping`` (canonical -> file column) wins; other names are matched case-insensitively
    against ``candidates`` (canonical -> accepted spellings, in order of preference).
    Canonical names not found and not ``required`` are left out of the result.
    """
    mapping = dict(mapping or {})
    unknown = [key for key in mapping if key not in candidates]
    if unknown:
        hints = [
            f"{key!r} (did you mean {close[0]!r}?)"
            if (close := difflib.get_close_matches(key, list(candidates), n=1))
            else repr(key)
            for key in unknown
        ]
        raise ConfigError(
            f"columns= has unknown key(s) {', '.join(hints)}. Its keys are canonical names "
            f"({', '.join(candidates)}) and its values the matching column names in the file."
        )
    by_lower: dict[str, list[str]] = {}
    for name in found:
        by_lower.setdefault(str(name).strip().lower(), []).append(str(name))
    result: dict[str, str] = {}
    for canonical, spellings in candidates.items():
        if canonical in mapping:
            if mapping[canonical] not in found:
                raise SourceError(
                    f"{where.path}: columns= maps {canonical!r} to {mapping[canonical]!r}, but "
                    f"the file has no such column. Columns found: {list(found)}. Fix the "
                    "mapping (names are matched exactly)."
                )
            result[canonical] = mapping[canonical]
            continue
        for spelling in spellings:
            names = by_lower.get(spelling, [])
            if len(names) > 1:
                raise SourceError(
                    f"{where.path}: columns {names} all match {canonical!r}. Pass "
                    f"columns={{{canonical!r}: '<the one to use>'}} to choose."
                )
            if names:
                result[canonical] = names[0]
                break
    required = list(required)
    missing = [name for name in required if name not in result]
    if missing:
        expected = ", ".join(
            " or ".join(candidates[name]) + ("" if name in required else " (optional)")
            for name in candidates
        )
        raise SourceError(
            f"{where.path}: no column found for {', '.join(map(repr, missing))}. Columns "
            f"found: {list(found)}. Expected (case-insensitive): {expected}. Rename the columns "
            "or pass columns={'<canonical name>': '<column in file>', ...}."
        )
    return result


def parse_numbers(raw: pd.Series, column: str, where: Where) -> np.ndarray:
    """``raw`` as float64; empty cells become NaN (validation judges them), text that is not
    a number raises ``SourceError`` naming the rows and values."""
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan)
    numbers = pd.to_numeric(raw, errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy() & raw.notna().to_numpy())
    if len(bad):
        raise SourceError(
            f"{where.path}: column {column!r} holds values that are not numbers at "
            f"{where.rows(bad, raw)}. Fix or remove those rows (numbers use '.' as the "
            "decimal point and no thousands separator), then read the file again."
        )
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def parse_timestamps(
    raw: pd.Series,
    column: str,
    where: Where,
    *,
    timezone: str = "UTC",
    unit: str | None = None,
    groups: pd.Series | None = None,
) -> pd.Series:
    """``raw`` as UTC timestamps (``datetime64[ns, UTC]``, same index).

    Epoch numbers need ``unit``. Text or datetimes without a zone are read as wall-clock
    time in ``timezone`` (daylight saving included: a repeated fall-back hour is resolved
    from the order of the rows, within each of ``groups`` when given); values with a zone
    or offset are converted. Missing or unparseable values raise ``SourceError``.
    """
    tz = zone(timezone)
    if unit is not None:
        if unit not in EPOCH_UNITS:
            raise ConfigError(
                f"timestamp_unit={unit!r} is not an epoch unit. Use one of {list(EPOCH_UNITS)}."
            )
        numbers = pd.to_numeric(raw, errors="coerce")
        _raise_unparsed(raw, numbers.isna().to_numpy(), column, where, f"epoch {unit} numbers")
        stamps = pd.to_datetime(numbers, unit=unit, utc=True)
    elif pd.api.types.is_datetime64_any_dtype(raw):
        stamps = raw
        _raise_unparsed(raw, stamps.isna().to_numpy(), column, where, "timestamps")
    elif pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
        raise SourceError(
            f"{where.path}: timestamp column {column!r} holds numbers (e.g. "
            f"{_show(raw.iloc[0]) if len(raw) else 'none'}). If they are epoch times, pass "
            f"timestamp_unit= one of {list(EPOCH_UNITS)}; otherwise map columns= to the column "
            "that holds the date and time."
        )
    else:
        # Arrow-backed text goes through pandas' own parser: pyarrow's raises its own error
        # on bytes it cannot convert (a damaged file) instead of leaving the row unparsed.
        text = raw
        if isinstance(raw.dtype, pd.ArrowDtype | pd.StringDtype):
            try:
                text = raw.astype(object)
            except Exception as exc:  # pyarrow.ArrowException: bytes that are not UTF-8
                raise SourceError(
                    f"{where.path}: timestamp column {column!r} holds bytes that are not "
                    f"text ({type(exc).__name__}: {exc}); the file is damaged. Export it "
                    "again from its source."
                ) from None
        with warnings.catch_warnings():  # "could not infer format": our error says more
            warnings.simplefilter("ignore", UserWarning)
            try:
                stamps = pd.to_datetime(text, errors="coerce")
            except ValueError:  # several UTC offsets in one column (e.g. across a DST change)
                stamps = pd.to_datetime(text, errors="coerce", utc=True)
        # pandas dates a bare clock time ("09:30") today; that is no bar time.
        time_only = (
            raw.astype("string").str.fullmatch(_TIME_ONLY).fillna(False).to_numpy(dtype=bool)
        )
        _raise_unparsed(raw, stamps.isna().to_numpy() | time_only, column, where, "timestamps")
    if stamps.dt.tz is None:
        stamps = _localize(stamps, tz, groups, raw, column, where)
    stamps = stamps.dt.tz_convert("UTC")
    outside = np.flatnonzero(((stamps < _NS_MIN) | (stamps > _NS_MAX)).to_numpy())
    if len(outside):
        raise SourceError(
            f"{where.path}: column {column!r} gives times outside the years 1677-2262 at "
            f"{where.rows(outside, raw)}. Epoch numbers are probably in another unit: check "
            f"timestamp_unit (one of {list(EPOCH_UNITS)})."
        )
    return stamps.astype("datetime64[ns, UTC]")


def _raise_unparsed(raw: pd.Series, bad: np.ndarray, column: str, where: Where, what: str):
    positions = np.flatnonzero(bad)
    if len(positions):
        raise SourceError(
            f"{where.path}: column {column!r} could not be read as {what} at "
            f"{where.rows(positions, raw)}. Use one format in the whole column (ISO 8601 such "
            "as '2024-03-10 14:30:00' works; for epoch numbers pass timestamp_unit=), or pass "
            "columns={'timestamp': '<column>'} if the wrong column was picked."
        )


def _localize(
    stamps: pd.Series,
    tz: ZoneInfo,
    groups: pd.Series | None,
    raw: pd.Series,
    column: str,
    where: Where,
) -> pd.Series:
    """Naive wall-clock times in ``tz`` -> aware times; gaps and undecidable repeats raise."""
    if tz.key == "UTC" or len(stamps) == 0:
        return stamps.dt.tz_localize(tz)
    blocks = (
        [np.arange(len(stamps))]
        if groups is None
        else list(groups.groupby(groups.to_numpy(), sort=False, dropna=False).indices.values())
    )
    parts = []
    for positions in blocks:
        part = stamps.iloc[positions]
        try:
            parts.append(part.dt.tz_localize(tz, ambiguous="infer", nonexistent="raise"))
        except ValueError:
            _raise_dst(part, positions, tz, raw, column, where)
    return pd.concat(parts).reindex(stamps.index)


def _raise_dst(
    part: pd.Series,
    positions: np.ndarray,
    tz: ZoneInfo,
    raw: pd.Series,
    column: str,
    where: Where,
):
    never = part.dt.tz_localize(tz, ambiguous=np.zeros(len(part), bool), nonexistent="NaT")
    either = part.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    gap = positions[never.isna().to_numpy()]
    repeated = positions[either.isna().to_numpy() & never.notna().to_numpy()]
    problems = []
    if len(gap):
        problems.append(
            f"{where.rows(gap, raw)} never happened in {tz.key} (the clock skipped them when "
            "daylight saving began)"
        )
    if len(repeated):
        problems.append(
            f"{where.rows(repeated, raw)} happened twice in {tz.key} (daylight saving ended) and "
            "the row order does not show which is meant"
        )
    raise SourceError(
        f"{where.path}: timestamps in column {column!r}: {'; '.join(problems)}. Check that "
        f"timezone={tz.key!r} is the zone the file was written in; if so, fix those rows or "
        "export the file in UTC or with UTC offsets."
    )


def assemble(
    timestamp: pd.Series,
    values: Mapping[str, np.ndarray],
    *,
    symbol: str | pd.Series,
    timeframe: str,
) -> pd.DataFrame:
    """The canonical bar table, sorted by symbol then time (stable: equal timestamps keep
    the file's order). ``values`` holds open/high/low/close and, optionally, volume."""
    single = isinstance(symbol, str)
    frame = make_bars(
        timestamp,
        values["open"],
        values["high"],
        values["low"],
        values["close"],
        values.get("volume"),
        symbol=symbol if single else "",
        timeframe=timeframe,
    )
    times = frame["timestamp"].dt.tz_localize(None).to_numpy().view(np.int64)
    if single:
        order = np.argsort(times, kind="stable")
    else:
        frame["symbol"] = pd.array(symbol, dtype="string")
        codes, _ = pd.factorize(frame["symbol"], sort=True)
        order = np.lexsort((times, codes))
    return frame.iloc[order].reset_index(drop=True)


def one_symbol(found: pd.Series, symbol: str | None, where: Where, column: str) -> str | pd.Series:
    """The symbol labels for a file with a symbol column.

    With no caller symbol the file's labels are used (several symbols allowed). A caller's
    symbol renames a file holding one symbol; for several it raises, since merging
    instruments under one name would be silent corruption.
    """
    labels = found.astype("string").str.strip().fillna("")
    empty = np.flatnonzero((labels == "").to_numpy(dtype=bool))
    if len(empty):
        raise SourceError(
            f"{where.path}: symbol column {column!r} is empty at {where.rows(empty, found)}. "
            "Fill in the symbol on those rows."
        )
    distinct = sorted(labels.unique())
    if len(distinct) > 1 and symbol is not None:
        raise SourceError(
            f"{where.path}: the file holds several symbols ({', '.join(distinct[:10])}) but "
            f"symbol={symbol!r} was given. Pass symbol=None to read them all as a "
            "multi-symbol table, or split the file per symbol."
        )
    if symbol is not None:
        return symbol
    return distinct[0] if len(distinct) == 1 else labels


def file_timeframe(found: pd.Series, timeframe: str | None, where: Where, column: str) -> str:
    """The time frame of a file with a timeframe column (e.g. a table moola wrote).

    The column must hold one value; a caller's ``timeframe`` must agree with it.
    """
    distinct = sorted(found.astype("string").str.strip().dropna().unique())
    if len(distinct) != 1:
        raise SourceError(
            f"{where.path}: timeframe column {column!r} should hold one value, not "
            f"{distinct[:10] or 'none'}. Split the file per time frame."
        )
    check_timeframe(distinct[0])
    if timeframe is None:
        return distinct[0]
    if parse_timeframe(timeframe) != parse_timeframe(distinct[0]):
        raise ConfigError(
            f"{where.path}: the file's {column!r} column says {distinct[0]!r} but "
            f"timeframe={timeframe!r} was given. Omit timeframe to use the file's."
        )
    return timeframe
