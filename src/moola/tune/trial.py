"""One trial of a study, as work any process can do: :class:`TrialPayload` in,
:class:`TrialOutcome` out, through :func:`evaluate_trial`.

The study's driver (``moola.tune.study``) is the only process that writes the Optuna
storage. It asks Optuna for a trial (ask-and-tell), turns the sampled parameters into a
payload, and hands it to an executor; whatever runs :func:`evaluate_trial` (this process,
a local process pool, a Ray worker) trains and records one ordinary run and returns an
outcome; the driver then reports the outcome's intermediate values and tells Optuna how
the trial ended. Payloads and outcomes are plain frozen dataclasses of JSON-like values,
an Optuna pruner and frozen trials: they pickle, so they cross processes and machines.

**Pruning where the trial runs.** A worker cannot ask the driver's storage whether to
stop, so the payload carries the study as the driver saw it when the trial started
(``history``: the earlier trials, with their intermediate values) and the pruner. The
worker rebuilds that study in memory under the same name, so the trial gets the same
number (a Hyperband pruner's bracket depends on both), reports each epoch's validation
loss to it and asks the pruner. Run sequentially, the history is the whole study, so the
decisions are those of a live study; run in parallel, a trial does not see the trials
that started after it (as with any parallel Optuna study, where they would not have
finished either).

**Intermediate values.** A supervised trial reports the monitored loss of every epoch of
every fit (the validation loss when the fit has validation data, else the training loss)
at step ``fit * epochs + epoch`` (fit counts the folds, then the final fit, from 0).
An RL trial reports the evaluation return at each periodic evaluation, at the
environment step it was taken. Values are signed so that better is the study's
direction: a loss is negated when the study maximises, a return when it minimises.
Models not trained epoch by epoch (scikit-learn ones) report nothing and are never pruned.

**What a pruned or failed trial leaves.** A supervised run is computed
(``moola.pipeline.train.fit_and_score``, which writes nothing) and recorded only once it
finished, so a pruned or failed trial leaves no run at all; its parameters, intermediate
values and error stay in the study. An RL trial's checkpoints are removed when it is
pruned or fails.

**Where runs are recorded.** ``record=True`` (the default): the worker records the run
under ``root`` (the same data root: this machine, or a file system the workers share).
``record=False`` (supervised trials only): the worker returns the computed run in
``TrialOutcome.unrecorded`` and the driver records it with :func:`record_outcome` (workers
without the data root's file system; the run's model travels back pickled).

**Executors.** :class:`TrialExecutor` is the seam: ``slots`` (how many trials may run at
once) and ``submit(fn, payload) -> concurrent.futures.Future``. :class:`SerialExecutor`
runs each trial in this process when it is submitted; :class:`ProcessExecutor` runs up
to ``n`` in local processes (spawned, one torch thread each). ``moola.tune.executors``
adds the Ray executor with the same two members.
"""

from __future__ import annotations

import math
import multiprocessing
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import optuna

    from moola.pipeline.train import Outcome

__all__ = [
    "ProcessExecutor",
    "SerialExecutor",
    "TrialExecutor",
    "TrialOutcome",
    "TrialPayload",
    "evaluate_trial",
    "record_outcome",
]

Direction = Literal["minimize", "maximize"]
TrialState = Literal["complete", "pruned", "failed"]
RunKind = Literal["train", "rl"]


