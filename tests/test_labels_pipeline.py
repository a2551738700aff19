"""``build_and_store_labels``: the one call that labels a raw dataset and stores the table."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from moola.cli.labels import app
from moola.core.errors import ConfigError
from moola.core.settings import Settings
from moola.data.registry import Registry
from moola.features.labels import build_labels
from moola.pipeline import build_and_store_labels
from moola.pipeline.labels import store_labels
from tests.conftest import random_walk_bars


@pytest.fixture
def two_symbols(tmp_path):
    """A registry under ``tmp_path`` holding raw dataset ``mkt``: two symbols' bars."""
    registry = Registry(tmp_path / "home")
    bars = pd.concat(
        [random_walk_bars(400, symbol="NQ", seed=3), random_walk_bars(400, symbol="ES", seed=4)]
    ).reset_index(drop=True)
    raw = registry.write_raw("mkt", bars, sources=[{"test": True}])
    return registry, raw


def test_one_call_stores_what_the_two_calls_store(two_symbols):
    registry, raw = two_symbols
    params = {"horizon": 20, "pt_mult": 2.0, "sl_mult": 1.0}
    two = store_labels(
        registry,
        "by-two-calls",
        build_labels(registry.load_raw(raw.name, raw.version), "triple-barrier", **params),
        raw=raw,
        kind="triple-barrier",
        params=params,
    )
    one = build_and_store_labels(registry, "by-one-call", "mkt@v1", "triple_barrier", **params)

    assert (one.kind, one.name, one.version) == ("labels", "by-one-call", 1)
    pd.testing.assert_frame_equal(
        registry.load_table("labels", one.name), registry.load_table("labels", two.name)
    )
    assert one.content_hash == two.content_hash
    meta = registry.meta(one)
    assert meta["label_kind"] == "triple-barrier" and meta["params"] == params
    assert registry.manifest(one)["parents"][0]["content_hash"] == raw.content_hash
    stored = registry.load_table("labels", one.name)
    assert set(stored["symbol"]) == {"NQ", "ES"}
    for symbol, rows in stored.groupby("symbol"):  # horizons never reach another symbol
        ends = rows["horizon_end"][rows["horizon_end"] >= 0]
        assert ends.between(rows.index.min(), rows.index.max()).all(), symbol


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("triple-barier", {"horizon": 5}, "Unknown label kind"),
        ("forward-return", {"horizon": 5, "pt_mult": 2.0}, "pt_mult"),
        ("triple-barrier", {"horizon": 5}, "sl_mult"),
    ],
)
def test_a_bad_kind_or_parameter_is_refused_with_nothing_written(
    two_symbols, kind, params, message
):
    registry, raw = two_symbols
    with pytest.raises(ConfigError, match=message):
        build_and_store_labels(registry, "bad", raw, kind, **params)
    assert registry.versions("labels", "bad") == []


def test_the_cli_stores_and_writes_the_same_table(two_symbols, tmp_path):
    registry, _ = two_symbols
    out = tmp_path / "labels.parquet"
    result = CliRunner().invoke(
        app,
        ["build", "--raw", "mkt", "--kind", "forward-return", "--horizon", "5", "--name",
         "fwd", "--out", str(out)],
        obj=Settings(home=tmp_path / "home"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Stored labels/fwd@v1" in result.output
    stored = registry.load_table("labels", "fwd")
    pd.testing.assert_frame_equal(pd.read_parquet(out), stored, check_like=True)
