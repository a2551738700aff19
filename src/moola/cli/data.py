"""``moola data ...``: ingest, generate, list, show, verify, window and split datasets."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from moola.cli._common import check_new_name, console, err_console, settings_of
from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.pipeline import datasets

app = typer.Typer(help="Ingest, inspect, verify, window and split datasets.", no_args_is_help=True)


_EXAMPLES = {"symbol": "ES", "timeframe": "1m"}


def _registry(ctx: typer.Context) -> Registry:
    return Registry(settings_of(ctx).data_root)


@app.command()
def ingest(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(
        ...,
        help="Bars file(s) (CSV, Parquet, HistData, Coinbase, DBN); several files or a glob "
        "(e.g. a month-per-file series) make one version.",
    ),
    name: str = typer.Option(..., "--name", help="Dataset name in the registry."),
    format: str | None = typer.Option(
        None, "--format", help="csv, parquet, histdata, coinbase or dbn (default: by extension)."
    ),
    symbol: str | None = typer.Option(None, help="Symbol of the bars (if the file has none)."),
    timeframe: str | None = typer.Option(None, help="Bar time frame, e.g. 1m, 5m, 1h, 1d."),
    mode: str = typer.Option("strict", help="strict (refuse bad bars) or repair (fix and record)."),
    calendar: str | None = typer.Option(
        None, help="Session calendar for the gap report: crypto, fx, futures or equities."
    ),
    tz: str | None = typer.Option(
        None, "--tz", help="Time zone of naive timestamps (CSV/Parquet)."
    ),
    session: str | None = typer.Option(
        None,
        "--session",
        help="Tick files (DBN trades, tbbo, mbp-1; made into 1-second bars): the trading "
        "session kept, 'HH:MM-HH:MM' in --session-tz, or 24h (default 04:00-20:00).",
    ),
    session_tz: str | None = typer.Option(
        None, "--session-tz", help="Time zone of --session (default America/New_York)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Store a new version even if one already holds these bytes."
    ),
) -> None:
    """Validate bars file(s) and store them as a new raw dataset version."""
    from moola.pipeline.ingest import MissingIdentity, ingest_files

    if mode not in ("strict", "repair"):
        raise ConfigError(f"--mode must be 'strict' or 'repair', not {mode!r}.")
    check_new_name(name, "--name")
    options: dict[str, str] = {"timezone": tz} if tz else {}
    if session is not None:
        options["session"] = session
    if session_tz is not None:
        options["session_timezone"] = session_tz
    shown = str(paths[0]) if len(paths) == 1 else f"{len(paths)} paths"
    try:
        with console.status(f"Ingesting {shown}"):
            result = ingest_files(
                _registry(ctx),
                list(paths),
                name=name,
                format=format,
                symbol=symbol,
                timeframe=timeframe,
                mode=mode,  # type: ignore[arg-type]
                calendar=calendar,
                options=options,
                force=force,
            )
    except MissingIdentity as exc:
        flags = " and ".join(f"--{param}" for param in exc.missing)
        files = ", ".join(str(path) for path in exc.files[:3])
        example = " ".join(f"--{param} {_EXAMPLES[param]}" for param in exc.missing)
        raise ConfigError(
            f"{flags} {'are' if len(exc.missing) > 1 else 'is'} required for a CSV/Parquet "
            f"file without {'/'.join(exc.missing)} columns ({files}); e.g. {example}."
        ) from None
    if result.already:
        console.print(
            f"{result.ref} already holds these bytes, read the same way; nothing written. "
            "Pass --force to store a new version anyway.",
            soft_wrap=True,
        )
        return
    report = result.validation
    assert report is not None
    console.print(f"[green]Stored[/] {result.ref}  ({report.n_output:,} bars)")
    if result.extras:
        console.print(f"  extra columns: {', '.join(result.extras)}")
    if len(result.files) > 1:
        for info in result.files:
            console.print(
                f"  {info['name']}: {info['bars']:,} bars {info['first']} .. {info['last']}  "
                f"{info['sha256'][:26]}...",
                soft_wrap=True,
                markup=False,
            )
    for overlap in result.overlaps:
        console.print(
            f"  overlap: {overlap['bars']:,} identical bars in both {overlap['files'][0]} and "
            f"{overlap['files'][1]} (kept once)",
            soft_wrap=True,
            markup=False,
        )
    for gap in result.between:
        console.print(
            f"  gap between files: {gap['missing_bars']:,} bars missing from {gap['from']} "
            f"({gap['after']}) to {gap['to']} ({gap['before']})",
            soft_wrap=True,
            markup=False,
        )
    for repair in report.repairs:
        console.print(f"  repaired: {repair.get('action')}: {repair.get('count', '')}")
    if result.gaps:
        console.print(
            f"  gaps: {result.gaps.get('missing', 0):,} missing bars vs {calendar} calendar"
        )
    console.print(f"  content hash {result.ref.content_hash}")


@app.command()
def synth(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="Dataset name in the registry."),
    bars: int = typer.Option(100_000, min=1, help="Number of bars."),
    seed: int = typer.Option(0, min=0, help="Generator seed (same seed, same bars)."),
    symbol: str | None = typer.Option(
        None, "--symbol", help="Symbol of the generated bars (default SYN)."
    ),
    symbols: str | None = typer.Option(
        None,
        "--symbols",
        help="Several correlated symbols on one time grid, comma-separated, e.g. "
        "BTC-USD,ETH-USD,SOL-USD (--bars and --patterns are per symbol).",
    ),
    correlation: float | None = typer.Option(
        None,
        "--correlation",
        help="Correlation of every pair of --symbols' 1-bar returns, in (-1, 1) (default 0.7).",
    ),
    timeframe: str = typer.Option("1m", help="Bar time frame."),
    calendar: str = typer.Option("futures", help="crypto, fx or futures sessions."),
    patterns: int = typer.Option(0, min=0, help="Planted labelled patterns (0 = none)."),
    pattern_strength: float = typer.Option(
        1.0, min=0.01, max=1.0, help="How distinct planted patterns are (1 = textbook)."
    ),
    labels_out: Path | None = typer.Option(
        None,
        "--labels-out",
        help="Write the planted patterns' labels here (.csv/.parquet), for "
        "`moola data windows NAME --labels FILE --length 105`.",
    ),
) -> None:
    """Generate a synthetic market and store it as a new raw dataset version."""
    from moola.cli.bars import check_table_path, write_frame
    from moola.data.sources.synthetic import SYNTHETIC_CALENDARS

    check_new_name(name, "--name")
    if symbol is not None and symbols is not None:
        raise ConfigError(
            "--symbol and --symbols are both given: use --symbol for one symbol or "
            "--symbols A,B,C for several."
        )
    if symbol is not None and not symbol.strip():
        raise ConfigError("--symbol must not be empty: it is written on every bar.")
    names = None
    if symbols is not None:
        names = [part.strip() for part in symbols.split(",")]
        if not all(names):
            raise ConfigError(
                f"--symbols {symbols!r} has an empty name; give names separated by commas, "
                "e.g. --symbols BTC-USD,ETH-USD,SOL-USD."
            )
    if correlation is not None and names is None:
        raise ConfigError(
            "--correlation sets how several symbols move together: add --symbols A,B,..."
        )
    if correlation is not None and not -1.0 < correlation < 1.0:
        raise ConfigError(f"--correlation {correlation:g} must lie strictly between -1 and 1.")
    check_table_path(labels_out, "--labels-out")
    if labels_out is not None and patterns == 0:
        raise ConfigError("--labels-out writes the planted patterns' labels: add --patterns N.")
    if calendar not in SYNTHETIC_CALENDARS:
        raise ConfigError(
            f"--calendar {calendar!r} is not a calendar of synthetic markets; use one of "
            f"{', '.join(SYNTHETIC_CALENDARS)}."
        )
    with console.status("Generating synthetic market"):
        ref, market = datasets.synthesize_raw(
            _registry(ctx),
            name,
            n_bars=bars,
            seed=seed,
            symbol=symbol,
            symbols=names,
            correlation=correlation,
            timeframe=timeframe,
            calendar=calendar,
            n_patterns=patterns,
            pattern_strength=pattern_strength,
        )
    console.print(f"[green]Stored[/] {ref}  content hash {ref.content_hash}")
    if names is not None:
        console.print(
            f"  {len(names)} symbols ({', '.join(names)}), {bars:,} bars each on one time grid",
            markup=False,
        )
    if labels_out is not None:
        write_frame(datasets.planted_labels_file(market), labels_out)
        console.print(
            f"[green]Wrote[/] {labels_out}  ({len(market.patterns):,} planted pattern labels, "
            f"windows of {market.config.pattern_length} bars)"
        )


@app.command("list")
def list_datasets(ctx: typer.Context) -> None:
    """List every stored dataset version and split."""
    registry = _registry(ctx)
    rows = registry.list()
    table = Table(title=f"Datasets under {registry.data_dir}")
    for column in ("kind", "name", "version", "created (UTC)", "summary", "content hash"):
        table.add_column(column)
    for info in rows:
        ref = info.ref
        table.add_row(
            ref.kind,
            ref.name,
            f"v{ref.version}",
            info.created_at,
            info.summary,
            ref.content_hash[:19],
        )
    console.print(table)
    splits = Table(title="Splits")
    for column in ("name", "versions"):
        splits.add_column(column)
    for name in registry.split_names():
        splits.add_row(name, ", ".join(f"v{v}" for v in registry.split_versions(name)))
    console.print(splits)


@app.command()
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME or NAME@vN."),
    kind: str | None = typer.Option(None, help="raw, labeled, unlabeled or synthetic."),
) -> None:
    """Print a dataset version's meta and manifest."""
    registry = _registry(ctx)
    dataset = registry.resolve_text(ref, kind)
    console.print(f"[bold]{dataset}[/]")
    meta = registry.meta(dataset)
    if meta.get("extras"):
        columns = meta.get("columns", {})
        listed = ", ".join(f"{c} ({columns.get(c, '?')})" for c in meta["extras"])
        console.print(f"extra columns: {listed}", soft_wrap=True, markup=False)
    console.print_json(
        json.dumps({"meta": meta, "manifest": registry.manifest(dataset)}, default=str)
    )


