"""Seeded synthetic OHLCV market with planted, labelled chart patterns.

The embedded default data of ``moola demo`` and of the tests of every later layer
(features, models, pretraining, backtests): it needs no files or network, is
byte-identical for one config, and has the stylised facts models must cope with:
fat tails (Student-t shocks), volatility clustering (GARCH(1,1)), calm/volatile
regimes with trending drift (two-state Markov chain), a U-shaped intraday volume
and volatility profile, and session calendars (crypto 24/7, FX 24/5, CME Globex
futures) whose gaps show in the timestamps and, as opening jumps, in the prices.
On top of that it splices ground-truth ``consolidation`` and ``retracement``
windows into the returns, so a classifier has something real to find; ``pattern_strength``
blends them towards ordinary market behaviour, for benchmarks that need the classes to
overlap. Several symbols (``symbols``) share one time grid and draw their returns jointly,
correlated as asked (see ``_generate_joint``), each with its own level, volatility and
planted windows.

Written by hand because no installed library does this: ``arch`` simulates GARCH
returns but has no calendar, OHLC bars, regimes or patterns, and its per-step
simulation loop is far too slow for the 10M-bar benchmark. Here every step is a
numpy array operation; the GARCH recursion, a linear recurrence in the variance,
is solved in closed form over short chunks (see ``_garch_variance``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from moola.core.errors import ConfigError
from moola.core.timeframes import parse_timeframe
from moola.data.schema import make_bars

__all__ = [
    "PATTERN_COLUMNS",
    "PATTERN_LABELS",
    "SYNTHETIC_CALENDARS",
    "SyntheticMarket",
    "SyntheticMarketConfig",
    "generate_market",
]

PATTERN_LABELS: tuple[str, str] = ("consolidation", "retracement")
PATTERN_COLUMNS: tuple[str, ...] = ("symbol", "start", "end", "start_ts", "end_ts", "label")

Calendar = Literal["crypto", "fx", "futures"]
SYNTHETIC_CALENDARS: tuple[str, ...] = get_args(Calendar)
"""Session calendars a synthetic market can follow."""

_NEW_YORK = ZoneInfo("America/New_York")
_NS_PER_MINUTE = 60 * 10**9
_MINUTES_PER_DAY = 24 * 60
_WEEKS_PER_YEAR = 365.25 / 7.0
# A Monday with no DST change in the week before or after: the calendar's reference week.
_REFERENCE_MONDAY = pd.Timestamp("2024-01-15", tz="UTC")
# Session open (minutes after local midnight, New York) and session length in minutes.
_SESSION_OPEN = {"crypto": 0, "fx": 17 * 60, "futures": 18 * 60}
_SESSION_MINUTES = {"crypto": 24 * 60, "fx": 24 * 60, "futures": 23 * 60}
_WEEKLY_CLOSE = 17 * 60  # fx and futures close on Friday 17:00 New York time
_TRADING_DAYS_PER_WEEK = {"crypto": 7, "fx": 5, "futures": 5}
_LAST_TIME = pd.Timestamp("2262-01-01", tz="UTC")  # datetime64[ns] ends in April 2262
_EDGE_WIDTH = 0.04  # width (share of the session) of the busy open and close
_GRID_CHUNK = 1 << 22  # candidate bar times examined at once
# Weakened patterns (pattern_strength < 1): half-width of each window's strength draw around
# pattern_strength, as a share of the distance to 0 or 1; the largest share of a window left
# to ordinary market (reached at blend weight 0); the fewest bars a pattern fills.
_WEAKENING_SPREAD = 0.5
_MAX_SPAN_CUT = 0.5
_MIN_SPAN = 20
# Correlation of every pair of several symbols' returns unless given (crypto majors
# move together: BTC-USD, ETH-USD and SOL-USD 1-minute returns correlate ~0.6-0.8).
_DEFAULT_CORRELATION = 0.7


def _shape(value: tuple[tuple[float, ...], ...]) -> str:
    """Rows x columns of a nested tuple, for an error message (ragged rows show as '?')."""
    widths = {len(row) for row in value}
    return f"{len(value)}x{widths.pop() if len(widths) == 1 else '?'}"


class SyntheticMarketConfig(BaseModel):
    """Everything that decides a synthetic market; equal configs give identical bars.

    Volatility figures are annualised over the calendar's trading time, so a config
    means the same market on any time frame. Pattern amplitudes scale with the local
    bar volatility, so patterns look alike in calm and volatile stretches.

    ``pattern_strength`` (0 < strength <= 1) sets how hard the planted windows are to
    tell apart. At 1 they are textbook shapes that simple features separate almost
    perfectly (a logistic regression on the 20 price-action features: ~99% accuracy), and
    the bars are byte-identical to those of earlier versions with the same config. Below 1
    each pattern is blended towards ordinary market behaviour: the lead-in, impulse and
    pullback shrink, the consolidation's quiet range and low volume and the retracement's
    impulse volume move back towards normal, the noise's pull back to the shape weakens
    towards a random walk, and the pattern fills only part of its window (down to half of
    it), at a random offset, the rest being ordinary market. The blend weight is the square
    root of a per-window strength spread around ``pattern_strength``, so weak settings mix
    clear and ambiguous windows. Roughly: 0.7 -> 92%, 0.5 -> 83%, 0.3 -> 73% for that
    logistic regression (240 windows, chronological 70/30 split), where always guessing
    consolidation scores 70% at the default ``retracement_fraction``. Windows, labels, and
    bars outside the windows are the same for one seed at any strength.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    seed: int = Field(0, ge=0, description="Seed of numpy.random.default_rng.")
    symbol: str = Field("SYN", min_length=1, description="Symbol written on every bar.")
    timeframe: str = Field("1m", description="Bar length, from '1m' to '1d', dividing a day.")
    start: datetime = Field(
        datetime(2024, 1, 2, tzinfo=UTC),
        description="First possible bar open time (naive values are read as UTC).",
    )
    n_bars: int = Field(50_000, ge=1, le=200_000_000, description="Number of bars.")
    calendar: Calendar = Field(
        "futures",
        description=(
            "crypto: 24/7; fx: Sun 17:00 -> Fri 17:00 New York; futures: CME Globex, "
            "Sun-Fri 18:00 -> 17:00 New York with a 17:00-18:00 daily break."
        ),
    )
    start_price: float = Field(15_000.0, gt=0, description="Open of the first bar.")
    annual_vol: float = Field(0.20, gt=0, le=5, description="Average annualised volatility.")
    garch_alpha: float = Field(0.05, ge=0, lt=1, description="GARCH reaction to last shock.")
    garch_beta: float = Field(0.93, gt=0, lt=1, description="GARCH persistence of variance.")
    tail_df: float = Field(5.0, gt=2, le=1_000, description="Student-t degrees of freedom.")
    intraday_u_shape: float = Field(
        1.5, ge=0, le=20, description="Extra volume/variance at session open and close (0: flat)."
    )
    regime_switching: bool = Field(True, description="Two-state calm/volatile Markov regimes.")
    regime_mean_days: float = Field(10.0, gt=0, description="Mean regime length, trading days.")
    regime_vol_ratio: float = Field(
        2.0, ge=1, le=10, description="Volatility of the volatile regime over the calm one."
    )
    regime_trend: float = Field(
        1.0, ge=0, le=20, description="Drift of each regime episode (random sign), as a Sharpe."
    )
    gap_variance_per_bar: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Opening-jump variance per missing bar after a closed period, in bar units.",
    )
    volume_base: float = Field(1_000.0, gt=0, description="Typical volume of one bar.")
    tick_size: float | None = Field(None, gt=0, description="Round prices to this tick.")
    n_patterns: int = Field(0, ge=0, description="Number of planted, labelled windows.")
    pattern_length: int = Field(105, ge=20, le=10_000, description="Bars in one window.")
    retracement_fraction: float = Field(
        0.3, ge=0, le=1, description="Share of windows labelled retracement (rest consolidation)."
    )
    pattern_strength: float = Field(
        1.0,
        gt=0,
        le=1,
        description="How distinct the planted patterns are: 1 is textbook, towards 0 ordinary.",
    )
    symbols: tuple[str, ...] = Field(
        (),
        description="Several symbols on one time grid (empty: the one ``symbol``).",
    )
    correlation: float | tuple[tuple[float, ...], ...] = Field(
        _DEFAULT_CORRELATION,
        description=(
            "Correlation of the symbols' 1-bar log returns: one value in (-1, 1) for every "
            "pair, or a full symmetric positive definite matrix in the order of ``symbols``."
        ),
    )
    start_prices: tuple[float, ...] | None = Field(
        None,
        description="Open of each symbol's first bar, in the order of ``symbols``.",
    )
    annual_vols: tuple[float, ...] | None = Field(
        None, description="Annualised volatility of each symbol, in the order of ``symbols``."
    )

    @field_validator("timeframe")
    @classmethod
    def _check_timeframe(cls, value: str) -> str:
        try:
            step = parse_timeframe(value)
        except ConfigError as error:
            raise ValueError(str(error)) from None
        day = pd.Timedelta(days=1)
        if step < pd.Timedelta(minutes=1) or step > day or day % step != pd.Timedelta(0):
            raise ValueError(
                f"timeframe {value!r} is not supported by the synthetic market: use a bar "
                "length from '1m' to '1d' that divides a day evenly, e.g. '1m', '5m', '1h', '1d'."
            )
        return value.strip().lower()

    @field_validator("start")
    @classmethod
    def _check_start(cls, value: datetime) -> datetime:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if not 1970 <= value.year <= 2200:
            raise ValueError(f"start {value.isoformat()} must fall in the years 1970 to 2200.")
        return value

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(str(name).strip() for name in value)
        if any(not name for name in names):
            raise ValueError("symbols must not hold an empty name: each is written on bars.")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"symbols names {', '.join(map(repr, repeated))} more than once.")
        return names

    @model_validator(mode="after")
    def _check_symbol_settings(self) -> SyntheticMarketConfig:
        if self.symbols and "symbol" in self.model_fields_set and self.symbols != (self.symbol,):
            raise ValueError(
                f"symbol {self.symbol!r} and symbols {list(self.symbols)} are both given; "
                "give symbol for one symbol or symbols for several, not both."
            )
        count = len(self.names)
        for field in ("start_prices", "annual_vols"):
            values = getattr(self, field)
            if values is None:
                continue
            if len(values) != count:
                raise ValueError(
                    f"{field} has {len(values)} value(s) for {count} symbol(s) "
                    f"({', '.join(self.names)}); give one per symbol, in the same order."
                )
            if any(not 0 < v <= (5 if field == "annual_vols" else math.inf) for v in values):
                bound = "in (0, 5]" if field == "annual_vols" else "above 0"
                raise ValueError(f"{field} {list(values)}: every value must be {bound}.")
        self.correlation_matrix()  # refuses a matrix that is not a correlation matrix
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """The symbols generated, in the order given: ``symbols``, or the one ``symbol``."""
        return self.symbols or (self.symbol,)

    def levels(self) -> tuple[np.ndarray, np.ndarray]:
        """Start price and annualised volatility of each symbol of ``names``.

        Unless given, the k-th symbol in sorted name order starts at ``start_price *
        0.5**k`` with volatility ``annual_vol * (1 + 0.25 k)``, so symbols are never copies
        of each other and the defaults do not depend on the order of ``symbols``.
        """
        names = self.names
        rank = np.argsort(np.argsort(np.array(names, dtype=object), kind="stable"))
        prices = (
            np.array(self.start_prices, dtype=float)
            if self.start_prices is not None
            else self.start_price * 0.5**rank
        )
        vols = (
            np.array(self.annual_vols, dtype=float)
            if self.annual_vols is not None
            else self.annual_vol * (1.0 + 0.25 * rank)
        )
        return prices, vols

    def correlation_matrix(self) -> np.ndarray:
        """The (S, S) correlation of the symbols' shocks, in the order of ``names``; a
        value or matrix that is not a valid correlation is refused naming ``correlation``."""
        count = len(self.names)
        if isinstance(self.correlation, float | int):
            rho = float(self.correlation)
            if not -1.0 < rho < 1.0:
                raise ValueError(f"correlation {rho:g} must lie strictly between -1 and 1.")
            matrix = np.full((count, count), rho)
            np.fill_diagonal(matrix, 1.0)
        else:
            if _shape(self.correlation) != f"{count}x{count}":
                raise ValueError(
                    f"correlation is a matrix of shape {_shape(self.correlation)}; {count} "
                    f"symbol(s) ({', '.join(self.names)}) need a {count}x{count} matrix."
                )
            matrix = np.array(self.correlation, dtype=float)
            if not np.allclose(np.diag(matrix), 1.0) or not np.allclose(matrix, matrix.T):
                raise ValueError(
                    "correlation must be symmetric with ones on the diagonal (row i, column j "
                    "is the correlation of symbols i and j)."
                )
            matrix = (matrix + matrix.T) / 2.0
        try:
            np.linalg.cholesky(matrix)
        except np.linalg.LinAlgError:
            raise ValueError(
                f"correlation {self.correlation!r} is not positive definite for {count} symbols"
                + (
                    f" (one value for every pair must exceed {-1.0 / (count - 1):.4g})"
                    if isinstance(self.correlation, float | int)
                    else ""
                )
                + "; no market can have these correlations."
            ) from None
        return matrix

    @model_validator(mode="after")
    def _check_together(self) -> SyntheticMarketConfig:
        if self.garch_alpha + self.garch_beta >= 1.0:
            raise ValueError(
                f"garch_alpha + garch_beta = {self.garch_alpha + self.garch_beta:g} must be "
                "below 1 for the variance to stay finite; lower one of them."
            )
        step_ns = int(parse_timeframe(self.timeframe).value)
        weeks = self.n_bars / _bars_in_week(step_ns, self.calendar) + 2
        # Compare in days as floats: a Timedelta of the full span could itself overflow.
        days_left = (_LAST_TIME - pd.Timestamp(self.start)).total_seconds() / 86_400
        if weeks * 7 >= days_left:
            raise ValueError(
                f"{self.n_bars} bars of {self.timeframe} from {self.start.date()} would run past "
                f"{_LAST_TIME.date()}, the last time a bar table can hold; lower n_bars or use "
                "a shorter timeframe."
            )
        needed = max(0, 2 * self.n_patterns * self.pattern_length - self.pattern_length)
        if needed > self.n_bars:
            raise ValueError(
                f"{self.n_patterns} patterns of {self.pattern_length} bars, each followed by a "
                f"gap of {self.pattern_length} bars, need n_bars >= {needed} (got {self.n_bars}); "
                "raise n_bars or lower n_patterns."
            )
        return self


