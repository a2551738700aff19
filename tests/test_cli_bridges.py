"""Workflows that chain commands (issue 14), and the small defects found on the way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.data.registry import Registry
from moola.data.windows import WindowError, labeled_windows_table
from moola.models import model_card
from moola.models.nn.adapter_lstm import AdapterLSTMConfig
from moola.tracking.runs import RunStore
from tests.conftest import random_walk_bars
from tests.test_cli import run


def _csv(path, bars: pd.DataFrame) -> str:
    frame = bars[["timestamp", "open", "high", "low", "close", "volume"]].copy()
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    frame.to_csv(path, index=False)
    return str(path)


def _ingest(capsys, root, path, name="es", *extra: str) -> tuple[int, str, str]:
    return run(
        capsys,
        "--data-root",
        str(root),
        "data",
        "ingest",
        *([path] if isinstance(path, str) else path),
        "--name",
        name,
        "--symbol",
        "ES",
        "--timeframe",
        "1m",
        *extra,
    )


# --- small defects ------------------------------------------------------------------------


def test_label_sources_are_the_sorted_unique_sources_of_the_rows(capsys, tmp_path):
    root = tmp_path / "moola_data"
    _ingest(capsys, root, _csv(tmp_path / "es.csv", random_walk_bars(300, symbol="ES")))
    labels = tmp_path / "labels.csv"
    pd.DataFrame(
        {
            "start": [0, 50, 100, 150],
            "label": ["up", "down", "up", "down"],
            "source": ["review", "human", "human", "review"],
        }
    ).to_csv(labels, index=False)
    code, _, err = run(
        capsys, "--data-root", str(root), "data", "windows", "es", "--name", "lab",
        "--length", "30", "--labels", str(labels),
    )  # fmt: skip
    assert code == 0, err
    registry = Registry(root)
    ref = registry.resolve("labeled", "lab")
    assert registry.meta(ref)["label_sources"] == ["human", "review"]
    assert registry.load_labeled("lab").table["source"].tolist() == [
        "review", "human", "human", "review"
    ]  # fmt: skip


def test_float_labels_whole_become_classes_fractional_are_refused_by_window():
    bars = random_walk_bars(100)
    table = labeled_windows_table(bars, [0, 10, 20], 5, np.array([1.0, -1.0, 0.0]))
    assert table["label"].tolist() == [1, -1, 0]
    with pytest.raises(WindowError) as caught:
        labeled_windows_table(bars, [0, 10, 20], 5, np.array([1.0, 0.25, 0.75]))
    message = str(caught.value)
    assert "window 1 (0.25)" in message and "window 2 (0.75)" in message
    assert "class" in message and "np.float64" not in message
    with pytest.raises(WindowError) as caught:
        labeled_windows_table(bars, [0, 10], 5, [np.float64(0.5), "up"])
    assert "np.float64" not in str(caught.value) and "window 0 has 0.5" in str(caught.value)


def test_adapter_lstm_card_names_each_size_it_quotes():
    text = model_card("adapter_lstm").intended_use
    config = AdapterLSTMConfig()
    for phrase in (
        f"hidden {config.encoder_hidden}",
        f"representation {config.encoder_repr_dim}",
        f"depth {config.encoder_depth}",
        f"LSTM {config.lstm_hidden}",
    ):
        assert phrase in text


def test_runs_list_shows_name_at_version_and_never_cuts_a_column(capsys, tmp_path):
    root = tmp_path / "moola_data"
    store = RunStore(root)
    metrics = {"accuracy": 0.8123, "ece": 0.0321, "brier": 0.1987}
    dataset = {"kind": "labeled", "name": "pattern-windows-long-name", "version": 12}
    long_id = "20240101T000000Z-enhanced_simple_lstm-0123456789abcdef"
    store.append_result(
        {"run_id": long_id, "kind": "train", "model": "enhanced_simple_lstm",
         "dataset": "labeled/pattern-windows-long-name@v12", "metrics": metrics}
    )  # fmt: skip
    store.append_result(
        {"run_id": long_id + "x", "kind": "evaluate", "model": "enhanced_simple_lstm",
         "dataset": {**dataset, "content_hash": "sha256:" + "a" * 64}, "metrics": metrics}
    )  # fmt: skip
    code, out, err = run(capsys, "--data-root", str(root), "runs", "list")
    assert code == 0, err
    assert out.count("pattern-windows-long-name@v12") == 2
    assert "content_hash" not in out and "{" not in out and "…" not in out
    assert "0.8123" in out and "0.0321" in out and "enhanced_simple_lstm" in out
    code, out, err = run(capsys, "--data-root", str(root), "runs", "compare", "--sort", "ece")
    assert code == 0 and out.count("pattern-windows-long-name@v12") == 2 and "…" not in out
