"""Transfer evidence: do pretrained representations (moola's masked-AE encoder at several
corpus sizes, frozen foundation models) help on tiny labeled sets, on several markets?

Run: ``make evidence`` or ``.venv/bin/python benchmarks/bench_transfer.py
[--corpus-windows 5000,20000] [--market-seeds 202,303,404] [--real sp500] [--sizes 100]
[--seeds 3] [--fm chronos=PATH ...] [--fm-tiny] [--jobs 2] [--data-root DIR]``.
The issue's full evidence: ``--corpus-windows 20000,60000,200000 --sizes 50,100,200
--seeds 5`` (hours on a 2-core CPU; the default is the modest run stated in RESULTS.md).

Markets (each scored separately, every arm on the same draws and folds):

- synthetic markets from one configuration (1-minute bars, planted consolidation and
  retracement windows at ``--strength``, 30% retracement), one per ``--market-seeds``
  seed: the labeled pool is a market's planted windows, label = pattern class;
- real daily bars (``--real sp500`` and/or ``nasdaq``: ``arch``'s S&P 500 / NASDAQ
  composite, 1999-2018): 105-bar windows every 5 bars, label = the close 5 bars after the
  window is above its last close (1) or not (0). No pretraining corpus contains them.

The masked-AE encoders: one per ``--corpus-windows`` size, each pretrained on its own
synthetic corpus market (seed 101; 105-bar windows at stride 1) through
``moola.pipeline.pretrain.pretrain_masked_ae`` exactly as ``moola pretrain masked-ae``
does (reused from ``--data-root`` when present), so the gain is a curve over corpus size.

Foundation models: ``--fm KIND=PATH`` (repeatable) or ``MOOLA_FM_WEIGHTS="KIND=PATH,..."``
names folders of downloaded weights (chronos, kronos, timesfm); each is registered as a
foundation encoder card (``moola.pretrain.foundation``) in the data root and read back
through it. ``--fm-tiny`` adds tiny RANDOM models of each kind (plumbing only: they know
nothing). A kind without weights is skipped and reported as skipped (Mantis: its package
needs pandas<3 and is not installed).

Arms (fixed epochs, no early stopping, balanced class weights):

- ``scratch``: simple_lstm with the 2 x 128 BiLSTM encoder and projection, random init;
- ``pretrained @K``: the same model, the K-window encoder loaded, frozen for
  ``--freeze-epochs`` then trained at 0.1 x the learning rate;
- ``pretrained (frozen) @K``: the K-window encoder loaded and never trained;
- ``simple_lstm (70K)``: the default small model from scratch, for reference;
- ``fm probe (KIND)``: ``fm_probe``, a logistic probe on the frozen backbone's embeddings
  of the raw OHLC windows.

Per market, arm and size: OOF accuracy, balanced accuracy and F1 of class 1 (synthetic:
retracement, the minority; real: up), mean over draws with a 95% t-interval, and the mean
paired difference to ``scratch`` on the same draws with its own interval. Results are also
written as JSON (``--out``), with the arms that were skipped and why.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from _common import print_table  # benchmarks/ is on sys.path when run as scripts
from moola.data.registry import Registry
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.data.splits import purged_kfold
from moola.features.window import relative_windows
from moola.models import create
from moola.pipeline.datasets import synthesize_raw
from moola.pipeline.pretrain import MaskedAEPretrainConfig, pretrain_masked_ae
from moola.pretrain.artifacts import EncoderArtifact, encoder_dir, load_encoder_artifact
from moola.training.oof import out_of_fold

LENGTH = 105
CORPUS_SEED = 101
PATTERN_DENSITY = 1 / 420  # planted windows per bar, in every synthetic market
CLASSES = ("consolidation", "retracement")
POSITIVE = 1  # retracement (30% of the planted windows) / up on real bars
REAL_STRIDE, REAL_HORIZON = 5, 5
FM_KINDS = ("chronos", "kronos", "timesfm", "mantis")
BASE_ARMS = ("scratch", "pretrained", "pretrained (frozen)", "simple_lstm (70K)", "fm probe")


@dataclass(frozen=True)
class Pool:
    """One market's labeled windows: relative view, raw OHLC, labels, bar spans."""

    name: str
    X: np.ndarray  # (N, 105, 11) float32: the relative view simple_lstm reads
    ohlc: np.ndarray  # (N, 105, 4) float32: what foundation models read
    y: np.ndarray  # (N,) int
    starts: np.ndarray
    ends: np.ndarray  # last bar the label depends on (purging uses it)