@dataclass(frozen=True)
class SyntheticMarket:
    """Generated bars, the planted patterns in them, and the config that made both.

    ``patterns`` has columns ``symbol, start, end, start_ts, end_ts, label``: ``start``
    and ``end`` are inclusive row positions into ``bars`` and ``label`` is one of
    ``PATTERN_LABELS``. With several symbols, ``bars`` is sorted by symbol then timestamp
    (the canonical order), every symbol has ``n_bars`` bars on the same timestamps, and each
    symbol has its own ``n_patterns`` windows: a row's ``symbol`` names the symbol whose
    bars the window covers (the label stays ``consolidation`` or ``retracement``), and
    ``start``/``end`` point into that symbol's block of ``bars``; rows are sorted by symbol,
    then start.
    """

    bars: pd.DataFrame
    patterns: pd.DataFrame
    config: SyntheticMarketConfig


def generate_market(config: SyntheticMarketConfig) -> SyntheticMarket:
    """Generate ``config.n_bars`` canonical bars per symbol and the patterns planted in them.

    Random numbers come from one ``numpy.random.default_rng(config.seed)`` in a fixed
    order, so equal configs give byte-identical bars. One symbol (``symbol``, or
    ``symbols`` of length one) is generated exactly as before ``symbols`` existed; several
    are generated jointly by ``_generate_joint``.
    """
    if len(config.names) > 1:
        return _generate_joint(config)
    if config.symbols or config.start_prices is not None or config.annual_vols is not None:
        prices, vols = config.levels()
        single = config.model_copy(
            update={
                "symbol": config.names[0],
                "start_price": float(prices[0]),
                "annual_vol": float(vols[0]),
            }
        )
        market = _generate_single(single)
        return SyntheticMarket(bars=market.bars, patterns=market.patterns, config=config)
    return _generate_single(config)


