"""Computing a run apart from recording it: fit_and_score writes nothing, record_run
writes what run_training writes, and bad parameters stop a run before any work."""

from __future__ import annotations

import hashlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from moola.core.errors import ConfigError
from moola.data.registry import Registry, parse_ref
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.train import TrainConfig, fit_and_score, record_run, run_training
from moola.tracking.runs import RunStore


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Registry:
    registry = Registry(tmp_path_factory.mktemp("moola_data"))
    raw, market = synthesize_raw(
        registry, "mkt", n_bars=6_000, n_patterns=48, pattern_length=20, seed=3
    )
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc", purge=20, embargo=20)
    return registry


def _config(**fields) -> TrainConfig:
    return TrainConfig(
        **{"model": "logistic_regression", "dataset": "pat", "split": "kf", "n_bootstrap": 20}
        | fields
    )


def _load(registry: Registry, config: TrainConfig):
    return registry.load_labeled(*parse_ref(config.dataset), split=config.split)


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under the data root, with each file's content hash."""
    return {
        str(path.relative_to(root)): (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        )
        for path in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("split", ["kf", "fc"])
def test_fit_and_score_writes_nothing_and_record_run_writes_the_run(lab, split):
    config = _config(split=split)
    data = _load(lab, config)
    before = _snapshot(lab.root)
    events: list[str] = []
    outcome = fit_and_score(
        config, data, registry=lab, on_event=lambda kind, _: events.append(kind)
    )
    assert _snapshot(lab.root) == before
    assert outcome.mode == ("oof" if split == "kf" else "holdout")
    assert events[0] == "status" and set(events[1:]) == {"fold"}
    assert (outcome.config.dataset, outcome.config.split) == ("pat@v1", f"{split}@v1")

    result = record_run(lab, outcome)
    manifest = result.manifest
    assert result.run_id == outcome.run_id and result.report == outcome.report
    meta = lab.meta(lab.resolve("labeled", "pat"))
    assert manifest["window"] == {"length": 20, "columns": list(meta["columns"])}
    assert manifest["window"]["length"] == data.X.shape[1]
    assert manifest["metrics"] == outcome.report and manifest["resolved_params"] == outcome.params
    assert RunStore(lab.root).results()[-1]["run_id"] == outcome.run_id
    assert lab.load_table("predictions", outcome.run_id).equals(outcome.predictions)

    again = run_training(lab, config)  # the one-call path records the same run
    assert again.manifest.keys() == manifest.keys()
    for key in ("config", "config_hash", "resolved_params", "window", "data", "metrics"):
        assert again.manifest[key] == manifest[key], key
    assert sorted(p.name for p in again.run_dir.iterdir()) == sorted(
        p.name for p in result.run_dir.iterdir()
    )


def test_folds_run_in_other_processes_give_the_serial_run(lab):
    """The run's estimator factory travels to the workers; fold events still arrive here."""
    config = _config(calibration="platt")
    serial = fit_and_score(config, _load(lab, config))
    folds: list[object] = []
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        pooled = run_training(
            lab,
            config,
            executor=pool,
            on_event=lambda kind, event: folds.append(event["fold"]) if kind == "fold" else None,
        )
    assert pooled.report == serial.report
    assert pooled.calibrated_report == serial.calibrated_report
    assert folds == [0, 1, 2]


def test_bad_parameters_are_refused_before_the_data_is_read(lab):
    nowhere = _config(model="minirocket", dataset="absent", split="absent", params={"n_kernel": 84})
    with pytest.raises(ConfigError, match=r"unknown parameter 'n_kernel'\. Did you mean"):
        run_training(lab, nowhere)  # the dataset does not exist: not even looked up
    config = _config(params={"C": -1.0})
    data = _load(lab, config)
    events: list[str] = []
    with pytest.raises(ConfigError, match=r"'C' must be greater than 0 \(got C=-1\.0\)"):
        fit_and_score(config, data, on_event=lambda kind, _: events.append(kind))
    assert events == []  # refused before the run started


def test_data_other_than_the_config_names_is_refused(lab):
    data = _load(lab, _config(split="fc"))
    with pytest.raises(ConfigError, match=r"config\.split is 'kf' but .* fc@v1"):
        fit_and_score(_config(split="kf"), data)
    with pytest.raises(ConfigError, match=r"config\.dataset is 'pat@v2'"):
        fit_and_score(_config(dataset="pat@v2", split="fc"), data)


def test_a_stack_reads_its_base_runs_through_the_registry_and_records_no_window(lab):
    base = run_training(lab, _config()).run_id
    config = _config(model="stack", base_runs=[base])
    data = _load(lab, config)
    with pytest.raises(ConfigError, match="registry="):
        fit_and_score(config, data)
    before = _snapshot(lab.root)
    outcome = fit_and_score(config, data, registry=lab)
    assert _snapshot(lab.root) == before
    assert outcome.inputs == "oof_probabilities"
    assert "window" not in record_run(lab, outcome).manifest
