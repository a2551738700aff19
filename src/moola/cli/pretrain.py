"""``moola pretrain masked-ae``: pretrain an encoder on unlabeled windows, write its artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from moola.cli._common import console, settings_of
from moola.core.errors import ConfigError
from moola.core.settings import parse_config
from moola.data.registry import Registry

app = typer.Typer(no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Pretrain encoders on unlabeled windows (self-supervised)."""


@app.command("masked-ae")
def masked_ae(
    ctx: typer.Context,
    unlabeled: str | None = typer.Option(
        None, help="Unlabeled dataset NAME or NAME@vN (default with --resume: its dataset)."
    ),
    epochs: int | None = typer.Option(None, min=1, help="Passes over the corpus."),
    batch_size: int | None = typer.Option(None, min=2, help="Windows per step (default 64)."),
    mask_ratio: float | None = typer.Option(None, help="Share of steps hidden (default 0.15)."),
    mask_kind: str | None = typer.Option(None, help="random (default) or block."),
    hidden: int | None = typer.Option(None, min=1, help="Encoder width per direction (128)."),
    layers: int | None = typer.Option(None, min=1, help="Encoder LSTM layers (default 2)."),
    lr: float | None = typer.Option(None, help="Peak learning rate (default 1e-3)."),
    max_windows: int | None = typer.Option(
        None, min=1, help="Train on a seeded random subset of this many windows."
    ),
    augment: bool | None = typer.Option(
        None, "--augment/--no-augment", help="On-the-fly augmentation (default on)."
    ),
    seed: int | None = typer.Option(None, help="Seed (default: the global --seed or 0)."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or mps (default: global)."),
    resume: Path | None = typer.Option(
        None, help="Continue an interrupted run from its checkpoint (.ckpt)."
    ),
) -> None:
    """Pretrain a BiLSTM masked autoencoder; writes artifacts/encoders/bilstm_mae_rel11_vN."""
    from moola.pipeline.pretrain import MaskedAEPretrainConfig, pretrain_masked_ae
    from moola.pretrain.artifacts import load_training_checkpoint
    from moola.pretrain.augment import AugmentConfig

    settings = settings_of(ctx)
    values: dict[str, Any] = {}
    dataset_ref = unlabeled or ""
    if resume is not None:  # settings and dataset from the checkpoint; flags must agree
        saved = load_training_checkpoint(resume)
        values = dict(saved["config"])
        dataset = saved["dataset"]
        dataset_ref = unlabeled or f"{dataset['name']}@v{dataset['version']}"
    elif unlabeled is None or epochs is None:
        missing = [f for f, v in (("--unlabeled", unlabeled), ("--epochs", epochs)) if v is None]
        raise ConfigError(
            f"moola pretrain masked-ae needs {' and '.join(missing)} (or --resume CHECKPOINT)."
        )
    flags = {
        "epochs": epochs,
        "batch_size": batch_size,
        "mask_ratio": mask_ratio,
        "mask_kind": mask_kind,
        "hidden": hidden,
        "num_layers": layers,
        "lr": lr,
        "max_windows": max_windows,
        "seed": seed,
        "device": device,
    }
    values.update({key: value for key, value in flags.items() if value is not None})
    if augment is not None:
        values["augment"] = AugmentConfig().model_dump() if augment else None
    values.setdefault("seed", settings.seed)
    values.setdefault("device", settings.device)
    config = parse_config(MaskedAEPretrainConfig, values, where="moola pretrain masked-ae flags")
    registry = Registry(settings.data_root)
    with console.status("pretraining masked autoencoder") as status:
        artifact = pretrain_masked_ae(
            registry,
            dataset_ref,
            config,
            resume=resume,
            on_epoch=lambda epoch, loss: status.update(
                f"pretraining masked autoencoder: epoch {epoch}/{config.epochs}, loss {loss:.4f}"
            ),
        )
    card = artifact.card
    table = Table(title=f"encoder {artifact}")
    table.add_column("field")
    table.add_column("value", overflow="fold")  # hashes and paths in full
    unlabeled_ref = card["unlabeled"]
    rows = {
        "artifact": str(artifact.path),
        "card": str(artifact.card_path),
        "sha256": card["sha256"],
        "encoder": ", ".join(f"{k} {v}" for k, v in card["encoder"]["config"].items()),
        "parameters": f"{card['n_parameters']:,}",
        "unlabeled": f"{unlabeled_ref['name']}@v{unlabeled_ref['version']} "
        f"({unlabeled_ref['windows_used']:,} of {unlabeled_ref['windows']:,} windows, "
        f"{unlabeled_ref['content_hash']})",
        "objective": f"{card['objective']} (mask {config.mask_kind} {config.mask_ratio:g})",
        "epochs": str(card["epochs"])
        + (f" (resumed after {card['resumed_from_epoch']})" if card["resumed_from_epoch"] else ""),
        "loss curve": ", ".join(f"{loss:.4f}" for loss in card["loss_curve"]),
        "wall time": f"{card['wall_time_s']:.1f} s on {card['device']}",
        "throughput": f"{card['windows_per_s']:,.0f} windows/s",
    }
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)
