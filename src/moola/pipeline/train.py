"""``moola train``: one model, one labeled dataset, one split -> an auditable run.

A run estimates performance honestly and records exactly what it trained on:

- **Split with folds** (purged k-fold, walk-forward): a fresh model per fold predicts the
  fold's test samples, giving out-of-fold (OOF) probabilities for every covered sample.
  The headline metrics are OOF metrics. The calibrator is cross-fitted (for each fold it
  is fitted on the other folds' OOF predictions), so calibrated OOF metrics are honest too.
  The final model is then fitted on all covered samples, with a calibrator fitted on all
  OOF predictions. With ``calibration="auto"`` (the default) the method itself is chosen
  out of fold (``moola.training.calibration_choice``): a calibration that costs the
  minority class is refused, and the minority decision threshold is chosen and recorded.
- **Split with train/val/test** (forward chaining): the model is fitted on train (early
  stopping on val), calibrated on val, and reported on val. The test part is not touched;
  ``moola evaluate RUN --test`` scores it once, on purpose, and records that it did.

Everything goes into ``artifacts/runs/<run_id>/`` with a manifest (resolved config, seed,
data lineage with hashes, split, the raw window the model reads, metrics, training
summary, library versions) and one line in ``experiment_results.jsonl``. OOF predictions
are stored through the registry as a ``predictions`` table whose parent is the labeled
dataset.

Computing is apart from recording. :func:`fit_and_score` fits, calibrates and scores
loaded data and writes nothing: it returns an :class:`Outcome`. :func:`record_run` writes
an outcome (predictions dataset, run folder, results line). :func:`run_training` is load +
fit_and_score + record_run. A tuning study calls fit_and_score for every trial and records
only the trials it keeps; an ``executor`` (``moola.training.oof.FoldExecutor``) runs the
folds elsewhere (a process pool, a cluster) with the same results.
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import Field

from moola.core.errors import ConfigError, IntegrityError, LeakageError
from moola.core.hashing import canonical_json, sha256_json
from moola.core.settings import RunConfig
from moola.core.threads import thread_settings
from moola.data import DatasetRef
from moola.data.blacklist import exclude_from_split
from moola.data.registry import LabeledData, Registry, parse_ref
from moola.evaluation.metrics import classification_report
from moola.evaluation.regression import flat_regression_metrics
from moola.models import (
    ModelCard,
    create,
    model_card,
    params_model,
    require_active,
    validate_params,
)
from moola.models.base import Estimator
from moola.pipeline.feature_inputs import (
    ScaledWindowModel,
    WindowSubsets,
    is_feature_windows,
    load_feature_training_data,
)
from moola.pipeline.forecast import (
    fit_values,
    prediction_frame,
    task_params,
    training_summary,
    values_plots,
)
from moola.pipeline.inputs import InputView, model_inputs, model_params
from moola.tracking.runs import RunStore, new_run_id
from moola.training import distributed
from moola.training.calibration import Calibrator, calibrate, save_calibrator
from moola.training.calibration_choice import choose_calibration, contiguous_blocks
from moola.training.checkpoints import FoldStore, resume_or_checkpoint
from moola.training.oof import FoldExecutor, SerialExecutor, out_of_fold

CalibrationMethod = Literal["auto", "none", "platt", "isotonic", "temperature"]
HEADLINE = ("accuracy", "balanced_accuracy", "pr_auc", "roc_auc", "log_loss", "brier", "ece")
SCALER_FILE = "scaler.json"
LIBRARIES = ("numpy", "pandas", "scikit-learn", "torch", "aeon", "lightgbm", "ta-lib")


class TrainConfig(RunConfig):
    """Everything that defines a training run; its hash is recorded with the run."""

    model: str
    dataset: str
    split: str
    inputs: InputView = "auto"
    params: dict[str, Any] = Field(default_factory=dict)
    calibration: CalibrationMethod = "auto"
    seed: int = 0
    n_bootstrap: int = 1000
    synthetic: str | None = None
    allow_low_quality_synthetic: bool = False
    base_runs: list[str] = Field(default_factory=list)
    symbols: list[str] = Field(default_factory=list)
    """Train on these symbols' windows only (a per-symbol model from a multi-symbol
    feature-windows dataset); empty: every symbol."""


EventSink = Callable[[str, dict[str, Any]], None]


class _Fitted(NamedTuple):
    """What either validation mode hands back to ``fit_and_score``."""

    model: Estimator
    calibrator: Calibrator | None
    report: dict[str, Any]
    calibrated_report: dict[str, Any] | None
    predictions: pd.DataFrame
    summary: dict[str, Any]
    calibration: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """A computed, unrecorded training run: everything :func:`record_run` writes.

    ``config`` is pinned (dataset and split as ``name@vN``: its hash is the run's
    identity); ``params`` are the model's resolved parameters; ``inputs`` the input view
    (``"oof_probabilities"`` for a stack); ``data`` the audit of what was read
    (``LabeledData.audit``); ``model`` the final fitted estimator and ``calibrator`` its
    calibrator (None when calibration chose none); ``report`` the uncalibrated metrics
    (OOF, or on val for a holdout run) and ``calibrated_report`` the cross-fitted
    calibrated ones (OOF runs only); ``predictions`` the per-window table; ``summary``
    the folds and the training loops; ``calibration`` how calibration was chosen;
    ``timings`` seconds spent (``load_s``, ``compute_s``).
    """

    run_id: str
    config: TrainConfig
    params: dict[str, Any]
    mode: Literal["oof", "holdout"]
    inputs: str
    data: dict[str, Any]
    classes: tuple[str, ...]
    model: Estimator
    calibrator: Calibrator | None
    report: dict[str, Any]
    calibrated_report: dict[str, Any] | None
    predictions: pd.DataFrame
    summary: dict[str, Any]
    calibration: dict[str, Any]
    timings: dict[str, float]
    task: str = "classification"
    targets: tuple[dict[str, Any], ...] = ()

    @property
    def dataset(self) -> DatasetRef:
        """The labeled dataset version the run read."""
        return DatasetRef(**self.data["dataset"])

    @property
    def split(self) -> str:
        """The split version the run used, ``name@vN``."""
        return f"{self.data['split']['name']}@v{self.data['split']['version']}"

    @property
    def metrics(self) -> dict[str, float | None]:
        """Headline scalars: calibrated when a calibrated report exists (what a study
        ranks trials by and the results line records)."""
        return flat_metrics(self.calibrated_report or self.report)


@dataclass(frozen=True)
class TrainResult:
    """What a run produced: where it lives and what it measured."""

    run_id: str
    run_dir: Path
    mode: str
    report: dict[str, Any]
    calibrated_report: dict[str, Any] | None
    manifest: dict[str, Any]


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries a result depends on (None when not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def flat_metrics(report: dict[str, Any]) -> dict[str, float | None]:
    """Headline scalars of a metrics report, plus minority-class F1 and recall (a
    regression report: its five metrics; a multi-task one: ``<head>.<metric>``)."""
    if report.get("task") in ("regression", "multitask"):
        return flat_regression_metrics(report)
    flat = {key: report["metrics"].get(key) for key in HEADLINE}
    minority = report["per_class"][0]
    flat["minority_f1"] = minority["f1"]
    flat["minority_recall"] = minority["recall"]
    return flat


def pinned_config(config: TrainConfig, data: LabeledData) -> TrainConfig:
    """``config`` with its dataset, split and synthetic references pinned to ``name@vN``:
    the versions ``data`` was loaded from.

    The run's config hash is computed from this, so ``pat`` and ``pat@v1`` (the same
    data) give one hash and two versions of ``pat`` give two.
    """
    split = data.audit["split"]
    update = {"dataset": data.ref.pinned, "split": f"{split['name']}@v{split['version']}"}
    synthetic = data.audit.get("synthetic")
    if synthetic is not None:
        update["synthetic"] = DatasetRef(**synthetic["dataset"]).pinned
    return config.model_copy(update=update)


def resolved_params(config: TrainConfig) -> dict[str, Any]:
    """The model's parameters as the run will use them (seed and input-implied ones
    filled in), checked before any work: an unknown or retired model, an unknown
    parameter, a value its ``Params`` model refuses or an overridden fixed one raises
    ``ConfigError`` here (``moola.models.validate_params``), not in a fold.

    They are returned as given, not completed with defaults, so manifests record what
    the run was asked for.
    """
    card = require_active(config.model)
    params = model_params(config.model, {_seed_parameter(card): config.seed, **config.params})
    validate_params(config.model, params)
    return params


@dataclass(frozen=True)
class _NewEstimator:
    """A fresh estimator of ``model`` with ``params`` and ``callbacks`` per call; a
    top-level class so a fold executor can send it to another process.

    There the callbacks are copies: a progress display in this process does not see
    folds fitted elsewhere (``fold`` events still arrive here, in order)."""

    model: str
    params: dict[str, Any]
    callbacks: tuple[Any, ...] = ()
    features: tuple[tuple[str, ...], dict[str, str], str] | None = None
    """For feature windows: (table columns, their scaling methods, the model's view);
    the estimator is then wrapped to fit its scaler on its own training windows."""
    symbols: tuple[str, ...] = ()
    """Symbols a feature-window model embeds (its ``n_symbols``), sorted: id = index."""

    def __call__(self) -> Estimator:
        estimator = create(self.model, **self.params)
        if self.features is not None:
            columns, methods, view = self.features
            estimator = ScaledWindowModel(
                estimator,
                columns,
                methods,
                view,  # type: ignore[arg-type]
                self.symbols,
            )
        return estimator.with_callbacks(*self.callbacks)


@dataclass(frozen=True)
class _Resumable:
    """Where a run's checkpoints go (``folder``; None: nowhere) and the identity they are
    checked against (the pinned config's hash)."""

    folder: Path | None
    config_hash: str

    def folds(self) -> FoldStore | None:
        """The store of finished folds of an out-of-fold run."""
        if self.folder is None:
            return None
        return FoldStore(self.folder / "folds", config_hash=self.config_hash)

    def fit(self, estimator: Estimator, name: str) -> Estimator:
        """``estimator`` saving every epoch under ``name`` and resuming from the last one
        saved there (estimators trained epoch by epoch; others as they are)."""
        if self.folder is None:
            return estimator
        return resume_or_checkpoint(
            estimator, self.folder / name, config_hash=f"{self.config_hash}:{name}"
        )


def fit_and_score(
    config: TrainConfig,
    data: LabeledData,
    *,
    registry: Registry | None = None,
    on_event: EventSink = lambda *_: None,
    callbacks: Sequence[Any] = (),
    executor: FoldExecutor | None = None,
    run_id: str | None = None,
    checkpoints: Path | None = None,
) -> Outcome:
    """Fit, calibrate and score ``config``'s model on loaded ``data``; write nothing
    (but checkpoints, when asked).

    ``data`` is ``Registry.load_labeled`` of the config's dataset and split (with its
    synthetic set, if any). ``registry`` is only read: a stack (``base_runs``) reads its
    base runs' OOF predictions through it. ``on_event`` receives ``status`` first, then
    one ``fold`` event per fold in fold order. ``callbacks``
    (``moola.training.callbacks.Callback``) observe every fit of an estimator trained
    epoch by epoch: each fold's, then the final one. ``executor``
    (``moola.training.oof.FoldExecutor``, serial by default) runs an OOF run's folds; the
    outcome does not depend on it. :func:`record_run` writes the outcome.

    ``checkpoints`` (a folder, ``RunStore.start_checkpoints``) makes the work resumable:
    each finished fold is kept there and every epoch of a neural fit saves its full state;
    called again with the same folder and ``run_id``, finished folds are loaded and the
    fit in progress continues from its last epoch, ending with the weights an
    uninterrupted run has (on the CPU).
    """
    started = time.perf_counter()
    params = resolved_params(config)
    split = _checked_split(config, data)
    config = pinned_config(config, data)
    card = model_card(config.model)
    run_id = run_id or new_run_id(config.model)
    resumable = _Resumable(checkpoints, sha256_json(config.model_dump(mode="json")))
    mode: Literal["oof", "holdout"] = "oof" if split.folds else "holdout"
    if mode == "oof" and config.synthetic is not None:
        raise ConfigError(
            "Synthetic sets can be mixed into a train/val/test split only (forward "
            "chaining); out-of-fold runs over folds do not support them yet."
        )
    on_event(
        "status",
        {
            "run_id": run_id,
            "model": config.model,
            "params": params,
            "data": str(data.ref),
            "split": f"{data.audit['split']['name']}@v{data.audit['split']['version']}",
            "strategy": split.strategy,
            "counts": data.audit["split"]["counts"],
            "synthetic": data.audit.get("synthetic"),
            "train_synthetic_ratio": data.audit["train_synthetic_ratio"],
            "blacklisted": data.audit.get("blacklist", {}).get("excluded", 0),
            "calibration": config.calibration,
            "seed": config.seed,
        },
    )

    if card.input_kind == "probabilities":
        if registry is None:
            raise ConfigError(
                f"Model {config.model!r} learns from its base runs' stored OOF predictions; "
                "pass registry= to read them."
            )
        X_all, view = _stacked_inputs(registry, config, data), "oof_probabilities"
        # Windows a base run has no out-of-fold prediction for (a walk-forward split's
        # first block) cannot be stacked: they leave every part of the stack's split.
        # A fold left with no training window (the stack's first walk-forward block) is
        # dropped: its windows get no stacked prediction.
        uncovered = np.flatnonzero(~np.isfinite(X_all).all(axis=1))
        if uncovered.size:
            split = exclude_from_split(split, uncovered)
            if split.folds:
                folds = [fold for fold in split.folds if fold.train and fold.test]
                if not folds:
                    raise ConfigError(
                        f"No fold of {config.split} has windows every base run predicted out "
                        "of fold in both its train and test parts; stack runs trained on a "
                        "split with more folds.",
                        param="base_runs",
                    )
                split = split.model_copy(update={"folds": folds})
            data = replace(data, split=split)
        features = None
    elif isinstance(data.X, WindowSubsets):
        X_all, view, features = data.X, *_feature_view(config, data, card)
        params = _symbol_params(config, data, params)
    else:
        X_all, view = model_inputs(config.inputs, config.model, data.X)
        features = None

    task = str(data.audit.get("task") or "classification")
    if task != "classification":
        params = _value_task_params(config, data, view, features, params)
    make_estimator = _NewEstimator(
        config.model, params, tuple(callbacks), features, _embedded(params, data)
    )
    if task != "classification":
        model, report, predictions, summary = fit_values(
            data,
            X_all,
            make_estimator,
            resumable=resumable.fit,
            mode=mode,
            n_bootstrap=config.n_bootstrap,
            seed=config.seed,
            on_event=on_event,
        )
        uncalibrated = {"requested": config.calibration, "method": "none", "why": "not classes"}
        fitted = _Fitted(model, None, report, None, predictions, summary, uncalibrated)
    elif mode == "oof":
        fitted = _run_oof(config, data, X_all, make_estimator, on_event, executor, resumable)
    else:
        fitted = _run_holdout(config, data, X_all, make_estimator, on_event, resumable)
    return Outcome(
        run_id=run_id,
        config=config,
        params=params,
        mode=mode,
        inputs=view,
        data=data.audit,
        classes=tuple(data.classes),
        model=fitted.model,
        calibrator=fitted.calibrator,
        report=fitted.report,
        calibrated_report=fitted.calibrated_report,
        predictions=fitted.predictions,
        summary=fitted.summary,
        calibration=fitted.calibration,
        timings={"load_s": 0.0, "compute_s": time.perf_counter() - started},
        task=task,
        targets=tuple(data.audit.get("targets") or ()),
    )


def _value_task_params(
    config: TrainConfig,
    data: LabeledData,
    view: str,
    features: Any,
    params: dict[str, Any],
) -> dict[str, Any]:
    """The parameters of a regression or multi-task run (``moola.pipeline.forecast``):
    its task (and heads) from the data; feature windows only, and no calibration (a class
    head keeps its probabilities as the model gives them)."""
    if features is None:
        raise ConfigError(
            f"Model {config.model!r} reads {view}; regression and multi-task targets are "
            "trained on feature windows only.",
            param="model",
        )
    if config.calibration not in ("auto", "none"):
        raise ConfigError(
            f"calibration={config.calibration!r} calibrates class probabilities; "
            f"{data.ref} has {data.audit['task']} targets. Leave calibration at 'auto'.",
            param="calibration",
        )
    params = task_params(data, params)
    validate_params(config.model, params)
    return params


def record_run(
    registry: Registry,
    outcome: Outcome,
    *,
    on_event: EventSink = lambda *_: None,
    study: Mapping[str, Any] | None = None,
    repeat_of: str | None = None,
) -> TrainResult:
    """Write ``outcome``: its predictions as a dataset of the registry (parent: the
    labeled dataset), its run folder (manifest, ``model.bin``, ``calibrator.json``,
    plots) written in one piece, then its line in ``experiment_results.jsonl``; then the
    ``results`` event.

    ``study`` (``{"name", "trial", "params"}``) marks a tuning study's trial
    (``moola.tune``): the manifest keeps it as ``study`` and the results line carries
    ``study`` (the name) and ``trial`` (the number).

    ``repeat_of`` marks one seed of a seed repeat (:func:`run_seed_repeats`): the id the
    repeat's runs share, kept in the manifest and the results line beside the run's seed.

    The manifest records ``window`` (bars per window and their columns, from the labeled
    dataset's meta) so a Predictor can be rebuilt from the run alone; a stack, whose
    inputs are other runs' probabilities, has none.
    """
    started = time.perf_counter()
    config, params, mode, run_id = outcome.config, outcome.params, outcome.mode, outcome.run_id
    window = None if outcome.inputs == "oof_probabilities" else _window(registry, outcome)
    files: dict[str, bytes | str] = {"model.bin": _saved_bytes(outcome.model)}
    if outcome.calibrator is not None:
        files["calibrator.json"] = save_calibrator(outcome.calibrator)  # parameters, no pickle
    scaling = _scaling(outcome.model)
    if scaling is not None:  # applied before the model, at training and at inference
        files[SCALER_FILE] = canonical_json(scaling)
    if outcome.task == "classification":
        files.update(_plots(outcome.report, outcome.predictions, outcome.classes, outcome.summary))
    else:
        files.update(values_plots(outcome.report, outcome.predictions))

    predictions_ref = registry.write_table(
        "predictions",
        run_id,
        outcome.predictions,
        parents=[outcome.dataset],
        meta={"run_id": run_id, "mode": mode, "classes": list(outcome.classes)},
        transformations=[{"name": "train", "params": {"model": config.model, **params}}],
    )
    wall_time_s = sum(outcome.timings.values()) + time.perf_counter() - started
    manifest: dict[str, Any] = {
        "kind": "train",
        "mode": mode,
        "config": config.model_dump(mode="json"),
        "config_hash": sha256_json(config.model_dump(mode="json")),
        "resolved_params": params,
        "inputs": outcome.inputs,
        **({"window": window} if window is not None else {}),
        "task": outcome.task,
        **({"targets": list(outcome.targets)} if outcome.targets else {}),
        "scaling": scaling,
        "seed": config.seed,
        "data": outcome.data,
        "predictions": predictions_ref.to_dict(),
        "metrics": outcome.report,
        "calibrated_metrics": outcome.calibrated_report,
        "calibration": outcome.calibration,
        "training": outcome.summary,
        "libraries": library_versions(),
        "threads": thread_settings(),
        "test_evaluated": False,
        "wall_time_s": round(wall_time_s, 3),
        **({"study": dict(study)} if study is not None else {}),
        **({"repeat_of": repeat_of} if repeat_of is not None else {}),
    }
    store = RunStore(registry.root)
    run_dir = store.write_run(run_id, manifest, files)
    headline = outcome.metrics
    store.append_result(
        {
            "run_id": run_id,
            "kind": "train",
            "mode": mode,
            "task": outcome.task,
            "model": config.model,
            "dataset": str(outcome.dataset),
            "split": outcome.split,
            "config_hash": manifest["config_hash"],
            "seed": config.seed,
            "metrics": headline,
            "uncalibrated": flat_metrics(outcome.report),
            "wall_time_s": manifest["wall_time_s"],
            **({"study": study["name"], "trial": study["trial"]} if study is not None else {}),
            **({"repeat_of": repeat_of} if repeat_of is not None else {}),
        }
    )
    on_event(
        "results",
        {
            "run_id": run_id,
            "mode": mode,
            "metrics": headline,
            "uncalibrated": flat_metrics(outcome.report),
            "run_dir": str(run_dir),
        },
    )
    return TrainResult(run_id, run_dir, mode, outcome.report, outcome.calibrated_report, manifest)


def run_training(
    registry: Registry,
    config: TrainConfig | None,
    *,
    on_event: EventSink = lambda *_: None,
    callbacks: Sequence[Any] = (),
    executor: FoldExecutor | None = None,
    resume: str | None = None,
) -> TrainResult:
    """Train, evaluate and record one run (see the module docstring): load the data,
    :func:`fit_and_score`, :func:`record_run`.

    The model and its parameters are checked before the data is read. ``callbacks``
    (``moola.training.callbacks.Callback``) observe every fit of an estimator trained
    epoch by epoch: each fold's, then the final one (a progress display). ``executor``
    runs the folds of an OOF run (serial by default).

    A run keeps checkpoints under ``artifacts/checkpoints/<run_id>/`` while it works
    (its pinned config, finished folds, each neural fit's last epoch) and removes them
    once it is recorded. ``resume=RUN_ID`` continues an interrupted run from them with
    the config it was started with (``config`` is then ignored and may be None): same
    run id, same data versions, and on the CPU the weights and predictions an
    uninterrupted run gives.
    """
    started = time.perf_counter()
    store = RunStore(registry.root)
    run_id: str | None = None
    if resume is not None:
        _, stored = store.interrupted_config(resume)
        config, run_id = TrainConfig.model_validate(stored), resume
    if config is None:
        raise ConfigError("Give the run's config, or resume= an interrupted run.", param="config")
    resolved_params(config)
    data = load_training_data(registry, config)
    load_s = time.perf_counter() - started
    pinned = pinned_config(config, data)
    # Under torchrun (moola train --nproc N) every rank trains; rank 0 alone starts the
    # checkpoints and records the run, the others share its run id and folder.
    main = distributed.is_main_process()
    run_id = distributed.broadcast_object(run_id or new_run_id(config.model))
    folder = store.start_checkpoints(run_id, pinned.model_dump(mode="json")) if main else None
    folder = distributed.broadcast_object(folder)
    if main:
        on_event("checkpoints", {"run_id": run_id, "folder": str(folder)})
    outcome = fit_and_score(
        config,
        data,
        registry=registry,
        on_event=on_event,
        callbacks=callbacks,
        executor=executor,
        run_id=run_id,
        checkpoints=folder,
    )
    distributed.barrier()  # every rank has written its (identical) checkpoints
    if not main:
        return distributed.broadcast_object(None)  # the run rank 0 records
    outcome = replace(outcome, timings={**outcome.timings, "load_s": load_s})
    result = record_run(registry, outcome, on_event=on_event)
    store.discard_checkpoints(run_id)
    return distributed.broadcast_object(result)


# -- seed repeats --------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedTask:
    """One seed of a seed repeat, in values that pickle (so any executor's worker can run
    it): the data root, the run's config as a mapping (data versions pinned, its seed
    set) and the run id it will be recorded under."""

    root: str
    config: Mapping[str, Any]
    run_id: str


def fit_seed(task: SeedTask) -> Outcome:
    """Compute one seed's run where this is called, recording nothing: the worker's half
    of :func:`run_seed_repeats` (as a study's trial with ``record=False``: the computed
    run, its model included, travels back to the driver, which records it)."""
    registry = Registry(task.root)
    config = TrainConfig.model_validate(dict(task.config))
    data = load_training_data(registry, config)
    return fit_and_score(config, data, registry=registry, run_id=task.run_id)


@dataclass(frozen=True)
class SeedRepeats:
    """A seed repeat: the same config trained once per seed.

    ``repeat_id`` is recorded as ``repeat_of`` in every run's manifest and results line;
    ``runs`` are the recorded runs in ``seeds`` order; ``values`` each headline metric's
    value per seed (None where a run has none); ``summary`` each metric's ``mean``,
    ``std`` (sample standard deviation, ``ddof=1``; None for a single seed), ``min``,
    ``max`` and ``n`` (seeds with a value), over the seeds that have one.
    """

    repeat_id: str
    seeds: tuple[int, ...]
    runs: tuple[TrainResult, ...]
    values: dict[str, list[float | None]]
    summary: dict[str, dict[str, float | int | None]]


def seed_summary(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation (``ddof=1``), min and max of one metric over the
    seeds, and ``n``, the seeds it was measured for (missing values are left out; no
    value at all gives None for each)."""
    present = np.array([v for v in values if v is not None], dtype=float)
    if present.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": float(present.mean()),
        "std": float(present.std(ddof=1)) if present.size > 1 else None,
        "min": float(present.min()),
        "max": float(present.max()),
        "n": int(present.size),
    }


def run_seed_repeats(
    registry: Registry,
    config: TrainConfig,
    seeds: Sequence[int],
    *,
    executor: FoldExecutor | None = None,
    on_event: EventSink = lambda *_: None,
) -> SeedRepeats:
    """Train ``config`` once per seed, record each as an ordinary run, and summarise.

    The config is checked and its data versions pinned here, before any seed runs, so
    every seed reads the same data. ``executor`` (a ``FoldExecutor``: serial, a process
    pool or Ray tasks; serial by default) runs :func:`fit_seed` per seed; this process
    (the driver) records the runs as they come back, in seed order, so the workers need
    no access to the data root's writes and the result does not depend on the backend
    (each run is seeded by its own seed only). Events: ``seed`` after each recorded run
    (``seed``, ``run_id``, ``metrics``), then ``repeats`` (the summary).

    A seed given twice, or no seed, raises ``ConfigError`` before anything is written.
    """
    seeds = tuple(int(seed) for seed in seeds)
    if not seeds:
        raise ConfigError("A seed repeat needs at least one seed.", param="seeds")
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ConfigError(
            f"Seed {', '.join(map(str, repeated))} is given more than once; each seed "
            "trains one run.",
            param="seeds",
        )
    resolved_params(config)
    pinned = pinned_config(config, load_training_data(registry, config))
    repeat_id = new_run_id(f"{config.model}-repeat")
    tasks = [
        SeedTask(
            str(registry.root),
            pinned.model_copy(update={"seed": seed}).model_dump(mode="json"),
            new_run_id(f"{config.model}-seed{seed}"),
        )
        for seed in seeds
    ]
    runs: list[TrainResult] = []
    values: dict[str, list[float | None]] = {}
    for seed, outcome in zip(
        seeds, (executor or SerialExecutor()).map(fit_seed, tasks), strict=True
    ):
        result = record_run(registry, outcome, repeat_of=repeat_id)
        runs.append(result)
        for key, value in outcome.metrics.items():
            values.setdefault(key, [None] * (len(runs) - 1)).append(value)
        for column in values.values():  # a metric this run lacks
            column.extend([None] * (len(runs) - len(column)))
        on_event("seed", {"seed": seed, "run_id": result.run_id, "metrics": outcome.metrics})
    summary = {key: seed_summary(column) for key, column in values.items()}
    on_event("repeats", {"repeat_id": repeat_id, "seeds": list(seeds), "summary": summary})
    return SeedRepeats(repeat_id, seeds, tuple(runs), values, summary)


def load_training_data(registry: Registry, config: TrainConfig) -> LabeledData:
    """The data ``config`` trains on: its labeled dataset cut by its split (with its
    synthetic set), or, for a feature-windows dataset, the lazy windows of
    ``moola.pipeline.feature_inputs.load_feature_training_data``."""
    if is_feature_windows(registry, config.dataset):
        if config.synthetic is not None:
            raise ConfigError(
                f"{config.dataset} holds feature windows; synthetic sets are OHLC windows and "
                "cannot be mixed into them.",
                param="synthetic",
            )
        return load_feature_training_data(
            registry, config.dataset, config.split, symbols=config.symbols
        )
    if config.symbols:
        raise ConfigError(
            f"{config.dataset} holds windows of raw bars; choosing symbols applies to feature "
            "windows. Build one windows dataset per symbol instead.",
            param="symbols",
        )
    return registry.load_labeled(
        *parse_ref(config.dataset),
        split=config.split,
        synthetic=config.synthetic,
        allow_low_quality_synthetic=config.allow_low_quality_synthetic,
    )


def _feature_view(
    config: TrainConfig, data: LabeledData, card: ModelCard
) -> tuple[str, tuple[tuple[str, ...], dict[str, str], str]]:
    """The view a model takes of feature windows and what its wrapper needs: sequence
    models read whole windows, tabular models the last row (the decision bar)."""
    if config.inputs != "auto":
        raise ConfigError(
            f"{data.ref} holds feature windows: a model reads its feature set's columns, so "
            f"inputs={config.inputs!r} does not apply; leave inputs at 'auto'.",
            param="inputs",
        )
    if card.packed_features:
        raise ConfigError(
            f"Model {config.model!r} packs its own price-action features beside OHLC windows; "
            f"{data.ref} holds feature windows. Use bilstm, transformer, cnn_lstm_attention, "
            "simple_lstm or a tabular model.",
            param="model",
        )
    view = "features_last_row" if card.input_kind == "tabular" else "features"
    columns = tuple(data.audit["columns"])
    return view, (columns, dict(data.audit["scaling"]), view)


def _symbol_params(
    config: TrainConfig, data: LabeledData, params: dict[str, Any]
) -> dict[str, Any]:
    """``params`` with ``n_symbols``: a sequence model that can embed symbols does, by
    default, when the feature windows hold several (``n_symbols=0`` turns it off; another
    count than the dataset's is refused)."""
    symbols = data.audit.get("symbols") or []
    if "n_symbols" not in params_model(config.model).model_fields:
        return params
    given = params.get("n_symbols")
    if given is None:
        return {**params, "n_symbols": len(symbols) if len(symbols) > 1 else 0}
    if given not in (0, len(symbols)):
        raise ConfigError(
            f"n_symbols={given!r}, but {data.ref} holds {len(symbols)} symbols {symbols}; "
            f"leave it out (embed them), or give 0 (do not).",
            param="params",
        )
    return params


def _embedded(params: dict[str, Any], data: LabeledData) -> tuple[str, ...]:
    """The symbols a model with these ``params`` embeds (none unless ``n_symbols``)."""
    return tuple(data.audit.get("symbols") or ()) if params.get("n_symbols") else ()


def _checked_split(config: TrainConfig, data: LabeledData) -> Any:
    """``data``'s split, once ``data`` is shown to be the dataset and split ``config``
    names (pinning would otherwise record other data under the config's words)."""
    loaded = {"dataset": (data.ref.name, data.ref.version)}
    record = data.audit.get("split")
    if data.split is None or record is None:
        raise ConfigError(
            f"{data.ref} was loaded without a split; load it with split={config.split!r}."
        )
    loaded["split"] = (record["name"], int(record["version"]))
    for key in ("dataset", "split"):
        name, version = parse_ref(getattr(config, key))
        if name != loaded[key][0] or version not in (None, loaded[key][1]):
            raise ConfigError(
                f"config.{key} is {getattr(config, key)!r} but the data was loaded from "
                f"{loaded[key][0]}@v{loaded[key][1]}; load the data the config names."
            )
    return data.split


def _window(registry: Registry, outcome: Outcome) -> dict[str, Any]:
    """``{"length", "columns"}`` of the raw windows the run's model reads, from the meta
    of the labeled dataset version it trained on (which must still be that version)."""
    ref = outcome.dataset
    stored = registry.resolve(ref.kind, ref.name, ref.version)
    if stored.content_hash != ref.content_hash:
        raise IntegrityError(
            f"Run {outcome.run_id} trained on {ref} with content hash {ref.content_hash}, "
            f"but the stored {stored} has {stored.content_hash}; nothing was written."
        )
    meta = registry.meta(stored)
    window = {"length": int(meta["length"]), "columns": [str(c) for c in meta["columns"]]}
    if "features" in meta:  # feature windows: the table's columns, computed by this set
        recorded = meta["features"]
        window["features"] = f"{recorded['name']}@v{recorded['version']}"
        window["feature_set"] = meta.get("feature_set")
        features = registry.resolve("features", recorded["name"], recorded["version"])
        window["feature_spec"] = registry.meta(features).get("feature_set")
    return window


def _scaling(model: Estimator) -> dict[str, Any] | None:
    """The fitted scaler of a model trained on feature windows, as stored (else None)."""
    scaler = getattr(model, "scaler_", None) if isinstance(model, ScaledWindowModel) else None
    return None if scaler is None else scaler.to_dict()


def _run_oof(
    config: TrainConfig,
    data: LabeledData,
    X_all: np.ndarray,
    make_estimator: Callable[[], Estimator],
    on_event: EventSink,
    executor: FoldExecutor | None,
    resumable: _Resumable,
) -> _Fitted:
    """Out-of-fold predictions, cross-fitted calibration, and a final model on all."""
    split = data.split
    result = out_of_fold(
        make_estimator,
        X_all,
        data.y,
        split,
        classes=list(data.classes),
        seed=config.seed,
        on_fold_end=lambda fold, _estimator: on_event("fold", _fold_event(fold)),
        executor=executor,
        store=resumable.folds(),
    )
    covered = np.asarray(result.covered)
    oof = np.asarray(result.oof_proba)
    y = data.y
    report = classification_report(
        y[covered],
        oof[covered],
        classes=data.classes,
        n_bootstrap=config.n_bootstrap,
        seed=config.seed,
    )
    calibrated_report = None
    calibrated_oof = None
    calibrator: Calibrator | None = None
    method, calibration = _chosen_method(config, report, data, oof, y, _fold_groups(split, covered))
    if method != "none":
        calibrated_oof = _cross_fitted_calibration(method, oof, y, split, covered)
        calibrated_report = classification_report(
            y[covered],
            calibrated_oof[covered],
            classes=data.classes,
            n_bootstrap=config.n_bootstrap,
            seed=config.seed,
        )
        calibrator = calibrate(method, oof[covered], y[covered], origin="oof")
    idx = np.flatnonzero(covered)
    final = resumable.fit(make_estimator(), "final").fit(X_all[idx], y[idx])
    predictions = _predictions_table(data, oof, calibrated_oof, covered, "oof")
    summary = {
        "folds": len(split.folds),
        "covered": int(covered.sum()),
        "fold_metrics": result.fold_metrics,
        "final_fit_samples": len(idx),
        "training": training_summary(final),
    }
    return _Fitted(final, calibrator, report, calibrated_report, predictions, summary, calibration)


def _fold_groups(split: Any, covered: np.ndarray) -> list[np.ndarray]:
    """The covered samples of each fold's test part (disjoint, together all covered)."""
    groups = []
    for fold in split.folds:
        test = np.asarray(fold.test, dtype=np.int64)
        test = test[covered[test]]
        if len(test):
            groups.append(test)
    return groups


def _chosen_method(
    config: TrainConfig,
    report: dict[str, Any],
    data: LabeledData,
    proba: np.ndarray,
    y: np.ndarray,
    groups: list[np.ndarray],
) -> tuple[str, dict[str, Any]]:
    """The calibration method to use and the record of how it was chosen."""
    if config.calibration != "auto":
        return config.calibration, {"requested": config.calibration, "method": config.calibration}
    minority = report["minority"]
    intervals = report.get("intervals") or {}
    per_class = (intervals.get("per_class") or {}).get(minority) or {}
    floors = {
        "minority_f1": (per_class.get("f1") or {}).get("low", report["per_class"][0]["f1"]),
        "balanced_accuracy": (intervals.get("balanced_accuracy") or {}).get(
            "low", report["metrics"]["balanced_accuracy"]
        ),
    }
    choice, _ = choose_calibration(
        proba, y, groups, minority=data.classes.index(minority), floors=floors
    )
    return choice.method, {
        "requested": "auto",
        "minority": minority,
        "floors": floors,
        **choice.to_dict(),
    }


def _run_holdout(
    config: TrainConfig,
    data: LabeledData,
    X_all: np.ndarray,
    make_estimator: Callable[[], Estimator],
    on_event: EventSink,
    resumable: _Resumable,
) -> _Fitted:
    """Fit on train (early stopping on val), calibrate on val, report on val."""
    train, val = data.train, data.val
    X_train = _view_of_part(X_all, train, data, config)
    X_val = X_all[val.indices]
    estimator = resumable.fit(make_estimator(), "holdout")
    estimator = estimator.fit(X_train, train.y, X_val=X_val, y_val=val.y)
    proba_val = estimator.predict_proba(X_val)
    report = classification_report(
        val.y,
        proba_val,
        classes=data.classes,
        n_bootstrap=config.n_bootstrap,
        seed=config.seed,
    )
    calibrator = None
    calibrated_report = None
    blocks = contiguous_blocks(np.arange(len(val.y)))
    method, calibration = _chosen_method(config, report, data, proba_val, val.y, blocks)
    if method != "none":
        calibrator = calibrate(method, proba_val, val.y, origin="validation")
        calibrated_report = None  # fitted on val: scoring it on val would flatter it
    n = len(data.y)
    proba = np.full((n, len(data.classes)), np.nan)
    proba[val.indices] = proba_val
    covered = np.zeros(n, dtype=bool)
    covered[val.indices] = True
    predictions = _predictions_table(data, proba, None, covered, "val")
    summary = {
        "train_samples": len(train),
        "val_samples": len(val),
        "training": training_summary(estimator),
    }
    on_event("fold", {"fold": "holdout", "val_accuracy": report["metrics"]["accuracy"]})
    return _Fitted(
        estimator, calibrator, report, calibrated_report, predictions, summary, calibration
    )


def _view_of_part(
    X_all: np.ndarray, part: Any, data: LabeledData, config: TrainConfig
) -> np.ndarray:
    """Inputs of a part; synthetic train samples get the same input view as real ones."""
    real = part.indices >= 0
    if real.all():
        return X_all[part.indices]
    synthetic_view, _ = model_inputs(config.inputs, config.model, part.X[~real])
    out = np.empty((len(part.indices), *X_all.shape[1:]), dtype=X_all.dtype)
    out[real] = X_all[part.indices[real]]
    out[~real] = synthetic_view
    return out


def _cross_fitted_calibration(
    method: str, oof: np.ndarray, y: np.ndarray, split: Any, covered: np.ndarray
) -> np.ndarray:
    """Calibrate each fold's OOF predictions with a calibrator fitted on the other folds."""
    out = np.full_like(oof, np.nan)
    for fold in split.folds:
        test = np.asarray(fold.test, dtype=np.int64)
        test = test[covered[test]]
        others = np.flatnonzero(covered)
        others = np.setdiff1d(others, test)
        if len(test) == 0:
            continue
        if len(np.unique(y[others])) < 2:
            out[test] = oof[test]
            continue
        out[test] = calibrate(method, oof[others], y[others], origin="oof").transform(oof[test])
    return out


def _predictions_table(
    data: LabeledData,
    proba: np.ndarray,
    calibrated: np.ndarray | None,
    covered: np.ndarray,
    kind: str,
) -> pd.DataFrame:
    table = prediction_frame(data, covered, kind, label=data.y)
    for k, name in enumerate(data.classes):
        table[f"p_{name}"] = proba[:, k]
        if calibrated is not None:
            table[f"p_cal_{name}"] = calibrated[:, k]
    return table


def _stacked_inputs(registry: Registry, config: TrainConfig, data: LabeledData) -> np.ndarray:
    """Concatenate base runs' OOF probabilities (the only inputs a stack may see)."""
    if not config.base_runs:
        raise ConfigError(
            "The stack model needs base_runs: runs whose OOF predictions it "
            "learns from (train them first with a folds split)."
        )
    blocks = []
    for run in config.base_runs:
        table = registry.load_table("predictions", run)
        meta = registry.meta(registry.resolve("predictions", run))
        if meta["mode"] != "oof":
            raise LeakageError(
                f"Run {run} has {meta['mode']} predictions; a stack trains only on "
                "out-of-fold predictions. Retrain the base model on a folds split."
            )
        if len(table) != len(data.y):
            raise ConfigError(
                f"Run {run} predicted {len(table)} windows; {data.ref} has "
                f"{len(data.y)}. Base runs must use the same dataset."
            )
        blocks.append(table[[f"p_{c}" for c in data.classes]].to_numpy(np.float64))
    return np.hstack(blocks)


def _plots(
    report: dict[str, Any],
    predictions: pd.DataFrame,
    classes: tuple[str, ...],
    summary: dict[str, Any],
) -> dict[str, bytes]:
    from moola.evaluation import plots

    covered = predictions["covered"].to_numpy()
    y = predictions["label"].to_numpy()[covered]
    proba = predictions[[f"p_{c}" for c in classes]].to_numpy()[covered]
    out = {
        "reliability.png": plots.reliability_png(y, proba),
        "confusion.png": plots.confusion_png(np.asarray(report["confusion_matrix"]), classes),
        "pr_curve.png": plots.pr_curve_png(y, proba, positive=classes.index(report["minority"])),
    }
    history = summary.get("training") or {}
    if history.get("train_loss_history"):
        out["learning_curve.png"] = plots.learning_curve_png(
            history["train_loss_history"],
            history.get("val_loss_history") or None,
            best_epoch=history.get("best_epoch"),
        )
    return out


def _fold_event(fold: Any) -> dict[str, Any]:
    metrics = (fold.metrics or {}).get("metrics", {})
    return {
        "fold": fold.index,
        "train": fold.n_train,
        "test": fold.n_test,
        "accuracy": metrics.get("accuracy"),
        "fit_s": round(fold.fit_seconds, 2),
    }


def _seed_parameter(card: ModelCard) -> str:
    """Which constructor parameter seeds a model: the trainer's ``seed`` for neural models,
    scikit-learn's ``random_state`` for the others."""
    return "seed" if card.entry_point.startswith("moola.training") else "random_state"


def _saved_bytes(model: Estimator) -> bytes:
    """The bytes ``model.save`` writes (the run folder is then written in one piece)."""
    with tempfile.TemporaryDirectory(prefix="moola-run-") as tmp:
        path = Path(tmp) / "model.bin"
        model.save(path)
        return path.read_bytes()
