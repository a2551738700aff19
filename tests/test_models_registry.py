"""The model registry and ``moola models list``: names become estimators, or clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from moola.cli import models as models_cli
from moola.core.errors import ConfigError
from moola.models import Estimator, create, list_models

NON_NEURAL = [
    card.name
    for card in list_models("ACTIVE")
    if not card.entry_point.startswith("moola.training.")
]


def _inputs(input_kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Small learnable data of the shape a model of ``input_kind`` takes."""
    y = np.arange(40) % 2
    if input_kind == "sequence":
        return rng.normal(size=(40, 12, 2)) + 2 * y[:, None, None], y
    if input_kind == "tabular":
        return rng.normal(size=(40, 3)) + 2 * y[:, None], y
    p = np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.1, 40), 0, 1)
    return np.column_stack([1 - p, p]), y


def test_the_non_neural_models_are_all_registered():
    assert set(NON_NEURAL) == {
        "minirocket",
        "fm_probe",
        "fm_forecast",
        "logistic_regression",
        "random_forest",
        "gradient_boosting",
        "stack",
    }


# fm_probe and fm_forecast read a weights folder and normalise each window away (and
# fm_forecast learns nothing): tests/test_fm_probe.py, tests/test_fm_forecast.py
@pytest.mark.parametrize(
    "name", [name for name in NON_NEURAL if name not in ("fm_probe", "fm_forecast")]
)
def test_create_gives_a_working_estimator_matching_its_card(name, tmp_path):
    card = next(c for c in list_models() if c.name == name)
    params = {"n_kernels": 84} if name == "minirocket" else {}
    model = create(name, **params)
    assert isinstance(model, Estimator)
    assert model.name == name and model.input_kind == card.input_kind
    X, y = _inputs(card.input_kind, np.random.default_rng(0))
    assert model.fit(X, y) is model
    proba = model.predict_proba(X)
    assert proba.shape == (40, 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    prediction = model.predict(X)
    assert prediction.dtype == np.int64 and (prediction == y).mean() > 0.8
    path = tmp_path / f"{name}.pkl"
    model.save(path)
    np.testing.assert_array_equal(type(model).load(path).predict_proba(X), proba)


def test_create_passes_parameters_through():
    assert create("minirocket", n_kernels=500).get_params()["n_kernels"] == 500
    assert create("logistic_regression", C=0.5).get_params()["C"] == 0.5
    assert create("stack", meta="random_forest").get_params()["meta"] == "random_forest"


@pytest.mark.parametrize("name", [c.name for c in list_models("LEGACY")])
def test_legacy_names_say_why_they_were_retired_and_what_to_use(name):
    card = next(c for c in list_models("LEGACY") if c.name == name)
    with pytest.raises(ConfigError, match="retired") as error:
        create(name)
    assert card.retired_because in str(error.value)
    assert f"Use '{card.replacement}' instead" in str(error.value)


def test_unknown_names_get_a_did_you_mean():
    with pytest.raises(
        ConfigError, match=r"Unknown model 'mini_rocket'\. Did you mean 'minirocket'"
    ):
        create("mini_rocket")
    with pytest.raises(ConfigError, match=r"Active models: .*gradient_boosting"):
        create("xgboost_v9")


def invoke(*args: str):
    result = CliRunner().invoke(models_cli.app, list(args))
    return result, " ".join(result.output.split())


def test_cli_list_shows_every_card():
    result, text = invoke("list")
    assert result.exit_code == 0, result.output
    for card in list_models():
        assert card.name in text
        assert card.role in text
    assert "tabular" in text and "probabilities" in text
    # Legacy models show why they were retired and what replaces them.
    assert "Retired: too large for the labeled set sizes" in text
    assert "Use 'simple_lstm' instead" in text


def test_cli_list_filters_by_role():
    result, text = invoke("list", "--role", "legacy")
    assert result.exit_code == 0
    assert "cnn_transformer" in text and "rwkv_ts" in text and "minirocket" not in text
    result, _ = invoke("list", "--role", "retired")
    assert isinstance(result.exception, ConfigError)
    assert "ACTIVE or LEGACY" in str(result.exception)


@pytest.mark.parametrize("name", ["cnn_transformer", "rwkv_ts"])
def test_train_with_a_legacy_model_says_why_what_instead_and_how_to_bring_it_back(
    capsys, tmp_path, name
):
    """Refused before the data is read: the dataset and split named here do not exist."""
    from tests.test_cli import run

    card = next(c for c in list_models("LEGACY") if c.name == name)
    code, out, err = run(
        capsys, "--data-root", str(tmp_path), "train", "--model", name,
        "--dataset", "nowhere", "--split", "nothing",
    )  # fmt: skip
    assert code == 2 and "Traceback" not in out + err
    assert f"Model '{name}' is retired (LEGACY): {card.retired_because}" in err
    assert "Use 'simple_lstm' instead" in err
    assert "not available in this version" in err
    assert "no flag, setting or environment variable brings it back" in err
    assert "register it as ACTIVE" in err  # the way back, if one must
    assert "nowhere" not in err  # the model was judged first
    assert not (tmp_path / "artifacts").exists()


def test_parameter_counts_are_dash_when_the_neural_code_is_unavailable(monkeypatch):
    card = next(c for c in list_models() if c.name == "simple_lstm")
    monkeypatch.setitem(sys.modules, "moola.models.nn", None)  # import now fails
    assert models_cli._parameter_count(card) == "-"
    tabular = next(c for c in list_models() if c.name == "random_forest")
    assert models_cli._parameter_count(tabular) == "-"


def test_cards_say_which_tasks_each_model_learns():
    tasks = {card.name: card.tasks for card in list_models("ACTIVE")}
    assert all("classification" in t for t in tasks.values())
    assert {n for n, t in tasks.items() if "regression" in t} == {
        "bilstm",
        "transformer",
        "cnn_lstm_attention",
        "gradient_boosting",
        "fm_forecast",
    }
    assert {n for n, t in tasks.items() if "multitask" in t} == {"cnn_lstm_attention"}


def test_create_refuses_a_task_the_model_does_not_learn_naming_those_that_do():
    with pytest.raises(ConfigError, match="'minirocket' does not support task='regression'") as e:
        create("minirocket", task="regression")
    assert "Models that support regression: bilstm, cnn_lstm_attention, transformer" in str(e.value)
    with pytest.raises(ConfigError, match="Models that support multitask: cnn_lstm_attention"):
        create("stack", task="multitask")
    # A classifier-only model takes task="classification", and stores nothing for it.
    assert "task" not in create("minirocket", task="classification").get_params()


def test_short_aliases_name_the_registered_models():
    assert create("logreg").name == "logistic_regression"
    assert create("lightgbm", n_estimators=5).name == "gradient_boosting"
