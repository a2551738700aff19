"""make_executor: one name per backend, refused names and sizes named in the error."""

from __future__ import annotations

import pytest

from moola.core.errors import ConfigError
from moola.tune.executors import make_executor
from moola.tune.trial import ProcessExecutor, SerialExecutor


def double(x: int) -> int:
    return 2 * x


def test_serial_and_process_backends_run_the_work() -> None:
    serial = make_executor("serial")
    assert isinstance(serial, SerialExecutor)
    assert serial.submit(double, 21).result() == 42
    pool = make_executor("process", workers=2)
    assert isinstance(pool, ProcessExecutor) and pool.slots == 2
    pool.shutdown()  # never started: nothing to wait for


def test_unknown_backend_and_bad_sizes_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"Unknown backend 'dask'.*serial, process, ray") as err:
        make_executor("dask")
    assert err.value.param == "backend"
    with pytest.raises(ConfigError, match="workers must be at least 1") as err:
        make_executor("process", workers=0)
    assert err.value.param == "workers"
