"""Label producers, their recorded horizons, weak pattern labels and ``moola labels build``."""

from __future__ import annotations

import math
import shlex
from functools import partial

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from moola.cli.labels import app
from moola.core.errors import ConfigError
from moola.core.settings import Settings
from moola.data.registry import Registry
from moola.data.schema import make_bars
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features.labels import (
    LABELS,
    build_labels,
    forward_return_direction,
    realized_volatility,
    trend_strength,
    triple_barrier,
    volatility_regime_target,
    weak_pattern_labels,
)
from moola.testing import check_label
from tests.conftest import random_walk_bars


def bars_from(close, high=None, low=None, symbol: str = "X") -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    high = close + 1.0 if high is None else np.asarray(high, dtype=float)
    low = close - 1.0 if low is None else np.asarray(low, dtype=float)
    stamps = pd.date_range("2024-01-01", periods=len(close), freq="1min", tz="UTC")
    return make_bars(stamps, close, high, low, close, symbol=symbol, timeframe="1m")


def values(column: pd.Series) -> list:
    """Floats with NaN as None, so lists compare exactly."""
    return [None if pd.isna(v) else float(v) for v in column]


# ------------------------------------------------------------------ forward return
def test_forward_return_direction_by_hand():
    bars = bars_from([100, 101, 100, 100, 102])
    out = forward_return_direction(bars, 1)
    assert values(out["label"]) == [1, -1, 0, 1, None]  # 0: exactly unchanged close
    assert out["forward_return"].iloc[:4].tolist() == pytest.approx(
        [math.log(1.01), math.log(100 / 101), 0.0, math.log(1.02)]
    )
    assert out["horizon_end"].tolist() == [1, 2, 3, 4, -1]
    banded = forward_return_direction(bars, 1, neutral_band=0.015)  # |log 1.01| < 0.015
    assert values(banded["label"]) == [0, 0, 0, 1, None]
    two = forward_return_direction(bars, 2)
    assert values(two["label"]) == [0, -1, 1, None, None]
    assert two["horizon_end"].tolist() == [2, 3, 4, -1, -1]


# ------------------------------------------------------------------ triple barrier
# high/low = close +- 1 and steps of at most 1: every true range is 2, so ATR = 2 and with
# pt_mult = sl_mult = 1 the barriers are close[t] +- 2, touched when a later close is
# 1 above (its high) or 1 below (its low) close[t].
TB_CLOSE = [100, 100, 100, 100.5, 101, 100.5, 99.5, 99, 99, 99]


def test_triple_barrier_by_hand():
    out = triple_barrier(bars_from(TB_CLOSE), horizon=3, pt_mult=1, sl_mult=1, atr_period=2)
    # t=0,1: ATR warm-up. t=2 (100): 101 at bar 4 -> profit-take. t=3 (100.5): 99.5 at 6
    # -> stop. t=4 (101), t=5 (100.5): 99.5 at 6 -> stop. t=6 (99.5): 99, 99, 99 never
    # reach 100.5 / 98.5 -> vertical at 9. t>=7: horizon past the data, nothing touched.
    assert values(out["label"]) == [None, None, 1, -1, -1, -1, 0, None, None, None]
    assert out["touch_pos"].tolist() == [-1, -1, 4, 6, 6, 6, 9, -1, -1, -1]
    assert out["horizon_end"].tolist() == out["touch_pos"].tolist()
    stamps = bars_from(TB_CLOSE)["timestamp"]
    assert out["touch_ts"].iloc[2] == stamps.iloc[4]
    assert pd.isna(out["touch_ts"].iloc[7])
    assert out["pt_price"].iloc[2] == 102.0 and out["sl_price"].iloc[2] == 98.0


def test_triple_barrier_touch_known_before_the_vertical_barrier_exists():
    out = triple_barrier(bars_from(TB_CLOSE), horizon=5, pt_mult=1, sl_mult=1, atr_period=2)
    # t=5: bar 10 does not exist, but the stop is touched at bar 6: the label is known.
    assert out["label"].iloc[5] == -1 and out["touch_pos"].iloc[5] == 6
    # t=6: nothing touched by bar 9, vertical barrier at 11 beyond the data: missing.
    assert np.isnan(out["label"].iloc[6]) and out["horizon_end"].iloc[6] == -1


