"""``moola live run`` without ``--replay``: a paper session on live closed bars polled from
Coinbase's public candles (a local fake of the API on 127.0.0.1), never the forming bar;
the kill switch stops a polled session while it waits, or with ``kill_switch.flatten``
keeps it polling until its positions are closed; no replay and no feed: a clear error."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from moola.cli.live import KILLED_EXIT, app
from moola.core.errors import ConfigError
from moola.runtime.config import load_live_config
from moola.runtime.session import run_session
from moola.tracking.livedb import LiveJournal
from tests.runtime._lab import SYMBOLS, build_lab, cli_session, two_symbol_bars
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
    feed = "feed: {source: coinbase, lookback_bars: 350, poll_seconds: 0.01, max_failed_polls: 1}\n"
    coinbase = f"coinbase: {{base_url: '{fake.url}', max_retries: 0}}\n"
    config = cli_session(tmp_path, root, run_id, monkeypatch, feed + coinbase)
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


def _decided(db: Path) -> int:
    """How many bars the session in ``db`` has decided so far (0 before its journal is)."""
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT COUNT(*) FROM iterations").fetchone()[0]
    except sqlite3.Error:
        return 0


def _held(db: Path) -> dict[str, float]:
    """Each symbol's last journaled position, the flat ones left out."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT symbol, qty FROM positions ORDER BY id").fetchall()
    return {s: q for s, q in dict(rows).items() if q}


def test_the_kill_switch_with_flatten_keeps_a_polled_session_polling_until_flat(session, fake):
    """``moola live run`` polls; once it has decided the closed bars and waits for the next
    one, holding a position, ``moola live kill on`` (another process) turns it off with
    ``kill_switch: {flatten: true}``: it goes on polling, closes every position at the next
    closed bars by ``flatten`` orders naming the kill switch, ends flat and exits
    ``KILLED_EXIT``."""
    _, config, db = session
    config.write_text(
        config.read_text(encoding="utf-8") + "kill_switch: {flatten: true}\n", encoding="utf-8"
    )
    for rows in fake.candles.values():  # three more bars to close once the clock moves
        rows += [{**rows[-1], "start": str(T0 + 60 * i)} for i in range(N + 1, N + 4)]
    delivered = 2 * 350  # the lookback's bars; then the feed waits for the next close
    seen: dict = {}
    finished = threading.Event()

    def operator() -> None:
        """What a person does while the session polls; on a timeout it makes the feed fail
        (the session ends, the test fails) rather than hang."""
        deadline = time.monotonic() + 120
        try:
            while _decided(db) < delivered:
                assert time.monotonic() < deadline, "the lookback was never decided"
                time.sleep(0.1)
            seen["held"] = _held(db)
            kill = subprocess.run(
                [str(Path(sys.executable).with_name("moola")), "live", "kill", "on",
                 "--config", str(config), "--by", "ops", "--reason", "flatten drill"],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            seen["kill"] = kill.returncode, kill.stdout + kill.stderr
            polls = fake.calls("GET", "/time")
            while fake.calls("GET", "/time") < polls + 3:  # polling on, no bar due
                assert not finished.is_set(), "the session stopped instead of polling"
                assert time.monotonic() < deadline, "the session stopped polling"
                time.sleep(0.05)
            seen["decided_at_kill"] = _decided(db)
            for _ in range(3):  # one bar closes at a time, each once the last is decided
                decided = _decided(db)
                fake.advance(60)
                while _decided(db) == decided and not finished.is_set():
                    assert time.monotonic() < deadline, "a closed bar was never decided"
                    time.sleep(0.05)
        except AssertionError as exc:
            seen["error"] = str(exc)
            fake.fail("GET", "/time", *([503] * 50))

    thread = threading.Thread(target=operator, daemon=True)
    thread.start()
    try:
        result = runner.invoke(app, ["run", "--config", str(config)], catch_exceptions=False)
    finally:
        finished.set()
    thread.join(timeout=30)
    assert "error" not in seen, seen.get("error")
    assert seen["kill"][0] == 0, seen["kill"][1]
    assert seen["held"], "the test's premise: a position is held when the kill switch goes on"
    assert seen["decided_at_kill"] == delivered  # the kill alone decided nothing more
    assert result.exit_code == KILLED_EXIT, result.output
    assert "stopped: kill switch on (journal)" in result.output

    journal = LiveJournal(f"sqlite:///{db}")
    try:
        positions = {p["symbol"]: p["qty"] for p in journal.status()["positions"]}
        signals = journal.signals(include_flat=True)
    finally:
        journal.close()
    assert not any(positions.values())  # flat
    assert _decided(db) > delivered  # it went on deciding the bars closed after the kill
    flattens = signals[signals["action"] == "flatten"]
    assert sorted(flattens["symbol"]) == sorted(seen["held"])  # one closing order each
    assert all(any("kill switch on (journal)" in r for r in rs) for rs in flattens["reasons"])
    assert set(flattens["status"]) == {"filled"}
    assert list(flattens["filled_qty"]) == pytest.approx(
        [abs(seen["held"][s]) for s in flattens["symbol"]]
    )
    assert signals["action"].iloc[-1] == "killed"
