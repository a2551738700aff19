"""``moola rl``: reinforcement-learning runs from the registry, recorded like supervised runs.

Where the bars come from. An RL run names a windows dataset (feature windows from ``moola
data windows --features``, or windows over raw bars) and a split of it with train and val
parts by time (``forward-chaining``, or ``walk-forward`` with a final train/val/test cut).
The dataset says which raw bars, which feature set (feature windows; windows over raw bars
observe the built-in OHLCV returns) and how many bars an observation window holds; the
split says which bars belong to which period:

- the **training period** runs from the first bar of the first training window to the last
  bar of the last one; the agent trains on episodes inside it, and the observation scaler
  is fitted on its rows only;
- the **evaluation period** is the same span over the val part (``part="val"``), or over
  the test part for the one recorded look at it (``moola rl eval RUN --test``), without
  its bars on the training period's last day (an agent is never evaluated on a day it
  trained on, even where the split cuts inside a day). Each period
  carries its own bars only: its first decisions wait for the observation window (and the
  features' warm-up) to fill from bars inside it, so nothing of one period is ever seen,
  traded or scored in another. An evaluation period that starts before the training
  period ends is refused (``LeakageError``), whatever the split file says.

Computing is apart from recording: :func:`load_rl_data` reads and checks, the environment,
agents and evaluation live in ``moola.rl`` (no I/O), and the run folder, checkpoints and
results line are written here through the tracking store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from moola.core.atomic import atomic_write_text
from moola.core.errors import ConfigError, LeakageError, RegistryError
from moola.core.hashing import canonical_json, sha256_json
from moola.core.provenance import utc_now_iso
from moola.core.settings import RunConfig
from moola.core.threads import limit_threads
from moola.data._manifest import DatasetRef
from moola.data.registry import Registry, parse_ref
from moola.data.splits import Split
from moola.features.featureset import FeatureSet, FeatureSetSpec, load_feature_set
from moola.sim.execution import ExecutionConfig
from moola.tracking.runs import REPORT_FILE, RunStore, new_run_id

#: Split parts an RL run can be evaluated on (the training part is what it learns from).
EVAL_PARTS: tuple[str, ...] = ("val", "test")


@dataclass(frozen=True)
class Period:
    """One period's bars of one symbol: ``bars`` (canonical, RangeIndex) and the open times
    of its first and last bar."""

    part: str
    bars: pd.DataFrame
    first: pd.Timestamp
    last: pd.Timestamp
    #: Bars of the part left out because they fall on the training period's last day.
    skipped: int = 0

    def record(self) -> dict[str, Any]:
        """What a manifest keeps of it: the part, its first and last bar, how many bars."""
        return {
            "part": self.part,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "bars": len(self.bars),
            "skipped_training_day_bars": self.skipped,
        }


@dataclass(frozen=True)
class RLData:
    """What an RL run learns from and is evaluated on, read and checked once.

    ``dataset`` and ``split`` are the pinned versions (their records go into the manifest),
    ``raw`` the bars' raw version, ``feature_set`` the observed features (None: the built-in
    OHLCV returns), ``window`` the bars one observation holds, ``train`` and ``evaluation``
    the two periods.
    """

    dataset: DatasetRef
    split: Split
    split_record: dict[str, Any]
    raw: DatasetRef
    symbol: str
    feature_set: FeatureSet | None
    window: int
    train: Period
    evaluation: Period

    def record(self) -> dict[str, Any]:
        """The data lineage of a run: dataset, split, raw bars, symbol, features, periods."""
        return {
            "dataset": self.dataset.to_dict(),
            "split": self.split_record,
            "raw": self.raw.to_dict(),
            "symbol": self.symbol,
            "feature_set": None if self.feature_set is None else self.feature_set.name,
            "window": self.window,
            "periods": {"train": self.train.record(), "evaluation": self.evaluation.record()},
        }


def _windows_dataset(registry: Registry, text: str) -> DatasetRef:
    """``NAME[@vN]`` of a labeled or unlabeled windows dataset."""
    name, version = parse_ref(text)
    kinds = [kind for kind in ("labeled", "unlabeled") if registry.versions(kind, name)]
    if not kinds:
        other = registry.kinds_of(name)
        what = f"a {' and '.join(other)} dataset" if other else "no dataset"
        raise ConfigError(
            f"Dataset {text!r} is {what}; an RL run reads a windows dataset (feature windows "
            "or windows over raw bars) and a time split of it.",
            param="dataset",
        )
    return registry.resolve(kinds[0], name, version)


def _feature_set(registry: Registry, meta: dict[str, Any]) -> FeatureSet | None:
    """The feature set a feature-windows dataset was computed with (None for raw windows)."""
    recorded = meta.get("features")
    if recorded is None:
        return None
    features = registry.resolve("features", recorded["name"], recorded["version"])
    spec = registry.meta(features).get("feature_set")
    if not isinstance(spec, dict):
        raise RegistryError(
            f"Feature table {features} does not record its feature set's spec; rebuild the "
            "feature windows with this moola."
        )
    return load_feature_set(FeatureSetSpec.model_validate(spec))


def _raw_versions(meta: dict[str, Any]) -> list[dict[str, Any]]:
    tables = meta.get("feature_tables")
    return [entry["raw"] for entry in tables] if tables else [meta["raw"]]


def _one_symbol(symbols: np.ndarray, symbol: str | None, where: str) -> str:
    """``symbol`` when ``where`` holds it; with none named, ``where``'s only symbol (an RL
    run and a scan take one symbol's bars)."""
    known = sorted({str(s) for s in symbols})
    if symbol is None:
        if len(known) != 1:
            raise ConfigError(
                f"{where} holds {len(known)} symbols ({', '.join(known)}); name the one to use.",
                param="symbol",
            )
        return known[0]
    if symbol not in known:
        raise ConfigError(
            f"Symbol {symbol!r} is not in {where}; it holds {', '.join(known)}.", param="symbol"
        )
    return symbol


