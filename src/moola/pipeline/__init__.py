"""The application layer: the one home of orchestration, registry in, artifact out.

Each function here reads what it needs from the registry or the tracking store, calls the
computing layers below (which do no I/O), and asks the registry, the tracking store or
the journal to write what it made. The CLI, the demo and user scripts call these.

Names are imported on first use (``moola.pipeline.run_training`` loads the training
module, and with it PyTorch, only when asked for), so ``import moola.pipeline`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module of this package that defines it.
_HOMES: dict[str, str] = {
    # data in
    "IngestResult": "ingest",
    "ingest_bars": "ingest",
    "ingest_files": "ingest",
    "synthesize_raw": "datasets",
    "planted_labeled": "datasets",
    "make_and_store_split": "datasets",
    "blacklist_span": "datasets",
    "store_event_bars": "event_bars",
    # features, labels, windows
    "build_features": "features",
    "build_and_store_labels": "labels",
    "store_labels": "labels",
    "WindowsResult": "labeled_windows",
    "build_windows": "labeled_windows",
    "labeled_from_file": "labeled_windows",
    "labeled_from_labels": "labeled_windows",
    "build_feature_windows": "feature_windows",
    "load_feature_training_data": "feature_inputs",
    "ScaledWindowModel": "feature_inputs",
    "AugmentResult": "augment",
    "augment_labeled": "augment",
    # training and pretraining
    "TrainConfig": "train",
    "TrainResult": "train",
    "run_training": "train",
    "fit_and_score": "train",
    "load_training_data": "train",
    "record_run": "train",
    "Outcome": "train",
    "MaskedAEPretrainConfig": "pretrain",
    "TS2VecPretrainConfig": "pretrain",
    "pretrain_masked_ae": "pretrain",
    "pretrain_ts2vec": "pretrain",
    # after training
    "Predictor": "predictor",
    "evaluate_test": "lifecycle",
    "promote": "lifecycle",
    "write_report": "lifecycle",
    "backtest_run": "backtests",
    "backtest_symbols": "backtests",
    "run_symbols": "backtests",
    "find_leaks": "backtests",
    # keeping the data root sound
    "VerifyReport": "integrity",
    "verify_root": "integrity",
    "collect_garbage": "integrity",
    "migrate_run": "migrate",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'moola.pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"moola.pipeline.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