def _generate_single(config: SyntheticMarketConfig) -> SyntheticMarket:
    """One symbol's market from ``config.symbol``, ``start_price`` and ``annual_vol``."""
    rng = np.random.default_rng(config.seed)
    n = config.n_bars
    step_ns = int(parse_timeframe(config.timeframe).value)
    stamps, since_open = _session_bars(config.start, step_ns, n, config.calendar)
    week = _reference_week(config, step_ns)

    # Unit-variance building blocks: shocks, GARCH variance, seasonality, regimes.
    shocks = _standard_t(rng, config.tail_df, n)
    # local_sd: GARCH sd, then times the regime and the per-bar scale (below)
    local_sd = np.sqrt(_garch_variance(shocks, config.garch_alpha, config.garch_beta))
    season = _intraday_profile(since_open, step_ns, config) / week.profile_mean
    bars_per_year = week.bars * _WEEKS_PER_YEAR
    if config.regime_switching:
        mean_bars = config.regime_mean_days * week.bars / _TRADING_DAYS_PER_WEEK[config.calendar]
        trend = config.regime_trend * config.annual_vol / bars_per_year
        regime_sd, drift = _regimes(rng, n, mean_bars, config.regime_vol_ratio, trend)
    else:
        regime_sd, drift = np.ones(n), np.zeros(n)

    # Scale so a calendar week carries annual_vol**2 / weeks_per_year of variance.
    bar_sd = config.annual_vol / math.sqrt(_WEEKS_PER_YEAR * (week.bars + week.gap_units))
    local_sd *= regime_sd
    local_sd *= bar_sd
    sd = local_sd * np.sqrt(season)  # diffusive sd of each bar
    returns = drift + sd * shocks
    del since_open, regime_sd, drift
    gaps = _opening_jumps(rng, stamps, step_ns, local_sd, config)
    volume_factor = np.ones(n)

    patterns = _plant_patterns(rng, config, stamps, step_ns, shocks, sd, returns, volume_factor)
    gaps[patterns.mask] = 0.0

    open_, high, low, close = _ohlc(rng, config.start_price, returns, gaps, sd, config.tick_size)
    volume = _volume(rng, config, season, local_sd / bar_sd, shocks, volume_factor)
    bars = make_bars(
        stamps.view("datetime64[ns]"),
        open_,
        high,
        low,
        close,
        volume,
        symbol=config.symbol,
        timeframe=config.timeframe,
    )
    return SyntheticMarket(
        bars=bars, patterns=_pattern_frame(config, stamps, patterns), config=config
    )


