"""A trained agent acting live: observations built bar by bar, deterministic actions.

:class:`LivePolicy` is a promoted RL run's agent (``moola.rl.agents.load_agent``: its
weights only, into a network rebuilt from the run's build record; no pickle runs) fed one
closed bar at a time. Per bar ``t`` (``update(bar)``), exactly what the training
environment's step ``t`` does (``moola.rl.env``'s time contract):

1. **window**: the feature rows ``t - window + 1 .. t`` of the bars seen so far, from
   ``moola.rl.observations.StepObservations`` (the run's feature set computed by
   ``IncrementalFeatures``, the run's scaler): equal to ``ObservationSource``'s window of
   bar ``t`` over the same bars, and unchanged by any bar after ``t``; for a run that
   observes coarser timescales, one ``window_<timeframe>`` each from
   ``moola.rl.observations.StepCoarserWindows`` (the run's scaler of that window): the
   window of the last coarse bar *completed* by bar ``t``'s close, the one forming never
   shown, equal to ``CoarserWindows``' window of bar ``t``. When a coarse bar closes
   depends on the base bars' duration: the record's ``timeframe`` (the session's when the
   run's raw bars mixed timeframes). The first observation (and the book's start) is at
   the first bar where every window is full, as the environment's first start bar;
2. **portfolio**: the seven fields of ``moola.rl.observations.portfolio_state`` from the
   policy's *own book* after bar ``t``'s close was marked: a ``moola.sim.Broker`` under the
   run's execution terms (costs, latency, loss limits) holding the targets the policy
   decided, as ``TradingEnv`` holds them (an order decided at ``t``'s close fills at the
   open of ``t + latency``);
3. **act**: ``model.predict(observation, deterministic=True)`` (a masked agent gets the
   action masks of its current target), decoded by the run's action codec into the next
   target fraction in ``[low, high]``; an invalid action holds the target, as ``"mask"``
   does in training. The same bars give the same actions (no sampling, no global state).

Why the policy's own book and not the account's position: the agent was trained and
evaluated on observations of the position *its own actions* built; the engine's position
is the ensemble's decision, which the policy does not control (feeding it back would ask
the policy about states its training never produced, e.g. "long" right after it chose
flat). Its own book also makes the policy's answer a function of the bars alone, so a
session's parity replay recomputes it from the journaled bars. The book starts at the
first bar with a full window (the environment's first start bar) with the run's initial
cash; when it ends as a training episode would (bankrupt, or halted by a loss limit), a
fresh book starts at that bar.

``target`` is the policy's answer: the fraction of equity it wants to hold after bar ``t``
(``-1..1``; ``0..1`` without shorting). ``up_probability(target)`` maps it to the
ensemble's common answer, ``0.5 * (1 + target / high)``: a full long 1, flat 0.5, a full
short 0 (``moola.runtime.members`` says why).

Refused with ``ConfigError`` naming it (``check_record``): another record format; a
coarser timescale with no known bar timeframe or not coarser than the bars; a run trained
with per-bar spreads. Why the last: ``ExecutionConfig.spread`` as a list is one value per
*position* of the training bars (the environment slices it by bar index), and records no
bar column it came from; the live feed's bars (``moola.runtime.feed.BAR_FIELDS``) carry
no spread, so the book cannot know a live bar's spread, and any single number would be a
cost the policy did not train under. The message gives the spreads' median to retrain
with one number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pandas as pd

from moola.core.errors import ConfigError
from moola.core.timeframes import parse_timeframe
from moola.features.featureset import FeatureSetSpec
from moola.features.scaling import Scaler
from moola.rl.env import held_bars, rule_limits
from moola.rl.observations import (
    PORTFOLIO_FIELDS,
    StepCoarserWindows,
    StepObservations,
    portfolio_state,
)
from moola.rl.spaces import ActionCodec, action_codec
from moola.sim.broker import Bar, Broker
from moola.sim.execution import ExecutionConfig
from moola.sim.orders import market

__all__ = [
    "POLICY_FILE",
    "POLICY_FORMAT",
    "LivePolicy",
    "PolicyStep",
    "up_probability",
]

#: The promoted file that holds what live inference needs (``moola.pipeline.rl.
#: policy_record``), beside the promoted ``model.zip``.
POLICY_FILE = "policy.json"
#: Version of that file's layout.
POLICY_FORMAT = 1


def up_probability(target: float, high: float = 1.0) -> float:
    """The ensemble's answer for a target fraction: ``0.5 * (1 + target / high)`` in
    [0, 1] (full long 1, flat 0.5, full short 0)."""
    return min(1.0, max(0.0, 0.5 * (1.0 + float(target) / float(high))))


@dataclass(frozen=True)
class PolicyStep:
    """What the policy did at one bar: the bar's time, the observation it saw, the raw
    action, the target fraction after it, and that target as an up-probability."""

    time: pd.Timestamp
    observation: dict[str, np.ndarray]
    action: Any
    target: float
    invalid: bool
    probability: float


class _SpacesEnv(gymnasium.Env):
    """An env with the training env's spaces only: what ``load_agent`` sizes the network
    from (it is never stepped)."""

    def __init__(self, observation_space: Any, codec: ActionCodec) -> None:
        super().__init__()
        self.observation_space = observation_space
        self.action_space = codec.space
        self._codec = codec

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        raise ConfigError("A live policy's spaces env is not stepped.")

    def action_masks(self) -> np.ndarray:
        return self._codec.masks(0.0)


class _Book:
    """The policy's own account, stepped as ``TradingEnv`` steps its broker."""

    def __init__(self, execution: ExecutionConfig, symbol: str) -> None:
        self.execution = execution
        self.symbol = symbol
        self._daily, self._total = rule_limits(execution)
        self._may_halt = bool(execution.rules)
        self._initial = float(execution.initial_cash)
        self.books = 0

    def start(self, bar: Bar) -> None:
        """A new book at ``bar`` (``TradingEnv.reset``): initial cash, no position."""
        broker = Broker(self.execution, symbol=self.symbol)
        broker.advance(bar)
        self.broker = broker
        self.target = 0.0
        self._committed = 0.0
        self._held = 0
        self._last_units = 0.0
        self._equity = broker.mark()
        self._peak = self._equity
        self.books += 1

    def advance(self, bar: Bar) -> bool:
        """Bar ``bar`` arrives (the second half of ``TradingEnv.step``); True when the book
        ended as an episode would (bankrupt or halted by a rule)."""
        broker = self.broker
        broker.advance(bar)
        equity = broker.mark()
        self._equity = equity
        if equity > self._peak:
            self._peak = equity
        position = broker.portfolio.position
        self._held = held_bars(position, self._held, self._last_units)
        self._last_units = position
        halted = broker.state.halted if self._may_halt else None
        return equity <= 0.0 or halted is not None

    def portfolio(self) -> np.ndarray:
        """The portfolio fields after the last mark (``TradingEnv._observe``)."""
        day_start = self._equity
        if self._may_halt:
            day_start = self.broker.state.day_start_balance
        cash = self.broker.portfolio.cash
        return portfolio_state(
            self.target,
            cash,
            self._equity,
            self._equity - cash,
            self._held,
            self._peak,
            day_start,
            self._initial,
            self._daily,
            self._total,
        )

    def decide(self, target: float, close: float) -> None:
        """Hold ``target`` from this bar's close (``TargetPositionStrategy.on_bar``)."""
        if target == self.target:
            return
        self.target = target
        broker = self.broker
        units = broker.instrument.units_for(target, broker.portfolio.equity, close)
        dq = units - self._committed
        if abs(dq) > broker.instrument.dust:
            self._committed = self._committed + dq
            broker.submit(market(dq, tag="target"))


