"""Splits of samples of several symbols: every symbol is cut at the same timestamps, purge
and embargo reach across symbols, a split letting one symbol's train period see another's
val/test period is refused naming both, and one-symbol splits are stored byte for byte as
before symbols were recorded."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import LeakageError, SplitError
from moola.core.hashing import canonical_json
from moola.data.registry import Registry
from moola.data.splits import Split, make_split, validate_split
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Windows (20 bars, stride 5) over a 3-symbol synthetic market on one time grid."""
    registry = Registry(tmp_path_factory.mktemp("symbols"))
    raw, _ = synthesize_raw(registry, "c3", n_bars=400, symbols=SYMBOLS, calendar="crypto")
    windows = registry.write_unlabeled("c3-windows", raw, length=20, stride=5)
    return registry, windows


def _starts_by_symbol(split: Split, indices: list[int]) -> dict[str, list[int]]:
    starts = np.asarray(split.spans, dtype=np.int64)[:, 0]
    symbols = np.asarray(split.symbols)
    chosen = np.asarray(indices, dtype=np.int64)
    return {
        symbol: sorted(starts[chosen[symbols[chosen] == symbol]].tolist()) for symbol in SYMBOLS
    }


@pytest.mark.parametrize(("purge", "embargo"), [(0, 0), ("15min", 2)])
def test_forward_chaining_cuts_every_symbol_at_the_same_timestamps(market, purge, embargo):
    registry, windows = market
    split = make_and_store_split(
        registry, windows, "forward-chaining", purge=purge, embargo=embargo
    )[2]
    assert split.spans_unit == "ns"
    assert sorted(set(split.symbols)) == list(SYMBOLS)
    for part in ("train", "val", "test", "purged"):
        by_symbol = _starts_by_symbol(split, getattr(split, part))
        assert by_symbol["BTC-USD"], part
        assert by_symbol["BTC-USD"] == by_symbol["ETH-USD"] == by_symbol["SOL-USD"], part
    starts = _starts_by_symbol(split, split.val)["BTC-USD"]
    ends = np.asarray(split.spans)[:, 1]
    assert ends[split.train].max() < min(starts)


@pytest.mark.parametrize(("strategy", "folds"), [("purged-kfold", 3), ("walk-forward", 3)])
def test_fold_blocks_are_the_same_timestamps_for_every_symbol(market, strategy, folds):
    registry, windows = market
    split = make_and_store_split(registry, windows, strategy, purge=2, embargo=2, folds=folds)[2]
    for fold in split.folds:
        for part in ("train", "test", "purged"):
            by_symbol = _starts_by_symbol(split, getattr(fold, part))
            assert by_symbol["BTC-USD"] == by_symbol["ETH-USD"] == by_symbol["SOL-USD"], part


def _staggered():
    """A: spans [t, t+1] at odd t; B: points at even t (B alone fills each even time)."""
    starts = np.r_[np.arange(1, 40, 2), np.arange(0, 40, 2)]
    ends = np.r_[np.arange(1, 40, 2) + 1, np.arange(0, 40, 2)]
    symbols = np.array(["A"] * 20 + ["B"] * 20)
    return starts, ends, symbols


def test_a_train_sample_reaching_another_symbols_val_start_is_purged():
    starts, ends, symbols = _staggered()
    split = make_split(
        "forward-chaining", starts, ends, symbols=symbols, val_fraction=0.2, test_fraction=0.2
    )
    val_start = min(starts[split.val])
    assert symbols[np.asarray(split.val)][np.argmin(starts[split.val])] == "B"
    a_val_start = min(starts[i] for i in split.val if symbols[i] == "A")
    # A's sample ending at B's val start is purged, though it ends before A's own val starts
    reaching = [i for i in range(40) if symbols[i] == "A" and ends[i] == val_start]
    assert val_start < a_val_start
    assert reaching and set(reaching) <= set(split.purged)
    assert ends[split.train].max() < val_start
    validate_split(split)


def test_embargo_drops_another_symbols_samples_after_the_train_end():
    starts, ends, symbols = _staggered()
    plain = make_split("forward-chaining", starts, ends, symbols=symbols, test_fraction=0.0)
    embargoed = make_split(
        "forward-chaining", starts, ends, symbols=symbols, test_fraction=0.0, embargo=3
    )
    train_end = ends[embargoed.train].max()
    dropped = sorted(set(plain.val) - set(embargoed.val))
    assert {symbols[i] for i in dropped} == {"A", "B"}
    assert all(train_end < starts[i] <= train_end + 3 for i in dropped)
    assert min(starts[embargoed.val]) > train_end + 3
    validate_split(embargoed)


def test_a_leak_across_symbols_is_refused_naming_both(market):
    registry, windows = market
    split = make_and_store_split(registry, windows, "forward-chaining")[2]
    spans = np.asarray(split.spans)
    symbols = np.asarray(split.symbols)
    last_train = max(split.train, key=lambda i: spans[i, 1])
    other = [i for i in split.val if symbols[i] != symbols[last_train]]
    moved = min(other, key=lambda i: spans[i, 0])
    bad = split.model_copy(
        update={"train": sorted([*split.train, moved]), "val": sorted(set(split.val) - {moved})}
    )
    # the moved sample starts at the val start shared by all symbols: another symbol's
    # val sample starts there too, and is named as the one reached
    with pytest.raises(LeakageError) as caught:
        validate_split(bad)
    message = str(caught.value)
    assert f"train sample {moved} of {symbols[moved]}" in message
    assert "'s val start" in message and "2024-" in message
    reached = message.split(" at or after ")[1].split("'s val start")[0]
    assert reached in SYMBOLS and reached != symbols[moved]
    with pytest.raises(LeakageError, match="reach into a val period"):
        registry.write_split("hand-made", bad, windows)


