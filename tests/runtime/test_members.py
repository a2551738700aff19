"""Members: promoted runs loaded through Predictor.from_promoted, one p(up) per bar."""

from __future__ import annotations

import logging
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.features.featureset import IncrementalFeatures, load_feature_set
from moola.pipeline.predictor import Predictor
from moola.runtime import members
from moola.runtime.config import parse_live_config
from moola.runtime.members import _check_fits, load_members, run_timeframes, up_probability
from moola.runtime.session import run_session
from moola.tracking.livedb import LiveJournal
from tests.runtime._lab import SMALL, SYMBOLS, build_feature_lab, build_lab


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


def test_a_run_trained_on_other_bars_than_the_sessions_is_refused_naming_both(lab):
    """The lab's run trained on 1m bars (raw mkt@v1): a 5m session is refused at load,
    naming the member, the run, both timeframes and the raw bars; a 1m session loads it
    with nothing to note."""
    root, run_id = lab
    assert run_timeframes(root, run_id) == (("1m",), "mkt@v1")
    five = _config(run_id).model_copy(update={"timeframe": "5m"})
    with pytest.raises(ConfigError, match="trained on 1m bars") as caught:
        load_members(root, five, load_feature_set("intraday31"))
    message = str(caught.value)
    assert "'direction'" in message and run_id in message and "5m" in message
    assert "mkt@v1" in message and caught.value.param == "timeframe"
    (member,) = load_members(root, _config(run_id), load_feature_set("intraday31"))
    assert member.note == ""


@pytest.mark.parametrize(
    ("removed", "why"),
    [
        ("labeled", "its labeled dataset pat@v1 is not stored in this data root"),
        ("raw", "its raw bars mkt@v1 are not stored in this data root"),
    ],
)
def test_a_run_whose_lineage_is_not_stored_loads_with_a_note_saying_so(
    lab, tmp_path, caplog, removed, why
):
    """A data root holding the promoted model but not the data it trained on (a trading
    host): the timeframe cannot be checked, so the member loads, its note and a logged
    warning saying what was not checked and why."""
    root, run_id = lab
    host = _trading_host(root, tmp_path, removed)
    assert run_timeframes(host, run_id) == ((), why)
    config = _config(run_id).model_copy(update={"timeframe": "5m"})
    with caplog.at_level(logging.WARNING, logger="moola.runtime.members"):
        (member,) = load_members(host, config, load_feature_set("intraday31"))
    assert run_id in member.note and why in member.note and "5m" in member.note
    assert "not checked" in member.note
    assert member.note in caplog.text


@pytest.mark.parametrize(
    ("trained", "session", "fits"),
    [
        (("1m", "5m"), "5m", True),  # raw bars that mixed timeframes fit either
        (("1m", "5m"), "15m", False),
        (("60m",), "1h", True),  # one duration, two spellings
        (("dc0.5",), "1m", False),  # bars that are not of a time frame fit none
    ],
)
def test_the_timeframes_a_run_trained_on_decide_what_session_it_fits(
    monkeypatch, trained, session, fits
):
    monkeypatch.setattr(members, "run_timeframes", lambda root, run: (trained, "mkt@v1"))
    config = _config("r").model_copy(update={"timeframe": session})
    where = "member 'direction' (run r)"
    if fits:
        assert members._check_timeframe(where, "root", _fake(run_id="r"), config) == ""
        return
    with pytest.raises(ConfigError, match="/".join(trained)) as caught:
        members._check_timeframe(where, "root", _fake(run_id="r"), config)
    assert session in str(caught.value) and caught.value.param == "timeframe"


def _trading_host(root, tmp_path, removed="labeled"):
    """A copy of data root ``root`` without its ``removed`` datasets (by default the
    labeled ones: the promoted models and the raw bars, not what the runs trained on)."""
    host = tmp_path / "moola_data"
    shutil.copytree(root, host)
    shutil.rmtree(host / "data" / removed)
    return host


def test_a_session_records_what_loading_its_members_could_not_check(lab, tmp_path):
    root, run_id = lab
    host = _trading_host(root, tmp_path)
    url = f"sqlite:///{tmp_path / 'paper.db'}"
    config = _config(run_id).model_copy(update={"journal_url": url})
    result = run_session(host, config, replay="mkt", max_bars=4, env={})
    with LiveJournal(url) as journal:
        (event,) = journal.events(kind="member_note")
    assert event["session_id"] == result.session_id
    assert event["payload"]["member"] == "direction" and event["payload"]["run_id"] == run_id
    assert "not checked" in event["payload"]["note"]


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


@pytest.fixture(scope="module")
def feature_lab(tmp_path_factory):
    """A promoted logistic regression on 10-row windows of the feature set ``small``
    (classes "-1" / "1": the sign of the 5-bar forward return) over 400 BTC bars, and the
    set's YAML file. Returns (root, run id, spec file, bars)."""
    parent = tmp_path_factory.mktemp("feature_member")
    root, run_id, bars = build_feature_lab(parent)
    spec = parent / "small.yaml"
    spec.write_text(SMALL.to_yaml(), encoding="utf-8")
    return root, run_id, spec, bars


def test_a_feature_window_member_reads_the_streamed_rows_as_the_run_reads_batch_rows(
    feature_lab,
):
    root, run_id, spec, bars = feature_lab
    config = parse_live_config(
        {
            "symbols": ["BTC"],
            "feature_set": str(spec),
            "members": [{"role": "trend", "run": run_id, "up_class": "1"}],
        }
    )
    fset = load_feature_set(config.feature_set)
    (member,) = load_members(root, config, fset)
    assert member.rows_needed == 10 and member.bars_needed == 0
    assert run_timeframes(root, run_id) == (("1m",), "mkt@v1")  # through the feature windows
    stream = IncrementalFeatures(fset)
    rows = pd.DataFrame([stream.update(bar) for _, bar in bars.iloc[:200].iterrows()])
    assert member.value("BTC", bars.iloc[:5], rows.iloc[:5]) is None  # warm-up
    predictor = Predictor.from_promoted(root, run_id)
    up = predictor.classes.index("1")
    for end in (60, 120, 200):
        expected = predictor.predict_proba(bars.iloc[:end])[0, up]
        assert member.value("BTC", bars.iloc[:end], rows.iloc[:end]) == pytest.approx(
            expected, abs=1e-6
        )
