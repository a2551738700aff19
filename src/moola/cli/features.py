"""``moola features ...``: list features and sets, build feature tables, show one."""

from __future__ import annotations

import io
from pathlib import Path

import typer
from rich.table import Table

from moola.cli._common import check_new_name, console, err_console, settings_of
from moola.core.errors import ConfigError, MoolaError
from moola.data.registry import Registry

app = typer.Typer(
    help="List features and feature sets, build and show feature tables.", no_args_is_help=True
)


def _registry(ctx: typer.Context) -> Registry:
    return Registry(settings_of(ctx).data_root)


@app.command("list")
def list_features() -> None:
    """List every registered feature (parameters, columns) and the shipped feature sets."""
    from moola.features import FEATURES, create_feature, list_feature_sets, load_feature_set

    table = Table(title="Features")
    for column in ("name", "parameters (defaults)", "columns (with defaults)", "lookback"):
        table.add_column(column)
    for name in sorted(FEATURES):
        try:
            feature = create_feature(name)
        except ConfigError:  # a feature whose parameters have no defaults
            table.add_row(name, "(required, see its docstring)", "-", "-")
            continue
        params = ", ".join(f"{k}={v!r}" for k, v in feature.params.model_dump().items())
        table.add_row(name, params or "-", ", ".join(feature.columns()), str(feature.lookback()))
    console.print(table)
    sets = Table(title="Shipped feature sets (--set NAME)")
    for column in ("name", "version", "columns", "lookback", "bars", "description"):
        sets.add_column(column)
    for name in list_feature_sets():
        fset = load_feature_set(name)
        sets.add_row(
            name,
            f"v{fset.spec.version}",
            str(len(fset.columns)),
            str(fset.lookback),
            "/".join(fset.spec.timeframes) or "any",
            fset.spec.description,
        )
    console.print(sets)


@app.command()
def build(
    ctx: typer.Context,
    feature_set: str = typer.Option(
        ..., "--set", help="Shipped set name (see `moola features list`) or a YAML file."
    ),
    raw: str | None = typer.Option(None, "--raw", help="Raw dataset NAME[@vN] to compute on."),
    name: str | None = typer.Option(
        None, "--name", help="Name of the features dataset to store (with --raw)."
    ),
    bars: Path | None = typer.Option(
        None, "--bars", help="Bars file to compute on instead of a dataset (with --out)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Output file, .parquet or .csv (with --bars)."
    ),
    format: str | None = typer.Option(
        None, "--format", help="Format of --bars: csv, parquet, histdata, coinbase or dbn."
    ),
    symbol: str | None = typer.Option(None, help="Symbol of --bars (if the file has none)."),
    timeframe: str | None = typer.Option(None, help="Bar time frame of --bars, e.g. 1m."),
    allow_short: bool = typer.Option(
        False, "--allow-short", help="Accept fewer bars per symbol than the set's lookback."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Compute a feature set on a raw dataset (stored as a features dataset) or a bars file."""
    from moola.features import load_feature_set
    from moola.features.featureset import feature_table
    from moola.pipeline.features import build_features

    if (raw is None) == (bars is None):
        raise ConfigError(
            "Give either --raw NAME[@vN] --name OUT (registry) or --bars FILE --out FILE."
        )
    fset = load_feature_set(feature_set)
    if raw is not None:
        if name is None or out is not None:
            raise ConfigError("--raw stores a features dataset: give --name OUT, not --out.")
        check_new_name(name, "--name")
        registry = _registry(ctx)
        raw_ref = registry.resolve_text(raw, "raw")
        with console.status(f"Computing {fset.name} ({len(fset.columns)} columns) on {raw_ref}"):
            ref = build_features(registry, raw_ref, fset, name=name, allow_short=allow_short)
        meta = registry.meta(ref)
        for note in meta.get("suitability", []):
            console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
        console.print(
            f"[green]Stored[/] {ref}  ({meta['rows']:,} rows x {len(fset.columns)} features, "
            f"lookback {fset.lookback:,} bars)"
        )
        console.print(f"  content hash {ref.content_hash}")
        return
    assert bars is not None
    if out is None or name is not None:
        raise ConfigError("--bars writes a file: give --out FILE.parquet or FILE.csv, not --name.")
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ConfigError(f"--out {out}: use a .parquet or .csv file name.")
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out} already exists; pass --overwrite to replace it.")
    from moola.core.atomic import atomic_write_bytes
    from moola.data.sources import read_bars

    with console.status(f"Reading {bars}"):
        frame = read_bars(bars, format=format, symbol=symbol, timeframe=timeframe)
    try:  # the file's bars are refused naming the file, not only the row
        if not allow_short:
            fset.check_history(frame)
        for timeframe in sorted(frame["timeframe"].astype(str).unique()):
            for note in fset.suitability(timeframe):
                console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
        with console.status(
            f"Computing {fset.name} ({len(fset.columns)} columns) on {len(frame):,} bars"
        ):
            table = feature_table(fset, frame)
    except MoolaError as exc:
        raise ConfigError(f"{bars}: {exc}", param=getattr(exc, "param", None)) from None
    buffer = io.BytesIO()
    if suffix == ".parquet":
        table.to_parquet(buffer, index=False)
    else:
        table.to_csv(buffer, index=False)
    atomic_write_bytes(out, buffer.getvalue(), overwrite=overwrite)
    console.print(
        f"[green]Wrote[/] {out}  ({len(table):,} rows x {len(fset.columns)} features, "
        f"lookback {fset.lookback:,} bars)"
    )


@app.command()
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Features dataset NAME or NAME@vN."),
    rows: int = typer.Option(3, min=0, help="Rows of the table to print (after the warm-up)."),
) -> None:
    """Print a features dataset's spec, lineage and first settled rows (one line per column)."""
    from moola.features import FeatureSetSpec

    registry = _registry(ctx)
    dataset = registry.resolve_text(ref, "features")
    meta = registry.meta(dataset)
    manifest = registry.manifest(dataset)
    console.print(f"[bold]{dataset}[/]  {meta['rows']:,} rows", highlight=False)
    console.print(f"spec hash {meta.get('spec_hash')}", soft_wrap=True, highlight=False)
    console.print(f"parents: {', '.join(_parent(p) for p in manifest.get('parents', []))}")
    if "feature_set" in meta:
        spec = FeatureSetSpec.model_validate(meta["feature_set"])
        console.print(spec.to_yaml().rstrip(), markup=False, highlight=False, soft_wrap=True)
    else:
        err_console.print("(no feature set recorded in meta.json)")
    if not rows:
        return
    table = registry.load_table("features", dataset.name, dataset.version)
    first = min(int(meta.get("lookback", 1)) - 1, max(len(table) - rows, 0))
    head = table.iloc[first : first + rows]
    view = Table(title=f"rows {first}..{first + len(head) - 1} (row {first} = end of warm-up)")
    view.add_column("column")
    view.add_column("dtype")
    for position in head.index:
        view.add_column(f"row {position}", justify="right")
    for column in head.columns:
        view.add_row(str(column), str(head[column].dtype), *(_cell(v) for v in head[column]))
    console.print(view)


def _parent(record: dict) -> str:
    return f"{record['kind']}/{record['name']}@v{record['version']}"


def _cell(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
