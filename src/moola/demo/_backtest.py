"""The demo's last act: a direction model chosen out of fold, backtested on held-out bars.

The demo's pattern classifiers say nothing about direction, so this stage builds a
directional task on the same market and trades it, with the baseline rule beside it:

1. **Task.** A decision every ``HORIZON`` bars at the close of a 105-bar window; the label
   is whether the close ``HORIZON`` bars later is higher (``up``) or not (``down``; an
   unchanged close counts as down), from ``moola.features.labels.forward_return_direction``.
   Only windows whose bars, label horizon and exit bar lie in one unbroken session are used,
   so no label or trade spans a session break, and a purge of ``HORIZON`` bars in time
   covers every label. Stored as labeled windows: the whole market (``demo-direction``) and
   the development period (``demo-direction-dev``: decisions whose horizon and exit bar end
   before the held-out period, the pattern split's test period).
2. **Choice.** Candidates are trained out of fold on the development period (purged 5-fold,
   purge and embargo of ``HORIZON`` bars) on the 20 price-action features of each window
   (computed in each run from the stored windows; causal: the window ends at the decision
   bar). The best has the lowest out-of-fold log loss of its raw probabilities, the ones
   the backtest trades, decided before any backtest is run.
3. **Held-out predictions.** The chosen model is trained once more, on everything before the
   held-out period, and predicts the held-out windows: a one-fold walk-forward split (purge
   and embargo of ``HORIZON`` bars), so its out-of-fold predictions are the held-out ones.
4. **Backtest.** ``moola.pipeline.backtests`` trades them from the held-out period's first
   bar on with the signal policy ``POLICY`` (``ThresholdHold``: long when p(up) >= 0.5,
   short when p(down) >= 0.5, held ``HORIZON`` bars; the policy the environment and the live
   engine step through), with costs; it refuses any signal whose traded bars its model
   trained on. The baseline rule
   trades the same bars at the same costs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from moola.backtest import run as run_backtest
from moola.backtest.plots import equity_png
from moola.backtest.signals import ThresholdHold
from moola.data.windows import labeled_windows_table, window_starts
from moola.demo._progress import fold_events
from moola.evaluation.report import Section, image_html, table_html
from moola.features.dc import dc_features
from moola.features.labels import forward_return_direction
from moola.pipeline.backtests import backtest_run
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.lifecycle import write_report
from moola.pipeline.train import TrainConfig, flat_metrics, run_training
from moola.sim import CommissionModel, ExecutionConfig, futures_instrument
from moola.training.callbacks import ProgressUpdate

if TYPE_CHECKING:
    from moola.backtest.run import BacktestResult
    from moola.data._manifest import DatasetRef
    from moola.data.registry import Registry

FOLDS = 5
HORIZON = 30  # bars a direction label looks ahead, and a signal's position is held
THRESHOLD = 0.5  # p(up) >= 0.5 goes long, p(down) >= 0.5 short
POLICY = ThresholdHold(threshold=THRESHOLD, hold_bars=HORIZON)
DC_THRESHOLD = 0.002  # directional-change threshold of the baseline trend rule
# A fraction 1.0 of $500k is 1 NQ contract anywhere between 12,500 and 25,000 points.
INITIAL_CASH = 500_000.0
SELECTION_METRIC = "log_loss"
CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("logistic_regression", {}),
    ("gradient_boosting", {"n_estimators": 100, "min_child_samples": 50}),
)
SELECTION_COLUMNS = ("log_loss", "balanced_accuracy", "accuracy", "roc_auc", "brier")
STAT_ROWS = (
    ("total_return", "total return", "{:+.2%}"),
    ("sharpe", "Sharpe", "{:.2f}"),
    ("max_drawdown", "max drawdown", "{:.2%}"),
    ("n_trades", "trades", "{:,}"),
    ("win_rate", "win rate", "{:.1%}"),
    ("profit_factor", "profit factor", "{:.2f}"),
    ("exposure", "exposure", "{:.1%}"),
    ("commission_paid", "commission paid ($)", "{:,.0f}"),
    ("spread_slippage_paid", "spread + slippage paid ($)", "{:,.0f}"),
    ("costs_paid", "costs paid ($)", "{:,.0f}"),
)


def costs() -> ExecutionConfig:
    """1 NQ contract: one tick (0.25) of spread, 1 bp slippage, $2.50 per contract."""
    return ExecutionConfig.from_terms(
        instrument=futures_instrument("NQ"),
        initial_cash=INITIAL_CASH,
        commission=CommissionModel(per_unit=2.5),
        spread=0.25,
        slippage=1.0,
    )


@dataclass(frozen=True)
class ModelBacktest:
    """What the stage made: the choice, the held-out run, both backtests."""

    held_out_start: pd.Timestamp
    candidates: list[dict[str, Any]]
    chosen: str
    held_out_run: str
    held_out_metrics: dict[str, Any]
    result: BacktestResult
    record: dict[str, Any]
    baseline: BacktestResult
    datasets: list[DatasetRef]


def baseline_backtest(bars: pd.DataFrame, held_out_start: pd.Timestamp) -> BacktestResult:
    """Trade the causal DC trend (+1/-1: long or short 1 NQ) on the held-out bars."""
    trend = dc_features(bars, up=DC_THRESHOLD)["dc_trend"].fillna(0.0).to_numpy()
    keep = (bars["timestamp"] >= held_out_start).to_numpy()
    return run_backtest(bars.loc[keep].reset_index(drop=True), trend[keep], costs())


def model_backtest(
    registry: Registry,
    raw: DatasetRef,
    held_out_start: pd.Timestamp,
    seed: int,
    step: Callable[[str], None],
    *,
    length: int,
    on_progress: Callable[[ProgressUpdate], None] = lambda _: None,
) -> ModelBacktest:
    """Build the direction task on ``length``-bar windows, choose a model out of fold and
    backtest its held-out signals (module notes)."""
    n_bootstrap = 200
    step("labelling direction windows and splitting the development period")
    bars = registry.load_raw(raw.name, raw.version)
    everything, development, n_held_out = _direction_datasets(
        registry, raw, bars, held_out_start, length
    )
    kfold = _split(registry, development, "purged-kfold", "demo-direction-kfold", folds=FOLDS)
    candidates = []
    for model, params in CANDIDATES:
        step(f"training direction candidate {model} (5 folds, development period)")
        config = TrainConfig(
            model=model,
            dataset=_text(development),
            split=kfold,
            params=params,
            calibration="none",
            seed=seed,
            n_bootstrap=n_bootstrap,
        )
        result = run_training(registry, config, on_event=fold_events(on_progress, FOLDS))
        metrics = flat_metrics(result.report)
        candidates.append(
            {"model": model, "run": result.run_id, **{k: metrics[k] for k in SELECTION_COLUMNS}}
        )
    best = min(candidates, key=lambda row: row[SELECTION_METRIC])
    for row in candidates:
        row["chosen"] = row is best
    params = dict(CANDIDATES)[best["model"]]

    step(f"training {best['model']} on the development period for the held-out windows")
    walk = _split(
        registry,
        everything,
        "walk-forward",
        "demo-direction-holdout",
        folds=1,
        test_size=n_held_out,
    )
    held_out = run_training(
        registry,
        TrainConfig(
            model=best["model"],
            dataset=_text(everything),
            split=walk,
            params=params,
            calibration="none",
            seed=seed,
            n_bootstrap=n_bootstrap,
        ),
    )
    step("backtesting the best model's signals on the held-out period, with costs")
    result, record = backtest_run(
        registry,
        held_out.run_id,
        long_class="up",
        short_class="down",
        policy=POLICY,
        start=held_out_start,
        execution=costs(),
    )
    baseline = baseline_backtest(bars, held_out_start)
    for run_id in [*(row["run"] for row in candidates), held_out.run_id]:
        write_report(registry, run_id)
    return ModelBacktest(
        held_out_start=held_out_start,
        candidates=candidates,
        chosen=best["model"],
        held_out_run=held_out.run_id,
        held_out_metrics=flat_metrics(held_out.report),
        result=result,
        record=record,
        baseline=baseline,
        datasets=[everything, development],
    )


def _direction_datasets(
    registry: Registry,
    raw: DatasetRef,
    bars: pd.DataFrame,
    held_out_start: pd.Timestamp,
    length: int,
) -> tuple[DatasetRef, DatasetRef, int]:
    """Direction windows over the whole market and over the development period, and the
    number of held-out windows (those starting in the held-out period)."""
    # Window, horizon and exit bar in one unbroken session; a decision every HORIZON bars.
    starts = window_starts(bars, length + HORIZON + 1, stride=HORIZON)
    ends = starts + length - 1
    label = forward_return_direction(bars, HORIZON)["label"].to_numpy()[ends]
    labels = np.where(label > 0, "up", "down")
    table = labeled_windows_table(
        bars, starts, length, labels, source=f"forward-return-direction-{HORIZON}"
    )
    label_step = {
        "name": "forward_return_direction",
        "params": {
            "horizon": HORIZON,
            "stride": HORIZON,
            "classes": {"up": "close[end + horizon] > close[end]", "down": "otherwise"},
            "windows": "window, horizon and exit bar gap-free (one session)",
        },
    }
    # Development: labels and exit bars end before the held-out period; held out: windows
    # that start in it. The few whose label straddles its start are in neither.
    development = (bars["timestamp"].iloc[ends + HORIZON + 1] < held_out_start).to_numpy()
    held_out = (table["start_ts"] >= held_out_start).to_numpy()
    period = {"development_exit_before": held_out_start.isoformat()}
    everything = registry.write_labeled(
        "demo-direction",
        raw,
        table.loc[development | held_out],
        length=length,
        transformations=[
            label_step,
            {
                "name": "development_and_held_out",
                "params": {**period, "held_out_windows_from": held_out_start.isoformat()},
            },
        ],
    )
    dev = registry.write_labeled(
        "demo-direction-dev",
        raw,
        table.loc[development],
        length=length,
        transformations=[label_step, {"name": "development_period", "params": period}],
    )
    return everything, dev, int(held_out.sum())


def _split(registry: Registry, ref: DatasetRef, strategy: str, name: str, **params: Any) -> str:
    split_name, version, _ = make_and_store_split(
        registry, ref, strategy, name=name, purge=HORIZON, embargo=HORIZON, **params
    )
    return f"{split_name}@v{version}"


def _text(ref: DatasetRef) -> str:
    return f"{ref.name}@v{ref.version}"


# --------------------------------------------------------------------------- reporting


def backtest_record(made: ModelBacktest) -> dict[str, Any]:
    """What the demo's manifest keeps of this stage."""
    trades = made.result.trades
    return {
        "task": {"label": f"forward-return direction, {HORIZON} bars", "threshold": THRESHOLD},
        "datasets": [ref.to_dict() for ref in made.datasets],
        "held_out_start": made.held_out_start.isoformat(),
        "selection": {"metric": f"out-of-fold {SELECTION_METRIC} (lower is better)"},
        "candidates": made.candidates,
        "chosen": made.chosen,
        "held_out_run": made.held_out_run,
        "held_out_metrics": made.held_out_metrics,
        "backtest_path": made.record["path"],
        "first_entry": None if trades.empty else str(trades["entry_time"].min()),
        "counts": made.record["counts"],
        "leakage_check": made.record["leakage_check"],
        "stats": made.record["stats"],
        "baseline": {"rule": f"dc_trend(up={DC_THRESHOLD})", "stats": made.baseline.stats},
    }


