"""The trading environment: a Gymnasium ``Env`` whose return *is* its backtest.

:class:`TradingEnv` steps ``moola.sim.Broker``, the kernel ``moola.backtest.run``'s event
engine steps, one bar per step, with the same :class:`~moola.sim.ExecutionConfig` (costs,
latency, leverage, prop-firm rules). It repeats exactly the loop of
``EventEngine.run(TargetPositionStrategy(target))``, so an episode's executed targets,
replayed through ``moola.backtest.run`` (:meth:`TradingEnv.episode_backtest`), give the same
equity at every bar (the tests hold them equal to 1e-9 relative; they agree to the bit).

The time contract
-----------------
Bars are one symbol's canonical table, rows ``0..n-1`` (``timestamp`` = bar open time).
An episode starts at bar ``s`` (one of :attr:`TradingEnv.start_points`: ``s`` is at least
the observations' ``first_valid``, so the window rows ``s - window + 1 .. s`` are finite,
and at most ``n - 1 - latency_bars``, so an order can fill). Step ``k`` is at decision bar
``t = s + k``:

1. the observation returned before the step describes bar ``t``: feature rows
   ``t - window + 1 .. t`` (computed from bars ``<= t`` only) and the portfolio after bar
   ``t``'s close was marked;
2. the action is decided at bar ``t``'s close and decoded (``moola.rl.spaces``) into a
   target fraction ``f``; if ``f`` differs from the previous target, ONE market order of
   ``units_for(f, equity_t, close_t) - committed`` units is submitted, exactly as
   ``TargetPositionStrategy.on_bar`` does (the same dust check and ``committed`` units,
   which count what was ordered, even when the broker caps or denies it);
3. the broker advances to bar ``t + 1``: orders decided at bar ``d`` fill at the open of
   bar ``d + latency_bars`` (with latency ``k > 1``, ``k`` bars later, still inside
   ``advance``), then equity is marked at bar ``t + 1``'s close and the rules stream;
4. the reward uses the equity at ``t + 1`` against that at ``t`` (``moola.rl.rewards``)
   and the next observation describes bar ``t + 1``.

The broker of an episode sees the episode's bars only (its bar 0 is bar ``s``); ``reset``
calls ``advance(bar s)`` (marks the initial cash, no fills) before the first observation.
Per-bar spreads and slippage terms are precomputed over the episode's bars as
``EventEngine.run`` computes them (each term from the bars before it), so parity is to the
bit. :attr:`episode_targets` (``target[j]`` decided at episode bar ``j``; the last bar's is
the previous one) replayed with ``moola.backtest.run(bars[s : s + len(target)], target,
execution)`` is the parity check.

Execution: default ``ExecutionConfig(engine="event", on_breach="halt")`` (so the FTMO
rules); a given config is used with ``engine="event"`` and ``on_breach="halt"`` unless it
says ``"flatten"``: a breach stops the episode.

Ending: ``terminated`` on bankruptcy (equity <= 0), ``max_loss`` (equity at or below
``(1 - max_loss)`` of the initial cash), a broker halt after a rule breach
(``terminated_by="rule:<rule>"``), the end of the data (no bar after ``t + 1``) or an
invalid action under ``invalid_action="terminate"``; ``truncated`` after ``max_steps``.
Invalid actions (``moola.rl.spaces``: buying with no capital left, selling with nothing
left to sell, a NaN target) are always counted in ``info``; ``"mask"`` treats them as HOLD
(agents should read :meth:`TradingEnv.action_masks`), ``"penalise"`` as HOLD plus the
reward's ``invalid_action`` component (added with weight -0.001 if the spec has none),
``"terminate"`` ends the episode after the step.

Observations: ``{"window": (window, F) float32, "portfolio": (7,) float32}`` from
``moola.rl.observations``, plus one ``"window_<timeframe>"`` per coarser timescale asked
for (``timescales={"5m": 12, "1h": 24}``: windows of completed 5-minute and hourly bars,
``moola.rl.observations.CoarserWindows``; a multi-timescale policy reads them).
Portfolio fields: the target fraction, cash / equity, unrealised PnL, bars the broker's
non-zero position has been held with one sign, drawdown from the episode's peak, daily
and total headroom of the config's loss limits.
Randomness: only ``self.np_random``, seeded by ``reset(seed=)`` (start sampling).

What a step reports (the native vectorised env, ``moola.rl.vec_env``, computes the same):
the reward's ``StepOutcome`` has ``realised_pnl`` = the change of the portfolio's realised
PnL minus the fees paid this step; ``costs`` = per fill ``|qty| * |price - open| *
point_value + fee`` (spread and slippage against the bar's open, plus fees), also
``info["costs"]``; ``traded`` = 1 when an order was submitted; ``bars_in_position`` = bars
the broker's position (units) has been non-zero with one sign (0 when flat, 1 on the bar
it opens or flips); ``drawdown`` = (episode peak - equity) / peak; ``headroom`` = the
smaller of the observation's two headrooms. The portfolio observation gets the target
fraction, the cash, the equity, equity - cash as unrealised PnL, ``bars_in_position``,
the episode's peak equity, the broker's start-of-day balance and the fractions of the
config's first ``daily_loss_limit`` and ``total_loss_limit`` (NaN when absent).

``step`` is the hot path: bars are read once, at construction, into Python lists (the
``EventEngine``'s own ``_BarArrays``, so the broker sees the same time objects), and a
step does no pandas work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import gymnasium
import numpy as np
import pandas as pd

from moola.backtest.run import check_bars
from moola.backtest.run import run as backtest_run
from moola.core.errors import ConfigError
from moola.rl.observations import (
    PORTFOLIO_FIELDS,
    CoarserWindows,
    ObservationSource,
    portfolio_state,
)
from moola.rl.rewards import RewardSpec, StepOutcome
from moola.rl.spaces import action_codec
from moola.sim.broker import Bar, Broker
from moola.sim.costs import resolve_slippage
from moola.sim.engine import _BarArrays
from moola.sim.execution import ExecutionConfig
from moola.sim.orders import market
from moola.sim.vectorised import resolve_spread

if TYPE_CHECKING:
    from moola.backtest import BacktestResult
    from moola.features.scaling import Scaler

INVALID_ACTION_POLICIES: tuple[str, ...] = ("mask", "penalise", "terminate")
TERMINATIONS: tuple[str, ...] = ("end_of_data", "bankruptcy", "max_loss", "rule", "invalid_action")
DEFAULT_INVALID_WEIGHT = -0.001
_BAR_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


def _scalers(
    scaler: Scaler | Mapping[str, Scaler] | None, timescales: Mapping[str, int] | None
) -> dict[str, Scaler]:
    """The given scaler(s) by observation key (a single one is the base window's)."""
    if scaler is None:
        return {}
    if not isinstance(scaler, Mapping):
        return {"window": scaler}
    keys = {"window", *(f"window_{tf}" for tf in timescales or {})}
    unknown = sorted(set(scaler) - keys)
    if unknown:
        raise ConfigError(
            f"scaler has entries {unknown} for no observation window; the windows are "
            f"{sorted(keys)}.",
            param="scaler",
        )
    return dict(scaler)


def _coarse_window(timeframe: str, length: object) -> int:
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
        raise ConfigError(
            f"timescales[{timeframe!r}]={length!r}: give the number of {timeframe} bars a "
            "window holds (an integer >= 1).",
            param="timescales",
        )
    return int(length)


@runtime_checkable
class StartSampler(Protocol):
    """Chooses where an episode starts (a curriculum): a bar index among the env's
    ``start_points``, drawn with the env's generator only."""

    def sample(self, rng: np.random.Generator) -> int:
        """A bar index among ``env.start_points``."""


def check_start_bar(bar: object, start_points: np.ndarray, where: str) -> int:
    """``bar`` as an int when it is one of ``start_points`` (a contiguous range), else a
    ``ConfigError`` naming ``where`` it came from and the valid range."""
    first, last = int(start_points[0]), int(start_points[-1])
    if isinstance(bar, bool) or not isinstance(bar, int | np.integer) or not first <= bar <= last:
        raise ConfigError(
            f"{where}: bar {bar!r} is not a valid episode start; starts are bars "
            f"{first}..{last} (the observation window needs history before, and an "
            "order needs a bar to fill after).",
            param="start",
        )
    return int(bar)


def parse_start(start: object, start_points: np.ndarray) -> object:
    """An env's ``start`` argument checked once: ``"random"``, ``"first"``, a
    :class:`StartSampler`, or bar indices among ``start_points`` (as an int64 array)."""
    if isinstance(start, str):
        if start not in ("random", "first"):
            raise ConfigError(
                f"start={start!r}; use 'random', 'first', a list of bar indices or a "
                "StartSampler (an object with sample(rng) -> bar).",
                param="start",
            )
        return start
    if isinstance(start, StartSampler):
        return start
    if isinstance(start, Sequence | np.ndarray):
        points = np.asarray(start)
        if points.ndim != 1 or points.size == 0 or points.dtype.kind not in "iu":
            raise ConfigError(
                f"start must be a non-empty list of integer bar indices, got {start!r}.",
                param="start",
            )
        for bar in points.tolist():
            check_start_bar(bar, start_points, "start")
        return points.astype(np.int64)
    raise ConfigError(
        f"start must be 'random', 'first', a list of bar indices or a StartSampler, got "
        f"{type(start).__name__}.",
        param="start",
    )


def env_execution(execution: ExecutionConfig | Mapping[str, Any] | None) -> ExecutionConfig:
    """The config an environment runs under: ``execution`` (default
    ``ExecutionConfig(engine="event", on_breach="halt")``) with ``engine="event"`` and
    ``on_breach="halt"`` unless it says ``"flatten"``: a breach must stop the episode."""
    if execution is None:
        return ExecutionConfig(engine="event", on_breach="halt")
    if not isinstance(execution, ExecutionConfig | Mapping):
        raise ConfigError(
            f"execution must be a moola.sim.ExecutionConfig or a mapping of its fields, got "
            f"{type(execution).__name__}.",
            param="execution",
        )
    if isinstance(execution, Mapping):  # validated with the env's engine and breach mode
        mode = "flatten" if execution.get("on_breach") == "flatten" else "halt"
        return ExecutionConfig.of({**execution, "engine": "event", "on_breach": mode})
    config = ExecutionConfig.of(execution)
    on_breach = "flatten" if config.on_breach == "flatten" else "halt"
    if config.engine == "event" and config.on_breach == on_breach:
        return config
    return config.model_copy(update={"engine": "event", "on_breach": on_breach})


def held_bars(position: float, held: int, last_units: float) -> int:
    """Bars the current position has been held after this bar: 0 when flat, one more while
    on the same side as the last bar's ``last_units``, 1 on a new or flipped position (the
    observation's ``held`` field, shared by ``TradingEnv`` and the live policy's book)."""
    if position == 0.0:
        return 0
    if held and (position > 0.0) == (last_units > 0.0):
        return held + 1
    return 1


def rule_limits(config: ExecutionConfig) -> tuple[float, float]:
    """``(daily, total)`` loss-limit fractions of the config's first ``daily_loss_limit``
    and ``total_loss_limit`` rules, NaN where there is none (``portfolio_state``'s form)."""
    daily = total = math.nan
    for rule in config.rules:
        kind = getattr(rule, "rule", None)
        if kind == "daily_loss_limit" and math.isnan(daily):
            daily = float(rule.pct)  # type: ignore[union-attr]
        elif kind == "total_loss_limit" and math.isnan(total):
            total = float(rule.pct)  # type: ignore[union-attr]
    return daily, total


def _one_symbol(bars: object, symbol: str | None) -> tuple[pd.DataFrame, str]:
    """The bars of one symbol (rows renumbered 0..n-1) and its name."""
    if not isinstance(bars, pd.DataFrame):
        raise ConfigError(
            f"bars must be a pandas DataFrame of canonical bars, got {type(bars).__name__}.",
            param="bars",
        )
    missing = [c for c in _BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise ConfigError(
            f"bars lack column(s) {missing}; the environment needs {list(_BAR_COLUMNS)} "
            f"(got {list(bars.columns)[:10]}). Pass the canonical bar table "
            "(moola.data.schema.make_bars).",
            param="bars",
        )
    if "symbol" in bars.columns:
        symbols = pd.unique(bars["symbol"].astype("string"))
        if symbol is not None:
            if symbol not in set(symbols):
                raise ConfigError(
                    f"symbol={symbol!r} is not in the bars (symbols: "
                    f"{', '.join(map(str, symbols[:5]))}).",
                    param="symbol",
                )
            bars = bars[bars["symbol"].astype("string") == symbol]
        elif len(symbols) > 1:
            raise ConfigError(
                f"The bars hold {len(symbols)} symbols ({', '.join(map(str, symbols[:5]))}); "
                f"an environment trades one: pass symbol={str(symbols[0])!r}.",
                param="symbol",
            )
        else:
            symbol = str(symbols[0]) if len(symbols) else symbol
    bars = check_bars(bars.reset_index(drop=True))
    return bars, symbol if symbol is not None else "ASSET"


class TradingEnv(gymnasium.Env):
    """A Gymnasium environment trading one symbol's bars through ``moola.sim.Broker``.

    Parameters
    ----------
    bars : pd.DataFrame
        Canonical bars (``timestamp open high low close volume``, optional ``symbol``).
    features : str, Path, FeatureSet or None
        Observation features (``moola.rl.observations.ObservationSource``); None: the
        built-in scale-free OHLCV set.
    window : int, default 60
        Feature rows per observation.
    execution : ExecutionConfig or mapping, optional
        The terms (module notes); default ``ExecutionConfig(engine="event",
        on_breach="halt")``.
    action_space : "discrete12", "target" or "continuous", default "discrete12"
    allow_short : bool, default True
    reward : RewardSpec or mapping, optional
        Default: ``equity_change`` alone (its episode sum is the PnL after costs / cash).
    invalid_action : "mask", "penalise" or "terminate", default "mask"
    max_steps : int, optional
        Truncate an episode after this many steps (>= 1).
    max_loss : float, optional
        Terminate once this fraction of the initial cash is lost (in (0, 1]).
    start : "random", "first", a sequence of bar indices or a StartSampler
        Where episodes start: uniformly among ``start_points``, the first of them,
        uniformly among the given bars, or the sampler's choice. ``reset(options={"start":
        bar})`` overrides it for one episode.
    scaler : moola.features.scaling.Scaler, optional
        Feature statistics to use (an evaluation env takes the training env's
        :attr:`scaler`); default fitted on ``train_rows``.
    train_rows : array of int or bool mask, optional
        Rows the scaler is fitted on (default all rows); never evaluation rows.
    symbol : str, optional
        Which symbol of multi-symbol bars to trade; names the instrument.

    Attributes
    ----------
    bars : pd.DataFrame
        The traded bars (one symbol, rows 0..n-1).
    execution : ExecutionConfig
        The terms the broker and :meth:`episode_backtest` run under.
    scaler : Scaler
        The feature statistics (train rows only).
    start_points : np.ndarray
        Every valid episode start (bar indices).
    codec : moola.rl.spaces.ActionCodec
    broker : moola.sim.Broker
        The current episode's broker (its bar 0 is the episode's start bar).
    """

    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium's declared attribute

    def __init__(
        self,
        bars: pd.DataFrame,
        *,
        features: Any = None,
        window: int = 60,
        execution: ExecutionConfig | Mapping[str, Any] | None = None,
        action_space: str = "discrete12",
        allow_short: bool = True,
        reward: RewardSpec | Mapping[str, Any] | None = None,
        invalid_action: Literal["mask", "penalise", "terminate"] = "mask",
        max_steps: int | None = None,
        max_loss: float | None = None,
        start: Literal["random", "first"] | Sequence[int] | StartSampler = "random",
        scaler: Scaler | Mapping[str, Scaler] | None = None,
        train_rows: Any = None,
        symbol: str | None = None,
        timescales: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.render_mode = None
        self.codec = action_codec(action_space, allow_short=allow_short)
        if invalid_action not in INVALID_ACTION_POLICIES:
            raise ConfigError(
                f"invalid_action={invalid_action!r}; use one of "
                f"{', '.join(INVALID_ACTION_POLICIES)}.",
                param="invalid_action",
            )
        if max_steps is not None and (
            isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer)
        ):
            raise ConfigError(
                f"max_steps={max_steps!r}: give a whole number of steps >= 1, or None.",
                param="max_steps",
            )
        if max_steps is not None and max_steps < 1:
            raise ConfigError(
                f"max_steps={max_steps}: an episode needs at least one step; give max_steps "
                ">= 1, or None for episodes that run to the end of the data.",
                param="max_steps",
            )
        if max_loss is not None and not (
            isinstance(max_loss, int | float) and 0.0 < float(max_loss) <= 1.0
        ):
            raise ConfigError(
                f"max_loss={max_loss!r}: give the fraction of the initial cash whose loss "
                "ends an episode, in (0, 1], or None.",
                param="max_loss",
            )
        self.bars, self.symbol = _one_symbol(bars, symbol)
        n = len(self.bars)
        if isinstance(window, int) and not isinstance(window, bool) and window > n:
            raise ConfigError(
                f"window={window} is longer than the data: the bars have {n} rows. Use a "
                f"window of at most {n} bars, or more bars.",
                param="window",
            )
        self.execution = env_execution(execution)
        scalers = _scalers(scaler, timescales)
        self._obs = ObservationSource(
            self.bars,
            features=features,
            window=window,
            scaler=scalers.get("window"),
            train_rows=train_rows,
        )
        self._coarse = {
            f"window_{tf}": CoarserWindows(
                self.bars,
                tf,
                features=features,
                window=_coarse_window(tf, length),
                scaler=scalers.get(f"window_{tf}"),
                train_rows=train_rows,
            )
            for tf, length in (timescales or {}).items()
        }
        self.scaler = self._obs.scaler
        self.window = self._obs.window
        latency = self.execution.latency_bars
        first = max([self._obs.first_valid, *(c.first_valid for c in self._coarse.values())])
        self.start_points = np.arange(first, n - latency, dtype=np.int64)
        if self.start_points.size == 0:
            raise ConfigError(
                f"No bar to start an episode at: the observations need {self._obs.first_valid} "
                f"bars of history (window {self.window} and the features' warm-up) and an order "
                f"needs {latency} more bar(s) to fill, but the bars have {n} rows. Use more "
                "bars or a shorter window.",
                param="window",
            )
        self._start = self._check_start(start)
        self.invalid_action = invalid_action
        self.max_steps = None if max_steps is None else int(max_steps)
        self.max_loss = None if max_loss is None else float(max_loss)
        spec = RewardSpec.of(reward)
        if invalid_action == "penalise":
            spec = spec.with_component("invalid_action", weight=DEFAULT_INVALID_WEIGHT)
        self.reward_spec = spec
        self._reward = spec.build(1)
        self.action_space = self.codec.space
        features_n = self._obs.n_features
        self.observation_space = gymnasium.spaces.Dict(
            {
                "window": gymnasium.spaces.Box(
                    -np.inf, np.inf, shape=(self.window, features_n), dtype=np.float32
                ),
                **{
                    key: gymnasium.spaces.Box(-np.inf, np.inf, shape=c.shape, dtype=np.float32)
                    for key, c in self._coarse.items()
                },
                "portfolio": gymnasium.spaces.Box(
                    -np.inf, np.inf, shape=(len(PORTFOLIO_FIELDS),), dtype=np.float32
                ),
            }
        )
        # Bars once, as the event engine holds them (the same time objects for the broker).
        data = _BarArrays(self.bars)
        self._data = data
        self._o, self._h, self._l = data.open_list, data.high_list, data.low_list
        self._c, self._v, self._times = data.close_list, data.volume_list, data.times
        self._half = resolve_spread(self.execution.spread_value(), n)  # (1,) or (n,)
        self._slippage = self.execution.build_slippage()
        self._daily_limit, self._total_limit = rule_limits(self.execution)
        self._may_halt = bool(self.execution.rules)
        self._initial = float(self.execution.initial_cash)
        self._floor = -math.inf if max_loss is None else self._initial * (1.0 - float(max_loss))
        self.broker: Broker | None = None
        self._target = 0.0
        self._s = -1
        self._done = True

    # ------------------------------------------------------------------ starts

    def _check_start(self, start: object) -> object:
        return parse_start(start, self.start_points)

    def _check_bar(self, bar: object, where: str) -> int:
        return check_start_bar(bar, self.start_points, where)

    def _pick_start(self, options: Mapping[str, Any] | None) -> int:
        if options and options.get("start") is not None:
            return self._check_bar(options["start"], "options['start']")
        rng = self.np_random
        start = self._start
        if isinstance(start, str):
            if start == "first":
                return int(self.start_points[0])
            return int(self.start_points[rng.integers(self.start_points.size)])
        if isinstance(start, np.ndarray):
            return int(start[rng.integers(start.size)])
        return self._check_bar(start.sample(rng), "StartSampler.sample")  # type: ignore[union-attr]

    # ------------------------------------------------------------------ the episode

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode (module notes); ``options={"start": bar}`` picks its start."""
        super().reset(seed=seed)
        s = self._pick_start(options)
        n = len(self._c)
        stop = n if self.max_steps is None else min(n, s + self.max_steps + 1)
        config = self.execution
        broker = Broker(config, symbol=self.symbol)
        # Per-bar costs over the episode's bars, each from the bars before it, exactly as
        # EventEngine.run computes them for the bars a replay gives it.
        high, low = self._data.high[s:stop], self._data.low[s:stop]
        close, volume = self._data.close[s:stop], self._data.volume[s:stop]
        half = self._half[s:stop] if self._half.shape[0] > 1 else self._half
        broker._precomputed(
            half_spread=half, terms=resolve_slippage(self._slippage, high, low, close, volume)
        )
        broker.advance(
            Bar(self._times[s], self._o[s], self._h[s], self._l[s], self._c[s], self._v[s])
        )
        self.broker = broker
        self._pf = broker.portfolio
        self._inst = broker.instrument
        self._s, self._t, self._k = s, s, 0
        self._target = 0.0  # the last target decided (TargetPositionStrategy's _prev)
        self._committed = 0.0
        self._held = 0
        self._last_units = 0.0
        self._equity = broker.mark()
        self._peak = self._equity
        self._invalid = 0
        self._targets: list[float] = [0.0]
        self._equities: list[float] = [self._equity]
        self._done = False
        self._reward.reset()
        obs, _, _ = self._observe(s)
        info = self._info(s, {name: 0.0 for name in self._reward.names}, False, 0.0, None)
        return obs, info

    def _observe(self, t: int) -> tuple[dict[str, np.ndarray], float, str | None]:
        """The observation of bar ``t`` (the broker marked at its close), the headroom and
        the broker's halt reason (None when trading goes on)."""
        halted, day_start = None, self._equity
        if self._may_halt:  # the start-of-day balance matters (and a halt is possible)
            state = self.broker.state  # type: ignore[union-attr]
            halted, day_start = state.halted, state.day_start_balance
        cash = self._pf.cash
        portfolio = portfolio_state(
            self._target,
            cash,
            self._equity,
            self._equity - cash,
            self._held,
            self._peak,
            day_start,
            self._initial,
            self._daily_limit,
            self._total_limit,
        )
        headroom = float(min(portfolio[5], portfolio[6]))
        obs = {"window": self._obs.window_at(t), "portfolio": portfolio}
        for key, coarse in self._coarse.items():
            obs[key] = coarse.window_at(t)
        return obs, headroom, halted

    def _info(
        self,
        bar: int,
        components: dict[str, float],
        invalid: bool,
        costs: float,
        ended_by: str | None,
    ) -> dict[str, Any]:
        return {
            "equity": self._equity,
            "position": self._target,
            "bar": bar,
            "timestamp": self._times[bar],
            "reward_components": components,
            "invalid_action": invalid,
            "invalid_actions": self._invalid,
            "costs": costs,
            "terminated_by": ended_by,
        }

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Decide at bar ``t``'s close, advance to bar ``t + 1`` (module notes)."""
        if self._done:
            raise ConfigError(
                "step() on an episode that has not started or has ended; call reset() first.",
                param="action",
            )
        broker, pf = self.broker, self._pf
        assert broker is not None
        t = self._t
        before = self._target
        target, invalid = self.codec.decode(action, before)
        traded = 0.0
        # TargetPositionStrategy.on_bar, at bar t's close
        if target != before:
            self._target = target
            units = self._inst.units_for(target, pf.equity, self._c[t])
            dq = units - self._committed
            if abs(dq) > self._inst.dust:
                self._committed = self._committed + dq
                broker.submit(market(dq, tag="target"))
                traded = 1.0
        # bar t + 1 arrives: fills due at its open, mark at its close, the rules stream
        i = t + 1
        realised0, fees0 = pf.realised, pf.fees
        fills = broker.advance(
            Bar(self._times[i], self._o[i], self._h[i], self._l[i], self._c[i], self._v[i])
        )
        costs = 0.0
        if fills:
            pv, ref = self._inst.point_value, self._o[i]
            for fill in fills:
                costs += abs(fill.qty) * abs(fill.price - ref) * pv + fill.fee
            costs = float(costs)
        equity_before = self._equity
        equity = broker.mark()
        self._equity = equity
        if equity > self._peak:
            self._peak = equity
        position = pf.position
        self._held = held_bars(position, self._held, self._last_units)
        self._last_units = position
        self._t, self._k = i, self._k + 1
        self._targets[-1] = self._target
        self._targets.append(self._target)
        self._equities.append(equity)
        if invalid:
            self._invalid += 1
        obs, headroom, halted = self._observe(i)
        outcome = StepOutcome(
            equity_before=equity_before,
            equity_after=equity,
            initial_cash=self._initial,
            realised_pnl=(pf.realised - realised0) - (pf.fees - fees0),
            costs=costs,
            position_before=before,
            position_after=self._target,
            turnover=abs(self._target - before),
            traded=traded,
            drawdown=(self._peak - equity) / self._peak if self._peak > 0.0 else 0.0,
            headroom=headroom,
            invalid=1.0 if invalid else 0.0,
            bars_in_position=float(self._held),
        )
        reward, components = self._reward(outcome)
        ended_by = self._ended_by(invalid, equity, i, halted)
        terminated = ended_by is not None
        truncated = not terminated and self.max_steps is not None and self._k >= self.max_steps
        self._done = terminated or truncated
        info = self._info(i, components, invalid, costs, ended_by)
        return obs, float(reward), terminated, truncated, info

    def _ended_by(self, invalid: bool, equity: float, i: int, halted: str | None) -> str | None:
        """Why the episode ends after this step, or None (module notes)."""
        if invalid and self.invalid_action == "terminate":
            return "invalid_action"
        if equity <= 0.0:
            return "bankruptcy"
        if halted is not None:
            breaches = self.broker.breaches  # type: ignore[union-attr]
            rule = str(breaches["rule"].iloc[-1]) if len(breaches) else halted
            return f"rule:{rule}"
        if equity <= self._floor:
            return "max_loss"
        if i >= len(self._c) - 1:
            return "end_of_data"
        return None

    # ------------------------------------------------------------------ masks, record

    def action_masks(self) -> np.ndarray:
        """Valid actions at the current target: bool ``(n_actions,)`` (``MaskablePPO``
        reads this); all True for the ``target`` space, one True for ``continuous``."""
        return self.codec.masks(self._target)

    @property
    def episode_targets(self) -> np.ndarray:
        """The target decided at each episode bar so far (the last bar's is the previous
        one): what :meth:`episode_backtest` replays."""
        return np.asarray(self._targets if self._s >= 0 else [], dtype=np.float64)

    @property
    def episode_equity(self) -> np.ndarray:
        """Equity marked at each episode bar so far (bar ``s`` first)."""
        return np.asarray(self._equities if self._s >= 0 else [], dtype=np.float64)

    @property
    def scalers(self) -> dict[str, Scaler]:
        """Each observation window's scaler by key (``window``, ``window_<timeframe>``):
        what an evaluation env takes as ``scaler=``."""
        return {"window": self._obs.scaler, **{k: c.scaler for k, c in self._coarse.items()}}

    @property
    def timescales(self) -> dict[str, int]:
        """The coarser timescales observed: timeframe -> window length."""
        return {c.timeframe: c.source.window for c in self._coarse.values()}

    @property
    def observation_columns(self) -> tuple[str, ...]:
        """The feature columns of the observation window, in order (for a run's manifest)."""
        return self._obs.columns

    @property
    def episode_start(self) -> int:
        """The current episode's start bar (-1 before the first reset)."""
        return self._s

    def episode_backtest(self) -> BacktestResult:
        """Replay this episode's executed targets through ``moola.backtest.run`` (the event
        engine, this env's config) on the episode's bars: its equity equals
        :attr:`episode_equity` at every bar. An episode shorter than ``latency_bars + 1``
        bars is replayed over ``latency_bars + 1`` bars (the target held), as a backtest
        needs a bar to fill in; its first rows are the episode's."""
        if self._s < 0:
            raise ConfigError("episode_backtest() before reset(): no episode to replay.")
        s = self._s
        targets = list(self._targets)
        length = max(len(targets), self.execution.latency_bars + 1)
        targets += [targets[-1]] * (length - len(targets))
        config = self.execution
        if self._half.shape[0] > 1:  # per-bar spreads: the episode's
            spread = np.asarray(config.spread_value(), dtype=np.float64)[s : s + length]
            config = config.model_copy(update={"spread": tuple(spread.tolist())})
        bars = self.bars.iloc[s : s + length].reset_index(drop=True)
        return backtest_run(bars, np.asarray(targets, dtype=np.float64), config)


__all__ = [
    "DEFAULT_INVALID_WEIGHT",
    "INVALID_ACTION_POLICIES",
    "TERMINATIONS",
    "StartSampler",
    "TradingEnv",
    "check_start_bar",
    "env_execution",
    "parse_start",
    "rule_limits",
]