def _symbol_bars(
    registry: Registry, meta: dict[str, Any], symbol: str | None, symbols: np.ndarray
) -> tuple[DatasetRef, str, pd.DataFrame]:
    """The raw version holding ``symbol`` (default: the dataset's one symbol) and its bars."""
    symbol = _one_symbol(symbols, symbol, "the dataset")
    for raw in _raw_versions(meta):
        ref = registry.resolve("raw", raw["name"], raw["version"])
        if ref.content_hash != raw["content_hash"]:
            raise RegistryError(
                f"The windows refer to raw/{raw['name']}@v{raw['version']} with content hash "
                f"{raw['content_hash']}, but it now hashes to {ref.content_hash}."
            )
        bars = registry.load_raw(raw["name"], raw["version"])
        mine = bars[bars["symbol"].astype(str) == symbol]
        if len(mine):
            return ref, symbol, mine.reset_index(drop=True)
    raise RegistryError(f"No raw version of the dataset holds bars of {symbol!r}.")


def _period(
    part: str,
    indices: np.ndarray,
    bars: pd.DataFrame,
    spans: tuple[np.ndarray, np.ndarray, np.ndarray],
    symbol: str,
    window: int,
) -> Period:
    symbols, starts, ends = spans
    mine = indices[symbols[indices] == symbol] if len(indices) else indices
    if not len(mine):
        raise ConfigError(
            f"The split's {part} part holds no window of {symbol}; an RL run needs both a "
            "train and a val part by time (forward-chaining, or walk-forward with a final "
            "train/val/test cut).",
            param="split",
        )
    first, last = int(starts[mine].min()), int(ends[mine].max())
    stamps = bars["timestamp"].to_numpy("datetime64[ns]").astype(np.int64)
    inside = (stamps >= first) & (stamps <= last)
    period = bars[inside].reset_index(drop=True)
    if len(period) < window + 1:
        raise ConfigError(
            f"The {part} period of {symbol} has {len(period)} bars; an episode needs at least "
            f"the observation window ({window}) plus one bar to trade.",
            param="split",
        )
    return Period(
        part,
        period,
        pd.Timestamp(period["timestamp"].iloc[0]),
        pd.Timestamp(period["timestamp"].iloc[-1]),
    )


def _after_training_days(evaluation: Period, train: Period, window: int) -> Period:
    """``evaluation`` without its bars on the training period's last (UTC) day: an agent
    is never evaluated on a day it trained on, even when the split cut inside that day."""
    days = pd.to_datetime(evaluation.bars["timestamp"], utc=True).dt.normalize()
    keep = (days > train.last.tz_convert("UTC").normalize()).to_numpy()
    if keep.all():
        return evaluation
    bars = evaluation.bars[keep].reset_index(drop=True)
    if len(bars) < window + 1:
        raise ConfigError(
            f"The {evaluation.part} period has {len(bars)} bars after the training period's "
            f"last day ({train.last.date()}); an episode needs at least the observation window "
            f"({window}) plus one bar. Make a split with a longer {evaluation.part} part.",
            param="split",
        )
    return Period(
        evaluation.part,
        bars,
        pd.Timestamp(bars["timestamp"].iloc[0]),
        pd.Timestamp(bars["timestamp"].iloc[-1]),
        skipped=int((~keep).sum()),
    )


