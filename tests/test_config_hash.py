"""A run's config hash is its identity: it names the exact data versions it trained on."""

from __future__ import annotations

import numpy as np
import pytest

from moola.data.registry import Registry
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.train import TrainConfig, run_training


@pytest.fixture
def lab(tmp_path) -> Registry:
    registry = Registry(tmp_path / "moola_data")
    raw, market = synthesize_raw(
        registry, "mkt", n_bars=4_000, n_patterns=30, pattern_length=20, seed=3
    )
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3)
    return registry


def _hash(registry: Registry, dataset: str, split: str) -> tuple[str, dict]:
    config = TrainConfig(
        model="logistic_regression", dataset=dataset, split=split, n_bootstrap=5, calibration="none"
    )
    manifest = run_training(registry, config).manifest
    return manifest["config_hash"], manifest["config"]


def test_one_version_spelled_two_ways_gives_one_hash(lab):
    by_name, config = _hash(lab, "pat", "kf")
    assert (config["dataset"], config["split"]) == ("pat@v1", "kf@v1")  # pinned in the manifest
    assert _hash(lab, "pat@v1", "kf@v1")[0] == by_name


def test_two_dataset_versions_give_two_hashes(lab):
    first, _ = _hash(lab, "pat", "kf")
    table = lab.load_labeled("pat").table.copy()
    table["label"] = np.random.default_rng(0).permutation(table["label"].to_numpy())
    raw = lab.resolve("raw", "mkt")
    second_ref = lab.write_labeled("pat", raw, table, length=20)
    make_and_store_split(lab, second_ref, "purged-kfold", name="kf", folds=3)
    second, config = _hash(lab, "pat", "kf")  # the same words now mean version 2
    assert (config["dataset"], config["split"]) == ("pat@v2", "kf@v2")
    assert second != first
