"""The demo pipeline end to end, small: everything it promises is stored and traceable."""

from __future__ import annotations

from moola.cli.main import main
from moola.data.registry import Registry
from moola.demo import run_demo


def test_demo_builds_every_dataset_split_and_report(tmp_path):
    result = run_demo(tmp_path, n_bars=30_000, n_patterns=60, seed=3)
    registry = Registry(tmp_path)
    kinds = {info.ref.kind for info in registry.list()}
    assert {"raw", "unlabeled", "labeled", "features"} <= kinds
    features = registry.load_table("features", "demo-price-action")
    assert features.shape == (60, 20) and features.notna().all().all()
    assert registry.split_names() == ["demo-forward"]
    assert registry.verify(full=True) == []
    html = result.report_path.read_text()
    assert "<table>" in html and "demo-forward" in html
    audit = result.audit
    assert audit["val_synthetic_count"] == 0 and audit["test_synthetic_count"] == 0
    counts = audit["counts"]
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0
    assert (tmp_path / "experiment_results.jsonl").read_text().count("\n") == 1


def test_demo_command(tmp_path, capsys):
    try:
        main(["--data-root", str(tmp_path), "demo", "--bars", "20000", "--patterns", "40"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = capsys.readouterr().out
    assert "report.html" in out.replace("\n", "")