def _k(windows: int) -> str:
    return f"{windows // 1000}K" if windows % 1000 == 0 else str(windows)


def pretrain(root: Path, windows: int, args: argparse.Namespace) -> EncoderArtifact:
    """The encoder pretrained on ``windows`` corpus windows: found under ``root`` from an
    earlier run, or pretrained now."""
    existing = sorted(encoder_dir(root).glob("bilstm_mae_rel11_v*.pt"))
    if existing:
        artifact = load_encoder_artifact(existing[-1])
        print(f"reusing {existing[-1]} ({artifact.card['unlabeled']['windows_used']:,} windows)")
        return artifact
    registry = Registry(root)
    n_bars = windows + LENGTH - 1
    started = time.perf_counter()
    raw, _ = synthesize_raw(
        registry,
        "corpus",
        n_bars=n_bars,
        seed=CORPUS_SEED,
        calendar="crypto",
        n_patterns=int(n_bars * PATTERN_DENSITY),
        pattern_length=LENGTH,
        pattern_strength=args.strength,
    )
    registry.write_unlabeled("corpus", raw, length=LENGTH)
    print(f"corpus of {windows:,} windows written in {time.perf_counter() - started:.0f} s")
    config = MaskedAEPretrainConfig(
        epochs=args.pretrain_epochs, batch_size=64, device="cpu", seed=0
    )
    return pretrain_masked_ae(
        registry,
        "corpus",
        config,
        on_epoch=lambda epoch, loss: print(f"  pretraining epoch {epoch}: loss {loss:.4f}"),
    )


def synthetic_pool(seed: int, args: argparse.Namespace) -> Pool:
    market = generate_market(
        SyntheticMarketConfig(
            seed=seed,
            n_bars=args.pool_patterns * 420,
            calendar="crypto",
            n_patterns=args.pool_patterns,
            pattern_length=LENGTH,
            pattern_strength=args.strength,
        )
    )
    patterns = market.patterns.sort_values("start")
    starts = patterns["start"].to_numpy(np.int64)
    ohlcv = market.bars[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)
    windows = np.stack([ohlcv[s : s + LENGTH] for s in starts])
    y = np.array([CLASSES.index(label) for label in patterns["label"]], dtype=np.int64)
    return Pool(
        f"synthetic seed {seed}",
        relative_windows(windows),
        windows[:, :, :4].astype(np.float32),
        y,
        starts,
        starts + LENGTH - 1,
    )


def real_pool(which: str) -> Pool:
    """``arch``'s daily bars as labeled windows: up over the next 5 bars or not."""
    if which == "sp500":
        from arch.data import sp500 as dataset
    elif which == "nasdaq":
        from arch.data import nasdaq as dataset
    else:
        raise SystemExit(f"--real takes sp500 and/or nasdaq; got {which!r}")
    frame = dataset.load()
    ohlcv = frame[["Open", "High", "Low", "Close", "Volume"]].to_numpy(np.float64)
    last = len(ohlcv) - LENGTH - REAL_HORIZON
    starts = np.arange(0, last + 1, REAL_STRIDE, dtype=np.int64)
    windows = np.stack([ohlcv[s : s + LENGTH] for s in starts])
    close = ohlcv[:, 3]
    ends = starts + LENGTH - 1
    y = (close[ends + REAL_HORIZON] > close[ends]).astype(np.int64)
    label = {"sp500": "S&P 500", "nasdaq": "NASDAQ"}[which]
    return Pool(
        f"{label} daily ({REAL_HORIZON}-day direction)",
        relative_windows(windows),
        windows[:, :, :4].astype(np.float32),
        y,
        starts,
        ends + REAL_HORIZON,
    )


def draw(pool: Pool, n: int, seed: int) -> np.ndarray:
    """A stratified random ``n`` of the pool (class shares kept), sorted in time."""
    rng = np.random.default_rng([seed, n])
    share = np.mean(pool.y == POSITIVE)
    n_positive = max(5, round(n * share))
    chosen = [
        rng.choice(np.flatnonzero(pool.y == label), size=count, replace=False)
        for label, count in ((POSITIVE, n_positive), (1 - POSITIVE, n - n_positive))
    ]
    return np.sort(np.concatenate(chosen))