def test_triple_barrier_assumes_the_stop_when_one_bar_spans_both():
    close = [100, 100, 100, 100, 100]
    high = [101, 101, 101, 101, 103]  # bar 4 reaches both 102 and 98
    low = [99, 99, 99, 99, 97]
    out = triple_barrier(bars_from(close, high, low), horizon=2, pt_mult=1, sl_mult=1, atr_period=2)
    assert out["label"].iloc[2] == -1 and out["touch_pos"].iloc[2] == 4
    wider = triple_barrier(
        bars_from(close, high, low), horizon=2, pt_mult=1, sl_mult=2, atr_period=2
    )  # stop at 96 now: only the profit-take is inside bar 4
    assert wider["label"].iloc[2] == 1


# ------------------------------------------------------------- regression targets
def test_trend_strength_by_hand():
    out = trend_strength(bars_from([100, 101, 102, 101, 100, 100, 100]), 2)
    # straight up, up-and-back, straight down, down then flat, flat
    assert values(out["trend_strength"])[:5] == pytest.approx([1.0, 0.0, 1.0, 1.0, 0.0])
    assert values(out["trend_strength"])[5:] == [None, None]
    three = trend_strength(bars_from([100, 102, 101, 103]), 3)
    path = math.log(102 / 100) + math.log(102 / 101) + math.log(103 / 101)
    assert three["trend_strength"].iloc[0] == pytest.approx(math.log(1.03) / path)
    assert three["horizon_end"].tolist() == [3, -1, -1, -1]


def test_realized_volatility_by_hand():
    out = realized_volatility(bars_from([100, 101, 100, 100]), 2)
    r1, r2 = math.log(1.01), math.log(100 / 101)
    assert values(out["realized_vol"]) == pytest.approx(
        [math.sqrt(r1**2 + r2**2), abs(r2), None, None]
    )
    assert out["horizon_end"].tolist() == [2, 3, -1, -1]


def test_volatility_regime_by_hand():
    returns = [0.01, -0.02, 0.03, -0.05, 0.001, -0.03]
    close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    out = volatility_regime_target(
        bars_from(close), 1, window=3, low_quantile=0.25, high_quantile=0.75
    )
    # trailing |r| over the last 3 bars gives the cut points; the next |r| is compared.
    # t=3: cuts of {.01,.02,.03} are .015/.025, next .05 -> high
    # t=4: {.02,.03,.05} -> .025/.04, next .001 -> low
    # t=5: {.03,.05,.001} -> .0155/.04, next .03 -> medium
    assert values(out["vol_regime"]) == [None, None, None, 2, 0, 1, None]
    assert values(out["vol_low"])[3:6] == pytest.approx([0.015, 0.025, 0.0155])
    assert values(out["vol_high"])[3:6] == pytest.approx([0.025, 0.04, 0.04])
    assert out["horizon_end"].tolist() == [-1, -1, -1, 4, 5, 6, -1]


# ---------------------------------------------------------------- no lookahead
LABEL_CASES = {
    "forward-return": partial(forward_return_direction, horizon=7, neutral_band=0.001),
    "triple-barrier": partial(triple_barrier, horizon=30, pt_mult=2.0, sl_mult=1.0),
    "trend-strength": partial(trend_strength, horizon=12),
    "realized-vol": partial(realized_volatility, horizon=12),
    "vol-regime": partial(volatility_regime_target, horizon=10, window=200),
}


@pytest.mark.parametrize("name", sorted(LABEL_CASES))
def test_labels_look_no_further_than_their_horizon_end(name):
    bars = random_walk_bars(1_500, seed=11)
    check_label(LABEL_CASES[name], bars, "horizon_end", n_cuts=25, name=name)


