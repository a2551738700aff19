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

Two feeds deliver them; the engine takes either (any iterable of :class:`FeedBar`):

* ``ReplayFeed`` replays stored bars (``--replay``).
* ``PollingFeed`` polls a live source (``CandleSource``: Coinbase Advanced Trade's public
  candles, ``moola.runtime.brokers.coinbase.CoinbasePublicMarket``) every
  ``poll_seconds``. Each poll first reads the *exchange's* clock, then asks each symbol
  for the bars after the last one it delivered; a bar is delivered only once it is closed
  by that clock (``timestamp + timeframe + settle_seconds <= exchange time``), so the
  forming bar the exchange also sends is never taken: a decision never sees a bar (nor a
  part of one) before it has closed. Per symbol, bars come in time order and never twice
  (a bar older than one already delivered is dropped, counted in ``dropped``); within a
  poll, symbols are interleaved by time as in a replay. A poll asks for everything since
  the last bar delivered (at most ``lookback_bars``), so a late or failed poll loses
  nothing; bars still missing (the source sends none for a period without trades, or an
  outage outlasted ``lookback_bars``) are a gap that ``GapCheck`` reports on the next bar.
  The first poll fetches ``lookback_bars`` closed bars (the warm-up of features and
  members; older than ``max_bar_age_seconds``, they are refused for trading as stale,
  judged by the exchange's clock).

Both also hand bars over in groups (``groups()``): the symbols' bars of one bar time, as
one list, so the engine decides them together and journals them in one transaction. A
group never waits on the future: ``ReplayFeed`` groups consecutive bars of equal time;
``PollingFeed`` hands over what one poll returned, split by bar time, without waiting for
the next poll (a symbol whose bar comes a poll late is a group of its own).

``open_feed(root, config, replay=...)`` builds the one a session asks for.
"""

from __future__ import annotations

import itertools
import logging
import time as _time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError, MoolaError, SourceError
from moola.core.timeframes import parse_timeframe
from moola.data.registry import Registry, parse_ref
from moola.data.sources import read_bars
from moola.data.validation import validate_bars
from moola.runtime.config import LiveConfig, StalenessConfig

__all__ = [
    "BAR_FIELDS",
    "CandleSource",
    "FeedBar",
    "GapCheck",
    "PollingFeed",
    "ReplayFeed",
    "group_by_time",
    "load_replay_bars",
    "open_feed",
]

log = logging.getLogger(__name__)

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
    Neither -> ``ConfigError`` naming ``source``.

    A file is checked as ``moola data ingest`` checks one (``validate_bars``, strict): a
    bar that cannot be (high below low, a negative or NaN price...) is refused before any
    session starts, naming the file and the row (``BarValidationError``); a stored raw
    dataset was checked when it was ingested."""
    path = Path(source)
    if path.is_file():
        bars = read_bars(path, timeframe=timeframe)
        return validate_bars(bars, mode="strict", source=str(path))[0]
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
        for group in self.groups(after):
            yield from group

    def groups(self, after: dict[str, pd.Timestamp] | None = None) -> Iterator[list[FeedBar]]:
        """The bars in order, one list per bar time: the symbols' bars that close together
        (consecutive bars of equal time, in config order), handed over at once so the
        engine decides them as one group. A group is built only when asked for: nothing
        of a later bar time is read (nor its age judged) before the group before it is
        handed over. ``after`` as in :meth:`bars`."""
        frame = self._bars
        stamps = frame["timestamp"]
        columns = {name: frame[name].to_numpy() for name in BAR_FIELDS[1:]}
        symbols = frame["symbol"].to_numpy()
        times = stamps.to_numpy()
        # where each run of equal bar times starts (the frame is sorted by time)
        starts = [0, *(np.flatnonzero(times[1:] != times[:-1]) + 1).tolist(), len(frame)]
        for first, end in itertools.pairwise(starts):
            group = []
            for i in range(first, end):
                symbol = str(symbols[i])
                time = stamps.iloc[i]
                if after and symbol in after and time <= after[symbol]:
                    continue
                bar: dict[str, Any] = {"timestamp": time}
                bar.update({name: float(columns[name][i]) for name in BAR_FIELDS[1:]})
                closed_at = time + self.step
                now = closed_at if self.clock is None else self.clock()
                refused = self.gaps.check(symbol, time, closed_at, now)
                group.append(FeedBar(symbol, bar, closed_at, refused))
            if group:
                yield group


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


def group_by_time(bars: Iterable[FeedBar]) -> Iterator[list[FeedBar]]:
    """``bars`` (already in hand, in delivery order) as lists of consecutive bars of
    equal bar time. It reads one bar past each group: give it what a source has already
    returned (a poll), never a feed that would wait for its next bar."""
    group: list[FeedBar] = []
    for fb in bars:
        if group and fb.time != group[0].time:
            yield group
            group = []
        group.append(fb)
    if group:
        yield group


# --------------------------------------------------------------------------- polling


class CandleSource(Protocol):
    """What :class:`PollingFeed` polls (``CoinbasePublicMarket`` speaks it)."""

    def server_time(self) -> pd.Timestamp:
        """The source's clock now (UTC): what decides which bars are closed."""
        ...

    def candles(
        self, product_id: str, start: Any, end: Any, granularity: str, *, now: Any
    ) -> pd.DataFrame:
        """Bars of ``product_id`` opening in ``[start, end)`` and closed at ``now``, oldest
        first, as a canonical bar table."""
        ...


class PollingFeed:
    """Closed bars of ``symbols`` polled from ``source`` (module docstring).

    Parameters
    ----------
    source : CandleSource
        Where bars come from (its ``close()``, if any, is called when the feed stops).
    symbols : sequence of str
    timeframe : str
        The bars' length (the source's granularity).
    staleness : StalenessConfig, optional
        The gap and age limits of :class:`GapCheck`.
    poll_seconds : float
        The wait between two polls.
    lookback_bars : int
        Closed bars the first poll fetches, and the most any poll fetches per symbol.
    settle_seconds : float
        A bar counts as closed this long after its end, by the source's clock.
    max_failed_polls : int
        Consecutive failed polls tolerated; the next failure raises ``SourceError``. The
        first poll may not fail: it raises at once.
    sleep : callable
        How to wait (``time.sleep``; tests pass one that moves a fake clock).
    clock : callable, optional
        ``now()`` for the age check; default: the source's clock at the poll.
    stop_when : callable, optional
        Asked before each wait; a reason it returns ends the feed (e.g. the kill switch).

    Stopping: the feed ends (``stop_reason`` says why) when ``stop_when`` gives a reason
    or on Ctrl-C (``KeyboardInterrupt``) while it waits or polls; a consumer that stops
    reading (``max_bars``, the kill switch at a bar) closes it. Either way the source is
    closed and nothing is left running.
    """

    def __init__(
        self,
        source: CandleSource,
        symbols: Sequence[str],
        timeframe: str,
        *,
        staleness: StalenessConfig | None = None,
        poll_seconds: float = 5.0,
        lookback_bars: int = 300,
        settle_seconds: float = 2.0,
        max_failed_polls: int = 10,
        sleep: Callable[[float], None] = _time.sleep,
        clock: Callable[[], pd.Timestamp] | None = None,
        stop_when: Callable[[], str | None] | None = None,
    ) -> None:
        if not symbols or len(set(symbols)) != len(symbols):
            raise ConfigError(f"symbols must be distinct and not empty; got {list(symbols)}.")
        for name, value in (("poll_seconds", poll_seconds), ("lookback_bars", lookback_bars),
                            ("max_failed_polls", max_failed_polls)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{name} must be positive; got {value!r}.", param=name)
        if isinstance(settle_seconds, bool) or not settle_seconds >= 0:
            raise ConfigError(f"settle_seconds must be >= 0; got {settle_seconds!r}.")
        self.source = source
        self.symbols = tuple(symbols)
        self.timeframe = timeframe
        self.step = parse_timeframe(timeframe)
        self.gaps = GapCheck(timeframe, staleness or StalenessConfig())
        self.poll_seconds = float(poll_seconds)
        self.lookback_bars = int(lookback_bars)
        self.settle = pd.Timedelta(seconds=float(settle_seconds))
        self.max_failed_polls = int(max_failed_polls)
        self.sleep = sleep
        self.clock = clock
        self.stop_when = stop_when
        #: Each symbol's last bar delivered (its open time).
        self.last: dict[str, pd.Timestamp] = {}
        #: Polls done, polls that failed in a row, bars dropped as older than one delivered.
        self.polls = 0
        self.failed_polls = 0
        self.dropped = 0
        #: Why the feed ended (None while it runs).
        self.stop_reason: str | None = None
        self._ready: deque[FeedBar] = deque()
        self._primed = False

    def __iter__(self) -> Iterator[FeedBar]:
        return self.bars()

    def prime(self) -> None:
        """Poll once now (the lookback), so a source that cannot be read fails before a
        session starts; its bars are delivered first."""
        if not self._primed:
            self._ready.extend(self._poll())
            self._primed = True

    def bars(self) -> Iterator[FeedBar]:
        """Closed bars as they close, until a stop (class docstring)."""
        polls = self._polls()
        try:
            for found in polls:
                yield from found
        finally:
            polls.close()

    def groups(self) -> Iterator[list[FeedBar]]:
        """The bars as :meth:`bars` delivers them, one list per bar time of each poll: what
        one poll returned, split by bar time, handed over at once -- never held back
        waiting for the next poll (a symbol whose bar of that time comes only with a
        later poll is a group of its own then)."""
        polls = self._polls()
        try:
            for found in polls:
                yield from group_by_time(found)
        finally:
            polls.close()

    def _polls(self) -> Iterator[list[FeedBar]]:
        """The newly closed bars of each poll (the primed one first), until a stop."""
        try:
            if not self._primed:
                self.prime()
            while True:
                if self._ready:
                    found = list(self._ready)
                    self._ready.clear()
                    yield found
                reason = self.stop_when() if self.stop_when is not None else None
                if reason:
                    self.stop_reason = reason
                    return
                self.sleep(self.poll_seconds)
                self._ready.extend(self._poll())
        except KeyboardInterrupt:
            self.stop_reason = "interrupted (Ctrl-C)"
        finally:
            self.close()

    def close(self) -> None:
        """Close the source (idempotent)."""
        closer = getattr(self.source, "close", None)
        if callable(closer):
            closer()

    # ------------------------------------------------------------------ one poll

    def _poll(self) -> list[FeedBar]:
        """One poll of every symbol: the newly closed bars, in order. A failure counts
        toward ``max_failed_polls`` and delivers nothing (the next poll asks again)."""
        self.polls += 1
        try:
            found = self._fetch()
        except MoolaError as exc:
            if not self._primed:
                raise SourceError(
                    f"the bar feed could not read its source ({self.source!r}): {exc} A "
                    "polling feed needs the network and the source's API; to trade stored "
                    "bars instead, replay a raw dataset NAME[@vN] or a bars file.",
                    param="replay",
                ) from None
            self.failed_polls += 1
            if self.failed_polls > self.max_failed_polls:
                raise SourceError(
                    f"the bar feed failed {self.failed_polls} polls in a row "
                    f"(max_failed_polls {self.max_failed_polls}); last: {exc}"
                ) from None
            log.warning(
                "bar feed poll %d failed (%d in a row, %d allowed): %s",
                self.polls,
                self.failed_polls,
                self.max_failed_polls,
                exc,
            )
            return []
        self.failed_polls = 0
        return found

    def _fetch(self) -> list[FeedBar]:
        now = pd.Timestamp(self.source.server_time())  # before the candles: no lookahead
        now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
        closed_by = now - self.settle
        end = closed_by.floor(self.step)  # a bar opening before this has closed
        earliest = end - self.lookback_bars * self.step
        rows: list[tuple[pd.Timestamp, int, str, dict[str, Any]]] = []
        for order, symbol in enumerate(self.symbols):
            last = self.last.get(symbol)
            start = earliest if last is None else max(last + self.step, earliest)
            if start >= end:
                continue
            frame = self.source.candles(symbol, start, end, self.timeframe, now=closed_by)
            for record in frame.to_dict("records"):
                time = pd.Timestamp(record["timestamp"])
                time = time.tz_localize("UTC") if time.tzinfo is None else time.tz_convert("UTC")
                if time + self.step > closed_by:
                    continue  # still forming (by the exchange's clock): never delivered
                if last is not None and time <= last:
                    self.dropped += 1  # delivered already, or older: never out of order
                    continue
                if time < start:
                    continue  # before the lookback: not asked for
                bar = {"timestamp": time}
                bar.update({name: float(record[name]) for name in BAR_FIELDS[1:]})
                rows.append((time, order, symbol, bar))
        rows.sort(key=lambda row: (row[0], row[1]))
        out = []
        for time, _, symbol, bar in rows:
            if symbol in self.last and time <= self.last[symbol]:
                self.dropped += 1  # a source that sent one bar twice
                continue
            closed_at = time + self.step
            judged = now if self.clock is None else self.clock()
            out.append(
                FeedBar(symbol, bar, closed_at, self.gaps.check(symbol, time, closed_at, judged))
            )
            self.last[symbol] = time
        return out


def open_feed(
    root: str | Path,
    config: LiveConfig,
    *,
    replay: str | None = None,
    sleep: Callable[[float], None] = _time.sleep,
    stop_when: Callable[[], str | None] | None = None,
) -> ReplayFeed | PollingFeed:
    """The bars a session of ``config`` trades: ``replay`` (a raw dataset ``NAME[@vN]`` or a
    bars file) when given, else the config's ``feed:`` section polled live (primed: a
    source that cannot be reached raises ``SourceError`` here, before anything starts).

    A replay runs on replayed time in paper mode; in live mode a bar's age is judged by the
    wall clock, so bars replayed from history are refused as stale and never reach a real
    broker. Neither a replay nor a ``feed:`` section: ``ConfigError``.
    """
    if replay is not None:
        bars = load_replay_bars(root, replay, config.timeframe)
        clock = None if config.mode == "paper" else (lambda: pd.Timestamp.now(tz="UTC"))
        return ReplayFeed(bars, config.symbols, config.timeframe, config.staleness, clock=clock)
    feed = config.feed
    if feed is None:
        raise ConfigError(
            "no bars to trade: replay a raw dataset NAME[@vN] or a bars file, or give a "
            "feed: section in the config to poll live bars (feed: {source: coinbase}).",
            param="replay",
        )
    from moola.runtime.brokers.coinbase import GRANULARITIES, CoinbasePublicMarket

    if config.timeframe not in GRANULARITIES:
        raise ConfigError(
            f"timeframe {config.timeframe!r}: Coinbase candles come in "
            f"{', '.join(GRANULARITIES)}; the feed cannot poll another length.",
            param="timeframe",
        )
    source = CoinbasePublicMarket.from_config(config.coinbase, sleep=sleep)
    polling = PollingFeed(
        source,
        config.symbols,
        config.timeframe,
        staleness=config.staleness,
        poll_seconds=feed.poll_seconds,
        lookback_bars=feed.lookback_bars,
        settle_seconds=feed.settle_seconds,
        max_failed_polls=feed.max_failed_polls,
        sleep=sleep,
        stop_when=stop_when,
    )
    try:
        polling.prime()
    except BaseException:
        polling.close()
        raise
    return polling
