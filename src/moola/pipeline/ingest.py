"""Ingestion: a source file (or a frame) -> validated bars -> a new raw dataset version.

This is the one path by which bars enter moola: read with a source reader (one file or a
series of files combined into one version), validate in strict or repair mode, report gaps
against a session calendar, and store write-once with a manifest recording each source
file's name and SHA-256 and every change made on the way. Bytes already stored under the
name, read the same way, are not stored twice.

Bars keep the declared extra columns their reader gives (``moola.data.schema.EXTRA_COLUMNS``):
Databento tick files are read with ``extras=True``, so the 1-second bars' trade count,
VWAP, last bid/ask, spread and ``filled`` flag are validated and stored with the OHLCV
columns, and the source record's options say so.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow.parquet as pq

from moola.core.errors import ConfigError, SourceError
from moola.core.hashing import sha256_file, sha256_json
from moola.core.timeframes import parse_timeframe
from moola.data._manifest import DatasetRef
from moola.data.calendars import gap_report, summarise_gaps
from moola.data.registry import Registry
from moola.data.schema import BAR_COLUMNS, extra_columns
from moola.data.sources import read_bars
from moola.data.sources.histdata import looks_like_histdata
from moola.data.validation import ValidationReport, validate_bars


@dataclass(frozen=True)
class IngestResult:
    """What an ingest stored and what it found on the way.

    ``files`` describes each source file (name, SHA-256, bars, first and last bar);
    ``overlaps`` the bars two files both held (identical, so kept once) and ``between``
    the time gaps between consecutive files of a symbol. ``already`` is True when nothing
    was written because ``ref`` already holds the same bytes read the same way
    (``validation`` is then None). ``extras`` names the extra bar columns stored (e.g.
    ``trades``, ``vwap``, ``bid``, ``ask``, ``spread``, ``filled`` for tick bars).
    """

    ref: DatasetRef
    validation: ValidationReport | None
    gaps: dict[str, Any] | None
    files: list[dict[str, Any]] = field(default_factory=list)
    overlaps: list[dict[str, Any]] = field(default_factory=list)
    between: list[dict[str, Any]] = field(default_factory=list)
    already: bool = False
    extras: tuple[str, ...] = ()


class MissingIdentity(ConfigError):
    """Source files that do not say which instrument or bar length they hold, and were not
    told: ``missing`` names the parameters (``symbol``, ``timeframe``), ``files`` the files."""

    def __init__(self, missing: list[str], files: list[Path]) -> None:
        self.missing, self.files = missing, files
        names = ", ".join(path.name for path in files[:3]) + (" ..." if len(files) > 3 else "")
        super().__init__(
            f"{' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} required for "
            f"{names}: the file has no {'/'.join(missing)} column. Pass "
            + ", ".join(f"{m}=..." for m in missing)
            + "."
        )


def ingest_file(
    registry: Registry,
    path: str | Path,
    *,
    name: str,
    format: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
    mode: Literal["strict", "repair"] = "strict",
    calendar: str | None = None,
    options: dict[str, Any] | None = None,
    version: int | None = None,
    force: bool = False,
) -> IngestResult:
    """Read ``path`` with its source reader, validate, and store it as ``raw/<name>``."""
    return ingest_files(
        registry,
        [path],
        name=name,
        format=format,
        symbol=symbol,
        timeframe=timeframe,
        mode=mode,
        calendar=calendar,
        options=options,
        version=version,
        force=force,
    )


def ingest_files(
    registry: Registry,
    paths: list[str | Path],
    *,
    name: str,
    format: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
    mode: Literal["strict", "repair"] = "strict",
    calendar: str | None = None,
    options: dict[str, Any] | None = None,
    version: int | None = None,
    force: bool = False,
) -> IngestResult:
    """Read every file of ``paths`` (globs expanded), combine them and store one version.

    A month-per-file series (HistData) becomes one dataset: each file's name and SHA-256 go
    into the manifest's sources; bars two files both hold are kept once when identical
    (reported in ``overlaps``) and refused, naming both files, when they differ; time gaps
    between files are reported in ``between``. When a stored version of ``name`` already
    holds exactly these bytes read with these settings, nothing is written and that version
    is returned with ``already=True``, unless ``force``. Databento files are read with
    ``extras=True`` unless ``options`` says otherwise, so tick bars keep their statistics.

    Raises ``MissingIdentity`` (a ``ConfigError``) naming every missing parameter at once
    when CSV/Parquet files lack symbol/timeframe columns and no value was given.
    """
    files = expand_paths(paths)
    options = options or {}
    missing = missing_identity(files, format, symbol, timeframe, options)
    if missing:
        raise MissingIdentity(missing, files)
    file_options = [_read_options(path, format, options) for path in files]
    sources = [
        {
            "name": path.name,
            "path": str(path.resolve()),
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            "format": format or "auto",
            "symbol": symbol,
            "timeframe": timeframe,
            "options": read_options,
        }
        for path, read_options in zip(files, file_options, strict=True)
    ]
    if not force:
        held = _holding_version(registry, name, sources, mode, calendar)
        if held is not None:
            return IngestResult(held, None, None, already=True)
    frames = [
        read_bars(path, format=format, symbol=symbol, timeframe=timeframe, **read_options)
        for path, read_options in zip(files, file_options, strict=True)
    ]
    bars, overlaps, between = combine_files(frames, [path.name for path in files])
    facts = [
        {
            "name": path.name,
            "sha256": source["sha256"],
            "bars": len(frame),
            "first": str(frame["timestamp"].min()) if len(frame) else None,
            "last": str(frame["timestamp"].max()) if len(frame) else None,
        }
        for path, source, frame in zip(files, sources, frames, strict=True)
    ]
    steps = []
    if len(files) > 1:
        steps.append(
            {
                "name": "combine_files",
                "params": {"files": [path.name for path in files]},
                "overlaps": overlaps,
                "gaps_between_files": between,
            }
        )
    result = ingest_bars(
        registry,
        bars,
        name=name,
        sources=sources,
        mode=mode,
        calendar=calendar,
        source_label=str(files[0]) if len(files) == 1 else f"{len(files)} files",
        version=version,
        steps=steps,
    )
    return IngestResult(
        result.ref,
        result.validation,
        result.gaps,
        facts,
        overlaps,
        between,
        extras=result.extras,
    )


def _read_options(path: Path, format: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """The reader options of one file: ``options``, plus ``extras=True`` for a Databento
    file (format ``dbn``, or a ``.dbn`` / ``.dbn.zst`` name when no format is given) that
    does not set it, so tick bars keep their extra columns."""
    name = path.name.lower()
    dbn = (format or "").strip().lower() == "dbn" or (
        format is None and name.endswith((".dbn", ".dbn.zst"))
    )
    if dbn and "extras" not in options:
        return {**options, "extras": True}
    return options


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files named by ``paths``, in order, each once; a path that names no file but holds
    ``*``, ``?`` or ``[`` is a glob (for shells that pass it unexpanded). Raises
    ``SourceError`` naming a path or pattern that matches no file."""
    found: list[Path] = []
    for item in paths:
        path = Path(item).expanduser()
        if path.exists() or not any(char in str(item) for char in "*?["):
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(str(path)))
            if not matches:
                raise SourceError(f"No file matches {str(item)!r}. Check the pattern.")
        for match in matches:
            if not match.is_file():
                raise SourceError(
                    f"Cannot ingest {match}: no such file"
                    + (" (it is a directory)" if match.is_dir() else "")
                    + ". Check the path."
                )
            if match.resolve() not in {f.resolve() for f in found}:
                found.append(match)
    if not found:
        raise SourceError("No files to ingest: give at least one path.")
    return found


