"""What every benchmark script shares: best-of timing and the printed table."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

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
