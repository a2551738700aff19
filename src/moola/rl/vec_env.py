"""Native vectorised trading environment: n copies stepped by one compiled kernel call.

:class:`VecTradingEnv` implements Stable-Baselines3's ``VecEnv`` interface directly (it is
not a wrapper over n :class:`moola.rl.env.TradingEnv`): ``step_wait`` decodes the n actions
with the action codec's array form, then ONE numba call (:func:`_step_kernel`) advances
every copy by one bar, with per-env state arrays (start bar, current bar, position units,
committed units, cash, average price, the ring of pending orders for latency ``k``,
equity, peak, start-of-day balances). Rewards go through the array form of
:class:`moola.rl.rewards.Reward` and observations through
:meth:`moola.rl.observations.ObservationSource.windows_at` and ``portfolio_state``.

Why a hand-written kernel (where ``TradingEnv`` steps ``moola.sim.Broker`` itself): a
Python broker per copy costs tens of microseconds a bar, so 1024 copies would step a few
thousand bars a second. Like ``moola.sim.vectorised._run_kernel`` (whose arithmetic the
tests hold equal to the broker's), the kernel repeats, operation by operation, the
arithmetic of :meth:`Instrument.units_for`, :class:`TargetPositionStrategy` (re-size only
when the target changes; the dust check; ``committed`` units), ``SlippageTerms.per_unit``,
``CommissionModel.fee``, ``Portfolio.fill`` and the broker's mark, plus the streaming form
of :class:`DailyLossLimit` and :class:`TotalLossLimit` and the broker's start-of-day
balance. Change one, change the other: ``tests/rl/test_vec_env.py`` holds the equity to
``moola.sim.backtest_positions`` and every observation, reward, done and info to n single
``TradingEnv`` s.

What it supports, and what it refuses (``ConfigError`` naming the parameter and telling to
use ``TradingEnv``): market orders from target changes with the instrument's lots, dust and
leverage; half spread (one number, or one per bar of ``bars``); slippage ``fixed_bps`` or
none (a history-based model, ``volatility_scaled`` or ``square_root_impact``, is refused:
the single env computes its terms over the episode's bars from the start ``s``, so near
``s`` they depend on the start, and a per-start table for every copy would cost more than
the step); commission; ``latency_bars >= 1``; the rules ``daily_loss_limit`` and
``total_loss_limit`` as termination (``profit_target`` and ``minimum_trading_days`` never
stop an episode and are accepted; order limits such as ``max_position`` are refused).
Endings, truncation, invalid-action policies, starts and the info keys are TradingEnv's
(``moola.rl.env``), with the same precedence when several endings meet in one step.

Infos: each copy's info is a mapping built from the step's arrays only when it is read
(building 1024 dicts with timestamps every step would cost more than the kernel); it
equals the plain dict TradingEnv gives, and ``copy()``, pickling and ``deepcopy`` give
that dict. SB3 asks every info for ``"episode"`` and ``"is_success"``, which are answered
without building it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any, Literal

import gymnasium
import numba
import numpy as np
import pandas as pd
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from moola.core.errors import ConfigError
from moola.features.scaling import Scaler
from moola.rl.env import (
    DEFAULT_INVALID_WEIGHT,
    INVALID_ACTION_POLICIES,
    _one_symbol,
    env_execution,
    parse_start,
    rule_limits,
)
from moola.rl.observations import ObservationSource, portfolio_state
from moola.rl.rewards import RewardSpec, StepOutcome
from moola.rl.spaces import action_codec
from moola.sim.costs import FixedBps
from moola.sim.execution import ExecutionConfig
from moola.sim.propfirm import (
    DailyLossLimit,
    MinimumTradingDays,
    ProfitTarget,
    TotalLossLimit,
    _local_days,
)
from moola.sim.vectorised import fill_position, fill_price_fee, resolve_spread

# Rule kinds in the kernel's rule table.
_DAILY, _TOTAL = 0, 1


@numba.njit(cache=True)
def _step_kernel(
    target,
    open_,
    close,
    half_spread,
    slip_rate,
    slip_fixed,
    slip_impact,
    comm_unit,
    comm_rate,
    comm_min,
    point_value,
    lot,
    lev,
    dust,
    latency,
    cfg_days,
    rule_kind,
    rule_pct,
    rule_on_initial,
    rule_initial,
    rule_days,
    bar,
    prev_f,
    committed,
    pos,
    avg,
    cash,
    equity,
    peak,
    realised_cum,
    fees_cum,
    held,
    last_units,
    ring,
    day,
    day_start,
    rule_day,
    rule_sod,
    equity_before,
    realised,
    fees,
    costs,
    traded,
    breach,
):  # pragma: no cover - compiled
    """Advance every env by one bar: decide at ``bar`` (its close), then the next bar
    arrives (fills due at its open, mark at its close, rules). State arrays are updated
    in place; per-step outcomes are written to the output arrays (``realised``: PnL
    closed by this step's fills after fees, as TradingEnv differences the portfolio's
    running totals; ``costs``: fees plus ``|qty| * |price - open| * point_value``)."""
    n_envs = bar.shape[0]
    hs_s = 1 if half_spread.shape[0] > 1 else 0
    n_rules = rule_kind.shape[0]
    for e in range(n_envs):
        equity_before[e] = equity[e]
        realised[e] = 0.0
        fees[e] = 0.0
        costs[e] = 0.0
        traded[e] = 0.0
        breach[e] = -1
        t = bar[e]
        eq = equity[e]
        # (1) decide at bar t's close: TargetPositionStrategy.on_bar
        f_raw = target[e]
        if f_raw != prev_f[e]:
            prev_f[e] = f_raw
            f = min(max(f_raw, -lev), lev)
            c = close[t]
            units = 0.0
            if eq > 0.0 and c > 0.0:
                raw = f * eq / (c * point_value)
                units = np.trunc(raw / lot) * lot
            dq = units - committed[e]
            if abs(dq) > dust:
                ring[e, t % latency] = dq
                committed[e] = committed[e] + dq
                traded[e] = 1.0
        # (2) bar i = t + 1 arrives: fill what was decided at i - latency, at its open
        i = t + 1
        slot = i % latency
        q = ring[e, slot]
        ring[e, slot] = 0.0
        p = pos[e]
        a = avg[e]
        cs = cash[e]
        r0 = realised_cum[e]
        f0 = fees_cum[e]
        if q != 0.0:
            ref = open_[i]
            aq = abs(q)
            price, fee = fill_price_fee(
                ref, q, half_spread[i * hs_s], slip_rate, slip_fixed, slip_impact,
                comm_unit, comm_rate, comm_min, point_value,
            )  # fmt: skip
            cs = cs - fee
            fees_cum[e] = f0 + fee
            costs[e] = 0.0 + (aq * abs(price - ref) * point_value + fee)
            p, a, cs, gross = fill_position(p, a, cs, q, price, point_value, dust)
            realised_cum[e] = r0 + gross  # r0 itself when the fill only adds (gross 0.0)
        pos[e] = p
        avg[e] = a
        cash[e] = cs
        realised[e] = (realised_cum[e] - r0) - (fees_cum[e] - f0)
        fees[e] = fees_cum[e] - f0
        # bars the non-zero position has been held with one sign (TradingEnv's count)
        if p == 0.0:
            held[e] = 0.0
        elif held[e] != 0.0 and (p > 0.0) == (last_units[e] > 0.0):
            held[e] = held[e] + 1.0
        else:
            held[e] = 1.0
        last_units[e] = p
        # (3) mark at the close; the start-of-day balance rolls on a new calendar day
        new_eq = cs + p * (close[i] - a) * point_value
        if cfg_days[i] != day[e]:
            day[e] = cfg_days[i]
            day_start[e] = eq
        for k in range(n_rules):  # the rules' streams, in the config's order
            if rule_kind[k] == _DAILY:
                d = rule_days[k, i]
                if d != rule_day[e, k]:
                    rule_day[e, k] = d
                    rule_sod[e, k] = eq
                sod = rule_sod[e, k]
                base = rule_initial[k] if rule_on_initial[k] else sod
                if new_eq < sod - rule_pct[k] * base:
                    breach[e] = k
                    break
            else:
                init = rule_initial[k]
                if new_eq < init - rule_pct[k] * init:
                    breach[e] = k
                    break
        equity[e] = new_eq
        if new_eq > peak[e]:
            peak[e] = new_eq
        bar[e] = i


# ---------------------------------------------------------------------------------------
# the environment


class _StepBatch:
    """One step's per-copy values (fresh arrays, not the live state) behind the infos."""

    __slots__ = (
        "bar",
        "costs",
        "ending",
        "endings",
        "equity",
        "invalid",
        "invalid_count",
        "parts",
        "position",
        "stamps",
        "terminal",
        "time_limit",
    )

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    def has(self, e: int, key: object) -> bool:
        """Whether copy ``e``'s info has ``key`` (without building it)."""
        return key in _INFO_KEYS or (key == "terminal_observation" and e in self.terminal)

    def info(self, e: int) -> dict[str, Any]:
        """Copy ``e``'s info as TradingEnv gives it, plus SB3's time-limit flag and, for a
        finished copy, its last observation."""
        info = {
            "equity": float(self.equity[e]),
            "position": float(self.position[e]),
            "bar": int(self.bar[e]),
            "timestamp": self.stamps[int(self.bar[e])],
            "reward_components": {name: float(v[e]) for name, v in self.parts.items()},
            "invalid_action": bool(self.invalid[e]),
            "invalid_actions": int(self.invalid_count[e]),
            "costs": float(self.costs[e]),
            "terminated_by": self.endings[self.ending[e]],
            "TimeLimit.truncated": bool(self.time_limit[e]),
        }
        last = self.terminal.get(e)
        if last is not None:
            info["terminal_observation"] = last
        return info


