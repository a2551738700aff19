"""PollingFeed: live closed bars polled from Coinbase's public candles (a local fake of the
API on 127.0.0.1 whose clock the test moves), never the bar still forming, in order, never
twice, gaps reported, failures retried, and a clean stop; open_feed builds a session's feed.
"""

from __future__ import annotations

import itertools
import logging

import pandas as pd
import pytest

from moola.core.errors import ConfigError, SourceError
from moola.runtime.brokers import PaperBroker
from moola.runtime.brokers.coinbase import CoinbasePublicMarket
from moola.runtime.config import StalenessConfig, parse_live_config
from moola.runtime.engine import Engine
from moola.runtime.feed import PollingFeed, ReplayFeed, open_feed
from moola.tracking.livedb import LiveJournal
from tests.runtime.fake_coinbase import FakeCoinbase

T0 = 1_767_225_600  # 2026-01-01 00:00 UTC
SYMBOLS = ("BTC-USD", "ETH-USD")


def _candle(symbol: str, i: int) -> dict:
    """Bar ``i`` of ``symbol`` as final: close differs from open, so a forming copy (every
    price its open) can never pass for it."""
    base = 100.0 if symbol == "BTC-USD" else 200.0
    o = base + i
    return {"start": str(T0 + 60 * i), "open": str(o), "high": str(o + 2), "low": str(o - 1),
            "close": str(o + 1), "volume": str(10.0 + i)}  # fmt: skip


def _final(symbol: str, i: int) -> dict:
    c = _candle(symbol, i)
    return {k: float(c[k]) for k in ("open", "high", "low", "close", "volume")}


@pytest.fixture
def fake():
    server = FakeCoinbase(candles={s: [_candle(s, i) for i in range(60)] for s in SYMBOLS})
    server.now = float(T0 + 60 * 10 + 30)  # bar 10 is forming
    with server:
        yield server


def _feed(fake, *, sleep=None, max_retries=1, **kw) -> PollingFeed:
    sleep = fake.advance if sleep is None else sleep
    source = CoinbasePublicMarket(
        base_url=fake.url, timeout=2.0, max_retries=max_retries, backoff=0.5, sleep=sleep
    )
    kw.setdefault("lookback_bars", 5)
    kw.setdefault("settle_seconds", 0.0)
    kw.setdefault("poll_seconds", 20.0)
    return PollingFeed(source, SYMBOLS, "1m", sleep=sleep, **kw)


def _until(fake, minute: float):
    """stop_when: stop once the exchange's clock reaches ``minute`` past T0."""
    return lambda: "done" if fake.now >= T0 + 60 * minute else None


