"""The integrity primitives: confined paths, chained logs, anchors, temporaries, races."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moola.core.anchors import Anchors
from moola.core.atomic import atomic_directory, stale_temporaries
from moola.core.chainlog import (
    append_record,
    append_records,
    chain_head,
    read_records,
    verify_log,
)
from moola.core.errors import ConfigError, IntegrityError
from moola.core.paths import confined
from moola.data.registry import Registry
from moola.pipeline.integrity import collect_garbage, verify_root

SOURCE = [{"path": "test", "sha256": "sha256:0"}]


@pytest.mark.parametrize("part", ["/etc", "../x", "a/../../x", "", "~/x"])
def test_confined_refuses_absolute_parent_and_empty_parts(tmp_path, part):
    with pytest.raises(ConfigError, match="not allowed"):
        confined(tmp_path, part, what="run id")


def test_confined_refuses_a_symlink_that_leaves_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(ConfigError, match="outside the data root"):
        confined(root, "link", what="dataset")
    assert confined(root, "inside", "v1") == root / "inside" / "v1"


def test_chained_log_catches_edits_insertions_and_removals(tmp_path):
    log = tmp_path / "log.jsonl"
    for i in range(4):
        append_record(log, {"i": i})
    assert verify_log(log) == [] and [r["i"] for r in read_records(log)[0]] == [0, 1, 2, 3]
    lines = log.read_bytes().split(b"\n")
    log.write_bytes(b"\n".join(lines[:1] + lines[2:]))  # line 2 removed
    assert any("line 2" in p and "_prev" in p for p in verify_log(log))
    log.write_bytes(b"\n".join(lines).replace(b'"i":2', b'"i":7'))  # edited in place
    problems = verify_log(log)
    assert any("line 3" in p and "edited" in p for p in problems)
    records, skipped = read_records(log)
    assert [r["i"] for r in records] == [0, 1, 3] and "line 3" in skipped[0]


def test_a_batch_appends_the_same_chain_as_one_record_at_a_time(tmp_path):
    one, batch = tmp_path / "one.jsonl", tmp_path / "batch.jsonl"
    append_record(one, {"i": 0})
    append_record(batch, {"i": 0})
    for i in (1, 2, 3):
        append_record(one, {"i": i})
    heads = []
    head = append_records(batch, [{"i": i} for i in (1, 2, 3)], then=heads.append)
    assert one.read_bytes() == batch.read_bytes() and verify_log(batch) == []
    assert head == heads[0] == chain_head(batch)
    assert append_records(batch, [], then=heads.append) is None and len(heads) == 1
    assert one.read_bytes() == batch.read_bytes()  # an empty batch writes nothing


def test_a_corrupt_byte_in_a_log_is_skipped_and_reported_never_fatal(tmp_path):
    log = tmp_path / "experiment_results.jsonl"
    append_record(log, {"run_id": "a"})
    with open(log, "ab") as handle:
        handle.write(b"\xff\xfe not json\n")
    append_record(log, {"run_id": "b"})
    records, problems = read_records(log)
    assert [r["run_id"] for r in records] == ["a", "b"]
    assert problems == [f"{log} line 2: not UTF-8 text (byte 0); line skipped"]


def test_the_log_head_is_the_hash_of_its_last_line(tmp_path):
    log = tmp_path / "log.jsonl"
    head = append_record(log, {"x": 1})
    assert chain_head(log) == head


def test_an_edited_manifest_or_meta_is_refused_on_load(registry, bars):
    registry.write_raw("es", bars, sources=SOURCE)
    directory = registry.dataset_dir("raw", "es", 1)
    manifest = directory / "manifest.json"
    original = manifest.read_bytes()
    manifest.write_bytes(original.replace(b'"created_at"', b'"created_At"'))
    with pytest.raises(IntegrityError, match="journal"):
        registry.load_raw("es")
    manifest.write_bytes(original)
    meta = directory / "meta.json"
    meta.write_bytes(meta.read_bytes().replace(b'"rows": 2000', b'"rows": 1999'))
    with pytest.raises(IntegrityError, match=r"meta\.json differs"):
        registry.load_raw("es")


def test_a_damaged_journal_fails_closed(registry, bars):
    registry.write_raw("es", bars, sources=SOURCE)
    journal = Anchors(registry.root).path
    journal.write_bytes(journal.read_bytes().replace(b"dataset:", b"dataset;", 1))
    with pytest.raises(IntegrityError, match=r"journal .* is damaged"):
        Registry(registry.root).load_raw("es")


def test_a_deleted_journal_is_caught_for_anchored_data(registry, bars):
    registry.write_raw("es", bars, sources=SOURCE)
    Anchors(registry.root).path.unlink()
    with pytest.raises(IntegrityError, match="truncated, replaced or deleted"):
        Registry(registry.root).load_raw("es")


def test_gc_removes_a_dead_writers_leftovers_but_never_a_write_in_flight(registry, bars):
    registry.write_raw("es", bars, sources=SOURCE)
    dead = registry.data_dir / "raw" / "es" / ".tmp-write-deadbeef0000"
    dead.mkdir()
    (dead / "bars.parquet").write_bytes(b"x" * 100)
    split_dead = registry.data_dir / "splits" / "s" / ".tmp-v1.json-0123456789ab"
    split_dead.parent.mkdir(parents=True)
    split_dead.write_bytes(b"{}")
    old = time.time() - 60
    for path in (dead, split_dead):
        os.utime(path, (old, old))
    report = verify_root(registry.root)
    assert not report.ok and sum("moola data gc" in p for p in report.problems) == 2
    target = registry.root / "scratch" / "in-flight"
    with atomic_directory(target) as live:
        os.utime(live, (old, old))
        assert live not in stale_temporaries(registry.root)
        removed = collect_garbage(registry.root)
        assert live.is_dir()
    target.rmdir()
    assert sorted(p for p, _ in removed) == sorted([dead, split_dead])
    assert verify_root(registry.root).ok


_WRITER = """
import sys
from moola.data.registry import Registry
from tests.conftest import random_walk_bars
registry = Registry(sys.argv[1])
for _ in range(3):
    registry.write_raw("race", random_walk_bars(300), sources=[{"path": "t"}])
"""


def test_concurrent_writers_take_consecutive_versions(tmp_path):
    root = tmp_path / "moola_data"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(root)], env=env) for _ in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    registry = Registry(root)
    assert registry.versions("raw", "race") == list(range(1, 10))
    assert verify_root(root).ok
    lines = (root / "journal" / "writes.jsonl").read_text().splitlines()
    assert len([json.loads(line) for line in lines]) == 9


def test_a_damaged_split_file_is_a_clean_error_naming_it(registry, bars):
    from moola.data.windows import labeled_windows_table
    from moola.pipeline.datasets import make_and_store_split

    raw = registry.write_raw("b", bars, sources=SOURCE)
    starts = [i * 30 for i in range(40)]
    labels = ["a" if i % 2 else "b" for i in range(40)]
    table = labeled_windows_table(bars, starts, 20, labels, source="human")
    labeled = registry.write_labeled("w", raw, table, length=20)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc")
    path = registry.split_path("fc", 1)
    path.write_bytes(path.read_bytes()[:-10])
    problems = registry.verify()
    assert len(problems) == 1 and str(path) in problems[0]
    with pytest.raises(IntegrityError, match=re.escape(str(path))):
        registry.load_split("fc")
