"""Seed repeats (``moola train --seeds``, issue 20): the same config trained once per
seed, each an ordinary recorded run sharing one repeat id, summarised over the seeds; run
serially, in local processes or as Ray tasks with the same results."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from moola.cli import train as train_commands
from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.pipeline.train import TrainConfig, run_seed_repeats
from moola.tracking.runs import RunStore
from moola.tune.executors import make_fold_executor
from tests.cli_harness import bare_cli
from tests.tune._study_lab import make_lab

# A small forest: its trees depend on the seed, so the seeds' metrics differ; fast.
CONFIG = TrainConfig(
    model="random_forest",
    dataset="pat",
    split="kf",
    n_bootstrap=10,
    params={"n_estimators": 8},
)

app = bare_cli(train_commands.app)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    return make_lab(tmp_path_factory.mktemp("repeats") / "moola_data")


def _lines(registry: Registry, repeat_id: str) -> list[dict]:
    return [
        line for line in RunStore(registry.root).results() if line.get("repeat_of") == repeat_id
    ]


@pytest.fixture(scope="module")
def serial(registry):
    return run_seed_repeats(registry, CONFIG, [0, 1, 2])


def test_three_seeds_give_three_runs_with_one_repeat_id(registry, serial):
    lines = _lines(registry, serial.repeat_id)
    assert [line["seed"] for line in lines] == [0, 1, 2]
    assert [line["run_id"] for line in lines] == [run.run_id for run in serial.runs]
    assert len({line["run_id"] for line in lines}) == 3
    for run, seed in zip(serial.runs, (0, 1, 2), strict=True):
        assert run.manifest["repeat_of"] == serial.repeat_id
        assert run.manifest["seed"] == seed == run.manifest["config"]["seed"]
        assert run.manifest["config"]["dataset"] == "pat@v1"  # pinned: every seed, one data
    # the seed reached the model: the forests differ
    assert len({line["metrics"]["log_loss"] for line in lines}) > 1


def test_summary_is_numpys_over_the_recorded_metrics(registry, serial):
    lines = _lines(registry, serial.repeat_id)
    for metric in ("accuracy", "log_loss"):
        recorded = np.array([line["metrics"][metric] for line in lines], dtype=float)
        summary = serial.summary[metric]
        assert summary["mean"] == pytest.approx(np.mean(recorded))
        assert summary["std"] == pytest.approx(np.std(recorded, ddof=1))
        assert (summary["min"], summary["max"], summary["n"]) == (
            recorded.min(),
            recorded.max(),
            3,
        )


def test_local_processes_give_the_serial_results(registry, serial):
    executor = make_fold_executor("process", workers=2)
    try:
        spread = run_seed_repeats(registry, CONFIG, [0, 1, 2], executor=executor)
    finally:
        executor.shutdown()
    assert spread.repeat_id != serial.repeat_id
    assert spread.values == serial.values
    assert [run.manifest["seed"] for run in spread.runs] == [0, 1, 2]


def test_a_repeated_seed_is_refused_before_anything_is_written(registry):
    before = len(RunStore(registry.root).results())
    with pytest.raises(ConfigError, match="Seed 1 is given more than once"):
        run_seed_repeats(registry, CONFIG, [1, 2, 1])
    assert len(RunStore(registry.root).results()) == before


def test_cli_trains_each_seed_and_prints_the_table(registry):
    ran = CliRunner().invoke(
        app,
        ["--data-root", str(registry.root), "train", "--model", "random_forest",
         "--dataset", "pat", "--split", "kf", "--bootstrap", "10",
         "--params", '{"n_estimators": 8}', "--seeds", "3,4"],
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    repeat_id = next(
        line["repeat_of"] for line in reversed(RunStore(registry.root).results())
        if "repeat_of" in line
    )  # fmt: skip
    lines = _lines(registry, repeat_id)
    assert [line["seed"] for line in lines] == [3, 4]
    mean = np.mean([line["metrics"]["accuracy"] for line in lines])
    assert repeat_id in ran.output.replace("\n", "")
    assert f"{mean:.4f}" in ran.output


def test_cli_refuses_seeds_with_seed_or_resume(registry):
    ran = CliRunner().invoke(
        app,
        ["--data-root", str(registry.root), "train", "--model", "random_forest",
         "--dataset", "pat", "--split", "kf", "--seed", "1", "--seeds", "3,4"],
    )  # fmt: skip
    assert ran.exit_code != 0
    assert "--seeds" in str(ran.exception or ran.output)


def test_seeds_as_ray_tasks_give_the_serial_results(registry, serial):
    """The seeds as Ray tasks on a local 2-CPU Ray instance (workers compute, this driver
    records): the serial repeat's metrics, seed for seed."""
    pytest.importorskip("ray")
    from moola.tune.ray_backend import RayExecutor

    executor = RayExecutor(None, num_cpus=2, max_retries=1).connect()
    try:
        on_ray = run_seed_repeats(registry, CONFIG, [0, 1, 2], executor=executor)
    finally:
        executor.shutdown()
    assert on_ray.values == serial.values
    assert [line["seed"] for line in _lines(registry, on_ray.repeat_id)] == [0, 1, 2]
