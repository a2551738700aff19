"""Fitting and scoring forecasting runs: regression and multi-task targets of feature
windows (``moola train`` on a dataset whose ``task`` is not classification).

The protocol is the classification one (``moola.pipeline.train``) without calibration:

- **folds** (walk-forward, purged k-fold): a fresh model per fold, fitted on the fold's
  training windows (early stopping on its validation windows when it has them), predicts
  the fold's test windows; every covered window gets an out-of-fold prediction and the
  headline metrics are computed on those. A final model is then fitted on all covered
  windows;
- **train/val/test** (forward chaining): fitted on train, early stopping and scoring on
  val; test is not touched.

Regression targets are scored by ``moola.evaluation.regression.regression_report`` (MAE,
RMSE, R², sign accuracy, Spearman IC with bootstrap intervals, per symbol and per period);
a multi-task run scores each head by its own report (a class head by
``classification_report``) side by side (``multitask_report``).

Predictions table (one row per window): ``y_<t>`` (actual) and ``pred_<t>`` per regression
target ``t``; for a class head ``y_<t>`` (the class name) and ``p_<t>_<class>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError
from moola.data.registry import LabeledData
from moola.evaluation.metrics import classification_report
from moola.evaluation.regression import multitask_report, regression_report
from moola.models.base import Estimator

__all__ = [
    "fit_values",
    "prediction_frame",
    "score_values",
    "task_params",
    "training_summary",
    "values_plots",
]

EventSink = Callable[[str, dict[str, Any]], None]
_NONE = np.zeros(0, dtype=np.int64)


def task_params(data: LabeledData, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with the task the data implies: ``task="regression"``, or
    ``task="multitask"`` with ``heads`` (name -> ``"regression"`` or its class count) in
    target order. A task or heads given that disagree with the data are refused."""
    task = data.audit["task"]
    implied: dict[str, Any] = {"task": task}
    if task == "multitask":
        implied["heads"] = {
            t["name"]: "regression" if t["kind"] == "regression" else len(t["classes"])
            for t in data.audit["targets"]
        }
    out = dict(params)
    for key, value in implied.items():
        given = out.get(key, value)
        if given != value:
            raise ConfigError(
                f"{key}={given!r}, but {data.ref}'s targets make it {value!r}; leave {key} out "
                "of the parameters (it comes from the dataset).",
                param="params",
            )
        out[key] = value
    return out


