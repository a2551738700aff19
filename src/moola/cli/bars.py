"""``moola bars ...``: event-driven bars (directional change) from raw datasets or bar files."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import typer

from moola.cli._common import check_new_name, console, settings_of
from moola.core.atomic import atomic_write_bytes
from moola.core.errors import ConfigError
from moola.data import DatasetRef, Registry
from moola.features.dc import dc_tables

TABLE_SUFFIXES: dict[str, str] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}

app = typer.Typer(help="Event-driven (intrinsic time) bars.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Event-driven (intrinsic time) bars."""


def load_input_bars(
    registry: Registry,
    raw: str | None,
    bars_file: Path | None,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
) -> tuple[pd.DataFrame, DatasetRef | None]:
    """Bars from ``--raw NAME[@vN]`` (with its reference) or ``--bars FILE`` (reference None)."""
    if (raw is None) == (bars_file is None):
        raise ConfigError(
            "Give exactly one bar source: --raw NAME or NAME@vN (a stored raw dataset) or "
            "--bars FILE (a CSV, Parquet, HistData, Coinbase or DBN file)."
        )
    if raw is not None:
        if symbol or timeframe:
            raise ConfigError(
                "--symbol/--timeframe describe a --bars file; a raw dataset has both."
            )
        ref = registry.resolve_text(raw, "raw")
        return registry.load_raw(ref.name, ref.version), ref
    from moola.data.sources import read_bars

    return read_bars(bars_file, symbol=symbol, timeframe=timeframe), None


def check_table_path(path: Path | None, flag: str) -> None:
    """Refuse an output path whose extension is not .csv, .parquet or .pq, naming ``flag``."""
    if path is not None and path.suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(
            f"{flag} {path}: cannot tell the format from the extension {path.suffix!r}; "
            f"use one of {', '.join(TABLE_SUFFIXES)}."
        )


def write_frame(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` as CSV or Parquet (by extension), atomically: temp file, then rename."""
    if TABLE_SUFFIXES[path.suffix.lower()] == "csv":
        data = table.to_csv(index=False).encode("utf-8")
    else:
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    atomic_write_bytes(path, data, overwrite=True)


def _check_threshold(value: float | None, flag: str) -> None:
    if value is not None and not 0.0 < value < 1.0:
        raise ConfigError(
            f"{flag} {value!r} must be a relative move in (0, 1), e.g. 0.0005 for FX majors, "
            "0.002 for volatile pairs, 0.005-0.01 for crypto."
        )


@app.command()
def dc(
    ctx: typer.Context,
    raw: str | None = typer.Option(None, "--raw", help="Raw dataset NAME or NAME@vN."),
    bars_file: Path | None = typer.Option(None, "--bars", help="Bars file (CSV, Parquet, ...)."),
    threshold: float = typer.Option(
        ...,
        "--threshold",
        help="Relative threshold of upward events (and downward ones unless --down): "
        "FX majors 0.0005-0.001, volatile pairs 0.001-0.002, crypto 0.005-0.01.",
    ),
    down: float | None = typer.Option(None, "--down", help="Threshold of downward events."),
    out: Path | None = typer.Option(None, "--out", help="Write the events here (.csv/.parquet)."),
    dc_bars_out: Path | None = typer.Option(
        None, "--dc-bars-out", help="Write the DC/OS bars here (.csv/.parquet)."
    ),
    name: str | None = typer.Option(
        None, "--name", help="Store the events as features dataset NAME (needs --raw)."
    ),
    dc_bars_name: str | None = typer.Option(
        None, "--dc-bars-name", help="Store the DC/OS bars as features dataset NAME (needs --raw)."
    ),
    as_raw: str | None = typer.Option(
        None,
        "--as-raw",
        help="Store one bar per event as raw dataset NAME (needs --raw), to window with "
        "`moola data windows NAME --allow-gaps`.",
    ),
    symbol: str | None = typer.Option(None, help="Symbol of the bars in --bars (if none)."),
    timeframe: str | None = typer.Option(None, help="Time frame of the bars in --bars."),
) -> None:
    """Detect directional-change events on closes; print a summary, write or store them."""
    registry = Registry(settings_of(ctx).data_root)
    _check_threshold(threshold, "--threshold")
    _check_threshold(down, "--down")
    check_table_path(out, "--out")
    check_table_path(dc_bars_out, "--dc-bars-out")
    check_new_name(name, "--name")
    check_new_name(dc_bars_name, "--dc-bars-name")
    check_new_name(as_raw, "--as-raw")
    if (name or dc_bars_name or as_raw) and raw is None:
        raise ConfigError(
            "--name/--dc-bars-name/--as-raw store into the registry, which records the raw "
            "dataset the events come from; use --raw NAME or NAME@vN, or write a file with "
            "--out/--dc-bars-out."
        )
    bars, raw_ref = load_input_bars(registry, raw, bars_file, symbol=symbol, timeframe=timeframe)
    events, segments = dc_tables(bars, up=threshold, down=down)
    params = {"up": threshold, "down": threshold if down is None else down}

    n_up = int((events["direction"] == "up").sum())
    source = str(raw_ref) if raw_ref else str(bars_file)
    console.print(
        f"{source}: {len(bars):,} bars -> {len(events):,} DC events "
        f"({n_up:,} up, {len(events) - n_up:,} down), {len(segments):,} DC/OS bars "
        f"(up {params['up']:g}, down {params['down']:g})"
    )
    if len(events):
        gaps = events.groupby("symbol")["confirm_pos"].diff().dropna()
        if len(gaps):
            console.print(f"  mean bars between events {gaps.mean():.1f}")
        console.print(f"  mean |overshoot| {events['os_return'].abs().mean():.5f} (log)")

    for path, table in ((out, events), (dc_bars_out, segments)):
        if path is not None:
            write_frame(table, path)
            console.print(f"[green]Wrote[/] {path}  ({len(table):,} rows)")
    stored = ((name, events, "dc_events"), (dc_bars_name, segments, "dc_bars"))
    for dataset, table, what in stored:
        if dataset and raw_ref is not None:
            ref = registry.write_table(
                "features",
                dataset,
                table,
                parents=[raw_ref],
                meta={"table": what, "feature": "dc", "params": params},
                transformations=[{"name": f"moola.features.dc.{what}", "params": params}],
            )
            console.print(f"[green]Stored[/] {ref}  ({len(table):,} rows)")
    if as_raw and raw_ref is not None:
        from moola.pipeline.event_bars import store_event_bars

        ref = store_event_bars(registry, raw_ref, name=as_raw, up=threshold, down=down)
        console.print(
            f"[green]Stored[/] {ref}  ({registry.meta(ref)['rows']:,} event bars); window "
            f"them with `moola data windows {as_raw} --name NAME --length L --allow-gaps`"
        )
