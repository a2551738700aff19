"""Zero-shot foundation-model forecasts vs a seasonal-naive and a LightGBM baseline on real
daily bars: direction accuracy and information coefficient, with intervals.

Run: ``.venv/bin/python benchmarks/bench_forecast_fm.py [--markets sp500,nasdaq]
[--horizons 1,5] [--test 1000] [--context 128] [--fm chronos=PATH ...] [--fm-tiny]
[--out FILE]``.

Data: ``arch``'s S&P 500 and NASDAQ composite daily bars (1999-2018, 5,031 bars each).
Target at bar ``t``: the return over the next ``h`` bars, ``close[t+h] / close[t] - 1``.
Every method forecasts it at each of the last ``--test`` bars from bars up to ``t`` only:

- ``seasonal naive``: the last ``h`` bars' return repeats (season = ``h`` bars);
- ``lightgbm``: moola's ``gradient_boosting`` regressor on the last 20 one-bar returns,
  the 5- and 20-bar returns and the 20-bar volatility, refitted walk-forward every
  ``--refit`` bars on all earlier bars whose target was known by then (``t + h`` before the
  refit bar: no label from the future);
- ``fm (KIND)``: the median zero-shot forecast of a foundation model from the ``--context``
  closes ending at ``t`` (``moola.pipeline.foundation.forecast_feature_table``). Folders
  of downloaded weights come from ``--fm KIND=PATH`` or ``MOOLA_FM_WEIGHTS``; kinds without
  weights are skipped and reported (Kronos: moola's adapter embeds only, since Kronos
  forecasts by sampling). ``--fm-tiny`` adds tiny RANDOM models (plumbing only).

Metrics over the test bars: direction accuracy (sign of the forecast = sign of the
return; zero forecasts count as wrong) and IC (Spearman rank correlation of forecast and
return), each with a 95% moving-block bootstrap interval (blocks of 20 bars, resampled
1,000 times: overlapping ``h``-bar returns are autocorrelated, so an i.i.d. bootstrap would
be too narrow). Results also go to JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from _common import print_table  # benchmarks/ is on sys.path when run as scripts
from moola.models import create

KINDS = ("chronos", "timesfm", "kronos")
_LAGS = 20


def load_closes(which: str) -> pd.DataFrame:
    from arch.data import nasdaq, sp500

    frame = {"sp500": sp500, "nasdaq": nasdaq}[which].load()
    out = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(frame.index).tz_localize("UTC"),
            "symbol": which,
            "close": frame["Close"].to_numpy(np.float64),
        }
    )
    return out.reset_index(drop=True)


def targets(close: np.ndarray, h: int) -> np.ndarray:
    """``close[t+h] / close[t] - 1`` (NaN where ``t + h`` is past the data)."""
    out = np.full(len(close), np.nan)
    out[:-h] = close[h:] / close[:-h] - 1.0
    return out


def seasonal_naive(close: np.ndarray, h: int) -> np.ndarray:
    """The last ``h`` bars' return, ``close[t] / close[t-h] - 1``."""
    out = np.full(len(close), np.nan)
    out[h:] = close[h:] / close[:-h] - 1.0
    return out


def lag_features(close: np.ndarray) -> np.ndarray:
    """Features at each bar from bars up to it: 20 one-bar log returns, 5/20-bar returns,
    20-bar volatility (NaN during warm-up)."""
    r = np.full(len(close), np.nan)
    r[1:] = np.diff(np.log(close))
    series = pd.Series(r)
    columns = [series.shift(k).to_numpy() for k in range(_LAGS)]
    columns.append(series.rolling(5).sum().to_numpy())
    columns.append(series.rolling(20).sum().to_numpy())
    columns.append(series.rolling(20).std().to_numpy())
    return np.column_stack(columns)


def lightgbm_walk_forward(
    close: np.ndarray, h: int, test: np.ndarray, refit: int, seed: int = 0
) -> np.ndarray:
    """Forecasts at the bars ``test``, refitted every ``refit`` bars on earlier bars whose
    target ``t + h`` is before the refit bar."""
    X, y = lag_features(close), targets(close, h)
    out = np.full(len(close), np.nan)
    for block in range(0, len(test), refit):
        at = test[block : block + refit]
        first = int(at[0])
        rows = np.arange(len(close))
        train = rows[(rows + h < first) & np.isfinite(X).all(axis=1) & np.isfinite(y)]
        model = create(
            "gradient_boosting",
            task="regression",
            random_state=seed,
            n_estimators=200,
            learning_rate=0.05,
            num_leaves=15,
            min_child_samples=50,
        )
        model.fit(X[train], y[train])
        out[at] = model.predict(X[at])
    return out


