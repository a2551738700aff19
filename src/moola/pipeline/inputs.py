"""What a model sees of labeled windows, and the parameters those inputs imply.

``model_inputs`` turns raw OHLC windows ``(N, T, 4)`` into a model's input view:

- ``relative``: the 11-channel scale-free bar-by-bar view (sequence models' default);
- ``ohlc``: the raw prices;
- ``price_action``: the 20 window features of ``price_action_features`` (tabular models'
  default).

A dual-input model (its card names ``packed_features``, e.g. ``enhanced_simple_lstm``)
reads a window view AND that window's 20 price-action features. The estimator interface
passes one array, so the features ride in the last 20 channels of step 0 (zeros on the
other steps; the layout of ``moola.models.nn.pack_features``): ``(N, T, D + 20)``. Each
window's features are computed from that window's own bars only, as are its relative
bars, so nothing crosses from one window (or a later bar) into another.

``model_params`` completes a run's model parameters from what the inputs and a pretrained
encoder imply (``n_features`` of a dual-input model; ``simple_lstm``'s
``encoder_projection`` when an encoder is given; ``fm_probe``'s and ``fm_forecast``'s
``backbone_sha256``, the content hash of their weights folder), so the run's manifest
records the parameters the model was actually built with.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from moola.core.errors import ConfigError
from moola.features.window import PRICE_ACTION_COLUMNS, price_action_features, relative_windows
from moola.models import model_card
from moola.pretrain.transfer import encoder_params

__all__ = ["InputView", "model_inputs", "model_params"]

InputView = Literal["auto", "relative", "price_action", "ohlc"]
#: Models that read a foundation model's weights folder (their manifest names its hash).
_FOUNDATION = ("fm_probe", "fm_forecast")


def model_inputs(view: InputView, model: str, X: np.ndarray) -> tuple[np.ndarray, str]:
    """The array model ``model`` sees for OHLC windows ``X`` and the name of that view.

    ``auto`` is the view the model's card names (``fm_probe``: ``ohlc``), else
    ``price_action`` for tabular models and ``relative`` for the others. A dual-input model
    gets its window view with the price-action features packed in (named e.g.
    ``"relative+price_action"``); ``price_action`` alone is refused for it, since it
    would leave the window branch nothing to read.
    """
    card = model_card(model)
    if view == "auto":
        view = card.inputs or ("price_action" if card.input_kind == "tabular" else "relative")
    if not card.packed_features:
        return _view(view, X), view
    if view == "price_action":
        raise ConfigError(
            f"Model '{model}' reads a window view beside its own price-action features; "
            "inputs='price_action' would give it the features alone. Use inputs='relative' "
            "(the default) or 'ohlc'."
        )
    windows = _view(view, X)  # (N, T, D)
    features = price_action_features(X).to_numpy(np.float64)  # (N, 20), each from its window
    return _packed(windows, features), f"{view}+{card.packed_features}"


def model_params(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` completed with what ``model_inputs`` and a ``pretrained_encoder`` imply.

    A dual-input model gets ``n_features`` = 20 (another value is refused: the inputs
    carry 20); a model given ``pretrained_encoder`` gets the switch that makes it hold an
    encoder (``moola.pretrain.transfer.encoder_params``), or a one-line error for a model
    that cannot hold one.
    """
    card = model_card(model)
    out = dict(params)
    if card.packed_features:
        n_features = len(PRICE_ACTION_COLUMNS)
        given = out.get("n_features", n_features)
        if given != n_features:
            raise ConfigError(
                f"n_features={given!r}, but {model}'s inputs carry the {n_features} "
                "price-action features of each window; drop n_features from its parameters."
            )
        out["n_features"] = n_features
    if out.get("pretrained_encoder") is not None:
        out = encoder_params(model, out)
    if model in _FOUNDATION and out.get("path") and out.get("backbone_sha256") is None:
        # the manifest names the exact weights (the folder is the user's, not the run's)
        from moola.models.foundation import directory_sha256

        out["backbone_sha256"] = directory_sha256(out["path"])
    return out


def _view(view: str, X: np.ndarray) -> np.ndarray:
    if view == "relative":
        return relative_windows(X)
    if view == "price_action":
        return price_action_features(X).to_numpy(np.float64)
    if view == "ohlc":
        return np.asarray(X, dtype=np.float32)
    raise ConfigError(f"inputs must be auto, relative, price_action or ohlc; got {view!r}.")


def _packed(windows: np.ndarray, features: np.ndarray) -> np.ndarray:
    """``(N, T, D)`` + ``(N, F)`` -> ``(N, T, D + F)`` float64 in the dual-input layout."""
    import torch

    from moola.models.nn import pack_features

    packed = pack_features(  # np.array copies: torch wants writable arrays
        torch.from_numpy(np.array(windows, dtype=np.float64)),
        torch.from_numpy(np.array(features, dtype=np.float64)),
    )
    return packed.numpy()
