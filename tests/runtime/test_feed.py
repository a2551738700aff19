"""ReplayFeed: stored bars delivered as closed bars in time order, and the gap/staleness check
that refuses a bar for trading, naming it."""

from __future__ import annotations

import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.pipeline.datasets import synthesize_raw
from moola.runtime.config import StalenessConfig
from moola.runtime.feed import ReplayFeed, load_replay_bars


def _bars(symbol: str, start: str, n: int, skip: tuple[int, ...] = ()) -> pd.DataFrame:
    stamps = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    rows = [
        {
            "timestamp": t,
            "open": 1.0 + i,
            "high": 2.0 + i,
            "low": 0.5 + i,
            "close": 1.5 + i,
            "volume": 10.0,
            "symbol": symbol,
        }
        for i, t in enumerate(stamps)
        if i not in skip
    ]
    return pd.DataFrame(rows)


def test_bars_of_all_symbols_come_interleaved_in_time_order():
    bars = pd.concat([_bars("ETH", "2024-01-01", 5), _bars("BTC", "2024-01-01", 5)])
    feed = ReplayFeed(bars, ["BTC", "ETH"], "1m")
    out = list(feed)
    assert [(b.symbol, b.time.minute) for b in out[:4]] == [
        ("BTC", 0),
        ("ETH", 0),
        ("BTC", 1),
        ("ETH", 1),
    ]
    times = [b.time for b in out]
    assert times == sorted(times)
    assert all(b.closed_at == b.time + pd.Timedelta("1min") for b in out)
    assert all(b.refused is None for b in out)
    assert set(out[0].bar) == {"timestamp", "open", "high", "low", "close", "volume"}


def test_a_gap_refuses_the_bar_after_it_naming_it():
    feed = ReplayFeed(_bars("BTC", "2024-01-01", 6, skip=(3,)), ["BTC"], "1m")
    out = list(feed)
    refused = [b for b in out if b.refused]
    assert len(refused) == 1
    assert refused[0].time == pd.Timestamp("2024-01-01 00:04", tz="UTC")
    assert "gap" in refused[0].refused and "BTC" in refused[0].refused
    assert "2024-01-01T00:04:00" in refused[0].refused


def test_a_bar_older_than_the_max_age_is_refused_as_stale():
    now = pd.Timestamp("2024-01-01 00:10", tz="UTC")
    feed = ReplayFeed(
        _bars("BTC", "2024-01-01", 10),
        ["BTC"],
        "1m",
        StalenessConfig(max_bar_age_seconds=150),
        clock=lambda: now,
    )
    out = list(feed)
    fresh = [b.time.minute for b in out if b.refused is None]
    assert fresh == [7, 8, 9]  # closed at :08, :09, :10: at most 150 s before :10
    assert all("stale" in b.refused for b in out if b.refused)


def test_resume_after_skips_bars_already_processed():
    feed = ReplayFeed(_bars("BTC", "2024-01-01", 5), ["BTC"], "1m")
    after = {"BTC": pd.Timestamp("2024-01-01 00:02", tz="UTC")}
    assert [b.time.minute for b in feed.bars(after)] == [3, 4]


def test_a_symbol_without_bars_or_a_duplicated_bar_is_refused():
    with pytest.raises(ConfigError, match="ETH"):
        ReplayFeed(_bars("BTC", "2024-01-01", 5), ["BTC", "ETH"], "1m")
    twice = pd.concat([_bars("BTC", "2024-01-01", 3)] * 2)
    with pytest.raises(ConfigError, match="twice"):
        ReplayFeed(twice, ["BTC"], "1m")


def test_replay_source_is_a_file_or_a_raw_dataset(tmp_path):
    registry = Registry(tmp_path / "moola_data")
    synthesize_raw(registry, "mkt", n_bars=50, symbols=["A", "B"])
    from_registry = load_replay_bars(registry.root, "mkt@v1")
    assert len(from_registry) == 100
    path = tmp_path / "bars.csv"
    _bars("BTC", "2024-01-01", 5).to_csv(path, index=False)
    assert len(load_replay_bars(registry.root, str(path), "1m")) == 5
    with pytest.raises(ConfigError, match="nothere"):
        load_replay_bars(registry.root, "nothere")


def test_groups_hand_over_each_bar_time_whole_and_nothing_later():
    """The engine decides a bar time's symbols as one group: consecutive bars of equal
    time, in config order (a symbol without a bar then is simply absent), each group
    built only when asked for (the clock is read for its bars only)."""
    bars = pd.concat([_bars("ETH", "2024-01-01", 4, skip=(2,)), _bars("BTC", "2024-01-01", 4)])
    reads = []
    clock_time = pd.Timestamp("2024-01-01 00:05", tz="UTC")
    feed = ReplayFeed(bars, ["BTC", "ETH"], "1m", clock=lambda: reads.append(1) or clock_time)
    groups = feed.groups()
    first = next(groups)
    assert [(b.symbol, b.time.minute) for b in first] == [("BTC", 0), ("ETH", 0)]
    assert len(reads) == 2  # the next bar time is not read ahead
    rest = list(groups)
    assert [[(b.symbol, b.time.minute) for b in g] for g in rest] == [
        [("BTC", 1), ("ETH", 1)],
        [("BTC", 2)],
        [("BTC", 3), ("ETH", 3)],
    ]
    assert "gap" in rest[2][1].refused  # the same checks as bar by bar
    flat = [(b.symbol, b.time, b.refused) for b in ReplayFeed(bars, ["BTC", "ETH"], "1m")]
    grouped = ReplayFeed(bars, ["BTC", "ETH"], "1m").groups()
    assert [(b.symbol, b.time, b.refused) for g in grouped for b in g] == flat
    after = {"BTC": pd.Timestamp("2024-01-01 00:01", tz="UTC")}
    resumed = [[(b.symbol, b.time.minute) for b in g] for g in feed.groups(after)]
    assert resumed[:2] == [[("ETH", 0)], [("ETH", 1)]] and resumed[2] == [("BTC", 2)]