_INFO_KEYS = frozenset(
    (
        "equity",
        "position",
        "bar",
        "timestamp",
        "reward_components",
        "invalid_action",
        "invalid_actions",
        "costs",
        "terminated_by",
        "TimeLimit.truncated",
    )
)


class _StepInfo(MutableMapping):
    """One copy's info dict, built from the step's arrays the first time it is read.

    Building 1024 dicts (timestamps, reward components) costs more than the kernel's
    step, and a training loop reads few of them (SB3 asks every info for ``"episode"``
    and ``"is_success"``, which are answered without building it, and reads the rest of
    the finished copies only). It is a mapping equal to the dict it stands for; ``copy()``,
    pickling and ``deepcopy`` give that plain dict.
    """

    __slots__ = ("_batch", "_dict", "_e")

    def __init__(self, batch: _StepBatch, e: int) -> None:
        self._batch = batch
        self._e = e
        self._dict: dict[str, Any] | None = None

    def _data(self) -> dict[str, Any]:
        if self._dict is None:
            self._dict = self._batch.info(self._e)
        return self._dict

    def get(self, key: str, default: Any = None) -> Any:
        if self._dict is None and not self._batch.has(self._e, key):
            return default
        return self._data().get(key, default)

    def __contains__(self, key: object) -> bool:
        if self._dict is None:
            return self._batch.has(self._e, key)
        return key in self._dict

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return repr(self._data())

    def copy(self) -> dict[str, Any]:
        """A plain dict of this info."""
        return dict(self._data())

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._data(),))


