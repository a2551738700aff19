"""Feature windows with extra per-bar tables (``build_feature_windows(...,
extra_features=...)``, ``moola data windows --features SET --extra-features NAME``): a
stored sentiment table is joined onto the set's table by (timestamp, symbol) before
windowing, no window sees past its last bar, each extra column keeps the scaling its table
records, the windows' manifest names every extra table with its hash, and a table over
other bars is refused naming both, with nothing written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError, RegistryError
from moola.data.registry import Registry
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry, load_feature_set
from moola.features.sentiment import SENTIMENT_COLUMNS, SentimentParams
from moola.pipeline.feature_inputs import scaling_methods
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.features import build_features
from moola.pipeline.ingest import ingest_bars
from moola.pipeline.sentiment import NEWS_KIND, NEWS_TABLE, build_sentiment_features
from tests.conftest import random_walk_bars
from tests.test_cli import run
from tests.test_feature_windows import COLUMNS, LENGTH, SPEC

PARAMS = SentimentParams(lag="5min", baseline=10)


def store_news(registry: Registry, bars: pd.DataFrame, *, seed: int = 0):
    """Scored news over ``bars``' period: items at random seconds (most inside a bar, some
    between two), random sentiment; a few published after the last bar."""
    rng = np.random.default_rng(seed)
    first, last = bars["timestamp"].iloc[0], bars["timestamp"].iloc[-1]
    span = int((last - first).total_seconds()) + 600
    seconds = np.sort(rng.integers(-300, span, 150))
    items = pd.DataFrame(
        {
            "published": first + pd.to_timedelta(seconds, unit="s"),
            "sentiment": rng.uniform(-1, 1, len(seconds)),
            "confidence": rng.uniform(0.2, 1, len(seconds)),
        }
    )
    return registry.write_table(NEWS_KIND, "news", items, parents=[], meta={"table": NEWS_TABLE})


def store_market(registry: Registry, bars: pd.DataFrame, name: str, news=None):
    """Raw ``name`` from ``bars`` and its sentiment table ``<name>-sent`` from ``news``."""
    raw = ingest_bars(registry, bars, name=name, sources=[{"test": name}], mode="repair").ref
    news = news or store_news(registry, bars)
    sent = build_sentiment_features(registry, raw, news, name=f"{name}-sent", params=PARAMS)
    return raw, news, sent.ref


def _listing(registry: Registry) -> dict[str, list]:
    return {
        kind: [(n, registry.versions(kind, n)) for n in registry.names(kind)]
        for kind in ("features", "labeled", "unlabeled")
    }


def test_sentiment_columns_join_the_set_by_bar_and_are_recorded(registry):
    bars = random_walk_bars(200)
    _, _, sent = store_market(registry, bars, "mkt")
    ref = build_feature_windows(
        registry, "mkt", SPEC, name="fw", length=LENGTH, extra_features="mkt-sent"
    )
    data = registry.load_feature_windows("fw")
    assert data.columns == (*COLUMNS, *SENTIMENT_COLUMNS)
    sentiment = registry.load_table("features", "mkt-sent")[list(SENTIMENT_COLUMNS)]
    alone = registry.load_feature_windows(
        build_feature_windows(registry, "mkt", SPEC, name="plain", length=LENGTH).name
    )
    for i in (0, len(data) // 2, len(data) - 1):  # each row is its own bar's sentiment
        start, end = int(data.table["start"].iloc[i]), int(data.table["end"].iloc[i])
        np.testing.assert_array_equal(
            data.X[i][:, len(COLUMNS) :],
            sentiment.iloc[start : end + 1].to_numpy(np.float32),
        )
    # The set's own columns are the windows without extras, window for window.
    np.testing.assert_array_equal(data.X.materialise()[:, :, : len(COLUMNS)], alone.X.materialise())
    step = registry.manifest(ref)["transformations"][0]["params"]
    (recorded,) = step["extra_features"]
    assert recorded["name"] == "mkt-sent" and recorded["content_hash"] == sent.content_hash
    assert recorded["scaling"] == {c: "zscore" for c in SENTIMENT_COLUMNS}
    assert registry.meta(ref)["extra_features"][0]["content_hash"] == sent.content_hash
    # The joined table names the raw, the set's table and the sentiment table as parents.
    joined = data.features
    parents = {(p["kind"], p["name"]) for p in registry.manifest(joined)["parents"]}
    assert parents == {("raw", "mkt"), ("features", "mkt-small"), ("features", "mkt-sent")}
    methods = scaling_methods(registry, data)
    assert {c: methods[c] for c in COLUMNS} == load_feature_set(SPEC).scaling
    assert all(methods[c] == "zscore" for c in SENTIMENT_COLUMNS)
    # Built again: the joined table is reused, nothing recomputed or stored twice.
    tables = registry.names("features")
    again = build_feature_windows(
        registry, "mkt", SPEC, name="fw2", length=LENGTH, extra_features=[sent]
    )
    assert registry.names("features") == tables
    assert registry.manifest(again)["transformations"][0]["params"]["features_reused"]
    assert registry.load_feature_windows("fw2").features == joined


def test_no_lookahead_each_window_equals_the_one_built_on_bars_cut_at_its_end(registry):
    bars = random_walk_bars(160)
    _, news, _ = store_market(registry, bars, "full")
    build_feature_windows(
        registry, "full", SPEC, name="full", length=LENGTH, extra_features="full-sent"
    )
    full = registry.load_feature_windows("full")
    ends = full.table["end"].to_numpy()
    # Cut where the set's warm-up check lets a window through (84 bars), up to the last.
    settled = np.flatnonzero(ends >= 90)
    for i in settled[np.linspace(0, len(settled) - 1, 4).astype(int)]:
        end = int(ends[i])
        name = f"cut{end}"
        store_market(registry, bars.iloc[: end + 1].reset_index(drop=True), name, news=news)
        build_feature_windows(
            registry, name, SPEC, name=name, length=LENGTH, extra_features=f"{name}-sent"
        )
        part = registry.load_feature_windows(name)
        assert int(part.table["end"].iloc[-1]) == end  # the cut dataset's last window
        np.testing.assert_array_equal(part.X[len(part) - 1], full.X[i])


def test_a_table_over_other_bars_is_refused_naming_both_and_nothing_is_written(registry):
    bars = random_walk_bars(200)
    raw, news, _ = store_market(registry, bars, "mkt")
    store_market(registry, bars.iloc[:150].reset_index(drop=True), "short", news=news)
    before = _listing(registry)
    with pytest.raises(RegistryError, match=r"features/short-sent@v1 were built from raw/short@v1"):
        build_feature_windows(
            registry, "mkt", SPEC, name="fw", length=LENGTH, extra_features="short-sent"
        )
    assert _listing(registry) == before
    table = registry.load_table("features", "mkt-sent")
    meta = {"columns": list(SENTIMENT_COLUMNS), "scaling": {c: "zscore" for c in SENTIMENT_COLUMNS}}
    registry.write_table("features", "holes", table.drop(index=[40, 41]), parents=[raw], meta=meta)
    more = pd.concat([table, table.tail(1).assign(timestamp=pd.Timestamp("2030-01-01", tz="UTC"))])
    registry.write_table("features", "more", more, parents=[raw], meta=meta)
    twice = pd.concat([table, table.iloc[[7]]])
    registry.write_table("features", "twice", twice, parents=[raw], meta=meta)
    unscaled = {"columns": list(SENTIMENT_COLUMNS)}
    registry.write_table("features", "unscaled", table, parents=[raw], meta=unscaled)
    before = _listing(registry)
    bad = {
        "holes": (RegistryError, r"no row for 2 of the 200 bars of raw/mkt@v1 \(first: TEST at"),
        "more": (RegistryError, r"1 row\(s\) for bars raw/mkt@v1 does not have.*2030-01-01"),
        "twice": (RegistryError, r"holds 1 bar\(s\) twice"),
        "unscaled": (ConfigError, r"no scaling for its column\(s\) \['sent_count'"),
        "mkt-sent,mkt-sent": (ConfigError, "names features/mkt-sent@v1 twice"),
    }
    for extra, (error, message) in bad.items():
        with pytest.raises(error, match=message):
            build_feature_windows(
                registry, "mkt", SPEC, name="fw", length=LENGTH, extra_features=extra
            )
    assert _listing(registry) == before
    # A column the set already has: the set's own stored table given as an extra.
    build_feature_windows(registry, "mkt", SPEC, name="plain", length=LENGTH)
    before = _listing(registry)
    with pytest.raises(ConfigError, match=r"'sma_5' of features/mkt-small@v1 is also a column"):
        build_feature_windows(
            registry, "mkt", SPEC, name="fw", length=LENGTH, extra_features="mkt-small"
        )
    assert _listing(registry) == before


def test_another_feature_sets_table_joins_with_its_own_scaling(registry):
    raw, _, _ = store_market(registry, random_walk_bars(200), "mkt")
    slow = FeatureSetSpec(
        name="slow", features=[FeatureSpecEntry(name="rsi", params={"period": 7}, scale="robust")]
    )
    build_features(registry, raw, slow, name="mkt-slow")
    build_feature_windows(
        registry, "mkt", SPEC, name="fw", length=LENGTH, extra_features=["mkt-sent", "mkt-slow"]
    )
    data = registry.load_feature_windows("fw")
    assert data.columns == (*COLUMNS, *SENTIMENT_COLUMNS, "rsi_7")
    assert scaling_methods(registry, data)["rsi_7"] == "robust"
    slow_values = registry.load_table("features", "mkt-slow")["rsi_7"].to_numpy(np.float32)
    np.testing.assert_array_equal(data.X.values[:, -1], slow_values)  # NaN warm-up too
    # The slower set's warm-up (NaN rows) leaves out the windows that touch it.
    first = int(np.flatnonzero(~np.isnan(slow_values))[0])
    assert int(data.table["start"].min()) == first
    plain = build_feature_windows(registry, "mkt", SPEC, name="plain", length=LENGTH)
    assert int(registry.load_feature_windows(plain.name).table["start"].min()) < first


def test_each_raw_version_gets_the_extra_table_built_from_it(registry):
    news = None
    for name, seed in (("btc", 1), ("eth", 2)):
        bars = random_walk_bars(120, symbol=name.upper(), seed=seed)
        _, news, _ = store_market(registry, bars, name, news=news)
    # Given in either order: each table is matched to the raw it was built from.
    build_feature_windows(
        registry, "btc,eth", SPEC, name="fw", length=LENGTH, extra_features="eth-sent,btc-sent"
    )
    data = registry.load_feature_windows("fw")
    assert data.columns == (*COLUMNS, *SENTIMENT_COLUMNS)
    values = np.concatenate(
        [
            registry.load_table("features", f"{n}-sent")[list(SENTIMENT_COLUMNS)]
            for n in ("btc", "eth")
        ]
    )
    last = data.table["end"].to_numpy()
    np.testing.assert_array_equal(
        data.X.values[last, len(COLUMNS) :], values[last].astype(np.float32)
    )
    before = _listing(registry)
    with pytest.raises(ConfigError, match=r"give raw/btc@v1 the columns .* but raw/eth@v1 none"):
        build_feature_windows(
            registry, "btc,eth", SPEC, name="x", length=LENGTH, extra_features="btc-sent"
        )
    assert _listing(registry) == before


def test_cli_joins_extra_tables_onto_feature_windows(capsys, tmp_path):
    root = tmp_path / "moola_data"
    store_market(Registry(root), random_walk_bars(200), "mkt")
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC.to_yaml())
    base = ["--data-root", str(root), "data", "windows", "mkt", "--length", str(LENGTH)]
    code, out, err = run(
        capsys, *base, "--name", "fw", "--features", str(spec), "--extra-features", "mkt-sent"
    )
    assert code == 0, err
    assert "x 9 features" in out and "joined by (timestamp, symbol): features/mkt-sent@v1" in out
    code, _, err = run(capsys, *base, "--name", "x", "--extra-features", "mkt-sent")
    assert code == 2 and "--features" in err
