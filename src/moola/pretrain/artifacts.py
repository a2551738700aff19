"""Encoder artifacts (write-once, with a card) and resumable pretraining checkpoints.

An encoder artifact is what pretraining leaves behind: the encoder's tensors, no decoder,
no classifier head. It lives under the data root as

    artifacts/encoders/{arch}_{objective}_{features}_v{N}.pt    e.g. bilstm_mae_rel11_v1.pt
    artifacts/encoders/{arch}_{objective}_{features}_v{N}.json  its card

The ``.pt`` file is ``torch.save`` of ``{"format": "moola-encoder", "format_version": 1,
"name", "version", "arch", "objective", "features", "encoder_config", "state_dict"
({"encoder.lstm.weight_ih_l0": ..., ...}), "card"}`` and is read with
``torch.load(weights_only=True)``. The card (JSON) repeats ``card`` and adds the file's
SHA-256: the unlabeled dataset (name, version, content hash), objective and
hyperparameters, epochs, loss curve, wall time, device, library versions and provenance.
Versions are write-once like datasets: writing an existing one raises
``VersionExistsError``; both files are written atomically and a failure leaves neither.
The card's SHA-256 is anchored in the data root's write journal before either file is
written (``moola.core.anchors``), and loading compares the ``.pt`` bytes with the card's
SHA-256 (and the card with its anchor) before ``torch.load`` sees a byte.

A training checkpoint (``ResumeCheckpoint``, after every epoch) holds the loop's snapshot
(weights, optimiser, shuffling and dropout RNG states, step, losses) and the run's settings,
so an interrupted run resumes to the weights an uninterrupted one would reach (on the CPU).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import platform
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from moola.core.anchors import INTEGRITY, Anchors
from moola.core.atomic import atomic_write_bytes, atomic_write_text
from moola.core.errors import CheckpointError, ConfigError, IntegrityError, VersionExistsError
from moola.core.integrity import read_json_bytes
from moola.core.provenance import provenance

if TYPE_CHECKING:
    from moola.training.callbacks import TrainingState

__all__ = [
    "CARD_FORMAT",
    "CHECKPOINT_FORMAT",
    "ENCODER_FORMAT",
    "EncoderArtifact",
    "ResumeCheckpoint",
    "artifact_stem",
    "check_encoder_bytes",
    "checkpoint_path",
    "encoder_dir",
    "encoder_versions",
    "load_encoder_artifact",
    "load_training_checkpoint",
    "write_encoder_artifact",
]

ENCODER_FORMAT = "moola-encoder"
CARD_FORMAT = "moola-encoder-card"
CHECKPOINT_FORMAT = "moola-pretrain-checkpoint"
FORMAT_VERSION = 1
_PART = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class EncoderArtifact:
    """One stored encoder: where it is, its card and (when loaded) its tensors."""

    path: Path
    card_path: Path
    name: str  # the stem, e.g. "bilstm_mae_rel11"
    version: int
    card: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    sha256: str = ""  # of the .pt file's bytes

    @property
    def encoder_config(self) -> dict[str, Any]:
        """Config of the encoder that produced the tensors (e.g. BiLSTMEncoderConfig)."""
        return dict(self.card.get("encoder", {}).get("config", {}))

    def __str__(self) -> str:
        return f"{self.name}_v{self.version}"


def encoder_dir(root: str | Path) -> Path:
    """``<data root>/artifacts/encoders``."""
    return Path(root) / "artifacts" / "encoders"


def artifact_stem(arch: str, objective: str, features: str) -> str:
    """``{arch}_{objective}_{features}``; each part lower-case letters, digits and dashes."""
    for label, part in (("arch", arch), ("objective", objective), ("features", features)):
        if not _PART.match(part):
            raise ConfigError(
                f"Encoder {label} {part!r} is not a valid name part: use lower-case letters, "
                "digits and dashes (e.g. 'bilstm', 'mae', 'rel11')."
            )
    return f"{arch}_{objective}_{features}"


def encoder_versions(root: str | Path, stem: str) -> list[int]:
    """Stored versions of encoder ``stem`` (a version counts if either file exists)."""
    directory = encoder_dir(root)
    if not directory.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(stem)}_v(\d+)\.(pt|json)$")
    found = {int(m.group(1)) for p in directory.iterdir() if (m := pattern.match(p.name))}
    return sorted(found)


def check_version_free(root: str | Path, stem: str, version: int | None) -> int:
    """The version a write would get (``version`` or the next free one); raises
    ``VersionExistsError`` if ``version`` is taken. Lets a run fail before it trains."""
    taken = encoder_versions(root, stem)
    if version is None:
        return (taken[-1] + 1) if taken else 1
    if int(version) != version or version < 1:
        raise ConfigError(f"Encoder versions are integers >= 1 (got {version!r}).")
    if version in taken:
        raise VersionExistsError(
            f"Encoder {stem}_v{version} already exists in {encoder_dir(root)}; encoder "
            "versions are write-once. Omit the version to write the next one "
            f"(v{taken[-1] + 1})."
        )
    return int(version)


def write_encoder_artifact(
    root: str | Path,
    arch: str,
    objective: str,
    features: str,
    state_dict: dict[str, torch.Tensor],
    card: dict[str, Any],
    *,
    version: int | None = None,
) -> EncoderArtifact:
    """Store ``state_dict`` (``encoder.*`` tensors only) and ``card`` as a new version.

    Adds the name, version, file, format, tensor shapes, parameter count, library
    versions and provenance to the card. Write-once and atomic (see the module docstring).
    """
    stem = artifact_stem(arch, objective, features)
    foreign = [k for k in state_dict if not k.startswith("encoder.")]
    if not state_dict or foreign:
        raise ConfigError(
            "An encoder artifact holds only 'encoder.*' tensors (no decoder or head); got "
            f"{foreign[:5] or 'none'}."
        )
    version = check_version_free(root, stem, version)
    directory = encoder_dir(root)
    path = directory / f"{stem}_v{version}.pt"
    card_path = directory / f"{stem}_v{version}.json"
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    full_card = {
        "format": CARD_FORMAT,
        "format_version": FORMAT_VERSION,
        "name": stem,
        "version": version,
        "file": path.name,
        **_plain(card),
        "arch": arch,
        "objective": objective,
        "features": features,
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "n_parameters": int(sum(v.numel() for v in tensors.values())),
        "library_versions": library_versions(),
        "provenance": provenance(),
        "integrity": INTEGRITY,
    }
    payload = {
        "format": ENCODER_FORMAT,
        "format_version": FORMAT_VERSION,
        "name": stem,
        "version": version,
        "arch": arch,
        "objective": objective,
        "features": features,
        "encoder_config": full_card.get("encoder", {}).get("config", {}),
        "state_dict": tensors,
        "card": full_card,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    full_card["sha256"] = hashlib.sha256(data).hexdigest()
    text = json.dumps(full_card, indent=2, sort_keys=True, allow_nan=False) + "\n"
    Anchors(root).record(f"encoder:{stem}_v{version}", text.encode())
    try:
        atomic_write_bytes(path, data)
    except FileExistsError:
        raise VersionExistsError(
            f"Encoder {path} appeared while this run was writing it (another run took "
            f"v{version}); versions are write-once. Run again to write the next version."
        ) from None
    try:
        atomic_write_text(card_path, text)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return EncoderArtifact(path, card_path, stem, version, full_card, tensors, full_card["sha256"])


def load_encoder_artifact(path: str | Path) -> EncoderArtifact:
    """Read an encoder written by ``write_encoder_artifact`` (tensors on the CPU).

    Raises ``CheckpointError`` naming ``path`` for a missing, corrupt or truncated file,
    a file that is not an encoder (a model, a checkpoint, anything else) or one of a
    newer format.
    """
    path = Path(path)
    data = check_encoder_bytes(path)  # torch parses exactly the bytes that were checked
    payload, digest = _torch_load(path, "encoder artifact", data)
    if not isinstance(payload, dict) or payload.get("format") != ENCODER_FORMAT:
        what = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path} is not a moola encoder artifact (its format is {what!r}, not "
            f"'{ENCODER_FORMAT}'). Pass a file written by `moola pretrain`, e.g. "
            "artifacts/encoders/bilstm_mae_rel11_v1.pt."
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"Encoder {path} has format version {version!r}, newer than the "
            f"{FORMAT_VERSION} this moola reads; upgrade moola to load it."
        )
    state_dict = payload.get("state_dict")
    if (
        not isinstance(state_dict, dict)
        or not state_dict
        or not all(isinstance(v, torch.Tensor) for v in state_dict.values())
    ):
        raise CheckpointError(f"Encoder {path} holds no tensors; it is incomplete.")
    card = payload.get("card") if isinstance(payload.get("card"), dict) else {}
    return EncoderArtifact(
        path=path,
        card_path=path.with_suffix(".json"),
        name=str(payload.get("name", path.stem)),
        version=int(payload.get("version", 0)),
        card=card,
        state_dict=state_dict,
        sha256=digest,
    )


class ResumeCheckpoint:
    """A training-loop callback (``moola.training.callbacks.Callback``'s three hooks): after
    every epoch, write the loop's snapshot and ``extra`` (settings, dataset) to ``path``,
    atomically, replacing the previous one, so a crash never leaves a torn file.

    Needs the ``LoopState`` that ``Trainer.run`` passes to callbacks. (Duck-typed rather
    than a ``Callback`` subclass so this module does not import the training layer.)
    """

    def __init__(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.extra = dict(extra or {})
        self.saved_epochs: list[int] = []

    def on_train_start(self, state: TrainingState) -> None:
        self.saved_epochs = []

    def on_train_end(self, state: TrainingState) -> None:
        return None

    def on_epoch_end(self, state: TrainingState) -> bool:
        snapshot = getattr(state, "snapshot", None)
        if snapshot is None:
            raise ConfigError("ResumeCheckpoint needs Trainer.run's LoopState (snapshot()).")
        payload = {
            "format": CHECKPOINT_FORMAT,
            "format_version": FORMAT_VERSION,
            **_plain(self.extra),
            "loop": snapshot(),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(self.path, buffer.getvalue(), overwrite=True)
        self.saved_epochs.append(state.epoch)
        return False


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by ``ResumeCheckpoint``; ``CheckpointError`` naming ``path``
    when it is missing, corrupt, truncated or not a pretraining checkpoint."""
    path = Path(path)
    payload, _ = _torch_load(path, "pretraining checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a moola pretraining checkpoint (no 'format': "
            f"'{CHECKPOINT_FORMAT}'). Pass the .ckpt file an interrupted `moola pretrain` "
            "run left behind."
        )
    missing = [k for k in ("loop", "config", "dataset", "normaliser") if k not in payload]
    if missing or not isinstance(payload["loop"], dict):
        raise CheckpointError(f"Checkpoint {path} is incomplete: it lacks {missing or ['loop']}.")
    return payload


def checkpoint_path(
    root: str | Path, arch: str, objective: str, features: str, dataset: str, version: int
) -> Path:
    """Default checkpoint of a run: ``artifacts/encoders/checkpoints/{stem}__{dataset}_v{N}
    .ckpt`` (one per encoder kind and dataset version; a new run replaces it)."""
    stem = artifact_stem(arch, objective, features)
    return encoder_dir(root) / "checkpoints" / f"{stem}__{dataset}_v{version}.ckpt"


def library_versions() -> dict[str, str]:
    """Versions that decide an encoder's numbers."""
    return {
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
    }


def check_encoder_bytes(path: Path) -> bytes:
    """The encoder's bytes, refused if they differ from its card's SHA-256 or the card
    from its journal anchor (when it lies in a data root's ``artifacts/encoders``)."""
    card_path = path.with_suffix(".json")
    if not path.is_file():
        raise CheckpointError(f"The encoder artifact {path} does not exist (or is not a file).")
    try:
        card_bytes = card_path.read_bytes()
    except OSError:
        raise CheckpointError(
            f"Encoder {path} has no card {card_path.name} beside it, so its bytes cannot be "
            "checked. Copy the card with the .pt file (both are written by `moola pretrain`)."
        ) from None
    try:
        card = read_json_bytes(card_bytes, card_path)
        if path.parent.name == "encoders" and path.parent.parent.name == "artifacts":
            Anchors(path.parent.parent.parent).check_marked(
                f"encoder:{path.stem}", card_bytes, card_path, card
            )
    except IntegrityError as exc:
        raise CheckpointError(str(exc)) from None
    recorded = card.get("sha256") if isinstance(card, dict) else None
    if not isinstance(recorded, str):
        raise CheckpointError(f"Encoder card {card_path} records no sha256 of {path.name}.")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != recorded.removeprefix("sha256:"):
        raise CheckpointError(
            f"Encoder {path} differs from the SHA-256 its card {card_path.name} recorded: "
            "the file was changed after it was written. Restore it, or pretrain again."
        )
    return data


def _torch_load(path: Path, what: str, data: bytes | None = None) -> tuple[Any, str]:
    """The object in ``path`` (or in its already read ``data``; ``weights_only``: no code
    runs) and the bytes' SHA-256."""
    if data is None:
        if not path.is_file():
            raise CheckpointError(f"The {what} {path} does not exist (or is not a file).")
        data = path.read_bytes()
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: we refuse them
            warnings.simplefilter("ignore")
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or holding arbitrary objects
        raise CheckpointError(
            f"The {what} {path} cannot be read: it is corrupt, truncated or not a file "
            f"moola wrote ({type(exc).__name__}). Point to an intact file."
        ) from exc
    return payload, hashlib.sha256(data).hexdigest()


def _plain(value: Any) -> Any:
    """``value`` as JSON- and ``weights_only``-safe Python values (no numpy, no NaN/inf)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
