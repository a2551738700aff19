"""``moola backtest run`` on regression, multitask and multi-symbol runs (issue 16).

What a user relies on: a forecasting run's out-of-fold predicted values are traded by the
sign or scaled policy with the same leakage check as a classifier's probabilities; a
multitask run trades the head named by ``target``; a run over several symbols is
backtested one symbol at a time (each on its own bars) or every symbol with an
equal-weight portfolio line; options that do not fit the run's target are refused by name.

The runs are built here, the way the training pipeline writes them (a predictions table in
the contract's layout through ``Registry.write_table`` and a manifest through
``RunStore.write_run``), on a seeded two-symbol futures market: windows of 30 bars every
40 bars, the target the return over the 10 bars after a window's last bar.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from moola.backtest.signals import ScaledHold, SignHold, ThresholdHold
from moola.cli.backtest import app
from moola.core.errors import ConfigError, IntegrityError, LeakageError
from moola.core.settings import Settings
from moola.data.registry import Registry
from moola.data.windows import labeled_windows_table, window_starts
from moola.pipeline.backtests import backtest_run, backtest_symbols, run_symbols
from moola.pipeline.datasets import make_and_store_split, synthesize_raw
from moola.sim import ExecutionConfig
from moola.tracking.runs import RunStore

LENGTH, STRIDE, HOLD = 30, 40, 10
LONGER = 15  # holds into the next window
SYMBOLS = ("AAA", "BBB")
NO_RULES = ExecutionConfig(rules=[])
runner = CliRunner()


class Lab:
    registry: Registry
    bars: pd.DataFrame
    table: pd.DataFrame
    predictions: pd.DataFrame
    regression: str
    leaky: str
    multitask: str
    classification: str


def _split_record(registry: Registry, name: str) -> dict:
    _, record = registry.load_split(name)
    return {key: record[key] for key in ("name", "version", "split_hash")}


def _predictions(table: pd.DataFrame, split, bars: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The contract's predictions table: the actual forward return ``y_ret``, a noisy but
    informative ``pred_ret`` (NaN where no fold tested the window), a direction head."""
    covered = np.zeros(len(table), dtype=bool)
    for fold in split.folds:
        covered[np.asarray(fold.test, dtype=np.int64)] = True
    close = bars["close"].to_numpy()
    ends = table["end"].to_numpy()
    later = np.minimum(ends + HOLD, len(bars) - 1)
    actual = close[later] / close[ends] - 1.0
    rng = np.random.default_rng(seed)
    pred = actual + rng.normal(0.0, actual.std(), len(actual))
    p_up = 1.0 / (1.0 + np.exp(-pred / actual.std()))
    out = pd.DataFrame(
        {
            "row": np.arange(len(table)),
            "symbol": table["symbol"].astype(str).to_numpy(),
            "start_ts": table["start_ts"].to_numpy(),
            "end_ts": table["end_ts"].to_numpy(),
            "covered": covered,
            "kind": "oof",
            "y_ret": actual,
            "pred_ret": np.where(covered, pred, np.nan),
            "y_direction": np.where(actual > 0, "up", "down"),
            "p_direction_down": np.where(covered, 1.0 - p_up, np.nan),
            "p_direction_up": np.where(covered, p_up, np.nan),
            "label": (actual > 0).astype(np.int64),
            "p_down": np.where(covered, 1.0 - p_up, np.nan),
            "p_up": np.where(covered, p_up, np.nan),
        }
    )
    return out


