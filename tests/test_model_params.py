"""Per-model Params: every ACTIVE model's parameters checked before any fit, and search
spaces checked against them (moola.models.params)."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.models import (
    ModelParams,
    check_search_space,
    create,
    list_models,
    model_card,
    params_model,
    validate_params,
)
from moola.models.nn import ARCHITECTURES
from moola.models.params import given_params
from moola.testing.models import TINY_PARAMS
from moola.training.neural import NeuralEstimator
from moola.training.trainer import TrainerConfig

ACTIVE = [card.name for card in list_models("ACTIVE")]
NEURAL = [name for name in ACTIVE if name in ARCHITECTURES]

#: One impossible value per model: (parameter, value, words the refusal must say).
OUT_OF_RANGE = {
    "simple_lstm": ("dropout", 1.0, "less than 1"),
    "enhanced_simple_lstm": ("encoder_dropout", -0.1, "greater than or equal to 0"),
    "bilstm": ("hidden", 0, "greater than or equal to 1"),
    "cnn_lstm_attention": ("lstm_hidden", 0, "greater than or equal to 1"),
    "transformer": ("lr", 0.0, "greater than 0"),
    "adapter_lstm": ("epochs", 0, "greater than or equal to 1"),
    "minirocket": ("n_kernels", 0, "greater than or equal to 1"),
    "fm_probe": ("C", 0.0, "greater than 0"),
    "fm_forecast": ("horizon", 0, "greater than or equal to 1"),
    "logistic_regression": ("C", -1.0, "greater than 0"),
    "random_forest": ("n_estimators", 0, "greater than or equal to 1"),
    "gradient_boosting": ("learning_rate", -0.1, "greater than 0"),
    "stack": ("C", 0.0, "greater than 0"),
}
#: A typo of a parameter each model takes, and the name the refusal must suggest.
TYPO = {name: ("epoch", "epochs") for name in NEURAL} | {
    "minirocket": ("n_kernel", "n_kernels"),
    "fm_probe": ("backbon", "backbone"),
    "fm_forecast": ("horizn", "horizon"),
    "logistic_regression": ("random_stat", "random_state"),
    "random_forest": ("n_estimator", "n_estimators"),
    "gradient_boosting": ("num_leave", "num_leaves"),
    "stack": ("met", "meta"),
}
#: A search space each model should accept (the kind the tuning issue will run).
GOOD_SPACE = {name: {"lr": {"low": 1e-4, "high": 1e-2, "log": True}} for name in NEURAL} | {
    "simple_lstm": {
        "lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "hidden": {"low": 32, "high": 96, "step": 8},
        "dropout": {"low": 0.0, "high": 0.5},
        "fc": {"choices": [[64], [128, 64]]},
        "heads": {"choices": [2, 4, 8]},
    },
    "transformer": {
        "d_model": {"choices": [64, 128]},
        "n_layers": {"low": 1, "high": 6},
        "epochs": {"low": 10, "high": 200, "step": 10},
    },
    "minirocket": {
        "n_kernels": {"low": 84, "high": 10_080, "step": 84},
        "C": {"low": 0.01, "high": 1.0},
    },
    "logistic_regression": {"C": {"low": 1e-3, "high": 10.0, "log": True}},
    "fm_probe": {"C": {"low": 1e-3, "high": 10.0, "log": True}},
    "fm_forecast": {"horizon": {"low": 1, "high": 20}},
    "random_forest": {
        "n_estimators": {"low": 50, "high": 500, "step": 50},
        "min_samples_leaf": {"low": 1, "high": 20},
        "max_features": {"choices": ["sqrt", "log2", 0.5]},
    },
    "gradient_boosting": {
        "num_leaves": {"low": 4, "high": 63},
        "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
        "subsample": {"low": 0.5, "high": 1.0},
    },
    "stack": {"meta": {"choices": ["logistic_regression", "random_forest"]}},
}


def test_every_active_model_is_covered_by_these_tables():
    for table in (OUT_OF_RANGE, TYPO, GOOD_SPACE):
        assert set(table) == set(ACTIVE)


# -- the Params models --------------------------------------------------------------------


@pytest.mark.parametrize("name", ACTIVE)
def test_params_model_is_frozen_refuses_unknown_keys_and_is_the_cards(name):
    model = params_model(name)
    assert issubclass(model, ModelParams)
    assert model.model_config["frozen"] and model.model_config["extra"] == "forbid"
    assert model_card(name).params is model
    with pytest.raises(Exception, match="frozen"):
        model().__setattr__(next(iter(model.model_fields)), None)


def test_a_retired_or_unknown_model_has_no_params():
    with pytest.raises(ConfigError, match="retired"):
        params_model("rwkv_ts")
    with pytest.raises(ConfigError, match="Did you mean 'bilstm'"):
        validate_params("bilstn", {})


@pytest.mark.parametrize("name", ACTIVE)
def test_create_with_no_params_is_unchanged(name):
    card = model_card(name)
    module, attribute = card.entry_point.split(":")
    factory = getattr(__import__(module, fromlist=[attribute]), attribute)
    assert create(name).get_params() == factory(**card.fixed_params).get_params()


@pytest.mark.parametrize("name", NEURAL)
def test_neural_defaults_are_the_trainer_the_estimator_and_the_module_config(name):
    resolved = validate_params(name, {})
    assert issubclass(params_model(name), TrainerConfig)  # one home: trainer fields
    trainer = {**TrainerConfig().model_dump(), **model_card(name).preset}  # DOMAIN presets
    assert trainer.items() <= resolved.items()
    assert resolved["task"] == "classification"
    estimator = inspect.signature(NeuralEstimator.__init__).parameters
    assert resolved["architecture"] == name and "architecture" in estimator
    assert {"verbose": False, "pretrained_encoder": None, "freeze_epochs": 0}.items() <= (
        resolved.items()
    )
    assert resolved["encoder_lr_scale"] == 0.1
    config = ARCHITECTURES[name][0]()
    for field in dataclasses.fields(config):
        expected = None if field.name in ("input_dim", "seq_len", "n_classes") else field.default
        assert resolved[field.name] == expected, field.name  # None: from the data at fit


def test_the_transformer_trains_as_the_domain_says_unless_told_otherwise():
    """create("transformer") gets AdamW, warm-up + cosine and grad clip 1.0 (its card's
    preset) in its Params defaults and in the trainer a fit uses; a given value wins."""
    preset = model_card("transformer").preset
    assert preset["optimizer"] == "adamw" and preset["lr_schedule"] == "cosine"
    assert preset["warmup_epochs"] >= 1 and preset["grad_clip"] == 1.0
    assert validate_params("transformer", {})["optimizer"] == "adamw"
    assert validate_params("transformer", {"optimizer": "adam"})["optimizer"] == "adam"
    X = np.random.default_rng(0).normal(size=(8, 6, 3))
    y = np.arange(8) % 2
    tiny = {**TINY_PARAMS["transformer"], "epochs": 1, "batch_size": 8}
    fitted = create("transformer", **tiny).fit(X, y)
    assert fitted.get_params() == {"architecture": "transformer", **tiny}  # stored as given
    assert {k: getattr(fitted.trainer_config_, k) for k in preset} == preset
    other = create("transformer", **tiny, optimizer="adam", warmup_epochs=0).fit(X, y)
    assert (other.trainer_config_.optimizer, other.trainer_config_.warmup_epochs) == ("adam", 0)
    assert validate_params("bilstm", {})["patience"] == 5  # DOMAIN: early stopping after 5


def test_the_domain_sizes_are_the_module_defaults():
    bilstm, transformer = (validate_params(n, {}) for n in ("bilstm", "transformer"))
    assert (bilstm["hidden"], bilstm["num_layers"], bilstm["dropout"], bilstm["fc"]) == (
        64,
        2,
        0.2,
        (64,),
    )  # 2 x 64 bidirectional, FC 128-64-K
    assert (
        transformer["d_model"],
        transformer["n_layers"],
        transformer["heads"],
        transformer["ffn"],
        transformer["dropout"],
        transformer["fc"],
    ) == (128, 4, 8, 512, 0.1, (512,))  # head 128-512-K


@pytest.mark.parametrize("name", ["logistic_regression", "random_forest", "gradient_boosting"])
def test_tabular_defaults_are_the_library_model_a_fit_uses(name):
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = np.arange(30) % 2
    fitted = create(name, **TINY_PARAMS.get(name, {})).fit(X, y).model_
    library = (fitted.steps[-1][1] if hasattr(fitted, "steps") else fitted).get_params(deep=False)
    resolved = validate_params(name, TINY_PARAMS.get(name, {}))
    assert library.items() <= resolved.items()
    assert resolved["kind"] == name and resolved["n_classes"] is None


def test_minirocket_and_stack_defaults_are_their_signatures():
    from moola.models.minirocket import MiniRocketClassifier
    from moola.models.stack import StackingClassifier

    for name, cls in (("minirocket", MiniRocketClassifier), ("stack", StackingClassifier)):
        resolved = validate_params(name, {})
        for parameter in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            if parameter.kind is not inspect.Parameter.VAR_KEYWORD:
                assert resolved[parameter.name] == parameter.default, (name, parameter.name)
    stack = validate_params("stack", {"meta": "random_forest", "n_estimators": 10})
    assert stack["n_estimators"] == 10 and stack["max_features"] == "sqrt" and "C" not in stack
    assert validate_params("stack", {})["C"] == 1.0


# -- refusals before any fit ------------------------------------------------------------------


@pytest.fixture
def no_fit(monkeypatch):
    """Every estimator's fit fails the test: refusals must come before any fit."""
    from moola.models.minirocket import MiniRocketClassifier
    from moola.models.stack import StackingClassifier
    from moola.models.tabular import TabularClassifier

    def fit(self, *args, **kwargs):
        raise AssertionError("fit ran before the parameters were checked")

    for cls in (NeuralEstimator, MiniRocketClassifier, StackingClassifier, TabularClassifier):
        monkeypatch.setattr(cls, "fit", fit)


