"""The ``moola`` command as a user types it: exit codes, messages, and an unchanged registry."""

from __future__ import annotations

import numpy as np
import pytest

from moola.cli.main import main
from moola.data.registry import Registry
from tests.conftest import random_walk_bars


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``moola ARGV``; return exit code, stdout and stderr."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


@pytest.fixture
def csv_file(tmp_path):
    bars = random_walk_bars(600, symbol="ES")
    frame = bars[["timestamp", "open", "high", "low", "close", "volume"]].copy()
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    path = tmp_path / "es.csv"
    frame.to_csv(path, index=False)
    return path


def _snapshot(root) -> set[str]:
    return {str(p) for p in root.rglob("*")} if root.exists() else set()


def test_ingest_list_show_verify(capsys, tmp_path, csv_file):
    root = str(tmp_path / "data")
    code, out, err = run(
        capsys,
        "--data-root",
        root,
        "data",
        "ingest",
        str(csv_file),
        "--name",
        "es",
        "--symbol",
        "ES",
        "--timeframe",
        "1m",
        "--calendar",
        "futures",
    )
    assert code == 0, err
    assert "raw/es@v1" in out and "600 bars" in out
    code, out, _ = run(capsys, "--data-root", root, "data", "list")
    assert code == 0 and "es" in out and "v1" in out
    code, out, _ = run(capsys, "--data-root", root, "data", "show", "es@v1")
    assert code == 0 and '"content_hash"' in out and "es.csv" in out
    code, out, _ = run(capsys, "--data-root", root, "data", "verify", "--full")
    assert code == 0 and "ok" in out


def test_verify_fails_naming_the_changed_file(capsys, tmp_path, csv_file):
    root = tmp_path / "data"
    run(
        capsys,
        "--data-root",
        str(root),
        "data",
        "ingest",
        str(csv_file),
        "--name",
        "es",
        "--symbol",
        "ES",
        "--timeframe",
        "1m",
    )
    parquet = next(root.rglob("bars.parquet"))
    parquet.write_bytes(parquet.read_bytes()[:-10])
    code, _, err = run(capsys, "--data-root", str(root), "data", "verify")
    assert code == 1
    assert "bars.parquet" in err


def test_bad_input_exits_nonzero_with_one_paragraph_and_writes_nothing(capsys, tmp_path, csv_file):
    root = tmp_path / "data"
    base = ["--data-root", str(root), "data"]
    cases = [
        (
            [
                *base,
                "ingest",
                str(tmp_path / "nope.csv"),
                "--name",
                "x",
                "--symbol",
                "S",
                "--timeframe",
                "1m",
            ],
            "nope.csv",
        ),
        (
            [
                *base,
                "ingest",
                str(csv_file),
                "--name",
                "x",
                "--symbol",
                "S",
                "--timeframe",
                "1m",
                "--mode",
                "sloppy",
            ],
            "--mode",
        ),
        (
            [*base, "ingest", str(csv_file), "--name", "x", "--symbol", "S", "--timeframe", "7q"],
            "timeframe",
        ),
        (
            [
                *base,
                "ingest",
                str(csv_file),
                "--name",
                "x",
                "--format",
                "xls",
                "--symbol",
                "S",
                "--timeframe",
                "1m",
            ],
            "xls",
        ),
        ([*base, "show", "missing"], "missing"),
    ]
    for argv, needle in cases:
        code, _, err = run(capsys, *argv)
        assert code != 0, argv
        assert needle in err, (argv, err)
        assert "Traceback" not in err
    assert not list(root.rglob("bars.parquet"))