def missing_identity(
    files: list[Path],
    format: str | None,
    symbol: str | None,
    timeframe: str | None,
    options: dict[str, Any],
) -> list[str]:
    """``symbol`` and/or ``timeframe`` when a CSV/Parquet file has no such column and no
    value was given, so both can be asked for at once (readers stop at the first). Other
    formats, and files whose header cannot be read, are left to their readers."""
    wanted = [
        param for param, value in (("symbol", symbol), ("timeframe", timeframe)) if value is None
    ]
    if not wanted:
        return []
    mapped = {str(key).lower() for key in (options.get("columns") or {})}
    missing: list[str] = []
    for path in files:
        header = _tabular_header(path, format)
        if header is None:
            continue
        for param in wanted:
            if param not in header and param not in mapped and param not in missing:
                missing.append(param)
    return [param for param in wanted if param in missing]


def _tabular_header(path: Path, format: str | None) -> set[str] | None:
    """Lower-cased column names of a CSV/Parquet bars file; None for other formats or an
    unreadable header (the reader then reports the problem properly)."""
    suffix = path.name.lower().rsplit(".", 1)[-1]
    kind = (format or "").strip().lower() or {
        "csv": "csv",
        "txt": "csv",
        "parquet": "parquet",
        "pq": "parquet",
    }.get(suffix)
    try:
        if kind == "csv" and not (format is None and looks_like_histdata(path)):
            return {str(c).strip().lower() for c in pd.read_csv(path, nrows=0).columns}
        if kind == "parquet":
            return {str(c).strip().lower() for c in pq.read_schema(path).names}
    except Exception:  # a corrupt file: its reader names the problem
        return None
    return None


