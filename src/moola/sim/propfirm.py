"""Prop-firm challenge rules, checked on an equity curve (batch) and bar by bar (streaming).

The rules know nothing about any backtester: the backtest checks them after a run, and the
broker (so the environment and the live runtime) streams them on every bar. Each rule is a
frozen dataclass whose batch form is ``check(equity, trades) -> RuleResult`` (its streaming
form, ``stream()``, is described below); ``equity`` is a time-indexed
``pd.Series`` (tz-aware, or naive UTC) and ``trades`` the table of
``moola.sim.portfolio.TRADE_COLUMNS`` (only :class:`MinimumTradingDays` reads it).

``RuleResult.breach_time`` / ``breach_value`` are the first moment the rule's threshold was
crossed and the measured value then: a violation for the loss limits, the achievement for
:class:`ProfitTarget` and :class:`MinimumTradingDays`. Touching a loss limit exactly is
not a breach; the equity must fall strictly below it.

Limits of what an equity series can show: it is sampled at bar closes, so an intrabar dip
that recovered by the close is invisible (pass a worst-case series built from lows/highs
to be stricter). The "start-of-day balance" is the equity of the last point before the day
began (the initial balance on the first day); it equals the broker's balance when no
position is held over the day boundary. Days are calendar days in ``timezone``; FTMO resets
at midnight CE(S)T, i.e. ``timezone="Europe/Prague"``, which ``FTMO_DEFAULTS`` uses.
The series' index is used as given (for bar-close equity on open-time stamps, shift it by
the bar length first if day boundaries matter to the minute).

Streaming form. Each rule's :meth:`Rule.stream` returns a fresh, stateful checker for one
run (the rule itself stays a frozen set of parameters, safe to share): ``update(time,
equity, fills) -> Breach | None`` is called once per bar in time order, ``pre_trade(order,
state) -> list[str]`` before each order (reasons; empty = allowed) and ``result()`` gives
the :class:`RuleResult` that ``check`` would give on the points seen so far, to the bit
(``moola.testing.check_rule`` proves it on random paths). An update costs O(1): running
extremes and one start-of-day balance per calendar day, never a pass over the series.
Only a loss limit returns a :class:`Breach` (once, at the first bar below the limit); a
goal reached (profit target, trading days) is reported by ``result()``, not as a breach.
"""

from __future__ import annotations

import datetime as _dt
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np
import pandas as pd

from moola.core.errors import ConfigError


@dataclass(frozen=True)
class RuleResult:
    """Outcome of one rule: ``limit`` is the rule's threshold in the units of
    ``breach_value`` (a fraction, or a number of days)."""

    name: str
    passed: bool
    breach_time: pd.Timestamp | None
    breach_value: float | None
    limit: float
    detail: str


@dataclass(frozen=True)
class Breach:
    """A loss limit crossed while streaming: the event that halts a broker.

    ``value`` is the measured loss (a fraction) and ``limit`` the rule's threshold."""

    rule: str
    time: pd.Timestamp
    value: float
    limit: float
    detail: str


class Rule(ABC):
    """A risk rule: :meth:`check` judges a finished equity curve (batch) and
    :meth:`stream` gives a fresh checker of the same rule for one run, bar by bar."""

    name: str = "rule"

    @abstractmethod
    def check(self, equity: pd.Series, trades: pd.DataFrame | None = None) -> RuleResult:
        """Evaluate the rule on ``equity`` (time-indexed) and optionally ``trades``."""

    def stream(self) -> RuleStream:
        """A fresh stateful checker: ``update``, ``pre_trade`` and ``result`` (module notes).

        A rule written with ``check`` alone still judges finished curves; a broker refuses
        it here, since it could not enforce it bar by bar."""
        raise ConfigError(
            f"{type(self).__name__} has no streaming form, so a Broker cannot check it "
            "before orders and on every bar; implement stream() (see moola.sim.propfirm) "
            "or judge it on the finished equity curve with evaluate_rules."
        )


