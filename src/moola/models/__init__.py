"""Models: nn.Modules and estimator wrappers behind one interface, and their registry."""

from moola.models.base import Estimator
from moola.models.params import (
    ModelParams,
    check_search_space,
    params_model,
    validate_params,
)
from moola.models.registry import (
    MODEL_CARDS,
    ModelCard,
    create,
    list_models,
    model_card,
    require_active,
)

__all__ = [
    "MODEL_CARDS",
    "Estimator",
    "ModelCard",
    "ModelParams",
    "check_search_space",
    "create",
    "list_models",
    "model_card",
    "params_model",
    "require_active",
    "validate_params",
]
