"""Compute a feature set over a stored raw dataset and store it: ``build_features``.

Orchestration (registry in, dataset out) lives here in ``pipeline/``; the computation it
calls, ``FeatureSet.compute`` and ``feature_table``, lives in ``moola.features`` and does
no I/O.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from moola.data._manifest import DatasetRef
from moola.data.registry import Registry
from moola.features.featureset import (
    FeatureSet,
    FeatureSetSpec,
    feature_table,
    load_feature_set,
)

__all__ = ["build_features", "store_feature_table"]


def build_features(
    registry: Registry,
    raw: DatasetRef,
    feature_set: str | Path | FeatureSetSpec | FeatureSet,
    *,
    name: str,
    allow_short: bool = False,
    version: int | None = None,
) -> DatasetRef:
    """Compute ``feature_set`` over the raw bars ``raw`` and store it as ``features/<name>``.

    The stored table has ``timestamp`` and ``symbol`` (to join back to the bars) and then
    the set's columns, one row per bar in the bars' order. Its meta records the spec, its
    hash, the columns, the lookback (rows before it are warm-up) and the suitability notes
    when the bars' time frame is not one the set is made for. Raises
    ``ConfigError`` when a symbol has fewer bars than the lookback unless ``allow_short``.
    """
    fset = load_feature_set(feature_set)
    bars = registry.load_raw(raw.name, raw.version)
    if not allow_short:
        fset.check_history(bars)
    return store_feature_table(
        registry, raw, fset, feature_table(fset, bars), bars=bars, name=name, version=version
    )


def store_feature_table(
    registry: Registry,
    raw: DatasetRef,
    fset: FeatureSet,
    table: pd.DataFrame,
    *,
    bars: pd.DataFrame,
    name: str,
    version: int | None = None,
) -> DatasetRef:
    """Store ``table`` (``feature_table(fset, bars)`` of ``raw``'s bars) as
    ``features/<name>`` with the meta ``build_features`` records; for callers that compute
    the table first and store it only once they know it is wanted."""
    notes = [
        note
        for timeframe in sorted(bars["timeframe"].astype(str).unique())
        for note in fset.suitability(timeframe)
    ]
    spec = fset.spec.model_dump(mode="json")
    spec_hash = fset.spec.content_hash()
    return registry.write_table(
        "features",
        name,
        table,
        parents=[raw],
        meta={
            "feature_set": spec,
            "spec_hash": spec_hash,
            "columns": list(fset.columns),
            "dtypes": fset.dtypes,
            "lookback": fset.lookback,
            "suitability": notes,
        },
        transformations=[
            {
                "name": "moola.features.FeatureSet.compute",
                "params": {"feature_set": fset.name, "version": fset.spec.version},
                "spec_hash": spec_hash,
            }
        ],
        version=version,
    )
