"""The demo's pretraining step: a short BiLSTM masked-autoencoder run and its report section.

About ten seconds of pretraining on one CPU thread (a second with ``quick``) over a seeded
sample of the unlabeled windows, in the relative (11-channel) view that the demo's sequence models
read. It shows the path (corpus -> encoder artifact with its card -> ``simple_lstm`` loading
it, with a load report in the run's manifest), not the benefit of pretraining: that
evidence is ``benchmarks/bench_transfer.py``. The encoder is 2 x 64 rather than the default
2 x 128, so that both the pretraining and the six fine-tuning fits of the out-of-fold run
fit the demo's time budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from moola.evaluation.plots import learning_curve_png
from moola.evaluation.report import Section, image_html, pre_html, table_html
from moola.pipeline.pretrain import MaskedAEPretrainConfig, pretrain_masked_ae
from moola.training.callbacks import ProgressUpdate

if TYPE_CHECKING:
    from moola.data._manifest import DatasetRef
    from moola.data.registry import Registry
    from moola.pretrain.artifacts import EncoderArtifact

ENCODER_HIDDEN = 64
ENCODER_LAYERS = 2
PRETRAINED_ROW = "simple_lstm (pretrained)"


PRETRAIN_WINDOWS = 1_024
PRETRAIN_EPOCHS = 3
FINE_TUNE_EPOCHS = 6
FREEZE_EPOCHS = 2


def pretrain_config(seed: int, *, quick: bool) -> MaskedAEPretrainConfig:
    """About ten seconds on one CPU thread (1,024 windows x 3 epochs), a second with
    ``quick``."""
    return MaskedAEPretrainConfig(
        epochs=2 if quick else PRETRAIN_EPOCHS,
        batch_size=64,
        hidden=ENCODER_HIDDEN,
        num_layers=ENCODER_LAYERS,
        decoder_hidden=ENCODER_HIDDEN,
        max_windows=128 if quick else PRETRAIN_WINDOWS,
        seed=seed,
    )


def pretrain_encoder(
    registry: Registry,
    unlabeled: DatasetRef,
    seed: int,
    *,
    quick: bool,
    on_progress: Callable[[ProgressUpdate], None] = lambda _: None,
) -> EncoderArtifact:
    """Pretrain on ``unlabeled`` and store the encoder artifact (with its card); each epoch
    is reported to ``on_progress``."""
    config = pretrain_config(seed, quick=quick)

    def report(epoch: int, loss: float) -> None:
        detail = f"epoch {epoch}/{config.epochs} loss {loss:.4f}"
        on_progress(ProgressUpdate(epoch, config.epochs, detail))

    return pretrain_masked_ae(
        registry, f"{unlabeled.name}@v{unlabeled.version}", config, on_epoch=report
    )


def fine_tuning_params(artifact: EncoderArtifact, *, quick: bool) -> dict[str, Any]:
    """``simple_lstm`` with the pretrained encoder in front: frozen a few epochs, then tuned
    at a tenth of the learning rate (the estimator's default ``encoder_lr_scale``)."""
    return {
        "epochs": 2 if quick else FINE_TUNE_EPOCHS,
        "encoder_projection": True,
        "encoder_hidden": ENCODER_HIDDEN,
        "encoder_layers": ENCODER_LAYERS,
        "pretrained_encoder": str(artifact.path),
        "freeze_epochs": 1 if quick else FREEZE_EPOCHS,
    }


def pretraining_record(artifact: EncoderArtifact, load: dict[str, Any] | None) -> dict[str, Any]:
    """What the demo's manifest keeps of the pretraining and of the fine-tuned model's load."""
    card = artifact.card
    return {
        "artifact": str(artifact),
        "path": str(artifact.path),
        "sha256": card.get("sha256"),
        "unlabeled": card.get("unlabeled"),
        "hyperparameters": card.get("hyperparameters"),
        "n_parameters": card.get("n_parameters"),
        "epochs": card.get("epochs"),
        "loss_curve": card.get("loss_curve"),
        "wall_time_s": card.get("wall_time_s"),
        "windows_per_s": card.get("windows_per_s"),
        "device": card.get("device"),
        "load_report": load,
    }


def pretraining_line(record: dict[str, Any]) -> str:
    """One printable line: the artifact, its corpus, the loss and the load."""
    unlabeled = record["unlabeled"] or {}
    curve = record["loss_curve"] or [float("nan")]
    load = record["load_report"] or {}
    return (
        f"[green]pretrained[/] {record['artifact']} on unlabeled/{unlabeled.get('name')}@v"
        f"{unlabeled.get('version')}: {unlabeled.get('windows_used', 0):,} windows x "
        f"{record['epochs']} epochs, loss {curve[0]:.3f} -> {curve[-1]:.3f}, "
        f"{record['wall_time_s']:.1f} s ({record['windows_per_s']:.0f} windows/s); "
        f"{PRETRAINED_ROW} loaded {load.get('matched_fraction', 0.0):.0%} of its encoder tensors"
    )


def pretraining_section(record: dict[str, Any], pretrained_row: dict[str, Any]) -> Section:
    """The report's "Pretraining" section."""
    unlabeled = record["unlabeled"] or {}
    hyper = record["hyperparameters"] or {}
    load = record["load_report"] or {}
    fine = load.get("fine_tuning") or {}
    summary = [
        {
            "artifact": record["artifact"],
            "unlabeled dataset": f"unlabeled/{unlabeled.get('name')}@v{unlabeled.get('version')}",
            "windows used": f"{unlabeled.get('windows_used', 0):,} of "
            f"{unlabeled.get('windows', 0):,}",
            "epochs": record["epochs"],
            "encoder": f"BiLSTM {hyper.get('num_layers')} x {hyper.get('hidden')}",
            "final loss": (record["loss_curve"] or [None])[-1],
            "wall time (s)": record["wall_time_s"],
            "windows/s": record["windows_per_s"],
        }
    ]
    loaded = [
        {
            "model": PRETRAINED_ROW,
            "matched": f"{len(load.get('matched', []))}/{load.get('n_target')} tensors "
            f"({load.get('matched_fraction', 0.0):.0%})",
            "matched parameters": load.get("matched_parameters"),
            "frozen parameters": load.get("frozen_parameters"),
            "freeze schedule": f"encoder frozen {fine.get('freeze_epochs')} epochs, then tuned at "
            f"lr x {fine.get('encoder_lr_scale')} (unfrozen after epoch "
            f"{fine.get('unfrozen_after_epoch')} of {fine.get('epochs_run')})",
            "normaliser": fine.get("normaliser"),
        }
    ]
    curve = record["loss_curve"] or []
    body = (
        table_html(summary)
        + (image_html(learning_curve_png(curve, title="Masked-AE loss"), "loss") if curve else "")
        + table_html(loaded)
        + pre_html(
            "\n".join(
                f"{key}: {value}"
                for key, value in (
                    ("path", record["path"]),
                    ("sha256", record["sha256"]),
                    ("mask", f"{hyper.get('mask_kind')} {hyper.get('mask_ratio')}"),
                    ("device", record["device"]),
                )
            )
        )
    )
    scored = pretrained_row.get("balanced_accuracy")
    note = (
        "A BiLSTM masked autoencoder (masked-step reconstruction of the 11-channel relative "
        "view) pretrained on a seeded sample of the unlabeled windows; its encoder then sits "
        f"in front of simple_lstm as the {PRETRAINED_ROW!r} row of the model table, trained "
        "out of fold on the same purged 5-fold split as the other models (out-of-fold "
        f"balanced accuracy {scored:.3f}, shown as it came out). Seconds of pretraining "
        "is a smoke test of the path, not evidence that pretraining helps: that is "
        "benchmarks/bench_transfer.py."
        if isinstance(scored, float)
        else "The pretrained encoder's load report, as recorded in the run manifest."
    )
    return Section("Pretraining", body, note)