def test_strict_ingest_refuses_bad_rows_and_repair_records_them(capsys, tmp_path, csv_file):
    lines = csv_file.read_text().splitlines()
    fields = lines[10].split(",")
    fields[4] = "nan"  # close of the 10th bar
    lines[10] = ",".join(fields)
    lines.insert(20, lines[19])  # an exact duplicate row
    csv_file.write_text("\n".join(lines) + "\n")
    root = tmp_path / "data"
    args = [
        "--data-root",
        str(root),
        "data",
        "ingest",
        str(csv_file),
        "--name",
        "es",
        "--symbol",
        "ES",
        "--timeframe",
        "1m",
    ]
    code, _, err = run(capsys, *args)
    assert code != 0 and "row" in err and "repair" in err
    assert Registry(root).versions("raw", "es") == []
    code, _, err = run(capsys, *args, "--mode", "repair")
    assert code == 0, err
    stored = Registry(root).load_raw("es")
    assert len(stored) == 599
    assert np.isfinite(stored["close"]).all()
    manifest = Registry(root).manifest(Registry(root).resolve("raw", "es"))
    actions = {r["action"] for r in manifest["transformations"][0]["report"]["repairs"]}
    assert {"dropped_exact_duplicates", "dropped_invalid_rows"} <= actions


def test_windows_and_split_commands(capsys, tmp_path, csv_file):
    root = str(tmp_path / "data")
    base = ["--data-root", root]
    run(
        capsys,
        *base,
        "data",
        "ingest",
        str(csv_file),
        "--name",
        "es",
        "--symbol",
        "ES",
        "--timeframe",
        "1m",
    )
    code, out, err = run(
        capsys, *base, "data", "windows", "es", "--name", "es-w", "--length", "30", "--stride", "5"
    )
    assert code == 0, err
    assert "unlabeled/es-w@v1" in out
    code, _, err = run(capsys, *base, "data", "split", "es-w", "--strategy", "random")
    assert code != 0 and "forward-chaining" in err
    code, out, err = run(
        capsys,
        *base,
        "data",
        "split",
        "es-w",
        "--strategy",
        "forward-chaining",
        "--purge",
        "30",
        "--embargo",
        "15min",
    )
    assert code == 0, err
    assert "es-w-forward-chaining@v1" in out
    code, out, err = run(
        capsys,
        *base,
        "data",
        "split",
        "es-w",
        "--strategy",
        "purged-kfold",
        "--folds",
        "4",
        "--embargo",
        "10",
    )
    assert code == 0, err


def test_doctor_reports_and_passes_on_a_healthy_machine(capsys, tmp_path):
    code, out, _ = run(capsys, "--data-root", str(tmp_path / "d"), "doctor")
    assert code == 0
    for needle in ("python", "pandas", "data root", "free disk", "torch"):
        assert needle in out


def test_labeled_windows_from_a_labels_file_drop_blacklisted_grade_d(capsys, tmp_path, csv_file):
    root = tmp_path / "data"
    base = ["--data-root", str(root)]
    run(
        capsys,
        *base,
        "data",
        "ingest",
        str(csv_file),
        "--name",
        "es",
        "--symbol",
        "ES",
        "--timeframe",
        "1m",
    )
    bars = Registry(root).load_raw("es")
    labels = tmp_path / "labels.csv"
    starts = [0, 40, 80, 120, 160]
    stamps = bars["timestamp"].iloc[starts].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = ["start_ts,label,grade"] + [
        f"{ts},{label},{grade}"
        for ts, label, grade in zip(
            stamps, ["up", "down", "up", "down", "up"], ["A", "B", "D", "C", "A"], strict=True
        )
    ]
    labels.write_text("\n".join(lines) + "\n")
    code, _, err = run(
        capsys,
        *base,
        "data",
        "windows",
        "es",
        "--name",
        "es-lab",
        "--length",
        "30",
        "--labels",
        str(labels),
    )
    assert code == 0, err
    registry = Registry(root)
    data = registry.load_labeled("es-lab")
    assert data.table["start"].tolist() == [0, 40, 120, 160]  # grade D (start 80) dropped
    assert data.table["grade"].tolist() == ["A", "B", "C", "A"]
    manifest = registry.manifest(registry.resolve("labeled", "es-lab"))
    dropped = next(t for t in manifest["transformations"] if t["name"].startswith("drop"))
    assert dropped["params"]["dropped"] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("start_ts,label\n1999-01-01T00:00:00Z,up\n")
    code, _, err = run(
        capsys,
        *base,
        "data",
        "windows",
        "es",
        "--name",
        "es-bad",
        "--length",
        "30",
        "--labels",
        str(bad),
    )
    assert code != 0 and "match no bar" in err
    assert registry.versions("labeled", "es-bad") == []
