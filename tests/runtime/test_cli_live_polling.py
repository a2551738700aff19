"""``moola live run`` without ``--replay``: a paper session on live closed bars polled from
Coinbase's public candles (a local fake of the API on 127.0.0.1), never the forming bar;
the kill switch stops a polled session while it waits; no replay and no feed: a clear
error."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
from typer.testing import CliRunner

from moola.cli.live import app
from moola.core.errors import ConfigError
from moola.runtime.config import load_live_config
from moola.runtime.engine import run_session
from tests.runtime._lab import SYMBOLS, build_lab, two_symbol_bars
from tests.runtime.fake_coinbase import FakeCoinbase

runner = CliRunner()
T0 = 1_767_225_600  # 2026-01-01 00:00 UTC
N = 400  # bars 0..399 closed; bar 400 forming at the fake's clock


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return build_lab(tmp_path_factory.mktemp("cli_live_polling"))


@pytest.fixture
def fake():
    bars = two_symbol_bars(N + 1, seed=3)
    candles = {
        symbol: [
            {"start": str(T0 + 60 * i), "open": str(r.open), "high": str(r.high),
             "low": str(r.low), "close": str(r.close), "volume": str(r.volume)}
            for i, r in enumerate(bars[bars["symbol"] == symbol].itertuples())
        ]
        for symbol in SYMBOLS
    }  # fmt: skip
    server = FakeCoinbase(candles=candles)
    server.now = float(T0 + 60 * N + 30)
    with server:
        yield server


@pytest.fixture
def session(lab, fake, tmp_path, monkeypatch):
    root, run_id = lab
    monkeypatch.setenv("MOOLA_HOME", str(root))
    for name in ("KILL_SWITCH", "DB_URL", "DB_URL_PAPER"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "live.yaml"
    config.write_text(
        "mode: paper\n"
        "symbols: [BTC, ETH]\n"
        "members:\n"
        f"  - {{role: direction, run: {run_id}, up_class: retracement}}\n"
        "execution: {instrument: crypto, initial_cash: 10000, rules: none}\n"
        "risk: {max_position: 5}\n"
        "feed: {source: coinbase, lookback_bars: 350, poll_seconds: 0.01, max_failed_polls: 1}\n"
        f"coinbase: {{base_url: '{fake.url}', max_retries: 0}}\n"
        f"journal_url: sqlite:///{tmp_path / 'paper.db'}\n",
        encoding="utf-8",
    )
    return root, config, tmp_path / "paper.db"


def test_a_paper_session_without_replay_trades_polled_closed_bars(session, fake):
    _, config, db = session
    result = runner.invoke(app, ["run", "--config", str(config), "--max-bars", "700"],
                           catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "max_bars 700 reached" in result.output
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT symbol, bar_time, bar FROM iterations").fetchall()
    assert len(rows) == 700 == len({(s, t) for s, t, _ in rows})  # bars 50..399, each once
    last = max(pd.Timestamp(t) for _, t, _ in rows)  # stored naive UTC
    assert last == pd.Timestamp(T0 + 60 * (N - 1), unit="s")  # never the forming bar 400
    assert fake.calls("GET", "/time") >= 1
    asked = [r for r in fake.requests if r[1].startswith("/market/products/")]
    assert {r[1] for r in asked} == {f"/market/products/{s}/candles" for s in SYMBOLS}
    status = runner.invoke(app, ["status", "--config", str(config)], catch_exceptions=False)
    assert "paper" in status.output


def test_the_kill_switch_stops_a_polled_session_while_it_waits(session, fake):
    root, config, _ = session
    env: dict[str, str] = {}
    delivered = 2 * 350  # the lookback; then the feed waits for the next close

    def on_bar(done: int, total: int) -> None:
        if done == delivered:
            env["KILL_SWITCH"] = "true"  # turned on while no bar is due
            fake.fail("GET", "/time", 503, 503)  # a feed that went on would fail, not hang

    result = run_session(root, load_live_config(config), env=env, on_bar=on_bar)
    assert result.bars == delivered
    assert result.stopped.startswith("feed stopped: kill switch on (env)")


def test_without_replay_or_feed_the_run_says_what_to_give(session):
    _, config, _ = session
    text = "".join(
        line
        for line in config.read_text(encoding="utf-8").splitlines(keepends=True)
        if not line.startswith("feed:")
    )
    config.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["run", "--config", str(config)])
    assert isinstance(result.exception, ConfigError)
    assert "replay a raw dataset" in str(result.exception) and "feed:" in str(result.exception)
    assert result.exception.param == "replay"  # `moola live run` names its --replay flag
