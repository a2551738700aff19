"""``moola labels ...``: build supervised targets over bars, with their horizons recorded."""

from __future__ import annotations

from pathlib import Path

import typer

from moola.cli._common import check_new_name, console, settings_of
from moola.cli.bars import check_table_path, load_input_bars, write_frame
from moola.core.errors import ConfigError
from moola.data import Registry
from moola.features.labels import (
    LABELS,
    TARGETS,
    build_labels,
    check_label_params,
    label_producer,
)
from moola.pipeline.labels import build_and_store_labels

app = typer.Typer(help="Build labels (targets) over bars.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Build labels (targets) over bars."""


_CLASSIFICATION = frozenset({"forward-return", "triple-barrier", "vol-regime"})


@app.command()
def build(
    ctx: typer.Context,
    kind: str = typer.Option(..., "--kind", help=f"Label kind: {', '.join(LABELS)}."),
    horizon: int = typer.Option(..., "--horizon", help="Bars ahead the label looks (>= 1)."),
    raw: str | None = typer.Option(None, "--raw", help="Raw dataset NAME or NAME@vN."),
    bars_file: Path | None = typer.Option(None, "--bars", help="Bars file (CSV, Parquet, ...)."),
    name: str | None = typer.Option(
        None, "--name", help="Store the labels as labels dataset NAME (needs --raw)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the labels here (.csv/.parquet)."),
    neutral_band: float | None = typer.Option(
        None, "--neutral-band", help="forward-return: |log return| at or below it is 0."
    ),
    pt_mult: float | None = typer.Option(
        None, "--pt-mult", help="triple-barrier: profit-take distance in ATRs."
    ),
    sl_mult: float | None = typer.Option(
        None, "--sl-mult", help="triple-barrier: stop-loss distance in ATRs."
    ),
    atr_period: int | None = typer.Option(None, "--atr-period", help="triple-barrier: ATR bars."),
    window: int | None = typer.Option(
        None, "--window", help="vol-regime: trailing bars of the regime cut points."
    ),
    low_quantile: float | None = typer.Option(
        None, "--low-quantile", help="vol-regime: quantile below which volatility is low."
    ),
    high_quantile: float | None = typer.Option(
        None, "--high-quantile", help="vol-regime: quantile above which volatility is high."
    ),
    symbol: str | None = typer.Option(None, help="Symbol of the bars in --bars (if none)."),
    timeframe: str | None = typer.Option(None, help="Time frame of the bars in --bars."),
) -> None:
    """Compute labels with a horizon_end per row; store them or write them to a file."""
    label_producer(kind)  # unknown kind: fail before reading any data
    kind = kind.strip().lower().replace("_", "-")
    given = {
        "neutral_band": neutral_band,
        "pt_mult": pt_mult,
        "sl_mult": sl_mult,
        "atr_period": atr_period,
        "window": window,
        "low_quantile": low_quantile,
        "high_quantile": high_quantile,
    }
    params = {"horizon": horizon, **{k: v for k, v in given.items() if v is not None}}
    check_label_params(kind, params, as_flags=True)
    check_table_path(out, "--out")
    check_new_name(name, "--name")
    if name is None and out is None:
        raise ConfigError("Say where the labels go: --name NAME (with --raw) or --out FILE.")
    if name is not None and raw is None:
        raise ConfigError(
            "--name stores into the registry, which records the raw dataset the labels come "
            "from; use --raw NAME or NAME@vN, or write a file with --out."
        )
    registry = Registry(settings_of(ctx).data_root)
    stored = None
    if name is not None and raw is not None and bars_file is None and not (symbol or timeframe):
        raw_ref = registry.resolve_text(raw, "raw")
        stored = build_and_store_labels(registry, name, raw_ref, kind, **params)
        table = registry.load_table("labels", stored.name, stored.version)
    else:  # a file of labels only, or flags load_input_bars refuses before reading bars
        bars, raw_ref = load_input_bars(
            registry, raw, bars_file, symbol=symbol, timeframe=timeframe
        )
        table = build_labels(bars, kind, **params)

    target = TARGETS[kind]
    labeled = table[target].notna()
    source = str(raw_ref) if raw_ref else str(bars_file)
    console.print(
        f"{source}: {kind} labels (horizon {horizon}) on {len(table):,} bars, "
        f"{int(labeled.sum()):,} labeled, {int((~labeled).sum()):,} missing near the end "
        "or in warm-up"
    )
    if labeled.any() and kind in _CLASSIFICATION:
        counts = table.loc[labeled, target].value_counts().sort_index()
        console.print("  classes: " + ", ".join(f"{k:g}: {v:,}" for k, v in counts.items()))
    elif labeled.any():
        values = table.loc[labeled, target]
        console.print(f"  {target}: mean {values.mean():.4g}, std {values.std():.4g}")

    if out is not None:
        write_frame(table, out)
        console.print(f"[green]Wrote[/] {out}  ({len(table):,} rows)")
    if stored is not None:
        console.print(f"[green]Stored[/] {stored}")
