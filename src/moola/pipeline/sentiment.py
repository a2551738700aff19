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
   the publication lag, half-life and baseline in its meta, how each column is scaled
   (``scaling``), and how many items each symbol used, left before the bars or found
   after them. Such a table joins feature windows as an extra per-bar table
   (``build_feature_windows(..., extra_features=NAME)``, ``moola data windows --features
   SET --extra-features NAME``), so ``moola train`` can use sentiment beside any feature set.

``sentiment_ablation`` answers whether the news helps: the CNN-LSTM-attention multi-task
model (direction, volatility, regime) trained on price features with and without the
sentiment columns, on the same windows, seed and time split, with paired intervals.

Where news lives: a registry table of kind ``news`` (``NEWS_KIND``: ``data/news/<name>/vN``).

News that misses the bars entirely (every item after the last bar, or before the first)
is refused as an input mistake (the wrong news set, or times in another zone), naming
both time ranges; items partly outside the bars are left out and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError, SourceError
from moola.core.hashing import sha256_file
from moola.data._manifest import DatasetRef
from moola.data.registry import Registry
from moola.data.sources.gdelt import GkgReport, Relevance, read_gkg, record_texts
from moola.features.sentiment import (
    SENTIMENT_COLUMNS,
    SENTIMENT_SCALING,
    AlignStats,
    SentimentParams,
    sentiment_features,
)

__all__ = [
    "HEADS",
    "NEWS_KIND",
    "NEWS_TABLE",
    "AblationResult",
    "IngestedNews",
    "SentimentBuild",
    "build_sentiment_features",
    "ingest_gkg",
    "load_news",
    "resolve_news",
    "score_news",
    "sentiment_ablation",
]

NEWS_KIND = "news"
NEWS_TABLE = "gdelt_gkg_2.1"  # meta "table": what a news dataset holds

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
    kept = [frame for frame in frames if len(frame)] or frames[:1]  # no empty-frame dtypes
    records = pd.concat(kept, ignore_index=True)
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
            "table": NEWS_TABLE,
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
    if registry.meta(ref).get("table") != NEWS_TABLE:
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
    device: str = "cpu",
    version: int | None = None,
) -> DatasetRef:
    """Score every record of ``news`` with ``scorer`` (``moola.models.sentiment.SCORERS``)
    and store the records with ``sentiment``, ``confidence`` and ``scorer`` as
    ``NEWS_KIND/<name>`` (default ``<news name>-<scorer>``). ``device`` is where a
    transformer runs (the other scorers run on the CPU).

    The tone scorer reads GDELT's tone; the lexicon and transformer scorers read
    ``record_texts`` (quotations, else themes and names: GKG has no article text).
    """
    from moola.models.sentiment import create_scorer

    options = {"device": device} if str(scorer).strip().lower() == "transformer" else {}
    instance = create_scorer(scorer, model_dir=model_dir, **options)
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
    items = _scored_items(registry, news)
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
            "scaling": dict(SENTIMENT_SCALING),
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


# --------------------------------------------------------------------------- ablation

HEADS: dict[str, int | str] = {"direction": 2, "volatility": "regression", "regime": 3}


@dataclass(frozen=True)
class AblationResult:
    """The multi-task model with and without the sentiment columns, on the same windows.

    ``arms`` maps ``"with_sentiment"`` / ``"without_sentiment"`` to its test metrics
    (direction and regime accuracy, volatility MSE and rank correlation); ``difference``
    each metric's with-minus-without and a 95% paired block-bootstrap interval over the
    test windows; ``windows`` the train / test counts; ``settings`` everything the run used.
    """

    arms: dict[str, dict[str, float]]
    difference: dict[str, dict[str, float]]
    windows: dict[str, int]
    settings: dict[str, object]


