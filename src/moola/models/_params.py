"""Library refusals of user-given model parameters, as ``ConfigError``s that name them.

scikit-learn checks constructor parameters only when ``fit`` runs (raising its
``InvalidParameterError``, a ``ValueError`` and ``TypeError``), LightGBM in its C++ core
(``LightGBMError``), aeon with plain ``ValueError``s. A user who wrote
``--params '{"C": -1}'`` should read which parameter is wrong, not a traceback, so the
parameter-dependent part of a ``fit`` runs inside :func:`params_checked_by_library`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from moola.core.errors import ConfigError

# Raised by the libraries when a parameter has a wrong type or value. LightGBM's own error
# type is matched by name so that importing this module does not import LightGBM.
_REFUSALS = (ValueError, TypeError, OverflowError)
_LIBRARY_ERRORS = frozenset({"LightGBMError"})


@contextmanager
def params_checked_by_library(model: str, given: Mapping[str, Any]) -> Iterator[None]:
    """Run the block; a library error while ``given`` parameters are in play becomes a
    ``ConfigError`` naming ``model``, the parameters and the library's own message.

    With no ``given`` parameters the error is moola's (defaults are tested) and passes
    through unchanged.
    """
    try:
        yield
    except Exception as exc:
        refused = isinstance(exc, _REFUSALS) or type(exc).__name__ in _LIBRARY_ERRORS
        if not given or not refused:
            raise
        message = " ".join(str(exc).split()).rstrip(" .") or type(exc).__name__
        shown = ", ".join(f"{key}={value!r}" for key, value in given.items())
        raise ConfigError(
            f"{model}: the model's library refused the parameter(s) {shown}: "
            f"{message}. Fix the named parameter (see `moola models list` and the model's "
            "docstring for what it takes)."
        ) from None


def non_default(factory: Callable[..., Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``params`` that differ from ``factory``'s defaults: what a user set."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(factory).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}
