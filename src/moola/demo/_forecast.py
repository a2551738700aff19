"""The demo's forecasting section: three correlated markets, two forecasters on feature
windows, and a backtest of each symbol's forecasts.

The README's "Forecasting on feature windows" walkthrough in seconds, through the pipeline
functions its commands call (nothing here computes what ``pipeline/`` already does):

1. **Market.** ``SYMBOLS``: ``MARKET_BARS`` synthetic 1-minute bars each on one time grid
   (crypto calendar, so no session gaps), 1-bar log returns correlated ``CORRELATION``
   (``synthesize_raw``, as ``moola data synth --symbols`` calls it).
2. **Labels.** The forward log return over ``HORIZON`` bars at every bar, symbol by symbol
   (``build_and_store_labels``, as ``moola labels build --raw --name`` calls it).
3. **Windows.** ``LENGTH``-bar windows of the ``intraday31`` feature set (computed causally
   once per raw version and stored; windows are positions into it), one every ``STRIDE``
   bars, each carrying the forward return at its last bar as a regression target
   (``build_feature_windows``, as ``moola data windows --features`` calls it).
4. **Split.** Walk-forward, ``FOLDS`` folds, every symbol cut at the same timestamps and
   purged by the label horizon (``make_and_store_split``, as ``moola data split``).
5. **Forecaster.** LightGBM regression with ``N_ESTIMATORS`` trees, out of fold: each
   fold's model predicts only later windows, per-feature scaling fitted on its own
   training rows (``run_training``, as ``moola train``); scored by MAE, RMSE, R², sign
   accuracy and the Spearman IC with bootstrap intervals, overall and per symbol.
6. **Backtest.** Each symbol's out-of-fold forecasts traded on its own bars with the sign
   policy ``POLICY`` (long above ``+THRESHOLD``, short below ``-THRESHOLD``, held
   ``HORIZON`` bars) at ``COMMISSION`` of notional per fill, with the leakage check, and an
   equal-weight portfolio line (``backtest_symbols``, as ``moola backtest run --policy
   sign --allow-short``).
7. **Direction.** Beside it, a tiny BiLSTM (``DIRECTION_PARAMS``) learns the 15-bar
   direction (the forward-return label's classes ``-1``/``1``) from the same windows, over
   its own walk-forward split at the same timestamps, uncalibrated; scored out of fold.

Sized for seconds (about 6 s of the demo's run on one torch thread, on two cores shared
with other jobs; ``benchmarks/bench_demo.py`` times it); the synthetic returns are a
correlated random walk, so the forecasters have nothing to find and their numbers show
only that every step ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from moola.backtest.signals import SignHold
from moola.demo._progress import epoch_progress, fold_events
from moola.evaluation.report import Section, table_html
from moola.pipeline.backtests import backtest_symbols
from moola.pipeline.datasets import make_and_store_split, synthesize_raw
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.labels import build_and_store_labels
from moola.pipeline.lifecycle import write_report
from moola.pipeline.train import TrainConfig, flat_metrics, run_training
from moola.sim import ExecutionConfig
from moola.training.callbacks import ProgressUpdate

if TYPE_CHECKING:
    from moola.data._manifest import DatasetRef
    from moola.data.registry import Registry

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
MARKET_BARS = 3_000  # per symbol; intraday31 warms up over about half of them
CORRELATION = 0.7
HORIZON = 15  # bars the forward return looks ahead, and a position is held
FEATURE_SET = "intraday31"
LENGTH = 60
STRIDE = 5
FOLDS = 3
N_ESTIMATORS = 100
QUICK_ESTIMATORS = 30
THRESHOLD = 0.0005  # |predicted 15-bar log return| that opens a position
POLICY = SignHold(threshold=THRESHOLD, hold_bars=HORIZON, allow_short=True)
COMMISSION = 0.0005  # 5 bps of notional per fill
DIRECTION_PARAMS = {"epochs": 2, "hidden": 16}
DIRECTION_METRICS = ("accuracy", "balanced_accuracy", "log_loss", "roc_auc")
METRICS = (
    ("ic", "Spearman IC", "{:+.3f}"),
    ("sign_accuracy", "sign accuracy", "{:.3f}"),
    ("r2", "R²", "{:+.3f}"),
    ("mae", "MAE", "{:.5f}"),
    ("rmse", "RMSE", "{:.5f}"),
)


def costs() -> ExecutionConfig:
    """Spot crypto (the bars' own symbol), $100,000, 5 bps of notional per fill."""
    return ExecutionConfig(instrument="crypto", initial_cash=100_000.0, commission=COMMISSION)


@dataclass(frozen=True)
class Forecast:
    """What the section made: its datasets, the run, its scores and the backtests."""

    datasets: list[DatasetRef]
    split: str
    windows: int
    run_id: str
    task: str
    metrics: dict[str, float | None]
    intervals: dict[str, Any]
    per_symbol: dict[str, dict[str, Any]]
    portfolio: dict[str, Any]
    direction_run: str
    direction_params: dict[str, Any]
    direction_metrics: dict[str, float | None]


def forecast(
    registry: Registry,
    seed: int,
    step: Callable[[str], None],
    *,
    quick: bool,
    on_progress: Callable[[ProgressUpdate], None] = lambda _: None,
) -> Forecast:
    """Run the section's steps (module notes) under ``registry`` and return what they made."""
    step(f"forecasting: generating {len(SYMBOLS)} correlated markets, labels and feature windows")
    raw, _ = synthesize_raw(
        registry,
        "demo-forecast-market",
        n_bars=MARKET_BARS,
        seed=seed,
        symbols=SYMBOLS,
        correlation=CORRELATION,
        timeframe="1m",
        calendar="crypto",
    )
    labels = build_and_store_labels(
        registry, "demo-forecast-fwd", raw, "forward-return", horizon=HORIZON
    )
    # Two datasets over one stored feature table: the return (a value), the direction (a class).
    windows, split = _windows_and_split(registry, raw, labels, "forward_return", "demo-forecast")
    direction, direction_split = _windows_and_split(
        registry, raw, labels, "label", "demo-forecast-direction"
    )
    step(f"forecasting: training lightgbm on the forward return ({FOLDS} walk-forward folds)")
    config = TrainConfig(
        model="lightgbm",
        dataset=windows.pinned,
        split=split,
        params={"n_estimators": QUICK_ESTIMATORS if quick else N_ESTIMATORS},
        seed=seed,
        n_bootstrap=200,
    )
    result = run_training(registry, config, on_event=fold_events(on_progress, FOLDS))
    write_report(registry, result.run_id)
    step("forecasting: backtesting each symbol's out-of-fold forecasts (sign policy, costs)")
    done = backtest_symbols(registry, result.run_id, policy=POLICY, execution=costs())
    params = {**DIRECTION_PARAMS, "epochs": 1} if quick else dict(DIRECTION_PARAMS)
    step(f"forecasting: training bilstm on the {HORIZON}-bar direction ({FOLDS} walk-forward)")
    direction_run = run_training(
        registry,
        TrainConfig(
            model="bilstm",
            dataset=direction.pinned,
            split=direction_split,
            params=params,
            calibration="none",
            seed=seed,
            n_bootstrap=200,
        ),
        callbacks=[epoch_progress(on_progress, FOLDS, params["epochs"])],
    )
    write_report(registry, direction_run.run_id)
    direction_metrics = flat_metrics(direction_run.report)
    scores = result.report.get("per_symbol") or {}
    per_symbol = {
        symbol: {
            "windows": scores.get(symbol, {}).get("n"),
            "ic": scores.get(symbol, {}).get("ic"),
            "sign_accuracy": scores.get(symbol, {}).get("sign_accuracy"),
            "backtest_path": record["path"],
            "counts": record["counts"],
            "leakage_check": record["leakage_check"],
            "stats": {
                key: backtest.stats.get(key)
                for key in ("total_return", "sharpe", "max_drawdown", "n_trades", "costs_paid")
            },
        }
        for symbol, (backtest, record) in done.results.items()
    }
    return Forecast(
        datasets=[raw, labels, windows, direction],
        split=split,
        windows=int(registry.meta(windows)["windows"]),
        run_id=result.run_id,
        task=str(result.manifest.get("task")),
        metrics=flat_metrics(result.report),
        intervals=result.report.get("intervals") or {},
        per_symbol=per_symbol,
        portfolio=done.portfolio,
        direction_run=direction_run.run_id,
        direction_params=params,
        direction_metrics={key: direction_metrics.get(key) for key in DIRECTION_METRICS},
    )


def _windows_and_split(
    registry: Registry, raw: DatasetRef, labels: DatasetRef, target: str, name: str
) -> tuple[DatasetRef, str]:
    """Feature windows of ``raw`` carrying ``labels``' column ``target``, stored as
    ``name-windows``, and their walk-forward split ``name-wf`` (``name@vN``)."""
    windows = build_feature_windows(
        registry,
        raw,
        FEATURE_SET,
        name=f"{name}-windows",
        length=LENGTH,
        stride=STRIDE,
        labels=labels.pinned,
        targets=[target],
    )
    split_name, split_version, _ = make_and_store_split(
        registry, windows, "walk-forward", name=f"{name}-wf", folds=FOLDS, purge=HORIZON
    )
    return windows, f"{split_name}@v{split_version}"


# --------------------------------------------------------------------------- reporting


def forecast_record(made: Forecast) -> dict[str, Any]:
    """What the demo's manifest keeps of this section."""
    return {
        "symbols": list(SYMBOLS),
        "bars_per_symbol": MARKET_BARS,
        "target": f"forward log return over {HORIZON} bars",
        "windows": {"feature_set": FEATURE_SET, "length": LENGTH, "stride": STRIDE},
        "datasets": [ref.to_dict() for ref in made.datasets],
        "split": made.split,
        "n_windows": made.windows,
        "run": made.run_id,
        "task": made.task,
        "metrics": made.metrics,
        "policy": {"policy": "sign", "threshold": THRESHOLD, "hold_bars": HORIZON},
        "commission": COMMISSION,
        "per_symbol": made.per_symbol,
        "portfolio": made.portfolio,
        "direction": {
            "model": "bilstm",
            "params": made.direction_params,
            "target": f"forward-return label over {HORIZON} bars (classes -1/1)",
            "run": made.direction_run,
            "metrics": made.direction_metrics,
        },
    }


def forecast_line(made: Forecast) -> str:
    """One printable line: the forecaster's out-of-fold IC and sign accuracy, each
    symbol's backtest return, and the direction model's accuracy."""
    metrics, direction = made.metrics, made.direction_metrics
    returns = ", ".join(
        f"{symbol} {_number(row['stats']['total_return']):+.2%}"
        for symbol, row in made.per_symbol.items()
    )
    passed = all(row["leakage_check"]["passed"] for row in made.per_symbol.values())
    return (
        f"forecasting ({len(SYMBOLS)} symbols, lightgbm on {FEATURE_SET} windows, run "
        f"{made.run_id}): out-of-fold IC {_number(metrics.get('ic')):+.3f}, sign accuracy "
        f"{_number(metrics.get('sign_accuracy')):.3f} over {made.windows:,} windows; "
        f"backtest return {returns}, equal-weight "
        f"{_number(made.portfolio.get('total_return')):+.2%}; leakage check "
        f"{'passed' if passed else 'FAILED'}; bilstm {HORIZON}-bar direction: accuracy "
        f"{_number(direction.get('accuracy')):.3f}, balanced "
        f"{_number(direction.get('balanced_accuracy')):.3f}"
    )


def forecast_summary(record: dict[str, Any]) -> str:
    """The summary table's cell for this section, from the manifest's record."""
    metrics, direction = record["metrics"], record["direction"]["metrics"]
    returns = ", ".join(
        f"{symbol} {_number(row['stats']['total_return']):+.2%}"
        for symbol, row in record["per_symbol"].items()
    )
    return (
        f"lightgbm forward return on {len(record['symbols'])} symbols: out-of-fold IC "
        f"{_number(metrics.get('ic')):+.3f}, sign accuracy "
        f"{_number(metrics.get('sign_accuracy')):.3f}; backtest after costs {returns}; "
        f"bilstm direction: balanced accuracy {_number(direction.get('balanced_accuracy')):.3f}"
    )


def forecast_section(made: Forecast) -> Section:
    """The report's forecasting section: the scores, then each symbol's backtest."""
    scores = [
        {
            "metric": label,
            "out of fold": _shown(made.metrics.get(key), spec),
            "95% interval": _interval(made.intervals.get(key), spec),
        }
        for key, label, spec in METRICS
    ]
    symbols = [
        {
            "symbol": symbol,
            "windows": row["windows"],
            "IC": _shown(row["ic"], "{:+.3f}"),
            "sign accuracy": _shown(row["sign_accuracy"], "{:.3f}"),
            "signals (long/short/flat)": f"{row['counts']['long']}/{row['counts']['short']}/"
            f"{row['counts']['flat']}",
            "trades": _shown(row["stats"]["n_trades"], "{:,}"),
            "total return": _shown(row["stats"]["total_return"], "{:+.2%}"),
            "costs paid ($)": _shown(row["stats"]["costs_paid"], "{:,.0f}"),
            "max drawdown": _shown(row["stats"]["max_drawdown"], "{:.2%}"),
            "leakage check": "passed" if row["leakage_check"]["passed"] else "FAILED",
        }
        for symbol, row in made.per_symbol.items()
    ]
    portfolio = made.portfolio
    body = (
        f"<p><b>Data:</b> {', '.join(SYMBOLS)}: {MARKET_BARS:,} synthetic 1-minute bars each "
        f"on one time grid, 1-bar returns correlated {CORRELATION}; {made.windows:,} windows "
        f"of {LENGTH} bars x the 31 {FEATURE_SET} features (one every {STRIDE} bars, past "
        f"the features' warm-up), target the forward log return over {HORIZON} bars; split "
        f"{made.split} ({FOLDS} walk-forward folds, every symbol cut at the same timestamps, "
        f"purged by the {HORIZON}-bar horizon).</p>"
        f"<p><b>Forecaster:</b> lightgbm regression (run {made.run_id}, task {made.task}), "
        "each fold's model fitted with its own feature scaling on earlier windows only; "
        "its run report has the per-symbol, predicted-vs-actual and IC-over-time charts.</p>"
        + table_html(scores, ["metric", "out of fold", "95% interval"])
        + table_html(symbols)
        + f"<p>Equal-weight portfolio of the three: total return "
        f"{_number(portfolio.get('total_return')):+.2%}, max drawdown "
        f"{_number(portfolio.get('max_drawdown')):.2%} (Sharpe ratios of two days of "
        "minute bars, annualised, say little: each backtest's stats keep them).</p>"
        f"<p><b>Direction:</b> bilstm ({_params(made.direction_params)}; run "
        f"{made.direction_run}) on the same windows with the {HORIZON}-bar forward-return "
        "label's classes (-1 down, 1 up) as target, over its own walk-forward split at the "
        "same timestamps, probabilities uncalibrated.</p>"
        + table_html(
            [
                {"metric": key.replace("_", " "), "out of fold": _shown(value, "{:.3f}")}
                for key, value in made.direction_metrics.items()
            ],
            ["metric", "out of fold"],
        )
    )
    note = (
        f"Each symbol trades its own out-of-fold forecasts: long when the predicted return is "
        f"above {THRESHOLD}, short when below -{THRESHOLD}, held {HORIZON} bars, filled at "
        f"the next bar's open with {COMMISSION:.2%} commission per fill, from $100,000. The "
        "markets are correlated random walks, so the forecasters have nothing to find: the "
        "numbers show that every step of the README's forecasting walkthrough ran, not a "
        "result."
    )
    return Section(f"Forecasting on feature windows: {len(SYMBOLS)} symbols", body, note)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _shown(value: Any, spec: str) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    return spec.format(value)


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in params.items())


def _interval(interval: Any, spec: str) -> str:
    if not isinstance(interval, dict) or interval.get("low") is None:
        return "n/a"
    return f"{spec.format(interval['low'])} to {spec.format(interval['high'])}"
