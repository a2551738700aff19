"""Broker benchmark: a hand loop over ``moola.sim.Broker`` against the event engine.

Run: ``.venv/bin/python benchmarks/bench_broker.py [--bars 200000] [--repeats 3]``.

One seeded random walk of 1-minute bars and one target-position series (held ~30 bars on
average) are built once; then, in the same run, each of these does the same work under one
``ExecutionConfig`` (spread, 1 bp slippage, 2 bps commission, latency 2 bars, whole-unit
sizing, two streaming rules: a daily loss limit with days in Europe/Prague and a total
loss limit, set wide so they never breach and do their full work on every bar), best of
``--repeats``:

- hand loop over ``Broker``: what an environment or a live loop writes: ``advance(bar)``,
  then on a target change size from ``state.equity`` and ``submit(market(...))``; the bars
  are handed over as ``Bar`` tuples built in the loop;
- ``EventEngine.run(TargetPositionStrategy)``: the event engine on the same bars and config
  (its broker streams the same rules; the reference; target: the hand loop at least as
  fast);
- ``backtest_positions``: the compiled vectorised path (no rules), for scale.

All three give the same equity to the bit (checked here before timing). Each step is
timed in wall-clock seconds and in CPU seconds of this process (``time.process_time``,
best of ``--repeats`` too): on a shared machine under load the CPU time is the steadier
figure, so the speed ratio is computed from it.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np
import pandas as pd

from _common import (  # benchmarks/ is on sys.path when run as scripts
    best_of,
    print_table,
    random_walk_bars,
)
from moola.sim import (
    Bar,
    Broker,
    EventEngine,
    ExecutionConfig,
    TargetPositionStrategy,
    backtest_positions,
    market,
)

EXECUTION = ExecutionConfig(
    instrument="equity",
    initial_cash=1_000_000.0,
    spread=0.01,
    slippage=1.0,
    commission=0.0002,
    latency_bars=2,
    engine="event",
    rules=[
        {"rule": "daily_loss_limit", "pct": 0.5, "timezone": "Europe/Prague"},
        {"rule": "total_loss_limit", "pct": 0.9},
    ],
)


def _market(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    bars, _ = random_walk_bars(n, rng)
    levels = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    target = np.repeat(levels[rng.integers(0, 5, n // 30 + 1)], 30)[:n]
    return bars, target


def hand_loop(bars: pd.DataFrame, target: np.ndarray) -> np.ndarray:
    """Step a Broker over the bars and return its equity per bar."""
    broker = Broker(EXECUTION, symbol="BENCH")
    inst = broker.instrument
    times = list(pd.DatetimeIndex(bars["timestamp"]))
    o, h = bars["open"].to_numpy().tolist(), bars["high"].to_numpy().tolist()
    lo, c = bars["low"].to_numpy().tolist(), bars["close"].to_numpy().tolist()
    v, f_all = bars["volume"].to_numpy().tolist(), target.tolist()
    prev = committed = 0.0
    for i in range(len(c)):
        broker.advance(Bar(times[i], o[i], h[i], lo[i], c[i], v[i]))
        f = f_all[i]
        if f != prev:
            prev = f
            dq = inst.units_for(f, broker.state.equity, c[i]) - committed
            if abs(dq) > inst.dust:
                committed += dq
                broker.submit(market(dq, tag="target"))
    return broker.result().equity


def event_engine(bars: pd.DataFrame, target: np.ndarray) -> np.ndarray:
    engine = EventEngine(bars, EXECUTION, symbol="BENCH")
    return engine.run(TargetPositionStrategy(target)).equity


def vectorised(bars: pd.DataFrame, target: np.ndarray) -> np.ndarray:
    arrays = [bars[c].to_numpy() for c in ("open", "high", "low", "close", "volume")]
    sim = backtest_positions(
        *arrays, target, EXECUTION, symbol="BENCH", timestamp=bars["timestamp"]
    )
    return sim.equity


def _best_cpu(repeats: int, func) -> float:
    """Fewest CPU seconds of ``repeats`` calls (garbage collected before each)."""
    spent = []
    for _ in range(repeats):
        gc.collect()
        start = time.process_time()
        func()
        spent.append(time.process_time() - start)
    return min(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    small, small_target = _market(2_000, seed=1)
    vectorised(small, small_target)  # numba compile, excluded from the timings
    bars, target = _market(args.bars, seed=0)
    reference = vectorised(bars, target)
    for name, func in (("hand loop", hand_loop), ("event engine", event_engine)):
        if not np.array_equal(func(bars, target), reference):
            raise SystemExit(f"{name} differs from the vectorised backtest")
    rows = []
    timings = {}
    for step, func in (
        ("hand loop over Broker", hand_loop),
        ("EventEngine.run (reference)", event_engine),
        ("backtest_positions (vectorised)", vectorised),
    ):
        seconds = best_of(args.repeats, lambda f=func: f(bars, target))
        cpu = _best_cpu(args.repeats, lambda f=func: f(bars, target))
        timings[step] = cpu
        rows.append({"step": step, "bars": f"{args.bars:,}", "seconds": seconds, "cpu s": cpu})
    ref = timings["EventEngine.run (reference)"]
    for row in rows:
        row["bars/s (cpu)"] = round(args.bars / row["cpu s"])
        row["speed vs event engine (cpu)"] = f"{ref / row['cpu s']:.2f}x"
    title = f"Broker hand loop vs event engine ({args.bars:,} bars, latency 2, costs, 2 rules)"
    print_table(title, rows)
    ratio = ref / timings["hand loop over Broker"]
    verdict = "met" if ratio >= 1.0 else "NOT met"
    print(f"Target (hand loop at least the event engine's speed): {verdict} ({ratio:.2f}x).")


if __name__ == "__main__":
    main()
