"""Directional-change events, DC bars, the ``dc`` feature and ``moola bars dc``."""

from __future__ import annotations

import math
import shlex

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from moola.cli.bars import app
from moola.core.errors import ConfigError
from moola.core.settings import Settings
from moola.data.registry import Registry
from moola.data.schema import make_bars
from moola.features.base import create_feature
from moola.features.dc import dc_bars, dc_features, dc_tables, detect_dc_events
from moola.testing import check_feature, check_incremental
from tests.conftest import random_walk_bars

HAND = [100, 101, 102, 101.9, 100.9, 100, 101, 102.1]


def closes_to_bars(closes, symbol: str = "X") -> pd.DataFrame:
    """Bars with the given closes; open = previous close, high/low = close +- 0.5,
    volume of bar i = i + 1 (so aggregates are easy to check by hand)."""
    close = np.asarray(closes, dtype=float)
    open_ = np.concatenate([[close[0]], close[:-1]])
    stamps = pd.date_range("2024-01-01", periods=len(close), freq="1min", tz="UTC")
    volume = np.arange(1, len(close) + 1, dtype=float)
    return make_bars(
        stamps, open_, close + 0.5, close - 0.5, close, volume, symbol=symbol, timeframe="1m"
    )


def event_tuples(events: pd.DataFrame) -> list[tuple]:
    return list(
        zip(
            events["direction"].astype(str),
            events["extreme_pos"],
            events["extreme_price"],
            events["confirm_pos"],
            events["confirm_price"],
            strict=True,
        )
    )


# ------------------------------------------------------------------------- events
def test_hand_computed_events():
    # threshold 1%: up-trend from 100 confirmed at 101 (= 100 * 1.01, "at or above");
    # peak 102 at bar 2, down confirmed at 100.9 (<= 102 * 0.99 = 100.98) at bar 4;
    # trough 100 at bar 5, up confirmed at 101 (= 100 * 1.01) at bar 6; 102.1 extends it.
    events = detect_dc_events(closes_to_bars(HAND), up=0.01)
    assert event_tuples(events) == [
        ("up", 0, 100.0, 1, 101.0),
        ("down", 2, 102.0, 4, 100.9),
        ("up", 5, 100.0, 6, 101.0),
    ]
    stamps = closes_to_bars(HAND)["timestamp"]
    assert events["confirm_ts"].tolist() == stamps.iloc[[1, 4, 6]].tolist()
    assert events["extreme_ts"].tolist() == stamps.iloc[[0, 2, 5]].tolist()
    # overshoot of the previous trend: previous confirmation -> this event's extreme
    assert math.isnan(events["os_return"].iloc[0])
    assert events["os_return"].iloc[1] == pytest.approx(math.log(102 / 101))
    assert events["os_return"].iloc[2] == pytest.approx(math.log(100 / 100.9))
    assert events["os_bars"].iloc[1:].tolist() == [1.0, 1.0]
    assert events["dc_return"].tolist() == pytest.approx(
        [math.log(1.01), math.log(100.9 / 102), math.log(1.01)]
    )


def test_confirmation_is_at_or_beyond_the_threshold():
    # 4 * 1.5 = 6 exactly: the close at the threshold confirms; 5.99 does not.
    assert event_tuples(detect_dc_events(closes_to_bars([4, 6]), up=0.5)) == [
        ("up", 0, 4.0, 1, 6.0)
    ]
    assert detect_dc_events(closes_to_bars([4, 5.99]), up=0.5).empty
    # 8 * (1 - 0.5) = 4 exactly, downward
    assert event_tuples(detect_dc_events(closes_to_bars([8, 4]), up=0.5)) == [
        ("down", 0, 8.0, 1, 4.0)
    ]
    # the same inside an established trend: 4 <= 8 * 0.5, then 3 >= 2 * 1.5
    assert event_tuples(detect_dc_events(closes_to_bars([4, 6, 8, 4, 2, 3]), up=0.5)) == [
        ("up", 0, 4.0, 1, 6.0),
        ("down", 2, 8.0, 3, 4.0),
        ("up", 4, 2.0, 5, 3.0),
    ]


