"""Signal policies: a classifier's probabilities (or a regressor's predictions) in, per-bar
target positions out.

A :class:`SignalPolicy` is one frozen set of typed parameters (pydantic: unknown keys
refused, naming them) with two forms that give the same numbers:

* ``positions(probabilities, bars) -> targets``: the batch form, for a backtest;
* ``stepper()``: a fresh :class:`PolicyStepper` whose ``step(probability, bar) -> target``
  takes one bar at a time and holds the policy's state, for the trading environment and
  the live engine.

``moola.testing.check_policy`` proves the two equal bit for bit, and that the target at
bar ``t`` depends on bars and probabilities up to ``t`` alone. ``params`` (the policy's
name and parameters) and ``policy_hash`` (their SHA-256) go into every backtest record.

``probabilities[t]`` is known at bar ``t``'s close; the target decided then fills later
(``ExecutionConfig.latency_bars``). Two policies:

**ThresholdHold** (what ``moola backtest --run`` and the demo trade). Each row is a
decision about one bar: ``p(long)``, or ``(p(long), p(short))``; a row of ``nan`` means no
decision at that bar. A decision becomes +1 when ``p(long) >= threshold``, -1 when
``p(short) >= threshold`` (when both pass the larger wins and a tie stays flat), else 0,
and that target holds for ``hold_bars`` bars (the decision's bar included) unless a later
decision replaces it, a flat one too; then the target is 0.

**Hysteresis** (with fixed or volatility-targeted size). ``prob[t]`` is the probability of
an up move. A long is entered when ``prob >= long_threshold`` and held until ``prob <
exit_threshold``; a short (only when ``short_threshold`` is given) is entered when ``prob
<= short_threshold`` and held until ``prob > exit_threshold``. A bar beyond the opposite
entry threshold flips the position directly, and a ``nan`` probability (no prediction, e.g.
a model's warm-up) closes it, so a probability hovering near a threshold does not trade
every bar. Sizing scales the direction: ``"fixed"`` holds ``fraction`` of equity;
``"vol_target"`` holds ``min(fraction, target_vol / realised_vol[t])``, where
``realised_vol[t]`` is the annualised standard deviation of the last ``vol_lookback`` log
returns of ``close`` up to and including bar ``t``: only the past. Until ``vol_lookback``
returns exist the vol-targeted position is 0.

Two policies trade a regression model's predictions (a forward return, say; any real
number, ``nan`` for no decision), both held ``hold_bars`` bars like ThresholdHold:

**SignHold** (``moola backtest run --policy sign``). A decision is +1 when ``pred >
threshold``, -1 when ``pred < -threshold`` and ``allow_short`` (else 0), else 0. Shorts are
asked for, as a classifier's are (by naming a short class): ``allow_short`` is False by
default.

**ScaledHold** (``--policy scaled``). A decision is ``clip(pred / scale, -1, 1)`` (negative
values become 0 without ``allow_short``). With ``scale=None`` (the default) the scale is
the standard deviation (ddof=1) of the predictions decided *before* this one, over all of
them (expanding) or the last ``lookback``: never the current or a later one, so a backtest
does not size early positions with the spread of predictions it has not seen yet (the
standard deviation of every out-of-fold prediction would). Until ``min_history``
predictions are past, or while their spread is 0, the decision is flat (0).

The state machines and the rolling standard deviation are short numba loops; the stepper
calls the same compiled window function as the batch form, so the two agree exactly (a
pandas rolling std updates a running sum and would differ in the last bits).
"""

from __future__ import annotations

import difflib
import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import numba
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moola.core.errors import ConfigError, describe_validation
from moola.core.hashing import sha256_json

__all__ = [
    "Hysteresis",
    "PolicyStepper",
    "ScaledHold",
    "SignHold",
    "SignalPolicy",
    "ThresholdHold",
    "hold_positions",
    "positions_from_probabilities",
    "realised_volatility",
    "sign_targets",
    "signal_targets",
]

Sizing = Literal["fixed", "vol_target"]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
_MAX_SHOWN = 5


# --------------------------------------------------------------------------- interface


