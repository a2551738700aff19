"""Training on feature windows: the split-cut dataset, its lazy inputs and its scaler.

A feature-windows dataset (``moola data windows RAW --features SET``) holds start
positions into a stored feature table, not copies of windows. Training reads it through
three pieces, so that a fold's model sees only what it may see:

- :func:`load_feature_training_data` loads the windows with a split as ``LabeledData``
  (the shape ``moola.pipeline.train`` works on), blacklist applied as for bar windows;
  its ``X`` is :class:`WindowSubsets`, whose ``X[idx]`` is a lazy ``WindowSet`` over the
  same table (no window is copied until a model asks for its rows);
- :class:`ScaledWindowModel` wraps the model: ``fit`` learns the per-feature scaler on
  the table rows covered by ITS training windows only (``moola.features.scaling``; each
  fold fits its own, so validation statistics never reach a fit), then trains the model
  on scaled windows; prediction applies the same scaler. Tabular models get the last row
  of each scaled window (the features at the decision bar);
- :func:`scaling_methods` reads the per-column methods from the meta of the table the
  windows index (:func:`table_scaling`: the feature set it was computed with, whose spec is
  stored with it, and the ``scaling`` map of the extra per-bar tables joined onto it, e.g.
  sentiment columns), so every column is scaled by one rule, fitted on training rows only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from moola.core.errors import ConfigError
from moola.data.blacklist import exclude_from_split, read_blacklist
from moola.data.registry import FeatureWindows, LabeledData, LabeledPart, Registry, parse_ref
from moola.data.windows import WindowSet
from moola.features.featureset import FeatureSetSpec, load_feature_set
from moola.features.scaling import SCALE_METHODS, Scaler, fit_scaler, window_rows
from moola.models.base import Estimator
from moola.training.window_dataset import LazyWindows

__all__ = [
    "FeatureView",
    "ScaledWindowModel",
    "WindowSubsets",
    "is_feature_windows",
    "load_feature_training_data",
    "scaling_methods",
    "table_scaling",
    "with_symbol_ids",
]

#: How a model sees a window of feature rows: the whole ``(L, F)`` window (sequence
#: models) or its last row ``(F,)`` (tabular models: the features at the decision bar).
FeatureView = Literal["features", "features_last_row"]


class WindowSubsets:
    """All windows of a feature-windows dataset; ``X[idx]`` is a lazy ``WindowSet`` of the
    windows ``idx`` (a view of the same table), which is what a fold's model receives.

    ``symbol_ids`` holds each window's symbol as its index in the dataset's sorted symbols
    (what a model that embeds symbols reads); a subset carries its windows' ids as
    ``symbol_ids`` too.
    """

    def __init__(self, windows: WindowSet, symbol_ids: np.ndarray | None = None) -> None:
        self.windows = windows
        self.symbol_ids = symbol_ids

    def __len__(self) -> int:
        return len(self.windows.starts)

    def __getitem__(self, idx: Any) -> WindowSet:
        subset = WindowSet(self.windows.values, self.windows.starts[idx], self.windows.length)
        subset.columns = self.windows.columns
        if self.symbol_ids is not None:
            subset.symbol_ids = self.symbol_ids[idx]  # type: ignore[attr-defined]
        return subset


def is_feature_windows(registry: Registry, dataset: str) -> bool:
    """True when ``dataset`` (``NAME[@vN]``) is a stored feature-windows dataset."""
    name, version = parse_ref(dataset)
    if not registry.versions("labeled", name):
        return False
    return "features" in registry.meta(registry.resolve("labeled", name, version))


def load_feature_training_data(
    registry: Registry, dataset: str, split: str, *, symbols: list[str] | None = None
) -> LabeledData:
    """Labeled feature windows ``dataset`` (``NAME[@vN]``) cut by ``split``, as the
    ``LabeledData`` training reads: ``X`` is :class:`WindowSubsets` (lazy), each part's
    ``X`` a lazy ``WindowSet``; windows overlapping the blacklist leave every part.

    ``symbols`` keeps only those symbols' windows in the split's parts (a per-symbol
    model); the others leave every part, as blacklisted windows do, so the parts keep
    the split's time cuts."""
    name, version = parse_ref(dataset)
    windows = registry.load_feature_windows(name, version)
    if windows.y is None:
        raise ConfigError(
            f"{windows.ref} holds unlabeled feature windows; training needs labeled ones "
            "(build them with labels_from=LABELS).",
            param="dataset",
        )
    split_obj, split_record = registry.load_split(split, expect_dataset=windows.ref)
    table = windows.table
    blacklist = read_blacklist(registry.root)
    banned = np.flatnonzero(blacklist.mask(table["symbol"], table["start_ts"], table["end_ts"]))
    split_obj = exclude_from_split(split_obj, banned)
    present = sorted({str(s) for s in windows.symbols})
    chosen = sorted(set(symbols)) if symbols else present
    unknown = sorted(set(chosen) - set(present))
    if unknown:
        raise ConfigError(
            f"{windows.ref} has no windows of {unknown}; its symbols are {present}.",
            param="symbols",
        )
    names = windows.symbols.astype(str)
    kept = np.isin(names, chosen)
    if not kept.all():  # other symbols' windows leave every part
        split_obj = exclude_from_split(split_obj, np.flatnonzero(~kept))
    ids = np.full(len(names), -1, dtype=np.int64)
    ids[kept] = np.searchsorted(np.asarray(chosen), names[kept])
    X = WindowSubsets(windows.X, ids)
    y = np.asarray(windows.y)  # class indices, values (regression) or (N, K) (multitask)

    def part(indices: list[int]) -> LabeledPart:
        idx = np.asarray(indices, dtype=np.int64)
        return LabeledPart(X[idx], y[idx], idx, np.zeros(len(idx), dtype=bool))

    parts = {name: part(getattr(split_obj, name)) for name in ("train", "val", "test")}
    folds = [
        {
            name: part(getattr(fold, name))
            for name in ("train", "val", "test")
            if getattr(fold, name, None) is not None
        }
        for fold in split_obj.folds or []
    ]
    audit: dict[str, Any] = {
        "dataset": windows.ref.to_dict(),
        "classes": list(windows.classes),
        "features": windows.features.to_dict(),
        "columns": list(windows.columns),
        "scaling": scaling_methods(registry, windows),
        "split": split_record,
        "blacklist": blacklist.record(len(banned)),
        "counts": {name: len(value) for name, value in parts.items()},
        "symbols": chosen,
        "task": getattr(windows, "task", None) or "classification",
        "targets": [dict(t) for t in getattr(windows, "targets", ())],
        "train_synthetic_ratio": 0.0,
        "val_synthetic_count": 0,
        "test_synthetic_count": 0,
    }
    return LabeledData(windows.ref, table, windows.classes, X, y, split_obj, parts, folds, audit)


