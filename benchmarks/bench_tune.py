"""Tuning benchmark: what a study costs over calling the training function directly, and
how many trials per minute 1, 2 and 4 parallel workers give (local processes and Ray).

Run: ``.venv/bin/python benchmarks/bench_tune.py [--trials K] [--epochs E] [--repeats R]
[--skip-ray] [--only overhead|throughput]``.

The lab: a synthetic market (``--bars`` 1-minute bars, ``--patterns`` planted windows of 40
bars), its labeled dataset and a forward-chaining split (train/val/test), in a temporary
data root. Every trial trains ``simple_lstm`` (hidden 16, ``--epochs`` epochs, no early
stopping) and records an ordinary run; the space tunes ``params.lr`` (log-uniform), which
does not change a trial's work.

1. **Per-trial overhead.** ``run_study`` (random sampler, no pruner, serial executor,
   SQLite storage under the data root) runs K trials; then, as the reference measured in
   the same run, the function a trial calls is called directly with the K trials' exact
   parameters (``load_training_data``, ``fit_and_score``, ``record_run``), and so is
   ``run_training`` (what ``moola train`` runs: the same plus epoch checkpoints).
   Overhead = (study wall - direct wall) / direct wall, target under 5%. The driver's own
   time (opening the study once; per trial: Optuna ask/tell, storage writes, payloads =
   the study's wall minus the time inside the trials) is printed too: unlike the
   difference of two walls it does not move with the machine's load. Each is measured
   ``--repeats`` times, interleaved, and the best kept; Optuna is imported before the
   clock starts (once per process, not per trial).
2. **Throughput.** The same study of ``--throughput-trials`` trials with 1, 2 and 4 trials
   in flight, on ``ProcessExecutor(n)`` and on a local Ray instance with n CPUs
   (``RayExecutor``); the workers are started and warmed (moola and Optuna imported)
   before the clock starts, so the figure is the trials' rate, not interpreter start-up.
   Best of ``--repeats`` studies per setting; trials per minute and the speed-up over one
   worker. The speed-up is bounded by the free cores:
   on 2 shared vCPUs, expect at most about 2.

``uptime``'s load average is printed with the table: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import print_table  # benchmarks/ is on sys.path when run as scripts


def warm(_: int) -> int:
    """A worker's first task: import what a trial imports, so start-up is off the clock."""
    import optuna  # noqa: F401

    import moola.pipeline.train
    import moola.tune.trial  # noqa: F401

    time.sleep(0.5)  # long enough that n warm-ups occupy n workers at once
    return os.getpid()


def make_lab(root: Path, bars: int, patterns: int) -> Any:
    from moola.data.registry import Registry
    from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw

    registry = Registry(root)
    raw, market = synthesize_raw(
        registry, "mkt", n_bars=bars, n_patterns=patterns, pattern_length=40, seed=3
    )
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc", purge=40, embargo=40)
    return registry


def space_of(epochs: int) -> Any:
    from moola.tune.space import parse_space

    return parse_space(
        {
            "run": {
                "kind": "train",
                "model": "simple_lstm",
                "dataset": "pat",
                "split": "fc",
                "n_bootstrap": 10,
                "calibration": "none",
                "params": {"epochs": epochs, "hidden": 16, "patience": None},
            },
            "objective": {"metric": "log_loss"},
            "params": {"params.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
        }
    )


def study_trials(registry: Any, name: str) -> list[Any]:
    import optuna

    from moola.tune.storage import storage_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage_url(registry.root, name, None))
    return [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]


