"""Looking at a study: the summary behind `moola tune show`, the HTML report (Optuna's
plots, plotly inline: no CDN), and optuna-dashboard bound to loopback only."""

from __future__ import annotations

import re
import threading

import httpx
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from moola.core.errors import ConfigError
from moola.tune.report import dashboard_server, study_summary, write_report
from moola.tune.space import parse_space
from moola.tune.storage import study_dir
from moola.tune.study import open_study
from tests.tune._study_lab import logistic_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def root(tmp_path):
    """A data root holding study 'looked' with five finished trials (no training: the
    trials are added as they would have ended)."""
    space = parse_space(
        logistic_space(
            "fc",
            **{
                "params.C": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
                "calibration": {"type": "categorical", "choices": ["none", "platt"]},
            },
        )
    )
    study = open_study(tmp_path, space, study="looked")
    distributions = {
        "params.C": FloatDistribution(0.01, 10.0, log=True),
        "calibration": CategoricalDistribution(["none", "platt"]),
    }
    values = [(0.1, "none", 0.62), (1.0, "platt", 0.55), (5.0, "none", 0.58), (0.5, "platt", 0.5)]
    for c, calibration, value in values:
        study.add_trial(
            create_trial(
                params={"params.C": c, "calibration": calibration},
                distributions=distributions,
                value=value,
                user_attrs={"run_id": f"run-{c}"},
            )
        )
    study.add_trial(
        create_trial(
            params={"params.C": 2.0, "calibration": "none"},
            distributions=distributions,
            state=TrialState.PRUNED,
            intermediate_values={1: 0.9},
        )
    )
    return tmp_path


def test_the_summary_names_the_best_trial_its_run_importances_and_every_trial(root):
    summary = study_summary(root, "looked")
    assert summary["best"] == {
        "number": 3,
        "value": 0.5,
        "params": {"params.C": 0.5, "calibration": "platt"},
        "run_id": "run-0.5",
    }
    assert summary["metric"] == "log_loss" and summary["direction"] == "minimize"
    assert summary["counts"] == {"complete": 4, "pruned": 1, "fail": 0, "running": 0}
    assert set(summary["importances"]) == {"params.C", "calibration"}
    assert sum(summary["importances"].values()) == pytest.approx(1.0)
    assert [row["state"] for row in summary["trials"]] == ["COMPLETE"] * 4 + ["PRUNED"]


def test_the_report_embeds_plotly_once_and_loads_nothing_from_the_network(root):
    path = write_report(root, "looked")
    assert path == study_dir(root, "looked") / "report.html"
    html = path.read_text(encoding="utf-8")
    for title in ("Optimisation history", "Parameter importances", "Parallel coordinates"):
        assert f"<h2>{title}</h2>" in html
    assert html.count("Plotly.newPlot") >= 3
    assert re.findall(r"<script[^>]*\bsrc=", html) == []  # no script loaded from anywhere
    assert html.count("* plotly.js v") == 1  # the library itself, inline, once
    assert "run-0.5" in html
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "report.html",
        "study.db",
        "study.json",
    ]


def test_an_unknown_study_is_refused_and_nothing_is_created(tmp_path):
    with pytest.raises(ConfigError, match="No study 'absent'"):
        study_summary(tmp_path, "absent")
    assert list(tmp_path.iterdir()) == []


def test_the_dashboard_serves_the_study_on_loopback_only(root):
    server = dashboard_server(root, "looked", port=0)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        studies = httpx.get(f"http://127.0.0.1:{port}/api/studies", timeout=10).json()
        assert [study["study_name"] for study in studies["study_summaries"]] == ["looked"]
    finally:
        server.shutdown()
        server.server_close()