class RuleStream(ABC):
    """The streaming form of one rule for one run (module notes)."""

    rule: Rule

    @abstractmethod
    def update(self, time: Any, equity: float, fills: Sequence[Any] = ()) -> Breach | None:
        """Take the equity marked at ``time`` (and the bar's fills); the first time a loss
        limit is crossed return the :class:`Breach`, else ``None``."""

    def pre_trade(self, order: Any, state: Any) -> list[str]:
        """Reasons to refuse ``order`` (empty: allowed): a breached limit refuses all."""
        breach = getattr(self, "breach", None)
        return [] if breach is None else [f"{breach.rule} breached: {breach.detail}"]

    @abstractmethod
    def result(self) -> RuleResult:
        """What ``rule.check`` gives on the points seen so far."""

    def state(self) -> dict[str, Any]:
        """The stream's running values as JSON, for a process that must carry on after a
        restart (the live runtime's risk gate); :meth:`load_state` puts them back."""
        raise NotImplementedError(f"{type(self).__name__} cannot save its running values.")

    def load_state(self, saved: Mapping[str, Any]) -> None:
        """Carry on from :meth:`state` of a stream of the same rule."""
        raise NotImplementedError(f"{type(self).__name__} cannot restore running values.")


def _json_float(value: float | None) -> float | str | None:
    """A float as JSON: non-finite values as strings (JSON has no infinity)."""
    if value is None:
        return None
    return value if math.isfinite(value) else repr(value)


def _float_of(value: float | str | None) -> float | None:
    return None if value is None else float(value)


def _breach_json(breach: Breach | None) -> dict[str, Any] | None:
    if breach is None:
        return None
    return {
        "rule": breach.rule,
        "time": pd.Timestamp(breach.time).isoformat(),
        "value": _json_float(breach.value),
        "limit": breach.limit,
        "detail": breach.detail,
    }


def _breach_from(data: Mapping[str, Any] | None) -> Breach | None:
    if data is None:
        return None
    value = _float_of(data["value"])
    return Breach(
        data["rule"], pd.Timestamp(data["time"]), math.nan if value is None else value,
        float(data["limit"]), data["detail"],
    )  # fmt: skip


def _hit_json(hit: tuple[Any, ...] | None) -> list[Any] | None:
    if hit is None:
        return None
    return [pd.Timestamp(hit[0]).isoformat(), *(_json_float(v) for v in hit[1:])]


def _hit_from(data: Sequence[Any] | None) -> tuple[Any, ...] | None:
    if data is None:
        return None
    return (pd.Timestamp(data[0]), *(_float_of(v) for v in data[1:]))


def _check_saved(stream: RuleStream, saved: Mapping[str, Any], keys: frozenset[str]) -> None:
    if not isinstance(saved, Mapping) or set(saved) != keys:
        got = sorted(saved) if isinstance(saved, Mapping) else type(saved).__name__
        raise ConfigError(
            f"Saved state of {stream.rule.name} holds {got}; expected {sorted(keys)} (what "
            "state() gave)."
        )


