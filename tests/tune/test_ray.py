"""Trials, folds and seed repeats as Ray tasks on a Ray head started on 127.0.0.1 with two
worker processes: the same results as the serial executor, spread over more than one
process; a task whose worker dies is retried, then reported failed with the reason."""

from __future__ import annotations

import contextlib
import json
import os
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

from moola.core.errors import ConfigError
from moola.data.splits import purged_kfold
from moola.models import create
from moola.training.oof import out_of_fold
from moola.tune.executors import TaskFailed, make_executor
from moola.tune.ray_backend import RayExecutor
from moola.tune.trial import SerialExecutor
from tests.test_cli import run
from tests.tune._study_lab import make_lab


@pytest.fixture(scope="module")
def ray_executor():
    """One local Ray instance for the module (starting Ray takes seconds): 2 CPUs, so two
    worker processes run tasks side by side; a worker that dies is retried once."""
    executor = RayExecutor(None, num_cpus=2, max_retries=1).connect()
    yield executor
    executor.shutdown()
    import ray

    assert not ray.is_initialized()  # the instance it started is gone


def square_in_worker(x: int) -> tuple[int, int]:
    """A tiny task: its value and the process that computed it (slow enough that two
    workers share the four tasks)."""
    time.sleep(0.3)
    return x * x, os.getpid()


def dies_first_time(marker: str) -> str:
    """Kills its worker process on the first attempt, succeeds on the next."""
    path = Path(marker)
    if not path.exists():
        path.write_text("attempted")
        os._exit(1)
    return "second attempt"


def always_dies(_: int) -> int:
    os._exit(1)


def refuses(_: int) -> int:
    raise ConfigError("bad trial parameter 'lr'", param="lr")


def test_map_equals_serial_and_runs_in_several_worker_processes(ray_executor) -> None:
    items = [1, 2, 3, 4]
    on_ray = list(ray_executor.map(square_in_worker, items))
    serial = [SerialExecutor().submit(square_in_worker, x).result() for x in items]
    assert [value for value, _ in on_ray] == [value for value, _ in serial] == [1, 4, 9, 16]
    pids = {pid for _, pid in on_ray}
    assert len(pids) > 1
    assert os.getpid() not in pids
    assert ray_executor.slots == 2  # two CPUs, one per task: a study keeps two in flight


def test_submit_returns_a_future_of_the_value(ray_executor) -> None:
    futures = [ray_executor.submit(square_in_worker, x) for x in (5, 6)]
    assert [f.result(timeout=60)[0] for f in futures] == [25, 36]


def test_out_of_fold_on_ray_equals_serial(ray_executor) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 160)
    X = rng.normal(0, 1, (160, 4))
    X[:, 0] += 1.2 * y
    starts = np.arange(160) * 2
    split = purged_kfold(starts, starts + 4, n_folds=3, purge=1, embargo=2)
    make = partial(create, "logistic_regression", random_state=0)
    serial = out_of_fold(make, X, y, split, fold_bootstrap=20)
    on_ray = out_of_fold(make, X, y, split, fold_bootstrap=20, executor=ray_executor)
    np.testing.assert_array_equal(on_ray.oof_proba, serial.oof_proba)
    assert on_ray.fold_metrics == serial.fold_metrics


def test_a_task_whose_worker_dies_is_retried(ray_executor, tmp_path) -> None:
    marker = tmp_path / "attempt"
    assert list(ray_executor.map(dies_first_time, [str(marker)])) == ["second attempt"]
    assert marker.exists()  # the first attempt ran and died


def test_a_task_that_keeps_dying_is_reported_failed_with_the_reason(ray_executor) -> None:
    once = RayExecutor(None, max_retries=0)  # joins the running instance
    with pytest.raises(TaskFailed, match="worker process died") as caught:
        list(once.map(always_dies, [0]))
    assert caught.value.index == 0 and caught.value.attempts == 1
    assert caught.value.reason
    future = ray_executor.submit(always_dies, 0)  # retried once, then failed
    assert isinstance(future.exception(timeout=60), TaskFailed)
    once.shutdown()  # it did not start Ray: the instance stays up
    import ray

    assert ray.is_initialized()