@pytest.mark.parametrize("name", ACTIVE)
def test_an_out_of_range_value_is_refused_naming_model_parameter_and_value(name, no_fit):
    param, value, allowed = OUT_OF_RANGE[name]
    with pytest.raises(ConfigError) as info:
        create(name, **{param: value})
    message = str(info.value)
    assert message.startswith(f"{name}:")
    assert f"'{param}'" in message and f"{param}={value!r}" in message and allowed in message


@pytest.mark.parametrize("name", ACTIVE)
def test_an_unknown_name_is_refused_with_a_did_you_mean(name, no_fit):
    typo, meant = TYPO[name]
    with pytest.raises(ConfigError, match=f"unknown parameter '{typo}'. Did you mean '{meant}'"):
        create(name, **{typo: 1})


def test_a_misspelt_choice_gets_a_did_you_mean(no_fit):
    with pytest.raises(
        ConfigError, match=r"got meta='random-forest'\)\. Did you mean 'random_forest'"
    ):
        create("stack", meta="random-forest")
    with pytest.raises(ConfigError, match=r"got pooling='means'\)\. Did you mean 'mean'"):
        create("bilstm", pooling="means")


@pytest.mark.parametrize("name", [n for n in ACTIVE if model_card(n).fixed_params])
def test_a_fixed_parameter_cannot_be_overridden(name):
    key, value = next(iter(model_card(name).fixed_params.items()))
    with pytest.raises(ConfigError, match=f"fixes \\['{key}'\\]"):
        create(name, **{key: "something_else"})
    assert create(name, **{key: value}).get_params()[key] == value  # the same value is fine


