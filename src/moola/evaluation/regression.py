"""Regression metrics with bootstrap intervals, per symbol and over time; multi-task reports.

A forecaster of returns, volatility or trend strength is judged on how far off it is (MAE,
RMSE), how much of the variance it explains (R²), whether it gets the direction right
(sign accuracy) and whether it orders the windows right (the information coefficient, IC:
Spearman rank correlation of prediction and outcome, the number a trader ranks signals
by). :func:`regression_report` gives each with a 95% bootstrap percentile interval, per
symbol, and the IC period by period, so a model that worked in one month only shows it.

Conventions:

- ``y`` (actual) and ``pred`` are 1-D float arrays of one target, one value per window;
  NaN or inf in either is refused (evaluate only covered rows).
- Sign accuracy counts rows whose actual is non-zero; a prediction of exactly 0 has no
  sign and counts as wrong there.
- R² is scikit-learn's ``1 - SSE / SST``; IC is Spearman's rho with tied values given
  their average rank (``scipy.stats.spearmanr``). Either is ``None`` when undefined (a
  constant ``y`` has no variance to explain; a constant ``y`` or ``pred`` has no order),
  as is sign accuracy when every actual is 0. Values are never NaN, so reports are JSON.

Bootstrap: as :func:`moola.evaluation.metrics.classification_report` (plain, no
stratification), with its helpers: i.i.d. resampling of windows, a resample being a row
of draw counts so all of them are scored at once with matrix products, percentile
intervals. Windows of a forecasting dataset overlap and their targets are autocorrelated,
so these intervals are on the narrow side; read them as a floor on the uncertainty. The
weighted Spearman kernel ranks each resample as the multiset it is (a window drawn twice
is two tied values), so each resample's IC equals ``spearmanr`` on the drawn rows; the
tests check that.

A multi-task run scores each head with its own report (regression or classification):
:func:`multitask_report` puts them side by side and :func:`flat_regression_metrics` names
their headline numbers ``<head>.<metric>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from moola.core.errors import ConfigError
from moola.evaluation.metrics import (
    _CHUNK_CELLS,
    _interval,
    _Ranking,
    _ranking,
    _resample_indices,
    _weights,
)

REGRESSION_METRICS: tuple[str, ...] = ("mae", "rmse", "r2", "sign_accuracy", "ic")
#: IC-over-time period lengths, coarsest first: the first giving this many periods is used.
IC_PERIODS: tuple[tuple[str, str], ...] = (
    ("month", "M"),
    ("week", "W"),
    ("day", "D"),
    ("hour", "h"),
)
MIN_IC_PERIODS = 6
_RELATIVE_ZERO = 1e-12  # a resample's SST below this fraction of its sum of squares is 0


# --------------------------------------------------------------------------- validation


def _finite_column(values: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{what} must hold numbers (one float per window); got values that are not.",
            param=what,
        ) from None
    if array.ndim != 1:
        raise ConfigError(
            f"{what} must be 1-D (one value per window, one target per call), got shape "
            f"{array.shape}.",
            param=what,
        )
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ConfigError(
            f"{what} holds NaN or inf at row {int(bad[0])} ({bad.size} row(s) in all, value "
            f"{array[bad[0]]}); evaluate only covered rows with finite targets.",
            param=what,
        )
    return array


def validate_regression(y: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """``y`` and ``pred`` as finite ``(N,)`` float64 arrays of one length, or ``ConfigError``
    naming the argument (and the first bad row)."""
    actual = _finite_column(y, "y")
    predicted = _finite_column(pred, "pred")
    if actual.size != predicted.size:
        raise ConfigError(
            f"y has {actual.size} rows but pred has {predicted.size}; give one prediction "
            "per actual value.",
            param="pred",
        )
    if actual.size == 0:
        raise ConfigError("No rows to evaluate: y and pred are empty.", param="y")
    return actual, predicted


def _labels(values: Any, n: int, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.size != n:
        raise ConfigError(
            f"{what} must be 1-D with one entry per row of y ({n}), got shape {array.shape}.",
            param=what,
        )
    return array


# --------------------------------------------------------------------------- point metrics


def _constant(values: np.ndarray) -> bool:
    return bool(values.size < 2 or values.min() == values.max())


def _spearman(y: np.ndarray, pred: np.ndarray) -> float | None:
    if _constant(y) or _constant(pred):
        return None
    rho = float(spearmanr(y, pred).statistic)
    return rho if math.isfinite(rho) else None


def _sign_accuracy(y: np.ndarray, pred: np.ndarray) -> float | None:
    moved = y != 0
    if not moved.any():
        return None
    return float(np.mean(np.sign(pred[moved]) == np.sign(y[moved])))


def _point_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    """The five metrics from scikit-learn / scipy, ``None`` where undefined."""
    return {
        "mae": float(mean_absolute_error(y, pred)),
        "rmse": float(math.sqrt(mean_squared_error(y, pred))),
        "r2": None if _constant(y) else float(r2_score(y, pred)),
        "sign_accuracy": _sign_accuracy(y, pred),
        "ic": _spearman(y, pred),
    }


# --------------------------------------------------------------------------- row kernels
# As in metrics.py: a resample is a row of draw counts ``w`` over the N rows; every kernel
# maps ``(R, N)`` weights to ``(R,)`` values, NaN where the metric is undefined.


@dataclass(frozen=True)
class _Prepared:
    """Per-row quantities every kernel reads (fixed across resamples)."""

    absolute: np.ndarray  # |pred - y|
    squared: np.ndarray  # (pred - y)^2
    centred: np.ndarray  # y - mean(y): R² without cancellation on a large mean
    moved: np.ndarray  # 1.0 where y != 0
    hit: np.ndarray  # 1.0 where y != 0 and the signs agree
    rank_y: _Ranking
    rank_pred: _Ranking


def _prepare(y: np.ndarray, pred: np.ndarray) -> _Prepared:
    error = pred - y
    moved = y != 0
    return _Prepared(
        absolute=np.abs(error),
        squared=error**2,
        centred=y - y.mean(),
        moved=moved.astype(np.float64),
        hit=(moved & (np.sign(pred) == np.sign(y))).astype(np.float64),
        rank_y=_ranking(y),
        rank_pred=_ranking(pred),
    )


def _weighted_ranks(w: np.ndarray, rank: _Ranking) -> np.ndarray:
    """Each row's 1-based average rank within the resample it belongs to, less the mean
    rank: a row drawn c times is c tied values, so the ranks are those of the drawn
    multiset. Where the values have no ties, a row's c copies take positions below+1 ..
    below+c, average ``cum - c/2 + 1/2`` (cum = inclusive running count)."""
    ws = w[:, rank.order]
    cum = np.cumsum(ws, axis=1)
    if np.array_equal(rank.first, rank.last):  # no ties among the values
        in_order = cum - 0.5 * ws + 0.5
    else:
        below = cum[:, rank.first] - ws[:, rank.first]
        in_order = below + (cum[:, rank.last] - below + 1.0) / 2.0
    in_order -= (cum[:, -1:] + 1.0) / 2.0  # the mean of the average ranks 1..W
    ranks = np.empty_like(w)
    ranks[:, rank.order] = in_order
    return ranks


def _rows(w: np.ndarray, prep: _Prepared) -> dict[str, np.ndarray]:
    """Every metric per weight row."""
    total = w.sum(axis=1)
    sse = w @ prep.squared
    sum_c, sum_cc = w @ prep.centred, w @ prep.centred**2
    sst = sum_cc - sum_c**2 / total
    moved = w @ prep.moved
    ry = _weighted_ranks(w, prep.rank_y)
    rp = _weighted_ranks(w, prep.rank_pred)
    weighted_ry = w * ry
    cov = np.einsum("ij,ij->i", weighted_ry, rp)
    var_y = np.einsum("ij,ij->i", weighted_ry, ry)
    rp *= np.sqrt(w)  # in place: var_p = sum(w rp^2) as a row-wise dot
    var_p = np.einsum("ij,ij->i", rp, rp)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > _RELATIVE_ZERO * sum_cc, 1.0 - sse / sst, np.nan)
        ic = np.where((var_y > 0) & (var_p > 0), cov / np.sqrt(var_y * var_p), np.nan)
        sign = np.where(moved > 0, (w @ prep.hit) / moved, np.nan)
    return {
        "mae": (w @ prep.absolute) / total,
        "rmse": np.sqrt(sse / total),
        "r2": r2,
        "sign_accuracy": sign,
        "ic": ic,
    }


def _bootstrap(prep: _Prepared, n: int, *, n_bootstrap: int, seed: int) -> dict[str, np.ndarray]:
    """Per-resample values of every metric (NaN = undefined in that resample)."""
    rng = np.random.default_rng(seed)
    index = np.arange(n)  # plain resampling draws from all rows
    chunk = max(1, _CHUNK_CELLS // n)
    collected: dict[str, list[np.ndarray]] = {name: [] for name in REGRESSION_METRICS}
    done = 0
    while done < n_bootstrap:
        size = min(chunk, n_bootstrap - done)
        values = _rows(_weights(_resample_indices(index, size, rng, False)), prep)
        for name in REGRESSION_METRICS:
            collected[name].append(values[name])
        done += size
    return {name: np.concatenate(parts) for name, parts in collected.items()}


# --------------------------------------------------------------------------- over time


def _ic_over_time(y: np.ndarray, pred: np.ndarray, times: Any) -> tuple[str, list[dict[str, Any]]]:
    """IC per calendar period (UTC): months, or weeks, days or hours when the span holds
    fewer than :data:`MIN_IC_PERIODS` of the longer period."""
    if np.ndim(times) != 1 or len(times) != y.size:
        raise ConfigError(
            f"times must be 1-D with one entry per row of y ({y.size}), got shape "
            f"{np.shape(times)}.",
            param="times",
        )
    try:  # straight from a pandas column: an object array of tz-aware stamps is 5x slower
        stamps = pd.DatetimeIndex(pd.to_datetime(times, utc=True)).tz_convert(None)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"times must be timestamps, one per row: {exc}", param="times") from None
    missing = np.flatnonzero(stamps.isna())
    if missing.size:
        raise ConfigError(
            f"times has no timestamp at row {int(missing[0])}; give one per row.", param="times"
        )
    name, periods = IC_PERIODS[-1][0], stamps.to_period(IC_PERIODS[-1][1])
    for candidate, freq in IC_PERIODS[:-1]:
        coarser = stamps.to_period(freq)
        if coarser.nunique() >= MIN_IC_PERIODS:
            name, periods = candidate, coarser
            break
    codes, uniques = pd.factorize(periods, sort=True)
    out = []
    for code, period in enumerate(uniques):
        rows = codes == code
        out.append(
            {"period": str(period), "ic": _spearman(y[rows], pred[rows]), "n": int(rows.sum())}
        )
    return name, out


# --------------------------------------------------------------------------- the reports


def _checked_count(n_bootstrap: Any) -> int:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)):
        raise ConfigError(
            f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}.",
            param="n_bootstrap",
        )
    if n_bootstrap < 0:
        raise ConfigError(f"n_bootstrap must be >= 0, got {n_bootstrap}.", param="n_bootstrap")
    return int(n_bootstrap)


def regression_report(
    y: Any,
    pred: Any,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    symbols: Any = None,
    times: Any = None,
    target: str = "value",
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Every regression metric a run reports, as a JSON-serialisable dict.

    Parameters
    ----------
    y, pred : (N,) float
        Actual and predicted values of one target (finite: evaluate covered rows only).
    n_bootstrap : int, default 1000
        Bootstrap resamples for the intervals; 0 skips them (``"intervals"`` is ``None``).
    seed : int, default 0
        Seed of the resampling (same seed, same intervals).
    symbols : (N,) str, optional
        Each row's symbol: adds ``per_symbol``, the metrics of each symbol's rows alone.
    times : (N,) timestamps, optional
        Each row's time (the window's end, when its prediction is made): adds
        ``ic_over_time``, the IC per calendar period (see :data:`IC_PERIODS`).
    target : str, default "value"
        The target's name, recorded in the report.
    confidence : float, default 0.95
        Coverage of the percentile intervals.

    Returns
    -------
    dict
        ``task`` ("regression"), ``target``, ``n``; ``metrics`` (mae, rmse, r2,
        sign_accuracy, ic -> value or ``None``); ``intervals`` (metric -> ``{low, high,
        level, n_resamples}``, ``None`` for an undefined metric); ``bootstrap`` (the
        settings); with ``symbols``, ``per_symbol`` (symbol -> metrics and ``n``); with
        ``times``, ``ic_over_time`` (``[{period, ic, n}, ...]`` in time order) and
        ``ic_period`` (month, week, day or hour).
    """
    actual, predicted = validate_regression(y, pred)
    n_bootstrap = _checked_count(n_bootstrap)
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}.", param="confidence")
    metrics = _point_metrics(actual, predicted)
    intervals: dict[str, Any] | None = None
    if n_bootstrap > 0:
        draws = _bootstrap(
            _prepare(actual, predicted), actual.size, n_bootstrap=n_bootstrap, seed=seed
        )
        intervals = {
            name: None
            if metrics[name] is None
            else {**_interval(draws[name], confidence), "level": float(confidence)}
            for name in REGRESSION_METRICS
        }
    report: dict[str, Any] = {
        "task": "regression",
        "target": str(target),
        "n": int(actual.size),
        "metrics": metrics,
        "intervals": intervals,
        "bootstrap": {
            "n_bootstrap": n_bootstrap,
            "resampling": "plain",
            "method": "percentile",
            "confidence": float(confidence),
            "seed": int(seed),
        },
    }
    if symbols is not None:
        names = _labels(symbols, actual.size, "symbols").astype(str)
        report["per_symbol"] = {
            str(symbol): {
                **_point_metrics(actual[names == symbol], predicted[names == symbol]),
                "n": int((names == symbol).sum()),
            }
            for symbol in np.unique(names)
        }
    if times is not None:
        report["ic_period"], report["ic_over_time"] = _ic_over_time(actual, predicted, times)
    return report