def backtest_line(made: ModelBacktest) -> str:
    """One printable line: the chosen model's held-out backtest beside the baseline's."""
    stats, base = made.result.stats, made.baseline.stats
    return (
        f"best model backtest on the held-out period ({made.chosen}, chosen by out-of-fold "
        f"{SELECTION_METRIC.replace('_', ' ')}): {stats.get('n_trades')} trades, total return "
        f"{_number(stats.get('total_return')):+.2%} after "
        f"${_number(stats.get('costs_paid')):,.0f} costs, Sharpe "
        f"{_number(stats.get('sharpe')):.2f}, max drawdown "
        f"{_number(stats.get('max_drawdown')):.2%}; leakage check "
        f"{'passed' if made.record['leakage_check']['passed'] else 'FAILED'}; baseline rule "
        f"{base.get('n_trades')} trades, {_number(base.get('total_return')):+.2%}"
    )


def backtest_section(made: ModelBacktest) -> Section:
    """The report's final section: choice, statistics, rules and equity, baseline beside."""
    record, result, baseline = made.record, made.result, made.baseline
    counts = record["counts"]
    choice = table_html(
        [
            {"model": row["model"], **{k: row[k] for k in SELECTION_COLUMNS},
             "chosen": "yes" if row["chosen"] else ""}
            for row in made.candidates
        ],
        ["model", *SELECTION_COLUMNS, "chosen"],
    )  # fmt: skip
    held_out = {k: made.held_out_metrics[k] for k in ("accuracy", "balanced_accuracy", "log_loss")}
    model_col, base_col = f"{made.chosen} signals", "baseline DC rule"
    stats = [
        {
            "statistic": label,
            model_col: _shown(result.stats.get(key), spec),
            base_col: _shown(baseline.stats.get(key), spec),
        }
        for key, label, spec in STAT_ROWS
    ]
    base_rules = {rule.name: rule for rule in baseline.rules}
    rules = [
        {
            "rule": rule.name,
            model_col: "pass" if rule.passed else f"fail: {rule.detail}",
            base_col: "n/a"
            if rule.name not in base_rules
            else (
                "pass" if base_rules[rule.name].passed else f"fail: {base_rules[rule.name].detail}"
            ),
        }
        for rule in result.rules
    ]
    leak = record["leakage_check"]
    body = (
        f"<p><b>Model:</b> {made.chosen} (run {made.held_out_run}), chosen among "
        f"{', '.join(row['model'] for row in made.candidates)} by the lowest out-of-fold "
        f"{SELECTION_METRIC.replace('_', ' ')} on the development period (purged 5-fold, purge "
        f"and embargo of {HORIZON} bars), before any backtest was run. For scale: always "
        f"predicting 50/50 scores a log loss of {math.log(2):.3f}.</p>"
        + choice
        + f"<p><b>Held-out period:</b> from {made.held_out_start:%Y-%m-%d %H:%M} UTC (the "
        f"pattern split's test period), {result.stats.get('bars'):,} bars. The model was "
        "trained on everything before it (one-fold walk-forward split) and predicted "
        f"{counts['checked']} held-out windows: accuracy {held_out['accuracy']:.3f}, "
        f"balanced accuracy {held_out['balanced_accuracy']:.3f}, log loss "
        f"{held_out['log_loss']:.3f}. Signals: {counts['long']} long, {counts['short']} "
        f"short, {counts['flat']} flat. Leakage check "
        f"{'passed' if leak['passed'] else 'FAILED'}: {leak['leaky']} signals refused "
        "(none may trade bars their model trained on).</p>"
        + table_html(stats, ["statistic", model_col, base_col])
        + table_html(rules, ["rule", model_col, base_col])
        + image_html(equity_png(result.equity, title=f"Equity: {made.chosen}"), "model equity")
        + image_html(equity_png(baseline.equity, title="Equity: baseline rule"), "baseline equity")
    )
    note = (
        f"Long 1 NQ contract when p(up) >= {THRESHOLD}, short when p(down) >= {THRESHOLD}, "
        f"each signal held {HORIZON} bars (a later one replaces it); the baseline is long in a "
        f"directional-change up-trend (threshold {DC_THRESHOLD:.1%}) and short in a down-trend. "
        "Both trade the same bars from $500,000, filled at the next bar's open with one tick "
        "of spread, 1 bp slippage and $2.50 commission per contract. The market is synthetic "
        "and close to a random walk in direction, so a direction model has little to find "
        "and frequent trading pays costs: the numbers here are what came out, not a "
        "selected result."
    )
    return Section("Backtest of the best model's signals on the held-out period", body, note)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _shown(value: Any, spec: str) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    return spec.format(value)