_ALLOWED_RULES = (DailyLossLimit, TotalLossLimit, ProfitTarget, MinimumTradingDays)
_USE_SINGLE = "use moola.rl.TradingEnv (one Broker per env) for it"


class VecTradingEnv(VecEnv):
    """``n_envs`` copies of the trading environment stepped by one compiled kernel.

    Takes the keyword arguments of :class:`moola.rl.env.TradingEnv` (module notes for the
    few terms it refuses) plus ``n_envs``; gives the observations, rewards, dones and
    infos that ``n_envs`` single ``TradingEnv`` s give on the same starts and actions,
    in Stable-Baselines3's ``VecEnv`` convention: a finished copy is reset at once, its
    last observation in ``infos[i]["terminal_observation"]`` and
    ``infos[i]["TimeLimit.truncated"]`` true when ``max_steps`` cut it.

    Randomness: one ``np.random.Generator`` per copy (``seed(s)`` then ``reset()`` seeds
    copy ``i`` with ``s + i``, as ``DummyVecEnv`` over single envs does); nothing reads
    the global random state.
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        n_envs: int = 1,
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
        start: Any = "random",
        scaler: Scaler | None = None,
        train_rows: Any = None,
        symbol: str | None = None,
    ) -> None:
        if isinstance(n_envs, bool) or not isinstance(n_envs, int | np.integer) or n_envs < 1:
            raise ConfigError(f"n_envs must be an integer >= 1; got {n_envs!r}.", param="n_envs")
        n_envs = int(n_envs)
        if invalid_action not in INVALID_ACTION_POLICIES:
            raise ConfigError(
                f"invalid_action={invalid_action!r}; use one of "
                f"{', '.join(INVALID_ACTION_POLICIES)}.",
                param="invalid_action",
            )
        if max_steps is not None and (
            isinstance(max_steps, bool)
            or not isinstance(max_steps, int | np.integer)
            or max_steps < 1
        ):
            raise ConfigError(
                f"max_steps must be an integer >= 1 or None; got {max_steps!r}.",
                param="max_steps",
            )
        if max_loss is not None and not (
            isinstance(max_loss, int | float) and 0.0 < float(max_loss) <= 1.0
        ):
            raise ConfigError(
                f"max_loss must be a fraction of the initial cash in (0, 1] or None; got "
                f"{max_loss!r}.",
                param="max_loss",
            )
        bars, symbol = _one_symbol(bars, symbol)
        config = env_execution(execution)
        self.execution = config
        self._setup_costs(bars, config, symbol)
        self.source = ObservationSource(
            bars, features=features, window=window, scaler=scaler, train_rows=train_rows
        )
        self.scaler = self.source.scaler
        self.codec = action_codec(action_space, allow_short=allow_short)
        spec = RewardSpec.of(reward)
        if invalid_action == "penalise":
            spec = spec.with_component("invalid_action", weight=DEFAULT_INVALID_WEIGHT)
        self.reward_spec = spec
        self.reward = spec.build(n_envs)
        self._reward_fields = frozenset(f for c in spec.components for f in c.FIELDS)
        self.invalid_action = invalid_action
        self.max_steps = None if max_steps is None else int(max_steps)
        self.max_loss = None if max_loss is None else float(max_loss)
        self.bars = bars
        n = self._open.shape[0]
        latency = config.latency_bars
        self.start_points = np.arange(self.source.first_valid, n - latency, dtype=np.int64)
        if self.start_points.size == 0:
            raise ConfigError(
                f"No bar to start an episode at: the observations need "
                f"{self.source.first_valid} bars of history (window {self.source.window} and "
                f"the features' warm-up) and an order needs {latency} more bar(s) to fill, "
                f"but the bars have {n} rows. Use more bars or a shorter window.",
                param="window",
            )
        self.start = self._check_start(start)
        window_shape = (self.source.window, self.source.n_features)
        observation_space = gymnasium.spaces.Dict(
            {
                "window": gymnasium.spaces.Box(-np.inf, np.inf, window_shape, np.float32),
                "portfolio": gymnasium.spaces.Box(-np.inf, np.inf, (7,), np.float32),
            }
        )
        self.render_mode = None
        self._n = n_envs
        self._init_state(n_envs)
        self._rngs: list[np.random.Generator | None] = [None] * n_envs
        self._actions: np.ndarray | None = None
        self._started = False
        self._endings: tuple[str | None, ...] = (
            None,
            "end_of_data",
            "max_loss",
            *(f"rule:{name}" for name in self._rule_names),
            "bankruptcy",
            "invalid_action",
        )
        # the portfolio fields of a copy just reset (cash only), the same for every copy
        cash = self._initial_cash
        self._fresh_portfolio = portfolio_state(
            0.0, cash, cash, 0.0, 0.0, cash, cash, cash, self._daily_limit, self._total_limit
        )
        super().__init__(n_envs, observation_space, self.codec.space)

    # ------------------------------------------------------------------ construction

    def _setup_costs(self, bars: pd.DataFrame, config: ExecutionConfig, symbol: str) -> None:
        """The per-bar arrays and cost terms the kernel reads; refuse what it cannot do."""
        if config.slippage is not None and not isinstance(config.build_slippage(), FixedBps):
            raise ConfigError(
                f"execution.slippage={config.slippage.model!r}: VecTradingEnv supports "
                "'fixed_bps' slippage or none. A history-based model's terms depend on the "
                f"episode's start (the single env computes them from its start bar); "
                f"{_USE_SINGLE}.",
                param="execution.slippage",
            )
        self.symbol = symbol
        inst = config.build_instrument(symbol)
        self.instrument = inst
        n = len(bars)
        self._open = np.ascontiguousarray(bars["open"].to_numpy(np.float64))
        self._close = np.ascontiguousarray(bars["close"].to_numpy(np.float64))
        for name, arr in (("open", self._open), ("close", self._close)):
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise ConfigError(
                    f"bars[{name!r}] is not finite at row {int(bad[0])}; drop or repair it.",
                    param="bars",
                )
        self._half = np.ascontiguousarray(resolve_spread(config.spread_value(), n))
        slip = config.build_slippage()
        self._slip_rate = 0.0
        if slip is not None:
            empty = np.zeros(0)
            self._slip_rate = float(slip.terms(empty, empty, empty, empty).rate[0])
        comm = config.build_commission()
        if comm is None:
            comm = inst.commission
        self._comm = (0.0, 0.0, 0.0) if comm is None else (comm.per_unit, comm.rate, comm.minimum)
        stamps = pd.DatetimeIndex(bars["timestamp"])
        stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
        self._stamps = stamps
        self._cfg_days = np.ascontiguousarray(_local_days(stamps, config.timezone))
        kinds, pcts, on_initial, initial, days, names = [], [], [], [], [], []
        cash = float(config.initial_cash)
        self._daily_limit, self._total_limit = rule_limits(config)
        for rule in config.build_rules():
            if not isinstance(rule, _ALLOWED_RULES):
                raise ConfigError(
                    f"execution.rules has {rule.name!r}: VecTradingEnv ends episodes on "
                    "'daily_loss_limit' and 'total_loss_limit' (and accepts 'profit_target' "
                    f"and 'minimum_trading_days', which never stop one); {_USE_SINGLE}.",
                    param="execution.rules",
                )
            if isinstance(rule, DailyLossLimit):
                kinds.append(_DAILY)
                on_initial.append(rule.basis == "initial")
                days.append(_local_days(stamps, rule.timezone))
            elif isinstance(rule, TotalLossLimit):
                kinds.append(_TOTAL)
                on_initial.append(True)
                days.append(np.zeros(n, np.int64))
            else:
                continue
            pcts.append(float(rule.pct))
            base = rule.initial_balance
            initial.append(cash if base is None else float(base))
            names.append(rule.name)
        self._rule_kind = np.asarray(kinds, np.int64)
        self._rule_pct = np.asarray(pcts, np.float64)
        self._rule_on_initial = np.asarray(on_initial, np.bool_)
        self._rule_initial = np.asarray(initial, np.float64)
        self._rule_days = np.ascontiguousarray(
            np.stack(days) if days else np.zeros((0, n), np.int64), dtype=np.int64
        )
        self._rule_names = tuple(names)
        self._initial_cash = cash

    def _check_start(self, start: Any) -> Any:
        """``"random"``, ``"first"``, bar indices among ``start_points``, or a sampler."""
        return parse_start(start, self.start_points)

    def _check_bars_valid(self, points: np.ndarray) -> None:
        lo, hi = int(self.start_points[0]), int(self.start_points[-1])
        bad = points[(points < lo) | (points > hi)]
        if bad.size:
            raise ConfigError(
                f"start bar {int(bad[0])} is not a valid episode start: starts run from "
                f"{lo} (the first full observation window) to {hi} (an order needs a bar to "
                "fill after the start).",
                param="start",
            )

    def _init_state(self, n: int) -> None:
        k = self._rule_kind.shape[0]
        self._start = np.zeros(n, np.int64)
        self._bar = np.zeros(n, np.int64)
        self._steps = np.zeros(n, np.int64)
        self._prev_f = np.zeros(n)
        self._committed = np.zeros(n)
        self._pos = np.zeros(n)
        self._avg = np.zeros(n)
        self._cash = np.zeros(n)
        self._equity = np.zeros(n)
        self._peak = np.zeros(n)
        self._ring = np.zeros((n, self.execution.latency_bars))
        self._day = np.zeros(n, np.int64)
        self._day_start = np.zeros(n)
        self._rule_day = np.zeros((n, k), np.int64)
        self._rule_sod = np.zeros((n, k))
        self._held = np.zeros(n)
        self._last_units = np.zeros(n)
        self._realised_cum = np.zeros(n)
        self._fees_cum = np.zeros(n)
        self._invalid_count = np.zeros(n, np.int64)
        # per-step outputs, written by the kernel
        self._eq_before = np.zeros(n)
        self._realised = np.zeros(n)
        self._fees = np.zeros(n)
        self._costs = np.zeros(n)
        self._traded = np.zeros(n)
        self._breach = np.zeros(n, np.int64)

    # ------------------------------------------------------------------ episodes

    def _sample_start(self, e: int, options: Mapping[str, Any] | None) -> int:
        """Episode start of copy ``e``: ``options["start"]``, else the ``start`` rule."""
        if options and options.get("start") is not None:
            s = np.asarray([options["start"]])
            if s.dtype.kind not in "iu":
                raise ConfigError(
                    f"options['start']={options['start']!r}: give a bar index (an integer).",
                    param="options.start",
                )
            self._check_bars_valid(s)
            return int(s[0])
        rng = self._rng(e)
        start = self.start
        if isinstance(start, str):
            if start == "first":
                return int(self.start_points[0])
            return int(self.start_points[rng.integers(self.start_points.shape[0])])
        if isinstance(start, np.ndarray):
            return int(start[rng.integers(start.shape[0])])
        s = int(start.sample(rng))
        self._check_bars_valid(np.asarray([s]))
        return s

    def _rng(self, e: int) -> np.random.Generator:
        rng = self._rngs[e]
        if rng is None:
            rng, _ = seeding.np_random(None)
            self._rngs[e] = rng
        return rng

    def _reset_envs(self, envs: np.ndarray, options: Sequence[Mapping[str, Any] | None]) -> None:
        """Start a new episode in each of ``envs``: the reset mark of the start bar (the
        initial cash, no fills), the rules' first point, the reward's episode state."""
        starts = np.asarray(
            [self._sample_start(int(e), o) for e, o in zip(envs, options, strict=True)],
            dtype=np.int64,
        )
        cash = self._initial_cash
        self._start[envs] = starts
        self._bar[envs] = starts
        self._steps[envs] = 0
        for arr in (
            self._prev_f,
            self._committed,
            self._pos,
            self._avg,
            self._held,
            self._last_units,
            self._realised_cum,
            self._fees_cum,
        ):
            arr[envs] = 0.0
        self._invalid_count[envs] = 0
        self._ring[envs] = 0.0
        for arr in (self._cash, self._equity, self._peak, self._day_start):
            arr[envs] = cash
        self._day[envs] = self._cfg_days[starts]
        if self._rule_kind.shape[0]:
            self._rule_day[envs] = self._rule_days[:, starts].T
            self._rule_sod[envs] = cash
        mask = np.zeros(self._n, dtype=bool)
        mask[envs] = True
        self.reward.reset(mask)

    def reset(self) -> VecEnvObs:
        """Start every copy afresh (seeds from :meth:`seed`, options from
        :meth:`set_options`, each used once) and return the first observations."""
        for e in range(self._n):
            if self._seeds[e] is not None:
                self._rngs[e], _ = seeding.np_random(self._seeds[e])
        envs = np.arange(self._n)
        self._reset_envs(envs, [dict(o) if o else None for o in self._options])
        self._reset_seeds()
        self._reset_options()
        self._started = True
        self.reset_infos = [self._reset_info(e) for e in range(self._n)]
        return self._observe(envs)

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed copy ``i`` with ``seed + i`` at the next :meth:`reset` (as SB3's vec envs
        do); ``None``: fresh OS entropy per copy (SB3's base class would draw a seed from
        the global ``np.random`` state, which this env never reads)."""
        if seed is None:
            self._seeds = [None] * self._n
        else:
            self._seeds = [int(seed) + e for e in range(self._n)]
        return self._seeds

    def _reset_info(self, e: int) -> dict[str, Any]:
        """The info TradingEnv.reset returns, for copy ``e`` just reset."""
        bar = int(self._bar[e])
        return {
            "equity": float(self._equity[e]),
            "position": 0.0,
            "bar": bar,
            "timestamp": self._stamps[bar],
            "reward_components": {name: 0.0 for name in self.reward.names},
            "invalid_action": False,
            "invalid_actions": 0,
            "costs": 0.0,
            "terminated_by": None,
        }

    def _observe(self, envs: np.ndarray | slice) -> dict[str, np.ndarray]:
        """The observation of ``envs`` at their current bar (window and portfolio)."""
        bar = self._bar[envs]
        return {
            "window": self.source.windows_at(bar),
            "portfolio": self._portfolio(envs),
        }

    def _portfolio(self, envs: np.ndarray | slice) -> np.ndarray:
        if self._n == 1:  # one copy: portfolio_state's scalar path (equal to the array path)
            cash, equity = float(self._cash[0]), float(self._equity[0])
            return portfolio_state(
                float(self._prev_f[0]),
                cash,
                equity,
                equity - cash,
                float(self._held[0]),
                float(self._peak[0]),
                float(self._day_start[0]),
                self._initial_cash,
                self._daily_limit,
                self._total_limit,
            )[None, :]
        cash, equity = self._cash[envs], self._equity[envs]
        return portfolio_state(
            self._prev_f[envs],
            cash,
            equity,
            equity - cash,
            self._held[envs],
            self._peak[envs],
            self._day_start[envs],
            self._initial_cash,
            self._daily_limit,
            self._total_limit,
        )

    # ------------------------------------------------------------------ stepping

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the actions (one per copy) for :meth:`step_wait`."""
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """Advance every copy one bar with one kernel call; reset the finished ones."""
        if self._actions is None:
            raise ConfigError("step_wait() without step_async(actions): give actions first.")
        if not self._started:
            raise ConfigError("step() before reset(): call reset() first.", param="actions")
        actions, self._actions = self._actions, None
        before = self._prev_f.copy()
        if self._n == 1:  # one copy: the codec's scalar form (equal to the array form)
            one, bad = self.codec.decode(actions.reshape(1, -1)[0], float(before[0]))
            target, invalid = np.array([one]), np.array([bad])
        else:
            target, invalid = self.codec.decode_many(actions, before)
        self._invalid_count += invalid
        _step_kernel(
            target,
            self._open,
            self._close,
            self._half,
            self._slip_rate,
            0.0,
            0.0,
            self._comm[0],
            self._comm[1],
            self._comm[2],
            float(self.instrument.point_value),
            float(self.instrument.lot_size),
            float(self.instrument.max_leverage),
            self.instrument.dust,
            self.execution.latency_bars,
            self._cfg_days,
            self._rule_kind,
            self._rule_pct,
            self._rule_on_initial,
            self._rule_initial,
            self._rule_days,
            self._bar,
            self._prev_f,
            self._committed,
            self._pos,
            self._avg,
            self._cash,
            self._equity,
            self._peak,
            self._realised_cum,
            self._fees_cum,
            self._held,
            self._last_units,
            self._ring,
            self._day,
            self._day_start,
            self._rule_day,
            self._rule_sod,
            self._eq_before,
            self._realised,
            self._fees,
            self._costs,
            self._traded,
            self._breach,
        )
        self._steps += 1
        after = self._prev_f
        equity = self._equity
        portfolio = self._portfolio(slice(None))
        needs = self._reward_fields  # the fields no component reads stay at their default
        outcome = StepOutcome(
            equity_before=self._eq_before,
            equity_after=equity,
            initial_cash=self._initial_cash,
            realised_pnl=self._realised,
            costs=self._costs,
            position_before=before,
            position_after=after,
            turnover=np.abs(after - before) if "turnover" in needs else 0.0,
            traded=self._traded,
            drawdown=self._drawdown() if "drawdown" in needs else 0.0,
            headroom=(
                np.minimum(portfolio[:, 5], portfolio[:, 6]).astype(np.float64)
                if "headroom" in needs
                else 1.0
            ),
            invalid=invalid.astype(np.float64) if "invalid" in needs else 0.0,
            bars_in_position=self._held,
        )
        rewards, parts = self.reward(outcome)
        ending = self._endings_of(invalid)
        terminated = ending != 0
        if self.max_steps is None:
            truncated = np.zeros(self._n, dtype=bool)
        else:
            truncated = ~terminated & (self._steps >= self.max_steps)
        dones = terminated | truncated
        obs = {"window": self.source.windows_at(self._bar), "portfolio": portfolio}
        done_envs = np.flatnonzero(dones)
        terminal = {
            int(e): {"window": obs["window"][e].copy(), "portfolio": obs["portfolio"][e].copy()}
            for e in done_envs
        }
        infos = self._infos(invalid, parts, ending, truncated, terminal)
        if done_envs.size:
            self._reset_envs(done_envs, [None] * done_envs.size)
            for e in done_envs:
                self.reset_infos[e] = self._reset_info(int(e))
            obs["window"][done_envs] = self.source.windows_at(self._bar[done_envs])
            obs["portfolio"][done_envs] = self._fresh_portfolio
        return obs, rewards.astype(np.float32), dones, infos

    def _drawdown(self) -> np.ndarray:
        """``(peak - equity) / peak`` per copy, 0 where the peak is not positive."""
        peak = self._peak
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(peak > 0.0, (peak - self._equity) / peak, 0.0)

    def _endings_of(self, invalid: np.ndarray) -> np.ndarray:
        """Why each copy's episode ended this step: an index into ``self._endings`` (0:
        it did not), the later checks winning as in ``TradingEnv._ended_by``."""
        out = np.zeros(self._n, dtype=np.int64)
        out[self._bar >= self._open.shape[0] - 1] = 1
        if self.max_loss is not None:
            out[self._equity <= self._initial_cash * (1.0 - self.max_loss)] = 2
        if self._rule_names:
            breached = self._breach >= 0
            out[breached] = 3 + self._breach[breached]
        out[self._equity <= 0.0] = len(self._endings) - 2
        if self.invalid_action == "terminate":
            out[invalid] = len(self._endings) - 1
        return out

    def _infos(
        self,
        invalid: np.ndarray,
        parts: Mapping[str, np.ndarray],
        ending: np.ndarray,
        time_limit: np.ndarray,
        terminal: dict[int, dict[str, np.ndarray]],
    ) -> list[_StepInfo]:
        """One info per copy with TradingEnv's keys, built only when read (module notes)."""
        batch = _StepBatch(
            equity=self._equity.copy(),
            position=self._prev_f.copy(),
            bar=self._bar.copy(),
            stamps=self._stamps,
            parts=parts,
            invalid=invalid,
            invalid_count=self._invalid_count.copy(),
            costs=self._costs.copy(),
            ending=ending,
            endings=self._endings,
            time_limit=time_limit,
            terminal=terminal,
        )
        return list(map(_StepInfo, itertools.repeat(batch, self._n), range(self._n)))

    # ------------------------------------------------------------------ masks and SB3

    def action_masks(self) -> np.ndarray:
        """Valid actions of every copy at its current target: bool ``(n_envs, n_actions)``."""
        return self.codec.masks_many(self._prev_f)

    def close(self) -> None:
        """Nothing to release (no subprocesses, no files)."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of this env, once per copy in ``indices``."""
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute shared by every copy (the copies are one object)."""
        setattr(self, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """``action_masks`` per copy (what MaskablePPO calls); other methods once per copy."""
        envs = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[e] for e in envs]
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in envs]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """No copy is wrapped in a Gymnasium wrapper."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """No rendering: the trading env has no render modes."""
        return [None for _ in range(self._n)]

    # ------------------------------------------------------------------ inspection

    @property
    def observation_columns(self) -> tuple[str, ...]:
        """The feature columns of the observation window, in order (as TradingEnv's)."""
        return self.source.columns

    @property
    def window(self) -> int:
        """Feature rows per observation window."""
        return self.source.window

    @property
    def episode_starts(self) -> np.ndarray:
        """The start bar of each copy's current episode (a copy)."""
        return self._start.copy()

    @property
    def current_bars(self) -> np.ndarray:
        """The decision bar of each copy (index into ``bars``; a copy)."""
        return self._bar.copy()


__all__ = ["VecTradingEnv"]
