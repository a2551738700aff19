"""``moola runs list`` survives a damaged experiment log: bad lines are named and skipped."""

from __future__ import annotations

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
