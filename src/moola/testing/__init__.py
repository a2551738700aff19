"""Conformance checkers that moola ships and runs in CI over everything registered."""

from __future__ import annotations

from moola.testing.lookahead import check_feature, check_incremental, check_label
from moola.testing.models import check_model
from moola.testing.policies import check_policy
from moola.testing.rules import OrderInvariant, check_order_rule, check_rule
from moola.testing.sources import check_source
from moola.testing.splits import check_split

__all__ = [
    "OrderInvariant",
    "check_env",
    "check_feature",
    "check_incremental",
    "check_label",
    "check_model",
    "check_order_rule",
    "check_policy",
    "check_rule",
    "check_source",
    "check_split",
]


def __getattr__(name: str) -> object:
    """``check_env`` needs the ``rl`` extra (Gymnasium): imported on first use, so the
    other checkers work without it."""
    if name == "check_env":
        from moola.testing.envs import check_env

        return check_env
    raise AttributeError(f"module 'moola.testing' has no attribute {name!r}")
