"""Ingestion: a source file (or a frame) -> validated bars -> a new raw dataset version.

This is the one path by which bars enter moola: read with a source reader, validate in
strict or repair mode, report gaps against a session calendar, and store write-once with
a manifest recording the source bytes' hash and every change made on the way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from moola.core.errors import SourceError
from moola.core.hashing import sha256_file
from moola.data._manifest import DatasetRef
from moola.data.calendars import gap_report, summarise_gaps
from moola.data.registry import Registry
from moola.data.sources import read_bars
from moola.data.validation import ValidationReport, validate_bars


@dataclass(frozen=True)
class IngestResult:
    """What an ingest stored and what it found on the way."""

    ref: DatasetRef
    validation: ValidationReport
    gaps: dict[str, Any] | None


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
) -> IngestResult:
    """Read ``path`` with its source reader, validate, and store it as ``raw/<name>``."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"Cannot ingest {path}: no such file. Check the path.")
    options = options or {}
    bars = read_bars(path, format=format, symbol=symbol, timeframe=timeframe, **options)
    source = {
        "path": str(path.resolve()),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "format": format or "auto",
        "symbol": symbol,
        "timeframe": timeframe,
        "options": options,
    }
    return ingest_bars(
        registry,
        bars,
        name=name,
        sources=[source],
        mode=mode,
        calendar=calendar,
        source_label=str(path),
        version=version,
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
) -> IngestResult:
    """Validate canonical ``bars`` and store them as ``raw/<name>`` (see ``ingest_file``)."""
    clean, report = validate_bars(bars, mode=mode, source=source_label)
    transformations: list[dict[str, Any]] = [
        {"name": "validate_bars", "params": {"mode": mode}, "report": report.to_dict()}
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
    return IngestResult(ref, report, gaps)
