"""`moola demo` end to end, small: everything it promises is stored, traceable, reported."""

from __future__ import annotations

import json

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
    assert registry.split_names() == ["demo-forward", "demo-kfold"]
    assert registry.verify(full=True) == []

    results = RunStore(tmp_path).results()
    trained = [r for r in results if r["kind"] == "train"]
    assert [r["model"] for r in trained] == [
        "logistic_regression",
        "minirocket",
        "simple_lstm",
        "stack",
    ]
    assert all(r["mode"] == "oof" for r in trained)
    demo_run = next(r for r in results if r["kind"] == "demo")
    run_dir = RunStore(tmp_path).run_dir(demo_run["run_id"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data"]["val_synthetic_count"] == manifest["data"]["test_synthetic_count"] == 0
    counts = manifest["data"]["counts"]
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0
    html = (run_dir / "report.html").read_text()
    for needle in ("demo-forward", "Models, out of fold", "Backtest", "<img"):
        assert needle in html
