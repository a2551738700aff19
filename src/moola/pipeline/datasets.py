"""Building registry datasets from other ones: synthetic markets, labeled windows, splits.

Each function here reads through the registry, computes with the pure modules (sources,
windows, splits) and writes one new version back, recording its parameters in the
manifest. The CLI's ``moola data synth | split`` and the demo call these (windows from labels:
``moola.pipeline.labeled_windows``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError, SplitError
from moola.core.hashing import sha256_json
from moola.core.settings import parse_config
from moola.core.timeframes import parse_timeframe
from moola.data._manifest import DatasetRef
from moola.data.blacklist import BlacklistEntry, add_entries, make_entry, read_blacklist
from moola.data.registry import Registry
from moola.data.sources.synthetic import SyntheticMarket, SyntheticMarketConfig, generate_market
from moola.data.splits import Fold, Split, durations_to_units, make_split
from moola.data.windows import labeled_windows_table
from moola.pipeline.ingest import ingest_bars

PLANTED_LABEL_SOURCE = "synthetic-planted"
# Settings of several-symbol markets, recorded only when they are not at their defaults.
_SEVERAL_SYMBOL_FIELDS = ("symbols", "correlation", "start_prices", "annual_vols")


def synthesize_raw(
    registry: Registry,
    name: str,
    *,
    n_bars: int,
    seed: int = 0,
    symbol: str | None = None,
    symbols: Sequence[str] | None = None,
    correlation: float | Sequence[Sequence[float]] | None = None,
    timeframe: str = "1m",
    calendar: str = "futures",
    n_patterns: int = 0,
    pattern_length: int = 105,
    pattern_strength: float = 1.0,
) -> tuple[DatasetRef, SyntheticMarket]:
    """Generate a seeded synthetic market and store its bars as ``raw/<name>``.

    ``symbol`` (default ``SYN``) names one symbol; ``symbols`` several, stored as one raw
    dataset on one shared time grid (``n_bars`` bars each, sorted by symbol then time),
    whose 1-bar log returns correlate by ``correlation`` (one value for every pair or a
    full matrix; default 0.7). Giving both ``symbol`` and ``symbols`` is refused.
    ``n_patterns`` is per symbol.
    """
    values: dict[str, Any] = {
        "seed": seed,
        "timeframe": timeframe,
        "n_bars": n_bars,
        "calendar": calendar,
        "n_patterns": n_patterns,
        "pattern_length": pattern_length,
        "pattern_strength": pattern_strength,
    }
    if symbol is not None:
        values["symbol"] = symbol
    if symbols is not None:
        values["symbols"] = tuple(symbols)
    if correlation is not None:
        values["correlation"] = correlation
    config = parse_config(SyntheticMarketConfig, values, where="synthetic market settings")
    market = generate_market(config)
    settings = _recorded_settings(config)
    source = {
        "generator": "moola.data.sources.synthetic",
        "config": settings,
        "config_hash": sha256_json(settings),
        "planted_patterns": len(market.patterns),
    }
    result = ingest_bars(
        registry,
        market.bars,
        name=name,
        sources=[source],
        mode="strict",
        calendar=calendar,
        source_label=f"synthetic market (seed {seed})",
    )
    return result.ref, market


def _recorded_settings(config: SyntheticMarketConfig) -> dict[str, Any]:
    """The config as the manifest records it. For one symbol the several-symbol settings
    are left out while at their defaults, so a one-symbol market keeps the manifest (and
    config hash) it had before they existed; several symbols record them all."""
    settings = config.model_dump(mode="json")
    if len(config.names) == 1:
        defaults = SyntheticMarketConfig.model_fields
        for field in _SEVERAL_SYMBOL_FIELDS:
            if getattr(config, field) == defaults[field].default:
                settings.pop(field)
    return settings


def planted_labeled(
    registry: Registry, name: str, raw: DatasetRef, market: SyntheticMarket
) -> DatasetRef:
    """Store the market's planted patterns as labeled windows (label source recorded)."""
    patterns = market.patterns
    length = int(market.config.pattern_length)
    bars = registry.load_raw(raw.name, raw.version)
    table = labeled_windows_table(
        bars,
        patterns["start"].to_numpy(np.int64),
        length,
        patterns["label"].tolist(),
        source=PLANTED_LABEL_SOURCE,
    )
    step = {"name": "planted_patterns", "params": {"length": length, "count": len(table)}}
    return registry.write_labeled(name, raw, table, length=length, transformations=[step])