class PolicyStepper(ABC):
    """A policy run one bar at a time; it holds the state (position, age, past returns)."""

    @abstractmethod
    def step(self, probability: Any, bar: Mapping[str, Any] | None = None) -> float:
        """The target decided at this bar's close from its ``probability`` (a float, a
        ``(p_long, p_short)`` pair, or ``nan`` / ``None`` for no prediction) and ``bar``
        (a mapping with ``close``; only policies that read prices need it)."""


class SignalPolicy(BaseModel, ABC):
    """Probabilities to target positions, in a batch and a step form that agree.

    Subclasses declare their parameters as fields, a ``name``, ``_positions`` (batch, on
    checked inputs) and ``stepper``. Built keyword-only; an unknown key or a bad value
    raises ``ConfigError`` naming it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str] = "policy"
    #: Columns a probability row may have: 1 (p of up / long) or also 2 (p long, p short).
    columns: ClassVar[tuple[int, ...]] = (1,)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(describe_validation(type(self).__name__, exc)) from None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, values: Any) -> Any:
        if isinstance(values, Mapping):
            known = list(cls.model_fields)
            # numpy scalars (a hold of np.int64(30)) read as the Python numbers they are
            values = {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}
            for key in values:
                if key not in known:
                    close = difflib.get_close_matches(str(key), known, n=1)
                    hint = f". Did you mean {close[0]!r}?" if close else "."
                    raise ValueError(
                        f"unknown key {key!r}{hint} {cls.__name__} takes {', '.join(known)}"
                    )
        return values

    @property
    def params(self) -> dict[str, Any]:
        """The policy's name and parameters, as a record stores them."""
        return {"policy": self.name, **self.model_dump(mode="json")}

    @property
    def policy_hash(self) -> str:
        """``sha256:<hex>`` of :attr:`params`: the identity of this policy."""
        return sha256_json(self.params)

    def positions(self, probabilities: Any, bars: pd.DataFrame | None = None) -> np.ndarray:
        """Target positions (fractions of equity in [-1, 1]), one per row of
        ``probabilities``, from the rows and ``bars`` (aligned, when given) up to each bar.

        Raises ``ConfigError`` for probabilities outside [0, 1] (naming the rows), a row
        shape the policy does not take, or bars of another length.
        """
        p = self._checked(probabilities)
        return self._positions(p, None if bars is None else _close(bars, len(p)))

    @classmethod
    def _checked(cls, values: Any) -> np.ndarray:
        """The batch input as float64, checked (probabilities by default)."""
        return _probabilities(values, cls.columns)

    @abstractmethod
    def _positions(self, p: np.ndarray, close: np.ndarray | None) -> np.ndarray:
        """The batch form on checked probabilities (1-D, or 2-D with 2 columns)."""

    @abstractmethod
    def stepper(self) -> PolicyStepper:
        """A fresh stepper at the state before the first bar."""


# --------------------------------------------------------------------------- threshold-and-hold


class ThresholdHold(SignalPolicy):
    """Trade a class probability at or above ``threshold``, held ``hold_bars`` bars.

    Parameters
    ----------
    threshold : float, default 0.5
        In (0, 1].
    hold_bars : int
        Bars a decision's target is held, its own bar included (>= 1).

    Probability rows are ``p(long)`` or ``(p(long), p(short))``; ``nan`` is no decision
    (module notes).
    """

    name: ClassVar[str] = "threshold_hold"
    columns: ClassVar[tuple[int, ...]] = (1, 2)
    threshold: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.5
    hold_bars: Annotated[int, Field(ge=1, strict=True)]

    def _positions(self, p: np.ndarray, close: np.ndarray | None) -> np.ndarray:
        decided = _decided(p)
        signal_bars = np.flatnonzero(decided)
        rows = p[decided]
        p_long = rows if rows.ndim == 1 else rows[:, 0]
        p_short = None if rows.ndim == 1 else rows[:, 1]
        values = signal_targets(p_long, p_short, self.threshold)
        return hold_positions(len(p), signal_bars, values, self.hold_bars)

    def stepper(self) -> PolicyStepper:
        return _ThresholdHoldStepper(self)


