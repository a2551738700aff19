"""The RL policy as the ensemble's third member (issue 18): an RL run is promoted through
its own gates with what live inference needs, an ``rl`` member acts on the session's bars
as its policy does bar by bar, and a paper session with two supervised members and the RL
member journals three members and still shows no parity difference."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from moola.core.errors import ConfigError, LeakageError
from moola.core.hashing import sha256_bytes
from moola.data.registry import Registry
from moola.evaluation.gates import GateConfig
from moola.features.featureset import load_feature_set
from moola.features.labels import build_labels
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.pipeline.lifecycle import promote
from moola.pipeline.rl import RLConfig, evaluate_rl, train_rl
from moola.pipeline.train import TrainConfig, run_training
from moola.rl.policy import POLICY_FILE, LivePolicy
from moola.runtime.config import parse_live_config
from moola.runtime.members import PolicyMember, load_members
from moola.runtime.parity import read_session, session_parity
from moola.runtime.session import open_journal, run_session
from moola.tracking.journal import GateDecision, JsonlJournal
from moola.tracking.runs import RunStore
from tests.conftest import random_walk_bars
from tests.runtime._lab import SMALL

TINY = {"n_steps": 32, "batch_size": 32, "n_epochs": 2}
#: Gates the tiny agent passes (the defaults want a positive after-cost return).
OPEN = {"metric_gates": ("eval_return>-1",), "max_drawdown": 1.0}


def _train_rl(registry: Registry, seed: int = 0, **extra) -> str:
    config = RLConfig(dataset="fw", split="fc", symbol="BTC", action_space="target",
                      timesteps=64, eval_freq=64, keep_top=1, params=TINY, seed=seed,
                      execution={"spread": 0.01, "commission": 0.0005}, **extra)  # fmt: skip
    return train_rl(registry, config).run_id


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One symbol's 600 hourly bars, labelled feature windows of a small set with a
    walk-forward split (a promoted logistic regression) and a forward-chaining split (an
    RL run, promoted past open gates; another left unpromoted). Returns (registry, the
    supervised run, the promoted RL run, the unpromoted RL run, the feature set's YAML)."""
    tmp = tmp_path_factory.mktemp("rl_members")
    registry = Registry(tmp / "moola_data")
    bars = random_walk_bars(600, symbol="BTC", timeframe="60m").reset_index(drop=True)
    raw = ingest_bars(registry, bars, name="mkt", sources=[{"test": "mkt"}], mode="repair").ref
    labels = build_labels(bars, "forward-return", horizon=5)
    registry.write_table("labels", "mkt", labels, parents=[raw], meta={"target": "label"})
    ref = build_feature_windows(registry, "mkt", SMALL, name="fw", length=10, labels="mkt")
    make_and_store_split(registry, ref, "walk-forward", name="wf", n_splits=3)
    make_and_store_split(registry, ref, "forward-chaining", name="fc")
    train = TrainConfig(model="logistic_regression", dataset="fw", split="wf", n_bootstrap=10)
    supervised = run_training(registry, train).run_id
    promote(registry, supervised, GateConfig(min_accuracy=0.0, max_ece=1.0))
    rl_run = _train_rl(registry)
    promote(registry, rl_run, overrides=OPEN)
    unpromoted = _train_rl(registry, seed=1)
    spec = tmp / "small.yaml"
    spec.write_text(SMALL.to_yaml(), encoding="utf-8")
    return registry, supervised, rl_run, unpromoted, str(spec)


def _config(lab, members, **overrides):
    _, _, _, _, spec = lab
    values = {
        "symbols": ["BTC"],
        "timeframe": "60m",
        "feature_set": spec,
        "members": members,
        "execution": {
            "instrument": "crypto",
            "initial_cash": 100_000.0,
            "rules": "none",
            "commission": 0.001,
            "spread": 0.02,
        },
        "risk": {"max_position": 200.0},
        "rate_limits": {"all_per_window": 1000, "high_per_window": 1000},
    }
    values.update(overrides)
    return parse_live_config(values)


