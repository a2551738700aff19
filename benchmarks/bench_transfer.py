"""Transfer evidence: does masked-AE pretraining help simple_lstm on tiny labeled sets?

Run: ``make evidence`` or ``.venv/bin/python benchmarks/bench_transfer.py [--corpus-windows 200000]
[--pretrain-epochs 1] [--sizes 50,100,200] [--seeds 5] [--jobs 2] [--data-root DIR]``.

Two synthetic markets from one configuration (1-minute bars, planted consolidation and
retracement windows at ``--strength``, 30% retracement), different seeds:

- the corpus market gives the unlabeled corpus: ``--corpus-windows`` windows of 105 bars at
  stride 1 (labels unused). ``moola.pipeline.pretrain.pretrain_masked_ae`` pretrains the
  BiLSTM masked autoencoder (2 x 128, 15% random masks, default augmentation) on it through
  the registry, exactly as ``moola pretrain masked-ae`` does;
- the labeled market gives a pool of planted windows the encoder never saw. For each size
  n and seed s a stratified random n of them (the same n for every arm) is scored out of
  fold: purged 5-fold in time, embargo one window, every fold's model fitted from scratch.

Arms (same seed, same windows, same folds, fixed epochs, no early stopping, balanced
class weights):

- ``scratch``: simple_lstm with the 2 x 128 BiLSTM encoder and projection, random init;
- ``pretrained``: the same model, encoder loaded from the artifact, frozen for
  ``--freeze-epochs`` then trained at 0.1 x the learning rate;
- ``pretrained (frozen)``: the encoder loaded and never trained (only the head learns);
- ``simple_lstm (70K)``: the default small model from scratch, for reference.

Per arm and size: OOF accuracy, balanced accuracy and minority (retracement) F1, mean over
seeds with a 95% t-interval, and the mean paired difference to ``scratch`` with its own
interval. Results are also written as JSON (``--out``). The encoder is reused if
``--data-root`` already holds one from the same settings.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
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
CORPUS_SEED, LABELED_SEED = 101, 202
PATTERN_DENSITY = 1 / 420  # planted windows per bar, in both markets
CLASSES = ("consolidation", "retracement")
MINORITY = 1  # retracement: 30% of the planted windows


@dataclass(frozen=True)
class Pool:
    """The labeled market's planted windows: relative view, labels, bar spans."""

    X: np.ndarray  # (N, 105, 11) float32
    y: np.ndarray  # (N,) int
    starts: np.ndarray
    ends: np.ndarray


def pretrain(root: Path, args: argparse.Namespace) -> EncoderArtifact:
    """The encoder artifact: found under ``root`` from an earlier run, or pretrained now."""
    existing = sorted(encoder_dir(root).glob("bilstm_mae_rel11_v*.pt"))
    if existing:
        artifact = load_encoder_artifact(existing[-1])
        print(f"reusing {existing[-1]} ({artifact.card['unlabeled']['windows_used']:,} windows)")
        return artifact
    registry = Registry(root)
    n_bars = args.corpus_windows + LENGTH - 1
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
    print(f"corpus written in {time.perf_counter() - started:.0f} s; pretraining ...")
    config = MaskedAEPretrainConfig(
        epochs=args.pretrain_epochs, batch_size=64, device="cpu", seed=0
    )
    return pretrain_masked_ae(
        registry,
        "corpus",
        config,
        on_epoch=lambda epoch, loss: print(f"  pretraining epoch {epoch}: loss {loss:.4f}"),
    )