@app.command()
def verify(
    ctx: typer.Context,
    full: bool = typer.Option(
        False, "--full", help="Re-hash every byte with SHA-256 (default: XXH3 of every byte)."
    ),
) -> None:
    """Check everything under the data root: datasets, splits, runs, promoted models,
    encoders, the experiment log, ledgers and journal. Non-zero exit naming every problem."""
    from moola.pipeline.integrity import verify_root

    root = settings_of(ctx).data_root
    with console.status("Verifying the data root" + (" (SHA-256)" if full else "")):
        report = verify_root(root, full=full)
    for note in report.notes:
        console.print(f"note: {note}", soft_wrap=True, markup=False, style="dim")
    counts = ", ".join(f"{n} {what}" for what, n in report.checked.items())
    for log, head in report.chain_heads.items():
        console.print(f"chain head {log}: {head}", soft_wrap=True, markup=False, style="dim")
    if not report.ok:
        for problem in report.problems:
            err_console.print(f"mismatch: {problem}", soft_wrap=True, markup=False)
        if any("moola data gc" in problem for problem in report.problems):
            err_console.print("Run `moola data gc` to remove unfinished writes.")
        err_console.print(f"{len(report.problems)} problem(s) in {root} ({counts}).")
        raise typer.Exit(1)
    console.print(f"[green]ok[/]: {counts} verified ({'SHA-256' if full else 'XXH3'} check)")