def overhead(registry: Any, space: Any, trials: int, epochs: int, repeats: int) -> list[dict]:
    """Part 1: the study against direct run_training calls with the same parameters."""
    from moola.pipeline.train import (
        TrainConfig,
        fit_and_score,
        load_training_data,
        record_run,
        run_training,
    )
    from moola.tracking.runs import new_run_id
    from moola.tune.study import run_study

    base = {
        "model": "simple_lstm",
        "dataset": "pat",
        "split": "fc",
        "n_bootstrap": 10,
        "calibration": "none",
        "seed": 0,
    }

    def direct(lr: float) -> None:
        """What a trial trains and records, called directly: the data, fit_and_score (no
        checkpoints, as a trial), record_run."""
        params = {"epochs": epochs, "hidden": 16, "patience": None, "lr": lr}
        config = TrainConfig(**base, params=params)
        data = load_training_data(registry, config)
        record_run(registry, fit_and_score(config, data, registry=registry, run_id=new_run_id("d")))

    def moola_train(lr: float) -> None:
        """The same run as ``moola train`` runs it (epoch checkpoints on disk, then removed)."""
        params = {"epochs": epochs, "hidden": 16, "patience": None, "lr": lr}
        run_training(registry, TrainConfig(**base, params=params))

    import optuna  # noqa: F401  (imported once by any study: not a per-trial cost)

    direct(1e-3)  # warm-up, untimed: imports and first-call costs off every clock
    study_s = direct_s = train_s = setup = per_trial_driver = float("inf")
    for repeat in range(repeats):  # best of each, the repeats interleaved
        opened = datetime.now()  # naive local time, as Optuna stamps trials
        started = time.perf_counter()
        name = f"overhead{repeat}"
        run_study(registry, space, study=name, trials=trials, sampler="random", pruner="none")
        wall = time.perf_counter() - started
        done = study_trials(registry, name)
        inside = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
        opening = (min(t.datetime_start for t in done) - opened).total_seconds()
        study_s, setup = min(study_s, wall), min(setup, opening)
        per_trial_driver = min(per_trial_driver, (wall - inside - opening) / len(done))
        lrs = [trial.params["params.lr"] for trial in done]
        started = time.perf_counter()
        for lr in lrs:
            direct(lr)
        direct_s = min(direct_s, time.perf_counter() - started)
        started = time.perf_counter()
        for lr in lrs:
            moola_train(lr)
        train_s = min(train_s, time.perf_counter() - started)
    n = trials
    return [
        {"measure": "direct fit_and_score + record_run (reference)", "trials": n,
         "wall s": direct_s, "s/trial": direct_s / n, "vs direct": "-"},
        {"measure": "run_training (moola train: + checkpoints)", "trials": n, "wall s": train_s,
         "s/trial": train_s / n, "vs direct": f"{100 * (train_s - direct_s) / direct_s:+.1f}%"},
        {"measure": "run_study, serial (whole call)", "trials": n, "wall s": study_s,
         "s/trial": study_s / n, "vs direct": f"{100 * (study_s - direct_s) / direct_s:+.1f}%"},
        {"measure": "  driver: open/create the study (once)", "trials": n, "wall s": setup,
         "s/trial": setup / n, "vs direct": f"{100 * setup / direct_s:.1f}%"},
        {"measure": "  driver: ask/tell/payload per trial", "trials": n,
         "wall s": per_trial_driver * n, "s/trial": per_trial_driver,
         "vs direct": f"{100 * per_trial_driver * n / direct_s:.1f}%"},
    ]  # fmt: skip


def throughput(registry: Any, space: Any, trials: int, skip_ray: bool, repeats: int) -> list[dict]:
    """Part 2: trials per minute with 1, 2, 4 trials in flight."""
    from moola.tune.ray_backend import RayExecutor
    from moola.tune.study import run_study
    from moola.tune.trial import ProcessExecutor

    rows: list[dict] = []
    for backend in ("process", *(() if skip_ray else ("ray",))):
        first = None
        for n in (1, 2, 4):
            if backend == "process":
                executor: Any = ProcessExecutor(n)
                pids = {f.result() for f in [executor.submit(warm, i) for i in range(n)]}
            else:
                executor = RayExecutor(None, num_cpus=n).connect()
                pids = {f.result() for f in [executor.submit(warm, i) for i in range(n)]}
            walls = []
            for repeat in range(repeats):
                started = time.perf_counter()
                run_study(
                    registry, space, study=f"{backend}{n}r{repeat}", trials=trials,
                    sampler="random", pruner="none", executor=executor, parallel=n,
                )  # fmt: skip
                walls.append(time.perf_counter() - started)
            executor.shutdown()
            wall = min(walls)
            per_min = 60 * trials / wall
            first = first or per_min
            rows.append(
                {"measure": f"{backend}, {n} in flight ({len(pids)} warm workers)",
                 "trials": trials, "wall s": wall, "trials/min": per_min,
                 "speed-up": f"{per_min / first:.2f}x"}
            )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--throughput-trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--bars", type=int, default=30_000)
    parser.add_argument("--patterns", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--only", choices=("overhead", "throughput"), default=None)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # as each worker process does: compare like with like
    root = Path(tempfile.mkdtemp(prefix="bench_tune_"))
    try:
        registry = make_lab(root / "moola_data", args.bars, args.patterns)
        space = space_of(args.epochs)
        if args.only != "throughput":
            print_table(
                f"per-trial overhead of a study, simple_lstm, {args.epochs} epochs, best of "
                f"{args.repeats}",
                overhead(registry, space, args.trials, args.epochs, args.repeats),
            )
        if args.only != "overhead":
            print_table(
                "parallel trials (workers warm before timing)",
                throughput(registry, space, args.throughput_trials, args.skip_ray, args.repeats),
            )
        print(f"load average (1, 5, 15 min): {os.getloadavg()}; cpus: {os.cpu_count()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