def _run(registry: Registry, run_id: str, split: str, predictions: pd.DataFrame, **task) -> str:
    """A training run as the pipeline writes it: its predictions table, then its folder."""
    dataset = registry.resolve("labeled", "win")
    classes = task.pop("classes", [])
    ref = registry.write_table(
        "predictions",
        run_id,
        predictions,
        parents=[dataset],
        meta={"run_id": run_id, "mode": "oof", "classes": classes, **task},
    )
    manifest = {
        "kind": "train",
        "mode": "oof",
        **task,
        "config": {"model": "ridge", "dataset": "win", "split": split},
        "config_hash": "sha256:" + "0" * 64,
        "inputs": "relative",
        "seed": 0,
        "data": {
            "dataset": dataset.to_dict(),
            "classes": classes,
            "split": _split_record(registry, split),
        },
        "predictions": ref.to_dict(),
        "metrics": {},
    }
    RunStore(registry.root).write_run(run_id, manifest, {})
    return run_id


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    out = Lab()
    out.registry = registry = Registry(tmp_path_factory.mktemp("home"))
    raw, _ = synthesize_raw(
        registry, "mkt", n_bars=3_000, seed=11, symbols=list(SYMBOLS), calendar="futures"
    )
    out.bars = bars = registry.load_raw("mkt")
    starts = window_starts(bars, LENGTH, stride=STRIDE)
    labels = np.where(np.arange(starts.size) % 2 == 0, "down", "up")  # not read by a backtest
    out.table = table = labeled_windows_table(bars, starts, LENGTH, labels)
    ref = registry.write_labeled("win", raw, table, length=LENGTH)
    _, _, safe = make_and_store_split(
        registry, ref, "purged-kfold", name="kf", folds=4, embargo="1h"
    )
    make_and_store_split(registry, ref, "purged-kfold", name="kf0", folds=4, embargo=0)
    out.predictions = predictions = _predictions(table, safe, bars, seed=5)
    regression = {"task": "regression", "targets": [{"name": "ret", "kind": "regression"}]}
    keep = ["row", "symbol", "start_ts", "end_ts", "covered", "kind"]
    reg_table = predictions[[*keep, "y_ret", "pred_ret"]]
    out.regression = _run(registry, "20260101T000000Z-reg", "kf", reg_table, **regression)
    out.leaky = _run(registry, "20260101T000000Z-leaky", "kf0", reg_table, **regression)
    heads = [
        {"name": "direction", "kind": "classification", "classes": ["down", "up"]},
        {"name": "ret", "kind": "regression"},
    ]
    multi = predictions[[*keep, "y_ret", "pred_ret", "y_direction", *_cols("p_direction_")]]
    out.multitask = _run(
        registry, "20260101T000000Z-multi", "kf", multi, task="multitask", targets=heads
    )
    cls_table = predictions[[*keep, "label", "p_down", "p_up"]]
    out.classification = _run(
        registry, "20260101T000000Z-cls", "kf", cls_table, classes=["down", "up"]
    )
    return out


def _cols(prefix: str) -> list[str]:
    return [f"{prefix}down", f"{prefix}up"]


def _held_by_hand(lab: Lab, symbol: str, targets: np.ndarray, covered_rows: np.ndarray):
    """Per bar of ``symbol``: the target of the latest decision within HOLD bars, shifted
    one bar (filled at the next open); 0 elsewhere."""
    mine = np.flatnonzero(lab.bars["symbol"].astype(str).to_numpy() == symbol)
    held = np.zeros(mine.size)
    ends = np.searchsorted(mine, lab.table["end"].to_numpy()[covered_rows])
    for end, value in sorted(zip(ends, targets, strict=True), key=lambda x: x[0]):
        held[end + 1 : end + 1 + HOLD] = value
    return held


def _covered(lab: Lab, symbol: str) -> np.ndarray:
    p = lab.predictions
    return np.flatnonzero(p["covered"].to_numpy() & (p["symbol"] == symbol).to_numpy())


# ------------------------------------------------------------------ regression runs