@app.command()
def gc(ctx: typer.Context) -> None:
    """Remove temporaries left by interrupted writes (never a write still in progress)."""
    from moola.pipeline.integrity import collect_garbage

    removed = collect_garbage(settings_of(ctx).data_root)
    for path, size in removed:
        console.print(f"removed {path} ({size:,} bytes)", soft_wrap=True, markup=False)
    total = sum(size for _, size in removed)
    console.print(f"[green]ok[/]: {len(removed)} leftover(s) removed, {total:,} bytes freed")


@app.command()
def windows(
    ctx: typer.Context,
    raw: list[str] = typer.Argument(
        ...,
        help="Raw dataset NAME or NAME@vN to window; with --features several (repeated or a "
        "comma list, e.g. BTC,ETH,SOL: distinct symbols over a common period) make one dataset.",
    ),
    name: str = typer.Option(..., "--name", help="Name of the new windows dataset."),
    length: int = typer.Option(105, min=2, help="Window length T in bars."),
    stride: int = typer.Option(1, min=1, help="Bars between consecutive window starts."),
    labels: Path | None = typer.Option(
        None,
        help="CSV/Parquet of labels (start or start_ts, label[, grade, source]; or "
        "timestamp, label as `moola labels build --out` writes, timestamp = the window's "
        "last bar): makes a labeled dataset; without labels the windows are unlabeled.",
    ),
    labels_from: list[str] | None = typer.Option(
        None,
        "--labels-from",
        help="Stored labels table NAME[@vN] (moola labels build --name) of this raw version: "
        "one window ending at each labelled bar. With --features repeat it (or a comma list) "
        "for several tables or raw versions; each is matched to the raw it was built from.",
    ),
    label_column: str | None = typer.Option(
        None, "--label-column", help="Column of --labels-from to use (default: its target)."
    ),
    target: list[str] | None = typer.Option(
        None,
        "--target",
        help="With --features: a column of --labels-from to predict, COL or LABELS:COL "
        "(LABELS: a table's name or label kind, e.g. realized-vol:realized_vol); repeat for "
        "several (a multitask dataset). Class columns and strings are classification "
        "targets, other floats regression. Default: the table's target.",
    ),
    allow_gaps: bool = typer.Option(False, help="Let windows span missing bars."),
    features: str | None = typer.Option(
        None,
        "--features",
        help="Feature set (shipped name or YAML path): windows of its columns, computed "
        "once on the raw version and stored, instead of OHLC windows. Windows touching "
        "its warm-up or a gap are left out and counted.",
    ),
    extra_features: list[str] | None = typer.Option(
        None,
        "--extra-features",
        help="With --features: a stored per-bar features table NAME[@vN] built from this raw "
        "version (e.g. `moola sentiment features`) whose columns join the set's by "
        "(timestamp, symbol) before windowing, scaled as its table records; repeat it (or a "
        "comma list) for several tables or raw versions.",
    ),
) -> None:
    """Make unlabeled windows (an index over raw bars), or labeled windows from a labels
    file (--labels) or a stored labels table (--labels-from); with --features, windows
    over a feature set's table."""
    from moola.data.label_ends import describe_dropped
    from moola.pipeline.labeled_windows import build_windows

    check_new_name(name, "--name")
    labels_from = list(labels_from or []) or None
    targets = list(target or []) or None
    if labels is not None and labels_from is not None:
        raise ConfigError("Give --labels FILE or --labels-from NAME[@vN], not both.")
    if label_column is not None and labels_from is None:
        raise ConfigError("--label-column picks a column of --labels-from; give that too.")
    if features is not None:
        if labels is not None:
            raise ConfigError(
                "--features windows take labels from a stored labels table: use "
                "--labels-from NAME[@vN] instead of --labels FILE."
            )
        if allow_gaps:
            raise ConfigError("--features windows never span a gap; drop --allow-gaps.")
        if targets is not None and labels_from is None:
            raise ConfigError("--target picks columns of --labels-from; give that too.")
        if targets is not None and label_column is not None:
            raise ConfigError("Give --target (repeatable) or --label-column, not both.")
        _feature_windows(
            ctx,
            raw,
            name,
            features,
            length,
            stride,
            labels_from,
            label_column,
            targets,
            list(extra_features or []) or None,
        )
        return
    if extra_features:
        raise ConfigError("--extra-features joins tables onto --features windows; give --features.")
    if len(raw) > 1 or "," in raw[0]:
        raise ConfigError(
            "Several raw versions make one dataset only with --features SET (windows over "
            "feature tables); window one RAW at a time otherwise."
        )
    if targets is not None:
        raise ConfigError("--target picks the targets of --features windows; give --features.")
    if labels_from is not None and len(labels_from) > 1:
        raise ConfigError("Give one --labels-from table (several need --features).")
    with console.status("Building windows"):
        result = build_windows(
            _registry(ctx),
            raw[0],
            name=name,
            length=length,
            stride=stride,
            allow_gaps=allow_gaps,
            labels_file=labels,
            labels_from=labels_from[0] if labels_from else None,
            label_column=label_column,
        )
    console.print(f"[green]Stored[/] {result.ref}  ({result.windows:,} windows x {length} bars)")
    if labels is not None or labels_from is not None:
        console.print(f"  label rows left out: {describe_dropped(result.dropped)}")
    _print_blacklist_steps(_registry(ctx).manifest(result.ref))


