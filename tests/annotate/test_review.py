"""Label review: cleanlab on a run's purged OOF probabilities puts labels flipped on purpose
at the top of a review batch, stored apart from normal batches; a run without OOF
probabilities is refused naming it, and nothing is written."""

from __future__ import annotations

import numpy as np
import pytest

from moola.annotate import store
from moola.annotate.review import label_issues, review_batch, suspects
from moola.core.errors import ConfigError
from moola.data.blacklist import add_entries, make_entry
from moola.data.registry import Registry
from moola.data.windows import labeled_windows_table
from moola.pipeline.datasets import make_and_store_split, synthesize_raw
from moola.pipeline.train import TrainConfig, run_training

FLIPPED = (5, 17, 33, 52, 70, 90)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> tuple[Registry, dict[str, str]]:
    """120 planted windows, six of them given the wrong label; an OOF run and a holdout
    run of logistic regression on them."""
    registry = Registry(tmp_path_factory.mktemp("review") / "moola_data")
    raw, market = synthesize_raw(registry, "mkt", n_bars=30_000, n_patterns=120, seed=3)
    patterns = market.patterns
    labels = patterns["label"].astype(str).to_numpy().copy()
    flip = np.array(FLIPPED)
    labels[flip] = np.where(labels[flip] == "consolidation", "retracement", "consolidation")
    bars = registry.load_raw("mkt")
    table = labeled_windows_table(
        bars, patterns["start"].to_numpy(np.int64), 105, labels.tolist(), source="human"
    )
    ref = registry.write_labeled("pat", raw, table, length=105)
    make_and_store_split(registry, ref, "purged-kfold", name="kf", folds=5, embargo=105)
    make_and_store_split(registry, ref, "forward-chaining", name="fc", embargo=105)
    runs = {}
    for split in ("kf", "fc"):
        config = TrainConfig(model="logistic_regression", dataset="pat", split=split, n_bootstrap=5)
        runs[split] = run_training(registry, config).run_id
    return registry, runs


def test_flipped_labels_rank_at_the_top_of_the_review_batch(lab):
    registry, runs = lab
    batch = review_batch(registry, runs["kf"], name="rev1")
    assert batch.kind == "review" and batch.labeled == "pat@v1" and batch.raw == "mkt@v1"
    assert batch.source_run == runs["kf"] and batch.strategy == "cleanlab"
    assert store.read_batch(registry.root, "rev1") == batch
    table = registry.load_labeled("pat").table
    rows = [int(table.index[table["start"] == w.start_row][0]) for w in batch.windows]
    top = rows[: len(FLIPPED)]
    assert rows[0] in FLIPPED
    assert len(set(top) & set(FLIPPED)) >= 4, rows
    scores = [w.score for w in batch.windows]
    assert scores == sorted(scores)  # most suspicious (lowest self-confidence) first
    for window, row in zip(batch.windows, rows, strict=True):
        assert window.given_label == table["label"].iloc[row]
        assert set(window.model_proba) == {"consolidation", "retracement"}
        assert window.score == pytest.approx(window.model_proba[window.given_label])
        assert window.suggestion_source == f"run:{runs['kf']}"
        assert window.start_ts == table["start_ts"].iloc[row].to_pydatetime()
    # Review batches live in the review store, never among normal ones.
    assert [b.name for b in store.list_batches(registry.root, kind="normal")] == []
    assert store.log_path(registry.root, batch).parent.name == "review"


def test_limit_keeps_the_most_suspicious_and_blacklisted_windows_are_left_out(lab):
    registry, runs = lab
    full = store.read_batch(registry.root, "rev1")
    short = review_batch(registry, runs["kf"], name="rev-limit", limit=2)
    assert [w.window_id for w in short.windows] == [w.window_id for w in full.windows[:2]]
    first = full.windows[0]
    entry = make_entry(first.symbol, first.start_ts, first.end_ts, "test", "test")
    add_entries(registry.root, [entry])
    after = review_batch(registry, runs["kf"], name="rev-after-blacklist")
    assert first.window_id not in {w.window_id for w in after.windows}
    assert after.params["blacklisted_left_out"] == 1
    # Asked for more than cleanlab flags: the flagged ones, then the least self-confident.
    flagged = after.params["flagged"]
    assert flagged == len(after.windows)  # no limit: the flagged windows only
    wide = review_batch(registry, runs["kf"], name="rev-wide", limit=flagged + 5)
    assert len(wide.windows) == flagged + 5 and wide.params["flagged"] == flagged
    assert wide.windows[:flagged] == after.windows
    rest = [w.score for w in wide.windows[flagged:]]
    assert rest == sorted(rest) and min(rest) >= 0


def test_suspects_fill_up_a_limit_by_rising_confidence():
    labels = np.array([0, 0, 1, 1, 0])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.8, 0.2], [0.55, 0.45]])
    flagged = np.array([3])
    assert suspects(flagged, labels, proba, None).tolist() == [3]
    assert suspects(flagged, labels, proba, 3).tolist() == [3, 1, 4]
    assert suspects(flagged, labels, proba, 10).tolist() == [3, 1, 4, 2, 0]


def test_a_run_without_oof_probabilities_is_refused_naming_it(lab):
    registry, runs = lab
    with pytest.raises(ConfigError, match=runs["fc"]) as caught:
        review_batch(registry, runs["fc"], name="rev-holdout")
    assert "out-of-fold" in str(caught.value)
    assert not store.batch_path(registry.root, "rev-holdout").exists()


def test_an_existing_batch_name_is_refused_and_the_batch_kept(lab):
    registry, runs = lab
    before = store.batch_path(registry.root, "rev1").read_bytes()
    with pytest.raises(ConfigError, match="rev1"):
        review_batch(registry, runs["kf"], name="rev1")
    assert store.batch_path(registry.root, "rev1").read_bytes() == before


def test_label_issues_ranks_by_the_probability_of_the_given_label():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)
    proba = np.where(labels[:, None] == np.arange(2), 0.9, 0.1) + rng.normal(0, 0.02, (100, 2))
    proba = np.clip(proba, 0.01, 0.99)
    labels[[3, 60]] = 1 - labels[[3, 60]]  # wrong labels the model disagrees with
    indices, confidence = label_issues(labels, proba)
    assert set(indices[:2].tolist()) == {3, 60}
    assert np.all(np.diff(confidence) >= 0)
