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


def _ingest(capsys, root, path, *extra: str, name: str = "es") -> tuple[int, str, str]:
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


# --- labels into windows ------------------------------------------------------------------


def _synth(capsys, root, *extra: str) -> None:
    code, _, err = run(
        capsys, "--data-root", str(root), "data", "synth", "--name", "mkt", "--bars", "3000",
        "--seed", "0", "--calendar", "crypto", *extra,
    )  # fmt: skip
    assert code == 0, err


def test_synth_labels_out_round_trips_through_data_windows(capsys, tmp_path):
    root, labels = tmp_path / "moola_data", tmp_path / "planted.csv"
    _synth(capsys, root, "--patterns", "5", "--labels-out", str(labels))
    code, out, err = run(
        capsys, "--data-root", str(root), "data", "windows", "mkt", "--name", "pat",
        "--labels", str(labels),
    )  # fmt: skip
    assert code == 0, err
    assert "5 windows x 105 bars" in out and "left out: none" in out
    planted = pd.read_csv(labels)
    table = Registry(root).load_labeled("pat").table
    assert pd.to_datetime(planted["start_ts"], utc=True).tolist() == table["start_ts"].tolist()
    assert planted["label"].tolist() == table["label"].tolist()
    assert set(table["source"]) == {"synthetic-planted"}
    assert (table["end"] - table["start"] == 104).all()
    code, _, err = run(
        capsys, "--data-root", str(root), "data", "synth", "--name", "m2", "--bars", "500",
        "--labels-out", str(tmp_path / "none.csv"),
    )  # fmt: skip
    assert code == 2 and "--patterns" in err and not (tmp_path / "none.csv").exists()
    assert Registry(root).versions("raw", "m2") == []


def _labels(capsys, root, *argv: str) -> None:
    code, _, err = run(
        capsys, "--data-root", str(root), "labels", "build", "--kind", "forward-return",
        "--horizon", "5", *argv,
    )  # fmt: skip
    assert code == 0, err


def test_labels_from_a_stored_table_windows_end_at_the_labelled_bar(capsys, tmp_path):
    root = tmp_path / "moola_data"
    _synth(capsys, root)
    _labels(capsys, root, "--raw", "mkt", "--name", "fwd")
    code, out, err = run(
        capsys, "--data-root", str(root), "data", "windows", "mkt@v1", "--name", "fw",
        "--length", "30", "--labels-from", "fwd@v1",
    )  # fmt: skip
    assert code == 0, err
    # 3000 bars: the last 5 have no 5-bar future, the first 29 no complete 30-bar window.
    assert "2,966 windows" in out
    assert "5 label or horizon undefined" in out and "29 no complete window" in out
    registry = Registry(root)
    labels = registry.load_table("labels", "fwd")
    bars = registry.load_raw("mkt")
    data = registry.load_labeled("fw")
    table = data.table
    assert (table["end"] - table["start"] == 29).all()
    assert table["end_ts"].tolist() == labels["timestamp"].iloc[table["end"]].tolist()
    assert table["label"].tolist() == labels["label"].iloc[table["end"]].astype(int).tolist()
    assert (table["horizon_end_ts"] > table["end_ts"]).all()
    # Each window's bars are exactly the bars up to its labelled bar, none after it.
    close = bars["close"].to_numpy(np.float32)
    for i in (0, 100, len(table) - 1):
        end = int(table["end"].iloc[i])
        np.testing.assert_array_equal(data.X[i, :, 3], close[end - 29 : end + 1])


def test_a_window_and_its_label_never_see_bars_after_the_label_horizon(registry):
    from moola.features.labels import build_labels
    from moola.pipeline.ingest import ingest_bars
    from moola.pipeline.labeled_windows import labeled_from_labels

    def windows_of(bars, name):
        raw = ingest_bars(registry, bars, name=name, sources=[{"test": name}]).ref
        table = build_labels(bars, "forward-return", horizon=5)
        registry.write_table("labels", name, table, parents=[raw], meta={"target": "label"})
        labeled_from_labels(registry, name, raw, name, length=20)
        return registry.load_labeled(name)

    bars = random_walk_bars(400)
    before = windows_of(bars, "a")
    k = 150  # a window in the middle; change every bar after its label's horizon
    horizon_end = bars.index[bars["timestamp"] == before.table["horizon_end_ts"].iloc[k]][0]
    changed = bars.copy()
    later = changed.index > horizon_end
    for column in ("open", "high", "low", "close"):
        changed.loc[later, column] = changed.loc[later, column] * 1.5
    after = windows_of(changed, "b")
    assert before.table["end"].iloc[k] == after.table["end"].iloc[k]
    np.testing.assert_array_equal(before.X[: k + 1], after.X[: k + 1])
    assert (
        before.table["label"].iloc[: k + 1].tolist() == after.table["label"].iloc[: k + 1].tolist()
    )
    assert not np.array_equal(before.X[-1], after.X[-1])  # the change is real


