"""Load a pretrained encoder into a model, with a report that cannot be ignored.

Every model that takes pretrained weights holds its encoder as the attribute ``encoder``,
exactly as the pretraining model does: a ``BiLSTMEncoder`` (``encoder.lstm.*``, from
``moola pretrain masked-ae``) in ``simple_lstm`` (``encoder_projection=True``) and
``enhanced_simple_lstm``, a ``TS2VecEncoder`` (``encoder.input_fc.*``,
``encoder.blocks.*``, from ``moola pretrain ts2vec``) in ``adapter_lstm``. The loader
copies the artifact's ``encoder.*`` tensors whose name and shape match the target's and
reports, by name and shape, what matched, what the target has that the artifact lacks
(missing), what the artifact has that the target lacks (unexpected) and what differs in
shape. The matched fraction is matched / the target's encoder tensors.

A load that would leave the encoder mostly untrained is an error (``CheckpointError``),
not a warning: an encoder of another kind than the model's (the message names the models
the artifact fits), under 80% matched, or a mismatched input layer (the LSTM's
``weight_ih_l0``, TS2Vec's ``input_fc.weight``: the encoder read another number of input
channels, i.e. another feature set, so its first layer and everything it learned on top of
it mean something else). A BiLSTM may load in part (the lower layers of a deeper one); a
TS2Vec encoder only whole, since another ``repr_dim`` or ``depth`` changes just its last
blocks and would leave them random under ``adapter_lstm``'s frozen encoder. Nothing is
copied then.

``encoder_shape`` reads an artifact's card for the model parameters that give a model the
artifact's encoder shape (e.g. ``adapter_lstm``'s ``encoder_hidden``, ``encoder_repr_dim``,
``encoder_depth``), so a user need not repeat them. ``encoder_params`` turns on the switch
a model needs to hold an encoder at all (``simple_lstm``'s ``encoder_projection``), so
giving an encoder is enough; it refuses models that cannot hold one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from moola.core.errors import CheckpointError, ConfigError
from moola.pretrain.artifacts import EncoderArtifact, load_encoder_artifact

__all__ = [
    "MIN_MATCHED_FRACTION",
    "LoadReport",
    "encoder_params",
    "encoder_shape",
    "load_pretrained_encoder",
]

MIN_MATCHED_FRACTION = 0.8
PREFIX = "encoder."
_CARD_KEYS = ("name", "version", "objective", "features", "epochs", "final_loss", "normaliser")


@dataclass(frozen=True)
class _EncoderKind:
    """What transfer knows about one encoder class (keyed by its class name)."""

    command: str  # the `moola pretrain` subcommand that writes it
    models: str  # the models that hold it, for messages
    architectures: tuple[str, ...]  # their registry names
    marker: str  # a tensor-name prefix only this kind has (cards without a class)
    input_layers: tuple[str, ...]  # tensors (after "encoder.") that read the input channels
    shape: dict[str, str]  # encoder config key -> the model parameter that sets it
    loads_in_part: bool  # may a model take some of its tensors (a BiLSTM's lower layers)?


_KINDS = {
    "BiLSTMEncoder": _EncoderKind(
        command="masked-ae",
        models="simple_lstm (with encoder_projection=True) or enhanced_simple_lstm",
        architectures=("simple_lstm", "enhanced_simple_lstm"),
        marker="encoder.lstm.",
        input_layers=("lstm.weight_ih_l0", "lstm.weight_ih_l0_reverse"),
        shape={"hidden": "encoder_hidden", "num_layers": "encoder_layers"},
        loads_in_part=True,
    ),
    "TS2VecEncoder": _EncoderKind(
        command="ts2vec",
        models="adapter_lstm",
        architectures=("adapter_lstm",),
        marker="encoder.input_fc.",
        input_layers=("input_fc.weight",),
        shape={
            "hidden": "encoder_hidden",
            "repr_dim": "encoder_repr_dim",
            "depth": "encoder_depth",
        },
        loads_in_part=False,
    ),
}
_INPUT_LAYERS = tuple(name for kind in _KINDS.values() for name in kind.input_layers)
# Model parameters without which a model holds no encoder to load into.
_SWITCHES: dict[str, dict[str, Any]] = {"simple_lstm": {"encoder_projection": True}}


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

    ``freeze`` turns off gradients of the copied parameters. ``frozen_parameters`` counts
    the copied parameters without gradients afterwards, including those the model itself
    keeps frozen (``adapter_lstm``'s ``freeze_encoder``). Raises ``CheckpointError``
    naming the file for an unreadable or non-encoder file, a module without an
    ``encoder``, an encoder of another kind, a mismatched input layer, or a matched
    fraction below ``min_fraction``; the message lists every mismatch. Nothing is copied
    then.
    """
    path = Path(path)
    artifact = load_encoder_artifact(path)
    label = f"{artifact.name}_v{artifact.version}"
    model = type(module).__name__
    target = {k: v for k, v in module.state_dict().items() if k.startswith(PREFIX)}
    if not target:
        raise CheckpointError(
            f"{model} has no 'encoder' to load the pretrained encoder {path} into. Use a "
            "model that holds one: simple_lstm with encoder_projection=True, "
            "enhanced_simple_lstm (masked-ae encoders) or adapter_lstm (ts2vec encoders)."
        )
    _check_kind(module, artifact, path)
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
    reason = _refusal(report, _target_kind(module), min_fraction)
    if reason is not None:
        raise CheckpointError(
            f"Pretrained encoder {path} matches {len(matched)}/{len(target)} "
            f"({report.matched_fraction:.1%}) of {model}'s encoder tensors, {reason}; nothing "
            f"was loaded. {_mismatch_text(report)} {_shapes_hint(artifact.encoder_config, module)}"
        )
    module.load_state_dict({k: source[k] for k in matched}, strict=False)
    frozen = 0
    for name, parameter in module.named_parameters():
        if name in matched:
            if freeze:
                parameter.requires_grad_(False)
            frozen += 0 if parameter.requires_grad else parameter.numel()
    return replace(report, frozen_parameters=frozen)