def test_a_regression_run_trades_the_sign_of_its_predictions_above_the_threshold(lab):
    threshold = 0.0005
    policy = SignHold(threshold=threshold, hold_bars=HOLD, allow_short=True)
    result, record = backtest_run(
        lab.registry, lab.regression, policy=policy, symbol="AAA", execution=NO_RULES
    )
    rows = _covered(lab, "AAA")
    pred = lab.predictions["pred_ret"].to_numpy()[rows]
    targets = np.where(pred > threshold, 1.0, np.where(pred < -threshold, -1.0, 0.0))
    expected = _held_by_hand(lab, "AAA", targets, rows)
    assert (np.sign(result.equity["position"].to_numpy()) == expected).all()
    assert record["task"] == "regression" and record["symbol"] == "AAA"
    assert record["target"] == {"name": "ret", "kind": "regression", "columns": ["pred_ret"]}
    assert record["policy"] == policy.params and record["threshold"] == threshold
    assert record["long_class"] is None and record["probabilities"] is None
    counts = record["counts"]
    assert counts["checked"] == rows.size and counts["other_symbols"] > 0
    assert (counts["long"], counts["short"]) == ((targets > 0).sum(), (targets < 0).sum())
    assert record["leakage_check"]["passed"] and record["stats"]["n_trades"] > 0
    folder = RunStore(lab.registry.root).run_dir(lab.regression) / record["path"]
    assert json.loads((folder / "backtest.json").read_text()) == record
    # threshold= and hold_bars= trade the same rule long only: shorts are asked for
    long_only, record = backtest_run(
        lab.registry,
        lab.regression,
        threshold=threshold,
        hold_bars=HOLD,
        symbol="AAA",
        execution=NO_RULES,
    )
    expected = _held_by_hand(lab, "AAA", np.maximum(targets, 0.0), rows)
    assert (np.sign(long_only.equity["position"].to_numpy()) == expected).all()
    assert record["counts"]["short"] == 0 and record["policy"]["allow_short"] is False


def test_the_scaled_policy_sizes_by_the_spread_of_earlier_predictions(lab):
    policy = ScaledHold(hold_bars=HOLD, min_history=5, allow_short=True)
    result, record = backtest_run(
        lab.registry, lab.regression, policy=policy, symbol="BBB", execution=NO_RULES
    )
    rows = _covered(lab, "BBB")
    pred = lab.predictions["pred_ret"].to_numpy()[rows]
    order = np.argsort(lab.table["end"].to_numpy()[rows], kind="stable")
    sized = np.zeros(rows.size)
    for k, i in enumerate(order):  # decisions in time: the std of those decided before
        if k >= 5:
            sized[i] = np.clip(pred[i] / np.std(pred[order[:k]], ddof=1), -1, 1)
    expected = _held_by_hand(lab, "BBB", sized, rows)
    position = result.equity["position"].to_numpy()
    notional = np.abs(expected) * result.equity["equity"].to_numpy() / result.equity["price"]
    whole = notional.to_numpy() >= 2  # targets of at least 2 units (whole units are traded)
    assert whole.sum() > 50 and (np.sign(position[whole]) == np.sign(expected[whole])).all()
    assert (np.sign(position[position != 0]) == np.sign(expected[position != 0])).all()
    # a larger target buys more
    held = position != 0
    value = np.abs(position[held] * result.equity["price"].to_numpy()[held])
    assert np.corrcoef(value, np.abs(expected[held]))[0, 1] > 0.9
    assert record["policy"]["policy"] == "scaled" and record["policy_hash"] == policy.policy_hash
    assert record["threshold"] is None


def test_a_regression_run_without_embargo_is_refused_and_skipping_counts(lab):
    """Windows end 10 bars before the next starts: holding 15 bars trades the next fold's
    first training window when the split has no embargo."""
    with pytest.raises(LeakageError, match="would trade a period that their fold's model"):
        backtest_run(lab.registry, lab.leaky, hold_bars=LONGER, symbol="AAA", execution=NO_RULES)
    assert not (RunStore(lab.registry.root).run_dir(lab.leaky) / "backtests").exists()
    _, record = backtest_run(
        lab.registry,
        lab.leaky,
        hold_bars=LONGER,
        symbol="AAA",
        skip_leaky=True,
        execution=NO_RULES,
    )
    check = record["leakage_check"]
    assert check["leaky"] > 0 and check["skipped"]
    assert record["counts"]["used"] == record["counts"]["checked"] - check["leaky"]