class _ThresholdHoldStepper(PolicyStepper):
    def __init__(self, policy: ThresholdHold) -> None:
        self.policy = policy
        self.value = 0.0
        self.age = policy.hold_bars  # no decision yet: flat

    def step(self, probability: Any, bar: Mapping[str, Any] | None = None) -> float:
        row = _probability_row(probability, self.policy.columns)
        if np.isnan(row).any():
            self.age += 1
        else:
            p_short = None if row.size == 1 else row[1:2]
            self.value = float(signal_targets(row[0:1], p_short, self.policy.threshold)[0])
            self.age = 0
        return self.value if self.age < self.policy.hold_bars else 0.0


def signal_targets(p_long: np.ndarray, p_short: np.ndarray | None, threshold: float) -> np.ndarray:
    """+1, -1 or 0 per decision from the long (and short) class probabilities: +1 when
    ``p_long >= threshold``, -1 when ``p_short >= threshold``, the larger when both pass
    (a tie is 0)."""
    p_long = np.asarray(p_long, dtype=np.float64)
    long = p_long >= threshold
    if p_short is None:
        return long.astype(np.float64)
    p_short = np.asarray(p_short, dtype=np.float64)
    short = p_short >= threshold
    both = long & short
    long = long & ~(both & (p_short >= p_long))
    short = short & ~(both & (p_long >= p_short))
    return long.astype(np.float64) - short.astype(np.float64)


def hold_positions(
    n_bars: int, signal_bars: np.ndarray, values: np.ndarray, hold_bars: int
) -> np.ndarray:
    """Per-bar target (decided at each bar's close) from signals at ``signal_bars``.

    Signal ``j`` sets the target to ``values[j]`` for bars ``signal_bars[j] .. signal_bars[j]
    + hold_bars - 1``, unless a later signal (a later bar, or a later entry at the same bar)
    replaces it; the target is 0 elsewhere.
    """
    signal_bars = np.asarray(signal_bars, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(signal_bars, kind="stable")
    at, vals = signal_bars[order], values[order]
    latest = np.full(n_bars, -1, dtype=np.int64)
    np.maximum.at(latest, at, np.arange(at.size, dtype=np.int64))
    latest = np.maximum.accumulate(latest)
    active = latest >= 0
    safe = np.where(active, latest, 0)
    age = np.arange(n_bars, dtype=np.int64) - (at[safe] if at.size else 0)
    keep = active & (age < hold_bars)
    return np.where(keep, vals[safe] if vals.size else 0.0, 0.0)


# --------------------------------------------------------------------------- regression


class _PredictionPolicy(SignalPolicy):
    """A policy on a regression model's predictions: one real value per bar, ``nan`` for
    no decision; each decision's target is held ``hold_bars`` bars (its own included)
    unless a later decision replaces it."""

    hold_bars: Annotated[int, Field(ge=1, strict=True)]
    allow_short: bool = False

    @classmethod
    def _checked(cls, values: Any) -> np.ndarray:
        return _predictions(values)

    def _positions(self, p: np.ndarray, close: np.ndarray | None) -> np.ndarray:
        decided = ~np.isnan(p)
        values = self._values(p[decided])
        return hold_positions(len(p), np.flatnonzero(decided), values, self.hold_bars)

    @abstractmethod
    def _values(self, predictions: np.ndarray) -> np.ndarray:
        """Each decision's target from the decided predictions, in bar order."""

    @abstractmethod
    def _stepper_state(self) -> Any:
        """What the step form carries from one decision to the next."""

    @abstractmethod
    def _step_value(self, prediction: float, state: Any) -> float:
        """One decision's target (the batch ``_values`` of it), updating ``state``."""

    def stepper(self) -> PolicyStepper:
        return _PredictionStepper(self)


class SignHold(_PredictionPolicy):
    """Long when a prediction is above ``threshold``, short below ``-threshold``.

    Parameters
    ----------
    threshold : float, default 0.0
        >= 0, in the prediction's units (a forward return of 0.001 is 10 bps).
    hold_bars : int
        Bars a decision's target is held, its own bar included (>= 1).
    allow_short : bool, default False
        True: a prediction below ``-threshold`` goes short (else it is flat).
    """

    name: ClassVar[str] = "sign"
    threshold: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0

    def _values(self, predictions: np.ndarray) -> np.ndarray:
        return sign_targets(predictions, self.threshold, self.allow_short)

    def _stepper_state(self) -> Any:
        return None

    def _step_value(self, prediction: float, state: Any) -> float:
        return float(sign_targets(np.array([prediction]), self.threshold, self.allow_short)[0])


class ScaledHold(_PredictionPolicy):
    """Position ``clip(pred / scale, -1, 1)``, the scale given or the spread of past
    predictions (module notes).

    Parameters
    ----------
    scale : float, optional
        > 0, in the prediction's units. None (default): the standard deviation of the
        predictions decided before each one (never the current or a later one).
    lookback : int, optional
        With ``scale=None``, the number of past predictions in that standard deviation
        (>= 2); None (default): all of them (expanding).
    min_history : int, default 20
        With ``scale=None``, past predictions needed before a decision is sized; flat
        until then (>= 2).
    hold_bars : int
        Bars a decision's target is held, its own bar included (>= 1).
    allow_short : bool, default False
        True: a negative value goes short (else it is flat).
    """

    name: ClassVar[str] = "scaled"
    scale: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] | None = None
    lookback: Annotated[int, Field(ge=2, strict=True)] | None = None
    min_history: Annotated[int, Field(ge=2, strict=True)] = 20

    def _values(self, predictions: np.ndarray) -> np.ndarray:
        return _scaled_values(
            predictions,
            0.0 if self.scale is None else float(self.scale),
            0 if self.lookback is None else int(self.lookback),
            int(self.min_history),
            bool(self.allow_short),
        )

    def _stepper_state(self) -> Any:
        # past predictions (a window, or all) and the expanding (count, mean, m2)
        return {"past": deque(maxlen=self.lookback or 0), "welford": (0, 0.0, 0.0)}

    def _step_value(self, prediction: float, state: Any) -> float:
        count, mean, m2 = state["welford"]
        if self.scale is not None:
            scale = float(self.scale)
        elif count < self.min_history:
            scale = math.nan
        elif self.lookback is not None:
            scale = _window_std(np.array(state["past"], dtype=np.float64))
        else:
            scale = _expanding_std(count, m2)
        value = _scaled_value(prediction, scale, bool(self.allow_short))
        state["past"].append(prediction)
        state["welford"] = _welford(count, mean, m2, prediction)
        return float(value)


