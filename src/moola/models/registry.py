"""The model registry: the one place a model name becomes an estimator.

Every model has a card (role, inputs, outputs, intended use, the tasks it learns). ``ACTIVE``
models are built by ``create(name, **params)``, which first checks ``params`` against the
model's ``Params`` model (``moola.models.params``; ``card.params``), so a bad value or name
is refused before any work; ``LEGACY`` names raise an error that says why they were retired
and what to use instead.

A card's ``tasks`` say what ``task=`` the model takes (``classification``, ``regression``,
``multitask``); ``create(name, task=...)`` refuses another, naming the models that take it.
A card's ``preset`` holds the parameters its model takes by default where they differ from
the generic defaults (the DOMAIN figures of ``../shared/DOMAIN.md``: the transformer trains
with AdamW, weight decay 0.01, one warm-up epoch then cosine decay and gradient clipping 1.0;
the BiLSTM stops early after 5 epochs without improvement). A given parameter overrides
its preset; the model's ``Params`` defaults and the fitted estimator use the preset.
``ALIASES`` are the short names the CLI also accepts (``logreg``, ``lightgbm``).

Entries name their estimator as ``"module:attribute"`` and are imported only when created
(as Gymnasium's registry does). This keeps ``import moola.models`` light, and lets the
neural estimators, which need the training loop, live in ``moola.training`` without this
layer importing the one above it.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from moola.core.errors import ConfigError
from moola.models.base import TASKS, Estimator, InputKind, Task

if TYPE_CHECKING:
    from moola.models.params import ModelParams

Role = Literal["ACTIVE", "LEGACY"]


@dataclass(frozen=True)
class ModelCard:
    """What a model is, takes, gives and is for; ``moola models list`` prints these."""

    name: str
    role: Role
    input_kind: InputKind
    outputs: str
    intended_use: str
    entry_point: str = ""
    fixed_params: dict[str, Any] = field(default_factory=dict)
    retired_because: str = ""
    replacement: str = ""
    reenable: str = ""
    """For a LEGACY model: whether and how it can be brought back if one must."""
    packed_features: str = ""
    """Engineered window features the model reads beside the window itself, packed into
    the last channels of step 0 (``"price_action"``: the 20 of
    ``moola.features.window.price_action_features``); empty for single-input models."""
    tasks: tuple[Task, ...] = ("classification",)
    """What the model learns (its ``task=`` parameter): class probabilities, values, or
    several heads at once."""
    preset: dict[str, Any] = field(default_factory=dict)
    """Parameters the model takes by default where they differ from the generic defaults
    (overridable, unlike ``fixed_params``)."""
    inputs: str = ""
    """The input view ``inputs="auto"`` gives this model (``moola.pipeline.inputs``); empty:
    ``price_action`` for tabular models, ``relative`` for sequence models."""

    @property
    def params(self) -> type[ModelParams]:
        """This ACTIVE model's ``Params`` model (``moola.models.params.params_model``)."""
        from moola.models.params import params_model  # params reads the cards: no cycle

        return params_model(self.name)


_NEURAL = "moola.training.neural:NeuralEstimator"
_NO_IMPLEMENTATION = (
    "It is not available in this version: moola ships no implementation of it, so no flag, "
    "setting or environment variable brings it back. If you must run it, implement it "
    "behind the Estimator interface (moola.models.base), register it as ACTIVE with an "
    "entry point in moola.models.registry.MODEL_CARDS, and compare it out of fold against "
    "its replacement on the same split."
)

#: The DOMAIN transformer's training (AdamW, warm-up + cosine, grad clip 1.0).
TRANSFORMER_PRESET: dict[str, Any] = {
    "optimizer": "adamw",
    "weight_decay": 0.01,
    "warmup_epochs": 1,
    "lr_schedule": "cosine",
    "grad_clip": 1.0,
}

