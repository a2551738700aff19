"""Tick events (trades and quotes) -> 1-second bars, with a session filter. No I/O.

The momentum trader works on uniform one-second timelines built from Databento trades and
quotes (``moola.data.sources.dbn`` reads the files; this module only computes). A bar
for second ``s`` (labelled by its open, ``s``, in UTC) is made from the events with
``s <= ts_event < s + 1 s`` and the state they leave behind, never from a later event:

- ``open``/``high``/``low``/``close``: first, highest, lowest and last trade price in the
  second; ``volume``: the sum of trade sizes; ``trades``: how many trades; ``vwap``: the
  size-weighted mean trade price.
- A second without trades is ``filled``: open = high = low = close = vwap = the last
  trade price before it, volume 0, trades 0.
- ``bid``/``ask``: the last quote known at the end of the second (the quote of the last
  quote event at or before it, within the same session; NaN before the session's first
  quote, or for a side the quote leaves empty); ``spread`` = ``ask - bid``.

Which seconds get a bar (the grid):

- Only events inside a session count: by default 04:00-20:00 America/New_York (US
  equities' extended hours, daylight saving included); ``session=None`` means the whole
  day, with UTC days as sessions. Events outside every session are dropped, quotes too.
- Only sessions holding at least one event get bars, so weekends and holidays stay
  empty. Within one, the grid starts at the session open when a trade price is already
  known (the last trade of an earlier session: the previous session kept for context
  carries its close into the new session's quiet first seconds), otherwise at the
  second of the first trade; it runs to the session close when the events go on past
  the close (the session is over), otherwise to the second of the last event (the data
  ends there; no bar is invented past it).
- ``first_session`` (a local date) keeps the sessions from that date on *and* the one
  session with events just before it, in full, as context: early-session features of
  the first requested day get a warm-up, and its first seconds carry the previous
  close. Events of older sessions are dropped before anything is computed, so the
  context session itself starts at its first trade.

No lookahead: cutting the events at any time ``t`` leaves every bar whose second ended
by ``t`` unchanged; the only bars the cut removes are trailing filled seconds after the
last event before ``t`` (whether the quiet continues is not known yet).
``tests/test_ticks.py`` checks it with hypothesis and at every cut of a dense tape.

Everything is vectorised with numpy (a day of a liquid name is millions of trades):
sorting by ``ts_event`` (Databento orders records by receive time, so event times can
step back slightly), one pass of ``reduceat`` per trade statistic over the per-second
runs, and ``searchsorted`` for session bounds, carried prices and quotes. Written here
rather than with ``pandas.resample`` because resampling knows neither sessions nor the
carry-but-flag rule, and is no faster for the part it does (``benchmarks/bench_ticks.py``).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator

from moola.core.errors import ConfigError
from moola.data.schema import BAR_COLUMNS, EXTRA_COLUMNS, constant_strings

#: Columns of a tick-bar table: the canonical bar columns, then the tick statistics (all
#: of ``moola.data.schema.EXTRA_COLUMNS``, so a raw dataset can store them as they are).
TICK_BAR_COLUMNS: tuple[str, ...] = (*BAR_COLUMNS, *EXTRA_COLUMNS)
#: US equities' extended hours, the momentum trader's day.
US_EQUITIES_SESSION: tuple[dt.time, dt.time] = (dt.time(4, 0), dt.time(20, 0))
US_EQUITIES_TIMEZONE = "America/New_York"

_NS = 1_000_000_000
_DAY_NS = 86_400 * _NS


class TickBarConfig(BaseModel):
    """How events become 1-second bars (see the module docstring for the rules).

    ``session``: (open, close) local wall-clock times in ``timezone``, whole seconds; a
    close at or before the open means the session starts the evening before (futures'
    18:00-17:00), and is labelled by the date it closes on. ``None``: all hours, UTC days.
    ``first_session``: the first local session date wanted (the session before it is kept
    as context); ``None`` keeps every session.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    session: tuple[dt.time, dt.time] | None = US_EQUITIES_SESSION
    timezone: str = US_EQUITIES_TIMEZONE
    first_session: dt.date | None = None

    @field_validator("session", mode="before")
    @classmethod
    def _parse_text(cls, value: object) -> object:
        return parse_session(value) if isinstance(value, str) else value

    @field_validator("session")
    @classmethod
    def _whole_seconds(cls, value: tuple[dt.time, dt.time] | None):
        if value is not None and any(t.microsecond or t.tzinfo for t in value):
            raise ValueError("session times are whole seconds without a time zone")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as 'America/New_York'"
            ) from None
        return value


