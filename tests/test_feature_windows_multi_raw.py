"""Feature windows over several raw versions (``build_feature_windows(registry, "A,B,C",
...)``): one dataset whose windows are those of each raw built alone, over each raw's own
stored feature table; symbols shared between raws or date ranges that do not overlap are
refused before anything is written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError, RegistryError
from moola.data.registry import Registry
from moola.features.labels import build_labels
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.pipeline.labels import store_labels
from tests.conftest import random_walk_bars
from tests.test_cli import run
from tests.test_feature_windows import LENGTH, SPEC

SYMBOLS = {"btc": ("BTC", 230, 1), "eth": ("ETH", 200, 2), "sol": ("SOL", 215, 3)}


def _raw(registry: Registry, name: str, bars: pd.DataFrame, *, labels: bool = True) -> None:
    """Raw ``name`` and, with ``labels``, forward-return (``NAME-fwd``) and realized-vol
    (``NAME-vol``) labels built over it."""
    raw = ingest_bars(registry, bars, name=name, sources=[{"test": name}], mode="repair").ref
    if not labels:
        return
    stored = registry.load_raw(raw.name, raw.version)
    for suffix, kind in (("fwd", "forward-return"), ("vol", "realized-vol")):
        params = {"horizon": 5 if suffix == "fwd" else 7}
        table = build_labels(stored, kind, **params)
        store_labels(registry, f"{name}-{suffix}", table, raw=raw, kind=kind, params=params)


def _market(registry: Registry, *, labels: bool = True) -> None:
    for name, (symbol, n, seed) in SYMBOLS.items():
        _raw(registry, name, random_walk_bars(n, symbol=symbol, seed=seed), labels=labels)


def _listing(registry: Registry) -> list[str]:
    return [str(info.ref) for info in registry.list()]


def test_several_raws_give_the_windows_of_each_built_alone(registry):
    _market(registry)
    targets = ["label", "realized_vol"]
    for name in SYMBOLS:  # one by one first: each stores its feature table
        build_feature_windows(
            registry,
            name,
            SPEC,
            name=f"{name}-fw",
            length=LENGTH,
            labels=[f"{name}-fwd", f"{name}-vol"],
            targets=targets,
        )
    ref = build_feature_windows(
        registry,
        "btc,eth,sol",
        SPEC,
        name="all",
        length=LENGTH,
        labels=[f"{name}-{suffix}" for name in SYMBOLS for suffix in ("fwd", "vol")],
        targets=targets,
    )
    # Each raw's feature table was computed once and reused, never copied.
    assert sorted(registry.names("features")) == ["btc-small", "eth-small", "sol-small"]
    assert all(registry.versions("features", f"{n}-small") == [1] for n in SYMBOLS)
    parents = registry.manifest(ref)["parents"]
    for name in SYMBOLS:
        assert registry.resolve("raw", name).to_dict() in parents
        assert registry.resolve("features", f"{name}-small").to_dict() in parents
    meta = registry.meta(ref)
    assert [t["features"]["name"] for t in meta["feature_tables"]] == [
        "btc-small",
        "eth-small",
        "sol-small",
    ]
    assert meta["targets"][1]["source"] == "labels/btc-vol@v1, labels/eth-vol@v1, labels/sol-vol@v1"

    data = registry.load_feature_windows("all")
    alone = [registry.load_feature_windows(f"{name}-fw") for name in SYMBOLS]
    assert data.feature_tables == tuple(registry.resolve("features", f"{n}-small") for n in SYMBOLS)
    np.testing.assert_array_equal(data.X.values, np.concatenate([a.X.values for a in alone]))
    offsets = np.cumsum([0] + [len(a.X.values) for a in alone])[:-1]
    np.testing.assert_array_equal(
        data.X.starts, np.concatenate([a.X.starts + o for a, o in zip(alone, offsets, strict=True)])
    )
    np.testing.assert_array_equal(data.table["start"], data.X.starts)
    assert data.symbols.tolist() == [s for a in alone for s in a.symbols.tolist()]
    np.testing.assert_array_equal(data.Y[:, 1], np.concatenate([a.Y[:, 1] for a in alone]))
    names = np.asarray(data.targets[0]["classes"])[data.Y[:, 0].astype(int)]
    alone_names = [np.asarray(a.targets[0]["classes"])[a.Y[:, 0].astype(int)] for a in alone]
    assert names.tolist() == np.concatenate(alone_names).tolist()
    for i in (0, len(data) // 2, len(data) - 1):
        k = int(np.searchsorted(offsets, data.X.starts[i], side="right") - 1)
        j = int(np.flatnonzero(alone[k].X.starts == data.X.starts[i] - offsets[k])[0])
        np.testing.assert_array_equal(data.X[i], alone[k].X[j])
    expected = {
        key: sum(registry.meta(a.ref)["excluded"][key] for a in alone) for key in meta["excluded"]
    }
    assert meta["excluded"] == expected

    # A split by time cuts every symbol at the same timestamps.
    _, _, split = make_and_store_split(registry, ref, "forward-chaining")
    for part in (split.train, split.val, split.test):
        assert set(data.symbols[np.asarray(part)]) == {"BTC", "ETH", "SOL"}


def test_unlabeled_windows_over_several_raws_split_by_their_own_times(registry):
    _market(registry, labels=False)
    ref = build_feature_windows(registry, ["btc", "eth"], SPEC, name="fu", length=LENGTH)
    data = registry.load_feature_windows("fu")
    assert data.y is None and data.task is None and set(data.symbols) == {"BTC", "ETH"}
    symbols, first, last = registry.sample_windows(ref)
    assert symbols.tolist() == data.symbols.tolist()
    np.testing.assert_array_equal(last, data.table["end_ts"].astype("int64").to_numpy())
    np.testing.assert_array_equal(first, data.table["start_ts"].astype("int64").to_numpy())
    make_and_store_split(registry, ref, "forward-chaining")


def test_bad_raw_combinations_are_refused_with_nothing_written(registry):
    _market(registry)
    _raw(registry, "late", random_walk_bars(150, symbol="LATE", start="2024-02-01"), labels=False)
    _raw(registry, "btc2", random_walk_bars(150, symbol="BTC", seed=9), labels=False)
    _raw(registry, "hourly", random_walk_bars(150, symbol="H", timeframe="60m"), labels=False)
    before = _listing(registry)
    with pytest.raises(ConfigError, match="date ranges of the symbols do not overlap") as info:
        build_feature_windows(registry, "btc,late", SPEC, name="fw", length=LENGTH)
    assert "BTC (raw/btc@v1): 2024-01-01 00:00:00+00:00 .. 2024-01-01 03:49:00+00:00" in str(
        info.value
    )
    assert "LATE (raw/late@v1): 2024-02-01" in str(info.value)
    with pytest.raises(ConfigError, match=r"different bar time frames \(raw/btc@v1: 1m, raw/hou"):
        build_feature_windows(registry, "btc,hourly", SPEC, name="fw", length=LENGTH)
    with pytest.raises(ConfigError, match=r"Symbol BTC is in both raw/btc@v1 and raw/btc2@v1"):
        build_feature_windows(registry, "btc,btc2", SPEC, name="fw", length=LENGTH)
    with pytest.raises(RegistryError, match=r"No labels table was built from raw/eth@v1"):
        build_feature_windows(registry, "btc,eth", SPEC, name="fw", length=LENGTH, labels="btc-fwd")
    with pytest.raises(RegistryError, match=r"labels/sol-fwd@v1 was built from raw/sol@v1, not "):
        build_feature_windows(
            registry, "btc,eth", SPEC, name="fw", length=LENGTH, labels="btc-fwd,sol-fwd"
        )
    with pytest.raises(ConfigError, match="names raw/btc@v1 twice"):
        build_feature_windows(registry, ["btc", "btc@v1"], SPEC, name="fw", length=LENGTH)
    assert _listing(registry) == before


def test_cli_builds_multitask_windows_over_several_raws(capsys, tmp_path):
    root = tmp_path / "moola_data"
    _market(Registry(root))
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC.to_yaml())
    base = ["--data-root", str(root), "data", "windows"]
    code, out, err = run(
        capsys, *base, "btc,eth", "sol", "--name", "all", "--features", str(spec),
        "--length", str(LENGTH), "--labels-from", "btc-fwd,eth-fwd,sol-fwd",
        "--labels-from", "btc-vol", "--labels-from", "eth-vol,sol-vol",
        "--target", "label", "--target", "realized_vol",
    )  # fmt: skip
    assert code == 0, err
    assert "features/btc-small@v1, features/eth-small@v1, features/sol-small@v1" in out
    assert "multitask targets: label (classification: -1 1), realized_vol (regression)" in out
    data = Registry(root).load_feature_windows("all")
    assert set(data.symbols) == {"BTC", "ETH", "SOL"} and data.Y.shape == (len(data), 2)
    code, _, err = run(capsys, *base, "btc,eth", "--name", "x", "--length", "10")
    assert code == 2 and "--features" in err
    code, _, err = run(
        capsys, *base, "btc", "--name", "x", "--features", str(spec), "--target", "label"
    )
    assert code == 2 and "--labels-from" in err
    code, _, err = run(
        capsys, *base, "btc", "--name", "x", "--features", str(spec), "--length", "10",
        "--labels-from", "btc-fwd", "--target", "nope",
    )  # fmt: skip
    assert code == 2 and "no label column 'nope'" in err and "forward_return" in err
    assert not Registry(root).versions("labeled", "x")


def test_a_label_kind_names_the_table_of_every_raw(registry):
    _market(registry)
    for name in ("btc", "eth"):  # a second table with realized_vol: vol-regime's
        raw = registry.resolve("raw", name)
        params = {"horizon": 4, "window": 30}
        table = build_labels(registry.load_raw(name), "vol-regime", **params)
        store_labels(registry, f"{name}-regime", table, raw=raw, kind="vol-regime", params=params)
    labels = ["btc-fwd", "btc-vol", "btc-regime", "eth-fwd", "eth-vol", "eth-regime"]
    with pytest.raises(ConfigError, match=r"'realized_vol' is in both labels/btc-vol@v1 and"):
        build_feature_windows(
            registry, "btc,eth", SPEC, name="fw", length=LENGTH, labels=labels,
            targets=["label", "realized_vol"],
        )  # fmt: skip
    targets = ["label", "vol_regime", "realized-vol:realized_vol"]
    build_feature_windows(
        registry, "btc,eth", SPEC, name="fw", length=LENGTH, labels=labels, targets=targets
    )
    data = registry.load_feature_windows("fw")
    assert [(t["name"], t["kind"], t["source"]) for t in data.targets] == [
        ("label", "classification", "labels/btc-fwd@v1, labels/eth-fwd@v1"),
        ("vol_regime", "classification", "labels/btc-regime@v1, labels/eth-regime@v1"),
        ("realized_vol", "regression", "labels/btc-vol@v1, labels/eth-vol@v1"),
    ]
    assert data.targets[1]["classes"] == ["0", "1", "2"]
    btc = data.symbols == "BTC"
    vol = registry.load_table("labels", "btc-vol")["realized_vol"]
    np.testing.assert_array_equal(data.Y[btc, 2], vol.iloc[data.table["end"][btc]].to_numpy())
