"""Closed bars for the engine, one at a time, and the check that a bar is fit to trade on.

``ReplayFeed`` replays stored bars (a registry raw dataset ``NAME[@vN]`` or a bars file of
any format ``moola.data.sources.read_bars`` reads) as a live source would deliver them:
closed bars in the order their closes happen, all symbols interleaved by time (at one
close time, symbols in the order the config lists them). A bar is *closed* at
``timestamp + timeframe``; nothing later than that close is known when it is delivered.

Every bar goes to the engine (its features must see every bar), but a bar is *refused for
trading* -- recorded with the reason, naming the symbol and bar time -- when:

* it comes more than ``max_gap_bars`` bar lengths after its symbol's previous bar (bars
  are missing in between: the members would read a window with a hole in it), or
* its close is more than ``max_bar_age_seconds`` older than now (``clock``; in a replay,
  by default, the replayed time, so a replayed bar is never stale).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError, MoolaError
from moola.core.timeframes import parse_timeframe
from moola.data.registry import Registry, parse_ref
from moola.data.sources import read_bars
from moola.runtime.config import StalenessConfig

__all__ = ["BAR_FIELDS", "FeedBar", "GapCheck", "ReplayFeed", "load_replay_bars"]

#: The fields of a bar as the engine takes it.
BAR_FIELDS = ("timestamp", "open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class FeedBar:
    """One closed bar of ``symbol``: ``bar`` holds ``BAR_FIELDS`` (``timestamp`` is its open
    time, UTC); ``closed_at`` its close; ``refused`` why it must not be traded (None: fit)."""

    symbol: str
    bar: dict[str, Any]
    closed_at: pd.Timestamp
    refused: str | None = None

    @property
    def time(self) -> pd.Timestamp:
        return self.bar["timestamp"]


class GapCheck:
    """Refuses a bar after a gap in its symbol's bars, or older than the allowed age.

    ``check(symbol, time, closed_at, now) -> reason | None``; it remembers each symbol's
    last bar time (``last``), which the engine rebuilds from the journal on a restart.
    """

    def __init__(self, timeframe: str, staleness: StalenessConfig) -> None:
        self.step = parse_timeframe(timeframe)
        self.staleness = staleness
        self.last: dict[str, pd.Timestamp] = {}

    def check(
        self, symbol: str, time: pd.Timestamp, closed_at: pd.Timestamp, now: pd.Timestamp
    ) -> str | None:
        previous = self.last.get(symbol)
        self.last[symbol] = time
        reasons = []
        if previous is not None:
            bars_apart = (time - previous) / self.step
            if bars_apart > self.staleness.max_gap_bars:
                reasons.append(
                    f"gap: bar {symbol} {time.isoformat()} comes {bars_apart:g} bars after the "
                    f"previous one ({previous.isoformat()}); max_gap_bars is "
                    f"{self.staleness.max_gap_bars}"
                )
        age = (now - closed_at).total_seconds()
        if age > self.staleness.max_bar_age_seconds:
            reasons.append(
                f"stale: bar {symbol} {time.isoformat()} closed {age:g} s ago; "
                f"max_bar_age_seconds is {self.staleness.max_bar_age_seconds:g}"
            )
        return "; ".join(reasons) or None


def load_replay_bars(root: str | Path, source: str, timeframe: str | None = None) -> pd.DataFrame:
    """Bars of ``source``: an existing bars file (its bars ``timeframe`` long, when the file
    does not say), else a raw dataset ``NAME[@vN]`` of the registry under ``root``.
    Neither -> ``ConfigError`` naming ``source``."""
    path = Path(source)
    if path.is_file():
        return read_bars(path, timeframe=timeframe)
    try:
        name, version = parse_ref(source)
    except MoolaError:  # not a dataset reference either
        name, version = None, None
    registry = Registry(root)
    if name is None or not registry.versions("raw", name):
        raise ConfigError(
            f"replay source {source!r} is neither a bars file nor a raw dataset of the registry "
            f"under {root} (give a file path, or NAME[@vN] of a stored raw dataset).",
            param="replay",
        )
    return registry.load_raw(name, version)


class ReplayFeed:
    """Stored bars of ``symbols`` delivered as closed bars in time order (module docstring).

    Parameters
    ----------
    bars : DataFrame
        Canonical bars (``timestamp``, OHLCV, ``symbol``; a table without ``symbol`` is one
        symbol, taken to be ``symbols[0]``).
    symbols : sequence of str
        The symbols to deliver (each must have bars); others are skipped.
    timeframe : str
        Bar length (``"1m"``): a bar closes one length after its timestamp.
    staleness : StalenessConfig
        The gap and age limits.
    clock : callable, optional
        ``now()`` as a UTC timestamp; default: each bar's own close (replayed time).
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        symbols: Sequence[str],
        timeframe: str,
        staleness: StalenessConfig | None = None,
        clock: Callable[[], pd.Timestamp] | None = None,
    ) -> None:
        self.symbols = tuple(symbols)
        self.timeframe = timeframe
        self.step = parse_timeframe(timeframe)
        self.gaps = GapCheck(timeframe, staleness or StalenessConfig())
        self.clock = clock
        self._bars = _ordered(bars, self.symbols)

    def __len__(self) -> int:
        return len(self._bars)

    def __iter__(self) -> Iterator[FeedBar]:
        return self.bars()

    def bars(self, after: dict[str, pd.Timestamp] | None = None) -> Iterator[FeedBar]:
        """Closed bars in order; with ``after`` (symbol -> last bar time already processed),
        only the bars after it (a restarted session resumes where it stopped)."""
        frame = self._bars
        stamps = frame["timestamp"]
        columns = {name: frame[name].to_numpy() for name in BAR_FIELDS[1:]}
        symbols = frame["symbol"].to_numpy()
        for i in range(len(frame)):
            symbol = str(symbols[i])
            time = stamps.iloc[i]
            if after and symbol in after and time <= after[symbol]:
                continue
            bar: dict[str, Any] = {"timestamp": time}
            bar.update({name: float(columns[name][i]) for name in BAR_FIELDS[1:]})
            closed_at = time + self.step
            now = closed_at if self.clock is None else self.clock()
            refused = self.gaps.check(symbol, time, closed_at, now)
            yield FeedBar(symbol, bar, closed_at, refused)