def test_options_that_do_not_fit_the_target_are_refused_by_name(lab):
    common = dict(symbol="AAA", execution=NO_RULES)
    cases = [
        (lab.regression, dict(long_class="up", hold_bars=HOLD), "long_class"),
        (lab.regression, dict(policy=ThresholdHold(hold_bars=HOLD)), "policy"),
        (lab.regression, dict(threshold=-0.1, hold_bars=HOLD), "threshold"),
        (lab.regression, dict(threshold=0.0), "hold_bars"),
        (lab.regression, dict(hold_bars=HOLD, target="vol"), "target"),
        (lab.classification, dict(policy=SignHold(hold_bars=HOLD)), "policy"),
        (lab.classification, dict(hold_bars=HOLD), "long_class"),
        (lab.multitask, dict(hold_bars=HOLD), "target"),
    ]
    for run_id, options, param in cases:
        with pytest.raises(ConfigError) as info:
            backtest_run(lab.registry, run_id, **common, **options)
        assert info.value.param == param, (options, str(info.value))
    with pytest.raises(ConfigError, match=r"regression target.*sign or scaled policy"):
        backtest_run(lab.registry, lab.regression, long_class="up", hold_bars=HOLD, **common)


# ------------------------------------------------------------------- multitask runs


def test_a_multitask_run_trades_the_head_named_by_target(lab):
    common = dict(symbol="AAA", execution=NO_RULES)
    by_head, record = backtest_run(
        lab.registry, lab.multitask, target="ret", hold_bars=HOLD, **common
    )
    alone, _ = backtest_run(lab.registry, lab.regression, hold_bars=HOLD, **common)
    pd.testing.assert_frame_equal(by_head.equity, alone.equity)
    assert record["task"] == "multitask" and record["target"]["name"] == "ret"
    direction, record = backtest_run(
        lab.registry,
        lab.multitask,
        target="direction",
        long_class="up",
        short_class="down",
        hold_bars=HOLD,
        **common,
    )
    assert record["target"]["columns"] == ["p_direction_up", "p_direction_down"]
    as_classifier, _ = backtest_run(
        lab.registry,
        lab.classification,
        long_class="up",
        short_class="down",
        hold_bars=HOLD,
        **common,
    )
    pd.testing.assert_frame_equal(direction.equity, as_classifier.equity)


# ---------------------------------------------------------------- multi-symbol runs


def test_a_multi_symbol_run_backtests_each_symbol_on_its_own_bars(lab):
    with pytest.raises(ConfigError, match=r"2 symbols \(AAA, BBB\).*backtest_symbols") as info:
        backtest_run(lab.registry, lab.regression, hold_bars=HOLD, execution=NO_RULES)
    assert info.value.param == "symbol"
    assert run_symbols(lab.registry, lab.regression) == list(SYMBOLS)
    done = backtest_symbols(lab.registry, lab.regression, hold_bars=HOLD, execution=NO_RULES)
    assert list(done.results) == list(SYMBOLS)
    for symbol, (result, record) in done.results.items():
        alone, _ = backtest_run(
            lab.registry, lab.regression, hold_bars=HOLD, symbol=symbol, execution=NO_RULES
        )
        pd.testing.assert_frame_equal(result.equity, alone.equity)
        assert record["symbol"] == symbol and record["leakage_check"]["passed"]
        mine = lab.bars[lab.bars["symbol"] == symbol]["timestamp"].reset_index(drop=True)
        assert result.equity["timestamp"].reset_index(drop=True).equals(mine)
    # the equal-weight portfolio: half the cash in each
    first, second = (done.results[s][0].equity["equity"].to_numpy() for s in SYMBOLS)
    expected = (first[-1] / first[0] + second[-1] / second[0]) / 2 - 1
    assert done.portfolio["symbols"] == list(SYMBOLS)
    assert done.portfolio["total_return"] == pytest.approx(expected)
    assert done.portfolio["max_drawdown"] >= 0


