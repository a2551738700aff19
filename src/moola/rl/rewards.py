"""Composable reward components for the trading environments, on one env or many.

A reward is a weighted sum of named components, declared by a frozen :class:`RewardSpec`
(YAML/dict form ``{"components": [{"name": "equity_change", "weight": 1.0}, ...]}``) and
evaluated by the :class:`Reward` it builds, once per step, from a :class:`StepOutcome`.
The default is ``equity_change`` alone with weight 1: the step's change of equity over the
initial cash, whose episode sum is the episode's PnL after every cost over the initial cash,
so the agent's return *is* its backtest return.

Each component turns the step into a raw value, then (in this order)

1. ``clip: [lo, hi]`` clips the raw value (either bound may be ``None``);
2. ``smoothing: s`` in [0, 1) smooths it: ``value_t = s * value_{t-1} + (1 - s) * raw_t``,
   with ``value_{-1} = 0`` at the start of each episode;
3. it is multiplied by ``weight * (1 - decay) ** k`` where ``k`` is the step of the
   episode (0 for the first step; ``decay`` in [0, 1)).

The components' weighted values sum (in the spec's order) to the total reward, and each is
reported, so an agent that games one component shows it in ``info["reward_components"]``.

Components and their raw values (penalties are non-negative magnitudes with a negative
default weight, so ``weight`` says how much one unit costs):

=================  =====================================================================
``equity_change``  ``(equity_after - equity_before) / initial_cash``  (default weight 1)
``realised_pnl``   ``realised_pnl / initial_cash``: PnL closed by this step's fills, after
                   fees (default weight 1)
``holding_cost``   ``1 + growth * bars_in_position`` per bar in a non-zero position
                   (times ``|position_after|`` when ``by_size``); default weight -1e-4
``overtrading``    ``per_turnover * turnover + per_trade * traded
                   + per_cost * costs / initial_cash``; default weight -1e-3
``drawdown``       ``mode="increase"``: ``max(drawdown - previous step's drawdown, 0)``
                   (previous = 0 at the episode start); ``mode="level"``:
                   ``max(drawdown - threshold, 0)``; default weight -1
``headroom``       ``(max(threshold - headroom, 0) / threshold) ** power``: 0 while the
                   prop-firm headroom is above ``threshold``, 1 at no headroom left;
                   default weight -0.01
``invalid_action`` ``invalid`` (1 when the action was invalid); default weight -1e-3
=================  =====================================================================

One implementation serves a single env (float fields in, floats out) and a vectorised
env (``(n_envs,)`` arrays in, arrays out) with bit-identical results: the float form is
computed as a one-element array. Smoothing, decay and the drawdown memory are per env;
``Reward.reset(mask)`` starts a new episode for the envs in ``mask`` only.

Written by hand: reward shaping for trading has no standard library; SB3 and Gymnasium
leave the reward to the environment.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from moola.core.errors import ConfigError

COMPONENTS: tuple[str, ...] = (
    "equity_change",
    "realised_pnl",
    "holding_cost",
    "overtrading",
    "drawdown",
    "headroom",
    "invalid_action",
)

Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
UnitOpen = Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)]

Value = float | np.ndarray


@dataclass(frozen=True)
class StepOutcome:
    """What one step did, for one env (floats) or ``n_envs`` envs (``(n_envs,)`` arrays).

    Fields a component does not use may be left at their defaults. A float field next to
    array fields (e.g. ``initial_cash``) is broadcast to every env.
    """

    equity_before: Value
    equity_after: Value
    initial_cash: Value
    realised_pnl: Value = 0.0  # closed by this step's fills, after fees
    costs: Value = 0.0  # fees + spread + slippage paid this step, >= 0
    position_before: Value = 0.0  # target fraction before the action
    position_after: Value = 0.0  # target fraction after it
    turnover: Value = 0.0  # |position_after - position_before|
    traded: Value = 0.0  # 1.0 when an order was submitted this step
    drawdown: Value = 0.0  # (peak - equity_after) / peak, >= 0
    headroom: Value = 1.0  # min of daily/total prop-firm headroom in [0, 1]
    invalid: Value = 0.0  # 1.0 when the action was invalid
    bars_in_position: Value = 0.0  # bars the current non-zero position has been held


def _did_you_mean(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- components


class _Component(BaseModel):
    """Fields every component has; subclasses add their parameters and ``raw``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    FIELDS: ClassVar[tuple[str, ...]] = ()  # StepOutcome fields ``raw`` reads
    MEMORY: ClassVar[bool] = False  # whether ``raw`` needs the previous step's value

    name: str
    weight: Finite = 1.0
    clip: tuple[Finite | None, Finite | None] | None = None
    smoothing: UnitOpen = 0.0
    decay: UnitOpen = 0.0

    @field_validator("clip")
    @classmethod
    def _clip(cls, value: tuple[float | None, float | None] | None) -> Any:
        if value is not None:
            lo, hi = value
            if lo is None and hi is None:
                return None
            if lo is not None and hi is not None and not lo < hi:
                raise ValueError(f"clip needs lo < hi, got [{lo}, {hi}]")
        return value

    def raw(self, v: Mapping[str, np.ndarray], memory: np.ndarray | None) -> np.ndarray:
        """The raw value per env from the step's fields ``v`` (``(n_envs,)`` arrays)."""
        raise NotImplementedError


