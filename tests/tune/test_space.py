"""Space files: what a study searches, checked before any study or run exists, with
errors that name the file and the key."""

from __future__ import annotations

import copy
from typing import Any

import optuna
import pytest

from moola.core.errors import ConfigError
from moola.tune.space import load_space, parse_space
from tests.tune._study_lab import lstm_space, write_yaml

SPACE = """\
# tune a tiny LSTM
run:
  kind: train
  model: simple_lstm
  dataset: pat
  split: fc
  params: {epochs: 3}
objective:
  metric: log_loss
params:
  params.hidden: {type: int, low: 8, high: 32, step: 8}
  params.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
  calibration: {type: categorical, choices: [none, platt]}
  params.dropout: {type: float, low: 0.0, high: 0.3, when: {calibration: platt}}
"""


def test_a_space_file_parses_and_its_identity_ignores_comments_and_layout(tmp_path):
    space = load_space(write_text(tmp_path / "a.yaml", SPACE))
    assert space.kind == "train" and space.direction == "minimize"
    assert list(space.params) == ["params.hidden", "params.lr", "calibration", "params.dropout"]
    assert space.source == str(tmp_path / "a.yaml")
    same = SPACE.replace("# tune a tiny LSTM\n", "").replace("{epochs: 3}", "\n    epochs: 3")
    assert load_space(write_text(tmp_path / "b.yaml", same)).space_hash == space.space_hash
    other = SPACE.replace("high: 32", "high: 64")
    assert load_space(write_text(tmp_path / "c.yaml", other)).space_hash != space.space_hash


def test_conditional_parameters_are_sampled_only_where_their_condition_holds(tmp_path):
    space = load_space(write_text(tmp_path / "a.yaml", SPACE))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = {"none": 0, "platt": 0}
    for _ in range(12):
        values = space.suggest(study.ask())
        seen[values["calibration"]] += 1
        assert ("params.dropout" in values) == (values["calibration"] == "platt")
        config = space.config_for(values)
        assert config["params"]["hidden"] == values["params.hidden"]
        assert config["params"]["epochs"] == 3  # the run's own values stay
        assert config["calibration"] == values["calibration"]
    assert seen["none"] and seen["platt"]


def _mutated(change) -> dict[str, Any]:
    space = lstm_space()
    space["params"]["calibration"] = {"type": "categorical", "choices": ["none", "platt"]}
    change(space)
    return space


BAD = {
    "unknown model parameter": (
        lambda s: s["params"].update({"params.hiden": {"type": "int", "low": 8, "high": 16}}),
        r"'params\.params\.hiden'.*unknown parameter\. Did you mean 'hidden'",
    ),
    "bounds upside down": (
        lambda s: s["params"].update({"params.lr": {"type": "float", "low": 0.1, "high": 0.01}}),
        r"'params\.params\.lr': low=0\.1 is above high=0\.01",
    ),
    "a log range from 0": (
        lambda s: s["params"].update(
            {"params.lr": {"type": "float", "low": 0, "high": 1, "log": True}}
        ),
        r"'params\.params\.lr': a log range needs low > 0",
    ),
    "a range the model refuses": (
        lambda s: s["params"].update(
            {"params.dropout": {"type": "float", "low": 0.0, "high": 1.5}}
        ),
        r"'params\.params\.dropout'.*1\.5 is refused",
    ),
    "a float range on an int parameter": (
        lambda s: s["params"].update({"params.hidden": {"type": "float", "low": 8, "high": 16.5}}),
        r"'params\.params\.hidden'.*integer parameter",
    ),
    "a choice the run config refuses": (
        lambda s: s["params"].update({"calibration": {"type": "categorical", "choices": ["x"]}}),
        r"'params\.calibration': the run config refuses calibration='x'",
    ),
    "searching the split": (
        lambda s: s["params"].update({"split": {"type": "categorical", "choices": ["fc", "kf"]}}),
        r"'params\.split': a study compares its trials on one dataset and split",
    ),
    "a key the run config does not have": (
        lambda s: s["params"].update({"lr": {"type": "float", "low": 0.1, "high": 0.2}}),
        r"'params\.lr': 'lr' is not a key of the train run config",
    ),
    "a condition on a later parameter": (
        lambda s: s["params"]["params.lr"].update({"when": {"calibration": "platt"}}),
        r"'params\.params\.lr': 'when' names 'calibration', which is not a categorical "
        r"parameter declared before it",
    ),
    "a metric of the test part": (
        lambda s: s["objective"].update({"metric": "test_log_loss"}),
        r"'objective\.metric': 'test_log_loss' is a metric of the test part",
    ),
    "the test part": (
        lambda s: s["objective"].update({"part": "test"}),
        r"'objective\.part': the test part is never scored while tuning",
    ),
    "an unknown key in the run": (
        lambda s: s["run"].update({"epochs": 3}),
        r"unknown key 'run\.epochs'",
    ),
    "an unknown parameter type": (
        lambda s: s["params"].update({"params.hidden": {"type": "integer", "low": 8, "high": 9}}),
        r"'params\.params\.hidden'.*'float', 'int', 'categorical'",
    ),
    "an unknown key of a parameter": (
        lambda s: s["params"]["params.lr"].update({"base": 2}),
        r"unknown key 'params\.params\.lr\.base'",
    ),
    "no parameters": (lambda s: s.update({"params": {}}), r"'params'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_space_is_refused_naming_the_file_and_the_key(tmp_path, case):
    change, message = BAD[case]
    path = write_yaml(tmp_path / "space.yaml", _mutated(change))
    with pytest.raises(ConfigError, match=message) as error:
        load_space(path)
    assert str(path) in str(error.value)
    assert list(tmp_path.iterdir()) == [path]  # nothing written


def test_rl_spaces_are_checked_against_the_rl_config(tmp_path):
    space = {
        "run": {"kind": "rl", "dataset": "w", "split": "s", "timesteps": 64},
        "objective": {"metric": "eval_return"},
        "params": {
            "params.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "timesteps": {"type": "int", "low": 64, "high": 256, "step": 64},
        },
    }
    parsed = parse_space(space)
    assert parsed.direction == "maximize"
    assert parsed.config_for({"timesteps": 128, "params.learning_rate": 1e-3})["params"] == {
        "learning_rate": 1e-3
    }
    bad = copy.deepcopy(space)
    bad["params"]["n_envs"] = {"type": "int", "low": 0, "high": 2}
    with pytest.raises(ConfigError, match=r"'params\.n_envs': the run config refuses n_envs=0"):
        parse_space(bad, where="space file rl.yaml")


def test_a_phase_fixes_earlier_values_but_keeps_searching_its_own(tmp_path):
    space = parse_space(lstm_space())
    fixed = space.with_fixed({"params.lr": 0.5, "params.hidden": 16, "calibration": "none"})
    assert fixed.run["params"]["hidden"] == 16 and fixed.run["calibration"] == "none"
    assert "lr" not in fixed.run["params"] and "params.lr" in fixed.params
    assert fixed.space_hash != space.space_hash


def write_text(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path
