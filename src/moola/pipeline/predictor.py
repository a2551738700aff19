"""The bundle one decision needs, loaded from a run or a promoted model: ``Predictor``.

A run's manifest and files say everything a decision on new bars needs, but it is spread
out: the fitted estimator (``model.bin``), its calibrator (``calibrator.json``), the input
view the model reads (``inputs`` beside the model name), the window length and bar
columns (``manifest.window``; older runs: the labeled dataset's meta), the classes and the
minority decision threshold chosen out of fold (``manifest.calibration``). ``Predictor``
gathers them in one object so that ``evaluate``, ``promote``, ``backtest run`` and the
runtime all turn raw bars into probabilities the same way, the way the run itself did:
raw windows -> ``model_inputs`` -> estimator -> calibrator. The equality is a test
(``tests/test_predictor.py``). A promoted model carries the same files and loads with
``Predictor.from_promoted``, giving the same probabilities as ``from_run``.

Loading goes through the tracking store only: every byte is checked against the run's
manifest (itself checked against the journal's anchor) or the promoted folder's listing,
the manifest is parsed once into a ``TrainManifest``, the model loads through its safe
loader (skops with trusted types, or ``torch.load(weights_only=True)``), the calibrator
from JSON; a run still holding a pickle is refused unread, naming the migration.

Normalisation: every input view of raw-bar windows is computed from each window's own
bars (``relative`` is scale-free bar by bar, ``price_action`` features are window
statistics, ``ohlc`` is the raw prices), so no statistics are fitted outside the
estimator; whatever a model learns about scale (a neural estimator's input scaler) is part
of its saved state. A run trained on feature windows is the exception: its manifest holds
the feature set's spec and the per-feature scaler fitted on its training rows
(``scaling``), and the Predictor computes that feature set on the bars it is given, takes
the last ``length`` rows, and scales them with that scaler before the model sees them
(tabular models: the last row) -- the run's own path, checked by a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moola.core.errors import CheckpointError, ConfigError, IntegrityError
from moola.core.hashing import sha256_bytes
from moola.core.integrity import read_json_bytes
from moola.data import DatasetRef
from moola.data.registry import Registry
from moola.features.featureset import FeatureSet, FeatureSetSpec, load_feature_set
from moola.features.scaling import Scaler
from moola.models import create
from moola.models.base import Estimator
from moola.pipeline.feature_inputs import with_symbol_ids
from moola.pipeline.inputs import InputView, model_inputs
from moola.pipeline.train import TrainConfig
from moola.tracking.manifest import TrainManifest, parse_train_manifest
from moola.tracking.runs import MANIFEST_FILE, RunStore
from moola.training.calibration import Calibrator, load_calibrator

__all__ = [
    "CALIBRATOR_FILE",
    "LEGACY_CALIBRATOR_FILE",
    "MODEL_FILE",
    "Predictor",
    "load_model_files",
]

#: A run's fitted estimator and its calibrator (present when calibration is not "none").
MODEL_FILE = "model.bin"
CALIBRATOR_FILE = "calibrator.json"
#: The calibrator file of runs written before calibrators were saved as JSON: a pickle.
LEGACY_CALIBRATOR_FILE = "calibrator.pkl"


def load_model_files(
    store: RunStore, run_dir: Path, model: str
) -> tuple[Estimator, Calibrator | None]:
    """A run's model and calibrator (None without one), every byte verified, no code run.

    Model files load through the model's own safe loader (skops with trusted types, or
    ``torch.load(weights_only=True)``) and the calibrator from JSON. A run still holding
    an old pickled calibrator is refused unread, naming the migration that converts it.
    """
    if store.has_file(run_dir, LEGACY_CALIBRATOR_FILE):
        raise CheckpointError(
            f"Run {run_dir.name} holds {run_dir / LEGACY_CALIBRATOR_FILE}, a calibrator in the "
            "old pickle format, which runs whatever code the file holds while it loads; moola "
            "no longer reads it. If you trust where the run came from, convert it with "
            f"`moola runs migrate {run_dir.name} --trust`; otherwise retrain."
        )
    estimator = type(create(model)).load(store.verified_path(run_dir, MODEL_FILE))
    calibrator = None
    if store.has_file(run_dir, CALIBRATOR_FILE):
        data = store.read_bytes(run_dir, CALIBRATOR_FILE)
        calibrator = load_calibrator(data, run_dir / CALIBRATOR_FILE)
    return estimator, calibrator


@dataclass(frozen=True)
class Predictor:
    """A run's fitted estimator with everything needed to apply it to raw bars.

    Parameters
    ----------
    run_id, manifest_sha256 : str
        The run it came from and the SHA-256 of that run's manifest bytes (its identity).
    model : str
        The model's registry name.
    estimator : Estimator
        The final fitted estimator.
    calibrator : Calibrator or None
        The run's calibrator; None when the run chose no calibration.
    inputs : str
        The input view requested (``auto``, ``relative``, ``price_action``, ``ohlc``),
        as passed to ``model_inputs``; ``view`` is the name the run recorded for it.
    length : int
        Bars per window.
    columns : tuple of str
        The bar columns a window holds, in order (its last axis).
    classes : tuple of str
        Class names, in the order of the probability columns.
    minority : str or None
        The minority class whose decision threshold was chosen out of fold.
    threshold : float or None
        That threshold (binary runs calibrated with ``auto``); None means argmax.
    """

    run_id: str
    manifest_sha256: str
    model: str
    estimator: Estimator
    calibrator: Calibrator | None
    inputs: InputView
    view: str
    length: int
    columns: tuple[str, ...]
    classes: tuple[str, ...]
    minority: str | None = None
    threshold: float | None = None
    feature_set: FeatureSet | None = None
    scaler: Scaler | None = None
    symbols: tuple[str, ...] = ()
    """Symbols the model embeds (sorted; a symbol's id is its index), empty if none."""

    @classmethod
    def from_run(cls, root: str | Path, run_id: str) -> Predictor:
        """Load the Predictor of training run ``run_id`` under data root ``root``.

        Every file is read through the tracking store and checked against the run's
        manifest: a changed byte raises ``IntegrityError`` naming the file; a run still
        holding a pickle raises ``CheckpointError`` naming ``moola runs migrate``. A
        stacked model (it reads other runs' predictions, not bars) is refused. The window
        shape comes from the manifest's ``window`` (runs written before it was recorded:
        from the labeled dataset's meta, which must then still be stored).
        """
        store = RunStore(root)
        run_dir = store.run_dir(run_id)
        manifest = store.train_manifest(run_dir)
        _check_predicts_from_bars(manifest)
        estimator, calibrator = load_model_files(store, run_dir, manifest.model)
        return cls._assemble(
            root, manifest, store.manifest_hash(run_dir), estimator, calibrator, run_dir
        )

    @classmethod
    def from_promoted(cls, root: str | Path, run_id: str) -> Predictor:
        """Load the Predictor of promoted model ``run_id`` from
        ``artifacts/models/promoted/<run_id>/`` under data root ``root``.

        The promoted folder holds a copy of the run's manifest, model and calibrator; each
        is checked byte for byte against the folder's listing (``promoted.json``, itself
        anchored in the journal) before it is used, so the promoted model predicts even
        after its run folder is gone. A changed byte raises ``IntegrityError`` naming the
        file; nothing is written.
        """
        store = RunStore(root)
        folder = store.promoted_dir / run_id
        data = store.read_promoted(run_id, MANIFEST_FILE)
        manifest = parse_train_manifest(
            read_json_bytes(data, folder / MANIFEST_FILE), run_id, folder / MANIFEST_FILE
        )
        if manifest.run_id != run_id:
            raise IntegrityError(
                f"{folder / MANIFEST_FILE} is the manifest of run {manifest.run_id}, not of "
                f"the promoted run {run_id}."
            )
        _check_predicts_from_bars(manifest)
        model_class = type(create(manifest.model))
        store.read_promoted(run_id, MODEL_FILE)  # every byte checked before the load
        estimator = model_class.load(folder / MODEL_FILE)
        calibrator = None
        if CALIBRATOR_FILE in (manifest.files or {}):
            payload = store.read_promoted(run_id, CALIBRATOR_FILE)
            calibrator = load_calibrator(payload, folder / CALIBRATOR_FILE)
        return cls._assemble(root, manifest, sha256_bytes(data), estimator, calibrator, folder)

    @classmethod
    def _assemble(
        cls,
        root: str | Path,
        manifest: TrainManifest,
        manifest_sha256: str,
        estimator: Estimator,
        calibrator: Calibrator | None,
        where: Path,
    ) -> Predictor:
        """The Predictor of ``manifest``'s run with its loaded estimator and calibrator."""
        config = TrainConfig.model_validate(manifest.config)
        if manifest.window is not None:
            length, columns = manifest.window.length, manifest.window.columns
        else:  # written before runs recorded their window: the dataset's meta
            length, columns = _window_shape(Registry(root), manifest.data.dataset.ref, where)
        calibration = manifest.calibration
        feature_set, scaler = _feature_inputs(manifest, columns)
        return cls(
            run_id=manifest.run_id,
            manifest_sha256=manifest_sha256,
            model=config.model,
            estimator=estimator,
            calibrator=calibrator,
            inputs=config.inputs,
            view=manifest.inputs,
            length=length,
            columns=columns,
            classes=manifest.classes,
            minority=calibration.minority,
            threshold=calibration.threshold,
            feature_set=feature_set,
            scaler=scaler,
            symbols=tuple(getattr(manifest.data, "symbols", None) or ())
            if manifest.resolved_params.get("n_symbols")
            else (),
        )

    def windows(self, bars: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Raw windows ``(N, length, len(columns))`` float32 from ``bars``.

        ``bars``: canonical bars (a DataFrame of at least ``length`` rows; its last
        ``length`` bars make one window), one raw window ``(T, D)`` or a batch ``(N, T, D)``.
        For a feature-window run a DataFrame of bars gets the run's feature set computed
        on it (causally: every row from its bar and earlier ones) and its last ``length``
        rows make the window; an array is taken as unscaled feature windows.
        """
        if isinstance(bars, pd.DataFrame) and self.feature_set is not None:
            return self._feature_window(bars)
        if isinstance(bars, pd.DataFrame):
            missing = [c for c in self.columns if c not in bars.columns]
            if missing:
                raise ConfigError(
                    f"bars lack the column(s) {missing} that run {self.run_id}'s windows hold "
                    f"({list(self.columns)})."
                )
            if len(bars) < self.length:
                raise ConfigError(
                    f"bars hold {len(bars)} rows; run {self.run_id} reads windows of "
                    f"{self.length} bars."
                )
            X = bars[list(self.columns)].iloc[-self.length :].to_numpy(dtype=np.float32)[None]
        else:
            X = np.asarray(bars, dtype=np.float32)
            if X.ndim == 2:
                X = X[None]
            expected = (self.length, len(self.columns))
            if X.ndim != 3 or X.shape[1:] != expected:
                raise ConfigError(
                    f"bars has shape {np.shape(bars)}; run {self.run_id} reads windows of shape "
                    f"(N, {expected[0]}, {expected[1]}) (columns {list(self.columns)})."
                )
        if not np.isfinite(X).all():
            raise ConfigError("bars hold NaN or infinite prices; a window must be complete.")
        return X

    def predict_proba(self, bars: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Calibrated class probabilities ``(N, K)`` for raw bars (see ``windows``).

        The run's own path: ``model_inputs`` -> estimator -> calibrator (if any).
        """
        proba = self.estimator.predict_proba(self.inputs_of(bars))
        return proba if self.calibrator is None else self.calibrator.transform(proba)

    @property
    def task(self) -> str:
        """What the run's model predicts: ``classification``, ``regression`` or ``multitask``."""
        return str(getattr(self.estimator, "task", "classification"))

    def predict(self, bars: pd.DataFrame | np.ndarray) -> np.ndarray:
        """A regression run's predicted values for ``bars`` (see ``windows``), in the
        target's units: ``(N,)`` for one target, ``(N, K)`` for several; a multi-task run's
        ``(N, H)`` (class heads: the most probable class index)."""
        if self.task == "classification":
            raise ConfigError(
                f"Run {self.run_id} is a classifier: use predict_proba (and decide) for it."
            )
        return np.asarray(self.estimator.predict(self.inputs_of(bars)), dtype=np.float64)

    def predict_heads(self, bars: pd.DataFrame | np.ndarray) -> dict[str, np.ndarray]:
        """Each head of a multi-task run for ``bars``: values of a regression head, class
        probabilities ``(N, C)`` of a class head."""
        if self.task != "multitask":
            raise ConfigError(
                f"Run {self.run_id} has one {self.task} target; use "
                + ("predict_proba." if self.task == "classification" else "predict.")
            )
        return self.estimator.predict_heads(self.inputs_of(bars))  # type: ignore[attr-defined]

    def inputs_of(self, bars: pd.DataFrame | np.ndarray) -> np.ndarray:
        """What the estimator reads for ``bars`` (see ``windows``): the run's input view of
        raw windows, or scaled feature windows (their last row for a tabular model)."""
        if self.scaler is None:
            return model_inputs(self.inputs, self.model, self.windows(bars))[0]
        ids = None
        if self.symbols and isinstance(bars, pd.DataFrame):
            ids = np.array([self._symbol_id(str(bars["symbol"].iloc[-1]))])
        elif self.symbols:  # an array of feature windows whose last channel is the id
            given = np.asarray(bars, dtype=np.float32)
            given = given[None] if given.ndim == 2 else given
            if given.ndim != 3 or given.shape[2] != len(self.columns) + 1:
                raise ConfigError(
                    f"Run {self.run_id} embeds symbols {list(self.symbols)}: give bars, or "
                    f"feature windows (N, {self.length}, {len(self.columns) + 1}) whose last "
                    "channel is the symbol id."
                )
            bars, ids = given[:, :, :-1], given[:, 0, -1]
        scaled = self.scaler.transform(self.windows(bars))
        if self.view == "features_last_row":
            return scaled[:, -1, :]
        return scaled if ids is None else with_symbol_ids(scaled, ids)

    def _symbol_id(self, symbol: str) -> int:
        """The id the run's model knows ``symbol`` by; a symbol it never saw is refused."""
        if symbol not in self.symbols:
            raise ConfigError(
                f"Run {self.run_id} learned symbols {list(self.symbols)}; bars of {symbol!r} "
                "have no symbol id it knows."
            )
        return self.symbols.index(symbol)

    def _feature_window(self, bars: pd.DataFrame) -> np.ndarray:
        """The last ``length`` rows of the run's feature set computed on ``bars``."""
        assert self.feature_set is not None
        joined = [c for c in self.columns if c not in self.feature_set.columns]
        if joined:
            raise ConfigError(
                f"Run {self.run_id} reads columns {joined} joined onto feature set "
                f"'{self.feature_set.name}' from stored per-bar tables (extra_features); "
                "bars alone cannot give them. Pass its unscaled feature windows (N, L, F), "
                "built with those tables, instead of bars."
            )
        table = self.feature_set.compute(bars.reset_index(drop=True))
        if len(table) < self.length:
            raise ConfigError(
                f"bars hold {len(table)} rows; run {self.run_id} reads windows of "
                f"{self.length} rows of feature set '{self.feature_set.name}'."
            )
        X = table[list(self.columns)].iloc[-self.length :].to_numpy(dtype=np.float32)[None]
        if not np.isfinite(X).all():
            raise ConfigError(
                f"The last {self.length} rows of feature set '{self.feature_set.name}' on these "
                f"bars hold warm-up values (NaN); give at least {self.feature_set.lookback} more "
                "bars before the window."
            )
        return X

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Class names ``(N,)`` for probabilities ``proba`` (``predict_proba``'s output).

        With a recorded minority threshold (binary runs) the minority class is chosen when
        its probability is at least the threshold; otherwise the most probable class.
        """
        proba = np.asarray(proba, dtype=np.float64)
        if proba.ndim != 2 or proba.shape[1] != len(self.classes):
            raise ConfigError(
                f"proba has shape {proba.shape}; run {self.run_id} has "
                f"{len(self.classes)} classes {list(self.classes)}."
            )
        names = np.asarray(self.classes, dtype=object)
        if self.threshold is not None and self.minority is not None and len(self.classes) == 2:
            m = self.classes.index(self.minority)
            return names[np.where(proba[:, m] >= self.threshold, m, 1 - m)]
        return names[proba.argmax(axis=1)]


def _check_predicts_from_bars(manifest: TrainManifest) -> None:
    """Refuse a stacked model: it reads other runs' out-of-fold predictions, not bars."""
    if manifest.inputs == "oof_probabilities":
        raise ConfigError(
            f"Run {manifest.run_id} trained a stacked model ({manifest.model}) on other runs' "
            "out-of-fold predictions, not on bars; it cannot predict from bars alone."
        )


def _feature_inputs(
    manifest: TrainManifest, columns: tuple[str, ...]
) -> tuple[FeatureSet | None, Scaler | None]:
    """The feature set and fitted scaler of a feature-window run (None, None otherwise):
    the spec and scaler its manifest records, the scaler checked against its columns."""
    if manifest.scaling is None:
        return None, None
    spec = getattr(manifest.window, "feature_spec", None)
    if not isinstance(spec, dict):
        raise CheckpointError(
            f"Run {manifest.run_id} trained on feature windows but its manifest does not record "
            "the feature set's spec (window.feature_spec); retrain it with this moola."
        )
    feature_set = load_feature_set(FeatureSetSpec.model_validate(spec))
    # Columns past the set's come from per-bar tables joined onto it (e.g. sentiment, feature
    # windows' extra_features): they keep the methods the scaler was fitted with; the set's
    # own columns are checked against the set's scaling as before.
    methods = dict(feature_set.scaling)
    fitted = dict(
        zip(manifest.scaling.get("columns", ()), manifest.scaling.get("methods", ()), strict=False)
    )
    methods.update({c: fitted[c] for c in columns if c not in methods and c in fitted})
    return feature_set, Scaler.from_dict(manifest.scaling, columns, methods)


def _window_shape(registry: Registry, ref: DatasetRef, where: Path) -> tuple[int, tuple[str, ...]]:
    """Window length and bar columns of the labeled dataset the run trained on, from its
    verified meta; the stored version must be the one the run recorded."""
    stored = registry.resolve(ref.kind, ref.name, ref.version)
    if stored.content_hash != ref.content_hash:
        raise IntegrityError(
            f"Run {where.name} trained on {ref} with content hash {ref.content_hash}, but "
            f"the stored {stored} has {stored.content_hash}: its windows are not the ones "
            "the run learned from."
        )
    meta = registry.meta(stored)
    return int(meta["length"]), tuple(str(c) for c in meta["columns"])
