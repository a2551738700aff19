"""Typed run manifests: what a training run's ``manifest.json`` holds, parsed once.

A run's manifest is written as a dict by the training pipeline and read by everything
after it (evaluate, report, promote, backtest, the Predictor). Reading it by string keys
at each of those places spreads the format over the code and turns a missing or
mistyped field into a ``KeyError`` far from its cause. ``TrainManifest`` is that format as
one frozen pydantic model, read through ``RunStore.train_manifest`` (after the manifest's
bytes are checked against the journal's anchor): a field that does not fit raises an
``IntegrityError`` naming the run and the field, before anything acts on it.

Compatibility. Older runs lack keys newer ones write (``window``, ``threads``...) and
newer runs may carry keys this code does not know yet: unknown keys are kept, not
refused (``extra="allow"``), and ``original`` holds the dict exactly as read, for
what copies or shows the manifest whole. Byte-for-byte copies (promotion) take
``RunStore.manifest_bytes``, never a re-serialised model.

Tasks. A run's ``task`` is ``"classification"`` (the default: every run written before
tasks existed), ``"regression"`` or ``"multitask"``, and its ``targets`` name what it
predicts, each ``{name, kind, classes}`` (``classes`` for a classification target only).
A manifest without ``targets`` has the one classification target ``label`` over the run's
classes (``data.classes``), which is what its predictions table holds (``label``,
``p_<class>``). A regression target ``t`` is predicted in the table's ``pred_<t>`` beside
its actual value ``y_<t>``; a multitask run's classification head ``t`` in ``p_<t>_<class>``
(:meth:`TrainManifest.prediction_columns`). ``scaling`` is the fitted per-feature scaler
(``Scaler.to_dict()``) of a feature-window run, or None.

The training configuration stays a dict here (``config``): its model,
``moola.pipeline.train.TrainConfig``, lives in the pipeline layer above this one, which
validates it where it needs it.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from moola.core.errors import ConfigError, IntegrityError
from moola.data import DatasetRef

Task = Literal["classification", "regression", "multitask"]
TASKS: tuple[str, ...] = ("classification", "regression", "multitask")
#: The target of a run written before tasks existed: its labels, as ``label`` / ``p_<class>``.
DEFAULT_TARGET = "label"

__all__ = [
    "TASKS",
    "CalibrationRecord",
    "DataAudit",
    "DatasetRecord",
    "SplitRecord",
    "TargetSpec",
    "TrainManifest",
    "WindowSpec",
    "parse_train_manifest",
]


class _Record(BaseModel):
    """A part of a manifest: frozen, and keeping keys it does not name (older and newer
    runs both load)."""

    model_config = ConfigDict(frozen=True, extra="allow")


class WindowSpec(_Record):
    """The window a run's model reads: ``length`` rows of ``columns`` (its last axis).

    Written by training runs from the dataset's meta, so a run predicts on raw bars
    without its dataset still being stored. ``features`` names the feature set
    (``name@vN``) whose columns a feature-window run reads; None for windows of raw bars.
    """

    length: int = Field(ge=1)
    columns: tuple[str, ...] = Field(min_length=1)
    features: str | None = None


class TargetSpec(_Record):
    """One thing a run predicts: a ``classification`` target over ``classes`` (2 or more)
    or a ``regression`` target (no classes)."""

    name: str = Field(min_length=1)
    kind: Literal["classification", "regression"]
    classes: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _classes_fit_the_kind(self) -> TargetSpec:
        if self.kind == "classification" and (self.classes is None or len(self.classes) < 2):
            raise ValueError(
                f"target {self.name!r} is a classification target: it names its classes (2 or more)"
            )
        if self.kind == "regression" and self.classes:
            raise ValueError(f"target {self.name!r} is a regression target: it has no classes")
        return self


class DatasetRecord(_Record):
    """A stored dataset version as a manifest records it (``DatasetRef.to_dict()``)."""

    kind: str
    name: str
    version: int = Field(ge=1)
    content_hash: str

    @property
    def ref(self) -> DatasetRef:
        """The registry's reference to this version."""
        return DatasetRef(self.kind, self.name, self.version, self.content_hash)

    @property
    def pinned(self) -> str:
        """``name@vN``."""
        return f"{self.name}@v{self.version}"


