"""`moola demo` end to end, small: everything it promises is stored, traceable, reported,
and shown while it runs.

One small demo runs, as a user runs it with its output piped (not a terminal), with
``--threads 2`` (the default is 1): its lines are read as they arrive.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from moola.data.registry import Registry
from moola.tracking.manifest import parse_train_manifest
from moola.tracking.runs import RunStore

STAMPED = re.compile(r"^\d\d:\d\d:\d\d \+ *\d+\.\ds (?P<text>.*)$")


def _run_demo_piped(data_root: Path) -> list[tuple[str, bool]]:
    """Each line of `moola demo --quick --threads 2` with whether the process was still
    running when the line was read."""
    command = [sys.executable, "-m", "moola.cli.main", "--data-root", str(data_root), "demo"]
    command += ["--bars", "30000", "--patterns", "60", "--seed", "3", "--quick", "--threads", "2"]
    env = {**os.environ, "COLUMNS": "200"}  # no wrapped lines to match across
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    ) as process:
        assert process.stdout is not None
        lines = [(line.rstrip("\n"), process.poll() is None) for line in process.stdout]
        assert process.wait() == 0, "\n".join(line for line, _ in lines[-30:])
    return lines


def test_demo_command_builds_datasets_splits_models_and_report(tmp_path):
    lines = _run_demo_piped(tmp_path)
    out = "\n".join(line for line, _ in lines)

    # Streaming: timestamped stage and epoch lines arrive while the demo still runs.
    stamped = [(STAMPED.match(line), running) for line, running in lines]
    texts = [(match["text"], running) for match, running in stamped if match]
    stages = [text for text, _ in texts if not text.startswith(" ")]
    assert stages[0] == "generating and ingesting the synthetic market"
    assert stages[-1] == "done"
    assert texts[0][1], "the first stage line only arrived after the demo ended"
    epochs = [t for t, running in texts if re.search(r"fit \d/6 epoch \d/3 train", t) and running]
    assert len(epochs) >= 12, "per-epoch lines of the neural folds did not stream"
    assert any(re.search(r"ETA \d+s\]$", t) for t, _ in texts)
    # The forecasting section shows its stages and each walk-forward fold of its forecaster.
    forecasting = [t for t in stages if t.startswith("forecasting: ")]
    assert len(forecasting) == 4 and stages.index(forecasting[0]) > stages.index(
        "backtesting the best model's signals on the held-out period, with costs"
    )
    folds = [t for t, running in texts if re.search(r"fold \d/3: \d+ train windows, IC ", t)]
    assert len(folds) == 3
    assert len([t for t in texts if re.search(r"fit \d/4 epoch 1/1 train", t[0])]) == 4
    assert out.index("generating and ingesting") < out.index("Report:")

    assert "report.html" in out.replace("\n", "")
    assert "simple_lstm" in out and "stack" in out

    registry = Registry(tmp_path)
    kinds = {info.ref.kind for info in registry.list()}
    assert {"raw", "unlabeled", "labeled", "features", "labels", "predictions"} <= kinds
    features = registry.load_table("features", "demo-price-action")
    assert features.shape == (60, 20) and features.notna().all().all()
    assert registry.split_names() == [
        "demo-direction-holdout",
        "demo-direction-kfold",
        "demo-forecast-direction-wf",
        "demo-forecast-wf",
        "demo-forward",
        "demo-kfold",
    ]
    assert registry.verify(full=True) == []

    store = RunStore(tmp_path)
    results = store.results()
    trained = [r for r in results if r["kind"] == "train"]
    assert [r["model"] for r in trained] == [
        "simple_lstm",
        "simple_lstm",  # with the pretrained encoder
        "logistic_regression",
        "minirocket",
        "stack",
        "simple_lstm",  # on the train/val/test split, for learning curves
        "logistic_regression",  # direction candidates, development period
        "gradient_boosting",
        trained[-3]["model"],  # the chosen one, for the held-out period
        "lightgbm",  # forecasting: the forward return of three symbols' feature windows
        "bilstm",  # forecasting: their direction
    ]
    assert trained[-3]["model"] in ("logistic_regression", "gradient_boosting")
    assert [r["task"] for r in trained].count("regression") == 1
    assert trained[-2]["task"] == "regression" and trained[-1]["task"] == "classification"
    assert [r["mode"] for r in trained].count("holdout") == 1 and trained[5]["mode"] == "holdout"
    assert all(r["mode"] == "oof" for r in trained if r is not trained[5])
    demo_run = next(r for r in results if r["kind"] == "demo")
    run_dir = store.run_dir(demo_run["run_id"])
    manifest = json.loads((run_dir / "manifest.json").read_text())

    # --threads is honoured: recorded by the demo and by every training run it made.
    assert manifest["config"]["threads"] == 2 and manifest["threads"]["torch"] == 2
    for record in trained:
        run_manifest = json.loads((store.run_dir(record["run_id"]) / "manifest.json").read_text())
        assert run_manifest["threads"]["torch"] == 2
    assert manifest["data"]["val_synthetic_count"] == manifest["data"]["test_synthetic_count"] == 0
    counts = manifest["data"]["counts"]
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0
    html = (run_dir / "report.html").read_text()
    for needle in ("demo-forward", "Models, out of fold", "Backtest", "<img"):
        assert needle in html

    # The report: what came out first, how it was made after, the raw manifest folded last.
    titles = re.findall(r"<h2>(.*?)</h2>", html)
    assert titles[:3] == [
        "Summary",
        "Models, out of fold (purged 5-fold, embargo of one window)",
        "Backtest of the best model&#x27;s signals on the held-out period",
    ]
    assert titles[3] == "Forecasting on feature windows: 3 symbols"
    assert titles[4] == "The market and its labelled windows"
    assert titles.index("Learning curves (simple_lstm on the forward-chaining split)") < (
        titles.index("Pretraining")
    )
    assert titles[-1] == "Run manifest"
    manifest_part = html.rsplit("<h2>", 1)[1]
    assert "<details>" in manifest_part and "&quot;config_hash&quot;" in manifest_part
    assert html.count("<details>") == 1

    # Pretraining: an encoder artifact, loaded in full by the fine-tuned row.
    pretraining = manifest["pretraining"]
    load = pretraining["load_report"]
    assert load["matched_fraction"] == 1.0 and load["frozen_parameters"] > 0
    assert load["fine_tuning"]["freeze_epochs"] >= 1
    assert Path(pretraining["path"]).is_file() and pretraining["unlabeled"]["windows_used"] > 0
    fine_tuned = next(m for m in manifest["models"] if m["model"] == "simple_lstm (pretrained)")
    run_manifest = json.loads((store.run_dir(fine_tuned["run"]) / "manifest.json").read_text())
    assert run_manifest["training"]["training"]["pretrained_load"]["matched_fraction"] == 1.0
    assert "Pretraining" in html and "simple_lstm (pretrained)" in html and "100%" in html
    assert "simple_lstm (pretrained)" in out

    # The backtest section: the chosen model's signals on the held-out period, nothing leaked.
    backtest = manifest["backtest"]
    chosen = backtest["chosen"]
    assert chosen == min(backtest["candidates"], key=lambda row: row["log_loss"])["model"]
    assert backtest["held_out_run"] == trained[-3]["run_id"] and trained[-3]["model"] == chosen
    section = html.split("<h2>Backtest of the best model", 1)[1].split("<h2>", 1)[0]
    assert chosen in section and "baseline" in section and "<img" in section
    assert backtest["leakage_check"]["passed"] and backtest["counts"]["skipped_leaky"] == 0
    held_out_start = pd.Timestamp(backtest["held_out_start"])
    folder = store.run_dir(backtest["held_out_run"]) / backtest["backtest_path"]
    trades = pd.read_csv(folder / "trades.csv", parse_dates=["entry_time"])
    equity = pd.read_csv(folder / "equity.csv", parse_dates=["timestamp"])
    assert len(trades) == backtest["stats"]["n_trades"] > 0
    assert (pd.to_datetime(trades["entry_time"], utc=True) >= held_out_start).all()
    assert pd.to_datetime(equity["timestamp"], utc=True).min() >= held_out_start
    assert backtest["baseline"]["stats"]["start"] == backtest["stats"]["start"]
    development = registry.load_labeled("demo-direction-dev").table
    assert pd.to_datetime(development["end_ts"], utc=True).max() < held_out_start
    assert "best model backtest on the held-out period" in out

    # Forecasting: a regression run on the three symbols' feature windows, each symbol's
    # out-of-fold forecasts backtested on its own bars, the scores in the report and output.
    forecast = manifest["forecast"]
    symbols = ["BTC-USD", "ETH-USD", "SOL-USD"]
    assert forecast["run"] == trained[-2]["run_id"] and forecast["task"] == "regression"
    run_manifest = json.loads((store.run_dir(forecast["run"]) / "manifest.json").read_text())
    assert run_manifest["task"] == "regression" and run_manifest["scaling"] is not None
    assert [t["name"] for t in run_manifest["targets"]] == ["forward_return"]
    assert run_manifest["window"]["length"] == 60
    assert len(run_manifest["window"]["columns"]) == 31
    windows = registry.load_feature_windows("demo-forecast-windows")
    assert sorted(set(windows.symbols)) == symbols and len(windows.y) == forecast["n_windows"]
    assert -1.0 <= forecast["metrics"]["ic"] <= 1.0
    assert 0.0 <= forecast["metrics"]["sign_accuracy"] <= 1.0
    assert sorted(forecast["per_symbol"]) == symbols
    for symbol, row in forecast["per_symbol"].items():
        assert row["leakage_check"]["passed"] and row["counts"]["used"] > 0, symbol
        assert row["windows"] > 0 and -1.0 <= row["ic"] <= 1.0
        folder = store.run_dir(forecast["run"]) / row["backtest_path"]
        equity = pd.read_csv(folder / "equity.csv")
        assert equity["equity"].iloc[-1] / equity["equity"].iloc[0] - 1 == pytest.approx(
            row["stats"]["total_return"]
        )
    assert forecast["portfolio"]["symbols"] == symbols
    section = html.split("<h2>Forecasting", 1)[1].split("<h2>", 1)[0]
    assert "Spearman IC" in section and "sign accuracy" in section
    assert all(symbol in section for symbol in symbols)
    assert "forecasting" in html.split("<h2>Summary", 1)[1].split("<h2>", 1)[0]
    printed = " ".join(out.split())  # a long line may wrap
    line = printed[printed.index("forecasting (3 symbols") :].split("; leakage check", 1)[0]
    assert f"IC {forecast['metrics']['ic']:+.3f}" in line
    assert all(f"{symbol} {row['stats']['total_return']:+.2%}" in line
               for symbol, row in forecast["per_symbol"].items())  # fmt: skip
    direction = forecast["direction"]
    assert direction["run"] == trained[-1]["run_id"]
    assert 0.0 <= direction["metrics"]["balanced_accuracy"] <= 1.0
    run_manifest = json.loads((store.run_dir(direction["run"]) / "manifest.json").read_text())
    typed = parse_train_manifest(run_manifest, direction["run"], "its manifest.json")
    assert typed.task == "classification" and typed.window is not None
    assert typed.data.dataset.name == "demo-forecast-direction-windows"
    assert [list(t.classes or []) for t in typed.targets] == [["-1", "1"]]
    assert typed.window.length == 60 and len(typed.window.columns) == 31
