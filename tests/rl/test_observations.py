"""Observation windows and portfolio state of the trading env (moola.rl.observations, issue 17)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.schema import make_bars
from moola.features import fit_scaler, load_feature_set
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry
from moola.rl.observations import (
    BUILTIN_COLUMNS,
    PORTFOLIO_FIELDS,
    CoarserWindows,
    ObservationSource,
    StepCoarserWindows,
    portfolio_state,
)
from tests.conftest import random_walk_bars

WINDOW = 8


def _altered_after(bars, t: int, seed: int = 1):
    """The same bars up to ``t``; every bar after ``t`` moved (prices and volume)."""
    out = bars.copy()
    rng = np.random.default_rng(seed)
    factor = np.exp(rng.normal(0.0, 0.05, len(bars) - t - 1))
    for column in ("open", "high", "low", "close"):
        out.loc[out.index[t + 1 :], column] *= factor
    out.loc[out.index[t + 1 :], "volume"] += 1000.0
    return out


@pytest.fixture(scope="module")
def walk():
    return random_walk_bars(300)


def test_builtin_table_shape_dtype_and_first_valid(walk):
    source = ObservationSource(walk, window=WINDOW)
    assert source.columns == BUILTIN_COLUMNS
    assert source.table.dtype == np.float32 and source.table.shape == (300, 5)
    # the built-in set needs the previous close: bar 0 is warm-up
    assert np.isnan(source.table[0]).all() and np.isfinite(source.table[1:]).all()
    assert source.first_valid == WINDOW
    window = source.window_at(source.first_valid)
    assert window.shape == (WINDOW, 5) and window.dtype == np.float32
    assert np.isfinite(window).all()
    with pytest.raises(ConfigError, match="No observation window at bar 7"):
        source.window_at(WINDOW - 1)


def test_builtin_rows_are_scaled_log_returns(walk):
    source = ObservationSource(walk, window=WINDOW)
    raw = np.log(walk["close"].to_numpy() / walk["close"].shift(1).to_numpy())
    column = BUILTIN_COLUMNS.index("rel_close")
    expected = (raw - source.scaler.center_[column]) / source.scaler.scale_[column]
    np.testing.assert_allclose(source.table[1:, column], expected[1:], rtol=1e-5, atol=1e-6)
    # fitted on all settled rows by default: zero mean, unit std in training
    assert abs(float(source.table[1:, column].astype(np.float64).mean())) < 1e-5
    assert source.scaler.n_rows_ == 299


def test_windows_at_equals_window_at(walk):
    source = ObservationSource(walk, window=WINDOW)
    ts = np.array([WINDOW, 50, 123, 299])
    stacked = source.windows_at(ts)
    assert stacked.shape == (4, WINDOW, 5) and stacked.dtype == np.float32
    for i, t in enumerate(ts):
        np.testing.assert_array_equal(stacked[i], source.window_at(int(t)))
        np.testing.assert_array_equal(stacked[i], source.table[t - WINDOW + 1 : t + 1])
    with pytest.raises(ConfigError, match="bar 300"):
        source.windows_at(np.array([50, 300]))


def test_the_table_is_read_only_and_windows_are_fresh_copies(walk):
    source = ObservationSource(walk, window=WINDOW)
    with pytest.raises(ValueError):
        source.table[20, 0] = 1.0
    first, again = source.window_at(20), source.window_at(20)
    assert not np.shares_memory(first, again) and not np.shares_memory(first, source.table)
    first[0, 0] = 99.0  # a user's buffer: writing it leaves the source unchanged
    assert source.window_at(20)[0, 0] != 99.0
    assert not np.shares_memory(source.windows_at(np.array([20])), source.table)


@pytest.mark.parametrize("t", [WINDOW, 100, 298])
def test_window_at_t_is_unchanged_when_later_bars_change(walk, t):
    """Causality: the window of bar t sees bars <= t only. The scaler is fitted on rows
    up to t (as a training env fits on its own period), so only the bars after t differ."""
    rows = np.arange(t + 1)
    source = ObservationSource(walk, window=WINDOW, train_rows=rows)
    moved = ObservationSource(_altered_after(walk, t), window=WINDOW, train_rows=rows)
    np.testing.assert_array_equal(source.window_at(t), moved.window_at(t))
    # and the alteration is real: the next window differs
    assert not np.array_equal(source.window_at(t + 1), moved.window_at(t + 1))


def test_window_of_a_shipped_set_is_causal():
    bars = random_walk_bars(400)
    t = 330
    rows = np.arange(t + 1)
    kwargs = {"features": "daily24", "window": 5, "train_rows": rows}
    source = ObservationSource(bars, **kwargs)
    moved = ObservationSource(_altered_after(bars, t), **kwargs)
    assert source.columns == load_feature_set("daily24").columns
    np.testing.assert_array_equal(source.window_at(t), moved.window_at(t))


def test_scaler_is_fitted_on_train_rows_only(walk):
    rows = np.arange(10, 150)
    source = ObservationSource(walk, window=WINDOW, train_rows=rows)
    assert source.scaler.n_rows_ == len(rows)
    # changing every bar outside the training rows leaves the statistics unchanged
    # (bar 150 feeds row 150 only: the built-in rows look one bar back)
    moved = _altered_after(walk, 149)
    moved.loc[moved.index[:9], "volume"] += 500.0
    other = ObservationSource(moved, window=WINDOW, train_rows=rows)
    assert other.scaler == source.scaler
    # ... while the rows themselves did change (so the check can fail)
    assert not np.array_equal(other.table[200], source.table[200])
    # and a mask gives the same fit as the positions
    mask = np.zeros(len(walk), dtype=bool)
    mask[rows] = True
    assert ObservationSource(walk, window=WINDOW, train_rows=mask).scaler == source.scaler


def test_scaler_fit_equals_fit_scaler_on_those_rows(walk):
    rows = np.arange(0, 120)  # row 0 is warm-up: left out of the fit
    source = ObservationSource(walk, window=WINDOW, train_rows=rows)
    raw = load_feature_set("relative11").compute(walk)[list(BUILTIN_COLUMNS)].to_numpy()
    expected = fit_scaler(raw, BUILTIN_COLUMNS, "zscore", np.arange(1, 120))
    assert source.scaler == expected


def test_a_given_scaler_is_used_as_is(walk):
    train = ObservationSource(walk.iloc[:150], window=WINDOW)
    evaluation = ObservationSource(walk.iloc[150:], window=WINDOW, scaler=train.scaler)
    assert evaluation.scaler is train.scaler
    raw = ObservationSource(walk.iloc[150:], window=WINDOW).scaler  # its own fit differs
    assert raw != train.scaler
    expected = train.scaler.transform(
        load_feature_set("relative11")
        .compute(walk.iloc[150:].reset_index(drop=True))[list(BUILTIN_COLUMNS)]
        .to_numpy()
    )
    np.testing.assert_array_equal(evaluation.table, expected.astype(np.float32))


def test_scaler_with_other_columns_is_refused(walk):
    other = ObservationSource(walk, features="relative11", window=WINDOW).scaler
    with pytest.raises(ConfigError, match="scaler was fitted on columns") as info:
        ObservationSource(walk, window=WINDOW, scaler=other)
    assert info.value.param == "scaler"
    with pytest.raises(ConfigError, match="scaler must be"):
        ObservationSource(walk, window=WINDOW, scaler={"center": [0.0]})


@pytest.mark.parametrize("window", [0, -3, 2.5, True])
def test_window_below_one_is_refused(walk, window):
    with pytest.raises(ConfigError, match="window must be a positive integer") as info:
        ObservationSource(walk, window=window)
    assert info.value.param == "window"


def test_window_longer_than_the_data_is_refused(walk):
    short = walk.iloc[:30]
    with pytest.raises(ConfigError, match="window=31 is longer than the data: the bars have 30"):
        ObservationSource(short, window=31)
    # fits the bars but not the settled rows after the one-bar warm-up
    with pytest.raises(ConfigError, match="after the warm-up") as info:
        ObservationSource(short, window=30)
    assert info.value.param == "window"
    assert ObservationSource(short, window=29).first_valid == 29


def test_nan_after_the_warm_up_is_refused(walk):
    broken = walk.copy()
    broken.loc[broken.index[120], "close"] = np.nan
    with pytest.raises(ConfigError, match=r"column 'rel_close' is nan at bar 120") as info:
        ObservationSource(broken, window=WINDOW)
    assert info.value.param == "features"


def test_bad_bars_and_train_rows_are_refused(walk):
    with pytest.raises(ConfigError, match=r"lack column\(s\) \['volume'\]"):
        ObservationSource(walk.drop(columns="volume"), window=WINDOW)
    mixed = walk.copy()
    mixed.loc[mixed.index[:10], "symbol"] = "OTHER"
    with pytest.raises(ConfigError, match="several symbols"):
        ObservationSource(mixed, window=WINDOW)
    with pytest.raises(ConfigError, match=r"train_rows must lie in 0\.\.299"):
        ObservationSource(walk, window=WINDOW, train_rows=np.arange(250, 320))
    with pytest.raises(ConfigError, match="no settled row"):
        ObservationSource(walk, window=WINDOW, train_rows=[0])
    with pytest.raises(ConfigError, match="boolean mask"):
        ObservationSource(walk, window=WINDOW, train_rows=np.ones(5, dtype=bool))


# --------------------------------------------------------------------------- portfolio


def test_portfolio_fields_arithmetic():
    state = portfolio_state(
        position=0.5,
        cash=5_000.0,
        equity=10_000.0,
        unrealised=100.0,
        bars_in_position=3,
        peak_equity=12_500.0,
        day_start_equity=10_100.0,
        initial_cash=10_000.0,
        daily_limit=0.05,
        total_limit=0.10,
    )
    assert state.dtype == np.float32 and state.shape == (len(PORTFOLIO_FIELDS),)
    got = dict(zip(PORTFOLIO_FIELDS, state.tolist(), strict=True))
    # daily: limit 505 below 10,100 -> breach at 9,595; 405 of 505 left
    # total: limit 1,000 below 10,000 -> breach at 9,000; all 1,000 left
    expected = {
        "position": 0.5,
        "cash_fraction": 0.5,
        "unrealised": 0.01,
        "time_in_position": np.log1p(3.0),
        "drawdown": 0.2,
        "daily_headroom": 405.0 / 505.0,
        "total_headroom": 1.0,
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-6), name


def test_headroom_is_clipped_and_one_without_a_rule():
    def headroom(equity, daily=0.05, total=0.10):
        state = portfolio_state(0.0, equity, equity, 0.0, 0, 10_000.0, 10_000.0, 10_000.0,
                                daily, total)  # fmt: skip
        return state[5], state[6]

    assert headroom(12_000.0) == (1.0, 1.0)  # in profit: capped at 1
    assert headroom(9_000.0) == (0.0, 0.0)  # past both limits: 0
    daily, total = headroom(9_750.0)
    assert daily == pytest.approx(0.5) and total == pytest.approx(0.75)
    assert headroom(5_000.0, daily=np.nan, total=np.nan) == (1.0, 1.0)


def test_portfolio_arrays_equal_scalars_row_by_row():
    rng = np.random.default_rng(3)
    n = 500  # each row also takes the scalar fast path of one env's step
    args = {
        "position": rng.uniform(-1, 1, n),
        "cash": rng.uniform(-5_000, 20_000, n),
        "equity": rng.uniform(-100, 12_000, n),
        "unrealised": rng.normal(0, 300, n),
        "bars_in_position": rng.integers(0, 50, n),
        "peak_equity": rng.uniform(10_000, 13_000, n),
        "day_start_equity": rng.uniform(9_000, 11_000, n),
        "initial_cash": np.full(n, 10_000.0),
        "daily_limit": np.where(rng.random(n) < 0.3, np.nan, 0.05),
        "total_limit": np.where(rng.random(n) < 0.3, np.nan, 0.10),
    }
    batch = portfolio_state(**args)
    assert batch.shape == (n, 7) and batch.dtype == np.float32
    assert np.isfinite(batch).all()
    for i in range(n):
        one = portfolio_state(**{k: v[i].item() for k, v in args.items()})
        np.testing.assert_array_equal(batch[i], one)
    # float64 arrays with plain numbers (a shared initial cash and limits, as VecTradingEnv
    # gives them) take the column-by-column path; the integer bars_in_position of ``args``
    # sends the same values through the general path: both agree bit for bit
    held = args["bars_in_position"].astype(np.float64)
    for shared in ({"initial_cash": 10_000.0, "total_limit": 0.1},
                   {"initial_cash": 10_000.0, "daily_limit": float("nan"), "total_limit": 0.1},
                   {"daily_limit": 0.05}):  # fmt: skip
        mixed = portfolio_state(**{**args, **shared, "bars_in_position": held})
        general = portfolio_state(**{**args, **shared})
        np.testing.assert_array_equal(mixed, general)


def test_bankrupt_account_gives_finite_state():
    state = portfolio_state(1.0, 0.0, -50.0, -10_050.0, 7, 10_000.0, 10_000.0, 10_000.0,
                            0.05, 0.10)  # fmt: skip
    assert np.isfinite(state).all()
    assert state[1] == 0.0 and state[5] == 0.0 and state[6] == 0.0
    assert state[4] == pytest.approx(1.005)


# --------------------------------------------------------------------------- coarser, live

#: Features that read several rows (an SMA and an RSI) besides the one-bar returns.
MULTI_ROW = FeatureSetSpec(
    name="multi_row",
    features=[
        FeatureSpecEntry(name="sma", params={"period": 5}),
        FeatureSpecEntry(name="rsi", params={"period": 3}),
        FeatureSpecEntry(name="relative"),
    ],
)


def _session_minutes(seed: int = 5) -> pd.DataFrame:
    """1-minute bars of three sessions 14:30-21:00 UTC (Thursday, Friday, then Monday
    over a weekend), about one minute in eight missing: coarse bars cut by session edges
    (an hour that opens at 14:30), gaps inside them and empty ones overnight."""
    rng = np.random.default_rng(seed)
    days = [pd.Timestamp(d, tz="UTC") for d in ("2024-03-07", "2024-03-08", "2024-03-11")]
    first, *rest = [pd.date_range(day + pd.Timedelta("14:30:00"), periods=390, freq="1min")
                    for day in days]  # fmt: skip
    stamps = first.append(rest)
    stamps = stamps[rng.random(len(stamps)) > 0.125]
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, len(stamps))))
    open_ = np.concatenate([[100.0], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.0005, len(stamps))) * close
    high, low = np.maximum(open_, close) + wick, np.minimum(open_, close) - wick
    volume = rng.integers(1, 100, len(stamps)).astype(float)
    return make_bars(stamps, open_, high, low, close, volume, symbol="ES", timeframe="1m")


@pytest.fixture(scope="module")
def minutes():
    return _session_minutes()


#: (bars fixture, timescale, coarse window): a non-dividing 7m, the hour a session edge
#: cuts, and the S&P 500's weeks (daily bars, holidays, weekends).
COARSE_CASES = [
    ("minutes", "5m", 4),
    ("minutes", "7m", 3),
    ("minutes", "15m", 3),
    ("minutes", "1h", 2),
    ("sp500_years", "7d", 4),
]


@pytest.fixture(scope="module")
def sp500_years(sp500):
    """Three years of the S&P 500's daily bars (real prices, holidays and weekends)."""
    return sp500.iloc[:750].reset_index(drop=True)


