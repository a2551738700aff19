"""``moola demo``: the pipeline end to end on the embedded synthetic market.

Generates a seeded synthetic futures market with planted, labelled patterns; stores raw
bars, unlabeled windows, labeled windows and a purged forward-chaining split through the
registry; loads the split back with its audit trail; and writes an HTML report of what
was made into a run folder. Every step is recorded in manifests with content hashes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moola.backtest import run as run_backtest
from moola.backtest.plots import equity_png
from moola.core.hashing import sha256_json
from moola.data.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.data.registry import Registry
from moola.evaluation.report import Section, image_html, pre_html, render_report, table_html
from moola.features.dc import dc_features
from moola.features.window import PRICE_ACTION_COLUMNS, price_action_features, relative_windows
from moola.pipeline.lifecycle import write_report
from moola.pipeline.train import TrainConfig, flat_metrics, run_training
from moola.sim import CommissionModel, futures_instrument
from moola.tracking.runs import RunStore, new_run_id

WINDOW_LENGTH = 105
DC_THRESHOLD = 0.002  # directional-change threshold of the baseline trend rule


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

    ``quick`` trains smaller models (fewer MiniRocket kernels, fewer epochs): for tests.
    """
    started = time.perf_counter()
    registry = Registry(data_root)
    timings: dict[str, float] = {}

    def step(label: str) -> None:
        on_step(label)
        timings[label] = time.perf_counter()

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
    step("backtesting a baseline rule on the held-out period, with costs")
    backtest = _baseline_backtest(registry.load_raw(raw.name, raw.version), data)
    step("splitting for out-of-fold validation (purged k-fold, embargo)")
    kfold_name, kfold_version, _ = make_and_store_split(
        registry, labeled, "purged-kfold", name="demo-kfold", folds=5, embargo=WINDOW_LENGTH
    )
    models = _train_models(
        registry, labeled, f"{kfold_name}@v{kfold_version}", seed, step, quick=quick
    )
    step("verifying the registry")
    problems = registry.verify()

    raw_manifest = registry.manifest(raw)
    validation = raw_manifest["transformations"][0]["report"]
    gaps = next(
        (t["summary"] for t in raw_manifest["transformations"] if t["name"] == "gap_report"), {}
    )
    datasets = [raw, unlabeled, labeled, features]
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
        },
        "config_hash": sha256_json({"n_bars": n_bars, "n_patterns": n_patterns, "seed": seed}),
        "data": data.audit,
        "datasets": [ref.to_dict() for ref in datasets],
        "registry_problems": problems,
        "models": models,
        "backtest": {"rule": f"dc_trend(up={DC_THRESHOLD})", "stats": backtest.stats},
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
        Section(
            "Models, out of fold (purged 5-fold, embargo of one window)",
            table_html(models, ["model", "run", *MODEL_COLUMNS]),
            "Each model is trained five times, each fold predicting only windows its model "
            "never saw; metrics are on those out-of-fold predictions after cross-fitted Platt "
            "calibration, with 95% bootstrap intervals in each run's own report. The stack "
            "learns only from the base models' out-of-fold probabilities.",
        ),
        Section(
            "Backtest of a baseline rule on the test period",
            _backtest_html(backtest),
            "No trained model exists yet at this stage of moola, so the demo trades a "
            "transparent rule instead: long 1 NQ contract in a directional-change up-trend "
            f"(threshold {DC_THRESHOLD:.1%}), short in a down-trend, over the bars from the "
            "first test window on. Fills at the next bar's open, one tick of spread, 1 bp "
            "slippage, $2.50 commission per contract.",
        ),
        Section(
            "Registry check",
            "<p>All stored bytes match their manifests.</p>"
            if not problems
            else table_html([{"problem": p} for p in problems]),
        ),
        Section("Run manifest", pre_html(json.dumps(manifest, indent=2, default=str))),
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
    lines.append(
        "models (out of fold): "
        + "; ".join(
            f"{m['model']} acc {m['accuracy']:.3f} minority F1 {m['minority_f1']:.3f}"
            for m in models
        )
    )
    lines.append(
        f"baseline rule backtest on the test period: {backtest.stats.get('n_trades')} trades, "
        f"total return {backtest.stats.get('total_return') or 0:+.2%} after costs"
    )
    lines.append(
        "synthetic in val/test: "
        f"{data.audit['val_synthetic_count'] + data.audit['test_synthetic_count']}; "
        f"registry check: {'ok' if not problems else f'{len(problems)} problems'}; "
        f"{manifest['wall_time_s']:.1f} s"
    )
    return DemoResult(run_id, run_dir / "report.html", lines, data.audit, models)


