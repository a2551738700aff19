"""Parity: a paper session replayed through the batch path (features, members, ensemble
and tiers, ``moola backtest`` on the journaled intents) agrees with its journal to the
last fill and equity snapshot, and a journal row altered afterwards is reported naming it.

The sessions run on the real engine, journal and paper broker; members are small
stand-ins with a p(up) from the bars (the promoted-run member's batch path is tested on
the runtime lab's promoted run).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from moola.core.errors import ConfigError, JournalError
from moola.runtime.brokers import PaperBroker
from moola.runtime.config import parse_live_config
from moola.runtime.engine import Engine
from moola.runtime.feed import ReplayFeed
from moola.runtime.parity import CHECKS, session_parity
from moola.runtime.session import open_journal, run_session
from moola.tracking.livedb import LiveJournal
from tests.runtime._lab import SMALL, SYMBOLS, MinuteFlip, build_feature_lab, two_symbol_bars


def _bars(n: int, seed: int = 3) -> pd.DataFrame:
    return two_symbol_bars(n, seed, open_noise=0.0005)


@dataclass(frozen=True)
class Momentum:
    """p(up) from the close against its 20-bar mean (any bar length)."""

    name: str = "trend"
    run_id: str = "momentum"
    weight: float = 0.40
    bars_needed: int = 20
    rows_needed: int = 0

    def value(self, symbol, bars, rows):
        if len(bars) < self.bars_needed:
            return None
        close = bars["close"].to_numpy()
        return 0.8 if close[-1] > close[-20:].mean() else 0.2


def _config(**overrides):
    values = {
        "symbols": list(SYMBOLS),
        "members": [{"role": "direction", "run": "scripted"}],
        "execution": {
            "instrument": "crypto",
            "initial_cash": 100_000.0,
            "rules": "none",
            "commission": 0.001,
            "spread": 0.02,
        },
        "risk": {"max_position": 200.0},
        "rate_limits": {"all_per_window": 1000, "high_per_window": 1000},
    }
    values.update(overrides)
    return parse_live_config(values)


def _session(path: Path, bars: pd.DataFrame, config, member) -> tuple[LiveJournal, str]:
    journal = LiveJournal(f"sqlite:///{path}")
    broker = PaperBroker(config.execution, config.symbols)
    feed = ReplayFeed(bars, config.symbols, config.timeframe, config.staleness)
    result = Engine(config, journal, broker, [member], feed, env={}).run()
    return journal, result.session_id


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One paper session of two symbols (150 one-minute bars each), journal closed."""
    path = tmp_path_factory.mktemp("parity") / "paper.db"
    journal, session_id = _session(path, _bars(150), _config(), MinuteFlip(period=20))
    journal.close()
    return path, session_id


@pytest.fixture
def copy(recorded, tmp_path):
    """A private copy of the recorded journal (tests may alter it), and the session id."""
    path, session_id = recorded
    target = tmp_path / "copy.db"
    with sqlite3.connect(path) as source, sqlite3.connect(target) as dest:
        source.backup(dest)
    return target, session_id


