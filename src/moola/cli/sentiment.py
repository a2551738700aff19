"""``moola sentiment ...``: GDELT news in, scored, and aligned to bars as features.

Three commands, one per step of ``moola.pipeline.sentiment``: ``ingest`` (GKG 2.1 files ->
a news dataset), ``score`` (a news dataset -> a scored one) and ``features`` (raw bars +
scored news -> a features dataset).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from moola.cli._common import check_new_name, console, err_console, settings_of
from moola.core.errors import ConfigError
from moola.data.registry import Registry

app = typer.Typer(
    help="News sentiment: ingest GDELT GKG files, score them, build per-bar features.",
    no_args_is_help=True,
)


def _registry(ctx: typer.Context) -> Registry:
    return Registry(settings_of(ctx).data_root)


@app.command()
def ingest(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(
        ..., help="GDELT GKG 2.1 files (YYYYMMDDHHMMSS.gkg.csv.zip), or a quoted glob."
    ),
    name: str = typer.Option(..., "--name", help="News dataset name in the registry."),
    pair: str | None = typer.Option(
        None,
        "--pair",
        help="Keep records mentioning a country, currency or central bank of this pair "
        "(e.g. EURUSD: euro-area countries and the US).",
    ),
    themes: list[str] | None = typer.Option(
        None,
        "--themes",
        help="GKG theme (or prefix) to require; repeat for several. Default: central banks, "
        "rates, inflation, currencies, debt, markets, trade, jobs, taxes. 'any' keeps all.",
    ),
) -> None:
    """Read GKG 2.1 files, keep the FX-relevant records, store them as a news dataset."""
    from pydantic import ValidationError
    from rich.progress import Progress

    from moola.core.errors import describe_validation
    from moola.data.sources.gdelt import DEFAULT_THEMES, Relevance
    from moola.pipeline.ingest import expand_paths
    from moola.pipeline.sentiment import ingest_gkg

    check_new_name(name, "--name")
    chosen = tuple(themes) if themes else DEFAULT_THEMES
    if any(t.strip().lower() == "any" for t in chosen):
        if len(chosen) > 1:
            raise ConfigError("--themes any keeps every record; give it alone.")
        chosen = ()
    try:
        relevance = Relevance(themes=chosen, pair=pair)
    except ValidationError as error:
        raise ConfigError(describe_validation("news filter (--pair, --themes)", error)) from None
    paths = expand_paths(list(files))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Reading GKG files", total=len(paths))

        def report(done: int, total: int, what: str) -> None:
            progress.update(task, completed=done, description=f"Reading {what}")

        result = ingest_gkg(_registry(ctx), paths, name=name, relevance=relevance, progress=report)
    report = result.report
    console.print(f"[green]Stored[/] {result.ref}  ({report.counts()})", soft_wrap=True)
    if report.n_malformed:
        err_console.print(
            f"[yellow]malformed lines, counted and not stored:[/] {report.malformed_lines()}",
            soft_wrap=True,
        )


@app.command()
def score(
    ctx: typer.Context,
    news: str = typer.Argument(..., help="News dataset NAME[@vN]."),
    scorer: str = typer.Option(
        "tone", "--scorer", help="tone (GDELT's own), lexicon (VADER) or transformer."
    ),
    model_dir: Path | None = typer.Option(
        None,
        "--model-dir",
        help="Local directory of a sentiment classifier (e.g. FinBERT) for --scorer "
        "transformer; nothing is downloaded.",
    ),
    name: str | None = typer.Option(
        None, "--name", help="Scored dataset name (default NAME-SCORER)."
    ),
) -> None:
    """Score every record of a news dataset and store the scored records (a transformer
    runs on the global --device)."""
    from moola.pipeline.sentiment import load_news, resolve_news, score_news

    check_new_name(name, "--name")
    registry = _registry(ctx)
    ref = resolve_news(registry, news)
    with console.status(f"Scoring {ref} with {scorer}"):
        scored = score_news(
            registry,
            ref,
            scorer=scorer,
            name=name,
            model_dir=model_dir,
            device=settings_of(ctx).device,
        )
    table = load_news(registry, scored)
    values = table["sentiment"]
    console.print(
        f"[green]Stored[/] {scored}  ({len(table):,} records, sentiment mean "
        f"{values.mean():+.3f}, {int((values > 0).sum())} positive, "
        f"{int((values < 0).sum())} negative)"
    )


@app.command()
def features(
    ctx: typer.Context,
    raw: str = typer.Option(..., "--raw", help="Raw dataset NAME[@vN] whose bars get features."),
    news: str = typer.Option(..., "--news", help="Scored news dataset NAME[@vN]."),
    name: str = typer.Option(..., "--name", help="Name of the features dataset to store."),
    lag: str = typer.Option(
        "15min",
        "--lag",
        help="Publication lag: an item published at t reaches the first bar opening at or "
        "after t + lag (e.g. 15min, 1h).",
    ),
    half_life: float = typer.Option(
        4.0, "--half-life", help="Half-life of the decayed sentiment, in bars."
    ),
    baseline: int = typer.Option(
        96, "--baseline", help="Bars of the trailing baseline the surprise is measured against."
    ),
    weighting: str = typer.Option(
        "none", "--weighting", help="none, or confidence (weight items by scorer confidence)."
    ),
) -> None:
    """Align scored news to a raw dataset's bars and store the sentiment columns."""
    from pydantic import ValidationError

    from moola.core.errors import describe_validation
    from moola.features.sentiment import SentimentParams
    from moola.pipeline.sentiment import build_sentiment_features, resolve_news

    check_new_name(name, "--name")
    try:
        params = SentimentParams(
            lag=lag, half_life=half_life, baseline=baseline, weighting=weighting
        )
    except ValidationError as error:
        raise ConfigError(describe_validation("sentiment features", error)) from None
    registry = _registry(ctx)
    raw_ref = registry.resolve_text(raw, "raw")
    news_ref = resolve_news(registry, news)
    with console.status(f"Aligning {news_ref} to {raw_ref}"):
        result = build_sentiment_features(registry, raw_ref, news_ref, name=name, params=params)
    table = Table(title=f"{result.ref}: news items per symbol (lag {params.lag})")
    for column in ("symbol", "items", "used", "before the bars", "after the bars"):
        table.add_column(column, justify="left" if column == "symbol" else "right")
    for symbol, stats in result.stats.items():
        table.add_row(
            symbol, str(stats.items), str(stats.used), str(stats.before), str(stats.after)
        )
    console.print(table)
    console.print(f"[green]Stored[/] {result.ref}  content hash {result.ref.content_hash}")
    console.print(
        f"  beside a feature set in moola train: moola data windows {raw} --features SET "
        f"--extra-features {result.ref.pinned} ...",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


@app.command()
def ablation(
    ctx: typer.Context,
    raw: str = typer.Option(..., "--raw", help="Raw dataset NAME[@vN] to train on."),
    news: str = typer.Option(..., "--news", help="Scored news dataset NAME[@vN]."),
    lag: str = typer.Option("15min", "--lag", help="Publication lag of the news."),
    half_life: float = typer.Option(4.0, "--half-life", help="Decay half-life, in bars."),
    baseline: int = typer.Option(96, "--baseline", help="Surprise baseline, in bars."),
    feature_set: str = typer.Option(
        "relative11", "--set", help="Price feature set beside the sentiment columns."
    ),
    length: int = typer.Option(32, "--length", help="Bars per window."),
    horizon: int = typer.Option(5, "--horizon", help="Bars ahead the three targets look."),
    regime_window: int = typer.Option(
        240, "--regime-window", help="Bars of the trailing volatility regime cut points."
    ),
    test_fraction: float = typer.Option(
        0.3, "--test-fraction", help="Share of the latest windows held out for testing."
    ),
    stride: int = typer.Option(1, "--stride", help="Keep every STRIDE-th window."),
    epochs: int = typer.Option(8, "--epochs", help="Training epochs of each arm."),
    seed: int = typer.Option(0, "--seed", help="Seed of both arms and of the bootstrap."),
    out: Path | None = typer.Option(None, "--out", help="Also write the result as JSON here."),
) -> None:
    """Train the CNN-LSTM-attention multi-task model with and without the sentiment
    columns on the same windows and compare them on the same later test windows."""
    import json
    from dataclasses import asdict

    from pydantic import ValidationError

    from moola.core.atomic import atomic_write_bytes
    from moola.core.errors import describe_validation
    from moola.features.sentiment import SentimentParams
    from moola.pipeline.sentiment import resolve_news, sentiment_ablation

    try:
        params = SentimentParams(lag=lag, half_life=half_life, baseline=baseline)
    except ValidationError as error:
        raise ConfigError(describe_validation("sentiment features", error)) from None
    if out is not None and out.suffix.lower() != ".json":
        raise ConfigError(f"--out {out}: use a .json file name.")
    if out is not None and out.exists():
        raise ConfigError(f"--out {out} already exists; choose another file name.")
    registry = _registry(ctx)
    raw_ref = registry.resolve_text(raw, "raw")
    news_ref = resolve_news(registry, news)
    with console.status(f"Training with and without {news_ref} on {raw_ref}"):
        result = sentiment_ablation(
            registry,
            raw_ref,
            news_ref,
            params=params,
            feature_set=feature_set,
            length=length,
            horizon=horizon,
            regime_window=regime_window,
            test_fraction=test_fraction,
            stride=stride,
            model={"epochs": epochs},
            seed=seed,
        )
    windows = result.windows
    table = Table(
        title=f"Sentiment ablation: {windows['train']:,} training, {windows['test']:,} test "
        f"windows ({windows['purged']:,} purged)"
    )
    for column in ("metric", "with sentiment", "without", "difference", "95% interval"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    with_, without = result.arms["with_sentiment"], result.arms["without_sentiment"]
    labels = {
        "direction_accuracy": "direction accuracy",
        "volatility_mse": "volatility MSE",
        "volatility_rank_corr": "volatility rank corr.",
        "regime_accuracy": "regime accuracy",
    }
    for metric, diff in result.difference.items():
        table.add_row(
            labels.get(metric, metric),
            f"{with_[metric]:.4g}",
            f"{without[metric]:.4g}",
            f"{diff['difference']:+.4g}",
            f"[{diff['low']:+.4g}, {diff['high']:+.4g}]",
        )
    console.print(table)
    console.print(f"direction base rate (majority class): {with_['direction_base_rate']:.4g}")
    if out is not None:
        atomic_write_bytes(out, (json.dumps(asdict(result), indent=2, default=str) + "\n").encode())
        console.print(f"[green]Wrote[/] {out}")
