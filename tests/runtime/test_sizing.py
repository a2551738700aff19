"""Sizing: the stop atr_multiple ATRs away loses at most risk_per_trade of equity, in whole
lots, capped by max_position and by what the buying power pays for (costs included);
nothing to size on gives 0 units and says why."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moola.core.errors import ConfigError
from moola.runtime.brokers import PaperBroker
from moola.runtime.config import parse_live_config
from moola.runtime.engine import Engine
from moola.runtime.feed import ReplayFeed
from moola.runtime.sizing import position_size
from moola.tracking.livedb import LiveJournal
from tests.runtime._lab import (
    PRODUCTS,
    SYMBOLS,
    MinuteFlip,
    last_closes,
    product_bars,
    scripted_config,
    two_symbol_bars,
)


def test_one_percent_at_two_atr() -> None:
    size = position_size(10_000.0, 100.0, 0.5, risk_per_trade=0.01, atr_multiple=2.0, lot=0.01)
    assert size.units == pytest.approx(100.0)  # 100 risked / (2 * 0.5) per unit
    assert size.stop_distance == pytest.approx(1.0)
    assert size.risk == pytest.approx(100.0)
    assert size.reason == ""


def test_units_round_down_to_lots() -> None:
    size = position_size(10_000.0, 100.0, 0.7, lot=1.0)  # 100 / 1.4 = 71.4
    assert size.units == 71.0
    exact = position_size(3.0, 10.0, 0.5, risk_per_trade=0.1, atr_multiple=2.0, lot=0.1)
    assert exact.units == pytest.approx(0.3)  # 0.3 / 0.1 is 2.999... in floats: still 3 lots


def test_max_position_caps_and_says_so() -> None:
    size = position_size(10_000.0, 100.0, 0.5, lot=0.01, max_position=2.5)
    assert size.units == pytest.approx(2.5)
    assert "max_position" in size.reason


@pytest.mark.parametrize(
    ("equity", "price", "atr", "named"),
    [
        (10_000.0, 100.0, 0.0, "atr"),
        (10_000.0, 100.0, math.nan, "atr"),
        (10_000.0, 100.0, -1.0, "atr"),
        (10_000.0, math.nan, 1.0, "price"),
        (0.0, 100.0, 1.0, "equity"),
    ],
)
def test_nothing_to_size_on_gives_zero_units_with_the_reason(equity, price, atr, named) -> None:
    size = position_size(equity, price, atr)
    assert size.units == 0.0
    assert size.reason.startswith(named)


def test_a_budget_below_one_lot_gives_zero_units() -> None:
    size = position_size(100.0, 50_000.0, 500.0, lot=1.0)  # 1 / 1000 of a unit
    assert size.units == 0.0
    assert "less than one lot" in size.reason


@pytest.mark.parametrize(
    "settings",
    [
        {"risk_per_trade": 0.0},
        {"risk_per_trade": -0.01},
        {"risk_per_trade": 1.5},
        {"risk_per_trade": math.nan},
        {"atr_multiple": 0.0},
        {"lot": -1.0},
        {"max_position": 0.0},
        {"point_value": math.inf},
    ],
)
def test_bad_settings_are_refused_naming_them(settings) -> None:
    (name,) = settings
    with pytest.raises(ConfigError, match=name) as info:
        position_size(10_000.0, 100.0, 1.0, **settings)
    assert info.value.param == name


@given(
    equity=st.floats(100.0, 1e7),
    atr=st.floats(1e-3, 1e3),
    risk=st.floats(0.001, 0.05),
    multiple=st.floats(0.5, 5.0),
    lot=st.sampled_from([1e-8, 1e-3, 0.1, 1.0]),
)
def test_a_sized_trade_risks_at_most_the_budget_and_one_more_lot_exceeds_it(
    equity, atr, risk, multiple, lot
) -> None:
    size = position_size(equity, 100.0, atr, risk_per_trade=risk, atr_multiple=multiple, lot=lot)
    budget = risk * equity
    assert size.units >= 0.0
    assert size.units * multiple * atr <= budget * (1.0 + 1e-9)
    assert (size.units + lot) * multiple * atr > budget * (1.0 - 1e-9)
    assert math.isclose(size.units / lot, round(size.units / lot), abs_tol=1e-6)


def test_buying_power_caps_the_readme_config_to_what_the_account_pays_for() -> None:
    """The README's live config: ``max_position: 5`` of a ~15,000 asset on 10,000 of
    equity. Risk sizing at a stop of 2 x 15 buys 3.33 units (5x equity); a spot account
    with 10,000 to spend buys 0.66666666 of them (whole lots of 1e-8, rounded down), and
    the reason says the buying power bound it."""
    uncapped = position_size(10_000.0, 15_000.0, 15.0, max_position=5.0)
    assert uncapped.units * 15_000.0 > 4 * 10_000.0  # the bug: four times the account
    size = position_size(10_000.0, 15_000.0, 15.0, max_position=5.0, buying_power=10_000.0)
    assert size.units == pytest.approx(0.66666666, abs=1e-12)
    assert size.units * 15_000.0 <= 10_000.0
    assert "buying power 10,000.00" in size.reason and "3.33333" in size.reason
    assert size.risk == pytest.approx(size.units * 30.0)  # the risk taken is the capped size's


def test_the_cost_allowance_comes_out_of_the_buying_power() -> None:
    size = position_size(
        10_000.0, 100.0, 0.5, lot=1.0, buying_power=1_000.0, cost_rate=0.006
    )  # 100 units by risk; 1,000 / 100.6 = 9.94 -> 9 whole units
    assert size.units == 9.0
    assert "costs 0.006" in size.reason
    exact = position_size(10_000.0, 100.0, 0.5, lot=1.0, buying_power=1_000.0)
    assert exact.units == 10.0  # no costs: exactly 10 units fit


def test_a_buying_power_that_does_not_bind_changes_nothing() -> None:
    free = position_size(10_000.0, 100.0, 0.5, lot=0.01, max_position=2.5)
    assert position_size(10_000.0, 100.0, 0.5, lot=0.01, max_position=2.5, buying_power=1e6) == free


@pytest.mark.parametrize("power", [0.0, -5.0, math.nan, math.inf])
def test_no_buying_power_sizes_to_zero_and_says_so(power) -> None:
    size = position_size(10_000.0, 100.0, 0.5, buying_power=power)
    assert size.units == 0.0
    assert size.reason.startswith("buying_power")


def test_buying_power_below_one_lot_sizes_to_zero_naming_it() -> None:
    size = position_size(10_000.0, 15_000.0, 15.0, lot=1.0, buying_power=10_000.0)
    assert size.units == 0.0
    assert "buying power" in size.reason


@pytest.mark.parametrize("cost", [-0.001, math.nan, math.inf])
def test_a_bad_cost_rate_is_refused_naming_it(cost) -> None:
    with pytest.raises(ConfigError, match="cost_rate") as info:
        position_size(10_000.0, 100.0, 1.0, buying_power=1_000.0, cost_rate=cost)
    assert info.value.param == "cost_rate"


@given(
    equity=st.floats(1.0, 1e8),
    price=st.floats(1e-4, 1e6),
    atr=st.floats(1e-6, 1e4),
    power=st.floats(1e-3, 1e9),
    cost=st.sampled_from([0.0, 0.0005, 0.006, 0.05]),
    lot=st.sampled_from([1e-8, 1e-3, 0.1, 1.0]),
    cap=st.none() | st.floats(1e-3, 1e4),
    point_value=st.sampled_from([1.0, 5.0, 50.0]),
)
def test_a_sized_order_never_costs_more_than_the_buying_power_nor_exceeds_the_uncapped_size(
    equity, price, atr, power, cost, lot, cap, point_value
) -> None:
    terms = {"lot": lot, "max_position": cap, "point_value": point_value}
    uncapped = position_size(equity, price, atr, **terms)
    size = position_size(equity, price, atr, buying_power=power, cost_rate=cost, **terms)
    assert 0.0 <= size.units <= uncapped.units
    assert size.units * price * point_value * (1.0 + cost) <= power
    assert math.isclose(size.units / lot, round(size.units / lot), abs_tol=1e-6)
    if size.units < uncapped.units:  # the cap bound: one more lot would not be paid for
        assert "buying power" in size.reason
        assert (size.units + lot) * price * point_value * (1.0 + cost) > power * (1 - 1e-9)


# ------------------------------------------------------------------ the engine's sizing


def test_a_paper_session_on_the_readme_config_never_buys_more_than_a_sleeve_pays_for(tmp_path):
    """The README's config (10,000 a symbol, ``max_position: 5``) on a ~15,000 and a
    ~30,000 asset: every buy the engine decides is one the paper broker takes whole, not
    one it cuts to its leverage limit; so the journal's intent is the order that filled."""
    config = parse_live_config(
        {
            "symbols": list(SYMBOLS),
            "members": [{"role": "direction", "run": "scripted"}],
            "execution": {"instrument": "crypto", "initial_cash": 10_000.0, "rules": "none"},
            "risk": {"max_position": 5.0},
        }
    )
    bars = two_symbol_bars(90, 1)
    for column in ("open", "high", "low", "close"):
        bars[column] *= 150.0  # BTC about 15,000, ETH about 30,000
    journal = LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}")
    broker = PaperBroker(config.execution, config.symbols)
    feed = ReplayFeed(bars, config.symbols, "1m", config.staleness)
    engine = Engine(config, journal, broker, [MinuteFlip(period=30)], feed, env={})
    engine.run()
    record = journal.session_record(engine.session_id)
    buys = [intent for intent in record.intents if intent.side == "buy"]
    assert {intent.symbol for intent in buys} == set(SYMBOLS)
    filled = {}
    for fill in record.fills:
        filled[fill.client_order_id] = filled.get(fill.client_order_id, 0.0) + float(fill.qty)
    for intent in buys:
        assert "max_leverage" not in (intent.detail or ""), intent.detail
        assert filled[intent.client_order_id] == pytest.approx(float(intent.qty))


