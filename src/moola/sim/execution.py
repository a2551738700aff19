"""Execution terms in one object: :class:`ExecutionConfig`, hashed into every backtest.

What a fill costs and when it happens (instrument, initial cash, commission, spread,
slippage, latency, engine, risk rules) is declared once here, as a frozen, keyword-only
pydantic model that refuses unknown keys (naming the key, with a "did you mean") and
impossible values (negative costs, latency below one bar, a loss limit above 100%). Its
content hash (:attr:`ExecutionConfig.config_hash`, the SHA-256 of its JSON form) is its
identity: two backtests with one hash ran under the same terms.

YAML saves and loads it (``moola.core.settings.load_config(path, ExecutionConfig)``); it
never names classes to wire up: each cost model and rule is a small tagged spec
(``{"model": "fixed_bps", "bps": 1.0}``, ``{"rule": "total_loss_limit", "pct": 0.1}``)
that :meth:`build` turns into the ``moola.sim`` object. Shorthands read naturally in YAML
and flags: ``commission: 0.0005`` is a rate of notional, ``slippage: 1.0`` is fixed bps,
``rules: ftmo`` the FTMO defaults and ``rules: none`` (or ``[]``) no rules.

:meth:`ExecutionConfig.from_terms` builds one from the objects the old keyword arguments
took (``Instrument``, ``CommissionModel``, ``SlippageModel``, ``Rule``), so those callers
keep working for one release.
"""

from __future__ import annotations

import difflib
import zoneinfo
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moola.core.errors import ConfigError, describe_validation
from moola.core.hashing import sha256_json
from moola.core.settings import load_config
from moola.sim.costs import (
    CommissionModel,
    FixedBps,
    SlippageModel,
    SpreadModel,
    SquareRootImpact,
    VolatilityScaled,
)
from moola.sim.instruments import (
    Instrument,
    crypto_instrument,
    equity_instrument,
    futures_instrument,
    fx_instrument,
)
from moola.sim.limits import MaxOpenPositions, MaxPosition, RiskPerTrade, TradingHalt
from moola.sim.propfirm import (
    DailyLossLimit,
    MinimumTradingDays,
    ProfitTarget,
    Rule,
    TotalLossLimit,
)

ENGINES: tuple[str, ...] = ("vectorised", "event")
ON_BREACH: tuple[str, ...] = ("record", "halt", "flatten")
INSTRUMENT_KINDS: tuple[str, ...] = ("equity", "futures", "fx", "crypto")
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]