def planted_labels_file(market: SyntheticMarket) -> pd.DataFrame:
    """The market's planted patterns as a labels file (``symbol, start_ts, label, source``)
    that ``moola data windows RAW --labels FILE --length <pattern length>`` reads back.

    Start times rather than positions, so the file stays right for any version of the
    same bars.
    """
    patterns = market.patterns
    return pd.DataFrame(
        {
            "symbol": patterns["symbol"].astype(str).to_numpy(),
            "start_ts": patterns["start_ts"].to_numpy(),
            "label": patterns["label"].astype(str).to_numpy(),
            "source": PLANTED_LABEL_SOURCE,
        }
    )


def make_and_store_split(
    registry: Registry,
    ref: DatasetRef,
    strategy: str,
    *,
    name: str | None = None,
    purge: str | int = 0,
    embargo: str | int = 0,
    **params: Any,
) -> tuple[str, int, Split]:
    """Split ``ref``'s windows with ``strategy`` and store the split; returns name, version.

    Windows overlapping the data root's blacklist are in no part: the split is made over
    the others and lists the blacklisted ones as purged, with their count in
    ``params["blacklist"]`` (so the blacklist read is part of the split's identity).

    A sample's time is its span from ``Registry.sample_spans`` (first bar to the later of
    last bar and label horizon end, in ns). Windows of several symbols are cut at the same
    timestamps for all of them, purged and embargoed across symbols, and their symbols are
    recorded in the split (``Split.symbols``) so a leak is refused naming both symbols.
    For the usual 70/15/15 forecasting split by time use ``forward-chaining`` with its
    default fractions.
    """
    # The spelling make_split accepts (Walk_Forward -> walk-forward), so the per-strategy
    # parameters below are picked for any spelling of the name.
    strategy = str(strategy).strip().lower().replace("_", "-").replace(" ", "-")
    starts, ends = registry.sample_spans(ref)
    windows = registry.sample_windows(ref)
    symbols = windows[0]
    blacklist = read_blacklist(registry.root)
    kept = np.arange(len(starts))
    if len(blacklist):
        kept = np.flatnonzero(~blacklist.mask(*windows))
        if not len(kept):
            raise ConfigError(
                f"Every sample of {ref} overlaps the blacklist "
                f"({blacklist.record(0)['file']}); there is nothing left to split."
            )
    raw = registry.meta(ref)["raw"]
    timeframes = registry.meta(registry.resolve("raw", raw["name"], raw["version"]))["timeframe"]
    bar = parse_timeframe(timeframes[0])
    options = _strategy_params(strategy, params)
    options.update(
        {
            gap: durations_to_units(value, unit="ns", bar_duration=bar, name=gap)
            for gap, value in (("purge", purge), ("embargo", embargo))
        }
    )
    if strategy == "stratified":
        if ref.kind != "labeled":
            raise SplitError(
                f"The stratified strategy balances labels, and {ref} has none; split "
                "unlabeled windows with forward-chaining, purged-kfold or walk-forward."
            )
        task = registry.meta(ref).get("task")
        if task in ("regression", "multitask"):
            raise SplitError(
                f"The stratified strategy balances one class label and {ref} has a {task} "
                "task; split it with forward-chaining, purged-kfold or walk-forward."
            )
        options.pop("purge")
        options.pop("embargo")
        labels = pd.read_parquet(
            registry.dataset_dir(ref.kind, ref.name, ref.version) / "windows.parquet",
            columns=["label"],
        )["label"]
        labels = labels.astype(str).to_numpy()[kept]
        built = make_split(strategy, starts[kept], ends[kept], labels=labels, **options)
    else:
        if len(np.unique(symbols[kept])) > 1:
            # New with several symbols, so no stored split changes: their spans are ns and
            # are recorded as such (one-symbol splits keep the "bars" they always had).
            options["spans_unit"] = "ns"
        built = make_split(strategy, starts[kept], ends[kept], symbols=symbols[kept], **options)
    if len(blacklist):  # blacklisted samples sit in no part; the split records how many
        built = _over_all_samples(built, kept, starts, ends, symbols)
        record = blacklist.record(len(starts) - len(kept))
        built = built.model_copy(update={"params": {**built.params, "blacklist": record}})
    split_name = name or f"{ref.name}-{strategy}"
    split_name, version = registry.write_split(split_name, built, ref)
    return split_name, version, built


