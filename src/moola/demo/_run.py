"""``run_demo``: the steps of ``moola demo`` in order, with its threads capped, its progress
reported as it goes, and its report and printed lines at the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from moola.core.hashing import sha256_json
from moola.core.threads import limit_threads
from moola.data.registry import Registry
from moola.demo._backtest import backtest_line, backtest_record, backtest_section, model_backtest
from moola.demo._forecast import (
    MARKET_BARS,
    N_ESTIMATORS,
    QUICK_ESTIMATORS,
    forecast,
    forecast_line,
    forecast_record,
    forecast_section,
)
from moola.demo._pretrain import (
    FINE_TUNE_EPOCHS,
    PRETRAIN_EPOCHS,
    PRETRAIN_WINDOWS,
    PRETRAINED_ROW,
    fine_tuning_params,
    pretrain_encoder,
    pretraining_line,
    pretraining_record,
    pretraining_section,
)
from moola.demo._progress import epoch_progress, fold_events
from moola.demo._report import (
    MODEL_COLUMNS,
    class_counts,
    data_sections,
    learning_curve_section,
    manifest_section,
    market_section,
    models_section,
    summary_section,
)
from moola.evaluation.report import render_report
from moola.features.window import PRICE_ACTION_COLUMNS, price_action_features, relative_windows
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.lifecycle import write_report
from moola.pipeline.train import TrainConfig, TrainResult, flat_metrics, run_training
from moola.tracking.runs import RunStore, new_run_id
from moola.training.callbacks import EpochProgress, ProgressUpdate

WINDOW_LENGTH = 105
FOLDS = 5
LSTM_EPOCHS = 12
MINIROCKET_KERNELS = 4_000


@dataclass(frozen=True)
class DemoResult:
    """What the demo made: printable lines, the report's path and the run id."""

    run_id: str
    report_path: Path
    lines: list[str]
    audit: dict[str, Any]
    models: list[dict[str, Any]]


def run_demo(
    data_root: str | Path,
    *,
    n_bars: int = 150_000,
    n_patterns: int = 240,
    seed: int = 7,
    pattern_strength: float = 0.5,
    quick: bool = False,
    threads: int = 1,
    on_step: Callable[[str], None] = lambda _: None,
    on_progress: Callable[[ProgressUpdate], None] = lambda _: None,
) -> DemoResult:
    """Run the demo pipeline under ``data_root`` and return what it made.

    ``quick`` trains smaller models (fewer MiniRocket kernels, fewer epochs, seconds of
    pretraining): for tests. ``threads`` caps the threads of torch and the BLAS pools for
    the run (``moola.core.threads``): the demo's models are small, and one thread is as
    fast as two and leaves other processes alone. ``on_step`` hears each stage as it
    starts and ``on_progress`` each epoch or fold inside one (``moola.cli``'s display
    draws them).
    """
    with limit_threads(threads) as used:
        return _run(
            Registry(data_root),
            n_bars=n_bars,
            n_patterns=n_patterns,
            seed=seed,
            pattern_strength=pattern_strength,
            quick=quick,
            threads={"requested": threads, **used},
            step=on_step,
            on_progress=on_progress,
        )