@pytest.mark.parametrize("name", sorted(LABEL_CASES))
def test_rows_whose_horizon_runs_past_the_end_are_missing(name):
    bars = random_walk_bars(400, seed=12)
    out = LABEL_CASES[name](bars)
    horizon = LABEL_CASES[name].keywords["horizon"]
    target = out.columns[0]
    if name == "triple-barrier":  # a touch before the end is known; no touch is not
        tail = out.iloc[-horizon:]
        untouched = tail["touch_pos"] == -1
        assert tail.loc[untouched, "label"].isna().all()
        assert (tail.loc[~untouched, "touch_pos"] < len(bars)).all()
    else:
        assert out[target].iloc[-horizon:].isna().all()
        assert out[target].iloc[-horizon - 1 : -horizon].notna().all()
        assert (out["horizon_end"].iloc[-horizon:] == -1).all()
    defined = out["horizon_end"] >= 0
    assert (out.loc[defined, "horizon_end"] < len(bars)).all()
    assert out[target].notna().equals(defined)


# ------------------------------------------------------------------- registry
def test_build_labels_goes_symbol_by_symbol():
    a, b = random_walk_bars(300, symbol="A", seed=1), random_walk_bars(200, symbol="B", seed=2)
    both = pd.concat([a, b], ignore_index=True)
    out = build_labels(both, "forward-return", horizon=5)
    alone = forward_return_direction(b, 5)
    mine = out.iloc[len(a) :]
    assert values(mine["label"]) == values(alone["label"])
    ends = mine["horizon_end"].to_numpy()
    assert (ends[ends >= 0] == alone["horizon_end"].to_numpy()[ends >= 0] + len(a)).all()
    # no label of A reaches into B's rows
    assert out["horizon_end"].iloc[: len(a)].max() == len(a) - 1
    stamped = out["horizon_end"] >= 0
    assert (
        out.loc[stamped, "horizon_end_ts"].to_numpy()
        == both["timestamp"].to_numpy()[out.loc[stamped, "horizon_end"]]
    ).all()
    assert out.loc[~stamped, "horizon_end_ts"].isna().all()
    assert list(out.columns[:2]) == ["timestamp", "symbol"]


def test_build_labels_refuses_bad_names_and_parameters():
    bars = random_walk_bars(100)
    with pytest.raises(ConfigError, match="Did you mean 'triple-barrier'"):
        build_labels(bars, "triple-barier", horizon=5)
    with pytest.raises(ConfigError, match="pt_mult"):
        build_labels(bars, "forward-return", horizon=5, pt_mult=2.0)
    with pytest.raises(ConfigError, match="needs pt_mult, sl_mult"):
        build_labels(bars, "triple-barrier", horizon=5)
    with pytest.raises(ConfigError, match="horizon"):
        build_labels(bars, "trend-strength", horizon=0)
    with pytest.raises(ConfigError, match="low_quantile"):
        build_labels(bars, "vol-regime", horizon=5, low_quantile=0.8, high_quantile=0.2)
    assert build_labels(bars, "trend_strength", horizon=5)["trend_strength"].notna().any()
    assert set(LABELS) == set(LABEL_CASES)