def parse_session(text: object) -> tuple[dt.time, dt.time] | None:
    """``"04:00-20:00"`` -> ``(time(4), time(20))``; ``"24h"``, ``"all"`` or ``None`` -> None."""
    if text is None:
        return None
    value = str(text).strip().lower()
    if value in ("24h", "all", "none"):
        return None
    parts = value.split("-")
    try:
        if len(parts) != 2:
            raise ValueError
        opens, closes = (dt.time.fromisoformat(part.strip()) for part in parts)
    except ValueError:
        raise ConfigError(
            f"session={text!r} is not a session. Write it as 'HH:MM-HH:MM' in the session "
            "time zone (e.g. '04:00-20:00' for US equities, '18:00-17:00' for an overnight "
            "futures session), or '24h' for all hours."
        ) from None
    return opens, closes


def ticks_to_bars(
    ts_event: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    *,
    symbol: str,
    trade: np.ndarray | None = None,
    bid: np.ndarray | None = None,
    ask: np.ndarray | None = None,
    config: TickBarConfig | None = None,
) -> pd.DataFrame:
    """One instrument's events -> 1-second bars with the ``TICK_BAR_COLUMNS``.

    Parameters
    ----------
    ts_event : integer array
        Event times, UTC nanoseconds since the epoch (any order; sorted stably here).
    price, size : float arrays
        Trade price and size of each event (ignored where ``trade`` is False).
    symbol : str
        The instrument's name, for the ``symbol`` column.
    trade : bool array, optional
        Which events are trades (default: every event with a finite price). Book updates
        of an mbp-1 feed are events with quotes but no trade.
    bid, ask : float arrays, optional
        The best bid and ask after (mbp-1) or just before (tbbo) the event; NaN where the
        event carries no quote. An event with either side is a quote event. Without
        them the quote columns are NaN.
    config : TickBarConfig, optional
        Session filter and first session; default 04:00-20:00 America/New_York.

    Returns a table sorted by time (``timeframe`` "1s"; ``trades`` int64, ``filled``
    bool). Raises ``ConfigError`` naming the parameter for arrays of different lengths,
    times that are not integers or before 1970, or sizes that are NaN or negative on trades.
    """
    config = config or TickBarConfig()
    ts = np.asarray(ts_event)
    if ts.ndim != 1 or not np.issubdtype(ts.dtype, np.integer):
        raise ConfigError(
            f"ts_event must be a 1-d array of integer UTC nanoseconds, not {ts.dtype} "
            f"of shape {ts.shape}."
        )
    n = len(ts)
    arrays = {"price": price, "size": size, "trade": trade, "bid": bid, "ask": ask}
    for name, values in arrays.items():
        if values is not None and len(values) != n:
            raise ConfigError(f"{name} has {len(values)} values but ts_event has {n}.")
    if ts.dtype == np.uint64 and n and ts.max() > np.iinfo(np.int64).max:
        raise ConfigError(
            f"ts_event holds undefined times (2**64 - 1) at positions "
            f"{np.flatnonzero(ts > np.iinfo(np.int64).max)[:5].tolist()}. Drop those events."
        )
    ts = ts.astype(np.int64, copy=False)
    if n and ts.min() < 0:
        raise ConfigError(
            f"ts_event holds times before 1970 at positions {np.flatnonzero(ts < 0)[:5].tolist()}; "
            "event times are UTC nanoseconds since the epoch."
        )
    price = np.asarray(price, dtype=np.float64)
    size = np.asarray(size, dtype=np.float64)
    is_trade = np.isfinite(price) if trade is None else np.asarray(trade, bool) & np.isfinite(price)
    bad = np.flatnonzero(is_trade & ~(size >= 0))
    if len(bad):
        raise ConfigError(
            f"size is NaN or negative on trades at positions {bad[:5].tolist()}. Trade sizes "
            "are counts of shares or contracts."
        )
    quotes = bid is not None or ask is not None
    none = np.full(n if quotes else 0, np.nan)
    bids = none if bid is None else np.asarray(bid, dtype=np.float64)
    asks = none if ask is None else np.asarray(ask, dtype=np.float64)

    # Sort once (Databento files are in receive order), then cut the sessions out by
    # searching their bounds in the sorted times: at most one gather per column.
    order = None
    if n > 1 and (ts[1:] < ts[:-1]).any():
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
    data_end = int(ts[-1]) if n else 0
    opens, closes, labels = _sessions(ts, config)
    lo = np.searchsorted(ts, opens, side="left")
    hi = np.searchsorted(ts, closes, side="left")
    present = _present(lo, hi, labels, config.first_session)
    counts = hi[present] - lo[present]
    keep = order
    if counts.sum() < n:
        positions = np.concatenate(
            [np.arange(lo[k], hi[k], dtype=np.int64) for k in present] or [np.zeros(0, np.int64)]
        )
        ts = ts[positions]
        keep = positions if order is None else order[positions]
    if keep is not None:
        price, size, is_trade = price[keep], size[keep], is_trade[keep]
        if quotes:
            bids, asks = bids[keep], asks[keep]
    ends = np.cumsum(counts)  # each present session's events: [ends - counts, ends)
    grid, grid_session = _grid(ts, is_trade, present, ends - counts, ends, opens, closes, data_end)
    if len(grid) == 0:
        return _frame(grid, {}, symbol)

    # Trades: one run per second; statistics by reduceat over the runs.
    if is_trade.all():  # a trades or tbbo feed
        t_ts, t_price, t_size = ts, price, size
    else:
        t_ts, t_price, t_size = ts[is_trade], price[is_trade], size[is_trade]
    t_sec = t_ts // _NS
    starts = np.flatnonzero(np.r_[True, t_sec[1:] != t_sec[:-1]])
    where = np.searchsorted(grid, t_sec[starts])
    filled = np.ones(len(grid), dtype=bool)
    filled[where] = False
    trades = np.zeros(len(grid), dtype=np.int64)
    trades[where] = np.diff(np.r_[starts, len(t_sec)])
    volume = np.zeros(len(grid))
    volume[where] = np.add.reduceat(t_size, starts)
    notional = np.add.reduceat(t_price * t_size, starts)

    # The last trade at or before each second's end: the close, and what a quiet second carries.
    last = np.searchsorted(t_ts, (grid + 1) * _NS, side="left") - 1
    close = t_price[last]
    open_, high, low, vwap = close.copy(), close.copy(), close.copy(), close.copy()
    open_[where] = t_price[starts]
    high[where] = np.maximum.reduceat(t_price, starts)
    low[where] = np.minimum.reduceat(t_price, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap[where] = np.where(volume[where] > 0, notional / volume[where], close[where])

    # Quotes: the last quote event up to each second's end, if it is in the same session.
    best_bid = np.full(len(grid), np.nan)
    best_ask = np.full(len(grid), np.nan)
    if quotes:
        quoted = np.isfinite(bids) | np.isfinite(asks)
        session = np.repeat(present, counts)
        q_ts, q_session = ts[quoted], session[quoted]
        q = np.searchsorted(q_ts, (grid + 1) * _NS, side="left") - 1
        known = q >= 0
        known[known] = q_session[q[known]] == grid_session[known]
        best_bid[known] = bids[quoted][q[known]]
        best_ask[known] = asks[quoted][q[known]]
    values = {
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "trades": trades,
        "vwap": vwap,
        "bid": best_bid,
        "ask": best_ask,
        "spread": best_ask - best_bid,
        "filled": filled,
    }
    return _frame(grid, values, symbol)


def _sessions(ts: np.ndarray, config: TickBarConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Session opens and closes (UTC ns, ascending, non-overlapping) and their local dates
    (as int64 days since the epoch), covering every event time in ``ts`` (sorted)."""
    if len(ts) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    if config.session is None:
        first, last = int(ts[0]) // _DAY_NS, int(ts[-1]) // _DAY_NS
        days = np.arange(first, last + 1, dtype=np.int64)
        return days * _DAY_NS, (days + 1) * _DAY_NS, days
    tz = ZoneInfo(config.timezone)
    span = pd.to_datetime([int(ts[0]), int(ts[-1])], unit="ns", utc=True).tz_convert(tz)
    dates = pd.date_range(
        span[0].date() - dt.timedelta(days=1), span[1].date() + dt.timedelta(days=2)
    )
    start, end = config.session
    overnight = (end.hour, end.minute, end.second) <= (start.hour, start.minute, start.second)
    opens = _local(dates - pd.Timedelta(days=int(overnight)), start, tz)
    closes = _local(dates, end, tz)
    days = (dates.to_numpy().astype("datetime64[D]").astype(np.int64)).astype(np.int64)
    return opens, closes, days


def _local(dates: pd.DatetimeIndex, at: dt.time, tz: ZoneInfo) -> np.ndarray:
    """``at`` wall-clock time on each of ``dates`` in ``tz``, as UTC ns (a time skipped by
    daylight saving moves forward; a repeated one is its first occurrence)."""
    offset = pd.Timedelta(hours=at.hour, minutes=at.minute, seconds=at.second)
    local = (dates + offset).tz_localize(
        tz, ambiguous=np.ones(len(dates), dtype=bool), nonexistent="shift_forward"
    )
    return local.tz_convert("UTC").as_unit("ns").asi8


def _present(
    lo: np.ndarray, hi: np.ndarray, labels: np.ndarray, first: dt.date | None
) -> np.ndarray:
    """The sessions kept, ascending: those holding events (``lo < hi``) dated ``first`` or
    later, and the last one before it that holds events (the context); all with events
    when ``first`` is None."""
    has = hi > lo
    if first is None:
        return np.flatnonzero(has)
    first_day = (np.datetime64(first, "D") - np.datetime64(0, "D")).astype(np.int64)
    wanted = has & (labels >= first_day)
    before = np.flatnonzero(has & (labels < first_day))
    if len(before):
        wanted[before[-1]] = True
    return np.flatnonzero(wanted)


def _grid(
    ts: np.ndarray,
    is_trade: np.ndarray,
    present: np.ndarray,
    begins: np.ndarray,
    ends: np.ndarray,
    opens: np.ndarray,
    closes: np.ndarray,
    data_end: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The bar seconds (UTC, ascending) and each one's session (see the module docstring
    for which seconds get a bar). Session ``present[i]`` holds the events
    ``begins[i]:ends[i]`` of the sorted ``ts``; ``data_end`` is the last event time before
    the session filter."""
    empty = np.zeros(0, dtype=np.int64)
    if not is_trade.any():
        return empty, empty
    first_trade = ts[np.argmax(is_trade)]
    seconds, owners = [], []
    for k, first, end_at in zip(present.tolist(), begins.tolist(), ends.tolist(), strict=True):
        # one step per session, not per event
        trade_at = first + int(np.argmax(is_trade[first:end_at]))
        if opens[k] > first_trade:
            begin = opens[k] // _NS
        elif is_trade[trade_at]:
            begin = ts[trade_at] // _NS
        else:
            continue
        end = closes[k] // _NS if data_end >= closes[k] else ts[end_at - 1] // _NS + 1
        if end > begin:
            seconds.append(np.arange(begin, end, dtype=np.int64))
            owners.append(np.full(end - begin, k, dtype=np.int64))
    if not seconds:
        return empty, empty
    return np.concatenate(seconds), np.concatenate(owners)


def _frame(grid: np.ndarray, values: dict[str, np.ndarray], symbol: str) -> pd.DataFrame:
    """The tick-bar table, built in one go (its columns are the canonical ones, in order,
    then the tick statistics)."""
    n = len(grid)
    empty = np.zeros(n)
    columns: dict[str, object] = {
        "timestamp": pd.Series(pd.to_datetime(grid * _NS, unit="ns", utc=True)),
        **{name: values.get(name, empty) for name in ("open", "high", "low", "close", "volume")},
        "symbol": constant_strings(symbol, n),
        "timeframe": constant_strings("1s", n),
        "trades": values.get("trades", np.zeros(n, dtype=np.int64)),
        **{name: values.get(name, empty) for name in ("vwap", "bid", "ask", "spread")},
        "filled": values.get("filled", np.zeros(n, dtype=bool)),
    }
    return pd.DataFrame(columns)