def test_initial_trend_starts_from_the_running_extreme():
    # No 1% move from 100 by bar 2; the first one is 100.7 >= 99.6 * 1.01 = 100.596,
    # measured from the low at bar 2, which becomes the event's extreme.
    events = detect_dc_events(closes_to_bars([100, 100.5, 99.6, 100.7]), up=0.01)
    assert event_tuples(events) == [("up", 2, 99.6, 3, 100.7)]
    events = detect_dc_events(closes_to_bars([100, 99.5, 98.9]), up=0.01)
    assert event_tuples(events) == [("down", 0, 100.0, 2, 98.9)]


def test_asymmetric_thresholds():
    closes = [100, 101, 102.5, 101.4, 103, 101.9, 103.5, 104]
    # up 2%, down 1%: up at 102.5 (>= 102); down at 101.4 (<= 102.5 * .99 = 101.475);
    # 103 < 101.4 * 1.02 = 103.428 is not enough, 103.5 is.
    events = detect_dc_events(closes_to_bars(closes), up=0.02, down=0.01)
    assert event_tuples(events) == [
        ("up", 0, 100.0, 2, 102.5),
        ("down", 2, 102.5, 3, 101.4),
        ("up", 3, 101.4, 6, 103.5),
    ]
    assert events["threshold"].tolist() == [0.02, 0.01, 0.02]
    # 2% both ways: 101.4 is not 2% below 102.5, so the up-trend never ends
    symmetric = detect_dc_events(closes_to_bars(closes), up=0.02)
    assert event_tuples(symmetric) == [("up", 0, 100.0, 2, 102.5)]


def test_flat_and_quiet_series_give_no_events():
    flat = closes_to_bars([100.0] * 50)
    assert detect_dc_events(flat, up=0.001).empty
    assert dc_bars(flat, detect_dc_events(flat, up=0.001)).empty
    assert dc_features(flat, up=0.001).isna().all().all()
    quiet = closes_to_bars(100 + 0.01 * np.sin(np.arange(50)))  # moves of 0.02%
    assert detect_dc_events(quiet, up=0.001).empty


def test_events_alternate_and_are_deterministic():
    bars = random_walk_bars(5_000, seed=3)
    first = detect_dc_events(bars, up=0.002, down=0.003)
    second = detect_dc_events(bars.copy(), up=0.002, down=0.003)
    pd.testing.assert_frame_equal(first, second)
    directions = first["direction"].astype(str).to_numpy()
    assert len(first) > 10
    assert (directions[1:] != directions[:-1]).all()
    assert (first["extreme_pos"] < first["confirm_pos"]).all()
    assert (first["extreme_pos"].to_numpy()[1:] >= first["confirm_pos"].to_numpy()[:-1]).all()
    # each confirmation really crossed its threshold from its extreme
    up = first["direction"] == "up"
    ratio = first["confirm_price"] / first["extreme_price"]
    assert (ratio[up] >= 1.002).all() and (ratio[~up] <= 1 - 0.003).all()


def test_bad_thresholds_and_many_symbols_are_config_errors():
    bars = closes_to_bars(HAND)
    for bad in (0.0, -0.01, 1.0, float("nan")):
        with pytest.raises(ConfigError, match="threshold"):
            detect_dc_events(bars, up=bad)
    with pytest.raises(ConfigError, match="down"):
        detect_dc_events(bars, up=0.01, down=2.0)
    two = pd.concat([bars, closes_to_bars(HAND, symbol="Y")], ignore_index=True)
    with pytest.raises(ConfigError, match="one symbol"):
        detect_dc_events(two, up=0.01)


