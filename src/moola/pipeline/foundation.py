"""Zero-shot forecasts of a foundation model as a stored feature set of a raw dataset.

``forecast_feature_table(bars, backbone, ...)`` computes, for every bar ``t`` of every
symbol, the forecast return quantiles of the next ``horizon`` bars,
``Q_q(close[t + horizon]) / close[t] - 1`` (median and the other levels), from the window
of ``context`` closes ENDING at ``t``: the forecast at ``t`` reads bars ``t - context + 1
.. t`` of its own symbol and nothing after, so it is known at ``t``'s close like any
feature (proven by ``tests/test_fm_features.py``: cutting the bars after ``t``, or
changing them, changes nothing up to ``t``). The first ``context - 1`` bars of a symbol
have no full window: NaN (the set's lookback). It does no I/O.

``store_forecast_features(registry, raw, kind, path, ...)`` loads the raw bars and the
backbone (``moola.models.foundation.load_backbone``: a local folder, never a download),
computes the table and stores it as ``features/<name>`` with the backbone's kind, folder
and content hash in the meta and the manifest's transformations, so the stored features
name exactly the weights that made them.

Columns: ``fm_ret{horizon}_q{level}`` (level in percent, e.g. ``fm_ret5_q50``, the median).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError
from moola.data._manifest import DatasetRef
from moola.data.registry import Registry

if TYPE_CHECKING:
    from moola.models.foundation.base import Backbone

__all__ = [
    "DEFAULT_LEVELS",
    "forecast_columns",
    "forecast_feature_table",
    "store_forecast_features",
]

#: The median first, then the outer deciles and quartiles both forecasting kinds give.
DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.1, 0.25, 0.75, 0.9)
_BATCH = 512


def forecast_columns(horizon: int, levels: Sequence[float]) -> list[str]:
    """The feature columns for ``horizon`` and quantile ``levels`` (e.g. ``fm_ret5_q50``)."""
    return [f"fm_ret{horizon}_q{round(100 * level):02d}" for level in levels]


def _check_levels(levels: Sequence[float]) -> None:
    """Quantile levels: at least one, each strictly between 0 and 1, each once (one column
    per level; ``fm_ret5_q50`` names a level to the percent)."""
    if not len(levels):
        raise ConfigError("levels must name at least one quantile (e.g. 0.5).", param="levels")
    bad = [q for q in levels if not 0.0 < float(q) < 1.0]
    if bad:
        raise ConfigError(
            f"levels must lie strictly between 0 and 1 (0.5 is the median); got {bad}.",
            param="levels",
        )
    columns = [round(100 * float(q)) for q in levels]
    if len(set(columns)) != len(columns):
        raise ConfigError(
            f"levels {list(levels)} repeat a quantile (to the percent, which names the "
            "column); give each level once.",
            param="levels",
        )


def forecast_feature_table(
    bars: pd.DataFrame,
    backbone: Backbone,
    *,
    context: int = 64,
    horizon: int = 1,
    levels: Sequence[float] = DEFAULT_LEVELS,
    on_progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """``timestamp``, ``symbol`` and the forecast return quantiles per bar, in the bars'
    order (see the module docstring). ``on_progress(done, total)`` after each batch."""
    if context < 2:
        raise ConfigError(f"context must be >= 2 bars; got {context}.", param="context")
    if context > backbone.context_length:
        raise ConfigError(
            f"context {context} exceeds what the {backbone.kind} backbone at {backbone.path} "
            f"reads ({backbone.context_length} bars); use a shorter context.",
            param="context",
        )
    if horizon < 1:
        raise ConfigError(f"horizon must be >= 1; got {horizon}.", param="horizon")
    _check_levels(levels)
    missing = [c for c in ("timestamp", "symbol", "close") if c not in bars.columns]
    if missing:
        raise ConfigError(f"bars lack the column(s) {missing} the forecast features need.")
    close = bars["close"].to_numpy(np.float64)
    if not (np.isfinite(close).all() and (close > 0).all()):
        rows = np.flatnonzero(~(np.isfinite(close) & (close > 0)))[:5].tolist()
        raise ConfigError(f"close must be positive and finite; rows {rows} are not.")
    columns = forecast_columns(horizon, levels)
    out = np.full((len(bars), len(levels)), np.nan)
    # every bar with a full window of its own symbol's bars ending at it
    symbols = bars["symbol"].to_numpy()
    ends: list[np.ndarray] = []
    for symbol in pd.unique(symbols):
        rows = np.flatnonzero(symbols == symbol)
        if len(rows) and not (np.diff(rows) == 1).all():
            raise ConfigError(f"bars of symbol {symbol!r} are not contiguous rows; sort them.")
        ends.append(rows[context - 1 :])
    targets = np.concatenate(ends) if ends else np.empty(0, dtype=np.int64)
    offsets = np.arange(-context + 1, 1)
    order = np.argsort(levels, kind="stable")  # backbones take the levels ascending
    ascending = tuple(float(levels[i]) for i in order)
    for start in range(0, len(targets), _BATCH):
        at = targets[start : start + _BATCH]
        windows = close[at[:, None] + offsets[None, :]][:, :, None]  # (n, context, 1)
        quantiles = backbone.forecast(windows, horizon, ascending)[:, horizon - 1, :]
        out[np.ix_(at, order)] = quantiles / close[at][:, None] - 1.0
        if on_progress is not None:
            on_progress(min(start + _BATCH, len(targets)), len(targets))
    table = pd.DataFrame(out, columns=columns)
    table.insert(0, "symbol", bars["symbol"].to_numpy())
    table.insert(0, "timestamp", bars["timestamp"].to_numpy())
    return table


def store_forecast_features(
    registry: Registry,
    raw: DatasetRef,
    kind: str,
    path: str | Path,
    *,
    name: str,
    context: int = 64,
    horizon: int = 1,
    levels: Sequence[float] = DEFAULT_LEVELS,
    sha256: str | None = None,
    version: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> DatasetRef:
    """Compute the forecast features of ``raw`` with the ``kind`` backbone in folder
    ``path`` (its hash checked against ``sha256`` when given) and store them as
    ``features/<name>``; nothing is written if anything fails."""
    from moola.models.foundation import load_backbone

    backbone = load_backbone(kind, path, sha256=sha256)
    bars = registry.load_raw(raw.name, raw.version)
    table = forecast_feature_table(
        bars, backbone, context=context, horizon=horizon, levels=levels, on_progress=on_progress
    )
    columns = forecast_columns(horizon, levels)
    source = {"kind": kind, "path": str(backbone.path), "sha256": backbone.sha256}
    settings = {"context": context, "horizon": horizon, "levels": [float(q) for q in levels]}
    return registry.write_table(
        "features",
        name,
        table,
        parents=[raw],
        meta={
            "foundation": {**source, **settings},
            "columns": columns,
            "lookback": context - 1,
        },
        transformations=[
            {
                "name": "moola.pipeline.foundation.forecast_feature_table",
                "params": settings,
                "backbone": source,
            }
        ],
        version=version,
    )
