"""Windows over a feature table: ``build_feature_windows`` (``moola data windows --features``).

A model that forecasts from the last ``length`` bars x F features needs, per window, rows
``start .. start + length - 1`` of a causally computed feature table. The table is
computed once per (raw version, feature-set spec hash) and stored as a ``features``
dataset (reused when one with the same raw parent and spec hash exists); the windows
dataset stores only start positions into it (+ symbol, end time, targets, horizon end)
and names it as a parent, so nothing is copied per window.

Which windows are kept, for every candidate window of ``length`` bars inside one symbol:

- ``gaps``: it spans a gap in the bars (the rule of ``moola.data.windows.window_starts``;
  for bars ingested against a session calendar, ``data ingest --calendar equities``, a gap
  is a bar the calendar expects that is missing, so weekends and holidays are not gaps);
- ``warmup``: one of its feature rows is NaN (a feature's warm-up);
- ``unlabeled``: with targets, one target (or its horizon) at its LAST bar is undefined
  (the normal case near the end of the data, where the future a label needs is missing);

each counted in the meta (``excluded``), in that order; the stride then thins the rest
(``thinned``). A window's targets are the labels at its last bar (they describe what
follows that bar, never a bar inside the window), and its horizon end (row and time) is
the latest of its targets' horizon ends, so purged splits purge by the furthest future
any target looks at.

**Targets.** ``labels`` names one or several stored labels tables (``moola labels build
--name``) and ``targets`` their columns (``COL``, or ``LABELS:COL`` when two tables have
it; LABELS is a table's name or its label kind, e.g. ``realized-vol:realized_vol``, one
spelling for the tables of several raw versions). Each target's kind is inferred once: a
string, categorical, boolean or integer column is a classification target (classes sorted,
recorded), a float column a regression target,
except the class columns of the classification label kinds (``label`` of forward-return and
triple-barrier, ``vol_regime`` of vol-regime, which ``build_labels`` stores as floats so
they can hold NaN) and, in a labels table that records no kind, its recorded target. The
dataset's ``task`` is ``classification`` (one class target: a ``label`` column, stored as
before), ``regression`` (one float target: ``y_<name>``) or ``multitask`` (``y_<name>`` per
target: floats, or class names).

**Several raw versions.** ``raw`` may name several raw versions (a comma list or a
sequence), e.g. one per symbol: each keeps its own stored feature table, the windows
dataset records every one as a parent, and its positions (``start``, ``end``,
``horizon_end``) index the concatenation of the tables in the order given. Symbols must be
distinct across the raws and their date ranges must overlap (a time split of disjoint
symbols would put whole symbols in one part); labels tables are matched to raws by the raw
version they were built from.

**Extra per-bar tables.** ``extra_features`` names stored features tables with one row
per bar (``timestamp``, ``symbol`` and value columns), e.g. a sentiment table
(``moola sentiment features``) or another feature set's table. Each is joined onto the
feature set's table by (timestamp, symbol) BEFORE windowing: a bar gets the extra table's
row of that same bar and nothing else, so the windows see no more of the future than the
extra table's own rows do (a sentiment row already holds only the news usable at its
bar's open). An extra table must have been built from the raw version windowed (matched
to raws by the raw version, as labels are) and hold exactly its bars; one over other bars
(another raw version, missing or additional bars, a bar twice) is refused naming both.
Its columns must not repeat a column of the set or of another extra table. Each extra
column is scaled by the method its table records (``feature_inputs.table_scaling``: a
``scaling`` map in its meta, or the scaling of the feature set it was computed with),
fitted on the training windows only, like the set's own columns.
The joined table is stored once as its own features version (parents: the raw, the
set's table and every extra table; reused while they are unchanged) and the windows
index it; the windows' manifest names every extra table with its content hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError, RegistryError
from moola.core.hashing import sha256_json
from moola.data._manifest import DatasetRef
from moola.data.registry import LABEL_HORIZON, TARGET_PREFIX, Registry, parse_ref
from moola.data.windows import labeled_windows_table, window_starts
from moola.features.featureset import FeatureSet, FeatureSetSpec, feature_table, load_feature_set
from moola.pipeline.feature_inputs import table_scaling
from moola.pipeline.features import store_feature_table
from moola.pipeline.labeled_windows import LABELS_TABLE_SOURCE, _check_classes

__all__ = ["TARGET_PREFIX", "build_feature_windows", "find_features"]

# Columns of a labels table that are bookkeeping, never a target.
_BOOKKEEPING = ("timestamp", "symbol", "horizon_end", LABEL_HORIZON, "touch_pos", "touch_ts")
# The class columns of the classification label kinds (floats in the stored table).
_CLASS_COLUMNS: dict[str, tuple[str, ...]] = {
    "forward-return": ("label",),
    "triple-barrier": ("label",),
    "vol-regime": ("vol_regime",),
}
CLASSIFICATION, REGRESSION = "classification", "regression"


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


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per table
class _Labels:
    """One stored labels table, checked to line up with the bars of its raw version."""

    ref: DatasetRef
    meta: dict[str, Any]
    table: pd.DataFrame

    @property
    def columns(self) -> list[str]:
        return [c for c in self.table.columns if c not in _BOOKKEEPING]


@dataclass(frozen=True)
class _Target:
    """A target column, found in one labels table per raw version (``sources``)."""

    name: str
    kind: str
    sources: tuple[_Labels, ...]


@dataclass(frozen=True)
class _Extra:
    """One extra per-bar table, checked to be built from raw version ``k`` of the windows."""

    ref: DatasetRef
    k: int
    columns: tuple[str, ...]
    scaling: dict[str, str]

    def record(self) -> dict[str, Any]:
        """How the windows' manifest names it: the reference with its content hash, its
        columns and their scaling."""
        return {**self.ref.to_dict(), "columns": list(self.columns), "scaling": self.scaling}


@dataclass
class _Part:
    """What one raw version contributes: its bars, the table its windows index (the feature
    set's, or that joined with the extra tables) and kept window starts.

    ``features`` is the stored table found for reuse (None: ``table`` is stored once every
    raw is known to have windows); with extras, ``base`` / ``base_table`` are the feature
    set's own table (stored or not) the joined one is made of."""

    raw: DatasetRef
    bars: pd.DataFrame
    table: pd.DataFrame
    features: DatasetRef | None
    starts: np.ndarray
    excluded: dict[str, int]
    thinned: int
    extras: tuple[_Extra, ...] = ()
    base: DatasetRef | None = None
    base_table: pd.DataFrame | None = None


def build_feature_windows(
    registry: Registry,
    raw: str | DatasetRef | Sequence[str | DatasetRef],
    feature_set: str | Path | FeatureSetSpec | FeatureSet,
    *,
    name: str,
    length: int,
    stride: int = 1,
    labels: str | Sequence[str] | None = None,
    label_column: str | None = None,
    targets: Sequence[str] | None = None,
    extra_features: str | DatasetRef | Sequence[str | DatasetRef] | None = None,
) -> DatasetRef:
    """Store windows of ``length`` rows of ``feature_set`` computed on ``raw``.

    ``raw`` is one raw version ``NAME[@vN]`` or several (a comma list or a sequence).
    With ``labels`` (stored labels tables ``NAME[@vN]``, a comma list or a sequence) the
    windows carry ``targets`` (columns ``COL`` or ``LABELS:COL``; default: the one labels
    table's recorded target; ``label_column`` is the one-target spelling), else they are
    unlabeled. ``extra_features`` (stored per-bar features tables ``NAME[@vN]``, a comma
    list or a sequence, each built from one of the raws) adds their columns after the set's
    (see the module docstring). Raises ``ConfigError`` when the feature set's warm-up (plus
    the window) is longer than the data, a target column does not exist, is ambiguous or
    holds +-inf, the raws share a symbol or do not overlap in time, or an extra table
    repeats a column or records no scaling, and ``RegistryError`` when labels or an extra
    table were built from other bars; each before anything is written.
    """
    if label_column is not None and labels is None:
        raise ConfigError("label_column picks a column of a stored labels table: give labels.")
    if targets is not None and labels is None:
        raise ConfigError(
            "targets name columns of stored labels tables: give labels too.", param="targets"
        )
    if label_column is not None and targets is not None:
        raise ConfigError(
            "Give targets (one or several columns) or label_column (one), not both.",
            param="targets",
        )
    if int(length) != length or length < 1:
        raise ConfigError(f"length must be a positive integer, got {length!r}.", param="length")
    if int(stride) != stride or stride < 1:
        raise ConfigError(f"stride must be a positive integer, got {stride!r}.", param="stride")
    raw_refs = _raw_refs(registry, raw)
    fset = load_feature_set(feature_set)
    all_bars = [registry.load_raw(ref.name, ref.version) for ref in raw_refs]
    if len(raw_refs) > 1:
        _check_symbols(raw_refs, all_bars)
    chosen: list[_Target] = []
    if labels is not None:  # checked before any feature table is computed or stored
        wanted = list(targets) if targets is not None else None
        if label_column is not None:
            wanted = [label_column]
        if wanted is not None and not wanted:
            raise ConfigError("targets is empty: name at least one column.", param="targets")
        chosen = _targets(registry, raw_refs, all_bars, _texts(labels, "labels"), wanted)
    for ref, bars in zip(raw_refs, all_bars, strict=True):
        _check_warmup(fset, bars, length, ref)
    extras = _extras(registry, raw_refs, fset, extra_features)
    spec_hash = fset.spec.content_hash()
    columns = list(fset.columns) + [c for extra in extras[0] for c in extra.columns]
    parts = [
        _part(
            registry,
            ref,
            bars,
            fset,
            spec_hash,
            chosen,
            k,
            length=length,
            stride=stride,
            extras=tuple(extras[k]),
        )
        for k, (ref, bars) in enumerate(zip(raw_refs, all_bars, strict=True))
    ]
    stored = [_store(registry, part, fset, spec_hash) for part in parts]  # all have windows
    excluded = {key: sum(part.excluded[key] for part in parts) for key in parts[0].excluded}
    thinned = sum(part.thinned for part in parts)
    offsets = np.cumsum([0] + [len(part.bars) for part in parts])[:-1]
    params: dict[str, Any] = {
        "feature_set": fset.name,
        "spec_hash": spec_hash,
        "features_reused": all(part.features is not None for part in parts),
        **(
            {"extra_features": [extra.record() for held in extras for extra in held]}
            if extras[0]
            else {}
        ),
        "length": length,
        "stride": stride,
        "excluded": excluded,
        "thinned": thinned,
    }
    single_class = len(chosen) == 1 and chosen[0].kind == CLASSIFICATION
    if single_class and len(parts) == 1:  # the one-label form, stored as it always was
        source = chosen[0].sources[0]
        params.update(
            {
                "labels": source.ref.to_dict(),
                "column": chosen[0].name,
                "label_kind": source.meta.get("label_kind"),
                "window": "ends at the labelled bar",
            }
        )
    elif chosen:
        params.update(
            {
                "targets": [
                    {
                        "name": target.name,
                        "kind": target.kind,
                        "labels": [source.ref.to_dict() for source in target.sources],
                        "label_kind": target.sources[0].meta.get("label_kind"),
                    }
                    for target in chosen
                ],
                "window": "ends at the labelled bar",
            }
        )
    windows = pd.concat(
        [
            _windows_table(part, chosen, k, length, int(offset), single_class)
            for k, (part, offset) in enumerate(zip(parts, offsets, strict=True))
        ],
        ignore_index=True,
    )
    meta: dict[str, Any] = {
        "columns": columns,
        "stride": stride,
        "feature_set": fset.name,
        "spec_hash": spec_hash,
        "excluded": excluded,
        "thinned": thinned,
    }
    if extras[0]:
        meta["extra_features"] = [extra.ref.to_dict() for held in extras for extra in held]
    return registry.write_feature_windows(
        name,
        raw_refs[0] if len(raw_refs) == 1 else raw_refs,
        stored[0] if len(stored) == 1 else stored,
        windows,
        length=length,
        meta=meta,
        transformations=[{"name": "feature_windows", "params": params}],
        targets=[
            {
                "name": target.name,
                "kind": target.kind,
                "source": ", ".join(f"labels/{s.ref.pinned}" for s in target.sources),
            }
            for target in chosen
        ]
        or None,
    )


def _texts(value: str | DatasetRef | Sequence[str | DatasetRef], what: str) -> list[Any]:
    """One reference, a comma list or a sequence of them, as a list (empty parts refused)."""
    items = [value] if isinstance(value, str | DatasetRef) else list(value)
    out: list[Any] = []
    for item in items:
        if isinstance(item, DatasetRef):
            out.append(item)
            continue
        pieces = [piece.strip() for piece in str(item).split(",")]
        if not all(pieces):
            raise ConfigError(f"{what} {item!r} has an empty entry; use NAME[@vN],NAME[@vN].")
        out.extend(pieces)
    if not out:
        raise ConfigError(f"{what} is empty: name at least one dataset.", param=what)
    return out


def _raw_refs(
    registry: Registry, raw: str | DatasetRef | Sequence[str | DatasetRef]
) -> list[DatasetRef]:
    refs = [
        item if isinstance(item, DatasetRef) else registry.resolve_text(item, "raw")
        for item in _texts(raw, "raw")
    ]
    seen: set[str] = set()
    for ref in refs:
        if ref.content_hash in seen:
            raise ConfigError(f"raw names {ref} twice; name each raw version once.", param="raw")
        seen.add(ref.content_hash)
    return refs


def _check_symbols(raws: list[DatasetRef], all_bars: list[pd.DataFrame]) -> None:
    """Refuse raws of different time frames, raws that share a symbol, or whose symbols'
    date ranges do not all overlap: a split by time cuts every symbol at the same
    timestamps, so a symbol wholly before another would land wholly in one part."""
    frames = {
        str(ref): "/".join(sorted(bars["timeframe"].astype(str).unique()))
        for ref, bars in zip(raws, all_bars, strict=True)
    }
    if len(set(frames.values())) > 1:
        listed = ", ".join(f"{ref}: {frame}" for ref, frame in frames.items())
        raise ConfigError(
            f"The raw versions have different bar time frames ({listed}); a window of "
            "the same length would span different durations. Use bars of one time frame.",
            param="raw",
        )
    owner: dict[str, DatasetRef] = {}
    ranges: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = {}
    for ref, bars in zip(raws, all_bars, strict=True):
        stamps = bars.groupby(bars["symbol"].astype(str), sort=False)["timestamp"]
        for symbol, first, last in zip(stamps.min().index, stamps.min(), stamps.max(), strict=True):
            if symbol in owner:
                raise ConfigError(
                    f"Symbol {symbol} is in both {owner[symbol]} and {ref}; each symbol must "
                    "come from one raw version. Drop one of them.",
                    param="raw",
                )
            owner[symbol] = ref
            ranges[symbol] = (first, last)
    latest_first = max(first for first, _ in ranges.values())
    earliest_last = min(last for _, last in ranges.values())
    if latest_first <= earliest_last:
        return
    listed = "; ".join(
        f"{symbol} ({owner[symbol]}): {first} .. {last}" for symbol, (first, last) in ranges.items()
    )
    raise ConfigError(
        f"The date ranges of the symbols do not overlap ({listed}): a split by time would put "
        "whole symbols in one part. Use raw versions that cover a common period.",
        param="raw",
    )


def _labels_of(
    registry: Registry, raws: list[DatasetRef], all_bars: list[pd.DataFrame], texts: list[Any]
) -> list[list[_Labels]]:
    """The labels tables ``texts`` grouped by the raw version (of ``raws``) each was built
    from, every one checked to line up with its bars."""
    grouped: list[list[_Labels]] = [[] for _ in raws]
    by_hash = {ref.content_hash: k for k, ref in enumerate(raws)}
    for text in texts:
        ref = text if isinstance(text, DatasetRef) else registry.resolve("labels", *parse_ref(text))
        parents = registry.manifest(ref).get("parents", [])
        parent = next((p for p in parents if p.get("kind") == "raw"), None)
        k = by_hash.get(parent.get("content_hash")) if parent else None
        if k is None:
            made_from = f"raw/{parent['name']}@v{parent['version']}" if parent else "no raw dataset"
            named = str(raws[0]) if len(raws) == 1 else f"any of {', '.join(map(str, raws))}"
            raise RegistryError(
                f"{ref} was built from {made_from}, not from {named}; labels only describe "
                "the bars they were computed on. Build them over the raw version windowed "
                f"(`moola labels build --raw {raws[0].pinned} ...`) or window {made_from} "
                "instead."
            )
        if any(held.ref == ref for held in grouped[k]):
            raise ConfigError(f"labels names {ref} twice; name each labels table once.")
        table = registry.load_table("labels", ref.name, ref.version)
        if "horizon_end" not in table.columns:
            raise ConfigError(
                f"{ref} has no horizon_end column (the last bar each label looks at), so "
                "splits could not purge by it; build the labels with `moola labels build`.",
                param="labels",
            )
        bars = all_bars[k]
        if len(table) != len(bars) or not table["timestamp"].reset_index(drop=True).equals(
            bars["timestamp"].reset_index(drop=True)
        ):
            raise RegistryError(
                f"{ref} has {len(table)} rows that do not line up with the {len(bars)} bars "
                f"of {raws[k]}, though it records {raws[k]} as its parent; rebuild the labels."
            )
        grouped[k].append(_Labels(ref, registry.meta(ref), table))
    for k, held in enumerate(grouped):
        if not held:
            raise RegistryError(
                f"No labels table was built from {raws[k]}; give one per raw version "
                f"(`moola labels build --raw {raws[k].pinned} ...`).",
                param="labels",
            )
    return grouped


def _targets(
    registry: Registry,
    raws: list[DatasetRef],
    all_bars: list[pd.DataFrame],
    texts: list[Any],
    wanted: list[str] | None,
) -> list[_Target]:
    """Resolve the target columns (``COL`` or ``LABELS:COL``) in the labels of each raw,
    infer each one's kind and refuse +-inf in a regression target."""
    grouped = _labels_of(registry, raws, all_bars, texts)
    if wanted is None:
        if any(len(held) > 1 for held in grouped):
            raise ConfigError(
                "Several labels tables are given: name the target columns (targets).",
                param="targets",
            )
        # Each table's recorded target (one labels table per raw version).
        recorded = {held[0].meta.get("target", "label") for held in grouped}
        if len(recorded) > 1:
            raise ConfigError(
                f"The labels tables record different targets ({', '.join(sorted(recorded))}); "
                "name the target columns (targets).",
                param="targets",
            )
        wanted = [recorded.pop()]
    chosen: list[_Target] = []
    for spec in wanted:
        qualifier, _, column = str(spec).rpartition(":")
        column = column.strip()
        if any(target.name == column for target in chosen):
            raise ConfigError(f"Target {column!r} is named twice.", param="targets")
        sources = tuple(
            _source(held, qualifier.strip() or None, column, raws[k])
            for k, held in enumerate(grouped)
        )
        kinds = {_kind(source, column) for source in sources}
        if len(kinds) > 1:
            shown = ", ".join(f"{s.ref}: {_kind(s, column)}" for s in sources)
            raise ConfigError(
                f"Target {column!r} is a class label in some labels tables and a value in "
                f"others ({shown}); use tables of one label kind.",
                param="targets",
            )
        kind = kinds.pop()
        for source in sources:
            _check_finite(source, column)
        chosen.append(_Target(column, kind, sources))
    return chosen


def _source(held: list[_Labels], qualifier: str | None, column: str, raw: DatasetRef) -> _Labels:
    """The one labels table of ``held`` (those of ``raw``) holding ``column``; a qualifier
    names the table (``NAME[@vN]``) or its label kind (``vol-regime``: one spelling for
    the tables of several raw versions)."""
    if qualifier is not None:
        name, version = parse_ref(qualifier)
        held = [
            h
            for h in held
            if (h.ref.name == name and (version is None or h.ref.version == version))
            or (version is None and _kind_key(h.meta.get("label_kind")) == _kind_key(name))
        ]
        if not held:
            raise ConfigError(
                f"Target {qualifier}:{column} names labels {qualifier}, which is neither the "
                f"name nor the label kind of a labels table given for {raw}.",
                param="targets",
            )
    having = [h for h in held if column in h.columns]
    if not having:
        listed = "; ".join(f"{h.ref} has {', '.join(h.columns)}" for h in held)
        if len(held) == 1:  # the words of one table, as labels_column says them
            listed = f"its columns are {', '.join(held[0].columns)}"
            raise ConfigError(f"{held[0].ref} has no label column {column!r}; {listed}.")
        raise ConfigError(
            f"No labels table of {raw} has a label column {column!r} ({listed}).",
            param="targets",
        )
    if len(having) > 1:
        names = " and ".join(str(h.ref) for h in having)
        raise ConfigError(
            f"Column {column!r} is in both {names}; name the one meant as LABELS:{column} "
            f"(e.g. {having[0].ref.name}:{column}).",
            param="targets",
        )
    return having[0]


def _kind(source: _Labels, column: str) -> str:
    """``classification`` or ``regression`` for ``column`` of a labels table (see the
    module docstring for the rule)."""
    series = source.table[column]
    if not pd.api.types.is_float_dtype(series.dtype):
        return CLASSIFICATION  # strings, categories, booleans, integers
    label_kind = source.meta.get("label_kind")
    if label_kind is None:  # a table that records no kind: its recorded target is a class
        return CLASSIFICATION if column == source.meta.get("target", "label") else REGRESSION
    return CLASSIFICATION if column in _CLASS_COLUMNS.get(_kind_key(label_kind), ()) else REGRESSION


def _kind_key(label_kind: Any) -> str | None:
    """A label kind as ``moola labels build --kind`` spells it (``_`` and ``-`` alike)."""
    return None if label_kind is None else str(label_kind).strip().lower().replace("_", "-")


def _check_finite(source: _Labels, column: str) -> None:
    """Refuse +-inf in a numeric target: NaN means 'undefined here', inf is bad data."""
    series = source.table[column]
    if not pd.api.types.is_float_dtype(series.dtype):
        return
    infinite = np.flatnonzero(np.isinf(series.to_numpy(np.float64)))
    if not infinite.size:
        return
    first = int(infinite[0])
    raise ConfigError(
        f"{source.ref} column {column!r} holds {infinite.size:,} infinite value(s), the "
        f"first at {source.table['timestamp'].iloc[first]} (bar {first}); a target must be "
        "finite (NaN where undefined). Rebuild the labels from bars without zero or missing "
        "prices.",
        param="targets",
    )


def _defined(target: _Target, k: int) -> np.ndarray:
    """Per bar of raw ``k``: the target and its horizon end are defined."""
    source = target.sources[k]
    series = source.table[target.name]
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
        present = ~np.isnan(values)
    else:
        present = series.notna().to_numpy()
    horizon = pd.to_numeric(source.table["horizon_end"], errors="coerce")
    return present & (horizon.fillna(-1).to_numpy() >= 0)


def ingest_calendar(registry: Registry, raw: DatasetRef) -> str | None:
    """The session calendar ``raw`` was ingested against (``data ingest --calendar``), read
    from its manifest's gap report; None when it was checked against none."""
    for step in registry.manifest(raw).get("transformations") or []:
        if step.get("name") == "gap_report":
            calendar = (step.get("params") or {}).get("calendar")
            if calendar:
                return str(calendar)
    return None


def _part(
    registry: Registry,
    raw: DatasetRef,
    bars: pd.DataFrame,
    fset: FeatureSet,
    spec_hash: str,
    chosen: list[_Target],
    k: int,
    *,
    length: int,
    stride: int,
    extras: tuple[_Extra, ...] = (),
) -> _Part:
    """Raw ``k``'s feature table (found or computed, not stored; joined with its extra
    tables when there are any) and kept window starts."""
    base: DatasetRef | None = None
    base_table: pd.DataFrame | None = None
    features = find_features(registry, raw, _joined_hash(spec_hash, extras))
    if features is not None:
        table = registry.load_table("features", features.name, features.version)
    else:  # computed now, stored only once every raw is known to have windows
        base = find_features(registry, raw, spec_hash) if extras else None
        if base is None:
            base_table = feature_table(fset, bars)
            table = base_table
        else:
            table = registry.load_table("features", base.name, base.version)
        if extras:
            table = _joined(registry, table, bars, raw, extras)
    columns = list(fset.columns) + [c for extra in extras for c in extra.columns]
    values = table[columns].to_numpy(dtype=np.float32)

    n = len(bars)
    symbols = bars["symbol"].astype(str).to_numpy()
    last = np.arange(n - length + 1, dtype=np.int64) + (length - 1)
    candidate = np.zeros(n, dtype=bool)  # by start: the window stays inside one symbol
    if n >= length:
        candidate[: n - length + 1] = symbols[: n - length + 1] == symbols[last]
    calendar = ingest_calendar(registry, raw)
    valid = np.zeros(n, dtype=bool)
    valid[window_starts(bars, length, calendar=calendar)] = True
    bad_row = ~np.isfinite(values).all(axis=1)
    bad_before = np.concatenate([[0], np.cumsum(bad_row, dtype=np.int64)])
    warm = np.zeros(n, dtype=bool)
    if n >= length:
        warm[: n - length + 1] = bad_before[last + 1] - bad_before[: n - length + 1] > 0
    gaps = candidate & ~valid
    warmup = valid & warm
    kept = valid & ~warm
    excluded = {"warmup": int(warmup.sum()), "gaps": int(gaps.sum())}
    if chosen:
        defined = np.ones(n, dtype=bool)
        for target in chosen:
            defined &= _defined(target, k)
        labeled_end = np.zeros(n, dtype=bool)
        if n >= length:
            labeled_end[: n - length + 1] = defined[last]
        excluded["unlabeled"] = int((kept & ~labeled_end).sum())
        kept &= labeled_end
    on_stride = np.zeros(n, dtype=bool)
    on_stride[window_starts(bars, length, stride=stride, calendar=calendar)] = True
    thinned = int((kept & ~on_stride).sum())
    starts = np.flatnonzero(kept & on_stride).astype(np.int64)
    if not starts.size:
        raise ConfigError(
            f"No window of {length} bars of feature set '{fset.name}' over {raw} is left: "
            f"{_described(excluded)}. Use a shorter length, a set with a shorter warm-up, "
            "or more bars.",
            param="length",
        )
    return _Part(raw, bars, table, features, starts, excluded, thinned, extras, base, base_table)


def _windows_table(
    part: _Part, chosen: list[_Target], k: int, length: int, offset: int, single_class: bool
) -> pd.DataFrame:
    """Raw ``k``'s windows: positions (shifted by ``offset``, its first row in the
    concatenation of the feature tables), symbol, times and, with targets, their values at
    each window's last bar and the latest of their horizon ends."""
    bars, starts = part.bars, part.starts
    ends = starts + (length - 1)
    if not chosen:
        stamps = bars["timestamp"]
        return pd.DataFrame(
            {
                "symbol": pd.Series(bars["symbol"].astype(str).to_numpy()[starts], dtype="string"),
                "start": starts + offset,
                "end": ends + offset,
                "start_ts": stamps.iloc[starts].reset_index(drop=True),
                "end_ts": stamps.iloc[ends].reset_index(drop=True),
            }
        )
    tables = list(dict.fromkeys(target.sources[k] for target in chosen))
    source = ",".join(f"{LABELS_TABLE_SOURCE}:{t.ref.pinned}" for t in tables)
    if single_class:
        windows = labeled_windows_table(
            bars, starts, length, _class_values(chosen[0], k, ends, codes=True), source=source
        )
    else:
        windows = labeled_windows_table(
            bars, starts, length, np.zeros(starts.size, dtype=np.int64), source=source
        ).drop(columns="label")
    horizon = tables[0].table["horizon_end"].iloc[ends].to_numpy(np.int64)
    for held in tables[1:]:
        horizon = np.maximum(horizon, held.table["horizon_end"].iloc[ends].to_numpy(np.int64))
    windows["horizon_end"] = horizon + offset
    if len(tables) == 1 and LABEL_HORIZON in tables[0].table.columns:
        windows[LABEL_HORIZON] = tables[0].table[LABEL_HORIZON].iloc[ends].reset_index(drop=True)
    elif any(LABEL_HORIZON in t.table.columns for t in tables):
        windows[LABEL_HORIZON] = (
            pd.concat(
                [
                    t.table[LABEL_HORIZON].iloc[ends].reset_index(drop=True)
                    for t in tables
                    if LABEL_HORIZON in t.table.columns
                ],
                axis=1,
            )
            .max(axis=1)
            .reset_index(drop=True)
        )
    windows["start"] += offset
    windows["end"] += offset
    if single_class:
        return windows
    for target in chosen:
        column = f"{TARGET_PREFIX}{target.name}"
        if target.kind == CLASSIFICATION:
            names = _class_values(target, k, ends, codes=False)
            windows[column] = pd.Series(names, dtype="string")
        else:
            values = target.sources[k].table[target.name].iloc[ends]
            windows[column] = values.to_numpy(np.float64)
    return windows


def _class_values(target: _Target, k: int, ends: np.ndarray, *, codes: bool) -> Any:
    """The class target at bars ``ends`` of raw ``k``: whole numbers as int64 (``codes``,
    the one-label form) or as their names (``-1``, ``0``, ``1``), other values as names.
    Fractional values are refused naming the table, column and bars."""
    source = target.sources[k]
    series = source.table[target.name].iloc[ends]
    if pd.api.types.is_bool_dtype(series.dtype) or not pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype(str).to_numpy(dtype=object)
    values = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
    _check_classes(values, ends, source.table, target.name, source.ref)
    whole = values.astype(np.int64)
    return whole if codes else np.array([str(v) for v in whole.tolist()], dtype=object)


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


# --------------------------------------------------------------------------- extra tables


def _extras(
    registry: Registry,
    raws: list[DatasetRef],
    fset: FeatureSet,
    given: str | DatasetRef | Sequence[str | DatasetRef] | None,
) -> list[list[_Extra]]:
    """The extra tables ``given``, grouped by the raw version (of ``raws``) each was built
    from, in the order given; every raw gets tables of the same columns, and no column
    repeats one of the set or of another table. Read from meta and manifest only (the
    rows are checked when joined)."""
    grouped: list[list[_Extra]] = [[] for _ in raws]
    if given is None:
        return grouped
    by_hash = {ref.content_hash: k for k, ref in enumerate(raws)}
    for text in _texts(given, "extra_features"):
        ref = text if isinstance(text, DatasetRef) else registry.resolve_text(text, "features")
        if ref.kind != "features":
            raise ConfigError(
                f"{ref} is not a features table; extra_features names stored per-bar tables "
                "(features/NAME[@vN], e.g. a sentiment table).",
                param="extra_features",
            )
        made = [p for p in registry.manifest(ref).get("parents", []) if p.get("kind") == "raw"]
        k = next((by_hash[p["content_hash"]] for p in made if p["content_hash"] in by_hash), None)
        if k is None:
            made_from = (
                " and ".join(f"raw/{p['name']}@v{p['version']}" for p in made) or "no raw dataset"
            )
            named = str(raws[0]) if len(raws) == 1 else f"any of {', '.join(map(str, raws))}"
            raise RegistryError(
                f"Extra features {ref} were built from {made_from}, not from {named}: its rows "
                "describe other bars. Build it from the raw version windowed (e.g. `moola "
                f"sentiment features --raw {raws[0].pinned} ...`) or window {made_from}.",
                param="extra_features",
            )
        if any(held.ref == ref for held in grouped[k]):
            raise ConfigError(
                f"extra_features names {ref} twice; name each table once.",
                param="extra_features",
            )
        meta = registry.meta(ref)
        recorded = meta.get("columns")
        if isinstance(recorded, dict):  # write_table's own record: column -> dtype
            recorded = [c for c in recorded if c not in ("timestamp", "symbol")]
        if not recorded:
            raise ConfigError(
                f"{ref} records no value columns in its meta; it is not a per-bar features table.",
                param="extra_features",
            )
        columns = tuple(str(c) for c in recorded)
        scaling = table_scaling(meta)
        unscaled = [c for c in columns if c not in scaling]
        if unscaled:
            raise ConfigError(
                f"{ref} records no scaling for its column(s) {unscaled}: its meta needs a "
                "'scaling' map (column -> zscore, robust or none) or the feature set it was "
                "computed with. Rebuild it with this moola.",
                param="extra_features",
            )
        grouped[k].append(_Extra(ref, k, columns, {c: scaling[c] for c in columns}))
    owner = {column: f"feature set '{fset.name}'" for column in fset.columns}
    for extra in grouped[0]:
        for column in extra.columns:
            if column in owner:
                raise ConfigError(
                    f"Column {column!r} of {extra.ref} is also a column of {owner[column]}; "
                    "each column must come from one table. Drop one of them.",
                    param="extra_features",
                )
            owner[column] = str(extra.ref)
    first = [(c, extra.scaling[c]) for extra in grouped[0] for c in extra.columns]
    for k, held in enumerate(grouped[1:], start=1):
        these = [(c, extra.scaling[c]) for extra in held for c in extra.columns]
        if these != first:
            raise ConfigError(
                f"The extra tables give {raws[0]} the columns (with their scaling) "
                f"{first or 'none'} but {raws[k]} {these or 'none'}; give every raw version "
                "tables of the same columns, scaled alike, in the same order.",
                param="extra_features",
            )
    return grouped


def _joined_hash(spec_hash: str, extras: tuple[_Extra, ...]) -> str:
    """The identity of a table: the set's spec hash alone, or joined with the extra
    tables (by their content hashes, in order)."""
    if not extras:
        return spec_hash
    return sha256_json(
        {"spec_hash": spec_hash, "extra_features": [e.ref.content_hash for e in extras]}
    )


def _keys(frame: pd.DataFrame) -> pd.DataFrame:
    """(timestamp as UTC nanoseconds, symbol as text) of each row: one spelling of the
    join keys whatever unit or dtype a table was stored with."""
    stamps = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], utc=True)).as_unit("ns")
    return pd.DataFrame(
        {"timestamp": stamps.asi8, "symbol": frame["symbol"].astype(str).to_numpy()}
    )


