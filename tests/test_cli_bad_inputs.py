"""Bad input found by a hostile-user audit: each is one clean error (exit 2) that names the
file, row, key or flag, and leaves the data root as it was."""

from __future__ import annotations

import json

import pytest

from moola.data.registry import Registry
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.tracking.runs import RunStore
from tests.fuzz_helpers import snapshot
from tests.test_cli import run


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Raw ``mkt``, labeled ``pat`` (40 windows of 30 bars), split ``fc``, unlabeled ``uw``."""
    root = tmp_path_factory.mktemp("bad-inputs")
    registry = Registry(root)
    raw, market = synthesize_raw(registry, "mkt", n_bars=6_000, n_patterns=40, pattern_length=30)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc")
    registry.write_unlabeled("uw", raw, length=30, stride=30)
    return root


def refused(capsys, root, *argv: str) -> str:
    """Run ``moola ARGV``; assert a clean exit 2 that left ``root`` unchanged; return stderr."""
    before = snapshot(root)
    code, out, err = run(capsys, "--data-root", str(root), *argv)
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    assert snapshot(root) == before
    return err


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("start,label\n5,up\nabc,down\n", ["column 'start'", "line 3 ('abc')"]),
        ("start_ts,label\nnot-a-time,up\n", ["column 'start_ts'", "line 2 ('not-a-time')"]),
        ("start,label\n10.5,up\n20,down\n", ["column 'start'", "whole", "line 2 (10.5)"]),
        ("start,label\n10,up\n-20,down\n", ["column 'start'", "line 3 (-20)", "0..5970"]),
        ("start,label,grade\n10,up,A\n20,down,Q\n", ["column 'grade'", "line 3 ('Q')"]),
        ("start,label\n10,up\n20,\n", ["column 'label'", "line 3"]),
        ("start,label\n", ["no rows"]),
    ],
)
def test_bad_labels_files_name_the_file_row_and_column(capsys, root, tmp_path, text, needles):
    labels = tmp_path / "my-labels.csv"
    labels.write_text(text)
    err = refused(
        capsys, root, "data", "windows", "mkt", "--name", "lw", "--length", "30",
        "--labels", str(labels),
    )  # fmt: skip
    assert "my-labels.csv" in err
    for needle in needles:
        assert needle in err


def test_a_binary_config_file_is_named_not_a_traceback(capsys, root, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_bytes(bytes(range(128, 256)))
    err = refused(capsys, root, "train", "--config", str(config))
    assert "run.yaml" in err and "UTF-8" in err


@pytest.mark.parametrize(
    ("model", "params", "needles"),
    [
        ("logistic_regression", '{"C": -1}', ["logistic_regression", "'C'", "C=-1"]),
        ("logistic_regression", '{"fit_intercept": "yes"}', ["fit_intercept"]),
        ("gradient_boosting", '{"learning_rate": -1}', ["learning_rate"]),
        ("random_forest", '{"criterion": "best"}', ["criterion"]),
        ("minirocket", '{"num_kernels": 84}', ["num_kernels", "Did you mean 'n_kernels'?"]),
        ("logistic_regression", "[1, 2]", ["--params", "JSON object"]),
    ],
)
def test_model_parameters_a_library_refuses_are_named(capsys, root, model, params, needles):
    err = refused(
        capsys, root, "train", "--model", model, "--dataset", "pat", "--split", "fc",
        "--bootstrap", "10", "--params", params,
    )  # fmt: skip
    for needle in needles:
        assert needle in err


def _trained_seed(capsys, root, *argv: str) -> int:
    code, _, err = run(capsys, "--data-root", str(root), *argv)
    assert code == 0, err
    run_id = RunStore(root).results()[-1]["run_id"]
    manifest = json.loads((RunStore(root).run_dir(run_id) / "manifest.json").read_text())
    assert manifest["config"]["seed"] == manifest["seed"]
    return manifest["seed"]


def test_the_config_files_seed_is_used_unless_a_seed_flag_is_given(capsys, root, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "model: logistic_regression\ndataset: pat\nsplit: fc\nn_bootstrap: 10\nseed: 11\n"
    )
    assert _trained_seed(capsys, root, "train", "--config", str(config)) == 11
    assert _trained_seed(capsys, root, "train", "--config", str(config), "--seed", "5") == 5
    assert _trained_seed(capsys, root, "--seed", "3", "train", "--config", str(config)) == 3
    config.write_text("model: logistic_regression\ndataset: pat\nsplit: fc\nn_bootstrap: 10\n")
    assert _trained_seed(capsys, root, "train", "--config", str(config)) == 0


def test_synth_names_the_calendar_flag_and_the_allowed_calendars(capsys, root):
    err = refused(
        capsys, root, "data", "synth", "--name", "s", "--bars", "500", "--calendar", "bogus"
    )
    assert "--calendar" in err and "'bogus'" in err and "crypto, fx, futures" in err


def test_walk_forward_without_test_size_uses_the_documented_default(capsys, root):
    code, _, err = run(
        capsys, "--data-root", str(root), "data", "split", "uw", "--strategy", "Walk_Forward",
        "--folds", "4", "--name", "wf",
    )  # fmt: skip
    assert code == 0, err
    split, _ = Registry(root).load_split("wf")
    assert [len(fold.test) for fold in split.folds] == [200 // 5] * 4


def test_a_csv_with_two_close_columns_is_refused_naming_them(capsys, root, tmp_path):
    bars = tmp_path / "two-closes.csv"
    bars.write_text(
        "timestamp,open,high,low,close,close\n"
        "2024-01-01 00:00:00,1,2,0.5,1.5,1.2\n2024-01-01 00:01:00,1,2,0.5,1.5,1.3\n"
    )
    err = refused(
        capsys, root, "data", "ingest", str(bars), "--name", "two", "--symbol", "X",
        "--timeframe", "1m",
    )  # fmt: skip
    assert "two-closes.csv" in err and "['close']" in err


@pytest.mark.parametrize("name", ["bad name", "lab@v2", "../up"])
def test_labels_build_checks_the_name_before_computing_any_label(capsys, root, monkeypatch, name):
    def must_not_run(*args, **kwargs):
        raise AssertionError("labels were computed before the name was checked")

    monkeypatch.setattr("moola.cli.labels.build_labels", must_not_run)
    err = refused(
        capsys, root, "labels", "build", "--kind", "forward-return", "--horizon", "5",
        "--raw", "mkt", "--name", name,
    )  # fmt: skip
    assert "--name" in err and repr(name) in err


def test_a_signal_timestamp_beyond_2262_is_named_not_a_traceback(capsys, root, tmp_path):
    bars = tmp_path / "bars.csv"
    bars.write_text("timestamp,open,high,low,close\n2024-01-01 00:00:00,1,2,0.5,1.5\n")
    signals = tmp_path / "far-signals.csv"
    signals.write_text("timestamp,position\n2024-01-01 00:00:00,1\n3024-01-01 00:15:00,0\n")
    err = refused(
        capsys, root, "backtest", "file", "--bars", str(bars), "--signals", str(signals),
        "--out", str(tmp_path / "bt"), "--symbol", "ES", "--timeframe", "1m",
    )  # fmt: skip
    assert "far-signals.csv" in err and "3024" in err
    assert not (tmp_path / "bt").exists()


def test_stratified_split_of_unlabeled_windows_says_why_not(capsys, root):
    err = refused(
        capsys, root, "data", "split", "uw", "--strategy", "stratified", "--time-independent"
    )
    assert "unlabeled/uw@v1" in err and "stratified" in err
