"""Pretrained sequence models ("foundation models") loaded from a local folder, behind one
interface: ``Backbone.embed`` (frozen window embeddings for a probe) and
``Backbone.forecast`` (zero-shot quantiles of the next bars).

Why an interface of our own: each package (``chronos-forecasting``, ``kronos-finance``, ...)
loads, normalises and batches differently, and moola's estimators, features and the
transfer benchmark need one shape in and one shape out: windows ``(N, T, C)`` float, as the
sequence models take them, to embeddings ``(N, E)`` float64 or forecasts
``(N, horizon, len(quantiles))`` float64.

Weights are never downloaded here: ``load_backbone(kind, path)`` reads a folder the user
filled (``BACKBONES[kind].download_hint`` says with what), refuses a folder without the
files a kind needs, or one of another architecture, naming the path and the fix, and
records the folder's content hash (``directory_sha256``) so a run names exactly the
weights it used. Each kind's package is an optional extra (``pip install 'moola[foundation]'``);
a missing one is a ``ConfigError`` saying what to install.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from moola.core.errors import ConfigError
from moola.core.hashing import sha256_file

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneSpec",
    "backbone_for",
    "backbone_spec",
    "check_window_fits",
    "directory_sha256",
    "load_backbone",
]


def directory_sha256(path: str | Path) -> str:
    """``sha256:`` of a folder's regular files: each relative path and its content hash,
    in sorted order, so the same weights give the same hash wherever they are copied."""
    root = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(file).encode())
        digest.update(b"\n")
    return f"sha256:{digest.hexdigest()}"


class Backbone(ABC):
    """A frozen pretrained sequence model read from ``path`` (its hash: ``sha256``).

    Subclasses set ``kind`` and implement ``_load``, ``context_length`` and ``embed``;
    ``forecast`` is optional (a model that only embeds raises ``ConfigError``).
    """

    kind: ClassVar[str]

    def __init__(self, path: Path, sha256: str) -> None:
        self.path = path
        self.sha256 = sha256
        self._load()

    @abstractmethod
    def _load(self) -> None:
        """Build the model from ``self.path`` (eval mode, no gradients)."""

    @property
    @abstractmethod
    def context_length(self) -> int:
        """The longest window (bars) the model reads."""

    @abstractmethod
    def embed(self, windows: np.ndarray) -> np.ndarray:
        """Embeddings ``(N, E)`` float64 of windows ``(N, T, C)``; the same windows give
        the same embeddings (no sampling, no dropout)."""

    def forecast(
        self, windows: np.ndarray, horizon: int, quantiles: tuple[float, ...]
    ) -> np.ndarray:
        """Quantiles ``(N, horizon, len(quantiles))`` of the next ``horizon`` values of each
        window's last channel (e.g. a close or a return series)."""
        raise ConfigError(
            f"The {self.kind} backbone embeds windows but does not forecast; use a "
            "forecasting backbone (e.g. chronos) for zero-shot forecasts."
        )


@dataclass(frozen=True)
class BackboneSpec:
    """What a kind needs: its class, its package, the files its folder must hold, and
    where its weights come from (said when they are missing; moola downloads nothing)."""

    kind: str
    entry_point: str
    package: str
    module: str
    required_files: tuple[str, ...]
    download_hint: str


BACKBONES: dict[str, BackboneSpec] = {
    spec.kind: spec
    for spec in (
        BackboneSpec(
            "chronos",
            "moola.models.foundation.chronos:ChronosBackbone",
            "chronos-forecasting",
            "chronos",
            ("config.json",),
            "a Chronos-Bolt checkpoint folder (config.json and model.safetensors), e.g. the "
            "files of amazon/chronos-bolt-small on the Hugging Face Hub, downloaded on a "
            "machine with internet (huggingface_hub.snapshot_download), then copied here",
        ),
        BackboneSpec(
            "kronos",
            "moola.models.foundation.kronos:KronosBackbone",
            "kronos-finance",
            "kronos_finance",
            ("tokenizer/config.json", "model/config.json"),
            "a folder with two subfolders, tokenizer/ and model/, each holding config.json "
            "and model.safetensors, e.g. the files of NeoQuasar/Kronos-Tokenizer-2k in "
            "tokenizer/ and of NeoQuasar/Kronos-mini in model/, downloaded from the Hugging "
            "Face Hub on a machine with internet (huggingface_hub.snapshot_download), then "
            "copied here",
        ),
        BackboneSpec(
            "timesfm",
            "moola.models.foundation.timesfm:TimesFMBackbone",
            "timesfm",
            "timesfm",
            ("config.json", "model.safetensors"),
            "a TimesFM 2.5 checkpoint folder (config.json and model.safetensors), e.g. the "
            "files of google/timesfm-2.5-200m-pytorch on the Hugging Face Hub, downloaded on "
            "a machine with internet (huggingface_hub.snapshot_download), then copied here",
        ),
    )
}


