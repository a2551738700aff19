"""Phases: each study fixes the previous best and starts from it; one recorded lineage."""

from __future__ import annotations

import json

import optuna
import pytest

from moola.core.errors import ConfigError
from moola.tracking.runs import RunStore
from moola.tune.phases import load_phases, run_phases
from moola.tune.storage import study_dir
from tests.tune._study_lab import logistic_space, make_lab, write_yaml

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return make_lab(tmp_path_factory.mktemp("phases") / "moola_data")


def _phases_file(folder, **extra):
    write_yaml(folder / "c.yaml", logistic_space("fc"))
    write_yaml(
        folder / "calibration.yaml",
        logistic_space(
            "fc", calibration={"type": "categorical", "choices": ["auto", "none", "platt"]}
        ),
    )
    return write_yaml(
        folder / "phases.yaml",
        {
            "name": "lineage",
            "phases": [
                {"space": "c.yaml", "trials": 2, **extra},
                {"study": "lineage-cal", "space": "calibration.yaml", "trials": 2},
            ],
        },
    )


def test_each_phase_fixes_the_previous_best_and_starts_from_it(lab, tmp_path):
    phases, spaces = load_phases(_phases_file(tmp_path))
    result = run_phases(lab, phases, spaces, seed=3)
    first, second = result.studies
    assert first.name == "lineage-1" and second.name == "lineage-cal"
    best_c = first.best_params["params.C"]

    trials = optuna.load_study(
        study_name="lineage-cal", storage=f"sqlite:///{study_dir(lab.root, 'lineage-cal')}/study.db"
    ).trials
    # The first trial is the previous best run: the phase's own parameter at the value
    # that run had (calibration's default), everything else fixed to the earlier best.
    assert trials[0].params == {"calibration": "auto"}
    assert trials[0].value == first.best_value
    store = RunStore(lab.root)
    for trial in trials:
        manifest = store.manifest(store.run_dir(trial.user_attrs["run_id"]))
        assert manifest["config"]["params"]["C"] == best_c
    assert second.best_value <= first.best_value  # it can only improve on where it started

    record = json.loads(result.record.read_text())
    assert result.record == study_dir(lab.root, "lineage") / "phases.json"
    assert [p["study"] for p in record["phases"]] == ["lineage-1", "lineage-cal"]
    assert record["phases"][0]["fixed"] == {} and record["phases"][0]["enqueued"] == {}
    assert record["phases"][1]["fixed"] == {"params.C": best_c}
    assert record["phases"][1]["enqueued"] == {"calibration": "auto"}
    assert record["phases"][1]["best_value"] == second.best_value
    # One lineage both ways: every trial's run names its phase, and each phase's best run
    # in phases.json is one of that phase's runs.
    for phase, study in enumerate(("lineage-1", "lineage-cal"), start=1):
        runs = [line["run_id"] for line in store.results() if line.get("study") == study]
        assert len(runs) == 2
        for run_id in runs:
            recorded = store.manifest(store.run_dir(run_id))["study"]
            assert recorded["phases"] == {"name": "lineage", "phase": phase}
            assert recorded["name"] == study
        assert record["phases"][phase - 1]["best_run_id"] in runs

    again = run_phases(lab, phases, spaces, seed=3)  # resumed: nothing is run twice
    assert [study.ran for study in again.studies] == [0, 0]
    assert len(trials) == 2


def test_a_bad_phases_file_is_refused_naming_the_file_and_key(tmp_path):
    path = _phases_file(tmp_path, trails=3)
    with pytest.raises(ConfigError, match=r"phases\.yaml: 'phases\.0\.trails': unknown key"):
        load_phases(path)
    path = _phases_file(tmp_path)
    write_yaml(tmp_path / "c.yaml", {**logistic_space("fc"), "objective": {"metric": "test_x"}})
    with pytest.raises(ConfigError, match=r"phases\.0\.space: .*c\.yaml.*'objective\.metric'"):
        load_phases(path)