def labeled_pool(args: argparse.Namespace) -> Pool:
    n_bars = args.pool_patterns * 420
    market = generate_market(
        SyntheticMarketConfig(
            seed=LABELED_SEED,
            n_bars=n_bars,
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
    return Pool(relative_windows(windows), y, starts, starts + LENGTH - 1)


def draw(pool: Pool, n: int, seed: int) -> np.ndarray:
    """A stratified random ``n`` of the pool (class shares kept), sorted in time."""
    rng = np.random.default_rng([seed, n])
    share = np.mean(pool.y == MINORITY)
    n_minority = max(5, round(n * share))
    chosen = [
        rng.choice(np.flatnonzero(pool.y == label), size=count, replace=False)
        for label, count in ((MINORITY, n_minority), (1 - MINORITY, n - n_minority))
    ]
    return np.sort(np.concatenate(chosen))


ARMS = ("scratch", "pretrained", "pretrained (frozen)", "simple_lstm (70K)")
NEEDS_ENCODER = ("pretrained", "pretrained (frozen)")


def arms(path: str, args: argparse.Namespace) -> dict[str, dict]:
    encoder = {"encoder_projection": True, "encoder_hidden": 128, "encoder_layers": 2}
    common = {"epochs": args.epochs, "batch_size": 16, "lr": 1e-3, "class_weights": "balanced"}
    return {
        "scratch": {**encoder, **common},
        "pretrained": {
            **encoder,
            **common,
            "pretrained_encoder": path,
            "freeze_epochs": args.freeze_epochs,
            "encoder_lr_scale": 0.1,
        },
        "pretrained (frozen)": {
            **encoder,
            **common,
            "pretrained_encoder": path,
            "freeze_epochs": args.epochs,
        },
        "simple_lstm (70K)": dict(common),
    }


def score(pool: Pool, rows: np.ndarray, params: dict, seed: int) -> dict[str, float]:
    X, y = pool.X[rows], pool.y[rows]
    split = purged_kfold(pool.starts[rows], pool.ends[rows], n_folds=5, embargo=LENGTH)
    result = out_of_fold(
        lambda: create("simple_lstm", seed=seed, n_classes=2, **params),
        X,
        y,
        split,
        fold_bootstrap=0,
    )
    predicted = result.oof_proba[result.covered].argmax(axis=1)
    truth = y[result.covered]
    return {
        "accuracy": accuracy_score(truth, predicted),
        "balanced_accuracy": balanced_accuracy_score(truth, predicted),
        "minority_f1": f1_score(truth, predicted, pos_label=MINORITY, zero_division=0.0),
        "seconds": result.total_seconds,
    }


_WORKER: dict = {}


def _init_worker(pool: Pool, plan: dict[str, dict], threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(pool=pool, plan=plan)


def _score_draw(task: tuple[int, int]) -> tuple[int, int, dict[str, dict[str, float]]]:
    """Every arm on draw ``(n, seed)``: the same windows and folds for each."""
    n, seed = task
    pool, plan = _WORKER["pool"], _WORKER["plan"]
    rows = draw(pool, n, seed)
    return n, seed, {name: score(pool, rows, params, seed) for name, params in plan.items()}


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds."""
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
    results = {int(n): arms_of_n for n, arms_of_n in record["results"].items()}
    names = [name for name in ARMS if name in next(iter(results.values()))]
    args = record["args"]
    print_table(
        f"OOF on the labeled market (strength {args['strength']}; mean [95% t-interval] over "
        f"{args['seeds']} seeds; d = paired difference to scratch)",
        summarise(results, sorted(results), names),
    )


def merge(paths: list[Path]) -> None:
    """One table from runs that scored different arms on the same draws."""
    records = [json.loads(Path(p).read_text()) for p in paths]
    merged = records[0]
    for record in records[1:]:
        for n, arms_of_n in record["results"].items():
            merged["results"].setdefault(n, {}).update(arms_of_n)
        merged["encoder"] = merged["encoder"] or record["encoder"]
    print(f"encoder: {merged['encoder']}")
    print_summary(merged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-windows", type=int, default=200_000)
    parser.add_argument("--pretrain-epochs", type=int, default=1)
    parser.add_argument("--sizes", default="50,100,200")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs (fixed)")
    parser.add_argument("--freeze-epochs", type=int, default=10)
    parser.add_argument("--strength", type=float, default=0.5, help="pattern_strength")
    parser.add_argument("--pool-patterns", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--jobs", type=int, default=2, help="draws fine-tuned in parallel")
    parser.add_argument("--data-root", type=Path, default=Path("/tmp/moola-bench-transfer"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/moola-bench-transfer.json"))
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to score")
    parser.add_argument("--merge", type=Path, nargs="+", help="print one table from --out files")
    args, _ = parser.parse_known_args()  # run_all.py passes every script the same flags
    torch.set_num_threads(args.threads * args.jobs)  # pretraining runs alone
    sizes = [int(s) for s in args.sizes.split(",")]

    if args.merge:
        return merge(args.merge)
    chosen = [name.strip() for name in args.arms.split(",")]
    unknown = sorted(set(chosen) - set(ARMS))
    if unknown:
        raise SystemExit(f"unknown --arms {unknown}; choose from {list(ARMS)}")
    encoder: dict = {}
    path = ""
    if set(chosen) & set(NEEDS_ENCODER):
        artifact = pretrain(args.data_root, args)
        card, path = artifact.card, str(artifact.path)
        encoder = {
            **{k: card.get(k) for k in ("epochs", "loss_curve", "wall_time_s", "windows_per_s")},
            "windows_used": card["unlabeled"]["windows_used"],
            "path": path,
        }
        print(f"encoder {artifact}: {encoder}")
    pool = labeled_pool(args)
    plan = {name: params for name, params in arms(path, args).items() if name in chosen}
    tasks = [(n, seed) for n in sizes for seed in range(args.seeds)]
    results: dict = {n: {name: [None] * args.seeds for name in plan} for n in sizes}
    with ProcessPoolExecutor(
        args.jobs,
        mp_context=multiprocessing.get_context("spawn"),  # torch's thread pools do not fork
        initializer=_init_worker,
        initargs=(pool, plan, args.threads),
    ) as executor:
        for n, seed, scores in executor.map(_score_draw, tasks):
            for name, row in scores.items():
                results[n][name][seed] = row
                print(
                    f"  n={n} seed={seed} {name}: acc {row['accuracy']:.3f} "
                    f"bal {row['balanced_accuracy']:.3f} F1 {row['minority_f1']:.3f} "
                    f"({row['seconds']:.0f} s)",
                    flush=True,
                )
    record = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "encoder": encoder,
        "results": {str(n): v for n, v in results.items()},
    }
    print_summary(record)
    args.out.write_text(json.dumps(record, indent=2, default=str))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