MODEL_CARDS: dict[str, ModelCard] = {
    card.name: card
    for card in (
        ModelCard(
            "simple_lstm",
            "ACTIVE",
            "sequence",
            "class probabilities",
            "Small streaming-safe classifier for tiny labeled sets (unidirectional LSTM 72, "
            "4-head causal self-attention, FC 128-64-K; 70,578 parameters on (105, 4): an LSTM "
            "of 128 alone would exceed the 70K budget). Can load a pretrained 2x128 BiLSTM "
            "encoder through a 256->72 projection.",
            _NEURAL,
            {"architecture": "simple_lstm"},
        ),
        ModelCard(
            "enhanced_simple_lstm",
            "ACTIVE",
            "sequence",
            "class probabilities",
            "Dual input: windows through a bidirectional LSTM encoder (pretrained weights "
            "loadable) and ~20 engineered window features through an MLP, fused before the "
            "head. X is (N, T, D + F): the last F channels of the first step hold the features "
            "(moola train packs each window's 20 price-action features beside its bars).",
            _NEURAL,
            {"architecture": "enhanced_simple_lstm"},
            packed_features="price_action",
        ),
        ModelCard(
            "bilstm",
            "ACTIVE",
            "sequence",
            "class probabilities (or a regression value)",
            "Stacked bidirectional LSTM (2 x 64, dropout 0.2, FC 128-64-K; 157K parameters on "
            "(60, 31)): the per-symbol direction model. Early stopping patience 5.",
            _NEURAL,
            {"architecture": "bilstm"},
            tasks=("classification", "regression"),
            preset={"patience": 5},
        ),
        ModelCard(
            "cnn_lstm_attention",
            "ACTIVE",
            "sequence",
            "class probabilities, values, or one output per head",
            "Conv1d features, bidirectional LSTM, attention pooling; with task='multitask' one "
            "head per target (heads={'direction': 2, 'volatility': 'regression', 'regime': 3}) "
            "trained with learned uncertainty weighting (Kendall et al. 2018).",
            _NEURAL,
            {"architecture": "cnn_lstm_attention"},
            tasks=("classification", "regression", "multitask"),
        ),
        ModelCard(
            "transformer",
            "ACTIVE",
            "sequence",
            "class probabilities or values (trend strength)",
            "Input projection, sinusoidal positions, 4 encoder layers x 8 heads, d_model 128, "
            "FFN 512, head 128-512-K: the multi-symbol trend-strength model. Trains with AdamW "
            "(weight decay 0.01), 1 warm-up epoch then cosine decay, grad clip 1.0.",
            _NEURAL,
            {"architecture": "transformer"},
            tasks=("classification", "regression"),
            preset=TRANSFORMER_PRESET,
        ),
        ModelCard(
            "adapter_lstm",
            "ACTIVE",
            "sequence",
            "class probabilities",
            "Frozen TS2Vec dilated-conv encoder (pretrained on unlabeled bars; hidden 64, "
            "representation 320, depth 10) read by a 320-16-320 bottleneck adapter, an LSTM "
            "32 and an MLP head over "
            "[last LSTM state, max-pooled representation]; 705,138 parameters, 67,250 "
            "trainable, on (105, 11) relative windows.",
            _NEURAL,
            {"architecture": "adapter_lstm"},
        ),
        ModelCard(
            "minirocket",
            "ACTIVE",
            "sequence",
            "class probabilities",
            "MiniRocket random convolution features (aeon) + logistic regression: the fixed-"
            "feature control any learned model must beat.",
            "moola.models.minirocket:MiniRocketClassifier",
        ),
        ModelCard(
            "fm_probe",
            "ACTIVE",
            "sequence",
            "class probabilities",
            "A frozen foundation model (Chronos-Bolt, Kronos or TimesFM, read from a local "
            "folder) embeds each window; a logistic regression probe classifies the "
            "embeddings.",
            "moola.models.fm_probe:FoundationProbe",
            inputs="ohlc",
        ),
        ModelCard(
            "fm_forecast",
            "ACTIVE",
            "sequence",
            "P(up) or a forecast return",
            "Zero-shot forecasts of a foundation model (Chronos-Bolt or TimesFM, read from a "
            "local folder), nothing trained: P(next-horizon return > 0) from the forecast "
            "deciles, or the median forecast return (task='regression'); a stacking member.",
            "moola.models.fm_forecast:FoundationForecaster",
            inputs="ohlc",
            tasks=("classification", "regression"),
        ),
        ModelCard(
            "logistic_regression",
            "ACTIVE",
            "tabular",
            "class probabilities",
            "Standardised logistic regression on engineered features: the first baseline.",
            "moola.models.tabular:TabularClassifier",
            {"kind": "logistic_regression"},
        ),
        ModelCard(
            "random_forest",
            "ACTIVE",
            "tabular",
            "class probabilities",
            "Random forest on engineered features.",
            "moola.models.tabular:TabularClassifier",
            {"kind": "random_forest"},
        ),
        ModelCard(
            "gradient_boosting",
            "ACTIVE",
            "tabular",
            "class probabilities or values",
            "LightGBM gradient boosting on engineered features (LGBMRegressor for "
            "task='regression', one per target column).",
            "moola.models.tabular:TabularClassifier",
            {"kind": "gradient_boosting"},
            tasks=("classification", "regression"),
        ),
        ModelCard(
            "stack",
            "ACTIVE",
            "probabilities",
            "class probabilities",
            "Meta-learner (logistic regression or random forest) over base models' "
            "out-of-fold probabilities; never trained on in-fold predictions.",
            "moola.models.stack:StackingClassifier",
        ),
        ModelCard(
            "cnn_transformer",
            "LEGACY",
            "sequence",
            "class probabilities",
            "Retired hybrid.",
            retired_because="too large for the labeled set sizes moola "
            "targets (it overfit 174 windows in every seed)",
            replacement="simple_lstm",
            reenable=_NO_IMPLEMENTATION,
        ),
        ModelCard(
            "rwkv_ts",
            "LEGACY",
            "sequence",
            "class probabilities",
            "Retired recurrent transformer.",
            retired_because="never beat simple_lstm out of "
            "fold and had no maintained implementation",
            replacement="simple_lstm",
            reenable=_NO_IMPLEMENTATION,
        ),
    )
}


