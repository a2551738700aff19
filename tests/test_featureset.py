"""Feature sets: YAML specs checked with useful errors, shipped sets, batch = run time,
registry storage, and the ``moola features`` commands."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from moola.cli.features import app
from moola.core.errors import BarValidationError, ConfigError
from moola.core.settings import Settings
from moola.data.registry import Registry
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features import (
    FeatureSet,
    FeatureSetSpec,
    FeatureSpecEntry,
    create_feature,
    list_feature_sets,
    load_feature_set,
)
from moola.pipeline.features import build_features
from moola.testing import check_feature, check_incremental
from tests.conftest import random_walk_bars

INTRADAY31 = [
    *("session_tokyo", "session_london", "session_new_york", "day_of_week", "is_weekend"),
    *("spread", "spread_pct", "atr", "spread_atr"),
    *("volume_ma", "volume_ratio", "volume_trend"),
    *("sma_7", "sma_7_ratio", "sma_14", "sma_14_ratio", "sma_21", "sma_21_ratio"),
    *("sma_50", "sma_50_ratio", "rsi_14", "macd", "macd_signal", "macd_hist"),
    *("bb_upper", "bb_lower", "bb_percent_b", "bb_width"),
    *("vol_regime_low", "vol_regime_medium", "vol_regime_high"),
]


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    """FX-calendar 1-minute bars over a weekend, longer than intraday31's lookback."""
    config = SyntheticMarketConfig(
        n_bars=4_000, seed=9, calendar="fx", start=datetime(2024, 1, 5, 9, tzinfo=UTC)
    )
    return generate_market(config).bars


def _write(tmp_path, text: str):
    path = tmp_path / "set.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# ----------------------------------------------------------------- shipped sets


def test_shipped_sets_are_listed():
    assert {"intraday31", "relative11"} <= set(list_feature_sets())


def test_intraday31_computes_its_31_columns_with_declared_dtypes(market):
    fset = load_feature_set("intraday31")
    out = fset.compute(market)
    assert list(out.columns) == INTRADAY31 == list(fset.columns)
    assert out.index.equals(market.index)
    for entry in fset.spec.features:
        feature = create_feature(entry.name, **entry.params)
        for column in entry.columns or feature.columns():
            assert str(out[column].dtype) == entry.dtype, column
    # After the warm-up every value is defined, and the flags are 0/1.
    settled = out.iloc[fset.lookback :]
    assert settled.notna().all().all()
    regime = settled[["vol_regime_low", "vol_regime_medium", "vol_regime_high"]]
    assert (regime.sum(axis=1) == 1).all()


def test_relative11_computes_11_columns(market):
    out = load_feature_set("relative11").compute(market)
    assert out.shape == (len(market), 11)
    assert all(column.startswith("rel_") for column in out.columns)


def test_shipped_sets_see_no_future(market):
    for name in ("intraday31", "relative11"):
        check_feature(load_feature_set(name), market, n_cuts=8)


def test_intraday31_streams_like_batch_over_thousands_of_bars(market):
    """Starts before the buffer is full and runs past its first compaction."""
    check_incremental(load_feature_set("intraday31"), market, start=1_900)


def test_relative11_streams_like_batch_from_the_first_bar(market):
    check_incremental(load_feature_set("relative11"), market.iloc[:2_500])


# ----------------------------------------------------------------- compute


def test_multi_symbol_bars_are_computed_per_symbol_in_the_bars_order():
    a = random_walk_bars(300, symbol="AAA", seed=1)
    b = random_walk_bars(200, symbol="BBB", seed=2)
    both = pd.concat([a, b], ignore_index=True)
    both.index = both.index + 1_000  # an index that is not 0..n-1 is kept
    fset = FeatureSet(FeatureSetSpec(name="s", features=[FeatureSpecEntry(name="rsi")]))
    out = fset.compute(both)
    assert out.index.equals(both.index)
    np.testing.assert_array_equal(out["rsi_14"].iloc[:300], fset.compute(a)["rsi_14"])
    np.testing.assert_array_equal(out["rsi_14"].iloc[300:], fset.compute(b)["rsi_14"])
    assert out["rsi_14"].iloc[300:314].isna().all()  # BBB warms up on its own bars