MODEL_COLUMNS = ("accuracy", "balanced_accuracy", "minority_f1", "pr_auc", "brier", "ece")


def _train_models(
    registry: Registry,
    labeled: Any,
    split: str,
    seed: int,
    step: Callable[[str], None],
    *,
    quick: bool,
) -> list[dict[str, Any]]:
    """Train the comparison set with OOF validation; one row of headline metrics each."""
    plan = [
        ("logistic_regression", {}),
        ("minirocket", {"n_kernels": 840 if quick else 4_000}),
        ("simple_lstm", {"epochs": 3 if quick else 30, "patience": 5}),
    ]
    rows = []
    runs = []
    for model, params in plan:
        step(f"training {model} (5 folds)")
        config = TrainConfig(
            model=model,
            dataset=f"{labeled.name}@v{labeled.version}",
            split=split,
            params=params,
            seed=seed,
            n_bootstrap=200 if quick else 1000,
        )
        result = run_training(registry, config)
        runs.append(result.run_id)
        rows.append(
            {
                "model": model,
                "run": result.run_id,
                **{
                    k: flat_metrics(result.calibrated_report or result.report)[k]
                    for k in MODEL_COLUMNS
                },
            }
        )
    step("training the stacking ensemble on out-of-fold probabilities")
    stack = run_training(
        registry,
        TrainConfig(
            model="stack",
            dataset=f"{labeled.name}@v{labeled.version}",
            split=split,
            base_runs=runs,
            seed=seed,
            n_bootstrap=200 if quick else 1000,
        ),
    )
    rows.append(
        {
            "model": "stack",
            "run": stack.run_id,
            **{k: flat_metrics(stack.calibrated_report or stack.report)[k] for k in MODEL_COLUMNS},
        }
    )
    for run_id in [*runs, stack.run_id]:
        write_report(registry, run_id)
    return rows


def _baseline_backtest(bars: Any, data: Any) -> Any:
    """Trade the causal DC trend (+1/-1) on the bars after the last val window."""
    trend = dc_features(bars, up=DC_THRESHOLD)["dc_trend"].fillna(0.0).to_numpy()
    test_start = data.table.loc[data.test.indices, "start_ts"].min()
    keep = (bars["timestamp"] >= test_start).to_numpy()
    held_out = bars.loc[keep].reset_index(drop=True)
    return run_backtest(
        held_out,
        0.5 * trend[keep],
        instrument=futures_instrument("NQ"),
        initial_cash=1_000_000.0,
        commission=CommissionModel(per_unit=2.5),
        spread=0.25,
        slippage=1.0,
    )


def _backtest_html(result: Any) -> str:
    stats = result.stats
    keys = (
        "total_return",
        "sharpe",
        "max_drawdown",
        "n_trades",
        "win_rate",
        "profit_factor",
        "costs_paid",
        "exposure",
    )
    rows = [{"metric": key, "value": stats.get(key)} for key in keys if key in stats]
    rules = [{"rule": r.name, "passed": r.passed, "detail": r.detail} for r in result.rules]
    return (
        table_html(rows) + table_html(rules) + image_html(equity_png(result.equity), "equity curve")
    )


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