def sentiment_ablation(
    registry: Registry,
    raw: DatasetRef,
    news: DatasetRef,
    *,
    params: SentimentParams | None = None,
    feature_set: str = "relative11",
    length: int = 32,
    horizon: int = 5,
    regime_window: int = 240,
    test_fraction: float = 0.3,
    stride: int = 1,
    model: dict[str, object] | None = None,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> AblationResult:
    """Train the CNN-LSTM-attention multi-task model (direction, volatility, regime heads)
    twice on the same windows, with the sentiment columns beside the price features and
    without them, and compare the two on the same held-out later windows.

    Windows are ``length`` bars of ``feature_set`` (plus ``SENTIMENT_COLUMNS`` of the
    scored ``news`` in the "with" arm) ending at bar e, every ``stride`` bars; targets at e
    look ``horizon`` bars ahead: direction (up or not), realised volatility, and its regime
    against trailing cut points over ``regime_window`` bars (``moola.features.labels``).
    The split is by time at the window end that leaves ``test_fraction`` of the windows
    after it: those are the test set, and a training window whose targets reach past that
    time is dropped (purged), so no training target sees a bar the test targets describe.
    ``model`` overrides the network and trainer settings (default: a small network, 8
    epochs at lr 3e-3); both arms use the same ``seed``. Nothing is stored; the result
    says what was measured.
    """
    from moola.features.featureset import load_feature_set
    from moola.features.labels import (
        forward_return_direction,
        realized_volatility,
        volatility_regime_target,
    )
    from moola.training.neural import NeuralEstimator

    params = params or SentimentParams()
    if not 0.05 <= test_fraction <= 0.8:
        raise ConfigError(
            f"test_fraction must be in [0.05, 0.8], got {test_fraction}.", param="test_fraction"
        )
    for value, what in ((length, "length"), (horizon, "horizon"), (stride, "stride")):
        if int(value) != value or value < 1:
            raise ConfigError(f"{what} must be a positive integer, got {value!r}.", param=what)
    items = _scored_items(registry, news)
    fset = load_feature_set(feature_set)
    bars = registry.load_raw(raw.name, raw.version)
    blocks = []
    for symbol, group in bars.groupby("symbol", sort=True):
        group = group.sort_values("timestamp").reset_index(drop=True)
        price = fset.compute(group).to_numpy(dtype=np.float64)
        sentiment, stats = sentiment_features(items, group, params)
        _check_overlap(stats, items, group, str(symbol), news, params)
        direction = forward_return_direction(group, horizon)["label"].to_numpy()
        volatility = realized_volatility(group, horizon)["realized_vol"].to_numpy()
        regime = volatility_regime_target(group, horizon, window=regime_window)["vol_regime"]
        targets = np.column_stack(
            [np.where(direction > 0, 1.0, 0.0), volatility, regime.to_numpy()]
        )
        targets[np.isnan(direction) | np.isnan(volatility) | np.isnan(regime.to_numpy())] = np.nan
        values = np.concatenate([price, sentiment.to_numpy(dtype=np.float64)], axis=1)
        blocks.append(_windows_of(values, targets, group["timestamp"], length, horizon, stride))
    X = np.concatenate([b[0] for b in blocks])
    Y = np.concatenate([b[1] for b in blocks])
    ends = np.concatenate([b[2] for b in blocks])
    horizon_ends = np.concatenate([b[3] for b in blocks])
    if len(X) < 50:
        raise ConfigError(
            f"Only {len(X)} complete windows in {raw} (length {length}, horizon {horizon}, "
            f"warm-up of {fset.name} and of the regime cut points over {regime_window} bars); "
            "the ablation needs at least 50. Use more bars or shorter windows.",
            param="length",
        )
    cut = np.quantile(ends, 1.0 - test_fraction)
    train = horizon_ends < cut
    test = ends >= cut
    if train.sum() < 20 or test.sum() < 20:
        raise ConfigError(
            f"The time split leaves {int(train.sum())} training and {int(test.sum())} test "
            "windows; at least 20 each are needed. Use more bars or another test_fraction.",
            param="test_fraction",
        )
    settings = {
        "architecture": "cnn_lstm_attention",
        "heads": HEADS,
        "conv_channels": (16,),
        "kernel_sizes": (3,),
        "lstm_hidden": 16,
        "attention_dim": 16,
        "fc": (16,),
        "epochs": 8,
        "lr": 3e-3,
        "batch_size": 64,
        "seed": seed,
        **(model or {}),
    }
    n_price = len(fset.columns)
    arms: dict[str, dict[str, float]] = {}
    predictions = {}
    for arm, width in (("with_sentiment", X.shape[2]), ("without_sentiment", n_price)):
        estimator = NeuralEstimator(task="multitask", **settings)
        estimator.fit(X[train][:, :, :width], Y[train])
        predictions[arm] = estimator.predict_heads(X[test][:, :, :width])
        arms[arm] = _head_metrics(predictions[arm], Y[test])
    difference = _paired_differences(
        predictions, Y[test], block=length + horizon, n_bootstrap=n_bootstrap, seed=seed
    )
    return AblationResult(
        arms=arms,
        difference=difference,
        windows={
            "train": int(train.sum()),
            "test": int(test.sum()),
            "purged": int((~train & ~test).sum()),
        },
        settings={
            "raw": str(raw),
            "news": str(news),
            "sentiment": params.model_dump(mode="json"),
            "feature_set": fset.name,
            "price_columns": n_price,
            "sentiment_columns": len(SENTIMENT_COLUMNS),
            "length": length,
            "horizon": horizon,
            "regime_window": regime_window,
            "test_fraction": test_fraction,
            "stride": stride,
            "model": {k: v for k, v in settings.items()},
        },
    )


def _scored_items(registry: Registry, news: DatasetRef) -> pd.DataFrame:
    items = load_news(registry, news)
    if "sentiment" not in items.columns:
        raise ConfigError(
            f"{news} is not scored: it has no 'sentiment' column. Score it first "
            f"(score_news(registry, news, scorer='tone')), then build features from the "
            "scored version.",
            param="news",
        )
    return items


def _windows_of(
    values: np.ndarray,
    targets: np.ndarray,
    times: pd.Series,
    length: int,
    horizon: int,
    stride: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Windows of ``length`` rows ending at every ``stride``-th bar e whose rows are all
    finite and whose targets at e are defined: X (N, L, F) float32, Y (N, 3), and the
    times (ns since the epoch) of each window's end and horizon end."""
    n = len(values)
    finite = np.isfinite(values).all(axis=1).astype(np.int64)
    run = np.concatenate([[0], np.cumsum(finite)])
    candidates = np.arange(length - 1, n - horizon, stride)
    whole = run[candidates + 1] - run[candidates + 1 - length] == length
    ends = candidates[whole & np.isfinite(targets[candidates]).all(axis=1)]
    index = ends[:, None] - np.arange(length - 1, -1, -1)[None, :]  # (N, L)
    stamps = pd.DatetimeIndex(times).asi8  # ns since the epoch, UTC
    return (
        values[index].astype(np.float32),
        targets[ends],
        stamps[ends],
        stamps[ends + horizon],
    )


def _head_metrics(heads: dict[str, np.ndarray], Y: np.ndarray) -> dict[str, float]:
    direction = np.argmax(heads["direction"], axis=1)
    regime = np.argmax(heads["regime"], axis=1)
    volatility = heads["volatility"]
    return {
        "direction_accuracy": float(np.mean(direction == Y[:, 0])),
        "direction_base_rate": float(max(np.mean(Y[:, 0]), 1 - np.mean(Y[:, 0]))),
        "volatility_mse": float(np.mean((volatility - Y[:, 1]) ** 2)),
        "volatility_rank_corr": _rank_corr(volatility, Y[:, 1]),
        "regime_accuracy": float(np.mean(regime == Y[:, 2])),
    }


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if np.std(ra) == 0 or np.std(rb) == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _paired_differences(
    predictions: dict[str, dict[str, np.ndarray]],
    Y: np.ndarray,
    *,
    block: int,
    n_bootstrap: int,
    seed: int,
) -> dict[str, dict[str, float]]:
    """With-minus-without of each metric and a 95% moving-block bootstrap interval: the
    same resampled test windows for both arms (paired), in blocks of overlapping windows."""
    n = len(Y)
    block = max(1, min(block, n))
    rng = np.random.default_rng(seed)
    with_, without = predictions["with_sentiment"], predictions["without_sentiment"]
    point = {
        k: _head_metrics(with_, Y)[k] - _head_metrics(without, Y)[k]
        for k in _head_metrics(with_, Y)
        if k != "direction_base_rate"
    }
    draws: dict[str, list[float]] = {k: [] for k in point}
    n_blocks = int(np.ceil(n / block))
    for _ in range(n_bootstrap):
        first = rng.integers(0, n - block + 1, n_blocks)
        rows = (first[:, None] + np.arange(block)[None, :]).ravel()[:n]
        a = _head_metrics({k: v[rows] for k, v in with_.items()}, Y[rows])
        b = _head_metrics({k: v[rows] for k, v in without.items()}, Y[rows])
        for k in draws:
            draws[k].append(a[k] - b[k])
    return {
        k: {
            "difference": point[k],
            "low": float(np.quantile(draws[k], 0.025)) if n_bootstrap else float("nan"),
            "high": float(np.quantile(draws[k], 0.975)) if n_bootstrap else float("nan"),
        }
        for k in point
    }
