"""The sentiment workflow through the registry and the command line: GKG fixture files ->
a news dataset with its manifest -> scored news -> sentiment features over raw bars; bad
input stops with a clear error and writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from moola.core.errors import ConfigError, MoolaError, SourceError
from moola.core.settings import load_settings
from moola.data.registry import Registry
from moola.data.sources.gdelt import Relevance, read_gkg
from moola.features.sentiment import SENTIMENT_COLUMNS, SentimentParams
from moola.pipeline.sentiment import (
    NEWS_KIND,
    build_sentiment_features,
    ingest_gkg,
    load_news,
    resolve_news,
    score_news,
)
from tests.conftest import random_walk_bars
from tests.test_sentiment_scorers import tiny_classifier

FIXTURES = Path(__file__).parent / "fixtures" / "gdelt"
GKG = [FIXTURES / "20240102101500.gkg.csv.zip", FIXTURES / "20240102103000.gkg.csv.zip"]
EURUSD = Relevance(pair="EURUSD")


def store_bars(registry: Registry, name: str = "eurusd", start: str = "2024-01-02 10:00"):
    bars = random_walk_bars(120, symbol="EURUSD", start=start)
    return registry.write_raw(name, bars, sources=[{"path": "random walk", "sha256": "-"}])


def test_ingest_stores_the_relevant_records_with_a_manifest(registry):
    result = ingest_gkg(registry, GKG, name="news", relevance=EURUSD)
    ref = result.ref
    assert (ref.kind, ref.name, ref.version) == (NEWS_KIND, "news", 1)
    assert registry.dataset_dir(NEWS_KIND, "news", 1).is_dir()
    stored = load_news(registry, ref)
    expected = read_gkg(GKG, relevance=EURUSD).records
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)
    manifest = registry.manifest(ref)
    sources = manifest["transformations"][0]["sources"]
    assert [s["file"] for s in sources] == [p.name for p in GKG]
    assert all(s["sha256"].startswith("sha256:") for s in sources)
    meta = registry.meta(ref)
    assert meta["relevance"]["pair"] == "EURUSD"
    assert meta["report"]["malformed"]["duplicate record id"] == 1
    assert sum(meta["report"]["malformed"].values()) == 4
    assert {e["line"] for e in meta["report"]["malformed_examples"]} == {2, 3, 6, 7}
    assert resolve_news(registry, "news") == ref


def test_ingest_refuses_and_writes_nothing(registry):
    with pytest.raises(SourceError, match="bad_delimiter"):
        ingest_gkg(registry, [GKG[0], FIXTURES / "bad_delimiter.gkg.csv.zip"], name="news")
    with pytest.raises(SourceError, match=r"No relevant record.*nothing stored"):
        ingest_gkg(registry, GKG, name="news", relevance=Relevance(themes=("NO_SUCH_THEME",)))
    assert registry.versions(NEWS_KIND, "news") == []


def test_tone_scores_follow_gdelt_tone_and_record_their_parent(registry):
    news = ingest_gkg(registry, GKG, name="news", relevance=EURUSD).ref
    scored = score_news(registry, news, scorer="tone")
    assert scored.name == "news-tone"
    table = load_news(registry, scored)
    assert np.array_equal(np.sign(table["sentiment"]), np.sign(table["tone"]))
    assert table["confidence"].between(0, 1).all() and (table["scorer"] == "tone").all()
    manifest = registry.manifest(scored)
    assert manifest["parents"][0]["name"] == "news"
    assert registry.meta(scored)["scored"]["scorer"] == "tone"


def test_text_scorers_record_what_they_read_and_the_model_hash(registry, tmp_path):
    news = ingest_gkg(registry, GKG, name="news", relevance=EURUSD).ref
    lexicon = score_news(registry, news, scorer="lexicon")
    assert "quotations" in registry.meta(lexicon)["scored"]["text"]
    model = tiny_classifier(tmp_path / "finbert")
    scored = score_news(registry, news, scorer="transformer", model_dir=model, name="news-fb")
    table = load_news(registry, scored)
    assert (table["sentiment"] > 0.99).all()  # the tiny model favours "positive"
    described = registry.manifest(scored)["transformations"][0]
    assert described["model_hash"].startswith("sha256:")
    assert described["model_dir"] == str(model.resolve())
    empty = tmp_path / "no-weights"
    empty.mkdir()
    with pytest.raises(ConfigError, match="lacks"):
        score_news(registry, news, scorer="transformer", model_dir=empty, name="news-empty")
    assert registry.versions(NEWS_KIND, "news-empty") == []  # nothing written


def test_features_align_the_scored_news_to_the_bars(registry):
    raw = store_bars(registry)
    news = score_news(
        registry, ingest_gkg(registry, GKG, name="news", relevance=EURUSD).ref, scorer="tone"
    )
    result = build_sentiment_features(
        registry, raw, news, name="eurusd-sent", params=SentimentParams(lag="15min")
    )
    table = registry.load_table("features", "eurusd-sent")
    assert list(table.columns) == ["timestamp", "symbol", *SENTIMENT_COLUMNS]
    assert len(table) == 120
    counts = table.set_index("timestamp")["sent_count"]
    # three records of the 10:15 batch reach 10:30, the 10:30 one reaches 10:45
    assert counts[pd.Timestamp("2024-01-02 10:30", tz="UTC")] == 3
    assert counts[pd.Timestamp("2024-01-02 10:45", tz="UTC")] == 1
    assert counts.sum() == 4
    assert result.stats["EURUSD"].used == 4
    meta = registry.meta(result.ref)
    assert meta["sentiment"]["lag"] == "15min" and meta["scorer"] == "tone"
    parents = {p["name"] for p in registry.manifest(result.ref)["parents"]}
    assert parents == {"eurusd", "news-tone"}


def test_features_refuse_unscored_news_and_news_after_the_bars(registry):
    news = ingest_gkg(registry, GKG, name="news", relevance=EURUSD).ref
    with pytest.raises(ConfigError, match=r"not scored.*score_news"):
        build_sentiment_features(registry, store_bars(registry), news, name="f")
    early = store_bars(registry, "early", start="2023-06-01 00:00")
    scored = score_news(registry, news, scorer="tone")
    with pytest.raises(ConfigError, match=r"falls after the last bar of EURUSD.*nothing stored"):
        build_sentiment_features(registry, early, scored, name="f")
    assert registry.versions("features", "f") == []


# --------------------------------------------------------------------------- command line


def cli_app() -> typer.Typer:
    """``moola sentiment`` mounted as cli/main.py will mount it, with its --data-root."""
    from moola.cli.sentiment import app as sentiment_app

    root = typer.Typer()

    @root.callback()
    def _global(ctx: typer.Context, data_root: Path = typer.Option(None, "--data-root")):  # noqa: B008
        ctx.obj = load_settings(home=data_root)

    root.add_typer(sentiment_app, name="sentiment")
    return root


def test_cli_ingest_score_features(tmp_path):
    runner, app, home = CliRunner(), cli_app(), tmp_path / "home"
    store_bars(Registry(load_settings(home=home).data_root))
    files = [str(p) for p in GKG]
    result = runner.invoke(
        app, ["--data-root", str(home), "sentiment", "ingest", *files, "--name", "news",
              "--pair", "EURUSD"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4 relevant record(s) kept" in result.output and "line 6" in result.output
    result = runner.invoke(
        app, ["--data-root", str(home), "sentiment", "score", "news", "--scorer", "lexicon"]
    )
    assert result.exit_code == 0, result.output
    assert "news-lexicon" in result.output
    result = runner.invoke(
        app,
        ["--data-root", str(home), "sentiment", "features", "--raw", "eurusd",
         "--news", "news-lexicon", "--lag", "15min", "--name", "sent"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "features/sent@v1" in result.output
    assert "moola data windows eurusd --features SET --extra-features sent@v1" in result.output
    registry = Registry(load_settings(home=home).data_root)
    assert len(registry.load_table("features", "sent")) == 120


def test_cli_bad_input_is_a_moola_error(tmp_path):
    runner, app, home = CliRunner(), cli_app(), tmp_path / "home"
    bad = runner.invoke(
        app,
        ["--data-root", str(home), "sentiment", "ingest", str(GKG[0]), "--name", "n",
         "--pair", "EU"],
    )  # fmt: skip
    assert isinstance(bad.exception, ConfigError) and "pair" in str(bad.exception)
    empty = tmp_path / "finbert"
    empty.mkdir()
    runner.invoke(
        app, ["--data-root", str(home), "sentiment", "ingest", str(GKG[0]), "--name", "n"]
    )
    missing = runner.invoke(
        app,
        ["--data-root", str(home), "sentiment", "score", "n", "--scorer", "transformer",
         "--model-dir", str(empty)],
    )  # fmt: skip
    assert isinstance(missing.exception, MoolaError)
    assert "config.json" in str(missing.exception) and str(empty) in str(missing.exception)
    lag = runner.invoke(
        app,
        ["--data-root", str(home), "sentiment", "features", "--raw", "x", "--news", "n",
         "--lag", "soon", "--name", "f"],
    )  # fmt: skip
    assert isinstance(lag.exception, ConfigError) and "lag" in str(lag.exception)


def test_cli_themes_pick_the_records(tmp_path):
    runner, app, home = CliRunner(), cli_app(), tmp_path / "home"
    files = [str(p) for p in GKG]
    base = ["--data-root", str(home), "sentiment", "ingest", *files]
    assert runner.invoke(app, [*base, "--name", "all", "--themes", "any"]).exit_code == 0
    inflation = runner.invoke(app, [*base, "--name", "infl", "--themes", "ECON_INFLATION"])
    assert inflation.exit_code == 0, inflation.output
    registry = Registry(load_settings(home=home).data_root)
    assert len(load_news(registry, resolve_news(registry, "all"))) == 6
    kept = load_news(registry, resolve_news(registry, "infl"))["record_id"]
    assert set(kept) == {"20240102101500-2", "20240102103000-1"}
    mixed = runner.invoke(app, [*base, "--name", "x", "--themes", "any", "--themes", "ECON"])
    assert isinstance(mixed.exception, ConfigError)
