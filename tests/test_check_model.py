"""Every ACTIVE model card passes moola.testing.check_model; a broken estimator does not."""

from __future__ import annotations

import numpy as np
import pytest

import moola.testing.models as checker
from moola.models.registry import list_models
from moola.models.tabular import TabularClassifier
from moola.testing import check_model


@pytest.mark.parametrize("name", [card.name for card in list_models("ACTIVE")])
def test_every_active_model_passes_the_checks(name):
    check_model(name)


class _Drifting(TabularClassifier):
    """Learns its own parameters: fit writes into them (what check_model must catch)."""

    def fit(self, X, y, **kwargs):
        fitted = super().fit(X, y, **kwargs)
        self.params["learned_mean"] = float(np.mean(X))
        return fitted


class _Copying(TabularClassifier):
    def fit(self, X, y, **kwargs):
        return TabularClassifier(**self.params).fit(X, y, **kwargs)


@pytest.mark.parametrize(
    ("broken", "message"), [(_Copying, "not self"), (_Drifting, "changed its parameters")]
)
def test_a_model_breaking_the_contract_fails(monkeypatch, broken, message):
    monkeypatch.setattr(checker, "create", lambda name, **params: broken(**params))
    with pytest.raises(AssertionError, match=message):
        check_model("logistic_regression")


REGRESSORS = [card.name for card in list_models("ACTIVE") if "regression" in card.tasks]


def test_the_regression_models_are_the_ones_the_cards_name():
    assert {"gradient_boosting", "bilstm", "transformer", "cnn_lstm_attention"} <= set(REGRESSORS)


@pytest.mark.parametrize("name", REGRESSORS)
@pytest.mark.parametrize(
    ("breakage", "message"),
    [("float32", "float32, expected float64"), ("proba", "must raise ConfigError")],
)
def test_every_regression_model_is_checked_as_a_regressor(monkeypatch, name, breakage, message):
    """A regressor giving float32 values, or probabilities, fails ``check_model``."""
    from moola.models import create

    def broken(model: str, **params):
        estimator = create(model, **params)
        if params.get("task") == "regression":
            predict = estimator.predict
            if breakage == "float32":
                estimator.predict = lambda X: predict(X).astype(np.float32)
            else:
                estimator.predict_proba = lambda X: np.full((len(X), 2), 0.5)
        return estimator

    monkeypatch.setattr(checker, "create", broken)
    with pytest.raises(AssertionError, match=message):
        check_model(name)