def _joined(
    registry: Registry,
    table: pd.DataFrame,
    bars: pd.DataFrame,
    raw: DatasetRef,
    extras: tuple[_Extra, ...],
) -> pd.DataFrame:
    """``table`` (one row per bar of ``raw``) with each extra table's columns joined by
    (timestamp, symbol): bar i gets the extra row of bar i. An extra table holding a bar
    twice, missing a bar or holding a bar the raw does not have is refused."""
    keys = _keys(bars)
    joined = table.reset_index(drop=True).copy()
    for extra in extras:
        frame = registry.load_table("features", extra.ref.name, extra.ref.version)
        missing = [c for c in ("timestamp", "symbol", *extra.columns) if c not in frame.columns]
        if missing:
            raise ConfigError(
                f"{extra.ref} has no column(s) {missing} though its meta lists them; rebuild it.",
                param="extra_features",
            )
        for column in extra.columns:
            dtype = frame[column].dtype
            if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
                raise ConfigError(
                    f"Column {column!r} of {extra.ref} holds {dtype} values; an extra "
                    "feature column must be numeric.",
                    param="extra_features",
                )
        theirs = _keys(frame)
        twice = theirs.duplicated(keep="first").to_numpy()
        if twice.any():
            at = int(np.flatnonzero(twice)[0])
            raise RegistryError(
                f"{extra.ref} holds {int(twice.sum()):,} bar(s) twice (first: "
                f"{frame['symbol'].iloc[at]} at {frame['timestamp'].iloc[at]}), so it is not "
                f"one row per bar of {raw}; rebuild it from {raw}.",
                param="extra_features",
            )
        values = frame[list(extra.columns)].reset_index(drop=True)
        merged = keys.merge(
            pd.concat([theirs, values], axis=1), on=["timestamp", "symbol"], how="left",
            indicator=True, sort=False,
        )  # fmt: skip
        absent = (merged["_merge"] == "left_only").to_numpy()
        if absent.any():
            at = int(np.flatnonzero(absent)[0])
            raise RegistryError(
                f"{extra.ref} has no row for {int(absent.sum()):,} of the {len(bars):,} bars "
                f"of {raw} (first: {bars['symbol'].iloc[at]} at {bars['timestamp'].iloc[at]}): "
                f"it covers other bars. Rebuild it from {raw}.",
                param="extra_features",
            )
        if len(frame) != len(bars):
            known = set(zip(keys["timestamp"], keys["symbol"], strict=True))
            at = next(
                i
                for i, key in enumerate(zip(theirs["timestamp"], theirs["symbol"], strict=True))
                if key not in known
            )
            raise RegistryError(
                f"{extra.ref} has {len(frame) - len(bars):,} row(s) for bars {raw} does not "
                f"have (first: {frame['symbol'].iloc[at]} at {frame['timestamp'].iloc[at]}): "
                f"it covers other bars. Rebuild it from {raw}.",
                param="extra_features",
            )
        for column in extra.columns:
            joined[column] = merged[column].to_numpy()
    return joined