def _did_you_mean(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f". Did you mean {close[0]!r}?" if close else "."


class _Terms(BaseModel):
    """Base of the specs: frozen, keyword-only, unknown keys refused with a suggestion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, values: Any) -> Any:
        if isinstance(values, Mapping):
            known = list(cls.model_fields)
            for key in values:
                if key not in known:
                    raise ValueError(
                        f"unknown key {key!r}{_did_you_mean(str(key), known)} "
                        f"{cls.__name__} takes {', '.join(known)}"
                    )
        return values


def _check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r}; use an IANA name such as 'UTC' or 'Europe/Prague'"
        ) from None
    return name


# --------------------------------------------------------------------------- instrument


class InstrumentSpec(_Terms):
    """An instrument given in full (for contracts the text specs do not cover)."""

    symbol: str
    tick_size: Positive = 0.01
    point_value: Positive = 1.0
    currency: str = "USD"
    lot_size: Positive = 1.0
    max_leverage: Positive = 1.0

    def build(self) -> Instrument:
        """The ``moola.sim.Instrument``."""
        return Instrument(**self.model_dump())


def instrument_from_spec(spec: Instrument | InstrumentSpec | str | None, symbol: str) -> Instrument:
    """An ``Instrument`` from itself, a spec, ``None`` (an equity), or a text spec:
    ``equity``, ``futures:NQ`` (``futures`` alone uses ``symbol`` as the root), ``fx[:PAIR]``
    or ``crypto[:SYMBOL]``."""
    if isinstance(spec, Instrument):
        return spec
    if isinstance(spec, InstrumentSpec):
        return spec.build()
    if spec is None:
        return equity_instrument(symbol)
    kind, _, name = str(spec).strip().partition(":")
    kind = kind.lower()
    name = name.strip() or symbol
    builders = {
        "equity": equity_instrument,
        "futures": futures_instrument,
        "fx": fx_instrument,
        "crypto": crypto_instrument,
    }
    if kind not in builders:
        close = difflib.get_close_matches(kind, INSTRUMENT_KINDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Unknown instrument {spec!r}.{hint} Use equity, futures:ROOT (e.g. futures:NQ), "
            "fx or crypto."
        )
    return builders[kind](name)


# --------------------------------------------------------------------------- costs


class CommissionSpec(_Terms):
    """``per_unit * |q| + rate * |q| * price * point_value``, at least ``minimum``."""

    per_unit: NonNegative = 0.0
    rate: NonNegative = 0.0
    minimum: NonNegative = 0.0

    def build(self) -> CommissionModel:
        """The ``moola.sim.CommissionModel``."""
        return CommissionModel(per_unit=self.per_unit, rate=self.rate, minimum=self.minimum)


class FixedBpsSpec(_Terms):
    """Slippage of a fixed fraction of the reference price (``moola.sim.FixedBps``)."""

    model: Literal["fixed_bps"] = "fixed_bps"
    bps: NonNegative = 1.0

    def build(self) -> SlippageModel:
        return FixedBps(bps=self.bps)


class VolatilityScaledSpec(_Terms):
    """Slippage of ``k`` times the recent bar range (``moola.sim.VolatilityScaled``)."""

    model: Literal["volatility_scaled"] = "volatility_scaled"
    k: NonNegative = 0.1
    window: Annotated[int, Field(ge=1, strict=True)] = 20

    def build(self) -> SlippageModel:
        return VolatilityScaled(k=self.k, window=self.window)


class SquareRootImpactSpec(_Terms):
    """Square-root market impact (``moola.sim.SquareRootImpact``)."""

    model: Literal["square_root_impact"] = "square_root_impact"
    k: NonNegative = 1.0
    window: Annotated[int, Field(ge=1, strict=True)] = 20

    def build(self) -> SlippageModel:
        return SquareRootImpact(k=self.k, window=self.window)


SlippageSpec = Annotated[
    FixedBpsSpec | VolatilityScaledSpec | SquareRootImpactSpec, Field(discriminator="model")
]
_SLIPPAGE_SPECS: dict[type, type] = {
    FixedBps: FixedBpsSpec,
    VolatilityScaled: VolatilityScaledSpec,
    SquareRootImpact: SquareRootImpactSpec,
}


# --------------------------------------------------------------------------- rules


class DailyLossSpec(_Terms):
    """``moola.sim.DailyLossLimit``: equity may not fall ``pct`` below the day's start."""

    rule: Literal["daily_loss_limit"] = "daily_loss_limit"
    pct: Fraction = 0.05
    timezone: str = "UTC"
    basis: Literal["start_of_day", "initial"] = "start_of_day"
    initial_balance: Positive | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return _check_timezone(value)

    def build(self) -> Rule:
        return DailyLossLimit(
            pct=self.pct,
            timezone=self.timezone,
            basis=self.basis,
            initial_balance=self.initial_balance,
        )


class TotalLossSpec(_Terms):
    """``moola.sim.TotalLossLimit``: equity may not fall ``pct`` below the initial balance."""

    rule: Literal["total_loss_limit"] = "total_loss_limit"
    pct: Fraction = 0.10
    initial_balance: Positive | None = None

    def build(self) -> Rule:
        return TotalLossLimit(pct=self.pct, initial_balance=self.initial_balance)


class ProfitTargetSpec(_Terms):
    """``moola.sim.ProfitTarget``: equity must reach ``pct`` above the initial balance."""

    rule: Literal["profit_target"] = "profit_target"
    pct: Positive = 0.10
    initial_balance: Positive | None = None

    def build(self) -> Rule:
        return ProfitTarget(pct=self.pct, initial_balance=self.initial_balance)


class MinimumTradingDaysSpec(_Terms):
    """``moola.sim.MinimumTradingDays``: at least ``days`` days with a trade."""

    rule: Literal["minimum_trading_days"] = "minimum_trading_days"
    days: Annotated[int, Field(ge=1, strict=True)] = 4
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return _check_timezone(value)

    def build(self) -> Rule:
        return MinimumTradingDays(days=self.days, timezone=self.timezone)


class MaxPositionSpec(_Terms):
    """``moola.sim.MaxPosition``: at most ``units`` units held, counting working orders."""

    rule: Literal["max_position"] = "max_position"
    units: Positive = 1.0

    def build(self) -> Rule:
        return MaxPosition(units=self.units)


class MaxOpenPositionsSpec(_Terms):
    """``moola.sim.MaxOpenPositions``: at most ``count`` entries at once."""

    rule: Literal["max_open_positions"] = "max_open_positions"
    count: Annotated[int, Field(ge=1, strict=True)] = 1

    def build(self) -> Rule:
        return MaxOpenPositions(count=self.count)


class RiskPerTradeSpec(_Terms):
    """``moola.sim.RiskPerTrade``: an order risks at most ``pct`` of equity on a
    ``stop_pct`` adverse move."""

    rule: Literal["risk_per_trade"] = "risk_per_trade"
    pct: Fraction = 0.01
    stop_pct: Fraction = 0.01

    def build(self) -> Rule:
        return RiskPerTrade(pct=self.pct, stop_pct=self.stop_pct)


class TradingHaltSpec(_Terms):
    """``moola.sim.TradingHalt``: refuse every order (the kill switch)."""

    rule: Literal["trading_halt"] = "trading_halt"
    reason: Annotated[str, Field(min_length=1)] = "kill switch"

    def build(self) -> Rule:
        return TradingHalt(reason=self.reason)


RuleSpec = Annotated[
    DailyLossSpec
    | TotalLossSpec
    | ProfitTargetSpec
    | MinimumTradingDaysSpec
    | MaxPositionSpec
    | MaxOpenPositionsSpec
    | RiskPerTradeSpec
    | TradingHaltSpec,
    Field(discriminator="rule"),
]
_RULE_SPECS: dict[type, type] = {
    DailyLossLimit: DailyLossSpec,
    TotalLossLimit: TotalLossSpec,
    ProfitTarget: ProfitTargetSpec,
    MinimumTradingDays: MinimumTradingDaysSpec,
    MaxPosition: MaxPositionSpec,
    MaxOpenPositions: MaxOpenPositionsSpec,
    RiskPerTrade: RiskPerTradeSpec,
    TradingHalt: TradingHaltSpec,
}
RULE_SPECS: tuple[type, ...] = tuple(_RULE_SPECS.values())
"""Every rule an ExecutionConfig can hold (the registry ``check_rule`` runs over)."""
FTMO_RULES: tuple[dict[str, Any], ...] = (
    {"rule": "daily_loss_limit", "pct": 0.05, "timezone": "Europe/Prague", "basis": "initial"},
    {"rule": "total_loss_limit", "pct": 0.10},
    {"rule": "profit_target", "pct": 0.10},
    {"rule": "minimum_trading_days", "days": 4, "timezone": "Europe/Prague"},
)


def _rule_spec(rule: object) -> object:
    """A spec (mapping) from a ``Rule`` object of a known class; other values unchanged."""
    spec = _RULE_SPECS.get(type(rule))
    if spec is None:
        if isinstance(rule, Rule):
            raise ValueError(
                f"rule {rule!r} is a {type(rule).__name__}, which an ExecutionConfig cannot "
                f"record; use one of {', '.join(c.__name__ for c in _RULE_SPECS)}"
            )
        return rule
    values = {name: getattr(rule, name) for name in spec.model_fields if name != "rule"}
    return {"rule": spec.model_fields["rule"].default, **values}


# --------------------------------------------------------------------------- the config


class ExecutionConfig(_Terms):
    """How orders execute and what they cost: one frozen, hashable set of terms.

    Parameters
    ----------
    instrument : str or InstrumentSpec, default "equity"
        ``equity``, ``futures:ROOT`` (e.g. ``futures:NQ``), ``fx[:PAIR]``, ``crypto[:SYM]``
        (a bare kind takes the bars' symbol), or the instrument in full.
    initial_cash : float, default 100_000
        Positive.
    commission : CommissionSpec or float, optional
        Fees per order; a number is a rate of notional (0.0005 = 5 bps). ``None``: the
        instrument's default (none for the built-in instruments).
    spread : float or tuple of float, default 0
        Bid-ask spread in price units (one number, or one per bar); half paid per fill.
    slippage : slippage spec or float, optional
        ``fixed_bps``, ``volatility_scaled`` or ``square_root_impact``; a number is fixed bps.
    latency_bars : int, default 1
        A decision at bar ``t``'s close fills at the open of bar ``t + latency_bars`` at the
        earliest (>= 1).
    engine : "vectorised" or "event", default "vectorised"
        Which engine ``moola.backtest.run`` uses (identical results).
    rules : sequence of rule specs, default the FTMO rules
        Prop-firm / risk rules; ``"ftmo"`` (or ``True``) for the defaults, ``"none"``,
        ``False`` or ``[]`` for none. Kinds (``RULE_SPECS``): ``daily_loss_limit``,
        ``total_loss_limit``, ``profit_target``, ``minimum_trading_days``,
        ``max_position``, ``max_open_positions``, ``risk_per_trade``, ``trading_halt``.
        A ``Broker`` checks them before every order and on every bar.
    timezone : str, default "UTC"
        Where calendar days start, for the broker's start-of-day balance.
    on_breach : "record", "halt" or "flatten", default "record"
        What a rule breach does while the rules stream (in a ``Broker``, so in the event
        engine, the environment and the live runtime). ``record``: each rule's first breach
        is recorded (time, bar, rule, value, limit, detail) and trading goes on, so both
        engines give the same result and the same breach table. ``halt``: the first breach
        halts the broker (pending orders withdrawn, later orders denied naming it).
        ``flatten``: halt and close the position with a market order. ``halt`` and
        ``flatten`` need ``engine="event"``: the vectorised kernel cannot stop mid-run.
        Left at ``record``, the field is not part of the hashed form, so configs from
        before it existed keep their hash.
    """

    instrument: str | InstrumentSpec = "equity"
    initial_cash: Positive = 100_000.0
    commission: CommissionSpec | None = None
    spread: NonNegative | tuple[NonNegative, ...] = 0.0
    slippage: SlippageSpec | None = None
    latency_bars: Annotated[int, Field(ge=1, strict=True)] = 1
    engine: Literal["vectorised", "event"] = "vectorised"
    rules: tuple[RuleSpec, ...] = Field(default=FTMO_RULES, validate_default=True)  # type: ignore[assignment]
    timezone: str = "UTC"
    on_breach: Literal["record", "halt", "flatten"] = "record"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(describe_validation("ExecutionConfig", exc)) from None

    # -- shorthands, read before validation -------------------------------------------

    @field_validator("instrument", mode="before")
    @classmethod
    def _instrument(cls, value: Any) -> Any:
        if isinstance(value, Instrument):
            fields = InstrumentSpec.model_fields
            return {name: getattr(value, name) for name in fields}
        if isinstance(value, str):
            kind = value.strip().partition(":")[0].lower()
            if kind not in INSTRUMENT_KINDS:
                raise ValueError(
                    f"unknown instrument {value!r}{_did_you_mean(kind, INSTRUMENT_KINDS)} "
                    "Use equity, futures:ROOT (e.g. futures:NQ), fx[:PAIR] or crypto[:SYMBOL]"
                )
            if kind == "futures" and ":" in value:
                futures_instrument(value.partition(":")[2].strip())  # unknown root: now
        return value

    @field_validator("engine", mode="before")
    @classmethod
    def _engine(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ENGINES:
            raise ValueError(
                f"unknown engine {value!r}{_did_you_mean(value, ENGINES)} "
                "Use 'vectorised' or 'event'"
            )
        return value

    @field_validator("on_breach", mode="before")
    @classmethod
    def _on_breach(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ON_BREACH:
            raise ValueError(
                f"unknown on_breach {value!r}{_did_you_mean(value, ON_BREACH)} "
                "Use 'record', 'halt' or 'flatten'"
            )
        return value

    @model_validator(mode="after")
    def _breach_needs_event_engine(self) -> ExecutionConfig:
        if self.on_breach != "record" and self.engine == "vectorised":
            raise ValueError(
                f"on_breach={self.on_breach!r} needs engine='event': the vectorised engine "
                "cannot stop trading mid-run. Set engine='event', or on_breach='record' to "
                "record breaches and keep trading"
            )
        return self

    @field_validator("commission", mode="before")
    @classmethod
    def _commission(cls, value: Any) -> Any:
        if isinstance(value, CommissionModel):
            return {"per_unit": value.per_unit, "rate": value.rate, "minimum": value.minimum}
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"rate": value}
        return value

    @field_validator("spread", mode="before")
    @classmethod
    def _spread(cls, value: Any) -> Any:
        if value is None:
            return 0.0
        if isinstance(value, SpreadModel):
            value = value.spread
        if isinstance(value, np.ndarray | list | tuple):
            values = np.asarray(value, dtype=np.float64).ravel()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values = np.asarray([value], dtype=np.float64)
        else:
            return value
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            where = "" if values.size == 1 else f" at bar {row}"
            raise ValueError(
                f"spread must be a finite price difference >= 0; got {float(values[row])!r}{where}"
            )
        return float(values[0]) if values.size == 1 else tuple(values.tolist())

    @field_validator("slippage", mode="before")
    @classmethod
    def _slippage(cls, value: Any) -> Any:
        if isinstance(value, SlippageModel):
            spec = _SLIPPAGE_SPECS.get(type(value))
            if spec is None:
                raise ValueError(
                    f"slippage model {type(value).__name__} cannot be recorded in an "
                    f"ExecutionConfig; use one of {', '.join(c.__name__ for c in _SLIPPAGE_SPECS)}"
                )
            fields = {name: getattr(value, name) for name in spec.model_fields if name != "model"}
            return {"model": spec.model_fields["model"].default, **fields}
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"model": "fixed_bps", "bps": value}
        if isinstance(value, Mapping) and "model" not in value:
            return {"model": "fixed_bps", **value}
        return value

    @field_validator("rules", mode="before")
    @classmethod
    def _rules(cls, value: Any) -> Any:
        if value is True or (isinstance(value, str) and value.lower() == "ftmo"):
            return FTMO_RULES
        if value is None or value is False or (isinstance(value, str) and value.lower() == "none"):
            return ()
        if isinstance(value, str):
            raise ValueError(f"rules={value!r}: give 'ftmo', 'none' or a list of rules")
        if isinstance(value, Rule):
            value = [value]
        return tuple(_rule_spec(rule) for rule in value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return _check_timezone(value)

    # -- identity and objects ---------------------------------------------------------

    @property
    def config_hash(self) -> str:
        """``sha256:<hex>`` of the canonical JSON form: the identity of these terms.

        ``on_breach`` left at its default is not hashed, so every config from before the
        field existed keeps its hash."""
        form = self.model_dump(mode="json")
        if form["on_breach"] == "record":
            del form["on_breach"]
        return sha256_json(form)

    def build_instrument(self, symbol: str = "ASSET") -> Instrument:
        """The traded ``Instrument`` (a bare text kind is named ``symbol``)."""
        return instrument_from_spec(self.instrument, symbol)

    def build_commission(self) -> CommissionModel | None:
        """The commission model, or ``None`` for the instrument's default."""
        return None if self.commission is None else self.commission.build()

    def build_slippage(self) -> SlippageModel | None:
        """The slippage model, or ``None`` for none."""
        return None if self.slippage is None else self.slippage.build()

    def spread_value(self) -> float | np.ndarray:
        """The spread as the engines take it: a number, or one value per bar."""
        if isinstance(self.spread, tuple):
            return np.asarray(self.spread, dtype=np.float64)
        return float(self.spread)

    def build_rules(self) -> tuple[Rule, ...]:
        """The rule objects, in order."""
        return tuple(spec.build() for spec in self.rules)

    @classmethod
    def from_yaml(cls, path: str | Path, /, **overrides: Any) -> ExecutionConfig:
        """Read a YAML file of terms (``moola.core.settings.load_config``), with the
        non-``None`` ``overrides`` on top; errors name the file and each bad key."""
        try:
            return load_config(path, cls, **overrides)
        except ConfigError as exc:
            if str(path) in str(exc):
                raise
            raise ConfigError(f"Config file {path}: {exc}") from None

    @classmethod
    def of(cls, execution: object) -> ExecutionConfig:
        """``execution`` itself, a mapping validated into one, or (``None``) the defaults:
        the one way every entry point that takes execution terms reads them."""
        if execution is None:
            return cls()
        if isinstance(execution, ExecutionConfig):
            return execution
        if isinstance(execution, Mapping):
            return cls(**execution)
        raise ConfigError(
            f"execution must be a moola.sim.ExecutionConfig, got {type(execution).__name__}; "
            "pass the terms as execution=ExecutionConfig(...)."
        )

    @classmethod
    def from_terms(cls, **terms: Any) -> ExecutionConfig:
        """An ExecutionConfig from the old keyword arguments (objects or numbers):
        ``instrument, initial_cash, commission, spread, slippage, latency_bars, engine,
        prop_firm_rules`` (= ``rules``). ``None`` means the default."""
        values = {key: value for key, value in terms.items() if value is not None}
        if "prop_firm_rules" in values:
            values["rules"] = values.pop("prop_firm_rules")
        inst = values.get("instrument")
        if isinstance(inst, Instrument) and inst.commission is not None:
            values.setdefault("commission", inst.commission)
        return cls(**values)


def check_latency_fits(config: ExecutionConfig, n_bars: int) -> None:
    """Refuse a latency that leaves no bar for any fill (``latency_bars >= n_bars``)."""
    if config.latency_bars >= n_bars:
        raise ConfigError(
            f"latency_bars={config.latency_bars} but there are only {n_bars} bars: an order "
            f"decided at bar 0 would fill at bar {config.latency_bars}, after the last bar, "
            "so nothing could ever fill. Use a shorter latency or more bars."
        )
