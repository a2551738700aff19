"""``extract_batch`` end to end: a stored batch of windows of the raw version that overlap
nothing labeled, queued or blacklisted (any raw version, by bar times), each with its
suggestion; errors leave nothing written; one seed gives one batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.annotate import store
from moola.annotate.extract import extract_batch
from moola.annotate.model import NewAction
from moola.annotate.stats import keeper_rates, session_of
from moola.annotate.store import BatchStore
from moola.core.errors import ConfigError, RegistryError
from moola.data.blacklist import add_entries, make_entry
from moola.data.registry import Registry
from moola.data.windows import labeled_windows_table
from moola.pipeline.datasets import synthesize_raw


@pytest.fixture
def lab(tmp_path) -> Registry:
    """Two symbols of synthetic 1-minute bars with planted patterns: the patterns of one
    symbol labeled on v1 of the bars, a v2 of the same bars, and one blacklisted span."""
    registry = Registry(tmp_path / "moola_data")
    raw, market = synthesize_raw(
        registry, "mkt", n_bars=4_000, symbols=["AA", "BB"], n_patterns=6, seed=2
    )
    bars = registry.load_raw("mkt")
    patterns = market.patterns[market.patterns["symbol"] == "AA"]
    table = labeled_windows_table(
        bars, patterns["start"].to_numpy(np.int64), 105, patterns["label"].tolist()
    )
    registry.write_labeled("pat", raw, table, length=105)
    registry.write_raw("mkt", bars, sources=[{"kind": "test"}])  # v2: the same bars
    stamps = bars["timestamp"]
    add_entries(
        registry.root, [make_entry("BB", stamps.iloc[5000], stamps.iloc[5300], "bad", "test")]
    )
    return registry


def _span(window) -> tuple[str, int, int]:
    return window.symbol, pd.Timestamp(window.start_ts).value, pd.Timestamp(window.end_ts).value


def _spans(table: pd.DataFrame) -> list[tuple[str, int, int]]:
    return [
        (str(s), pd.Timestamp(a).value, pd.Timestamp(b).value)
        for s, a, b in zip(table["symbol"], table["start_ts"], table["end_ts"], strict=True)
    ]


def _overlaps(window, spans) -> bool:
    a, b = pd.Timestamp(window.start_ts).value, pd.Timestamp(window.end_ts).value
    return any(s == window.symbol and a <= e and b >= t for s, t, e in spans)


def test_a_batch_overlaps_nothing_labeled_queued_or_blacklisted(lab):
    first = extract_batch(lab, "mkt", n=15, length=105, name="b1", weights="uniform", seed=1)
    batch = extract_batch(lab, "mkt", n=15, length=105, name="b2", weights="uniform", seed=1)
    assert batch.raw == "mkt@v2" and batch.kind == "normal" and batch.strategy == "random"
    assert store.read_batch(lab.root, "b2") == batch
    bars = lab.load_raw("mkt", 2)
    labeled = lab.load_labeled("pat").table
    stamps = bars["timestamp"]
    taken = _spans(labeled) + [_span(w) for w in first.windows]
    taken.append(("BB", stamps.iloc[5000].value, stamps.iloc[5300].value))
    assert len(batch.windows) == 15
    own = [_span(w) for w in batch.windows]
    for i, window in enumerate(batch.windows):
        assert not _overlaps(window, taken), window.window_id
        assert not _overlaps(window, own[:i] + own[i + 1 :]), window.window_id
        # Rows and times agree with the raw version, inside one symbol, context included.
        rows = bars.iloc[window.start_row - batch.context : window.end_row + batch.context + 1]
        assert rows["symbol"].nunique() == 1 and rows["symbol"].iloc[0] == window.symbol
        assert stamps.iloc[window.start_row] == window.start_ts
        assert stamps.iloc[window.end_row] == window.end_ts
        assert (window.suggestion is None) == (window.suggestion_source is None)
    assert batch.params["excluded"]["labeled"] > 0
    assert batch.params["excluded"]["queued"] > 0
    assert batch.params["excluded"]["blacklisted"] > 0
    assert any(w.suggestion is not None for w in batch.windows)


def test_one_seed_gives_one_batch(lab):
    a = extract_batch(lab, "mkt@v1", n=10, length=60, name="s1", weights="uniform", seed=7)
    registry2 = Registry(lab.root)
    store.batch_path(lab.root, "s1").unlink()  # as if on a fresh data root
    b = extract_batch(registry2, "mkt@v1", n=10, length=60, name="s1", weights="uniform", seed=7)
    assert [w.window_id for w in a.windows] == [w.window_id for w in b.windows]


def test_bad_requests_fail_clearly_and_write_nothing(lab):
    extract_batch(lab, "mkt", n=3, length=105, name="taken", weights="uniform")
    before = store.batch_path(lab.root, "taken").read_bytes()
    with pytest.raises(ConfigError, match="taken") as caught:
        extract_batch(lab, "mkt", n=3, length=105, name="taken", weights="uniform")
    assert caught.value.param == "name"
    assert store.batch_path(lab.root, "taken").read_bytes() == before
    with pytest.raises(RegistryError, match="too few") as caught:
        extract_batch(lab, "mkt", n=1, length=7_900, context=100, name="long", weights="uniform")
    assert caught.value.param == "length"
    with pytest.raises(RegistryError, match="room for only") as caught:
        extract_batch(lab, "mkt", n=500, length=105, name="many", weights="uniform")
    assert caught.value.param == "n"
    with pytest.raises(ConfigError) as caught:
        extract_batch(lab, "mkt", n=3, length=105, name="al", strategy="uncertainty")
    assert caught.value.param == "run"
    assert [b.name for b in store.list_batches(lab.root)] == ["taken"]


def test_session_weights_favour_the_sessions_with_more_keepers(lab):
    """Past batch: every US-morning window kept (grade A), every other one graded D. The
    next batch draws far more US-morning windows than their share of the free ones."""
    first = extract_batch(lab, "mkt", n=40, length=30, name="past", context=0, seed=3)
    assert first.params["weights_used"] == "uniform"  # no history yet
    past = BatchStore(lab.root, first)
    for window, session in zip(
        first.windows, session_of([w.start_ts for w in first.windows]), strict=True
    ):
        if session == "us_morning":
            past.record(NewAction(window_id=window.window_id, kind="label", label="consolidation"))
            past.record(NewAction(window_id=window.window_id, kind="grade", grade="A"))
        else:
            past.record(NewAction(window_id=window.window_id, kind="grade", grade="D"))
    rates = keeper_rates(lab.root)
    assert rates["us_morning"] == 1.0 and max(v for k, v in rates.items() if k != "us_morning") == 0
    batch = extract_batch(lab, "mkt", n=20, length=30, name="next", context=0, seed=3)
    assert batch.params["weights_used"] == "session"
    assert batch.params["session_weights"]["us_morning"] == 1.0
    share = np.mean(session_of([w.start_ts for w in batch.windows]) == "us_morning")
    free_share = np.mean(session_of(lab.load_raw("mkt")["timestamp"]) == "us_morning")
    assert free_share < 0.2 and share > 0.5
