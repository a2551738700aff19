"""HistData.com "Generic ASCII" one-minute bar files (``.csv``, or the ``.zip`` they ship in).

Each line is ``YYYYMMDD HHMMSS;open;high;low;close;volume`` with no header. HistData
stamps bars in fixed EST, UTC-5 all year with no daylight saving, so the conversion to
UTC is a constant +5 hours; applying a DST-aware zone such as America/New_York would
shift half the year by an hour.

Duplicates: HistData files occasionally repeat a line. Exact duplicate lines are dropped;
for a timestamp repeated with different values the first line in the file is kept. Both
counts are reported with a ``logging`` warning (logger ``moola.data.sources.histdata``), so
nothing is dropped silently.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from moola.core.errors import SourceError
from moola.data.sources._common import (
    PathLike,
    Where,
    assemble,
    check_timeframe,
    parse_numbers,
    require_file,
    require_symbol,
)

logger = logging.getLogger(__name__)

EST_OFFSET = pd.Timedelta(hours=5)  # fixed EST (UTC-5) -> UTC
_FIRST = pd.Timestamp.min.ceil("D") + EST_OFFSET  # EST times whose UTC fits in nanoseconds
_LAST = pd.Timestamp.max.floor("D") - EST_OFFSET
_FIELDS = ("timestamp", "open", "high", "low", "close", "volume")
_LINE = re.compile(r"^\d{8} \d{6};[^;]*;[^;]*;[^;]*;[^;]*;[^;]*$")
_NAME = re.compile(r"ASCII_([A-Za-z0-9]+)_M1", re.IGNORECASE)  # DAT_ASCII_EURUSD_M1_2024


def read_histdata(
    path: PathLike, *, symbol: str | None = None, timeframe: str = "1m"
) -> pd.DataFrame:
    """Read a HistData.com Generic ASCII M1 file (or a .zip holding one) as canonical bars.

    Timestamps move from fixed EST to UTC by adding 5 hours, all year. ``symbol`` defaults
    to the pair in a HistData file or zip-member name (``DAT_ASCII_EURUSD_M1_2024.csv`` ->
    ``"EURUSD"``).
    Duplicates are dropped as the module docstring says, with a logged warning.

    Raises ``SourceError`` for a missing, empty or malformed file (naming the lines), and
    ``ConfigError`` when no symbol is given or found in the file name.
    """
    file = require_file(path)
    check_timeframe(timeframe)
    text, where = _read_text(file)
    if symbol is None and (match := _NAME.search(where.path.name)):
        symbol = match.group(1).upper()
    symbol = require_symbol(
        symbol,
        where,
        "HistData files do not name their instrument and the file name does not follow "
        "'DAT_ASCII_<SYMBOL>_M1_...'",
    )
    raw = _split(text, where)
    stamps = pd.to_datetime(raw["timestamp"], format="%Y%m%d %H%M%S", errors="coerce")
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if len(bad):
        raise SourceError(
            f"{where.path}: could not read the date and time at "
            f"{where.rows(bad, raw['timestamp'])}. "
            "HistData lines start with 'YYYYMMDD HHMMSS', e.g. '20240310 170000'; fix or "
            "remove those lines."
        )
    # pandas parses a year like 3024 (as seconds); bars are nanoseconds, 1677..2262.
    outside = np.flatnonzero(((stamps < _FIRST) | (stamps > _LAST)).to_numpy())
    if len(outside):
        raise SourceError(
            f"{where.path}: dates outside the years 1677-2262 at "
            f"{where.rows(outside, raw['timestamp'])}; the line is damaged. Fix or remove it."
        )
    stamps = stamps.astype("datetime64[ns]")
    keep = _first_of_each_timestamp(raw, stamps, where)
    raw, stamps = raw[keep].reset_index(drop=True), stamps[keep].reset_index(drop=True)
    values = {name: parse_numbers(raw[name], name, where) for name in _FIELDS[1:]}
    utc = (stamps + EST_OFFSET).dt.tz_localize("UTC")
    return assemble(utc, values, symbol=symbol, timeframe=timeframe)


def looks_like_histdata(path: PathLike) -> bool:
    """True when the file (or the one .csv in a .zip) starts with a HistData ASCII line."""
    try:
        file = Path(path)
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                members = _csv_members(archive)
                if len(members) != 1:
                    return False
                with archive.open(members[0]) as handle:
                    first = handle.readline()
        else:
            with open(file, "rb") as handle:
                first = handle.readline()
        return bool(_LINE.match(first.decode("utf-8-sig", errors="replace").strip()))
    except (OSError, zipfile.BadZipFile):
        return False


def _csv_members(archive: zipfile.ZipFile) -> list[str]:
    return [
        name
        for name in archive.namelist()
        if name.lower().endswith(".csv") and not name.endswith("/")
    ]


def _read_text(file: Path) -> tuple[str, Where]:
    """The file's text (unzipped when needed) and where its lines come from."""
    try:
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                members = _csv_members(archive)
                if len(members) != 1:
                    raise SourceError(
                        f"{file}: a HistData zip must hold exactly one .csv file; this one holds "
                        f"{members or 'none'} (all files: {archive.namelist()}). Unzip it and "
                        "pass the .csv you want."
                    )
                data = archive.read(members[0])
                where = Where(Path(f"{file}!{members[0]}"), "line {}", 1)
        else:
            data = file.read_bytes()
            where = Where(file, "line {}", 1)
        return data.decode("utf-8-sig"), where
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        raise SourceError(
            f"{file}: the zip archive cannot be read ({error}); it is probably truncated. "
            "Download it again."
        ) from None
    except UnicodeDecodeError:
        raise SourceError(
            f"{file}: not a text file, so not a HistData ASCII file. Pass the .csv (or the "
            ".zip HistData ships) of the 'Generic ASCII' M1 format."
        ) from None