class EquityChange(_Component):
    """``(equity_after - equity_before) / initial_cash``: PnL after all costs."""

    FIELDS: ClassVar[tuple[str, ...]] = ("equity_before", "equity_after", "initial_cash")
    name: Literal["equity_change"] = "equity_change"

    def raw(self, v: Mapping[str, np.ndarray], memory: np.ndarray | None) -> np.ndarray:
        return (v["equity_after"] - v["equity_before"]) / v["initial_cash"]


class RealisedPnl(_Component):
    """``realised_pnl / initial_cash``: only PnL closed by fills counts."""

    FIELDS: ClassVar[tuple[str, ...]] = ("realised_pnl", "initial_cash")
    name: Literal["realised_pnl"] = "realised_pnl"

    def raw(self, v: Mapping[str, np.ndarray], memory: np.ndarray | None) -> np.ndarray:
        return v["realised_pnl"] / v["initial_cash"]


class HoldingCost(_Component):
    """A cost per bar in a non-zero position, growing by ``growth`` per bar held."""

    FIELDS: ClassVar[tuple[str, ...]] = ("position_after", "bars_in_position")
    name: Literal["holding_cost"] = "holding_cost"
    weight: Finite = -1e-4
    growth: NonNegative = 0.0
    by_size: bool = False

    def raw(self, v: Mapping[str, np.ndarray], memory: np.ndarray | None) -> np.ndarray:
        position = v["position_after"]
        held = np.abs(position) if self.by_size else (position != 0.0).astype(np.float64)
        return held * (1.0 + self.growth * v["bars_in_position"])


class Overtrading(_Component):
    """A penalty on turnover, on each order and/or on the costs paid."""

    FIELDS: ClassVar[tuple[str, ...]] = ("turnover", "traded", "costs", "initial_cash")
    name: Literal["overtrading"] = "overtrading"
    weight: Finite = -1e-3
    per_turnover: NonNegative = 1.0
    per_trade: NonNegative = 0.0
    per_cost: NonNegative = 0.0

    @model_validator(mode="after")
    def _something(self) -> Overtrading:
        if self.per_turnover == self.per_trade == self.per_cost == 0.0:
            raise ValueError("per_turnover, per_trade and per_cost are all 0: nothing to penalise")
        return self

    def raw(self, v: Mapping[str, np.ndarray], memory: np.ndarray | None) -> np.ndarray:
        out = self.per_turnover * v["turnover"]
        out = out + self.per_trade * v["traded"]
        return out + self.per_cost * (v["costs"] / v["initial_cash"])


class Drawdown(_Component):
    """A penalty on the drawdown's increase (``mode="increase"``) or on its level."""

    FIELDS: ClassVar[tuple[str, ...]] = ("drawdown",)
    MEMORY: ClassVar[bool] = True
    name: Literal["drawdown"] = "drawdown"
    weight: Finite = -1.0
    mode: Literal["increase", "level"] = "increase"
    threshold: UnitOpen = 0.0

    def raw(self, v: Mapping[str, np.ndarray], memory: np.ndarray | None) -> np.ndarray:
        dd = v["drawdown"]
        if self.mode == "level":
            return np.maximum(dd - self.threshold, 0.0)
        assert memory is not None
        return np.maximum(dd - memory, 0.0)


class Headroom(_Component):
    """A penalty growing as the prop-firm headroom shrinks below ``threshold``."""

    FIELDS: ClassVar[tuple[str, ...]] = ("headroom",)
    name: Literal["headroom"] = "headroom"
    weight: Finite = -0.01
    threshold: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.5
    power: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 1.0

    def raw(self, v: Mapping[str, np.ndarray], memory: np.ndarray | None) -> np.ndarray:
        short = np.maximum(self.threshold - v["headroom"], 0.0) / self.threshold
        return short if self.power == 1.0 else short**self.power