def scaling_methods(registry: Registry, windows: FeatureWindows) -> dict[str, str]:
    """Per-column scaling methods of the windows' table (:func:`table_scaling` of its
    meta): the feature set's ``FeatureSet.scaling``, and for extra per-bar columns joined
    onto it the methods their tables record."""
    features = windows.features
    meta = registry.meta(features)
    if not isinstance(meta.get("feature_set"), dict):
        raise ConfigError(
            f"{features} does not record the feature set it was computed with; rebuild the "
            "feature windows so their table carries its spec."
        )
    methods = table_scaling(meta)
    unscaled = [c for c in windows.columns if c not in methods]
    if unscaled:
        raise ConfigError(
            f"{features} records no scaling for column(s) {unscaled}; rebuild the feature "
            "windows with this moola."
        )
    return methods


def table_scaling(meta: dict[str, Any]) -> dict[str, str]:
    """Column -> scaling method (``moola.features.scaling.SCALE_METHODS``) recorded in a
    stored features table's meta: the scaling of the feature set it was computed with
    (``feature_set``, its spec), then its own ``scaling`` map (a table that is not a
    feature set's, e.g. sentiment columns, or the extra columns joined onto one). Empty
    when it records neither; an unknown method is refused."""
    methods: dict[str, str] = {}
    spec = meta.get("feature_set")
    if isinstance(spec, dict):
        methods.update(load_feature_set(FeatureSetSpec.model_validate(spec)).scaling)
    own = meta.get("scaling") or {}
    if not isinstance(own, dict):
        raise ConfigError(
            f"A features table's meta 'scaling' must map columns to methods: {own!r}."
        )
    unknown = sorted({str(m) for m in own.values() if m not in SCALE_METHODS})
    if unknown:
        raise ConfigError(
            f"A features table records unknown scaling method(s) {unknown}; known: "
            f"{', '.join(SCALE_METHODS)}."
        )
    methods.update({str(c): str(m) for c, m in own.items()})
    return methods


