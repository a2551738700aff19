"""``moola runs list`` survives a damaged experiment log: bad lines are named and skipped;
``moola runs journal`` and ``runs show`` list the journal's decisions, and refuse a
tampered journal with a clean error naming the line."""

from __future__ import annotations

import json

import pandas as pd

from moola.sim import BREACH_COLUMNS, REJECTION_COLUMNS
from moola.tracking.journal import (
    BacktestRecorded,
    BacktestRecordedPayload,
    GateDecision,
    GateDecisionPayload,
    JsonlJournal,
    TestLook,
    TestLookPayload,
)
from moola.tracking.risk import journal_risk
from moola.tracking.runs import RunStore
from tests.test_cli import run


def test_runs_list_reports_a_corrupt_line_by_number_and_lists_the_rest(capsys, tmp_path):
    root = tmp_path / "moola_data"
    store = RunStore(root)
    store.append_result({"run_id": "first-run", "kind": "train", "model": "m", "metrics": {}})
    with open(root / "experiment_results.jsonl", "ab") as handle:
        handle.write(b'{"run_id": "broken\xff\n')
    store.append_result({"run_id": "third-run", "kind": "train", "model": "m", "metrics": {}})
    code, out, err = run(capsys, "--data-root", str(root), "runs", "list")
    assert code == 0, err
    assert "first-run" in out and "third-run" in out
    assert "experiment_results.jsonl line 2" in err and "Traceback" not in out + err


def _journal_with_risk(root):
    """Two runs' decisions: r-alpha's test look and backtest with a denied order and a
    breach, r-beta's gate decision."""
    journal = JsonlJournal(root)
    journal.append(
        TestLook(payload=TestLookPayload(run_id="r-alpha", split_hash="sha256:aa", split="s@v1"))
    )
    journal.append(
        BacktestRecorded(
            payload=BacktestRecordedPayload(
                run_id="r-alpha", backtest="backtests/20240102", stats={"sharpe": 1.25}
            )
        )
    )
    journal.append(
        GateDecision(
            payload=GateDecisionPayload(
                run_id="r-beta", manifest_sha256="sha256:bb", basis="oof", gates={"passed": False}
            )
        )
    )
    when = pd.Timestamp("2024-01-02 05:00", tz="UTC")
    breaches = pd.DataFrame(
        [(when, 5, "total_loss_limit", 0.064, 0.05, "equity fell [6.4%]", -400.0)],
        columns=list(BREACH_COLUMNS),
    )
    rejections = pd.DataFrame(
        [(when, 5, 7, 400.0, 0.0, "broker halted: total_loss_limit breached")],
        columns=list(REJECTION_COLUMNS),
    )
    source = "backtest:r-alpha/20240102"
    assert journal_risk(journal, source, breaches, rejections, on_breach="flatten") == 2
    return journal


def test_runs_journal_lists_every_decision_and_filters_them(capsys, tmp_path):
    root = tmp_path / "moola_data"
    _journal_with_risk(root)
    code, out, err = run(capsys, "--data-root", str(root), "runs", "journal")
    assert code == 0, err
    for text in ("test_look", "backtest_recorded", "gate_decision", "risk_breach", "order_denied"):
        assert text in out
    assert "r-beta" in out and "promotion gates refused" in out
    assert "equity fell [6.4%]" in out  # text, not Rich markup

    code, out, err = run(capsys, "--data-root", str(root), "runs", "journal", "--kind",
                         "risk_breach")  # fmt: skip
    assert code == 0 and "risk_breach" in out and "order_denied" not in out
    assert "total_loss_limit breached at bar 5" in out and "flattened" in out

    code, out, err = run(capsys, "--data-root", str(root), "runs", "journal", "--run", "r-al",
                         "--json")  # fmt: skip
    events = json.loads(out)
    assert [e["kind"] for e in events] == [
        "test_look", "backtest_recorded", "risk_breach", "order_denied"
    ]  # fmt: skip
    assert {e["run_id"] for e in events} == {"r-alpha"}
    assert events[3]["payload"]["order_id"] == 7

    code, out, err = run(capsys, "--data-root", str(root), "runs", "journal", "--last", "1",
                         "--json")  # fmt: skip
    assert [e["kind"] for e in json.loads(out)] == ["order_denied"]

    code, out, err = run(capsys, "--data-root", str(root), "runs", "journal", "--kind", "nope")
    assert code == 0 and "No journal events" in out and "risk_breach" in out


def test_runs_show_lists_the_journal_events_of_that_run(capsys, tmp_path):
    root = tmp_path / "moola_data"
    _journal_with_risk(root)
    RunStore(root).write_run("r-alpha", {"kind": "train"}, {})
    code, out, err = run(capsys, "--data-root", str(root), "runs", "show", "r-al")
    assert code == 0, err
    assert "4 decision(s) of this run" in out
    assert "risk_breach" in out and "gate_decision" not in out


def test_a_tampered_journal_is_a_clean_error_naming_file_and_line(capsys, tmp_path):
    root = tmp_path / "moola_data"
    journal = _journal_with_risk(root)
    lines = journal.path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"r-beta", b"r-gama")
    journal.path.write_bytes(b"\n".join(lines))
    code, out, err = run(capsys, "--data-root", str(root), "runs", "journal")
    assert code != 0
    assert "events.jsonl line 3" in err and "Traceback" not in out + err
