"""Fold executor benchmark: out-of-fold on a process pool against the serial default.

Run: ``.venv/bin/python benchmarks/bench_folds.py [--samples N] [--folds K] [--workers W]``.

``out_of_fold`` of ``random_forest`` (300 trees, one thread each) over a purged k-fold of
N tabular samples (20 features), run by ``SerialExecutor`` (the reference) and by a
``ProcessPoolExecutor`` of W spawned workers, best of ``--repeats``. The pool's time
includes starting its workers, as a run that makes its own pool pays it. Both runs must
give identical OOF probabilities (checked). The speed-up is bounded by the free cores:
on a 2-core machine shared with other jobs, expect well under W.
"""

from __future__ import annotations

import argparse
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np

from _common import best_of, print_table  # benchmarks/ is on sys.path when run as scripts
from moola.data.splits import purged_kfold
from moola.models import create
from moola.training.oof import SerialExecutor, out_of_fold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4_000)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, args.samples)
    X = rng.normal(0.0, 1.0, (args.samples, 20))
    X[:, 0] += y
    starts = np.arange(args.samples)
    split = purged_kfold(starts, starts + 10, n_folds=args.folds, purge=10, embargo=10)
    make = partial(create, "random_forest", random_state=0)
    results = {}

    def serial() -> None:
        results["serial"] = out_of_fold(
            make, X, y, split, fold_bootstrap=0, executor=SerialExecutor()
        )

    def pooled() -> None:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
            results["pool"] = out_of_fold(make, X, y, split, fold_bootstrap=0, executor=pool)

    reference = best_of(args.repeats, serial)
    pool_s = best_of(args.repeats, pooled)
    np.testing.assert_array_equal(results["serial"].oof_proba, results["pool"].oof_proba)
    print_table(
        f"out_of_fold, random_forest, {args.samples:,} samples, {args.folds} folds",
        [
            {"step": "SerialExecutor (reference)", "seconds": reference, "x reference": 1.0},
            {
                "step": f"ProcessPoolExecutor({args.workers}, spawn)",
                "seconds": pool_s,
                "x reference": pool_s / reference,
            },
        ],
    )


if __name__ == "__main__":
    main()