def test_only_closed_bars_come_in_order_never_twice_and_never_before_they_close(fake):
    feed = _feed(fake, stop_when=_until(fake, 14.5))
    seen = []  # (bar, the exchange's clock when it was delivered)
    for fb in feed:
        seen.append((fb, pd.Timestamp(fake.now, unit="s", tz="UTC")))
    assert feed.stop_reason == "done"
    # lookback 5 closed bars (5..9) at 00:10:30, then each bar as it closes, up to 13
    for symbol in SYMBOLS:
        mine = [fb for fb, _ in seen if fb.symbol == symbol]
        assert [int(fb.time.timestamp() - T0) // 60 for fb in mine] == list(range(5, 14))
        for fb in mine:  # the final values: a forming copy was never taken for the bar
            i = int(fb.time.timestamp() - T0) // 60
            assert {k: fb.bar[k] for k in _final(symbol, i)} == _final(symbol, i)
    for fb, delivered_at in seen:  # no lookahead: closed by the exchange's clock
        assert fb.closed_at == fb.time + pd.Timedelta("1min") <= delivered_at
    order = [(fb.time, SYMBOLS.index(fb.symbol)) for fb, _ in seen]
    assert order == sorted(order)  # interleaved by time, symbols in config order
    assert all(fb.refused is None for fb, _ in seen[10:])  # fresh bars are fit to trade
    # every poll asked only for bars after the last delivered one
    asked = [int(q["start"][0]) for m, p, q, _ in fake.requests if p.endswith("BTC-USD/candles")]
    assert asked[0] == T0 + 60 * 5 and all(a > T0 + 60 * 5 for a in asked[1:])
    assert feed.dropped == 0


def test_a_bar_counts_as_closed_only_settle_seconds_after_its_end(fake):
    fake.now = float(T0 + 60 * 4 + 1)  # bar 3 ended a second ago
    feed = _feed(fake, settle_seconds=2.0, poll_seconds=1.0, lookback_bars=2)
    bars = iter(feed)
    first = [next(bars) for _ in range(4)]  # bars 1 and 2 (bar 3 ended, not settled)
    assert [fb.time.minute for fb in first] == [1, 1, 2, 2] and fake.now == T0 + 241
    fb = next(bars)  # one poll later (one second on), bar 3 has settled
    assert fb.time == pd.Timestamp(T0 + 180, unit="s", tz="UTC") and fake.now >= T0 + 242
    assert fb.bar["close"] == _final(fb.symbol, 3)["close"]


def test_a_missing_bar_is_a_gap_reported_on_the_next_one(fake):
    fake.candles["BTC-USD"] = [c for c in fake.candles["BTC-USD"] if c["start"] != str(T0 + 420)]
    feed = _feed(fake, stop_when=_until(fake, 9.5))
    gaps = {(fb.symbol, fb.time.minute): fb.refused for fb in feed if "gap" in (fb.refused or "")}
    assert list(gaps) == [("BTC-USD", 8)]
    assert "BTC-USD" in gaps[("BTC-USD", 8)] and "2 bars after" in gaps[("BTC-USD", 8)]


def test_lookback_bars_warm_up_but_are_stale_by_the_exchanges_clock(fake):
    feed = _feed(fake, lookback_bars=5, staleness=StalenessConfig(max_bar_age_seconds=100))
    first = list(itertools.islice(feed, 10))  # the lookback: bars 5..9 closed 00:06..00:10
    fresh = {fb.time.minute for fb in first if fb.refused is None}
    assert fresh == {8, 9}  # closed at most 100 s before 00:10:30
    assert all("stale" in fb.refused for fb in first if fb.time.minute < 8)


def test_a_failed_poll_delivers_nothing_then_the_next_catches_up(fake, caplog):
    feed = _feed(fake, max_retries=0, stop_when=_until(fake, 13.5), max_failed_polls=3)
    feed.prime()
    fake.fail("GET", "/market/products/ETH-USD/candles", 500, 500)
    with caplog.at_level(logging.WARNING):
        delivered = list(feed)
    assert any("poll" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
    for symbol in SYMBOLS:  # nothing lost: the bars of the failed polls came later, in order
        minutes = [fb.time.minute for fb in delivered if fb.symbol == symbol]
        assert minutes == list(range(5, 13))
    assert not any(fb.refused for fb in delivered[10:])


def test_too_many_failed_polls_in_a_row_stop_the_feed_with_the_error(fake):
    feed = _feed(fake, max_retries=0, max_failed_polls=2)
    feed.prime()
    fake.fail("GET", "/time", 503, 503, 503)
    with pytest.raises(SourceError, match=r"failed 3 polls in a row.*HTTP 503"):
        list(feed)


def test_a_429_is_retried_after_its_retry_after(fake):
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        fake.advance(seconds)

    fake.fail("GET", "/market/products/BTC-USD/candles", (429, 7))
    feed = _feed(fake, sleep=sleep)
    assert len(list(itertools.islice(feed, 10))) == 10
    assert waits[0] == 7.0  # the retry, not a poll interval


def test_the_first_poll_must_succeed_and_says_how_to_trade_without_network():
    config = parse_live_config(
        {
            "symbols": list(SYMBOLS),
            "members": [{"role": "direction", "run": "r"}],
            "feed": {"source": "coinbase"},
            "coinbase": {"base_url": "http://127.0.0.1:9", "max_retries": 0, "timeout_seconds": 1},
        }
    )
    with pytest.raises(SourceError, match=r"needs the network.*replay a raw dataset") as error:
        open_feed("unused-root", config, sleep=lambda s: None)
    assert error.value.param == "replay"  # the command line names its flag


def test_stops_cleanly_on_ctrl_c_the_stop_check_or_a_consumer_that_stops(fake):
    def interrupted(seconds):
        raise KeyboardInterrupt

    feed = _feed(fake, sleep=interrupted)
    assert len(list(feed)) == 10  # the lookback, then Ctrl-C while waiting
    assert feed.stop_reason == "interrupted (Ctrl-C)" and feed.source._client.is_closed
    feed = _feed(fake, stop_when=lambda: "kill switch on (journal): test")
    assert len(list(feed)) == 10 and feed.stop_reason == "kill switch on (journal): test"
    feed = _feed(fake)
    bars = iter(feed)
    next(bars)
    bars.close()  # what a loop that breaks (max_bars) does to the generator
    assert feed.source._client.is_closed


def test_open_feed_replays_when_asked_and_refuses_no_source(tmp_path):
    base = {"symbols": ["BTC"], "members": [{"role": "direction", "run": "r"}]}
    with pytest.raises(ConfigError, match=r"replay a raw dataset.*feed:"):
        open_feed(tmp_path, parse_live_config(base))
    with pytest.raises(ConfigError, match="3m"):
        open_feed(tmp_path, parse_live_config({**base, "timeframe": "3m", "feed": {}}))
    path = tmp_path / "bars.csv"
    stamps = pd.date_range("2024-01-01", periods=3, freq="1min", tz="UTC")
    pd.DataFrame({"timestamp": stamps, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
                  "volume": 1.0, "symbol": "BTC"}).to_csv(path, index=False)  # fmt: skip
    feed = open_feed(tmp_path, parse_live_config({**base, "feed": {}}), replay=str(path))
    assert isinstance(feed, ReplayFeed) and len(feed) == 3


class _Up:
    """A stand-in member: p(up) 0.9 once it has 3 bars."""

    name, run_id, weight, bars_needed, rows_needed = "direction", "stand-in", 0.35, 3, 0

    def value(self, symbol, bars, rows):
        return None if len(bars) < self.bars_needed else 0.9


def test_the_engine_trades_the_polled_bars_and_journals_each_once(fake, tmp_path):
    config = parse_live_config(
        {
            "symbols": list(SYMBOLS),
            "members": [{"role": "direction", "run": "stand-in"}],
            "execution": {"instrument": "crypto", "initial_cash": 100_000.0, "rules": "none"},
            "risk": {"max_position": 1000.0, "atr_period": 2},
            "staleness": {"max_bar_age_seconds": 90},
            "feed": {"lookback_bars": 5},
        }
    )
    journal = LiveJournal(f"sqlite:///{tmp_path / 'paper.db'}")
    feed = _feed(fake, staleness=config.staleness, stop_when=_until(fake, 13.5))
    broker = PaperBroker(config.execution, config.symbols)
    engine = Engine(config, journal, broker, [_Up()], feed, env={}, resume_book=False)
    result = engine.run()
    record = journal.session_record(result.session_id)
    decided = [(it.symbol, it.bar_time) for it in record.iterations]
    assert len(decided) == len(set(decided)) == result.decided == 16  # bars 5..12, twice
    stale = [it for it in record.iterations if "stale" in " ".join(it.decision.reasons)]
    assert {it.bar_time.minute for it in stale} == {5, 6, 7}  # closed over 90 s before 00:10:30
    traded = [it for it in record.iterations if it.intents]
    assert [(it.symbol, it.bar_time.minute) for it in traded] == [("BTC-USD", 8), ("ETH-USD", 8)]
    assert result.intents == 2  # the first fresh bars after the warm-up; the stale ones never
    journal.close()


def test_groups_hand_over_what_one_poll_returned_split_by_bar_time_without_waiting(fake):
    """groups(): each poll's bars, one list per bar time, handed over at once (the feed
    does not wait for the next poll to complete a group): a symbol whose bar of a time
    comes only with a later poll is a group of its own then."""
    eth = fake.candles["ETH-USD"]
    fake.candles["ETH-USD"] = [c for c in eth if c["start"] != str(T0 + 600)]  # ETH 10 late

    def sleep(seconds):
        fake.advance(seconds)
        if fake.now >= T0 + 60 * 11 + 30:  # the late bar reaches the source
            fake.candles["ETH-USD"] = eth

    feed = _feed(fake, sleep=sleep, stop_when=_until(fake, 12.5))
    got = []
    for group in feed.groups():
        got.append(([(fb.symbol, fb.time.minute) for fb in group], feed.polls))
    lookback = [([("BTC-USD", m), ("ETH-USD", m)], 1) for m in range(5, 10)]
    assert got[:5] == lookback  # the first poll's five bar times, before any other poll
    after = [(bars, polls - got[5][1]) for bars, polls in got[5:]]
    assert after == [
        ([("BTC-USD", 10)], 0),  # ETH's bar 10 is not there yet: BTC's goes alone
        ([("ETH-USD", 10)], 1),  # the next poll (00:11:30) brings it
        ([("BTC-USD", 11), ("ETH-USD", 11)], 3),  # 00:12:10 (00:11:50 found none)
    ]
    assert feed.stop_reason == "done"
