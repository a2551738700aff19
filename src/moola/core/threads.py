"""How many CPU threads moola's numeric libraries use: one rule, one place.

torch, numba and the BLAS under numpy and scikit-learn each start a pool of threads, by
default one per core. For the small models moola trains on a few hundred windows, one
thread is about as fast as two, and several pools in one process (or beside another busy
process) fight for the same cores: OpenMP threads that wait by spinning keep a core busy
doing nothing, and a neural fold that takes 20 s alone took over 200 s that way.

``limit_threads(n)`` sets torch's pool and the BLAS/OpenMP pools (threadpoolctl) to ``n``
threads for a block and restores them after. ``prefer_passive_waits()`` asks OpenMP to
let idle threads sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``); OpenMP reads it
once, when its runtime loads (on ``import torch``), so it must run before that, and it
leaves a value the user set alone. numba's threads are not touched here: its threading
layer is chosen in ``moola.models.minirocket`` and its thread count by MiniRocket's
``n_jobs`` (default 1). ``thread_settings()`` says what is in effect, for run manifests.

torch is imported inside the functions, so importing ``moola.core`` stays light.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moola.core.errors import ConfigError

__all__ = ["limit_threads", "prefer_passive_waits", "thread_settings"]

_WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_waits() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it; ``True`` if it can still take
    effect (torch has not been imported yet)."""
    os.environ.setdefault(_WAIT_POLICY, "PASSIVE")
    return "torch" not in sys.modules


@contextmanager
def limit_threads(n: int) -> Iterator[dict[str, Any]]:
    """Run the block with ``n`` threads in torch and the BLAS/OpenMP pools; yields
    ``thread_settings()`` as in effect inside, and restores the previous counts after."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"threads must be a whole number of at least 1 (got {n!r}).")
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield thread_settings()
    finally:
        torch.set_num_threads(before)


def thread_settings() -> dict[str, Any]:
    """Threads in effect now: torch's intra-op count, the OpenMP wait policy, the cores."""
    import torch

    return {
        "torch": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get(_WAIT_POLICY),
        "cpu_count": os.cpu_count(),
    }