def foundation_weights(args: argparse.Namespace) -> tuple[dict[str, Path], dict[str, str]]:
    """Folders per kind from ``--fm`` / ``MOOLA_FM_WEIGHTS`` (and ``--fm-tiny``), and the
    kinds left out with the reason."""
    given: dict[str, Path] = {}
    entries = [e for e in os.environ.get("MOOLA_FM_WEIGHTS", "").split(",") if e.strip()]
    for entry in [*entries, *(args.fm or [])]:
        kind, _, path = entry.partition("=")
        if kind.strip() not in FM_KINDS or not path:
            raise SystemExit(f"--fm takes KIND=PATH with KIND one of {FM_KINDS}; got {entry!r}")
        given[kind.strip()] = Path(path.strip()).expanduser()
    if args.fm_tiny:
        from moola.testing.foundation import tiny_chronos_bolt, tiny_kronos, tiny_timesfm

        folder = args.data_root / "tiny-random-weights"
        makers = {"chronos": tiny_chronos_bolt, "kronos": tiny_kronos, "timesfm": tiny_timesfm}
        for kind, make in makers.items():
            target = folder / kind
            given[f"{kind}, tiny random"] = target if target.is_dir() else make(target)
    skipped = {}
    for kind in FM_KINDS:
        if kind == "mantis":
            skipped["fm probe (mantis)"] = (
                "mantis-tsfm is not installed (it needs pandas<3; moola uses pandas 3)"
            )
        elif kind not in given:
            skipped[f"fm probe ({kind})"] = (
                "no weights given (--fm KIND=PATH or MOOLA_FM_WEIGHTS); nothing is downloaded"
            )
    return given, skipped


def foundation_arms(args: argparse.Namespace) -> tuple[dict[str, dict], dict[str, str]]:
    """``fm probe (KIND)`` arms read through registered foundation cards."""
    from moola.core.errors import MoolaError
    from moola.models.foundation import directory_sha256
    from moola.pretrain.foundation import (
        foundation_cards,
        load_foundation_card,
        write_foundation_card,
    )

    given, skipped = foundation_weights(args)
    arms: dict[str, dict] = {}
    cards_root = args.data_root / "foundation-cards"
    for label, folder in given.items():
        kind = label.split(",")[0]
        name = f"fm probe ({label})"
        if kind == "mantis":
            continue
        try:
            digest = directory_sha256(folder) if folder.is_dir() else None
            registered = (
                load_foundation_card(p, check_weights=False) for p in foundation_cards(cards_root)
            )
            card = next(
                (
                    c
                    for c in registered
                    if c.kind == kind and c.sha256 == digest and c.weights == folder.resolve()
                ),
                None,
            ) or write_foundation_card(cards_root, kind, folder)
            card = load_foundation_card(card.path)
        except MoolaError as exc:
            skipped[name] = f"weights at {folder} do not load: {exc}"
            continue
        print(f"{name}: card {card.path} ({card.card['backbone']['embedding_dim']} dims)")
        arms[name] = {"model": "fm_probe", "view": "ohlc", "params": card.probe_params()}
    return arms, skipped


def plan_arms(
    encoders: dict[int, str], fm: dict[str, dict], args: argparse.Namespace
) -> dict[str, dict]:
    encoder = {"encoder_projection": True, "encoder_hidden": 128, "encoder_layers": 2}
    common = {"epochs": args.epochs, "batch_size": 16, "lr": 1e-3, "class_weights": "balanced"}
    lstm = {"model": "simple_lstm", "view": "relative"}
    plan = {"scratch": {**lstm, "params": {**encoder, **common}}}
    for windows, path in encoders.items():
        plan[f"pretrained @{_k(windows)}"] = {
            **lstm,
            "params": {
                **encoder,
                **common,
                "pretrained_encoder": path,
                "freeze_epochs": args.freeze_epochs,
                "encoder_lr_scale": 0.1,
            },
        }
        plan[f"pretrained (frozen) @{_k(windows)}"] = {
            **lstm,
            "params": {
                **encoder,
                **common,
                "pretrained_encoder": path,
                "freeze_epochs": args.epochs,
            },
        }
    plan["simple_lstm (70K)"] = {**lstm, "params": dict(common)}
    plan.update(fm)
    return plan


def base_arm(name: str) -> str:
    """The ``--arms`` name of arm ``name`` (``pretrained @20K`` -> ``pretrained``)."""
    if name.startswith("fm probe"):
        return "fm probe"
    return name.split(" @")[0]