def _feature_windows(
    ctx: typer.Context,
    raw: list[str],
    name: str,
    feature_set: str,
    length: int,
    stride: int,
    labels_from: list[str] | None,
    label_column: str | None,
    targets: list[str] | None,
    extra_features: list[str] | None = None,
) -> None:
    """``moola data windows --features``: build, then print what was kept and left out."""
    from moola.pipeline.feature_windows import build_feature_windows

    registry = _registry(ctx)
    with console.status("Building feature windows"):
        ref = build_feature_windows(
            registry,
            raw,
            feature_set,
            name=name,
            length=length,
            stride=stride,
            labels=labels_from,
            label_column=label_column,
            targets=targets,
            extra_features=extra_features,
        )
    meta = registry.meta(ref)
    tables = [entry["features"] for entry in meta.get("feature_tables", [])] or [meta["features"]]
    named = ", ".join(f"features/{t['name']}@v{t['version']}" for t in tables)
    console.print(
        f"[green]Stored[/] {ref}  ({meta['windows']:,} windows x {length} bars x "
        f"{len(meta['columns'])} features of {named})",
        soft_wrap=True,
    )
    if meta.get("extra_features"):
        joined = ", ".join(f"features/{t['name']}@v{t['version']}" for t in meta["extra_features"])
        console.print(f"  joined by (timestamp, symbol): {joined}", soft_wrap=True)
    if meta.get("targets"):
        shown = ", ".join(
            f"{t['name']} ({t['kind']}"
            + (f": {' '.join(t['classes'])})" if "classes" in t else ")")
            for t in meta["targets"]
        )
        console.print(f"  {meta['task']} targets: {shown}", soft_wrap=True, markup=False)
    left_out = ", ".join(f"{key} {count:,}" for key, count in meta["excluded"].items())
    console.print(f"  windows left out: {left_out}; thinned by the stride: {meta['thinned']:,}")
    _print_blacklist_steps(registry.manifest(ref))


