"""`moola demo` end to end, small: everything it promises is stored, traceable, reported."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from moola.cli.main import main
from moola.data.registry import Registry
from moola.tracking.runs import RunStore


def test_demo_command_builds_datasets_splits_models_and_report(tmp_path, capsys):
    try:
        main(
            [
                "--data-root",
                str(tmp_path),
                "demo",
                "--bars",
                "30000",
                "--patterns",
                "60",
                "--seed",
                "3",
                "--quick",
            ]
        )
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = capsys.readouterr().out
    assert "report.html" in out.replace("\n", "")
    assert "simple_lstm" in out and "stack" in out

    registry = Registry(tmp_path)
    kinds = {info.ref.kind for info in registry.list()}
    assert {"raw", "unlabeled", "labeled", "features", "predictions"} <= kinds
    features = registry.load_table("features", "demo-price-action")
    assert features.shape == (60, 20) and features.notna().all().all()
    assert registry.split_names() == [
        "demo-direction-holdout",
        "demo-direction-kfold",
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
        "logistic_regression",  # direction candidates, development period
        "gradient_boosting",
        trained[-1]["model"],  # the chosen one, for the held-out period
    ]
    assert trained[-1]["model"] in ("logistic_regression", "gradient_boosting")
    assert all(r["mode"] == "oof" for r in trained)
    demo_run = next(r for r in results if r["kind"] == "demo")
    run_dir = store.run_dir(demo_run["run_id"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data"]["val_synthetic_count"] == manifest["data"]["test_synthetic_count"] == 0
    counts = manifest["data"]["counts"]
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0
    html = (run_dir / "report.html").read_text()
    for needle in ("demo-forward", "Models, out of fold", "Backtest", "<img"):
        assert needle in html

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

    # The last section: the chosen model's signals on the held-out period, nothing leaked.
    backtest = manifest["backtest"]
    chosen = backtest["chosen"]
    assert chosen == min(backtest["candidates"], key=lambda row: row["log_loss"])["model"]
    assert backtest["held_out_run"] == trained[-1]["run_id"] and trained[-1]["model"] == chosen
    final = html.rsplit("<h2", 1)[1]
    assert "Backtest of the best model&#x27;s signals on the held-out period" in final or (
        "Backtest of the best model's signals on the held-out period" in final
    )
    assert chosen in final and "baseline" in final and "<img" in final
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