# ------------------------------------------------------------------------ DC bars
def test_hand_computed_dc_bars():
    bars = closes_to_bars(HAND)
    segments = dc_bars(bars, detect_dc_events(bars, up=0.01))
    # DC k: extreme+1 .. confirm; OS k: confirm+1 .. next extreme; known at the close
    # of the confirmation (DC) or of the NEXT confirmation (OS).
    assert segments["segment"].astype(str).tolist() == ["dc", "os", "dc", "os", "dc"]
    assert segments["direction"].astype(str).tolist() == ["up", "up", "down", "down", "up"]
    assert segments["start_pos"].tolist() == [1, 2, 3, 5, 6]
    assert segments["end_pos"].tolist() == [1, 2, 4, 5, 6]
    assert segments["known_pos"].tolist() == [1, 4, 4, 6, 6]
    assert segments["timestamp"].tolist() == bars["timestamp"].iloc[[1, 4, 4, 6, 6]].tolist()
    down_dc = segments.iloc[2]  # bars 3 and 4: closes 101.9, 100.9
    assert down_dc["open"] == 102.0  # open of bar 3 = close of bar 2
    assert down_dc["high"] == 102.4 and down_dc["low"] == 100.4
    assert down_dc["close"] == 100.9
    assert down_dc["volume"] == 4 + 5
    assert down_dc["n_bars"] == 2


def test_dc_bars_tile_the_series():
    bars = random_walk_bars(3_000, seed=5)
    events = detect_dc_events(bars, up=0.003)
    segments = dc_bars(bars, events)
    start, end = segments["start_pos"].to_numpy(), segments["end_pos"].to_numpy()
    assert start[0] == events["extreme_pos"].iloc[0] + 1
    assert end[-1] == events["confirm_pos"].iloc[-1]
    assert (start[1:] == end[:-1] + 1).all()
    assert (segments["known_pos"] >= segments["end_pos"]).all()
    assert segments["known_pos"].is_monotonic_increasing
    volume = bars["volume"].to_numpy()
    assert segments["volume"].sum() == pytest.approx(volume[start[0] : end[-1] + 1].sum())
    for row in segments.sample(20, random_state=0).itertuples():
        window = bars.iloc[row.start_pos : row.end_pos + 1]
        assert row.high == window["high"].max() and row.low == window["low"].min()
        assert row.open == window["open"].iloc[0] and row.close == window["close"].iloc[-1]


def test_dc_tables_go_symbol_by_symbol():
    a, b = random_walk_bars(800, symbol="A", seed=1), random_walk_bars(600, symbol="B", seed=2)
    both = pd.concat([a, b], ignore_index=True)
    events, segments = dc_tables(both, up=0.002)
    only_b = detect_dc_events(b, up=0.002)
    mine = events[events["symbol"] == "B"].reset_index(drop=True)
    assert mine["confirm_pos"].tolist() == (only_b["confirm_pos"] + len(a)).tolist()
    assert mine["confirm_price"].tolist() == only_b["confirm_price"].tolist()
    assert (both["close"].to_numpy()[events["confirm_pos"]] == events["confirm_price"]).all()
    assert set(segments["symbol"]) == {"A", "B"}


# ------------------------------------------------------------------------ feature
def test_hand_computed_features():
    features = create_feature("dc", up=0.01).compute(closes_to_bars(HAND))
    assert features.iloc[0].isna().all()  # before the first confirmation
    assert features["dc_trend"].tolist()[1:] == [1, 1, 1, -1, -1, 1, 1]
    assert features["dc_bars_since_event"].tolist()[1:] == [0, 1, 2, 0, 1, 0, 1]
    # distance from the last confirmed event's extreme: 100 (bars 1-3), 102 (4-5), 100 (6-7)
    extremes = [100, 100, 100, 102, 102, 100, 100]
    assert features["dc_price_distance"].iloc[1:].tolist() == pytest.approx(
        [math.log(c / e) for c, e in zip(HAND[1:], extremes, strict=True)]
    )
    assert features["dc_overshoot_ratio"].iloc[1:].tolist() == pytest.approx(
        [
            0,
            (102 / 101 - 1) / 0.01,
            (101.9 / 101 - 1) / 0.01,
            0,
            (1 - 100 / 100.9) / 0.01,
            0,
            (102.1 / 101 - 1) / 0.01,
        ]
    )


@pytest.mark.parametrize("params", [{"up": 0.002}, {"up": 0.001, "down": 0.003}])
def test_feature_sees_no_future(params):
    check_feature(create_feature("dc", **params), random_walk_bars(1_500, seed=7), n_cuts=25)


