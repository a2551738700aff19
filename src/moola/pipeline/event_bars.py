"""Directional-change bars stored as a raw dataset, so they window like any other bars.

DC bars used to be stored only as a features table, which ``moola data windows`` cannot
window. ``store_event_bars`` turns a raw version into canonical intrinsic-time bars (one
per event, see ``moola.features.dc.dc_event_bars``) and stores them as a new raw version
whose parent is the source version; the event thresholds are recorded as its
transformation. Window it with gaps allowed: event bars are irregular in clock time.
"""

from __future__ import annotations

from moola.core.errors import ConfigError
from moola.data._manifest import DatasetRef
from moola.data.registry import Registry
from moola.features.dc import dc_event_bars

__all__ = ["store_event_bars"]


def store_event_bars(
    registry: Registry, raw: DatasetRef, *, name: str, up: float, down: float | None = None
) -> DatasetRef:
    """Store ``raw``'s bars in intrinsic time (one bar per DC event) as ``raw/<name>``."""
    bars = registry.load_raw(raw.name, raw.version)
    events = dc_event_bars(bars, up=up, down=down)
    if len(events) < 2:
        raise ConfigError(
            f"{raw} gives {len(events)} directional-change event(s) at up={up:g}, "
            f"down={up if down is None else down:g}: too few bars to store. Use a smaller "
            "threshold or more bars."
        )
    params = {"up": up, "down": up if down is None else down}
    return registry.write_raw(
        name,
        events,
        sources=[{"dataset": raw.to_dict(), "generator": "moola.features.dc.dc_event_bars"}],
        transformations=[
            {"name": "dc_event_bars", "params": params, "clock": "intrinsic (one bar per event)"}
        ],
        parents=[raw],
    )
