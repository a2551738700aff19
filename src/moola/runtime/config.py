"""``LiveConfig``: everything one paper or live session runs under, in one frozen model.

A session is declared in YAML (``load_live_config(path)``) and parsed once into typed,
frozen pydantic models that refuse unknown keys: an error names the key and the file. The
resolved config (every default filled in, ``model_dump(mode="json")``) and its SHA-256
(``config_hash``) are stored with each session in the journal, so a session says exactly
what it traded under.

The defaults are the crypto signal bot's (``DOMAIN.md``): members weighted 0.35 (per-symbol
direction) / 0.40 (multi-symbol trend) / 0.25 (RL policy); tiers high >= 0.75, medium >=
0.65, low >= 0.55; at most 10 signals an hour, 5 of them high-tier; FTMO limits (daily loss
5% of start-of-day equity, total loss 10% of initial) and 1% risk per trade with a stop
``atr_multiple`` ATRs away. A non-positive risk setting is refused, naming it.

Example::

    mode: paper
    symbols: [BTC-USD, ETH-USD]
    timeframe: 1m
    members:
      - {role: direction, run: 20260101-120000-lstm-abc123}
      - {role: trend, run: 20260101-130000-transformer-def456, weight: 0.4}
    execution: {instrument: crypto, initial_cash: 10000, commission: 0.0006}
    broker: paper
    feed: {source: coinbase, poll_seconds: 5, lookback_bars: 300}   # live bars, no --replay
    coinbase: {max_slippage_bps: 50}
    kill_switch: {flatten: false}   # true: the kill switch also closes every position

``feed`` (optional) is where a session without ``--replay`` polls its closed bars
(``FeedConfig``); ``coinbase`` is the venue: its API root, timeouts and retries (for the
candles and the orders) and how far above the last price a market buy may fill.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from moola.core.errors import ConfigError
from moola.core.hashing import sha256_json
from moola.core.settings import load_config, parse_config
from moola.core.timeframes import parse_timeframe
from moola.sim.execution import ExecutionConfig

__all__ = [
    "DEFAULT_MAX_SLIPPAGE_BPS",
    "DEFAULT_MEMBER_WEIGHTS",
    "DEFAULT_TIERS",
    "CoinbaseConfig",
    "FeedConfig",
    "KillSwitchConfig",
    "LiveConfig",
    "MemberConfig",
    "RateLimitConfig",
    "RiskConfig",
    "StalenessConfig",
    "TierConfig",
    "load_live_config",
    "parse_live_config",
]

#: The ensemble's weight of each member role when a member does not give its own.
DEFAULT_MEMBER_WEIGHTS: dict[str, float] = {"direction": 0.35, "trend": 0.40, "rl": 0.25}
#: Confidence thresholds of the signal tiers (confidence = max(p, 1 - p)).
DEFAULT_TIERS: dict[str, float] = {"high": 0.75, "medium": 0.65, "low": 0.55}
#: How far above the last price a Coinbase market buy may fill (basis points).
DEFAULT_MAX_SLIPPAGE_BPS = 50.0

Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
Fraction = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class _Frozen(BaseModel):
    """Frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class MemberConfig(_Frozen):
    """One ensemble member: a promoted run playing ``role``.

    ``run``: the promoted run id (``artifacts/models/promoted/<run>``). ``weight``: its
    ensemble weight (default: the role's, 0.35 / 0.40 / 0.25). ``up_class``: the run's
    class that means "price goes up" (default ``"up"``); ``down_class``: optionally the
    class that means "down", when the run has more than two classes (the member's value is
    then ``p(up) / (p(up) + p(down))``). An ``rl`` member is an RL run's best model.
    """

    role: Literal["direction", "trend", "rl"]
    run: str = Field(min_length=1)
    weight: Positive | None = None
    up_class: str = "up"
    down_class: str | None = None

    @property
    def name(self) -> str:
        """The member's name in the journal: its role (one member per role)."""
        return self.role

    @property
    def resolved_weight(self) -> float:
        return DEFAULT_MEMBER_WEIGHTS[self.role] if self.weight is None else float(self.weight)