def test_backtest_symbols_checks_every_symbol_before_storing_any(lab):
    store = RunStore(lab.registry.root)
    folders = [store.run_dir(run) / "backtests" for run in (lab.regression, lab.leaky)]
    before = [sorted(f.iterdir()) if f.exists() else [] for f in folders]
    with pytest.raises(ConfigError, match="symbol 'ZZZ' has no windows"):  # AAA is fine
        backtest_symbols(
            lab.registry, lab.regression, symbols=["AAA", "ZZZ"], hold_bars=HOLD,
            execution=NO_RULES,
        )  # fmt: skip
    with pytest.raises(LeakageError):
        backtest_symbols(lab.registry, lab.leaky, hold_bars=LONGER, execution=NO_RULES)
    assert [sorted(f.iterdir()) if f.exists() else [] for f in folders] == before
    with pytest.raises(ConfigError, match="not commission") as info:
        backtest_symbols(lab.registry, lab.regression, hold_bars=HOLD, commission=0.001)
    assert info.value.param == "commission"


def test_predictions_whose_symbols_differ_from_the_windows_are_refused(lab):
    table = lab.predictions[
        ["row", "symbol", "start_ts", "end_ts", "covered", "kind", "y_ret", "pred_ret"]
    ].copy()
    table["symbol"] = table["symbol"].iloc[::-1].to_numpy()
    run_id = _run(
        lab.registry,
        "20260101T000000Z-swapped",
        "kf",
        table,
        task="regression",
        targets=[{"name": "ret", "kind": "regression"}],
    )
    with pytest.raises(IntegrityError, match="name other symbols than the windows"):
        backtest_run(lab.registry, run_id, hold_bars=HOLD, symbol="AAA", execution=NO_RULES)


# ---------------------------------------------------------------------------- the CLI


def _invoke(lab: Lab, *args: str):
    return runner.invoke(app, list(args), obj=Settings(home=lab.registry.root))


