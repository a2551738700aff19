"""Feature benchmarks: the intraday31 set in batch, and per bar at run time.

Run: ``.venv/bin/python benchmarks/bench_features.py [--bars N] [--updates N] [--repeats N]``.

1. Batch: ``load_feature_set("intraday31").compute`` on N synthetic 1-minute bars (default
   1M) against the reference measured in the same run: the raw TA-Lib calls the set makes
   (SMA x4, RSI, MACD, BBANDS, ATR x2, and volume's SMA and LINEARREG_SLOPE) on the same
   float64 arrays, each timed alone (best of the repeats) and summed. Target: the whole
   set costs at most 1.5x that sum. Each feature is also timed alone against the raw
   calls it makes itself ("vs"), so each one's overhead is visible; features TA-Lib has
   no function for (sessions) are shown against the whole reference. For scale: the
   set's 31 output columns written once into fresh memory, nothing computed (the floor
   any implementation pays, and the reference, whose outputs are freed and reused call
   after call, does not), and pandas' rolling rank, the regime's definition, beside the
   regime's kernels.
2. Run time: ``FeatureSet.stream`` primed with history, then ``update(bar)`` for each of
   M new bars; mean, median and p99 latency per bar. Target: mean and p99 under 1 ms.
   Each feature's share of ``update`` is timed in a second pass over the same bars.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import talib

from _common import best_of, print_table  # benchmarks/ is on sys.path when run as scripts
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features import load_feature_set
from moola.features.regime import atr_percentile_rank, atr_regime


def _raw_talib_calls(bars: pd.DataFrame, *, derived: bool = False) -> dict[str, object]:
    """The TA-Lib calls intraday31 makes, on arrays extracted beforehand, by name; with
    ``derived``, plus the numpy lines for the columns TA-Lib does not give (ratios, %B,
    width)."""
    high, low, close, volume = (
        np.ascontiguousarray(bars[c].to_numpy(np.float64))
        for c in ("high", "low", "close", "volume")
    )

    def sma(p: int):
        average = talib.SMA(close, timeperiod=p)
        return (average, close / average - 1) if derived else average

    def bbands():
        upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0, 0)
        if derived:
            width = upper - lower
            return (close - lower) / width, width / middle
        return upper

    calls = {f"SMA({p})": (lambda p=p: sma(p)) for p in (7, 14, 21, 50)}
    calls["RSI(14)"] = lambda: talib.RSI(close, timeperiod=14)
    calls["MACD(12,26,9)"] = lambda: talib.MACD(close, 12, 26, 9)
    calls["BBANDS(20,2)"] = bbands
    calls["ATR(14) spread"] = lambda: talib.ATR(high, low, close, timeperiod=14)
    calls["ATR(14) regime"] = lambda: talib.ATR(high, low, close, timeperiod=14)
    calls["SMA(volume,20)"] = lambda: talib.SMA(volume, timeperiod=20)
    calls["LINEARREG_SLOPE(volume,20)"] = lambda: talib.LINEARREG_SLOPE(volume, timeperiod=20)
    return calls


_TALIB_FEATURES = ("sma", "rsi", "macd", "bbands")


def _own_calls(feature) -> tuple[str, ...]:
    """The names (in ``_raw_talib_calls``) of the raw calls ``feature`` makes itself."""
    p = feature.params
    return {
        "sma": (f"SMA({getattr(p, 'period', 0)})",),
        "rsi": ("RSI(14)",),
        "macd": ("MACD(12,26,9)",),
        "bbands": ("BBANDS(20,2)",),
        "spread": ("ATR(14) spread",),
        "volatility_regime": ("ATR(14) regime",),
        "volume": ("SMA(volume,20)", "LINEARREG_SLOPE(volume,20)"),
    }.get(feature.name, ())


def _as_the_set_does(feature, dtype: np.dtype, bars: pd.DataFrame) -> object:
    """One feature's columns computed the way ``FeatureSet.compute`` asks for them."""
    rows = getattr(feature, "compute_rows", None)
    return rows(bars, dtype) if rows is not None else feature.compute(bars)


def _fresh_columns(fset, n: int) -> list[np.ndarray]:
    """The set's output columns written once into newly allocated memory."""
    columns = []
    for dtype in fset.dtypes.values():
        column = np.empty(n, dtype=dtype)
        column.fill(1.0)
        columns.append(column)
    return columns