def _finite(value: Any, rule: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{rule}.update: equity {number} is not finite; repair the mark.")
    return number


def _ns(time: Any) -> int:
    """Nanoseconds since the epoch in UTC (a naive time is UTC, as in ``_validated``)."""
    return time.value if type(time) is pd.Timestamp else pd.Timestamp(time).value


def _utc_stamp(time: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(time)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


def _ratio(num: float, den: float) -> float:
    """``num / den`` with numpy's float semantics for a zero denominator."""
    if den:
        return num / den
    return math.nan if num == 0 else math.copysign(math.inf, num) * math.copysign(1.0, den)


class _DayClock:
    """The calendar day of one stamp at a time, numbered as :func:`_local_days` numbers
    it (local wall-clock days since 1970-01-01), in O(1): one UTC-offset look-up, and
    within a day none. The UTC span of the last day is kept when the offset is the same
    at both its ends (every day but a clock change's, as changes are days apart), so a
    stamp inside it costs two compares."""

    def __init__(self, timezone: str) -> None:
        try:
            self._zone = pd.Timestamp(0, tz=timezone).tz  # the tz object pandas itself uses
        except Exception as exc:
            raise ConfigError(
                f"Unknown timezone {timezone!r}; use an IANA name such as 'UTC' or 'Europe/Prague'."
            ) from exc
        self._utc = timezone == "UTC"
        self._start = self._end = 0  # UTC span [start, end) of the cached day
        self._day = 0

    def day(self, ns: int) -> int:
        if self._start <= ns < self._end:
            return self._day
        if self._utc:
            return ns // _NS_PER_DAY
        offset = self._offset(ns)
        day = (ns + offset) // _NS_PER_DAY
        start, end = day * _NS_PER_DAY - offset, (day + 1) * _NS_PER_DAY - offset
        if self._offset(start) == offset and self._offset(end - 1) == offset:
            self._start, self._end, self._day = start, end, day
        return day

    def _offset(self, ns: int) -> int:
        """The zone's UTC offset at ``ns`` (to the second), in nanoseconds."""
        local = _dt.datetime.fromtimestamp(ns // 1_000_000_000, self._zone)
        offset = local.utcoffset()
        return 0 if offset is None else (offset // _dt.timedelta(microseconds=1)) * 1000


_NS_PER_DAY = 86_400_000_000_000


def _validated(equity: pd.Series) -> pd.Series:
    if not isinstance(equity, pd.Series) or not isinstance(equity.index, pd.DatetimeIndex):
        raise ConfigError(
            "Prop-firm rules need equity as a pd.Series indexed by timestamps; use "
            "SimResult.equity_frame().set_index('timestamp')['equity']."
        )
    if equity.empty:
        raise ConfigError("The equity series is empty; run the backtest on at least one bar.")
    values = equity.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ConfigError(f"Equity is not finite at row {row}; repair the equity series.")
    index = equity.index if equity.index.tz is not None else equity.index.tz_localize("UTC")
    return pd.Series(values, index=index, copy=False)  # read only: no copy needed


def _local_days(index: pd.DatetimeIndex, timezone: str) -> np.ndarray:
    """Calendar day of each stamp in ``timezone``, as int64 days since 1970-01-01 there."""
    try:
        local = index.tz_convert(timezone)
    except Exception as exc:
        raise ConfigError(
            f"Unknown timezone {timezone!r}; use an IANA name such as 'UTC' or 'Europe/Prague'."
        ) from exc
    wall = local.tz_localize(None).as_unit("ns").asi8  # local wall-clock times
    return np.floor_divide(wall, _NS_PER_DAY)


class BarDays:
    """The calendar day of each bar's open and of its close, per time zone, worked out once
    per run and shared by every check that needs it.

    A backtest judges its rules twice on the same bars: on close times (the batch verdicts
    in ``stats["prop_firm"]``) and on open times (the breach table, stamped as the broker
    labels bars). Converting a million stamps to local wall time costs more than the
    kernel, so the open times are converted once per zone and a close time that is the
    next bar's open (every bar but one before a gap, and the last) reuses that bar's day;
    only the others are converted. The numbers are those of :func:`_local_days`, exactly.

    ``opens`` and ``closes`` are UTC indexes of the same length (``closes`` may be
    ``opens`` itself when bar lengths are unknown).
    """

    def __init__(self, opens: pd.DatetimeIndex, closes: pd.DatetimeIndex) -> None:
        if len(opens) != len(closes):
            raise ConfigError(
                f"BarDays: {len(opens)} open times but {len(closes)} close times; "
                "give one close per bar."
            )
        self.opens = opens
        self.closes = closes
        self._open_days: dict[str, np.ndarray] = {}
        self._close_days: dict[str, np.ndarray] = {}

    def opens_in(self, timezone: str) -> np.ndarray:
        """Day of each open time in ``timezone`` (int64 local days since 1970-01-01)."""
        days = self._open_days.get(timezone)
        if days is None:
            days = self._open_days[timezone] = _local_days(self.opens, timezone)
        return days

    def closes_in(self, timezone: str) -> np.ndarray:
        """Day of each close time in ``timezone``: the next open's day where the close
        is that open, converted where not."""
        if self.closes is self.opens:
            return self.opens_in(timezone)
        days = self._close_days.get(timezone)
        if days is not None:
            return days
        opens = self.opens_in(timezone)
        days = np.empty_like(opens)
        days[:-1] = opens[1:]
        apart = np.flatnonzero(self.closes.asi8[:-1] != self.opens.asi8[1:])
        rest = np.append(apart, len(opens) - 1)  # closes before a gap, and the last
        days[rest] = _local_days(self.closes[rest], timezone)
        self._close_days[timezone] = days
        return days


_UNSORTED = -2


@numba.njit(cache=True)
def _sorted_days_pass(previous, values, days, pct, initial, on_sod, sod):  # pragma: no cover
    """One pass of :meth:`DailyLossLimit.check` over days in time order: writes each
    row's start-of-day balance (``previous`` at the day's first row) into ``sod`` and
    returns the first row where ``values < sod - pct * base`` (the same operations, in the
    same order, as the numpy form), -1 for none, or ``_UNSORTED`` when a day goes back."""
    hit = -1
    current = previous[0]
    for i in range(values.shape[0]):
        if i > 0 and days[i] != days[i - 1]:
            if days[i] < days[i - 1]:
                return _UNSORTED
            current = previous[i]
        sod[i] = current
        base = current if on_sod else initial
        if hit < 0 and values[i] < current - pct * base:
            hit = i
    return hit


def _first_of_group(keys: np.ndarray) -> np.ndarray:
    """For each row, the row where its key first appeared (keys in any order)."""
    if keys.size and np.all(keys[1:] >= keys[:-1]):  # time order, the usual case
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        return np.repeat(starts, np.diff(np.append(starts, keys.size)))
    codes, _ = pd.factorize(keys)
    first_rows = np.flatnonzero(codes > np.maximum.accumulate(np.concatenate(([-1], codes[:-1]))))
    return first_rows[codes]  # factorize numbers keys in order of first appearance


def _utc_index(values: pd.Series) -> pd.DatetimeIndex:
    """``values`` as UTC timestamps; only text is parsed (parsing a million datetimes
    again costs more than a whole backtest)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        index = pd.DatetimeIndex(values)
        return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True))


def _extreme_ratio(values: np.ndarray, initial: float, *, largest: bool) -> float:
    """``max((values - initial) / initial)`` (``largest``) or ``max((initial - values) /
    initial)``, from the one value that gives it. Subtraction and division by a positive
    number round monotonically, so for ``initial > 0`` the maximum is the ratio at the
    highest (lowest) value, the same float as the whole array's maximum; otherwise the
    array is computed."""
    if initial > 0:
        at = values.max() if largest else values.min()
        ratio = (at - initial) if largest else (initial - at)
        return float(ratio / np.float64(initial))
    ratios = (values - initial) / initial if largest else (initial - values) / initial
    return float(np.max(ratios))


def _first_true(mask: np.ndarray) -> int | None:
    """The first True row (``argmax`` stops there), or ``None``."""
    if not mask.size:
        return None
    at = int(mask.argmax())
    return at if mask[at] else None


def _needs_points(seen: bool) -> None:
    if not seen:
        raise ConfigError("result() before any update(): stream at least one bar first.")


@dataclass(frozen=True)
class DailyLossLimit(Rule):
    """Equity may not fall more than ``pct`` below the start-of-day balance within a day.

    The allowed loss is ``pct`` of the start-of-day balance (``basis="start_of_day"``) or of
    the initial balance (``basis="initial"``, FTMO's current rule).
    """

    pct: float = 0.05
    timezone: str = "UTC"
    basis: Literal["start_of_day", "initial"] = "start_of_day"
    initial_balance: float | None = None
    name: str = "daily_loss_limit"

    def _basis_checked(self) -> None:
        if self.basis not in ("start_of_day", "initial"):
            raise ConfigError(
                f"DailyLossLimit.basis={self.basis!r}; use 'start_of_day' or 'initial'."
            )

    def check(
        self,
        equity: pd.Series,
        trades: pd.DataFrame | None = None,
        *,
        days: np.ndarray | None = None,
    ) -> RuleResult:
        """The verdict on ``equity``. ``days``: the calendar day of each point in
        ``timezone`` when the caller has it already (``BarDays``), so that checks of
        the same bars convert their times once; it must number days as
        ``_local_days`` does (computed here when not given)."""
        eq = _validated(equity)
        self._basis_checked()
        initial = float(eq.iloc[0]) if self.initial_balance is None else self.initial_balance
        if days is None:
            days = _local_days(eq.index, self.timezone)
        elif len(days) != len(eq):
            raise ConfigError(
                f"{self.name}: {len(days)} day numbers for {len(eq)} equity points; "
                "give one per point."
            )
        values = eq.to_numpy()
        previous = np.concatenate(([initial], values[:-1]))  # balance before each bar
        # The "initial" basis as one number: the same products and quotients, bit for bit,
        # as against an array filled with it, without the array.
        on_sod = self.basis == "start_of_day"
        days = np.ascontiguousarray(days, dtype=np.int64)
        sod = np.empty_like(values)
        found = _sorted_days_pass(previous, values, days, self.pct, float(initial), on_sod, sod)
        if found == _UNSORTED:  # stamps out of time order: group by day in numpy
            sod = previous[_first_of_group(days)]
            found = _first_true(values < sod - self.pct * (sod if on_sod else float(initial)))
        hit = None if found is None or found < 0 else found
        base: np.ndarray | float = sod if on_sod else float(initial)
        if hit is None:
            return self._result(float(np.max((sod - values) / base)), None, 0.0, 0.0)
        at_hit = base[hit] if isinstance(base, np.ndarray) else base
        loss = (sod[hit] - values[hit]) / np.float64(at_hit)
        return self._result(float(loss), eq.index[hit], float(values[hit]), float(sod[hit]))

    def _result(
        self, loss: float, time: pd.Timestamp | None, value: float, sod: float
    ) -> RuleResult:
        """The outcome: ``loss`` is the worst loss (passed) or the one at ``time`` (breach)."""
        if time is None:
            return RuleResult(
                self.name,
                True,
                None,
                None,
                self.pct,
                f"worst daily loss {loss:.2%} of the {self.basis} balance "
                f"(limit {self.pct:.2%}, days in {self.timezone})",
            )
        return RuleResult(
            self.name,
            False,
            time,
            loss,
            self.pct,
            f"equity {value:,.2f} fell {loss:.2%} below the start-of-day balance "
            f"{sod:,.2f} at {time} (limit {self.pct:.2%} of the {self.basis} "
            f"balance, days in {self.timezone})",
        )

    def stream(self) -> RuleStream:
        self._basis_checked()
        return _DailyLossStream(self)


class _DailyLossStream(RuleStream):
    """:class:`DailyLossLimit` bar by bar: one start-of-day balance per calendar day (the
    equity before the day's first bar, kept for a day seen again after a clock change)."""

    def __init__(self, rule: DailyLossLimit) -> None:
        self.rule = rule
        self._clock = _DayClock(rule.timezone)
        self._initial: float | None = rule.initial_balance
        self._on_initial = rule.basis == "initial"
        self._previous = 0.0
        self._sod: dict[int, float] = {}
        self._day: int | None = None  # the current day and its start-of-day balance
        self._day_sod = 0.0
        self._worst = -math.inf
        self._seen = False
        self.breach: Breach | None = None
        self._hit: tuple[pd.Timestamp, float, float, float] | None = None

    def update(self, time: Any, equity: float, fills: Sequence[Any] = ()) -> Breach | None:
        if self._hit is not None:
            return None
        value = float(equity)
        if not math.isfinite(value):
            _finite(value, self.rule.name)  # raises, naming the rule
        if not self._seen:
            self._seen = True
            if self._initial is None:
                self._initial = value
            self._previous = self._initial
        day = self._clock.day(time.value if type(time) is pd.Timestamp else _ns(time))
        if day == self._day:
            sod = self._day_sod
        else:
            sod = self._sod.get(day)
            if sod is None:
                sod = self._sod[day] = self._previous
            self._day, self._day_sod = day, sod
        self._previous = value
        rule = self.rule
        base = self._initial if self._on_initial else sod
        loss = (sod - value) / base if base else _ratio(sod - value, base)
        if value < sod - rule.pct * base:
            stamp = _utc_stamp(time)
            self._hit = (stamp, loss, value, sod)
            detail = rule._result(loss, stamp, value, sod).detail
            self.breach = Breach(rule.name, stamp, loss, rule.pct, detail)
            return self.breach
        if loss > self._worst:
            self._worst = loss
        return None

    def result(self) -> RuleResult:
        if self._hit is not None:
            stamp, loss, value, sod = self._hit
            return self.rule._result(loss, stamp, value, sod)
        _needs_points(self._seen)
        return self.rule._result(self._worst, None, 0.0, 0.0)

    _STATE_KEYS = frozenset(
        {"initial", "previous", "sod", "day", "day_sod", "worst", "seen", "breach", "hit"}
    )

    def state(self) -> dict[str, Any]:
        # Start-of-day balances of the current and the last day are enough: a day seen
        # again after a clock change is at most the one before.
        recent = sorted(self._sod)[-2:]
        return {
            "initial": _json_float(self._initial),
            "previous": _json_float(self._previous),
            "sod": [[day, _json_float(self._sod[day])] for day in recent],
            "day": self._day,
            "day_sod": _json_float(self._day_sod),
            "worst": _json_float(self._worst),
            "seen": self._seen,
            "breach": _breach_json(self.breach),
            "hit": _hit_json(self._hit),
        }

    def load_state(self, saved: Mapping[str, Any]) -> None:
        _check_saved(self, saved, self._STATE_KEYS)
        self._initial = _float_of(saved["initial"])
        self._previous = float(saved["previous"])
        self._sod = {int(day): float(value) for day, value in saved["sod"]}
        self._day = None if saved["day"] is None else int(saved["day"])
        self._day_sod = float(saved["day_sod"])
        self._worst = float(saved["worst"])
        self._seen = bool(saved["seen"])
        self.breach = _breach_from(saved["breach"])
        self._hit = _hit_from(saved["hit"])  # type: ignore[assignment]


@dataclass(frozen=True)
class TotalLossLimit(Rule):
    """Equity (including unrealised PnL) may never fall more than ``pct`` below the initial
    balance (first equity value unless ``initial_balance`` is given)."""

    pct: float = 0.10
    initial_balance: float | None = None
    name: str = "total_loss_limit"

    def check(self, equity: pd.Series, trades: pd.DataFrame | None = None) -> RuleResult:
        eq = _validated(equity)
        initial = float(eq.iloc[0]) if self.initial_balance is None else self.initial_balance
        values = eq.to_numpy()
        hit = _first_true(values < initial - self.pct * initial)
        if hit is None:
            # the worst loss is at the lowest equity (for a positive initial balance the
            # rounded loss falls as equity rises, so it is the same number, bit for bit)
            worst = _extreme_ratio(values, initial, largest=False)
            return self._result(initial, worst, None, 0.0)
        loss = (initial - values[hit]) / np.float64(initial)
        return self._result(initial, float(loss), eq.index[hit], float(values[hit]))

    def _result(
        self, initial: float, loss: float, time: pd.Timestamp | None, value: float
    ) -> RuleResult:
        if time is None:
            return RuleResult(
                self.name,
                True,
                None,
                None,
                self.pct,
                f"worst loss {loss:.2%} of the initial balance "
                f"{initial:,.2f} (limit {self.pct:.2%})",
            )
        return RuleResult(
            self.name,
            False,
            time,
            loss,
            self.pct,
            f"equity {value:,.2f} fell {loss:.2%} below the initial balance "
            f"{initial:,.2f} at {time} (limit {self.pct:.2%})",
        )

    def stream(self) -> RuleStream:
        return _ExtremeStream(self, loss_limit=True)


@dataclass(frozen=True)
class ProfitTarget(Rule):
    """Equity must reach ``pct`` above the initial balance; ``breach_time`` is when it
    first did."""

    pct: float = 0.10
    initial_balance: float | None = None
    name: str = "profit_target"

    def check(self, equity: pd.Series, trades: pd.DataFrame | None = None) -> RuleResult:
        eq = _validated(equity)
        initial = float(eq.iloc[0]) if self.initial_balance is None else self.initial_balance
        values = eq.to_numpy()
        hit = _first_true(values >= initial + self.pct * initial)
        if hit is None:  # the best gain is at the highest equity (see TotalLossLimit)
            return self._result(initial, _extreme_ratio(values, initial, largest=True), None, 0.0)
        gain = (values[hit] - initial) / np.float64(initial)
        return self._result(initial, float(gain), eq.index[hit], float(values[hit]))

    def _result(
        self, initial: float, gain: float, time: pd.Timestamp | None, value: float
    ) -> RuleResult:
        if time is None:
            return RuleResult(
                self.name,
                False,
                None,
                None,
                self.pct,
                f"best gain {gain:.2%} of the initial balance never reached "
                f"the target {self.pct:.2%}",
            )
        return RuleResult(
            self.name,
            True,
            time,
            gain,
            self.pct,
            f"target {self.pct:.2%} reached at {time} (gain {gain:.2%})",
        )

    def stream(self) -> RuleStream:
        return _ExtremeStream(self, loss_limit=False)


class _ExtremeStream(RuleStream):
    """:class:`TotalLossLimit` (``loss_limit``) or :class:`ProfitTarget` bar by bar: the
    initial balance, the running worst loss or best gain, and the first crossing."""

    def __init__(self, rule: TotalLossLimit | ProfitTarget, *, loss_limit: bool) -> None:
        self.rule = rule
        self._loss_limit = loss_limit
        self._initial: float | None = rule.initial_balance
        self._extreme = -math.inf
        self._seen = False
        self.breach: Breach | None = None
        self._hit: tuple[pd.Timestamp, float, float] | None = None

    def update(self, time: Any, equity: float, fills: Sequence[Any] = ()) -> Breach | None:
        if self._hit is not None:
            return None
        value = float(equity)
        if not math.isfinite(value):
            _finite(value, self.rule.name)  # raises, naming the rule
        if self._initial is None:
            self._initial = value
        self._seen = True
        initial, rule = self._initial, self.rule
        if self._loss_limit:
            measure = (initial - value) / initial if initial else _ratio(initial - value, initial)
            crossed = value < initial - rule.pct * initial
        else:
            measure = (value - initial) / initial if initial else _ratio(value - initial, initial)
            crossed = value >= initial + rule.pct * initial
        if crossed:
            stamp = _utc_stamp(time)
            self._hit = (stamp, measure, value)
            if self._loss_limit:
                detail = rule._result(initial, measure, stamp, value).detail
                self.breach = Breach(rule.name, stamp, measure, rule.pct, detail)
                return self.breach
            return None
        if measure > self._extreme:
            self._extreme = measure
        return None

    def result(self) -> RuleResult:
        _needs_points(self._seen)
        assert self._initial is not None
        if self._hit is not None:
            stamp, measure, value = self._hit
            return self.rule._result(self._initial, measure, stamp, value)
        return self.rule._result(self._initial, self._extreme, None, 0.0)

    _STATE_KEYS = frozenset({"initial", "extreme", "seen", "breach", "hit"})

    def state(self) -> dict[str, Any]:
        return {
            "initial": _json_float(self._initial),
            "extreme": _json_float(self._extreme),
            "seen": self._seen,
            "breach": _breach_json(self.breach),
            "hit": _hit_json(self._hit),
        }

    def load_state(self, saved: Mapping[str, Any]) -> None:
        _check_saved(self, saved, self._STATE_KEYS)
        self._initial = _float_of(saved["initial"])
        self._extreme = float(saved["extreme"])
        self._seen = bool(saved["seen"])
        self.breach = _breach_from(saved["breach"])
        self._hit = _hit_from(saved["hit"])  # type: ignore[assignment]


@dataclass(frozen=True)
class MinimumTradingDays(Rule):
    """At least ``days`` distinct calendar days (in ``timezone``) on which a trade was
    entered, counted from ``trades['entry_time']``; ``breach_time`` is the entry that
    completed the count."""

    days: int = 4
    timezone: str = "UTC"
    name: str = "minimum_trading_days"

    def check(self, equity: pd.Series, trades: pd.DataFrame | None = None) -> RuleResult:
        if trades is None:
            return RuleResult(
                self.name,
                False,
                None,
                None,
                float(self.days),
                "no trades table given; pass the backtest's trades to count trading days",
            )
        if "entry_time" not in trades.columns:
            raise ConfigError("The trades table has no 'entry_time' column (TRADE_COLUMNS).")
        if trades.empty:
            return self._result(0, None)
        try:
            stamps = _utc_index(trades["entry_time"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                "trades.entry_time must hold timestamps; run the backtest with bar timestamps."
            ) from exc
        stamps = stamps.sort_values()
        days = _local_days(stamps, self.timezone)
        new_day = ~pd.Index(days).duplicated()
        count = int(new_day.sum())
        if count < self.days:
            return self._result(count, None)
        return self._result(count, stamps[np.flatnonzero(new_day)[self.days - 1]])

    def _result(self, count: int, reached: pd.Timestamp | None) -> RuleResult:
        if count == 0:
            return RuleResult(
                self.name,
                False,
                None,
                0.0,
                float(self.days),
                f"0 trading days (minimum {self.days})",
            )
        if reached is None:
            return RuleResult(
                self.name,
                False,
                None,
                float(count),
                float(self.days),
                f"{count} trading days (minimum {self.days}, days in {self.timezone})",
            )
        return RuleResult(
            self.name,
            True,
            reached,
            float(count),
            float(self.days),
            f"{count} trading days; the minimum {self.days} was reached at {reached}",
        )

    def stream(self) -> RuleStream:
        return _TradingDaysStream(self)


class _TradingDaysStream(RuleStream):
    """:class:`MinimumTradingDays` bar by bar: the set of days with a fill (the backtest
    counts a day with any fill as a trading day) and when the count reached the minimum."""

    def __init__(self, rule: MinimumTradingDays) -> None:
        self.rule = rule
        self._clock = _DayClock(rule.timezone)
        self._days: set[int] = set()
        self._reached: pd.Timestamp | None = None
        self.breach: Breach | None = None

    def update(self, time: Any, equity: float, fills: Iterable[Any] = ()) -> Breach | None:
        for fill in fills:
            day = self._clock.day(_ns(fill.time))
            if day not in self._days:
                self._days.add(day)
                if self._reached is None and len(self._days) == self.rule.days:
                    self._reached = _utc_stamp(fill.time).tz_convert("UTC")
        return None

    def result(self) -> RuleResult:
        return self.rule._result(len(self._days), self._reached)


FTMO_DEFAULTS: tuple[Rule, ...] = (
    DailyLossLimit(pct=0.05, timezone="Europe/Prague", basis="initial"),
    TotalLossLimit(pct=0.10),
    ProfitTarget(pct=0.10),
    MinimumTradingDays(days=4, timezone="Europe/Prague"),
)


def evaluate_rules(
    equity: pd.Series,
    trades: pd.DataFrame | None = None,
    rules: Sequence[Rule] = FTMO_DEFAULTS,
) -> list[RuleResult]:
    """Check every rule on the same equity curve and trades."""
    return [rule.check(equity, trades) for rule in rules]


def challenge_passed(results: Sequence[RuleResult]) -> bool:
    """True when every rule passed (a loss breach fails the challenge even after the target
    was reached, since the simulation kept trading)."""
    return all(r.passed for r in results)
