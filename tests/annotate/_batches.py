"""Small batches over a stored raw version, for the annotate store, commit and stats tests
(built by hand, so these tests do not depend on extraction)."""

from __future__ import annotations

from datetime import UTC, datetime

from moola.annotate.model import Batch, BatchKind, WindowRef, make_window_id
from moola.data.registry import Registry
from tests.conftest import random_walk_bars

LENGTH = 20


def store_raw(registry: Registry, n: int = 600, *, symbol: str = "ES", name: str = "es") -> str:
    """Store ``n`` 1-minute bars (from 2024-01-02 00:00 UTC) as ``raw/name``; ``name@vN``."""
    bars = random_walk_bars(n, symbol=symbol, start="2024-01-02")
    ref = registry.write_raw(name, bars, sources=[{"test": True}])
    return f"{ref.name}@v{ref.version}"


def make_batch(
    registry: Registry,
    raw: str,
    starts: list[int],
    *,
    name: str = "b1",
    kind: BatchKind = "normal",
    labeled: str | None = None,
    given: list[str] | None = None,
    length: int = LENGTH,
) -> Batch:
    """A batch of windows of ``raw`` starting at bar rows ``starts``."""
    name_, version = raw.split("@v")
    bars = registry.load_raw(name_, int(version))
    windows = []
    for i, start in enumerate(starts):
        first, last = bars["timestamp"].iloc[start], bars["timestamp"].iloc[start + length - 1]
        symbol = str(bars["symbol"].iloc[start])
        windows.append(
            WindowRef(
                window_id=make_window_id(raw, symbol, first, length),
                raw=raw,
                symbol=symbol,
                start_row=start,
                end_row=start + length - 1,
                start_ts=first,
                end_ts=last,
                length=length,
                suggestion="consolidation",
                suggestion_source="test",
                given_label=given[i] if given else None,
            )
        )
    return Batch(
        name=name,
        kind=kind,
        raw=raw,
        length=length,
        context=5,
        windows=tuple(windows),
        created_at=datetime(2024, 6, 1, tzinfo=UTC),
        strategy="test",
        labeled=labeled,
    )