def bench_batch(bars: pd.DataFrame, repeats: int) -> list[dict]:
    fset = load_feature_set("intraday31")
    n = len(bars)
    fset.compute(bars.iloc[:5_000])  # numba kernels compiled (or loaded) before timing
    raw = {name: best_of(repeats, call) for name, call in _raw_talib_calls(bars).items()}
    ref_a = sum(raw.values())
    ref_b = sum(v for k, v in raw.items() if not k.startswith(("ATR", "SMA(vol", "LINEAR")))
    inline = _raw_talib_calls(bars, derived=True)
    inline_b = sum(
        best_of(repeats, call)
        for name, call in inline.items()
        if not name.startswith(("ATR", "SMA(vol", "LINEAR"))
    )
    per_feature = []
    for feature, dtype in ((e.feature, np.dtype(e.dtype)) for e in fset._entries):
        seconds = best_of(repeats, lambda f=feature, d=dtype: _as_the_set_does(f, d, bars))
        per_feature.append((feature, seconds))
    wrapped = sum(s for f, s in per_feature if f.name in _TALIB_FEATURES)
    total = best_of(repeats, lambda: fset.compute(bars))
    bookkeeping = total - sum(s for _, s in per_feature)
    floor = best_of(repeats, lambda: _fresh_columns(fset, n))

    def row(step: str, seconds: float, reference: float, which: str) -> dict:
        return {
            "step": step,
            "seconds": seconds,
            "bars/s": n / seconds if seconds > 0 else float("nan"),
            "x reference": seconds / reference,
            "vs": which,
        }

    rows = [
        row(f"A: all {len(raw)} raw TA-Lib calls of the set (reference)", ref_a, ref_a, "A"),
        row("B: raw SMA x4, RSI, MACD, BBANDS", ref_b, ref_b, "B"),
        row("  B + derived columns written inline (numpy)", inline_b, ref_b, "B"),
        row("  moola sma x4, rsi, macd, bbands features", wrapped, ref_b, "B"),
    ]
    for feature, seconds in per_feature:
        own = _own_calls(feature)
        reference = sum(raw[name] for name in own) if own else ref_a
        rows.append(row(f"  {feature!r}"[:50], seconds, reference, " + ".join(own) or "A"))
    rows += _regime_rows(fset, bars, repeats, lambda step, s: row(step, s, ref_a, "A"))
    rows.append(row(f"intraday31 compute ({len(fset.columns)} columns)", total, ref_a, "A"))
    rows.append(row("  rest: the set's own work, memory of all columns", bookkeeping, ref_a, "A"))
    rows.append(row("  floor: its 31 columns written once, fresh memory", floor, ref_a, "A"))
    return rows


def _regime_rows(fset, bars: pd.DataFrame, repeats: int, row) -> list[dict]:
    """The volatility regime's kernel alone (its ATR precomputed), the full percentile rank,
    and pandas' rolling rank, its definition, on the same ATR: the part no TA-Lib call
    does."""
    regimes = [f for f in fset.features if f.name == "volatility_regime"]
    if not regimes:
        return []
    p = regimes[0].params
    high, low, close = (
        np.ascontiguousarray(bars[c].to_numpy(np.float64)) for c in ("high", "low", "close")
    )
    atr = talib.ATR(high, low, close, timeperiod=p.atr_period)
    cuts = best_of(repeats, lambda: atr_regime(atr, p.window, p.low_quantile, p.high_quantile))
    kernel = best_of(repeats, lambda: atr_percentile_rank(atr, p.window))
    series = pd.Series(atr)
    pandas = best_of(repeats, lambda: series.rolling(p.window, min_periods=p.window).rank())
    return [
        row(f"    of which the regime kernel, window {p.window}", cuts),
        row("    (its full percentile rank, atr_percentile_rank)", kernel),
        row("    (pandas rolling rank, same window, for scale)", pandas),
    ]


def bench_stream(bars: pd.DataFrame, updates: int) -> list[dict]:
    fset = load_feature_set("intraday31")
    history = bars.iloc[: len(bars) - updates]
    new = bars.iloc[len(bars) - updates :].to_dict("records")
    stream = fset.stream(history)
    latencies = np.empty(len(new))
    for i, bar in enumerate(new):
        start = time.perf_counter()
        stream.update(bar)
        latencies[i] = time.perf_counter() - start
    ms = latencies * 1e3
    rows = [
        {
            "measure": f"update(bar), {len(new):,} bars after {len(history):,} of history",
            "mean ms": ms.mean(),
            "p50 ms": np.percentile(ms, 50),
            "p99 ms": np.percentile(ms, 99),
        }
    ]
    shares = _feature_shares(fset, history, new)
    engine = rows[0]["mean ms"] - sum(share["mean ms"] for share in shares)
    rows.append(
        {
            "measure": "  stream bookkeeping (buffer, slices, row): mean minus features",
            "mean ms": engine,
            "p50 ms": float("nan"),
            "p99 ms": float("nan"),
        }
    )
    return rows + shares


def _feature_shares(fset, history: pd.DataFrame, new: list[dict]) -> list[dict]:
    """The same updates again, timing each feature's part inside ``update``."""
    stream = fset.stream(history)
    spent: list[list[float]] = []
    plan = []
    for feature, span, take, update_last in stream._plan:
        times: list[float] = []
        spent.append(times)
        last = update_last or (lambda part, f=feature: f.compute(part).to_numpy()[-1])

        def timed(part, last=last, times=times):
            start = time.perf_counter()
            out = last(part)
            times.append(time.perf_counter() - start)
            return out

        plan.append((feature, span, take, timed))
    stream._plan = plan
    for bar in new:
        stream.update(bar)
    rows = []
    for (feature, span, *_), times in zip(plan, spent, strict=True):
        ms = np.array(times) * 1e3
        rows.append(
            {
                "measure": f"  {feature!r}"[:56] + f" on {span} bars",
                "mean ms": ms.mean(),
                "p50 ms": np.percentile(ms, 50),
                "p99 ms": np.percentile(ms, 99),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--updates", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = SyntheticMarketConfig(seed=1, n_bars=args.bars, calendar="fx", symbol="BENCH")
    bars = generate_market(config).bars
    print_table(
        f"intraday31 batch on {args.bars:,} 1m bars (best of {args.repeats})",
        bench_batch(bars, args.repeats),
    )
    stream_bars = bars.iloc[-(load_feature_set("intraday31").lookback + args.updates) :]
    print_table(
        "intraday31 at run time: latency per new bar", bench_stream(stream_bars, args.updates)
    )


if __name__ == "__main__":
    main()