def test_rules_across_parameters_are_checked_where_the_module_writes_them():
    with pytest.raises(ConfigError, match=r"multiple of .*heads=5"):
        validate_params("simple_lstm", {"heads": 5})
    with pytest.raises(ConfigError, match="same length"):
        validate_params("cnn_lstm_attention", {"kernel_sizes": [3]})
    with pytest.raises(ConfigError, match="no pretrained_encoder was given"):
        validate_params("adapter_lstm", {"freeze_epochs": 2})
    with pytest.raises(ConfigError, match="max_features"):  # scikit-learn's own constraint
        validate_params("random_forest", {"max_features": "most"})
    with pytest.raises(ConfigError, match=r"\['C'\] are not parameters of meta='random_forest'"):
        validate_params("stack", {"meta": "random_forest", "C": 0.5})


def test_values_are_stored_as_given_unless_parsing_changed_them():
    model = create("simple_lstm", fc=[64], lr=1, epochs="5", hidden=64.0, input_dim=None)
    assert model.get_params() == {
        "architecture": "simple_lstm",
        "fc": [64],
        "lr": 1,
        "epochs": 5,
        "hidden": 64,
    }
    assert type(model.get_params()["hidden"]) is int  # the module config takes ints only


@pytest.mark.parametrize("name", NEURAL)
def test_what_params_accept_the_module_config_builds(name):
    """No value passes a neural model's Params that its module config would then refuse at
    fit time; the impossible ones are refused by both."""
    config_cls = ARCHITECTURES[name][0]
    candidates = [0, -1, 1, 1.0, 1.5, 0.5, [0], [], [3], "x", "mean", "cls", True, None]
    for field in dataclasses.fields(config_cls):
        for value in candidates:
            try:
                given = given_params(name, {field.name: value})
            except ConfigError:
                continue
            if field.name in given:
                config_cls(**{field.name: given[field.name]})  # raises if Params let it through


