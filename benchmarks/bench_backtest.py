"""Backtest benchmarks: signal backtests against a plain numpy pass over the same arrays.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/bench_backtest.py [--bars 1000000
10000000] [--event-bars 100000] [--no-memory]``).

For each size, a seeded random walk of 1-minute bars and a hysteresis signal (held ~30
bars on average) are built once; then, in the same run, these are timed (best of
``--repeats``):

- floor: the cheapest possible PnL pass, ``np.cumsum(np.diff(close) * position[:-1])``
  (no sizing, costs, latency or accounting); every other row is reported as a multiple
  of it;
- ``moola.sim.backtest_positions``: the compiled kernel with spread, slippage,
  commission, whole-unit sizing, fills and trades tables;
- ``moola.backtest.run`` (vectorised): the kernel plus input checks, statistics and the
  prop-firm rules (the full user-facing call);
- ``moola.backtest.positions_from_probabilities``: probabilities to positions.

The event engine runs on ``--event-bars`` bars. numba compile time is excluded: every
compiled function is called once on small inputs before timing. Targets (issue 15): the
full ``run()`` within 10x of the floor, and its peak memory on 1M bars under 250 MB.

Memory, two measures (column ``peak MB`` and the lines under the table):

- ``peak MB``: the ``tracemalloc`` peak of one call over what was allocated before it
  (numpy and pandas buffers included), i.e. the most memory the call itself held at
  once on top of its inputs. Deterministic; it counts ``np.empty`` pages never touched.
- RSS high-water of ``run()`` in a fresh subprocess (Linux): the process's resident set
  before the call (interpreter, imports, warmed-up numba, the inputs) and the high-water
  mark during it (``VmHWM`` after resetting it through ``/proc/self/clear_refs``); the
  difference is what the call added to the process's peak.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from _common import (  # benchmarks/ is on sys.path when run as scripts
    best_of,
    print_table,
    random_walk_bars,
)
from moola.backtest import positions_from_probabilities, run
from moola.sim import ExecutionConfig, backtest_positions

EXECUTION = ExecutionConfig(spread=0.01, slippage=1.0, commission=0.0002)
EVENT = EXECUTION.model_copy(update={"engine": "event"})
MB = 1e6


def _market(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bars, close = random_walk_bars(n, rng)
    # A persistent probability (AR(1) noise), so positions are held for tens of bars.
    noise = rng.normal(0.0, 1.0, n)
    z = pd.Series(noise).ewm(alpha=0.05, adjust=False).mean().to_numpy() * 6.0
    prob = 1.0 / (1.0 + np.exp(-z))
    return bars, prob, close


def _positions(prob: np.ndarray) -> np.ndarray:
    return positions_from_probabilities(
        prob, long_threshold=0.6, short_threshold=0.4, exit_threshold=0.5
    )


def _warm_up() -> None:
    bars, prob, _ = _market(2_000, seed=0)
    position = _positions(prob)
    run(bars, position, EXECUTION)
    run(bars, position, EVENT)


def _peak_mb(func: Callable[[], object]) -> float:
    """tracemalloc peak of one call of ``func`` above what was allocated before it, in MB."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = func()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del out
    return (peak - base) / MB


def _row(step: str, n: int, seconds: float, floor: float, peak: float | None) -> dict:
    return {
        "step": step,
        "bars": f"{n:,}",
        "seconds": seconds,
        "bars/s": n / seconds,
        "x floor": seconds / floor,
        "peak MB": "-" if peak is None else f"{peak:,.0f}",
    }


def bench_size(n: int, repeats: int, *, event: bool, memory: bool) -> list[dict]:
    bars, prob, close = _market(n, seed=1)
    position = _positions(prob)
    trades = int(np.count_nonzero(np.diff(position)))

    def peak(func: Callable[[], object]) -> float | None:
        return _peak_mb(func) if memory else None

    def floor_pass() -> np.ndarray:
        return np.cumsum(np.diff(close) * position[:-1])

    floor = best_of(repeats, floor_pass)
    rows = [_row(f"numpy floor ({trades:,} position changes)", n, floor, floor, peak(floor_pass))]
    if event:
        seconds = best_of(1, lambda: run(bars, position, EVENT))
        rows.append(_row("moola.backtest.run (event engine)", n, seconds, floor, None))
        return rows
    arrays = [bars[c].to_numpy() for c in ("open", "high", "low", "close", "volume")]

    def kernel() -> object:
        return backtest_positions(
            *arrays, position, EXECUTION, symbol="BENCH", timestamp=bars["timestamp"]
        )

    seconds = best_of(repeats, kernel)
    rows.append(_row("moola.sim.backtest_positions", n, seconds, floor, peak(kernel)))

    def full() -> object:
        return run(bars, position, EXECUTION)

    seconds = best_of(repeats, full)
    rows.append(_row("moola.backtest.run (vectorised)", n, seconds, floor, peak(full)))
    signals = best_of(repeats, lambda: _positions(prob))
    rows.append(_row("positions_from_probabilities", n, signals, floor, None))
    return rows


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _rss_child(n: int) -> None:
    """In a fresh process: RSS before ``run()`` on ``n`` bars and its high-water during it."""
    _warm_up()
    bars, prob, _ = _market(n, seed=1)
    position = _positions(prob)
    del prob
    gc.collect()
    before = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    result = run(bars, position, EXECUTION)
    peak = _status_mb("VmHWM")
    del result
    bars_mb = bars.memory_usage(deep=True).sum() / MB
    print(json.dumps({"bars": n, "bars_mb": bars_mb, "rss_before": before, "rss_peak": peak}))


def rss_in_subprocess(n: int) -> dict | None:
    """``_rss_child`` run in a fresh interpreter (``None`` where /proc is not Linux's)."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--event-bars", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measures")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        _rss_child(args.rss_child)
        return
    memory = not args.no_memory
    _warm_up()  # compile every numba function first: compile time is not measured
    rows: list[dict] = []
    for n in args.bars:
        rows += bench_size(n, args.repeats, event=False, memory=memory)
    rows += bench_size(args.event_bars, args.repeats, event=True, memory=memory)
    print_table(
        f"Signal backtests vs a numpy PnL pass (best of {args.repeats}; event engine: 1 run; "
        "numba warmed up; peak MB: tracemalloc peak of one call above its inputs)",
        rows,
    )
    if memory:
        for n in args.bars:
            rss = rss_in_subprocess(n)
            if rss is None:
                print("RSS high-water: needs Linux /proc; skipped.")
                break
            added = rss["rss_peak"] - rss["rss_before"]
            print(
                f"run() on {n:,} bars ({rss['bars_mb']:,.0f} MB of bars), fresh process: RSS "
                f"{rss['rss_before']:,.0f} MB before the call, high-water "
                f"{rss['rss_peak']:,.0f} MB during it (+{added:,.0f} MB)"
            )


if __name__ == "__main__":
    main()