def _print_blacklist_steps(manifest: dict) -> None:
    """Grade D windows added to the blacklist and windows it excluded, from a manifest."""
    from moola.data.blacklist import BLACKLIST_FILE, excluded_count

    for step in manifest.get("transformations", []):
        added = step.get("params", {}).get("added_to_blacklist")
        if step.get("name") == "drop_blacklisted_grade_D" and added:
            console.print(f"  {added:,} grade D window(s) added to the blacklist {BLACKLIST_FILE}")
    excluded = excluded_count(manifest)
    if excluded is not None:
        console.print(f"  {excluded:,} window(s) excluded: they overlap the blacklist")


@app.command()
def split(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="Labeled or unlabeled windows NAME[@vN]."),
    strategy: str = typer.Option(
        ...,
        help="forward-chaining (70/15/15 by time with the default fractions; every symbol "
        "cut at the same times), purged-kfold, walk-forward or stratified.",
    ),
    name: str | None = typer.Option(None, "--name", help="Split name (default: DATASET-STRATEGY)."),
    purge: str = typer.Option(
        "0", help="Gap kept clear between parts: bars (N) or a duration (30min)."
    ),
    embargo: str = typer.Option("0", help="Embargo after each test part: bars (N) or a duration."),
    folds: int = typer.Option(5, min=2, help="Folds (purged-kfold) or splits (walk-forward)."),
    val_fraction: float = typer.Option(0.15, help="Validation fraction (forward-chaining)."),
    test_fraction: float = typer.Option(0.15, help="Test fraction (forward-chaining)."),
    test_size: int | None = typer.Option(
        None,
        help="Samples per test block (walk-forward; default: samples // (folds + 1), as "
        "scikit-learn's TimeSeriesSplit).",
    ),
    train_size: int | None = typer.Option(
        None, help="Rolling train size (walk-forward; default expanding)."
    ),
    time_independent: bool = typer.Option(
        False, help="Declare samples time-independent (required by stratified)."
    ),
    seed: int = typer.Option(0, help="Seed (stratified only)."),
) -> None:
    """Split windows without leakage and store the split as a new version."""
    registry = _registry(ctx)
    ref = registry.resolve_text(dataset)
    split_name, version, built = datasets.make_and_store_split(
        registry,
        ref,
        strategy,
        name=name,
        purge=purge,
        embargo=embargo,
        folds=folds,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        test_size=test_size,
        train_size=train_size,
        time_independent=time_independent,
        seed=seed,
    )
    counts = built.counts if hasattr(built, "counts") else {}
    console.print(f"[green]Stored[/] split {split_name}@v{version} over {ref}: {counts}")
    blacklisted = int(built.params.get("blacklist", {}).get("excluded", 0))
    if "blacklist" in built.params:
        console.print(
            f"  {blacklisted:,} window(s) excluded: they overlap the blacklist (in no part; "
            "recorded in the split)"
        )
    if len(built.purged) > blacklisted:
        err_console.print(
            f"  {len(built.purged) - blacklisted} samples purged/embargoed (recorded in the split)"
        )


