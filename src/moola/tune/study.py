"""Run an Optuna study over a search space: every trial an ordinary recorded run.

:func:`run_study` is the driver. It opens (or creates) the study in its storage
(``moola.tune.storage``), asks Optuna for trials (ask-and-tell), turns each into a
``moola.tune.trial.TrialPayload``, hands it to an executor (this process by default; local
processes; Ray, ``moola.tune.executors``) and tells Optuna how it ended. Only the driver
writes the storage, wherever the trials run.

**Honest.** A trial trains one run (``moola.pipeline.train`` or ``moola.pipeline.rl``),
records it like any other (run folder, manifest with ``study``, a line in
``experiment_results.jsonl`` with ``study`` and ``trial``) and is ranked by the space's
objective: an out-of-fold metric (a folds split) or a validation metric (a train/val/test
split; an RL run's evaluation period). Nothing of a trial reads the test part, and the
space refuses an objective on it; the journal's test ledger (``test_look`` events) stays
empty of the study's runs until someone looks on purpose (``moola evaluate RUN --test``).

**Pruned trials.** A trial reports its intermediate values (validation loss per epoch;
RL: evaluation return) and stops when the pruner says so. Its state is PRUNED, its
intermediate values are in the study, and no run is recorded for it (a run is recorded
only once it finished; an RL trial's checkpoints are removed).

**How many trials.** ``trials`` is the number of finished trials (complete or pruned) the
study should hold: a study that already has some asks only for the rest, so a command
run again after a kill finishes the same study instead of adding to it. Failed trials
(an error in the run, a dead worker) do not count; they stay in the study as FAIL with
their error.

**Resume after a kill.** A killed driver leaves the trials it was running as RUNNING.
When a study is opened, each such trial whose driver is gone (a process of this machine
that no longer exists, or a database heartbeat older than its grace period) is settled:
if its run was recorded before the kill (its line in ``experiment_results.jsonl``), the
trial is told COMPLETE with that run's objective; otherwise it is marked FAIL. No
finished run is lost and none is counted twice.

**Reproducible.** Samplers are seeded with ``seed`` plus the number of trials the study
already holds (a fresh study: ``seed``); with the serial executor the same seed gives the
same trials, parameters and values.

**One space per study.** The space's hash and file are stored in the study (user
attributes) and in ``artifacts/studies/<name>/study.json``; opening an existing study with
another space is refused, naming both hashes.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from moola.core.errors import ConfigError
from moola.core.provenance import utc_now_iso
from moola.tune.space import Space
from moola.tune.storage import (
    open_storage,
    read_study_record,
    redacted,
    storage_url,
    write_study_record,
)
from moola.tune.trial import (
    SerialExecutor,
    TrialExecutor,
    TrialOutcome,
    TrialPayload,
    evaluate_trial,
    record_outcome,
)

if TYPE_CHECKING:
    import optuna

    from moola.data.registry import Registry

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "StudyResult",
    "make_pruner",
    "make_sampler",
    "open_study",
    "run_study",
]

SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("median", "hyperband", "none")
#: User attributes a study keeps about itself.
SPACE_HASH_ATTR = "moola_space_hash"
SPACE_FILE_ATTR = "moola_space_file"
SPACE_ATTR = "moola_space"
#: Trial attributes: who runs it (host, pid, token) and the run it recorded.
DRIVER_ATTR = "moola_driver"
RUN_ATTR = "run_id"
ERROR_ATTR = "error"

ProgressSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class StudyResult:
    """What a study holds after :func:`run_study`: its ``name`` and ``storage`` (URL,
    password hidden); the ``best`` trial's number, value, parameters and run (None when
    no trial completed); trial counts by state; how many trials this call ran and how
    many stale trials it settled."""

    name: str
    storage: str
    direction: str
    metric: str
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    best_run_id: str | None
    counts: dict[str, int]
    ran: int
    recovered: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "name": self.name,
            "storage": self.storage,
            "direction": self.direction,
            "metric": self.metric,
            "best_trial": self.best_trial,
            "best_value": self.best_value,
            "best_params": self.best_params,
            "best_run_id": self.best_run_id,
            "counts": self.counts,
            "ran": self.ran,
            "recovered": self.recovered,
        }


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler called ``name`` (tpe, random, cmaes), seeded."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401 - Optuna's CMA-ES sampler needs it
        except ImportError:
            raise ConfigError(
                "The cmaes sampler needs the 'cmaes' package (pip install cmaes); use tpe or "
                "random meanwhile.",
                param="sampler",
            ) from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise ConfigError(
        f"Unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}.", param="sampler"
    )


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """The pruner called ``name``: ``median`` (stop a trial whose best intermediate value
    is worse than the median of completed trials at the same step, once 2 trials
    completed and after its first step), ``hyperband``, ``none``."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"Unknown pruner {name!r}; use one of {', '.join(PRUNERS)}.", param="pruner")


