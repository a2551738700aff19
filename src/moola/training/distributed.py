"""Data-parallel training over several processes (``torch.distributed``), in the one loop.

``moola train ... --nproc N`` and ``moola pretrain ... --nproc N`` start the same command
again in N processes through ``torchrun`` (:func:`launch`: ``torch.distributed.run
--standalone``, one machine). Each process joins the group with :func:`init_from_env`
(``gloo`` on the CPU, ``nccl`` on CUDA with one GPU per process, ``cuda:LOCAL_RANK``) and
runs the command as usual; ``Trainer.run`` sees the group (:func:`current`) and trains
data-parallel:

- **sampling**: every epoch each process draws the same seeded shuffled order, cuts it
  into the run's global batches (``batch_size``) and takes its own share of each one
  (rows ``rank, rank + N, ...``: :func:`shard`). Like ``torch``'s ``DistributedSampler``,
  the processes see disjoint parts that together cover the epoch; unlike it, each optimiser
  step sees exactly the global batch a single-process run sees at that step, so N processes
  follow the single-process run (same losses up to float summation order). The lazy
  window dataset (``moola.training.window_dataset``) and pretraining corpora are
  ``BatchSource``s: each process builds only its share of a batch, from its own indices;
  a validation pass is split across the processes the same way and its loss summed;
- **gradients**: after each backward pass, one all-reduce of all gradients (flattened)
  gives every process the gradient of the global batch (:func:`average_gradients`,
  weighted by rows, so an uneven split of a batch is exact too). That is what
  ``DistributedDataParallel`` computes; it is done here directly because moola's step
  functions call the module (and its submodules, e.g. ``module.encoder``) with their own
  arguments, which DDP's wrapper would not see, and because DDP renames every weight
  (``module.``), which snapshots, best weights and saved encoders would then carry. The
  weights start equal (:func:`broadcast_module` from rank 0), so they stay equal after
  every step;
- **decisions**: training and validation losses are summed over the processes before any
  callback sees them, and a stop (early stopping, a callback's) is taken when any process
  asks, so every process runs the same number of steps;
- **writing**: only rank 0 writes (:func:`is_main_process`). The pipeline gives the other
  ranks no writing callbacks (checkpoints) and lets rank 0 write the artifact or the run;
  the others wait for it (:func:`barrier`) and read what it wrote.

With no process group (the usual case) every function here is a no-op or says rank 0 of 1.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from moola.core.errors import ConfigError

__all__ = [
    "DistContext",
    "any_rank",
    "average_gradients",
    "barrier",
    "broadcast_module",
    "broadcast_object",
    "current",
    "destroy",
    "init_from_env",
    "is_main_process",
    "launch",
    "launch_command",
    "processes",
    "shard",
    "sum_over_ranks",
    "under_launcher",
]

#: Environment variable torchrun sets in every process it starts.
_LAUNCHER_ENV = "TORCHELASTIC_RUN_ID"
_TIMEOUT = datetime.timedelta(minutes=30)  # a rank stuck longer than this ends the run


@dataclass(frozen=True)
class DistContext:
    """This process's place in the group: ``rank`` of ``world_size``, its ``local_rank``
    on this machine, and the collective ``backend`` (gloo or nccl)."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes."""
        return self.rank == 0


def current() -> DistContext | None:
    """The process group this process trains in, or None (no group, or a group of one)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    world = torch.distributed.get_world_size()
    if world < 2:
        return None
    return DistContext(
        rank=torch.distributed.get_rank(),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=str(torch.distributed.get_backend()),
    )


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a process group: the process that writes."""
    context = current()
    return context is None or context.is_main


def under_launcher() -> bool:
    """True in a process torchrun started (the command must run, not relaunch)."""
    return _LAUNCHER_ENV in os.environ and "WORLD_SIZE" in os.environ


