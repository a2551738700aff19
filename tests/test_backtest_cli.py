"""``moola backtest file`` as a user runs it: outputs, printed results, and clean failures;
the old spelling ``moola backtest --bars ... --signals ...`` still works, saying so once."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from moola.cli.backtest import app
from moola.core.errors import ConfigError, SourceError
from moola.core.settings import Settings
from tests.conftest import random_walk_bars

runner = CliRunner()


@pytest.fixture
def files(tmp_path):
    bars = random_walk_bars(600, symbol="ES", timeframe="1h")
    frame = bars[["timestamp", "open", "high", "low", "close", "volume"]].copy()
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    bars_path = tmp_path / "es.csv"
    frame.to_csv(bars_path, index=False)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(600, size=40, replace=False))
    signals = pd.DataFrame(
        {
            "timestamp": bars["timestamp"].iloc[rows].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(),
            "position": rng.choice([-1.0, 0.0, 0.5, 1.0], size=40),
        }
    )
    signals_path = tmp_path / "signals.csv"
    signals.to_csv(signals_path, index=False)
    return bars_path, signals_path, signals


def invoke(tmp_path, *args: str, spelling: tuple[str, ...] = ("file",)):
    """``moola backtest file ARGS`` (``spelling=()``: the old ``moola backtest ARGS``)."""
    return runner.invoke(app, [*spelling, *args], obj=Settings(home=tmp_path / "home"))


def test_backtest_writes_results_and_prints_them(tmp_path, files):
    bars_path, signals_path, _ = files
    out = tmp_path / "out"
    result = invoke(
        tmp_path, "--bars", str(bars_path), "--signals", str(signals_path), "--out", str(out),
        "--symbol", "ES", "--timeframe", "1h", "--commission", "0.0005", "--spread", "0.02",
        "--slippage-bps", "1", "--cash", "50000",
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "Sharpe" in result.stdout and "Prop-firm rules" in result.stdout
    assert "daily_loss_limit" in result.stdout and "stats.json" in result.stdout
    stats = json.loads((out / "stats.json").read_text())
    assert stats["initial_equity"] == 50_000 and stats["instrument"] == "ES"
    assert stats["commission_paid"] > 0 and stats["spread_slippage_paid"] > 0
    assert (out / "equity.png").exists() and (out / "trades.csv").exists()
    assert len(pd.read_csv(out / "equity.csv")) == 600


def test_event_engine_futures_and_parquet_signals(tmp_path, files):
    bars_path, _, signals = files
    parquet = tmp_path / "signals.parquet"
    signals.to_parquet(parquet, index=False)
    out = tmp_path / "nq"
    result = invoke(
        tmp_path, "--bars", str(bars_path), "--signals", str(parquet), "--out", str(out),
        "--symbol", "NQ", "--timeframe", "1h", "--instrument", "futures:NQ",
        "--engine", "event", "--commission-per-unit", "2.5", "--latency", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    config = json.loads((out / "config.json").read_text())
    assert config["engine"] == "event" and config["latency_bars"] == 2
    assert config["instrument"]["point_value"] == 20.0
    fills = pd.read_csv(out / "fills.csv")
    assert (fills["fee"] == 2.5 * fills["qty"].abs()).all()
    assert (fills["bar"] - fills["decision_bar"] == 2).all()


def test_missing_bars_file_fails_cleanly(tmp_path, files):
    _, signals_path, _ = files
    out = tmp_path / "out"
    result = invoke(
        tmp_path, "--bars", str(tmp_path / "nope.csv"), "--signals", str(signals_path),
        "--out", str(out), "--timeframe", "1h",
    )  # fmt: skip
    assert result.exit_code != 0
    assert isinstance(result.exception, SourceError)
    assert "nope.csv" in str(result.exception) and "does not exist" in str(result.exception)
    assert not out.exists()


def test_missing_signals_file_fails_cleanly(tmp_path, files):
    bars_path, _, _ = files
    out = tmp_path / "out"
    result = invoke(
        tmp_path, "--bars", str(bars_path), "--signals", str(tmp_path / "sig.csv"),
        "--out", str(out), "--symbol", "ES", "--timeframe", "1h",
    )  # fmt: skip
    assert result.exit_code != 0 and isinstance(result.exception, SourceError)
    assert "sig.csv" in str(result.exception)
    assert not out.exists()


def test_signals_out_of_range_fail_naming_file_and_rows(tmp_path, files):
    bars_path, signals_path, signals = files
    signals.loc[[3, 7], "position"] = [2.0, -1.5]
    signals.to_csv(signals_path, index=False)
    out = tmp_path / "out"
    result = invoke(
        tmp_path, "--bars", str(bars_path), "--signals", str(signals_path), "--out", str(out),
        "--symbol", "ES", "--timeframe", "1h",
    )  # fmt: skip
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert str(signals_path) in message and "rows 3" in message and "7" in message
    assert "[-1, 1]" in message
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["es.csv", "signals.csv"]


def test_bad_flags_and_existing_output(tmp_path, files):
    bars_path, signals_path, _ = files
    base = ["--bars", str(bars_path), "--signals", str(signals_path), "--symbol", "ES",
            "--timeframe", "1h"]  # fmt: skip
    result = invoke(tmp_path, *base, "--out", str(tmp_path / "a"), "--engine", "fast")
    assert isinstance(result.exception, ConfigError) and "engine" in str(result.exception)
    assert not (tmp_path / "a").exists()
    result = invoke(tmp_path, *base, "--out", str(tmp_path / "a"), "--latency", "0")
    assert result.exit_code != 0 and "latency" in result.output.lower()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = invoke(tmp_path, *base, "--out", str(taken))
    assert isinstance(result.exception, ConfigError) and result.exception.param == "overwrite"
    assert "overwrite=True" in str(result.exception)  # `moola backtest file` says --overwrite
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    result = invoke(tmp_path, *base, "--out", str(taken), "--overwrite")
    assert result.exit_code == 0 and (taken / "stats.json").exists()
    assert not (taken / "keep.txt").exists()


def test_the_old_spelling_writes_the_same_results_and_one_deprecation_line(tmp_path, files):
    bars_path, signals_path, _ = files
    common = ["--bars", str(bars_path), "--signals", str(signals_path), "--symbol", "ES",
              "--timeframe", "1h", "--commission", "0.0005", "--latency", "2"]  # fmt: skip
    new = invoke(tmp_path, *common, "--out", str(tmp_path / "new"))
    assert new.exit_code == 0, new.output + repr(new.exception)
    assert "deprecated" not in new.stderr
    old = invoke(tmp_path, *common, "--out", str(tmp_path / "old"), spelling=())
    assert old.exit_code == 0, old.output + repr(old.exception)
    lines = [line for line in old.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "deprecated" in lines[0] and "moola backtest file" in lines[0]
    for name in ("stats.json", "config.json", "equity.csv", "trades.csv", "fills.csv"):
        assert (tmp_path / "new" / name).read_bytes() == (tmp_path / "old" / name).read_bytes()


def test_help_lists_both_subcommands_and_options_go_after_them(tmp_path, files):
    from moola.cli.main import app as moola

    result = runner.invoke(moola, ["backtest", "--help"])
    assert result.exit_code == 0
    assert "file" in result.stdout and "run" in result.stdout
    assert "--bars" not in result.stdout  # the old spelling's flags are hidden
    bars_path, signals_path, _ = files
    result = invoke(
        tmp_path, "--cash", "5000", "file", "--bars", str(bars_path), "--signals",
        str(signals_path), "--out", str(tmp_path / "o"), spelling=(),
    )  # fmt: skip
    assert isinstance(result.exception, ConfigError)
    assert "--cash must come after `file`" in str(result.exception)
    assert not (tmp_path / "o").exists()


def test_on_breach_halts_trading_at_the_first_breach(tmp_path, files):
    bars_path, signals_path, _ = files
    base = ["--bars", str(bars_path), "--signals", str(signals_path), "--symbol", "ES",
            "--timeframe", "1h", "--engine", "event"]  # fmt: skip
    terms = tmp_path / "terms.yaml"
    terms.write_text("rules:\n  - {rule: total_loss_limit, pct: 0.0001}\n")
    recorded, halted = tmp_path / "rec", tmp_path / "halt"
    result = invoke(tmp_path, *base, "--execution", str(terms), "--out", str(recorded))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "rule breach(es) (first: total_loss_limit" in " ".join(result.stdout.split())
    result = invoke(
        tmp_path, *base, "--execution", str(terms), "--on-breach", "halt", "--out", str(halted)
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    kept = pd.read_csv(recorded / "breaches.csv")
    assert list(pd.read_csv(halted / "breaches.csv")["rule"]) == list(kept["rule"])
    trades_on = len(pd.read_csv(recorded / "fills.csv"))
    assert len(pd.read_csv(halted / "fills.csv")) < trades_on  # nothing traded after the halt
    result = invoke(tmp_path, *base[:-2], "--on-breach", "halt", "--out", str(tmp_path / "v"))
    assert isinstance(result.exception, ConfigError) and "on_breach" in str(result.exception)