def test_a_task_error_reaches_the_caller_as_itself(ray_executor) -> None:
    with pytest.raises(ConfigError, match="bad trial parameter") as caught:
        list(ray_executor.map(refuses, [0]))
    assert caught.value.param == "lr"


def test_an_unreachable_address_fails_fast_naming_it() -> None:
    # The port is tried first, with a timeout, instead of waiting on ray.init's retries.
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1:1 is unreachable") as caught:
        make_executor("ray", address="127.0.0.1:1")
    assert caught.value.param == "address"
    with pytest.raises(ConfigError, match="not 'auto' or HOST:PORT"):
        RayExecutor("nohostport").connect()


def test_bad_resource_requests_are_refused() -> None:
    with pytest.raises(ConfigError, match="cpus_per_task"):
        RayExecutor(None, cpus_per_task=-1).connect()


def _results(root: Path) -> list[dict]:
    lines = (root / "experiment_results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_moola_train_backend_ray_runs_the_folds_as_ray_tasks(ray_executor, tmp_path, capsys):
    """``moola train --backend ray`` (joining the running instance): the recorded run's
    out-of-fold metrics equal a serial run's."""
    registry = make_lab(tmp_path / "root")
    args = ["--data-root", str(registry.root), "train", "--model", "logistic_regression",
            "--dataset", "pat", "--split", "kf", "--bootstrap", "10"]  # fmt: skip
    assert run(capsys, *args)[0] == 0
    code, _, err = run(capsys, *args, "--backend", "ray")
    assert code == 0, err
    serial, on_ray = _results(registry.root)
    assert on_ray["metrics"] == serial["metrics"] and on_ray["run_id"] != serial["run_id"]


def test_moola_train_with_an_unreachable_ray_address_fails_and_writes_nothing(tmp_path, capsys):
    root = tmp_path / "root"
    code, _, err = run(
        capsys, "--data-root", str(root), "train", "--model", "logistic_regression",
        "--dataset", "pat", "--split", "kf", "--backend", "ray", "--address", "127.0.0.1:1",
    )  # fmt: skip
    assert code == 2 and "127.0.0.1:1 is unreachable" in err and "--address" in err
    assert not root.exists() or not any(root.rglob("*"))


def test_a_study_on_ray_gives_the_serial_study_s_trials(ray_executor, tmp_path) -> None:
    """Two trials in flight as Ray tasks on the 2-CPU instance: the same parameters and
    values as the same study run one at a time here, each trial a recorded run."""
    import optuna

    from moola.tune.space import parse_space
    from moola.tune.storage import storage_url
    from moola.tune.study import run_study
    from tests.tune._study_lab import logistic_space

    registry = make_lab(tmp_path / "root")
    space = parse_space(logistic_space())
    for name, executor in (("serial", None), ("on-ray", ray_executor)):
        result = run_study(
            registry, space, study=name, trials=2, sampler="random", seed=4, executor=executor
        )
        assert result.counts["complete"] == 2
    trials = {
        name: [
            (t.params, t.value)
            for t in optuna.load_study(
                study_name=name, storage=storage_url(registry.root, name, None)
            ).get_trials()
        ]
        for name in ("serial", "on-ray")
    }
    assert trials["on-ray"] == trials["serial"]
    lines = _results(registry.root)
    assert sorted((line["study"], line["trial"]) for line in lines) == [
        ("on-ray", 0), ("on-ray", 1), ("serial", 0), ("serial", 1),
    ]  # fmt: skip


def evaluate_after_a_death(payload):
    """A trial's work whose first attempt kills its worker process (marker per trial)."""
    from moola.tune.trial import evaluate_trial

    marker = Path(payload.root) / f"died-{payload.study}-{payload.number}"
    if not marker.exists():
        marker.write_text("attempted")
        os._exit(1)
    return evaluate_trial(payload)


def evaluate_never(payload):
    os._exit(1)


def test_moola_tune_run_on_ray_retries_a_trial_whose_worker_died_or_marks_it_failed(
    ray_executor, tmp_path, capsys, monkeypatch
) -> None:
    """Through ``moola tune run --backend ray`` (joining the running instance): a trial whose
    worker died once is run again and recorded; one whose worker dies on every attempt is
    a FAIL trial saying so; none is lost."""
    import optuna

    from moola.tune import study as study_module
    from moola.tune.storage import storage_url
    from tests.tune._study_lab import logistic_space, write_yaml

    registry = make_lab(tmp_path / "root")
    space = write_yaml(tmp_path / "space.yaml", logistic_space("fc"))
    root = registry.root
    args = ["--data-root", str(root), "tune", "run", "--space", str(space),
            "--sampler", "random", "--backend", "ray", "--cpus-per-task", "1"]  # fmt: skip
    monkeypatch.setattr(study_module, "evaluate_trial", evaluate_after_a_death)
    code, out, err = run(capsys, *args, "--study", "retried", "--trials", "2")
    assert code == 0, err
    assert "Study retried: 2 complete, 0 pruned, 0 failed" in " ".join(out.split())
    assert sorted(p.name for p in root.glob("died-*")) == ["died-retried-0", "died-retried-1"]
    lines = [line for line in _results(root) if line.get("study") == "retried"]
    assert sorted(line["trial"] for line in lines) == [0, 1]  # each recorded once

    monkeypatch.setattr(study_module, "evaluate_trial", evaluate_never)
    code, out, err = run(capsys, *args, "--study", "lost", "--trials", "1", "--max-retries", "0")
    assert code == 0, err
    assert "Study lost: 0 complete, 0 pruned, 1 failed" in " ".join(out.split())
    (trial,) = optuna.load_study(study_name="lost", storage=storage_url(root, "lost", None)).trials
    assert trial.state == optuna.trial.TrialState.FAIL
    assert "TaskFailed" in trial.user_attrs["error"]
    assert "worker process died on each of 1 attempt(s)" in trial.user_attrs["error"]
    assert not [line for line in _results(root) if line.get("study") == "lost"]


def test_moola_tune_passes_the_resource_request_to_each_ray_task(ray_executor) -> None:
    from moola.cli.tune import _executor

    executor = _executor("ray", 2, None, cpus_per_task=2.0, gpus_per_task=0.0, max_retries=0)
    assert (executor.cpus_per_task, executor.gpus_per_task, executor.max_retries) == (2.0, 0, 0)
    assert executor.slots == 1  # two CPUs in the instance, two per trial
    executor.shutdown()  # joined, not started: the instance stays up


def test_a_refused_join_says_how_to_pass_ray_s_token(monkeypatch) -> None:
    """``ray start`` clusters ask for a token (Ray >= 2.59); the message says what to set."""
    from moola.tune.ray_backend import _auth_hint

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert "set RAY_AUTH_MODE=token" in _auth_hint() and "RAY_AUTH_TOKEN" in _auth_hint()
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert "another token" in _auth_hint()


def test_moola_tune_run_joins_a_ray_head_by_address_and_records_every_trial(tmp_path) -> None:
    """The cluster path end to end: a Ray head (2 CPUs) started by ``ray start`` with
    token authentication, as a user starts one, and ``moola tune run --backend ray
    --address 127.0.0.1:PORT`` in another process joining it; the trials' runs come back
    to the driver and are recorded once each. Slow (a Ray head starts): the only test of
    joining a cluster by its address, which the issue asks for."""
    import secrets
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import tempfile

    from tests.tune._study_lab import logistic_space, write_yaml

    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        pytest.skip("Ray's command line is not installed beside this Python")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must be short
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--port", str(port), "--num-cpus", "2",
         "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
         "--disable-usage-stats", "--temp-dir", temp, "--block"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        registry = make_lab(tmp_path / "root")
        space = write_yaml(tmp_path / "space.yaml", logistic_space("fc"))
        driver = subprocess.run(
            [str(Path(sys.executable).with_name("moola")), "--data-root", str(registry.root),
             "tune", "run", "--space", str(space), "--study", "joined", "--trials", "2",
             "--sampler", "random", "--backend", "ray", "--address", f"127.0.0.1:{port}",
             "--parallel", "2"],
            env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert driver.returncode == 0, driver.stdout + driver.stderr
        assert "Study joined: 2 complete, 0 pruned, 0 failed" in " ".join(driver.stdout.split())
        lines = [line for line in _results(registry.root) if line.get("study") == "joined"]
        assert sorted(line["trial"] for line in lines) == [0, 1]
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # the head's own process group only
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=10)
        shutil.rmtree(temp, ignore_errors=True)
