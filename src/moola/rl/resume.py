"""Where an interrupted RL training resumes from: the latest model, saved as it trains.

:class:`LatestCheckpoint` saves the model being trained every ``every`` steps (and when
training ends) as ``latest-<step>.zip`` in a directory it is given, then ``latest.json``
naming that file with its hash, the step and whatever state the caller adds (e.g. the
curriculum's ``state_dict()``), then removes the older model. Each file is written
atomically (temp file + rename), so a kill at any moment leaves a record whose model is
there. :func:`read_latest` reads the pair back, refusing a model whose bytes are not the
ones its record names.

A resumed training continues from the saved weights, optimiser state and step count, but
not from the environments' random state or the rollout in progress, so it is not bit for
bit the run an uninterrupted training gives; the manifest says where it resumed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from moola.core.atomic import atomic_write_bytes, atomic_write_text
from moola.core.errors import CheckpointError, ConfigError
from moola.core.hashing import sha256_bytes

LATEST_RECORD = "latest.json"
FORMAT = "moola-rl-latest"


class LatestCheckpoint(BaseCallback):
    """Save the model every ``every`` environment steps and at the end (module notes).

    ``state`` (optional) returns JSON-ready state recorded with each save.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        every: int,
        state: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"every must be an integer >= 1, got {every!r}.", param="every")
        self.directory = Path(directory)
        self.every = every
        self.state = state
        self._next = 0

    def _on_training_start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._next = self.num_timesteps + self.every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self.save()
            while self._next <= self.num_timesteps:
                self._next += self.every
        return True

    def _on_training_end(self) -> None:
        self.save()

    def save(self) -> None:
        """Write the model, then the record naming it, then drop older models."""
        buffer = io.BytesIO()
        self.model.save(buffer)
        data = buffer.getvalue()
        name = f"latest-{int(self.num_timesteps)}.zip"
        atomic_write_bytes(self.directory / name, data, overwrite=True)
        record = {
            "format": FORMAT,
            "step": int(self.num_timesteps),
            "model": name,
            "model_sha256": sha256_bytes(data),
            "agent": getattr(self.model, "moola_build", None),
            "state": dict(self.state()) if self.state is not None else {},
        }
        atomic_write_text(
            self.directory / LATEST_RECORD,
            json.dumps(record, indent=2, default=str),
            overwrite=True,
        )
        for old in self.directory.glob("latest-*.zip"):
            if old.name != name:
                old.unlink(missing_ok=True)


def read_latest(directory: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The latest model's path and record in ``directory`` (None when nothing was saved);
    ``CheckpointError`` when the record is damaged or names another model."""
    folder = Path(directory)
    record_path = folder / LATEST_RECORD
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{record_path} cannot be read as JSON: {exc}.") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{record_path} is not a moola RL resume record.")
    name = str(record.get("model", ""))
    if not name.startswith("latest-") or "/" in name or "\\" in name:
        raise CheckpointError(f"{record_path} names no model of this folder ({name!r}).")
    model = folder / name
    try:
        digest = sha256_bytes(model.read_bytes())
    except OSError as exc:
        raise CheckpointError(f"{model} cannot be read ({exc.strerror}).") from None
    if digest != record.get("model_sha256"):
        raise CheckpointError(
            f"{model} is not the model {record_path} records (its hash differs): the save was "
            "interrupted between the two files or one was replaced."
        )
    return model, record


__all__ = ["LATEST_RECORD", "LatestCheckpoint", "read_latest"]
