"""Tick events -> 1-second bars: hand-computed bars, sessions, context, no lookahead."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moola.core.errors import ConfigError
from moola.data.schema import BAR_COLUMNS
from moola.data.ticks import TICK_BAR_COLUMNS, TickBarConfig, parse_session, ticks_to_bars
from moola.data.validation import validate_bars

S = 10**9  # one second in ns
NAN = np.nan
ALL_HOURS = TickBarConfig(session=None)


def ns(text: str) -> int:
    return pd.Timestamp(text, tz="UTC").value


def events(rows):
    """(ts ns, price, size, trade, bid, ask) rows -> keyword arrays for ticks_to_bars."""
    ts, price, size, trade, bid, ask = zip(*rows, strict=True)
    return {
        "ts_event": np.array(ts, dtype=np.int64),
        "price": np.array(price, dtype=float),
        "size": np.array(size, dtype=float),
        "trade": np.array(trade, dtype=bool),
        "bid": np.array(bid, dtype=float),
        "ask": np.array(ask, dtype=float),
    }


T = ns("2024-03-01 14:30:00")  # 09:30 New York
HAND = [
    (T + S // 10, 10.0, 100, True, NAN, NAN),
    (T + S // 2, NAN, 0, False, 9.875, 10.125),  # a quote
    (T + 9 * S // 10, 10.5, 300, True, NAN, NAN),
    (T + 12 * S // 10, 9.5, 100, True, NAN, NAN),
    (T + 3 * S, 11.0, 50, False, 9.375, 9.625),  # a book update at 11: no trade
    (T + 47 * S // 10, 9.75, 200, True, NAN, NAN),
]


def test_hand_computed_bars():
    bars = ticks_to_bars(**events(HAND), symbol="AAPL", config=ALL_HOURS)
    assert tuple(bars.columns) == TICK_BAR_COLUMNS
    assert bars["timestamp"].tolist() == [pd.Timestamp(T + i * S, tz="UTC") for i in range(5)]
    table = bars[["open", "high", "low", "close", "volume", "trades", "vwap", "filled"]]
    assert table.values.tolist() == [
        [10.0, 10.5, 10.0, 10.5, 400.0, 2, 10.375, False],  # vwap (1000 + 3150) / 400
        [9.5, 9.5, 9.5, 9.5, 100.0, 1, 9.5, False],
        [9.5, 9.5, 9.5, 9.5, 0.0, 0, 9.5, True],  # quiet: the close carried
        [9.5, 9.5, 9.5, 9.5, 0.0, 0, 9.5, True],  # a book update is no trade
        [9.75, 9.75, 9.75, 9.75, 200.0, 1, 9.75, False],
    ]
    assert bars["bid"].tolist() == [9.875, 9.875, 9.875, 9.375, 9.375]
    assert bars["ask"].tolist() == [10.125, 10.125, 10.125, 9.625, 9.625]
    assert bars["spread"].tolist() == [0.25, 0.25, 0.25, 0.25, 0.25]
    assert set(bars["symbol"]) == {"AAPL"} and set(bars["timeframe"]) == {"1s"}


def test_order_of_the_input_does_not_matter():
    shuffled = [HAND[i] for i in (3, 0, 5, 1, 4, 2)]
    a = ticks_to_bars(**events(HAND), symbol="X", config=ALL_HOURS)
    b = ticks_to_bars(**events(shuffled), symbol="X", config=ALL_HOURS)
    pd.testing.assert_frame_equal(a, b)


def test_without_quotes_or_trade_mask_every_priced_event_is_a_trade():
    data = events(HAND)
    bars = ticks_to_bars(
        data["ts_event"], data["price"], data["size"], symbol="X", config=ALL_HOURS
    )
    assert bars["trades"].tolist() == [2, 1, 0, 1, 1]  # the book update at 11.0 counts now
    assert bars["high"].iloc[3] == 11.0
    assert bars["bid"].isna().all() and bars["spread"].isna().all()


FRI_OPEN = ns("2024-03-01 09:00:00")  # 04:00 New York (EST)
FRI_CLOSE = ns("2024-03-02 01:00:00")  # 20:00 New York
MON_OPEN = ns("2024-03-04 09:00:00")
SESSION_DAYS = [
    (FRI_OPEN - S // 2, 19.0, 1, True, 18.0, 20.0),  # 03:59:59.5: before the session
    (FRI_OPEN + S // 5, 20.0, 1, True, 19.5, 20.5),
    (FRI_OPEN + 2 * S, 21.0, 1, True, NAN, NAN),
    (FRI_CLOSE - S // 10, 22.0, 1, True, NAN, NAN),  # 19:59:59.9: the last second
    (FRI_CLOSE, 23.0, 1, True, NAN, NAN),  # 20:00:00: after the close
    (MON_OPEN + 3 * S // 2, 24.0, 1, True, 23.5, 24.5),
]


def test_session_cut_weekend_and_the_previous_close_carried():
    bars = ticks_to_bars(**events(SESSION_DAYS), symbol="X")
    friday = bars[bars["timestamp"] < pd.Timestamp(FRI_CLOSE, tz="UTC")]
    monday = bars[bars["timestamp"] >= pd.Timestamp(MON_OPEN, tz="UTC")]
    assert len(friday) == 16 * 3600 and len(monday) == 2 and len(bars) == len(friday) + 2
    assert friday["timestamp"].iloc[0] == pd.Timestamp(FRI_OPEN, tz="UTC")
    assert friday["open"].iloc[0] == 20.0  # the 03:59:59 trade is out of the session
    assert friday["timestamp"].iloc[-1] == pd.Timestamp(FRI_CLOSE - S, tz="UTC")
    assert friday["close"].iloc[-1] == 22.0  # the 20:00:00 trade is out too
    assert friday["volume"].sum() == 3.0
    # Monday opens with Friday's close carried (previous session as context) and no quote.
    assert monday[["open", "close", "volume", "filled"]].values.tolist() == [
        [22.0, 22.0, 0.0, True],
        [24.0, 24.0, 1.0, False],
    ]
    assert np.isnan(monday["bid"].iloc[0]) and monday["bid"].iloc[1] == 23.5
    # Friday's quote stays until a quote-less trade; it is kept (last quote known).
    assert friday["bid"].iloc[2] == 19.5


def test_daylight_saving_moves_the_session_in_utc():
    summer = ns("2024-07-01 08:00:00")  # 04:00 New York (EDT)
    rows = [
        (summer - S, 10.0, 1, True, NAN, NAN),
        (summer + S // 2, 11.0, 1, True, NAN, NAN),
    ]
    bars = ticks_to_bars(**events(rows), symbol="X")
    assert bars["timestamp"].tolist() == [pd.Timestamp(summer, tz="UTC")]
    assert bars["open"].tolist() == [11.0]


def test_all_hours_fills_within_utc_days_but_not_across_empty_ones():
    bars = ticks_to_bars(**events(SESSION_DAYS), symbol="X", config=ALL_HOURS)
    days = bars["timestamp"].dt.date.unique().tolist()
    assert days == [dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 4)]
    assert bars["trades"].sum() == 6  # nothing is outside a 24h session
    assert len(bars[bars["timestamp"].dt.date == dt.date(2024, 3, 2)]) == 86_400


def test_first_session_keeps_the_one_before_as_context():
    wed, thu, fri = ns("2024-02-28 15:00"), ns("2024-02-29 15:00"), ns("2024-03-01 15:00")
    rows = [(wed, 10.0, 1, True, NAN, NAN), (thu, 11.0, 1, True, NAN, NAN)]
    rows += [(fri, 12.0, 1, True, NAN, NAN)]
    bars = ticks_to_bars(
        **events(rows), symbol="X", config=TickBarConfig(first_session=dt.date(2024, 3, 1))
    )
    first = bars["timestamp"].iloc[0]
    assert first == pd.Timestamp(thu, tz="UTC")  # Thursday kept, from its first trade
    assert 10.0 not in set(bars["close"])  # Wednesday is gone
    friday = bars[bars["timestamp"] >= pd.Timestamp(FRI_OPEN, tz="UTC")]
    assert friday["timestamp"].iloc[0] == pd.Timestamp(FRI_OPEN, tz="UTC")
    assert friday["close"].iloc[0] == 11.0 and friday["filled"].iloc[0]


def test_overnight_session_is_labelled_by_its_closing_date():
    config = TickBarConfig(session="18:00-17:00", first_session=dt.date(2024, 3, 5))
    sunday_evening = ns("2024-03-04 00:00:00")  # Sun 19:00 New York: Monday's session
    monday_evening = ns("2024-03-05 00:00:00")  # Mon 19:00: Tuesday's session
    rows = [(sunday_evening, 1.0, 1, True, NAN, NAN), (monday_evening, 2.0, 1, True, NAN, NAN)]
    bars = ticks_to_bars(**events(rows), symbol="ES", config=config)
    assert bars["timestamp"].iloc[0] == pd.Timestamp(sunday_evening, tz="UTC")
    assert bars["close"].iloc[-1] == 2.0


def test_no_trade_no_bars_and_the_table_keeps_its_columns():
    quotes_only = [(T, NAN, 0, False, 1.0, 2.0)]
    bars = ticks_to_bars(**events(quotes_only), symbol="X")
    assert len(bars) == 0 and tuple(bars.columns) == TICK_BAR_COLUMNS
    assert tuple(bars.loc[:, list(BAR_COLUMNS)].columns) == BAR_COLUMNS


def test_bad_inputs_name_the_parameter():
    data = events(HAND)
    with pytest.raises(ConfigError, match="price has 2 values but ts_event has 6"):
        ticks_to_bars(data["ts_event"], data["price"][:2], data["size"], symbol="X")
    with pytest.raises(ConfigError, match=r"ts_event must be .* integer"):
        ticks_to_bars(data["ts_event"] / S, data["price"], data["size"], symbol="X")
    with pytest.raises(
        ConfigError, match=r"size is NaN or negative on trades at positions \[0, 2, 3, 4, 5\]"
    ):
        ticks_to_bars(data["ts_event"], data["price"], -data["size"], symbol="X")
    with pytest.raises(ConfigError, match="before 1970"):
        ticks_to_bars(-data["ts_event"], data["price"], data["size"], symbol="X")
    with pytest.raises(ConfigError, match="'HH:MM-HH:MM'"):
        parse_session("4am to 8pm")
    with pytest.raises(ValueError, match="unknown time zone"):
        TickBarConfig(timezone="America/Gotham")
    with pytest.raises(ValueError, match="Extra inputs"):
        TickBarConfig(sesion="24h")
    assert parse_session("24h") is None and TickBarConfig(session="24h").session is None


# No lookahead: events near a session close (and a UTC midnight for all hours), cut anywhere.
QUARTER = S // 4
BASES = {True: ns("2024-03-01 23:59:52"), False: ns("2024-03-02 00:59:52")}  # 19:59:52 NY


def check_cut(table, cut, config):
    """Bars of the events before ``cut`` that ended by ``cut`` equal the full run's; the full
    run's other finished bars are quiet seconds after the cut run's last one."""
    full = ticks_to_bars(**events(table), symbol="X", config=config)
    kept = [row for row in table if row[0] < cut]
    part = ticks_to_bars(**events(kept), symbol="X", config=config) if kept else full.iloc[0:0]
    ended = pd.Timestamp(cut, tz="UTC") - pd.Timedelta(seconds=1)
    done_part = part[part["timestamp"] <= ended].reset_index(drop=True)
    done_full = full[full["timestamp"] <= ended].reset_index(drop=True)
    same = done_full[done_full["timestamp"].isin(done_part["timestamp"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(done_part, same)
    extra = done_full[~done_full["timestamp"].isin(done_part["timestamp"])]
    assert extra["filled"].all()
    if len(done_part) and len(extra):
        assert extra["timestamp"].min() > done_part["timestamp"].max()


def quarter_rows(rows, base):
    """(quarter seconds after base, trade?, price, size, quoted?) -> event rows."""
    return [
        (base + q * QUARTER, price, size, trade, price - 0.25 if quoted else NAN,
         price + 0.25 if quoted else NAN)
        for q, trade, price, size, quoted in rows
    ]  # fmt: skip


_EVENT = st.tuples(
    st.integers(0, 60),  # quarter seconds after the base time: 15 s across the boundary
    st.booleans(),  # trade?
    st.sampled_from([9.5, 10.0, 10.25, 11.0]),
    st.integers(1, 5),
    st.booleans(),  # carries a quote?
)


@settings(max_examples=40)
@given(
    rows=st.lists(_EVENT, min_size=1, max_size=40),
    cut_q=st.integers(0, 64),
    all_hours=st.booleans(),
)
def test_cutting_the_events_leaves_every_finished_bar_unchanged(rows, cut_q, all_hours):
    base = BASES[all_hours]
    config = ALL_HOURS if all_hours else TickBarConfig()
    check_cut(quarter_rows(rows, base), base + cut_q * QUARTER, config)


@pytest.mark.parametrize("all_hours", [True, False])
def test_every_cut_of_a_dense_tape_leaves_finished_bars_unchanged(all_hours):
    rng = np.random.default_rng(7)
    n = 120
    rows = zip(
        rng.integers(0, 61, n).tolist(),
        (rng.random(n) < 0.6).tolist(),
        rng.choice([9.5, 10.0, 10.25, 11.0], n).tolist(),
        rng.integers(1, 6, n).tolist(),
        (rng.random(n) < 0.5).tolist(),
        strict=True,
    )
    base = BASES[all_hours]
    table = quarter_rows(list(rows), base)
    for cut_q in range(0, 65):  # every quarter second, whole-second boundaries included
        check_cut(table, base + cut_q * QUARTER, ALL_HOURS if all_hours else TickBarConfig())


# Every table the aggregator makes is a valid raw dataset, extras included (vwap within the
# bar's range despite rounding, quotes not crossed, spread = ask - bid, filled bars quiet).
@settings(max_examples=40)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 40),  # quarter seconds after the base time
            st.booleans(),  # trade?
            st.floats(0.01, 5_000.0),
            st.integers(0, 10_000),  # size (0 is a trade without volume)
            st.booleans(),  # carries a quote?
            st.floats(0.0, 0.5),  # half spread
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_tick_bars_pass_strict_validation_unchanged(rows):
    table = [
        (BASES[True] + q * QUARTER, price, size, trade, price - half if quoted else NAN,
         price + half if quoted else NAN)
        for q, trade, price, size, quoted, half in rows
    ]  # fmt: skip
    bars = ticks_to_bars(**events(table), symbol="X", config=ALL_HOURS)
    if len(bars):
        out, _ = validate_bars(bars)
        pd.testing.assert_frame_equal(out, bars)
