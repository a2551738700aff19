"""``moola.backtest.run``: fills, costs and sizing by hand, alignment, errors, output dirs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from moola.backtest import plots, run
from moola.backtest.run import align_positions
from moola.core.errors import ConfigError
from moola.data.schema import make_bars
from moola.sim import CommissionModel, TotalLossLimit
from tests.conftest import random_walk_bars


def _bars(open_, close, *, symbol="TEST", timeframe="1d") -> pd.DataFrame:
    open_, close = np.asarray(open_, float), np.asarray(close, float)
    stamps = pd.date_range("2024-01-01", periods=len(open_), freq="D", tz="UTC")
    return make_bars(
        stamps, open_, np.maximum(open_, close) + 0.5, np.minimum(open_, close) - 0.5, close,
        np.full(len(open_), 1_000.0), symbol=symbol, timeframe=timeframe,
    )  # fmt: skip


HAND_BARS = dict(open_=[10, 11, 12, 13, 14, 15], close=[10.5, 11.5, 12.5, 13.5, 14.5, 15.5])


@pytest.mark.parametrize("engine", ["vectorised", "event"])
def test_buy_and_hold_sp500_matches_the_sizing_rule(sp500, engine):
    cash = 100_000.0
    result = run(
        sp500, np.ones(len(sp500)), initial_cash=cash, engine=engine,
        prop_firm_rules=False,
    )  # fmt: skip
    open_, close = sp500["open"].to_numpy(), sp500["close"].to_numpy()
    # Decided at bar 0's close with equity = cash: whole shares, rounded down. Filled at
    # bar 1's open; the leftover cash earns nothing (the cash drag of whole-unit sizing).
    units = math.floor(cash / close[0])
    expected = cash + units * (close[-1] - open_[1])
    assert result.equity["equity"].iloc[-1] == pytest.approx(expected, rel=1e-12)
    ratio = close[-1] / open_[1]
    drag = (cash - units * open_[1]) / cash  # fraction of cash left uninvested at the fill
    assert expected / cash == pytest.approx(1 + (1 - drag) * (ratio - 1), rel=1e-12)
    assert result.stats["final_position"] == units
    assert result.stats["n_trades"] == 0 and len(result.trades) == 0  # still open
    assert len(result.fills) == 1 and result.fills["price"].iloc[0] == open_[1]
    assert result.stats["periods_per_year"] == pytest.approx(252, abs=1)
    assert result.stats["prop_firm"] is None and result.rules == []


@pytest.mark.parametrize("engine", ["vectorised", "event"])
def test_round_trip_costs_by_hand(engine):
    bars = _bars(**HAND_BARS)
    result = run(
        bars, [0, 1, 1, 0, 0, 0], initial_cash=1_000.0, spread=0.2, commission=0.001,
        engine=engine, prop_firm_rules=False,
    )  # fmt: skip
    # Bar 1 close: equity 1000, close 11.5 -> 86 units; fill bar 2 open 12 + half spread.
    # Bar 3 close: target 0 -> sell 86 at bar 4 open 14 - half spread.
    entry, exit_ = 12.1, 13.9
    fee_in, fee_out = 0.001 * 86 * entry, 0.001 * 86 * exit_
    pnl = 86 * (exit_ - entry) - fee_in - fee_out
    trade = result.trades.iloc[0]
    assert len(result.trades) == 1 and trade["side"] == "long" and trade["size"] == 86
    assert trade["entry_time"] == bars["timestamp"].iloc[2]
    assert trade["exit_time"] == bars["timestamp"].iloc[4]
    assert (trade["entry_price"], trade["exit_price"]) == pytest.approx((entry, exit_))
    assert trade["pnl"] == pytest.approx(pnl)
    assert trade["fees"] == pytest.approx(fee_in + fee_out)
    assert trade["bars_held"] == 2
    assert trade["return"] == pytest.approx(pnl / (86 * entry))
    np.testing.assert_allclose(
        result.equity["position"], [0, 0, 86, 86, 0, 0], err_msg="filled one bar late"
    )
    assert result.equity["equity"].iloc[-1] == pytest.approx(1_000 + pnl)
    stats = result.stats
    assert stats["commission_paid"] == pytest.approx(fee_in + fee_out)
    assert stats["spread_slippage_paid"] == pytest.approx(2 * 86 * 0.1)
    assert stats["win_rate"] == 1.0 and stats["profit_factor"] == "inf"
    json.dumps(stats, allow_nan=False)


def test_latency_and_short_futures_by_hand():
    bars = _bars(**HAND_BARS)
    result = run(
        bars, [-1, -1, 0, 0, 0, 0], instrument="futures:NQ", initial_cash=1_000.0,
        latency_bars=2, commission=CommissionModel(per_unit=2.0), prop_firm_rules=False,
    )  # fmt: skip
    # Bar 0 close: units = trunc(-1 * 1000 / (10.5 * 20)) = -4 (max_leverage 10 allows -1).
    # Latency 2: sell at bar 2's open (12), buy back (decided bar 2) at bar 4's open (14).
    pnl = -4 * (14 - 12) * 20 - 2 * 2.0 * 4
    np.testing.assert_allclose(result.equity["position"], [0, 0, -4, -4, 0, 0])
    assert result.trades["side"].tolist() == ["short"]
    assert result.trades["pnl"].iloc[0] == pytest.approx(pnl)
    assert result.equity["equity"].iloc[-1] == pytest.approx(1_000 + pnl)
    assert result.config["instrument"]["point_value"] == 20.0


def test_no_lookahead_future_bars_do_not_change_the_past():
    bars = random_walk_bars(400, timeframe="1h", seed=4)
    rng = np.random.default_rng(5)
    target = rng.choice([-1.0, 0.0, 0.5, 1.0], size=400)
    kwargs = dict(spread=0.01, slippage=2.0, commission=0.0002, prop_firm_rules=False)
    base = run(bars, target, **kwargs).equity["equity"].to_numpy()
    for t in (100, 250):
        changed_bars = bars.copy()
        for column in ("open", "high", "low", "close"):
            changed_bars.loc[t + 1 :, column] *= 1.3
        changed_target = target.copy()
        changed_target[t + 1 :] = -changed_target[t + 1 :]
        changed = run(changed_bars, changed_target, **kwargs).equity["equity"].to_numpy()
        np.testing.assert_array_equal(changed[: t + 1], base[: t + 1])
        assert not np.array_equal(changed[t + 1 :], base[t + 1 :])


def test_sparse_signal_table_holds_each_target_until_the_next_row():
    bars = random_walk_bars(10, timeframe="1m")
    stamps = bars["timestamp"]
    table = pd.DataFrame(
        {"timestamp": stamps.iloc[[2, 6]].dt.tz_convert(None), "position": [0.5, -1.0]}
    )  # naive times are UTC
    np.testing.assert_array_equal(
        align_positions(bars, table), [0, 0, 0.5, 0.5, 0.5, 0.5, -1, -1, -1, -1]
    )
    series = pd.Series([1.0], index=pd.DatetimeIndex(stamps.iloc[[8]]))
    np.testing.assert_array_equal(align_positions(bars, series)[7:], [0, 1, 1])


def test_signal_errors_name_rows_and_fix():
    bars = random_walk_bars(10, timeframe="1m")
    stamps = bars["timestamp"]
    with pytest.raises(ConfigError, match=r"match no bar.*rows 1 \(2030-01-01"):
        align_positions(
            bars,
            pd.DataFrame(
                {"timestamp": [stamps.iloc[0], pd.Timestamp("2030-01-01", tz="UTC")],
                 "position": [1.0, 0.0]}
            ),
        )  # fmt: skip
    with pytest.raises(ConfigError, match=r"rows 3, 5 .*\[-1, 1\]|\[-1, 1\].*rows 3, 5"):
        align_positions(bars, [0, 0, 0, 1.5, 0, np.nan, 0, 0, 0, 0])
    with pytest.raises(ConfigError, match="10 bars"):
        align_positions(bars, [0.0, 1.0])
    with pytest.raises(ConfigError, match="repeat at rows 1"):
        align_positions(bars, pd.DataFrame({"timestamp": stamps.iloc[[3, 3]], "position": 0.0}))
    with pytest.raises(ConfigError, match="'position'"):
        align_positions(bars, pd.DataFrame({"timestamp": stamps, "signal": 0.0}))


def test_bar_and_option_errors():
    two = pd.concat([random_walk_bars(5, symbol="AAA"), random_walk_bars(5, symbol="BBB")])
    with pytest.raises(ConfigError, match=r"2 symbols \('AAA', 'BBB'\).*Pick one"):
        run(two, np.zeros(10))
    bars = random_walk_bars(5)
    with pytest.raises(ConfigError, match="Did you mean 'event'"):
        run(bars, np.zeros(5), engine="events")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Did you mean 'crypto'"):
        run(bars, np.zeros(5), instrument="crpyto")
    with pytest.raises(ConfigError, match="strictly increase; rows 3"):
        run(bars.iloc[[0, 1, 2, 2, 4]], np.zeros(5))
    with pytest.raises(ConfigError, match="latency_bars"):
        run(bars, np.zeros(5), latency_bars=0)


def test_prop_firm_rules_report_the_breach():
    # 3% down each day while fully long: the 10% total loss limit breaks on the 4th loss.
    close = 100 * 0.97 ** np.arange(8)
    bars = _bars(close, close)
    result = run(bars, np.ones(8), initial_cash=10_000.0)
    assert result.stats["prop_firm"]["passed"] is False
    by_name = {r["name"]: r for r in result.stats["prop_firm"]["rules"]}
    total = by_name["total_loss_limit"]
    assert not total["passed"] and total["limit"] == 0.1
    # Filled at bar 1's open (97, 103 shares): equity 10000 + 103 * (close - 97).
    equity = 10_000 + 103 * (close - close[1])
    first = int(np.flatnonzero(equity < 9_000)[0])
    # Rules see bar close times: open time + 1 day.
    assert total["breach_time"] == (bars["timestamp"].iloc[first] + pd.Timedelta("1D")).isoformat()
    custom = run(bars, np.ones(8), initial_cash=10_000.0, prop_firm_rules=[TotalLossLimit(0.5)])
    assert custom.stats["prop_firm"]["passed"] is True and len(custom.rules) == 1


def test_to_dir_is_atomic_and_refuses_to_overwrite(tmp_path, monkeypatch):
    bars = _bars(**HAND_BARS)
    result = run(bars, [1, 1, 0, -1, 0, 0], spread=0.1)
    out = tmp_path / "bt"
    assert result.to_dir(out) == out
    names = {p.name for p in out.iterdir()}
    assert names == {
        "trades.csv", "equity.csv", "fills.csv", "breaches.csv", "rejections.csv",
        "stats.json", "config.json", "equity.png", "drawdown.png", "trades.png",
    }  # fmt: skip
    stats = json.loads((out / "stats.json").read_text())
    assert stats["n_trades"] == len(result.trades) == 2
    assert pd.read_csv(out / "trades.csv").shape == (2, 10)
    assert (out / "trades.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match=r"not empty.*overwrite"):
        result.to_dir(out)
    (out / "stats.json").write_text("{}")
    result.to_dir(out, overwrite=True)
    assert json.loads((out / "stats.json").read_text())["n_trades"] == 2

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "trades_png", broken)
    with pytest.raises(RuntimeError):
        result.to_dir(tmp_path / "fresh")
    with pytest.raises(RuntimeError):
        result.to_dir(out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bt"]  # no partial or temp dirs
    assert json.loads((out / "stats.json").read_text())["n_trades"] == 2