@pytest.mark.parametrize(("data", "timeframe", "window"), COARSE_CASES)
def test_live_coarse_windows_equal_the_batch_ones_at_every_bar(request, data, timeframe, window):
    """Bar by bar, the live window of each timescale is ``CoarserWindows``' window of the
    same bar (None exactly before its first valid bar), equal to the last bit; the coarse
    bar in progress is never in it, so truncating the bars after ``t`` changes nothing."""
    bars = request.getfixturevalue(data)
    batch = CoarserWindows(bars, timeframe, features=MULTI_ROW, window=window)
    live = StepCoarserWindows(MULTI_ROW, timeframe, window, batch.scaler, bars["timeframe"][0])
    windows = [live.update(bar) for bar in bars.to_dict("records")]
    assert live.completed == int(batch.index[-1]) + 1  # every coarse bar closed by the last
    first = batch.first_valid
    assert all(w is None for w in windows[:first])
    for t in range(first, len(bars)):
        np.testing.assert_array_equal(windows[t], batch.window_at(t))
    # No lookahead: at bars closing a coarse bar and the ones just before, the batch
    # windows of the bars cut after t (the same scaler) are the same windows.
    closing = np.flatnonzero(np.diff(batch.index) > 0) + 1
    closing = closing[closing > first + 1]
    rng = np.random.default_rng(0)
    for t in sorted({int(closing[-1]), *rng.choice(closing, 3, replace=False).tolist()}):
        for u in (t - 1, t):
            cut = CoarserWindows(bars.iloc[: u + 1], timeframe, features=MULTI_ROW,
                                 window=window, scaler=batch.scaler)  # fmt: skip
            np.testing.assert_array_equal(cut.window_at(u), windows[u])
        assert not np.array_equal(windows[t - 1], windows[t])  # t's close completed one


def test_live_coarse_windows_refuse_bars_out_of_order(minutes):
    batch = CoarserWindows(minutes, "5m", window=2)
    live = StepCoarserWindows(None, "5m", 2, batch.scaler, "1m")
    bars = minutes.to_dict("records")
    live.update(bars[10])
    with pytest.raises(ConfigError, match="move forward") as err:
        live.update(bars[0])
    assert err.value.param == "bar"
    close_early = {**bars[11], "timestamp": pd.Timestamp("2024-03-07 14:44:30", tz="UTC")}
    live.update(close_early)  # 14:44:30 + 1m closes the 14:40 bar
    with pytest.raises(ConfigError, match="already closed"):
        live.update({**bars[11], "timestamp": pd.Timestamp("2024-03-07 14:44:50", tz="UTC")})
    with pytest.raises(ConfigError, match="not coarser"):
        StepCoarserWindows(None, "1m", 2, batch.scaler, "1m")