def test_bounded_run_time_buffer_matches_batch():
    # A quiet market (per-bar sd 0.0001, ~25 bars per 0.05% event) streamed through a
    # buffer of about lookback() = 1,000 bars: the DC state rebuilt from the buffer agrees
    # with the full-history state.
    rng = np.random.default_rng(2)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 1e-4, 3_000)))
    feature = create_feature("dc", up=0.0005, down=0.0007)
    assert feature.lookback() < 2_000
    check_incremental(feature, closes_to_bars(closes), start=2_500)


def test_feature_params_are_checked():
    with pytest.raises(ConfigError, match="dc"):
        create_feature("dc", up=0)
    with pytest.raises(ConfigError, match="unknown parameter"):
        create_feature("dc", threshold=0.01)
    feature = create_feature("dc", up=0.0005)
    assert feature.columns() == (
        "dc_trend",
        "dc_bars_since_event",
        "dc_price_distance",
        "dc_overshoot_ratio",
    )
    assert feature.lookback() >= 1_000


# ---------------------------------------------------------------------------- CLI
@pytest.fixture
def bars_csv(tmp_path):
    bars = random_walk_bars(1_200, symbol="ES", seed=4)
    frame = bars[["timestamp", "open", "high", "low", "close", "volume"]].copy()
    path = tmp_path / "es.csv"
    frame.to_csv(path, index=False)
    return path, bars


def invoke(tmp_path, args: str | list[str]):
    """Run ``moola bars ARGS`` with the data root under ``tmp_path``."""
    argv = shlex.split(args) if isinstance(args, str) else args
    return CliRunner().invoke(app, argv, obj=Settings(home=tmp_path / "home"))


def test_cli_writes_events_and_bars_files(tmp_path, bars_csv):
    path, bars = bars_csv
    out, out_bars = tmp_path / "events.parquet", tmp_path / "dcbars.csv"
    result = invoke(
        tmp_path,
        f"dc --bars {path} --symbol ES --timeframe 1m --threshold 0.002 --down 0.003 "
        f"--out {out} --dc-bars-out {out_bars}",
    )
    assert result.exit_code == 0, result.output
    expected = detect_dc_events(bars, up=0.002, down=0.003)
    assert f"{len(expected):,} DC events" in result.output
    written = pd.read_parquet(out)
    assert written["confirm_pos"].tolist() == expected["confirm_pos"].tolist()
    assert written["symbol"].astype(str).unique().tolist() == ["ES"]
    assert len(pd.read_csv(out_bars)) == len(dc_bars(bars, expected))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_cli_stores_into_the_registry(tmp_path):
    registry = Registry(tmp_path / "home")
    bars = random_walk_bars(1_000, symbol="NQ", seed=9)
    raw = registry.write_raw("nq", bars, sources=[{"test": True}])
    result = invoke(
        tmp_path, "dc --raw nq@v1 --threshold 0.002 --name nq-dc --dc-bars-name nq-dcbars"
    )
    assert result.exit_code == 0, result.output
    stored = registry.load_table("features", "nq-dc")
    assert (
        stored["confirm_pos"].tolist() == detect_dc_events(bars, up=0.002)["confirm_pos"].tolist()
    )
    ref = registry.resolve("features", "nq-dc")
    assert registry.manifest(ref)["parents"][0]["name"] == raw.name
    assert registry.meta(ref)["params"] == {"up": 0.002, "down": 0.002}
    assert len(registry.load_table("features", "nq-dcbars")) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threshold", "0.001"], "exactly one bar source"),
        (["--raw", "x", "--bars", "f.csv", "--threshold", "0.001"], "exactly one bar source"),
        (["--bars", "f.csv", "--threshold", "0"], "--threshold"),
        (["--bars", "f.csv", "--threshold", "0.001", "--down", "1.5"], "--down"),
        (["--bars", "f.csv", "--threshold", "0.001", "--out", "e.txt"], "--out"),
        (["--bars", "f.csv", "--threshold", "0.001", "--name", "n"], "--raw"),
    ],
)
def test_cli_bad_flags_are_config_errors(tmp_path, args, message):
    result = invoke(tmp_path, ["dc", *args])
    assert isinstance(result.exception, ConfigError)
    assert message in str(result.exception)
    assert not (tmp_path / "home").exists()