def open_study(
    root: Any,
    space: Space,
    *,
    study: str,
    storage: str | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Open study ``study`` of ``space`` in its storage, creating it (and its
    ``study.json``) when new; another space's study of that name is refused, naming both
    hashes, before anything is written."""
    import optuna

    record = read_study_record(root, study)
    if record is not None and record.get("space_hash") != space.space_hash:
        raise _other_space(study, record.get("space_hash"), record.get("space_file"), space)
    url = storage_url(root, study, storage)
    if record is not None and not _same_storage(record.get("storage"), storage, study):
        raise ConfigError(
            f"Study {study!r} of this data root lives in {record.get('storage')}, not "
            f"{redacted(url)}; pass that storage, or use another study name.",
            param="storage",
        )
    backend = open_storage(root, study, storage)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(backend)}
    if study in existing:
        attrs = existing[study].user_attrs
        if attrs.get(SPACE_HASH_ATTR) != space.space_hash:
            raise _other_space(study, attrs.get(SPACE_HASH_ATTR), attrs.get(SPACE_FILE_ATTR), space)
        found = optuna.load_study(study_name=study, storage=backend, sampler=sampler, pruner=pruner)
    else:
        found = optuna.create_study(
            study_name=study,
            storage=backend,
            direction=space.direction,
            sampler=sampler,
            pruner=pruner,
        )
        found.set_user_attr(SPACE_HASH_ATTR, space.space_hash)
        found.set_user_attr(SPACE_FILE_ATTR, space.source)
        found.set_user_attr(SPACE_ATTR, space.model_dump(mode="json"))
    if record is None:
        write_study_record(
            root,
            study,
            {
                "name": study,
                "created_at": utc_now_iso(),
                "space_hash": space.space_hash,
                "space_file": space.source,
                "space": space.model_dump(mode="json"),
                "kind": space.kind,
                "objective": {"metric": space.objective.metric, "direction": space.direction},
                "storage": redacted(url),
            },
        )
    return found


def run_study(
    registry: Registry,
    space: Space,
    *,
    study: str,
    trials: int,
    timeout: float | None = None,
    sampler: str = "tpe",
    pruner: str | optuna.pruners.BasePruner = "median",
    storage: str | None = None,
    seed: int = 0,
    executor: TrialExecutor | None = None,
    on_progress: ProgressSink = lambda _: None,
    enqueue: Mapping[str, Any] | None = None,
    record_in_worker: bool = True,
    parallel: int | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> StudyResult:
    """Run study ``study`` of ``space`` until it holds ``trials`` finished trials (see the
    module notes) or ``timeout`` seconds have passed (no new trial starts after it; the
    ones in flight finish).

    ``sampler``: tpe, random or cmaes; ``pruner``: median, hyperband, none or an Optuna
    pruner; ``storage``: a URL (default: SQLite in the study's folder; ``journal:PATH``);
    ``executor``: where trials run (``moola.tune.trial.TrialExecutor``; default: here, one
    at a time); ``parallel``: how many trials it keeps in flight (default: the executor's
    ``slots``, else its ``workers``, else 1). ``enqueue``: parameters for the first new
    trial (a phase's previous best; skipped when the study already has a trial with
    them). ``record_in_worker=False``: workers hand the computed run back and the driver
    records it (supervised runs). ``lineage``: the phases this study is one of
    (``{"name", "phase"}``, ``moola.tune.phases``), recorded with every trial's run.
    ``on_progress`` receives ``{"event": "start"|"trial",
    ...}`` dicts: the trial's number, state, value, counts and the best so far.
    """
    import optuna

    if trials < 1:
        raise ConfigError(f"trials must be at least 1 (got {trials}).", param="trials")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout must be > 0 seconds (got {timeout}).", param="timeout")
    chosen = make_pruner(pruner) if isinstance(pruner, str) else pruner
    make_sampler(sampler, seed)  # an unknown sampler is refused before the storage opens
    found = open_study(registry.root, space, study=study, storage=storage, pruner=chosen)
    found.sampler = make_sampler(sampler, seed + len(found.get_trials(deepcopy=False)))
    url = storage_url(registry.root, study, storage)
    recovered = _settle_stale(found, registry, space)
    if enqueue:
        found.enqueue_trial(dict(enqueue), skip_if_exists=True)
    executor = executor or SerialExecutor()
    slots = max(1, int(parallel or _slots(executor)))
    driver = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
    wanted = max(0, trials - _finished(found))
    on_progress({"event": "start", "study": study, "wanted": wanted, **_summary(found)})
    started = time.monotonic()
    in_flight: dict[Future[TrialOutcome], tuple[optuna.Trial, TrialPayload]] = {}
    asked = 0
    heartbeat = _Heartbeat(found)
    pending: optuna.Trial | None = None  # asked, not yet in flight

    def told(trial: optuna.Trial, outcome: TrialOutcome) -> None:
        _tell(found, trial, outcome)
        heartbeat.remove(trial)
        on_progress(
            {
                "event": "trial",
                "number": outcome.number,
                "state": outcome.state,
                "value": outcome.value,
                "error": outcome.error,
                "run_id": outcome.run_id,
                "wanted": wanted,
                "asked": asked,
                **_summary(found),
            }
        )

    try:
        while True:
            out_of_time = timeout is not None and time.monotonic() - started >= timeout
            while asked < wanted and len(in_flight) < slots and not out_of_time:
                with warnings.catch_warnings():  # our own heartbeat runs (_Heartbeat)
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    pending = found.ask()
                pending.set_user_attr(DRIVER_ATTR, driver)
                heartbeat.add(pending)
                asked += 1
                try:
                    payload = _payload(
                        found, pending, space, registry, study, record_in_worker, lineage
                    )
                except (ConfigError, ValidationError) as exc:  # parameters the run refuses
                    trial, pending = pending, None
                    told(trial, TrialOutcome(trial.number, "failed", error=_short(exc)))
                    continue
                in_flight[executor.submit(evaluate_trial, payload)] = (pending, payload)
                pending = None
            if not in_flight:
                break
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in done:
                trial, payload = in_flight.pop(future)
                told(trial, _outcome(future, payload, registry))
    except BaseException:
        stopped = [trial for trial, _ in in_flight.values()] + ([pending] if pending else [])
        for trial in stopped:  # interrupted here: FAIL, not left RUNNING
            trial.set_user_attr(ERROR_ATTR, "the study was interrupted")
            found.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    finally:
        heartbeat.stop()
    return _result(found, study, url, space, asked, recovered)


# -- the loop's pieces ---------------------------------------------------------------------


def _payload(
    found: optuna.Study,
    trial: optuna.Trial,
    space: Space,
    registry: Registry,
    study: str,
    record_in_worker: bool,
    lineage: Mapping[str, Any] | None = None,
) -> TrialPayload:
    """The trial's work: its parameters sampled here, the run config they make, and the
    study as it stands (for the pruner where the trial runs)."""
    values = space.suggest(trial)
    config = space.config_for(values)
    history = tuple(t for t in found.get_trials(deepcopy=True) if t.number < trial.number)
    return TrialPayload(
        root=str(registry.root),
        study=study,
        number=trial.number,
        kind=space.kind,
        config=config,
        params=values,
        metric=space.objective.metric,
        direction=space.direction,
        pruner=found.pruner,
        history=history,
        record=record_in_worker or space.kind == "rl",
        lineage=dict(lineage) if lineage is not None else None,
    )


def _outcome(
    future: Future[TrialOutcome], payload: TrialPayload, registry: Registry
) -> TrialOutcome:
    """The trial's outcome; a worker that raised instead of answering (it died, or the
    executor failed) makes a failed outcome, never a lost trial."""
    try:
        outcome = future.result()
    except Exception as exc:
        return TrialOutcome(payload.number, "failed", error=f"{type(exc).__name__}: {exc}")
    if outcome.unrecorded is not None:
        outcome = record_outcome(registry.root, payload, outcome)
    return outcome


def _tell(found: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> None:
    """Write the outcome into the study: intermediate values, run id or error, state."""
    from optuna.trial import TrialState

    storage, trial_id = found._storage, trial._trial_id
    for step, value in outcome.intermediate:
        storage.set_trial_intermediate_value(trial_id, step, value)
    for key, value in outcome.system_attrs.items():  # the pruner's notes (rungs)
        storage.set_trial_system_attr(trial_id, key, value)
    if outcome.run_id is not None:
        storage.set_trial_user_attr(trial_id, RUN_ATTR, outcome.run_id)
    if outcome.error is not None:
        storage.set_trial_user_attr(trial_id, ERROR_ATTR, outcome.error)
    storage.set_trial_user_attr(trial_id, "seconds", outcome.seconds)
    if outcome.state == "complete":
        found.tell(trial, outcome.value)
    elif outcome.state == "pruned":
        found.tell(trial, state=TrialState.PRUNED)
    else:
        found.tell(trial, state=TrialState.FAIL)


def _settle_stale(found: optuna.Study, registry: Registry, space: Space) -> dict[str, int]:
    """Settle the RUNNING trials whose driver is gone (module notes): COMPLETE with the
    recorded run's objective when the run was recorded, else FAIL."""
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.trial import TrialState

    from moola.tracking.runs import RunStore

    storage = found._storage
    running = found.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return {}
    stale_ids: set[int] = set()
    if is_heartbeat_enabled(storage):
        stale_ids = set(storage._get_stale_trial_ids(found._study_id))  # type: ignore[attr-defined]
    host = socket.gethostname()
    recorded = {
        int(line["trial"]): line
        for line in RunStore(registry.root).results()
        if line.get("study") == found.study_name and line.get("trial") is not None
    }
    settled = {"complete": 0, "failed": 0}
    for trial in running:
        owner = trial.user_attrs.get(DRIVER_ATTR) or {}
        gone = trial._trial_id in stale_ids or (
            owner.get("host") == host and not _alive(int(owner.get("pid", -1)))
        )
        if not gone:
            continue
        line = recorded.get(trial.number)
        value = _recorded_value(line, space.objective.metric) if line else None
        if value is not None:
            storage.set_trial_user_attr(trial._trial_id, RUN_ATTR, line["run_id"])  # type: ignore[index]
            storage.set_trial_user_attr(trial._trial_id, "recovered", True)
            found.tell(trial.number, value)
            settled["complete"] += 1
        else:
            storage.set_trial_user_attr(
                trial._trial_id, ERROR_ATTR, "its driver stopped before the trial finished"
            )
            found.tell(trial.number, state=TrialState.FAIL)
            settled["failed"] += 1
    return settled


def _recorded_value(line: Mapping[str, Any], metric: str) -> float | None:
    """The objective in a recorded run's results line (None when it is not there)."""
    if metric.startswith("uncalibrated."):
        value = (line.get("uncalibrated") or {}).get(metric.removeprefix("uncalibrated."))
    else:
        value = (line.get("metrics") or {}).get(metric)
    return None if value is None else float(value)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _slots(executor: Any) -> int:
    """How many trials an executor runs at once, as far as it says."""
    for attribute in ("slots", "workers"):
        value = getattr(executor, attribute, None)
        if isinstance(value, int) and value >= 1:
            return value
    return 1


def _finished(found: optuna.Study) -> int:
    from optuna.trial import TrialState

    return len(found.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _summary(found: optuna.Study) -> dict[str, Any]:
    """Counts by state and the best trial so far."""
    from optuna.trial import TrialState

    all_trials = found.get_trials(deepcopy=False)
    counts = {
        "complete": sum(t.state == TrialState.COMPLETE for t in all_trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in all_trials),
        "failed": sum(t.state == TrialState.FAIL for t in all_trials),
        "running": sum(t.state == TrialState.RUNNING for t in all_trials),
    }
    best = _best(found)
    return {
        "counts": counts,
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else best.value,
    }


def _best(found: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return found.best_trial
    except ValueError:  # no completed trial yet
        return None


def _result(
    found: optuna.Study,
    name: str,
    url: str,
    space: Space,
    ran: int,
    recovered: dict[str, int],
) -> StudyResult:
    best = _best(found)
    summary = _summary(found)
    return StudyResult(
        name=name,
        storage=redacted(url),
        direction=space.direction,
        metric=space.objective.metric,
        best_trial=None if best is None else best.number,
        best_value=None if best is None else best.value,
        best_params={} if best is None else dict(best.params),
        best_run_id=None if best is None else best.user_attrs.get(RUN_ATTR),
        counts=summary["counts"],
        ran=ran,
        recovered=recovered,
    )


def _same_storage(recorded: str | None, given: str | None, study: str) -> bool:
    """Whether the storage a study's record names is the one given (the default SQLite
    file is recognised by its place in the study's folder, wherever the data root is; a
    PostgreSQL URL with or without its driver is the same storage)."""
    default = f"/artifacts/studies/{study}/study.db"
    if given is None:
        return recorded is None or (
            recorded.startswith("sqlite:///") and recorded.endswith(default)
        )
    return recorded in (redacted(given), redacted(storage_url(".", study, given)))


def _other_space(study: str, stored: Any, file: Any, space: Space) -> ConfigError:
    return ConfigError(
        f"Study {study!r} exists with another space: it was made with space {stored} "
        f"(file {file}), and this space is {space.space_hash} (file {space.source}). "
        "Use another study name for this space, or the study's own space file.",
        param="study",
    )


class _Heartbeat:
    """Records a heartbeat of every trial in flight every ``HEARTBEAT_S`` seconds, for
    storages that keep them (databases), so another driver can tell a dead driver's
    trials from live ones."""

    def __init__(self, found: optuna.Study) -> None:
        from optuna.storages._heartbeat import is_heartbeat_enabled

        from moola.tune.storage import HEARTBEAT_S

        self._storage = found._storage
        self._enabled = is_heartbeat_enabled(self._storage)
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._interval = HEARTBEAT_S

    def add(self, trial: optuna.Trial) -> None:
        if not self._enabled:
            return
        with self._lock:
            self._ids.add(trial._trial_id)
        self._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, daemon=True, name="moola-hb")
            self._thread.start()

    def remove(self, trial: optuna.Trial) -> None:
        with self._lock:
            self._ids.discard(trial._trial_id)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                ids = list(self._ids)
            for trial_id in ids:
                try:
                    self._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
                except Exception:  # a finished trial or a lost connection: try again later
                    continue