def test_a_promoted_rl_run_holds_what_live_inference_needs(lab):
    registry, _, rl_run, _, _ = lab
    store = RunStore(registry.root)
    record = json.loads(store.read_promoted(rl_run, POLICY_FILE))
    weights = store.read_promoted(rl_run, "model.zip")
    assert record["weights"]["sha256"] == sha256_bytes(weights)
    manifest = store.manifest(store.run_dir(rl_run))
    assert record["agent"] == manifest["agent"] and record["algo"] == "ppo"
    assert record["action_space"] == "target" and record["symbol"] == "BTC"
    assert record["timeframe"] == "60m"
    observation = record["observation"]
    assert observation["window"] == 10 and observation["timescales"] == {}
    assert observation["columns"] == manifest["observation"]["columns"]
    assert observation["scalings"]["window"] == manifest["observation"]["scaling"]
    assert observation["feature_set"]["name"] == "small"
    assert len(observation["portfolio"]) == 7
    assert record["execution"] == manifest["execution"]["config"]
    gate = json.loads(store.read_promoted(rl_run, "gate.json"))
    assert gate["kind"] == "rl" and gate["basis"] == "val" and gate["gates"]["passed"]
    names = [g["name"] for g in gate["gates"]["gates"]]
    assert names == ["max_drawdown", "parity_max_rel_diff<=1e-09", "eval_return>-1"]
    assert gate["metrics"]["eval_return"] == manifest["evaluation"]["policy"]["mean_return"]
    decisions = [e for e in JsonlJournal(registry.root).read("gate_decision")
                 if isinstance(e, GateDecision) and e.payload.run_id == rl_run]  # fmt: skip
    assert len(decisions) == 1 and decisions[0].payload.basis == "val"


def test_an_rl_run_that_fails_its_gates_is_refused_and_the_refusal_recorded(lab):
    registry, _, _, unpromoted, _ = lab
    with pytest.raises(ConfigError, match=r"eval_return>10: .* vs threshold 10"):
        promote(registry, unpromoted, overrides={"metric_gates": ("eval_return>10",)})
    assert not (RunStore(registry.root).promoted_dir / unpromoted).exists()
    refused = [e for e in JsonlJournal(registry.root).read("gate_decision")
               if isinstance(e, GateDecision) and e.payload.run_id == unpromoted]  # fmt: skip
    assert refused and refused[-1].payload.gates["passed"] is False
    with pytest.raises(ConfigError, match="min_accuracy"):
        promote(registry, unpromoted, overrides={"min_accuracy": 0.6})


def test_after_a_test_look_through_the_ledger_the_test_part_is_the_basis(lab):
    registry = lab[0]
    run_id = _train_rl(registry, seed=2)
    look = evaluate_rl(registry, run_id, part="test")
    decision = promote(registry, run_id, overrides=OPEN)
    assert decision["basis"] == "test"
    metrics = json.loads(RunStore(registry.root).read_promoted(run_id, "gate.json"))["metrics"]
    assert metrics["eval_return"] == look["policy"]["mean_return"]


def test_a_test_evaluation_the_ledger_does_not_record_is_no_basis(lab):
    registry = lab[0]
    run_id = _train_rl(registry, seed=4)
    store = RunStore(registry.root)
    run_dir = store.run_dir(run_id)
    forged = {"policy": {"mean_return": 0.5}, "backtest": {"max_drawdown": 0.0}}
    store.add_file(run_dir, "evaluations/test-forged.json", json.dumps(forged).encode())
    with pytest.raises(LeakageError, match="test ledger does not record"):
        promote(registry, run_id, overrides=OPEN)
    assert not (store.promoted_dir / run_id).exists()


def test_moola_promote_takes_an_rl_run_as_a_user_types_it(lab, capsys):
    from tests.test_cli import run

    registry = lab[0]
    run_id = _train_rl(registry, seed=3)
    root = str(registry.root)
    code, _, err = run(capsys, "--data-root", root, "promote", run_id, "--gate", "eval_return>10")
    assert code != 0 and "eval_return>10" in err and "not promoted" in err
    code, _, err = run(capsys, "--data-root", root, "promote", run_id, "--min-accuracy", "0.6")
    assert code != 0 and "min_accuracy" in err
    code, out, _ = run(capsys, "--data-root", root, "promote", run_id,
                       "--gate", "eval_return>-1", "--max-drawdown", "1")  # fmt: skip
    assert code == 0 and "promoted on val metrics" in out
    assert (RunStore(registry.root).promoted_dir / run_id / POLICY_FILE).is_file()


