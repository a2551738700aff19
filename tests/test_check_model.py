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
