"""Extraction benchmark: 1,000 candidate windows from a 1M-bar raw version.

Run: ``.venv/bin/python benchmarks/bench_extract.py [--bars 1000000] [--n 1000]
[--length 105] [--repeats 3]``.

Issue 19's figure: extraction of 1,000 candidates from a 1M-bar raw version (target: a few
seconds). In one temp data root: a raw version of ``--bars`` seeded random-walk 1-minute
bars, a labeled dataset of 300 windows over it, 5 queued batches of 200 windows each
(drawn by ``extract_batch`` itself), 100 blacklisted spans of 201 bars, and keeper
history (the first queued batch graded: US-morning windows A, the rest D, which blacklists
them too), so the session weights are on. Then, best of ``--repeats``, seconds for:

- ``extract_batch (session)``: the whole call, ``n`` windows of ``length`` bars with 30
  context bars, session weights, suggestions, the batch written (and removed again, so
  every repeat starts from the same state);
- ``extract_batch (uniform)``: the same without session weights;
- ``extract_batch (uncertainty)`` with ``--uncertainty``: a logistic regression trained
  (3 purged folds) on the labeled windows scores a pool of ``5 n`` drawn windows, and
  k-center spreads the ``2 n`` least certain (over its standardised inputs);
- the parts, timed alone on the same data: ``load raw`` (registry read, every byte
  checked), ``occupied spans`` (labeled, queued, blacklist), ``free starts`` (window
  starts, context, the three occupancy masks), ``session weights`` (``session_codes`` on every
  free start and ``keeper_rates``), ``draw`` (keys, sort, non-overlap acceptance) and
  ``suggest`` (weak labels of the drawn windows).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import best_of, print_table, random_walk_bars  # benchmarks/ is on sys.path
from moola.annotate.extract import (
    _ns,
    draw_windows,
    extract_batch,
    free_starts,
    occupied_spans,
    session_weights,
)
from moola.annotate.model import NewAction
from moola.annotate.stats import keeper_rates, session_codes, session_of
from moola.annotate.store import BatchStore, batch_path
from moola.annotate.suggest import suggest
from moola.data.blacklist import add_entries, make_entry
from moola.data.registry import Registry
from moola.data.windows import labeled_windows_table
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.train import TrainConfig, run_training


def _setup(root: Path, bars_n: int, length: int) -> Registry:
    registry = Registry(root)
    rng = np.random.default_rng(0)
    bars, _ = random_walk_bars(bars_n, rng)
    raw = registry.write_raw("bench", bars, sources=[{"kind": "bench"}])
    starts = np.sort(rng.choice(np.arange(0, bars_n - length, length), 300, replace=False))
    labels = np.where(rng.random(300) < 0.3, "retracement", "consolidation")
    table = labeled_windows_table(bars, starts, length, labels.tolist())
    registry.write_labeled("bench-labeled", raw, table, length=length)
    stamps = bars["timestamp"]
    spans = rng.integers(0, bars_n - 500, 100)
    add_entries(
        root,
        [
            make_entry("BENCH", stamps.iloc[int(a)], stamps.iloc[int(a) + 200], "bench", "bench")
            for a in spans
        ],
    )
    for k in range(5):
        batch = extract_batch(
            registry, "bench", n=200, length=length, name=f"queued{k}", weights="uniform", seed=k
        )
        if k == 0:
            log = BatchStore(root, batch)
            sessions = session_of([w.start_ts for w in batch.windows])
            for window, session in zip(batch.windows, sessions, strict=True):
                wid = window.window_id
                if session == "us_morning":
                    log.record(NewAction(window_id=wid, kind="label", label="consolidation"))
                    log.record(NewAction(window_id=wid, kind="grade", grade="A"))
                else:
                    log.record(NewAction(window_id=wid, kind="grade", grade="D"))
    return registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--n", type=int, default=1_000)
    parser.add_argument("--length", type=int, default=105)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--uncertainty", action="store_true", help="time active learning too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "moola_data"
        started = time.perf_counter()
        registry = _setup(root, args.bars, args.length)
        print(f"setup: {time.perf_counter() - started:.1f} s")
        rows = []
        for weights in ("session", "uniform"):

            def extract(weights: str = weights) -> None:
                extract_batch(
                    registry, "bench", n=args.n, length=args.length, name="timed", weights=weights
                )
                batch_path(root, "timed").unlink()  # every repeat starts from the same state

            seconds = best_of(args.repeats, extract)
            rows.append({"step": f"extract_batch ({weights})", "seconds": seconds})
        if args.uncertainty:
            labeled = registry.resolve("labeled", "bench-labeled")
            make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3)
            config = TrainConfig(
                model="logistic_regression", dataset="bench-labeled", split="kf", n_bootstrap=5
            )
            run = run_training(registry, config).run_id

            def active() -> None:
                extract_batch(
                    registry,
                    "bench",
                    n=args.n,
                    length=args.length,
                    name="timed",
                    strategy="uncertainty",
                    run=run,
                )
                batch_path(root, "timed").unlink()

            seconds = best_of(args.repeats, active)
            rows.append({"step": "extract_batch (uncertainty)", "seconds": seconds})

        ref = registry.resolve("raw", "bench")
        bars = registry.load_raw("bench")
        occupied = occupied_spans(registry, ref)
        starts, _ = free_starts(bars, args.length, 30, occupied)
        times = _ns(bars["timestamp"])
        weights, _ = session_weights(keeper_rates(root), session_codes(times[starts]))
        drawn = draw_windows(starts, args.length, args.n, weights, np.random.default_rng(0))
        parts = {
            "load raw": lambda: registry.load_raw("bench"),
            "occupied spans": lambda: occupied_spans(registry, ref),
            "free starts": lambda: free_starts(bars, args.length, 30, occupied),
            "session weights": lambda: session_weights(
                keeper_rates(root), session_codes(times[starts])
            ),
            "draw": lambda: draw_windows(
                starts, args.length, args.n, weights, np.random.default_rng(0)
            ),
            "suggest": lambda: suggest(bars, drawn, args.length),
        }
        for step, func in parts.items():
            rows.append({"step": step, "seconds": best_of(args.repeats, func)})
        print_table(
            f"extract {args.n} windows of {args.length} bars from {args.bars:,} bars "
            f"({len(starts):,} free starts)",
            rows,
        )


if __name__ == "__main__":
    main()
