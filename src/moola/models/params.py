"""Per-model ``Params``: every ACTIVE model's parameters typed, bounded and checked before
any work starts, and tuning search spaces checked against them.

``params_model(name)`` is a frozen pydantic model that rejects unknown keys (the house
style of ``moola.features.base.FeatureParams``): one typed field per parameter the model
takes, its default equal to what the estimator uses when the parameter is not given, and
``Field`` bounds for what is impossible (``epochs >= 1``, ``0 <= dropout < 1``, ``C > 0``,
``n_estimators >= 1``; ``heads`` must divide ``hidden`` where the module says so).
``validate_params(name, params)`` returns the complete resolved parameters or raises one
``ConfigError`` naming the model, each bad parameter, its value and what it may be (with a
'did you mean' for unknown names). ``moola.models.create`` goes through it, so every caller
is checked before a fit.

One home per concept: no field is written here a second time. Each Params model is derived
from where its model already declares its parameters:

- neural models (``NeuralEstimator``): the training parameters are ``TrainerConfig``
  itself (``moola.models.training_params``, which the trainer reads), with the defaults
  of the model card's ``preset`` where it has one (the transformer's AdamW, warm-up and
  cosine); the base ``NeuralParams`` adds the estimator's own keys (``task``, ``verbose``,
  ``pretrained_encoder``, ``freeze_epochs``, ``encoder_lr_scale``, ``n_classes``), which
  it takes through ``**params`` with no config class, so this is their typed declaration;
  and each architecture adds the fields of its module config dataclass
  (``moola.models.nn``), whose annotated types (``Size``, ``Rate``, ``Widths``, ``Heads``)
  carry the bounds the config itself enforces (so the symbol options of the sequence
  models, ``n_symbols`` an int >= 0 and ``symbol_dim`` an int >= 1, are declared once, in
  ``moola.models.nn``'s configs, and checked here). The cross-field rules (``heads`` dividing
  ``hidden``, one kernel size per convolution) are checked by building that config, and
  the task rules (a regression trains with ``mse``, its default; a classifier does not;
  ``task="multitask"`` needs ``heads`` and ``heads`` needs it) by ``NeuralParams``;
- tabular models, MiniRocket and the stacking meta-learner: next to their estimator
  (``tabular_params``, ``minirocket_params``, ``stack_params``), with defaults read from
  the estimator's own signature or library model so they cannot drift. Library parameters
  moola sets no bound on are fields too (their defaults are the library's), and the
  scikit-learn ones are checked by scikit-learn's own parameter constraints; what only the
  library can judge (LightGBM's core) is still refused at fit time by
  ``moola.models._params.params_checked_by_library``.

Search spaces (for tuning) map a parameter to a range or to choices::

    {"lr": {"low": 1e-4, "high": 1e-2, "log": True},      # float range, log-uniform
     "hidden": {"low": 32, "high": 128, "step": 8},       # int range (all of low, high, step ints)
     "pooling": {"choices": ["mean", "last"]}}            # categorical

``low`` and ``high`` are both included; ``log`` (default False) needs ``low > 0`` and no
``step``; ``step`` (default 1 for ints, none for floats) must be > 0. ``check_search_space``
refuses an unknown or fixed parameter, a range on a parameter that is not a number, a float
range on an integer parameter, and any value the Params model would refuse (every value of
an int range, both ends and the middle of a float range, every choice), each checked with
the other parameters at their defaults. Rules that tie two parameters together (``heads``
dividing ``hidden``) are checked again per trial by ``validate_params``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo

from moola.core.errors import ConfigError
from moola.models.registry import require_active, require_task
from moola.models.training_params import TrainerConfig

__all__ = [
    "ModelParams",
    "NClasses",
    "Seed",
    "check_search_space",
    "check_task_params",
    "from_signature",
    "given_params",
    "neural_params",
    "params_model",
    "validate_params",
]

Seed = Annotated[int, Field(ge=0, lt=2**32)]
"""A random seed (numpy's range: 0 <= seed < 2**32)."""
NClasses = Annotated[int, Field(ge=2)] | None
"""Number of classes K; None takes it from the training labels."""

_RANGE_KEYS = frozenset({"low", "high", "log", "step"})
_MAX_CHECKED = 513  # values of an int range checked one by one; beyond, an even sample


class ModelParams(BaseModel):
    """Base of every model's parameters: frozen, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    from_data: ClassVar[tuple[str, ...]] = ()
    """Parameters whose default None means "taken from the data at fit time"."""

    def resolved(self) -> dict[str, Any]:
        """The complete parameters: every field, defaults filled."""
        return self.model_dump()


def params_model(name: str) -> type[ModelParams]:
    """The ``Params`` model of ACTIVE model ``name`` (unknown or LEGACY names raise)."""
    card = require_active(name)
    return _params_model(card.name)


@functools.cache
def _params_model(name: str) -> type[ModelParams]:
    card = require_active(name)
    builder = _BUILDERS.get(card.entry_point)
    if builder is None:
        raise ConfigError(
            f"Model '{name}' ({card.entry_point}) has no Params model; add a builder for its "
            "estimator to moola.models.params._BUILDERS."
        )
    module_name, attribute = builder.split(":")
    return getattr(importlib.import_module(module_name), attribute)(card.name, card.fixed_params)


def validate_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The complete, resolved parameters of model ``name`` for the given ``params``.

    Raises ``ConfigError`` naming the model, each refused parameter, its value and what it
    may be (or, for an unknown name, a 'did you mean' and the names it takes), and for a
    parameter the model card fixes to another value.
    """
    card = require_active(name)
    require_task(card, params.get("task", "classification"))
    model = params_model(name)
    if "task" not in model.model_fields and params.get("task") == "classification":
        params = {k: v for k, v in params.items() if k != "task"}  # a classifier-only model
    clashes = sorted(
        k for k in card.fixed_params if k in params and params[k] != card.fixed_params[k]
    )
    if clashes:
        raise ConfigError(
            f"Model '{name}' fixes {clashes} to "
            f"{ {k: card.fixed_params[k] for k in clashes} }; do not override it."
        )
    try:
        checked = model.model_validate({**params, **card.fixed_params})
    except ValidationError as exc:
        raise ConfigError(_describe(name, model, exc)) from None
    return checked.resolved()


def given_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` after ``validate_params``: what a caller gave, values parsed where parsing
    changed them ("5" -> 5) and kept as given where equal (1 for 1.0, [64] for (64,)), so
    an estimator's stored parameters and saved files stay what the caller wrote."""
    resolved = validate_params(name, params)
    model = params_model(name)
    out = {}
    for key, value in params.items():
        if key not in resolved:
            continue  # task="classification" for a model that learns nothing else
        parsed = resolved.get(key, value)
        if key in model.from_data and parsed is None:
            continue  # None: taken from the data, as when not given
        out[key] = value if _same(value, parsed) else parsed
    return out


def check_search_space(name: str, space: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a search space of model ``name`` that could propose a parameter it refuses.

    ``space`` maps a parameter to ``{"low": x, "high": y, "log": bool, "step": s}`` or to
    ``{"choices": [...]}`` (the format is in the module docstring). Raises ``ConfigError``
    naming the parameter for an unknown or fixed parameter, a malformed entry, a range of
    the wrong type, or a value outside what the Params model allows.
    """
    card = require_active(name)
    model = params_model(name)
    if not isinstance(space, Mapping):
        raise ConfigError(
            f"{name} search space: expected a mapping of parameter -> range or choices, got "
            f"{type(space).__name__}."
        )
    known = [key for key in model.model_fields if key not in card.fixed_params]
    for param, spec in space.items():
        where = f"{name} search space, parameter '{param}'"
        if param in card.fixed_params:
            raise ConfigError(
                f"{where}: the model fixes it to {card.fixed_params[param]!r}; it cannot be "
                "searched. Drop it from the space."
            )
        if param not in model.model_fields:
            close = difflib.get_close_matches(str(param), known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{where}: unknown parameter.{hint} It takes: {', '.join(sorted(known))}."
            )
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"{where}: expected {{'low': ..., 'high': ...}} or {{'choices': [...]}}, "
                f"got {spec!r}."
            )
        if "choices" in spec:
            _check_choices(model, card.fixed_params, where, param, spec)
        else:
            _check_range(model, card.fixed_params, where, param, spec)


# -- search-space checks -------------------------------------------------------------------


def _check_choices(
    model: type[ModelParams],
    fixed: Mapping[str, Any],
    where: str,
    param: str,
    spec: Mapping[str, Any],
) -> None:
    if set(spec) != {"choices"}:
        raise ConfigError(
            f"{where}: 'choices' cannot be mixed with {sorted(set(spec) - {'choices'})}; give "
            "either choices or a low/high range."
        )
    choices = spec["choices"]
    if not isinstance(choices, list | tuple) or not choices:
        raise ConfigError(f"{where}: 'choices' must be a non-empty list; got {choices!r}.")
    for choice in choices:
        _check_value(model, fixed, where, param, choice, "choice", strict=False)


def _check_range(
    model: type[ModelParams],
    fixed: Mapping[str, Any],
    where: str,
    param: str,
    spec: Mapping[str, Any],
) -> None:
    unknown = sorted(set(spec) - _RANGE_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown}; a range takes low, high, log and step, "
            "choices take 'choices'."
        )
    missing = [key for key in ("low", "high") if key not in spec]
    if missing:
        raise ConfigError(f"{where}: a range needs {' and '.join(missing)}.")
    low, high = spec["low"], spec["high"]
    log, step = spec.get("log", False), spec.get("step")
    for key, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (not _is_number(value) or not math.isfinite(value)):
            raise ConfigError(f"{where}: {key} must be a finite number; got {value!r}.")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false; got {log!r}.")
    if low > high:
        raise ConfigError(f"{where}: low={low!r} is above high={high!r}.")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: step must be > 0; got {step!r}.")
    if log and step is not None:
        raise ConfigError(f"{where}: a log range takes no step; drop one of them.")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0; got low={low!r}.")
    integer = all(isinstance(v, int) for v in (low, high, 1 if step is None else step))
    kind = _numeric_kind(model.model_fields[param].annotation)
    if kind is None:
        raise ConfigError(
            f"{where}: it is not a number, so it takes no low/high range; list its values "
            "as {'choices': [...]}."
        )
    if kind == "int" and not integer:
        raise ConfigError(
            f"{where}: it is an integer parameter, so low, high and step must be integers; "
            f"got low={low!r}, high={high!r}, step={step!r}."
        )
    what = "range value" if integer else "range end"
    for value in _range_values(low, high, step, log, integer):
        _check_value(model, fixed, where, param, value, what, strict=True)


def _range_values(low: Any, high: Any, step: Any, log: bool, integer: bool) -> list[Any]:
    """The values to check: every one of an int range (an even sample of a long one), or a
    float range's ends and middle (its bounds are intervals, so that covers it)."""
    if not integer:
        middle = math.sqrt(low * high) if log else (low + high) / 2
        return [float(low), middle, float(high)]
    step = step or 1
    count = (high - low) // step + 1
    if count <= _MAX_CHECKED:
        values = [low + k * step for k in range(count)]
    else:
        values = sorted(
            {low + round(k * (count - 1) / (_MAX_CHECKED - 1)) * step for k in range(_MAX_CHECKED)}
        )
    return [*values, high] if values[-1] != high else values


def _check_value(
    model: type[ModelParams],
    fixed: Mapping[str, Any],
    where: str,
    param: str,
    value: Any,
    what: str,
    *,
    strict: bool,
) -> None:
    try:
        model.model_validate({**fixed, param: value}, strict=strict)
    except ValidationError as exc:
        problem = _describe("", model, exc).removeprefix(": ").rstrip(".")
        raise ConfigError(
            f"{where}: the {what} {value!r} is refused by the model's Params ({problem}). "
            "Narrow the space to values the model takes."
        ) from None


def _numeric_kind(annotation: Any) -> str | None:
    """ "int" or "float" for a (possibly bounded, possibly optional) number field, "any" for
    an untyped one (checked by value only), None for anything else."""
    if annotation is Any:
        return "any"
    if typing.get_origin(annotation) is Annotated:
        return _numeric_kind(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = {_numeric_kind(a) for a in typing.get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- messages --------------------------------------------------------------------------------


def _describe(name: str, model: type[ModelParams], exc: ValidationError) -> str:
    """One sentence naming each refused parameter, its value and what it may be."""
    problems: list[str] = []
    seen: set[str] = set()
    known = sorted(model.model_fields)
    for error in exc.errors():
        loc = error["loc"]
        message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
        message = message.replace("Input should be", "must be")
        if not loc:
            problems.append(message)
            continue
        key = str(loc[0])
        if key in seen:
            continue  # one problem per parameter (a union reports one per branch)
        seen.add(key)
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            problems.append(f"unknown parameter '{key}'.{hint} It takes: {', '.join(known)}")
            continue
        index = "".join(f"[{part}]" for part in loc[1:] if isinstance(part, int))
        hint = ""
        if error["type"] == "literal_error" and key in model.model_fields:
            choices = [str(c) for c in _literals(model.model_fields[key].annotation)]
            close = difflib.get_close_matches(str(error["input"]), choices, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
        problems.append(f"'{key}{index}' {message} (got {key}{index}={error['input']!r}).{hint}")
    sentences = [p if p.endswith((".", "?")) else f"{p}." for p in problems]
    return f"{name}: " + " ".join(sentences)


def _literals(annotation: Any) -> list[Any]:
    """The values of the ``Literal`` types in ``annotation`` (through unions and bounds)."""
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    return [v for arg in typing.get_args(annotation) for v in _literals(arg)]


def _same(given: Any, parsed: Any) -> bool:
    """Whether ``parsed`` is ``given`` unchanged in meaning: equal values of one type, an
    int for a float field (1 for 1.0), a list for a tuple field ([64] for (64,))."""
    if isinstance(given, list | tuple) and isinstance(parsed, list | tuple):
        return len(given) == len(parsed) and all(map(_same, given, parsed))
    if type(given) is type(parsed):
        return bool(given == parsed)
    return (
        _is_number(given)
        and isinstance(given, int)
        and isinstance(parsed, float)
        and (given == parsed)
    )


# -- builders --------------------------------------------------------------------------------


def from_signature(
    model_name: str,
    factory: Callable[..., Any],
    field_types: Mapping[str, Any],
    *,
    base: type[ModelParams] = ModelParams,
    fixed: Mapping[str, Any] | None = None,
    extra_fields: Mapping[str, tuple[Any, Any]] | None = None,
    validators: Sequence[Callable[[Any], Any]] = (),
) -> type[ModelParams]:
    """A Params model with one field per named parameter of ``factory``: its type (with
    bounds) from ``field_types``, its default from the signature (so the two cannot drift).

    ``fixed`` parameters become ``Literal`` fields of their fixed value; ``extra_fields``
    (name -> (type, default)) add what a ``**params`` catch-all accepts; ``validators``
    check the whole, validated model (raise ``ValueError`` naming the parameter).
    """
    fixed = dict(fixed or {})
    fields: dict[str, Any] = {}
    for parameter in inspect.signature(factory).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD or parameter.name == "self":
            continue
        if parameter.name in fixed:
            value = fixed[parameter.name]
            fields[parameter.name] = (Literal[value], value)
        else:
            fields[parameter.name] = (field_types[parameter.name], parameter.default)
    fields.update(extra_fields or {})
    return create_model(
        _class_name(model_name),
        __base__=base,
        __module__=__name__,
        __validators__={
            f"_check_{i}": model_validator(mode="after")(check)
            for i, check in enumerate(validators)
        },
        **fields,
    )


def _class_name(model_name: str) -> str:
    return "".join(part.capitalize() for part in model_name.split("_")) + "Params"


# -- neural models ---------------------------------------------------------------------------

_NEURAL_FROM_DATA = ("input_dim", "seq_len", "n_classes")
_CLASSIFICATION_LOSSES = ("cross_entropy", "focal", "bce")


def _regression_loss_default(data: Any) -> Any:
    """A regression's ``loss`` defaults to ``mse`` (``TrainerConfig``'s is cross-entropy)."""
    if isinstance(data, Mapping) and data.get("task") == "regression" and "loss" not in data:
        return {**data, "loss": "mse"}
    return data


def check_task_params(params: Any) -> Any:
    """The rules tying a neural model's ``task`` to its loss, labels and heads (raises
    ``ValueError`` naming the parameters): ``NeuralParams``' and ``NeuralEstimator``'s."""
    task, loss = params.task, params.loss
    if getattr(params, "output", "linear") == "sigmoid":
        raise ValueError(
            "output='sigmoid' squashes the outputs into [0, 1], but a neural estimator trains "
            "classification on logits and regression on standardised targets; leave "
            "output='linear' (the sigmoid is for training the module directly with Trainer)"
        )
    if task == "multitask" and params.architecture != "cnn_lstm_attention":
        raise ValueError(
            f"task='multitask' (one output head per target) is supported by "
            f"cnn_lstm_attention only, not {params.architecture}"
        )
    heads = getattr(params, "heads", None) if params.architecture == "cnn_lstm_attention" else None
    if task == "classification" and loss == "mse":
        raise ValueError(
            "loss='mse' is a regression loss but task='classification'; pass "
            "task='regression' for real-valued targets, or use loss='cross_entropy', 'focal' "
            "or 'bce'"
        )
    if task == "regression":
        if loss in _CLASSIFICATION_LOSSES:
            raise ValueError(
                f"loss='{loss}' is a classification loss but task='regression'; a regression "
                "trains with loss='mse' (its default): drop loss or pass loss='mse'"
            )
        for key in ("class_weights", "n_classes"):
            if getattr(params, key) is not None:
                raise ValueError(
                    f"{key}={getattr(params, key)!r} is for classification, but "
                    "task='regression'; drop it"
                )
    if task == "multitask":
        if heads is None:
            raise ValueError(
                "task='multitask' needs heads: an ordered mapping of head name -> "
                "'regression' or a number of classes, e.g. heads={'direction': 2, "
                "'volatility': 'regression', 'regime': 3}"
            )
        if len(heads) < 2:
            raise ValueError(
                f"task='multitask' needs at least two heads (got heads={heads!r}); for one "
                "target use task='classification' or task='regression'"
            )
        if loss not in ("cross_entropy", "focal"):
            raise ValueError(
                f"loss='{loss}' cannot train a multi-task model: its classification heads "
                "use loss='cross_entropy' (default) or 'focal' and its regression heads mse"
            )
        if params.n_classes is not None:
            raise ValueError(
                "n_classes is not used by task='multitask': each class head's count is in heads"
            )
    elif heads is not None:
        raise ValueError(
            f"heads={heads!r} defines the heads of a multi-task model; pass task='multitask' "
            "with it, or drop heads"
        )
    return params


@functools.cache
def _neural_base() -> type[ModelParams]:
    """``NeuralParams``: ``TrainerConfig``'s fields (epochs, batch_size, lr, seed, device,
    patience, ...) and ``NeuralEstimator``'s own keys, shared by every neural model."""

    def fine_tuning(params: Any) -> Any:
        if params.freeze_epochs and params.pretrained_encoder is None:
            raise ValueError(
                f"freeze_epochs={params.freeze_epochs} freezes a pretrained encoder, but no "
                "pretrained_encoder was given; pass pretrained_encoder=PATH or drop "
                "freeze_epochs"
            )
        return params

    return create_model(
        "NeuralParams",
        __base__=(TrainerConfig, ModelParams),
        __module__=__name__,
        __validators__={
            "_fine_tuning": model_validator(mode="after")(fine_tuning),
            "_regression_loss": model_validator(mode="before")(_regression_loss_default),
            "_task": model_validator(mode="after")(check_task_params),
        },
        architecture=(str, Field("simple_lstm", description="moola.models.nn architecture.")),
        task=(
            Literal["classification", "regression", "multitask"],
            Field("classification", description="What the model learns (see models.base)."),
        ),
        verbose=(bool, Field(False, description="Progress bar while training (terminal).")),
        pretrained_encoder=(
            str | Path | None,
            Field(None, description="Encoder artifact loaded before training."),
        ),
        freeze_epochs=(
            int,
            Field(0, ge=0, description="Epochs the loaded encoder stays frozen."),
        ),
        encoder_lr_scale=(
            float,
            Field(0.1, gt=0, description="Loaded encoder's learning rate as a fraction of lr."),
        ),
        n_classes=(NClasses, Field(None, description="Classes K; None: from the labels.")),
    )


def neural_params(model_name: str, fixed: Mapping[str, Any]) -> type[ModelParams]:
    """``NeuralParams`` + the fields of the architecture's module config dataclass.

    ``input_dim``, ``seq_len`` and ``n_classes`` default to None: ``NeuralEstimator`` takes
    them from the data at fit time. ``task`` takes the card's tasks; the card's ``preset``
    sets the defaults of the trainer fields it names.
    """
    from moola.models.nn import ARCHITECTURES
    from moola.models.nn._layers import Heads

    card = require_active(model_name)
    architecture = fixed["architecture"]
    config_cls = ARCHITECTURES[architecture][0]
    hints = typing.get_type_hints(config_cls, include_extras=True)
    fields: dict[str, Any] = {
        "architecture": (Literal[architecture], architecture),
        "task": (Literal[card.tasks], "classification"),  # type: ignore[valid-type]
    }
    for key, value in card.preset.items():
        base = TrainerConfig.model_fields[key]
        fields[key] = (base.annotation, FieldInfo.merge_field_infos(base, default=value))
    for item in dataclasses.fields(config_cls):
        if item.name == "n_classes":
            continue  # the estimator's (>= 2, from the labels), in NeuralParams
        if hints[item.name] == Heads:  # checked by the config, whose words name the head
            fields[item.name] = (dict[str, Any] | None, item.default)
        elif item.name in _NEURAL_FROM_DATA:
            fields[item.name] = (hints[item.name] | None, None)
        else:
            fields[item.name] = (hints[item.name], item.default)

    def module_config(params: Any) -> Any:
        """Build the module config: its cross-field rules (heads dividing hidden, one
        kernel size per convolution) are checked where they are written."""
        values = {f.name: getattr(params, f.name) for f in dataclasses.fields(config_cls)}
        for key in _NEURAL_FROM_DATA:
            if values.get(key) is None:
                values.pop(key, None)  # the config's default stands in for the data's
        try:
            config_cls(**values)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return params

    model = create_model(
        _class_name(model_name),
        __base__=_neural_base(),
        __module__=__name__,
        __validators__={"_module_config": model_validator(mode="after")(module_config)},
        **fields,
    )
    model.from_data = _NEURAL_FROM_DATA
    return model


#: Estimator class (a card's entry point) -> "module:function" building its Params model
#: from (model name, the card's fixed parameters).
_BUILDERS: dict[str, str] = {
    "moola.training.neural:NeuralEstimator": "moola.models.params:neural_params",
    "moola.models.tabular:TabularClassifier": "moola.models.tabular:tabular_params",
    "moola.models.minirocket:MiniRocketClassifier": "moola.models.minirocket:minirocket_params",
    "moola.models.fm_probe:FoundationProbe": "moola.models.fm_probe:fm_probe_params",
    "moola.models.fm_forecast:FoundationForecaster": "moola.models.fm_forecast:fm_forecast_params",
    "moola.models.stack:StackingClassifier": "moola.models.stack:stack_params",
}
