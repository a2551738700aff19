"""Store a computed label table as a labels dataset with its lineage: ``store_labels``.

The labels themselves come from ``moola.features.labels.build_labels`` (no I/O); this
module decides what the registry records beside them: the label kind, its parameters,
the target column, and where each label's horizon ends (the column splits purge by).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from moola.data._manifest import DatasetRef
from moola.data.registry import Registry
from moola.features.labels import TARGETS, label_producer

__all__ = ["store_labels"]


def store_labels(
    registry: Registry,
    name: str,
    table: pd.DataFrame,
    *,
    raw: DatasetRef,
    kind: str,
    params: dict[str, Any],
) -> DatasetRef:
    """Write ``table`` (``build_labels(bars, kind, **params)`` over ``raw``'s bars) as
    labels dataset ``name``; its meta names the kind, parameters, target and horizon ends."""
    target = TARGETS[kind]
    labeled = table[target].notna()
    return registry.write_table(
        "labels",
        name,
        table,
        parents=[raw],
        meta={
            "label_kind": kind,
            "params": params,
            "target": target,
            "horizon_end": "horizon_end",
            "horizon_end_note": "row position of the last bar each label looks at; "
            "-1 where the label is missing; purge splits by it",
            "labeled_rows": int(labeled.sum()),
        },
        transformations=[
            {
                "name": f"moola.features.labels.{label_producer(kind).__name__}",
                "params": params,
            }
        ],
    )
