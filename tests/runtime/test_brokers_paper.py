"""PaperBroker: the backtest's kernel behind the broker contract, so paper equals a backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.backtest import run as backtest_run
from moola.core.errors import BrokerError, ConfigError
from moola.data.schema import make_bars
from moola.runtime.brokers import BrokerAdapter, OrderIntent, PaperBroker
from moola.sim import Bar, ExecutionConfig

SYMBOL = "BTC-USD"


def _bars(n: int = 300, seed: int = 3, symbol: str = SYMBOL) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, n)))
    open_ = np.r_[close[0], close[:-1]] * (1.0 + rng.normal(0.0, 0.001, n))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.002, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.002, n)))
    stamps = pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC")
    return make_bars(stamps, open_, high, low, close, rng.uniform(1, 10, n), symbol=symbol,
                     timeframe="1h")  # fmt: skip


def _bar(row) -> Bar:
    return Bar(row.timestamp, row.open, row.high, row.low, row.close, row.volume)


def _targets(n: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    levels = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=n // 10 + 1)
    return np.repeat(levels, 10)[:n]


def _execution(**terms) -> ExecutionConfig:
    base = dict(
        instrument=f"crypto:{SYMBOL}", initial_cash=10_000.0, commission=0.0006, spread=2.0,
        slippage=1.5, rules=[], engine="event",
    )  # fmt: skip
    return ExecutionConfig(**{**base, **terms})


def _intent(cid: str, qty: float, at, **kw) -> OrderIntent:
    side = "buy" if qty > 0 else "sell"
    return OrderIntent(cid, kw.pop("symbol", SYMBOL), side, abs(qty), decided_at=at, **kw)


@pytest.mark.parametrize(
    "terms",
    [
        {"latency_bars": 1},
        {"latency_bars": 2},
        {"latency_bars": 1, "slippage": {"model": "volatility_scaled", "k": 0.2, "window": 5}},
    ],
    ids=["latency1", "latency2", "volatility-slippage"],
)
def test_paper_fills_and_equity_equal_the_event_backtest(terms):
    """Intents sized like the backtest's target strategy fill at the same bars, prices and
    fees, and leave the same equity curve, as moola.backtest.run on the same targets."""
    execution = _execution(**terms)
    bars = _bars()
    targets = _targets(len(bars))
    expected = backtest_run(bars, targets, execution)

    broker = PaperBroker(execution, [SYMBOL])
    instrument = execution.build_instrument(SYMBOL)
    equity, fills = [], []
    committed, previous = 0.0, 0.0
    for i, row in enumerate(bars.itertuples(index=False)):
        fills.extend(broker.on_bar(SYMBOL, _bar(row)))
        state = broker.state(SYMBOL)
        equity.append(broker.balances()["equity"])
        if targets[i] == previous:
            continue
        previous = targets[i]
        dq = instrument.units_for(targets[i], state.equity, state.price) - committed
        if abs(dq) <= instrument.dust:
            continue
        committed += dq
        ack = broker.submit(_intent(f"o{i}", dq, row.timestamp))
        assert ack.status == "accepted", ack

    assert len(fills) == len(expected.fills) > 5
    got = pd.DataFrame(
        {"timestamp": [f.time for f in fills], "qty": [f.qty for f in fills],
         "price": [f.price for f in fills], "fee": [f.fee for f in fills]}
    )  # fmt: skip
    want = expected.fills[["timestamp", "qty", "price", "fee"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)
    np.testing.assert_array_equal(np.array(equity), expected.equity["equity"].to_numpy())
    assert broker.positions()[SYMBOL] == pytest.approx(expected.stats["final_position"])


def test_market_intent_fills_at_the_open_latency_bars_later():
    bars = _bars(6)
    broker = PaperBroker(_execution(latency_bars=2, spread=0.0, slippage=None,
                                    commission=None), [SYMBOL])  # fmt: skip
    rows = list(bars.itertuples(index=False))
    broker.on_bar(SYMBOL, _bar(rows[0]))
    broker.submit(_intent("a", 0.1, rows[0].timestamp))
    assert broker.on_bar(SYMBOL, _bar(rows[1])) == []
    [fill] = broker.on_bar(SYMBOL, _bar(rows[2]))
    assert (fill.client_order_id, fill.qty, fill.price, fill.time) == (
        "a",
        0.1,
        rows[2].open,
        rows[2].timestamp,
    )
    assert broker.positions() == {SYMBOL: 0.1}
    assert broker.fills(since=rows[3].timestamp) == []
    assert broker.fills(since=rows[2].timestamp) == [fill]


def test_submit_is_idempotent_on_client_order_id():
    bars = _bars(4)
    rows = list(bars.itertuples(index=False))
    broker = PaperBroker(_execution(), [SYMBOL])
    broker.on_bar(SYMBOL, _bar(rows[0]))
    intent = _intent("same", 0.05, rows[0].timestamp)
    first = broker.submit(intent)
    assert broker.submit(intent) == first
    fills = broker.on_bar(SYMBOL, _bar(rows[1]))
    assert len(fills) == 1 and broker.positions()[SYMBOL] == pytest.approx(0.05)
    assert broker.submit(intent) == first  # after the fill too: nothing placed again
    assert broker.on_bar(SYMBOL, _bar(rows[2])) == []
    with pytest.raises(BrokerError, match="'same' was already used"):
        broker.submit(_intent("same", 0.07, rows[2].timestamp))


def test_limit_orders_are_open_until_cancelled():
    bars = _bars(5)
    rows = list(bars.itertuples(index=False))
    broker = PaperBroker(_execution(), [SYMBOL])
    broker.on_bar(SYMBOL, _bar(rows[0]))
    far = rows[0].close * 0.5
    intent = _intent("lim", 0.2, rows[0].timestamp, order_type="limit", limit_price=far)
    assert broker.submit(intent).accepted
    [open_order] = broker.open_orders()
    assert (open_order.client_order_id, open_order.qty, open_order.limit_price) == ("lim", 0.2, far)
    broker.on_bar(SYMBOL, _bar(rows[1]))
    assert broker.cancel("lim") is True
    assert broker.cancel("lim") is False and broker.cancel("never") is False
    assert broker.open_orders() == [] and broker.fills() == []


def test_halted_broker_rejects_with_the_reason_and_places_nothing():
    rows = list(_bars(3).itertuples(index=False))
    broker = PaperBroker(_execution(), [SYMBOL])
    broker.on_bar(SYMBOL, _bar(rows[0]))
    broker.halt("kill switch on")
    ack = broker.submit(_intent("k", 0.1, rows[0].timestamp))
    assert ack.status == "rejected" and "kill switch on" in ack.detail
    assert broker.on_bar(SYMBOL, _bar(rows[1])) == []


def test_refuses_what_it_cannot_place_honestly():
    rows = list(_bars(3).itertuples(index=False))
    broker = PaperBroker(_execution(), [SYMBOL])
    with pytest.raises(BrokerError, match="no bar of BTC-USD yet"):
        broker.submit(_intent("early", 0.1, rows[0].timestamp))
    broker.on_bar(SYMBOL, _bar(rows[0]))
    with pytest.raises(BrokerError, match="after the last bar"):
        broker.submit(_intent("future", 0.1, rows[1].timestamp))
    with pytest.raises(ConfigError, match="got symbol 'ETH-USD'"):
        broker.submit(_intent("other", 0.1, rows[0].timestamp, symbol="ETH-USD"))
    with pytest.raises(ConfigError, match="qty must be positive"):
        OrderIntent("neg", SYMBOL, "buy", -1.0)
    with pytest.raises(ConfigError, match="limit_price"):
        OrderIntent("lim", SYMBOL, "buy", 1.0, order_type="limit")


def test_sleeves_sum_into_balances():
    execution = _execution(instrument="crypto")
    broker = PaperBroker(execution, ["BTC-USD", "ETH-USD"])
    assert isinstance(broker, BrokerAdapter)
    for symbol, seed in (("BTC-USD", 1), ("ETH-USD", 2)):
        rows = list(_bars(3, seed=seed, symbol=symbol).itertuples(index=False))
        broker.on_bar(symbol, _bar(rows[0]))
        broker.submit(_intent(f"{symbol}-1", 0.1, rows[0].timestamp, symbol=symbol))
        broker.on_bar(symbol, _bar(rows[1]))
    balances = broker.balances()
    states = [broker.state(s) for s in ("BTC-USD", "ETH-USD")]
    assert balances["equity"] == pytest.approx(sum(s.equity for s in states))
    assert balances["USD"] == pytest.approx(sum(s.cash for s in states))
    assert broker.positions() == {"BTC-USD": pytest.approx(0.1), "ETH-USD": pytest.approx(0.1)}


def test_a_breach_flattens_with_ids_that_do_not_repeat():
    """on_breach="flatten": the kernel's own closing order fills under an id made from its
    bar time, and every fill id derives from a client id (unique across sessions)."""
    execution = _execution(rules=[{"rule": "total_loss_limit", "pct": 0.001}],
                           on_breach="flatten")  # fmt: skip
    rows = list(_bars(40).itertuples(index=False))
    broker = PaperBroker(execution, [SYMBOL])
    broker.on_bar(SYMBOL, _bar(rows[0]))
    ack = broker.submit(_intent("long-1", 0.3, rows[0].timestamp))
    assert ack.broker_order_id == "paper:long-1"
    fills = [fill for row in rows[1:] for fill in broker.on_bar(SYMBOL, _bar(row))]
    entry, flatten = fills
    assert entry.fill_id == "long-1:fill"
    assert flatten.client_order_id.startswith(f"paper-flatten-{SYMBOL}-2026-01-01T")
    assert flatten.fill_id == f"{flatten.client_order_id}:fill"
    assert flatten.qty == pytest.approx(-0.3) and broker.positions()[SYMBOL] == 0.0
    denied = broker.submit(_intent("after", 0.1, rows[-1].timestamp))
    assert denied.status == "rejected" and "total_loss_limit" in denied.detail.lower()
