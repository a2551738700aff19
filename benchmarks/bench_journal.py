"""Journal benchmark: recording a backtest's risk decisions, against plain JSON lines.

Run: ``.venv/bin/python benchmarks/bench_journal.py [--events N] [--repeats R]``.

``journal_risk`` of N denied orders into a fresh ``JsonlJournal`` (typed events, hash
chain, one locked write, one fsync and one anchored head for the batch) and reading them
back verified, against the floor: the same N plain dicts written as JSON lines with one
fsync. The chain, the typed events and the anchor are what the difference buys.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from _common import best_of, print_table  # benchmarks/ is on sys.path when run as scripts
from moola.tracking.journal import JsonlJournal
from moola.tracking.risk import BREACH_FIELDS, journal_risk


def _denials(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC"),
            "bar": range(n),
            "order_id": range(n),
            "requested_qty": 1.0,
            "accepted_qty": 0.0,
            "reason": "max_position: 2 units after the order, limit 1",
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = args.events
    denials, breaches = _denials(n), pd.DataFrame(columns=list(BREACH_FIELDS))
    rows = denials.astype({"timestamp": str}).to_dict("records")

    def floor() -> None:
        with tempfile.TemporaryDirectory() as root:
            path = Path(root) / "plain.jsonl"
            with open(path, "w") as handle:
                handle.write("".join(json.dumps(row) + "\n" for row in rows))
                handle.flush()
                os.fsync(handle.fileno())

    def write() -> None:
        with tempfile.TemporaryDirectory() as root:
            journal_risk(JsonlJournal(root), "backtest:bench/b", breaches, denials)

    with tempfile.TemporaryDirectory() as root:
        journal = JsonlJournal(root)
        journal_risk(journal, "backtest:bench/b", breaches, denials)
        read = best_of(args.repeats, lambda: journal.read("order_denied"))
        assert len(journal.read("order_denied")) == n
    base = best_of(args.repeats, floor)
    wrote = best_of(args.repeats, write)
    print_table(
        f"Journal: {n:,} denied orders (best of {args.repeats})",
        [
            {"step": "floor: plain JSON lines, one fsync", "seconds": base, "x floor": 1.0},
            {
                "step": "journal_risk (typed, chained, anchored)",
                "seconds": wrote,
                "x floor": wrote / base,
            },
            {"step": "read back, chain verified", "seconds": read, "x floor": read / base},
        ],
    )


if __name__ == "__main__":
    main()
