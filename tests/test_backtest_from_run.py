"""``moola backtest run``: a trained run's out-of-fold signals, backtested honestly.

The data: a seeded synthetic futures market (sessions with daily breaks and weekends),
windows of 50 bars every 60 bars labelled by the direction of the next 20 bars' return,
so the first window after a test fold starts 11 bars after its last window ends: inside
the 20 bars that window's signal trades unless the split has an embargo.
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from moola.backtest.signals import Hysteresis, ThresholdHold, hold_positions, signal_targets
from moola.cli.backtest import app
from moola.core.errors import ConfigError, IntegrityError, LeakageError
from moola.core.settings import Settings
from moola.data.registry import Registry
from moola.data.splits import Fold
from moola.data.windows import labeled_windows_table, window_starts
from moola.evaluation.gates import GateConfig
from moola.features.labels import forward_return_direction
from moola.pipeline.backtests import backtest_run, find_leaks
from moola.pipeline.datasets import make_and_store_split, synthesize_raw
from moola.pipeline.lifecycle import promote, write_report
from moola.pipeline.train import TrainConfig, run_training
from moola.tracking.journal import BacktestRecorded, JsonlJournal
from moola.tracking.runs import RunStore

LENGTH, STRIDE, HORIZON = 50, 60, 20
runner = CliRunner()


class Lab:
    registry: Registry
    bars: pd.DataFrame
    leaky_run: str
    safe_run: str
    holdout_run: str
    leak_message: str
    safe_embargo: str


def _train(registry: Registry, split: str) -> str:
    config = TrainConfig(model="logistic_regression", dataset="dir", split=split, n_bootstrap=50)
    return run_training(registry, config).run_id


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    """Runs on a purged k-fold without embargo, with the embargo the refusal asks for,
    and on a forward-chaining (holdout) split."""
    out = Lab()
    out.registry = registry = Registry(tmp_path_factory.mktemp("home"))
    raw, _ = synthesize_raw(registry, "mkt", n_bars=40_000, seed=3, calendar="futures")
    out.bars = bars = registry.load_raw("mkt")
    starts = window_starts(bars, LENGTH, stride=STRIDE)
    direction = forward_return_direction(bars, HORIZON)["label"].to_numpy()[starts + LENGTH - 1]
    keep = np.isfinite(direction) & (direction != 0)
    labels = np.where(direction[keep] > 0, "up", "down")
    table = labeled_windows_table(bars, starts[keep], LENGTH, labels)
    ref = registry.write_labeled("dir", raw, table, length=LENGTH)
    make_and_store_split(registry, ref, "purged-kfold", name="kf0", folds=5, embargo=0)
    make_and_store_split(registry, ref, "forward-chaining", name="fc", purge=HORIZON)
    out.leaky_run = _train(registry, "kf0")
    out.holdout_run = _train(registry, "fc")
    with pytest.raises(LeakageError) as caught:
        backtest_run(
            registry, out.leaky_run, long_class="up", short_class="down", hold_bars=HORIZON
        )
    out.leak_message = str(caught.value)
    out.safe_embargo = re.search(r"--embargo (\S+)`", out.leak_message).group(1)
    make_and_store_split(
        registry, ref, "purged-kfold", name="kf-safe", folds=5, embargo=out.safe_embargo
    )
    out.safe_run = _train(registry, "kf-safe")
    return out


def _leaky_rows_by_hand(registry: Registry, run_id: str, bars: pd.DataFrame, hold: int) -> set:
    """Covered rows whose bars end+1 .. end+hold meet a window their fold trained on."""
    manifest = json.loads((RunStore(registry.root).run_dir(run_id) / "manifest.json").read_text())
    split, _ = registry.load_split(manifest["config"]["split"])
    table = registry.load_labeled("dir").table
    stamps = bars["timestamp"]
    found = set()
    for fold in split.folds:
        train = table.iloc[fold.train]
        for row in fold.test:
            end = int(table["end"].iloc[row])
            first, last = stamps.iloc[end + 1], stamps.iloc[min(end + hold, len(bars) - 1)]
            if ((train["start_ts"] <= last) & (train["end_ts"] >= first)).any():
                found.add(row)
    return found


# ------------------------------------------------------------------------- pure parts


def test_signal_targets_follow_threshold_and_the_larger_probability():
    p_up = np.array([0.7, 0.5, 0.3, 0.49, 0.6, 0.55])
    p_down = np.array([0.3, 0.5, 0.7, 0.51, 0.6, 0.45])
    assert signal_targets(p_up, None, 0.5).tolist() == [1, 1, 0, 0, 1, 1]
    assert signal_targets(p_up, p_down, 0.5).tolist() == [1, 0, -1, -1, 0, 1]
    assert signal_targets(p_up, p_down, 0.6).tolist() == [1, 0, -1, 0, 0, 0]


def test_hold_positions_hold_then_go_flat_and_later_signals_replace_earlier():
    # bar 2 long, bar 4 short (replaces it), bar 8 long then bar 9 flat (replaces it),
    # two signals at bar 11: the later entry wins.
    targets = hold_positions(
        14, np.array([2, 4, 8, 9, 11, 11]), np.array([1.0, -1.0, 1.0, 0.0, 1.0, -1.0]), 3
    )
    expected = [0, 0, 1, 1, -1, -1, -1, 0, 1, 0, 0, 0, 0, 0]
    expected[11:14] = [-1, -1, -1]
    assert targets.tolist() == expected
    assert hold_positions(5, np.array([], dtype=np.int64), np.array([]), 3).tolist() == [0] * 5


# ----------------------------------------------------------------------- leakage check


def test_run_without_embargo_is_refused_naming_rows_fold_and_fix(lab):
    message = lab.leak_message
    assert "trained on row(s)" in message and "skip_leaky=True" in message
    assert f"at least hold_bars ({HORIZON}) bars" in message
    # the suggested embargo covers the holding time
    assert pd.Timedelta(lab.safe_embargo) >= pd.Timedelta(minutes=HORIZON)
    named = re.search(r"row (\d+) \(fold (\d+), .*?trained on row\(s\) ([\d, ]+)", message)
    row, fold, trained = int(named[1]), int(named[2]), [int(x) for x in named[3].split(",")]
    split, _ = lab.registry.load_split("kf0")
    assert row in split.folds[fold].test and set(trained) <= set(split.folds[fold].train)
    assert row in _leaky_rows_by_hand(lab.registry, lab.leaky_run, lab.bars, HORIZON)
    run_dir = RunStore(lab.registry.root).run_dir(lab.leaky_run)
    assert not (run_dir / "backtests").exists()  # refused before anything was written


@pytest.mark.parametrize("hold", [HORIZON, STRIDE - LENGTH + 1, STRIDE - LENGTH])
def test_skipping_leaky_predictions_runs_and_counts_them(lab, hold):
    """The next window starts 11 bars after a window ends (within a session): holding 11
    bars reaches it, holding 10 does not."""
    _, record = backtest_run(
        lab.registry,
        lab.leaky_run,
        long_class="up",
        short_class="down",
        hold_bars=hold,
        skip_leaky=True,
        prop_firm_rules=False,
    )
    by_hand = _leaky_rows_by_hand(lab.registry, lab.leaky_run, lab.bars, hold)
    counts, check = record["counts"], record["leakage_check"]
    assert counts["skipped_leaky"] == len(by_hand)
    assert set(check["leaky_rows"]) == by_hand and check["passed"] == (not by_hand)
    assert counts["used"] == counts["checked"] - len(by_hand)
    if hold > STRIDE - LENGTH:
        assert by_hand and check["skipped"]


def test_find_leaks_counts_spans_that_touch_the_traded_period():
    # row 0 is tested and trades [100, 200]; rows 1..4 are fitted on.
    span_start = np.array([10, 50, 50, 200, 201])
    span_end = np.array([90, 99, 100, 250, 300])
    folds = [Fold(train=[1, 2, 3, 4], test=[0])]
    report = find_leaks(
        np.array([0]), np.array([100]), np.array([200]), folds, span_start, span_end
    )
    assert report.leaky.tolist() == [True] and report.examples == [(0, 0, [2, 3])]
    assert report.needed_embargo_ns == 200 - 90
    for touching, row in (([1, 2], 2), ([3, 4], 3)):  # only one span touches an end
        one = [Fold(train=touching, test=[0])]
        report = find_leaks(
            np.array([0]), np.array([100]), np.array([200]), one, span_start, span_end
        )
        assert report.examples == [(0, 0, [row])]
    clear = [Fold(train=[1, 4], test=[0])]
    report = find_leaks(
        np.array([0]), np.array([100]), np.array([200]), clear, span_start, span_end
    )
    assert report.count == 0 and report.needed_embargo_ns == 0
    nothing_traded = find_leaks(np.array([0]), np.array([201]), np.array([200]), folds,
                                span_start, span_end)  # fmt: skip
    assert nothing_traded.count == 0
    with pytest.raises(IntegrityError, match=r"row\(s\) \[1\]"):
        find_leaks(np.array([1]), np.array([100]), np.array([200]), folds, span_start, span_end)


def test_split_with_the_suggested_embargo_backtests_into_the_run_folder(lab):
    store = RunStore(lab.registry.root)
    run_dir = store.run_dir(lab.safe_run)
    manifest_hash = hashlib.sha256((run_dir / "manifest.json").read_bytes()).hexdigest()
    result, record = backtest_run(
        lab.registry,
        lab.safe_run,
        long_class="up",
        short_class="down",
        hold_bars=HORIZON,
        commission=0.0002,
    )
    assert record["leakage_check"]["passed"] and record["counts"]["skipped_leaky"] == 0
    assert _leaky_rows_by_hand(lab.registry, lab.safe_run, lab.bars, HORIZON) == set()
    folder = run_dir / record["path"]
    assert folder.parent == run_dir / "backtests"
    for name in ("backtest.json", "trades.csv", "equity.csv", "stats.json", "equity.png"):
        assert (folder / name).is_file()
    assert json.loads((folder / "backtest.json").read_text()) == record
    assert record["stats"]["n_trades"] == len(result.trades) > 0
    assert record["stats"]["commission_paid"] > 0
    assert record["counts"]["long"] + record["counts"]["short"] > 0
    assert hashlib.sha256((run_dir / "manifest.json").read_bytes()).hexdigest() == manifest_hash
    line = store.results()[-1]
    assert line["kind"] == "backtest" and line["run_id"] == lab.safe_run
    # The policy traded is recorded by value and hash, and the journal has the backtest.
    policy = ThresholdHold(threshold=0.5, hold_bars=HORIZON)
    assert record["policy"] == {"policy": "threshold_hold", "threshold": 0.5, "hold_bars": HORIZON}
    assert record["policy_hash"] == policy.policy_hash
    event = JsonlJournal(lab.registry.root).read("backtest_recorded")[-1]
    assert isinstance(event, BacktestRecorded) and event.at == record["at"]
    assert event.payload.run_id == lab.safe_run and event.payload.backtest == record["path"]
    assert event.payload.execution_hash == record["execution_hash"]
    assert event.payload.policy_hash == policy.policy_hash
    assert event.payload.stats == {
        key: record["stats"][key] for key in ("sharpe", "max_drawdown", "total_return", "n_trades")
    }

    # The backtest now feeds the run's report and its promotion gates.
    html = write_report(lab.registry, lab.safe_run).read_text()
    assert "Backtest of the run" in html and "Leakage check passed" in html
    impossible = GateConfig(min_accuracy=0.0, max_ece=1.0, min_sharpe=1e9)
    with pytest.raises(ConfigError, match=r"sharpe: .* vs threshold 1000000000"):
        promote(lab.registry, lab.safe_run, impossible)
    decision = JsonlJournal(lab.registry.root).read("gate_decision")[-1].payload
    sharpe = next(g for g in decision.gates["gates"] if g["name"] == "sharpe")
    assert sharpe["value"] == pytest.approx(record["stats"]["sharpe"])


@pytest.mark.parametrize("latency", [1, 2])
def test_signals_fill_after_the_window_ends_and_hold_for_the_horizon(lab, latency):
    result, record = backtest_run(
        lab.registry,
        lab.safe_run,
        long_class="up",
        hold_bars=HORIZON,
        latency_bars=latency,
        prop_firm_rules=False,
    )
    table = lab.registry.load_labeled("dir").table
    predictions = lab.registry.load_table("predictions", lab.safe_run)
    ends = table["end"].to_numpy()[predictions["covered"].to_numpy(bool)]
    longs = predictions["p_up"].to_numpy()[predictions["covered"].to_numpy(bool)] >= 0.5
    stamps = lab.bars["timestamp"]
    # Position held, by hand: long over bars end+latency .. end+hold+latency-1 of the latest
    # signal (a later signal, long or flat, takes over).
    expected = np.zeros(len(lab.bars), dtype=bool)
    for end, long in zip(ends, longs, strict=True):
        expected[end + latency : end + HORIZON + latency] = long
    held = result.equity["position"].to_numpy() != 0
    assert (held == expected).all()
    # Entries: at the open of the bar `latency` after a long signal's window end, never earlier.
    entry_bars = stamps.searchsorted(result.trades["entry_time"])
    assert set(entry_bars) <= set(ends[longs] + latency)
    first_window_end = stamps.iloc[ends[longs].min()]
    assert (result.trades["entry_time"] > first_window_end).all()
    assert np.allclose(result.trades["entry_price"], lab.bars["open"].to_numpy()[entry_bars])
    fills = result.fills
    assert (fills["bar"] - fills["decision_bar"] == latency).all()
    assert record["config"]["latency_bars"] == latency and record["short_class"] is None


def test_holdout_run_is_refused(lab):
    with pytest.raises(ConfigError, match="out-of-fold predictions"):
        backtest_run(lab.registry, lab.holdout_run, long_class="up", hold_bars=HORIZON)


def test_bad_options_are_refused_naming_the_parameter(lab):
    with pytest.raises(ConfigError, match=r"long_class 'upp'.*Did you mean 'up'") as info:
        backtest_run(lab.registry, lab.safe_run, long_class="upp", hold_bars=HORIZON)
    assert info.value.param == "long_class"
    with pytest.raises(ConfigError, match="hold_bars") as info:
        backtest_run(lab.registry, lab.safe_run, long_class="up", hold_bars=0)
    assert info.value.param == "hold_bars"
    with pytest.raises(ConfigError, match="threshold") as info:
        backtest_run(lab.registry, lab.safe_run, long_class="up", hold_bars=5, threshold=1.5)
    assert info.value.param == "threshold"
    with pytest.raises(ConfigError, match="symbol 'ES'") as info:
        backtest_run(lab.registry, lab.safe_run, long_class="up", hold_bars=5, symbol="ES")
    assert info.value.param == "symbol"


def test_the_cli_names_the_flags_of_bad_options(lab, capsys):
    from moola.cli.main import main

    root = ("--data-root", str(lab.registry.root))
    for extra, said in (
        (("--long-class", "upp", "--hold-bars", "5"), "--long-class 'upp' is not a class"),
        (("--long-class", "up", "--hold-bars", "0"), "--hold-bars must be a whole number"),
        (("--long-class", "up", "--hold-bars", "5", "--symbol", "ES"), "--symbol 'ES' has no"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([*root, "backtest", "run", lab.safe_run, *extra])
        err = " ".join(capsys.readouterr().err.split())
        assert exit_.value.code == 2 and said in err, err


def test_a_backtest_the_journal_could_not_record_is_not_stored(lab, monkeypatch):
    store = RunStore(lab.registry.root)
    backtests = store.run_dir(lab.safe_run) / "backtests"
    before = sorted(backtests.iterdir()) if backtests.exists() else []
    lines = len(store.results())
    events = len(JsonlJournal(lab.registry.root).read("backtest_recorded"))

    def disk_full(self, event):
        raise OSError("No space left on device")

    monkeypatch.setattr(JsonlJournal, "append", disk_full)
    with pytest.raises(OSError, match="No space left"):
        backtest_run(lab.registry, lab.safe_run, long_class="up", hold_bars=HORIZON)
    monkeypatch.undo()
    after = sorted(backtests.iterdir()) if backtests.exists() else []
    assert after == before and len(store.results()) == lines
    assert len(JsonlJournal(lab.registry.root).read("backtest_recorded")) == events


def test_a_policy_object_trades_as_its_threshold_and_hold(lab):
    policy = ThresholdHold(threshold=0.55, hold_bars=7)
    common = dict(long_class="up", short_class="down", prop_firm_rules=False)
    by_policy, record = backtest_run(lab.registry, lab.safe_run, policy=policy, **common)
    by_terms, _ = backtest_run(lab.registry, lab.safe_run, threshold=0.55, hold_bars=7, **common)
    assert by_policy.equity["position"].abs().sum() > 0
    pd.testing.assert_frame_equal(by_policy.equity, by_terms.equity)
    assert record["policy_hash"] == policy.policy_hash and record["hold_bars"] == 7
    with pytest.raises(ConfigError, match="not both"):
        backtest_run(lab.registry, lab.safe_run, policy=policy, hold_bars=7, **common)
    with pytest.raises(ConfigError, match="ThresholdHold, got Hysteresis"):
        backtest_run(lab.registry, lab.safe_run, policy=Hysteresis(), **common)
    with pytest.raises(ConfigError, match="hold_bars is required"):
        backtest_run(lab.registry, lab.safe_run, **common)


# ---------------------------------------------------------------------------- the CLI


def _invoke(lab: Lab, *args: str):
    return runner.invoke(app, list(args), obj=Settings(home=lab.registry.root))


def test_cli_backtests_a_run(lab):
    run_dir = RunStore(lab.registry.root).run_dir(lab.safe_run)
    before = set((run_dir / "backtests").iterdir()) if (run_dir / "backtests").exists() else set()
    result = _invoke(
        lab, "run", lab.safe_run[:22], "--long-class", "up", "--short-class", "down",
        "--hold-bars", str(HORIZON), "--threshold", "0.52", "--spread", "0.25",
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "Leakage check: passed" in result.stdout and "Sharpe" in result.stdout
    assert "deprecated" not in result.stderr
    (new,) = set((run_dir / "backtests").iterdir()) - before
    record = json.loads((new / "backtest.json").read_text())
    assert record["threshold"] == 0.52 and record["config"]["spread"] == 0.25
    predictions = lab.registry.load_table("predictions", lab.safe_run)
    covered = predictions[predictions["covered"]]
    undecided = (covered["p_up"] < 0.52) & (covered["p_down"] < 0.52)
    assert record["counts"]["flat"] == int(undecided.sum())
    assert record["counts"]["long"] == int((covered["p_up"] >= 0.52).sum())


def test_the_old_run_spelling_gives_the_same_record_and_one_deprecation_line(lab):
    """`moola backtest --run RUN` (before `backtest run RUN`) still works, says so once."""
    run_dir = RunStore(lab.registry.root).run_dir(lab.safe_run)
    args = ["--long-class", "up", "--hold-bars", "7", "--threshold", "0.55"]
    records = []
    for spelling in (["run", lab.safe_run], ["--run", lab.safe_run]):
        before = set((run_dir / "backtests").iterdir())
        result = _invoke(lab, *spelling, *args)
        assert result.exit_code == 0, result.output + repr(result.exception)
        (new,) = set((run_dir / "backtests").iterdir()) - before
        records.append(json.loads((new / "backtest.json").read_text()))
    deprecations = [line for line in result.stderr.splitlines() if "deprecated" in line]
    assert len(deprecations) == 1 and "moola backtest run RUN" in deprecations[0]
    new, old = ({k: v for k, v in r.items() if k not in ("at", "path")} for r in records)
    assert new == old


def test_cli_refuses_bad_flags_and_leaky_runs(lab):
    result = _invoke(lab, "run", lab.safe_run, "--long-class", "UP", "--hold-bars", "5")
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert "'UP' is not a class" in str(result.exception)
    result = _invoke(lab, "run", lab.safe_run, "--signals", "s.csv", "--long-class", "up")
    assert result.exit_code == 2 and "--signals" in result.output  # not an option of `run`
    result = _invoke(
        lab, "--run", lab.safe_run, "--signals", "s.csv", "--long-class", "up", "--hold-bars", "5"
    )
    assert isinstance(result.exception, ConfigError) and "--signals" in str(result.exception)
    for spelling in (["run", lab.safe_run], ["--run", lab.safe_run]):
        result = _invoke(lab, *spelling, "--long-class", "up")
        assert isinstance(result.exception, ConfigError) and "--hold-bars" in str(result.exception)
    result = _invoke(lab, "--bars", "b.csv", "--signals", "s.csv", "--out", "o", "--hold-bars", "5")
    assert isinstance(result.exception, ConfigError) and "only apply with --run" in str(
        result.exception
    )
    result = _invoke(lab, "run", lab.leaky_run, "--long-class", "up", "--hold-bars", "20")
    assert result.exit_code != 0 and isinstance(result.exception, LeakageError)
    result = _invoke(
        lab, "run", lab.leaky_run, "--long-class", "up", "--hold-bars", "20",
        "--allow-leaky-skip",
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "skipped" in result.stdout


# ------------------------------------------------------------ promotion on a backtest


def _promote_cli(capsys, lab: Lab, run_id: str, *gates: str) -> tuple[int, str, str]:
    from tests.test_cli import run

    return run(
        capsys, "--data-root", str(lab.registry.root), "promote", run_id,
        "--min-accuracy", "0", "--max-ece", "1", *gates,
    )  # fmt: skip


def test_promote_with_backtest_gates_refuses_a_run_without_a_backtest(capsys, lab):
    store = RunStore(lab.registry.root)
    fresh = _train(lab.registry, "kf-safe")  # out of fold, never backtested
    ledger = len(JsonlJournal(store.root).read("gate_decision"))
    code, _, err = _promote_cli(capsys, lab, fresh, "--min-sharpe", "1.0", "--max-drawdown", "0.15")
    assert code == 2
    assert f"run `moola backtest run {fresh} --long-class CLASS --hold-bars N`" in err
    assert "`--policy sign|scaled --hold-bars N`) first" in err
    assert "--min-sharpe and --max-drawdown" in err
    assert len(JsonlJournal(store.root).read("gate_decision")) == ledger  # nothing judged: none
    assert not (lab.registry.root / "artifacts/models/promoted" / fresh).exists()
    # Without the backtest gates the same run is judged on its metrics alone.
    code, out, _ = _promote_cli(capsys, lab, fresh)
    assert code == 0 and "promoted" in out


def test_promote_gates_on_the_latest_valid_backtests_sharpe_and_drawdown(capsys, lab):
    store = RunStore(lab.registry.root)
    run_id = _train(lab.registry, "kf-safe")
    _, record = backtest_run(
        lab.registry, run_id, long_class="up", short_class="down", hold_bars=HORIZON
    )
    sharpe, drawdown = record["stats"]["sharpe"], record["stats"]["max_drawdown"]
    assert drawdown > 0
    # A drawdown gate below the backtest's drawdown refuses, recorded before anything moves.
    code, _, err = _promote_cli(
        capsys, lab, run_id, "--min-sharpe", str(sharpe - 1), "--max-drawdown", str(drawdown / 2)
    )
    assert code == 2 and "max_drawdown" in err and "above maximum" in err
    refused = JsonlJournal(store.root).read("gate_decision")[-1].payload
    assert refused.run_id == run_id and not refused.gates["passed"]
    assert refused.backtest == record["path"]
    assert not (lab.registry.root / "artifacts/models/promoted" / run_id).exists()
    # Thresholds the backtest clears: promoted, with both values in the gate record.
    code, out, _ = _promote_cli(
        capsys, lab, run_id, "--min-sharpe", str(sharpe - 1), "--max-drawdown", str(drawdown)
    )
    assert code == 0 and record["path"] in out
    decision = JsonlJournal(store.root).read("gate_decision")[-1].payload
    values = {g["name"]: g["value"] for g in decision.gates["gates"]}
    assert values["sharpe"] == pytest.approx(sharpe)
    assert values["max_drawdown"] == pytest.approx(drawdown)
    gate = json.loads(
        (lab.registry.root / "artifacts/models/promoted" / run_id / "gate.json").read_text()
    )
    assert gate["gates"]["passed"] and gate["backtest"] == record["path"]


def test_promote_refuses_a_drawdown_given_in_percent(capsys, lab):
    code, _, err = _promote_cli(capsys, lab, lab.safe_run, "--max-drawdown", "15")
    assert code == 2 and "--max-drawdown" in err


def test_the_simulated_risk_decisions_are_journaled_with_the_backtest(lab):
    from moola.sim import ExecutionConfig
    from moola.tracking.journal import RiskBreach

    journal = JsonlJournal(lab.registry.root)
    before = len(journal.read("risk_breach"))
    tight = ExecutionConfig(rules=[{"rule": "total_loss_limit", "pct": 0.0001}])
    result, record = backtest_run(
        lab.registry, lab.safe_run, long_class="up", hold_bars=HORIZON, execution=tight
    )
    breaches = journal.read("risk_breach")[before:]
    assert len(breaches) == len(result.breaches) >= 1
    event = breaches[0]
    assert isinstance(event, RiskBreach)
    assert event.payload.source == f"backtest:{lab.safe_run}/{record['path']}"
    assert event.payload.rule == "total_loss_limit" and event.payload.action == "recorded"