class _PredictionStepper(PolicyStepper):
    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.state = policy._stepper_state()
        self.value = 0.0
        self.age = policy.hold_bars  # no decision yet: flat

    def step(self, probability: Any, bar: Mapping[str, Any] | None = None) -> float:
        """The target decided at this bar from its prediction (a float; ``nan`` or
        ``None``: none)."""
        prediction = _prediction_value(probability)
        if math.isnan(prediction):
            self.age += 1
        else:
            self.value = self.policy._step_value(prediction, self.state)
            self.age = 0
        return self.value if self.age < self.policy.hold_bars else 0.0


def sign_targets(predictions: np.ndarray, threshold: float, allow_short: bool) -> np.ndarray:
    """+1 where a prediction is above ``threshold``, -1 where it is below ``-threshold``
    (0 instead without ``allow_short``), else 0."""
    predictions = np.asarray(predictions, dtype=np.float64)
    long = (predictions > threshold).astype(np.float64)
    if not allow_short:
        return long
    return long - (predictions < -threshold).astype(np.float64)


@numba.njit(cache=True, nogil=True)
def _welford(count: int, mean: float, m2: float, x: float):
    """One value into the running (count, mean, sum of squared deviations)."""
    count += 1
    delta = x - mean
    mean += delta / count
    m2 += delta * (x - mean)
    return count, mean, m2


@numba.njit(cache=True, nogil=True)
def _expanding_std(count: int, m2: float) -> float:
    return math.sqrt(m2 / (count - 1))


@numba.njit(cache=True, nogil=True)
def _scaled_value(prediction: float, scale: float, allow_short: bool) -> float:
    """``clip(prediction / scale, -1, 1)``; 0 for a scale that is nan or 0."""
    if not scale > 0.0:
        return 0.0
    value = min(1.0, max(-1.0, prediction / scale))
    if not allow_short and value < 0.0:
        return 0.0
    return value