def _generate_joint(config: SyntheticMarketConfig) -> SyntheticMarket:
    """Several symbols on one time grid whose 1-bar log returns have the requested
    correlation.

    Each bar's shocks are one multivariate Student-t draw: correlated normals (Cholesky
    factor of the correlation) over one shared chi-square, so each symbol's shocks are
    unit-variance Student-t and any two correlate exactly as asked. The volatility that
    scales them (GARCH on the symbols' root-mean-square shock, the calm/volatile regime,
    the intraday profile) is the market's, shared by all symbols, and it depends only on
    earlier bars, so it scales the covariance and the variances alike and leaves the
    correlation of returns as requested; opening jumps after closed periods are drawn
    jointly too. Each symbol then has its own level and volatility and its own planted
    windows (inside them the returns are the pattern's, not correlated).

    Symbols are generated in sorted name order with their settings moved along, so
    listing the same symbols in another order (with ``correlation``, ``start_prices`` and
    ``annual_vols`` reordered to match) gives byte-identical bars and patterns; adding or
    removing a symbol changes every symbol's path.
    """
    rng = np.random.default_rng(config.seed)
    n = config.n_bars
    given = config.names
    order = sorted(range(len(given)), key=lambda i: given[i])
    names = [given[i] for i in order]
    prices, vols = (values[order] for values in config.levels())
    chol = np.linalg.cholesky(config.correlation_matrix()[np.ix_(order, order)])
    step_ns = int(parse_timeframe(config.timeframe).value)
    stamps, since_open = _session_bars(config.start, step_ns, n, config.calendar)
    week = _reference_week(config, step_ns)

    shocks = _joint_t(rng, chol, config.tail_df, n)  # (S, n)
    market_shock = np.sqrt(np.mean(shocks**2, axis=0))  # mean square 1, like one shock
    market_sd = np.sqrt(_garch_variance(market_shock, config.garch_alpha, config.garch_beta))
    season = _intraday_profile(since_open, step_ns, config) / week.profile_mean
    bars_per_year = week.bars * _WEEKS_PER_YEAR
    if config.regime_switching:
        mean_bars = config.regime_mean_days * week.bars / _TRADING_DAYS_PER_WEEK[config.calendar]
        regime_sd, trend_sign = _regimes(rng, n, mean_bars, config.regime_vol_ratio, 1.0)
        market_sd *= regime_sd
    else:
        trend_sign = np.zeros(n)
    missing = _missing_bars(stamps, step_ns)
    jump_at = np.flatnonzero(missing > 0) if config.gap_variance_per_bar > 0 else np.zeros(0, int)
    jumps = _joint_t(rng, chol, config.tail_df, jump_at.size)  # (S, jumps)
    jump_scale = np.sqrt(config.gap_variance_per_bar * missing[jump_at])

    frames, tables = [], []
    for k, (name, price, vol) in enumerate(zip(names, prices.tolist(), vols.tolist(), strict=True)):
        one = config.model_copy(update={"symbol": name, "start_price": price, "annual_vol": vol})
        bar_sd = vol / math.sqrt(_WEEKS_PER_YEAR * (week.bars + week.gap_units))
        local_sd = market_sd * bar_sd
        sd = local_sd * np.sqrt(season)
        returns = trend_sign * (config.regime_trend * vol / bars_per_year) + sd * shocks[k]
        gaps = np.zeros(n)
        gaps[jump_at] = local_sd[jump_at] * jump_scale * jumps[k]
        volume_factor = np.ones(n)
        planted = _plant_patterns(rng, one, stamps, step_ns, shocks[k], sd, returns, volume_factor)
        gaps[planted.mask] = 0.0
        open_, high, low, close = _ohlc(rng, price, returns, gaps, sd, config.tick_size)
        volume = _volume(rng, one, season, local_sd / bar_sd, shocks[k], volume_factor)
        frames.append(
            make_bars(
                stamps.view("datetime64[ns]"),
                open_,
                high,
                low,
                close,
                volume,
                symbol=name,
                timeframe=config.timeframe,
            )
        )
        table = _pattern_frame(one, stamps, planted)
        table[["start", "end"]] += k * n  # positions into the concatenated bars
        tables.append(table)
    bars = pd.concat(frames, ignore_index=True)
    patterns = pd.concat(tables, ignore_index=True)
    return SyntheticMarket(bars=bars, patterns=patterns, config=config)


