"""Members: promoted runs loaded through Predictor.from_promoted, one p(up) per bar."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.features.featureset import load_feature_set
from moola.pipeline.predictor import Predictor
from moola.runtime.config import parse_live_config
from moola.runtime.members import _check_fits, load_members, up_probability
from tests.runtime._lab import SYMBOLS, build_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return build_lab(tmp_path_factory.mktemp("members"))


def _config(run_id: str, **member):
    return parse_live_config(
        {
            "symbols": list(SYMBOLS),
            "members": [{"role": "direction", "run": run_id, "up_class": "retracement", **member}],
        }
    )


def test_a_member_gives_the_runs_probability_of_its_up_class(lab):
    root, run_id = lab
    (member,) = load_members(root, _config(run_id), load_feature_set("intraday31"))
    bars = Registry(root).load_raw("mkt")
    btc = bars[bars["symbol"] == "BTC"].reset_index(drop=True)
    window = btc.iloc[200:305]
    expected = Predictor.from_promoted(root, run_id).predict_proba(window)[0]
    k = member.predictor.classes.index("retracement")
    assert member.value("BTC", window, None) == pytest.approx(expected[k])
    assert member.value("BTC", window.iloc[:50], None) is None  # too few bars: missing
    assert (member.name, member.run_id, member.weight) == ("direction", run_id, 0.35)


def test_up_probability_maps_classes():
    assert up_probability(np.array([0.2, 0.8]), ("down", "up"), "up", None) == pytest.approx(0.8)
    three = np.array([0.1, 0.6, 0.3])
    assert up_probability(three, ("down", "flat", "up"), "up", "down") == pytest.approx(0.75)
    assert up_probability(np.array([0.0, 1.0, 0.0]), ("down", "flat", "up"), "up", "down") == 0.5


def test_a_run_that_is_not_promoted_is_refused_naming_it(lab):
    root, _ = lab
    with pytest.raises(ConfigError, match="not promoted") as caught:
        load_members(root, _config("20260101T000000Z-nope"), load_feature_set("intraday31"))
    assert "20260101T000000Z-nope" in str(caught.value)


def test_a_class_the_run_does_not_have_is_refused_naming_its_classes(lab):
    root, run_id = lab
    with pytest.raises(ConfigError, match="consolidation"):
        load_members(root, _config(run_id, up_class="up"), load_feature_set("intraday31"))


def test_calibration_off_gives_the_estimators_raw_probabilities(lab):
    root, run_id = lab
    on = load_members(root, _config(run_id), load_feature_set("intraday31"))[0]
    raw_config = _config(run_id).model_copy(update={"calibration": False})
    off = load_members(root, raw_config, load_feature_set("intraday31"))[0]
    bars = Registry(root).load_raw("mkt")
    window = bars[bars["symbol"] == "ETH"].iloc[:105]
    p = off.predictor
    k = p.classes.index("retracement")
    raw = p.estimator.predict_proba(p.inputs_of(window))[0, k]
    assert p.calibrator is not None
    assert off.value("ETH", window, None) == pytest.approx(raw)
    assert on.value("ETH", window, None) == pytest.approx(p.predict_proba(window)[0, k])


def _fake(**fields):
    base = {"feature_set": None, "length": 60, "columns": ("open", "close"), "symbols": ()}
    return SimpleNamespace(**{**base, **fields})


def test_a_member_whose_input_does_not_fit_the_feed_is_refused_naming_both(lab):
    _, run_id = lab
    config = _config(run_id)
    session = load_feature_set("intraday31")
    where = "member 'direction' (run r)"
    with pytest.raises(ConfigError, match="relative11") as caught:
        _check_fits(where, _fake(feature_set=load_feature_set("relative11")), config, session)
    assert "intraday31" in str(caught.value)
    with pytest.raises(ConfigError, match="vwap"):
        _check_fits(where, _fake(columns=("close", "vwap")), config, session)
    with pytest.raises(ConfigError, match="ETH"):
        _check_fits(where, _fake(symbols=("BTC",)), config, session)
    _check_fits(where, _fake(), config, session)  # raw OHLC windows fit
