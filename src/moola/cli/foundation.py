"""``moola foundation ...``: pretrained foundation models the user downloaded, put to use.

Two commands, each one library call: ``register`` (a weights folder -> an encoder card,
``moola.pretrain.foundation.write_foundation_card``, so the transfer evidence and
``fm_probe`` read exactly those weights) and ``features`` (a raw dataset -> zero-shot
forecast quantiles of the next bars as a stored feature set,
``moola.pipeline.foundation.store_forecast_features``). Nothing is downloaded: a folder
without weights is refused with what to put there.
"""

from __future__ import annotations

from pathlib import Path

import typer

from moola.cli._common import check_new_name, console, settings_of
from moola.core.errors import ConfigError

app = typer.Typer(
    help="Foundation models (Kronos, Chronos, TimesFM) from a local folder: register them as "
    "encoder cards, store their zero-shot forecasts as features.",
    no_args_is_help=True,
)


def parse_levels(text: str) -> tuple[float, ...]:
    """``"0.5,0.1,0.9"`` -> ``(0.5, 0.1, 0.9)``; a ConfigError about ``levels`` otherwise."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return tuple(float(part) for part in parts)
    except ValueError:
        raise ConfigError(
            f"levels must be numbers between 0 and 1 separated by commas (e.g. 0.5,0.1,0.9); "
            f"got {text!r}.",
            param="levels",
        ) from None


def check_kind(kind: str, spelled: str) -> None:
    """Refuse an unknown backbone kind as the flag the user typed, before loading anything."""
    from moola.models.foundation import BACKBONES

    if kind not in BACKBONES:
        raise ConfigError(f"{spelled} must be one of {', '.join(sorted(BACKBONES))}; got {kind!r}.")


@app.command()
def register(
    ctx: typer.Context,
    kind: str = typer.Argument(
        ..., metavar="KIND", help="Backbone kind: chronos, kronos or timesfm."
    ),
    path: Path = typer.Argument(..., help="Local folder holding the downloaded weights."),
    version: int | None = typer.Option(
        None, "--version", help="Card version to write (default: the next free one)."
    ),
) -> None:
    """Register a downloaded foundation model as an encoder card (its folder and content
    hash), for ``moola train --model fm_probe`` and the transfer evidence."""
    from moola.pretrain.foundation import write_foundation_card

    check_kind(kind, "KIND")
    root = settings_of(ctx).data_root
    with console.status(f"Loading the {kind} weights in {path}"):
        card = write_foundation_card(root, kind, path, version=version)
    console.print(f"[green]Registered[/] {card}  sha256 {card.sha256}", soft_wrap=True)
    console.print(f"  card: {card.path}", soft_wrap=True, highlight=False, markup=False)
    console.print(f"  weights: {card.weights}", soft_wrap=True, highlight=False, markup=False)


@app.command()
def features(
    ctx: typer.Context,
    raw: str = typer.Argument(..., help="Raw dataset NAME[@vN] whose bars get forecasts."),
    kind: str = typer.Option(..., "--kind", help="Backbone kind: chronos, kronos or timesfm."),
    path: Path = typer.Option(..., "--path", help="Local folder holding the weights."),
    name: str = typer.Option(..., "--name", help="Name of the features dataset to store."),
    context: int = typer.Option(
        64, "--context", help="Closes in each forecast's window (ending at the bar)."
    ),
    horizon: int = typer.Option(
        1, "--horizon", help="Bars ahead: the return to close[t + horizon] is forecast."
    ),
    levels: str = typer.Option(
        "0.5,0.1,0.25,0.75,0.9",
        "--quantiles",
        help="Forecast quantile levels, comma-separated (one column each, e.g. fm_ret1_q50).",
    ),
) -> None:
    """Store a foundation model's zero-shot forecasts (return quantiles of the next
    --horizon bars, from the --context closes ending at each bar) as a feature set."""
    from moola.cli._progress import stage_display
    from moola.data.registry import Registry
    from moola.pipeline.foundation import store_forecast_features
    from moola.training.callbacks import ProgressUpdate

    check_kind(kind, "--kind")
    check_new_name(name, "--name")
    quantiles = parse_levels(levels)
    registry = Registry(settings_of(ctx).data_root)
    ref = registry.resolve_text(raw, "raw")
    with stage_display(console) as display:
        display.stage(f"{kind} forecasts of {ref.pinned}")

        def on_progress(done: int, total: int) -> None:
            display.update(ProgressUpdate(done, total, "windows forecast"))

        stored = store_forecast_features(
            registry,
            ref,
            kind,
            path,
            name=name,
            context=context,
            horizon=horizon,
            levels=quantiles,
            on_progress=on_progress,
        )
    console.print(f"[green]Stored[/] {stored}  content hash {stored.content_hash}", soft_wrap=True)
    console.print(
        f"  beside a feature set in moola train: moola data windows {ref.name} --features SET "
        f"--extra-features {stored.pinned} ...",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
