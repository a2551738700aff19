"""Labels datasets with their lineage: ``build_and_store_labels`` and ``store_labels``.

The labels themselves come from ``moola.features.labels.build_labels`` (no I/O); this
module decides what the registry records beside them: the label kind, its parameters,
the target column, and where each label's horizon ends (the column splits purge by).
``build_and_store_labels`` is the one call ``moola labels build --raw NAME --name OUT``
and the demo make: read the raw bars, label them symbol by symbol, store the table.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from moola.data._manifest import DatasetRef
from moola.data.registry import Registry
from moola.features.labels import TARGETS, build_labels, check_label_params, label_producer

__all__ = ["build_and_store_labels", "store_labels"]


def build_and_store_labels(
    registry: Registry, name: str, raw: DatasetRef | str, kind: str, **params: Any
) -> DatasetRef:
    """Label raw dataset ``raw`` (a reference or ``NAME[@vN]``) with ``kind`` and
    ``params`` and store the table as labels dataset ``name``; returns its reference.

    An unknown kind or a parameter the kind does not take (or a required one left out) is
    refused with ``ConfigError`` before any bar is read, so nothing is written. A bar table
    of several symbols is labelled symbol by symbol (``build_labels``).
    """
    label_producer(kind)  # unknown kind: refused before any data is read
    kind = kind.strip().lower().replace("_", "-")
    check_label_params(kind, params)
    ref = raw if isinstance(raw, DatasetRef) else registry.resolve_text(raw, "raw")
    table = build_labels(registry.load_raw(ref.name, ref.version), kind, **params)
    return store_labels(registry, name, table, raw=ref, kind=kind, params=params)


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
