"""The feature contract: a named, parameterised, causal computation over canonical bars.

A feature is declared by name and parameters (``create_feature("rsi", period=14)``) and
produces named columns aligned with the bars. Subclasses define ``name``, a frozen
``Params`` model (unknown or out-of-range parameters are errors), ``columns`` and
``compute``; ``lookback`` says how many bars of history one value needs, which the
incremental (run-time) path uses to size its buffer.

The rule every feature obeys: the value at bar t depends on bars[: t + 1] only (no
lookahead). ``moola.testing.check_feature`` proves it for every registered feature.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from moola.core.errors import ConfigError


class FeatureParams(BaseModel):
    """Base of every feature's parameters: frozen, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Feature(ABC):
    """Base class of all features (see the module docstring for the contract)."""

    name: ClassVar[str]
    Params: ClassVar[type[FeatureParams]] = FeatureParams

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(params)'}: "
                + ("unknown parameter" if e["type"] == "extra_forbidden" else e["msg"])
                for e in exc.errors()
            )
            raise ConfigError(
                f"Feature '{self.name}' parameters are invalid: {problems}."
            ) from None

    @abstractmethod
    def columns(self) -> tuple[str, ...]:
        """Names of the columns ``compute`` returns, in order."""

    @abstractmethod
    def lookback(self) -> int:
        """Bars of history (including the current bar) one value needs to equal batch mode."""

    @abstractmethod
    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        """Columns aligned with ``bars`` (same index, ``columns()`` order); NaN during warm-up.

        ``bars`` is a canonical bar table of one symbol, sorted by time.
        """

    def spec(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``: how a feature set file declares this feature."""
        return {"name": self.name, "params": self.params.model_dump(mode="json")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"


FEATURES: dict[str, type[Feature]] = {}


def register_feature(cls: type[Feature]) -> type[Feature]:
    """Class decorator: make ``cls`` creatable by its ``name``."""
    if cls.name in FEATURES and FEATURES[cls.name] is not cls:
        raise ValueError(f"Feature name {cls.name!r} is registered twice.")
    FEATURES[cls.name] = cls
    return cls


def create_feature(name: str, **params: Any) -> Feature:
    """The feature registered as ``name``, built with ``params``."""
    if name not in FEATURES:
        close = difflib.get_close_matches(name, FEATURES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"Unknown feature '{name}'.{hint} Known features: {', '.join(sorted(FEATURES))}."
        )
    return FEATURES[name](**params)
