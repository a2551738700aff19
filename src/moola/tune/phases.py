"""Phases: an ordered list of studies, each starting from the best of the ones before.

The momentum trader tuned in three phases (foundation, then reward coefficients, then
fine-tuning), each seeded with the previous best; a supervised search goes architecture,
then regularisation, then learning rate. PHASES.yaml says so::

    name: lstm-search               # the lineage: artifacts/studies/<name>/phases.json
    phases:
      - study: lstm-arch            # a study name (default: <name>-1, <name>-2 ...)
        space: arch.yaml            # a space file, relative to PHASES.yaml
        trials: 20
      - study: lstm-reg
        space: reg.yaml
        trials: 20
        sampler: random             # optional, per phase: sampler, pruner, timeout

Each phase after the first (1) fixes the best parameters of every earlier phase in its
run config (``Space.with_fixed``: a key the phase searches itself stays searched), and
(2) enqueues the previous best run as its first trial: the phase's own parameters at the
values that run had, so the phase starts from it and can only improve on it. Every phase
is an ordinary study (``moola.tune.study.run_study``: resumable, its trials recorded
runs); ``phases.json`` records the lineage (each phase's study, space hash, what it fixed
and enqueued, its best trial, value, parameters and run) after every phase, and every
trial's run manifest names it back (``study.phases``: the lineage's name and the phase's
number), so any run of the search leads to the whole lineage. Run again
after a kill, finished phases come back at once (their studies already hold their trials)
and the unfinished one resumes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moola.core.atomic import atomic_write_text
from moola.core.errors import ConfigError
from moola.core.provenance import utc_now_iso
from moola.tune.space import CategoricalParam, Space, load_space
from moola.tune.storage import study_dir
from moola.tune.study import ProgressSink, StudyResult, run_study

if TYPE_CHECKING:
    import optuna

    from moola.data.registry import Registry
    from moola.tune.trial import TrialExecutor

__all__ = ["PHASES_FILE", "Phase", "Phases", "PhasesResult", "load_phases", "run_phases"]

PHASES_FILE = "phases.json"


class Phase(BaseModel):
    """One phase: a study of a space, ``trials`` finished trials long."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    space: str
    trials: int = Field(ge=1)
    study: str | None = None
    sampler: str | None = None
    pruner: str | None = None
    timeout: float | None = Field(None, gt=0)


class Phases(BaseModel):
    """An ordered list of phases under one lineage ``name``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    phases: list[Phase] = Field(min_length=1)


@dataclass(frozen=True)
class PhasesResult:
    """Each phase's study result, in order, and where the lineage is recorded."""

    name: str
    studies: tuple[StudyResult, ...]
    record: Path

    @property
    def best(self) -> StudyResult:
        """The last phase's result (it started from every earlier best)."""
        return self.studies[-1]