def _ordered(bars: pd.DataFrame, symbols: tuple[str, ...]) -> pd.DataFrame:
    """``bars`` of ``symbols`` sorted by (timestamp, config order of symbol), checked."""
    missing_columns = [c for c in BAR_FIELDS if c not in bars.columns]
    if missing_columns:
        raise ConfigError(
            f"replay bars lack the column(s) {missing_columns}; bars need {list(BAR_FIELDS)}.",
            param="replay",
        )
    frame = bars.copy()
    if "symbol" not in frame.columns:
        frame["symbol"] = symbols[0]
    frame["symbol"] = frame["symbol"].astype(str)
    present = set(frame["symbol"].unique())
    absent = [s for s in symbols if s not in present]
    if absent:
        raise ConfigError(
            f"replay bars hold no bars of symbol(s) {absent} named in symbols; they hold "
            f"{sorted(present)}.",
            param="symbols",
        )
    frame = frame[frame["symbol"].isin(symbols)]
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    order = {s: i for i, s in enumerate(symbols)}
    frame["_order"] = frame["symbol"].map(order).astype(np.int64)
    frame = frame.sort_values(["timestamp", "_order"], kind="mergesort")
    duplicated = frame.duplicated(["timestamp", "symbol"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise ConfigError(
            f"replay bars hold bar {row['symbol']} {row['timestamp'].isoformat()} twice; a bar "
            "feed delivers each bar once.",
            param="replay",
        )
    return frame.drop(columns="_order").reset_index(drop=True)
