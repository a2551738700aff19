"""Models: nn.Modules and estimator wrappers behind one interface, and their registry."""

from moola.models.base import Estimator
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
    "create",
    "list_models",
    "model_card",
    "require_active",
]