class InvalidAction(_Component):
    """A penalty per invalid action."""

    FIELDS: ClassVar[tuple[str, ...]] = ("invalid",)
    name: Literal["invalid_action"] = "invalid_action"
    weight: Finite = -1e-3

    def raw(self, v: Mapping[str, np.ndarray], memory: np.ndarray | None) -> np.ndarray:
        return v["invalid"].copy()


_CLASSES: dict[str, type[_Component]] = {
    "equity_change": EquityChange,
    "realised_pnl": RealisedPnl,
    "holding_cost": HoldingCost,
    "overtrading": Overtrading,
    "drawdown": Drawdown,
    "headroom": Headroom,
    "invalid_action": InvalidAction,
}
assert tuple(_CLASSES) == COMPONENTS

ComponentSpec = Annotated[
    EquityChange | RealisedPnl | HoldingCost | Overtrading | Drawdown | Headroom | InvalidAction,
    Field(discriminator="name"),
]


# --------------------------------------------------------------------------- the spec


def _describe(exc: ValidationError) -> str:
    """One sentence naming each bad component (index and name) and key."""
    problems = []
    for error in exc.errors():
        loc = list(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
        if error["type"] == "extra_forbidden":
            message = f"unknown key{_did_you_mean(str(loc[-1]), list(RewardSpec.model_fields))}"
        where = ""
        if loc == ["components"] and message.startswith("components"):
            pass  # the message names the component itself
        elif len(loc) >= 2 and loc[0] == "components" and isinstance(loc[1], int):
            where = f"components[{loc[1]}]"
            rest = loc[2:]
            if rest and rest[0] in _CLASSES:
                where += f" ({rest[0]})"
                rest = rest[1:]
            if rest:
                where += " key " + ".".join(str(part) for part in rest)
        elif loc:
            where = ".".join(str(part) for part in loc)
        problems.append(f"{where}: {message}" if where else message)
    return "Invalid reward spec: " + "; ".join(problems) + "."


class RewardSpec(BaseModel):
    """Which reward components, with which weights and parameters (frozen; unknown keys
    and component names are refused with a "did you mean").

    ``components``: a list of component dicts (``{"name": ..., "weight": ..., **params}``)
    or bare names (their defaults). Default: ``equity_change`` alone, weight 1. Each name
    at most once. See the module docstring for each component's value and parameters.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    components: tuple[ComponentSpec, ...] = (EquityChange(),)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc), param="reward") from None

    @field_validator("components", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, (str, Mapping, _Component)) or not isinstance(value, Sequence):
            raise ValueError(
                "components must be a list of component dicts such as "
                "[{'name': 'equity_change', 'weight': 1.0}]"
            )
        out: list[Any] = []
        for i, item in enumerate(value):
            if isinstance(item, _Component):
                out.append(item)
                continue
            if isinstance(item, str):
                item = {"name": item}
            if not isinstance(item, Mapping):
                raise ValueError(
                    f"components[{i}] is a {type(item).__name__}; give a dict with a 'name' "
                    f"(one of {', '.join(COMPONENTS)})"
                )
            name = item.get("name")
            if name is None:
                raise ValueError(
                    f"components[{i}] has no 'name'; use one of {', '.join(COMPONENTS)}"
                )
            if name not in _CLASSES:
                raise ValueError(
                    f"components[{i}]: unknown component {name!r}"
                    f"{_did_you_mean(str(name), COMPONENTS)}; known: {', '.join(COMPONENTS)}"
                )
            known = list(_CLASSES[name].model_fields)
            for key in item:
                if key not in known:
                    raise ValueError(
                        f"components[{i}] ({name}): unknown key {key!r}"
                        f"{_did_you_mean(str(key), known)}; {name} takes {', '.join(known)}"
                    )
            out.append(dict(item))
        return out

    @field_validator("components")
    @classmethod
    def _unique(cls, value: tuple[_Component, ...]) -> tuple[_Component, ...]:
        if not value:
            raise ValueError("no components: a reward needs at least one (e.g. equity_change)")
        names = [c.name for c in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(
                    f"component {name!r} is given {names.count(name)} times; give it once"
                )
        return value

    @classmethod
    def of(cls, reward: object) -> RewardSpec:
        """``reward`` itself, a mapping validated into one, or (``None``) the default."""
        if reward is None:
            return cls()
        if isinstance(reward, RewardSpec):
            return reward
        if isinstance(reward, Mapping):
            return cls(**reward)
        raise ConfigError(
            f"reward must be a moola.rl.RewardSpec or a mapping, got {type(reward).__name__}; "
            "e.g. reward={'components': [{'name': 'equity_change'}]}.",
            param="reward",
        )

    @property
    def names(self) -> tuple[str, ...]:
        """The component names, in order."""
        return tuple(c.name for c in self.components)

    def with_component(self, name: str, **params: Any) -> RewardSpec:
        """This spec with component ``name`` appended (its defaults updated by
        ``params``), or unchanged when it already has one."""
        if name in self.names:
            return self
        return RewardSpec(components=[*self.components, {"name": name, **params}])

    def build(self, n_envs: int = 1) -> Reward:
        """A :class:`Reward` for ``n_envs`` environments, at the start of an episode."""
        return Reward(self, n_envs)


# --------------------------------------------------------------------------- the reward


class Reward:
    """Evaluates a :class:`RewardSpec` step by step, keeping each env's episode state
    (smoothing, step count for decay, the drawdown memory).

    ``reward(step)`` returns the total and each component's weighted value: floats when
    the step's fields are floats (``n_envs`` must then be 1), ``(n_envs,)`` arrays when
    they are arrays. The components sum to the total.
    """

    def __init__(self, spec: RewardSpec, n_envs: int = 1) -> None:
        if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
            raise ConfigError(f"n_envs must be an integer >= 1, got {n_envs!r}", param="n_envs")
        self.spec = spec
        self.n_envs = int(n_envs)
        self.names: tuple[str, ...] = spec.names
        self._components = spec.components
        self._fields = tuple(dict.fromkeys(f for c in spec.components for f in c.FIELDS))
        self._steps = np.zeros(self.n_envs, dtype=np.float64)
        self._smoothed = {
            c.name: np.zeros(self.n_envs) for c in spec.components if c.smoothing > 0.0
        }
        self._memory = {c.name: np.zeros(self.n_envs) for c in spec.components if c.MEMORY}

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Start a new episode for every env, or only for the envs where ``mask`` is True
        (a bool array of shape ``(n_envs,)``)."""
        if mask is None:
            where: Any = slice(None)
        else:
            where = np.asarray(mask)
            if where.dtype != bool or where.shape != (self.n_envs,):
                raise ConfigError(
                    f"mask must be a bool array of shape ({self.n_envs},), got dtype "
                    f"{where.dtype} shape {where.shape}",
                    param="mask",
                )
        self._steps[where] = 0.0
        for state in (*self._smoothed.values(), *self._memory.values()):
            state[where] = 0.0

    def _values(self, step: StepOutcome) -> tuple[dict[str, np.ndarray], bool]:
        """The fields the components read, as ``(n_envs,)`` float64 arrays, and whether
        the step came as arrays (else floats, computed as one-element arrays)."""
        values: dict[str, np.ndarray] = {}
        scalars: list[str] = []
        n = self.n_envs
        for name in self._fields:
            arr = np.asarray(getattr(step, name), dtype=np.float64)
            if arr.ndim == 0:
                scalars.append(name)
            elif arr.shape != (n,):
                raise ConfigError(
                    f"StepOutcome.{name} has shape {arr.shape} but this reward was built "
                    f"for n_envs={n}; give ({n},) arrays or floats",
                    param=name,
                )
            values[name] = arr
        vector = len(scalars) < len(values)
        if not vector and n != 1:
            raise ConfigError(
                f"this reward was built for n_envs={n} but every StepOutcome field is a float; "
                f"give ({n},) arrays",
                param="n_envs",
            )
        for name in scalars:
            values[name] = np.full(n, values[name])
        return values, vector

    def __call__(self, step: StepOutcome) -> tuple[Value, dict[str, Value]]:
        """The total reward of this step and each component's weighted value."""
        values, vector = self._values(step)
        total: np.ndarray | None = None
        parts: dict[str, np.ndarray] = {}
        for c in self._components:
            memory = self._memory.get(c.name)
            value = c.raw(values, memory)
            if memory is not None:
                memory[:] = values["drawdown"]
            if c.clip is not None:
                value = np.clip(value, c.clip[0], c.clip[1])
            if c.smoothing > 0.0:
                state = self._smoothed[c.name]
                state *= c.smoothing
                state += (1.0 - c.smoothing) * value
                value = state.copy()
            if c.decay > 0.0:
                value = (c.weight * np.power(1.0 - c.decay, self._steps)) * value
            elif c.weight != 1.0:
                value = c.weight * value
            parts[c.name] = value
            total = value.copy() if total is None else total + value
        self._steps += 1.0
        assert total is not None
        if vector:
            return total, parts
        return total.item(), {name: v.item() for name, v in parts.items()}


__all__ = [
    "COMPONENTS",
    "ComponentSpec",
    "Drawdown",
    "EquityChange",
    "Headroom",
    "HoldingCost",
    "InvalidAction",
    "Overtrading",
    "RealisedPnl",
    "Reward",
    "RewardSpec",
    "StepOutcome",
]
