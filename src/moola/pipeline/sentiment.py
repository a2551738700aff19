"""News sentiment, from GDELT files to per-bar features: ingest, score, build features.

Three steps, each registry in, one new write-once dataset version out, each recording
what it was made from:

1. ``ingest_gkg``: GKG 2.1 files -> the relevant records (``moola.data.sources.gdelt``)
   as a news table (``NEWS_KIND``); the manifest lists every file with its SHA-256, the
   relevance filter, and the malformed lines by reason with file and line numbers.
2. ``score_news``: a news table -> the same records plus ``sentiment`` in [-1, 1],
   ``confidence`` in [0, 1] and ``scorer`` (``moola.models.sentiment``: GDELT tone,
   VADER lexicon, or a local transformer whose files' hashes are recorded).
3. ``build_sentiment_features``: raw bars + a scored news table -> a features table
   (``timestamp``, ``symbol`` and ``moola.features.sentiment.SENTIMENT_COLUMNS``) with
   the publication lag, half-life and baseline in its meta, and how many items each
   symbol used, left before the bars or found after them.

Where news lives: the registry's derived-table kinds are ``features``, ``labels``,
``predictions`` and ``indexes``; ``NEWS_KIND`` is ``news`` (``data/news/<name>/vN``) once
the registry lists it among ``TABLE_KINDS``, and ``indexes`` until then.

News that misses the bars entirely (every item after the last bar, or before the first)
is refused as an input mistake (the wrong news set, or times in another zone), naming
both time ranges; items partly outside the bars are left out and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from moola.core.errors import ConfigError, SourceError
from moola.core.hashing import sha256_file
from moola.data._manifest import DatasetRef
from moola.data.registry import TABLE_KINDS, Registry
from moola.data.sources.gdelt import GkgReport, Relevance, read_gkg, record_texts
from moola.features.sentiment import (
    SENTIMENT_COLUMNS,
    AlignStats,
    SentimentParams,
    sentiment_features,
)

__all__ = [
    "NEWS_KIND",
    "IngestedNews",
    "SentimentBuild",
    "build_sentiment_features",
    "ingest_gkg",
    "load_news",
    "resolve_news",
    "score_news",
]

NEWS_KIND = "news" if "news" in TABLE_KINDS else "indexes"
_NEWS_TABLE = "gdelt_gkg_2.1"  # meta "table": what a news dataset holds

Progress = Callable[[int, int, str], None]  # (done, total, what)


@dataclass(frozen=True)
class IngestedNews:
    """The stored news version and the reading report (counts, malformed lines)."""

    ref: DatasetRef
    report: GkgReport


@dataclass(frozen=True)
class SentimentBuild:
    """The stored features version and, per symbol, how the news met its bars."""

    ref: DatasetRef
    stats: dict[str, AlignStats]


def ingest_gkg(
    registry: Registry,
    files: Sequence[str | Path],
    *,
    name: str,
    relevance: Relevance | None = None,
    progress: Progress | None = None,
    version: int | None = None,
) -> IngestedNews:
    """Read GKG 2.1 ``files``, keep the records ``relevance`` picks, store them as
    ``NEWS_KIND/<name>``.

    Raises ``SourceError`` for a file that is not GKG 2.1 (nothing is written) and when no
    record is relevant (naming the filter and the counts), ``ConfigError`` for a bad filter.
    """
    relevance = relevance or Relevance()
    relevance.check()
    paths = [Path(f) for f in files]
    if not paths:
        raise SourceError("No GKG files given: pass one or more .gkg.csv.zip files.")
    report = GkgReport()
    frames = []
    sources = []
    for done, path in enumerate(paths):
        if progress is not None:
            progress(done, len(paths), path.name)
        read = read_gkg(path, relevance=relevance)
        frames.append(read.records)
        report.merge(read.report)
        sources.append(
            {
                "file": path.name,
                "sha256": sha256_file(path),
                "lines": read.report.lines,
                "kept": read.report.kept,
                "malformed": read.report.n_malformed,
            }
        )
    if progress is not None:
        progress(len(paths), len(paths), "done")
    records = pd.concat(frames, ignore_index=True)
    duplicated = records["record_id"].duplicated(keep="first").to_numpy()
    for file, line in zip(records["file"][duplicated], records["line"][duplicated], strict=True):
        report.add(str(file), int(line), "duplicate record id")
    report.kept -= int(duplicated.sum())
    records = records[~duplicated].sort_values(["published", "record_id"], kind="stable")
    if records.empty:
        raise SourceError(
            f"No relevant record in {len(paths)} GKG file(s) ({report.summary()}) with "
            f"themes {list(relevance.themes) or 'any'} and pair {relevance.pair or 'none'}; "
            "nothing stored. Widen the filter (other themes, no pair) or pass more files."
        )
    ref = registry.write_table(
        NEWS_KIND,
        name,
        records,
        parents=[],
        meta={
            "table": _NEWS_TABLE,
            "first": str(records["published"].iloc[0]),
            "last": str(records["published"].iloc[-1]),
            "relevance": relevance.model_dump(mode="json"),
            "report": report.to_dict(),
        },
        transformations=[
            {
                "name": "moola.data.sources.gdelt.read_gkg",
                "sources": sources,
                "relevance": relevance.model_dump(mode="json"),
            }
        ],
        version=version,
    )
    return IngestedNews(ref, report)


def resolve_news(registry: Registry, text: str) -> DatasetRef:
    """``NAME[@vN]`` of a news dataset (``ConfigError`` when it is another kind of table)."""
    ref = registry.resolve_text(text, NEWS_KIND)
    if registry.meta(ref).get("table") != _NEWS_TABLE:
        raise ConfigError(
            f"{ref} is not a news dataset (no GDELT records); ingest GKG files with "
            "ingest_gkg first.",
            param="news",
        )
    return ref


def load_news(registry: Registry, ref: DatasetRef) -> pd.DataFrame:
    """The news table of ``ref``, verified against its manifest."""
    return registry.load_table(ref.kind, ref.name, ref.version)


def score_news(
    registry: Registry,
    news: DatasetRef,
    *,
    scorer: str,
    name: str | None = None,
    model_dir: str | Path | None = None,
    version: int | None = None,
) -> DatasetRef:
    """Score every record of ``news`` with ``scorer`` (``moola.models.sentiment.SCORERS``)
    and store the records with ``sentiment``, ``confidence`` and ``scorer`` as
    ``NEWS_KIND/<name>`` (default ``<news name>-<scorer>``).

    The tone scorer reads GDELT's tone; the lexicon and transformer scorers read
    ``record_texts`` (quotations, else themes and names: GKG has no article text).
    """
    from moola.models.sentiment import create_scorer

    instance = create_scorer(scorer, model_dir=model_dir)
    records = load_news(registry, news)
    if instance.name == "tone":
        values, confidence = instance.score_tone(records["tone"], records["word_count"])  # type: ignore[attr-defined]
        text_source = "GDELT V2Tone (computed by GDELT on the full article)"
    else:
        values, confidence = instance.score(record_texts(records))
        text_source = "record_texts: quotations, else themes, organisations and names"
    scored = records.drop(columns=["sentiment", "confidence", "scorer"], errors="ignore")
    scored["sentiment"] = values
    scored["confidence"] = confidence
    scored["scorer"] = instance.name
    meta = dict(registry.meta(news))
    for key in ("kind", "name", "version", "rows", "columns"):
        meta.pop(key, None)
    described = instance.describe()
    return registry.write_table(
        NEWS_KIND,
        name or f"{news.name}-{instance.name}",
        scored,
        parents=[news],
        meta={**meta, "scored": {**described, "text": text_source}},
        transformations=[
            {"name": f"moola.models.sentiment.{type(instance).__name__}", **described}
        ],
        version=version,
    )


def build_sentiment_features(
    registry: Registry,
    raw: DatasetRef,
    news: DatasetRef,
    *,
    name: str,
    params: SentimentParams | None = None,
    version: int | None = None,
) -> SentimentBuild:
    """Sentiment columns of the scored ``news`` for every symbol of the raw bars ``raw``,
    stored as ``features/<name>`` (``timestamp``, ``symbol``, ``SENTIMENT_COLUMNS``).

    Raises ``ConfigError`` when ``news`` is not scored (score it first) and when its items
    miss a symbol's bars entirely (every item after the last bar or before the first).
    """
    params = params or SentimentParams()
    items = load_news(registry, news)
    if "sentiment" not in items.columns:
        raise ConfigError(
            f"{news} is not scored: it has no 'sentiment' column. Score it first "
            f"(score_news(registry, news, scorer='tone')), then build features from the "
            "scored version.",
            param="news",
        )
    bars = registry.load_raw(raw.name, raw.version)
    parts = []
    stats: dict[str, AlignStats] = {}
    for symbol, group in bars.groupby("symbol", sort=True):
        group = group.sort_values("timestamp")
        columns, found = sentiment_features(items, group, params)
        _check_overlap(found, items, group, str(symbol), news, params)
        stats[str(symbol)] = found
        parts.append(
            pd.concat(
                [
                    group[["timestamp", "symbol"]].reset_index(drop=True),
                    columns.reset_index(drop=True),
                ],
                axis=1,
            )
        )
    table = pd.concat(parts, ignore_index=True)
    settings = params.model_dump(mode="json")
    ref = registry.write_table(
        "features",
        name,
        table,
        parents=[raw, news],
        meta={
            "sentiment": settings,
            "columns": list(SENTIMENT_COLUMNS),
            "dtypes": {column: "float64" for column in SENTIMENT_COLUMNS},
            "lookback": 0,
            "alignment": {symbol: s.to_dict() for symbol, s in stats.items()},
            "scorer": registry.meta(news).get("scored", {}).get("scorer"),
        },
        transformations=[
            {
                "name": "moola.features.sentiment.sentiment_features",
                "params": settings,
                "rule": "an item published at p reaches the first bar opening at or after p + lag",
            }
        ],
        version=version,
    )
    return SentimentBuild(ref, stats)


def _check_overlap(
    stats: AlignStats,
    items: pd.DataFrame,
    bars: pd.DataFrame,
    symbol: str,
    news: DatasetRef,
    params: SentimentParams,
) -> None:
    if stats.items == 0 or stats.used > 0:
        return
    where = "after the last bar" if stats.after == stats.items else "outside the bars"
    if stats.before == stats.items:
        where = "before the first bar"
    raise ConfigError(
        f"Every item of {news} ({stats.items}, published {items['published'].min()} to "
        f"{items['published'].max()}) falls {where} of {symbol} ({bars['timestamp'].iloc[0]} "
        f"to {bars['timestamp'].iloc[-1]}) with lag {params.lag}: no bar can use any of them. "
        "Ingest the GDELT files of the bars' period, or pick the raw dataset the news "
        "belongs to; nothing stored.",
        param="news",
    )