def _head_task(name: str, report: Any) -> str:
    if isinstance(report, Mapping):
        if report.get("task") == "regression" and isinstance(report.get("metrics"), Mapping):
            return "regression"
        if "per_class" in report and isinstance(report.get("metrics"), Mapping):
            return "classification"
    raise ConfigError(
        f"Head {name!r} is not a metrics report; give regression_report(...) or "
        "classification_report(...) output for each head.",
        param="heads",
    )


def multitask_report(heads: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One report for a multi-task run: each head's own report (``regression_report`` or
    ``classification_report``), by head name. Head names may not contain ``.``: gates and
    flat metrics name a head's metric ``<head>.<metric>``."""
    if not isinstance(heads, Mapping) or not heads:
        raise ConfigError("A multi-task report needs at least one head.", param="heads")
    for name, report in heads.items():
        if not isinstance(name, str) or not name or "." in name:
            raise ConfigError(
                f"Head name {name!r} must be a non-empty string without '.', since a head's "
                "metric is named '<head>.<metric>'.",
                param="heads",
            )
        _head_task(name, report)
    return {"task": "multitask", "heads": dict(heads)}


def _classification_flat(report: Mapping[str, Any]) -> dict[str, float | None]:
    flat = dict(report["metrics"])
    per_class = report.get("per_class") or []
    if per_class:
        flat["minority_f1"] = per_class[0].get("f1")
        flat["minority_recall"] = per_class[0].get("recall")
    return flat


def flat_regression_metrics(report: Mapping[str, Any]) -> dict[str, float | None]:
    """Headline scalars of a report, ``{name: value}``: a regression report's five metrics;
    a multi-task report's per head as ``<head>.<metric>`` (a classification head gives its
    metrics and ``minority_f1``/``minority_recall``); a classification report's metrics."""
    task = report.get("task")
    if task == "multitask":
        flat: dict[str, float | None] = {}
        for head, inner in report["heads"].items():
            for name, value in flat_regression_metrics(inner).items():
                flat[f"{head}.{name}"] = value
        return flat
    if _head_task(str(report.get("target", "report")), report) == "regression":
        return {name: report["metrics"].get(name) for name in REGRESSION_METRICS}
    return _classification_flat(report)
