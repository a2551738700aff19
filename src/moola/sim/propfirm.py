"""Prop-firm challenge rules, checked on an equity curve and a trades table.

The rules know nothing about any backtester: the backtest checks them after a run and the
live runtime will check them on its own equity stream. Each rule is a frozen dataclass with
one method, ``check(equity, trades) -> RuleResult``; ``equity`` is a time-indexed
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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

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


class Rule(ABC):
    """A challenge rule: one method, :meth:`check`."""

    name: str = "rule"

    @abstractmethod
    def check(self, equity: pd.Series, trades: pd.DataFrame | None = None) -> RuleResult:
        """Evaluate the rule on ``equity`` (time-indexed) and optionally ``trades``."""


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
    return pd.Series(values, index=index)


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


def _first_of_group(keys: np.ndarray) -> np.ndarray:
    """For each row, the row where its key first appeared (keys in any order)."""
    if keys.size and np.all(keys[1:] >= keys[:-1]):  # time order, the usual case
        is_first = np.concatenate(([True], keys[1:] != keys[:-1]))
        return np.flatnonzero(is_first)[np.cumsum(is_first) - 1]
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


def _first_true(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


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

    def check(self, equity: pd.Series, trades: pd.DataFrame | None = None) -> RuleResult:
        eq = _validated(equity)
        if self.basis not in ("start_of_day", "initial"):
            raise ConfigError(
                f"DailyLossLimit.basis={self.basis!r}; use 'start_of_day' or 'initial'."
            )
        initial = float(eq.iloc[0]) if self.initial_balance is None else self.initial_balance
        days = _local_days(eq.index, self.timezone)
        values = eq.to_numpy()
        previous = np.concatenate(([initial], values[:-1]))  # balance before each bar
        sod = previous[_first_of_group(days)]
        base = sod if self.basis == "start_of_day" else np.full(len(eq), initial)
        loss = (sod - values) / base
        hit = _first_true(values < sod - self.pct * base)
        if hit is None:
            worst = float(np.max(loss))
            return RuleResult(
                self.name,
                True,
                None,
                None,
                self.pct,
                f"worst daily loss {worst:.2%} of the {self.basis} balance "
                f"(limit {self.pct:.2%}, days in {self.timezone})",
            )
        return RuleResult(
            self.name,
            False,
            eq.index[hit],
            float(loss[hit]),
            self.pct,
            f"equity {values[hit]:,.2f} fell {loss[hit]:.2%} below the start-of-day balance "
            f"{sod[hit]:,.2f} at {eq.index[hit]} (limit {self.pct:.2%} of the {self.basis} "
            f"balance, days in {self.timezone})",
        )


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
        loss = (initial - values) / initial
        hit = _first_true(values < initial - self.pct * initial)
        if hit is None:
            return RuleResult(
                self.name,
                True,
                None,
                None,
                self.pct,
                f"worst loss {float(np.max(loss)):.2%} of the initial balance "
                f"{initial:,.2f} (limit {self.pct:.2%})",
            )
        return RuleResult(
            self.name,
            False,
            eq.index[hit],
            float(loss[hit]),
            self.pct,
            f"equity {values[hit]:,.2f} fell {loss[hit]:.2%} below the initial balance "
            f"{initial:,.2f} at {eq.index[hit]} (limit {self.pct:.2%})",
        )


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
        gain = (values - initial) / initial
        hit = _first_true(values >= initial + self.pct * initial)
        if hit is None:
            return RuleResult(
                self.name,
                False,
                None,
                None,
                self.pct,
                f"best gain {float(np.max(gain)):.2%} of the initial balance never reached "
                f"the target {self.pct:.2%}",
            )
        return RuleResult(
            self.name,
            True,
            eq.index[hit],
            float(gain[hit]),
            self.pct,
            f"target {self.pct:.2%} reached at {eq.index[hit]} (gain {gain[hit]:.2%})",
        )


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
            return RuleResult(
                self.name,
                False,
                None,
                0.0,
                float(self.days),
                f"0 trading days (minimum {self.days})",
            )
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
            return RuleResult(
                self.name,
                False,
                None,
                float(count),
                float(self.days),
                f"{count} trading days (minimum {self.days}, days in {self.timezone})",
            )
        reached = stamps[np.flatnonzero(new_day)[self.days - 1]]
        return RuleResult(
            self.name,
            True,
            reached,
            float(count),
            float(self.days),
            f"{count} trading days; the minimum {self.days} was reached at {reached}",
        )


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
