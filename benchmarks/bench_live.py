"""Live engine benchmark: bar time -> journaled order intents latency, against bare inference.

Run: ``.venv/bin/python benchmarks/bench_live.py [--symbols 3 50] [--samples 1500]
[--timed 200] [--warmup 110] [--journals disk tmpfs] [--profile]``.

Issue 18's target: the engine's own overhead (everything but model inference) under 5 ms
per symbol at p99 on cpu, for 3 and 50 symbols with the default three-member ensemble.

What it does, in one temp data root: a planted-pattern raw dataset (2 symbols, 4,000
1-minute bars), three tiny promoted runs -- ``direction``: a bilstm (hidden 8),
``trend``: a transformer (d_model 16, one layer), and in the ``rl`` slot (weight 0.25) a
logistic regression (a stand-in: the benchmark trains no RL policy); all read 105-bar raw
windows, Platt-calibrated. Then, per symbol count and journal location, a paper session
(``Engine`` over a ``ReplayFeed``, a ``PaperBroker`` and a ``LiveJournal`` on SQLite with
WAL and ``synchronous=FULL``) over seeded random-walk bars of every symbol on one time
grid, rate limits raised so that signals become orders, ``--warmup`` + T bars per symbol,
T = max(``--timed``, ``--samples`` / symbols) (200 groups at least by default: a p99 over
fewer groups is its maximum). The feed hands the engine each minute's
bars of all symbols as one group (``ReplayFeed.groups``), which it decides symbol by
symbol and journals in one transaction. Per group (bar time) after the warm-up (every
member has a value) it times, in the same run:

(a) the whole ``Engine.step_group`` (per symbol: features, broker advance, members,
    ensemble, tiers, risk, the kill-switch check; then the group's ``record_steps``
    transaction -- every symbol's fills, position snapshots, decision, intent, and the
    engine state, one durable commit -- and the paper submits and their acks);
(b) the members' inference inside that group: each member's ``Predictor.predict_proba``
    on each symbol's window (what the run computes: input view, estimator, calibrator);
(c) the journal: ``record_steps`` (the group's one transaction: "commit") alone, and every
    journal call of the group together (the kill-switch ``get_state`` and
    ``intent_status`` per symbol, the acks' ``mark_intent`` on bars that send);
(d) the group latency: from the moment the feed hands the group over (the minute's first
    bar, with all the others) until ``record_steps`` returns, i.e. every intent of the
    minute is journaled (durable) and may be sent.

Overhead per symbol-bar = ((a) - (b)) / symbols in the group, group by group; p50/p99 are
over groups. ``disk`` puts the journal under the temp dir (ext4 here), ``tmpfs`` under
``/dev/shm`` (fsync is nearly free there): the difference is what the durable commit
costs. The same predictor calls are also replayed afterwards on the captured windows,
outside the loop (bare inference, the floor; summed per symbol-bar). ``--profile`` runs
one extra 3-symbol disk session under cProfile and prints where the engine's time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _common import print_table  # benchmarks/ is on sys.path when run as scripts
from moola.data.registry import Registry
from moola.evaluation.gates import GateConfig
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.lifecycle import promote
from moola.pipeline.predictor import Predictor
from moola.pipeline.train import TrainConfig, run_training
from moola.runtime.brokers import PaperBroker
from moola.runtime.config import LiveConfig, parse_live_config
from moola.runtime.engine import Engine
from moola.runtime.feed import ReplayFeed
from moola.runtime.members import Member
from moola.tracking.livedb import LiveJournal

TARGET_MS = 5.0
UP_CLASS = "retracement"  # the planted classes are consolidation / retracement
TINY = {"epochs": 2, "batch_size": 32, "lr": 1e-2, "dropout": 0.0}
MEMBERS = (  # role, model, params
    ("direction", "bilstm", {**TINY, "hidden": 8, "num_layers": 1, "fc": [8]}),
    (
        "trend",
        "transformer",
        {**TINY, "d_model": 16, "n_layers": 1, "heads": 2, "ffn": 32, "fc": [16]},
    ),
    ("rl", "logistic_regression", {}),  # stand-in: the engine loads no RL policy yet
)


def build_members_root(parent: Path) -> tuple[Path, dict[str, str]]:
    """A data root with three tiny promoted runs; returns (root, role -> run id)."""
    registry = Registry(parent / "moola_data")
    raw, market = synthesize_raw(
        registry, "mkt", n_bars=4000, n_patterns=16, seed=4, symbols=("AAA", "BBB")
    )
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    runs = {}
    for role, model, params in MEMBERS:
        config = TrainConfig(
            model=model,
            dataset="pat",
            split="kf",
            params=params,
            n_bootstrap=10,
            calibration="platt",
        )
        run_id = run_training(registry, config).run_id
        promote(registry, run_id, GateConfig(min_accuracy=0.0, max_ece=1.0))
        runs[role] = run_id
    return registry.root, runs


def session_bars(symbols: list[str], n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` 1-minute random-walk bars per symbol on one time grid (volatile enough that
    the ATR sizing gives orders)."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    frames = []
    for k, symbol in enumerate(symbols):
        close = 100.0 * (1 + k % 7) * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
        open_ = np.r_[close[0], close[:-1]]
        wiggle = np.abs(rng.normal(0, 0.001, n)) * close
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": stamps,
                    "open": open_,
                    "high": np.maximum(open_, close) + wiggle,
                    "low": np.minimum(open_, close) - wiggle,
                    "close": close,
                    "volume": rng.uniform(1, 10, n),
                    "symbol": symbol,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


class Clock:
    """Seconds spent per label inside the current group, and when some calls ended."""

    def __init__(self) -> None:
        self.now: dict[str, float] = {}
        self.marks: dict[str, float] = {}

    def add(self, label: str, seconds: float) -> None:
        self.now[label] = self.now.get(label, 0.0) + seconds


class TimedPredictor:
    """A ``Predictor`` whose ``predict_proba`` is timed (and its inputs kept for replay);
    everything else is the predictor's own."""

    def __init__(self, inner: Predictor, clock: Clock, keep: list, limit: int) -> None:
        self._inner, self._clock, self._keep, self._limit = inner, clock, keep, limit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def predict_proba(self, inputs: Any) -> np.ndarray:
        start = time.perf_counter()
        out = self._inner.predict_proba(inputs)
        self._clock.add("inference", time.perf_counter() - start)
        if len(self._keep) < self._limit:
            self._keep.append(inputs)
        return out