def test_a_walk_forward_fold_leak_across_symbols_is_refused():
    starts, ends, symbols = _staggered()
    split = make_split("walk-forward", starts, ends, symbols=symbols, n_splits=2)
    folds = list(split.folds)
    fold = folds[1]
    first = min(fold.test, key=lambda i: starts[i])
    folds[1] = fold.model_copy(
        update={"train": sorted([*fold.train, first]), "test": sorted(set(fold.test) - {first})}
    )
    bad = split.model_copy(update={"folds": folds})
    # A's [27, 28] opens fold 1's test block; in train it reaches B's test sample at 28
    assert (symbols[first], starts[first], ends[first]) == ("A", 27, 28)
    with pytest.raises(
        LeakageError,
        match=rf"Fold 1: .* sample {first} of A spans bar 27 \.\. bar 28 .* at or after B's "
        r"test start bar 28",
    ):
        validate_split(bad)


def test_symbols_are_checked_against_the_samples():
    starts, ends, symbols = _staggered()
    with pytest.raises(SplitError, match="39 symbols for 40 samples"):
        make_split("forward-chaining", starts, ends, symbols=symbols[:-1])
    split = make_split("forward-chaining", starts, ends, symbols=symbols)
    with pytest.raises(SplitError, match="recorded symbols differ"):
        validate_split(split, symbols=symbols[::-1])
    # one symbol is not recorded; several are, in the dump and the hash
    alone = make_split("forward-chaining", starts, ends, symbols=["A"] * 40)
    assert alone.symbols == [] and "symbols" not in alone.model_dump()
    unnamed = make_split("forward-chaining", starts, ends)
    assert split.content_hash() != unnamed.content_hash() == alone.content_hash()
    assert Split.model_validate(split.model_dump()) == split


# Bytes of the ``split`` part of stored split files of a one-symbol dataset, taken before
# splits learned about symbols: one-symbol datasets must split exactly as before.
ONE_SYMBOL_SPLITS = {
    "forward-chaining": (
        {},
        "823491d6098f29caa06fdf4a2449738a786b09e3cc432a0013e93ede0f82b1d6",
        "sha256:867b39c8073a88f0bfc1d3430d2cad4b6805028462bcd782ad7292d99123d080",
    ),
    "purged-kfold": (
        {"folds": 3},
        "af24d007508604ceafe52191fbf288a2f3df1e212999df29ab0be021912c8bab",
        "sha256:db90b6457bc517b8d782061db9a63dfac38a49bed9b12a111c596390dbb23f95",
    ),
    "walk-forward": (
        {"folds": 3},
        "592cf36d1524e9dd7adcfa9d32714713ed759486b645bc22b98cba9170160b9e",
        "sha256:5ec53254c3a059d315699801bb869a62b388a03985f8a6a4b7136fc5e9fe9853",
    ),
}


def test_one_symbol_splits_are_stored_byte_for_byte_as_before(tmp_path):
    registry = Registry(tmp_path)
    raw, market = synthesize_raw(
        registry, "one", n_bars=3000, n_patterns=12, pattern_length=30, seed=5
    )
    labeled = planted_labeled(registry, "one-lab", raw, market)
    for strategy, (params, body_sha, split_hash) in ONE_SYMBOL_SPLITS.items():
        name, version, _ = make_and_store_split(
            registry, labeled, strategy, purge="30min", embargo=5, **params
        )
        payload = json.loads(registry.split_path(name, version).read_bytes())
        body = canonical_json(payload["split"]).encode()
        assert "symbols" not in payload["split"]
        assert hashlib.sha256(body).hexdigest() == body_sha, strategy
        assert payload["split_hash"] == split_hash, strategy


def test_a_label_horizon_reaching_the_val_start_purges_its_sample(tmp_path):
    """Sample time is the one ``Registry.sample_spans`` gives: through the label horizon.

    BTC's labels look 30 minutes past their windows, ETH's and SOL's do not: near the cut
    BTC's train windows are purged while the other symbols' windows of the same bars stay.
    """
    from moola.data.registry import LABEL_HORIZON
    from moola.data.windows import labeled_windows_table

    registry = Registry(tmp_path)
    raw, _ = synthesize_raw(registry, "c3", n_bars=300, symbols=SYMBOLS, calendar="crypto")
    bars = registry.load_raw(raw.name, raw.version)
    starts = np.concatenate([np.arange(k * 300, k * 300 + 290, 10) for k in range(3)])
    table = labeled_windows_table(bars, starts, 10, ["up"] * starts.size, source="test")
    window_end = pd.DatetimeIndex(table["end_ts"]).as_unit("ns").asi8
    is_btc = table["symbol"].astype(str).to_numpy() == "BTC-USD"
    horizon = window_end + np.where(is_btc, pd.Timedelta("30min").value, 0)
    table[LABEL_HORIZON] = pd.to_datetime(horizon, utc=True)
    labeled = registry.write_labeled("c3-horizon", raw, table, length=10)
    split = make_and_store_split(registry, labeled, "forward-chaining")[2]

    symbols = np.asarray(split.symbols)
    spans = np.asarray(split.spans)
    cuts = (spans[split.val, 0].min(), spans[split.test, 0].min())  # val and test starts
    purged = set(split.purged)
    assert purged and {symbols[i] for i in purged} == {"BTC-USD"}
    for i in purged:  # purged for the horizon alone: the window ends before the next part
        cut = min(c for c in cuts if c > window_end[i])
        assert window_end[i] < cut <= horizon[i]
        twins = [j for j in split.train + split.val if window_end[j] == window_end[i]]
        assert {symbols[j] for j in twins} == {"ETH-USD", "SOL-USD"}
    validate_split(split)