def _split(text: str, where: Where) -> pd.DataFrame:
    """The six ';'-separated fields of every line, as text (one row per line)."""
    try:
        raw = pd.read_csv(
            io.StringIO(text),
            sep=";",
            header=None,
            names=list(_FIELDS),
            dtype={"timestamp": str},  # prices parse as numbers unless one holds text
            keep_default_na=False,
            na_values=[""],  # missing and empty fields alike
            skip_blank_lines=False,  # keeps row i on line i + 1
        )
    except pd.errors.ParserError as error:
        raise SourceError(
            f"{where.path}: {str(error).strip()}. A HistData Generic ASCII M1 line has 6 "
            "';'-separated fields (YYYYMMDD HHMMSS;open;high;low;close;volume); fix or "
            "remove that line. For other CSV files use format='csv'."
        ) from None
    blank = raw.isna().all(axis=1).to_numpy()
    if blank.all():
        raise SourceError(f"{where.path}: the file is empty. Download it again.")
    raw = raw.iloc[: np.flatnonzero(~blank)[-1] + 1]  # blank lines at the end are harmless
    bad = np.flatnonzero(raw.isna().any(axis=1).to_numpy())
    if len(bad):
        raise SourceError(
            f"{where.path}: blank line or missing fields at {where.rows(bad)}. Every line "
            "needs the 6 ';'-separated fields YYYYMMDD HHMMSS;open;high;low;close;volume. "
            "This is not a HistData Generic ASCII M1 file or it is damaged; for other CSV "
            "files use format='csv'."
        )
    return raw


def _first_of_each_timestamp(raw: pd.DataFrame, stamps: pd.Series, where: Where) -> np.ndarray:
    """Mask keeping the first line of each timestamp, warning how many lines it drops."""
    exact = raw.duplicated(keep="first").to_numpy()
    repeated = stamps.duplicated(keep="first").to_numpy() & ~exact
    if exact.any() or repeated.any():
        logger.warning(
            "%s: dropped %d exact duplicate line(s) and %d line(s) repeating an earlier "
            "timestamp with different values (the first line of each timestamp is kept); "
            "first dropped: %s",
            where.path,
            int(exact.sum()),
            int(repeated.sum()),
            where.rows(np.flatnonzero(exact | repeated)),
        )
    return ~(exact | repeated)