class TimedJournal:
    """A ``LiveJournal`` whose every method call is timed, by name."""

    def __init__(self, inner: LiveJournal, clock: Clock) -> None:
        self._inner, self._clock = inner, clock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                end = time.perf_counter()
                self._clock.add("journal", end - start)
                self._clock.add(f"journal.{name}", end - start)
                self._clock.marks[f"{name}_end"] = end

        return call


class TimedEngine(Engine):
    """The engine, each ``step_group`` timed whole, and the moment each group is handed
    over by the feed; a sample per group after ``warmup`` bar times."""

    def __init__(self, *args: Any, clock: Clock, warmup: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock, self.warmup, self.samples = clock, warmup, []
        self._handed: float = 0.0
        self._groups_seen = 0

    def _groups(self) -> Any:
        for group in super()._groups():
            self._handed = time.perf_counter()  # the feed just handed the group over
            yield group

    def step_group(self, group: Any, result: Any = None) -> str | None:
        self.clock.now = {}
        self.clock.marks = {}
        start = time.perf_counter()
        stop = super().step_group(group, result)
        elapsed = time.perf_counter() - start
        self._groups_seen += 1
        if self._groups_seen > self.warmup:
            journaled = self.clock.marks.get("record_steps_end", float("nan"))
            self.samples.append(
                {
                    "symbols": len(group),
                    "step": elapsed,
                    "latency": journaled - self._handed,
                    **self.clock.now,
                }
            )
        return stop


def make_config(symbols: list[str], runs: dict[str, str], url: str) -> LiveConfig:
    return parse_live_config(
        {
            "symbols": symbols,
            "members": [{"role": r, "run": runs[r], "up_class": UP_CLASS} for r in runs],
            "execution": {"instrument": "crypto", "initial_cash": 1_000_000.0, "rules": "none"},
            "risk": {"max_position": 1e6, "max_open_positions": 1000},
            "rate_limits": {"all_per_window": 100_000, "high_per_window": 100_000},
            "journal_url": url,
        }
    )


def run_one(
    root: Path,
    runs: dict[str, str],
    n_symbols: int,
    n_bars: int,
    warmup: int,
    folder: Path,
    *,
    profile: cProfile.Profile | None = None,
) -> dict[str, Any]:
    """One paper session; the per symbol-bar samples and the replayed bare inference."""
    symbols = [f"S{k:02d}" for k in range(n_symbols)]
    url = f"sqlite:///{folder / 'paper.db'}"
    config = make_config(symbols, runs, url)
    clock, kept = Clock(), {}
    members = []
    for member in config.members:
        kept[member.name] = []
        predictor = TimedPredictor(
            Predictor.from_promoted(root, member.run), clock, kept[member.name], 2000
        )
        members.append(Member(member, predictor))  # type: ignore[arg-type]
    journal = LiveJournal(url)
    feed = ReplayFeed(session_bars(symbols, n_bars), symbols, "1m", config.staleness)
    engine = TimedEngine(
        config,
        TimedJournal(journal, clock),
        PaperBroker(config.execution, config.symbols),
        members,
        feed,
        env={},
        resume_book=False,
        clock=clock,
        warmup=warmup,
    )
    try:
        if profile is not None:
            profile.enable()
        result = engine.run()
        if profile is not None:
            profile.disable()
    finally:
        journal.close()
    replay = []  # the same predictor calls on the same inputs, outside the loop
    for member in members:
        inner = member.predictor._inner  # type: ignore[attr-defined]
        for inputs in kept[member.name]:
            start = time.perf_counter()
            inner.predict_proba(inputs)
            replay.append((member.name, time.perf_counter() - start))
    return {"samples": pd.DataFrame(engine.samples).fillna(0.0), "replay": replay, "result": result}


def _ms(values: pd.Series | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q) * 1e3)


