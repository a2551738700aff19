"""RL runs read their periods from a registry split (issue 17): the training period is
the training windows' span, the evaluation period the val (or a fold's test) windows'
span, each with its own bars only; an evaluation period that starts before training ends
is refused."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

from moola.core.errors import CheckpointError, ConfigError, LeakageError
from moola.data.registry import Registry
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry
from moola.features.labels import build_labels
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.pipeline.rl import RLConfig, evaluate_rl, load_rl_data, scan_momentum, train_rl
from moola.tracking.journal import JsonlJournal
from moola.tracking.runs import RunStore
from tests.conftest import random_walk_bars

SPEC = FeatureSetSpec(
    name="small",
    features=[
        FeatureSpecEntry(name="sma", params={"period": 5}),
        FeatureSpecEntry(name="rsi", params={"period": 3}),
    ],
)


@pytest.fixture
def rl_registry(registry: Registry) -> Registry:
    """Unlabeled feature windows ``fw`` (length 10) over 600 bars, a forward-chaining
    split ``fc`` and a 3-fold walk-forward split ``wf``; labeled windows ``lw`` with a
    shuffled (time-independent) split ``shuffled``."""
    bars = random_walk_bars(600, timeframe="60m")  # 25 days
    raw = ingest_bars(registry, bars, name="mkt", sources=[{"test": "mkt"}], mode="repair").ref
    ref = build_feature_windows(registry, "mkt", SPEC, name="fw", length=10)
    make_and_store_split(registry, ref, "forward-chaining", name="fc")
    make_and_store_split(registry, ref, "walk-forward", name="wf", n_splits=3)
    labels = build_labels(bars.reset_index(drop=True), "forward-return", horizon=5)
    registry.write_table("labels", "mkt", labels, parents=[raw], meta={"target": "label"})
    lw = build_feature_windows(registry, "mkt", SPEC, name="lw", length=10, labels="mkt")
    make_and_store_split(registry, lw, "stratified", name="shuffled", time_independent=True, seed=0)
    return registry


def test_periods_follow_the_split_and_hold_their_own_bars_only(rl_registry):
    data = load_rl_data(rl_registry, "fw", "fc")
    assert data.symbol == "TEST" and data.window == 10
    assert data.feature_set is not None and data.feature_set.name == "small"
    assert data.train.last < data.evaluation.first
    # Never evaluated on a day it trained on.
    assert data.evaluation.first.normalize() > data.train.last.normalize()
    bars = rl_registry.load_raw("mkt")
    for period in (data.train, data.evaluation):
        stamps = period.bars["timestamp"]
        assert stamps.is_monotonic_increasing
        # Exactly the raw bars between the period's first and last bar, nothing else.
        inside = bars[(bars["timestamp"] >= period.first) & (bars["timestamp"] <= period.last)]
        pd.testing.assert_frame_equal(period.bars, inside.reset_index(drop=True))
    record = data.record()
    assert record["split"]["name"] == "fc" and record["raw"]["name"] == "mkt"
    assert record["periods"]["evaluation"]["part"] == "val"


def test_the_test_part_is_a_later_period_than_val(rl_registry):
    val = load_rl_data(rl_registry, "fw", "fc")
    test = load_rl_data(rl_registry, "fw", "fc", part="test")
    assert test.evaluation.first > val.evaluation.last
    assert test.train.bars.equals(val.train.bars)


def test_a_walk_forward_fold_gives_its_train_and_test_periods(rl_registry):
    last = load_rl_data(rl_registry, "fw", "wf")
    first = load_rl_data(rl_registry, "fw", "wf", fold=0)
    n = len(last.split.folds)
    assert first.evaluation.part == "fold 0 test" and last.evaluation.part == f"fold {n - 1} test"
    assert first.evaluation.last < last.evaluation.first
    assert len(first.train.bars) < len(last.train.bars)
    with pytest.raises(ConfigError, match=f"{n} folds") as err:
        load_rl_data(rl_registry, "fw", "wf", fold=n)
    assert err.value.param == "fold"
    with pytest.raises(ConfigError, match="none is held out"):
        load_rl_data(rl_registry, "fw", "wf", part="test")


def test_an_evaluation_period_inside_training_is_refused(rl_registry):
    with pytest.raises(LeakageError, match="trained on") as err:
        load_rl_data(rl_registry, "lw", "shuffled")
    assert err.value.param == "split"


def test_bad_inputs_name_what_is_wrong(rl_registry):
    with pytest.raises(ConfigError, match="is a raw") as err:
        load_rl_data(rl_registry, "mkt", "fc")
    assert err.value.param == "dataset"
    with pytest.raises(ConfigError, match="holds TEST") as err:
        load_rl_data(rl_registry, "fw", "fc", symbol="ES")
    assert err.value.param == "symbol"
    with pytest.raises(ConfigError, match="val or test") as err:
        load_rl_data(rl_registry, "fw", "fc", part="train")
    assert err.value.param == "part"


# --------------------------------------------------------------------------- runs

TINY = {"n_steps": 32, "batch_size": 32, "n_epochs": 2}


def _train(registry, **overrides):
    config = RLConfig(
        dataset="fw",
        split="fc",
        timesteps=64,
        eval_freq=32,
        keep_top=1,
        params=TINY,
        execution={"spread": 0.01, "commission": 0.0005},
        **overrides,
    )
    return train_rl(registry, config)


def test_a_run_is_recorded_like_a_supervised_one(rl_registry):
    events: list[str] = []
    result = train_rl(
        rl_registry,
        RLConfig(dataset="fw", split="fc", timesteps=64, eval_freq=32, keep_top=1,
                 params=TINY, execution={"spread": 0.01}),
        on_event=lambda kind, info: events.append(kind),
    )  # fmt: skip
    assert events[0] == "status" and events[-1] == "results" and "evaluation" in events
    store = RunStore(rl_registry.root)
    manifest = store.manifest(result.run_dir)
    assert manifest["kind"] == "rl"
    assert manifest["config"]["dataset"] == "fw@v1" and manifest["config"]["split"] == "fc@v1"
    assert manifest["data"]["periods"]["evaluation"]["part"] == "val"
    # Only the best model is kept (keep_top=1), with its metadata; all files are verified.
    kept = manifest["training"]["kept"]
    assert len(kept) == 1
    assert store.read_bytes(result.run_dir, "model.zip")
    assert store.read_bytes(result.run_dir, f"checkpoints/{kept[0]['metadata']}")
    # The agent's return is its backtest's: the replay agrees with the env to 1e-9.
    evaluation = result.evaluation
    assert evaluation["parity_max_rel_diff"] <= 1e-9
    assert evaluation["backtest"]["total_return"] == pytest.approx(
        evaluation["policy"]["episodes"][-1]["total_return"], rel=1e-9, abs=1e-12
    )
    assert evaluation["flat"]["mean_return"] == 0.0
    report = (result.run_dir / "report.html").read_text()  # generated: not hash-listed
    assert "Evaluation on the held-out period" in report and "buy and hold" in report
    line = store.results()[-1]
    assert line["run_id"] == result.run_id and line["kind"] == "rl"
    # The checkpoints of the run in progress are gone once it is recorded.
    assert not store.interrupted_runs()


def test_the_test_period_is_looked_at_once(rl_registry):
    result = _train(rl_registry)
    val = evaluate_rl(rl_registry, result.run_id)
    assert val["part"] == "val"
    assert val["policy"]["mean_return"] == pytest.approx(result.evaluation["policy"]["mean_return"])
    test = evaluate_rl(rl_registry, result.run_id, part="test")
    assert test["period"]["first"] > val["period"]["last"]
    with pytest.raises(LeakageError, match="already looked at") as err:
        evaluate_rl(rl_registry, result.run_id, part="test")
    assert err.value.param == "allow_reuse"
    again = evaluate_rl(rl_registry, result.run_id, part="test", allow_reuse=True)
    assert again["reused_test"] is True
    looks = [e for e in JsonlJournal(rl_registry.root).read("test_look")]
    assert len(looks) == 2 and looks[1].payload.reuse_allowed


def test_bad_run_configs_are_refused_before_any_work(rl_registry):
    with pytest.raises(ConfigError, match="Did you mean 'spread'"):
        RLConfig(dataset="fw", split="fc", execution={"spreadd": 0.01})
    with pytest.raises(ValidationError, match="timesteps"):
        RLConfig(dataset="fw", split="fc", timesteps=0)
    with pytest.raises(ValidationError):
        RLConfig(dataset="fw", split="fc", action_space="discrete7")


def test_a_momentum_index_is_stored_and_drives_a_curriculum(registry):
    bars = random_walk_bars(24 * 40, timeframe="60m")
    ingest_bars(registry, bars, name="hourly", sources=[{"test": "h"}], mode="repair")
    scan = scan_momentum(registry, "hourly", name="mom", reset_every=6)
    assert scan.days >= 30 and scan.reset_points >= scan.days
    table = registry.load_table("indexes", "mom")
    assert {"reset_bar", "reset_time", "quality"} <= set(table.columns)
    assert 0.0 <= scan.quality[0] <= scan.quality[1] <= 1.0
    ref = build_feature_windows(registry, "hourly", SPEC, name="hw", length=10)
    make_and_store_split(registry, ref, "forward-chaining", name="hfc")
    result = train_rl(
        registry,
        RLConfig(dataset="hw", split="hfc", timesteps=64, eval_freq=32, keep_top=1,
                 params=TINY, curriculum="mom",
                 curriculum_params={"stages": 2, "promote_at": -1e9}),
    )  # fmt: skip
    # Every evaluation qualifies: the first promotes to the last stage, which stays.
    history = result.manifest["training"]["curriculum"]
    assert len(history) >= 2
    assert history[0]["stage"] == 0 and history[0]["promoted"] is True
    assert all(h["stage"] == 1 and not h["promoted"] for h in history[1:])
    with pytest.raises(ConfigError, match="stages") as err:
        train_rl(
            registry,
            RLConfig(dataset="hw", split="hfc", timesteps=32, params=TINY, curriculum="mom",
                     curriculum_params={"stages": 10_000}),
        )  # fmt: skip
    assert err.value.param == "stages"


def test_an_interrupted_run_resumes_from_its_latest_model(rl_registry):
    config = RLConfig(dataset="fw", split="fc", timesteps=128, eval_freq=32, keep_top=2,
                      params=TINY, execution={"spread": 0.01})  # fmt: skip
    started: dict[str, str] = {}

    def record(kind, info):
        if kind == "status":
            started["run_id"] = info["run_id"]

    def interrupt(step, total):
        if step >= 80:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_rl(rl_registry, config, on_event=record, on_step=interrupt)
    store = RunStore(rl_registry.root)
    assert store.interrupted_runs() == [started["run_id"]]
    events: list[tuple[str, dict]] = []
    result = train_rl(
        rl_registry, None, resume=started["run_id"], on_event=lambda k, i: events.append((k, i))
    )
    assert result.run_id == started["run_id"]
    (resumed,) = [info for kind, info in events if kind == "resumed"]
    assert 32 <= resumed["step"] < 128
    training = result.manifest["training"]
    assert training["resumed_at"] == resumed["step"] and training["timesteps"] == 128
    # Evaluations from before the interruption are kept with the later ones.
    steps = [e["step"] for e in training["evaluations"]]
    assert min(steps) < resumed["step"] < max(steps)
    assert not store.interrupted_runs()
    with pytest.raises(ConfigError, match="finished"):
        train_rl(rl_registry, None, resume=result.run_id)


def test_a_run_continues_as_the_next_version_with_an_annealed_rate(rl_registry):
    first = _train(rl_registry)
    second = _train(rl_registry, from_run=first.run_id, lr_final_fraction=0.1)
    training = second.manifest["training"]
    assert training["version"] == 2
    assert training["continued_from"]["run_id"] == first.run_id
    assert training["continued_from"]["version"] == 1
    first_steps = first.manifest["training"]["total_timesteps"]
    assert training["total_timesteps"] == first_steps + 64 and training["timesteps"] == 64
    # The rate was annealed from the parent's 3e-4 down to a tenth of it at the last update.
    assert training["final_learning_rate"] == pytest.approx(3e-5, rel=0.25)
    assert first.manifest["training"]["final_learning_rate"] == pytest.approx(3e-4)
    store = RunStore(rl_registry.root)
    (kept,) = training["kept"]
    metadata = json.loads(store.read_bytes(second.run_dir, f"checkpoints/{kept['metadata']}"))
    assert metadata["version"] == 2
    with pytest.raises(ConfigError, match="continues as ppo") as err:
        _train(rl_registry, from_run=first.run_id, algo="a2c")
    assert err.value.param == "from_run"


def test_a_checkpoint_for_another_observation_shape_is_refused_before_writing(rl_registry):
    first = _train(rl_registry)
    ref = build_feature_windows(rl_registry, "mkt", SPEC, name="fw20", length=20)
    make_and_store_split(rl_registry, ref, "forward-chaining", name="fc20")
    store = RunStore(rl_registry.root)
    runs_before = sorted(p.name for p in store.runs_dir.iterdir())
    with pytest.raises(CheckpointError, match="observation"):
        train_rl(
            rl_registry,
            RLConfig(dataset="fw20", split="fc20", timesteps=32, params=TINY,
                     from_run=first.run_id),
        )  # fmt: skip
    assert sorted(p.name for p in store.runs_dir.iterdir()) == runs_before
    assert not store.interrupted_runs()


def test_a_multi_timescale_run_keeps_every_window_scaler(rl_registry):
    result = _train(rl_registry, timescales={"4h": 3}, extractor="multi_timescale", n_envs=2)
    observation = result.manifest["observation"]
    assert observation["timescales"] == {"4h": 3}
    assert set(observation["scalings"]) == {"window", "window_4h"}
    record = evaluate_rl(rl_registry, result.run_id)
    assert record["policy"]["mean_return"] == pytest.approx(
        result.evaluation["policy"]["mean_return"]
    )
