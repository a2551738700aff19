"""`moola tune ...` through a small Typer app that mounts it as cli/main.py will (with the
same global --data-root option)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from moola.cli import tune as tune_commands
from moola.core.errors import ConfigError
from moola.tracking.runs import RunStore
from moola.tune.storage import study_dir
from tests.cli_harness import bare_cli
from tests.tune._study_lab import logistic_space, make_lab, write_yaml

app = bare_cli(tune_commands.app, "tune")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_lab(tmp_path_factory.mktemp("cli") / "moola_data").root


def _invoke(root: Path, *args: str):
    return CliRunner().invoke(app, ["--data-root", str(root), "tune", *args])


def test_run_show_and_report_a_study(root, tmp_path):
    space = write_yaml(tmp_path / "space.yaml", logistic_space("fc"))
    ran = _invoke(root, "run", "--space", str(space), "--study", "cli", "--trials", "2",
                  "--sampler", "random", "--seed", "4")  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert "Study cli: 2 complete, 0 pruned, 0 failed" in ran.output
    lines = [line for line in RunStore(root).results() if line.get("study") == "cli"]
    assert sorted(line["trial"] for line in lines) == [0, 1]

    shown = _invoke(root, "show", "cli")
    assert shown.exit_code == 0, shown.output
    assert "Best: trial" in shown.output and "params.C" in shown.output
    best = min(lines, key=lambda line: line["metrics"]["log_loss"])
    assert best["run_id"] in shown.output.replace("\n", "")

    reported = _invoke(root, "report", "cli")
    assert reported.exit_code == 0, reported.output
    assert (study_dir(root, "cli") / "report.html").is_file()


def test_bad_input_is_refused_before_anything_is_written(root, tmp_path):
    bad = write_yaml(
        tmp_path / "bad.yaml", {**logistic_space("fc"), "objective": {"metric": "test_auc"}}
    )
    result = _invoke(root, "run", "--space", str(bad), "--study", "nope", "--trials", "1")
    assert isinstance(result.exception, ConfigError)
    assert "bad.yaml" in str(result.exception) and "test part" in str(result.exception)
    good = write_yaml(tmp_path / "good.yaml", logistic_space("fc"))
    result = _invoke(root, "run", "--space", str(good), "--study", "nope", "--trials", "1",
                     "--address", "127.0.0.1:1")  # fmt: skip
    assert isinstance(result.exception, ConfigError) and "--backend ray" in str(result.exception)
    result = _invoke(root, "run", "--space", str(good), "--study", "nope", "--trials", "1",
                     "--sampler", "grid")  # fmt: skip
    assert isinstance(result.exception, ConfigError) and "Unknown sampler" in str(result.exception)
    for flag in ("--cpus-per-task", "--gpus-per-task", "--max-retries"):
        result = _invoke(root, "run", "--space", str(good), "--study", "nope", "--trials", "1",
                         flag, "1")  # fmt: skip
        assert isinstance(result.exception, ConfigError), flag
        assert f"{flag} only apply to Ray tasks; add --backend ray" in str(result.exception)
    assert not study_dir(root, "nope").exists()


def test_one_seed_one_trial_at_a_time_gives_the_same_trials(root, tmp_path):
    """The same command twice (two study names, TPE, the same --seed) samples the same
    parameters and scores the same values; another seed samples others."""
    import optuna

    from moola.tune.storage import storage_url

    space = write_yaml(tmp_path / "space.yaml", logistic_space("fc"))
    for name, seed in (("same-a", "9"), ("same-b", "9"), ("other", "10")):
        ran = _invoke(root, "run", "--space", str(space), "--study", name, "--trials", "2",
                      "--seed", seed)  # fmt: skip
        assert ran.exit_code == 0, ran.output
    trials = {
        name: [
            (t.params, t.value)
            for t in optuna.load_study(
                study_name=name, storage=storage_url(root, name, None)
            ).trials
        ]
        for name in ("same-a", "same-b", "other")
    }
    assert trials["same-a"] == trials["same-b"]
    assert len(trials["same-a"]) == 2 and trials["same-a"][0] != trials["same-a"][1]
    assert [p for p, _ in trials["other"]] != [p for p, _ in trials["same-a"]]


def test_phases_run_in_order_and_print_the_lineage(root, tmp_path):
    write_yaml(tmp_path / "c.yaml", logistic_space("fc"))
    write_yaml(
        tmp_path / "cal.yaml",
        logistic_space("fc", calibration={"type": "categorical", "choices": ["none", "platt"]}),
    )
    phases = write_yaml(
        tmp_path / "phases.yaml",
        {"name": "cli-phases", "phases": [{"space": "c.yaml", "trials": 1},
                                          {"space": "cal.yaml", "trials": 1}]},
    )  # fmt: skip
    ran = _invoke(root, "phases", str(phases), "--sampler", "random")
    assert ran.exit_code == 0, ran.output
    output = " ".join(ran.output.split())
    assert output.index("Study cli-phases-1: 1 complete") < output.index("Study cli-phases-2")
    assert f"Lineage: {study_dir(root, 'cli-phases') / 'phases.json'}" in output