def _joint_t(rng: np.random.Generator, chol: np.ndarray, df: float, size: int) -> np.ndarray:
    """``size`` draws (columns) of a unit-variance multivariate Student-t whose correlation
    has Cholesky factor ``chol``, shaped (S, size)."""
    normal = chol @ rng.standard_normal((chol.shape[0], size))
    mixing = np.sqrt((df - 2.0) / rng.chisquare(df, size))
    return normal * mixing


# --------------------------------------------------------------------------- calendar


def _session_clock(utc_ns: np.ndarray, calendar: Calendar) -> tuple[np.ndarray, np.ndarray]:
    """Which bar open times are inside the calendar's sessions, and the minutes since the
    current session opened (New York wall clock through zoneinfo, so DST is handled)."""
    if calendar == "crypto":
        minute = (utc_ns // _NS_PER_MINUTE) % _MINUTES_PER_DAY
        return np.ones(utc_ns.size, dtype=bool), minute
    local_ns = (
        pd.DatetimeIndex(utc_ns.view("datetime64[ns]"), tz="UTC")
        .tz_convert(_NEW_YORK)
        .tz_localize(None)
        .as_unit("ns")
        .asi8
    )
    local_minutes = local_ns // _NS_PER_MINUTE
    day = local_minutes // _MINUTES_PER_DAY
    minute = local_minutes - day * _MINUTES_PER_DAY
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    opens = _SESSION_OPEN[calendar]
    inside = (
        (weekday <= 3)
        | ((weekday == 4) & (minute < _WEEKLY_CLOSE))
        | ((weekday == 6) & (minute >= opens))
    )
    if calendar == "futures":
        inside &= (minute < _WEEKLY_CLOSE) | (minute >= opens)
    return inside, (minute - opens) % _MINUTES_PER_DAY


def _session_bars(
    start: datetime, step_ns: int, n: int, calendar: Calendar
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` bar open times (UTC ns, on the time-frame grid from the epoch) at or
    after ``start`` that fall inside sessions, with their minutes since session open."""
    first = -(-pd.Timestamp(start).as_unit("ns").value // step_ns) * step_ns
    grid_per_week = 7 * _MINUTES_PER_DAY * _NS_PER_MINUTE // step_ns
    per_week = _bars_in_week(step_ns, calendar)
    stamps, clocks, have, cursor = [], [], 0, first
    while have < n:
        count = int((n - have) * grid_per_week / per_week * 1.02) + 2 * grid_per_week
        count = min(count, _GRID_CHUNK)  # bounds the temporary arrays of the clock
        candidates = cursor + np.arange(count, dtype=np.int64) * step_ns
        inside, clock = _session_clock(candidates, calendar)
        keep = np.flatnonzero(inside)[: n - have]
        stamps.append(candidates[keep])
        clocks.append(clock[keep])
        have += keep.size
        cursor = int(candidates[-1]) + step_ns
    return np.concatenate(stamps), np.concatenate(clocks)


def _bars_in_week(step_ns: int, calendar: Calendar) -> int:
    """Bars in one reference week of the calendar."""
    grid = _reference_grid(step_ns, 0, 1)
    return int(_session_clock(grid, calendar)[0].sum())


def _reference_grid(step_ns: int, first_week: int, weeks: int) -> np.ndarray:
    """Time-frame grid over ``weeks`` weeks starting ``first_week`` weeks after the
    reference Monday."""
    begin = _REFERENCE_MONDAY.value + first_week * 7 * _MINUTES_PER_DAY * _NS_PER_MINUTE
    count = weeks * 7 * _MINUTES_PER_DAY * _NS_PER_MINUTE // step_ns
    return begin + np.arange(count, dtype=np.int64) * step_ns


@dataclass(frozen=True)
class _Week:
    bars: int  # bars in a week
    profile_mean: float  # mean raw intraday profile over those bars
    gap_units: float  # opening-jump variance in a week, in bar-variance units


def _reference_week(config: SyntheticMarketConfig, step_ns: int) -> _Week:
    """Bar count, intraday-profile mean and jump variance of one calendar week, the units
    that turn ``annual_vol`` into a per-bar volatility."""
    grid = _reference_grid(step_ns, -1, 2)
    inside, clock = _session_clock(grid, config.calendar)
    stamps, clock = grid[inside], clock[inside]
    in_week = stamps >= _REFERENCE_MONDAY.value
    profile = _intraday_profile(clock, step_ns, config)
    missing = _missing_bars(stamps, step_ns)
    return _Week(
        bars=int(in_week.sum()),
        profile_mean=float(profile[in_week].mean()),
        gap_units=float(config.gap_variance_per_bar * missing[in_week].sum()),
    )


def _intraday_profile(
    since_open: np.ndarray, step_ns: int, config: SyntheticMarketConfig
) -> np.ndarray:
    """Raw U-shaped activity over the session (busy open and close, quiet middle); it
    multiplies both the variance and the volume of intraday bars. Flat for daily bars."""
    step_minutes = step_ns / _NS_PER_MINUTE
    if config.intraday_u_shape == 0 or step_minutes >= _MINUTES_PER_DAY:
        return np.ones(since_open.size)
    length = _SESSION_MINUTES[config.calendar]
    phase = np.clip((since_open + step_minutes / 2) / length, 0.0, 1.0)
    edges = np.exp(-phase / _EDGE_WIDTH) + np.exp((phase - 1.0) / _EDGE_WIDTH)
    return 1.0 + config.intraday_u_shape * (0.5 * (2.0 * phase - 1.0) ** 2 + edges)


def _missing_bars(stamps: np.ndarray, step_ns: int) -> np.ndarray:
    """Grid steps skipped just before each bar (0 for the first bar and inside sessions)."""
    missing = np.zeros(stamps.size)
    missing[1:] = np.diff(stamps) // step_ns - 1
    return missing


# --------------------------------------------------------------------------- returns


def _standard_t(rng: np.random.Generator, df: float, size: int | tuple[int, ...]) -> np.ndarray:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(df, size) * math.sqrt((df - 2.0) / df)


def _garch_variance(shocks: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """GARCH(1,1) variance with unit long-run mean driven by unit-variance ``shocks``:
    h[t] = omega + (alpha * shocks[t-1]**2 + beta) * h[t-1], omega = 1 - alpha - beta,
    h[0] = 1.

    The recursion is linear in h, so within a chunk of k steps it has the closed form
    h[j] = P[j] * (h_prev + omega * sum_{i<=j} 1 / P[i]) with P the running product of
    the coefficients; chunks are short enough that P stays inside float64 range, and
    only the chunk ends (n / k values) are chained in Python.
    """
    n = shocks.size
    omega = 1.0 - alpha - beta
    k = int(min(512, max(1, 600 // -math.log(beta))))  # coefficient >= beta keeps P >= e^-600
    chunks = -(-n // k)
    coef = np.full(chunks * k, alpha + beta)  # shock before the first bar taken as 1
    np.square(shocks[:-1], out=coef[1:n])
    coef[1:n] *= alpha
    coef[1:n] += beta
    log_p = np.log(coef, out=coef).reshape(chunks, k)
    np.cumsum(log_p, axis=1, out=log_p)
    inverse_sum = np.exp(-log_p)
    np.cumsum(inverse_sum, axis=1, out=inverse_sum)
    inverse_sum *= omega
    growth = np.exp(log_p, out=log_p)
    starts = np.empty(chunks)
    h = 1.0
    for c, (g_end, s_end) in enumerate(
        zip(growth[:, -1].tolist(), inverse_sum[:, -1].tolist(), strict=True)
    ):
        starts[c] = h
        h = g_end * (h + s_end)
    inverse_sum += starts[:, None]
    growth *= inverse_sum
    return growth.ravel()[:n]


def _regimes(
    rng: np.random.Generator, n: int, mean_bars: float, vol_ratio: float, trend: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar volatility multiplier and drift of a symmetric two-state Markov chain:
    calm and volatile episodes alternate with geometric lengths; the multipliers have
    mean square 1, and each episode drifts up or down by ``trend`` per bar."""
    p = min(1.0, 1.0 / mean_bars)
    lengths, total = [], 0
    while total < n:
        draw = rng.geometric(p, size=int(n * p * 1.2) + 16)
        lengths.append(draw)
        total += int(draw.sum())
    length = np.concatenate(lengths)
    episodes = int(np.searchsorted(np.cumsum(length), n)) + 1
    length = length[:episodes]
    volatile = (rng.integers(2) + np.arange(episodes)) % 2
    sign = rng.integers(0, 2, size=episodes) * 2.0 - 1.0
    calm_sd = math.sqrt(2.0 / (1.0 + vol_ratio**2))
    vol = np.where(volatile == 1, vol_ratio * calm_sd, calm_sd)
    return np.repeat(vol, length)[:n], np.repeat(sign * trend, length)[:n]


def _opening_jumps(
    rng: np.random.Generator,
    stamps: np.ndarray,
    step_ns: int,
    local_sd: np.ndarray,
    config: SyntheticMarketConfig,
) -> np.ndarray:
    """Log jump from the previous close to each bar's open: zero inside a session; after
    a closed period its variance grows with the number of bars skipped."""
    gaps = np.zeros(stamps.size)
    missing = _missing_bars(stamps, step_ns)
    where = np.flatnonzero(missing > 0)
    if config.gap_variance_per_bar > 0 and where.size:
        scale = local_sd[where] * np.sqrt(config.gap_variance_per_bar * missing[where])
        gaps[where] = scale * _standard_t(rng, config.tail_df, where.size)
    return gaps


# --------------------------------------------------------------------------- patterns


@dataclass(frozen=True)
class _Planted:
    starts: np.ndarray  # first bar of each window, increasing
    retracement: np.ndarray  # bool per window
    mask: np.ndarray  # bool per bar: inside some window


def _plant_patterns(
    rng: np.random.Generator,
    config: SyntheticMarketConfig,
    stamps: np.ndarray,
    step_ns: int,
    shocks: np.ndarray,
    sd: np.ndarray,
    returns: np.ndarray,
    volume_factor: np.ndarray,
) -> _Planted:
    """Overwrite the returns (and bar sd and volume factor) of randomly placed windows with
    pattern paths, in place. Prices stay continuous because only returns change.

    Weakening (``pattern_strength`` < 1) draws from its own stream of the seed, so the
    main stream, and with it the windows, labels and all bars outside them, stays the same.
    """
    count, length = config.n_patterns, config.pattern_length
    if count == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _Planted(empty, np.zeros(0, dtype=bool), np.zeros(stamps.size, dtype=bool))
    starts = _place_windows(rng, stamps, step_ns, count, length)
    retracement = np.zeros(count, dtype=bool)
    retracement[: int(count * config.retracement_fraction + 0.5)] = True  # half rounds up
    retracement = rng.permutation(retracement)
    index = starts[:, None] + np.arange(length)  # (P, T)
    strength = config.pattern_strength
    if strength < 1.0:
        weak_rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1,)))
        weakening = _weakening(weak_rng, count, strength)
        span, offset = _pattern_spans(weak_rng, count, length, weakening)
    else:
        weakening = None
        span, offset = np.full(count, float(length)), np.zeros(count, dtype=np.int64)
    # source: the bars each pattern bar lands on; a pattern shorter than its window starts
    # at ``offset`` and its columns past ``span`` are not used (clipped to stay in the window)
    source = np.minimum(index + offset[:, None], index[:, -1:])
    noise = np.clip(shocks[source], -3.0, 3.0)
    level_sd = sd[index].mean(axis=1, keepdims=True)
    shape, scale, phi, vol = _pattern_shapes(rng, retracement, length, span, weakening)
    path_returns, noise_sd = _pattern_paths(shape, scale, phi, noise, sd[source], level_sd)
    used = np.arange(length) < span[:, None]
    target = source[used]
    returns[target] = path_returns[used]
    sd[target] = noise_sd[used]
    volume_factor[target] = vol[used]
    mask = np.zeros(stamps.size, dtype=bool)
    mask[index] = True
    return _Planted(starts, retracement, mask)


def _place_windows(
    rng: np.random.Generator, stamps: np.ndarray, step_ns: int, count: int, length: int
) -> np.ndarray:
    """Random non-overlapping window starts with at least ``length`` bars between windows;
    a window that crosses a session break is moved, when its free room allows, to the
    nearest start that does not."""
    n, gap = stamps.size, length
    slack = n - count * length - (count - 1) * gap
    starts = np.sort(rng.integers(0, slack + 1, size=count)) + np.arange(count) * (length + gap)
    breaks = np.zeros(n, dtype=np.int64)
    breaks[1:] = np.cumsum(np.diff(stamps) != step_ns)
    crosses = breaks[length - 1 :] != breaks[: n - length + 1]  # per possible start
    clean = np.flatnonzero(~crosses)
    for i in np.flatnonzero(crosses[starts]):
        low = starts[i - 1] + length + gap if i > 0 else 0
        high = starts[i + 1] - length - gap if i + 1 < count else n - length
        first, last = np.searchsorted(clean, [low, high + 1])
        if first == last:
            continue
        options = clean[first:last]
        starts[i] = options[np.argmin(np.abs(options - starts[i]))]
    return starts


def _weakening(rng: np.random.Generator, count: int, strength: float) -> np.ndarray:
    """Per-window weight in (0, 1] of the textbook pattern against ordinary market
    behaviour, shaped (P, 1): the square root of a strength spread around ``strength``, so
    that weak settings mix clear and ambiguous windows. The square root spreads the
    separability of the classes evenly over the strength scale (a linear weight leaves
    little to tell apart below strength 0.5)."""
    spread = _WEAKENING_SPREAD * min(strength, 1.0 - strength)
    return np.sqrt(strength + rng.uniform(-spread, spread, count))[:, None]


def _pattern_spans(
    rng: np.random.Generator, count: int, length: int, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bars each weakened pattern fills (float, (P,)) and its offset inside the window
    (int, (P,)): the weaker the pattern, the more of its window may be ordinary market."""
    shortest = 1.0 - _MAX_SPAN_CUT * (1.0 - weight[:, 0])
    span = np.round(length * rng.uniform(shortest, 1.0))
    span = np.clip(span, min(length, _MIN_SPAN), length)
    offset = np.floor(rng.random(count) * (length - span + 1)).astype(np.int64)
    return span, offset


def _blend(value: np.ndarray | float, neutral: float, weight: np.ndarray) -> np.ndarray:
    """``value`` at weight 1, ``neutral`` (ordinary market) at weight 0."""
    return neutral + weight * (np.asarray(value) - neutral)


def _pattern_shapes(
    rng: np.random.Generator,
    retracement: np.ndarray,
    length: int,
    span: np.ndarray,
    weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Target log-price path in units of the window's bar volatility, and per bar the
    noise scale, noise persistence and volume factor, all shaped (P, T); a pattern of
    ``span`` bars fills the first ``span`` columns of its row.

    consolidation: a lead-in move of random size and sign over the first 30-55% of the
    pattern, then a tight, mean-reverting range (noise 0.22-0.35x, quick reversion, low volume).
    retracement: an optional flat start, an impulse of 8-16 bar sds (about 5-10 ATRs) over
    25-40% of the pattern on high volume, then a pullback of 38-62% of it to the end.
    ``weight`` ((P, 1) in (0, 1], or None for 1) blends each of these towards ordinary
    market behaviour: noise scale, persistence and volume factor towards 1 (a random walk
    at the bar volatility), lead-in size, impulse size and pullback depth towards 0.
    """
    count = retracement.size
    bar = np.arange(length)[None, :].astype(float)
    span = span[:, None]
    direction = (rng.integers(0, 2, size=count) * 2.0 - 1.0)[:, None]
    lead_share = rng.uniform(0.30, 0.55, count)[:, None]
    lead_size = rng.uniform(4.0, 17.0, count)[:, None]
    tight_scale = rng.uniform(0.22, 0.35, count)[:, None]
    flat_share = rng.uniform(0.0, 0.15, count)[:, None]
    impulse_share = rng.uniform(0.25, 0.40, count)[:, None]
    size = rng.uniform(8.0, 16.0, count)[:, None]
    pullback = rng.uniform(0.38, 0.62, count)[:, None]
    # noise scale, noise persistence and volume factor of each phase; 1 is ordinary market
    knob = {
        "lead_scale": 0.9,  # consolidation lead-in
        "lead_phi": 0.9,
        "tight_phi": 0.6,  # consolidation range (its noise scale is tight_scale)
        "tight_vol": 0.6,
        "r_scale": 0.85,  # whole retracement
        "r_phi": 0.9,
        "impulse_vol": 1.7,
        "pullback_vol": 0.9,
    }
    if weight is not None:  # only then: at full strength the arithmetic stays as it was
        knob = {name: _blend(value, 1.0, weight) for name, value in knob.items()}
        tight_scale = _blend(tight_scale, 1.0, weight)
        lead_size, size, pullback = lead_size * weight, size * weight, pullback * weight
    # consolidation
    lead = np.round(span * lead_share)
    tight = bar >= lead
    c_shape = direction * lead_size * np.minimum(bar + 1.0, lead) / lead
    c_scale = np.where(tight, tight_scale, knob["lead_scale"])
    c_phi = np.where(tight, knob["tight_phi"], knob["lead_phi"])
    c_vol = np.where(tight, knob["tight_vol"], 1.0)
    # retracement
    flat = np.round(span * flat_share)
    impulse = np.round(span * impulse_share)
    peak = flat + impulse
    rising = np.clip((bar + 1.0 - flat) / impulse, 0.0, 1.0)
    falling = np.clip((bar + 1.0 - peak) / (span - peak), 0.0, 1.0)
    r_shape = direction * size * (rising - pullback * falling)
    in_impulse = (bar >= flat) & (bar < peak)
    r_scale = np.broadcast_to(knob["r_scale"], (count, length))
    r_phi = np.broadcast_to(knob["r_phi"], (count, length))
    r_vol = np.where(
        in_impulse, knob["impulse_vol"], np.where(bar >= peak, knob["pullback_vol"], 1.0)
    )
    pick = retracement[:, None]
    return (
        np.where(pick, r_shape, c_shape),
        np.where(pick, r_scale, c_scale),
        np.where(pick, r_phi, c_phi),
        np.where(pick, r_vol, c_vol),
    )


def _pattern_paths(
    shape: np.ndarray,
    scale: np.ndarray,
    phi: np.ndarray,
    noise: np.ndarray,
    local: np.ndarray,
    level_sd: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar returns of windows whose log path is the target shape (scaled by
    ``level_sd``, the window's mean bar sd, (P, 1)) plus AR(1) noise of sd ``scale *
    local``, and the noise sd of each bar. The noise reverts to the shape, so the pattern
    stays visible however long the window."""
    innovation_sd = scale * local
    level = shape * level_sd
    deviation = np.zeros_like(level)
    previous = np.zeros(level.shape[0])
    for t in range(level.shape[1]):
        previous = phi[:, t] * previous + innovation_sd[:, t] * noise[:, t]
        deviation[:, t] = previous
    path = level + deviation
    return np.diff(path, axis=1, prepend=0.0), innovation_sd


def _pattern_frame(
    config: SyntheticMarketConfig, stamps: np.ndarray, planted: _Planted
) -> pd.DataFrame:
    """The patterns table: one row per window, sorted by start."""
    starts = planted.starts.astype(np.int64)
    ends = starts + config.pattern_length - 1
    labels = np.where(planted.retracement, PATTERN_LABELS[1], PATTERN_LABELS[0])
    frame = pd.DataFrame(
        {
            "symbol": pd.Series([config.symbol] * starts.size, dtype="string"),
            "start": starts,
            "end": ends,
            "start_ts": pd.to_datetime(stamps[starts], unit="ns", utc=True),
            "end_ts": pd.to_datetime(stamps[ends], unit="ns", utc=True),
            "label": pd.Series(labels, dtype="string"),
        }
    )
    return frame.astype({"start_ts": "datetime64[ns, UTC]", "end_ts": "datetime64[ns, UTC]"})


# --------------------------------------------------------------------------- bars


def _ohlc(
    rng: np.random.Generator,
    start_price: float,
    returns: np.ndarray,
    gaps: np.ndarray,
    sd: np.ndarray,
    tick_size: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Open, high, low and close from per-bar log returns, opening jumps and bar sd.

    The high and low are exact draws of the maximum and minimum of a Brownian bridge from
    the open to the close with the bar's variance, so they always enclose open and close.
    """
    log_close = np.cumsum(returns + gaps)
    log_close += math.log(start_price)
    close = np.exp(log_close, out=log_close)
    open_ = np.empty_like(close)
    open_[0] = start_price * math.exp(gaps[0])
    open_[1:] = close[:-1] * np.exp(gaps[1:])
    spread = -2.0 * sd**2
    high = np.log1p(-rng.random(returns.size))
    high *= spread
    high += returns**2
    high = 0.5 * (returns + np.sqrt(high, out=high))
    low = np.log1p(-rng.random(returns.size))
    low *= spread
    low += returns**2
    low = 0.5 * (returns - np.sqrt(low, out=low))
    high = open_ * np.exp(high, out=high)
    low = open_ * np.exp(low, out=low)
    if tick_size is not None:
        open_, high, low, close = (
            np.maximum(np.round(price / tick_size) * tick_size, tick_size)
            for price in (open_, high, low, close)
        )
    np.maximum(high, np.maximum(open_, close), out=high)
    np.minimum(low, np.minimum(open_, close), out=low)
    return open_, high, low, close


def _volume(
    rng: np.random.Generator,
    config: SyntheticMarketConfig,
    season: np.ndarray,
    activity: np.ndarray,
    shocks: np.ndarray,
    pattern_factor: np.ndarray,
) -> np.ndarray:
    """Whole-number volumes that follow the intraday profile, the current volatility and
    the size of the bar's shock, with log-normal noise; mean close to ``volume_base``."""
    df = config.tail_df
    mean_abs = (
        2.0
        * math.sqrt(df - 2.0)
        * math.exp(math.lgamma((df + 1.0) / 2.0) - math.lgamma(df / 2.0))
        / (math.sqrt(math.pi) * (df - 1.0))
    )  # E|z| of a unit-variance Student-t
    volume = rng.standard_normal(shocks.size)
    volume *= 0.3
    volume -= 0.045  # log-normal noise with mean 1
    np.exp(volume, out=volume)
    volume *= 0.5 + 0.5 * np.abs(shocks) / mean_abs
    volume *= season
    volume *= activity
    volume *= pattern_factor
    volume *= config.volume_base
    return np.round(volume, out=volume)
