"""A real multi-symbol trend model as a live member (issue 18): a small BiLSTM trained on
feature windows of two symbols, embedding each window's symbol (``n_symbols=2``), promoted
and run as the ``trend`` member beside a ``direction`` member (a logistic regression on
longer windows of the same feature set) in a paper session.

The session replays the *same* bars under both symbols and lists them in the other order
than the run's sorted symbols, so a member that read the symbol's id from the session's
order, or not at all, gives values the run's ``Predictor`` does not (it reads the id from
the bars' ``symbol`` column).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.evaluation.gates import GateConfig
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.pipeline.lifecycle import promote
from moola.pipeline.predictor import Predictor
from moola.pipeline.train import TrainConfig, run_training
from moola.runtime.config import parse_live_config
from moola.runtime.parity import read_session, session_parity
from moola.runtime.session import open_journal, run_session
from tests.conftest import random_walk_bars, store_labeled_pair

SPEC = FeatureSetSpec(
    name="small",
    features=[
        FeatureSpecEntry(name="sma", params={"period": 5}),
        FeatureSpecEntry(name="rsi", params={"period": 3}, scale="robust"),
    ],
)
#: The session lists its symbols against the run's sorted order (("AAA", "BBB")).
SESSION_SYMBOLS = ["BBB", "AAA"]
REPLAY_BARS = 120


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Data root with raws ``aaa`` and ``bbb`` (300 one-minute bars each, other seeds),
    labels "-1"/"1" (sign of the 5-bar forward return), feature windows of ``small`` over
    both (10 rows: ``pair``, 20 rows: ``pair20``), a promoted BiLSTM on ``pair`` (it embeds
    the two symbols) and a promoted logistic regression on ``pair20`` (no embedding); and
    raw ``same``: 120 bars replayed as AAA and, identical, as BBB. Returns (root, trend run,
    direction run, feature set yaml)."""
    parent = tmp_path_factory.mktemp("multisymbol")
    registry = Registry(parent / "moola_data")
    store_labeled_pair(registry)
    runs = {}
    for name, length, model, params in (
        ("pair", 10, "bilstm", {"epochs": 1, "hidden": 8}),
        ("pair20", 20, "logistic_regression", {}),
    ):
        ref = build_feature_windows(
            registry, "aaa,bbb", SPEC, name=name, length=length, labels=["aaa", "bbb"],
            targets=["label"],
        )  # fmt: skip
        make_and_store_split(registry, ref, "walk-forward", name=f"{name}-wf", n_splits=3)
        config = TrainConfig(
            model=model, dataset=name, split=f"{name}-wf", params=params, n_bootstrap=10
        )
        runs[name] = run_training(registry, config).run_id
        promote(registry, runs[name], GateConfig(min_accuracy=0.0, max_ece=1.0))
    one = random_walk_bars(REPLAY_BARS, symbol="AAA", seed=7)
    same = pd.concat([one, one.assign(symbol="BBB")], ignore_index=True)
    ingest_bars(registry, same, name="same", sources=[{"t": "same"}], mode="repair")
    spec = parent / "small.yaml"
    spec.write_text(SPEC.to_yaml(), encoding="utf-8")
    return registry.root, runs["pair"], runs["pair20"], spec


def _config(lab, symbols=SESSION_SYMBOLS, **values):
    _, trend, direction, spec = lab
    return parse_live_config(
        {
            "symbols": list(symbols),
            "feature_set": str(spec),
            "members": [
                {"role": "direction", "run": direction, "up_class": "1"},
                {"role": "trend", "run": trend, "up_class": "1"},
            ],
            **values,
        }
    )


@pytest.fixture(scope="module")
def session(lab):
    """The paper session over ``same`` (every bar of both symbols), journal closed:
    (config, session id, its iterations)."""
    root = lab[0]
    config = _config(lab)
    result = run_session(root, config, replay="same", env={})
    journal = open_journal(root, "paper", config, {})
    try:
        iterations = read_session(journal, result.session_id).iterations
    finally:
        journal.close()
    return config, result.session_id, iterations


def _by_symbol(iterations):
    return {s: [it for it in iterations if it.symbol == s] for s in SESSION_SYMBOLS}


def _value(it, member):
    (record,) = [m for m in it.members if m.member == member]
    return record.value


def test_the_trained_run_embeds_both_symbols(lab):
    root, trend, direction, _ = lab
    assert Predictor.from_promoted(root, trend).symbols == ("AAA", "BBB")
    assert Predictor.from_promoted(root, direction).symbols == ()