def init_from_env(device: str = "auto") -> DistContext | None:
    """Join the process group torchrun described in the environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); None when there is
    none (``WORLD_SIZE`` unset or 1).

    The backend is ``nccl`` when the run trains on CUDA (``device`` ``auto`` with a GPU, or
    ``cuda``) with ``cuda:LOCAL_RANK`` made this process's device, else ``gloo``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2:
        return None
    context = current()
    if context is not None:
        return context
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={world} but {', '.join(missing)} is not set: start the processes "
            "with torchrun (or the command's nproc option), which sets them."
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    on_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if on_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"Process {local_rank} of {world} has no GPU of its own (this machine has "
                f"{torch.cuda.device_count()}); use at most that many processes per machine."
            )
        torch.cuda.set_device(local_rank)
    backend = "nccl" if on_cuda else "gloo"
    torch.distributed.init_process_group(backend, timeout=_TIMEOUT)
    return current()


@contextlib.contextmanager
def processes(device: str = "auto") -> Iterator[DistContext | None]:
    """Join torchrun's process group for the block (:func:`init_from_env`) and leave it
    after; yields None (and does nothing) outside torchrun."""
    context = init_from_env(device) if under_launcher() else None
    try:
        yield context
    except BaseException:
        if context is not None:
            destroy(together=False)  # the other ranks may never reach a barrier
        raise
    if context is not None:
        destroy()


def destroy(together: bool = True) -> None:
    """Leave the process group (if this process is in one). ``together``: every rank
    meets at a barrier first, as on a normal exit: a rank tearing gloo down while another
    still finishes its last collective can abort at exit (SIGABRT after the work is
    done); False after an error, when the other ranks may never get there."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if together:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def shard(indices: torch.Tensor, context: DistContext | None) -> torch.Tensor:
    """This rank's share of one global batch: rows ``rank, rank + N, ...`` of ``indices``
    (all of them without a group)."""
    if context is None:
        return indices
    return indices[context.rank :: context.world_size]


def _collective_device(context: DistContext) -> torch.device:
    if context.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_over_ranks(values: Sequence[float | torch.Tensor]) -> list[float]:
    """Each of ``values`` summed over the processes (float64; the values themselves
    without a group). One collective for all of them."""
    context = current()
    flat = torch.stack([torch.as_tensor(v, dtype=torch.float64).detach().cpu() for v in values])
    if context is None:
        return [float(v) for v in flat]
    flat = flat.to(_collective_device(context))
    torch.distributed.all_reduce(flat)
    return [float(v) for v in flat.cpu()]


def any_rank(flag: bool) -> bool:
    """True on every process when ``flag`` is True on any of them."""
    context = current()
    if context is None:
        return flag
    value = torch.tensor([1 if flag else 0], device=_collective_device(context))
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def average_gradients(module: nn.Module, rows: int, global_rows: int) -> None:
    """Make every process's gradients those of the global batch: each process computed
    the mean loss over its ``rows`` of the ``global_rows``, so the gradient of the global
    mean is ``sum_r rows_r * grad_r / global_rows`` (one flattened all-reduce)."""
    context = current()
    if context is None:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]).mul_(rows)
    torch.distributed.all_reduce(flat)
    flat.div_(global_rows)
    offset = 0
    for grad in grads:
        n = grad.numel()
        grad.copy_(flat[offset : offset + n].view_as(grad))
        offset += n


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process (equal starting weights)."""
    context = current()
    if context is None:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            torch.distributed.broadcast(tensor.data, src=0)


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every process (it must pickle)."""
    context = current()
    if context is None:
        return value
    box = [value if context.is_main else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every process gets here."""
    if current() is not None:
        torch.distributed.barrier()


def launch_command(nproc: int, args: Sequence[str]) -> list[str]:
    """The torchrun command that runs ``moola ARGS`` in ``nproc`` processes on this machine."""
    if nproc < 2:
        raise ConfigError(f"nproc must be at least 2 to launch processes, got {nproc}.")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "--",  # what follows is moola's: torchrun must not read --nproc as --nproc-per-node
        "moola.cli.main",
        *args,
    ]


def launch(nproc: int, args: Sequence[str]) -> int:
    """Run ``moola ARGS`` in ``nproc`` processes through torchrun; their exit code.

    Each process trains on the CPU threads ``torch`` gives it divided by ``nproc`` (torchrun
    sets ``OMP_NUM_THREADS=1`` unless it is set)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.run(launch_command(nproc, args), env=env, check=False).returncode
