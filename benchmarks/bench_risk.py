"""Risk-rule benchmark: per-bar cost of ``pre_trade`` + ``update`` for the default rules.

Run: ``.venv/bin/python benchmarks/bench_risk.py [--bars 200000] [--repeats 3]``.

One seeded random walk of 1-minute bars is turned into an equity path (a 0.05x long
position, so no loss limit is breached and every rule does its full work on every bar)
once; then, in the same run, best of ``--repeats``:

- the default rule set (``ExecutionConfig().build_rules()``: the FTMO rules, days in
  Europe/Prague), streamed: per bar every rule's ``update(time, equity, fills)`` and,
  before one order per bar, every rule's ``pre_trade(order, state)``;
- the reference: a bare loop over the same bars making the same number of calls to a
  function that does nothing, so the difference is what the rules themselves cost;
- the same rule set on a path ten times shorter: a per-bar cost that does not grow with
  the path shows the update is O(1) (no recomputation of the series);
- in context, ``Broker.advance`` over the same bars with the default rules and with
  ``rules="none"`` (no orders): what the rules add to a broker step.

Target (issue 15): under 20 us per bar for ``pre_trade`` + ``update``. The streamed
verdicts are checked equal to the batch ``check`` before timing.
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
from moola.sim import Bar, Broker, BrokerState, ExecutionConfig, Fill, market

TARGET_US = 20.0


def _bars(n: int, seed: int) -> list[Bar]:
    frame, _ = random_walk_bars(n, np.random.default_rng(seed))
    times = list(pd.DatetimeIndex(frame["timestamp"]))
    cols = [frame[c].to_numpy(np.float64).tolist() for c in ("open", "high", "low", "close")]
    return [Bar(t, *row) for t, *row in zip(times, *cols, strict=True)]


def _path(n: int, seed: int) -> tuple[list, list[float], list[list[Fill]]]:
    rng = np.random.default_rng(seed)
    bars, close = random_walk_bars(n, rng)
    equity = 100_000.0 * (1.0 + 0.05 * (close / close[0] - 1.0))
    times = list(pd.DatetimeIndex(bars["timestamp"]))
    fills = [[] for _ in range(n)]
    for i in range(0, n, 390):  # one fill a session, so the trading-days rule counts
        fills[i] = [Fill(times[i], i, max(i - 1, 0), i + 1, "market", 1.0, 1.0, 0.0, "")]
    return times, equity.tolist(), fills


def _state(equity: float) -> BrokerState:
    return BrokerState(0, None, 10.0, equity, equity, (), equity, None, 100.0, 1.0)


def streamed(times, equity, fills) -> list:
    """The default rules, as the Broker calls them: update every bar, pre_trade per order."""
    streams = [rule.stream() for rule in ExecutionConfig().build_rules()]
    updates = [s.update for s in streams]
    checks = [s.pre_trade for s in streams]
    order, state = market(1.0), _state(equity[0])
    for t, e, f in zip(times, equity, fills, strict=True):
        for update in updates:
            update(t, e, f)
        for check in checks:
            check(order, state)
    return streams


def broker_advance(bars: list[Bar], rules: str) -> None:
    broker = Broker(ExecutionConfig(rules=rules), symbol="BENCH")
    for bar in bars:
        broker.advance(bar)
    if broker.state.halted is not None:
        raise SystemExit(f"the benchmark path breached a rule: {broker.state.halted}")


def _nothing(*args: object) -> None:
    return None


def bare(times, equity, fills) -> None:
    """The same loop and number of calls, to a function that does nothing."""
    k = len(ExecutionConfig().build_rules())
    updates = [_nothing] * k
    checks = [_nothing] * k
    order, state = market(1.0), _state(equity[0])
    for t, e, f in zip(times, equity, fills, strict=True):
        for update in updates:
            update(t, e, f)
        for check in checks:
            check(order, state)


def _verify(times, equity, fills) -> list[str]:
    series = pd.Series(equity, index=pd.DatetimeIndex(times))
    entries = pd.DataFrame({"entry_time": pd.DatetimeIndex([f[0].time for f in fills if f])})
    verdicts = []
    for stream in streamed(times, equity, fills):
        got, want = stream.result(), stream.rule.check(series, entries)
        if (got.passed, got.breach_time, got.breach_value) != (
            want.passed,
            want.breach_time,
            want.breach_value,
        ):
            raise SystemExit(f"{stream.rule.name}: streaming {got} != batch {want}")
        verdicts.append(f"{got.name} {'passed' if got.passed else 'failed'}")
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    long_path = _path(args.bars, seed=0)
    short_path = _path(max(args.bars // 10, 1), seed=0)
    print("Streamed == batch:", ", ".join(_verify(*long_path)))
    rows = []
    for step, func, path in (
        ("default rules: pre_trade + update", streamed, long_path),
        ("bare loop, same calls (reference)", bare, long_path),
        ("default rules, path 10x shorter", streamed, short_path),
    ):
        n = len(path[0])
        seconds = best_of(args.repeats, lambda f=func, p=path: f(*p))
        rows.append(
            {"step": step, "bars": f"{n:,}", "seconds": seconds, "us/bar": seconds / n * 1e6}
        )
    bars = _bars(args.bars, seed=0)
    for step, rules in (
        ("Broker.advance, default rules", "ftmo"),
        ("Broker.advance, no rules", "none"),
    ):
        seconds = best_of(args.repeats, lambda r=rules: broker_advance(bars, r))
        n = len(bars)
        rows.append(
            {"step": step, "bars": f"{n:,}", "seconds": seconds, "us/bar": seconds / n * 1e6}
        )
    ref = rows[1]["us/bar"]
    for row in rows:
        row["us/bar over reference"] = row["us/bar"] - ref
    print_table(f"Risk rules per bar ({len(ExecutionConfig().rules)} default rules)", rows)
    cost = rows[0]["us/bar"]
    verdict = "met" if cost < TARGET_US else "NOT met"
    print(f"Target (pre_trade + update under {TARGET_US:g} us per bar): {verdict} ({cost:.2f} us).")


if __name__ == "__main__":
    main()