def with_symbol_ids(windows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``(N, L, F)`` windows with each window's symbol id as an ``F + 1``-th channel
    (the same value on every step), what a model built with ``n_symbols`` reads."""
    ids = np.asarray(ids, dtype=windows.dtype).reshape(-1, 1, 1)
    channel = np.broadcast_to(ids, (windows.shape[0], windows.shape[1], 1))
    return np.concatenate([windows, channel], axis=2)


class ScaledWindowModel(Estimator):
    """A model trained on feature windows scaled by a scaler fitted on its own training
    windows (see the module docstring).

    ``inner`` is the unfitted estimator; ``columns`` the feature table's columns and
    ``methods`` their scaling methods; ``view`` what the inner model sees. ``fit`` and the
    predict methods take a ``WindowSet`` (windows into a feature table) or an ``(N, L, F)``
    array of unscaled feature windows. After ``fit``, ``scaler_`` is the fitted scaler.

    With ``symbols`` (the dataset's sorted symbols; the inner model built with
    ``n_symbols = len(symbols)``) each window gets its symbol's index as one more,
    unscaled, last channel (a ``WindowSet`` from :class:`WindowSubsets` carries the ids;
    an array must already hold that channel).
    """

    input_kind = "sequence"

    def __init__(
        self,
        inner: Estimator,
        columns: tuple[str, ...],
        methods: dict[str, str],
        view: FeatureView = "features",
        symbols: tuple[str, ...] = (),
    ) -> None:
        self.inner = inner
        self.columns = tuple(columns)
        self.methods = dict(methods)
        self.view = view
        self.symbols = tuple(symbols)
        self.params = inner.get_params()
        self.scaler_: Scaler | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def task(self) -> str:
        """The inner model's task (``classification`` unless it says otherwise)."""
        return str(getattr(self.inner, "task", "classification"))

    def with_callbacks(self, *callbacks: Any) -> ScaledWindowModel:
        self.inner.with_callbacks(*callbacks)
        return self

    @property
    def callbacks(self) -> tuple[Any, ...]:  # type: ignore[override]
        return tuple(getattr(self.inner, "callbacks", ()))

    @property
    def resume_from(self) -> Any:
        """The inner model's ``resume_from`` (None when it does not train by epochs), so
        a fit of this wrapper resumes as the inner one does."""
        return getattr(self.inner, "resume_from", None)

    def fit(
        self,
        X: Any,
        y: np.ndarray,
        *,
        X_val: Any = None,
        y_val: np.ndarray | None = None,
    ) -> ScaledWindowModel:
        """Fit the scaler on the rows ``X``'s windows cover, then the model on scaled
        windows (``X_val`` only steers the model's early stopping, scaled the same way)."""
        if not isinstance(X, WindowSet):
            raise ConfigError(
                "ScaledWindowModel.fit needs the training windows as a WindowSet (windows into "
                "the feature table), so the scaler is fitted on the table rows they cover."
            )
        rows = window_rows(X.starts, X.length)
        self.scaler_ = fit_scaler(X.values, self.columns, self.methods, rows)
        self.inner.fit(
            self._inputs(X),
            y,
            X_val=None if X_val is None else self._inputs(X_val),
            y_val=y_val,
        )
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.inner.predict_proba(self._inputs(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.inner.predict(self._inputs(X))

    def predict_heads(self, X: Any) -> dict[str, np.ndarray]:
        """Each head of a multi-task model (``NeuralEstimator.predict_heads``)."""
        return self.inner.predict_heads(self._inputs(X))  # type: ignore[attr-defined]

    def save(self, path: str | Path) -> None:
        """Write the inner model; the scaler travels beside it (``scaler.json`` of a run)."""
        self.inner.save(path)

    @classmethod
    def load(cls, path: str | Path) -> Estimator:
        raise ConfigError(
            "A ScaledWindowModel is loaded from its run (Predictor.from_run), which restores "
            "the model file and the scaler beside it."
        )

    def __getattr__(self, name: str) -> Any:
        # Learned state of the inner model (training_summary_, load_report_, ...).
        if name.endswith("_") and not name.startswith("__") and "inner" in self.__dict__:
            return getattr(self.__dict__["inner"], name)
        raise AttributeError(name)

    def _inputs(self, X: Any) -> np.ndarray | LazyWindows:
        """Scaled inputs of windows ``X`` in this model's view.

        Windows into a feature table are cut from the scaled table (scaling is per row, so
        this equals scaling each window, bit for bit) instead of scaling a copy of every
        window in float64; the last-row view takes one row per window, no window at all. A
        model that trains on windows into a table (``accepts_lazy_windows``: the neural
        estimator) gets them as ``LazyWindows`` and gathers each batch itself, so no
        ``(N, L, F)`` copy of a fold is ever made.
        """
        if self.scaler_ is None:
            raise ConfigError("This model is not fitted: call fit first.")
        if isinstance(X, WindowSet):
            if X.values.shape[1] != len(self.columns):
                raise ConfigError(
                    f"Expected windows over the {len(self.columns)} columns "
                    f"{list(self.columns)}; got a table of {X.values.shape[1]}."
                )
            rows = window_rows(X.starts, X.length)  # sorted, each once
            scaled = np.zeros_like(X.values)
            scaled[rows] = self.scaler_.transform(X.values[rows])  # only the rows used
            if self.view == "features_last_row":
                return scaled[X.starts + X.length - 1]
            ids = getattr(X, "symbol_ids", None) if self.symbols else None
            if self.symbols and ids is None:
                raise ConfigError(
                    "This model embeds symbols: give windows that carry their symbol ids "
                    "(WindowSubsets) or an array whose last channel holds them."
                )
            if getattr(self.inner, "accepts_lazy_windows", False):
                # The model gathers each batch from the scaled table: no (N, L, F) copy.
                return LazyWindows(scaled, X.starts, X.length, ids)
            windows = WindowSet(scaled, X.starts, X.length).materialise()
            return windows if ids is None else with_symbol_ids(windows, ids)
        windows = np.asarray(X)
        if self.symbols:  # the id channel rides last, unscaled
            if windows.ndim != 3 or windows.shape[2] != len(self.columns) + 1:
                raise ConfigError(
                    f"This model embeds symbols {list(self.symbols)}: expected feature windows "
                    f"(N, L, {len(self.columns) + 1}) whose last channel is the symbol id; got "
                    f"shape {windows.shape}."
                )
            scaled = self.scaler_.transform(windows[:, :, :-1])
            return np.concatenate([scaled, windows[:, :, -1:].astype(scaled.dtype)], axis=2)
        if windows.ndim != 3 or windows.shape[2] != len(self.columns):
            raise ConfigError(
                f"Expected feature windows (N, L, {len(self.columns)}) over columns "
                f"{list(self.columns)}; got shape {windows.shape}."
            )
        if self.view == "features_last_row":
            windows = windows[:, -1, :]
        return self.scaler_.transform(windows)