def _alter(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as db:
        assert db.execute(sql).rowcount == 1


def test_a_paper_session_has_the_batch_decisions_and_the_backtests_fills_and_equity(copy):
    """Replayed through batch features, the members and ``moola backtest`` (event engine,
    the session's terms, the journaled intents as targets), every journaled feature hash,
    decision, fill (time, qty, price, fee) and equity snapshot is the same."""
    path, session_id = copy
    journal = LiveJournal(f"sqlite:///{path}")
    report = session_parity(journal, session_id, members=[MinuteFlip(period=20)])
    assert report.ok and report.differences == () and report.total_differences == 0
    counts = {c.check: c.compared for c in report.checks}
    assert list(counts) == list(CHECKS)
    fills = journal.fills()
    assert len(fills) >= 8  # buys and sells of both symbols, with fees
    assert all(f["fee"] > 0 for f in fills)
    assert counts["features"] == 2 * 300  # hash and batch row, each bar
    assert counts["fills"] == 4 * len(fills)  # time, qty, price, fee
    assert counts["equity"] == 3 * len(fills)  # position, equity, cash per snapshot
    assert counts["members"] > 0 and counts["decisions"] > 0
    assert report.to_dict()["ok"] is True
    journal.close()


def test_an_altered_fill_price_is_reported_naming_it(copy):
    path, session_id = copy
    with sqlite3.connect(path) as db:
        fill_id, symbol, price = db.execute(
            "SELECT id, symbol, price FROM fills ORDER BY id LIMIT 1 OFFSET 2"
        ).fetchone()
    _alter(path, f"UPDATE fills SET price = price + 0.5 WHERE id = {fill_id}")
    journal = LiveJournal(f"sqlite:///{path}")
    report = session_parity(journal, session_id, members=[MinuteFlip(period=20)])
    assert not report.ok
    assert report.count("fills").differences == 1
    (diff,) = [d for d in report.differences if d.check == "fills"]
    assert (diff.symbol, diff.field) == (symbol, "price")
    assert diff.journal == pytest.approx(price + 0.5) and diff.replay == pytest.approx(price)
    assert report.count("features").differences == report.count("decisions").differences == 0
    journal.close()


def test_an_altered_feature_hash_is_reported_naming_its_bar(copy):
    path, session_id = copy
    _alter(
        path,
        "UPDATE iterations SET feature_hash = 'sha256:0' WHERE id = "
        "(SELECT id FROM iterations WHERE symbol = 'ETH' ORDER BY id LIMIT 1 OFFSET 40)",
    )
    journal = LiveJournal(f"sqlite:///{path}")
    report = session_parity(journal, session_id, members=[MinuteFlip(period=20)])
    assert report.count("features").differences == 1
    (diff,) = report.differences
    expected_bar = pd.Timestamp("2024-01-01T00:40:00Z").isoformat()
    assert (diff.check, diff.symbol, diff.bar, diff.field) == (
        "features",
        "ETH",
        expected_bar,
        "feature_hash",
    )
    assert diff.journal == "sha256:0" and diff.replay.startswith("sha256:")
    journal.close()


def test_a_changed_decision_is_reported_naming_the_field(copy):
    path, session_id = copy
    with sqlite3.connect(path) as db:
        decision_id, bar_time = db.execute(
            "SELECT d.id, i.bar_time FROM decisions d JOIN iterations i ON d.iteration_id = i.id "
            "WHERE i.symbol = 'BTC' AND d.tier = 'high' ORDER BY d.id LIMIT 1 OFFSET 5"
        ).fetchone()
    _alter(path, f"UPDATE decisions SET tier = 'low' WHERE id = {decision_id}")
    journal = LiveJournal(f"sqlite:///{path}")
    report = session_parity(journal, session_id, members=[MinuteFlip(period=20)])
    assert report.count("decisions").differences == 1
    (diff,) = report.differences
    assert (diff.check, diff.symbol, diff.field) == ("decisions", "BTC", "tier")
    assert (diff.journal, diff.replay) == ("low", "high")
    assert pd.Timestamp(diff.bar) == pd.Timestamp(bar_time, tz="UTC")
    journal.close()


def test_an_altered_equity_snapshot_is_reported_naming_it(copy):
    path, session_id = copy
    _alter(
        path,
        "UPDATE positions SET equity = equity - 1.0 WHERE id = "
        "(SELECT id FROM positions WHERE symbol = 'ETH' ORDER BY id LIMIT 1 OFFSET 1)",
    )
    journal = LiveJournal(f"sqlite:///{path}")
    report = session_parity(journal, session_id, members=[MinuteFlip(period=20)])
    assert report.count("equity").differences == 1
    (diff,) = report.differences
    assert (diff.check, diff.symbol, diff.field) == ("equity", "ETH", "equity")
    assert diff.journal == pytest.approx(diff.replay - 1.0)
    journal.close()


def test_members_need_the_data_root_of_their_runs(copy):
    path, session_id = copy
    journal = LiveJournal(f"sqlite:///{path}")
    with pytest.raises(ConfigError, match="root") as caught:
        session_parity(journal, session_id)
    assert caught.value.param == "root"
    journal.close()


def test_an_unknown_session_is_refused_naming_it(copy):
    path, _ = copy
    journal = LiveJournal(f"sqlite:///{path}")
    with pytest.raises(JournalError, match="no session 'nope'"):
        session_parity(journal, "nope", members=[MinuteFlip(period=20)])
    journal.close()


def test_sp500_daily_bars_replay_with_no_difference(tmp_path):
    """A paper session on the last 300 S&P 500 daily bars (the ``arch`` package's data)."""
    sp500 = pytest.importorskip("arch.data.sp500").load().tail(300)
    bars = pd.DataFrame(
        {
            "timestamp": pd.DatetimeIndex(sp500.index).tz_localize("UTC"),
            "open": sp500["Open"].to_numpy(),
            "high": sp500["High"].to_numpy(),
            "low": sp500["Low"].to_numpy(),
            "close": sp500["Close"].to_numpy(),
            "volume": sp500["Volume"].to_numpy(dtype=float),
            "symbol": "SPX",
        }
    )
    config = _config(
        symbols=["SPX"],
        timeframe="1d",
        members=[{"role": "trend", "run": "momentum"}],
        staleness={"max_gap_bars": 5},
        risk={"max_position": 30.0},
    )
    journal, session_id = _session(tmp_path / "paper.db", bars, config, Momentum())
    report = session_parity(journal, session_id, members=[Momentum()])
    assert report.ok, [str(d) for d in report.differences]
    assert report.count("fills").compared >= 4 * 4  # it traded
    journal.close()


def test_a_session_of_a_promoted_run_replays_through_its_batch_predictions(tmp_path):
    """The member's batch path: all windows of the recorded bars through the promoted
    run's Predictor at once, equal to the values the engine journaled bar by bar."""
    from tests.runtime._lab import build_lab

    root, run_id = build_lab(tmp_path)
    config = _config(
        members=[{"role": "direction", "run": run_id, "up_class": "retracement"}],
        execution={"instrument": "crypto", "initial_cash": 10_000.0, "rules": "none"},
        tiers={"high": 0.6, "medium": 0.55, "low": 0.51},
        risk={"max_position": 5.0},
    )
    result = run_session(root, config, replay="mkt", max_bars=300, env={})
    journal = open_journal(root, "paper", config, {})
    report = session_parity(journal, result.session_id, root=root)
    assert report.ok, [str(d) for d in report.differences]
    assert report.count("members").compared == 2 * 300  # value and run id, each bar
    assert report.count("fills").compared > 0
    journal.close()


def test_a_feature_window_member_replays_through_its_batch_predictions(tmp_path):
    """A promoted run on 10-row windows of a small feature set: its batch predictions over
    the session's feature rows equal what the engine journaled bar by bar."""
    root, run_id, _ = build_feature_lab(tmp_path, n_bars=300)
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL.to_yaml(), encoding="utf-8")
    config = _config(
        symbols=["BTC"],
        feature_set=str(spec),
        members=[{"role": "trend", "run": run_id, "up_class": "1"}],
        tiers={"high": 0.5004, "medium": 0.5002, "low": 0.5001},  # a weak model: trade it
    )
    result = run_session(root, config, replay="mkt", env={})
    journal = open_journal(root, "paper", config, {})
    report = session_parity(journal, result.session_id, root=root)
    assert report.ok, [str(d) for d in report.differences]
    values = journal.signals(include_flat=True)
    assert values["probability"].notna().sum() > 200  # the member gave values
    assert report.count("fills").compared > 0
    journal.close()
