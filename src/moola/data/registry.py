"""The versioned, write-once dataset registry under the data root.

Every dataset moola stores (raw bars, labeled windows, unlabeled windows, synthetic
augmented sets) and every split lives here, under ``$MOOLA_HOME/data``::

    data/<kind>/<name>/v<N>/   data files + meta.json + manifest.json
    data/splits/<name>/v<N>.json

A version is written once, atomically (temporary directory, then rename), and never
changed: writing an existing version is refused. The version number is picked under a
lock on the name, so concurrent writers take consecutive versions. Each manifest's SHA-256
is recorded in the write journal before the version becomes visible
(``moola.core.anchors``). Every load checks every byte it reads against the manifest
(XXH3, or SHA-256 with ``full=True``), the manifest against the journal and ``meta.json``
against the manifest, and refuses on any mismatch naming the file. Names and references
resolve inside the data root only (``moola.core.paths``).

The blacklist of the data root (``moola.data.blacklist``) is applied here, so no path
around it exists: windows overlapping a blacklisted span are left out of every labeled
and unlabeled version written, and out of every part of a split when labeled data is
loaded with one; each records how many it excluded (manifest step
``exclude_blacklisted``, ``LabeledData.audit["blacklist"]``).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from moola.core.anchors import INTEGRITY, Anchors
from moola.core.atomic import locked, stale_temporaries, temporary_directory
from moola.core.errors import (
    ConfigError,
    IntegrityError,
    LeakageError,
    MoolaError,
    RegistryError,
    SplitError,
    VersionExistsError,
)
from moola.core.hashing import canonical_json, sha256_bytes
from moola.core.integrity import file_records, read_json_bytes, read_verified, write_json
from moola.core.paths import confined
from moola.core.provenance import provenance
from moola.data._manifest import (
    MANIFEST_FILE,
    META_FILE,
    DatasetRef,
    check_files,
    content_hash,
)
from moola.data.blacklist import EXCLUDE_STEP, exclude_from_split, read_blacklist
from moola.data.quality import returns_ks_test, window_log_returns
from moola.data.schema import BAR_COLUMNS, EXTRA_COLUMNS, PRICE_COLUMNS, extra_columns
from moola.data.splits import Split, validate_split
from moola.data.windows import WindowSet, window_starts

# Derived tables: per-bar features and labels, a run's predictions, indexes of bars (e.g.
# the momentum-day index RL episodes start from, ``moola rl scan``) and news items (GDELT
# records and their sentiment scores, ``moola sentiment``).
TABLE_KINDS: tuple[str, ...] = ("features", "labels", "predictions", "indexes", "news")
DATASET_KINDS: tuple[str, ...] = ("raw", "labeled", "unlabeled", "synthetic", *TABLE_KINDS)
SPLITS_DIR = "splits"
MIN_SYNTHETIC_KS_PVALUE = 0.1
# Optional column of labeled windows: open time of the last bar the label looks at.
LABEL_HORIZON = "horizon_end_ts"
# Column of target ``t`` in a regression or multitask feature-windows table: ``y_<t>``.
TARGET_PREFIX = "y_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_VERSION_DIR = re.compile(r"^v(\d+)$")
_REF = re.compile(r"^(?P<name>[^@]+?)(?:@v?(?P<version>\d+))?$")


def parse_ref(text: str) -> tuple[str, int | None]:
    """Split ``"name"`` or ``"name@v3"`` (also ``"name@3"``) into name and version."""
    match = _REF.match(text.strip())
    if not match:
        raise RegistryError(f"Cannot read dataset reference {text!r}; use NAME or NAME@vN.")
    version = match.group("version")
    _check_name(match.group("name"))
    return match.group("name"), int(version) if version else None


@dataclass(frozen=True)
class LabeledPart:
    """One part (train, val or test) of a labeled dataset, materialised for training."""

    X: np.ndarray  # (n, T, D) float32
    y: np.ndarray  # (n,) int64 class indices into LabeledData.classes
    indices: np.ndarray  # (n,) rows of the labeled table; -1 for synthetic samples
    synthetic: np.ndarray  # (n,) bool

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class LabeledData:
    """A labeled dataset version, optionally cut by a split, with its audit trail.

    ``audit`` records exactly what was read: dataset and split identities with hashes,
    counts per part, the synthetic ratio of train and the synthetic count of val/test
    (always zero). It is meant to be copied verbatim into a run manifest.
    """

    ref: DatasetRef
    table: pd.DataFrame
    classes: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray
    split: Split | None
    parts: dict[str, LabeledPart]
    folds: list[dict[str, LabeledPart]]
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def train(self) -> LabeledPart:
        return self._part("train")

    @property
    def val(self) -> LabeledPart:
        return self._part("val")

    @property
    def test(self) -> LabeledPart:
        return self._part("test")

    def _part(self, name: str) -> LabeledPart:
        if name not in self.parts:
            raise RegistryError(
                f"{self.ref} was loaded without a train/val/test split; pass split=NAME "
                "to Registry.load_labeled."
            )
        return self.parts[name]


@dataclass(frozen=True)
class FeatureWindows:
    """A feature-windows dataset (``moola.pipeline.build_feature_windows``), loaded lazily.

    ``X`` is a ``WindowSet`` over the stored feature table (float32, one row per bar; over
    several raw versions, their tables one after the other): ``X[i]`` is window ``i``'s
    ``(length, F)`` rows, a view; ``X.take(idx)`` copies only the windows asked for and
    ``X.materialise()`` all of them. ``symbols`` and ``timestamps`` (open time of each
    window's last bar, ``datetime64[ns]`` in UTC) come one per window, and ``table`` is the
    stored windows table (``start``/``end`` are rows of ``X.values``).

    Targets: ``task`` is ``"classification"``, ``"regression"`` or ``"multitask"``
    (``None`` unlabeled) and ``targets`` lists ``{"name", "kind", "classes"?, "source"}``
    per target. ``Y`` is ``(N, K)`` float64, one column per target: class indices into
    its ``classes`` for a classification target, values for a regression one. ``y`` is
    the class indices (int64) into ``classes`` for one classification target, the float64
    values for one regression target, ``Y`` for several, ``None`` unlabeled.
    """

    ref: DatasetRef
    features: DatasetRef
    table: pd.DataFrame
    columns: tuple[str, ...]
    X: WindowSet
    y: np.ndarray | None
    classes: tuple[str, ...]
    symbols: np.ndarray
    timestamps: np.ndarray
    task: str | None = None
    targets: tuple[dict[str, Any], ...] = ()
    Y: np.ndarray | None = None
    feature_tables: tuple[DatasetRef, ...] = ()

    def __len__(self) -> int:
        return len(self.X)


@dataclass(frozen=True)
class DatasetInfo:
    """One row of ``Registry.list``: a stored version and its headline facts."""

    ref: DatasetRef
    created_at: str
    summary: str


class Registry:
    """Versioned, write-once store of datasets and splits rooted at the data root."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.anchors = Anchors(self.root)

    # ------------------------------------------------------------------ layout
    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def _name_dir(self, kind: str, name: str) -> Path:
        _check_kind(kind)
        _check_name(name)
        try:
            return confined(self.data_dir, kind, name, what="dataset")
        except ConfigError as exc:
            raise RegistryError(str(exc)) from None

    def dataset_dir(self, kind: str, name: str, version: int) -> Path:
        return self._name_dir(kind, name) / f"v{int(version)}"

    def versions(self, kind: str, name: str) -> list[int]:
        """Stored versions of ``kind/name``, oldest first (empty if none)."""
        base = self._name_dir(kind, name)
        if not base.is_dir():
            return []
        found = (_VERSION_DIR.match(entry.name) for entry in base.iterdir())
        return sorted(int(match.group(1)) for match in found if match)

    def names(self, kind: str) -> list[str]:
        _check_kind(kind)
        base = self.data_dir / kind
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and self.versions(kind, p.name))

    def kinds_of(self, name: str) -> list[str]:
        """Dataset kinds that hold a dataset called ``name``."""
        return [kind for kind in DATASET_KINDS if self.versions(kind, name)]

    def resolve(self, kind: str, name: str, version: int | None = None) -> DatasetRef:
        """The reference of ``kind/name@vN`` (latest version when ``version`` is None)."""
        versions = self.versions(kind, name)
        if not versions:
            known = ", ".join(self.names(kind)) or "none yet"
            raise RegistryError(
                f"No {kind} dataset named {name!r} under {self.data_dir}. "
                f"Known {kind} datasets: {known}. See `moola data list`."
            )
        if version is None:
            version = versions[-1]
        elif version not in versions:
            raise RegistryError(
                f"{kind}/{name} has no version v{version}; stored versions: "
                + ", ".join(f"v{v}" for v in versions)
                + "."
            )
        manifest = self._read_manifest(kind, name, version)
        return DatasetRef(kind, name, version, manifest["content_hash"])

    def resolve_text(self, text: str, kind: str | None = None) -> DatasetRef:
        """Resolve ``NAME[@vN]``; when ``kind`` is None the name must be unambiguous."""
        name, version = parse_ref(text)
        if kind is None:
            kinds = self.kinds_of(name)
            if not kinds:
                raise RegistryError(
                    f"No dataset named {name!r} under {self.data_dir}. See `moola data list`."
                )
            if len(kinds) > 1:
                raise RegistryError(
                    f"{name!r} names datasets of several kinds ({', '.join(kinds)}); "
                    "say which with kind.",
                    param="kind",
                )
            kind = kinds[0]
        return self.resolve(kind, name, version)

    # ----------------------------------------------------------------- writing
    def _write(
        self,
        kind: str,
        name: str,
        files: dict[str, Any],
        meta: dict[str, Any],
        manifest: dict[str, Any],
        version: int | None,
    ) -> DatasetRef:
        """Write one dataset version atomically; ``files`` maps file name -> writer(path).

        The data files are written first, outside any lock; then, under the name's lock,
        the next free version is picked (or ``version`` checked), ``meta.json`` and the
        manifest are written, the manifest is anchored in the journal and the folder is
        renamed into place.
        """
        base = self._name_dir(kind, name)
        if version is not None and version < 1:
            raise RegistryError(f"Version must be 1 or more, got {version}.")
        with temporary_directory(base, "write") as tmp:
            for file_name, writer in files.items():
                writer(tmp / file_name)
            records = file_records(tmp, list(files))
            digest = content_hash(records)
            with locked(base):
                existing = self.versions(kind, name)
                if version is None:
                    version = (existing[-1] + 1) if existing else 1
                final = base / f"v{version}"
                if version in existing or final.exists():
                    raise VersionExistsError(
                        f"{kind}/{name}@v{version} already exists at {final}; versions are "
                        "write-once. Write a new version (omit the version to get the next "
                        "free one) or use another name."
                    )
                meta_bytes = write_json(
                    tmp / META_FILE, {"kind": kind, "name": name, "version": version, **meta}
                )
                manifest_bytes = write_json(
                    tmp / MANIFEST_FILE,
                    {
                        "kind": kind,
                        "name": name,
                        "version": version,
                        "content_hash": digest,
                        "files": records,
                        "meta_sha256": sha256_bytes(meta_bytes),
                        "integrity": INTEGRITY,
                        **manifest,
                        **provenance(),
                    },
                )
                ref = DatasetRef(kind, name, version, digest)
                self.anchors.record(ref.key, manifest_bytes)  # journaled before it is visible
                os.rename(tmp, final)
        return ref

    def write_raw(
        self,
        name: str,
        bars: pd.DataFrame,
        *,
        sources: list[dict[str, Any]],
        transformations: list[dict[str, Any]] | None = None,
        parents: list[DatasetRef] | None = None,
        version: int | None = None,
    ) -> DatasetRef:
        """Store validated canonical bars as ``raw/<name>@vN``.

        ``sources`` describe where the bars came from (paths with content hashes, or a
        generator config); ``transformations`` list every change made on the way (repairs
        included), with parameters. The bars may carry declared extra columns
        (``moola.data.schema.EXTRA_COLUMNS``, e.g. the trade count and quotes of 1-second
        bars) after the canonical ones, in declared order and dtype; ``meta["extras"]``
        then names them, and the content hash covers them with the rest of the file. Bars
        without extras are stored exactly as before (no ``extras`` key).
        """
        extras = extra_columns(bars)
        if tuple(bars.columns) != (*BAR_COLUMNS, *extras):
            unknown = [str(c) for c in bars.columns if c not in (*BAR_COLUMNS, *EXTRA_COLUMNS)]
            hint = f" Unknown columns: {unknown}." if unknown else ""
            raise RegistryError(
                f"Raw bars must have the canonical columns {list(BAR_COLUMNS)}, optionally "
                f"followed by extra columns of {list(EXTRA_COLUMNS)} in that order; got "
                f"{list(bars.columns)}.{hint} Build them with moola.data.make_bars or a source "
                "reader, and pass them through moola.data.validation.validate_bars."
            )
        wrong = [
            f"{c} is {bars[c].dtype}, not {EXTRA_COLUMNS[c]}"
            for c in extras
            if bars[c].dtype != np.dtype(EXTRA_COLUMNS[c])
        ]
        if wrong:
            raise RegistryError(
                f"Raw bars' extra columns have the wrong dtype: {'; '.join(wrong)}. Cast them, "
                "or pass the bars through moola.data.validation.validate_bars."
            )
        bars = bars.reset_index(drop=True)
        meta = {
            "rows": len(bars),
            "columns": {column: str(bars[column].dtype) for column in bars.columns},
            "symbols": sorted(bars["symbol"].unique().tolist()),
            "timeframe": sorted(bars["timeframe"].unique().tolist()),
            "start": _iso(bars["timestamp"].min()) if len(bars) else None,
            "end": _iso(bars["timestamp"].max()) if len(bars) else None,
        }
        if extras:
            meta["extras"] = list(extras)
        manifest = {
            "sources": sources,
            "transformations": transformations or [],
            "parents": [parent.to_dict() for parent in parents or []],
        }
        files = {"bars.parquet": lambda path: bars.to_parquet(path, index=False)}
        return self._write("raw", name, files, meta, manifest, version)

    def write_unlabeled(
        self,
        name: str,
        raw: DatasetRef,
        *,
        length: int = 105,
        stride: int = 1,
        allow_gaps: bool = False,
        columns: tuple[str, ...] = PRICE_COLUMNS,
        version: int | None = None,
    ) -> DatasetRef:
        """Store an index of windows over ``raw`` bars (start positions only, no copies)."""
        bars = self.load_raw(raw.name, raw.version)
        starts = window_starts(bars, length, stride=stride, allow_gaps=allow_gaps)
        if len(starts) == 0:
            raise RegistryError(
                f"{raw} has {len(bars)} bars, too few (or too fragmented by gaps) for a "
                f"single window of {length} bars. Use a shorter length or more data.",
                param="length",
            )
        params = {
            "length": length,
            "stride": stride,
            "allow_gaps": allow_gaps,
            "columns": list(columns),
        }
        steps = [{"name": "window_starts", "params": params}]
        blacklist = read_blacklist(self.root)
        if len(blacklist):
            stamps = bars["timestamp"]
            banned = blacklist.mask(
                bars["symbol"].iloc[starts], stamps.iloc[starts], stamps.iloc[starts + length - 1]
            )
            starts = starts[~banned]
            steps.append({"name": EXCLUDE_STEP, "params": blacklist.record(int(banned.sum()))})
            if len(starts) == 0:
                raise RegistryError(
                    f"Every window of {length} bars over {raw} overlaps the blacklist "
                    f"({blacklist.record(0)['file']}); nothing is left to store."
                )
        meta = {"windows": len(starts), **params, "raw": raw.to_dict()}
        manifest = {"parents": [raw.to_dict()], "transformations": steps}
        files = {"starts.npy": lambda path: np.save(path, starts.astype(np.int64))}
        return self._write("unlabeled", name, files, meta, manifest, version)

    def _without_blacklisted(
        self, table: pd.DataFrame, transformations: Sequence[dict[str, Any]]
    ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        """``table``'s windows (``symbol``, ``start_ts``, ``end_ts``) less those touching a
        blacklisted span, with the exclusion recorded as a transformation when any applies."""
        table = table.reset_index(drop=True)
        steps = list(transformations)
        blacklist = read_blacklist(self.root)
        if len(blacklist):
            banned = blacklist.mask(table["symbol"], table["start_ts"], table["end_ts"])
            table = table.loc[~banned].reset_index(drop=True)
            steps.append({"name": EXCLUDE_STEP, "params": blacklist.record(int(banned.sum()))})
        return table, steps

    def write_labeled(
        self,
        name: str,
        raw: DatasetRef,
        table: pd.DataFrame,
        *,
        length: int,
        columns: tuple[str, ...] = PRICE_COLUMNS,
        transformations: list[dict[str, Any]] | None = None,
        version: int | None = None,
    ) -> DatasetRef:
        """Store labeled windows as references into ``raw`` bars plus label, grade, source.

        ``table`` is what ``moola.data.windows.labeled_windows_table`` returns. Its rows
        overlapping a blacklisted span are left out, and the count recorded.
        """
        required = {"symbol", "start", "end", "start_ts", "end_ts", "label", "grade", "source"}
        missing = required - set(table.columns)
        if missing:
            raise RegistryError(
                f"Labeled windows table lacks columns {sorted(missing)}; build it with "
                "moola.data.windows.labeled_windows_table."
            )
        raw_meta = self.meta(raw)
        if len(table) and int(table["end"].max()) >= raw_meta["rows"]:
            raise RegistryError(
                f"Labeled windows reach bar {int(table['end'].max())} but {raw} has only "
                f"{raw_meta['rows']} bars; the table was built on other bars."
            )
        table, transformations = self._without_blacklisted(table, transformations or [])
        labels = table["label"].astype(str)
        meta = {
            "windows": len(table),
            "length": length,
            "columns": list(columns),
            "classes": sorted(labels.unique().tolist()),
            "class_counts": {str(k): int(v) for k, v in labels.value_counts().sort_index().items()},
            "grades": {str(k): int(v) for k, v in table["grade"].value_counts().items()},
            "label_sources": sorted(table["source"].astype(str).unique().tolist()),
            "raw": raw.to_dict(),
        }
        manifest = {"parents": [raw.to_dict()], "transformations": transformations}
        files = {"windows.parquet": lambda path: table.to_parquet(path, index=False)}
        return self._write("labeled", name, files, meta, manifest, version)

    def write_feature_windows(
        self,
        name: str,
        raw: DatasetRef | Sequence[DatasetRef],
        features: DatasetRef | Sequence[DatasetRef],
        table: pd.DataFrame,
        *,
        length: int,
        meta: dict[str, Any],
        transformations: list[dict[str, Any]],
        version: int | None = None,
        targets: Sequence[dict[str, Any]] | None = None,
    ) -> DatasetRef:
        """Store windows over the stored feature table ``features`` (computed on ``raw``):
        labeled when ``table`` has a ``label`` column or ``targets`` are given, else
        unlabeled.

        ``table`` holds ``symbol, start, end, start_ts, end_ts`` (bar positions, which are
        also rows of the feature table) and, labeled, ``label`` (one class target) or
        ``y_<name>`` per target, ``grade, source`` and the label's horizon end. ``targets``
        lists ``{"name", "kind", "source"}``; the classes of each classification target
        are recorded from the windows stored. Several raw versions (each with its feature
        table, in the same order) are stored as one: positions then index the tables one
        after the other, and every raw and table is a parent. Only positions are stored,
        never feature values. Windows overlapping a blacklisted span are left out and the
        count recorded.
        """
        raws = [raw] if isinstance(raw, DatasetRef) else list(raw)
        tables = [features] if isinstance(features, DatasetRef) else list(features)
        if len(raws) != len(tables) or not raws:
            raise RegistryError(
                f"Feature windows need one feature table per raw version; got {len(raws)} raw "
                f"version(s) and {len(tables)} table(s)."
            )
        rows = [int(self.meta(ref)["rows"]) for ref in tables]
        bounds = np.cumsum([0, *rows])
        if len(table):
            within = np.searchsorted(bounds, table["start"].to_numpy(np.int64), side="right") - 1
            if int(table["end"].max()) >= int(bounds[-1]) or bool(
                (table["end"].to_numpy(np.int64) >= bounds[np.minimum(within + 1, len(rows))]).any()
            ):
                shown = tables[0] if len(tables) == 1 else ", ".join(map(str, tables))
                raise RegistryError(
                    f"Feature windows reach row {int(table['end'].max())} but {shown} has only "
                    f"{int(bounds[-1])} rows (or a window crosses from one table into the "
                    "next); the windows were built on another table."
                )
        table, transformations = self._without_blacklisted(table, transformations)
        if not len(table):
            raise RegistryError(
                f"No feature window of {length} rows over {tables[0]} is left to store "
                "(every one was excluded); use a shorter length or more data.",
                param="length",
            )
        full_meta: dict[str, Any] = {
            "windows": len(table),
            "length": length,
            **meta,
            "raw": raws[0].to_dict(),
            "features": tables[0].to_dict(),
        }
        if len(raws) > 1:
            full_meta["feature_tables"] = [
                {"raw": r.to_dict(), "features": f.to_dict(), "offset": int(o), "rows": n}
                for r, f, o, n in zip(raws, tables, bounds[:-1], rows, strict=True)
            ]
        manifest = {
            "parents": [ref.to_dict() for pair in zip(raws, tables, strict=True) for ref in pair],
            "transformations": transformations,
        }
        if "label" in table.columns or targets:
            if "label" in table.columns:
                labels = table["label"].astype(str)
                full_meta["classes"] = sorted(labels.unique().tolist())
                full_meta["class_counts"] = {
                    str(k): int(v) for k, v in labels.value_counts().sort_index().items()
                }
            if targets:
                full_meta.update(_targets_meta(table, targets))
            full_meta["grades"] = {}
            full_meta["label_sources"] = sorted(table["source"].astype(str).unique().tolist())
            files = {"windows.parquet": lambda path: table.to_parquet(path, index=False)}
            return self._write("labeled", name, files, full_meta, manifest, version)
        starts = table["start"].to_numpy(np.int64)
        files = {"starts.npy": lambda path: np.save(path, starts)}
        return self._write("unlabeled", name, files, full_meta, manifest, version)

    def write_synthetic(
        self,
        name: str,
        X: np.ndarray,
        labels: np.ndarray | list[str],
        *,
        parent: DatasetRef,
        split: str,
        augmentation: dict[str, Any],
        version: int | None = None,
    ) -> DatasetRef:
        """Store a train-only augmented set made from ``parent``'s train part under ``split``.

        Its quality statistic, the two-sample KS p-value of its within-window close returns
        against the real train windows', is computed here and stored; loading a set with
        p < 0.1 is refused unless explicitly overridden.
        """
        X = np.asarray(X, dtype=np.float32)
        labels = np.asarray(labels).astype(str)
        real = self.load_labeled(parent.name, parent.version, split=split)
        if X.ndim != 3 or X.shape[1:] != real.X.shape[1:]:
            raise RegistryError(
                f"Synthetic windows have shape {X.shape}; {parent} windows are "
                f"(n, {real.X.shape[1]}, {real.X.shape[2]})."
            )
        if len(labels) != len(X):
            raise RegistryError(f"{len(X)} synthetic windows but {len(labels)} labels.")
        unknown = sorted(set(labels) - set(real.classes))
        if unknown:
            raise RegistryError(
                f"Synthetic labels {unknown} are not classes of {parent} ({list(real.classes)})."
            )
        columns = self.meta(parent)["columns"]
        if "close" not in columns:
            raise RegistryError(f"{parent} windows have no close column; cannot check quality.")
        close = columns.index("close")
        statistic, pvalue = returns_ks_test(
            window_log_returns(X, close), window_log_returns(real.train.X, close)
        )
        y = np.array([real.classes.index(label) for label in labels], dtype=np.int64)
        split_ref = real.audit["split"]
        meta = {
            "windows": len(X),
            "shape": list(X.shape),
            "classes": list(real.classes),
            "ks_statistic": statistic,
            "ks_pvalue": pvalue,
            "parent": parent.to_dict(),
            "split": split_ref,
        }
        manifest = {
            "parents": [parent.to_dict()],
            "split": split_ref,
            "augmentation": augmentation,
            "quality": {
                "statistic": "ks_2samp_close_log_returns",
                "ks_statistic": statistic,
                "pvalue": pvalue,
            },
        }
        files = {
            "X.npy": lambda path: np.save(path, X),
            "y.npy": lambda path: np.save(path, y),
        }
        return self._write("synthetic", name, files, meta, manifest, version)

    def write_table(
        self,
        kind: str,
        name: str,
        table: pd.DataFrame,
        *,
        parents: list[DatasetRef],
        meta: dict[str, Any] | None = None,
        transformations: list[dict[str, Any]] | None = None,
        version: int | None = None,
    ) -> DatasetRef:
        """Store a derived table (one of ``TABLE_KINDS``) computed from ``parents``.

        ``meta`` holds what a reader needs (e.g. the feature spec and its hash, label
        horizons); ``transformations`` how the table was computed.
        """
        if kind not in TABLE_KINDS:
            raise RegistryError(f"write_table stores {', '.join(TABLE_KINDS)}, not {kind!r}.")
        table = table.reset_index(drop=True)
        full_meta = {
            "rows": len(table),
            "columns": {column: str(table[column].dtype) for column in table.columns},
            **(meta or {}),
        }
        manifest = {
            "parents": [parent.to_dict() for parent in parents],
            "transformations": transformations or [],
        }
        files = {"table.parquet": lambda path: table.to_parquet(path, index=False)}
        return self._write(kind, name, files, full_meta, manifest, version)

    def load_table(self, kind: str, name: str, version: int | None = None) -> pd.DataFrame:
        """A stored derived table (one of ``TABLE_KINDS``), verified against its manifest."""
        ref = self.resolve(kind, name, version)
        table = _parquet(self.read_file(ref, "table.parquet"))
        table.attrs["dataset"] = str(ref)
        return table

    # ----------------------------------------------------------------- reading
    def meta(self, ref: DatasetRef) -> dict[str, Any]:
        """``meta.json`` of a stored version, checked against its manifest's hash of it."""
        return self._checked_meta(ref, self.manifest(ref))

    def _checked_meta(self, ref: DatasetRef, manifest: dict[str, Any]) -> dict[str, Any]:
        path = self.dataset_dir(ref.kind, ref.name, ref.version) / META_FILE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IntegrityError(f"{path} is missing or unreadable ({exc.strerror}).") from None
        recorded = manifest.get("meta_sha256")
        if recorded is not None and sha256_bytes(data) != recorded:
            raise IntegrityError(
                f"{path} differs from the hash its manifest recorded: the facts of {ref} "
                "(window length, columns, classes, raw reference) were edited after it was "
                "written. Restore it from a backup or re-create the data as a new version."
            )
        meta = read_json_bytes(data, path)
        if not isinstance(meta, dict):
            raise IntegrityError(f"{path} is corrupt: it holds no JSON object.")
        return meta

    def manifest(self, ref: DatasetRef) -> dict[str, Any]:
        return self._read_manifest(ref.kind, ref.name, ref.version)

    def read_file(self, ref: DatasetRef, file_name: str, *, full: bool = False) -> bytes:
        """The bytes of one data file of ``ref``, every byte checked against the manifest.

        ``meta.json`` is checked too: a loader never uses data whose facts were edited.
        """
        manifest = self.manifest(ref)
        self._checked_meta(ref, manifest)
        record = manifest.get("files", {}).get(file_name)
        directory = self.dataset_dir(ref.kind, ref.name, ref.version)
        if record is None:
            raise IntegrityError(
                f"{directory / MANIFEST_FILE} does not list {file_name}: {ref} is incomplete "
                "or its manifest was edited."
            )
        return read_verified(directory / file_name, record, what=str(ref), full=full)

    def load_raw(
        self, name: str, version: int | None = None, *, full: bool = False
    ) -> pd.DataFrame:
        """Canonical bars of ``raw/<name>@vN`` (latest when ``version`` is None), verified,
        with the extra columns the version holds (``meta["extras"]``) after them."""
        ref = self.resolve("raw", name, version)
        bars = _parquet(self.read_file(ref, "bars.parquet", full=full))
        bars.attrs["dataset"] = str(ref)
        return bars

    def _bar_values(
        self, raw: dict[str, Any], columns: list[str]
    ) -> tuple[pd.DataFrame, np.ndarray]:
        bars = self.load_raw(raw["name"], raw["version"])
        current = self.resolve("raw", raw["name"], raw["version"])
        if current.content_hash != raw["content_hash"]:
            raise IntegrityError(
                f"Windows refer to raw/{raw['name']}@v{raw['version']} with content hash "
                f"{raw['content_hash']}, but the stored version now hashes to "
                f"{current.content_hash}; the bars they index were replaced."
            )
        values = np.ascontiguousarray(bars[columns].to_numpy(dtype=np.float32))
        return bars, values

    def load_unlabeled(self, name: str, version: int | None = None) -> WindowSet:
        """Lazy windows of ``unlabeled/<name>@vN``: views over the raw bars, no copies."""
        ref = self.resolve("unlabeled", name, version)
        starts = _npy(self.read_file(ref, "starts.npy"), ref)
        meta = self.meta(ref)
        _refuse_feature_windows(ref, meta)
        _, values = self._bar_values(meta["raw"], meta["columns"])
        return WindowSet(values, starts, meta["length"])

    def load_feature_windows(self, name: str, version: int | None = None) -> FeatureWindows:
        """Feature windows ``NAME[@vN]`` (labeled or unlabeled), lazily: each feature table
        is read once (every byte checked, and its content hash against the one the windows
        recorded; over several raw versions their tables one after the other) and windows
        are views into it; nothing N x L x F is made unless asked. The targets come as
        ``task``, ``targets``, ``Y`` and ``y`` (see ``FeatureWindows``)."""
        kinds = [kind for kind in ("labeled", "unlabeled") if self.versions(kind, name)] or [
            "labeled"
        ]
        ref = self.resolve(kinds[0], name, version)
        meta = self.meta(ref)
        if "features" not in meta:
            raise RegistryError(
                f"{ref} holds windows over raw bars, not over a feature table; load it with "
                f"Registry.load_{ref.kind}, or build feature windows (build_feature_windows)."
            )
        columns = tuple(meta["columns"])
        recorded_tables = [entry["features"] for entry in meta.get("feature_tables", [])] or [
            meta["features"]
        ]
        tables = [self._recorded_features(ref, recorded) for recorded in recorded_tables]
        frames = [
            _parquet(self.read_file(features, "table.parquet"), ["timestamp", "symbol", *columns])
            for features in tables
        ]
        parts = [np.ascontiguousarray(f[list(columns)].to_numpy(dtype=np.float32)) for f in frames]
        values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        del parts
        if ref.kind == "labeled":
            table = _parquet(self.read_file(ref, "windows.parquet"))
        else:
            frame = frames[0]
            if len(frames) > 1:
                frame = pd.concat([f[["timestamp", "symbol"]] for f in frames], ignore_index=True)
            starts = _npy(self.read_file(ref, "starts.npy"), ref).astype(np.int64)
            ends = starts + int(meta["length"]) - 1
            table = pd.DataFrame(
                {
                    "symbol": frame["symbol"].iloc[starts].astype("string").to_numpy(),
                    "start": starts,
                    "end": ends,
                    "start_ts": frame["timestamp"].iloc[starts].reset_index(drop=True),
                    "end_ts": frame["timestamp"].iloc[ends].reset_index(drop=True),
                }
            )
        windows = WindowSet(values, table["start"].to_numpy(np.int64), int(meta["length"]))
        windows.columns = columns
        classes = tuple(meta.get("classes", ()))
        task, targets, Y, y = None, (), None, None
        if ref.kind == "labeled":
            task, targets, Y, y = _window_targets(table, meta, classes)
        return FeatureWindows(
            ref=ref,
            features=tables[0],
            table=table,
            columns=columns,
            X=windows,
            y=y,
            classes=classes,
            symbols=table["symbol"].astype(str).to_numpy(),
            timestamps=_utc_datetimes(table["end_ts"]),
            task=task,
            targets=targets,
            Y=Y,
            feature_tables=tuple(tables),
        )

    def _recorded_features(self, ref: DatasetRef, recorded: dict[str, Any]) -> DatasetRef:
        """The feature table ``recorded`` in ``ref``'s meta, refused if it was replaced."""
        features = self.resolve("features", recorded["name"], recorded["version"])
        if features.content_hash != recorded["content_hash"]:
            raise IntegrityError(
                f"{ref} indexes features/{recorded['name']}@v{recorded['version']} with content "
                f"hash {recorded['content_hash']}, but the stored version now hashes to "
                f"{features.content_hash}; the table it indexes was replaced."
            )
        return features

    def load_labeled(
        self,
        name: str,
        version: int | None = None,
        *,
        split: str | None = None,
        synthetic: str | None = None,
        allow_low_quality_synthetic: bool = False,
    ) -> LabeledData:
        """Labeled windows of ``labeled/<name>@vN``, cut into parts by ``split``.

        ``synthetic`` names a synthetic set (``NAME[@vN]``) to append to train only; val and
        test never receive synthetic samples. A synthetic set whose KS p-value is below 0.1
        is refused unless ``allow_low_quality_synthetic`` is set, which is then recorded.
        With a split, windows overlapping the blacklist (entries added after the split
        was made included) are moved out of every part into ``purged``; the count is in
        ``audit["blacklist"]``.
        """
        ref = self.resolve("labeled", name, version)
        table = _parquet(self.read_file(ref, "windows.parquet"))
        meta = self.meta(ref)
        _refuse_feature_windows(ref, meta)
        _, values = self._bar_values(meta["raw"], meta["columns"])
        windows = WindowSet(values, table["start"].to_numpy(np.int64), meta["length"])
        classes = tuple(meta["classes"])
        X = windows.take(np.arange(len(table)))
        y = pd.Categorical(table["label"].astype(str), categories=classes).codes.astype(np.int64)
        audit: dict[str, Any] = {"dataset": ref.to_dict(), "classes": list(classes)}
        parts: dict[str, LabeledPart] = {}
        folds: list[dict[str, LabeledPart]] = []
        split_obj = None
        if synthetic is not None and split is None:
            raise LeakageError(
                "A synthetic set can only be appended to a train part: pass split=NAME too, so "
                "moola can keep val and test free of synthetic samples."
            )
        if split is not None:
            split_obj, split_record = self.load_split(split, expect_dataset=ref)
            audit["split"] = split_record
            blacklist = read_blacklist(self.root)
            banned = np.flatnonzero(
                blacklist.mask(table["symbol"], table["start_ts"], table["end_ts"])
            )
            split_obj = exclude_from_split(split_obj, banned)
            audit["blacklist"] = blacklist.record(len(banned))

            def real_part(indices: list[int]) -> LabeledPart:
                idx = np.asarray(indices, dtype=np.int64)
                return LabeledPart(X[idx], y[idx], idx, np.zeros(len(idx), dtype=bool))

            for part in ("train", "val", "test"):
                parts[part] = real_part(getattr(split_obj, part))
            for fold in split_obj.folds or []:
                folds.append(
                    {
                        part: real_part(getattr(fold, part))
                        for part in ("train", "val", "test")
                        if getattr(fold, part, None) is not None
                    }
                )
            audit["counts"] = {part: len(value) for part, value in parts.items()}
        if synthetic is not None:
            parts["train"], audit["synthetic"] = self._append_synthetic(
                synthetic, parts["train"], ref, classes, allow_low_quality_synthetic
            )
        audit["train_synthetic_ratio"] = (
            float(parts["train"].synthetic.mean()) if parts and len(parts["train"]) else 0.0
        )
        audit["val_synthetic_count"] = int(parts["val"].synthetic.sum()) if parts else 0
        audit["test_synthetic_count"] = int(parts["test"].synthetic.sum()) if parts else 0
        return LabeledData(ref, table, classes, X, y, split_obj, parts, folds, audit)

    def _append_synthetic(
        self,
        text: str,
        train: LabeledPart,
        parent: DatasetRef,
        classes: tuple[str, ...],
        allow_low_quality: bool,
    ) -> tuple[LabeledPart, dict[str, Any]]:
        syn_name, syn_version = parse_ref(text)
        ref = self.resolve("synthetic", syn_name, syn_version)
        meta = self.meta(ref)
        if meta["parent"]["content_hash"] != parent.content_hash:
            raise LeakageError(
                f"{ref} was made from {meta['parent']['name']}@v{meta['parent']['version']}, "
                f"not from {parent}; a synthetic set may only be mixed into its own parent's "
                "train part."
            )
        if tuple(meta["classes"]) != classes:
            raise RegistryError(f"{ref} has classes {meta['classes']}, {parent} has {classes}.")
        pvalue = float(meta["ks_pvalue"])
        low = pvalue < MIN_SYNTHETIC_KS_PVALUE
        if low and not allow_low_quality:
            raise LeakageError(
                f"{ref} has KS p-value {pvalue:.3g} < {MIN_SYNTHETIC_KS_PVALUE} against the real "
                "train returns: its windows do not look like real data. Regenerate it with "
                "milder augmentation, or pass allow_low_quality_synthetic=True to use it "
                "anyway; the override is recorded.",
                param="allow_low_quality_synthetic",
            )
        X_syn = _npy(self.read_file(ref, "X.npy"), ref)
        y_syn = _npy(self.read_file(ref, "y.npy"), ref)
        merged = LabeledPart(
            np.concatenate([train.X, X_syn]),
            np.concatenate([train.y, y_syn]),
            np.concatenate([train.indices, np.full(len(y_syn), -1, dtype=np.int64)]),
            np.concatenate([train.synthetic, np.ones(len(y_syn), dtype=bool)]),
        )
        record = {
            "dataset": ref.to_dict(),
            "windows": len(y_syn),
            "ks_pvalue": pvalue,
            "low_quality_override": bool(low and allow_low_quality),
        }
        if low:  # why a set the guard refuses was used anyway, in the run's audit
            record["override_reason"] = (
                f"KS p-value {pvalue:.3g} < {MIN_SYNTHETIC_KS_PVALUE}: refused by the quality "
                "guard, used because allow_low_quality_synthetic was set"
            )
        return merged, record

    # ------------------------------------------------------------------ splits
    def _split_dir(self, name: str) -> Path:
        _check_name(name)
        try:
            return confined(self.data_dir, SPLITS_DIR, name, what="split")
        except ConfigError as exc:
            raise RegistryError(str(exc)) from None

    def split_path(self, name: str, version: int) -> Path:
        return self._split_dir(name) / f"v{int(version)}.json"

    def split_versions(self, name: str) -> list[int]:
        base = self._split_dir(name)
        if not base.is_dir():
            return []
        found = (re.match(r"^v(\d+)\.json$", entry.name) for entry in base.iterdir())
        return sorted(int(match.group(1)) for match in found if match)

    def split_names(self) -> list[str]:
        base = self.data_dir / SPLITS_DIR
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and self.split_versions(p.name))

    def write_split(
        self, name: str, split: Split, dataset: DatasetRef, *, version: int | None = None
    ) -> tuple[str, int]:
        """Validate ``split`` against ``dataset``'s sample spans and store it write-once.

        The version is picked under the split name's lock (concurrent writers take
        consecutive versions); the file's SHA-256 is anchored in the journal before the
        file becomes visible.
        """
        base = self._split_dir(name)
        starts, ends = self.sample_spans(dataset)
        validate_split(split, starts, ends)
        body = {
            "name": name,
            "split": split.model_dump(mode="json"),
            "split_hash": split.content_hash(),
            "dataset": dataset.to_dict(),
            "integrity": INTEGRITY,
            **provenance(),
        }
        with temporary_directory(base, "split") as tmp, locked(base):
            existing = self.split_versions(name)
            if version is not None and version in existing:
                raise VersionExistsError(
                    f"Split {name}@v{version} already exists at {self.split_path(name, version)}"
                    "; splits are write-once. Omit the version to write the next one, or use "
                    "another name."
                )
            version = version or ((existing[-1] + 1) if existing else 1)
            data = canonical_json({**body, "version": version}).encode()
            staged = tmp / "split.json"
            staged.write_bytes(data)
            self.anchors.record(f"split:{name}@v{version}", data)
            os.rename(staged, self.split_path(name, version))
        return name, version

    def load_split(
        self, text: str, *, expect_dataset: DatasetRef | None = None
    ) -> tuple[Split, dict[str, Any]]:
        """Read and re-validate split ``NAME[@vN]``; refuse it if its dataset changed."""
        name, version = parse_ref(text)
        versions = self.split_versions(name)
        if not versions:
            known = ", ".join(self.split_names()) or "none yet"
            raise SplitError(f"No split named {name!r}. Known splits: {known}.")
        version = versions[-1] if version is None else version
        path = self.split_path(name, version)
        if not path.is_file():
            raise SplitError(
                f"Split {name} has no version v{version}; stored: "
                + ", ".join(f"v{v}" for v in versions)
            )
        data = path.read_bytes()
        payload = read_json_bytes(data, path)
        self.anchors.check_marked(f"split:{name}@v{version}", data, path, payload)
        try:
            split = Split.model_validate(payload["split"])
            recorded = payload["dataset"]
            recorded_hash = payload["split_hash"]
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(
                f"Split file {path} is corrupt or incomplete ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}). Re-create the split."
            ) from None
        if split.content_hash() != recorded_hash:
            raise IntegrityError(
                f"Split file {path} was edited: its indices no longer hash to "
                "the recorded split_hash. Re-create the split."
            )
        current = self.resolve(recorded["kind"], recorded["name"], recorded["version"])
        if current.content_hash != recorded["content_hash"]:
            raise IntegrityError(
                f"Split file {path} was made for {recorded['kind']}/{recorded['name']}"
                f"@v{recorded['version']} with hash {recorded['content_hash']}, but that "
                f"dataset now hashes to {current.content_hash}. Re-create the split for the "
                "current data."
            )
        if expect_dataset is not None and current != expect_dataset:
            raise SplitError(
                f"Split {name}@v{version} belongs to {current}, not to {expect_dataset}."
            )
        starts, ends = self.sample_spans(current)
        validate_split(split, starts, ends)
        record = {
            "name": name,
            "version": version,
            "strategy": split.strategy,
            "params": split.params,
            "split_hash": recorded_hash,
            "dataset": recorded,
            "counts": {
                "train": len(split.train),
                "val": len(split.val),
                "test": len(split.test),
                "purged": len(split.purged),
                "folds": len(split.folds or []),
            },
        }
        return split, record

    def sample_windows(self, ref: DatasetRef) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Symbol and window span (first and last bar open times, int64 ns) of each sample
        of a windows dataset, in ``sample_spans`` order: what the blacklist is matched on
        (the window's own bars, not its label's horizon)."""
        if ref.kind == "labeled":
            table = _parquet(
                self.read_file(ref, "windows.parquet"), ["symbol", "start_ts", "end_ts"]
            )
            symbols = table["symbol"].astype(str).to_numpy()
            return symbols, _ns(table["start_ts"]), _ns(table["end_ts"])
        if ref.kind == "unlabeled":
            meta = self.meta(ref)
            all_symbols, stamps = self._window_rows(meta)
            starts = _npy(self.read_file(ref, "starts.npy"), ref)
            symbols = all_symbols[starts]
            return symbols, stamps[starts], stamps[starts + meta["length"] - 1]
        raise SplitError(
            f"{ref} is a {ref.kind} dataset; splits are made over labeled or unlabeled windows."
        )

    def sample_spans(self, ref: DatasetRef) -> tuple[np.ndarray, np.ndarray]:
        """Time spans (int64 ns, inclusive) of the samples of a windows dataset: from a
        window's first bar to its last, or to its label's horizon end when that is later."""
        if ref.kind == "labeled":
            # A label that looks past its window (moola labels build) spans to its horizon
            # end, so purging and embargo keep that future out of other parts too.
            table = _parquet(self.read_file(ref, "windows.parquet"))
            ends = _ns(table["end_ts"])
            if LABEL_HORIZON in table.columns:
                ends = np.maximum(ends, _ns(table[LABEL_HORIZON]))
            return _ns(table["start_ts"]), ends
        if ref.kind == "unlabeled":
            meta = self.meta(ref)
            _, stamps = self._window_rows(meta)
            starts = _npy(self.read_file(ref, "starts.npy"), ref)
            return stamps[starts], stamps[starts + meta["length"] - 1]
        raise SplitError(
            f"{ref} is a {ref.kind} dataset; splits are made over labeled or unlabeled windows."
        )

    def _window_rows(self, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Symbol and open time (int64 ns) of each row unlabeled windows index: the bars of
        their raw version, or of each raw version in turn (feature windows over several)."""
        raws = [entry["raw"] for entry in meta.get("feature_tables", [])] or [meta["raw"]]
        bars = [self.load_raw(raw["name"], raw["version"]) for raw in raws]
        symbols = np.concatenate([b["symbol"].astype(str).to_numpy() for b in bars])
        return symbols, np.concatenate([_ns(b["timestamp"]) for b in bars])

    # ------------------------------------------------------------- inspecting
    def summary(self, ref: DatasetRef) -> str:
        """One line describing a stored version (rows or windows, symbols, dates...)."""
        return _summary(self.meta(ref))

    def list(self) -> list[DatasetInfo]:
        """Every stored dataset version, by kind, name and version."""
        rows = []
        for kind in DATASET_KINDS:
            for name in self.names(kind):
                for version in self.versions(kind, name):
                    manifest = self._read_manifest(kind, name, version)
                    ref = DatasetRef(kind, name, version, manifest["content_hash"])
                    rows.append(
                        DatasetInfo(ref, manifest.get("created_at", ""), _summary(self.meta(ref)))
                    )
        return rows

    def verify(self, *, full: bool = False) -> list[str]:
        """Check every stored version and split; return problems (never raises on bad data).

        Each manifest is checked against its journal anchor, ``meta.json`` against the
        manifest, and every data file's every byte against the manifest (XXH3, or SHA-256
        with ``full``). Temporaries left by interrupted writes are listed too.
        """
        problems = [
            f"{p}: unfinished write left behind (remove with `moola data gc`)"
            for p in stale_temporaries(self.data_dir)
        ]
        for kind in DATASET_KINDS:
            for name in self.names(kind):
                for version in self.versions(kind, name):
                    try:
                        manifest = self._read_manifest(kind, name, version)
                        ref = DatasetRef(kind, name, version, str(manifest["content_hash"]))
                        self.meta(ref)
                        problems += check_files(
                            self.dataset_dir(kind, name, version), manifest["files"], full=full
                        )
                    except (MoolaError, KeyError, TypeError, AttributeError) as exc:
                        problems.append(_problem(exc, self.dataset_dir(kind, name, version)))
        for name in self.split_names():
            for version in self.split_versions(name):
                try:
                    self.load_split(f"{name}@v{version}")
                except (MoolaError, KeyError, TypeError, AttributeError) as exc:
                    problems.append(_problem(exc, self.split_path(name, version)))
        return problems

    def unanchored(self) -> list[str]:
        """Stored versions and splits with no journal anchor (written before anchors)."""
        table = self.anchors.table()
        found = [
            f"{kind}/{name}@v{version}"
            for kind in DATASET_KINDS
            for name in self.names(kind)
            for version in self.versions(kind, name)
            if f"dataset:{kind}/{name}@v{version}" not in table
        ]
        found += [
            f"split {name}@v{version}"
            for name in self.split_names()
            for version in self.split_versions(name)
            if f"split:{name}@v{version}" not in table
        ]
        return found

    def _read_manifest(self, kind: str, name: str, version: int) -> dict[str, Any]:
        path = self.dataset_dir(kind, name, version) / MANIFEST_FILE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IntegrityError(
                f"Manifest {path} is missing or unreadable ({exc.strerror})."
            ) from None
        manifest = read_json_bytes(data, path)
        self.anchors.check_marked(f"dataset:{kind}/{name}@v{version}", data, path, manifest)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise IntegrityError(f"Manifest {path} is corrupt: it lists no files.")
        if "content_hash" not in manifest:
            raise IntegrityError(f"Manifest {path} is corrupt: it has no content_hash.")
        return manifest


