"""`moola train | runs | evaluate | report | promote` as a user types them."""

from __future__ import annotations

import pytest

from moola.data.registry import Registry
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.tracking.runs import RunStore
from tests.test_cli import run


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-train")
    registry = Registry(root)
    raw, market = synthesize_raw(registry, "mkt", n_bars=30_000, n_patterns=80, seed=2)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=4, embargo=105)
    return root


def test_train_prints_status_and_results_and_logs_the_run(capsys, root):
    code, out, err = run(
        capsys,
        "--data-root",
        str(root),
        "train",
        "--model",
        "logistic_regression",
        "--dataset",
        "pat",
        "--split",
        "kf",
        "--bootstrap",
        "50",
    )
    assert code == 0, err
    assert "run status" in out and "results (oof)" in out and "minority_f1" in out
    run_id = RunStore(root).results()[-1]["run_id"]
    code, out, _ = run(
        capsys, "--data-root", str(root), "runs", "compare", "--sort", "ece", "--ascending"
    )
    assert code == 0 and "logistic" in out
    code, _, err = run(capsys, "--data-root", str(root), "runs", "compare", "--sort", "nope")
    assert code != 0 and "accuracy" in err
    code, out, _ = run(capsys, "--data-root", str(root), "report", run_id)
    assert code == 0 and "report.html" in out.replace("\n", "")


def test_train_flag_and_config_errors_name_what_is_wrong(capsys, root, tmp_path):
    base = ["--data-root", str(root)]
    code, _, err = run(capsys, *base, "train", "--model", "logistic_regression")
    assert code != 0 and "--dataset" in err and "--split" in err
    code, _, err = run(
        capsys,
        *base,
        "train",
        "--model",
        "logistic_regression",
        "--dataset",
        "pat",
        "--split",
        "kf",
        "--params",
        "{epochs: 3",
    )
    assert code != 0 and "--params" in err
    config = tmp_path / "run.yaml"
    config.write_text("model: logistic_regression\ndataset: pat\nsplit: kf\ncalibraton: none\n")
    code, _, err = run(capsys, *base, "train", "--config", str(config))
    assert code != 0 and "calibraton" in err and "run.yaml" in err
    code, _, err = run(capsys, *base, "evaluate", "whatever")
    assert code != 0 and "--test" in err
