"""Tamper suite: a flipped byte anywhere moola keeps data is caught, and nothing reads it.

One small data root holds every kind of file moola writes: raw bars, labeled, unlabeled
and feature versions, a predictions table, splits, an encoder and its card, an
out-of-fold run and a holdout run with a test evaluation and a backtest, a promoted model, the
experiment log, the ledgers and the write journal. Each test flips bytes at seeded random
positions of every file (``report.html`` aside: it is a rendered view, rebuilt from
verified inputs) and asserts that ``verify_root`` reports it, fast and full, and that the
consumer of that file refuses it (or, for an append-only log, skips and reports the
line).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from moola.core.anchors import Anchors
from moola.core.chainlog import read_records
from moola.core.errors import MoolaError
from moola.data.registry import Registry
from moola.evaluation.gates import GateConfig
from moola.pipeline.backtests import backtest_run
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.integrity import verify_root
from moola.pipeline.lifecycle import evaluate_test, promote
from moola.pipeline.train import TrainConfig, run_training
from moola.pretrain.artifacts import load_encoder_artifact, write_encoder_artifact
from moola.tracking.journal import JsonlJournal
from moola.tracking.runs import RunStore

#: Flips per file: 3 in ``make test``; ``MOOLA_TAMPER_FLIPS=20`` (``make fuzz``) goes deeper.
FLIPS_PER_FILE = int(os.environ.get("MOOLA_TAMPER_FLIPS", "3"))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tamper") / "moola_data"
    registry = Registry(root)
    raw, market = synthesize_raw(registry, "mkt", n_bars=16_000, n_patterns=60, seed=3)
    labeled = planted_labeled(registry, "pat", raw, market)
    registry.write_unlabeled("unl", raw, length=105, stride=50)
    bars = registry.load_raw("mkt")
    registry.write_table(
        "features", "ret", pd.DataFrame({"ret": np.log(bars["close"]).diff()}), parents=[raw]
    )
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc", purge=105)
    write_encoder_artifact(
        root, "bilstm", "mae", "rel11", {"encoder.w": torch.ones(3, 2)}, {"epochs": 1}
    )
    base = {"model": "logistic_regression", "dataset": "pat", "n_bootstrap": 50}
    oof = run_training(registry, TrainConfig(**base, split="kf"))
    holdout = run_training(registry, TrainConfig(**base, split="fc"))
    evaluate_test(registry, holdout.run_id, n_bootstrap=50)
    backtest_run(registry, oof.run_id, long_class="retracement", hold_bars=5)
    promote(registry, holdout.run_id, GateConfig(min_accuracy=0.0, max_ece=1.0))
    assert verify_root(root, full=True).ok
    return root


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "report.html")


def _consumer(root: Path, path: Path) -> Callable[[], object]:
    """The call that reads ``path`` the way moola uses it; it must refuse a tampered file."""
    parts = path.relative_to(root).parts
    registry, store = Registry(root), RunStore(root)
    if parts[0] == "data" and parts[1] == "splits":
        return lambda: registry.load_split(f"{parts[2]}@{Path(parts[3]).stem}")
    if parts[0] == "data":
        kind, name, version = parts[1], parts[2], int(parts[3][1:])
        if kind in ("features", "labels", "predictions"):
            return lambda: registry.load_table(kind, name, version)
        return lambda: getattr(registry, f"load_{kind}")(name, version)
    if parts[:2] == ("artifacts", "encoders"):
        return lambda: load_encoder_artifact(path.with_suffix(".pt"))
    if parts[:2] == ("artifacts", "runs"):
        run_dir = root.joinpath(*parts[:3])
        inner = parts[3:]
        if inner[0] == "evaluations":
            return lambda: store.read_added_file(run_dir, "/".join(inner))
        if inner[0] == "backtests":
            folder = run_dir.joinpath(*inner[:2])
            return lambda: (
                store.read_addition(folder, "backtest.json"),
                store.read_addition(folder, inner[2]),
            )
        if inner == ("manifest.json",):
            return lambda: store.manifest(run_dir)
        return lambda: store.read_bytes(run_dir, "/".join(inner))
    if parts[:3] == ("artifacts", "models", "promoted"):
        return lambda: store.read_promoted(
            parts[3], "promoted.json" if parts[4] == "promoted.json" else parts[4]
        )
    if parts == ("journal", "events.jsonl"):
        return lambda: JsonlJournal(root).read()
    if parts[0] == "journal":
        return lambda: Anchors(root).table()
    return lambda: _refuse_log_problems(path)


def _refuse_log_problems(path: Path) -> None:
    _, problems = read_records(path)
    if problems:
        raise MoolaError("; ".join(problems))


@pytest.fixture
def root(pristine, tmp_path) -> Path:
    copy = tmp_path / "moola_data"
    shutil.copytree(pristine, copy)
    return copy


def test_every_file_kind_is_present(pristine):
    names = {p.name for p in _files(pristine)}
    for expected in (
        "bars.parquet",
        "windows.parquet",
        "starts.npy",
        "table.parquet",
        "v1.json",
        "model.bin",
        "manifest.json",
        "meta.json",
        "promoted.json",
        "writes.jsonl",
        "experiment_results.jsonl",
        "events.jsonl",
        "backtest.json",
        "bilstm_mae_rel11_v1.pt",
    ):
        assert expected in names, expected


def test_every_single_byte_flip_is_caught_by_verify_and_refused_by_its_reader(root):
    rng = random.Random(20261205)
    files = _files(root)
    missed, unread, flips = [], [], 0
    for path in files:
        original = path.read_bytes()
        for _ in range(FLIPS_PER_FILE):
            position = rng.randrange(len(original))
            tampered = bytearray(original)
            tampered[position] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(tampered))
            flips += 1
            where = f"{path.relative_to(root)} byte {position}"
            if verify_root(root).ok or verify_root(root, full=True).ok:
                missed.append(where)
            try:
                _consumer(root, path)()
                unread.append(where)
            except MoolaError:
                pass
            path.write_bytes(original)
    assert flips >= FLIPS_PER_FILE * 40
    print(
        f"tamper: {flips} flips over {len(files)} files; missed by verify {len(missed)}, "
        f"read by a consumer {len(unread)}"
    )
    assert missed == [], f"{len(missed)} of {flips} flips passed verify: {missed[:5]}"
    assert unread == [], f"{len(unread)} of {flips} flips were read: {unread[:5]}"
    assert verify_root(root, full=True).ok  # restored: nothing left behind


def test_a_truncated_or_deleted_file_is_caught(root):
    for path in _files(root)[::4]:
        original = path.read_bytes()
        path.write_bytes(original[: len(original) // 2])
        assert not verify_root(root).ok, path
        path.unlink()
        assert not verify_root(root).ok, path
        path.write_bytes(original)
    assert verify_root(root).ok
