"""``moola pretrain masked-ae | ts2vec``: pretrain an encoder on unlabeled windows, write
its artifact, print its card."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from moola.cli._common import console, settings_of
from moola.core.errors import ConfigError
from moola.core.settings import parse_config
from moola.data.registry import Registry

if TYPE_CHECKING:
    from moola.pipeline.pretrain import PretrainConfig
    from moola.pretrain.artifacts import EncoderArtifact

app = typer.Typer(no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Pretrain encoders on unlabeled windows (self-supervised)."""


_UNLABELED_HELP = "Unlabeled dataset NAME or NAME@vN (default with --resume: its dataset)."
_MAX_WINDOWS_HELP = "Train on a seeded random subset of this many windows."
_AUGMENT_HELP = "On-the-fly augmentation (default on)."
_SEED_HELP = "Seed (default: the global --seed or 0)."
_DEVICE_HELP = "auto, cpu, cuda or mps (default: global)."
_RESUME_HELP = "Continue an interrupted run from its checkpoint (.ckpt)."
_NPROC_HELP = (
    "Train in N processes on this machine (torchrun; one GPU each on CUDA, else gloo on "
    "the CPU); each takes its share of every batch and only the first writes."
)


@app.command("masked-ae")
def masked_ae(
    ctx: typer.Context,
    unlabeled: str | None = typer.Option(None, help=_UNLABELED_HELP),
    epochs: int | None = typer.Option(None, min=1, help="Passes over the corpus."),
    batch_size: int | None = typer.Option(None, min=2, help="Windows per step (default 64)."),
    mask_ratio: float | None = typer.Option(None, help="Share of steps hidden (default 0.15)."),
    mask_kind: str | None = typer.Option(None, help="random (default) or block."),
    hidden: int | None = typer.Option(None, min=1, help="Encoder width per direction (128)."),
    layers: int | None = typer.Option(None, min=1, help="Encoder LSTM layers (default 2)."),
    lr: float | None = typer.Option(None, help="Peak learning rate (default 1e-3)."),
    max_windows: int | None = typer.Option(None, min=1, help=_MAX_WINDOWS_HELP),
    augment: bool | None = typer.Option(None, "--augment/--no-augment", help=_AUGMENT_HELP),
    seed: int | None = typer.Option(None, help=_SEED_HELP),
    device: str | None = typer.Option(None, help=_DEVICE_HELP),
    resume: Path | None = typer.Option(None, help=_RESUME_HELP),
    nproc: int = typer.Option(1, min=1, help=_NPROC_HELP),
) -> None:
    """Pretrain a BiLSTM masked autoencoder; writes artifacts/encoders/bilstm_mae_rel11_vN."""
    from moola.pipeline.pretrain import MaskedAEPretrainConfig, pretrain_masked_ae

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
    _run(ctx, MaskedAEPretrainConfig, pretrain_masked_ae, unlabeled, flags, augment, resume, nproc)


@app.command("ts2vec")
def ts2vec(
    ctx: typer.Context,
    unlabeled: str | None = typer.Option(None, help=_UNLABELED_HELP),
    epochs: int | None = typer.Option(None, min=1, help="Passes over the corpus."),
    batch_size: int | None = typer.Option(None, min=2, help="Windows per step (default 64)."),
    lr: float | None = typer.Option(None, help="Peak learning rate (default 1e-3)."),
    hidden: int | None = typer.Option(None, min=1, help="Encoder hidden width (default 64)."),
    repr_dim: int | None = typer.Option(
        None, min=1, help="Width of each step's representation (default 320)."
    ),
    depth: int | None = typer.Option(
        None, min=0, help="Dilated blocks (default 10; 4 already sees 105 bars)."
    ),
    max_windows: int | None = typer.Option(None, min=1, help=_MAX_WINDOWS_HELP),
    augment: bool | None = typer.Option(None, "--augment/--no-augment", help=_AUGMENT_HELP),
    seed: int | None = typer.Option(None, help=_SEED_HELP),
    device: str | None = typer.Option(None, help=_DEVICE_HELP),
    resume: Path | None = typer.Option(None, help=_RESUME_HELP),
    nproc: int = typer.Option(1, min=1, help=_NPROC_HELP),
) -> None:
    """Pretrain a TS2Vec dilated-conv encoder (for adapter_lstm); writes
    artifacts/encoders/dilconv_ts2vec_rel11_vN."""
    from moola.pipeline.pretrain import TS2VecPretrainConfig, pretrain_ts2vec

    flags = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "hidden": hidden,
        "repr_dim": repr_dim,
        "depth": depth,
        "max_windows": max_windows,
        "seed": seed,
        "device": device,
    }
    _run(ctx, TS2VecPretrainConfig, pretrain_ts2vec, unlabeled, flags, augment, resume, nproc)


