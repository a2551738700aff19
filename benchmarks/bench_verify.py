"""What verifying every byte costs a load: registry loads against a bare Parquet read.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/bench_verify.py [--gb 1.0]``).

A raw version of about ``--gb`` GB of 1-minute bars is stored once. In the same run, with
the file in the page cache (warm: the cost of hashing, not of the disk):

- reference: ``pandas.read_parquet(path)``, no check at all;
- ``Registry.load_raw``: resolve, manifest against the journal, ``meta.json`` against the
  manifest, every byte of the Parquet file hashed with XXH3-128, then parsed from the
  verified bytes. Target: under 10% over the reference;
- ``Registry.load_raw(full=True)``: the same with SHA-256 instead of XXH3;
- the two hashes alone over the file's bytes (GB/s).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xxhash

from _common import best_of, print_table  # benchmarks/ is on sys.path when run as scripts
from moola.data.registry import Registry
from moola.data.schema import make_bars

BYTES_PER_BAR = 41  # measured: Parquet of these random-walk bars


def _bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 5e-4, n)) * close
    stamps = pd.date_range("2010-01-01", periods=n, freq="1min", tz="UTC")
    return make_bars(
        stamps,
        open_,
        np.maximum(open_, close) + spread,
        np.minimum(open_, close) - spread,
        close,
        rng.integers(1, 100, n).astype(float),
        symbol="BENCH",
        timeframe="1m",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="Size of the raw version (GB).")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = int(args.gb * 1e9 / BYTES_PER_BAR)
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "moola_data")
        started = time.perf_counter()
        registry.write_raw("bench", _bars(n), sources=[{"generator": "bench_verify"}])
        written = time.perf_counter() - started
        path = registry.dataset_dir("raw", "bench", 1) / "bars.parquet"
        size = path.stat().st_size
        data = path.read_bytes()  # warm the page cache
        reference = best_of(args.repeats, lambda: pd.read_parquet(path))
        verified = best_of(args.repeats, lambda: registry.load_raw("bench"))
        full = best_of(args.repeats, lambda: registry.load_raw("bench", full=True))
        xxh = best_of(args.repeats, lambda: xxhash.xxh3_128_hexdigest(data))
        sha = best_of(args.repeats, lambda: hashlib.sha256(data).hexdigest())
    gb = size / 1e9
    rows = [
        {"step": "pandas.read_parquet (reference)", "seconds": reference, "vs reference": "1.00x"},
        {
            "step": "Registry.load_raw (XXH3 of every byte)",
            "seconds": verified,
            "vs reference": f"{verified / reference:.3f}x",
        },
        {
            "step": "Registry.load_raw(full=True) (SHA-256)",
            "seconds": full,
            "vs reference": f"{full / reference:.3f}x",
        },
        {"step": "XXH3-128 alone", "seconds": xxh, "vs reference": f"{gb / xxh:.1f} GB/s"},
        {"step": "SHA-256 alone", "seconds": sha, "vs reference": f"{gb / sha:.2f} GB/s"},
    ]
    print_table(
        f"Verified loads: {n:,} bars, {size / 1e6:,.0f} MB Parquet (written in {written:.1f} s); "
        "target: load_raw under 1.10x the reference",
        rows,
    )


if __name__ == "__main__":
    main()