def _over_all_samples(
    split: Split, kept: np.ndarray, starts: np.ndarray, ends: np.ndarray, symbols: np.ndarray
) -> Split:
    """A split made over the ``kept`` samples, re-indexed over all of them: the others
    (blacklisted) are in no part, listed in ``purged`` so every sample is accounted for."""
    left_out = np.setdiff1d(np.arange(len(starts)), kept).tolist()

    def full(indices: list[int]) -> list[int]:
        return sorted(kept[np.asarray(indices, dtype=np.int64)].tolist())

    folds = None
    if split.folds is not None:
        folds = [
            Fold(
                train=full(fold.train),
                val=full(fold.val),
                test=full(fold.test),
                purged=sorted(full(fold.purged) + left_out),
            )
            for fold in split.folds
        ]
    update: dict[str, Any] = {
        "train": full(split.train),
        "val": full(split.val),
        "test": full(split.test),
        "purged": sorted(full(split.purged) + left_out),
        "folds": folds,
    }
    if split.spans:
        update["spans"] = list(zip(starts.tolist(), ends.tolist(), strict=True))
    if split.symbols:
        update["symbols"] = [str(symbol) for symbol in symbols.tolist()]
    return split.model_copy(update=update)


def _strategy_params(strategy: str, params: dict[str, Any]) -> dict[str, Any]:
    """The CLI gives every flag; keep only those the chosen strategy takes."""
    if strategy == "forward-chaining":
        return {k: params[k] for k in ("val_fraction", "test_fraction") if k in params}
    if strategy == "purged-kfold":
        return {"n_folds": params.get("folds", 5)}
    if strategy == "walk-forward":
        out = {"n_splits": params.get("folds", 5), "train_size": params.get("train_size")}
        if params.get("test_size") is not None:
            out["test_size"] = params["test_size"]
        return out
    if strategy == "stratified":
        return {
            "val_fraction": params.get("val_fraction", 0.15),
            "test_fraction": params.get("test_fraction", 0.15),
            "seed": params.get("seed", 0),
            "time_independent": params.get("time_independent", False),
        }
    return {}


def blacklist_span(
    registry: Registry,
    raw: str,
    *,
    start_ts: Any,
    end_ts: Any,
    reason: str,
    symbol: str | None = None,
) -> tuple[BlacklistEntry, bool, int]:
    """Blacklist the bars of ``raw`` (``NAME[@vN]``) from ``start_ts`` to ``end_ts``.

    ``symbol`` may be left out when the bars hold one symbol. A span that covers none of
    the bars (a typo in a date or a time zone, most often) is refused naming the bars'
    range. Returns the entry, whether it was new (an identical span is not added twice)
    and how many of ``raw``'s bars it covers.
    """
    ref = registry.resolve_text(raw, "raw")
    bars = registry.load_raw(ref.name, ref.version)
    symbols = sorted(bars["symbol"].astype(str).unique().tolist())
    if symbol is None:
        if len(symbols) != 1:
            raise ConfigError(
                f"symbol: {ref} holds several symbols ({', '.join(symbols)}); name the one "
                "whose bars are blacklisted."
            )
        symbol = symbols[0]
    if symbol not in symbols:
        raise ConfigError(f"symbol {symbol!r} has no bars in {ref}; it holds {', '.join(symbols)}.")
    entry = make_entry(symbol, start_ts, end_ts, reason, f"moola data blacklist add ({ref})")
    mine = bars.loc[bars["symbol"].astype(str) == symbol, "timestamp"]
    stamps = pd.DatetimeIndex(mine).as_unit("ns").asi8
    first, last = entry.span_ns
    covered = int(((stamps >= first) & (stamps <= last)).sum())
    if covered == 0:
        raise ConfigError(
            f"The span {entry.start_ts} .. {entry.end_ts} covers none of {ref}'s {symbol} "
            f"bars, which run from {mine.min().isoformat()} to {mine.max().isoformat()} (UTC); "
            "check start_ts and end_ts (times without an offset are read as UTC)."
        )
    added = add_entries(registry.root, [entry])
    return entry, bool(added), covered
