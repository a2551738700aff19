"""``moola backtest run RUN``: what a trained run's out-of-fold signals would have earned.

A run's out-of-fold (OOF) predictions become trading signals on its dataset's raw bars,
and ``moola.backtest.run`` turns them into trades, equity and statistics after costs.

Signals. Prediction ``i`` is about a window whose last bar is ``end_i``; its class
probabilities ``(p(long_class), p(short_class))`` are a decision at that bar, traded by the
signal policy ``moola.backtest.signals.ThresholdHold(threshold, hold_bars)`` (the one the
environment and the live engine step through): at that bar's close the target position
becomes +1 when ``p(long_class) >= threshold``, -1 when a ``short_class`` is given and
``p(short_class) >= threshold`` (when both pass, the larger probability wins and a tie
stays flat), else 0. The target holds for ``hold_bars`` bars: it is the target decided at
bars ``end_i .. end_i + hold_bars - 1``, so the position is held over bars ``end_i + 1 ..
end_i + hold_bars`` (filled at the open after the decision, ``latency_bars`` later in
general) and flat after, unless another signal comes first. A later signal replaces an
earlier one, a flat one too (the model's "stay out" is a decision); of several windows
ending at one bar, the last in the table decides. The probabilities are the raw OOF ones:
the run's calibrated OOF probabilities come from calibrators fitted on the other folds'
labels, which cover the traded periods.

Targets. A classification run (the default) trades its class probabilities as above.
A regression run trades its predicted values ``pred_<t>`` (the predictions table's column
of target ``t``) through ``SignHold`` (+1 above ``threshold``, -1 below ``-threshold`` when
shorts are allowed, else 0) or ``ScaledHold`` (``clip(pred / scale, -1, 1)``, the scale by
default the spread of earlier predictions only), held ``hold_bars`` bars the same way. A
multitask run trades the head ``target`` names: a regression head so, a classification
head (``p_<t>_<class>``) as a classifier. Options that do not fit the target (a class for
a regression target, a regression policy for a classification one) are refused by name.

Symbols. A run over several symbols trades one symbol per backtest, on that symbol's
own bars (``symbol``); :func:`backtest_symbols` backtests each one, checking all before
storing any, and reports an equal-weight portfolio line beside them. Windows over several
raw versions (feature windows, one raw per symbol) index their raws one after the other;
each symbol trades the bars of its own raw.

Leakage check. An OOF prediction of fold ``k`` comes from a model fitted on fold ``k``'s
train (and val) samples. Its traded period runs from the bar after the decision to the last
bar whose prices the trade depends on (``end_i + 1 .. end_i + hold_bars + latency_bars -
1``, timestamps). When a fitted sample's window ``[start_ts, end_ts]`` (to its label's
horizon end, ``horizon_end_ts``, when the label looks past the window) overlaps that period,
the model has seen the prices it is being scored on trading: purged k-fold keeps training
data after each test fold, and without an embargo of at least the holding time the first
window after the fold lies inside the last trades' periods. Such predictions are refused
(``LeakageError``) or, when asked, dropped and counted. Overlap is about time only, across
symbols, like the splits' purge.

Period. ``start`` backtests only the bars from a time on (a held-out period): the bars
before it are cut off, so equity, statistics and prop-firm checks cover that period alone,
and predictions decided before its first bar are not traded (they are counted).

Only out-of-fold runs are backtested: a holdout run's predictions are on its validation
part, which early stopping and calibration used, and its test part is scored once by
``moola evaluate RUN --test``. Results go into the run folder under
``backtests/<UTC stamp>/`` (the run's own files stay unchanged) with a ``backtest.json``
record (which keeps the policy's parameters and hash beside the execution terms' hash), all
or nothing, and one ``backtest`` line is appended to the experiment log. Before the folder
is written, a ``BacktestRecorded`` event (run, folder, both hashes, headline statistics) is
appended to the journal: the decision is on disk before anything acts on it.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moola.backtest import metrics
from moola.backtest.run import BacktestResult, execution_config, run
from moola.backtest.signals import (
    ScaledHold,
    SignalPolicy,
    SignHold,
    ThresholdHold,
    signal_targets,
)
from moola.core.atomic import atomic_write_text
from moola.core.errors import ConfigError, IntegrityError, LeakageError
from moola.core.provenance import utc_now_iso
from moola.data.registry import LABEL_HORIZON, Registry
from moola.data.splits import Fold, Split
from moola.pipeline.lifecycle import load_manifest
from moola.sim import ExecutionConfig
from moola.tracking.journal import BacktestRecorded, BacktestRecordedPayload, JsonlJournal
from moola.tracking.manifest import TargetSpec, TrainManifest
from moola.tracking.risk import journal_risk
from moola.tracking.runs import RunStore

BACKTESTS_DIR = "backtests"
RECORD_FILE = "backtest.json"
HEADLINE_STATS = ("sharpe", "max_drawdown", "total_return", "n_trades")
_SHOWN = 3  # leaky predictions described in a message
_SHOWN_ROWS = 5  # overlapping train rows named per leaky prediction


@dataclass(frozen=True)
class LeakageReport:
    """Which predictions trade a period their fold's model was fitted on.

    ``leaky`` is a mask over the checked predictions; ``fold`` the fold that tested each;
    ``examples`` the first leaky ones as ``(position in the checked arrays, fold,
    overlapping fitted rows)``; ``needed_embargo_ns`` the embargo after each test fold that
    would have kept every overlapping sample out (0 when none leak).
    """

    leaky: np.ndarray
    fold: np.ndarray
    examples: list[tuple[int, int, list[int]]]
    needed_embargo_ns: int

    @property
    def count(self) -> int:
        return int(self.leaky.sum())


def find_leaks(
    rows: np.ndarray,
    traded_start: np.ndarray,
    traded_end: np.ndarray,
    folds: Sequence[Fold],
    span_start: np.ndarray,
    span_end: np.ndarray,
) -> LeakageReport:
    """Which predictions (labeled ``rows``) trade ``[traded_start, traded_end]`` (int64 ns,
    inclusive; empty when start > end) overlapping a sample their fold fitted on (train or
    val), whose spans are ``[span_start, span_end]`` per labeled row.

    Raises ``IntegrityError`` for a row that no fold tested (the split is not the run's).
    """
    rows = np.asarray(rows, dtype=np.int64)
    traded_start = np.asarray(traded_start, dtype=np.int64)
    traded_end = np.asarray(traded_end, dtype=np.int64)
    fold_of_row = np.full(span_start.size, -1, dtype=np.int64)
    for k, fold in enumerate(folds):
        fold_of_row[np.asarray(fold.test, dtype=np.int64)] = k
    fold = fold_of_row[rows]
    untested = np.flatnonzero(fold < 0)
    if untested.size:
        raise IntegrityError(
            f"Predicted row(s) {rows[untested[:_SHOWN_ROWS]].tolist()} are in no fold's test "
            "part of the run's split, so they are not out-of-fold predictions of it; the "
            "split or predictions no longer match the run. Retrain the run."
        )
    leaky = np.zeros(rows.size, dtype=bool)
    fitted_of: list[np.ndarray] = []
    for k, part in enumerate(folds):
        fitted = np.union1d(np.asarray(part.train, np.int64), np.asarray(part.val, np.int64))
        fitted_of.append(fitted)
        here = np.flatnonzero((fold == k) & (traded_start <= traded_end))
        if not here.size or not fitted.size:
            continue
        # A fitted span [s, e] meets [a, b] iff s <= b and e >= a: among the spans starting
        # by b (a prefix once sorted by start), the latest end must reach a.
        by_start = np.argsort(span_start[fitted], kind="stable")
        starts = span_start[fitted][by_start]
        latest_end = np.maximum.accumulate(span_end[fitted][by_start])
        count = np.searchsorted(starts, traded_end[here], side="right")
        reach = latest_end[np.maximum(count - 1, 0)]
        leaky[here] = (count > 0) & (reach >= traded_start[here])
    examples = []
    for position in np.flatnonzero(leaky)[:_SHOWN]:
        fitted = fitted_of[int(fold[position])]
        meets = (span_start[fitted] <= traded_end[position]) & (
            span_end[fitted] >= traded_start[position]
        )
        examples.append((int(position), int(fold[position]), fitted[meets].tolist()))
    needed = 0
    if leaky.any():
        last_test_end = np.array(
            [span_end[np.asarray(f.test, np.int64)].max() if f.test else 0 for f in folds]
        )
        needed = int(max(0, (traded_end[leaky] - last_test_end[fold[leaky]]).max()))
    return LeakageReport(leaky, fold, examples, needed)


def backtest_run(
    registry: Registry,
    run_id: str,
    *,
    long_class: str | None = None,
    short_class: str | None = None,
    threshold: float | None = None,
    hold_bars: int | None = None,
    policy: SignalPolicy | None = None,
    target: str | None = None,
    symbol: str | None = None,
    execution: ExecutionConfig | None = None,
    periods_per_year: float | None = None,
    skip_leaky: bool = False,
    start: str | pd.Timestamp | None = None,
    **terms: Any,
) -> tuple[BacktestResult, dict[str, Any]]:
    """Backtest run ``run_id``'s out-of-fold predictions as signals (module notes).

    Parameters
    ----------
    long_class, short_class : str
        For a classification target: classes whose probability at or above ``threshold``
        goes long / short (``long_class`` required). Refused for a regression target.
    threshold : float
        Classification: a probability in (0, 1] (default 0.5). Regression: the sign
        policy's threshold, >= 0 in the prediction's units (default 0).
    hold_bars : int
        Bars a signal's position is held (>= 1); required unless ``policy`` is given.
    policy : ThresholdHold, SignHold or ScaledHold, optional
        The signal policy in one object, instead of ``threshold`` and ``hold_bars``:
        ``ThresholdHold`` for a classification target, ``SignHold`` or ``ScaledHold`` for
        a regression one (without it a regression target trades ``SignHold``); its
        parameters and hash are recorded (``policy``, ``policy_hash``).
    target : str, optional
        The run's target to trade (a multitask run's head); default its only target.
    symbol : str, optional
        The symbol to trade when the dataset holds several (:func:`backtest_symbols`
        backtests each).
    skip_leaky : bool, default False
        Drop predictions whose traded period their fold's model was fitted on (and
        count them) instead of raising ``LeakageError``.
    start : str or pd.Timestamp, optional
        Backtest only the bars from this time on (naive times are UTC); predictions
        decided before its first bar are dropped and counted (module notes).
    execution : ExecutionConfig, optional
        The execution terms (instrument, cash, costs, latency, engine, rules); its hash is
        recorded as ``execution_hash``. Default ``ExecutionConfig()``.
    periods_per_year
        As in :func:`moola.backtest.run.run`.
    **terms
        Deprecated (one release): the old keyword arguments ``instrument, initial_cash,
        commission, spread, slippage, latency_bars, engine, prop_firm_rules``.

    Returns the backtest and its record (also written to
    ``<run folder>/backtests/<UTC stamp>/backtest.json`` beside the backtest's files).
    Raises ``ConfigError`` for a holdout run or bad options, ``LeakageError`` as above.
    """
    execution = execution_config(execution, terms)
    prepared = _prepare(
        registry,
        run_id,
        long_class=long_class,
        short_class=short_class,
        threshold=threshold,
        hold_bars=hold_bars,
        policy=policy,
        target=target,
        symbol=symbol,
        execution=execution,
        periods_per_year=periods_per_year,
        skip_leaky=skip_leaky,
        start=start,
    )
    return _store(registry, prepared)


@dataclass(frozen=True)
class SymbolBacktests:
    """:func:`backtest_symbols`' answer: each symbol's backtest and record (each stored
    in the run folder like :func:`backtest_run`'s), and the equal-weight portfolio of
    them (``portfolio``: ``symbols``, ``start``, ``end``, ``total_return``, ``sharpe``,
    ``max_drawdown``; computed, not stored)."""

    results: dict[str, tuple[BacktestResult, dict[str, Any]]]
    portfolio: dict[str, Any]


def backtest_symbols(
    registry: Registry,
    run_id: str,
    *,
    symbols: Sequence[str] | None = None,
    **options: Any,
) -> SymbolBacktests:
    """Backtest run ``run_id``'s out-of-fold predictions on each of its symbols.

    ``symbols`` (default: every symbol with a covered prediction, sorted) are backtested
    one by one with ``options`` (:func:`backtest_run`'s keywords, but ``symbol``), each on
    its own bars with its own leakage check. Every symbol is checked first and nothing is
    stored unless all pass; then each backtest is stored as :func:`backtest_run` stores
    one. ``portfolio`` splits the initial cash equally over the symbols (each symbol's
    equity relative to its start, averaged over the union of their bar times, a symbol
    holding its last value between its bars) and reports its return, Sharpe and drawdown.
    """
    unknown = [key for key in options if key not in _OPTIONS]
    if unknown:
        raise ConfigError(
            f"backtest_symbols takes symbols= and {', '.join(_OPTIONS)}; not "
            f"{', '.join(unknown)} (execution terms go in execution=ExecutionConfig(...)).",
            param=unknown[0],
        )
    chosen = list(symbols) if symbols is not None else run_symbols(registry, run_id)
    if not chosen:
        raise ConfigError("symbols is empty: name at least one symbol.", param="symbols")
    options["execution"] = execution_config(options.get("execution"), {})
    prepared = [_prepare(registry, run_id, symbol=str(name), **options) for name in chosen]
    results = {p.record["symbol"]: _store(registry, p) for p in prepared}
    return SymbolBacktests(results, equal_weight_portfolio(results))


def run_symbols(registry: Registry, run_id: str) -> list[str]:
    """The symbols (sorted) of run ``run_id``'s covered out-of-fold predictions."""
    store = RunStore(registry.root)
    run_dir, manifest = load_manifest(store, run_id)
    _check_run(run_dir.name, manifest)
    if manifest.predictions is None:
        raise IntegrityError(f"Run {run_dir.name}'s manifest records no predictions table.")
    recorded = manifest.predictions
    predictions = registry.load_table("predictions", recorded.name, recorded.version)
    covered = predictions["covered"].to_numpy(bool)
    if "symbol" in predictions.columns:
        symbols = predictions["symbol"].astype(str).to_numpy()
    else:  # tables from before the symbol column: the dataset's windows name them
        dataset = manifest.data.dataset
        ref = registry.resolve("labeled", dataset.name, dataset.version)
        symbols = registry.sample_windows(ref)[0]
        if len(symbols) != len(covered):
            raise IntegrityError(
                f"The predictions of run {run_dir.name} ({len(covered)} rows) do not line up "
                f"with the windows of {dataset.pinned} ({len(symbols)} rows). Retrain the run."
            )
    return sorted(pd.unique(symbols[covered]).tolist())


def equal_weight_portfolio(
    results: dict[str, tuple[BacktestResult, dict[str, Any]]],
) -> dict[str, Any]:
    """One line for equal capital in each backtest: each equity curve over its first
    value, carried forward over the union of bar times (1 before a symbol's first bar),
    averaged; Sharpe annualised by the union's observed bars per year."""
    curves = {}
    for name, (result, _) in results.items():
        equity = result.equity
        stamps = pd.DatetimeIndex(pd.to_datetime(equity["timestamp"], utc=True))
        values = equity["equity"].to_numpy(np.float64)
        curves[name] = pd.Series(values / values[0], index=stamps)
    frame = pd.DataFrame(curves).sort_index().ffill().fillna(1.0)
    relative = frame.mean(axis=1).to_numpy(np.float64)
    per_year = metrics.observed_periods_per_year(frame.index)
    return metrics.json_safe(  # type: ignore[return-value]
        {
            "symbols": list(curves),
            "weights": "equal",
            "start": frame.index[0].isoformat() if len(frame) else None,
            "end": frame.index[-1].isoformat() if len(frame) else None,
            "bars": len(frame),
            "total_return": metrics.total_return(relative),
            "sharpe": metrics.sharpe(relative, per_year),
            "max_drawdown": metrics.max_drawdown(relative).depth,
        }
    )


#: backtest_run's keywords other than the execution terms' old spellings.
_OPTIONS = (
    "long_class",
    "short_class",
    "threshold",
    "hold_bars",
    "policy",
    "target",
    "execution",
    "periods_per_year",
    "skip_leaky",
    "start",
)


@dataclass(frozen=True)
class _Prepared:
    """A backtest computed and checked, not yet stored."""

    run_dir: Path
    result: BacktestResult
    record: dict[str, Any]
    on_breach: str


def _prepare(
    registry: Registry,
    run_id: str,
    *,
    long_class: str | None = None,
    short_class: str | None = None,
    threshold: float | None = None,
    hold_bars: int | None = None,
    policy: SignalPolicy | None = None,
    target: str | None = None,
    symbol: str | None = None,
    execution: ExecutionConfig,
    periods_per_year: float | None = None,
    skip_leaky: bool = False,
    start: str | pd.Timestamp | None = None,
) -> _Prepared:
    """Everything :func:`backtest_run` does before it stores: inputs, signals, leakage
    check, simulation and record."""
    latency_bars = execution.latency_bars
    store = RunStore(registry.root)
    run_dir, manifest = load_manifest(store, run_id)
    _check_run(run_dir.name, manifest)
    signal = _signal(
        run_dir.name, manifest, target, long_class, short_class, threshold, hold_bars, policy,
        latency_bars,
    )  # fmt: skip
    policy, hold_bars = signal.policy, signal.policy.hold_bars
    inputs = _load_inputs(registry, run_dir.name, manifest, signal, symbol)
    run_id, table, bars, rows = inputs.run_id, inputs.table, inputs.bars, inputs.rows
    probs = inputs.predictions[list(signal.columns)].to_numpy(np.float64)[rows]
    if not np.isfinite(probs).all():
        bad = rows[~np.isfinite(probs).all(axis=1)]
        what = "probabilities" if signal.classification else "predicted values"
        raise IntegrityError(
            f"Run {run_id} has covered predictions without {what} "
            f"({', '.join(signal.columns)}), e.g. row(s) {bad[:_SHOWN_ROWS].tolist()}."
        )
    probs = probs[:, 0] if probs.shape[1] == 1 else probs
    values = None  # each decision's target (+1, 0, -1), known before the policy runs
    if isinstance(policy, ThresholdHold):
        p_long, p_short = (probs, None) if probs.ndim == 1 else (probs[:, 0], probs[:, 1])
        values = signal_targets(p_long, p_short, policy.threshold)
    signal_bars = np.searchsorted(inputs.bar_rows, table["end"].to_numpy(np.int64)[rows])
    symbol_rows = int(rows.size)
    first_bar = 0 if start is None else _first_bar_from(bars, start, run_id)
    if first_bar:
        keep = signal_bars >= first_bar
        if not keep.any():
            raise ConfigError(
                f"Run {run_id} has no predictions decided at or after start={start}; "
                "nothing to backtest in that period."
            )
        rows, probs = rows[keep], probs[keep]
        values = None if values is None else values[keep]
        signal_bars = signal_bars[keep] - first_bar
        bars = bars.iloc[first_bar:].reset_index(drop=True)
    traded_start, traded_end = traded_periods(
        _ns(bars["timestamp"]), signal_bars, hold_bars, latency_bars
    )
    split = inputs.split
    report = find_leaks(
        rows, traded_start, traded_end, split.folds or [], inputs.span_start, inputs.span_end
    )
    split_params = _gaps(split.params, split.spans_unit)
    if report.count and not skip_leaky:
        split_text = f"{inputs.split_text}, " + ", ".join(
            [split.strategy, *(f"{key} {value}" for key, value in split_params.items())]
        )
        raise LeakageError(
            _leak_message(
                run_id, report, rows, traded_start, traded_end, split_text, hold_bars,
                inputs.dataset["name"],
            ),
            param="skip_leaky",
        )  # fmt: skip
    used = ~report.leaky
    decisions = _per_bar(len(bars), signal_bars[used], probs[used])
    positions = policy.positions(decisions, bars)
    if values is None:  # a regression decision's target is the position at its bar
        values = np.where(used, positions[signal_bars], 0.0)
    result = run(bars, positions, execution, periods_per_year=periods_per_year)

    covered = inputs.predictions["covered"].to_numpy(bool)
    chosen = signal.target
    record: dict[str, Any] = metrics.json_safe(  # type: ignore[assignment]
        {
            "kind": "backtest",
            "run_id": run_id,
            "at": utc_now_iso(),
            "path": None,  # set when stored
            "model": manifest.model,
            "dataset": inputs.dataset,
            "split": inputs.split_record,
            "raw": inputs.raw,
            "symbol": inputs.symbol,
            "task": manifest.task,
            "target": {"name": chosen.name, "kind": chosen.kind, "columns": list(signal.columns)},
            "probabilities": "out-of-fold, uncalibrated" if signal.classification else None,
            "predictions": "out-of-fold",
            "long_class": long_class,
            "short_class": short_class,
            "threshold": getattr(policy, "threshold", None),
            "hold_bars": int(hold_bars),
            "start": None if start is None else str(start),
            "config": result.config,
            "execution_hash": execution.config_hash,
            "policy": policy.params,
            "policy_hash": policy.policy_hash,
            "counts": {
                "predictions": len(covered),
                "covered": int(covered.sum()),
                "other_symbols": int(covered.sum()) - symbol_rows,
                "before_start": symbol_rows - int(rows.size),
                "checked": int(rows.size),
                "used": int(used.sum()),
                "skipped_leaky": report.count,
                "long": int((values[used] > 0).sum()),
                "short": int((values[used] < 0).sum()),
                "flat": int((values[used] == 0).sum()),
            },
            "leakage_check": {
                "passed": report.count == 0,
                "leaky": report.count,
                "skipped": bool(skip_leaky and report.count),
                "traded_period": "bars end+1 .. end+hold_bars+latency_bars-1 of each window",
                "fitted_parts": "train and val of the fold that tested the window",
                "fitted_spans": "each fitted window's first bar to its last, or to its "
                "label's horizon end when later",
                "split_params": split_params,
                "needed_embargo": _duration(report.needed_embargo_ns) if report.count else None,
                "leaky_rows": rows[report.leaky][:50].tolist(),
            },
            "stats": result.stats,
        }
    )
    return _Prepared(run_dir, result, record, execution.on_breach)


def _store(registry: Registry, prepared: _Prepared) -> tuple[BacktestResult, dict[str, Any]]:
    """A prepared backtest into a new ``backtests/<UTC stamp>/`` folder of its run (and the
    journal and experiment log first; ``_save``)."""
    folder = _new_folder(prepared.run_dir / BACKTESTS_DIR)
    record = {**prepared.record, "path": f"{BACKTESTS_DIR}/{folder.name}"}
    store = RunStore(registry.root)
    _save(store, JsonlJournal(registry.root), folder, prepared.result, record, prepared.on_breach)
    return prepared.result, record


@dataclass(frozen=True)
class _Signal:
    """What a backtest trades: the run's target, the predictions-table columns read (in
    the order the policy takes them) and the policy."""

    target: TargetSpec
    columns: tuple[str, ...]
    policy: SignalPolicy

    @property
    def classification(self) -> bool:
        return self.target.kind == "classification"


def _signal(
    run_id: str,
    manifest: TrainManifest,
    target: str | None,
    long_class: str | None,
    short_class: str | None,
    threshold: float | None,
    hold_bars: int | None,
    policy: SignalPolicy | None,
    latency_bars: int,
) -> _Signal:
    """The target, columns and checked policy from the options and the run's targets."""
    chosen = manifest.target(target)
    columns = manifest.prediction_columns(chosen)
    if chosen.kind == "regression":
        given = [p for p, v in (("long_class", long_class), ("short_class", short_class)) if v]
        if given:
            raise ConfigError(
                f"{given[0]} picks a class whose probability is traded, but target "
                f"{chosen.name!r} of run {run_id} is a regression target: its predicted "
                "values are traded by the sign or scaled policy (threshold= and hold_bars=, "
                "or policy=SignHold(...) / ScaledHold(...)); leave the classes out.",
                param=given[0],
            )
        checked = _regression_policy(policy, threshold, hold_bars, latency_bars, chosen.name)
        return _Signal(chosen, (columns["pred"],), checked)
    if isinstance(policy, _REGRESSION_POLICIES):
        raise ConfigError(
            f"policy={policy.name} ({type(policy).__name__}) trades a regression model's "
            "predicted values, "
            f"but target {chosen.name!r} of run {run_id} is a classification target (classes "
            f"{', '.join(chosen.classes or ())}): trade its probabilities with ThresholdHold "
            "(long_class=, threshold=, hold_bars=).",
            param="policy",
        )
    if long_class is None:
        raise ConfigError(
            f"long_class is required: target {chosen.name!r} of run {run_id} is a "
            "classification target, and a backtest goes long on one class's probability "
            f"(its classes: {', '.join(chosen.classes or ())}).",
            param="long_class",
        )
    checked_policy = _policy(policy, threshold, hold_bars, latency_bars, long_class, short_class)
    _check_classes(list(chosen.classes or ()), long_class, short_class)
    read = (columns[long_class],) + ((columns[short_class],) if short_class else ())
    return _Signal(chosen, read, checked_policy)


def _per_bar(n_bars: int, signal_bars: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The decisions as the policy takes them: one probability row per bar, ``nan`` where
    none is decided; of several at one bar, the last (in table order) counts."""
    out = np.full((n_bars, *probs.shape[1:]), np.nan)
    order = np.argsort(signal_bars, kind="stable")
    at = signal_bars[order]
    last = np.append(at[1:] != at[:-1], True) if at.size else np.zeros(0, dtype=bool)
    out[at[last]] = probs[order[last]]
    return out


def traded_periods(
    stamps: np.ndarray, signal_bars: np.ndarray, hold_bars: int, latency_bars: int
) -> tuple[np.ndarray, np.ndarray]:
    """The time span (int64 ns, inclusive) each signal's trade depends on: bar open times
    ``signal + 1 .. signal + hold_bars + latency_bars - 1``, cut at the last bar; empty
    (start > end) for a signal at the last bar, which never fills."""
    last = len(stamps) - 1
    first_bar = signal_bars + 1
    last_bar = np.minimum(signal_bars + hold_bars + latency_bars - 1, last)
    end = stamps[last_bar]
    start = np.where(first_bar > last, end + 1, stamps[np.minimum(first_bar, last)])
    return start, end


# --------------------------------------------------------------------------- I/O


@dataclass(frozen=True)
class _Inputs:
    """What a run's backtest reads: its windows, split, predictions and one symbol's bars."""

    run_id: str
    dataset: dict[str, Any]
    split: Split
    split_record: dict[str, Any]
    split_text: str
    table: pd.DataFrame
    predictions: pd.DataFrame
    raw: dict[str, Any]
    symbol: str
    bars: pd.DataFrame
    bar_rows: np.ndarray  # positions of ``bars`` as the windows' ``end`` counts them
    rows: np.ndarray  # covered prediction rows of ``symbol``
    span_start: np.ndarray  # per window (int64 ns): its first bar
    span_end: np.ndarray  # its last bar, or its label's horizon end when later


def _load_inputs(
    registry: Registry,
    run_id: str,
    manifest: TrainManifest,
    signal: _Signal,
    symbol: str | None,
) -> _Inputs:
    """The run's exact dataset, split version and predictions, checked against each other.

    The dataset is windows of raw bars (``Registry.load_labeled``) or feature windows
    (``Registry.load_feature_windows``); either way ``end`` is a row of the raw bars.
    """
    recorded, dataset = manifest.split, manifest.data.dataset
    split_text = recorded.pinned
    ref = registry.resolve("labeled", dataset.name, dataset.version)
    if ref.content_hash != dataset.content_hash:
        raise IntegrityError(
            f"Run {run_id} trained on {dataset.pinned} with hash "
            f"{dataset.content_hash}; it now hashes to {ref.content_hash}."
        )
    meta = registry.meta(ref)
    if "features" in meta:
        windows = registry.load_feature_windows(dataset.name, dataset.version)
        table = windows.table
        split, split_record = registry.load_split(split_text, expect_dataset=ref)
    else:
        data = registry.load_labeled(dataset.name, dataset.version, split=split_text)
        table, split, split_record = data.table, data.split, data.audit["split"]
    if split_record["split_hash"] != recorded.split_hash or split is None:
        raise IntegrityError(
            f"Split {split_text} no longer hashes to the {recorded.split_hash} run "
            f"{run_id} trained on."
        )
    predictions_ref = manifest.predictions
    if predictions_ref is None:
        raise IntegrityError(f"Run {run_id}'s manifest records no predictions table.")
    predictions = registry.load_table("predictions", predictions_ref.name, predictions_ref.version)
    if manifest.task == "classification":
        predicted = registry.meta(
            registry.resolve("predictions", predictions_ref.name, predictions_ref.version)
        )
        if tuple(str(c) for c in predicted["classes"]) != manifest.classes:
            raise IntegrityError(
                f"Run {run_id}'s predictions ({predictions_ref.pinned}) have classes "
                f"{list(predicted['classes'])}, but the run (and its Predictor) has "
                f"{list(manifest.classes)}."
            )
    missing = [c for c in signal.columns if c not in predictions.columns]
    if missing:
        raise IntegrityError(
            f"Run {run_id}'s predictions ({predictions_ref.pinned}) lack column(s) "
            f"{', '.join(missing)}, where target {signal.target.name!r} "
            f"({signal.target.kind}) is predicted. Retrain the run."
        )
    if len(predictions) != len(table) or not np.array_equal(
        _ns(predictions["end_ts"]), _ns(table["end_ts"])
    ):
        raise IntegrityError(
            f"The predictions of run {run_id} ({len(predictions)} rows) do not line up with "
            f"the windows of {ref} ({len(table)} rows). Retrain the run."
        )
    window_symbols = table["symbol"].astype(str).to_numpy()
    if "symbol" in predictions.columns:
        predicted_symbols = predictions["symbol"].astype(str).to_numpy()
        differ = np.flatnonzero(predicted_symbols != window_symbols)
        if differ.size:
            raise IntegrityError(
                f"The predictions of run {run_id} name other symbols than the windows of "
                f"{ref} at row(s) {differ[:_SHOWN_ROWS].tolist()}. Retrain the run."
            )
    covered = predictions["covered"].to_numpy(bool)
    symbols = sorted(pd.unique(window_symbols).tolist())
    traded = _pick_symbol(symbols, symbol, ref)
    rows = np.flatnonzero(covered & (window_symbols == traded))
    if rows.size == 0:
        raise ConfigError(
            f"Run {run_id} has no out-of-fold predictions for symbol {traded!r}; "
            "nothing to backtest."
        )
    raw, offset = _raw_of(meta, int(table["end"].iloc[rows[0]]))
    stored = registry.resolve("raw", raw["name"], raw["version"])
    if stored.content_hash != raw["content_hash"]:
        raise IntegrityError(
            f"{ref} indexes raw/{raw['name']}@v{raw['version']} with content hash "
            f"{raw['content_hash']}, but it now hashes to {stored.content_hash}."
        )
    all_bars = registry.load_raw(raw["name"], raw["version"])
    local = np.flatnonzero(all_bars["symbol"].astype(str).to_numpy() == traded)
    bar_rows = offset + local  # as window positions: after the bars of the raws before it
    span_start, span_end = _ns(table["start_ts"]), _ns(table["end_ts"])
    if LABEL_HORIZON in table.columns:
        # a label that looked past its window saw those prices too
        span_end = np.maximum(span_end, _ns(table[LABEL_HORIZON]))
    return _Inputs(
        run_id=run_id,
        dataset=dataset.model_dump(),
        split=split,
        split_record={
            "name": recorded.name,
            "version": recorded.version,
            "split_hash": recorded.split_hash,
        },
        split_text=split_text,
        table=table,
        predictions=predictions,
        raw=raw,
        symbol=traded,
        bars=all_bars.iloc[local].reset_index(drop=True),
        bar_rows=bar_rows,
        rows=rows,
        span_start=span_start,
        span_end=span_end,
    )


def _raw_of(meta: dict[str, Any], position: int) -> tuple[dict[str, Any], int]:
    """The raw version (its record) holding window position ``position``, and the position
    of its first bar: windows over several raw versions index their feature tables one
    after the other (``feature_tables``); other windows index their one raw's bars."""
    segments = meta.get("feature_tables")
    if not segments:
        return meta["raw"], 0
    offsets = [int(segment["offset"]) for segment in segments]
    segment = segments[int(np.searchsorted(offsets, position, side="right")) - 1]
    return segment["raw"], int(segment["offset"])


def _save(
    store: RunStore,
    journal: JsonlJournal,
    folder: Path,
    result: BacktestResult,
    record: dict[str, Any],
    on_breach: str,
) -> None:
    """The backtest into the journal first, with each risk decision it simulated (rule
    breaches and refused orders; ``journal_risk``); then its files and record into
    ``folder``, all or nothing; then a line in the experiment log."""
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    headline = {key: record["stats"].get(key) for key in HEADLINE_STATS}
    journal.append(  # on disk before the backtest is stored with its run
        BacktestRecorded(
            at=record["at"],
            payload=BacktestRecordedPayload(
                run_id=record["run_id"],
                backtest=record["path"],
                execution_hash=record["execution_hash"],
                policy_hash=record["policy_hash"],
                stats=headline,
            ),
        )
    )
    # Breaches and refused orders; orders the leverage limit only capped stay in the
    # backtest's rejections.csv (one per bar in a long backtest would swamp the journal).
    source = f"backtest:{record['run_id']}/{record['path']}"
    refused = result.rejections[result.rejections["accepted_qty"] == 0.0]
    journal_risk(journal, source, result.breaches, refused, on_breach=on_breach)
    run_dir = folder.parent.parent
    with store.addition(run_dir, str(folder.relative_to(run_dir))) as tmp:
        result.to_dir(tmp, overwrite=True)
        atomic_write_text(tmp / RECORD_FILE, text)
    dataset = record["dataset"]
    store.append_result(
        {
            "run_id": record["run_id"],
            "kind": "backtest",
            "model": record["model"],
            "dataset": f"{dataset['name']}@v{dataset['version']}",
            "path": record["path"],
            "metrics": {key: result.stats.get(key) for key in HEADLINE_STATS},
        }
    )


# --------------------------------------------------------------------------- checks


def _policy(
    policy: SignalPolicy | None,
    threshold: float | None,
    hold_bars: int | None,
    latency_bars: int,
    long_class: str,
    short_class: str | None,
) -> ThresholdHold:
    """The signal policy of a classification target from ``policy`` or from ``threshold``
    and ``hold_bars``, checked with the other options."""
    if policy is None:
        if hold_bars is None:
            raise ConfigError(
                "hold_bars is required: how many bars each signal is held (usually the "
                "label's horizon); or pass policy=ThresholdHold(threshold=..., hold_bars=...).",
                param="hold_bars",
            )
        threshold = 0.5 if threshold is None else threshold
        _check_options(hold_bars, threshold, latency_bars, long_class, short_class)
        return ThresholdHold(threshold=float(threshold), hold_bars=int(hold_bars))
    if threshold is not None or hold_bars is not None:
        raise ConfigError(
            "Give the signal policy once: policy=, or threshold= and hold_bars=, not both."
        )
    if not isinstance(policy, ThresholdHold):
        raise ConfigError(
            f"policy must be a ThresholdHold, got {type(policy).__name__}: a backtest of a "
            "run's signals checks each signal's traded period, which hold_bars bounds.",
            param="policy",
        )
    _check_options(policy.hold_bars, policy.threshold, latency_bars, long_class, short_class)
    return policy


_REGRESSION_POLICIES = (SignHold, ScaledHold)


def _regression_policy(
    policy: SignalPolicy | None,
    threshold: float | None,
    hold_bars: int | None,
    latency_bars: int,
    target: str,
) -> SignHold | ScaledHold:
    """The signal policy of a regression target: ``policy`` (SignHold or ScaledHold), or
    SignHold from ``threshold`` (default 0) and ``hold_bars``."""
    if policy is None:
        if hold_bars is None:
            raise ConfigError(
                "hold_bars is required: how many bars each signal is held (usually the "
                f"horizon of target {target!r}); or pass policy=SignHold(...) or "
                "ScaledHold(...).",
                param="hold_bars",
            )
        threshold = 0.0 if threshold is None else threshold
        _check_hold_and_latency(hold_bars, latency_bars)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not (math.isfinite(float(threshold)) and float(threshold) >= 0.0)
        ):
            raise ConfigError(
                f"threshold must be a number >= 0 in the units of target {target!r} (a "
                f"prediction above it goes long, below its negative short), got {threshold!r}.",
                param="threshold",
            )
        return SignHold(threshold=float(threshold), hold_bars=int(hold_bars))
    if threshold is not None or hold_bars is not None:
        raise ConfigError(
            "Give the signal policy once: policy=, or threshold= and hold_bars=, not both."
        )
    if not isinstance(policy, _REGRESSION_POLICIES):
        raise ConfigError(
            f"policy must be a SignHold or ScaledHold for regression target {target!r}, got "
            f"{type(policy).__name__}: its predicted values are not probabilities.",
            param="policy",
        )
    _check_hold_and_latency(policy.hold_bars, latency_bars)
    return policy


def _check_hold_and_latency(hold_bars: int, latency_bars: int) -> None:
    if isinstance(hold_bars, bool) or not isinstance(hold_bars, (int, np.integer)) or hold_bars < 1:
        raise ConfigError(
            f"hold_bars must be a whole number of bars >= 1, got {hold_bars!r}.", param="hold_bars"
        )
    if isinstance(latency_bars, bool) or not isinstance(latency_bars, (int, np.integer)):
        raise ConfigError(
            f"latency_bars must be a whole number of bars >= 1, got {latency_bars!r}.",
            param="latency_bars",
        )
    if latency_bars < 1:
        raise ConfigError(
            f"latency_bars must be >= 1 (fill after the decision), got {latency_bars}.",
            param="latency_bars",
        )


def _check_options(
    hold_bars: int,
    threshold: float,
    latency_bars: int,
    long_class: str,
    short_class: str | None,
) -> None:
    _check_hold_and_latency(hold_bars, latency_bars)
    if not isinstance(threshold, (int, float)) or not (0.0 < float(threshold) <= 1.0):
        raise ConfigError(
            f"threshold must be a probability in (0, 1], got {threshold!r}.", param="threshold"
        )
    if short_class is not None and short_class == long_class:
        raise ConfigError(
            f"long_class and short_class are both {long_class!r}; give two classes, or "
            "leave short_class out to trade long only.",
            param="short_class",
        )


def _check_run(run_id: str, manifest: TrainManifest) -> None:
    if manifest.mode != "oof":
        raise ConfigError(
            f"Run {run_id} was trained on a train/val/test split (mode "
            f"{manifest.mode!r}): its only predictions are on the validation part, "
            "which early stopping and calibration used, and its test part is scored once by "
            "`moola evaluate RUN --test`. A backtest of signals needs out-of-fold "
            "predictions: split with folds (`moola data split DATASET --strategy "
            "purged-kfold --embargo N`, N at least hold_bars) and train again."
        )


def _check_classes(classes: list[str], long_class: str, short_class: str | None) -> None:
    for param, name in (("long_class", long_class), ("short_class", short_class)):
        if name is None or name in classes:
            continue
        close = difflib.get_close_matches(str(name), classes, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{param} {name!r} is not a class of this run.{hint} Its classes are: "
            + ", ".join(repr(c) for c in classes)
            + ".",
            param=param,
        )


def _first_bar_from(bars: pd.DataFrame, start: str | pd.Timestamp, run_id: str) -> int:
    """Position of the first bar at or after ``start`` (naive times are UTC)."""
    try:
        stamp = pd.Timestamp(start)
    except (TypeError, ValueError):
        raise ConfigError(
            f"start={start!r} is not a time; give e.g. 2024-03-01 or 2024-03-01T14:30Z."
        ) from None
    if pd.isna(stamp):
        raise ConfigError(f"start={start!r} is not a time; give e.g. 2024-03-01.")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    first = int(np.searchsorted(_ns(bars["timestamp"]), stamp.value, side="left"))
    if first >= len(bars):
        raise ConfigError(
            f"start={stamp.isoformat()} is after the last bar of run {run_id}'s data "
            f"({bars['timestamp'].iloc[-1]}); give an earlier start."
        )
    return first


def _pick_symbol(symbols: list[str], symbol: str | None, ref: object) -> str:
    if symbol is None:
        if len(symbols) == 1:
            return symbols[0]
        raise ConfigError(
            f"{ref} holds windows of {len(symbols)} symbols ({', '.join(symbols[:10])}); a "
            "backtest trades one. Pick it with symbol, or backtest each symbol with "
            "backtest_symbols.",
            param="symbol",
        )
    if symbol not in symbols:
        raise ConfigError(
            f"symbol {symbol!r} has no windows in {ref}; it holds {', '.join(symbols[:10])}.",
            param="symbol",
        )
    return symbol


# --------------------------------------------------------------------------- helpers


def _leak_message(
    run_id: str,
    report: LeakageReport,
    rows: np.ndarray,
    traded_start: np.ndarray,
    traded_end: np.ndarray,
    split_text: str,
    hold_bars: int,
    dataset: str,
) -> str:
    shown = []
    for position, fold, overlapping in report.examples:
        names = ", ".join(str(r) for r in overlapping[:_SHOWN_ROWS])
        if len(overlapping) > _SHOWN_ROWS:
            names += f" and {len(overlapping) - _SHOWN_ROWS} more"
        shown.append(
            f"row {int(rows[position])} (fold {fold}, trades {_iso(traded_start[position])} .. "
            f"{_iso(traded_end[position])}; fold {fold} trained on row(s) {names})"
        )
    more = f" and {report.count - len(shown)} more" if report.count > len(shown) else ""
    embargo = _duration(report.needed_embargo_ns)
    return (
        f"{report.count} of {rows.size} out-of-fold predictions of run {run_id} would trade "
        f"a period that their fold's model was trained on (split {split_text}): "
        f"{'; '.join(shown)}{more}. Backtesting them would count profits the model had "
        "already seen. Re-split with an embargo of at least hold_bars "
        f"({hold_bars}) bars, and at least {embargo} in time (the longest traded period "
        "here ends that long after its fold's last window; session gaps stretch it): "
        f"`moola data split {dataset} --strategy purged-kfold --embargo {embargo}`, train "
        "again and backtest that run; or pass skip_leaky=True to drop these predictions "
        "(the count is recorded)."
    )


def _gaps(params: dict[str, Any], unit: str) -> dict[str, Any]:
    """Split parameters with purge and embargo readable (durations when stored in ns)."""
    out = dict(params)
    for key in ("purge", "embargo"):
        if unit == "ns" and isinstance(out.get(key), int):
            out[key] = _duration(out[key])
    return out


def _new_folder(base: Path) -> Path:
    """A new ``<UTC stamp>`` folder name under ``base`` (suffixed if taken)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder, n = base / stamp, 1
    while folder.exists():
        n += 1
        folder = base / f"{stamp}-{n}"
    return folder


def _ns(column: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(pd.to_datetime(column, utc=True)).asi8.astype(np.int64)


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(ns: int) -> str:
    """A duration as the split command reads it, rounded up (``20min``, ``3h``, ``2d``)."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        step = size * 10**9
        if ns >= step and ns % step == 0:
            return f"{ns // step}{unit}"
    return f"{math.ceil(ns / 60e9)}min" if ns > 0 else "0"
