"""The run browser's data: filters, sorting, comparison, reports and files kept inside the root."""

from __future__ import annotations

import pytest

from moola.annotate.runs import compare_runs, list_runs, read_run_file, report_path
from moola.core.errors import ConfigError, IntegrityError, RegistryError
from moola.tracking.runs import RunStore

RUN_A = "20260101T000000000000Z-aaaaaaa-lstm"
RUN_B = "20260102T000000000000Z-bbbbbbb-logreg"


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "moola_data"
    store = RunStore(root)
    store.write_run(
        RUN_A,
        {"kind": "train"},
        {"report.html": "<html>report A</html>", "plots/roc.json": '{"auc": 0.9}'},
    )
    store.write_run(RUN_B, {"kind": "train"}, {"metrics.json": "{}"})
    store.append_result(
        {
            "run_id": RUN_A,
            "kind": "train",
            "model": "lstm",
            "dataset": "labeled/patterns@v2",
            "metrics": {"accuracy": 0.84, "ece": 0.05, "per_class": {"f1": 0.5}},
        }
    )
    store.append_result(
        {
            "run_id": RUN_B,
            "kind": "train",
            "model": "logreg",
            "dataset": "labeled/patterns@v1",
            "metrics": {"accuracy": 0.79, "ece": 0.02},
        }
    )
    store.append_result(
        {
            "run_id": RUN_A,
            "kind": "backtest",
            "model": "lstm",
            "dataset": {"name": "bars", "version": 3},
            "metrics": {"sharpe": 1.2, "max_drawdown": 0.1},
        }
    )
    return root


def test_rows_are_log_lines_newest_first_with_flat_numeric_metrics(root):
    page = list_runs(root)
    assert [row.line for row in page.rows] == [3, 2, 1]
    first = page.rows[-1]
    assert first.dataset == "patterns@v2"
    assert first.metrics == {"accuracy": 0.84, "ece": 0.05, "per_class.f1": 0.5}
    assert page.rows[0].dataset == "bars@v3"
    assert page.kinds == ("backtest", "train")
    assert page.models == ("logreg", "lstm")
    assert first.has_report and not page.rows[1].has_report


def test_filters_combine_and_search_matches_run_id_or_dataset(root):
    assert [r.line for r in list_runs(root, kind="train").rows] == [2, 1]
    assert [r.line for r in list_runs(root, kind="train", model="lstm").rows] == [1]
    assert [r.line for r in list_runs(root, search="PATTERNS@V1").rows] == [2]
    assert [r.line for r in list_runs(root, search="bbbbbbb").rows] == [2]


def test_sort_by_metric_puts_runs_without_it_last_in_either_order(root):
    desc = list_runs(root, sort="accuracy", order="desc")
    assert [r.line for r in desc.rows] == [1, 2, 3]
    asc = list_runs(root, sort="accuracy", order="asc")
    assert [r.line for r in asc.rows] == [2, 1, 3]
    with pytest.raises(ConfigError, match="sort 'nope'") as info:
        list_runs(root, sort="nope")
    assert info.value.param == "sort"


def test_comparison_marks_the_best_value_per_metric_lower_better_for_ece(root):
    comparison = compare_runs(root, [1, 2])
    assert comparison.best["accuracy"] == 0  # 0.84 > 0.79
    assert comparison.best["ece"] == 1  # 0.02 < 0.05
    assert "per_class.f1" not in comparison.best  # only one run has it
    assert comparison.rows[0].files == ("plots/roc.json",)
    with pytest.raises(ConfigError, match="lines"):
        compare_runs(root, [1, 9])


def test_reports_and_files_are_read_only_inside_the_run_folder(root):
    assert report_path(root, RUN_A[:25]).read_text() == "<html>report A</html>"
    with pytest.raises(RegistryError, match=r"no report\.html"):
        report_path(root, RUN_B)
    assert read_run_file(root, RUN_A, "plots/roc.json") == b'{"auc": 0.9}'
    for name in ("../" + RUN_B + "/metrics.json", "/etc/passwd", "plots/../../x"):
        with pytest.raises(RegistryError, match="lists no file"):
            read_run_file(root, RUN_A, name)
    with pytest.raises(RegistryError):
        report_path(root, "../../etc")


def test_a_changed_run_file_is_refused(root):
    path = RunStore(root).run_dir(RUN_A) / "plots" / "roc.json"
    path.write_text('{"auc": 1.0}')
    with pytest.raises(IntegrityError):
        read_run_file(root, RUN_A, "plots/roc.json")