class LivePolicy:
    """A trained agent fed one closed bar at a time (module docstring).

    Build it with :meth:`from_record` (a promoted run's ``policy.json`` and weights) or
    :meth:`from_promoted`; :meth:`fresh` gives another one sharing the agent, for another
    symbol. ``update(bar)`` returns the bar's :class:`PolicyStep`, or None while the
    observation window is still filling.
    """

    def __init__(
        self, model: Any, record: Mapping[str, Any], *, timeframe: str | None = None
    ) -> None:
        self.model = model
        self.record = dict(record)
        observation = record["observation"]
        spec = observation.get("feature_set")
        self.features = None if spec is None else FeatureSetSpec.model_validate(spec)
        self.window = int(observation["window"])
        columns = tuple(observation["columns"])
        self.scaler = Scaler.from_dict(observation["scalings"]["window"], columns)
        self._timeframe = timeframe
        self.timescales = {str(k): int(v) for k, v in (observation.get("timescales") or {}).items()}
        self._coarse: dict[str, StepCoarserWindows] = {}
        if self.timescales:
            bar = self.bar_timeframe(record, timeframe)
            for tf, length in self.timescales.items():
                key = f"window_{tf}"
                self._coarse[key] = StepCoarserWindows(
                    self.features,
                    tf,
                    length,
                    Scaler.from_dict(observation["scalings"][key], columns),
                    bar,
                )
        self.codec = action_codec(record["action_space"], allow_short=bool(record["allow_short"]))
        self.execution = ExecutionConfig.of(record["execution"])
        self.symbol = str(record.get("symbol") or "ASSET")
        self._masked = record.get("algo") == "maskable_ppo"
        self._observations = StepObservations(self.features, self.window, self.scaler)
        self._book = _Book(self.execution, self.symbol)
        self._started = False
        self.last_time: pd.Timestamp | None = None

    # ------------------------------------------------------------------ building

    @staticmethod
    def bar_timeframe(
        record: Mapping[str, Any], timeframe: str | None = None, where: str = "policy"
    ) -> str:
        """The duration of the bars the run trained on, which decides when a coarser bar
        is complete: the record's ``timeframe``, else ``timeframe`` (the session's, for a
        run whose raw bars mixed timeframes); ``ConfigError`` when neither is known."""
        known = record.get("timeframe") or timeframe
        if not known:
            raise ConfigError(
                f"{where}: the run observes coarser timescales "
                f"{sorted(record['observation'].get('timescales') or {})} but its record "
                "names no bar timeframe (its raw bars mixed timeframes); a coarser bar's "
                "close cannot be told without it: give the bars' timeframe.",
                param="timeframe",
            )
        parse_timeframe(known)
        return str(known)

    @staticmethod
    def check_record(
        record: Mapping[str, Any], where: str = "policy", timeframe: str | None = None
    ) -> None:
        """Refuse what this version cannot run live (``ConfigError`` naming it): another
        record format; coarser timescales without a known bar timeframe, or not coarser
        than it; per-bar spreads (module docstring)."""
        if record.get("format") != POLICY_FORMAT:
            raise ConfigError(
                f"{where}: policy record format {record.get('format')!r} is not "
                f"{POLICY_FORMAT}; promote the run again with this moola.",
                param="policy",
            )
        timescales = record["observation"].get("timescales") or {}
        if timescales:
            bar = parse_timeframe(LivePolicy.bar_timeframe(record, timeframe, where))
            scalings = record["observation"].get("scalings") or {}
            for tf in timescales:
                if parse_timeframe(tf) <= bar:
                    raise ConfigError(
                        f"{where}: timescale {tf!r} is not coarser than the run's {bar} bars.",
                        param="timescales",
                    )
                if f"window_{tf}" not in scalings:
                    raise ConfigError(
                        f"{where}: the record has no scaler for timescale {tf!r} "
                        f"(window_{tf}; it has {sorted(scalings)}); promote the run again "
                        "with this moola.",
                        param="timescales",
                    )
        execution = ExecutionConfig.of(record["execution"])
        spread = np.asarray(execution.spread_value(), dtype=np.float64)
        if spread.size > 1:
            raise ConfigError(
                f"{where}: the run trained with per-bar spreads ({spread.size} values, "
                f"median {float(np.median(spread)):.6g}, range {float(spread.min()):.6g}.."
                f"{float(spread.max()):.6g}): a list indexed by the training bars' positions, "
                "recording no bar column it came from, and the live feed's bars carry no "
                "spread; the policy's book cannot know a live bar's spread. Train the run "
                "with one spread number (e.g. the median) to run it live.",
                param="execution.spread",
            )

    @classmethod
    def spaces_env(cls, record: Mapping[str, Any]) -> _SpacesEnv:
        """An env with the run's observation and action spaces (for ``load_agent``)."""
        observation = record["observation"]
        window = int(observation["window"])
        n_features = len(observation["columns"])
        timescales = observation.get("timescales") or {}
        space = gymnasium.spaces.Dict(
            {
                "window": gymnasium.spaces.Box(
                    -np.inf, np.inf, shape=(window, n_features), dtype=np.float32
                ),
                **{
                    f"window_{tf}": gymnasium.spaces.Box(
                        -np.inf, np.inf, shape=(int(length), n_features), dtype=np.float32
                    )
                    for tf, length in timescales.items()
                },
                "portfolio": gymnasium.spaces.Box(
                    -np.inf, np.inf, shape=(len(PORTFOLIO_FIELDS),), dtype=np.float32
                ),
            }
        )
        codec = action_codec(record["action_space"], allow_short=bool(record["allow_short"]))
        return _SpacesEnv(space, codec)

    @classmethod
    def from_record(
        cls,
        record: Mapping[str, Any],
        model_path: str | Path,
        *,
        where: str = "policy",
        timeframe: str | None = None,
    ) -> LivePolicy:
        """The policy of ``record`` (``moola.pipeline.rl.policy_record``) with the weights
        at ``model_path`` (checked by the caller against the record's hash). ``timeframe``:
        the bars' timeframe when the record names none (see :meth:`bar_timeframe`)."""
        from moola.rl.agents import load_agent

        cls.check_record(record, where, timeframe)
        model = load_agent(
            Path(model_path), cls.spaces_env(record), build=record["agent"], device="cpu"
        )
        model.policy.set_training_mode(False)
        return cls(model, record, timeframe=timeframe)

    @classmethod
    def from_promoted(
        cls, root: str | Path, run_id: str, *, timeframe: str | None = None
    ) -> LivePolicy:
        """The policy of promoted RL run ``run_id`` under data root ``root``: its
        ``policy.json`` and ``model.zip`` read against the promoted listing (every byte
        checked), the weights' hash against the record's. ``timeframe``: as for
        :meth:`from_record`."""
        import json

        from moola.core.errors import IntegrityError
        from moola.core.hashing import sha256_bytes
        from moola.tracking.runs import RunStore

        store = RunStore(root)
        record = json.loads(store.read_promoted(run_id, POLICY_FILE))
        weights = record["weights"]
        data = store.read_promoted(run_id, weights["file"])
        if sha256_bytes(data) != weights["sha256"]:
            raise IntegrityError(
                f"Promoted RL run {run_id}: {weights['file']} hashes to {sha256_bytes(data)}, "
                f"its policy record says {weights['sha256']}."
            )
        path = store.promoted_dir / run_id / weights["file"]
        return cls.from_record(record, path, where=f"promoted RL run {run_id}", timeframe=timeframe)

    def fresh(self) -> LivePolicy:
        """A new policy with this one's agent and record, and no bars seen."""
        return type(self)(self.model, self.record, timeframe=self._timeframe)

    # ------------------------------------------------------------------ acting

    @property
    def bars_needed(self) -> int:
        """Bars before the first observation: the features' warm-up plus the window, and
        for each coarser timescale its warm-up plus window plus the one coarse bar that may
        be partial where the bars begin, in base bars without gaps."""
        needed = int(self._observations.lookback) + self.window
        for coarse in self._coarse.values():
            per = math.ceil(coarse.step / coarse.bar)
            needed = max(needed, (coarse.lookback + coarse.window + 1) * per)
        return needed

    @property
    def high(self) -> float:
        return float(self.codec.high)

    @property
    def bars_seen(self) -> int:
        """Bars fed so far."""
        return self._observations.bars_seen

    @property
    def started(self) -> bool:
        """Whether every observation window has been full (the policy answers from then)."""
        return self._started

    @property
    def books(self) -> int:
        """Books started so far (a new one after an episode-ending bar)."""
        return self._book.books

    def update(self, bar: Mapping[str, Any]) -> PolicyStep | None:
        """One closed bar (oldest first, each once): the policy's step, or None while the
        window fills. Bars must move forward in time."""
        time = pd.Timestamp(bar["timestamp"])
        if time.tzinfo is None:
            time = time.tz_localize("UTC")
        if self.last_time is not None and time <= self.last_time:
            raise ConfigError(
                f"Bar at {time} is not after the last bar the policy saw ({self.last_time}).",
                param="bar",
            )
        self.last_time = time
        window = self._observations.update(bar)
        coarse = {key: c.update(bar) for key, c in self._coarse.items()}
        ready = window is not None and all(w is not None for w in coarse.values())
        sim_bar = Bar(
            time,
            float(bar["open"]),
            float(bar["high"]),
            float(bar["low"]),
            float(bar["close"]),
            float(bar.get("volume", 0.0)),
        )
        book = self._book
        if self._started:
            if book.advance(sim_bar):
                book.start(sim_bar)  # the episode would end here: a fresh book
        elif ready:
            book.start(sim_bar)
            self._started = True
        if not ready or not self._started:
            return None
        observation = {"window": window, **coarse, "portfolio": book.portfolio()}
        action = self.act(observation, book.target)
        target, invalid = self.codec.decode(action, book.target)
        book.decide(target, sim_bar.close)
        return PolicyStep(
            time,
            observation,
            action,
            float(target),
            bool(invalid),
            up_probability(target, self.high),
        )

    def act(self, observation: Mapping[str, np.ndarray], target: float) -> Any:
        """The agent's deterministic action for ``observation`` at the current ``target``
        (a masked agent reads the codec's masks at it)."""
        if self._masked:
            action, _ = self.model.predict(
                dict(observation), deterministic=True, action_masks=self.codec.masks(target)
            )
        else:
            action, _ = self.model.predict(dict(observation), deterministic=True)
        return action