def test_an_rl_member_must_name_a_promoted_rl_run(lab):
    registry, supervised, rl_run, unpromoted, spec = lab
    fset = load_feature_set(spec)
    with pytest.raises(ConfigError, match=f"run {unpromoted} is not promoted"):
        load_members(registry.root, _config(lab, [{"role": "rl", "run": unpromoted}]), fset)
    with pytest.raises(ConfigError, match="is not an RL run"):
        load_members(registry.root, _config(lab, [{"role": "rl", "run": supervised}]), fset)
    with pytest.raises(ConfigError, match="give it role 'rl'"):
        load_members(registry.root, _config(lab, [{"role": "trend", "run": rl_run}]), fset)
    rl = [{"role": "rl", "run": rl_run}]
    with pytest.raises(ConfigError, match=r"trades BTC .* \['ETH'\] do not include it"):
        load_members(registry.root, _config(lab, rl, symbols=["ETH"]), fset)
    with pytest.raises(ConfigError, match="trained on 60m bars; the session's timeframe is 1m"):
        load_members(registry.root, _config(lab, rl, timeframe="1m"), fset)


def test_the_rl_member_answers_its_policys_target_bar_by_bar(lab):
    registry, _, rl_run, _, spec = lab
    config = _config(lab, [{"role": "rl", "run": rl_run}])
    (member,) = load_members(registry.root, config, load_feature_set(spec))
    assert isinstance(member, PolicyMember) and member.weight == 0.25
    bars = registry.load_raw("mkt").reset_index(drop=True)
    reference = LivePolicy.from_promoted(registry.root, rl_run)
    depth = member.bars_needed
    assert "observation windows filling (0 bars seen" in member.missing_reason("BTC")
    for t in range(120):
        window = bars.iloc[max(0, t + 1 - depth) : t + 1]
        step = reference.update(bars.iloc[t].to_dict())
        value = member.value("BTC", window, None)
        assert value == (None if step is None else step.probability)
        assert (member.missing_reason("BTC") is None) == (value is not None)
    assert value is not None and 0.0 <= value <= 1.0
    assert member.value("ETH", window, None) is None  # not the policy's symbol: missing
    assert member.missing_reason("ETH").startswith("the policy trades BTC only")
    # Bars that do not follow the last one seen start the symbol's policy afresh.
    again = member.value("BTC", bars.iloc[:1], None)
    assert again is None and member._symbols["BTC"].last_time == bars["timestamp"].iloc[0]


def test_a_paper_session_with_the_rl_member_has_three_members_and_parity(lab):
    """Direction and trend (the promoted logistic regression in both roles) and the RL
    policy: every bar journals three members with 0.35/0.40/0.25, the RL member's values
    are its policy's, and the batch replay finds no difference."""
    registry, supervised, rl_run, _, _ = lab
    config = _config(
        lab,
        [
            {"role": "direction", "run": supervised, "up_class": "1"},
            {"role": "trend", "run": supervised, "up_class": "1"},
            {"role": "rl", "run": rl_run},
        ],
        tiers={"high": 0.52, "medium": 0.51, "low": 0.505},
    )
    result = run_session(registry.root, config, replay="mkt", max_bars=300, env={})
    journal = open_journal(registry.root, "paper", config, {})
    try:
        record = journal_iterations(journal, result.session_id)
        assert len(record) == 300
        for outputs in record:
            assert [(o["member"], o["weight"]) for o in outputs] == [
                ("direction", 0.35), ("trend", 0.40), ("rl", 0.25)]  # fmt: skip
        policy = LivePolicy.from_promoted(registry.root, rl_run)
        bars = registry.load_raw("mkt").reset_index(drop=True)
        expected = [policy.update(bar) for bar in bars.iloc[:300].to_dict("records")]
        seen = [next(o["value"] for o in outputs if o["member"] == "rl") for outputs in record]
        assert seen == [None if s is None else s.probability for s in expected]
        assert sum(v is not None for v in seen) > 250
        report = session_parity(journal, result.session_id, root=registry.root)
        assert report.ok, [str(d) for d in report.differences]
        assert report.count("members").compared == 2 * 3 * 300  # value and run id, each bar
        assert report.count("fills").compared > 0
    finally:
        journal.close()


def journal_iterations(journal, session_id):
    """Each bar's journaled member outputs, in bar order."""
    from moola.runtime.parity import read_session

    return [it["members"] for it in read_session(journal, session_id).iterations]


@pytest.fixture(scope="module")
def coarse_run(lab):
    """A promoted RL run that also observes the 4-hour bars (3 of them, its own branch of
    the multi-timescale extractor) besides its 10 hourly feature rows."""
    registry = lab[0]
    run_id = _train_rl(registry, seed=5, timescales={"4h": 3}, extractor="multi_timescale")
    promote(registry, run_id, overrides=OPEN)
    return run_id