def _parts(
    split: Split, name: str, part: str, fold: int | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Training and evaluation sample indices of ``split`` and the evaluated part's name."""
    if split.folds:
        if part == "test":
            raise ConfigError(
                f"Split {name} is a fold split: every fold's test part is an evaluation "
                "period, none is held out untouched. Make a forward-chaining split to hold "
                "out a test period.",
                param="part",
            )
        n = len(split.folds)
        k = n - 1 if fold is None else fold
        if not -n <= k < n:
            raise ConfigError(
                f"fold={fold}: split {name} has {n} folds (0..{n - 1}).", param="fold"
            )
        chosen = split.folds[k]
        return (
            np.asarray(chosen.train, dtype=np.int64),
            np.asarray(chosen.test, dtype=np.int64),
            f"fold {k % n} test",
        )
    if fold is not None:
        raise ConfigError(f"fold={fold}: split {name} has no folds.", param="fold")
    return (
        np.asarray(split.train, dtype=np.int64),
        np.asarray(getattr(split, part), dtype=np.int64),
        part,
    )


def load_rl_data(
    registry: Registry,
    dataset: str,
    split: str,
    *,
    symbol: str | None = None,
    part: str = "val",
    fold: int | None = None,
) -> RLData:
    """Read and check what an RL run trains and is evaluated on (module notes).

    ``part`` is the split part the evaluation period covers (``"val"`` or ``"test"``). A
    walk-forward split gives one fold's train and test parts instead (``fold``, default the
    last; its test part is the evaluation period, and ``part="test"`` is refused: such a
    split holds no untouched test part).
    Raises ``ConfigError`` naming ``dataset``, ``split``, ``symbol`` or ``part`` when the
    dataset is not a windows dataset, the split has no train or no such part, the symbol is
    unknown or ambiguous, or a period is shorter than one window plus a bar;
    ``LeakageError`` when the evaluation period starts before the training period ends.
    """
    if part not in EVAL_PARTS:
        raise ConfigError(
            f"part={part!r}: an RL run is evaluated on {' or '.join(EVAL_PARTS)}.", param="part"
        )
    ref = _windows_dataset(registry, dataset)
    split_obj, record = registry.load_split(split, expect_dataset=ref)
    train_idx, eval_idx, where = _parts(split_obj, split, part, fold)
    meta = registry.meta(ref)
    window = int(meta["length"])
    spans = registry.sample_windows(ref)
    raw, symbol, bars = _symbol_bars(registry, meta, symbol, spans[0])
    train = _period("train", train_idx, bars, spans, symbol, window)
    evaluation = _period(where, eval_idx, bars, spans, symbol, window)
    if evaluation.first <= train.last:
        raise LeakageError(
            f"The {evaluation.part} period of split {split} starts at {evaluation.first} but "
            f"the training period runs to {train.last}: the agent would be evaluated on bars "
            "it trained on. Make a split whose parts follow each other in time.",
            param="split",
        )
    evaluation = _after_training_days(evaluation, train, window)
    return RLData(
        dataset=ref,
        split=split_obj,
        split_record=record,
        raw=raw,
        symbol=symbol,
        feature_set=_feature_set(registry, meta),
        window=window,
        train=train,
        evaluation=evaluation,
    )


# --------------------------------------------------------------------------- runs


class RLConfig(RunConfig):
    """An RL run: which data, which environment, which agent, how long.

    ``execution`` holds ``moola.sim.ExecutionConfig`` fields (costs, latency, rules; the
    environment halts on a rule breach), ``reward`` a ``moola.rl.rewards.RewardSpec``
    (default: equity change only) and ``params`` the algorithm's hyperparameters
    (``learning_rate``, ``n_steps``, ``batch_size``, ``gamma``, ``ent_coef``, ``net_arch``
    ...). ``threads``: torch and BLAS threads while it trains (default 1: the small policy
    networks gain nothing from more, and idle pools fight for the cores). ``curriculum``
    names a momentum index (``moola rl scan``) whose reset points the training episodes
    start from, easier days first; ``curriculum_params`` go to ``moola.rl.curriculum.
    Curriculum`` (``stages``, ``promote_at``: the evaluation return that promotes,
    ``min_evals``, ``include_earlier``). ``timescales`` adds windows of coarser completed
    bars to the observation (``{"5m": 12, "1h": 24}``; with ``extractor="multi_timescale"``
    each gets its own branch). ``from_run`` continues an RL run's best model as
    the next version (v2, v3, ...: its steps count on from the parent's), the learning
    rate annealed linearly to ``lr_final_fraction`` of the parent's over ``timesteps``.
    """

    dataset: str
    split: str
    symbol: str | None = None
    fold: int | None = None
    algo: Literal["ppo", "maskable_ppo", "a2c"] = "ppo"
    action_space: Literal["discrete12", "target", "continuous"] = "discrete12"
    allow_short: bool = True
    invalid_action: Literal["mask", "penalise", "terminate"] = "mask"
    extractor: Literal["flat", "multi_timescale"] = "flat"
    timesteps: int = Field(20_000, ge=1)
    n_envs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    eval_freq: int = Field(5_000, ge=1)
    eval_episodes: int = Field(1, ge=1)
    keep_top: int = Field(5, ge=1)
    from_run: str | None = None
    lr_final_fraction: float = Field(0.1, gt=0.0, le=1.0)
    timescales: dict[str, int] = Field(default_factory=dict)
    curriculum: str | None = None
    curriculum_params: dict[str, Any] = Field(default_factory=dict)
    execution: dict[str, Any] = Field(default_factory=dict)
    reward: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    threads: int = Field(1, ge=1)

    @field_validator("execution")
    @classmethod
    def _execution(cls, value: dict[str, Any]) -> dict[str, Any]:
        ExecutionConfig(**value)  # refuses unknown keys and bad terms, naming them
        return value

    @field_validator("reward")
    @classmethod
    def _reward(cls, value: dict[str, Any]) -> dict[str, Any]:
        from moola.rl.rewards import RewardSpec

        RewardSpec.model_validate(value)
        return value


@dataclass(frozen=True)
class RLRunResult:
    """A recorded RL run: its id and folder, the evaluation summary and the manifest."""

    run_id: str
    run_dir: Path
    evaluation: dict[str, Any]
    manifest: dict[str, Any]


def _env_kwargs(config: RLConfig, data: RLData) -> dict[str, Any]:
    """The environment's terms, the same for training and evaluation."""
    from moola.rl.rewards import RewardSpec

    return {
        "features": data.feature_set,
        "window": data.window,
        "execution": ExecutionConfig(**config.execution),
        "action_space": config.action_space,
        "allow_short": config.allow_short,
        "reward": RewardSpec.model_validate(config.reward),
        "invalid_action": config.invalid_action,
        "symbol": data.symbol,
        **({"timescales": dict(config.timescales)} if config.timescales else {}),
    }


def _training_env(config: RLConfig, data: RLData, start: Any) -> tuple[Any, Any]:
    """The vectorised training environment and one single env on the same terms (whose
    scaler, fitted on the training period only, the evaluation env reuses)."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from moola.rl.env import TradingEnv

    kwargs = {**_env_kwargs(config, data), "max_steps": config.max_steps, "start": start}
    single = TradingEnv(data.train.bars, **kwargs)
    if config.n_envs == 1:
        return DummyVecEnv([lambda: single]), single
    from moola.rl.vec_env import VecTradingEnv

    if not config.timescales:  # the native kernel observes one window
        try:
            vec = VecTradingEnv(data.train.bars, config.n_envs, scaler=single.scaler, **kwargs)
            return vec, single
        except ConfigError:
            pass  # terms the native kernel does not cover (e.g. order-limit rules)

    def make() -> Any:
        return TradingEnv(data.train.bars, scaler=single.scalers, **kwargs)

    return DummyVecEnv([make for _ in range(config.n_envs)]), single


def _evaluation_env(config: RLConfig, data: RLData, scaler: Any) -> Any:
    """One env over the whole evaluation period from its first tradable bar."""
    from moola.rl.env import TradingEnv

    return TradingEnv(
        data.evaluation.bars, **_env_kwargs(config, data), scaler=scaler, start="first"
    )


def _curriculum(registry: Registry, config: RLConfig, data: RLData, env: Any) -> Any:
    """The curriculum over the momentum index ``config.curriculum``, its reset points
    moved onto the training period's bars (days outside it dropped); None without one."""
    if config.curriculum is None:
        return None
    from moola.rl.curriculum import Curriculum
    from moola.rl.scanner import index_from_frame

    ref = registry.resolve_text(config.curriculum, "indexes")
    table = registry.load_table("indexes", ref.name, ref.version)
    meta = registry.meta(ref)
    if meta.get("raw", {}).get("content_hash") != data.raw.content_hash:
        raise ConfigError(
            f"Momentum index {ref} was scanned on {meta.get('raw', {}).get('name')}@v"
            f"{meta.get('raw', {}).get('version')}, not on the run's bars {data.raw}; scan "
            "the run's raw dataset.",
            param="curriculum",
        )
    if meta.get("symbol") != data.symbol:
        raise ConfigError(
            f"Momentum index {ref} scanned {meta.get('symbol')}, the run trades {data.symbol}.",
            param="curriculum",
        )
    stamps = data.train.bars["timestamp"].to_numpy("datetime64[ns]").astype(np.int64)
    reset = pd.to_datetime(table["reset_time"], utc=True).to_numpy("datetime64[ns]")
    reset_ns = reset.astype(np.int64)
    position = np.searchsorted(stamps, reset_ns)
    inside = (position < len(stamps)) & (stamps[np.minimum(position, len(stamps) - 1)] == reset_ns)
    if not inside.any():
        raise ConfigError(
            f"No reset point of momentum index {ref} falls in the training period "
            f"({data.train.first} to {data.train.last}).",
            param="curriculum",
        )
    flat = table[inside].copy()
    flat["reset_bar"] = position[inside].astype(np.int64)
    index = index_from_frame(flat.drop(columns=["reset_time"]))
    return Curriculum(index, starts=env.start_points, **config.curriculum_params)


def _parent(store: RunStore, config: RLConfig) -> dict[str, Any] | None:
    """The run ``config.from_run`` continues: its id, version, steps, learning rate and
    verified best model (None when the run starts from scratch)."""
    if config.from_run is None:
        return None
    run_dir = store.run_dir(config.from_run)
    manifest = store.manifest(run_dir)
    if manifest.get("kind") != "rl":
        raise ConfigError(
            f"Run {run_dir.name} is a {manifest.get('kind')} run; an RL run continues an RL "
            "run's best model.",
            param="from_run",
        )
    algo = manifest["config"]["algo"]
    if algo != config.algo:
        raise ConfigError(
            f"Run {run_dir.name} trained {algo}; its model continues as {algo}, not {config.algo}.",
            param="from_run",
        )
    training = manifest.get("training", {})
    params = {**manifest["config"].get("params", {}), **config.params}
    return {
        "run_id": run_dir.name,
        "version": int(training.get("version", 1)),
        "steps": int(training.get("total_timesteps", training.get("timesteps", 0))),
        "learning_rate": float(params.get("learning_rate", 3e-4)),
        "model": store.verified_path(run_dir, "model.zip"),
        "agent": manifest["agent"],
    }


def _anneal(agent: Any, rate: float, base: int, config: RLConfig) -> None:
    """A continued training's learning rate: linear from ``rate`` to ``lr_final_fraction``
    of it over this run's ``timesteps`` (its steps count on from the parent's ``base``)."""
    from moola.rl.agents import AnnealedRate

    span = config.timesteps / (base + config.timesteps)
    agent.learning_rate = AnnealedRate(rate, rate * config.lr_final_fraction, span)
    agent._setup_lr_schedule()


def _versions() -> dict[str, str | None]:
    from moola.pipeline.train import library_versions

    out = dict(library_versions())
    for name in ("gymnasium", "stable-baselines3", "sb3-contrib"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _folder_files(folder: Path, prefix: str) -> dict[str, bytes]:
    return {
        f"{prefix}/{path.relative_to(folder)}": path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _episode(model: Any, env: Any) -> tuple[Any, np.ndarray]:
    """One greedy episode of ``model`` on ``env`` from its first tradable bar: the replay
    through ``moola.backtest.run`` and the env's own equity curve."""
    from sb3_contrib import MaskablePPO

    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        if isinstance(model, MaskablePPO):
            action, _ = model.predict(obs, deterministic=True, action_masks=env.action_masks())
        else:
            action, _ = model.predict(obs, deterministic=True)
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    return env.episode_backtest(), np.asarray(env.episode_equity, dtype=np.float64)


def _parity(backtest: Any, equity: np.ndarray) -> float:
    """Largest relative difference between the env's equity and its replay's."""
    replay = backtest.equity["equity"].to_numpy(np.float64)[: len(equity)]
    scale = np.maximum(np.abs(equity[: len(replay)]), 1e-12)
    return float(np.max(np.abs(replay - equity[: len(replay)]) / scale)) if len(replay) else 0.0


def _stats(backtest: Any) -> dict[str, Any]:
    keep = ("total_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "final_equity")
    return {k: backtest.stats.get(k) for k in keep if k in backtest.stats}


def train_rl(
    registry: Registry,
    config: RLConfig | None,
    *,
    on_event: Callable[[str, dict[str, Any]], None] = lambda *_: None,
    on_step: Callable[[int, int], None] | None = None,
    resume: str | None = None,
    study: Mapping[str, Any] | None = None,
) -> RLRunResult:
    """Train an agent on the training period, keep its best models by evaluation return on
    the evaluation period, and record the run (module notes).

    ``on_event`` is told ``status`` (before training), ``evaluation`` (each periodic
    evaluation) and ``results``; ``on_step(step, total)`` follows the environment steps
    (a progress bar). While it trains, the kept models live under
    ``artifacts/checkpoints/<run_id>/``; the recorded run folder holds the best model
    (``model.zip``), the top ``keep_top`` models with their metadata, the evaluation on the
    evaluation period against flat and buy-and-hold at the same costs, the best model's
    episode replayed through ``moola.backtest.run`` (with the largest equity difference
    between the two: the parity the run was made with) and an HTML report.

    The latest model is saved with the kept ones every ``eval_freq`` steps; ``resume=RUN``
    continues an interrupted run from it with the config it was started with (``config``
    is then ignored and may be None): same run id and data, the kept models and the
    curriculum's stage carried on, the step count going on to ``timesteps``
    (``moola.rl.resume`` says what is not carried: the environments' random state).

    ``study`` (``{"name", "trial", "params"}``) marks a tuning study's trial: the manifest
    keeps it and the results line carries ``study`` and ``trial``, as ``record_run`` does
    for supervised trials (a resumed study settles a killed trial by them).
    """
    store = RunStore(registry.root)
    run_id: str | None = None
    if resume is not None:
        _, stored = store.interrupted_config(resume)
        config, run_id = RLConfig.model_validate(stored), resume
    if config is None:
        raise ConfigError("Give the run's config, or resume= an interrupted run.", param="config")
    with limit_threads(config.threads) as threads:
        return _train_and_record(registry, config, on_event, on_step, threads, run_id, study)


def _train_and_record(
    registry: Registry,
    config: RLConfig,
    on_event: Callable[[str, dict[str, Any]], None],
    on_step: Callable[[int, int], None] | None,
    threads: dict[str, Any],
    resumed: str | None,
    study: Mapping[str, Any] | None = None,
) -> RLRunResult:
    from moola.rl.agents import agent_build, load_agent, make_agent
    from moola.rl.callbacks import TopKCheckpoints, TrainingProgress
    from moola.rl.evaluate import evaluate_policy
    from moola.rl.report import rl_report
    from moola.rl.resume import LatestCheckpoint, read_latest

    started = time.perf_counter()
    data = load_rl_data(
        registry, config.dataset, config.split, symbol=config.symbol, fold=config.fold
    )
    pinned = config.model_copy(
        update={
            "dataset": f"{data.dataset.name}@v{data.dataset.version}",
            "split": f"{data.split_record['name']}@v{data.split_record['version']}",
            "symbol": data.symbol,
        }
    )
    store = RunStore(registry.root)
    run_id = resumed or new_run_id(f"rl-{config.algo}")
    vec, single = _training_env(pinned, data, "random")
    curriculum = _curriculum(registry, pinned, data, single)
    if curriculum is not None:
        vec.close()
        vec, single = _training_env(pinned, data, curriculum)
    evaluation_env = _evaluation_env(pinned, data, single.scalers)
    checkpoints = store.checkpoints_dir / run_id
    latest = read_latest(checkpoints) if resumed else None
    parent = _parent(store, config)
    version = 1 if parent is None else parent["version"] + 1
    base = 0 if parent is None else parent["steps"]
    # The agent is built (or loaded, and its network checked against the env) before
    # anything is written: a refused checkpoint leaves no run folder behind.
    if latest is not None:
        agent = load_agent(latest[0], vec, build=latest[1]["agent"])
        if curriculum is not None and latest[1]["state"].get("curriculum"):
            curriculum.load_state_dict(latest[1]["state"]["curriculum"])
    elif parent is not None:
        agent = load_agent(parent["model"], vec, build=parent["agent"])
    else:
        agent = make_agent(
            config.algo, vec, seed=config.seed, extractor=config.extractor, **config.params
        )
    if parent is not None:
        _anneal(agent, parent["learning_rate"], base, config)
    folder = store.start_checkpoints(run_id, pinned.model_dump(mode="json"))
    on_event(
        "status",
        {
            "run_id": run_id,
            "algo": config.algo,
            "data": f"{data.dataset} / {data.split_record['name']}@v{data.split_record['version']}",
            "symbol": data.symbol,
            "train": f"{data.train.first} .. {data.train.last} ({len(data.train.bars)} bars)",
            "evaluation": f"{data.evaluation.first} .. {data.evaluation.last} "
            f"({len(data.evaluation.bars)} bars)",
            "timesteps": config.timesteps,
            "checkpoints": str(folder),
        },
    )
    if latest is not None:
        on_event("resumed", {"run_id": run_id, "step": latest[1]["step"]})

    def evaluated(step: int, result: Any) -> None:
        promoted = curriculum.record(result.policy.mean_return, step=step) if curriculum else False
        on_event(
            "evaluation",
            {"step": step, "reward": result.mean_reward, "return": result.policy.mean_return,
             "promoted": promoted},
        )  # fmt: skip

    topk = TopKCheckpoints(
        folder / f"v{version}",
        evaluation_env,
        eval_freq=min(config.eval_freq, config.timesteps),
        n_episodes=config.eval_episodes,
        k=config.keep_top,
        seed=config.seed,
        config=pinned.model_dump(mode="json"),
        data_versions=data.record(),
        version=version,
        on_evaluation=evaluated,
    )
    saver = LatestCheckpoint(
        folder,
        every=min(config.eval_freq, config.timesteps),
        state=lambda: {"curriculum": None if curriculum is None else curriculum.state_dict()},
    )
    callbacks: list[Any] = [topk, saver]
    if on_step is not None:
        callbacks.append(TrainingProgress(on_step, every=max(1, config.timesteps // 40)))
    done = int(agent.num_timesteps) - base if latest is not None else 0
    if done < config.timesteps:
        agent.learn(
            total_timesteps=config.timesteps - done,
            callback=callbacks,
            reset_num_timesteps=latest is None and parent is None,
        )
    train_s = time.perf_counter() - started
    best = load_agent(folder / f"v{version}", evaluation_env)
    result = evaluate_policy(
        best, evaluation_env, n_episodes=config.eval_episodes, seed=config.seed
    )
    backtest, equity = _episode(best, evaluation_env)
    parity = _parity(backtest, equity)
    evaluation = {
        "period": data.evaluation.record(),
        **result.summary(),
        "backtest": _stats(backtest),
        "parity_max_rel_diff": parity,
    }
    manifest = {
        "kind": "rl",
        "config": pinned.model_dump(mode="json"),
        "config_hash": sha256_json(pinned.model_dump(mode="json")),
        "seed": config.seed,
        "data": data.record(),
        "execution": {
            "config": single.execution.model_dump(mode="json"),
            "hash": single.execution.config_hash,
        },
        "observation": {
            "window": data.window,
            "columns": list(single.observation_columns),
            "scaling": single.scaler.to_dict(),
            "timescales": single.timescales,
            "scalings": {key: scaler.to_dict() for key, scaler in single.scalers.items()},
        },
        "training": {
            "version": version,
            "continued_from": None
            if parent is None
            else {k: v for k, v in parent.items() if k not in ("model", "agent")},
            "timesteps": int(agent.num_timesteps) - base,
            "total_timesteps": int(agent.num_timesteps),
            "final_learning_rate": float(agent.policy.optimizer.param_groups[0]["lr"]),
            "evaluations": topk.evaluations,
            "kept": topk.kept,
            "curriculum": None if curriculum is None else curriculum.history,
            "resumed_at": None if latest is None else latest[1]["step"],
            "train_s": round(train_s, 3),
        },
        "evaluation": {k: v for k, v in evaluation.items() if k not in ("policy",)}
        | {"policy": _without_curves(evaluation["policy"])},
        "agent": agent_build(agent),
        "libraries": _versions(),
        "threads": threads,
        "test_evaluated": False,
        **({"study": dict(study)} if study else {}),
    }
    files: dict[str, bytes | str] = {
        "model.zip": (folder / f"v{version}" / topk.best["model"]).read_bytes(),
        "scaler.json": canonical_json(single.scaler.to_dict()),
        "evaluation.json": json.dumps(evaluation, indent=2, default=str) + "\n",
        "equity.csv": backtest.equity.to_csv(index=False),
        **_folder_files(folder / f"v{version}", "checkpoints"),
        "report.html": rl_report(run_id, manifest, evaluation),
    }
    run_dir = store.write_run(run_id, manifest, files)
    headline = {
        "eval_return": result.policy.mean_return,
        "eval_reward": result.mean_reward,
        "flat_return": None if result.flat is None else result.flat.mean_return,
        "buy_and_hold_return": None
        if result.buy_and_hold is None
        else result.buy_and_hold.mean_return,
        **{f"backtest_{k}": v for k, v in _stats(backtest).items()},
    }
    store.append_result(
        {
            "run_id": run_id,
            "kind": "rl",
            "model": config.algo,  # what `moola runs list` shows in its model column
            "algo": config.algo,
            "dataset": manifest["config"]["dataset"],
            "split": manifest["config"]["split"],
            "config_hash": manifest["config_hash"],
            "seed": config.seed,
            "metrics": headline,
            "wall_time_s": round(time.perf_counter() - started, 3),
            **({"study": study["name"], "trial": study["trial"]} if study else {}),
        }
    )
    store.discard_checkpoints(run_id)
    on_event("results", {"run_id": run_id, "metrics": headline, "run_dir": str(run_dir)})
    vec.close()
    return RLRunResult(run_id, run_dir, evaluation, manifest)


def _without_curves(policy: dict[str, Any]) -> dict[str, Any]:
    """A policy summary without its per-bar equity curves (they live in the run's files)."""
    return {
        **policy,
        "episodes": [
            {k: v for k, v in episode.items() if k != "equity"} for episode in policy["episodes"]
        ],
    }


def write_rl_report(registry: Registry, run_id: str) -> Path:
    """(Re)write an RL run's ``report.html`` from its verified manifest and evaluation, with
    every evaluation made since (``moola rl eval``); returns its path."""
    from moola.rl.report import rl_report

    store = RunStore(registry.root)
    run_dir = store.run_dir(run_id)
    manifest = store.manifest(run_dir)
    evaluation = json.loads(store.read_bytes(run_dir, "evaluation.json"))
    folder = run_dir / "evaluations"
    later = [
        json.loads(store.read_added_file(run_dir, f"evaluations/{path.name}"))
        for path in (sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
                     if folder.is_dir() else [])
    ]  # fmt: skip
    path = run_dir / REPORT_FILE
    atomic_write_text(path, rl_report(run_dir.name, manifest, evaluation, later), overwrite=True)
    return path


# --------------------------------------------------------------------------- scanning


@dataclass(frozen=True)
class ScanResult:
    """A stored momentum index: its version, and how many days and reset points it holds."""

    ref: DatasetRef
    days: int
    reset_points: int
    quality: tuple[float, float]


def scan_momentum(
    registry: Registry,
    raw: str,
    *,
    name: str,
    symbol: str | None = None,
    timezone: str = "UTC",
    session: tuple[str, str] | None = None,
    reset_every: int = 30,
    lookback: int = 20,
    min_bars: int | None = None,
) -> ScanResult:
    """Score every finished day of ``raw``'s bars of ``symbol`` for momentum
    (``moola.rl.scanner.momentum_index``) and store the index, one row per reset point with
    its bar's time, as an ``indexes`` table whose parent is the raw version.

    A curriculum (``RLConfig.curriculum``) reads it back and keeps the reset points that
    fall in a run's training period.
    """
    from moola.rl.scanner import index_to_frame, momentum_index

    ref = registry.resolve_text(raw, "raw")
    bars = registry.load_raw(ref.name, ref.version)
    symbol = _one_symbol(bars["symbol"].to_numpy(), symbol, str(ref))
    mine = bars[bars["symbol"].astype(str) == symbol].reset_index(drop=True)
    params = {
        "timezone": timezone,
        "session": None if session is None else list(session),
        "reset_every": reset_every,
        "lookback": lookback,
        "min_bars": min_bars,
    }
    index = momentum_index(
        mine,
        timezone=timezone,
        session=session,
        min_bars=min_bars,
        reset_every=reset_every,
        lookback=lookback,
    )
    if not len(index):
        raise ConfigError(
            f"{ref} ({symbol}) has no day to score: the first day only serves as the baseline; "
            "give more days of bars.",
            param="raw",
        )
    flat = index_to_frame(index)
    flat.insert(1, "reset_time", mine["timestamp"].to_numpy()[flat["reset_bar"].to_numpy()])
    quality = (float(index["quality"].min()), float(index["quality"].max()))
    stored = registry.write_table(
        "indexes",
        name,
        flat,
        parents=[ref],
        meta={
            "index": "momentum",
            "raw": ref.to_dict(),
            "symbol": symbol,
            "days": len(index),
            "quality_range": list(quality),
            "attrs": json.loads(json.dumps(index.attrs, default=str)),
        },
        transformations=[{"name": "momentum_index", "params": params}],
    )
    return ScanResult(stored, len(index), len(flat), quality)


# --------------------------------------------------------------------------- evaluating


def evaluate_rl(
    registry: Registry,
    run_id: str,
    *,
    part: str = "val",
    n_episodes: int = 1,
    allow_reuse: bool = False,
) -> dict[str, Any]:
    """Play RL run ``run_id``'s best model on its split's ``part`` (``"val"``, or ``"test"``
    once: the look is written to the journal before anything is computed, and a second
    look at the same split's test part is refused unless ``allow_reuse``), against flat and
    buy-and-hold at the same costs; the record is added to the run under ``evaluations/``
    and to ``experiment_results.jsonl``. Returns the record."""
    from moola.features.scaling import Scaler
    from moola.pipeline.lifecycle import earlier_test_looks, record_test_look
    from moola.rl.agents import load_agent
    from moola.rl.evaluate import evaluate_policy
    from moola.tracking.journal import JsonlJournal

    store = RunStore(registry.root)
    run_dir = store.run_dir(run_id)
    manifest = store.manifest(run_dir)
    if manifest.get("kind") != "rl":
        raise ConfigError(
            f"Run {run_dir.name} is a {manifest.get('kind')} run, not an RL run; evaluate it "
            "with moola evaluate.",
            param="run_id",
        )
    config = RLConfig.model_validate(manifest["config"])
    data = load_rl_data(
        registry, config.dataset, config.split, symbol=config.symbol, fold=config.fold, part=part
    )
    columns = tuple(manifest["observation"]["columns"])
    observation = manifest["observation"]
    scalings = observation.get("scalings") or {"window": observation["scaling"]}
    scalers = {
        key: Scaler.from_dict(stored, columns if key == "window" else None)
        for key, stored in scalings.items()
    }
    env = _evaluation_env(config, data, scalers)
    model_path = store.verified_path(run_dir, "model.zip")
    journal = JsonlJournal(registry.root)
    earlier: list[Any] = []
    if part == "test":
        split_hash = data.split_record["split_hash"]
        earlier = earlier_test_looks(journal, split_hash, config.split, allow_reuse=allow_reuse)
        record_test_look(journal, run_dir.name, split_hash, config.split, reused=bool(earlier))
    with limit_threads(config.threads):
        model = load_agent(model_path, env, build=manifest["agent"])
        result = evaluate_policy(model, env, n_episodes=n_episodes, seed=config.seed)
        backtest, equity = _episode(model, env)
    record = {
        "at": utc_now_iso(),
        "part": part,
        "period": data.evaluation.record(),
        **result.summary(),
        "backtest": _stats(backtest),
        "parity_max_rel_diff": _parity(backtest, equity),
        "reused_test": bool(earlier),
    }
    stamp, n = record["at"].replace(":", ""), 1
    name = f"{part}-{stamp}.json"
    while (run_dir / "evaluations" / name).exists():
        n += 1
        name = f"{part}-{stamp}-{n}.json"
    store.add_file(
        run_dir, f"evaluations/{name}", (json.dumps(record, indent=2, default=str) + "\n").encode()
    )
    store.append_result(
        {
            "run_id": run_dir.name,
            "kind": "rl-evaluate",
            "part": part,
            "algo": config.algo,
            "dataset": config.dataset,
            "metrics": {
                "eval_return": result.policy.mean_return,
                "eval_reward": result.mean_reward,
                **{f"backtest_{k}": v for k, v in _stats(backtest).items()},
            },
        }
    )
    write_rl_report(registry, run_dir.name)
    return record


# --------------------------------------------------------------------------- live policy


def policy_record(registry: Registry, run_id: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """What live inference of RL run ``run_id`` needs (``moola.rl.policy.POLICY_FILE`` in
    its promoted folder), from its verified ``manifest``: the
    algorithm and the agent's build record (``load_agent(build=...)``: no pickle), the
    weights file and its SHA-256, the action space (name, shorting, invalid-action policy),
    the symbol and bar timeframe it trained on (None when its raw bars mix timeframes),
    the observation (window, timescales, feature columns, every window's scaler, the
    feature set's full spec or None for the built-in OHLCV returns, the portfolio fields)
    and the execution terms the policy was trained under (its own book's costs, latency
    and loss limits). The feature set's spec is read from the windows dataset the run
    trained on (its recorded version, hash checked), so a later edit of a shipped set
    cannot change what the promoted policy observes."""
    from moola.core.hashing import sha256_bytes
    from moola.rl.observations import PORTFOLIO_FIELDS
    from moola.rl.policy import POLICY_FORMAT

    store = RunStore(registry.root)
    run_dir = store.run_dir(run_id)
    config = RLConfig.model_validate(manifest["config"])
    recorded = manifest["data"]["dataset"]
    ref = registry.resolve(recorded["kind"], recorded["name"], int(recorded["version"]))
    if ref.content_hash != recorded["content_hash"]:
        raise RegistryError(
            f"Run {run_dir.name} trained on {recorded['kind']}/{recorded['name']}@v"
            f"{recorded['version']} with content hash {recorded['content_hash']}, but it now "
            f"hashes to {ref.content_hash}."
        )
    fset = _feature_set(registry, registry.meta(ref))
    raw = manifest["data"]["raw"]
    timeframes = registry.meta(registry.resolve("raw", raw["name"], int(raw["version"]))).get(
        "timeframe"
    )
    if isinstance(timeframes, str):
        timeframes = [timeframes]
    observation = manifest["observation"]
    weights = store.read_bytes(run_dir, "model.zip")
    return {
        "format": POLICY_FORMAT,
        "run_id": run_dir.name,
        "algo": config.algo,
        "agent": manifest["agent"],
        "weights": {"file": "model.zip", "sha256": sha256_bytes(weights)},
        "action_space": config.action_space,
        "allow_short": config.allow_short,
        "invalid_action": config.invalid_action,
        "symbol": manifest["data"]["symbol"],
        "timeframe": timeframes[0] if timeframes and len(timeframes) == 1 else None,
        "observation": {
            "window": int(observation["window"]),
            "columns": list(observation["columns"]),
            "feature_set": None if fset is None else fset.spec.model_dump(mode="json"),
            "timescales": dict(observation.get("timescales") or {}),
            "scalings": observation.get("scalings") or {"window": observation["scaling"]},
            "portfolio": list(PORTFOLIO_FIELDS),
        },
        "execution": manifest["execution"]["config"],
    }


def rl_gate_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """An RL evaluation (the run's own, or a later ``evaluate_rl`` record) as the flat
    metrics promotion gates read: ``eval_return`` (the agent's mean after-cost return),
    ``eval_reward``, ``flat_return``, ``buy_and_hold_return``, ``excess_return`` (over
    buy-and-hold, None without it), ``invalid_actions``, ``parity_max_rel_diff`` (the
    replay through ``moola backtest``) and the greedy episode's backtest stats as
    ``backtest_<stat>`` (``total_return``, ``sharpe``, ``max_drawdown`` ...)."""

    def mean_return(name: str) -> float | None:
        part = evaluation.get(name)
        return None if not isinstance(part, dict) else part.get("mean_return")

    policy = evaluation.get("policy") or {}
    eval_return, hold = mean_return("policy"), mean_return("buy_and_hold")
    stats = evaluation.get("backtest") or {}
    return {
        "eval_return": eval_return,
        "eval_reward": policy.get("mean_reward"),
        "flat_return": mean_return("flat"),
        "buy_and_hold_return": hold,
        "excess_return": None if eval_return is None or hold is None else eval_return - hold,
        "invalid_actions": policy.get("invalid_actions"),
        "parity_max_rel_diff": evaluation.get("parity_max_rel_diff"),
        **{f"backtest_{k}": v for k, v in stats.items()},
    }