def combine_files(
    frames: list[pd.DataFrame], names: list[str]
) -> tuple[pd.DataFrame, list[dict[str, Any]], list[dict[str, Any]]]:
    """One canonical bar table from several files' bars, with overlaps and gaps between files.

    Every file must hold the same extra columns (none, or e.g. the same tick statistics):
    ``SourceError`` names the files otherwise. A bar (symbol, timestamp) held by two files
    is kept once, from the first file, when every value agrees (extras included); when
    they differ the files conflict and ``SourceError`` names them and the first times.
    Duplicates inside one file are left to validation. Returns the bars (sorted by symbol,
    then time), the overlaps (``files``, ``bars``) and the gaps between consecutive files
    of a symbol (``after``, ``before``, ``from``, ``to``, ``missing_bars``).
    """
    if len(frames) == 1:
        return frames[0], [], []
    held = [extra_columns(frame) for frame in frames]
    if any(columns != held[0] for columns in held[1:]):
        listed = "; ".join(
            f"{name}: {', '.join(columns) or 'none'}"
            for name, columns in zip(names, held, strict=True)
        )
        raise SourceError(
            f"The files hold different extra bar columns ({listed}), so they cannot make one "
            "version. Ingest them under separate names, or give every file the same columns."
        )
    tagged = pd.concat([frame.assign(_file=i) for i, frame in enumerate(frames)], ignore_index=True)
    keys = ["symbol", "timestamp"]
    first_file = tagged.groupby(keys, sort=False)["_file"].transform("min")
    repeated = tagged["_file"] != first_file
    overlaps: list[dict[str, Any]] = []
    if repeated.any():
        values = [c for c in (*BAR_COLUMNS, *held[0]) if c not in keys]
        firsts = tagged[~repeated].drop_duplicates(keys).set_index(keys)[values]
        later = tagged[repeated]
        reference = firsts.loc[pd.MultiIndex.from_frame(later[keys])]
        same = (
            (later[values].to_numpy() == reference.to_numpy())
            | (later[values].isna().to_numpy() & reference.isna().to_numpy())
        ).all(axis=1)
        if not same.all():
            bad = later[~same]
            pairs = sorted(
                {
                    (names[int(a)], names[int(b)])
                    for a, b in zip(first_file[bad.index], bad["_file"], strict=True)
                }
            )
            shown = ", ".join(str(t) for t in bad["timestamp"].head(3))
            raise SourceError(
                f"{len(bad):,} bars differ between files that both hold them: "
                + "; ".join(f"{a} and {b}" for a, b in pairs)
                + f" (first at {shown}). Remove the wrong copy, or ingest the files separately."
            )
        counts = (
            pd.Series(1, index=later.index).groupby([first_file[later.index], later["_file"]]).sum()
        )
        overlaps = [
            {"files": [names[int(a)], names[int(b)]], "bars": int(n)}
            for (a, b), n in counts.items()
        ]
    kept = tagged[~repeated]
    between = _gaps_between(kept, names)
    bars = kept.sort_values(keys, kind="mergesort").drop(columns="_file").reset_index(drop=True)
    return bars, overlaps, between


