"""RL studies: each trial an RL run ranked by its evaluation return on the val period,
reporting every periodic evaluation; a pruned RL trial leaves no run and no checkpoints."""

from __future__ import annotations

import optuna
from optuna.pruners import BasePruner
from optuna.trial import TrialState

from moola.data.registry import Registry
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.tracking.journal import JsonlJournal
from moola.tracking.runs import RunStore
from moola.tune.space import parse_space
from moola.tune.study import run_study
from tests.conftest import random_walk_bars

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "run": {
        "kind": "rl",
        "dataset": "fw",
        "split": "fc",
        "timesteps": 64,
        "eval_freq": 32,
        "keep_top": 1,
        "params": {"n_steps": 32, "batch_size": 32, "n_epochs": 2},
        "execution": {"spread": 0.01},
    },
    "objective": {"metric": "eval_return"},
    "params": {"params.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
}


def _rl_lab(registry: Registry) -> Registry:
    spec = FeatureSetSpec(
        name="small", features=[FeatureSpecEntry(name="sma", params={"period": 5})]
    )
    bars = random_walk_bars(600, timeframe="60m")
    ingest_bars(registry, bars, name="mkt", sources=[{"test": "mkt"}], mode="repair")
    ref = build_feature_windows(registry, "mkt", spec, name="fw", length=10)
    make_and_store_split(registry, ref, "forward-chaining", name="fc")
    return registry


class _PruneAtFirstReport(BasePruner):
    def prune(self, study, trial) -> bool:
        return trial.last_step is not None


def test_rl_trials_are_ranked_on_the_val_period_and_a_pruned_one_leaves_nothing(registry):
    lab = _rl_lab(registry)
    space = parse_space(SPACE)
    assert space.direction == "maximize"
    result = run_study(lab, space, study="rl", trials=1, pruner="none", seed=2)
    store = RunStore(lab.root)
    (trial,) = optuna.load_study(study_name="rl", storage=_db(lab, "rl")).trials
    assert trial.state == TrialState.COMPLETE
    line = next(line for line in store.results() if line["run_id"] == trial.user_attrs["run_id"])
    assert trial.value == line["metrics"]["eval_return"] == result.best_value
    assert (line["study"], line["trial"]) == ("rl", trial.number)  # a resume settles by these
    assert sorted(trial.intermediate_values) == [32, 64]  # each periodic evaluation
    manifest = store.manifest(store.run_dir(line["run_id"]))
    assert manifest["data"]["periods"]["evaluation"]["part"] == "val"
    assert manifest["study"]["name"] == "rl" and manifest["study"]["trial"] == trial.number
    assert manifest["config"]["params"]["learning_rate"] == trial.params["params.learning_rate"]
    assert JsonlJournal(lab.root).read("test_look") == []

    runs_before = sorted(p.name for p in (lab.root / "artifacts" / "runs").iterdir())
    pruned = run_study(lab, space, study="rl-pruned", trials=1, pruner=_PruneAtFirstReport())
    assert pruned.counts["pruned"] == 1
    assert sorted(p.name for p in (lab.root / "artifacts" / "runs").iterdir()) == runs_before
    assert store.interrupted_runs() == []  # its checkpoints are gone too


def _db(registry: Registry, name: str) -> str:
    return f"sqlite:///{registry.root / 'artifacts' / 'studies' / name / 'study.db'}"