def test_the_parameters_moolas_own_code_passes_are_accepted_and_stored_unchanged(tmp_path):
    """pipeline's model_params, the demo's and check_model's sizes validate, and the
    estimator keeps them exactly (what its saved file and the run's manifest record)."""
    from moola.demo._pretrain import fine_tuning_params
    from moola.pipeline.inputs import model_params

    class Artifact:
        path = tmp_path / "encoder.pt"

    cases = [
        (name, model_params(name, {"seed" if name in NEURAL else "random_state": 3, **tiny}))
        for name in ACTIVE
        for tiny in ({}, TINY_PARAMS.get(name, {}))
    ]
    cases += [
        ("simple_lstm", fine_tuning_params(Artifact(), quick=True)),  # type: ignore[arg-type]
        ("simple_lstm", model_params("simple_lstm", {"pretrained_encoder": str(Artifact.path)})),
        ("minirocket", {"n_kernels": 840}),
        ("simple_lstm", {"epochs": 3, "patience": 5}),
    ]
    for name, params in cases:
        validate_params(name, params)
        stored = create(name, **params).get_params()
        assert stored == {**create(name).get_params(), **params}, name


# -- search spaces ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ACTIVE)
def test_a_sensible_search_space_is_accepted(name):
    check_search_space(name, GOOD_SPACE[name])
    check_search_space(name, {})


@pytest.mark.parametrize(
    ("name", "space", "words"),
    [
        (
            "simple_lstm",
            {"hiden": {"low": 8, "high": 64}},
            "unknown parameter. Did you mean 'hidden'",
        ),
        ("simple_lstm", {"architecture": {"choices": ["bilstm"]}}, "fixes it to 'simple_lstm'"),
        ("random_forest", {"kind": {"choices": ["random_forest"]}}, "fixes it"),
        ("simple_lstm", {"dropout": {"low": 0.0, "high": 1.0}}, "range end 1.0"),
        ("logistic_regression", {"C": {"low": -1.0, "high": 1.0}}, "range end -1.0"),
        ("gradient_boosting", {"num_leaves": {"low": 1, "high": 63}}, "range value 1"),
        ("simple_lstm", {"heads": {"low": 1, "high": 8}}, "range value 5"),  # 72 % 5 != 0
        ("simple_lstm", {"heads": {"choices": [2, 5]}}, "choice 5"),
        ("simple_lstm", {"optimizer": {"choices": ["adam", "sgd"]}}, "choice 'sgd'"),
        ("random_forest", {"max_features": {"choices": ["most"]}}, "choice 'most'"),
        ("simple_lstm", {"epochs": {"low": 1.5, "high": 10}}, "integer parameter"),
        ("simple_lstm", {"optimizer": {"low": 0, "high": 1}}, "not a number"),
        ("simple_lstm", {"mean_pool": {"low": 0, "high": 1}}, "not a number"),
        ("simple_lstm", {"lr": {"low": 0.0, "high": 0.1, "log": True}}, "needs low > 0"),
        ("simple_lstm", {"lr": {"low": 0.1, "high": 0.01}}, "is above high"),
        ("simple_lstm", {"lr": {"low": 1e-4, "high": 0.1, "log": True, "step": 0.01}}, "no step"),
        ("simple_lstm", {"hidden": {"low": 8, "high": 64, "step": 0}}, "step must be > 0"),
        ("simple_lstm", {"lr": {"low": 1e-4, "hi": 0.1}}, "unknown key"),
        ("simple_lstm", {"lr": {"low": 1e-4}}, "needs high"),
        ("simple_lstm", {"lr": {"low": "a", "high": 0.1}}, "finite number"),
        ("simple_lstm", {"lr": {"choices": [1e-3], "low": 1e-4}}, "cannot be mixed"),
        ("simple_lstm", {"lr": {"choices": []}}, "non-empty list"),
        ("simple_lstm", {"lr": [1e-4, 1e-2]}, "expected"),
        ("stack", {"C": {"low": 0.0, "high": 1.0}}, "range end 0.0"),
    ],
)
def test_a_bad_search_space_is_refused_naming_the_parameter(name, space, words):
    param = next(iter(space))
    with pytest.raises(ConfigError) as info:
        check_search_space(name, space)
    message = str(info.value)
    assert f"{name} search space, parameter '{param}'" in message
    assert words in message


def test_a_search_space_that_is_not_a_mapping_is_refused():
    with pytest.raises(ConfigError, match="bilstm search space: expected a mapping"):
        check_search_space("bilstm", [("lr", {"low": 1e-4, "high": 1e-2})])  # type: ignore[arg-type]
