"""A study's search space: SPACE.yaml parsed, checked and turned into run configs.

A space file says what run to tune, what to rank trials by, and which parameters to
search::

    run:                        # a moola train config (kind: rl: a moola rl config)
      kind: train
      model: simple_lstm
      dataset: pat
      split: fc
      params: {epochs: 5}
    objective:
      metric: log_loss          # an out-of-fold (folds split) or validation metric
      direction: minimize       # optional for the usual metrics
    params:                     # dotted keys of the run config
      params.hidden: {type: int, low: 16, high: 64, step: 16}
      params.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      calibration: {type: categorical, choices: [none, platt]}
      params.dropout: {type: float, low: 0.0, high: 0.3, when: {calibration: platt}}

A parameter is ``float`` (``low``, ``high``, optional ``log`` or ``step``), ``int``
(``low``, ``high``, optional ``step`` or ``log``) or ``categorical`` (``choices``); both
ends are included. ``when: {KEY: value or [values]}`` makes it conditional: it is sampled
only in trials where the earlier categorical parameter ``KEY`` took one of those values
(otherwise the run config keeps its own value). Keys are dotted paths into the run config:
``params.hidden`` is the model's ``hidden``, ``calibration`` the run's calibration,
``reward.drawdown_penalty`` an RL reward coefficient.

Everything is checked when the file is read, before a study or a run exists, and every
error names the file and the key: an unknown key; bad bounds; a model parameter the model
does not take or a range it would refuse (``moola.models.params.check_search_space``, for
every model the space can pick); a run-config value the config refuses (both ends and the
middle of a range, every choice); a ``when`` on an unknown or later parameter; the data
itself (``dataset``, ``split``, ``fold``: a study compares trials on one dataset and
split); and an objective on the test part (``test_...`` metrics, ``part: test``), which
tuning never scores (``moola evaluate RUN --test`` looks at it once, afterwards).

The space's identity is the hash of its parsed content (:attr:`Space.space_hash`), so
comments and formatting do not change it; a study remembers the hash it was made with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from moola.core.errors import ConfigError
from moola.core.hashing import sha256_json

if TYPE_CHECKING:
    import optuna
    from pydantic import BaseModel as RunConfigModel

__all__ = [
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "Objective",
    "Space",
    "load_space",
    "parse_space",
]

#: Run-config keys a space may not search: the data a study compares its trials on.
DATA_KEYS = ("dataset", "split", "fold")
#: Metrics where lower is better (the rest of the usual ones: higher is better).
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece", "mse", "mae", "rmse", "mape"})
HIGHER_IS_BETTER = frozenset(
    {
        "accuracy",
        "balanced_accuracy",
        "pr_auc",
        "roc_auc",
        "minority_f1",
        "minority_recall",
        "r2",
        "directional_accuracy",
        "eval_return",
        "eval_reward",
    }
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Scalar = str | int | float | bool | None


class _Param(_Frozen):
    when: dict[str, list[Scalar]] = Field(default_factory=dict)
    """Sample this parameter only when each named earlier categorical parameter took one
    of the listed values."""

    @field_validator("when", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value


class FloatParam(_Param):
    """A float in ``[low, high]``: uniform, log-uniform (``log``) or on a grid (``step``)."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def values_to_check(self) -> list[float]:
        """Both ends and the middle."""
        middle = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        return [self.low, middle, self.high]

    def bounds_problem(self) -> str | None:
        """What is wrong with the bounds (None: nothing)."""
        return _bounds_problem(self.low, self.high, self.log, self.step)