def summarise(n_symbols: int, where: str, out: dict[str, Any]) -> list[dict[str, Any]]:
    """One row: per-symbol-bar overhead over groups, group latency and commit, inference
    inside the loop and bare (per symbol-bar)."""
    frame = out["samples"]
    per = frame["symbols"]
    frame["overhead"] = (frame["step"] - frame["inference"]) / per
    frame["rest"] = (frame["step"] - frame["inference"] - frame["journal"]) / per
    by_bar = pd.DataFrame(out["replay"], columns=["member", "s"])
    bare = by_bar.groupby(by_bar.groupby("member").cumcount())["s"].sum()  # per bar: all members
    result = out["result"]
    row = {
        "sym": n_symbols,
        "journal": where,
        "groups": len(frame),
        "intents": result.intents,
        "infer/sym p50": _ms(frame["inference"] / per, 50),
        "bare/sym p50": _ms(bare, 50) if len(bare) else float("nan"),
        "ovh/sym p50": _ms(frame["overhead"], 50),
        "ovh/sym p99": _ms(frame["overhead"], 99),
        "latency p50": _ms(frame["latency"], 50),
        "latency p99": _ms(frame["latency"], 99),
        "commit p50": _ms(frame["journal.record_steps"], 50),
        "commit p99": _ms(frame["journal.record_steps"], 99),
        "jrnl/sym p50": _ms(frame["journal"] / per, 50),
        "rest/sym p50": _ms(frame["rest"], 50),
        "rest/sym p99": _ms(frame["rest"], 99),
        "met": "yes" if _ms(frame["overhead"], 99) < TARGET_MS else "NO",
    }
    return [row]


def print_markdown(rows: list[dict[str, Any]]) -> None:
    """The rows as a markdown table (for RESULTS.md)."""
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "|".join("---" if k in ("journal", "met") else "---:" for k in rows[0]) + "|")
    for row in rows:
        cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")


def journal_breakdown(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Mean ms per group of each journal method, and its p99."""
    rows = []
    for column in sorted(c for c in frame.columns if c.startswith("journal.")):
        rows.append(
            {
                "step": column.removeprefix("journal."),
                "calls share": float((frame[column] > 0).mean()),
                "mean ms": float(frame[column].mean() * 1e3),
                "p99 ms": _ms(frame[column], 99),
            }
        )
    return sorted(rows, key=lambda r: -r["mean ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, nargs="+", default=[3, 50])
    parser.add_argument("--samples", type=int, default=1500, help="timed symbol-bars (at least)")
    parser.add_argument(
        "--timed", type=int, default=200, help="timed bar times (groups) per symbol count, at least"
    )
    parser.add_argument("--warmup", type=int, default=110, help="untimed bars per symbol")
    parser.add_argument("--journals", nargs="+", default=["disk", "tmpfs"])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.warmup < 105 or args.timed < 1:
        parser.error("--warmup must be at least 105 (the members' window) and --timed positive")
    print(f"load average before: {os.getloadavg()}", flush=True)
    base = Path(tempfile.mkdtemp(prefix="bench_live_"))
    shm = Path("/dev/shm")
    try:
        started = time.perf_counter()
        root, runs = build_members_root(base)
        print(f"three members trained and promoted in {time.perf_counter() - started:.0f} s")
        rows, breakdowns = [], []
        for n_symbols in args.symbols:
            for where in args.journals:
                parent = shm if where == "tmpfs" else base
                folder = Path(tempfile.mkdtemp(prefix=f"j{n_symbols}_", dir=parent))
                try:
                    started = time.perf_counter()
                    n_bars = args.warmup + max(args.timed, -(-args.samples // n_symbols))
                    out = run_one(root, runs, n_symbols, n_bars, args.warmup, folder)
                    wall = time.perf_counter() - started
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
                rows += summarise(n_symbols, where, out)
                breakdowns.append((n_symbols, where, journal_breakdown(out["samples"])))
                print(f"  {n_symbols} symbols, journal on {where}: {wall:.0f} s", flush=True)
        print_table(
            f"Engine.step_group, ms: per symbol-bar over groups, and per group (first "
            f"{args.warmup} bar times untimed; target: ovh/sym p99 < {TARGET_MS} ms)",
            rows,
        )
        print_markdown(rows)
        for n_symbols, where, rows_ in breakdowns:
            print_table(f"Journal calls per group: {n_symbols} symbols, {where}", rows_)
        if args.profile:
            folder = Path(tempfile.mkdtemp(prefix="jprof_", dir=base))
            profile = cProfile.Profile()
            run_one(root, runs, 3, args.warmup + 100, args.warmup, folder, profile=profile)
            text = io.StringIO()
            stats = pstats.Stats(profile, stream=text).sort_stats("cumulative")
            stats.print_stats(45)
            print(text.getvalue())
            text = io.StringIO()
            pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(30)
            print(text.getvalue())
    finally:
        shutil.rmtree(base, ignore_errors=True)
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
