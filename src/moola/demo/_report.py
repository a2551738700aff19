"""The demo report's sections, in the order a reader wants them.

First what came out (a summary, then the model comparison, the backtest and the forecasting
section), then how it was made (the market with its labelled windows, learning curves,
pretraining, datasets, validation, split, features, registry check), and last the raw run
manifest, folded.
``demo_sections`` assembles them; the pretraining, backtest and forecasting sections come
from their own modules.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from moola.demo._forecast import forecast_summary
from moola.evaluation.plots import example_windows_png, labelled_market_png, learning_curve_png
from moola.evaluation.report import Section, image_html, pre_html, table_html
from moola.features.window import PRICE_ACTION_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from moola.data.registry import LabeledData

MODEL_COLUMNS = ("accuracy", "balanced_accuracy", "minority_f1", "pr_auc", "brier", "ece")
EXAMPLES_PER_CLASS = 4


def summary_section(manifest: dict[str, Any], models: list[dict[str, Any]], sizing: str) -> Section:
    """What the demo did and found, in a few rows: the first thing a reader sees."""
    config, data, backtest = manifest["config"], manifest["data"], manifest["backtest"]
    best = max(models, key=lambda row: _number(row["balanced_accuracy"]))
    stats, base = backtest["stats"], backtest["baseline"]["stats"]
    rows = [
        {"": "market", "what came out": f"{config['n_bars']:,} synthetic 1-minute NQ bars, "
            f"{config['n_patterns']} planted patterns (strength {config['pattern_strength']})"},
        {"": "labelled windows", "what came out": ", ".join(
            f"{part} {count}" for part, count in data["counts"].items())},
        {"": "best pattern model", "what came out": f"{best['model']}: out-of-fold balanced "
            f"accuracy {_number(best['balanced_accuracy']):.3f}, minority F1 "
            f"{_number(best['minority_f1']):.3f}"},
        {"": "backtest (held out)", "what came out": f"{backtest['chosen']}: "
            f"{stats.get('n_trades')} trades, {_number(stats.get('total_return')):+.2%} after "
            f"costs, Sharpe {_number(stats.get('sharpe')):.2f}; baseline rule "
            f"{_number(base.get('total_return')):+.2%}"},
        {"": "forecasting", "what came out": forecast_summary(manifest["forecast"])},
        {"": "checks", "what came out": "registry: "
            + ("all bytes match their manifests" if not manifest["registry_problems"]
               else f"{len(manifest['registry_problems'])} problems")
            + f"; leakage check {'passed' if backtest['leakage_check']['passed'] else 'FAILED'}"
            + "; synthetic windows in val/test: "
            + str(data["val_synthetic_count"] + data["test_synthetic_count"])},
        {"": "run", "what came out": f"{manifest['wall_time_s']:.0f} s on "
            f"{manifest['threads']['torch']} torch thread(s) "
            f"({manifest['threads']['cpu_count']} cores)"},
    ]  # fmt: skip
    return Section("Summary", table_html(rows, ["", "what came out"]), sizing)


def models_section(models: list[dict[str, Any]], pretrained_row: str) -> Section:
    """The comparison of the pattern classifiers, out of fold."""
    return Section(
        "Models, out of fold (purged 5-fold, embargo of one window)",
        table_html(models, ["model", "run", *MODEL_COLUMNS]),
        "Each model is trained five times, each fold predicting only windows its model "
        "never saw; metrics are on those out-of-fold predictions after cross-fitted "
        "calibration, with 95% bootstrap intervals in each run's own report. The stack "
        "learns only from the out-of-fold probabilities of the three base models above "
        f"it (not of {pretrained_row!r}).",
    )


def market_section(bars: pd.DataFrame, data: LabeledData) -> Section:
    """The market's close with the labelled windows shaded, and example windows per class."""
    table = data.table
    examples: dict[str, list[np.ndarray]] = {}
    for index, name in enumerate(data.classes):
        rows = np.flatnonzero(data.y == index)
        picked = rows[np.linspace(0, len(rows) - 1, min(EXAMPLES_PER_CLASS, len(rows)))
                      .astype(np.int64)] if len(rows) else rows  # fmt: skip
        examples[name] = [data.X[row, :, 3] for row in picked]  # close of each OHLC window
    body = image_html(
        labelled_market_png(bars["timestamp"], bars["close"], table), "market with windows"
    ) + image_html(example_windows_png(examples), "example windows per class")
    return Section(
        "The market and its labelled windows",
        body,
        "Close of the synthetic market with every planted, labelled window shaded by class; "
        f"below, {EXAMPLES_PER_CLASS} windows per class spread over time (close as a percent "
        "change from the window's first bar).",
    )


def learning_curve_section(run_id: str, summary: dict[str, Any]) -> Section:
    """Training and validation loss per epoch of simple_lstm on the train/val/test split."""
    train = summary.get("train_loss_history") or []
    val = summary.get("val_loss_history") or None
    if not train:
        return Section("Learning curves", '<p class="muted">(no epochs recorded)</p>')
    png = learning_curve_png(
        train, val, best_epoch=summary.get("best_epoch"), title="simple_lstm: train and val"
    )
    stopped = summary.get("early_stop_epoch")
    return Section(
        "Learning curves (simple_lstm on the forward-chaining split)",
        image_html(png, "learning curves"),
        f"Run {run_id}: trained on the train part, validated each epoch on the val part "
        f"(best epoch {summary.get('best_epoch')}, whose weights are kept"
        + (f"; stopped early after epoch {stopped}" if stopped else "")
        + "). The test part is not touched. The out-of-fold runs above have no validation "
        "part inside their folds, so they train a fixed number of epochs.",
    )


def data_sections(
    dataset_rows: list[dict[str, Any]],
    raw_manifest: dict[str, Any],
    data: LabeledData,
    price_action: pd.DataFrame,
    features: Any,
    relative_shape: tuple[int, ...],
    problems: list[str],
) -> list[Section]:
    """Datasets, bar validation, gaps, split, parts, features by class, registry check."""
    validation = raw_manifest["transformations"][0]["report"]
    gaps = next(
        (t["summary"] for t in raw_manifest["transformations"] if t["name"] == "gap_report"), {}
    )
    split_record = data.audit["split"]
    parts = [
        {"part": part, "windows": len(value), **class_counts(value.y, data.classes)}
        for part, value in data.parts.items()
    ]
    return [
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
            f"relative view feeds sequence models as {relative_shape} float32 arrays.",
        ),
        Section(
            "Registry check",
            "<p>All stored bytes match their manifests.</p>"
            if not problems
            else table_html([{"problem": p} for p in problems]),
        ),
    ]


def manifest_section(manifest: dict[str, Any]) -> Section:
    """The raw run manifest, folded: everything above, as recorded."""
    return Section(
        "Run manifest",
        pre_html(json.dumps(manifest, indent=2, default=str)),
        "The run's manifest.json: configuration, threads, dataset and split identities with "
        "hashes, every model run and the backtest record.",
        collapsed=True,
    )


def class_counts(y: Any, classes: tuple[str, ...]) -> dict[str, int]:
    """Windows per class name."""
    return {name: int((y == index).sum()) for index, name in enumerate(classes)}


def _feature_means(table: Any, data: LabeledData) -> list[dict[str, Any]]:
    """Mean of each window feature per class over the train part: how separable are they?"""
    train = table.iloc[data.train.indices]
    labels = [data.classes[i] for i in data.train.y]
    means = train.groupby(labels).mean()
    return [
        {"feature": column, **{c: float(means.loc[c, column]) for c in means.index}}
        for column in PRICE_ACTION_COLUMNS
    ]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")