def fit_values(
    data: LabeledData,
    X_all: Any,
    make_estimator: Callable[[], Estimator],
    *,
    resumable: Callable[[Estimator, str], Estimator] = lambda estimator, _name: estimator,
    mode: str,
    n_bootstrap: int,
    seed: int,
    on_event: EventSink,
) -> tuple[Estimator, dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """Fit and score a regression or multi-task run (see the module docstring); returns
    the final model, the report, the predictions table and the training summary.

    ``resumable(estimator, name)`` makes each fit (``fold-K``, ``final``, ``holdout``)
    checkpoint its epochs and resume from them (``moola.training.checkpoints``); a
    finished fold resumes at its last epoch, so a resumed run refits nothing it finished.
    """
    Y = _targets_matrix(data)
    predicted = {t["name"]: _empty(len(Y), t) for t in data.audit["targets"]}
    covered = np.zeros(len(Y), dtype=bool)
    summary: dict[str, Any]
    if mode == "oof":
        fold_reports = []
        for k, fold in enumerate(data.split.folds):
            train = np.asarray(fold.train, dtype=np.int64)
            val = np.asarray(fold.val or [], dtype=np.int64)
            test = np.asarray(fold.test, dtype=np.int64)
            estimator = _fit(resumable(make_estimator(), f"fold-{k}"), X_all, data.y, train, val)
            _fill(predicted, data, estimator, X_all[test], test)
            covered[test] = True
            fold_report = _report(data, predicted, test, n_bootstrap=0, seed=seed)
            sizes = {"fold": k, "train": len(train), "test": len(test)}
            fold_reports.append(sizes)
            on_event("fold", {**sizes, **_headline(fold_report)})
        idx = np.flatnonzero(covered)
        model = _fit(resumable(make_estimator(), "final"), X_all, data.y, idx, _NONE)
        summary = {
            "folds": len(data.split.folds),
            "covered": int(covered.sum()),
            "fold_sizes": fold_reports,
            "final_fit_samples": len(idx),
            "training": training_summary(model),
        }
    else:
        train, val = data.train.indices, data.val.indices
        model = _fit(resumable(make_estimator(), "holdout"), X_all, data.y, train, val)
        _fill(predicted, data, model, X_all[val], val)
        covered[val] = True
        summary = {
            "train_samples": len(train),
            "val_samples": len(val),
            "training": training_summary(model),
        }
    idx = np.flatnonzero(covered)
    report = _report(data, predicted, idx, n_bootstrap=n_bootstrap, seed=seed)
    if mode != "oof":
        on_event("fold", {"fold": "holdout", **_headline(report)})
    table = _predictions_table(data, Y, predicted, covered, "oof" if mode == "oof" else "val")
    return model, report, table, summary


def score_values(
    data: LabeledData,
    model: Any,
    X: Any,
    rows: np.ndarray,
    *,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """The report of ``model`` (an estimator or a ``Predictor``: ``predict`` /
    ``predict_heads``) on windows ``rows`` of ``data`` whose inputs are ``X`` (e.g. the
    untouched test part, scored once)."""
    predicted = {t["name"]: _empty(len(data.y), t) for t in data.audit["targets"]}
    _fill(predicted, data, model, X, rows)
    return _report(data, predicted, rows, n_bootstrap=n_bootstrap, seed=seed)


def prediction_frame(
    data: LabeledData, covered: np.ndarray, kind: str, **columns: Any
) -> pd.DataFrame:
    """The columns every run's predictions table starts with, one row per window: ``row``,
    ``symbol``, the window's ``start_ts``/``end_ts``, then ``columns``, ``covered`` and
    ``kind`` (``oof`` or ``val``)."""
    return pd.DataFrame(
        {
            "row": np.arange(len(data.y)),
            "symbol": data.table["symbol"].astype(str).to_numpy(),
            "start_ts": data.table["start_ts"].to_numpy(),
            "end_ts": data.table["end_ts"].to_numpy(),
            **columns,
            "covered": covered,
            "kind": kind,
        }
    )


def values_plots(report: dict[str, Any], predictions: pd.DataFrame) -> dict[str, bytes]:
    """Charts of a regression or multi-task run, over the covered windows: each regression
    target's predicted-vs-actual and IC-over-time plots (``..._<head>.png`` in a multi-task
    run), and each class head's reliability diagram and confusion matrix
    (``reliability_<head>.png``, ``confusion_<head>.png``), the charts a classification
    run draws of its own probabilities."""
    from moola.evaluation import plots

    heads = report["heads"] if report.get("task") == "multitask" else {None: report}
    covered = predictions["covered"].to_numpy()
    rows = predictions[covered]
    out: dict[str, bytes] = {}
    for head, inner in heads.items():
        if inner.get("task") != "regression":
            if head is not None:
                out.update(_class_head_plots(head, inner, rows))
            continue
        target = inner["target"]
        suffix = "" if head is None else f"_{head}"
        out[f"predicted_vs_actual{suffix}.png"] = plots.predicted_vs_actual_png(
            rows[f"y_{target}"].to_numpy(float),
            rows[f"pred_{target}"].to_numpy(float),
            symbols=rows["symbol"].to_numpy(),
        )
        if inner.get("ic_over_time"):
            out[f"ic_over_time{suffix}.png"] = plots.ic_over_time_png(inner["ic_over_time"])
    return out


def _class_head_plots(head: str, report: Mapping[str, Any], rows: pd.DataFrame) -> dict[str, bytes]:
    """Reliability and confusion charts of class head ``head`` from its columns ``y_<head>``
    (class names) and ``p_<head>_<class>`` of the covered windows ``rows``."""
    from moola.evaluation import plots

    classes = [str(c) for c in report["classes"]]
    code = {name: k for k, name in enumerate(classes)}
    y = np.array([code[str(name)] for name in rows[f"y_{head}"]], dtype=np.int64)
    proba = rows[[f"p_{head}_{c}" for c in classes]].to_numpy(np.float64)
    return {
        f"reliability_{head}.png": plots.reliability_png(y, proba, title=f"Reliability: {head}"),
        f"confusion_{head}.png": plots.confusion_png(
            np.asarray(report["confusion_matrix"]), classes, title=f"Confusion matrix: {head}"
        ),
    }


def _targets_matrix(data: LabeledData) -> np.ndarray:
    """``(N, K)`` float64 targets (class heads as class indices)."""
    y = np.asarray(data.y, dtype=np.float64)
    return y[:, None] if y.ndim == 1 else y


def _empty(n: int, target: Mapping[str, Any]) -> np.ndarray:
    if target["kind"] == "regression":
        return np.full(n, np.nan)
    return np.full((n, len(target["classes"])), np.nan)


def _fit(
    estimator: Estimator, X_all: Any, y: np.ndarray, train: np.ndarray, val: np.ndarray
) -> Estimator:
    if val.size:
        return estimator.fit(X_all[train], y[train], X_val=X_all[val], y_val=y[val])
    return estimator.fit(X_all[train], y[train])


def _fill(
    predicted: dict[str, np.ndarray],
    data: LabeledData,
    estimator: Estimator,
    X: Any,
    rows: np.ndarray,
) -> None:
    """Write ``estimator``'s predictions of windows ``rows`` into ``predicted``."""
    targets = data.audit["targets"]
    if data.audit["task"] == "multitask":
        heads = estimator.predict_heads(X)  # type: ignore[attr-defined]
        for target in targets:
            predicted[target["name"]][rows] = np.asarray(heads[target["name"]], dtype=np.float64)
        return
    values = np.asarray(estimator.predict(X), dtype=np.float64).reshape(len(rows), -1)
    for k, target in enumerate(targets):
        predicted[target["name"]][rows] = values[:, k]


def _report(
    data: LabeledData,
    predicted: dict[str, np.ndarray],
    rows: np.ndarray,
    *,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """The report of windows ``rows``: one per target, side by side for several."""
    Y = _targets_matrix(data)
    symbols = data.table["symbol"].astype(str).to_numpy()[rows]
    times = data.table["end_ts"].to_numpy()[rows]
    reports: dict[str, Any] = {}
    for k, target in enumerate(data.audit["targets"]):
        name = target["name"]
        if target["kind"] == "regression":
            reports[name] = regression_report(
                Y[rows, k],
                predicted[name][rows],
                n_bootstrap=n_bootstrap,
                seed=seed,
                symbols=symbols,
                times=times,
                target=name,
            )
        else:
            reports[name] = classification_report(
                Y[rows, k].astype(np.int64),
                predicted[name][rows],
                classes=tuple(target["classes"]),
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
    if data.audit["task"] == "multitask":
        return multitask_report(reports)
    return next(iter(reports.values()))


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers a fold event shows: IC and RMSE (or accuracy) of each target."""
    heads = report["heads"] if report.get("task") == "multitask" else {"": report}
    out: dict[str, Any] = {}
    for head, inner in heads.items():
        prefix = f"{head}." if head else ""
        metrics = inner["metrics"]
        keys = ("ic", "rmse") if inner.get("task") == "regression" else ("accuracy",)
        out.update({f"{prefix}{key}": metrics.get(key) for key in keys})
    return out


def _predictions_table(
    data: LabeledData,
    Y: np.ndarray,
    predicted: dict[str, np.ndarray],
    covered: np.ndarray,
    kind: str,
) -> pd.DataFrame:
    table = prediction_frame(data, covered, kind)
    for k, target in enumerate(data.audit["targets"]):
        name = target["name"]
        if target["kind"] == "regression":
            table[f"y_{name}"] = Y[:, k]
            table[f"pred_{name}"] = predicted[name]
        else:
            classes = list(target["classes"])
            table[f"y_{name}"] = np.asarray(classes, dtype=object)[Y[:, k].astype(np.int64)]
            for j, cls in enumerate(classes):
                table[f"p_{name}_{cls}"] = predicted[name][:, j]
    return table


def training_summary(estimator: Estimator) -> dict[str, Any] | None:
    """A neural estimator's training summary (epochs, early stop, losses, wall time,
    device), with the pretrained encoder's load report and freeze schedule when one was
    loaded and each head's loss and weight per epoch for a multi-task model; None for
    estimators not trained epoch by epoch."""
    summary = getattr(estimator, "training_summary_", None)
    if summary is None:
        return None
    report = getattr(estimator, "load_report_", None)
    data = {**summary.to_dict(), "pretrained_load": report.to_dict() if report else None}
    heads = getattr(estimator, "head_history_", None)  # per epoch: each head's loss, weight
    if heads is not None:
        data["heads"] = heads
    return data