def test_bars_out_of_time_order_are_refused():
    bars = random_walk_bars(50).iloc[::-1]
    fset = FeatureSet(FeatureSetSpec(name="s", features=[FeatureSpecEntry(name="sma")]))
    with pytest.raises(BarValidationError, match="sorted by time"):
        fset.compute(bars)


def test_column_subset_and_float32(market):
    spec = FeatureSetSpec(
        name="s",
        features=[
            FeatureSpecEntry(name="bbands", columns=["bb_width", "bb_upper"], dtype="float32")
        ],
    )
    out = FeatureSet(spec).compute(market)
    assert list(out.columns) == ["bb_width", "bb_upper"]
    full = create_feature("bbands").compute(market)
    np.testing.assert_array_equal(out["bb_upper"], full["bb_upper"].astype(np.float32))


def test_too_short_history_is_a_clear_error_unless_allowed():
    fset = load_feature_set("intraday31")
    bars = random_walk_bars(500)
    with pytest.raises(ConfigError, match=r"'intraday31' needs 1,8\d\d bars.*TEST: 500 bars"):
        fset.check_history(bars)
    assert fset.compute(bars).shape == (500, 31)  # compute itself gives warm-up NaN rows


# ----------------------------------------------------------------- run time


def test_stream_refuses_out_of_order_foreign_and_incomplete_bars():
    bars = random_walk_bars(100)
    stream = load_feature_set("relative11").stream(bars.iloc[:50])
    row = stream.update(bars.iloc[50])
    assert row.name == bars["timestamp"].iloc[50] and len(row) == 11
    with pytest.raises(BarValidationError, match="does not come after"):
        stream.update(bars.iloc[50])
    other = bars.iloc[51].copy()
    other["symbol"] = "OTHER"
    with pytest.raises(ConfigError, match=r"symbol 'OTHER'.*'TEST'"):
        stream.update(other)
    with pytest.raises(ConfigError, match="'volume' is missing"):
        stream.update(bars.iloc[52].drop("volume"))


def test_stream_keeps_a_bounded_buffer():
    fset = FeatureSet(FeatureSetSpec(name="s", features=[FeatureSpecEntry(name="sma")]))
    bars = random_walk_bars(2_000)
    stream = fset.stream()
    for bar in bars.to_dict("records"):
        stream.update(bar)
    assert stream.ready and len(stream._stamps) <= max(2 * fset.lookback, 256)


# ----------------------------------------------------------------- specs and errors


def test_yaml_round_trip_and_hash(tmp_path):
    spec = load_feature_set("intraday31").spec
    path = tmp_path / "copy.yaml"
    path.write_text(spec.to_yaml())
    again = FeatureSetSpec.from_yaml(path)
    assert again == spec and again.content_hash() == spec.content_hash()
    # Defaults spelled out or left out are the same computation; the description is prose.
    implicit = FeatureSetSpec(name="s", features=[FeatureSpecEntry(name="rsi")])
    explicit = FeatureSetSpec(
        name="s", description="x", features=[FeatureSpecEntry(name="rsi", params={"period": 14})]
    )
    other = FeatureSetSpec(name="s", features=[FeatureSpecEntry(name="rsi", params={"period": 7})])
    assert implicit.content_hash() == explicit.content_hash() != other.content_hash()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("- name: sma\n  - name: rsii", None),  # invalid YAML, checked below
        ("- name: rsii", r"entry 0 \('rsii'\): Unknown feature 'rsii'\. Did you mean 'rsi'\?"),
        (
            "- name: rsi\n- name: sma\n  params: {perid: 3}",
            r"entry 1 \('sma'\): .*perid: unknown parameter",
        ),
        ("- name: sma\n  params: {period: 0}", r"entry 0 \('sma'\): .*period"),
        (
            "- name: bbands\n  columns: [bb_widht]",
            r"entry 0 \('bbands'\): selects unknown column.*did you mean 'bb_width'",
        ),
        (
            "- name: spread\n- name: atr\n- name: sma\n- name: sma",
            r"entry 3 \('sma'\): output column 'sma_20' is also produced by entry 2",
        ),
        ("- name: sma\n  dtype: float16", r"entry 0 \('sma'\) field 'dtype'"),
        ("- name: sma\n  param: {period: 3}", r"entry 0 \('sma'\) field 'param': unknown key"),
    ],
)
def test_bad_specs_name_the_file_and_the_entry(tmp_path, entries, message):
    body = "name: bad\nversion: 1\nfeatures:\n" + textwrap.indent(entries, "  ")
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        FeatureSetSpec.from_yaml(path)
    text = str(info.value)
    assert str(path) in text
    if message is None:
        assert "not valid YAML" in text
    else:
        assert re.search(message, text), text