def score(pool: Pool, rows: np.ndarray, arm: dict, seed: int) -> dict[str, float]:
    X = (pool.ohlc if arm["view"] == "ohlc" else pool.X)[rows]
    y = pool.y[rows]
    split = purged_kfold(pool.starts[rows], pool.ends[rows], n_folds=5, embargo=LENGTH)
    if arm["model"] == "simple_lstm":
        build = lambda: create("simple_lstm", seed=seed, n_classes=2, **arm["params"])  # noqa: E731
    else:
        build = lambda: create(arm["model"], random_state=seed, n_classes=2, **arm["params"])  # noqa: E731
    result = out_of_fold(build, X, y, split, fold_bootstrap=0)
    predicted = result.oof_proba[result.covered].argmax(axis=1)
    truth = y[result.covered]
    return {
        "accuracy": accuracy_score(truth, predicted),
        "balanced_accuracy": balanced_accuracy_score(truth, predicted),
        "minority_f1": f1_score(truth, predicted, pos_label=POSITIVE, zero_division=0.0),
        "seconds": result.total_seconds,
    }


_WORKER: dict = {}


def _init_worker(pools: list[Pool], plan: dict[str, dict], threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(pools=pools, plan=plan)


def _score_draw(task: tuple[int, int, int]) -> tuple[int, int, int, dict[str, dict[str, float]]]:
    """Every arm on draw ``(market, n, seed)``: the same windows and folds for each."""
    market, n, seed = task
    pool, plan = _WORKER["pools"][market], _WORKER["plan"]
    rows = draw(pool, n, seed)
    return market, n, seed, {name: score(pool, rows, arm, seed) for name, arm in plan.items()}


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval over draws."""
    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    if a.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / np.sqrt(a.size))
    return mean, mean - half, mean + half


def summarise(results: dict, sizes: list[int], names: list[str]) -> list[dict]:
    rows = []
    for n in sizes:
        for name in names:
            if name not in results[n]:
                continue
            row = {"labels": n, "arm": name}
            for metric in ("accuracy", "balanced_accuracy", "minority_f1"):
                values = [r[metric] for r in results[n][name]]
                mean, low, high = interval(values)
                row[metric] = f"{mean:.3f} [{low:.3f}, {high:.3f}]"
                if name != "scratch" and "scratch" in results[n]:
                    base = [r[metric] for r in results[n]["scratch"]]
                    paired = [v - b for v, b in zip(values, base, strict=True)]
                    d_mean, d_low, d_high = interval(paired)
                    row[f"d {metric}"] = f"{d_mean:+.3f} [{d_low:+.3f}, {d_high:+.3f}]"
                else:
                    row[f"d {metric}"] = "-"
            row["fit s"] = float(np.mean([r["seconds"] for r in results[n][name]]))
            rows.append(row)
    return rows


def print_summary(record: dict) -> None:
    args = record["args"]
    for market, by_n in record["results"].items():
        results = {int(n): arms_of_n for n, arms_of_n in by_n.items()}
        names = list(next(iter(results.values())))
        print_table(
            f"{market}: OOF (mean [95% t-interval] over {args['seeds']} draws; d = paired "
            "difference to scratch)",
            summarise(results, sorted(results), names),
        )
    synthetic = [m for m in record["results"] if m.startswith("synthetic")]
    if len(synthetic) > 1:  # every draw of every synthetic market, paired within its draw
        pooled: dict = {}
        for market in synthetic:
            for n, arms_of_n in record["results"][market].items():
                for name, rows in arms_of_n.items():
                    pooled.setdefault(int(n), {}).setdefault(name, []).extend(rows)
        record = {**record, "results": {**record["results"], "synthetic, pooled": pooled}}
        print_table(
            f"Pooled over {len(synthetic)} synthetic markets (every draw paired within itself)",
            summarise(pooled, sorted(pooled), list(next(iter(pooled.values())))),
        )
    curve = []
    for market, by_n in record["results"].items():
        for n, arms_of_n in by_n.items():
            for row in summarise({int(n): arms_of_n}, [int(n)], list(arms_of_n)):
                if "@" in row["arm"]:
                    curve.append(
                        {
                            "market": market,
                            "labels": int(n),
                            "arm": row["arm"],
                            "d accuracy": row["d accuracy"],
                            "d minority_f1": row["d minority_f1"],
                        }
                    )
    if curve:
        print_table("Paired gain over scratch of each masked-AE encoder (corpus size)", curve)
    for name, reason in record.get("skipped", {}).items():
        print(f"skipped {name}: {reason}")


def merge(paths: list[Path]) -> None:
    """One table from runs that scored different arms on the same draws."""
    records = [json.loads(Path(p).read_text()) for p in paths]
    merged = records[0]
    for record in records[1:]:
        for market, by_n in record["results"].items():
            for n, arms_of_n in by_n.items():
                merged["results"].setdefault(market, {}).setdefault(n, {}).update(arms_of_n)
        merged["encoders"] = merged.get("encoders", {}) | record.get("encoders", {})
        merged["skipped"] = merged.get("skipped", {}) | record.get("skipped", {})
    print(f"encoders: {merged.get('encoders')}")
    print_summary(merged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-windows", default="5000,20000", help="comma-separated sizes")
    parser.add_argument("--pretrain-epochs", type=int, default=1)
    parser.add_argument("--market-seeds", default="202,303,404", help="synthetic markets")
    parser.add_argument("--real", default="sp500", help="sp500,nasdaq or '' for none")
    parser.add_argument("--sizes", default="100")
    parser.add_argument("--seeds", type=int, default=3, help="draws per market and size")
    parser.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs (fixed)")
    parser.add_argument("--freeze-epochs", type=int, default=10)
    parser.add_argument("--strength", type=float, default=0.5, help="pattern_strength")
    parser.add_argument("--pool-patterns", type=int, default=600)
    parser.add_argument("--fm", action="append", help="KIND=PATH of downloaded weights")
    parser.add_argument("--fm-tiny", action="store_true", help="add tiny random models")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--jobs", type=int, default=2, help="draws fine-tuned in parallel")
    parser.add_argument("--data-root", type=Path, default=Path("/tmp/moola-bench-transfer"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/moola-bench-transfer.json"))
    parser.add_argument(
        "--arms",
        default="scratch,pretrained (frozen),simple_lstm (70K),fm probe",
        help=f"comma-separated arms among {BASE_ARMS}",
    )
    parser.add_argument("--merge", type=Path, nargs="+", help="print one table from --out files")
    args, _ = parser.parse_known_args()  # run_all.py passes every script the same flags
    torch.set_num_threads(args.threads * args.jobs)  # pretraining runs alone
    if args.merge:
        return merge(args.merge)
    sizes = [int(s) for s in args.sizes.split(",")]
    chosen = {name.strip() for name in args.arms.split(",")}
    unknown = sorted(chosen - set(BASE_ARMS))
    if unknown:
        raise SystemExit(f"unknown --arms {unknown}; choose from {list(BASE_ARMS)}")

    encoders: dict[int, str] = {}
    encoder_cards: dict[str, dict] = {}
    if chosen & {"pretrained", "pretrained (frozen)"}:
        for windows in (int(w) for w in args.corpus_windows.split(",") if w):
            artifact = pretrain(args.data_root / f"corpus-{windows}", windows, args)
            card = artifact.card
            encoders[windows] = str(artifact.path)
            encoder_cards[_k(windows)] = {
                **{
                    k: card.get(k) for k in ("epochs", "final_loss", "wall_time_s", "windows_per_s")
                },
                "windows_used": card["unlabeled"]["windows_used"],
                "path": str(artifact.path),
            }
    fm, skipped = foundation_arms(args) if "fm probe" in chosen else ({}, {})
    plan = {
        name: arm for name, arm in plan_arms(encoders, fm, args).items() if base_arm(name) in chosen
    }
    pools = [synthetic_pool(int(s), args) for s in args.market_seeds.split(",") if s]
    pools += [real_pool(which.strip()) for which in args.real.split(",") if which.strip()]
    print(
        f"arms: {list(plan)}; markets: {[p.name for p in pools]}; sizes {sizes}; "
        f"{args.seeds} draws each"
    )
    tasks = [(m, n, seed) for m in range(len(pools)) for n in sizes for seed in range(args.seeds)]
    results: dict = {
        p.name: {n: {name: [None] * args.seeds for name in plan} for n in sizes} for p in pools
    }
    started = time.perf_counter()
    with ProcessPoolExecutor(
        args.jobs,
        mp_context=multiprocessing.get_context("spawn"),  # torch's thread pools do not fork
        initializer=_init_worker,
        initargs=(pools, plan, args.threads),
    ) as executor:
        for market, n, seed, scores in executor.map(_score_draw, tasks):
            for name, row in scores.items():
                results[pools[market].name][n][name][seed] = row
                print(
                    f"  {pools[market].name} n={n} seed={seed} {name}: acc "
                    f"{row['accuracy']:.3f} bal {row['balanced_accuracy']:.3f} F1 "
                    f"{row['minority_f1']:.3f} ({row['seconds']:.0f} s)",
                    flush=True,
                )
    record = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "encoders": encoder_cards,
        "skipped": skipped,
        "wall_s": time.perf_counter() - started,
        "results": {
            market: {str(n): v for n, v in by_n.items()} for market, by_n in results.items()
        },
    }
    print_summary(record)
    args.out.write_text(json.dumps(record, indent=2, default=str))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
