"""Encoder cards for foundation models: a pretrained backbone the user downloaded, registered
beside moola's own encoders so the transfer evidence compares them on the same footing.

A moola encoder artifact holds its tensors (``artifacts/encoders/*.pt`` + card). A
foundation model's weights are the user's (hundreds of MB, a licence of their own) and
stay in their folder; its card records where they are and their content hash instead:

    artifacts/encoders/foundation/{kind}_v{N}.json

``{"format": "moola-foundation-card", "format_version": 1, "name", "version", "arch"
(the kind), "objective": "foundation", "features": "ohlc", "backbone": {"kind", "path",
"sha256", "package", "package_version", "context_length", "embedding_dim"}, "use":
{"model": "fm_probe", "params": {...}}, "library_versions", "provenance", "integrity"}``.
The card is write-once and atomic, anchored in the data root's write journal (key
``foundation:{kind}_v{N}``) before it is written, and loading checks it against the anchor
and the folder against the recorded hash (changed weights are refused, naming both
hashes). A sub-folder keeps these cards apart from the ``.pt`` encoders, so nothing that
loads encoder tensors into a model can mistake one for the other.

``FoundationCard.probe_params`` are the ``fm_probe`` parameters that embed with exactly
the registered weights: how the transfer benchmark's "frozen foundation probe" arm and
``moola train --model fm_probe`` use it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from moola.core.anchors import INTEGRITY, Anchors
from moola.core.atomic import atomic_write_text
from moola.core.errors import CheckpointError, ConfigError, IntegrityError, VersionExistsError
from moola.core.integrity import read_json_bytes
from moola.core.provenance import provenance
from moola.pretrain.artifacts import encoder_dir, library_versions

__all__ = [
    "FOUNDATION_CARD_FORMAT",
    "FoundationCard",
    "foundation_card_dir",
    "foundation_cards",
    "load_foundation_card",
    "write_foundation_card",
]

FOUNDATION_CARD_FORMAT = "moola-foundation-card"
FORMAT_VERSION = 1
_NAME = re.compile(r"^(?P<kind>[a-z0-9-]+)_v(?P<version>\d+)\.json$")


@dataclass(frozen=True)
class FoundationCard:
    """One registered foundation backbone: its card file and content."""

    path: Path
    name: str  # the kind, e.g. "chronos"
    version: int
    card: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.card["backbone"]["kind"])

    @property
    def weights(self) -> Path:
        """The folder holding the weights (the user's, not moola's)."""
        return Path(self.card["backbone"]["path"])

    @property
    def sha256(self) -> str:
        return str(self.card["backbone"]["sha256"])

    def probe_params(self) -> dict[str, Any]:
        """``fm_probe`` parameters that read exactly these weights."""
        return {"backbone": self.kind, "path": str(self.weights), "backbone_sha256": self.sha256}

    def __str__(self) -> str:
        return f"foundation/{self.name}_v{self.version}"


def foundation_card_dir(root: str | Path) -> Path:
    """``<data root>/artifacts/encoders/foundation``."""
    return encoder_dir(root) / "foundation"


def foundation_cards(root: str | Path) -> list[Path]:
    """The registered foundation cards under ``root``, by kind then version."""
    directory = foundation_card_dir(root)
    if not directory.is_dir():
        return []
    found = [
        (m["kind"], int(m["version"]), p) for p in directory.iterdir() if (m := _NAME.match(p.name))
    ]
    return [path for _, _, path in sorted(found)]


def _free_version(root: str | Path, kind: str, version: int | None) -> int:
    """``version`` (refused if taken) or the next free one for ``kind``'s cards."""
    taken = sorted(
        int(m["version"])
        for p in foundation_cards(root)
        if (m := _NAME.match(p.name)) and m["kind"] == kind
    )
    if version is None:
        return (taken[-1] + 1) if taken else 1
    if int(version) != version or version < 1:
        raise ConfigError(f"Foundation card versions are integers >= 1 (got {version!r}).")
    if version in taken:
        raise VersionExistsError(
            f"Foundation card {kind}_v{version} already exists in {foundation_card_dir(root)}; "
            f"cards are write-once. Omit the version to write the next one (v{taken[-1] + 1})."
        )
    return int(version)