class TierConfig(_Frozen):
    """Confidence thresholds of the three tiers: high >= medium >= low > 0.5."""

    high: Annotated[float, Field(gt=0.5, le=1.0)] = DEFAULT_TIERS["high"]
    medium: Annotated[float, Field(gt=0.5, le=1.0)] = DEFAULT_TIERS["medium"]
    low: Annotated[float, Field(gt=0.5, le=1.0)] = DEFAULT_TIERS["low"]

    @model_validator(mode="after")
    def _ordered(self) -> TierConfig:
        if not self.high >= self.medium >= self.low:
            raise ValueError(
                f"tiers must satisfy high >= medium >= low; got high={self.high}, "
                f"medium={self.medium}, low={self.low}"
            )
        return self

    def as_tuple(self) -> tuple[tuple[str, float], ...]:
        """``(("high", 0.75), ("medium", 0.65), ("low", 0.55))``: the form ``tier_of`` takes."""
        return (("high", self.high), ("medium", self.medium), ("low", self.low))


class RateLimitConfig(_Frozen):
    """Signals allowed per window: ``all`` tiers together and ``high`` tier alone."""

    all_per_window: PositiveInt = 10
    high_per_window: PositiveInt = 5
    window_seconds: PositiveInt = 3600

    def limits(self) -> dict[str, tuple[int, int]]:
        """``{"all": (10, 3600), "high": (5, 3600)}``: the form ``RateLimiter`` takes."""
        return {
            "all": (self.all_per_window, self.window_seconds),
            "high": (self.high_per_window, self.window_seconds),
        }


class RiskConfig(_Frozen):
    """Risk limits; every one must be positive (a zero or negative one is refused).

    ``daily_loss`` / ``total_loss``: fractions of start-of-day / initial equity;
    ``risk_per_trade``: the fraction of equity lost if the stop (``atr_multiple`` ATRs of
    ``atr_period`` bars away) is hit; ``max_position``: units per symbol;
    ``max_open_positions``: symbols held at once.
    """

    daily_loss: Fraction = 0.05
    total_loss: Fraction = 0.10
    risk_per_trade: Fraction = 0.01
    atr_period: PositiveInt = 14
    atr_multiple: Positive = 2.0
    max_position: Positive = 1.0
    max_open_positions: PositiveInt = 3


class KillSwitchConfig(_Frozen):
    """What the kill switch does besides cancelling open orders and stopping.

    ``flatten``: also close every held position (False: positions are left as they are,
    for a person to handle). On, each held symbol's next bar journals a market order
    closing it (decision ``flatten``, its reason naming the kill switch), before it is
    sent; the risk gate and the rate limits do not judge it. The session stops once
    nothing is held and no order is working.
    """

    flatten: bool = False


class StalenessConfig(_Frozen):
    """When a bar is not traded: older than ``max_bar_age_seconds`` (its close to now), or
    more than ``max_gap_bars`` bar lengths after its symbol's previous bar (a gap)."""

    max_bar_age_seconds: Positive = 120.0
    max_gap_bars: PositiveInt = 1