def test_unknown_set_name_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'intraday31'"):
        load_feature_set("intraday13")
    with pytest.raises(ConfigError, match="does not exist"):
        load_feature_set(tmp_path / "nope.yaml")


def test_a_yaml_path_loads(tmp_path, market):
    path = _write(
        tmp_path,
        """
        name: mine
        version: 2
        features:
          - name: rsi
            params: {period: 7}
          - name: macd
            columns: [macd_hist]
        """,
    )
    fset = load_feature_set(str(path))
    assert fset.columns == ("rsi_7", "macd_hist") and fset.spec.version == 2
    assert fset.lookback == create_feature("macd").lookback()


# ----------------------------------------------------------------- registry and CLI


@pytest.fixture
def stored(tmp_path, market):
    registry = Registry(tmp_path / "moola_data")
    ref = registry.write_raw("fx", market, sources=[{"test": True}])
    return registry, ref


def test_build_features_stores_table_with_lineage(stored, market):
    registry, raw = stored
    ref = build_features(registry, raw, "intraday31", name="fx31")
    table = registry.load_table("features", "fx31")
    assert list(table.columns) == ["timestamp", "symbol", *INTRADAY31]
    assert len(table) == len(market)
    expected = load_feature_set("intraday31").compute(market)
    pd.testing.assert_frame_equal(table[INTRADAY31], expected.reset_index(drop=True))
    meta, manifest = registry.meta(ref), registry.manifest(ref)
    assert meta["spec_hash"] == load_feature_set("intraday31").spec.content_hash()
    assert meta["columns"] == INTRADAY31 and meta["feature_set"]["name"] == "intraday31"
    assert manifest["parents"][0]["content_hash"] == raw.content_hash


def test_cli_list_build_show(tmp_path, stored, market):
    runner = CliRunner()
    settings = Settings(home=tmp_path / "moola_data")
    result = runner.invoke(app, ["list"], obj=settings)
    assert result.exit_code == 0, result.output
    assert "macd_signal" in result.output and "intraday31" in result.output

    result = runner.invoke(
        app, ["build", "--raw", "fx@v1", "--set", "relative11", "--name", "rel"], obj=settings
    )
    assert result.exit_code == 0, result.output
    assert "features/rel@v1" in result.output

    result = runner.invoke(app, ["show", "rel"], obj=settings)
    assert result.exit_code == 0, result.output
    assert "relative11" in result.output and "rel_close" in result.output

    bars_file = tmp_path / "bars.parquet"
    market.to_parquet(bars_file, index=False)
    out = tmp_path / "out" / "features.csv"
    args = ["build", "--bars", str(bars_file), "--set", "relative11", "--out", str(out)]
    result = runner.invoke(app, args, obj=settings)
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    assert len(written) == len(market) and list(written.columns)[:2] == ["timestamp", "symbol"]
    again = runner.invoke(app, args, obj=settings)
    assert isinstance(again.exception, ConfigError) and "--overwrite" in str(again.exception)


def test_cli_build_refuses_mixed_modes_and_short_input(tmp_path, stored):
    runner = CliRunner()
    settings = Settings(home=tmp_path / "moola_data")
    both = runner.invoke(
        app, ["build", "--raw", "fx", "--bars", "x.csv", "--set", "relative11"], obj=settings
    )
    assert isinstance(both.exception, ConfigError)
    short = tmp_path / "short.parquet"
    random_walk_bars(100).to_parquet(short, index=False)
    args = ["build", "--bars", str(short), "--set", "intraday31", "--out", str(tmp_path / "o.pq")]
    result = runner.invoke(app, args, obj=settings)
    assert isinstance(result.exception, ConfigError)
    args[-1] = str(tmp_path / "o.parquet")
    result = runner.invoke(app, args, obj=settings)
    assert isinstance(result.exception, ConfigError) and result.exception.param == "allow_short"
    result = runner.invoke(app, [*args, "--allow-short"], obj=settings)
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == 100