def _store(registry: Registry, part: _Part, fset: FeatureSet, spec_hash: str) -> DatasetRef:
    """The stored table ``part``'s windows index: the one found, else the feature set's
    table stored (when it was computed now) and, with extras, the joined table stored
    with the set's table and every extra table as parents."""
    if part.features is not None:
        return part.features
    base = part.base
    if base is None:
        assert part.base_table is not None
        base = store_feature_table(
            registry,
            part.raw,
            fset,
            part.base_table,
            bars=part.bars,
            name=f"{part.raw.name}-{fset.name}",
        )
    if not part.extras:
        return base
    joined_hash = _joined_hash(spec_hash, part.extras)
    name = f"{part.raw.name}-{fset.name}-with-" + "-".join(e.ref.name for e in part.extras)
    if len(name) > 128:  # the registry's limit on names
        name = f"{part.raw.name[:80]}-{fset.name[:20]}-with-{joined_hash[:12]}"
    columns = list(fset.columns) + [c for e in part.extras for c in e.columns]
    scaling = {c: s for e in part.extras for c, s in e.scaling.items()}
    base_meta = registry.meta(base)
    return registry.write_table(
        "features",
        name,
        part.table,
        parents=[part.raw, base, *(e.ref for e in part.extras)],
        meta={
            "feature_set": base_meta.get("feature_set"),
            "spec_hash": joined_hash,
            "feature_set_spec_hash": spec_hash,
            "columns": columns,
            "dtypes": {c: str(part.table[c].dtype) for c in columns},
            "lookback": fset.lookback,
            "scaling": scaling,
            "extra_features": [e.record() for e in part.extras],
            "joined_on": ["timestamp", "symbol"],
        },
        transformations=[
            {
                "name": "moola.pipeline.feature_windows.join_extra_features",
                "params": {
                    "features": base.to_dict(),
                    "extra_features": [e.record() for e in part.extras],
                    "on": ["timestamp", "symbol"],
                },
                "rule": "bar i gets the extra table's row of bar i (same timestamp and symbol)",
            }
        ],
    )