def test_the_trend_member_answers_each_bar_as_the_predictor_does_for_its_symbol(lab, session):
    """Every decided bar of each symbol journals the trend member's value, equal to the
    promoted run's ``Predictor`` on that symbol's bars up to it (batch features, the id
    from the bars' symbol); None exactly while the predictor has no full window."""
    root, trend, _, _ = lab
    _, _, iterations = session
    predictor = Predictor.from_promoted(root, trend)
    up = predictor.classes.index("1")
    replayed = Registry(root).load_raw("same")
    answered = 0
    for symbol, its in _by_symbol(iterations).items():
        bars = replayed[replayed["symbol"] == symbol].reset_index(drop=True)
        assert len(its) == REPLAY_BARS and all(it.decision is not None for it in its)
        for i, it in enumerate(its):
            assert pd.Timestamp(it.bar_time) == bars["timestamp"].iloc[i]
            try:
                expected = float(predictor.predict_proba(bars.iloc[: i + 1])[0, up])
            except ConfigError:  # fewer than 10 settled feature rows
                expected = None
            value = _value(it, "trend")
            if expected is None:
                assert value is None, (symbol, i)
            else:
                assert value == pytest.approx(expected, abs=1e-6), (symbol, i)
                answered += 1
    assert answered > 2 * (REPLAY_BARS - 20)


def test_the_embedding_tells_identical_bars_of_the_two_symbols_apart(session):
    """Same bars, same time: the trend member answers differently for AAA and BBB (its
    embedding reads which symbol), the direction member (no embedding) the same."""
    _, _, iterations = session
    by = _by_symbol(iterations)
    pairs = list(zip(by["AAA"], by["BBB"], strict=True))
    assert all(a.bar == b.bar and a.bar_time == b.bar_time for a, b in pairs)
    trend = [(_value(a, "trend"), _value(b, "trend")) for a, b in pairs]
    trend = np.array([t for t in trend if t[0] is not None], dtype=np.float64)
    direction = [(_value(a, "direction"), _value(b, "direction")) for a, b in pairs]
    direction = np.array([d for d in direction if d[0] is not None], dtype=np.float64)
    assert len(trend) > 100 and len(direction) > 90
    assert (np.abs(trend[:, 0] - trend[:, 1]) > 1e-3).all()  # well past float rounding
    assert direction[:, 0] == pytest.approx(direction[:, 1], abs=1e-9)


def test_decisions_weigh_direction_and_trend_0_35_to_0_40_renormalised(session):
    """Both answering: 0.35/0.75 and 0.40/0.75 of the journaled values; while only the
    trend member's 10-row window is full (the direction member reads 20 rows), the trend
    member alone with weight 1, the direction member named missing."""
    _, _, iterations = session
    both = trend_only = 0
    for it in iterations:
        d, t = _value(it, "direction"), _value(it, "trend")
        weights = {m.member: m.weight for m in it.members}
        assert weights == {"direction": 0.35, "trend": 0.40}
        detail = it.decision.detail
        if d is not None and t is not None:
            assert detail["weights_used"] == pytest.approx(
                {"direction": 0.35 / 0.75, "trend": 0.40 / 0.75}
            )
            assert detail["missing"] == []
            expected = (0.35 * d + 0.40 * t) / 0.75
            assert it.decision.probability == pytest.approx(expected, rel=1e-9)
            both += 1
        elif t is not None:
            assert detail["weights_used"] == {"trend": 1.0}
            assert detail["missing"] == ["direction"] and "direction" in detail["missing_reasons"]
            assert it.decision.probability == pytest.approx(t, rel=1e-9)
            trend_only += 1
        else:
            assert d is None and it.decision.probability is None
    assert both > 150 and trend_only >= 2 * 10


def test_parity_replays_the_trend_member_with_no_difference(lab, session):
    root = lab[0]
    config, session_id, _ = session
    journal = open_journal(root, "paper", config, {})
    try:
        report = session_parity(journal, session_id, root=root)
    finally:
        journal.close()
    assert report.ok, [str(d) for d in report.differences]
    assert report.count("members").compared == 2 * 2 * 2 * REPLAY_BARS  # value, run id
    assert report.count("decisions").compared > 0


def test_a_session_symbol_the_embedding_does_not_know_is_refused_at_load(lab, tmp_path):
    """The run embeds AAA and BBB: a session also trading CCC is refused before anything
    opens (no journal written), naming the trend member, its run, its symbols and CCC."""
    root, trend, _, _ = lab
    journal = tmp_path / "paper.db"
    config = _config(lab, symbols=["AAA", "BBB", "CCC"], journal_url=f"sqlite:///{journal}")
    with pytest.raises(ConfigError, match=r"cannot read bars of \['CCC'\]") as caught:
        run_session(root, config, replay="same", env={})
    message = str(caught.value)
    assert "'trend'" in message and trend in message and "['AAA', 'BBB']" in message
    assert caught.value.param == "symbols"
    assert not journal.exists()