def _run(
    registry: Registry,
    *,
    n_bars: int,
    n_patterns: int,
    seed: int,
    pattern_strength: float,
    quick: bool,
    threads: dict[str, Any],
    step: Callable[[str], None],
    on_progress: Callable[[ProgressUpdate], None],
) -> DemoResult:
    started = time.perf_counter()
    step("generating and ingesting the synthetic market")
    raw, market = synthesize_raw(
        registry,
        "demo-market",
        n_bars=n_bars,
        seed=seed,
        symbol="NQ-SYN",
        timeframe="1m",
        calendar="futures",
        n_patterns=n_patterns,
        pattern_length=WINDOW_LENGTH,
        pattern_strength=pattern_strength,
    )
    step("indexing unlabeled windows")
    unlabeled = registry.write_unlabeled("demo-unlabeled", raw, length=WINDOW_LENGTH)
    step("pretraining a BiLSTM masked autoencoder on the unlabeled windows")
    encoder = pretrain_encoder(registry, unlabeled, seed, quick=quick, on_progress=on_progress)
    step("storing labeled windows")
    labeled = planted_labeled(registry, "demo-labeled", raw, market)
    step("splitting (forward chaining, purge and embargo)")
    split_name, split_version, _ = make_and_store_split(
        registry,
        labeled,
        "forward-chaining",
        name="demo-forward",
        purge=WINDOW_LENGTH,
        embargo=WINDOW_LENGTH,
        val_fraction=0.15,
        test_fraction=0.15,
    )
    forward = f"{split_name}@v{split_version}"
    step("loading train/val/test with the audit trail")
    data = registry.load_labeled(labeled.name, labeled.version, split=forward)
    step("computing relative (11-D) and price-action (20) window features")
    relative = relative_windows(data.X)
    price_action = price_action_features(data.X)
    features = registry.write_table(
        "features",
        "demo-price-action",
        price_action,
        parents=[labeled],
        meta={
            "feature_set": "price_action20",
            "columns": list(PRICE_ACTION_COLUMNS),
            "rows_are": "rows of the labeled windows table",
        },
        transformations=[{"name": "price_action_features", "params": {"length": WINDOW_LENGTH}}],
    )
    step("splitting for out-of-fold validation (purged k-fold, embargo)")
    kfold_name, kfold_version, _ = make_and_store_split(
        registry, labeled, "purged-kfold", name="demo-kfold", folds=FOLDS, embargo=WINDOW_LENGTH
    )
    models, load = _train_models(
        registry,
        labeled,
        f"{kfold_name}@v{kfold_version}",
        seed,
        step,
        on_progress,
        quick=quick,
        fine_tuning=fine_tuning_params(encoder, quick=quick),
    )
    curve_run = _learning_curve_run(registry, labeled, forward, seed, step, on_progress, quick)
    pretraining = pretraining_record(encoder, load)
    # The held-out period: from the first window of the pattern split's test part on.
    held_out_start = pd.Timestamp(data.table.loc[data.test.indices, "start_ts"].min())
    backtest = model_backtest(
        registry, raw, held_out_start, seed, step, length=WINDOW_LENGTH, on_progress=on_progress
    )
    forecasting = forecast(registry, seed, step, quick=quick, on_progress=on_progress)
    step("verifying the registry and writing the report")
    problems = registry.verify()

    datasets = [raw, unlabeled, labeled, features, *backtest.datasets, *forecasting.datasets]
    dataset_rows = [
        {
            "dataset": str(ref),
            "summary": registry.summary(ref),
            "content hash": ref.content_hash[:23],
        }
        for ref in datasets
    ]
    split_record = data.audit["split"]
    run_id = new_run_id("demo")
    config = {
        "n_bars": n_bars,
        "n_patterns": n_patterns,
        "seed": seed,
        "pattern_strength": pattern_strength,
        "window_length": WINDOW_LENGTH,
        "quick": quick,
    }
    manifest = {
        "kind": "demo",
        "config": {**config, "threads": threads["requested"]},
        "config_hash": sha256_json({"n_bars": n_bars, "n_patterns": n_patterns, "seed": seed}),
        "threads": threads,
        "data": data.audit,
        "datasets": [ref.to_dict() for ref in datasets],
        "registry_problems": problems,
        "pretraining": pretraining,
        "models": models,
        "learning_curve_run": curve_run.run_id,
        "backtest": backtest_record(backtest),
        "forecast": forecast_record(forecasting),
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    curve_summary = (curve_run.manifest["training"] or {}).get("training") or {}
    sections = [
        summary_section(manifest, models, _sizing(quick)),
        models_section(models, PRETRAINED_ROW),
        backtest_section(backtest),
        forecast_section(forecasting),
        market_section(registry.load_raw(raw.name, raw.version), data),
        learning_curve_section(curve_run.run_id, curve_summary),
        pretraining_section(pretraining, next(m for m in models if m["model"] == PRETRAINED_ROW)),
        *data_sections(
            dataset_rows,
            registry.manifest(raw),
            data,
            price_action,
            features,
            relative.shape,
            problems,
        ),
        manifest_section(manifest),
    ]
    report = render_report("moola demo", sections, subtitle=f"run {run_id}")
    store = RunStore(registry.root)
    run_dir = store.write_run(run_id, manifest, {"report.html": report})
    store.append_result(
        {
            "run_id": run_id,
            "kind": "demo",
            "data": data.audit["dataset"],
            "split": split_record["split_hash"],
            "counts": data.audit["counts"],
        }
    )
    parts = [
        {"part": part, "windows": len(value), **class_counts(value.y, data.classes)}
        for part, value in data.parts.items()
    ]
    lines = [f"[green]stored[/] {row['dataset']}: {row['summary']}" for row in dataset_rows]
    lines.append(
        f"[green]stored[/] split {split_name}@v{split_version}: "
        + ", ".join(f"{k} {v}" for k, v in split_record["counts"].items())
    )
    lines.append(
        "train/val/test classes: "
        + "; ".join(f"{p['part']} " + ", ".join(f"{c} {p[c]}" for c in data.classes) for p in parts)
    )
    lines.append(pretraining_line(pretraining))
    lines.append(
        "models (out of fold): "
        + "; ".join(
            f"{m['model']} acc {m['accuracy']:.3f} minority F1 {m['minority_f1']:.3f}"
            for m in models
        )
    )
    lines.append(backtest_line(backtest))
    lines.append(forecast_line(forecasting))
    lines.append(
        "synthetic in val/test: "
        f"{data.audit['val_synthetic_count'] + data.audit['test_synthetic_count']}; "
        f"registry check: {'ok' if not problems else f'{len(problems)} problems'}; "
        f"{manifest['wall_time_s']:.1f} s on {threads['torch']} thread(s)"
    )
    return DemoResult(run_id, run_dir / "report.html", lines, data.audit, models)


def _train_models(
    registry: Registry,
    labeled: Any,
    split: str,
    seed: int,
    step: Callable[[str], None],
    on_progress: Callable[[ProgressUpdate], None],
    *,
    quick: bool,
    fine_tuning: dict[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Train the comparison set with OOF validation; one row of headline metrics each, and
    the load report of the model with the pretrained encoder."""
    plan = [
        ("logistic_regression", "logistic_regression", {}),
        ("minirocket", "minirocket", {"n_kernels": 840 if quick else MINIROCKET_KERNELS}),
        ("simple_lstm", "simple_lstm", {"epochs": 3 if quick else LSTM_EPOCHS}),
        (PRETRAINED_ROW, "simple_lstm", fine_tuning),
    ]
    dataset = f"{labeled.name}@v{labeled.version}"
    n_bootstrap = 200 if quick else 1000
    results: dict[str, TrainResult] = {}
    # The torch models train first: once MiniRocket has run numba's OpenMP threads, torch's
    # own OpenMP threads in the same process can run many times slower on a busy machine.
    for row, model, params in sorted(plan, key=lambda item: item[1] != "simple_lstm"):
        step(f"training {row} ({FOLDS} folds and a final fit)")
        config = TrainConfig(
            model=model,
            dataset=dataset,
            split=split,
            params=params,
            seed=seed,
            n_bootstrap=n_bootstrap,
        )
        if "epochs" in params:
            callbacks = [epoch_progress(on_progress, FOLDS, params["epochs"])]
            results[row] = run_training(registry, config, callbacks=callbacks)
        else:
            results[row] = run_training(registry, config, on_event=fold_events(on_progress, FOLDS))
    step("training the stacking ensemble on out-of-fold probabilities")
    bases = [results[name].run_id for name in ("logistic_regression", "minirocket", "simple_lstm")]
    config = TrainConfig(
        model="stack",
        dataset=dataset,
        split=split,
        base_runs=bases,
        seed=seed,
        n_bootstrap=n_bootstrap,
    )
    results["stack"] = run_training(registry, config, on_event=fold_events(on_progress, FOLDS))
    rows = []
    for row in [*(name for name, _, _ in plan), "stack"]:
        result = results[row]
        write_report(registry, result.run_id)
        metrics = flat_metrics(result.calibrated_report or result.report)
        rows.append({"model": row, "run": result.run_id, **{k: metrics[k] for k in MODEL_COLUMNS}})
    summary = results[PRETRAINED_ROW].manifest["training"].get("training") or {}
    return rows, summary.get("pretrained_load")


def _learning_curve_run(
    registry: Registry,
    labeled: Any,
    split: str,
    seed: int,
    step: Callable[[str], None],
    on_progress: Callable[[ProgressUpdate], None],
    quick: bool,
) -> TrainResult:
    """simple_lstm on the forward-chaining split: trained on train, early-stopped on val,
    so its learning curves have a validation curve beside the training one."""
    epochs = 3 if quick else LSTM_EPOCHS
    step("training simple_lstm on train, validating each epoch on val (learning curves)")
    config = TrainConfig(
        model="simple_lstm",
        dataset=f"{labeled.name}@v{labeled.version}",
        split=split,
        params={"epochs": epochs, "patience": 5},
        seed=seed,
        n_bootstrap=200,
    )
    callbacks = [EpochProgress(1, epochs, on_progress)]
    result = run_training(registry, config, callbacks=callbacks)
    write_report(registry, result.run_id)
    return result


def _sizing(quick: bool) -> str:
    """What the demo does less of than a real run would, for the report's summary."""
    if quick:
        return (
            "A --quick run: smoke-test sizes (128 pretraining windows, 2-3 epochs, 840 "
            f"MiniRocket kernels, {QUICK_ESTIMATORS} LightGBM trees in forecasting); the "
            "numbers only show that every step ran."
        )
    return (
        "Sized to run in about two minutes on two CPU cores: pretraining sees "
        f"{PRETRAIN_WINDOWS:,} unlabeled windows x {PRETRAIN_EPOCHS} epochs (a smoke test of "
        f"the path, not of its benefit); simple_lstm trains {LSTM_EPOCHS} epochs, the "
        f"pretrained one {FINE_TUNE_EPOCHS}; MiniRocket uses {MINIROCKET_KERNELS:,} kernels "
        "(10,000 by default); the direction models' bootstrap intervals use 200 resamples; "
        f"the forecaster is {N_ESTIMATORS} LightGBM trees on {MARKET_BARS:,} bars per symbol."
    )