def _gaps_between(tagged: pd.DataFrame, names: list[str]) -> list[dict[str, Any]]:
    """Missing time between one file's last bar and the next file's first, per symbol."""
    gaps = []
    spans = tagged.groupby(["symbol", "_file"], sort=False).agg(
        first=("timestamp", "min"), last=("timestamp", "max"), timeframe=("timeframe", "first")
    )
    for symbol, part in spans.reset_index().groupby("symbol", sort=True):
        part = part.sort_values("first")
        for (_, a), (_, b) in zip(part.iloc[:-1].iterrows(), part.iloc[1:].iterrows(), strict=True):
            bar = parse_timeframe(str(a["timeframe"]))
            missing = int((b["first"] - a["last"]) / bar) - 1
            if missing > 0:
                gaps.append(
                    {
                        "symbol": str(symbol),
                        "after": names[int(a["_file"])],
                        "before": names[int(b["_file"])],
                        "from": str(a["last"]),
                        "to": str(b["first"]),
                        "missing_bars": missing,
                    }
                )
    return gaps


def _holding_version(
    registry: Registry,
    name: str,
    sources: list[dict[str, Any]],
    mode: str,
    calendar: str | None,
) -> DatasetRef | None:
    """The stored ``raw/<name>`` version made from exactly these source bytes read with the
    same settings, if any (the newest first)."""
    wanted = _signature(sources, mode, calendar)
    for version in reversed(registry.versions("raw", name)):
        manifest = registry.manifest(registry.resolve("raw", name, version))
        steps = manifest.get("transformations") or []
        stored_mode = next(
            (s["params"].get("mode") for s in steps if s.get("name") == "validate_bars"), None
        )
        stored_calendar = next(
            (s["params"].get("calendar") for s in steps if s.get("name") == "gap_report"), None
        )
        try:
            held = _signature(manifest.get("sources") or [], stored_mode, stored_calendar)
        except (KeyError, TypeError, AttributeError):  # a generator, not files
            continue
        if held == wanted:
            return registry.resolve("raw", name, version)
    return None


def _signature(sources: list[dict[str, Any]], mode: Any, calendar: Any) -> str:
    return sha256_json(
        {
            "files": sorted(source["sha256"] for source in sources),
            "read": [
                {k: source.get(k) for k in ("format", "symbol", "timeframe", "options")}
                for source in sorted(sources, key=lambda s: s["sha256"])
            ],
            "mode": mode,
            "calendar": calendar,
        }
    )


def ingest_bars(
    registry: Registry,
    bars: pd.DataFrame,
    *,
    name: str,
    sources: list[dict[str, Any]],
    mode: Literal["strict", "repair"] = "strict",
    calendar: str | None = None,
    source_label: str = "<bars>",
    version: int | None = None,
    steps: list[dict[str, Any]] | None = None,
) -> IngestResult:
    """Validate canonical ``bars`` and store them as ``raw/<name>`` (see ``ingest_file``);
    ``steps`` are transformations made before validation (e.g. combining files)."""
    clean, report = validate_bars(bars, mode=mode, source=source_label)
    transformations: list[dict[str, Any]] = [
        *(steps or []),
        {"name": "validate_bars", "params": {"mode": mode}, "report": report.to_dict()},
    ]
    gaps = None
    if calendar is not None:
        gaps = summarise_gaps(gap_report(clean, calendar))
        transformations.append(
            {"name": "gap_report", "params": {"calendar": calendar}, "summary": gaps}
        )
    ref = registry.write_raw(
        name, clean, sources=sources, transformations=transformations, version=version
    )
    return IngestResult(ref, report, gaps, extras=extra_columns(clean))
