"""Windows over a feature table: ``build_feature_windows`` (``moola data windows --features``).

A model that forecasts from the last ``length`` bars x F features needs, per window, rows
``start .. start + length - 1`` of a causally computed feature table. The table is
computed once per (raw version, feature-set spec hash) and stored as a ``features``
dataset (reused when one with the same raw parent and spec hash exists); the windows
dataset stores only start positions into it (+ symbol, end time, label, horizon end) and
names it as a parent, so nothing is copied per window.

Which windows are kept, for every candidate window of ``length`` bars inside one symbol:

- ``gaps``: it spans a gap in the bars (the rule of ``moola.data.windows.window_starts``);
- ``warmup``: one of its feature rows is NaN (a feature's warm-up);
- ``unlabeled``: with labels, the label (or its horizon) at its LAST bar is undefined;

each counted in the meta (``excluded``), in that order; the stride then thins the rest
(``thinned``). A window's label is the label at its last bar (it describes what follows
that bar, never a bar inside the window), and the label's horizon end (row and time) is
stored so purged splits purge by it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError
from moola.data._manifest import DatasetRef
from moola.data.registry import LABEL_HORIZON, Registry
from moola.data.windows import labeled_windows_table, window_starts
from moola.features.featureset import FeatureSet, FeatureSetSpec, feature_table, load_feature_set
from moola.pipeline.features import store_feature_table
from moola.pipeline.labeled_windows import LABELS_TABLE_SOURCE, _check_classes, labels_column

__all__ = ["build_feature_windows", "find_features"]


def find_features(registry: Registry, raw: DatasetRef, spec_hash: str) -> DatasetRef | None:
    """The stored features dataset computed on ``raw`` with the spec hashing to
    ``spec_hash`` (latest such version), or ``None``."""
    found: list[DatasetRef] = []
    for name in registry.names("features"):
        for version in registry.versions("features", name):
            ref = registry.resolve("features", name, version)
            if registry.meta(ref).get("spec_hash") != spec_hash:
                continue
            parents = registry.manifest(ref).get("parents", [])
            if any(
                p.get("kind") == "raw" and p.get("content_hash") == raw.content_hash
                for p in parents
            ):
                found.append(ref)
    return found[-1] if found else None


def build_feature_windows(
    registry: Registry,
    raw: str | DatasetRef,
    feature_set: str | Path | FeatureSetSpec | FeatureSet,
    *,
    name: str,
    length: int,
    stride: int = 1,
    labels: str | None = None,
    label_column: str | None = None,
) -> DatasetRef:
    """Store windows of ``length`` rows of ``feature_set`` computed on ``raw`` (``NAME[@vN]``).

    Labeled from the stored labels table ``labels`` (``NAME[@vN]``, column
    ``label_column``, default its target) when given, else unlabeled. Raises
    ``ConfigError`` when the feature set's warm-up (plus the window) is longer than the
    data, or the label column does not exist, and ``RegistryError`` when the labels were
    built from other bars; each before anything is written.
    """
    if label_column is not None and labels is None:
        raise ConfigError("label_column picks a column of a stored labels table: give labels.")
    if int(length) != length or length < 1:
        raise ConfigError(f"length must be a positive integer, got {length!r}.", param="length")
    if int(stride) != stride or stride < 1:
        raise ConfigError(f"stride must be a positive integer, got {stride!r}.", param="stride")
    raw_ref = raw if isinstance(raw, DatasetRef) else registry.resolve_text(raw, "raw")
    fset = load_feature_set(feature_set)
    bars = registry.load_raw(raw_ref.name, raw_ref.version)
    label_table = None
    if labels is not None:  # checked before any feature table is computed or stored
        labels_ref, labels_meta, label_table, column = labels_column(
            registry, raw_ref, bars, labels, label_column
        )
    _check_warmup(fset, bars, length, raw_ref)
    spec_hash = fset.spec.content_hash()
    features = find_features(registry, raw_ref, spec_hash)
    reused = features is not None
    if features is None:  # computed now, stored only once some window is known to be left
        table = feature_table(fset, bars)
    else:
        table = registry.load_table("features", features.name, features.version)
    columns = list(fset.columns)
    values = table[columns].to_numpy(dtype=np.float32)

    n = len(bars)
    symbols = bars["symbol"].astype(str).to_numpy()
    last = np.arange(n - length + 1, dtype=np.int64) + (length - 1)
    candidate = np.zeros(n, dtype=bool)  # by start: the window stays inside one symbol
    if n >= length:
        candidate[: n - length + 1] = symbols[: n - length + 1] == symbols[last]
    valid = np.zeros(n, dtype=bool)
    valid[window_starts(bars, length)] = True
    bad_row = ~np.isfinite(values).all(axis=1)
    bad_before = np.concatenate([[0], np.cumsum(bad_row, dtype=np.int64)])
    warm = np.zeros(n, dtype=bool)
    if n >= length:
        warm[: n - length + 1] = bad_before[last + 1] - bad_before[: n - length + 1] > 0
    gaps = candidate & ~valid
    warmup = valid & warm
    kept = valid & ~warm
    excluded = {"warmup": int(warmup.sum()), "gaps": int(gaps.sum())}
    if label_table is not None:
        label_values = pd.to_numeric(label_table[column], errors="coerce").to_numpy(np.float64)
        horizon = pd.to_numeric(label_table["horizon_end"], errors="coerce")
        defined = ~np.isnan(label_values) & (horizon.fillna(-1).to_numpy() >= 0)
        labeled_end = np.zeros(n, dtype=bool)
        if n >= length:
            labeled_end[: n - length + 1] = defined[last]
        excluded["unlabeled"] = int((kept & ~labeled_end).sum())
        kept &= labeled_end
    on_stride = np.zeros(n, dtype=bool)
    on_stride[window_starts(bars, length, stride=stride)] = True
    thinned = int((kept & ~on_stride).sum())
    starts = np.flatnonzero(kept & on_stride).astype(np.int64)
    if not starts.size:
        raise ConfigError(
            f"No window of {length} bars of feature set '{fset.name}' over {raw_ref} is left: "
            f"{_described(excluded)}. Use a shorter length, a set with a shorter warm-up, "
            "or more bars.",
            param="length",
        )
    if features is None:
        features = store_feature_table(
            registry, raw_ref, fset, table, bars=bars, name=f"{raw_ref.name}-{fset.name}"
        )
    ends = starts + (length - 1)
    params: dict[str, Any] = {
        "feature_set": fset.name,
        "spec_hash": spec_hash,
        "features_reused": reused,
        "length": length,
        "stride": stride,
        "excluded": excluded,
        "thinned": thinned,
    }
    if label_table is not None:
        picked = label_values[ends]
        _check_classes(picked, ends, label_table, column, labels_ref)
        source = f"{LABELS_TABLE_SOURCE}:{labels_ref.name}@v{labels_ref.version}"
        windows = labeled_windows_table(
            bars, starts, length, picked.astype(np.int64), source=source
        )
        windows["horizon_end"] = label_table["horizon_end"].iloc[ends].to_numpy(np.int64)
        if LABEL_HORIZON in label_table.columns:
            windows[LABEL_HORIZON] = label_table[LABEL_HORIZON].iloc[ends].to_numpy()
        params.update(
            {
                "labels": labels_ref.to_dict(),
                "column": column,
                "label_kind": labels_meta.get("label_kind"),
                "window": "ends at the labelled bar",
            }
        )
    else:
        stamps = bars["timestamp"]
        windows = pd.DataFrame(
            {
                "symbol": pd.Series(symbols[starts], dtype="string"),
                "start": starts,
                "end": ends,
                "start_ts": stamps.iloc[starts].to_numpy(),
                "end_ts": stamps.iloc[ends].to_numpy(),
            }
        )
    return registry.write_feature_windows(
        name,
        raw_ref,
        features,
        windows,
        length=length,
        meta={
            "columns": columns,
            "stride": stride,
            "feature_set": fset.name,
            "spec_hash": spec_hash,
            "excluded": excluded,
            "thinned": thinned,
        },
        transformations=[{"name": "feature_windows", "params": params}],
    )


def _check_warmup(fset: FeatureSet, bars: pd.DataFrame, length: int, raw: DatasetRef) -> None:
    """Refuse, before anything is computed, a set whose warm-up plus one window is longer
    than a symbol's bars: that symbol would have no settled window (``build_features``
    refuses a symbol shorter than the warm-up alone)."""
    need = fset.lookback + length - 1
    counts = bars["symbol"].astype(str).value_counts(sort=False)
    short = {symbol: int(count) for symbol, count in counts.items() if count < need}
    if len(counts) and not short:
        return
    listed = ", ".join(f"{symbol}: {count:,}" for symbol, count in short.items()) or "no bars"
    raise ConfigError(
        f"Feature set '{fset.name}' warms up over {fset.lookback:,} bars, so a window of "
        f"{length} bars past its warm-up needs {need:,} bars per symbol, but {raw} has "
        f"{listed}. Use more bars, a shorter length or a set with a shorter warm-up.",
        param="length",
    )


def _described(excluded: dict[str, int]) -> str:
    return ", ".join(f"{count:,} excluded by {key}" for key, count in excluded.items())
