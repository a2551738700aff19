"""The registry: write-once versions, atomic writes, hash verification, lineage, guards."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import IntegrityError, LeakageError, RegistryError, VersionExistsError
from moola.data.registry import Registry, parse_ref
from moola.data.windows import labeled_windows_table
from moola.pipeline.datasets import make_and_store_split
from tests.conftest import random_walk_bars

SOURCE = [{"path": "memory", "sha256": "sha256:test"}]


def _files_under(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def _labeled(registry: Registry, bars: pd.DataFrame, n: int = 60, length: int = 20):
    raw = registry.write_raw("bars", bars, sources=SOURCE)
    starts = np.arange(n) * (length + 5)
    labels = np.where(np.arange(n) % 3 == 0, "retracement", "consolidation")
    table = labeled_windows_table(bars, starts, length, labels.tolist(), source="human")
    return raw, registry.write_labeled("win", raw, table, length=length)


def test_versions_are_numbered_and_write_once(registry, bars):
    first = registry.write_raw("es", bars, sources=SOURCE)
    second = registry.write_raw("es", bars.iloc[:100], sources=SOURCE)
    assert (first.version, second.version) == (1, 2)
    before = _files_under(registry.root)
    with pytest.raises(VersionExistsError, match=r"raw/es@v1 already exists.*write-once"):
        registry.write_raw("es", bars.iloc[:10], sources=SOURCE, version=1)
    assert _files_under(registry.root) == before
    pd.testing.assert_frame_equal(registry.load_raw("es", 1), bars)
    assert len(registry.load_raw("es")) == 100  # latest by default


def test_failed_write_leaves_nothing_behind(registry, bars):
    broken = bars.copy()
    broken["symbol"] = broken["symbol"].astype(object)
    broken.loc[5, "symbol"] = object()  # parquet cannot store this: the write fails midway
    with pytest.raises(Exception):  # noqa: B017 - any failure; the point is what is left
        registry.write_raw("es", broken, sources=SOURCE)
    assert registry.versions("raw", "es") == []
    assert not [p for p in registry.root.rglob("*") if p.name.startswith(".tmp-")]


def test_manifest_records_sources_hashes_and_provenance(registry, bars):
    ref = registry.write_raw(
        "es", bars, sources=SOURCE, transformations=[{"name": "validate", "params": {}}]
    )
    manifest = registry.manifest(ref)
    assert manifest["content_hash"] == ref.content_hash
    assert manifest["files"]["bars.parquet"]["sha256"].startswith("sha256:")
    assert manifest["sources"] == SOURCE
    assert manifest["transformations"][0]["name"] == "validate"
    for key in ("moola_version", "creator", "created_at", "git_sha"):
        assert key in manifest
    meta = registry.meta(ref)
    assert meta["rows"] == len(bars) and meta["symbols"] == ["TEST"]


def test_tampered_bytes_are_refused_naming_the_file(registry, bars):
    ref = registry.write_raw("es", bars, sources=SOURCE)
    path = registry.dataset_dir("raw", "es", 1) / "bars.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"bars\.parquet"):
        registry.load_raw("es")
    assert any("bars.parquet" in problem for problem in registry.verify())
    assert any("bars.parquet" in problem for problem in registry.verify(full=True))
    assert ref.version == 1


def test_a_flip_in_the_middle_of_a_large_file_is_caught_by_every_load(tmp_path):
    registry = Registry(tmp_path)
    big = random_walk_bars(200_000, seed=1)  # several MiB of Parquet
    registry.write_raw("big", big, sources=SOURCE)
    path = registry.dataset_dir("raw", "big", 1) / "bars.parquet"
    assert path.stat().st_size > 2 * (1 << 20)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the middle: where a first/last-MiB sample never looks
    path.write_bytes(bytes(data))
    assert any("XXH3 check" in problem for problem in registry.verify())
    assert any("SHA-256 check" in problem for problem in registry.verify(full=True))
    with pytest.raises(IntegrityError, match=r"bars\.parquet"):
        registry.load_raw("big")


def test_unknown_names_and_versions_say_what_exists(registry, bars):
    registry.write_raw("es", bars, sources=SOURCE)
    with pytest.raises(RegistryError, match="Known raw datasets: es"):
        registry.load_raw("nq")
    with pytest.raises(RegistryError, match="stored versions: v1"):
        registry.load_raw("es", 7)
    with pytest.raises(RegistryError, match="not allowed"):
        registry.write_raw("../evil", bars, sources=SOURCE)
    assert parse_ref("es@v3") == ("es", 3) and parse_ref("es") == ("es", None)


def test_unlabeled_windows_are_an_index_over_raw_bars(registry, bars):
    raw = registry.write_raw("es", bars, sources=SOURCE)
    ref = registry.write_unlabeled("es-win", raw, length=50, stride=10)
    stored = registry.dataset_dir("unlabeled", "es-win", 1)
    assert sorted(p.name for p in stored.iterdir()) == ["manifest.json", "meta.json", "starts.npy"]
    windows = registry.load_unlabeled("es-win")
    assert len(windows) == registry.meta(ref)["windows"] == (len(bars) - 50) // 10 + 1
    expected = bars[["open", "high", "low", "close"]].to_numpy(np.float32)[30:80]
    np.testing.assert_array_equal(windows[3], expected)
    assert registry.manifest(ref)["parents"][0]["content_hash"] == raw.content_hash


def test_too_few_bars_for_a_window_is_a_clear_error(registry, bars):
    raw = registry.write_raw("tiny", bars.iloc[:10], sources=SOURCE)
    with pytest.raises(RegistryError, match="too few"):
        registry.write_unlabeled("tiny-win", raw, length=105)
    assert registry.versions("unlabeled", "tiny-win") == []


def test_load_labeled_with_split_returns_parts_and_audit(registry, bars):
    _, labeled = _labeled(registry, bars)
    name, version, split = make_and_store_split(
        registry, labeled, "forward-chaining", name="fc", purge=5, embargo=5
    )
    data = registry.load_labeled("win", split=f"{name}@v{version}")
    assert data.X.shape == (60, 20, 4) and data.X.dtype == np.float32
    assert data.classes == ("consolidation", "retracement")
    np.testing.assert_array_equal(
        data.X[1], bars[["open", "high", "low", "close"]].to_numpy(np.float32)[25:45]
    )
    sizes = {part: len(value) for part, value in data.parts.items()}
    assert sizes == data.audit["counts"]
    assert sum(sizes.values()) + len(split.purged) == 60
    train_end = data.table.loc[data.train.indices, "end_ts"].max()
    assert train_end < data.table.loc[data.val.indices, "start_ts"].min()
    assert data.audit["val_synthetic_count"] == data.audit["test_synthetic_count"] == 0
    assert data.audit["split"]["dataset"]["content_hash"] == labeled.content_hash


def test_edited_split_file_is_refused(registry, bars):
    _, labeled = _labeled(registry, bars)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc")
    path = registry.split_path("fc", 1)
    payload = json.loads(path.read_text())
    payload["split"]["train"].append(payload["split"]["test"][0])
    path.write_text(json.dumps(payload))
    with pytest.raises(IntegrityError, match="fc"):
        registry.load_labeled("win", split="fc")


def test_split_of_replaced_dataset_is_refused(registry, bars):
    _, labeled = _labeled(registry, bars)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc")
    # Someone deletes the labeled version and writes different windows under the same version.
    import shutil

    shutil.rmtree(registry.dataset_dir("labeled", "win", 1))
    raw = registry.resolve("raw", "bars")
    table = labeled_windows_table(
        bars, np.arange(60) * 30, 20, ["consolidation", "retracement"] * 30, source="human"
    )
    registry.write_labeled("win", raw, table, length=20, version=1)
    with pytest.raises(IntegrityError, match="now hashes to"):
        registry.load_labeled("win", split="fc")


def _synthetic_from_train(registry, labeled, scale: float, seed: int = 0):
    real = registry.load_labeled("win", split="fc")
    rng = np.random.default_rng(seed)
    X = real.train.X.copy()
    close = X[:, :, 3:4]
    returns = np.diff(np.log(close), axis=1) * scale
    rebuilt = close[:, :1] * np.exp(
        np.concatenate([np.zeros_like(close[:, :1]), np.cumsum(returns, axis=1)], axis=1)
    )
    X = X / close * rebuilt * (1 + rng.normal(0, 1e-6, X.shape)).astype(np.float32)
    labels = [real.classes[i] for i in real.train.y]
    return X, labels


def test_synthetic_only_ever_joins_train(registry, bars):
    _, labeled = _labeled(registry, bars)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc")
    X, labels = _synthetic_from_train(registry, labeled, scale=1.0)
    registry.write_synthetic(
        "aug", X, labels, parent=labeled, split="fc", augmentation={"name": "jitter"}
    )
    base = registry.load_labeled("win", split="fc")
    mixed = registry.load_labeled("win", split="fc", synthetic="aug")
    assert len(mixed.train) == 2 * len(base.train)
    assert mixed.train.synthetic.sum() == len(base.train)
    assert len(mixed.val) == len(base.val) and not mixed.val.synthetic.any()
    assert len(mixed.test) == len(base.test) and not mixed.test.synthetic.any()
    assert mixed.audit["train_synthetic_ratio"] == pytest.approx(0.5)
    assert mixed.audit["synthetic"]["low_quality_override"] is False
    with pytest.raises(LeakageError, match="split"):
        registry.load_labeled("win", synthetic="aug")


def test_low_quality_synthetic_is_refused_unless_overridden(registry, bars):
    _, labeled = _labeled(registry, bars)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc")
    X, labels = _synthetic_from_train(registry, labeled, scale=6.0)
    ref = registry.write_synthetic(
        "wild", X, labels, parent=labeled, split="fc", augmentation={"name": "scale", "x": 6}
    )
    assert registry.meta(ref)["ks_pvalue"] < 0.1
    with pytest.raises(LeakageError, match=r"KS p-value .* < 0.1"):
        registry.load_labeled("win", split="fc", synthetic="wild")
    data = registry.load_labeled(
        "win", split="fc", synthetic="wild", allow_low_quality_synthetic=True
    )
    assert data.audit["synthetic"]["low_quality_override"] is True
