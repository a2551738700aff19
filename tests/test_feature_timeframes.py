"""Feature sets say which bars they are made for; daily bars get a session-free set."""

from __future__ import annotations

import pytest

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.features import load_feature_set
from moola.features.featureset import FeatureSetSpec
from moola.testing import check_feature, check_incremental
from tests.test_cli import run


def test_intraday31_on_daily_bars_says_what_changes():
    notes = load_feature_set("intraday31").suitability("1d")
    assert len(notes) == 2
    assert "1,827 bars" in notes[0] and "years" in notes[0]
    assert "sessions" in notes[1] and "daily24" in notes[1]
    assert load_feature_set("intraday31").suitability("5m") == []
    assert load_feature_set("relative11").suitability("1d") == []  # made for any bars


def test_daily24_on_real_sp500_bars_has_no_sessions_and_sees_no_future(sp500):
    fset = load_feature_set("daily24")
    assert fset.suitability("1d") == []
    assert not {"sessions", "futures_sessions"} & {f.name for f in fset.features}
    out = fset.compute(sp500)
    assert out.shape == (len(sp500), 24)
    assert out.iloc[fset.lookback :].notna().all().all()
    check_feature(fset, sp500, n_cuts=6)
    check_incremental(fset, sp500.iloc[:1_200], start=700)


def test_an_unknown_declared_timeframe_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ntimeframes: [1 minute]\nfeatures:\n  - name: rsi\n")
    with pytest.raises(ConfigError, match="Unknown timeframe"):
        FeatureSetSpec.from_yaml(path)


def test_features_build_on_daily_bars_prints_and_records_the_notes(capsys, tmp_path, sp500):
    root = tmp_path / "moola_data"
    Registry(root).write_raw("spx", sp500, sources=[{"path": "arch sp500"}])
    code, out, err = run(
        capsys,
        "--data-root",
        str(root),
        "features",
        "build",
        "--raw",
        "spx",
        "--set",
        "intraday31",
        "--name",
        "spx-f",
    )
    assert code == 0, err
    flat = " ".join(out.split())
    assert "made for 1m/5m/15m/30m/1h bars, not 1d" in flat and "daily24" in flat
    meta = Registry(root).meta(Registry(root).resolve("features", "spx-f"))
    assert len(meta["suitability"]) == 2
