"""``moola annotate ...`` and ``moola ui`` through a small Typer app mounted as cli/main.py
mounts them (the same global --data-root callback); the server itself is not started:
``moola.annotate.server.serve`` is replaced by a recorder."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from moola.annotate.model import NewAction
from moola.annotate.store import BatchStore, read_batch, write_batch
from moola.cli import annotate as annotate_commands
from moola.core.errors import ConfigError
from moola.core.settings import load_settings
from moola.data.registry import Registry
from tests.annotate._batches import make_batch, store_raw


def _main() -> typer.Typer:
    main = typer.Typer()

    @main.callback()
    def _global(
        ctx: typer.Context,
        data_root: Annotated[Path | None, typer.Option("--data-root")] = None,
    ) -> None:
        ctx.obj = load_settings(home=data_root)

    main.add_typer(annotate_commands.app, name="annotate")
    main.registered_commands.extend(annotate_commands.ui_app.registered_commands)
    return main


@pytest.fixture
def lab(tmp_path):
    registry = Registry(tmp_path / "moola_data")
    raw = store_raw(registry, 300)
    batch = make_batch(registry, raw, [0, 40, 80], name="b1")
    write_batch(registry.root, batch)
    return registry, batch


@pytest.fixture
def served(monkeypatch):
    """Calls of ``serve`` (the app is built and checked, but no server starts)."""
    calls: list[dict] = []
    monkeypatch.setattr(
        "moola.annotate.server.serve",
        lambda app, *, host, port: calls.append({"app": app, "host": host, "port": port}),
    )
    return calls


def _run(root: Path, *args: str):
    return CliRunner().invoke(_main(), ["--data-root", str(root), *args])


def test_serve_binds_loopback_and_prints_the_url_with_a_fresh_random_token(lab, served):
    registry, _ = lab
    first = _run(registry.root, "annotate", "serve", "--batch", "b1", "--port", "8799")
    assert first.exit_code == 0, first.output
    assert served[0]["host"] == "127.0.0.1" and served[0]["port"] == 8799
    url = next(line for line in first.output.splitlines() if line.startswith("open: "))
    assert url.startswith("open: http://127.0.0.1:8799/label?batch=b1&token=")
    token = url.rsplit("token=", 1)[1]
    assert len(token) >= 40
    second = _run(registry.root, "annotate", "serve", "--port", "8799")
    assert second.exit_code == 0
    assert token not in second.output  # a new token each time
    assert "warning" not in first.output.lower()


def test_a_non_loopback_host_needs_allow_remote_and_then_warns(lab, served):
    registry, _ = lab
    refused = _run(registry.root, "annotate", "serve", "--host", "0.0.0.0", "--port", "8799")
    assert isinstance(refused.exception, ConfigError)
    assert refused.exception.param == "host" and "0.0.0.0" in str(refused.exception)
    assert not served
    allowed = _run(
        registry.root, "annotate", "serve", "--host", "0.0.0.0", "--port", "8799", "--allow-remote"
    )
    assert allowed.exit_code == 0, allowed.output
    assert "warning" in allowed.output.lower() and "not a loopback" in allowed.output
    assert served[0]["host"] == "0.0.0.0"


def test_a_port_in_use_is_an_error_naming_it(lab, served):
    registry, _ = lab
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(registry.root, "annotate", "serve", "--port", str(port))
    assert isinstance(result.exception, ConfigError)
    assert result.exception.param == "port"
    assert f"port {port} on 127.0.0.1 is already in use" in str(result.exception)
    assert not served


def test_an_unknown_batch_is_refused_before_serving(lab, served):
    registry, _ = lab
    result = _run(registry.root, "annotate", "serve", "--batch", "nope", "--port", "8799")
    assert result.exit_code != 0 and "nope" in str(result.exception)
    assert "b1" in str(result.exception)  # the known batches are listed
    assert not served


def test_ui_serves_the_run_browser(lab, served):
    registry, _ = lab
    result = _run(registry.root, "ui", "--port", "8798")
    assert result.exit_code == 0, result.output
    assert "open: http://127.0.0.1:8798/runs?token=" in result.output
    assert served[0]["port"] == 8798


def test_commit_writes_the_accepted_windows_into_a_new_labeled_version(lab):
    registry, batch = lab
    store = BatchStore(registry.root, batch)
    for window, label, grade in zip(
        batch.windows, ("consolidation", "retracement", "neither"), "ABD", strict=True
    ):
        store.record(NewAction(window_id=window.window_id, kind="label", label=label))
        store.record(NewAction(window_id=window.window_id, kind="grade", grade=grade))
    result = _run(registry.root, "annotate", "commit", "--batch", "b1", "--into", "pat")
    assert result.exit_code == 0, result.output
    assert "labeled/pat@v1" in result.output and "2 window(s) added" in result.output
    assert len(registry.load_labeled("pat").table) == 2
    bad = _run(registry.root, "annotate", "commit", "--batch", "b1", "--into", "pat@v2")
    assert isinstance(bad.exception, ConfigError) and "--into" in str(bad.exception)


def test_extract_writes_a_batch_and_says_how_to_label_it(lab):
    registry, _ = lab
    result = _run(
        registry.root,
        "annotate",
        "extract",
        "es",
        "--n",
        "3",
        "--length",
        "20",
        "--context",
        "4",
        "--name",
        "b2",
        "--weights",
        "uniform",
    )
    assert result.exit_code == 0, result.output
    assert "batch b2" in result.output and "moola annotate serve --batch b2" in result.output
    batch = read_batch(registry.root, "b2")
    assert (len(batch.windows), batch.length, batch.context) == (3, 20, 4)
    again = _run(registry.root, "annotate", "extract", "es", "--n", "1", "--name", "b2")
    assert again.exit_code != 0 and "b2" in str(again.exception)


def test_stats_prints_json(lab):
    registry, batch = lab
    store = BatchStore(registry.root, batch)
    window = batch.windows[0].window_id
    store.record(NewAction(window_id=window, kind="label", label="consolidation"))
    store.record(NewAction(window_id=window, kind="grade", grade="A"))
    result = _run(registry.root, "annotate", "stats", "--json")
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)
    assert values["keeper_by_batch"]["b1"] == {"accepted": 1, "judged": 1, "rate": 1.0}
    table = _run(registry.root, "annotate", "stats")
    assert table.exit_code == 0, table.output
    assert "keeper_by_batch" in table.output and "b1" in table.output


def test_review_a_runs_likely_label_errors_correct_one_in_the_app_and_commit(tmp_path):
    """The review loop: moola annotate review RUN, a correction in the app (review mode),
    moola annotate commit: a new version of the reviewed dataset with the label changed."""
    from fastapi.testclient import TestClient

    from moola.annotate.app import create_app
    from moola.data.windows import labeled_windows_table
    from moola.pipeline.datasets import make_and_store_split, synthesize_raw
    from moola.pipeline.train import TrainConfig, run_training

    registry = Registry(tmp_path / "moola_data")
    raw, market = synthesize_raw(registry, "mkt", n_bars=21_000, n_patterns=100, seed=3)
    patterns = market.patterns
    labels = patterns["label"].astype(str).tolist()
    for i in (5, 17, 33, 52, 70, 90):  # given the wrong label: cleanlab should doubt them
        labels[i] = "retracement" if labels[i] == "consolidation" else "consolidation"
    table = labeled_windows_table(
        registry.load_raw("mkt"), patterns["start"].to_numpy(), 105, labels, source="human"
    )
    ref = registry.write_labeled("pat", raw, table, length=105)
    make_and_store_split(registry, ref, "purged-kfold", name="kf", folds=3, embargo=105)
    config = TrainConfig(model="logistic_regression", dataset="pat", split="kf", n_bootstrap=2)
    run_id = run_training(registry, config).run_id

    made = _run(registry.root, "annotate", "review", run_id, "--name", "rev", "--limit", "3")
    assert made.exit_code == 0, made.output
    assert "moola annotate serve --batch rev" in made.output
    client = TestClient(
        create_app(registry.root, token="r" * 20), headers={"Authorization": "Bearer " + "r" * 20}
    )
    shown = client.get("/api/batches/rev/next").json()
    assert shown["kind"] == "review" and shown["window"]["model_proba"]
    given = shown["window"]["given_label"]
    corrected = "retracement" if given == "consolidation" else "consolidation"
    answer = client.post(
        "/api/batches/rev/actions",
        json={"window_id": shown["window"]["window_id"], "kind": "label", "label": corrected},
    )
    assert answer.status_code == 200 and answer.json()["decided"]

    committed = _run(registry.root, "annotate", "commit", "--batch", "rev")
    assert committed.exit_code == 0, committed.output
    assert "labeled/pat@v2" in committed.output and "1 label(s) corrected" in committed.output
    new = registry.load_labeled("pat").table
    start = shown["window"]["start_row"]
    assert new.loc[new["start"] == start, "label"].tolist() == [corrected]
    old = registry.load_labeled("pat", 1).table
    assert old.loc[old["start"] == start, "label"].tolist() == [given]