def foundation_folders(args: argparse.Namespace) -> tuple[dict[str, tuple[str, Path]], dict]:
    given: dict[str, tuple[str, Path]] = {}
    entries = [e for e in os.environ.get("MOOLA_FM_WEIGHTS", "").split(",") if e.strip()]
    for entry in [*entries, *(args.fm or [])]:
        kind, _, path = entry.partition("=")
        given[f"fm ({kind.strip()})"] = (kind.strip(), Path(path.strip()).expanduser())
    if args.fm_tiny:
        from moola.testing.foundation import tiny_chronos_bolt, tiny_timesfm

        folder = args.work / "tiny-random-weights"
        for kind, make in (("chronos", tiny_chronos_bolt), ("timesfm", tiny_timesfm)):
            target = folder / kind
            given[f"fm ({kind}, tiny random)"] = (kind, target if target.is_dir() else make(target))
    skipped = {}
    for kind in KINDS:
        if kind == "kronos":
            skipped["fm (kronos)"] = (
                "moola's Kronos adapter embeds only (Kronos forecasts by sampling tokens)"
            )
        elif not any(k == kind and "tiny" not in name for name, (k, _) in given.items()):
            skipped[f"fm ({kind})"] = (
                "no weights given (--fm KIND=PATH or MOOLA_FM_WEIGHTS); nothing is downloaded"
            )
    return {n: v for n, v in given.items() if v[0] != "kronos"}, skipped


def block_bootstrap(
    pred: np.ndarray, real: np.ndarray, block: int = 20, draws: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """Direction accuracy and IC with 95% moving-block bootstrap intervals."""

    def metrics(p: np.ndarray, r: np.ndarray) -> tuple[float, float]:
        hit = float(np.mean(np.sign(p) == np.sign(r)))
        ic = float(stats.spearmanr(p, r).statistic) if np.std(p) > 0 else 0.0
        return hit, ic

    point = metrics(pred, real)
    rng = np.random.default_rng(seed)
    n = len(pred)
    starts = rng.integers(0, n - block + 1, size=(draws, int(np.ceil(n / block))))
    samples = []
    for row in starts:
        index = (row[:, None] + np.arange(block)[None, :]).ravel()[:n]
        samples.append(metrics(pred[index], real[index]))
    low, high = np.percentile(np.array(samples), [2.5, 97.5], axis=0)
    return {
        "direction_accuracy": (point[0], float(low[0]), float(high[0])),
        "ic": (point[1], float(low[1]), float(high[1])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", default="sp500,nasdaq")
    parser.add_argument("--horizons", default="1,5")
    parser.add_argument("--test", type=int, default=1000, help="last N bars forecast")
    parser.add_argument("--context", type=int, default=128, help="closes a foundation model reads")
    parser.add_argument("--refit", type=int, default=250, help="LightGBM refit every N bars")
    parser.add_argument("--fm", action="append", help="KIND=PATH of downloaded weights")
    parser.add_argument("--fm-tiny", action="store_true", help="add tiny random models")
    parser.add_argument("--work", type=Path, default=Path("/tmp/moola-bench-forecast-fm"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/moola-bench-forecast-fm.json"))
    args, _ = parser.parse_known_args()
    from moola.models.foundation import load_backbone
    from moola.pipeline.foundation import forecast_feature_table

    horizons = [int(h) for h in args.horizons.split(",")]
    folders, skipped = foundation_folders(args)
    backbones = {}
    for name, (kind, path) in folders.items():
        try:
            backbones[name] = load_backbone(kind, path)
        except Exception as exc:  # a bad folder is reported, the rest still runs
            skipped[name] = f"{path} does not load: {exc}"
    rows, record = [], {"args": {k: str(v) for k, v in vars(args).items()}, "results": {}}
    for market in args.markets.split(","):
        bars = load_closes(market)
        close = bars["close"].to_numpy()
        for h in horizons:
            real = targets(close, h)
            test = np.arange(len(close) - h - args.test, len(close) - h)
            forecasts = {"seasonal naive": seasonal_naive(close, h)}
            started = time.perf_counter()
            forecasts["lightgbm"] = lightgbm_walk_forward(close, h, test, args.refit)
            seconds = {"lightgbm": time.perf_counter() - started, "seasonal naive": 0.0}
            for name, backbone in backbones.items():
                started = time.perf_counter()
                # the test bars' windows only, nothing after the last forecast bar
                first = int(test[0]) - args.context + 1
                part = bars.iloc[first : int(test[-1]) + 1].reset_index(drop=True)
                table = forecast_feature_table(
                    part, backbone, context=args.context, horizon=h, levels=(0.5,)
                )
                values = np.full(len(close), np.nan)
                values[first : first + len(table)] = table[f"fm_ret{h}_q50"].to_numpy()
                forecasts[name] = values
                seconds[name] = time.perf_counter() - started
            for name, values in forecasts.items():
                pred, target = values[test], real[test]
                result = block_bootstrap(pred, target)
                record["results"][f"{market} h={h} {name}"] = {**result, "seconds": seconds[name]}
                acc, ic = result["direction_accuracy"], result["ic"]
                rows.append(
                    {
                        "market": market,
                        "h": h,
                        "method": name,
                        "direction acc": f"{acc[0]:.3f} [{acc[1]:.3f}, {acc[2]:.3f}]",
                        "IC": f"{ic[0]:+.3f} [{ic[1]:+.3f}, {ic[2]:+.3f}]",
                        "up share": f"{np.mean(target > 0):.3f}",
                        "s": seconds[name],
                    }
                )
                print(rows[-1], flush=True)
    record["skipped"] = skipped
    print_table(
        f"Zero-shot forecasts vs baselines, last {args.test} daily bars (95% block-bootstrap "
        "intervals)",
        rows,
    )
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    args.out.write_text(json.dumps(record, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