def _package_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "missing"


def write_foundation_card(
    root: str | Path, kind: str, path: str | Path, *, version: int | None = None
) -> FoundationCard:
    """Register the ``kind`` backbone in folder ``path`` under ``root`` as a new card
    version. The backbone is loaded first (a folder that does not load is refused by
    ``load_backbone``, nothing written) and one OHLC window embedded to record its width."""
    from moola.models.foundation import backbone_spec, load_backbone

    backbone = load_backbone(kind, path)
    spec = backbone_spec(kind)
    length = min(32, backbone.context_length)
    close = 100.0 * np.exp(np.cumsum(np.full(length, 1e-3)))
    window = np.stack([close, close * 1.001, close * 0.999, close], axis=1)[None]
    width = int(backbone.embed(window).shape[1])
    version = _free_version(root, kind, version)
    card_path = foundation_card_dir(root) / f"{kind}_v{version}.json"
    card = {
        "format": FOUNDATION_CARD_FORMAT,
        "format_version": FORMAT_VERSION,
        "name": kind,
        "version": version,
        "file": card_path.name,
        "arch": kind,
        "objective": "foundation",
        "features": "ohlc",
        "backbone": {
            "kind": kind,
            "path": str(backbone.path.resolve()),
            "sha256": backbone.sha256,
            "package": spec.package,
            "package_version": _package_version(spec.package),
            "context_length": int(backbone.context_length),
            "embedding_dim": width,
            "embedding_dim_for": "OHLC windows (4 channels)",
        },
        "use": {
            "model": "fm_probe",
            "params": {"backbone": kind, "path": str(backbone.path.resolve())},
            "inputs": "ohlc",
        },
        "library_versions": library_versions(),
        "provenance": provenance(),
        "integrity": INTEGRITY,
    }
    card["use"]["params"]["backbone_sha256"] = backbone.sha256
    text = json.dumps(card, indent=2, sort_keys=True) + "\n"
    Anchors(root).record(f"foundation:{kind}_v{version}", text.encode())
    try:
        atomic_write_text(card_path, text)
    except FileExistsError:
        raise VersionExistsError(
            f"Foundation card {card_path} appeared while this run was writing it; cards are "
            "write-once. Run again to write the next version."
        ) from None
    return FoundationCard(card_path, kind, version, card)


def load_foundation_card(path: str | Path, *, check_weights: bool = True) -> FoundationCard:
    """Read a card written by ``write_foundation_card``: checked against its journal anchor
    (inside a data root) and, with ``check_weights``, its weights folder against the
    recorded hash. ``CheckpointError`` names the file and what is wrong."""
    from moola.models.foundation import directory_sha256

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"The foundation card {path} does not exist (or is not a file).")
    data = path.read_bytes()
    try:
        card = read_json_bytes(data, path)
        root = path.parent.parent.parent.parent  # <root>/artifacts/encoders/foundation/
        if path.parent.name == "foundation" and path.parent.parent.name == "encoders":
            Anchors(root).check_marked(f"foundation:{path.stem}", data, path, card)
    except IntegrityError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(card, dict) or card.get("format") != FOUNDATION_CARD_FORMAT:
        raise CheckpointError(
            f"{path} is not a foundation card (its format is {_format(card)!r}); write one "
            "with moola.pretrain.foundation.write_foundation_card."
        )
    if int(card.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"Foundation card {path} is newer than this moola reads.")
    loaded = FoundationCard(path, str(card["name"]), int(card["version"]), card)
    if check_weights:
        if not loaded.weights.is_dir():
            raise CheckpointError(
                f"Foundation card {path} names the weights folder {loaded.weights}, which "
                "does not exist here. Copy the weights there, or register them again."
            )
        found = directory_sha256(loaded.weights)
        if found != loaded.sha256:
            raise CheckpointError(
                f"The weights in {loaded.weights} changed since {path} registered them: now "
                f"{found}, recorded {loaded.sha256}. Point the card at the registered weights, "
                "or register these as a new version."
            )
    return loaded


def _format(card: Any) -> Any:
    return card.get("format") if isinstance(card, dict) else type(card).__name__
