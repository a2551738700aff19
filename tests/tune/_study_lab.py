"""A tiny labelled market for the tuning tests: 2,000 synthetic bars, 32 planted windows
of 20 bars, a forward-chaining split (train/val/test) and a 3-fold purged k-fold split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from moola.data.registry import Registry
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw


def make_lab(root: Path) -> Registry:
    """The lab's registry under ``root``."""
    registry = Registry(root)
    raw, market = synthesize_raw(
        registry, "mkt", n_bars=2_000, n_patterns=32, pattern_length=20, seed=3
    )
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc", purge=20, embargo=20)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3)
    return registry


def logistic_space(split: str = "fc", **params: Any) -> dict[str, Any]:
    """A space over logistic regression's C (fast: no epochs)."""
    return {
        "run": {
            "kind": "train",
            "model": "logistic_regression",
            "dataset": "pat",
            "split": split,
            "n_bootstrap": 10,
        },
        "objective": {"metric": "log_loss"},
        "params": params or {"params.C": {"type": "float", "low": 0.01, "high": 10.0, "log": True}},
    }


def lstm_space(epochs: int = 4) -> dict[str, Any]:
    """A space over a tiny LSTM's learning rate (trained epoch by epoch: prunable)."""
    return {
        "run": {
            "kind": "train",
            "model": "simple_lstm",
            "dataset": "pat",
            "split": "fc",
            "n_bootstrap": 10,
            "params": {"epochs": epochs, "hidden": 8},
        },
        "objective": {"metric": "log_loss"},
        "params": {"params.lr": {"type": "float", "low": 1e-7, "high": 0.1, "log": True}},
    }


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
