"""What every benchmark script shares: best-of timing and the printed table."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from moola.data.schema import make_bars

LABEL_COLUMNS = ("step", "measure", "loop")


def best_of(repeats: int, func: Callable[[], object]) -> float:
    """Fastest of ``repeats`` timed calls (garbage collected before each): the least noisy."""
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def print_table(title: str, rows: list[dict]) -> None:
    """A wide rich table (not squeezed to the terminal) of benchmark rows."""
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column, justify="left" if column in LABEL_COLUMNS else "right")
    for row in rows:
        table.add_row(
            *(
                f"{v:,.0f}" if k == "bars/s" else f"{v:,.3f}" if isinstance(v, float) else str(v)
                for k, v in row.items()
            )
        )
    Console(width=max(Console().width, 140)).print(table)


def random_walk_bars(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` canonical 1-minute bars of a seeded random walk, and their closes."""
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 5e-4, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    wiggle = np.abs(rng.normal(0.0, 2e-4, n)) * close
    stamps = pd.date_range("2000-01-03", periods=n, freq="1min", tz="UTC")
    bars = make_bars(
        stamps,
        open_,
        np.maximum(open_, close) + wiggle,
        np.minimum(open_, close) - wiggle,
        close,
        rng.integers(1, 1_000, n).astype(np.float64),
        symbol="BENCH",
        timeframe="1m",
    )
    return bars, close
