"""Where trials, out-of-fold folds and seed repeats run: one factory over the backends.

Every executor has ``submit(fn, item) -> concurrent.futures.Future`` and ``slots`` (how many
items it runs at once): the trial seam of ``moola.tune.trial`` (``TrialExecutor``). The
Ray executor also has ``map(fn, items)``, results in the items' order, so it is a
``moola.training.oof.FoldExecutor`` too (as every ``concurrent.futures`` executor is):
a study hands it trials, ``out_of_fold(..., executor=...)`` hands it folds, and a loop over
seeds hands it seed repeats.

Backends (:func:`make_executor`):

- ``serial``: each trial in turn in this process (``moola.tune.trial.SerialExecutor``),
  the reference every other backend must equal;
- ``process``: up to ``workers`` local processes (``moola.tune.trial.ProcessExecutor``);
- ``ray``: Ray tasks with resource requests, on a local Ray instance or an existing
  cluster, retried when their worker dies (``moola.tune.ray_backend.RayExecutor``).

Results and artifacts: what a task returns comes back to the caller (the *driver*); the
registry is written either by the driver (a returned run, folds) or by the worker into a
data root every worker reaches at the same path (see ``moola.tune.ray_backend``). Results
do not depend on the backend: each fold, trial or seed repeat is seeded by its own inputs,
never by which worker ran it or when. ``fn`` must be a top-level function and the items
must pickle.
"""

from __future__ import annotations

from typing import Any

from moola.core.errors import ConfigError, MoolaError

__all__ = ["BACKENDS", "TaskFailed", "make_executor", "make_fold_executor"]

#: The ``backend`` names :func:`make_executor` knows.
BACKENDS: tuple[str, ...] = ("serial", "process", "ray")


class TaskFailed(MoolaError):
    """A task's work was lost, not refused: its worker died on every attempt, or the
    backend could not run it. ``index`` is the item's position in a ``map`` (None for
    ``submit``), ``reason`` what the backend reported, ``attempts`` how often it was tried.
    A study marks the trial failed with this message; a fold run stops with it."""

    exit_code = 1

    def __init__(
        self, message: str, *, index: int | None = None, reason: str = "", attempts: int = 1
    ) -> None:
        super().__init__(message)
        self.index = index
        self.reason = reason
        self.attempts = attempts


def make_executor(
    backend: str = "serial",
    *,
    workers: int = 1,
    address: str | None = None,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
    max_retries: int = 2,
    connect: bool = True,
) -> Any:
    """The executor of ``backend`` (``serial``, ``process`` or ``ray``).

    ``workers`` sizes a process pool (and the CPUs of a local Ray instance started for
    ``address=None``); ``address`` (``auto``, ``HOST:PORT``) points Ray at an existing
    cluster; ``cpus_per_task``/``gpus_per_task`` are each Ray task's resource request and
    ``max_retries`` how often a task whose worker died is run again. With ``connect``
    (default) a Ray executor connects now, so an unreachable address fails before the
    caller writes anything.
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}.", param="workers")
    if backend == "serial":
        from moola.tune.trial import SerialExecutor

        return SerialExecutor()
    if backend == "process":
        from moola.tune.trial import ProcessExecutor

        return ProcessExecutor(workers)
    if backend == "ray":
        from moola.tune.ray_backend import RayExecutor

        executor = RayExecutor(
            address,
            cpus_per_task=cpus_per_task,
            gpus_per_task=gpus_per_task,
            max_retries=max_retries,
            num_cpus=workers if address is None else None,
        )
        if connect:
            executor.connect()
        return executor
    raise ConfigError(
        f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.", param="backend"
    )


def make_fold_executor(
    backend: str = "serial",
    *,
    workers: int = 2,
    address: str | None = None,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
    max_retries: int = 2,
) -> Any:
    """Where one run's out-of-fold folds (or seed repeats) run: a
    ``moola.training.oof.FoldExecutor`` (``map(fn, items)``, results in order).

    ``serial``: ``moola.training.oof.SerialExecutor``; ``process``: a
    ``concurrent.futures.ProcessPoolExecutor`` of ``workers`` spawned processes; ``ray``:
    a connected :class:`~moola.tune.ray_backend.RayExecutor` (see :func:`make_executor`
    for the Ray arguments). Call ``shutdown()`` when done (the serial one has nothing to
    release and no ``shutdown``).
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}.", param="workers")
    if backend == "serial":
        from moola.training.oof import SerialExecutor

        return SerialExecutor()
    if backend == "process":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    if backend == "ray":
        return make_executor(
            "ray",
            workers=workers,
            address=address,
            cpus_per_task=cpus_per_task,
            gpus_per_task=gpus_per_task,
            max_retries=max_retries,
        )
    raise ConfigError(
        f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.", param="backend"
    )
