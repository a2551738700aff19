"""A tiny data root with a promoted run, for the runtime tests (built once per module)."""

from __future__ import annotations

from pathlib import Path

from moola.data.registry import Registry
from moola.evaluation.gates import GateConfig
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.lifecycle import promote
from moola.pipeline.train import TrainConfig, run_training

SYMBOLS = ("BTC", "ETH")


def build_lab(parent: Path, *, promoted: bool = True) -> tuple[Path, str]:
    """Data root with raw ``mkt`` (two symbols, 4,000 one-minute bars each) and a logistic
    regression on planted patterns (classes consolidation / retracement, 105-bar windows),
    promoted past open gates, Platt-calibrated. Returns (root, run id)."""
    registry = Registry(parent / "moola_data")
    raw, market = synthesize_raw(
        registry, "mkt", n_bars=4000, n_patterns=16, seed=4, symbols=SYMBOLS
    )
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    config = TrainConfig(
        model="logistic_regression", dataset="pat", split="kf", n_bootstrap=10, calibration="platt"
    )
    run_id = run_training(registry, config).run_id
    if promoted:
        promote(registry, run_id, GateConfig(min_accuracy=0.0, max_ece=1.0))
    return registry.root, run_id