def _problem(exc: BaseException, where: Path) -> str:
    if isinstance(exc, MoolaError):
        return str(exc)
    return f"{where}: unreadable record ({type(exc).__name__}: {exc})"


def _parquet(data: bytes, columns: list[str] | None = None) -> pd.DataFrame:
    """A verified Parquet payload as a frame, read in place (no copy through a file object:
    pyarrow's buffer reader parses it faster than reading the file from disk)."""
    return pd.read_parquet(pa.BufferReader(data), columns=columns)


def _npy(data: bytes, ref: DatasetRef) -> np.ndarray:
    """A verified ``.npy`` payload as an array (never pickled objects)."""
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise IntegrityError(f"{ref}: a stored array cannot be read ({exc}).") from None


def _targets_meta(table: pd.DataFrame, targets: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``task`` and ``targets`` of a feature-windows meta: each target's name, kind,
    classes (sorted names, classification only) and source, from the windows stored."""
    listed: list[dict[str, Any]] = []
    for target in targets:
        entry: dict[str, Any] = {"name": target["name"], "kind": target["kind"]}
        if target["kind"] == "classification":
            column = _target_column(table, target["name"], len(targets))
            entry["classes"] = sorted(table[column].astype(str).unique().tolist())
        entry["source"] = target["source"]
        listed.append(entry)
    task = "multitask" if len(listed) > 1 else listed[0]["kind"]
    return {"task": task, "targets": listed}


def _target_column(table: pd.DataFrame, name: str, count: int) -> str:
    """The windows-table column of target ``name``: ``label`` for the one class target
    (the form stored before several targets existed), ``y_<name>`` otherwise."""
    return "label" if count == 1 and "label" in table.columns else f"{TARGET_PREFIX}{name}"


def _window_targets(
    table: pd.DataFrame, meta: dict[str, Any], classes: tuple[str, ...]
) -> tuple[str, tuple[dict[str, Any], ...], np.ndarray, np.ndarray]:
    """``task``, ``targets``, ``Y`` (N, K) and ``y`` of a labeled feature-windows table;
    a version stored before targets were recorded is one class target ``label``."""
    targets = tuple(meta.get("targets") or ())
    if not targets:
        targets = ({"name": "label", "kind": "classification", "classes": list(classes)},)
    task = str(meta.get("task") or targets[0]["kind"])
    Y = np.empty((len(table), len(targets)), dtype=np.float64)
    for k, target in enumerate(targets):
        column = table[_target_column(table, target["name"], len(targets))]
        if target["kind"] == "classification":
            codes = pd.Categorical(column.astype(str), categories=target["classes"]).codes
            Y[:, k] = codes
        else:
            Y[:, k] = column.to_numpy(np.float64)
    if len(targets) > 1:
        return task, targets, Y, Y
    if targets[0]["kind"] == "classification":
        y = pd.Categorical(
            table[_target_column(table, targets[0]["name"], 1)].astype(str),
            categories=list(classes or targets[0]["classes"]),
        ).codes.astype(np.int64)
        return task, targets, Y, y
    return task, targets, Y, Y[:, 0].copy()


def _refuse_feature_windows(ref: DatasetRef, meta: dict[str, Any]) -> None:
    """Windows over a feature table index its rows, not bar prices: reading them as price
    windows would give the wrong values silently."""
    if "features" in meta:
        raise RegistryError(
            f"{ref} holds windows over the feature table {meta['features']['name']}@v"
            f"{meta['features']['version']}, not over price bars; load it with "
            "Registry.load_feature_windows."
        )


def _check_kind(kind: str) -> None:
    if kind not in DATASET_KINDS:
        raise RegistryError(f"Unknown dataset kind {kind!r}; kinds are {', '.join(DATASET_KINDS)}.")


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise RegistryError(
            f"Dataset name {name!r} is not allowed: use letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (at most 128 characters)."
        )


def _iso(stamp: pd.Timestamp) -> str:
    return pd.Timestamp(stamp).isoformat()


def _utc_datetimes(column: pd.Series) -> np.ndarray:
    """``datetime64[ns]`` values in UTC: one array, not one ``Timestamp`` object per row
    (what ``.to_numpy()`` of a tz-aware column makes: seconds and ~100 MB per million)."""
    return _ns(column).view("datetime64[ns]")


def _ns(column: pd.Series) -> np.ndarray:
    return column.astype("datetime64[ns, UTC]").to_numpy(dtype="datetime64[ns]").view(np.int64)


def _summary(meta: dict[str, Any]) -> str:
    if meta["kind"] == "raw":
        extras = f" + {', '.join(meta['extras'])}" if meta.get("extras") else ""
        return (
            f"{meta['rows']:,} bars {'/'.join(meta['symbols'])} {'/'.join(meta['timeframe'])} "
            f"{(meta['start'] or '')[:10]}..{(meta['end'] or '')[:10]}{extras}"
        )
    if meta["kind"] == "labeled" and "class_counts" not in meta:  # regression, multitask
        targets = ", ".join(f"{t['name']} ({t['kind']})" for t in meta.get("targets", []))
        return f"{meta['windows']:,} windows x {meta['length']} ({meta.get('task')}: {targets})"
    if meta["kind"] == "labeled":
        counts = ", ".join(f"{k} {v}" for k, v in meta["class_counts"].items())
        return f"{meta['windows']:,} windows x {meta['length']} ({counts})"
    if meta["kind"] == "unlabeled":
        return f"{meta['windows']:,} windows x {meta['length']} over {meta['raw']['name']}"
    if meta["kind"] == "synthetic":
        return f"{meta['windows']:,} synthetic windows, KS p={meta['ks_pvalue']:.3g}"
    return f"{meta['rows']:,} rows x {len(meta['columns'])} columns"