def backbone_spec(kind: str) -> BackboneSpec:
    """The spec of ``kind``; ``ConfigError`` naming the known kinds otherwise."""
    try:
        return BACKBONES[kind]
    except KeyError:
        raise ConfigError(f"backbone must be one of {sorted(BACKBONES)}; got {kind!r}.") from None


def load_backbone(kind: str, path: str | Path, *, sha256: str | None = None) -> Backbone:
    """The ``kind`` backbone read from folder ``path``.

    ``sha256`` (a ``directory_sha256`` recorded earlier) is checked before loading: weights
    changed since a run recorded them are refused, naming both hashes. ``ConfigError``
    names the path and what to put there when the folder or its files are missing, or the
    package to install; ``CheckpointError`` (from the kind) when the folder holds another
    architecture.
    """
    spec = backbone_spec(kind)
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ConfigError(
            f"{kind} weights folder {folder} does not exist (or is not a folder). Put "
            f"{spec.download_hint}."
        )
    missing = [name for name in spec.required_files if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"{kind} weights folder {folder} lacks {', '.join(missing)}. Put "
            f"{spec.download_hint}. moola never downloads weights itself."
        )
    if importlib.util.find_spec(spec.module) is None:
        raise ConfigError(
            f"The {kind} backbone needs the package '{spec.package}', which is not "
            "installed: pip install 'moola[foundation]'."
        )
    found = directory_sha256(folder)
    if sha256 is not None and found != sha256:
        raise ConfigError(
            f"The {kind} weights in {folder} changed since they were recorded: now {found}, "
            f"recorded {sha256}. Point to the weights the run used, or retrain."
        )
    module_name, _, attribute = spec.entry_point.partition(":")
    cls = getattr(importlib.import_module(module_name), attribute)
    return cls(folder, found)


def backbone_for(model: str, params: Mapping[str, Any], fitted_sha256: str | None) -> Backbone:
    """The backbone an estimator ``model`` (``fm_probe``, ``fm_forecast``) reads: its
    ``params``' ``backbone`` kind from ``path``, the folder's hash checked against the one
    recorded at fit (``fitted_sha256``) or else the ``backbone_sha256`` parameter."""
    if not params["path"]:
        raise ConfigError(
            f"{model} needs path: the folder holding the backbone's weights "
            f"(backbone={params['backbone']!r}).",
            param="path",
        )
    expected = fitted_sha256 or params["backbone_sha256"]
    return load_backbone(params["backbone"], params["path"], sha256=expected)


def check_window_fits(backbone: Backbone, windows: np.ndarray) -> np.ndarray:
    """``windows`` as float32 ``(N, T, C)``, refused (naming both lengths) when T exceeds
    the backbone's context or the array is not 3-D or not finite."""
    values = np.asarray(windows, dtype=np.float32)
    if values.ndim != 3 or values.shape[0] == 0 or values.shape[2] == 0:
        raise ConfigError(
            f"{backbone.kind} backbone: windows must be shaped (N, T, C) with N, C >= 1; "
            f"got shape {values.shape}."
        )
    if values.shape[1] > backbone.context_length:
        raise ConfigError(
            f"{backbone.kind} backbone at {backbone.path} reads at most "
            f"{backbone.context_length} bars, but the windows have {values.shape[1]}. Use "
            "shorter windows or a model with a longer context."
        )
    if not np.isfinite(values).all():
        raise ConfigError(f"{backbone.kind} backbone: windows hold NaN or infinite values.")
    return values