class FeedConfig(_Frozen):
    """Where a session without ``--replay`` gets its bars: closed bars polled from
    ``source`` (``coinbase``: Advanced Trade's public candles, no key needed; the API root
    is the ``coinbase`` section's ``base_url``).

    ``granularity``: the candles' length, which must be the session's ``timeframe``
    (default: it). ``poll_seconds``: the wait between two polls. ``lookback_bars``: how many
    closed bars the first poll fetches (they warm the features and members up; older than
    ``staleness.max_bar_age_seconds``, they are journaled but never traded), and the most a
    poll fetches after an outage (older missing bars are a gap). ``settle_seconds``: a bar
    counts as closed only this long after its end by the exchange's clock (a candle may be
    completed a moment after its end). ``max_failed_polls``: consecutive polls that may
    fail (after their retries) before the session stops with the error.
    """

    source: Literal["coinbase"] = "coinbase"
    granularity: str | None = None
    poll_seconds: Positive = 5.0
    lookback_bars: PositiveInt = 300
    settle_seconds: NonNegative = 2.0
    max_failed_polls: PositiveInt = 10

    @field_validator("granularity")
    @classmethod
    def _granularity(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_timeframe(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value


class CoinbaseConfig(_Frozen):
    """Coinbase Advanced Trade, for the public candles and (mode live) the orders.

    ``base_url``: the API root. ``timeout_seconds``, ``max_retries``, ``backoff_seconds``:
    each request's limit, and the retries of a 429, 5xx or timeout with a backoff doubling
    from ``backoff_seconds``. ``quote_currency``: what equity is valued in.
    ``max_slippage_bps``: a market buy is sent as a limit IOC at the last price raised by
    this many basis points, so it never fills above that cap nor more units than decided.
    """

    base_url: str = "https://api.coinbase.com"
    timeout_seconds: Positive = 10.0
    max_retries: Annotated[int, Field(ge=0, strict=True)] = 3
    backoff_seconds: NonNegative = 0.5
    quote_currency: str = Field(default="USD", min_length=1)
    max_slippage_bps: Annotated[float, Field(gt=0.0, lt=10_000.0)] = DEFAULT_MAX_SLIPPAGE_BPS

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL; got {value!r}")
        return value


class LiveConfig(_Frozen):
    """A paper or live session (see the module docstring for the YAML form).

    ``feature_set``: the feature set computed incrementally on every bar (its row hash is
    journaled; members trained on feature windows of it read its rows). ``calibration``:
    each member's probabilities pass through its run's calibrator (True) or are the
    estimator's raw ones (False). ``journal_url``: None for the default SQLite file under the
    data root (``live/<mode>.db``). ``notifier_url``: a webhook for signals, denials,
    halts and errors (None: no notifications). ``feed``: where bars are polled from
    when no replay is given (None: a session needs ``--replay``). ``coinbase``: the venue's
    settings (``CoinbaseConfig``). ``kill_switch``: whether turning it on also flattens
    (``KillSwitchConfig``).
    """

    mode: Literal["paper", "live"] = "paper"
    symbols: tuple[str, ...] = Field(min_length=1)
    timeframe: str = "1m"
    feature_set: str = "intraday31"
    members: tuple[MemberConfig, ...] = Field(min_length=1)
    calibration: bool = True
    tiers: TierConfig = TierConfig()
    rate_limits: RateLimitConfig = RateLimitConfig()
    risk: RiskConfig = RiskConfig()
    execution: ExecutionConfig = Field(default_factory=lambda: ExecutionConfig(instrument="crypto"))
    broker: Literal["paper", "coinbase"] = "paper"
    journal_url: str | None = None
    staleness: StalenessConfig = StalenessConfig()
    notifier_url: str | None = None
    feed: FeedConfig | None = None
    coinbase: CoinbaseConfig = CoinbaseConfig()
    kill_switch: KillSwitchConfig = KillSwitchConfig()

    @field_validator("symbols")
    @classmethod
    def _distinct_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value) or any(not s.strip() for s in value):
            raise ValueError(f"symbols must be distinct, non-empty names; got {list(value)}")
        return value

    @field_validator("execution", mode="before")
    @classmethod
    def _execution(cls, value: Any) -> Any:
        if isinstance(value, Mapping):  # its own errors, under this key and file
            try:
                return ExecutionConfig(**value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        try:
            parse_timeframe(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("members")
    @classmethod
    def _one_per_role(cls, value: tuple[MemberConfig, ...]) -> tuple[MemberConfig, ...]:
        roles = [m.role for m in value]
        twice = sorted({r for r in roles if roles.count(r) > 1})
        if twice:
            raise ValueError(f"one member per role; {twice} named more than once")
        return value

    @model_validator(mode="after")
    def _live_broker(self) -> LiveConfig:
        if self.mode == "live" and self.broker == "paper":
            raise ValueError("mode 'live' needs a real broker (broker: coinbase), not 'paper'")
        return self

    @model_validator(mode="after")
    def _feed_granularity(self) -> LiveConfig:
        granularity = None if self.feed is None else self.feed.granularity
        if granularity is not None and parse_timeframe(granularity) != parse_timeframe(
            self.timeframe
        ):
            raise ValueError(
                f"feed.granularity {granularity!r} must be the session's timeframe "
                f"{self.timeframe!r} (the engine's bars are one timeframe long)"
            )
        return self

    @property
    def weights(self) -> dict[str, float]:
        """Each member's ensemble weight by name."""
        return {m.name: m.resolved_weight for m in self.members}

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in, as JSON values (stored with a session)."""
        return self.model_dump(mode="json")

    @property
    def config_hash(self) -> str:
        """SHA-256 of the resolved config: the session's config identity."""
        return sha256_json(self.resolved())

    def with_mode(self, mode: str | None) -> LiveConfig:
        """This config in ``mode`` (None: unchanged), validated again."""
        if mode is None or mode == self.mode:
            return self
        values = self.resolved()
        values["mode"] = mode
        return parse_live_config(values, where=f"live config with its mode overridden to {mode}")


def parse_live_config(values: Mapping[str, Any], *, where: str = "the live config") -> LiveConfig:
    """``values`` as a ``LiveConfig``; a bad key raises ``ConfigError`` naming it and ``where``."""
    return parse_config(LiveConfig, dict(values), where=where)


def load_live_config(path: str | Path, **overrides: object) -> LiveConfig:
    """Read YAML ``path`` into a ``LiveConfig`` (non-None ``overrides`` on top); an error
    names the key and the file."""
    return load_config(path, LiveConfig, **overrides)
