"""Load a pretrained encoder into a model, with a report that cannot be ignored.

Every model that takes pretrained weights holds a ``BiLSTMEncoder`` as its attribute
``encoder`` (tensor names ``encoder.lstm.*``), exactly as the pretraining model does. The
loader copies the artifact's ``encoder.*`` tensors whose name and shape match the target's
and reports, by name and shape, what matched, what the target has that the artifact lacks
(missing), what the artifact has that the target lacks (unexpected) and what differs in
shape. The matched fraction is matched / the target's encoder tensors.

A load that would leave the encoder mostly untrained is an error (``CheckpointError``),
not a warning: under 80% matched, or a mismatched input layer (``weight_ih_l0``: the
encoder read another number of input channels, i.e. another feature set, so its first
layer and everything it learned on top of it mean something else). Nothing is copied then.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from moola.core.errors import CheckpointError
from moola.pretrain.artifacts import load_encoder_artifact

__all__ = ["MIN_MATCHED_FRACTION", "LoadReport", "load_pretrained_encoder"]

MIN_MATCHED_FRACTION = 0.8
PREFIX = "encoder."
_CARD_KEYS = ("name", "version", "objective", "features", "epochs", "final_loss", "normaliser")


@dataclass(frozen=True)
class LoadReport:
    """What ``load_pretrained_encoder`` copied into a model, name by name.

    ``shape_mismatched`` rows are ``(name, artifact shape, target shape)``.
    ``fine_tuning`` is filled in by the trainer that uses the encoder (freeze schedule).
    """

    path: str
    artifact: str
    n_target: int
    matched: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    shape_mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
    matched_parameters: int
    frozen_parameters: int
    card: dict[str, Any] = field(default_factory=dict)
    fine_tuning: dict[str, Any] | None = None

    @property
    def matched_fraction(self) -> float:
        """matched / the target's encoder tensors (0 when the target has none)."""
        return len(self.matched) / self.n_target if self.n_target else 0.0

    def summary(self) -> str:
        """Several printable lines: fraction, counts, every mismatch, the freeze schedule."""
        lines = [
            f"pretrained encoder {self.artifact} ({self.path})",
            f"  matched {len(self.matched)}/{self.n_target} encoder tensors "
            f"({self.matched_fraction:.1%}), {self.matched_parameters:,} parameters; "
            f"frozen {self.frozen_parameters:,}",
        ]
        unlabeled = self.card.get("unlabeled")
        if unlabeled:
            lines.append(
                f"  pretrained on unlabeled/{unlabeled.get('name')}@v{unlabeled.get('version')}"
                f" ({self.card.get('objective')}, {self.card.get('epochs')} epochs)"
            )
        for name, saved, target in self.shape_mismatched:
            lines.append(f"  shape mismatch {name}: artifact {list(saved)} vs model {list(target)}")
        if self.missing:
            lines.append(f"  missing from the artifact: {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected in the artifact: {', '.join(self.unexpected)}")
        if self.fine_tuning:
            lines.append(
                "  fine-tuning: "
                + ", ".join(f"{key} {value}" for key, value in self.fine_tuning.items())
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples) for manifests and model files."""
        out = asdict(self)
        out["matched_fraction"] = self.matched_fraction
        out["shape_mismatched"] = [
            [name, list(saved), list(target)] for name, saved, target in self.shape_mismatched
        ]
        for key in ("matched", "missing", "unexpected"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadReport:
        """The inverse of ``to_dict``."""
        values = {k: v for k, v in data.items() if k != "matched_fraction"}
        for key in ("matched", "missing", "unexpected"):
            values[key] = tuple(values[key])
        values["shape_mismatched"] = tuple(
            (name, tuple(saved), tuple(target)) for name, saved, target in data["shape_mismatched"]
        )
        return cls(**values)


def load_pretrained_encoder(
    module: nn.Module,
    path: str | Path,
    *,
    freeze: bool = False,
    min_fraction: float = MIN_MATCHED_FRACTION,
) -> LoadReport:
    """Copy the encoder artifact at ``path`` into ``module.encoder``; return the report.

    ``freeze`` turns off gradients of the copied parameters (``frozen_parameters`` counts
    them). Raises ``CheckpointError`` naming the file for an unreadable or non-encoder
    file, a module without an ``encoder``, a mismatched input layer, or a matched fraction
    below ``min_fraction``; the message lists every mismatch. Nothing is copied then.
    """
    path = Path(path)
    artifact = load_encoder_artifact(path)
    label = f"{artifact.name}_v{artifact.version}"
    model = type(module).__name__
    target = {k: v for k, v in module.state_dict().items() if k.startswith(PREFIX)}
    if not target:
        raise CheckpointError(
            f"{model} has no 'encoder' to load the pretrained encoder {path} into. Use a "
            "model that holds one: simple_lstm with encoder_projection=True, or "
            "enhanced_simple_lstm."
        )
    source = {k: v for k, v in artifact.state_dict.items() if k.startswith(PREFIX)}
    matched = tuple(k for k in target if k in source and source[k].shape == target[k].shape)
    mismatched = tuple(
        (k, tuple(source[k].shape), tuple(target[k].shape))
        for k in target
        if k in source and source[k].shape != target[k].shape
    )
    report = LoadReport(
        path=str(path),
        artifact=label,
        n_target=len(target),
        matched=matched,
        missing=tuple(k for k in target if k not in source),
        unexpected=tuple(k for k in source if k not in target),
        shape_mismatched=mismatched,
        matched_parameters=int(sum(target[k].numel() for k in matched)),
        frozen_parameters=0,
        card={
            **{k: artifact.card[k] for k in (*_CARD_KEYS, "unlabeled") if k in artifact.card},
            "sha256": artifact.sha256,  # of the bytes loaded
        },
    )
    input_layer = [row for row in mismatched if "weight_ih_l0" in row[0]]
    if report.matched_fraction < min_fraction or input_layer:
        reason = (
            f"below the {min_fraction:.0%} moola requires"
            if report.matched_fraction < min_fraction
            else "and its input layer does not fit (it was trained on another number of "
            "input channels, i.e. another feature set)"
        )
        raise CheckpointError(
            f"Pretrained encoder {path} matches {len(matched)}/{len(target)} "
            f"({report.matched_fraction:.1%}) of {model}'s encoder tensors, {reason}; nothing "
            f"was loaded. {_mismatch_text(report)} {_shapes_hint(artifact.encoder_config, module)}"
        )
    module.load_state_dict({k: source[k] for k in matched}, strict=False)
    if freeze:
        frozen = 0
        for name, parameter in module.named_parameters():
            if name in matched:
                parameter.requires_grad_(False)
                frozen += parameter.numel()
        report = replace(report, frozen_parameters=frozen)
    return report


def _mismatch_text(report: LoadReport) -> str:
    parts = [
        f"{name} artifact {list(saved)} vs model {list(target)}"
        for name, saved, target in report.shape_mismatched
    ]
    text = f"Shape mismatches: {'; '.join(parts)}." if parts else "No shape mismatches."
    if report.missing:
        text += f" Missing from the artifact: {', '.join(report.missing)}."
    if report.unexpected:
        text += f" Unexpected in the artifact: {', '.join(report.unexpected)}."
    return text


def _shapes_hint(saved: dict[str, Any], module: nn.Module) -> str:
    """Both encoders' shapes and how to make them agree."""
    encoder = getattr(module, "encoder", None)
    config = getattr(encoder, "config", None)
    keys = ("input_dim", "hidden", "num_layers")
    theirs = ", ".join(f"{k} {saved.get(k)}" for k in keys if k in saved)
    ours = ", ".join(f"{k} {getattr(config, k)}" for k in keys if hasattr(config, k))
    if not theirs or not ours:
        return "Pretrain an encoder of the model's shape, or build the model to match it."
    return (
        f"The artifact's encoder has {theirs}; the model's has {ours}. Pretrain on the "
        "model's input features with its encoder size, or build the model to match "
        "(input_dim, encoder_hidden, encoder_layers)."
    )
