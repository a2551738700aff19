"""Both engines on one accounting: identical results, and no fill from the future; the
event engine takes an ExecutionConfig and streams its risk rules inside the loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moola.core.errors import ConfigError
from moola.data.schema import make_bars
from moola.sim import (
    CommissionModel,
    EventEngine,
    ExecutionConfig,
    FixedBps,
    SquareRootImpact,
    TargetPositionStrategy,
    VolatilityScaled,
    backtest_positions,
    crypto_instrument,
    equity_instrument,
    futures_instrument,
)
from moola.sim.propfirm import TotalLossLimit
from tests.conftest import random_walk_bars

INSTRUMENTS = {
    "stock": equity_instrument("ABC"),
    "nq": futures_instrument("NQ"),
    "btc": crypto_instrument("BTC-USD"),
}
COSTS = {
    "none": {},
    "fixed": {
        "spread": 0.02,
        "slippage": FixedBps(1.5),
        "commission": CommissionModel(per_unit=0.01, rate=1e-4, minimum=1.0),
    },
    "vol": {"spread": 0.01, "slippage": VolatilityScaled(k=0.3, window=5)},
    "impact": {"slippage": SquareRootImpact(k=0.5, window=10), "commission": CommissionModel(2.0)},
}
FILL_KEYS = ["bar", "decision_bar", "qty", "price", "fee"]


def _both(bars: pd.DataFrame, target: np.ndarray, instrument, cash: float, latency: int, costs):
    """Both engines on one ExecutionConfig (built from the cost objects)."""
    config = ExecutionConfig.from_terms(
        instrument=instrument,
        initial_cash=cash,
        latency_bars=latency,
        engine="event",
        prop_firm_rules=(),
        **costs,
    )
    columns = [bars[c] for c in ("open", "high", "low", "close", "volume")]
    vec = backtest_positions(*columns, target, config, timestamp=bars["timestamp"])
    evt = EventEngine(bars, config).run(TargetPositionStrategy(target))
    return vec, evt


def _assert_identical(vec, evt) -> None:
    np.testing.assert_array_equal(vec.equity, evt.equity)
    np.testing.assert_array_equal(vec.cash, evt.cash)
    np.testing.assert_array_equal(vec.position, evt.position)
    if len(vec.fills):
        pd.testing.assert_frame_equal(vec.fills, evt.fills)
    else:
        assert evt.fills.empty
    pd.testing.assert_frame_equal(vec.trades, evt.trades)
    pd.testing.assert_frame_equal(vec.equity_frame(), evt.equity_frame())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 120),
    levels=st.lists(st.sampled_from([-1.0, -0.5, -0.3, 0.0, 0.25, 0.5, 1.0]), min_size=1),
    instrument=st.sampled_from(sorted(INSTRUMENTS)),
    costs=st.sampled_from(sorted(COSTS)),
    latency=st.integers(1, 3),
)
def test_vectorised_and_event_engines_agree_exactly(
    seed, n, levels, instrument, costs, latency
) -> None:
    rng = np.random.default_rng(seed)
    bars = random_walk_bars(n, seed=seed)
    # targets that hold for a few bars, then switch
    target = np.asarray(levels)[rng.integers(0, len(levels), n)]
    target = np.where(rng.random(n) < 0.6, np.nan, target)
    target = pd.Series(target).ffill().fillna(0.0).to_numpy()
    cash = 2_000_000.0 if instrument == "nq" else 10_000.0
    vec, evt = _both(bars, target, INSTRUMENTS[instrument], cash, latency, COSTS[costs])
    _assert_identical(vec, evt)


@pytest.mark.parametrize("costs", sorted(COSTS))
def test_engines_agree_on_a_longer_run_with_many_trades(costs) -> None:
    bars = random_walk_bars(1_500, seed=3)
    rng = np.random.default_rng(3)
    target = np.repeat(rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], 150), 10)
    target[-10:] = 0.0  # end flat so every fill belongs to a closed trade
    vec, evt = _both(bars, target, INSTRUMENTS["stock"], 10_000.0, 1, COSTS[costs])
    assert len(vec.trades) > 50
    _assert_identical(vec, evt)
    # the books balance: net PnL of the trades is the equity change, their fees all fees paid
    assert vec.position[-1] == 0.0
    assert vec.trades["pnl"].sum() == pytest.approx(vec.equity[-1] - vec.initial_cash, abs=1e-6)
    assert vec.trades["fees"].sum() == pytest.approx(vec.fills["fee"].sum(), abs=1e-9)


def test_hand_computed_target_path() -> None:
    bars = make_bars(
        pd.date_range("2024-01-02", periods=4, freq="1D", tz="UTC"),
        [100.0, 102.0, 101.0, 105.0],
        [101.0, 104.0, 105.0, 107.0],
        [99.0, 101.0, 100.0, 104.0],
        [101.0, 103.0, 104.0, 106.0],
        symbol="ABC",
        timeframe="1d",
    )
    target = np.array([1.0, 1.0, 0.0, 0.0])
    vec, evt = _both(bars, target, INSTRUMENTS["stock"], 1_000.0, 1, {})
    # bar 0 close: 1_000 / 101 -> 9 shares, bought at bar 1's open 102, sold at bar 3's open 105
    for res in (vec, evt):
        np.testing.assert_array_equal(res.position, [0.0, 9.0, 9.0, 0.0])
        np.testing.assert_allclose(res.equity, [1_000.0, 1_009.0, 1_018.0, 1_027.0])
        (trade,) = res.trades.itertuples()
        assert (trade.size, trade.entry_price, trade.exit_price) == (9.0, 102.0, 105.0)
        assert trade.pnl == pytest.approx(27.0) and trade.bars_held == 2
        assert trade.entry_time == pd.Timestamp("2024-01-03", tz="UTC")


def test_a_signal_never_fills_at_its_own_bar_or_earlier() -> None:
    bars = random_walk_bars(400, seed=11)
    rng = np.random.default_rng(11)
    target = np.repeat(rng.choice([-1.0, 0.0, 1.0], 40), 10)
    costs = {"spread": 0.02, "slippage": FixedBps(2.0)}
    for latency in (1, 2, 5):
        vec, evt = _both(bars, target, INSTRUMENTS["stock"], 10_000.0, latency, costs)
        for fills in (vec.fills, evt.fills):
            assert len(fills) > 10
            assert (fills["bar"] - fills["decision_bar"] == latency).all()
            # decided where the target changed, filled at a later open plus costs
            decided = fills["decision_bar"].to_numpy()
            changed = np.flatnonzero(np.diff(target, prepend=0.0) != 0)
            assert set(decided) <= set(changed)
            opens = bars["open"].to_numpy()[fills["bar"]]
            side = np.sign(fills["qty"].to_numpy())
            expected = opens + side * (0.01 + 2e-4 * opens)
            np.testing.assert_allclose(fills["price"], expected, rtol=0, atol=1e-9)
            assert (fills["timestamp"] > bars["timestamp"].iloc[decided].to_numpy()).all()


@pytest.mark.parametrize("latency", [1, 3])
def test_changing_later_bars_never_changes_earlier_fills(latency) -> None:
    bars = random_walk_bars(300, seed=5)
    rng = np.random.default_rng(5)
    target = np.repeat(rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], 30), 10)
    costs = {"spread": 0.01, "slippage": SquareRootImpact(k=0.5, window=10)}
    cut = 150  # bars from here on are replaced
    changed = bars.copy()
    noise = np.random.default_rng(99).normal(0, 1.0, len(bars) - cut)
    for col in ("open", "high", "low", "close"):
        changed.loc[cut:, col] = changed.loc[cut:, col].to_numpy() + noise
    changed.loc[cut:, "volume"] = changed.loc[cut:, "volume"].to_numpy() * 7
    base = _both(bars, target, INSTRUMENTS["stock"], 10_000.0, latency, costs)
    moved = _both(changed, target, INSTRUMENTS["stock"], 10_000.0, latency, costs)
    for a, b in zip(base, moved, strict=True):
        early_a = a.fills[a.fills["bar"] < cut].reset_index(drop=True)
        early_b = b.fills[b.fills["bar"] < cut].reset_index(drop=True)
        assert len(early_a) > 5
        pd.testing.assert_frame_equal(early_a[FILL_KEYS], early_b[FILL_KEYS])
        np.testing.assert_array_equal(a.equity[:cut], b.equity[:cut])
        assert not np.array_equal(a.equity[cut:], b.equity[cut:])


def test_strategy_sees_only_bars_up_to_now_and_cannot_change_them() -> None:
    bars = random_walk_bars(30, seed=2)
    seen: list[tuple[int, int, float]] = []

    def on_bar(ctx):
        close = ctx.history("close")
        seen.append((ctx.i, len(close), close[-1]))
        with pytest.raises(ValueError):
            close[-1] = 0.0
        return None

    EventEngine(bars, ExecutionConfig(rules="none")).run(on_bar)
    assert [s[1] for s in seen] == [i + 1 for i in range(30)]
    np.testing.assert_array_equal([s[2] for s in seen], bars["close"])


def test_orders_after_the_last_bar_never_fill() -> None:
    bars = random_walk_bars(5, seed=1)
    target = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    vec, evt = _both(bars, target, INSTRUMENTS["stock"], 10_000.0, 1, {})
    assert vec.fills.empty and evt.fills.empty
    np.testing.assert_array_equal(vec.equity, np.full(5, 10_000.0))


def test_bad_inputs_are_refused_with_a_fix() -> None:
    bars = random_walk_bars(5, seed=1)
    cols = [bars[c] for c in ("open", "high", "low", "close", "volume")]
    with pytest.raises(ConfigError, match="row 2"):
        backtest_positions(*cols, [0.0, 1.0, np.nan, 0.0, 0.0], ExecutionConfig())
    with pytest.raises(ConfigError, match="latency_bars"):
        backtest_positions(*cols, np.zeros(5), {"latency_bars": 0})
    with pytest.raises(ConfigError, match="align"):
        backtest_positions(*cols, np.zeros(4), ExecutionConfig())


def test_the_old_keyword_form_warns_and_runs_the_same() -> None:
    bars = random_walk_bars(200, seed=4)
    target = np.repeat(np.random.default_rng(4).choice([-1.0, 0.0, 1.0], 20), 10)
    costs = COSTS["vol"]
    with pytest.warns(
        DeprecationWarning, match=r"pass EventEngine\(bars, moola\.sim\.ExecutionConfig"
    ):
        old = EventEngine(bars, INSTRUMENTS["stock"], initial_cash=10_000.0, **costs)
    _, new = _both(bars, target, INSTRUMENTS["stock"], 10_000.0, 1, costs)
    _assert_identical(old.run(TargetPositionStrategy(target)), new)
    with pytest.raises(ConfigError, match="Did you mean 'latency_bars'"):
        EventEngine(bars, INSTRUMENTS["stock"], latency=2)
    with pytest.raises(ConfigError, match="not both"):
        EventEngine(bars, ExecutionConfig(), initial_cash=1.0)


def _falling(n: int = 60, seed: int = 8):
    """Hourly bars that fall 1% a bar from bar 10 to bar 30, then recover."""
    bars = random_walk_bars(n, seed=seed)
    close = np.full(n, 100.0)
    close[10:30] = 100.0 * 0.99 ** np.arange(1, 21)
    close[30:] = close[29] * 1.01 ** np.arange(1, n - 29)
    opens = np.concatenate(([100.0], close[:-1]))
    bars["open"], bars["close"] = opens, close
    bars["high"], bars["low"] = np.maximum(opens, close), np.minimum(opens, close)
    return bars


@pytest.mark.parametrize("on_breach", ["record", "halt", "flatten"])
def test_the_configs_rules_stream_inside_the_event_engine(on_breach) -> None:
    """The breach is found inside the loop at the bar the batch rule names; ``record``
    keeps trading (equal to the vectorised run), ``halt`` and ``flatten`` stop it there and
    deny the orders after it, naming the breach."""
    bars = _falling()
    target = np.where(np.arange(len(bars)) % 15 < 10, 1.0, 0.5)
    rules = [{"rule": "total_loss_limit", "pct": 0.08}]
    config = ExecutionConfig(
        initial_cash=10_000.0, engine="event", rules=rules, on_breach=on_breach
    )
    engine = EventEngine(bars, config)
    res = engine.run(TargetPositionStrategy(target))
    breaches = engine.broker_.breaches
    equity = pd.Series(res.equity, index=pd.DatetimeIndex(bars["timestamp"]))
    batch = TotalLossLimit(pct=0.08).check(equity)
    (row,) = breaches.itertuples()
    assert (row.rule, row.timestamp, row.value) == (
        "total_loss_limit", batch.breach_time, batch.breach_value,
    )  # fmt: skip
    vec, _ = _both(bars, target, equity_instrument("ASSET"), 10_000.0, 1, {})
    later = res.rejections[res.rejections["bar"] > row.bar]
    if on_breach == "record":
        _assert_identical(vec, res)
        assert later.empty
    else:
        assert len(later) > 0 and later["reason"].str.startswith("broker halted").all()
        position = res.position[row.bar + 1 :]
        assert (position == (0.0 if on_breach == "flatten" else res.position[row.bar])).all()
