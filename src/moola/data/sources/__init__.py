"""Bar files in, canonical bar tables out: one reader per file format and a dispatcher.

Every reader returns the table of ``moola.data.schema`` (UTC bar open times, float
prices, sorted by symbol then time) and raises ``SourceError`` naming the file, rows and
columns of any problem. Readers neither drop nor invent rows (HistData's documented
de-duplication aside) and do not judge OHLC consistency; ``moola.data.validation`` does.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from moola.core.errors import ConfigError, SourceError
from moola.data.sources._common import PathLike, require_file
from moola.data.sources.coinbase import read_coinbase
from moola.data.sources.dbn import read_dbn, read_dbn_ticks
from moola.data.sources.histdata import looks_like_histdata, read_histdata
from moola.data.sources.tabular import read_csv_bars, read_parquet_bars

SOURCE_FORMATS: tuple[str, ...] = ("csv", "parquet", "histdata", "coinbase", "dbn")

_READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "csv": read_csv_bars,
    "parquet": read_parquet_bars,
    "histdata": read_histdata,
    "coinbase": read_coinbase,
    "dbn": read_dbn,
}
# Longest suffix first, so ".dbn.zst" wins over a bare ".zst".
_EXTENSIONS: tuple[tuple[str, str], ...] = (
    (".dbn.zst", "dbn"),
    (".dbn", "dbn"),
    (".csv", "csv"),
    (".txt", "csv"),
    (".parquet", "parquet"),
    (".pq", "parquet"),
    (".json", "coinbase"),
    (".zip", "histdata"),
)


def read_bars(
    path: PathLike,
    *,
    format: str | None = None,  # the user-facing name of the option
    symbol: str | None = None,
    timeframe: str | None = None,
    **options: object,
) -> pd.DataFrame:
    """Read one bar file of any supported format into the canonical bar table.

    ``format`` is one of ``SOURCE_FORMATS``; when omitted it follows the extension
    (.csv/.txt -> csv, .parquet/.pq -> parquet, .dbn/.dbn.zst -> dbn, .json -> coinbase,
    .zip -> histdata), and a .csv/.txt whose first line has HistData's header-less
    ``YYYYMMDD HHMMSS;o;h;l;c;v`` layout is read as histdata. ``symbol``, ``timeframe``
    and ``options`` go to the reader (e.g. ``columns=``, ``timezone=`` for csv/parquet).

    Raises ``SourceError`` for an unknown format or extension (listing the valid ones) and
    whatever the reader raises; ``ConfigError`` for an option the reader does not take.
    """
    file = require_file(path)
    fmt = _format_of(file) if format is None else _known_format(format)
    reader = _READERS[fmt]
    kwargs = dict(options)
    if symbol is not None:
        kwargs["symbol"] = symbol
    if timeframe is not None:
        kwargs["timeframe"] = timeframe
    _check_options(reader, fmt, kwargs)
    return reader(file, **kwargs)


def _known_format(name: str) -> str:
    key = str(name).strip().lower()
    if key in _READERS:
        return key
    close = difflib.get_close_matches(key, SOURCE_FORMATS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise SourceError(
        f"Unknown source format {name!r}.{hint} Valid formats: {', '.join(SOURCE_FORMATS)}."
    )


def _format_of(file: Path) -> str:
    name = file.name.lower()
    fmt = next((fmt for suffix, fmt in _EXTENSIONS if name.endswith(suffix)), None)
    if fmt is None:
        raise SourceError(
            f"{file}: cannot tell the format from the extension {file.suffix or '(none)'!r}. "
            f"Pass format=, one of {', '.join(SOURCE_FORMATS)} (known extensions: "
            f"{', '.join(suffix for suffix, _ in _EXTENSIONS)})."
        )
    if fmt == "csv" and looks_like_histdata(file):
        return "histdata"
    return fmt


def _check_options(reader: Callable[..., pd.DataFrame], fmt: str, kwargs: dict) -> None:
    params = [
        name
        for name, param in inspect.signature(reader).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    for name in kwargs:
        if name not in params:
            close = difflib.get_close_matches(name, params, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"Format {fmt!r} takes no option {name!r}.{hint} Its options: {', '.join(params)}."
            )


__all__ = [
    "SOURCE_FORMATS",
    "read_bars",
    "read_coinbase",
    "read_csv_bars",
    "read_dbn",
    "read_dbn_ticks",
    "read_histdata",
    "read_parquet_bars",
]