def test_labels_from_refuses_labels_of_other_bars_and_continuous_targets(capsys, tmp_path):
    root = tmp_path / "moola_data"
    _synth(capsys, root)
    _labels(capsys, root, "--raw", "mkt", "--name", "fwd")
    run(capsys, "--data-root", str(root), "data", "synth", "--name", "other", "--bars", "3000")
    base = ["--data-root", str(root), "data", "windows"]
    code, _, err = run(capsys, *base, "other", "--name", "x", "--labels-from", "fwd")
    assert code == 2 and "raw/mkt@v1" in err and "raw/other@v1" in err and "labels/fwd@v1" in err
    code, _, err = run(
        capsys, *base, "mkt", "--name", "x", "--labels-from", "fwd", "--label-column",
        "forward_return",
    )  # fmt: skip
    assert code == 2 and "'forward_return'" in err and "fractional" in err
    assert "np.float64" not in err and "classes" in err
    code, _, err = run(capsys, *base, "mkt", "--name", "x", "--label-column", "label")
    assert code == 2 and "--labels-from" in err
    assert Registry(root).versions("labeled", "x") == []


def test_labels_build_out_file_feeds_data_windows_labels(capsys, tmp_path):
    root, out = tmp_path / "moola_data", tmp_path / "fwd.csv"
    _synth(capsys, root)
    _labels(capsys, root, "--raw", "mkt", "--out", str(out), "--name", "fwd")
    base = ["--data-root", str(root), "data", "windows", "mkt", "--length", "30"]
    code, out_text, err = run(capsys, *base, "--name", "from-file", "--labels", str(out))
    assert code == 0, err
    assert "2,966 windows" in out_text and "5 label or horizon undefined" in out_text
    code, _, err = run(capsys, *base, "--name", "from-table", "--labels-from", "fwd")
    assert code == 0, err
    registry = Registry(root)
    from_file = registry.load_labeled("from-file").table
    from_table = registry.load_labeled("from-table").table
    for column in ("start", "end", "label", "horizon_end_ts"):
        assert from_file[column].astype(str).tolist() == from_table[column].astype(str).tolist()


# --- ingest of several files --------------------------------------------------------------


@pytest.fixture
def month_files(tmp_path):
    """Three files of one series: the second overlaps the first by 50 identical bars, and
    50 bars are missing between the second and the third."""
    bars = random_walk_bars(900, symbol="ES")
    folder = tmp_path / "months"
    folder.mkdir()
    _csv(folder / "es-01.csv", bars.iloc[:400])
    _csv(folder / "es-02.csv", bars.iloc[350:600])
    _csv(folder / "es-03.csv", bars.iloc[650:])
    return folder, bars


def test_ingest_several_files_makes_one_version_reporting_overlaps_and_gaps(
    capsys, tmp_path, month_files
):
    folder, bars = month_files
    root = tmp_path / "moola_data"
    code, out, err = _ingest(capsys, root, str(folder / "es-*.csv"))
    assert code == 0, err
    assert "raw/es@v1" in out and "850 bars" in out
    assert "50 identical bars in both es-01.csv and es-02.csv" in out
    assert "50 bars missing" in out and "(es-02.csv)" in out and "(es-03.csv)" in out
    registry = Registry(root)
    stored = registry.load_raw("es")
    expected = pd.concat([bars.iloc[:600], bars.iloc[650:]])
    assert stored["timestamp"].tolist() == expected["timestamp"].tolist()
    np.testing.assert_allclose(stored["close"], expected["close"])
    sources = registry.manifest(registry.resolve("raw", "es"))["sources"]
    assert [s["name"] for s in sources] == ["es-01.csv", "es-02.csv", "es-03.csv"]
    assert all(s["sha256"].startswith("sha256:") for s in sources)


def test_ingest_refuses_files_that_disagree_on_a_bar_naming_both(capsys, tmp_path, month_files):
    folder, _ = month_files
    second = pd.read_csv(folder / "es-02.csv")
    second.loc[10, "close"] += 1.0
    second.to_csv(folder / "es-02.csv", index=False)
    root = tmp_path / "moola_data"
    code, _, err = _ingest(capsys, root, [str(folder / "es-01.csv"), str(folder / "es-02.csv")])
    assert code == 2 and "es-01.csv and es-02.csv" in err and "differ" in err
    assert Registry(root).versions("raw", "es") == []


