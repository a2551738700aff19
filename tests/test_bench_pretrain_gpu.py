"""benchmarks/bench_pretrain_gpu.py in its tiny CPU mode (--quick): the script a GPU
session runs in one command still runs moola's pretraining loop and writes its figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_quick_mode_measures_the_pretraining_loop_and_extrapolates_an_epoch(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_pretrain_gpu

    out = tmp_path / "result.json"
    bench_pretrain_gpu.main(["--quick", "--device", "cpu", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["device"].startswith("cpu") and result["quick"] is True
    assert result["windows"] == 64 and result["parameters"] > 0
    (row,) = result["rows"]
    assert row["batch"] == 32 and row["windows/s"] > 0 and row["batches only windows/s"] > 0
    assert row["epoch of 2.2M (s)"] == pytest.approx(2_200_000 / row["windows/s"])
    assert row["target met"] == ("yes" if row["epoch of 2.2M (s)"] <= 60 else "no")
    assert "masked-AE pretraining on cpu" in capsys.readouterr().out


def test_a_single_epoch_is_refused_since_the_first_is_not_timed(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_pretrain_gpu

    with pytest.raises(SystemExit):
        bench_pretrain_gpu.parse(["--epochs", "1"])