class IntParam(_Param):
    """An integer in ``[low, high]`` every ``step`` (or log-uniform, ``log``)."""

    type: Literal["int"]
    low: int
    high: int
    step: int = 1
    log: bool = False

    def values_to_check(self) -> list[int]:
        """Both ends and the middle of the grid."""
        count = (self.high - self.low) // self.step
        return sorted({self.low, self.low + (count // 2) * self.step, self.high})

    def bounds_problem(self) -> str | None:
        """What is wrong with the bounds (None: nothing)."""
        if self.log and self.step != 1:
            return "a log range takes no step; drop one of them"
        return _bounds_problem(self.low, self.high, self.log, None if self.log else self.step)


class CategoricalParam(_Param):
    """One of ``choices``."""

    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)

    def values_to_check(self) -> list[Scalar]:
        """Every choice."""
        return list(self.choices)

    def bounds_problem(self) -> str | None:
        """Repeated choices (None: none)."""
        if len({repr(choice) for choice in self.choices}) < len(self.choices):
            return f"choices repeat a value: {self.choices}"
        return None


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class Objective(_Frozen):
    """What trials are ranked by: a metric of the run's out-of-fold predictions (a folds
    split) or of its validation part (a train/val/test split, or an RL run's evaluation
    period), and whether lower or higher is better (inferred for the usual metrics)."""

    metric: str
    direction: Literal["minimize", "maximize"] | None = None
    part: Literal["auto", "oof", "val"] = "auto"
    """Which part the metric comes from: decided by the split (``auto``); ``oof`` or
    ``val`` only documents it. The test part is not one of them."""

    @field_validator("part", mode="before")
    @classmethod
    def _not_test(cls, value: Any) -> Any:
        if value == "test":
            raise ValueError(
                "the test part is never scored while tuning (trials would select on it); "
                "rank trials out of fold or on val, then look at the test part once with "
                "`moola evaluate RUN --test`"
            )
        return value

    @field_validator("metric")
    @classmethod
    def _no_test_metric(cls, value: str) -> str:
        bare = value.removeprefix("uncalibrated.")
        if bare.startswith(("test_", "test.", "test-")) or bare == "test":
            raise ValueError(
                f"{value!r} is a metric of the test part, which is never scored while "
                "tuning; rank trials on an out-of-fold or validation metric (log_loss, "
                "balanced_accuracy, eval_return ...)"
            )
        return value

    @property
    def resolved_direction(self) -> Literal["minimize", "maximize"]:
        """The direction given, or the usual one of the metric."""
        if self.direction is not None:
            return self.direction
        bare = self.metric.rsplit(".", 1)[-1]
        return "minimize" if bare in LOWER_IS_BETTER else "maximize"


class Space(_Frozen):
    """A parsed, checked search space (see the module notes). ``run`` is the run config
    as validated (``kind`` says which config), ``params`` the searched parameters in the
    file's order."""

    kind: Literal["train", "rl"]
    run: dict[str, Any]
    objective: Objective
    params: dict[str, Param] = Field(min_length=1)
    source: str | None = Field(default=None, exclude=True)
    """The file it was read from (not part of its identity)."""

    @property
    def space_hash(self) -> str:
        """The hash of the space's content (its identity for a study)."""
        return sha256_json(self.model_dump(mode="json"))

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        """The objective's direction."""
        return self.objective.resolved_direction

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample this space's parameters on ``trial`` (conditional ones only where their
        condition holds), in the file's order; ``{key: value}``."""
        values: dict[str, Any] = {}
        for key, param in self.params.items():
            if not _condition_holds(param, values):
                continue
            if isinstance(param, CategoricalParam):
                values[key] = trial.suggest_categorical(key, param.choices)
            elif isinstance(param, IntParam):
                values[key] = trial.suggest_int(
                    key, param.low, param.high, step=param.step, log=param.log
                )
            else:
                values[key] = trial.suggest_float(
                    key, param.low, param.high, step=param.step, log=param.log
                )
        return values

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions of the parameters (for enqueued or added trials)."""
        import optuna.distributions as d

        out: dict[str, Any] = {}
        for key, param in self.params.items():
            if isinstance(param, CategoricalParam):
                out[key] = d.CategoricalDistribution(param.choices)
            elif isinstance(param, IntParam):
                out[key] = d.IntDistribution(param.low, param.high, step=param.step, log=param.log)
            else:
                out[key] = d.FloatDistribution(
                    param.low, param.high, step=param.step, log=param.log
                )
        return out

    def config_for(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The run config (as a JSON mapping) with ``values`` set at their dotted keys,
        validated by the run's config class."""
        config = _with_values(self.run, values)
        return _run_class(self.kind).model_validate(config).model_dump(mode="json")

    def with_fixed(self, values: Mapping[str, Any]) -> Space:
        """This space with ``values`` fixed in its run config (a phase fixing an earlier
        phase's best): keys this space searches itself stay searched."""
        fixed = {key: value for key, value in values.items() if key not in self.params}
        if not fixed:
            return self
        return self.model_copy(update={"run": self.config_for(fixed)})


def load_space(path: str | Path) -> Space:
    """Read and check SPACE.yaml (see the module notes); ``ConfigError`` naming the file
    and the key otherwise."""
    path = Path(path)
    where = f"space file {path}"
    if not path.is_file():
        raise ConfigError(f"Space file {path} does not exist. Check the path you passed.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"Space file {path} cannot be read as YAML: {exc}") from None
    return parse_space(raw, where=where, source=str(path))


def parse_space(raw: Any, *, where: str = "space", source: str | None = None) -> Space:
    """Check a space given as a mapping (what SPACE.yaml holds); ``where`` names it in
    errors."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"Invalid {where}: it must hold a mapping with run, objective, params.")
    raw = dict(raw)
    run = raw.pop("run", None)
    if not isinstance(run, Mapping):
        raise ConfigError(
            f"Invalid {where}: 'run' must be a mapping with kind (train or rl) and the run's "
            "config (model, dataset, split ... or the RL config)."
        )
    run = dict(run)
    kind = run.pop("kind", "train")
    if kind not in ("train", "rl"):
        raise ConfigError(f"Invalid {where}: 'run.kind' must be train or rl; got {kind!r}.")
    try:
        config = _run_class(kind).model_validate(run)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where, prefix="run")) from None
    try:
        space = Space.model_validate(
            {"kind": kind, "run": config.model_dump(mode="json"), **raw, "source": source}
        )
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from None
    _check(space, where)
    return space


# -- checks --------------------------------------------------------------------------------


def _check(space: Space, where: str) -> None:
    """The checks that need the run: keys, bounds, conditions, values (module notes)."""
    run_class = _run_class(space.kind)
    seen: dict[str, Param] = {}
    for key, param in space.params.items():
        at = f"Invalid {where}: 'params.{key}'"
        head = key.split(".", 1)[0]
        if head in DATA_KEYS:
            raise ConfigError(
                f"{at}: a study compares its trials on one dataset and split; fix "
                f"{head!r} in run: instead of searching it.",
                param=f"params.{key}",
            )
        if head not in run_class.model_fields:
            raise ConfigError(
                f"{at}: {head!r} is not a key of the {space.kind} run config (it takes "
                f"{', '.join(sorted(run_class.model_fields))}).",
                param=f"params.{key}",
            )
        problem = param.bounds_problem()
        if problem:
            raise ConfigError(f"{at}: {problem}.", param=f"params.{key}")
        for name, allowed in param.when.items():
            earlier = seen.get(name)
            if not isinstance(earlier, CategoricalParam):
                raise ConfigError(
                    f"{at}: 'when' names {name!r}, which is not a categorical parameter "
                    "declared before it.",
                    param=f"params.{key}",
                )
            stray = [value for value in allowed if value not in earlier.choices]
            if stray:
                raise ConfigError(
                    f"{at}: 'when' lists {stray} for {name!r}, which are not among its "
                    f"choices {earlier.choices}.",
                    param=f"params.{key}",
                )
        if space.kind == "train" and head == "params":
            _check_model_param(space, key, param, at)
        else:
            _check_config_values(space, key, param, at)
        seen[key] = param


def _check_model_param(space: Space, key: str, param: Param, at: str) -> None:
    """A ``params.NAME`` key of a supervised run: checked by each model it can reach."""
    from moola.models.params import check_search_space

    parts = key.split(".")
    if len(parts) != 2:
        raise ConfigError(
            f"{at}: a model parameter is 'params.NAME' (one level); got {key!r}.",
            param=f"params.{key}",
        )
    if isinstance(param, CategoricalParam):
        spec: dict[str, Any] = {"choices": param.choices}
    else:
        spec = {"low": param.low, "high": param.high, "log": param.log}
        if (
            param.step is not None
            and not param.log
            and not (isinstance(param, IntParam) and param.step == 1)
        ):
            spec["step"] = param.step
    for model in _models_for(space, param):
        try:
            check_search_space(model, {parts[1]: spec})
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}", param=f"params.{key}") from None


def _models_for(space: Space, param: Param) -> list[str]:
    """The models a model parameter can meet: its ``when: {model: [...]}``, else every
    model the space can pick."""
    if "model" in param.when:
        return [str(model) for model in param.when["model"]]
    searched = space.params.get("model")
    if isinstance(searched, CategoricalParam):
        return [str(model) for model in searched.choices]
    return [str(space.run["model"])]


def _check_config_values(space: Space, key: str, param: Param, at: str) -> None:
    """Any other key: the run config must take each value to check (and a model
    search must name models the config's params suit)."""
    for value in param.values_to_check():
        try:
            space.config_for({key: value})
        except ValidationError as exc:
            raise ConfigError(
                f"{at}: the run config refuses {key}={value!r}: "
                + _describe(exc, "run config").removeprefix("Invalid run config: "),
                param=f"params.{key}",
            ) from None
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}", param=f"params.{key}") from None
    if space.kind == "train" and key == "model":
        from moola.models import require_active

        for model in param.values_to_check():
            try:
                require_active(str(model))
            except ConfigError as exc:
                raise ConfigError(f"{at}: {exc}", param=f"params.{key}") from None


def _bounds_problem(low: float, high: float, log: bool, step: float | None) -> str | None:
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"low and high must be finite numbers; got low={low!r}, high={high!r}"
    if low > high:
        return f"low={low!r} is above high={high!r}"
    if step is not None and step <= 0:
        return f"step must be > 0; got {step!r}"
    if log and step is not None:
        return "a log range takes no step; drop one of them"
    if log and low <= 0:
        return f"a log range needs low > 0; got low={low!r}"
    return None


def _condition_holds(param: Param, values: Mapping[str, Any]) -> bool:
    return all(name in values and values[name] in allowed for name, allowed in param.when.items())


def _with_values(run: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``run`` with each dotted key set (missing mappings created)."""
    out = _copy(run)
    for key, value in values.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(
                    f"{key!r}: {part!r} holds {child!r}, not a mapping; a dotted key goes "
                    "into mappings only.",
                    param=key,
                )
            node = child
        node[last] = value
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _run_class(kind: str) -> type[RunConfigModel]:
    if kind == "rl":
        from moola.pipeline.rl import RLConfig

        return RLConfig
    from moola.pipeline.train import TrainConfig

    return TrainConfig


def _describe(exc: ValidationError, where: str, *, prefix: str = "") -> str:
    """Each problem of a validation error with its dotted key (under ``prefix``)."""
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if part not in ("float", "int", "categorical")]
        key = ".".join([prefix, *loc] if prefix else loc) or "(root)"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        elif error["type"] == "missing":
            problems.append(f"'{key}' is required")
        else:
            message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
            problems.append(f"'{key}': {message}")
    return f"Invalid {where}: " + "; ".join(problems) + "."