@dataclass(frozen=True)
class TrialPayload:
    """Everything one trial needs, in values that pickle.

    ``root``: the data root the run reads and is recorded under. ``study``, ``number``:
    the study's name and this trial's number (recorded with the run). ``kind``: ``train``
    (``moola.pipeline.train.TrainConfig``) or ``rl`` (``moola.pipeline.rl.RLConfig``);
    ``config``: that config as a mapping with the trial's parameters already applied.
    ``params``: the trial's parameters by dotted key (recorded with the run). ``metric``
    and ``direction``: the objective (an out-of-fold or validation metric). ``pruner``:
    an ``optuna.pruners.BasePruner`` (None: never prune). ``history``: the study's earlier
    trials (``optuna.trial.FrozenTrial``, numbers 0..number-1) the pruner compares with.
    ``record``: record the run where the trial runs (see the module notes). ``lineage``:
    for a phase's trial, ``{"name": <phases name>, "phase": <1-based number>}``, recorded
    with the run so it leads back to ``artifacts/studies/<name>/phases.json``.
    """

    root: str
    study: str
    number: int
    kind: RunKind
    config: Mapping[str, Any]
    params: Mapping[str, Any]
    metric: str
    direction: Direction
    pruner: Any = None
    history: tuple[Any, ...] = ()
    record: bool = True
    lineage: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended: ``state`` (complete, pruned, failed), the objective ``value``
    (None unless complete), the run's headline ``metrics``, its ``run_id`` (None when no
    run was recorded), the ``intermediate`` values reported as ``(step, value)`` in order,
    ``error`` (the exception, for a failed trial) and ``seconds`` spent. ``unrecorded``:
    the computed run, when the payload asked the driver to record it. ``system_attrs``:
    what the pruner noted on the trial where it ran (successive halving's rungs), for the
    driver to keep in the study, where the next trials' pruners look for it."""

    number: int
    state: TrialState
    value: float | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    intermediate: tuple[tuple[int, float], ...] = ()
    error: str | None = None
    seconds: float = 0.0
    unrecorded: Any = None
    system_attrs: Mapping[str, Any] = field(default_factory=dict)


class TrialExecutor(Protocol):
    """Where trials run. ``slots``: how many trials the driver keeps in flight at once;
    ``submit(fn, payload)`` starts ``fn(payload)`` and returns a
    ``concurrent.futures.Future`` of its result. A future that raises (a worker process
    that died) makes that trial failed, never lost."""

    @property
    def slots(self) -> int:
        """How many trials may run at the same time."""
        ...

    def submit(
        self, fn: Callable[[TrialPayload], TrialOutcome], payload: TrialPayload, /
    ) -> Future[TrialOutcome]:
        """Start ``fn(payload)``; its future."""
        ...


class SerialExecutor:
    """One trial at a time, in this process: ``submit`` runs it before it returns (the
    default; with a seeded sampler, the same trials every time)."""

    slots = 1

    def submit(
        self, fn: Callable[[TrialPayload], TrialOutcome], payload: TrialPayload, /
    ) -> Future[TrialOutcome]:
        """Run ``fn(payload)`` now; an already finished future."""
        future: Future[TrialOutcome] = Future()
        try:
            future.set_result(fn(payload))
        except Exception as exc:  # the driver decides what a crash means
            future.set_exception(exc)
        return future

    def shutdown(self) -> None:
        """Nothing to release."""


class ProcessExecutor:
    """Up to ``n`` trials at once in local worker processes (spawned, so no state of this
    process is inherited; each worker limits torch to ``threads`` threads)."""

    def __init__(self, n: int, *, threads: int = 1) -> None:
        if n < 1:
            from moola.core.errors import ConfigError

            raise ConfigError(f"A process executor needs n >= 1 (got {n}).", param="n")
        self.n = n
        self.threads = threads
        self._pool: ProcessPoolExecutor | None = None

    @property
    def slots(self) -> int:
        """``n``."""
        return self.n

    def submit(
        self, fn: Callable[[TrialPayload], TrialOutcome], payload: TrialPayload, /
    ) -> Future[TrialOutcome]:
        """Start ``fn(payload)`` in a worker process."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.n,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_limit_threads,
                initargs=(self.threads,),
            )
        return self._pool.submit(fn, payload)

    def shutdown(self) -> None:
        """Wait for the workers and stop them."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def evaluate_trial(payload: TrialPayload) -> TrialOutcome:
    """Run one trial where this is called (see the module notes): train and score the
    run the payload describes on its out-of-fold or validation metric, report its
    intermediate values to the pruner, record it (or hand it back), and say how it ended.

    An error inside the run makes the trial failed, with the error in the outcome; it is
    not raised (a bad combination of parameters ends one trial, not the study).
    """
    started = time.perf_counter()
    reporter = _Reporter(payload)
    try:
        if payload.kind == "train":
            outcome = _train_trial(payload, reporter)
        else:
            outcome = _rl_trial(payload, reporter)
    except Exception as exc:
        import optuna

        state: TrialState = "pruned" if isinstance(exc, optuna.TrialPruned) else "failed"
        error = None if state == "pruned" else _describe(exc)
        outcome = TrialOutcome(payload.number, state, error=error)
    return replace(
        outcome,
        intermediate=tuple(reporter.reported),
        seconds=round(time.perf_counter() - started, 3),
        system_attrs=reporter.system_attrs(),
    )


def record_outcome(root: str | Path, payload: TrialPayload, outcome: TrialOutcome) -> TrialOutcome:
    """Record a trial's run that its worker computed but did not record
    (``payload.record=False``); the outcome with its ``run_id``, nothing to record left."""
    if outcome.unrecorded is None:
        return outcome
    from moola.data.registry import Registry
    from moola.pipeline.train import record_run

    result = record_run(Registry(root), outcome.unrecorded, study=_study_record(payload))
    return replace(outcome, run_id=result.run_id, unrecorded=None)


# -- supervised trials ---------------------------------------------------------------------


def _train_trial(payload: TrialPayload, reporter: _Reporter) -> TrialOutcome:
    from moola.data.registry import Registry
    from moola.pipeline.train import (
        TrainConfig,
        fit_and_score,
        flat_metrics,
        load_training_data,
        record_run,
        resolved_params,
    )
    from moola.tracking.runs import new_run_id

    registry = Registry(payload.root)
    config = TrainConfig.model_validate(dict(payload.config))
    resolved_params(config)  # a refused parameter fails the trial before the data is read
    data = load_training_data(registry, config)
    outcome: Outcome = fit_and_score(
        config,
        data,
        registry=registry,
        callbacks=(_PruningCallback(reporter),),
        run_id=new_run_id(f"{config.model}-{payload.study}-t{payload.number}"),
    )
    metrics = dict(outcome.metrics)
    uncalibrated = flat_metrics(outcome.report)
    metrics.update({f"uncalibrated.{key}": value for key, value in uncalibrated.items()})
    value = _objective(payload, metrics)
    if not payload.record:
        return TrialOutcome(payload.number, "complete", value, metrics, unrecorded=outcome)
    result = record_run(registry, outcome, study=_study_record(payload))
    return TrialOutcome(payload.number, "complete", value, metrics, run_id=result.run_id)


class _PruningCallback:
    """A training-loop callback (``moola.training.callbacks.Callback``'s hooks) that
    reports each epoch's monitored loss and raises ``optuna.TrialPruned`` when the pruner
    says so (returning True would only end this one fit). It has no ``on_step``, so the
    trainer does not read each step's loss for it."""

    def __init__(self, reporter: _Reporter) -> None:
        self.reporter = reporter
        self.fit = -1

    def on_train_start(self, state: Any) -> None:
        self.fit += 1

    def on_epoch_end(self, state: Any) -> bool:
        loss = state.monitored_loss
        if loss is None or not math.isfinite(loss):
            return False
        sign = 1.0 if self.reporter.payload.direction == "minimize" else -1.0
        self.reporter.report(self.fit * state.epochs + state.epoch, sign * float(loss))
        return False

    def on_train_end(self, state: Any) -> None:
        return None


# -- RL trials -----------------------------------------------------------------------------


def _rl_trial(payload: TrialPayload, reporter: _Reporter) -> TrialOutcome:
    from moola.data.registry import Registry
    from moola.pipeline.rl import RLConfig, train_rl
    from moola.tracking.runs import RunStore

    if not payload.record:
        from moola.core.errors import ConfigError

        raise ConfigError(
            "An RL trial records its run where it runs; give the workers the data root "
            "(record=True).",
            param="record",
        )
    registry = Registry(payload.root)
    config = RLConfig.model_validate(dict(payload.config))
    seen: dict[str, Any] = {}
    sign = 1.0 if payload.direction == "maximize" else -1.0

    def on_event(kind: str, event: dict[str, Any]) -> None:
        if kind == "status":
            seen["run_id"] = event["run_id"]
        elif kind == "evaluation" and event.get("return") is not None:
            reporter.report(int(event["step"]), sign * float(event["return"]))
        elif kind == "results":
            seen["metrics"] = dict(event["metrics"])

    try:
        result = train_rl(registry, config, on_event=on_event, study=_study_record(payload))
    except BaseException:
        if "run_id" in seen:  # pruned or failed: no half-trained run is left behind
            RunStore(registry.root).discard_checkpoints(seen["run_id"])
        raise
    metrics = seen.get("metrics", {})
    value = _objective(payload, metrics)
    return TrialOutcome(payload.number, "complete", value, metrics, run_id=result.run_id)


# -- shared --------------------------------------------------------------------------------


class _Reporter:
    """The trial's view of the study as the driver saw it when the trial started: it
    takes intermediate values and asks the pruner (see the module notes)."""

    def __init__(self, payload: TrialPayload) -> None:
        self.payload = payload
        self.reported: list[tuple[int, float]] = []
        self._trial: optuna.Trial | None = None

    def report(self, step: int, value: float) -> None:
        """Keep ``value`` at ``step``; raise ``optuna.TrialPruned`` when the trial should
        stop."""
        import optuna

        if self.reported and step <= self.reported[-1][0]:
            return  # a step reported once (a resumed fit) counts once
        self.reported.append((step, value))
        if self.payload.pruner is None:
            return
        trial = self._live_trial()
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} (value {value:.6g})")

    def system_attrs(self) -> dict[str, Any]:
        """What the pruner noted on this trial (empty when it never looked)."""
        if self._trial is None:
            return {}
        study = self._trial.study
        return dict(study._storage.get_trial(self._trial._trial_id).system_attrs)

    def _live_trial(self) -> optuna.Trial:
        if self._trial is None:
            import optuna

            verbosity = optuna.logging.get_verbosity()
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line
            try:
                study = optuna.create_study(
                    study_name=self.payload.study,
                    direction=self.payload.direction,
                    pruner=self.payload.pruner,
                    storage=optuna.storages.InMemoryStorage(),
                )
            finally:
                optuna.logging.set_verbosity(verbosity)
            for frozen in self.payload.history:
                study.add_trial(frozen)
            self._trial = study.ask()
            if self._trial.number != self.payload.number:
                raise RuntimeError(
                    f"trial {self.payload.number} was rebuilt as number {self._trial.number}: "
                    "the payload's history must hold trials 0..number-1"
                )
        return self._trial


def _objective(payload: TrialPayload, metrics: Mapping[str, Any]) -> float:
    """The objective's value among the run's metrics; a missing or non-finite one fails
    the trial, naming what there is."""
    from moola.core.errors import ConfigError

    if payload.metric not in metrics:
        raise ConfigError(
            f"Objective metric {payload.metric!r} is not among the run's metrics "
            f"({', '.join(sorted(metrics))}).",
            param="objective.metric",
        )
    value = metrics[payload.metric]
    if value is None or not math.isfinite(float(value)):
        raise ConfigError(
            f"Objective metric {payload.metric!r} is {value!r} for this run; it cannot be ranked.",
            param="objective.metric",
        )
    return float(value)


def _study_record(payload: TrialPayload) -> dict[str, Any]:
    """What a trial's run records about the study it belongs to (and the phases, for a
    phase's trial)."""
    record = {"name": payload.study, "trial": payload.number, "params": dict(payload.params)}
    if payload.lineage is not None:
        record["phases"] = dict(payload.lineage)
    return record


def _describe(exc: BaseException) -> str:
    """A failed trial's error: its type and message, and where it was raised."""
    where = traceback.extract_tb(exc.__traceback__)
    last = f" (at {where[-1].filename}:{where[-1].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{last}"