@app.command()
def augment(
    ctx: typer.Context,
    labeled: str = typer.Argument(..., help="Labeled dataset NAME or NAME@vN."),
    split: str = typer.Option(..., "--split", help="Split NAME[@vN]: only its train part is used."),
    method: str = typer.Option(..., "--method", help="jitter, scaling or time-warp."),
    name: str = typer.Option(..., "--name", help="Name of the new synthetic set."),
    sigma: float | None = typer.Option(
        None,
        "--sigma",
        help="Strength, relative to each window's first close (default: jitter 0.00001, "
        "scaling 0.01, time-warp 0.1; time warp smooths returns, so it often fails the "
        "KS guard).",
    ),
    copies: int = typer.Option(1, "--copies", min=1, help="Augmented copies per train window."),
    seed: int = typer.Option(0, "--seed", help="Seed (same seed, same set)."),
) -> None:
    """Make a train-only synthetic set from a split's train windows and print its quality."""
    from moola.pipeline.augment import augment_labeled

    check_new_name(name, "--name")
    with console.status("Augmenting train windows"):
        result = augment_labeled(
            _registry(ctx),
            labeled,
            split=split,
            method=method,
            name=name,
            sigma=sigma,
            copies=copies,
            seed=seed,
        )
    console.print(f"[green]Stored[/] {result.ref}  ({result.windows:,} synthetic train windows)")
    console.print(
        f"  KS statistic {result.ks_statistic:.4f}, p-value {result.ks_pvalue:.3g} "
        "(within-window close returns, synthetic vs real train)"
    )
    if not result.passes_guard:
        console.print(
            "  below the 0.1 quality bar: `moola train --synthetic` refuses it unless given "
            "--allow-low-quality-synthetic (recorded in the run)",
            soft_wrap=True,
        )
