"""Trials, out-of-fold folds and seed repeats as Ray tasks, on one machine or a cluster.

:class:`RayExecutor` is an executor (``moola.tune.executors``: ``submit``, ``map``,
``shutdown``) and so also a ``moola.training.oof.FoldExecutor``: a study hands it trials,
``out_of_fold(..., executor=RayExecutor(...))`` hands it folds, and a loop over seeds hands
it seed repeats. Each item becomes one Ray task with a resource request (``cpus_per_task``,
``gpus_per_task``), which Ray places on a node with room for it.

Where it runs (``address``):

- ``None``: start a private Ray instance on this machine (node address 127.0.0.1, no
  dashboard, ``num_cpus`` logical CPUs, default all), stopped again by ``shutdown()``;
- ``"auto"``: join the cluster this machine belongs to (``ray start`` ran here, or
  ``RAY_ADDRESS`` is set);
- ``"HOST:PORT"``: join the cluster whose head listens there (``ray start --head
  --port PORT`` printed it). The port is tried first (``connect_timeout_s``, default 10 s):
  an address nobody answers on fails at once with a ``ConfigError`` naming it, before
  anything is written.

If this process is already connected to Ray (``ray.init`` ran), that connection is used and
left open. A cluster started with ``ray start`` uses Ray's token authentication by default
(Ray 2.59 and later): the driver joins it with ``RAY_AUTH_MODE=token`` set and the
cluster's token in ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``; a refused join says so.

Results and artifacts. What a task returns comes back to the driver (this process), which
writes the registry: folds come back as ``FoldOutput`` (probabilities, metrics, and the
fitted estimator when asked) and ``out_of_fold`` keeps them in its fold store here; a trial
that returns its outcome is recorded by the study here. This is the default and needs no
shared storage; its cost is that a returned model crosses the network. The other path, for
a task that writes files itself (a trial recording its own run), is a shared data root:
every node mounts the same file system at the same path (NFS, a cluster file system; on a
local instance the one disk already is), the task is given that path, and Optuna's journal
file storage, not SQLite, holds the study when many nodes write it. Every node also needs
this moola installed in the same Python environment (a local instance uses this one).

Which path moola takes: ``moola tune --backend ray`` lets the trials record their runs on a
local instance (one disk) and hands the computed runs back to the driver on a cluster
(``--address``; ``moola.tune.trial``'s ``record=False``). ``moola train --backend ray``
brings every fold back to the driver; only a neural fold's epoch checkpoints (kept so a
killed fold resumes) are written by the worker, under the data root's path: on a cluster
without a shared data root they land on the worker's own disk (a killed fold then starts
over), and where the worker may not create that path the fold fails saying so.

Worker failure. A task whose worker process dies (killed, out of memory, a crashed
extension, a lost node) is run again up to ``max_retries`` times (Ray's task retries); when
those run out, its future (``submit``) or the ``map`` raises :class:`TaskFailed` naming the
task, the number of attempts and Ray's reason, so a trial is marked failed with that reason
and a fold run stops; nothing is dropped silently. An exception the task itself raises (a
``ConfigError``, a diverged fit) is not retried, since it would raise again: it reaches the
caller as itself, as it would from a serial run.

Ray is an optional extra (``pip install moola[scale]``); it is imported only when an
executor connects.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from moola.core.errors import ConfigError
from moola.tune.executors import TaskFailed

__all__ = ["RayExecutor"]

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class RayExecutor:
    """Run tasks as Ray tasks; see the module docstring.

    Parameters
    ----------
    address : None, "auto" or "HOST:PORT", default None
        None starts a local Ray instance; "auto" joins this machine's cluster; HOST:PORT
        joins the cluster whose head is there.
    cpus_per_task, gpus_per_task : float, default 1 and 0
        Each task's resource request (fractions allowed: 0.5 GPU packs two per GPU).
    max_retries : int, default 2
        Further attempts of a task whose worker died before it is reported failed.
    num_cpus : int, optional
        Logical CPUs of a local instance (``address=None``; default: all of this machine).
    connect_timeout_s : float, default 10
        How long ``HOST:PORT`` may take to answer before it is reported unreachable.
    max_concurrent : int, optional
        ``slots``: how many trials a study keeps in flight (default: as many tasks as the
        cluster's CPUs and GPUs hold at once at this request).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_task: float = 1.0,
        gpus_per_task: float = 0.0,
        max_retries: int = 2,
        num_cpus: int | None = None,
        connect_timeout_s: float = 10.0,
        max_concurrent: int | None = None,
    ) -> None:
        self.address = address
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.max_retries = max_retries
        self.num_cpus = num_cpus
        self.connect_timeout_s = connect_timeout_s
        self.max_concurrent = max_concurrent
        self._owned = False  # this executor started the Ray instance (and stops it)
        self._connected = False
        self._remotes: dict[Callable[..., Any], Any] = {}

    # -- connection ---------------------------------------------------------------------

    def connect(self) -> RayExecutor:
        """Start or join Ray now (``submit``/``map`` do it on first use); returns self.

        ``ConfigError`` naming the address when it cannot be reached, or when Ray is not
        installed."""
        if self._connected:
            return self
        _check_settings(self)
        if self.address not in (None, "auto"):
            _check_reachable(self.address, self.connect_timeout_s)
        ray = _import_ray()
        if ray.is_initialized():
            self._connected = True
            return self
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address is None:
            options.update(address="local", _node_ip_address="127.0.0.1")
            if self.num_cpus is not None:
                options["num_cpus"] = self.num_cpus
        else:
            options["address"] = self.address
        try:
            ray.init(**options)
        except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"Cannot join a Ray cluster at address {self.address!r}: {exc}. Start one "
                "(Ray's own command: ray start, as head) or check the address; address=None "
                f"starts a local one.{_auth_hint()}",
                param="address",
            ) from None
        self._owned = self.address is None
        self._connected = True
        return self

    @property
    def slots(self) -> int:
        """How many tasks run at once: ``max_concurrent``, else what the cluster's CPUs
        (and GPUs, when tasks ask for them) hold at this resource request (connects)."""
        if self.max_concurrent is not None:
            return self.max_concurrent
        self.connect()
        import ray

        resources = ray.cluster_resources()
        fits = []
        for name, each in (("CPU", self.cpus_per_task), ("GPU", self.gpus_per_task)):
            if each > 0:
                fits.append(int(resources.get(name, 0.0) // each))
        return max(1, min(fits)) if fits else max(1, int(resources.get("CPU", 1.0)))

    def shutdown(self, wait: bool = True) -> None:
        """Disconnect; a Ray instance this executor started is stopped."""
        if self._connected and self._owned:
            import ray

            ray.shutdown()
        self._connected = self._owned = False
        self._remotes.clear()

    def __enter__(self) -> RayExecutor:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- work -----------------------------------------------------------------------------

    def submit(self, fn: Callable[[_Item], _Result], item: _Item, /) -> Future[_Result]:
        """Run ``fn(item)`` as a Ray task; the future holds its value, the exception it
        raised, or :class:`TaskFailed` when its worker died on every attempt."""
        ref = self._remote(fn).remote(item)
        future: Future[_Result] = Future()
        future.set_running_or_notify_cancel()

        def settle(done: Future[Any]) -> None:
            try:
                future.set_result(done.result())
            except BaseException as exc:
                future.set_exception(self._failure(exc, None))

        ref.future().add_done_callback(settle)
        return future

    def map(self, fn: Callable[[_Item], _Result], items: Iterable[_Item], /) -> Iterator[_Result]:
        """``fn(item)`` for each item, all submitted now (Ray runs as many at once as the
        resources allow), handed back in the items' order; the first failure raises."""
        remote = self._remote(fn)
        refs = [remote.remote(item) for item in items]
        return self._results(refs)

    def _results(self, refs: list[Any]) -> Iterator[Any]:
        import ray

        done = 0
        try:
            for index, ref in enumerate(refs):
                try:
                    value = ray.get(ref)
                except Exception as exc:
                    done = index + 1
                    raise self._failure(exc, index) from None
                done = index + 1
                yield value
        finally:  # stopped early or failed: do not leave the rest running
            _cancel_pending(refs[done:])

    def _remote(self, fn: Callable[..., Any]) -> Any:
        """``fn`` as a Ray remote function with this executor's resource request."""
        self.connect()
        remote = self._remotes.get(fn)
        if remote is None:
            import ray

            remote = ray.remote(fn).options(
                num_cpus=self.cpus_per_task,
                num_gpus=self.gpus_per_task,
                max_retries=self.max_retries,
                retry_exceptions=False,
            )
            self._remotes[fn] = remote
        return remote

    def _failure(self, exc: BaseException, index: int | None) -> BaseException:
        """The task's own exception as itself; a lost worker as TaskFailed."""
        import ray.exceptions as rex

        if isinstance(exc, rex.RayTaskError) and not isinstance(exc.cause, rex.RayError):
            return exc.cause if exc.cause is not None else exc
        which = "a task" if index is None else f"task {index}"
        attempts = self.max_retries + 1
        if isinstance(exc, rex.TaskCancelledError):
            reason = "it was cancelled"
        elif isinstance(exc, (rex.WorkerCrashedError, rex.NodeDiedError, rex.OutOfMemoryError)):
            reason = f"its worker process died on each of {attempts} attempt(s)"
        else:
            reason = "Ray could not run it"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return TaskFailed(
            f"Ray {which} failed: {reason} ({type(exc).__name__}: {detail}).",
            index=index,
            reason=f"{type(exc).__name__}: {detail}",
            attempts=attempts,
        )


def _cancel_pending(refs: list[Any]) -> None:
    """Cancel the tasks of ``refs`` still running or queued. Only those: cancelling a task
    that already finished or failed can abort the driver (Ray 2.60: "Tried to complete task
    that was not pending")."""
    if not refs:
        return
    import ray

    _, pending = ray.wait(refs, num_returns=len(refs), timeout=0)
    for ref in pending:
        ray.cancel(ref)


def _check_settings(executor: RayExecutor) -> None:
    for name in ("cpus_per_task", "gpus_per_task"):
        if getattr(executor, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(executor, name)}.", param=name)
    if executor.max_retries < 0:
        raise ConfigError(
            f"max_retries must be >= 0, got {executor.max_retries}.", param="max_retries"
        )
    if executor.max_concurrent is not None and executor.max_concurrent < 1:
        raise ConfigError(
            f"max_concurrent must be >= 1, got {executor.max_concurrent}.", param="max_concurrent"
        )
    if executor.num_cpus is not None and executor.num_cpus < 1:
        raise ConfigError(f"num_cpus must be >= 1, got {executor.num_cpus}.", param="num_cpus")


def _auth_hint() -> str:
    """What to set when a cluster may want Ray's token authentication and this process
    would not send a token (``ray start`` turns it on by default since Ray 2.59; a driver
    joining by address sends the token only with ``RAY_AUTH_MODE=token``)."""
    import os

    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "token":
        return " The cluster may hold another token than this machine's RAY_AUTH_TOKEN."
    return (
        " If the cluster uses Ray's token authentication (ray start's default since Ray "
        "2.59), set RAY_AUTH_MODE=token here and give the cluster's token: RAY_AUTH_TOKEN, "
        "or the file ~/.ray/auth_token (Ray's command: ray get-auth-token, on the head)."
    )


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "The Ray backend needs Ray: pip install 'moola[scale]'.", param="backend"
        ) from None
    return ray


def _check_reachable(address: str, timeout_s: float) -> None:
    """``ConfigError`` unless something accepts a TCP connection at ``HOST:PORT`` within
    ``timeout_s`` (``ray.init`` itself would wait far longer on a dead address)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            f"Ray address {address!r} is not 'auto' or HOST:PORT (e.g. 10.0.0.5:6379).",
            param="address",
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"Ray address {address} is unreachable ({exc}; waited at most {timeout_s:g} s). "
            "Check that the cluster's head runs there (Ray's own command: ray start, as head) "
            "and that this machine can reach it.",
            param="address",
        ) from None