# ------------------------------------------------------------ weak pattern labels
def _pattern_bars() -> tuple[pd.DataFrame, list[int]]:
    """Three 50-bar windows with bar range 1: an impulse of 20 then half of it given back
    (retracement), an impulse of 20 then a flat tail (consolidation), gentle noise."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(100, 120, 20)
    retracement = np.concatenate([ramp, np.linspace(120, 110, 31)[1:]])
    consolidation = np.concatenate([ramp, 120 + rng.uniform(-0.2, 0.2, 30)])
    noise = 100 + rng.uniform(-0.5, 0.5, 50)
    close = np.concatenate([retracement, consolidation, noise])
    return bars_from(close, close + 0.5, close - 0.5), [0, 50, 100]


def test_weak_pattern_labels_on_clear_shapes():
    bars, starts = _pattern_bars()
    out = weak_pattern_labels(bars, starts, 50)
    assert out["label"].tolist()[:2] == ["retracement", "consolidation"]
    assert pd.isna(out["label"].iloc[2])  # no move: the rules abstain
    assert out["source"].tolist()[:2] == ["rule:impulse-pullback", "rule:tight-tail"]
    assert pd.isna(out["source"].iloc[2])
    assert out["grade"].isna().all()
    assert out["impulse"].iloc[0] == pytest.approx(20.0)
    assert out["retrace"].iloc[0] == pytest.approx(0.5)
    assert out["horizon_end"].tolist() == [49, 99, 149]
    # a windows table with a start column works the same
    table = pd.DataFrame({"start": starts})
    assert weak_pattern_labels(bars, table, 50)["label"].equals(out["label"])


def test_weak_pattern_labels_agree_with_planted_patterns():
    market = generate_market(SyntheticMarketConfig(n_bars=40_000, n_patterns=80, seed=5))
    planted = market.patterns
    out = weak_pattern_labels(market.bars, planted["start"].to_numpy(), 105)
    guessed = out["label"].notna().to_numpy()
    agree = (out["label"] == planted["label"].astype("string")).fillna(False).to_numpy(bool)
    assert guessed.mean() >= 0.8
    assert agree[guessed].mean() >= 0.9


def test_weak_pattern_labels_refuse_bad_starts():
    bars, _ = _pattern_bars()
    with pytest.raises(ConfigError, match="outside"):
        weak_pattern_labels(bars, [120], 50)
    with pytest.raises(ConfigError, match="'start'"):
        weak_pattern_labels(bars, pd.DataFrame({"begin": [0]}), 50)


# ---------------------------------------------------------------------------- CLI
def invoke(tmp_path, args: str | list[str]):
    """Run ``moola labels ARGS`` with the data root under ``tmp_path``."""
    argv = shlex.split(args) if isinstance(args, str) else args
    return CliRunner().invoke(app, argv, obj=Settings(home=tmp_path / "home"))


def test_cli_stores_labels_with_their_horizon(tmp_path):
    registry = Registry(tmp_path / "home")
    bars = random_walk_bars(800, symbol="NQ", seed=3)
    raw = registry.write_raw("nq", bars, sources=[{"test": True}])
    result = invoke(
        tmp_path,
        "build --raw nq --kind triple-barrier --horizon 20 --pt-mult 2 --sl-mult 1 --name nq-tb",
    )
    assert result.exit_code == 0, result.output
    stored = registry.load_table("labels", "nq-tb")
    expected = triple_barrier(bars, horizon=20, pt_mult=2, sl_mult=1)
    assert values(stored["label"]) == values(expected["label"])
    assert stored["horizon_end"].tolist() == expected["horizon_end"].tolist()
    ref = registry.resolve("labels", "nq-tb")
    meta = registry.meta(ref)
    assert meta["label_kind"] == "triple-barrier"
    assert meta["params"] == {"horizon": 20, "pt_mult": 2.0, "sl_mult": 1.0}
    assert meta["horizon_end"] == "horizon_end" and "horizon_end" in meta["columns"]
    assert registry.manifest(ref)["parents"][0]["content_hash"] == raw.content_hash


def test_cli_writes_a_labels_file(tmp_path):
    bars = random_walk_bars(300, symbol="ES", seed=4)
    source = tmp_path / "es.parquet"
    bars.to_parquet(source)
    out = tmp_path / "labels.csv"
    result = invoke(
        tmp_path, f"build --bars {source} --kind forward-return --horizon 3 --out {out}"
    )
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    assert values(written["label"]) == values(forward_return_direction(bars, 3)["label"])
    assert "horizon_end" in written.columns


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            "build --bars f.csv --kind forward-return --horizon 3 --pt-mult 2 --out o.csv",
            "--pt-mult",
        ),
        ("build --bars f.csv --kind triple-barrier --horizon 3 --out o.csv", "--sl-mult"),
        ("build --bars f.csv --kind trend --horizon 3 --out o.csv", "Unknown label kind"),
        ("build --bars f.csv --kind trend-strength --horizon 3 --out o.txt", "--out"),
        ("build --bars f.csv --kind trend-strength --horizon 3", "--name"),
        ("build --bars f.csv --kind trend-strength --horizon 3 --name n", "--raw"),
        ("build --kind trend-strength --horizon 3 --out o.csv", "exactly one bar source"),
    ],
)
def test_cli_bad_flags_are_config_errors(tmp_path, args, message):
    result = invoke(tmp_path, args)
    assert isinstance(result.exception, ConfigError)
    assert message in str(result.exception)
    assert not (tmp_path / "home").exists()
