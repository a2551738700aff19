"""Committing a batch: accepted windows (labelled, graded A-C) become a new labeled version
over the previous one, with the batch, log hash and sequence numbers in the manifest;
blacklisted windows are refused; a second commit of the same batch is a no-op; review
corrections change labels in a new version with lineage; the previous version stays."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from moola.annotate.commit import ANNOTATIONS_STEP, PREVIOUS_STEP, REVIEW_STEP, commit_batch
from moola.annotate.model import NewAction
from moola.annotate.store import BatchStore, write_batch
from moola.core.errors import ConfigError, IntegrityError, RegistryError
from moola.data.blacklist import read_blacklist
from tests.annotate._batches import make_batch, store_raw


@pytest.fixture
def raw(registry):
    return store_raw(registry)


def _label(store, i, label, grade=None):
    window = store.batch.windows[i]
    store.record(NewAction(window_id=window.window_id, kind="label", label=label))
    if grade:
        store.record(NewAction(window_id=window.window_id, kind="grade", grade=grade))


def _store(registry, raw, starts, **kwargs):
    batch = make_batch(registry, raw, starts, **kwargs)
    write_batch(registry.root, batch)
    return BatchStore(registry.root, batch)


def _windows(registry, ref):
    return pd.read_parquet(io.BytesIO(registry.read_file(ref, "windows.parquet")))


def _step(registry, ref, name):
    steps = registry.manifest(ref)["transformations"]
    return next(step for step in steps if step["name"] == name)


def test_accepted_windows_become_v1_with_the_annotations_in_the_manifest(registry, raw):
    store = _store(registry, raw, [0, 40, 80, 120, 160])
    _label(store, 0, "consolidation", "A")
    _label(store, 1, "retracement", "C")
    _label(store, 2, "retracement", "D")  # rejected and blacklisted
    store.record(NewAction(window_id=store.batch.windows[3].window_id, kind="grade", grade="B"))
    store.record(NewAction(window_id=store.batch.windows[4].window_id, kind="skip"))
    result = commit_batch(registry, "b1", into="pat")
    assert result.created and str(result.ref) == "labeled/pat@v1"
    assert (result.added, result.windows) == (2, 2)
    table = _windows(registry, result.ref)
    assert table["start"].tolist() == [0, 40]
    assert table["label"].tolist() == ["consolidation", "retracement"]
    assert table["grade"].tolist() == ["A", "C"]
    assert set(table["source"]) == {"annotate:b1"}
    step = _step(registry, result.ref, ANNOTATIONS_STEP)["params"]
    assert step["batch"] == "b1" and step["log_sha256"] == store.log.sha256()
    assert step["seqs"] == [1, 2, 3, 4]
    assert step["windows"] == [w.window_id for w in store.batch.windows[:2]]
    assert registry.verify() == []  # the registry's own check passes


def test_committing_the_same_batch_again_is_a_no_op(registry, raw):
    store = _store(registry, raw, [0, 40])
    _label(store, 0, "consolidation", "B")
    first = commit_batch(registry, "b1", into="pat")
    again = commit_batch(registry, "b1", into="pat")
    assert not again.created and again.ref == first.ref
    assert again.already == (store.batch.windows[0].window_id,)
    assert registry.versions("labeled", "pat") == [1]
    assert "nothing new" in str(again)


def test_keepers_labelled_later_go_into_the_next_version_and_v1_stays(registry, raw):
    store = _store(registry, raw, [0, 40, 80])
    _label(store, 0, "consolidation", "A")
    v1 = commit_batch(registry, "b1", into="pat").ref
    _label(store, 1, "retracement", "B")
    other = _store(registry, raw, [200], name="b2")
    _label(other, 0, "neither", "A")
    v2 = commit_batch(registry, "b1", into="pat").ref
    v3 = commit_batch(registry, "b2", into="pat").ref
    assert _windows(registry, v1)["start"].tolist() == [0]
    assert _windows(registry, v2)["start"].tolist() == [0, 40]
    assert _windows(registry, v3)["start"].tolist() == [0, 40, 200]
    assert _step(registry, v3, PREVIOUS_STEP)["params"]["version"] == 2
    assert _step(registry, v2, ANNOTATIONS_STEP)["params"]["windows"] == [
        store.batch.windows[1].window_id
    ]


def test_windows_overlapping_the_blacklist_are_refused(registry, raw):
    store = _store(registry, raw, [0, 10, 100])  # windows 0 and 1 overlap (20 bars each)
    _label(store, 0, "consolidation", "D")
    _label(store, 1, "retracement", "A")
    _label(store, 2, "retracement", "A")
    result = commit_batch(registry, "b1", into="pat")
    assert result.blacklisted == (store.batch.windows[1].window_id,)
    assert _windows(registry, result.ref)["start"].tolist() == [100]
    assert len(read_blacklist(registry.root)) == 1


def test_a_batch_with_nothing_accepted_creates_nothing(registry, raw):
    store = _store(registry, raw, [0])
    _label(store, 0, "consolidation")  # no grade
    with pytest.raises(ConfigError, match="no accepted annotations") as caught:
        commit_batch(registry, "b1", into="pat")
    assert caught.value.param == "batch" and registry.versions("labeled", "pat") == []


def test_bad_targets_are_named(registry, raw):
    store = _store(registry, raw, [0])
    _label(store, 0, "consolidation", "A")
    with pytest.raises(ConfigError) as caught:
        commit_batch(registry, "b1")
    assert caught.value.param == "into"
    with pytest.raises(ConfigError, match="names a version"):
        commit_batch(registry, "b1", into="pat@v2")
    other_raw = store_raw(registry, 300, name="nq", symbol="NQ")
    other = _store(registry, other_raw, [0], name="b2")
    _label(other, 0, "neither", "A")
    commit_batch(registry, "b2", into="pat")
    with pytest.raises(RegistryError, match="raw/nq@v1"):
        commit_batch(registry, "b1", into="pat")
    longer = _store(registry, raw, [100], name="b3", length=30)
    _label(longer, 0, "neither", "A")
    commit_batch(registry, "b1", into="es20")
    with pytest.raises(ConfigError, match="windows of 20 bars") as caught:
        commit_batch(registry, "b3", into="es20")
    assert caught.value.param == "into" and registry.versions("labeled", "es20") == [1]


def test_a_corrupt_log_line_is_refused_unless_skipped(registry, raw):
    store = _store(registry, raw, [0, 40])
    _label(store, 0, "consolidation", "A")
    with open(store.log.path, "ab") as handle:
        handle.write(b"not json\n")
    _label(store, 1, "retracement", "B")
    with pytest.raises(IntegrityError, match=r"line.* 3") as caught:
        commit_batch(registry, "b1", into="pat")
    assert caught.value.param == "skip_corrupt"
    assert commit_batch(registry, "b1", into="pat", skip_corrupt=True).added == 2


def test_review_corrections_make_a_new_version_with_lineage(registry, raw):
    store = _store(registry, raw, [0, 40, 80, 120])
    for i, label in enumerate(["consolidation", "consolidation", "retracement", "neither"]):
        _label(store, i, label, "B")
    v1 = commit_batch(registry, "b1", into="pat").ref
    review = _store(
        registry,
        raw,
        [0, 40, 80],
        name="r1",
        kind="review",
        labeled="pat@v1",
        given=["consolidation", "consolidation", "retracement"],
    )
    _label(review, 0, "retracement")  # a correction (no grade needed in review)
    _label(review, 1, "consolidation")  # confirmed: no change
    _label(review, 2, "retracement", "D")  # removed and blacklisted
    result = commit_batch(registry, "r1")
    assert result.created and str(result.ref) == "labeled/pat@v2" and result.changed == 1
    table = _windows(registry, result.ref)
    assert table["start"].tolist() == [0, 40, 120]  # the D window left through the blacklist
    assert table["label"].tolist() == ["retracement", "consolidation", "neither"]
    assert table["source"].tolist()[0] == "annotate:r1"
    step = _step(registry, result.ref, REVIEW_STEP)["params"]
    assert step["reviewed"]["version"] == 1 and step["kind"] == "review"
    assert step["corrections"] == [
        {
            "window_id": review.batch.windows[0].window_id,
            "from": "consolidation",
            "to": "retracement",
        }
    ]
    assert _windows(registry, v1)["label"].tolist()[0] == "consolidation"  # v1 stays
    again = commit_batch(registry, "r1")
    assert not again.created and registry.versions("labeled", "pat") == [1, 2]