def test_a_policy_with_a_coarser_timescale_answers_live_with_parity(lab, coarse_run):
    """The promoted record carries the 4h window's scaler; as the session's rl member the
    policy answers bar by bar what the same policy fed the bars answers (its 4h window
    from completed 4-hour bars only), and the batch replay finds no difference."""
    registry, supervised, hourly_run, _, spec = lab
    record = json.loads(RunStore(registry.root).read_promoted(coarse_run, POLICY_FILE))
    assert record["observation"]["timescales"] == {"4h": 3}
    assert set(record["observation"]["scalings"]) == {"window", "window_4h"}
    config = _config(lab, [{"role": "direction", "run": supervised, "up_class": "1"},
                           {"role": "rl", "run": coarse_run}])  # fmt: skip
    (_, member) = load_members(registry.root, config, load_feature_set(spec))
    assert isinstance(member, PolicyMember) and set(member.policy.timescales) == {"4h"}
    result = run_session(registry.root, config, replay="mkt", max_bars=200, env={})
    journal = open_journal(registry.root, "paper", config, {})
    try:
        record = journal_iterations(journal, result.session_id)
        policy = LivePolicy.from_promoted(registry.root, coarse_run)
        bars = registry.load_raw("mkt").reset_index(drop=True)
        expected = [policy.update(bar) for bar in bars.iloc[:200].to_dict("records")]
        seen = [next(o["value"] for o in outputs if o["member"] == "rl") for outputs in record]
        assert seen == [None if s is None else s.probability for s in expected]
        first = next(i for i, s in enumerate(expected) if s is not None)
        assert set(expected[first].observation) == {"window", "window_4h", "portfolio"}
        # Its first answer waits for three settled rows of completed 4-hour bars: later
        # than a policy with the same hourly window alone answers.
        hourly = LivePolicy.from_promoted(registry.root, hourly_run)
        alone = [hourly.update(bar) for bar in bars.iloc[:first].to_dict("records")]
        assert any(s is not None for s in alone)
        assert sum(v is not None for v in seen) > 100
        report = session_parity(journal, result.session_id, root=registry.root)
        assert report.ok, [str(d) for d in report.differences]
        assert report.count("members").compared == 2 * 2 * 200
    finally:
        journal.close()


def test_for_another_symbol_the_rl_member_is_missing_and_the_decision_names_it(lab):
    """A session trading BTC and ETH with a policy trained on BTC: every ETH decision is
    made from the direction member alone, naming ``rl`` missing (renormalised) and why
    (the policy trades BTC only), while BTC decisions use the policy once its window is
    full (before, the decision says its windows are filling)."""
    registry, supervised, rl_run, _, _ = lab
    btc = registry.load_raw("mkt").iloc[:120]
    eth = random_walk_bars(120, symbol="ETH", timeframe="60m", seed=9)
    pair = pd.concat([btc, eth], ignore_index=True)
    ingest_bars(registry, pair, name="pair", sources=[{"test": "pair"}], mode="repair")
    config = _config(lab, [{"role": "direction", "run": supervised, "up_class": "1"},
                           {"role": "rl", "run": rl_run}], symbols=["BTC", "ETH"])  # fmt: skip
    result = run_session(registry.root, config, replay="pair", env={})
    journal = open_journal(registry.root, "paper", config, {})
    try:
        iterations = read_session(journal, result.session_id).iterations
    finally:
        journal.close()
    by_symbol = {s: [it for it in iterations if it.symbol == s] for s in ("BTC", "ETH")}
    assert len(by_symbol["ETH"]) == len(by_symbol["BTC"]) == 120
    for it in by_symbol["ETH"]:
        assert next(m.value for m in it.members if m.member == "rl") is None
        assert "rl" in it.decision.detail["missing"]
        assert "the policy trades BTC only" in it.decision.detail["missing_reasons"]["rl"]
        assert "rl" not in it.decision.detail["weights_used"]
    filling = [it for it in by_symbol["BTC"] if "rl" in it.decision.detail["missing"]]
    assert filling and all(
        "observation windows filling" in it.decision.detail["missing_reasons"]["rl"]
        for it in filling
    )
    answered = [it for it in by_symbol["BTC"] if "rl" in it.decision.detail["weights_used"]]
    assert len(answered) > 80 and all("rl" not in it.decision.detail["missing"] for it in answered)
    eth_used = [it.decision.detail["weights_used"] for it in by_symbol["ETH"]]
    assert {"direction": 1.0} in eth_used  # the direction member alone, renormalised