def test_a_live_buy_is_sized_within_the_quote_currency_available_not_the_held_funds(tmp_path):
    """On Coinbase (spot) a buy is paid from the quote currency available now: with 5,000
    USD available and 1,000,000 held for open orders, the engine's first buy costs at most
    the 5,000 (sized from ``available``), though equity and ``balances`` count the holds."""
    from moola.runtime.brokers import CoinbaseAdvancedTrade, Credentials
    from tests.runtime.fake_coinbase import KEY_NAME, FakeCoinbase, cdp_key

    pem, private = cdp_key()
    bars = product_bars(40, 3)
    last = last_closes(bars)
    config = scripted_config(PRODUCTS.values())
    journal = LiveJournal(f"sqlite:///{tmp_path / 'live.db'}")
    with FakeCoinbase(KEY_NAME, private.public_key(), prices=last, hold_s=0.6,
                      balances={"USD": 5_000.0}, holds={"USD": 1e6}) as fake:  # fmt: skip
        broker = CoinbaseAdvancedTrade(
            base_url=fake.url, credentials=Credentials(KEY_NAME, pem), timeout=0.5,
            max_retries=1, backoff=0.0, sleep=lambda s: None,
        )  # fmt: skip
        feed = ReplayFeed(bars, config.symbols, "1m", config.staleness)
        with broker:
            Engine(config, journal, broker, [MinuteFlip(period=30)], feed, env={}).run(max_bars=50)
    record = journal.session_record(journal.status()["sessions"][0]["id"])
    buys = [i for i in record.intents if i.side == "buy"]
    assert buys
    first = buys[0]
    assert 0 < first.qty * last[first.symbol] <= 5_000.0 * 1.01  # the price moved a little
