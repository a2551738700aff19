"""``run_demo``: the steps of ``moola demo`` in order, its report and its printed lines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from moola.core.hashing import sha256_json
from moola.data.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.data.registry import Registry
from moola.demo._backtest import backtest_line, backtest_record, backtest_section, model_backtest
from moola.demo._pretrain import (
    PRETRAINED_ROW,
    fine_tuning_params,
    pretrain_encoder,
    pretraining_line,
    pretraining_record,
    pretraining_section,
)
from moola.evaluation.report import Section, pre_html, render_report, table_html
from moola.features.window import PRICE_ACTION_COLUMNS, price_action_features, relative_windows
from moola.pipeline.lifecycle import write_report
from moola.pipeline.train import TrainConfig, TrainResult, flat_metrics, run_training
from moola.tracking.runs import RunStore, new_run_id

WINDOW_LENGTH = 105
MODEL_COLUMNS = ("accuracy", "balanced_accuracy", "minority_f1", "pr_auc", "brier", "ece")


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
    on_step: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    """Run the demo pipeline under ``data_root`` and return what it made.

    ``quick`` trains smaller models (fewer MiniRocket kernels, fewer epochs, seconds of
    pretraining): for tests.
    """
    started = time.perf_counter()
    registry = Registry(data_root)
    step = on_step
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
    encoder = pretrain_encoder(registry, unlabeled, seed, quick=quick)
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
    step("loading train/val/test with the audit trail")
    data = registry.load_labeled(
        labeled.name, labeled.version, split=f"{split_name}@v{split_version}"
    )
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
        registry, labeled, "purged-kfold", name="demo-kfold", folds=5, embargo=WINDOW_LENGTH
    )
    models, load = _train_models(
        registry,
        labeled,
        f"{kfold_name}@v{kfold_version}",
        seed,
        step,
        quick=quick,
        fine_tuning=fine_tuning_params(encoder, quick=quick),
    )
    pretraining = pretraining_record(encoder, load)
    # The held-out period: from the first window of the pattern split's test part on.
    held_out_start = pd.Timestamp(data.table.loc[data.test.indices, "start_ts"].min())
    backtest = model_backtest(registry, raw, held_out_start, seed, step, length=WINDOW_LENGTH)
    step("verifying the registry")
    problems = registry.verify()

    raw_manifest = registry.manifest(raw)
    validation = raw_manifest["transformations"][0]["report"]
    gaps = next(
        (t["summary"] for t in raw_manifest["transformations"] if t["name"] == "gap_report"), {}
    )
    datasets = [raw, unlabeled, labeled, features, *backtest.datasets]
    dataset_rows = [
        {
            "dataset": str(ref),
            "summary": registry.summary(ref),
            "content hash": ref.content_hash[:23],
        }
        for ref in datasets
    ]
    parts = [
        {"part": part, "windows": len(value), **_class_counts(value.y, data.classes)}
        for part, value in data.parts.items()
    ]
    split_record = data.audit["split"]
    run_id = new_run_id("demo")
    manifest = {
        "kind": "demo",
        "config": {
            "n_bars": n_bars,
            "n_patterns": n_patterns,
            "seed": seed,
            "pattern_strength": pattern_strength,
            "window_length": WINDOW_LENGTH,
            "quick": quick,
        },
        "config_hash": sha256_json({"n_bars": n_bars, "n_patterns": n_patterns, "seed": seed}),
        "data": data.audit,
        "datasets": [ref.to_dict() for ref in datasets],
        "registry_problems": problems,
        "pretraining": pretraining,
        "models": models,
        "backtest": backtest_record(backtest),
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    sections = [
        Section(
            "Datasets written",
            table_html(dataset_rows),
            "Write-once versions; each has meta.json and manifest.json with content hashes.",
        ),
        Section(
            "Bar validation",
            table_html(
                [
                    {
                        "input rows": validation["n_input"],
                        "stored rows": validation["n_output"],
                        "violations": sum(validation["summary"].values()),
                        "repairs": len(validation["repairs"]),
                    }
                ]
            ),
        ),
        Section(
            "Gap report (futures calendar)",
            table_html([{k: v for k, v in gaps.items() if not isinstance(v, dict | list)}]),
            "Bars expected by the CME Globex session calendar (DST-aware) against bars present.",
        ),
        Section(
            "Split",
            table_html(
                [
                    {
                        "split": f"{split_record['name']}@v{split_record['version']}",
                        "strategy": split_record["strategy"],
                        **split_record["counts"],
                    }
                ]
            ),
            "Purge and embargo of one window length keep every train window clear of "
            "val/test in time; the split is re-validated on every load.",
        ),
        Section("Labeled parts", table_html(parts)),
        Section(
            "Window features by class (train part only)",
            table_html(_feature_means(price_action, data), ["feature", *data.classes]),
            f"Price-action features of every labeled window, stored as {features}; the "
            f"relative view feeds sequence models as {relative.shape} float32 arrays.",
        ),
        pretraining_section(pretraining, next(m for m in models if m["model"] == PRETRAINED_ROW)),
        Section(
            "Models, out of fold (purged 5-fold, embargo of one window)",
            table_html(models, ["model", "run", *MODEL_COLUMNS]),
            "Each model is trained five times, each fold predicting only windows its model "
            "never saw; metrics are on those out-of-fold predictions after cross-fitted Platt "
            "calibration, with 95% bootstrap intervals in each run's own report. The stack "
            "learns only from the out-of-fold probabilities of the three base models above "
            f"it (not of {PRETRAINED_ROW!r}).",
        ),
        Section(
            "Registry check",
            "<p>All stored bytes match their manifests.</p>"
            if not problems
            else table_html([{"problem": p} for p in problems]),
        ),
        Section("Run manifest", pre_html(json.dumps(manifest, indent=2, default=str))),
        backtest_section(backtest),
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
    lines.append(
        "synthetic in val/test: "
        f"{data.audit['val_synthetic_count'] + data.audit['test_synthetic_count']}; "
        f"registry check: {'ok' if not problems else f'{len(problems)} problems'}; "
        f"{manifest['wall_time_s']:.1f} s"
    )
    return DemoResult(run_id, run_dir / "report.html", lines, data.audit, models)


def _train_models(
    registry: Registry,
    labeled: Any,
    split: str,
    seed: int,
    step: Callable[[str], None],
    *,
    quick: bool,
    fine_tuning: dict[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Train the comparison set with OOF validation; one row of headline metrics each, and
    the load report of the model with the pretrained encoder."""
    plan = [
        ("logistic_regression", "logistic_regression", {}),
        ("minirocket", "minirocket", {"n_kernels": 840 if quick else 4_000}),
        ("simple_lstm", "simple_lstm", {"epochs": 3 if quick else 30, "patience": 5}),
        (PRETRAINED_ROW, "simple_lstm", fine_tuning),
    ]
    dataset = f"{labeled.name}@v{labeled.version}"
    n_bootstrap = 200 if quick else 1000
    results: dict[str, TrainResult] = {}
    # The torch models train first: once MiniRocket has run numba's OpenMP threads, torch's
    # own OpenMP threads in the same process can run many times slower on a busy machine.
    for row, model, params in sorted(plan, key=lambda item: item[1] != "simple_lstm"):
        step(f"training {row} (5 folds)")
        config = TrainConfig(
            model=model,
            dataset=dataset,
            split=split,
            params=params,
            seed=seed,
            n_bootstrap=n_bootstrap,
        )
        results[row] = run_training(registry, config)
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
    results["stack"] = run_training(registry, config)
    rows = []
    for row in [*(name for name, _, _ in plan), "stack"]:
        result = results[row]
        write_report(registry, result.run_id)
        metrics = flat_metrics(result.calibrated_report or result.report)
        rows.append({"model": row, "run": result.run_id, **{k: metrics[k] for k in MODEL_COLUMNS}})
    summary = results[PRETRAINED_ROW].manifest["training"].get("training") or {}
    return rows, summary.get("pretrained_load")


def _feature_means(table: Any, data: Any) -> list[dict[str, Any]]:
    """Mean of each window feature per class over the train part: how separable are they?"""
    train = table.iloc[data.train.indices]
    labels = [data.classes[i] for i in data.train.y]
    means = train.groupby(labels).mean()
    return [
        {"feature": column, **{c: float(means.loc[c, column]) for c in means.index}}
        for column in PRICE_ACTION_COLUMNS
    ]


def _class_counts(y: Any, classes: tuple[str, ...]) -> dict[str, int]:
    return {name: int((y == index).sum()) for index, name in enumerate(classes)}