def _run(
    ctx: typer.Context,
    config_cls: type[PretrainConfig],
    pretrain: Callable[..., EncoderArtifact],
    unlabeled: str | None,
    flags: dict[str, Any],
    augment: bool | None,
    resume: Path | None,
    nproc: int = 1,
) -> None:
    """Resolve the settings (checkpoint, then flags, then global settings), run, print.

    With ``--nproc N`` (N > 1) this command starts itself again in N processes through
    torchrun and waits for them; each of those joins the process group and runs it."""
    from moola.pipeline.pretrain import read_resume_checkpoint
    from moola.pretrain.augment import AugmentConfig
    from moola.training import distributed

    if nproc > 1 and not distributed.under_launcher():
        raise typer.Exit(distributed.launch(nproc, sys.argv[1:]))

    command = f"moola pretrain {config_cls.COMMAND}"
    settings = settings_of(ctx)
    values: dict[str, Any] = {}
    dataset_ref = unlabeled or ""
    if resume is not None:  # settings and dataset from the checkpoint; flags must agree
        saved = read_resume_checkpoint(resume, config_cls)
        values = dict(saved["config"])
        dataset = saved["dataset"]
        dataset_ref = unlabeled or f"{dataset['name']}@v{dataset['version']}"
    elif unlabeled is None or flags["epochs"] is None:
        given = (("--unlabeled", unlabeled), ("--epochs", flags["epochs"]))
        missing = [flag for flag, value in given if value is None]
        raise ConfigError(f"{command} needs {' and '.join(missing)} (or --resume CHECKPOINT).")
    values.update({key: value for key, value in flags.items() if value is not None})
    if augment is not None:
        values["augment"] = AugmentConfig().model_dump() if augment else None
    values.setdefault("seed", settings.seed)
    values.setdefault("device", settings.device)
    config = parse_config(config_cls, values, where=f"{command} flags")
    registry = Registry(settings.data_root)
    what = f"pretraining {config.OBJECTIVE}"
    with distributed.processes(config.device) as group:
        if group is not None and not group.is_main:  # rank 0 reports for all
            pretrain(registry, dataset_ref, config, resume=resume)
            return
        with console.status(what) as status:
            artifact = pretrain(
                registry,
                dataset_ref,
                config,
                resume=resume,
                on_epoch=lambda epoch, loss: status.update(
                    f"{what}: epoch {epoch}/{config.epochs}, loss {loss:.4f}"
                ),
            )
    console.print(_artifact_table(artifact, config.describe()))


def _artifact_table(artifact: EncoderArtifact, objective: str) -> Table:
    """The artifact's card as a two-column table (hashes and paths in full)."""
    card = artifact.card
    table = Table(title=f"encoder {artifact}")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    unlabeled = card["unlabeled"]
    resumed = card["resumed_from_epoch"]
    rows = {
        "artifact": str(artifact.path),
        "card": str(artifact.card_path),
        "sha256": card["sha256"],
        "encoder": ", ".join(f"{k} {v}" for k, v in card["encoder"]["config"].items()),
        "parameters": f"{card['n_parameters']:,}",
        "unlabeled": f"{unlabeled['name']}@v{unlabeled['version']} "
        f"({unlabeled['windows_used']:,} of {unlabeled['windows']:,} windows, "
        f"{unlabeled['content_hash']})",
        "objective": objective,
        "epochs": str(card["epochs"]) + (f" (resumed after {resumed})" if resumed else ""),
        "loss curve": ", ".join(f"{loss:.4f}" for loss in card["loss_curve"]),
        "wall time": f"{card['wall_time_s']:.1f} s on {card['device']}",
        "throughput": f"{card['windows_per_s']:,.0f} windows/s",
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table
