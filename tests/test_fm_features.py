"""Zero-shot forecasts as a stored feature set: each bar's forecast reads only the window
ending at that bar (no lookahead), and the stored set names the weights that made it."""

from __future__ import annotations

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.models.foundation import directory_sha256, load_backbone
from moola.pipeline.datasets import synthesize_raw
from moola.pipeline.foundation import forecast_feature_table, store_forecast_features
from moola.testing.foundation import tiny_chronos_bolt, tiny_kronos, tiny_timesfm


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm-features-weights")
    return {"chronos": tiny_chronos_bolt(root / "chronos"), "timesfm": tiny_timesfm(root / "tfm")}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    registry = Registry(tmp_path_factory.mktemp("fm-features"))
    raw, _ = synthesize_raw(registry, "mkt", n_bars=120, seed=5, symbols=["AAA", "BBB"])
    return registry, raw


@pytest.mark.parametrize("kind", ["chronos", "timesfm"])
def test_each_bars_forecast_reads_only_the_window_ending_at_it(weights, market, kind):
    registry, raw = market
    bars = registry.load_raw(raw.name, raw.version)
    backbone = load_backbone(kind, weights[kind])
    context, horizon = 24, 3
    full = forecast_feature_table(bars, backbone, context=context, horizon=horizon)
    assert list(full.columns[2:]) == [f"fm_ret3_q{q}" for q in ("50", "10", "25", "75", "90")]
    values = full.iloc[:, 2:].to_numpy()
    first_b = int(np.flatnonzero(bars["symbol"].to_numpy() == "BBB")[0])
    for start in (0, first_b):  # warm-up: NaN until a full window of the symbol's own bars
        assert np.isnan(values[start : start + context - 1]).all()
        assert np.isfinite(values[start + context - 1 :][: 120 - context + 1]).all()
    assert (values[:, 1] <= values[:, 0] + 1e-12)[np.isfinite(values[:, 0])].all()  # q10 <= q50
    for cut in (first_b - 5, first_b + context + 7, len(bars) - 20):
        # bars after the cut removed, or replaced by wild values: rows up to it unchanged
        head = forecast_feature_table(
            bars.iloc[:cut].reset_index(drop=True), backbone, context=context, horizon=horizon
        )
        np.testing.assert_allclose(head.iloc[:, 2:].to_numpy(), values[:cut], rtol=1e-6)
        poisoned = bars.copy()
        poisoned.loc[cut:, "close"] *= 3.0
        again = forecast_feature_table(poisoned, backbone, context=context, horizon=horizon)
        np.testing.assert_allclose(again.iloc[:cut, 2:].to_numpy(), values[:cut], rtol=1e-6)
    # each row is its own window's forecast, read exactly off the backbone
    t = first_b + 40
    window = bars["close"].to_numpy()[t - context + 1 : t + 1][None, :, None]
    direct = backbone.forecast(window, horizon, (0.1, 0.25, 0.5, 0.75, 0.9))[0, -1]
    expected = direct[[2, 0, 1, 3, 4]] / bars["close"].iloc[t] - 1.0
    np.testing.assert_allclose(values[t], expected, rtol=1e-5)


def test_the_stored_set_names_the_weights_and_bad_settings_write_nothing(weights, market):
    registry, raw = market
    ref = store_forecast_features(
        registry, raw, "chronos", weights["chronos"], name="fm", context=16, horizon=2
    )
    meta = registry.meta(ref)
    assert meta["foundation"]["sha256"] == directory_sha256(weights["chronos"])
    assert meta["foundation"]["path"] == str(weights["chronos"]) and meta["lookback"] == 15
    table = registry.load_table("features", "fm")
    assert len(table) == 240 and "fm_ret2_q50" in table.columns
    with pytest.raises(ConfigError, match="exceeds what the chronos backbone"):
        store_forecast_features(
            registry, raw, "chronos", weights["chronos"], name="too-long", context=4096
        )
    kronos = tiny_kronos(weights["chronos"].parent / "kronos")
    with pytest.raises(ConfigError, match="does not forecast"):
        store_forecast_features(registry, raw, "kronos", kronos, name="kr")
    with pytest.raises(ConfigError, match="changed since they were recorded"):
        store_forecast_features(
            registry, raw, "timesfm", weights["timesfm"], name="x", sha256="sha256:" + "0" * 64
        )
    assert (registry.root / "data" / "features" / "fm").is_dir()
    for refused in ("too-long", "kr", "x"):
        assert not (registry.root / "data" / "features" / refused).exists()