def test_identical_reingest_writes_nothing_unless_forced(capsys, tmp_path, month_files):
    folder, _ = month_files
    root = tmp_path / "moola_data"
    files = [str(folder / "es-01.csv"), str(folder / "es-02.csv")]
    assert _ingest(capsys, root, files)[0] == 0
    journal = (root / "journal" / "writes.jsonl").read_bytes()
    code, out, err = _ingest(capsys, root, files[::-1])  # same bytes, any order
    assert code == 0, err
    assert "raw/es@v1 already holds these bytes" in out and "--force" in out
    assert Registry(root).versions("raw", "es") == [1]
    assert (root / "journal" / "writes.jsonl").read_bytes() == journal
    code, out, err = _ingest(capsys, root, files, "--mode", "repair")  # read another way
    assert code == 0 and "raw/es@v2" in out, err
    code, out, _ = _ingest(capsys, root, files, "--force")
    assert code == 0 and "raw/es@v3" in out


def test_ingest_names_every_missing_flag_at_once(capsys, tmp_path, month_files):
    folder, _ = month_files
    root = tmp_path / "moola_data"
    base = ["--data-root", str(root), "data", "ingest", str(folder / "es-01.csv"), "--name", "x"]
    code, _, err = run(capsys, *base)
    assert code == 2
    assert "--symbol and --timeframe are required for a CSV" in err and "es-01.csv" in err
    code, _, err = run(capsys, *base, "--symbol", "ES")
    assert code == 2 and "--timeframe is required" in err and "--symbol" not in err.split("e.g.")[0]
    assert not (root / "data" / "raw").exists() or Registry(root).versions("raw", "x") == []


# --- augment ------------------------------------------------------------------------------


@pytest.fixture
def patterns_split(capsys, tmp_path):
    """40 planted patterns over a synthetic market, as labeled windows split forward."""
    root, labels = tmp_path / "moola_data", tmp_path / "planted.csv"
    code, _, err = run(
        capsys, "--data-root", str(root), "data", "synth", "--name", "mkt", "--bars", "20000",
        "--calendar", "crypto", "--patterns", "40", "--labels-out", str(labels),
    )  # fmt: skip
    assert code == 0, err
    base = ["--data-root", str(root), "data"]
    assert run(capsys, *base, "windows", "mkt", "--name", "pat", "--labels", str(labels))[0] == 0
    code, _, err = run(
        capsys, *base, "split", "pat", "--strategy", "forward-chaining", "--purge", "105",
        "--name", "fc",
    )  # fmt: skip
    assert code == 0, err
    return root


def test_augment_stores_a_train_only_set_and_prints_its_ks_quality(capsys, patterns_split):
    root = patterns_split
    code, out, err = run(
        capsys, "--data-root", str(root), "data", "augment", "pat", "--split", "fc",
        "--method", "scaling", "--name", "syn", "--copies", "2", "--seed", "3",
    )  # fmt: skip
    assert code == 0, err
    registry = Registry(root)
    meta = registry.meta(registry.resolve("synthetic", "syn"))
    train = registry.load_labeled("pat", split="fc").train
    assert meta["windows"] == 2 * len(train)
    assert f"KS statistic {meta['ks_statistic']:.4f}" in out and "p-value" in out
    assert meta["ks_pvalue"] >= 0.1 and "below" not in out
    data = registry.load_labeled("pat", split="fc", synthetic="syn")
    assert data.audit["val_synthetic_count"] == 0 and data.audit["test_synthetic_count"] == 0
    assert data.train.synthetic.sum() == 2 * len(train)


def test_a_strong_augmentation_is_refused_by_train_unless_overridden(capsys, patterns_split):
    root = patterns_split
    code, out, err = run(
        capsys, "--data-root", str(root), "data", "augment", "pat", "--split", "fc",
        "--method", "jitter", "--sigma", "0.01", "--name", "strong",
    )  # fmt: skip
    assert code == 0, err
    assert "below the 0.1 quality bar" in out
    train = ["--data-root", str(root), "train", "--model", "logistic_regression", "--dataset",
             "pat", "--split", "fc", "--synthetic", "strong", "--bootstrap", "10"]  # fmt: skip
    code, _, err = run(capsys, *train)
    assert code == 2 and "KS p-value" in err and "--allow-low-quality-synthetic" in err
    assert not RunStore(root).results()
    code, _, err = run(capsys, *train, "--allow-low-quality-synthetic")
    assert code == 0, err
    (record,) = RunStore(root).results()
    store = RunStore(root)
    manifest = store.manifest_bytes(store.run_dir(record["run_id"])).decode()
    assert '"low_quality_override": true' in manifest and "override_reason" in manifest


def test_augment_refuses_an_unknown_method_naming_the_choices(capsys, patterns_split):
    code, _, err = run(
        capsys, "--data-root", str(patterns_split), "data", "augment", "pat", "--split", "fc",
        "--method", "warp", "--name", "x",
    )  # fmt: skip
    assert code == 2 and "jitter, scaling, time-warp" in err
    assert Registry(patterns_split).versions("synthetic", "x") == []
