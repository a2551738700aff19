"""Backtest benchmarks: signal backtests against a plain numpy pass over the same arrays.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/bench_backtest.py [--bars 1000000
10000000] [--event-bars 100000]``).

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
compiled function is called once on small inputs before timing. Target: the vectorised
backtest within 5x of the floor.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from _common import (  # benchmarks/ is on sys.path when run as scripts
    best_of,
    print_table,
    random_walk_bars,
)
from moola.backtest import positions_from_probabilities, run
from moola.sim import (
    CommissionModel,
    ExecutionConfig,
    FixedBps,
    backtest_positions,
    equity_instrument,
)

COSTS = dict(spread=0.01, slippage=FixedBps(1.0), commission=CommissionModel(rate=0.0002))
EXECUTION = ExecutionConfig(spread=0.01, slippage=1.0, commission=0.0002)
EVENT = EXECUTION.model_copy(update={"engine": "event"})


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


def _row(step: str, n: int, seconds: float, floor: float) -> dict:
    return {
        "step": step,
        "bars": f"{n:,}",
        "seconds": seconds,
        "bars/s": n / seconds,
        "x floor": seconds / floor,
    }


def bench_size(n: int, repeats: int, *, event: bool) -> list[dict]:
    bars, prob, close = _market(n, seed=1)
    position = _positions(prob)
    trades = int(np.count_nonzero(np.diff(position)))
    floor = best_of(repeats, lambda: np.cumsum(np.diff(close) * position[:-1]))
    rows = [_row(f"numpy floor ({trades:,} position changes)", n, floor, floor)]
    if event:
        seconds = best_of(1, lambda: run(bars, position, EVENT))
        rows.append(_row("moola.backtest.run (event engine)", n, seconds, floor))
        return rows
    arrays = [bars[c].to_numpy() for c in ("open", "high", "low", "close", "volume")]
    instrument = equity_instrument("BENCH")
    kernel = best_of(
        repeats,
        lambda: backtest_positions(
            *arrays, position, instrument=instrument, timestamp=bars["timestamp"], **COSTS
        ),
    )
    rows.append(_row("moola.sim.backtest_positions", n, kernel, floor))
    full = best_of(repeats, lambda: run(bars, position, EXECUTION))
    rows.append(_row("moola.backtest.run (vectorised)", n, full, floor))
    signals = best_of(repeats, lambda: _positions(prob))
    rows.append(_row("positions_from_probabilities", n, signals, floor))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--event-bars", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    _warm_up()  # compile every numba function first: compile time is not measured
    rows: list[dict] = []
    for n in args.bars:
        rows += bench_size(n, args.repeats, event=False)
    rows += bench_size(args.event_bars, args.repeats, event=True)
    print_table(
        f"Signal backtests vs a numpy PnL pass (best of {args.repeats}; event engine: 1 run; "
        "numba warmed up)",
        rows,
    )


if __name__ == "__main__":
    main()
