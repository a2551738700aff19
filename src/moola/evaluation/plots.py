"""Evaluation charts as PNG bytes: reliability diagram, confusion matrix, precision-recall
curves, learning curves, and the labelled data they come from (a price chart with the
labelled windows marked, example windows per class); for regression, predicted against
actual values (per symbol) and the information coefficient period by period.

As in ``moola.backtest.plots``, each figure is drawn on a matplotlib ``Figure`` with the Agg
canvas (never ``pyplot``, so no global state and no display), cleared after saving, and
returned as bytes; the caller decides where they go (a run folder, an HTML report).
Inputs of the wrong shape raise ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import average_precision_score, precision_recall_curve

from moola.core.errors import ConfigError
from moola.core.figures import figure_png, new_figure
from moola.evaluation.metrics import BinStrategy, reliability_bins, validate_proba
from moola.evaluation.regression import validate_regression
from moola.evaluation.report import IC_OVER_TIME, PREDICTED_VS_ACTUAL

DEFAULT_SIZE: tuple[int, int] = (700, 500)
_MAX_PRICE_POINTS = 5_000  # a long price series is thinned to this many points to draw
_MAX_SCATTER_POINTS = 20_000  # a scatter of more windows is thinned to this many to draw
_MAX_PERIOD_LABELS = 24  # IC bars beyond this get every k-th period named


def _class_names(classes: Sequence[str] | None, n_classes: int) -> list[str]:
    if classes is None:
        return [str(k) for k in range(n_classes)]
    names = [str(c) for c in classes]
    if len(names) != n_classes:
        raise ConfigError(f"Got {len(names)} class names for {n_classes} classes.")
    return names


def reliability_png(
    y_true: Any,
    proba: Any,
    *,
    n_bins: int = 10,
    strategy: BinStrategy = "uniform",
    size: tuple[int, int] = DEFAULT_SIZE,
    title: str = "Reliability",
) -> bytes:
    """Top-label reliability diagram: accuracy against mean confidence per bin (with the
    diagonal of perfect calibration), and below it the number of samples in each bin."""
    bins = reliability_bins(y_true, proba, n_bins=n_bins, strategy=strategy)
    filled = [i for i, count in enumerate(bins["count"]) if count]
    fig = new_figure(size)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    top.plot(
        [bins["confidence"][i] for i in filled],
        [bins["accuracy"][i] for i in filled],
        marker="o",
        label="model",
    )
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(title)
    top.legend(loc="upper left")
    centres = [(bins["low"][i] + bins["high"][i]) / 2 for i in range(len(bins["count"]))]
    widths = [max(bins["high"][i] - bins["low"][i], 0.01) for i in range(len(bins["count"]))]
    bars = bottom.bar(centres, bins["count"], width=widths, edgecolor="black", alpha=0.6)
    bottom.bar_label(bars, labels=[str(c) if c else "" for c in bins["count"]], fontsize=7)
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top-label probability)")
    bottom.set_ylabel("count")
    fig.tight_layout()
    return figure_png(fig)


def confusion_png(
    matrix: Any,
    classes: Sequence[str] | None = None,
    *,
    normalize: bool = False,
    size: tuple[int, int] = (500, 450),
    title: str = "Confusion matrix",
) -> bytes:
    """Confusion matrix (rows true, columns predicted) with counts, or row fractions when
    ``normalize`` (each true class's recall on the diagonal)."""
    cm = np.asarray(matrix, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 2:
        raise ConfigError(
            f"A confusion matrix must be square (K, K) with K >= 2, got shape {cm.shape}."
        )
    if not np.all(np.isfinite(cm)) or cm.min() < 0:
        raise ConfigError("A confusion matrix holds non-negative counts.")
    names = _class_names(classes, cm.shape[0])
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    fig = new_figure(size)
    ax = fig.add_subplot()
    image = ax.imshow(cm, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax)
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=30, ha="right")
    ax.set_yticks(ticks, names)
    threshold = cm.max() / 2 if cm.max() > 0 else 0.5
    for (i, j), value in np.ndenumerate(cm):
        text = f"{value:.2f}" if normalize else f"{int(value)}"
        colour = "white" if value > threshold else "black"
        ax.text(j, i, text, ha="center", va="center", color=colour)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return figure_png(fig)


def pr_curve_png(
    y_true: Any,
    proba: Any,
    classes: Sequence[str] | None = None,
    *,
    positive: int | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    title: str = "Precision-recall",
) -> bytes:
    """Precision-recall curve of the ``positive`` class (binary; default the minority),
    or one one-vs-rest curve per class; the legend gives each curve's average precision
    and the dotted line its prevalence (a no-skill model's precision)."""
    y, p = validate_proba(y_true, proba)
    names = _class_names(classes, p.shape[1])
    if positive is None and p.shape[1] == 2:
        positive = int(np.argmin(np.bincount(y, minlength=2)))
    if positive is not None and not 0 <= positive < p.shape[1]:
        raise ConfigError(f"positive={positive} is not a class index 0..{p.shape[1] - 1}.")
    shown = [positive] if positive is not None else list(range(p.shape[1]))
    fig = new_figure(size)
    ax = fig.add_subplot()
    for k in shown:
        target = (y == k).astype(np.int64)
        if target.sum() == 0:
            continue  # no positives: the curve is undefined
        precision, recall, _ = precision_recall_curve(target, p[:, k])
        ap = average_precision_score(target, p[:, k])
        (line,) = ax.step(recall, precision, where="post", label=f"{names[k]} (AP {ap:.3f})")
        ax.axhline(target.mean(), linestyle=":", color=line.get_color(), linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left")
    fig.tight_layout()
    return figure_png(fig)


def _losses(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ConfigError(f"{what} must be a non-empty 1-D sequence (one value per epoch).")
    return array


def learning_curve_png(
    train_loss: Any,
    val_loss: Any = None,
    *,
    best_epoch: int | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    title: str = "Learning curves",
) -> bytes:
    """Train (and validation) loss per epoch (epochs counted from 1); ``best_epoch`` (1-based,
    e.g. the early-stopping pick) is marked with a vertical line."""
    train = _losses(train_loss, "train_loss")
    val = None if val_loss is None else _losses(val_loss, "val_loss")
    if val is not None and val.size != train.size:
        raise ConfigError(
            f"train_loss has {train.size} epochs but val_loss has {val.size}; give one value "
            "per epoch for both."
        )
    if best_epoch is not None and not 1 <= best_epoch <= train.size:
        raise ConfigError(f"best_epoch must be in 1..{train.size}, got {best_epoch}.")
    epochs = np.arange(1, train.size + 1)
    fig = new_figure(size)
    ax = fig.add_subplot()
    ax.plot(epochs, train, marker=".", label="train")
    if val is not None:
        ax.plot(epochs, val, marker=".", label="validation")
    if best_epoch is not None:
        ax.axvline(best_epoch, linestyle="--", color="grey", linewidth=1, label="best epoch")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epoch 2, never 2.5
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return figure_png(fig)


def labelled_market_png(
    timestamps: Any,
    close: Any,
    windows: pd.DataFrame,
    *,
    size: tuple[int, int] = (1000, 380),
    title: str = "Market with the labelled windows",
) -> bytes:
    """The close price over time with each labelled window shaded in its class's colour.

    ``windows`` has ``start_ts``, ``end_ts`` and ``label`` columns. The price is thinned
    to a few thousand points (a chart, not data); every window is drawn.
    """
    times = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True)).tz_convert(None)
    prices = np.asarray(close, dtype=np.float64)
    if prices.ndim != 1 or prices.size != len(times) or prices.size == 0:
        raise ConfigError("timestamps and close must be non-empty and of one length.")
    missing = {"start_ts", "end_ts", "label"} - set(windows.columns)
    if missing:
        raise ConfigError(f"windows lacks the column(s) {sorted(missing)}.")
    keep = np.unique(np.linspace(0, prices.size - 1, min(prices.size, _MAX_PRICE_POINTS)))
    x, y = times[keep.astype(np.int64)].to_numpy(), prices[keep.astype(np.int64)]
    steps = np.diff(x)
    if steps.size:  # no line across a market closure: a gap of 20 typical steps breaks it
        breaks = np.flatnonzero(steps > 20 * np.median(steps)) + 1
        x = np.insert(x, breaks, x[breaks - 1])
        y = np.insert(y, breaks, np.nan)
    fig = new_figure(size)
    ax = fig.add_subplot()
    ax.plot(x, y, color="#1d2330", lw=0.7)
    colours = _class_colours(sorted(windows["label"].astype(str).unique()))
    starts = pd.to_datetime(windows["start_ts"], utc=True).dt.tz_convert(None)
    ends = pd.to_datetime(windows["end_ts"], utc=True).dt.tz_convert(None)
    for start, end, label in zip(starts, ends, windows["label"].astype(str), strict=True):
        ax.axvspan(start, end, color=colours[label], alpha=0.35, lw=0)
    counts = windows["label"].astype(str).value_counts()
    handles = [
        Patch(color=colour, alpha=0.35, label=f"{label} ({counts[label]})")
        for label, colour in colours.items()
    ]
    ax.set_ylabel("close")
    ax.set_title(title)
    ax.legend(handles=handles, loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    return figure_png(fig)


def example_windows_png(
    examples: Mapping[str, Sequence[Any]],
    *,
    size: tuple[int, int] = (1000, 420),
    title: str = "Example windows per class",
) -> bytes:
    """A row of small charts per class, one per example window: its close, as a percent
    change from the window's first close (so windows at any price level compare)."""
    classes = [c for c in examples if len(examples[c])]
    if not classes:
        raise ConfigError("examples holds no windows; give at least one close series.")
    n_cols = max(len(examples[c]) for c in classes)
    colours = _class_colours(classes)
    fig = new_figure((size[0], max(size[1], 170 * len(classes))))
    axes = np.atleast_2d(fig.subplots(len(classes), n_cols, squeeze=False))
    for row, label in enumerate(classes):
        for col in range(n_cols):
            ax = axes[row, col]
            if col >= len(examples[label]):
                ax.set_axis_off()
                continue
            series = np.asarray(examples[label][col], dtype=np.float64)
            ax.plot(100.0 * (series / series[0] - 1.0), color=colours[label], lw=1)
            ax.tick_params(labelsize=7)
            if col == 0:
                ax.set_ylabel(f"{label}\n% from start", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


def predicted_vs_actual_png(
    y: Any,
    pred: Any,
    symbols: Any = None,
    *,
    size: tuple[int, int] = (600, 560),
    title: str = "Predicted vs actual",
) -> bytes:
    """Each window's prediction against its actual value, one colour per symbol, with the
    line y = x a perfect forecaster would sit on. More than 20,000 windows are thinned to
    evenly spaced ones (a chart, not data); the legend counts every window."""
    actual, predicted = validate_regression(y, pred)
    names = None
    if symbols is not None:
        names = np.asarray(symbols).astype(str)
        if names.ndim != 1 or names.size != actual.size:
            raise ConfigError(
                f"symbols must be 1-D with one entry per row of y ({actual.size}), got shape "
                f"{names.shape}.",
                param="symbols",
            )
    shown = np.unique(np.linspace(0, actual.size - 1, min(actual.size, _MAX_SCATTER_POINTS)))
    shown = shown.astype(np.int64)
    fig = new_figure(size)
    ax = fig.add_subplot()
    if names is None:
        ax.scatter(actual[shown], predicted[shown], s=6, alpha=0.5, lw=0, label="windows")
    else:
        for symbol, colour in _class_colours(sorted(set(names.tolist()))).items():
            rows = shown[names[shown] == symbol]
            ax.scatter(
                actual[rows],
                predicted[rows],
                s=6,
                alpha=0.5,
                lw=0,
                color=colour,
                label=f"{symbol} ({int((names == symbol).sum()):,})",
            )
    low = float(min(actual.min(), predicted.min()))
    high = float(max(actual.max(), predicted.max()))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1, label="y = x")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    thinned = f" ({shown.size:,} of {actual.size:,} shown)" if shown.size < actual.size else ""
    ax.set_title(title + thinned)
    ax.legend(loc="upper left", markerscale=2)
    fig.tight_layout()
    return figure_png(fig)


def ic_over_time_png(
    ic_over_time: Sequence[Mapping[str, Any]],
    *,
    size: tuple[int, int] = (900, 400),
    title: str = "Information coefficient over time",
) -> bytes:
    """One bar per period of ``regression_report(...)["ic_over_time"]``: its IC (green at
    or above 0, red below), a grey x where it is undefined, and the mean IC dashed."""
    if isinstance(ic_over_time, str | bytes) or not isinstance(ic_over_time, Sequence):
        raise ConfigError("ic_over_time must be a list of {period, ic, n} rows.")
    rows = list(ic_over_time)
    if not rows:
        raise ConfigError("ic_over_time holds no periods; give at least one {period, ic} row.")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "period" not in row or "ic" not in row:
            raise ConfigError(f"ic_over_time row {i} is not a {{period, ic, n}} mapping: {row!r}.")
    values = np.array([np.nan if r["ic"] is None else float(r["ic"]) for r in rows])
    defined = np.isfinite(values)
    x = np.arange(len(rows))
    fig = new_figure(size)
    ax = fig.add_subplot()
    colours = np.where(values >= 0, "#2ca02c", "#d62728")
    ax.bar(x[defined], values[defined], color=colours[defined], edgecolor="black", lw=0.4)
    if not defined.all():
        ax.scatter(x[~defined], np.zeros(int((~defined).sum())), marker="x", color="grey")
    if defined.any():
        mean = float(values[defined].mean())
        ax.axhline(mean, linestyle="--", color="#1d2330", lw=1, label=f"mean IC {mean:.3f}")
        ax.legend(loc="upper left")
    ax.axhline(0.0, color="black", lw=0.6)
    step = max(1, -(-len(rows) // _MAX_PERIOD_LABELS))
    ax.set_xticks(x[::step], [str(r["period"]) for r in rows][::step], rotation=45, ha="right")
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylabel("Spearman IC")
    ax.set_title(title)
    fig.tight_layout()
    return figure_png(fig)


def regression_pngs(
    y: Any, pred: Any, report: Mapping[str, Any], symbols: Any = None
) -> dict[str, bytes]:
    """A regression head's charts by run-folder name, as
    :func:`moola.evaluation.report.regression_sections` shows them: predicted vs actual
    (per symbol when ``symbols`` is given) and, when ``report`` (``regression_report``
    output on the same rows) has ``ic_over_time``, the IC per period."""
    out = {PREDICTED_VS_ACTUAL: predicted_vs_actual_png(y, pred, symbols)}
    if report.get("ic_over_time"):
        out[IC_OVER_TIME] = ic_over_time_png(report["ic_over_time"])
    return out


def _class_colours(classes: Sequence[str]) -> dict[str, str]:
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
    return {name: palette[i % len(palette)] for i, name in enumerate(classes)}
