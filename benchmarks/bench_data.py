"""Data-layer benchmarks: ingest + validate throughput, and the memory cost of windows.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/bench_data.py [--bars N]``).

1. Ingest: N synthetic 1-minute bars (default 10M) are written to Parquet once; then, in the
   same run, the bare ``pandas.read_parquet`` of that file (the reference) is timed against
   moola's source reader + strict validation. Target: validation adds at most 1x the read.
2. Windows: 2.2M windows of 105 x 4 float32 over the bars; the memory that windowing adds
   on top of the bar array is measured with tracemalloc (numpy reports its buffers to it),
   against the 3.7 GB a materialised copy would take. Target: under 100 MB.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from _common import best_of, print_table  # benchmarks/ is on sys.path when run as scripts
from moola.data.sources import read_bars
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.data.validation import validate_bars
from moola.data.windows import WindowSet, window_starts


def bench_ingest(n_bars: int, repeats: int, workdir: Path) -> list[dict]:
    market = generate_market(
        SyntheticMarketConfig(seed=1, n_bars=n_bars, calendar="crypto", symbol="BENCH")
    )
    path = workdir / "bars.parquet"
    market.bars.to_parquet(path, index=False)
    del market
    gc.collect()
    read_s = best_of(repeats, lambda: pd.read_parquet(path))
    source_s = best_of(repeats, lambda: read_bars(path, format="parquet"))
    bars = read_bars(path, format="parquet")
    validate_s = best_of(repeats, lambda: validate_bars(bars, mode="strict"))
    total = source_s + validate_s
    return [
        {
            "step": "pandas.read_parquet (reference)",
            "seconds": read_s,
            "bars/s": n_bars / read_s,
            "x reference": 1.0,
        },
        {
            "step": "moola source reader (parquet)",
            "seconds": source_s,
            "bars/s": n_bars / source_s,
            "x reference": source_s / read_s,
        },
        {
            "step": "moola validate (strict)",
            "seconds": validate_s,
            "bars/s": n_bars / validate_s,
            "x reference": validate_s / read_s,
        },
        {
            "step": "ingest = read + validate",
            "seconds": total,
            "bars/s": n_bars / total,
            "x reference": total / read_s,
        },
    ]


def bench_windows(n_windows: int, length: int) -> list[dict]:
    n_bars = n_windows + length - 1
    market = generate_market(
        SyntheticMarketConfig(seed=2, n_bars=n_bars, calendar="crypto", symbol="BENCH")
    )
    bars = market.bars
    values = np.ascontiguousarray(bars[["open", "high", "low", "close"]].to_numpy(np.float32))
    bars_mb = values.nbytes / 1e6
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    starts = window_starts(bars, length)
    windows = WindowSet(values, starts, length)
    # Read a sample of windows in batches, as a training loop would.
    for batch in windows.iter_batches(4096, indices=np.arange(0, len(windows), 97)):
        assert np.isfinite(batch[:, -1, 3]).all()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    copy_mb = len(windows) * length * values.shape[1] * 4 / 1e6
    return [
        {"measure": "bar array (OHLC float32)", "MB": bars_mb},
        {
            "measure": f"windowing {len(windows):,} windows x {length}: peak added",
            "MB": (peak - before) / 1e6,
        },
        {"measure": "a materialised copy would be", "MB": copy_mb},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=10_000_000)
    parser.add_argument("--windows", type=int, default=2_200_000)
    parser.add_argument("--length", type=int, default=105)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print_table(
            f"Ingest + validate, {args.bars:,} 1m bars from Parquet (best of {args.repeats})",
            bench_ingest(args.bars, args.repeats, Path(tmp)),
        )
    print_table("Windows: memory added over the bars", bench_windows(args.windows, args.length))


if __name__ == "__main__":
    main()