def _refusal(report: LoadReport, kind: _EncoderKind | None, min_fraction: float) -> str | None:
    """Why the load must not go through (a clause of the error message), or None."""
    if report.matched_fraction < min_fraction:
        return f"below the {min_fraction:.0%} moola requires"
    inputs = kind.input_layers if kind is not None else _INPUT_LAYERS
    if any(name.removeprefix(PREFIX) in inputs for name, _, _ in report.shape_mismatched):
        return (
            "and its input layer does not fit (it was trained on another number of input "
            "channels, i.e. another feature set)"
        )
    if kind is not None and not kind.loads_in_part and (report.missing or report.shape_mismatched):
        return (
            "and this encoder loads only whole (another width or depth changes its last "
            "blocks, which would stay untrained)"
        )
    return None


def encoder_params(architecture: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` of model ``architecture`` with its encoder switched on, for loading a
    pretrained encoder: ``simple_lstm`` gets ``encoder_projection=True`` (the only way it
    holds one); models that always hold one are unchanged. ``ConfigError`` in one line
    naming what to change when ``params`` switch the encoder off or the model holds none.
    """
    holders = [name for kind in _KINDS.values() for name in kind.architectures]
    if architecture not in holders:
        raise ConfigError(
            f"Model '{architecture}' holds no encoder to load pretrained_encoder into; "
            f"drop pretrained_encoder or train one of {', '.join(holders)}."
        )
    out = dict(params)
    for key, value in _SWITCHES.get(architecture, {}).items():
        if key in out and out[key] != value:
            raise ConfigError(
                f"pretrained_encoder loads into {architecture} only with {key}={value}; "
                f"drop {key}={out[key]!r} from its parameters or drop pretrained_encoder."
            )
        out[key] = value
    return out


def encoder_shape(path: str | Path, architecture: str) -> dict[str, Any]:
    """Parameters of model ``architecture`` that give it the encoder shape recorded in the
    card of the artifact at ``path`` (e.g. ``{"encoder_hidden": 64, "encoder_repr_dim":
    320, "encoder_depth": 10}`` for ``adapter_lstm`` and a TS2Vec artifact). Empty when the
    artifact's encoder is not one ``architecture`` holds (loading then says so) or its
    card records no shape. ``CheckpointError`` naming ``path`` if it is not an artifact.
    """
    artifact = load_encoder_artifact(path)
    kind = _KINDS.get(_artifact_kind(artifact) or "")
    if kind is None or architecture not in kind.architectures:
        return {}
    saved = artifact.encoder_config
    return {param: saved[key] for key, param in kind.shape.items() if key in saved}


def _target_kind(module: nn.Module) -> _EncoderKind | None:
    return _KINDS.get(type(getattr(module, "encoder", None)).__name__)


def _artifact_kind(artifact: EncoderArtifact) -> str | None:
    """The class name of the artifact's encoder: from its card, else from its tensors."""
    recorded = artifact.card.get("encoder", {}).get("class")
    if isinstance(recorded, str) and recorded:
        return recorded.rsplit(".", 1)[-1]
    for name, kind in _KINDS.items():
        if any(key.startswith(kind.marker) for key in artifact.state_dict):
            return name
    return None


def _check_kind(module: nn.Module, artifact: EncoderArtifact, path: Path) -> None:
    """Refuse an encoder of another kind than ``module.encoder`` (e.g. a masked-AE BiLSTM
    for ``adapter_lstm``), naming the models the artifact fits."""
    ours = type(module.encoder).__name__
    theirs = _artifact_kind(artifact)
    if theirs is None or theirs == ours or ours not in _KINDS:
        return
    model = getattr(module, "architecture", type(module).__name__)
    fits = _KINDS[theirs].models if theirs in _KINDS else "a model that holds one"
    make = f"`moola pretrain {_KINDS[ours].command}`"
    raise CheckpointError(
        f"Pretrained encoder {path} ({artifact.name}_v{artifact.version}) holds a {theirs} "
        f"and fits {fits}, but {model} holds a {ours}; nothing was loaded. Train {fits} "
        f"with it, or pretrain a {ours} for {model} with {make}."
    )


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
    """Both encoders' shapes and the model parameters that make them agree."""
    kind = _target_kind(module)
    config = getattr(getattr(module, "encoder", None), "config", None)
    if kind is None or config is None:
        return "Pretrain an encoder of the model's shape, or build the model to match it."
    keys = ("input_dim", *kind.shape)
    theirs = ", ".join(f"{k} {saved.get(k)}" for k in keys if k in saved)
    ours = ", ".join(f"{k} {getattr(config, k)}" for k in keys if hasattr(config, k))
    if not theirs or not ours:
        return "Pretrain an encoder of the model's shape, or build the model to match it."
    params = ", ".join(("input_dim", *kind.shape.values()))
    return (
        f"The artifact's encoder has {theirs}; the model's has {ours}. Pretrain on the "
        "model's input features with its encoder size, or build the model to match "
        f"({params}; `moola train` and create() take those left unset from the card)."
    )