#: Short names accepted for a model: alias -> registry name.
ALIASES: dict[str, str] = {"logreg": "logistic_regression", "lightgbm": "gradient_boosting"}


def model_card(name: str) -> ModelCard:
    """The card of ``name`` (or of the model an alias names); unknown names get a 'did you
    mean' and the list of models."""
    name = ALIASES.get(name, name)
    if name not in MODEL_CARDS:
        close = difflib.get_close_matches(name, MODEL_CARDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        active = ", ".join(n for n, c in MODEL_CARDS.items() if c.role == "ACTIVE")
        raise ConfigError(f"Unknown model {name!r}.{hint} Active models: {active}.")
    return MODEL_CARDS[name]


def require_active(name: str) -> ModelCard:
    """The card of ``name`` if it can be built; a cheap check to run before any work.

    A LEGACY name raises ``ConfigError`` saying why it was retired, what replaces it and
    whether (and how) it can be brought back; an unknown name gets a 'did you mean'.
    """
    card = model_card(name)
    if card.role == "LEGACY":
        raise ConfigError(
            f"Model '{name}' is retired (LEGACY): {card.retired_because}. "
            f"Use '{card.replacement}' instead. {card.reenable}".rstrip()
        )
    return card


def require_task(card: ModelCard, task: Any) -> None:
    """Raise ``ConfigError`` unless model ``card`` learns ``task``, naming the models that
    do (or the valid tasks, for an unknown one)."""
    if task in card.tasks:
        return
    if task not in TASKS:
        raise ConfigError(
            f"Model '{card.name}': unknown task {task!r}; choose one of {', '.join(TASKS)}."
        )
    able = [c.name for c in list_models("ACTIVE") if task in c.tasks]
    raise ConfigError(
        f"Model '{card.name}' does not support task='{task}' (it supports "
        f"{', '.join(card.tasks)}). Models that support {task}: {', '.join(able)}."
    )


def create(name: str, **params: Any) -> Estimator:
    """A new, unfitted estimator for model ``name`` with ``params``.

    ``params`` are checked first (``moola.models.params.validate_params``): an unknown
    name, a task the model does not learn, an impossible value or an override of a fixed
    parameter raises ``ConfigError`` naming it before anything is built. The estimator
    stores the parameters as given (its card's ``preset`` applies to those not given).
    """
    from moola.models.params import given_params  # params reads the cards: no cycle

    card = require_active(name)
    checked = given_params(name, params)
    module_name, attribute = card.entry_point.split(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    return factory(**{**checked, **card.fixed_params})


def list_models(role: Role | None = None) -> list[ModelCard]:
    """Cards of every registered model (or only those of ``role``), in registry order."""
    return [card for card in MODEL_CARDS.values() if role is None or card.role == role]
