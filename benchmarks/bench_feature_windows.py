"""Feature-window dataset benchmark: memory over the feature table, and batch throughput.

Run: ``.venv/bin/python benchmarks/bench_feature_windows.py [--windows 1000000]
[--length 60] [--features 31] [--batches 400] [--repeats 2]``.

A feature table of 3 symbols x ``(windows / 3 + length - 1)`` rows x ``--features`` float32
columns (seeded random numbers: the memory and the copying do not depend on the values) is
made in memory with its ``FeatureWindows`` (every window inside one symbol, one int64
start, label and symbol each). Then, in the same run:

- memory: what ``FeatureWindowDataset(windows, with_symbol_id=True)`` allocates
  (``tracemalloc``: numpy and torch CPU buffers) and the process's resident set before it
  and its high-water mark over building it and drawing ``--batches`` batches (``VmHWM``
  after a reset through ``/proc/self/clear_refs``, Linux). The ratio reported is
  ``(table + windows' starts + dataset) / table`` (target under 1.2x); a materialised
  ``(N, L, F)`` copy is printed for scale and never made;
- throughput of ``--batches`` batches of 256 windows in a fixed shuffled order: the floor
  gathers each batch straight from the numpy windows (``WindowSet.take`` plus the labels,
  then ``torch.from_numpy``), against a ``DataLoader`` over the dataset with 0 and 2
  workers with ``FeatureWindowDataset.collate``, and 0 workers with torch's
  ``default_collate`` (which restacks the items one by one); best of ``--repeats`` epochs
  of those batches, persistent workers, their start-up and first epoch printed apart.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from _common import best_of, print_table  # benchmarks/ is on sys.path when run as scripts
from moola.data._manifest import DatasetRef
from moola.data.registry import FeatureWindows
from moola.data.windows import WindowSet
from moola.training.window_dataset import FeatureWindowDataset

MB = 1e6
BATCH = 256
SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")


def _status_mb(field: str) -> float | None:
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MB
    return None


def _reset_hwm() -> None:
    clear = Path("/proc/self/clear_refs")
    if clear.exists():
        clear.write_text("5")  # VmHWM back to the current RSS


def make_windows(n_windows: int, length: int, n_features: int, seed: int = 0) -> FeatureWindows:
    """``FeatureWindows`` over a random float32 table of 3 symbols, every window inside one."""
    rng = np.random.default_rng(seed)
    per_symbol = -(-n_windows // len(SYMBOLS))
    rows = per_symbol + length - 1
    values = rng.standard_normal((rows * len(SYMBOLS), n_features), dtype=np.float32)
    starts = np.concatenate(
        [k * rows + np.arange(per_symbol, dtype=np.int64) for k in range(len(SYMBOLS))]
    )
    windows = WindowSet(values, starts, length)
    windows.columns = tuple(f"f{j}" for j in range(n_features))
    symbols = np.repeat(np.array(SYMBOLS, dtype=object), per_symbol)
    stamps = pd.date_range("2024-01-01", periods=per_symbol, freq="1min", tz="UTC")
    ref = DatasetRef("labeled", "bench", 1, "")
    return FeatureWindows(
        ref=ref,
        features=DatasetRef("features", "bench", 1, ""),
        table=pd.DataFrame({"start": starts}),
        columns=windows.columns,
        X=windows,
        y=rng.integers(0, 3, starts.size).astype(np.int64),
        classes=("down", "flat", "up"),
        symbols=symbols,
        timestamps=np.tile(stamps.to_numpy(), len(SYMBOLS)),
    )


def _floor(windows: FeatureWindows, order: np.ndarray, batches: int) -> int:
    """Gather each batch from the numpy windows directly: the least any loader can do."""
    seen = 0
    for b in range(batches):
        idx = order[b * BATCH : (b + 1) * BATCH]
        x = torch.from_numpy(windows.X.take(idx))
        y = torch.from_numpy(windows.y[idx])
        seen += x.shape[0] + 0 * int(y[0])
    return seen


def _epoch(loader: DataLoader) -> int:
    seen = 0
    for x, _y in loader:
        seen += x.shape[0]
    return seen


def _loader(dataset: FeatureWindowDataset, workers: int, collate: bool = True) -> DataLoader:
    """Batches of 256 in the dataset's order; workers (the platform's default start
    method) stay up between epochs, so their start-up is timed apart."""
    return DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=False,
        num_workers=workers,
        persistent_workers=workers > 0,
        collate_fn=FeatureWindowDataset.collate if collate else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--length", type=int, default=60)
    parser.add_argument("--features", type=int, default=31)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)

    windows = make_windows(args.windows, args.length, args.features)
    n = len(windows)
    table_mb = windows.X.values.nbytes / MB
    starts_mb = windows.X.nbytes_overhead / MB
    labels_mb = windows.y.nbytes / MB
    symbols_mb = windows.symbols.nbytes / MB  # pointers to 3 shared str objects
    copy_mb = n * args.length * args.features * 4 / MB
    order = np.random.default_rng(1).permutation(n)  # made before RSS is read: not counted
    gc.collect()

    rss_before = _status_mb("VmRSS")
    _reset_hwm()
    tracemalloc.start()
    dataset = FeatureWindowDataset(windows, with_symbol_id=True)
    own = dataset.nbytes_overhead / MB - starts_mb - labels_mb  # what it does not share
    held = tracemalloc.get_traced_memory()[0] / MB
    peak = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    count = min(args.batches, n // BATCH)
    items = count * BATCH
    shuffled = FeatureWindowDataset(windows, order[:items])
    _epoch(_loader(shuffled, 0))
    rss_peak = _status_mb("VmHWM")
    ratio = (table_mb + starts_mb + labels_mb + held) / table_mb

    print(
        f"{n:,} windows of ({args.length}, {args.features}) float32 over {len(SYMBOLS)} "
        f"symbols; load average {os.getloadavg()[0]:.2f}"
    )
    memory_rows = [
        {"measure": "feature table", "MB": table_mb, "x table": 1.0},
        {
            "measure": "windows' starts (WindowSet)",
            "MB": starts_mb,
            "x table": starts_mb / table_mb,
        },
        {"measure": "windows' labels (y)", "MB": labels_mb, "x table": labels_mb / table_mb},
        {
            "measure": "windows' symbols (object array; the dataset keeps 1-byte ids)",
            "MB": symbols_mb,
            "x table": symbols_mb / table_mb,
        },
        {
            "measure": "dataset held (tracemalloc, after build)",
            "MB": held,
            "x table": held / table_mb,
        },
        {
            "measure": "dataset peak while built (tracemalloc)",
            "MB": peak,
            "x table": peak / table_mb,
        },
        {
            "measure": "table + starts + labels + dataset",
            "MB": table_mb + starts_mb + labels_mb + held,
            "x table": ratio,
        },
        {
            "measure": "materialised (N, L, F): not made",
            "MB": copy_mb,
            "x table": copy_mb / table_mb,
        },
    ]
    if rss_before is not None and rss_peak is not None:
        memory_rows.append(
            {
                "measure": f"RSS high-water over build + {count} batches",
                "MB": rss_peak - rss_before,
                "x table": (rss_peak - rss_before) / table_mb,
            }
        )
    print_table("Memory of the windows dataset", memory_rows)
    print(
        f"1.2x target (table + starts + labels + dataset): {ratio:.3f}x -> "
        f"{'met' if ratio < 1.2 else 'NOT met'}; the dataset's own arrays: {own:.3f} MB"
    )

    floor = best_of(args.repeats, lambda: _floor(windows, order, count))
    rows = [
        {
            "loop": "floor: numpy gather per batch",
            "seconds": floor,
            "windows/s": items / floor,
            "x floor": 1.0,
        }
    ]
    setups = [(0, False)] + [(workers, True) for workers in args.workers]
    for workers, collate in setups:
        loader = _loader(shuffled, workers, collate)
        started = time.perf_counter()
        _epoch(loader)  # workers start (and, with spawn, unpickle the table) here
        first = time.perf_counter() - started
        seconds = best_of(args.repeats, lambda loader=loader: _epoch(loader))
        rows.append(
            {
                "loop": f"DataLoader, {workers} workers, "
                f"{'dataset.collate' if collate else 'default_collate'} "
                f"(first epoch {first:.2f} s)",
                "seconds": seconds,
                "windows/s": items / seconds,
                "x floor": seconds / floor,
            }
        )
        del loader
    print_table(f"{count} batches of {BATCH}, shuffled order", rows)


if __name__ == "__main__":
    main()