@numba.njit(cache=True, nogil=True)
def _scaled_values(
    predictions: np.ndarray, scale: float, lookback: int, min_history: int, allow_short: bool
) -> np.ndarray:
    """Each decided prediction's scaled target; ``scale`` 0: the std of the earlier ones
    (the last ``lookback``, or all when 0), from ``min_history`` of them on."""
    out = np.empty(predictions.size)
    count, mean, m2 = 0, 0.0, 0.0
    for i in range(predictions.size):
        if scale > 0.0:
            s = scale
        elif count < min_history:
            s = np.nan
        elif lookback > 0:
            s = _window_std(predictions[max(0, i - lookback) : i])
        else:
            s = _expanding_std(count, m2)
        out[i] = _scaled_value(predictions[i], s, allow_short)
        count, mean, m2 = _welford(count, mean, m2, predictions[i])
    return out


# --------------------------------------------------------------------------- hysteresis


class Hysteresis(SignalPolicy):
    """Enter at a threshold, exit at another; fixed or volatility-targeted size.

    Parameters
    ----------
    long_threshold, short_threshold, exit_threshold : float
        Entry levels and the exit level (module notes); ``short_threshold=None`` (default)
        never goes short. Need ``short_threshold <= exit_threshold <= long_threshold``.
    sizing : "fixed" or "vol_target"
        Constant ``fraction``, or volatility targeting capped at ``fraction`` (needs bars
        with a ``close``).
    fraction : float, default 1.0
        Largest position, in (0, 1].
    target_vol : float, default 0.15
        Annualised volatility the position aims at (0.15 = 15%).
    vol_lookback : int, default 20
        Returns in the trailing volatility estimate (>= 2).
    periods_per_year : float, default 252
        Bars per year, to annualise the realised volatility.
    """

    name: ClassVar[str] = "hysteresis"
    long_threshold: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.55
    short_threshold: Probability | None = None
    exit_threshold: Probability = 0.5
    sizing: Sizing = "fixed"
    fraction: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 1.0
    target_vol: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 0.15
    vol_lookback: Annotated[int, Field(ge=2, strict=True)] = 20
    periods_per_year: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 252.0

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Hysteresis:
        long, short, exit_at = self.long_threshold, self.short_threshold, self.exit_threshold
        if short is not None and not short < long:
            raise ValueError(
                f"short_threshold must be below long_threshold={long}, got {short}; pass "
                "None for long-only signals"
            )
        low = short if short is not None else 0.0
        if not low <= exit_at <= long:
            raise ValueError(
                f"exit_threshold must lie between short_threshold ({short}) and "
                f"long_threshold ({long}) so that an exit never re-enters; got {exit_at}"
            )
        return self

    def _positions(self, p: np.ndarray, close: np.ndarray | None) -> np.ndarray:
        direction = _direction(p, self.long_threshold, self._short_entry, self.exit_threshold)
        if self.sizing == "fixed":
            return direction.astype(np.float64) * self.fraction
        if close is None:
            raise ConfigError(
                "sizing='vol_target' needs the bars' close prices (bars=, or close= to "
                "positions_from_probabilities) aligned with the probabilities."
            )
        vol = realised_volatility(
            close, lookback=self.vol_lookback, periods_per_year=self.periods_per_year
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.minimum(self.fraction, self.target_vol / vol)  # vol 0 -> inf -> fraction
        scale = np.where(np.isnan(scale), 0.0, scale)
        return direction.astype(np.float64) * scale

    @property
    def _short_entry(self) -> float:
        return -math.inf if self.short_threshold is None else float(self.short_threshold)

    def stepper(self) -> PolicyStepper:
        return _HysteresisStepper(self)


class _HysteresisStepper(PolicyStepper):
    def __init__(self, policy: Hysteresis) -> None:
        self.policy = policy
        self.state = 0
        self.last_log_close = math.nan
        self.returns: deque[float] = deque(maxlen=policy.vol_lookback)

    def step(self, probability: Any, bar: Mapping[str, Any] | None = None) -> float:
        policy = self.policy
        p = float(_probability_row(probability, policy.columns)[0])
        if math.isnan(p):
            self.state = 0
        elif p >= policy.long_threshold:
            self.state = 1
        elif p <= policy._short_entry:
            self.state = -1
        elif (self.state == 1 and p < policy.exit_threshold) or (
            self.state == -1 and p > policy.exit_threshold
        ):
            self.state = 0
        if policy.sizing == "fixed":
            return float(self.state) * policy.fraction
        if bar is None or "close" not in bar:
            raise ConfigError("sizing='vol_target' needs each bar with its close to step.")
        with np.errstate(divide="ignore", invalid="ignore"):
            log_close = float(np.log(np.float64(bar["close"])))
        self.returns.append(log_close - self.last_log_close)  # nan at the first bar
        self.last_log_close = log_close
        if len(self.returns) < policy.vol_lookback:
            return float(self.state) * 0.0
        std = _window_std(np.array(self.returns, dtype=np.float64))
        vol = std * math.sqrt(policy.periods_per_year)
        if math.isnan(vol):
            scale = 0.0
        elif vol == 0.0:
            scale = policy.fraction
        else:
            scale = min(policy.fraction, policy.target_vol / vol)
        return float(self.state) * scale


@numba.njit(cache=True, nogil=True)
def _direction(prob: np.ndarray, long_entry: float, short_entry: float, exit_at: float):
    """-1 / 0 / +1 per bar from the hysteresis rule (short_entry = -inf disables shorts)."""
    out = np.zeros(prob.size, dtype=np.int8)
    state = 0
    for t in range(prob.size):
        p = prob[t]
        if np.isnan(p):
            state = 0
        elif p >= long_entry:
            state = 1
        elif p <= short_entry:
            state = -1
        elif (state == 1 and p < exit_at) or (state == -1 and p > exit_at):
            state = 0
        out[t] = state
    return out


@numba.njit(cache=True, nogil=True)
def _window_std(window: np.ndarray) -> float:
    """Sample std (ddof=1) of one window, two passes in order; ``nan`` if any value is
    not finite. The batch loop and the stepper both call this one function."""
    n = window.size
    total = 0.0
    for i in range(n):
        if not np.isfinite(window[i]):
            return np.nan
        total += window[i]
    mean = total / n
    squares = 0.0
    for i in range(n):
        d = window[i] - mean
        squares += d * d
    return math.sqrt(squares / (n - 1))


@numba.njit(cache=True, nogil=True)
def _rolling_std(values: np.ndarray, lookback: int) -> np.ndarray:
    out = np.full(values.size, np.nan)
    for t in range(lookback - 1, values.size):
        out[t] = _window_std(values[t - lookback + 1 : t + 1])
    return out


def realised_volatility(close: np.ndarray, *, lookback: int, periods_per_year: float) -> np.ndarray:
    """Annualised std (ddof=1) of the last ``lookback`` log returns ending at each bar;
    ``nan`` where fewer than ``lookback`` returns exist. Uses no bar after ``t``."""
    close = np.asarray(close, dtype=np.float64)
    log_ret = np.full(close.size, np.nan)
    if close.size > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ret[1:] = np.diff(np.log(close))
    return _rolling_std(log_ret, int(lookback)) * math.sqrt(periods_per_year)


def positions_from_probabilities(
    prob: np.ndarray | pd.Series,
    *,
    long_threshold: float = 0.55,
    short_threshold: float | None = None,
    exit_threshold: float = 0.5,
    sizing: Sizing = "fixed",
    fraction: float = 1.0,
    close: np.ndarray | pd.Series | None = None,
    target_vol: float = 0.15,
    vol_lookback: int = 20,
    periods_per_year: float = 252.0,
) -> np.ndarray:
    """Target positions (fractions of equity in [-1, 1]) from up-probabilities: the batch
    form of :class:`Hysteresis` with these parameters.

    ``prob`` is the probability of an up move per bar, in [0, 1] (``nan``: no prediction,
    flat); ``close`` the close prices aligned with it, required for ``"vol_target"``. The
    other parameters are :class:`Hysteresis`'s.

    Raises ``ConfigError`` for out-of-range probabilities (naming the rows), thresholds,
    sizing options, or a ``close`` of the wrong length.
    """
    policy = Hysteresis(
        long_threshold=long_threshold,
        short_threshold=short_threshold,
        exit_threshold=exit_threshold,
        sizing=sizing,
        fraction=fraction,
        target_vol=target_vol,
        vol_lookback=vol_lookback,
        periods_per_year=periods_per_year,
    )
    p = _probabilities(prob, policy.columns)
    close_arr = None
    if close is not None:
        close_arr = np.asarray(close, dtype=np.float64)
        if close_arr.shape != p.shape:
            raise ConfigError(
                f"close has {close_arr.size} values but prob has {p.size}; align them bar by bar."
            )
    return policy._positions(p, close_arr)


# --------------------------------------------------------------------------- checks


def _probabilities(probabilities: Any, columns: tuple[int, ...]) -> np.ndarray:
    """Probabilities as float64: 1-D, or 2-D with one of ``columns`` columns (one column
    is flattened); each value in [0, 1] or ``nan``."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim == 2 and p.shape[1] in columns and p.shape[1] > 1:
        partial = np.isnan(p).any(axis=1) & ~np.isnan(p).all(axis=1)
        if partial.any():
            raise ConfigError(
                f"Probability rows {_rows(partial)} are partly nan; a row is a decision "
                "(every value given) or none (all nan)."
            )
    elif p.ndim != 1:
        shapes = " or ".join(
            "one probability per bar (1-D)" if c == 1 else f"{c} per bar (shape (n, {c}))"
            for c in columns
        )
        raise ConfigError(f"probabilities must be {shapes}, got shape {p.shape}.")
    bad = ~np.isnan(p) & ((p < 0.0) | (p > 1.0))
    if bad.any():
        rows = bad if bad.ndim == 1 else bad.any(axis=1)
        raise ConfigError(
            f"Probabilities must lie in [0, 1]; rows {_rows(rows)} do not. Pass the class's "
            "probability (e.g. predict_proba(...)[:, 1]), not a logit or a score."
        )
    return p


def _predictions(values: Any) -> np.ndarray:
    """Regression predictions as 1-D float64: finite, or ``nan`` for no decision."""
    p = np.asarray(values, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim != 1:
        raise ConfigError(f"predictions must be one value per bar (1-D), got shape {p.shape}.")
    bad = np.isinf(p)
    if bad.any():
        raise ConfigError(
            f"Predictions must be finite (nan: no decision); rows {_rows(bad)} are infinite."
        )
    return p


def _prediction_value(prediction: Any) -> float:
    """One bar's prediction as a float (``None`` is nan); infinity is refused."""
    row = np.atleast_1d(np.asarray(np.nan if prediction is None else prediction, np.float64))
    if row.ndim != 1 or row.size != 1:
        raise ConfigError(f"A step takes one prediction per bar, got {row.size}.")
    if np.isinf(row[0]):
        raise ConfigError(f"Predictions must be finite (nan: no decision), got {row[0]}.")
    return float(row[0])


def _probability_row(probability: Any, columns: tuple[int, ...]) -> np.ndarray:
    """One bar's probability as a 1-D float64 array of 1 or 2 values (``None`` is nan)."""
    row = np.atleast_1d(np.asarray(np.nan if probability is None else probability, np.float64))
    if row.ndim != 1 or row.size not in columns:
        raise ConfigError(
            f"A step takes {' or '.join(str(c) for c in columns)} probabilities per bar, got "
            f"{row.size}."
        )
    finite = row[~np.isnan(row)]
    if ((finite < 0.0) | (finite > 1.0)).any():
        raise ConfigError(f"Probabilities must lie in [0, 1], got {row.tolist()}.")
    if row.size > 1 and np.isnan(row).any() and not np.isnan(row).all():
        raise ConfigError(f"Probability row {row.tolist()} is partly nan; give all or none.")
    return row


def _decided(p: np.ndarray) -> np.ndarray:
    return ~np.isnan(p) if p.ndim == 1 else ~np.isnan(p).any(axis=1)


def _close(bars: pd.DataFrame, n: int) -> np.ndarray | None:
    """The bars' close prices (``None`` when there is no close column), checked to be one
    per probability row."""
    if len(bars) != n:
        raise ConfigError(
            f"bars has {len(bars)} rows but there are {n} probability rows; align them bar by bar."
        )
    return bars["close"].to_numpy(dtype=np.float64) if "close" in bars else None


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    text = ", ".join(str(int(r)) for r in rows[:_MAX_SHOWN])
    if rows.size > _MAX_SHOWN:
        text += f" and {rows.size - _MAX_SHOWN} more"
    return text