class SplitRecord(_Record):
    """The split version a run trained on, with its hash (``Registry.load_split``'s record)."""

    name: str
    version: int = Field(ge=1)
    split_hash: str
    strategy: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)

    @property
    def pinned(self) -> str:
        """``name@vN``."""
        return f"{self.name}@v{self.version}"


class DataAudit(_Record):
    """What a run read (``LabeledData.audit``): dataset, classes, split and synthetic counts."""

    dataset: DatasetRecord
    classes: tuple[str, ...] = ()  # empty for a regression run; else 2 or more (checked)
    split: SplitRecord | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    synthetic: dict[str, Any] | None = None
    blacklist: dict[str, Any] | None = None
    train_synthetic_ratio: float = 0.0
    val_synthetic_count: int = 0
    test_synthetic_count: int = 0


class CalibrationRecord(_Record):
    """How the calibration was chosen, and the minority decision threshold (if any)."""

    method: str | None = None
    requested: str | None = None
    reason: str | None = None
    minority: str | None = None
    threshold: float | None = None
    candidates: list[dict[str, Any]] | None = None
    thresholded: dict[str, Any] | None = None


class TrainManifest(_Record):
    """A training run's manifest (``kind`` "train"), as ``moola.pipeline.train`` writes it.

    Besides the fields below it carries the provenance ``RunStore.write_run`` adds
    (``moola_version``, ``git_sha``, ``created_at``...) and the file listing ``files``.
    ``window`` is None for runs written before training recorded it; ``task`` and
    ``targets`` default to one classification target over ``data.classes`` (module notes).
    """

    run_id: str
    kind: Literal["train"]
    task: Task = "classification"
    targets: tuple[TargetSpec, ...] = ()
    scaling: dict[str, Any] | None = None
    mode: Literal["oof", "holdout"]
    config: dict[str, Any]
    config_hash: str
    resolved_params: dict[str, Any] = Field(default_factory=dict)
    inputs: str
    seed: int
    data: DataAudit
    predictions: DatasetRecord | None = None
    metrics: dict[str, Any]
    calibrated_metrics: dict[str, Any] | None = None
    calibration: CalibrationRecord = Field(default_factory=CalibrationRecord)
    training: dict[str, Any] = Field(default_factory=dict)
    libraries: dict[str, str | None] = Field(default_factory=dict)
    test_evaluated: bool = False
    wall_time_s: float | None = None
    window: WindowSpec | None = None
    files: dict[str, dict[str, Any]] | None = None

    _original: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("config")
    @classmethod
    def _names_a_model(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("model"), str):
            raise ValueError("names no model (config.model)")
        return value

    @field_validator("calibration", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _targets_fit_the_task(self) -> TrainManifest:
        """Fill the default target, and check the targets against the task and classes."""
        classes = self.data.classes
        if len(classes) == 1:
            raise ValueError(f"data.classes: a run has no class or 2 or more, got {list(classes)}")
        if not self.targets:
            if self.task != "classification":
                raise ValueError(f"targets: missing: a {self.task} run names its targets")
            if not classes:
                raise ValueError("data.classes: missing: a classification run names its classes")
            default = TargetSpec(name=DEFAULT_TARGET, kind="classification", classes=classes)
            object.__setattr__(self, "targets", (default,))
        names = [target.name for target in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"targets: names repeat: {names}")
        kinds = {target.kind for target in self.targets}
        if self.task == "classification" and (
            len(self.targets) != 1 or kinds != {"classification"}
        ):
            raise ValueError(
                "targets: a classification run has one classification target, got "
                + ", ".join(f"{t.name} ({t.kind})" for t in self.targets)
            )
        if self.task == "classification" and classes and self.targets[0].classes != classes:
            raise ValueError(
                f"targets: the target's classes {list(self.targets[0].classes or ())} are not "
                f"the run's classes {list(classes)} (data.classes)"
            )
        if self.task == "regression" and kinds != {"regression"}:
            raise ValueError(
                "targets: a regression run has regression targets only, got "
                + ", ".join(f"{t.name} ({t.kind})" for t in self.targets)
            )
        return self

    def target(self, name: str | None = None) -> TargetSpec:
        """The target called ``name``, or the run's only target when ``name`` is None.

        Raises ``ConfigError`` (``param="target"``) naming the run's targets when there
        is no such target, or when ``name`` is None and the run has several.
        """
        names = [t.name for t in self.targets]
        if name is None:
            if len(self.targets) == 1:
                return self.targets[0]
            raise ConfigError(
                f"Run {self.run_id} is a {self.task} run with targets {', '.join(names)}; "
                "name the one to use with target.",
                param="target",
            )
        for target in self.targets:
            if target.name == name:
                return target
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"target {name!r} is not a target of run {self.run_id}.{hint} Its targets are: "
            + ", ".join(f"{t.name} ({t.kind})" for t in self.targets)
            + ".",
            param="target",
        )

    def prediction_columns(self, target: TargetSpec) -> dict[str, str]:
        """Where ``target``'s predictions are in the run's predictions table: for a
        regression target ``{"actual": "y_<t>", "pred": "pred_<t>"}``; for a classification
        target ``{"actual": ..., <class>: <probability column>}`` (``label`` and
        ``p_<class>`` for a single-target run, ``y_<t>`` and ``p_<t>_<class>`` in a
        multitask run)."""
        if target.kind == "regression":
            return {"actual": f"y_{target.name}", "pred": f"pred_{target.name}"}
        if self.task == "classification":
            return {"actual": "label", **{c: f"p_{c}" for c in target.classes or ()}}
        prefix = f"p_{target.name}_"
        return {"actual": f"y_{target.name}", **{c: prefix + c for c in target.classes or ()}}

    @property
    def model(self) -> str:
        """The model's registry name (``config["model"]``)."""
        return str(self.config["model"])

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, in the order of the probability columns."""
        return self.data.classes

    @property
    def split(self) -> SplitRecord:
        """The split version the run trained on (every training run has one)."""
        assert self.data.split is not None  # checked by parse_train_manifest
        return self.data.split

    @property
    def original(self) -> dict[str, Any]:
        """A copy of the manifest dict exactly as read (unknown keys and all)."""
        return copy.deepcopy(self._original)


def parse_train_manifest(manifest: Any, run: str, where: object) -> TrainManifest:
    """``manifest`` (a parsed ``manifest.json`` of run ``run`` at ``where``) as a
    ``TrainManifest``.

    Raises ``ConfigError`` when the run is not a training run (a demo run, say) and
    ``IntegrityError`` naming the run, the file and each field that does not fit.
    """
    if not isinstance(manifest, dict):
        raise IntegrityError(f"{where} is corrupt: it holds no JSON object.")
    kind = manifest.get("kind")
    if kind != "train":
        raise ConfigError(
            f"Run {run} is a {kind} run, not a training run; only a training run holds a "
            "model, its predictions and metrics."
        )
    try:
        parsed = TrainManifest.model_validate(manifest)
    except ValidationError as exc:
        fields = "; ".join(
            # a check across fields (task, targets, classes) names its field in its message
            (f"{'.'.join(str(p) for p in error['loc'])}: " if error["loc"] else "")
            + str(error["msg"]).removeprefix("Value error, ").rstrip(".")
            for error in exc.errors()
        )
        raise IntegrityError(
            f"Run {run}'s manifest ({where}) does not fit a training run's manifest: "
            f"{fields}. It was not written by this moola, or was edited; retrain the run."
        ) from None
    if parsed.data.split is None:
        raise IntegrityError(
            f"Run {run}'s manifest ({where}) does not fit a training run's manifest: "
            "data.split: missing (every training run records its split)."
        )
    parsed._original = copy.deepcopy(manifest)
    return parsed