def test_cli_backtests_a_regression_run_per_symbol_with_a_portfolio_line(lab):
    result = _invoke(
        lab, "run", lab.regression, "--policy", "sign", "--threshold", "0.0005",
        "--hold-bars", str(HOLD),
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = " ".join(result.stdout.split())
    for symbol in SYMBOLS:
        assert symbol in out
    assert "Equal-weight portfolio" in out and "Leakage check: passed" in out
    result = _invoke(
        lab, "run", lab.regression, "--policy", "scaled", "--scale", "0.002",
        "--hold-bars", str(HOLD), "--symbol", "AAA",
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "Sharpe" in result.stdout and "portfolio" not in result.stdout


def test_cli_names_the_flags_that_do_not_fit_the_run(lab, capsys):
    from moola.cli.main import main

    root = ("--data-root", str(lab.registry.root))
    for run_id, extra, said in (
        (lab.regression, ("--long-class", "up"), "--long-class picks a class"),
        (lab.regression, ("--scale", "0.01"), "--scale"),
        (lab.classification, ("--policy", "sign"), "--policy sign (SignHold) trades"),
        (lab.classification, ("--long-class", "up", "--scale", "0.1"), "--scale"),
        (lab.multitask, ("--target", "vol"), "--target 'vol' is not a target"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([*root, "backtest", "run", run_id, "--hold-bars", "5", *extra])
        err = " ".join(capsys.readouterr().err.split())
        assert exit_.value.code == 2 and said in err, err


# ------------------------------------------------------------ runs on feature windows


@pytest.fixture(scope="module")
def feature_lab(tmp_path_factory):
    """A regression run on feature windows over two raw versions (one symbol each): window
    positions index the two feature tables one after the other."""
    from moola.features.labels import build_labels
    from moola.pipeline.feature_windows import build_feature_windows
    from moola.pipeline.ingest import ingest_bars
    from moola.pipeline.labels import store_labels
    from tests.conftest import random_walk_bars
    from tests.test_feature_windows import SPEC

    registry = Registry(tmp_path_factory.mktemp("fw"))
    closes = []
    for name, symbol, seed in (("aaa", "AAA", 1), ("bbb", "BBB", 2)):
        bars = random_walk_bars(600, symbol=symbol, seed=seed)
        raw = ingest_bars(registry, bars, name=name, sources=[{"test": name}], mode="repair").ref
        stored = registry.load_raw(raw.name, raw.version)
        closes.append(stored["close"].to_numpy())
        params = {"horizon": 5}
        labels = build_labels(stored, "forward-return", **params)
        store_labels(registry, f"{name}-fwd", labels, raw=raw, kind="forward-return", params=params)
    ref = build_feature_windows(
        registry, "aaa,bbb", SPEC, name="win", length=12, stride=20,
        labels=["aaa-fwd", "bbb-fwd"],
    )  # fmt: skip
    _, _, split = make_and_store_split(
        registry, ref, "purged-kfold", name="kf", folds=3, embargo="30min"
    )
    table = registry.load_feature_windows("win").table
    close = np.concatenate(closes)
    ends = table["end"].to_numpy()
    last = np.where(ends < 600, 599, 1199)  # each raw's last row
    actual = close[np.minimum(ends + HOLD, last)] / close[ends] - 1.0
    covered = np.zeros(len(table), dtype=bool)
    for fold in split.folds:
        covered[np.asarray(fold.test, dtype=np.int64)] = True
    pred = actual + np.random.default_rng(3).normal(0.0, actual.std(), len(actual))
    predictions = pd.DataFrame(
        {
            "row": np.arange(len(table)),
            "symbol": table["symbol"].astype(str).to_numpy(),
            "start_ts": table["start_ts"].to_numpy(),
            "end_ts": table["end_ts"].to_numpy(),
            "covered": covered,
            "kind": "oof",
            "y_ret": actual,
            "pred_ret": np.where(covered, pred, np.nan),
        }
    )
    run_id = _run(
        registry, "20260101T000000Z-fw", "kf", predictions,
        task="regression", targets=[{"name": "ret", "kind": "regression"}],
    )  # fmt: skip
    return registry, table, predictions, run_id


def test_a_run_on_feature_windows_over_two_raws_trades_each_symbols_own_bars(feature_lab):
    registry, table, predictions, run_id = feature_lab
    policy = SignHold(hold_bars=HOLD, allow_short=True)
    result, record = backtest_run(registry, run_id, policy=policy, symbol="BBB", execution=NO_RULES)
    bars = registry.load_raw("bbb")
    assert result.equity["timestamp"].reset_index(drop=True).equals(bars["timestamp"])
    assert record["raw"]["name"] == "bbb" and record["leakage_check"]["passed"]
    rows = np.flatnonzero(predictions["covered"].to_numpy() & (predictions["symbol"] == "BBB"))
    held = np.zeros(len(bars))
    for row in rows:  # BBB's rows follow AAA's 600 in the windows' positions
        end = int(table["end"].iloc[row]) - 600
        held[end + 1 : end + 1 + HOLD] = np.sign(predictions["pred_ret"].iloc[row])
    assert (np.sign(result.equity["position"].to_numpy()) == held).all()
    done = backtest_symbols(registry, run_id, policy=policy, execution=NO_RULES)
    assert list(done.results) == ["AAA", "BBB"]
    pd.testing.assert_frame_equal(done.results["BBB"][0].equity, result.equity)