def load_phases(path: str | Path) -> tuple[Phases, list[Space]]:
    """Read PHASES.yaml and every space it names (relative paths from its folder);
    ``ConfigError`` naming the file and key otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Phases file {path} does not exist. Check the path you passed.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        phases = Phases.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Phases file {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(root)"
            kind = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"'{key}': {kind}")
        raise ConfigError(f"Invalid phases file {path}: " + "; ".join(problems) + ".") from None
    study_dir(".", phases.name)  # a safe name
    spaces = []
    for i, phase in enumerate(phases.phases):
        file = Path(phase.space)
        file = file if file.is_absolute() else path.parent / file
        try:
            spaces.append(load_space(file))
        except ConfigError as exc:
            raise ConfigError(f"Phases file {path}, phases.{i}.space: {exc}") from None
    names = [_study_name(phases, i) for i in range(len(phases.phases))]
    if len(set(names)) != len(names):
        raise ConfigError(f"Invalid phases file {path}: two phases share a study name {names}.")
    return phases, spaces


def run_phases(
    registry: Registry,
    phases: Phases,
    spaces: list[Space],
    *,
    storage: str | None = None,
    sampler: str = "tpe",
    pruner: str | optuna.pruners.BasePruner = "median",
    seed: int = 0,
    executor: TrialExecutor | None = None,
    on_progress: ProgressSink = lambda _: None,
    parallel: int | None = None,
    record_in_worker: bool = True,
) -> PhasesResult:
    """Run the phases in order (module notes); the lineage goes to
    ``artifacts/studies/<name>/phases.json`` after every phase. The other arguments are
    :func:`moola.tune.study.run_study`'s, for every phase (a phase's own sampler, pruner
    and timeout win)."""
    fixed: dict[str, Any] = {}
    results: list[StudyResult] = []
    lineage: list[dict[str, Any]] = []
    record = study_dir(registry.root, phases.name) / PHASES_FILE
    for i, (phase, space) in enumerate(zip(phases.phases, spaces, strict=True)):
        name = _study_name(phases, i)
        try:
            phased = space.with_fixed(fixed)
        except (ConfigError, ValidationError) as exc:
            raise ConfigError(
                f"Phase {i + 1} ({name}) cannot take the earlier phases' best {fixed}: {exc}"
            ) from None
        enqueue = _previous_best(phased) if i > 0 else {}
        on_progress({"event": "phase", "phase": i + 1, "study": name, "fixed": fixed})
        result = run_study(
            registry,
            phased,
            study=name,
            trials=phase.trials,
            timeout=phase.timeout,
            sampler=phase.sampler or sampler,
            pruner=phase.pruner or pruner,
            storage=storage,
            seed=seed + i,
            executor=executor,
            on_progress=on_progress,
            enqueue=enqueue or None,
            parallel=parallel,
            record_in_worker=record_in_worker,
            lineage={"name": phases.name, "phase": i + 1},
        )
        results.append(result)
        lineage.append(
            {
                "phase": i + 1,
                "study": name,
                "space_file": space.source,
                "space_hash": phased.space_hash,
                "fixed": dict(fixed),
                "enqueued": enqueue,
                **{k: v for k, v in result.to_dict().items() if k.startswith("best")},
                "counts": result.counts,
            }
        )
        _write(record, phases, lineage)
        if result.best_trial is None:
            raise ConfigError(
                f"Phase {i + 1} ({name}) has no completed trial, so there is no best to carry "
                "into the next phase; see `moola tune show` for its errors.",
            )
        fixed = {**fixed, **result.best_params}
    return PhasesResult(phases.name, tuple(results), record)


def _study_name(phases: Phases, i: int) -> str:
    return phases.phases[i].study or f"{phases.name}-{i + 1}"


def _previous_best(space: Space) -> dict[str, Any]:
    """The phase's own parameters at the values its run config holds (the earlier
    phases' best fixed in it): the previous best run, as this phase's first trial. A
    value outside the phase's range is left for the sampler."""
    values: dict[str, Any] = {}
    resolved = dict(space.run)
    if space.kind == "train":  # the model's parameters with its defaults filled in
        from moola.models.params import validate_params

        with contextlib.suppress(ConfigError):  # a searched model: checked per trial
            resolved["params"] = validate_params(space.run["model"], space.run["params"])
    for key, param in space.params.items():
        found, value = _at(resolved, key)
        if not found:
            continue
        if isinstance(param, CategoricalParam):
            ok = value in param.choices
        else:
            ok = isinstance(value, int | float) and param.low <= value <= param.high
        if ok:
            values[key] = value
    return values


def _at(config: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _write(path: Path, phases: Phases, lineage: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "name": phases.name,
        "updated_at": utc_now_iso(),
        "phases": lineage,
        "planned": [phase.model_dump(mode="json") for phase in phases.phases],
    }
    atomic_write_text(path, json.dumps(record, indent=2, default=str) + "\n", overwrite=True)
