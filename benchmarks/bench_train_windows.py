"""Training throughput on feature windows: ``Trainer.run`` over a ``FeatureWindowDataset``
against a bare PyTorch loop over the same windows, in the same run (issue 16).

Run: ``.venv/bin/python benchmarks/bench_train_windows.py [--windows 3072] [--epochs 2]
[--repeats 3] [--threads 0] [--profile]``.

The model is the BiLSTM preset of the per-symbol direction model (``moola.models.nn``
``"bilstm"`` at DOMAIN sizes: 2 bidirectional layers of 64, dropout 0.2, head 128-64-1,
one logit trained with BCE), on ``--windows`` windows of (``--length`` 60, ``--features``
31) float32 over a seeded random feature table of 3 symbols (the same table as
``bench_feature_windows.py``; binary labels drawn at random: the values do not change the
cost of a step), batch 32, Adam at lr 1e-3, no validation. Every loop starts from the same
initial weights (one module deep-copied), seeds torch with the same seed (dropout) and
visits the samples in the same order (each epoch a ``torch.randperm`` drawn from one
seeded ``torch.Generator``):

- reference: the bare loop a user would write, indexing each batch out of a tensor of all
  windows gathered before the clock starts (the materialised ``(N, L, F)`` copy the lazy
  path avoids), BCE on the logit, ``zero_grad``/``backward``/``step``;
- ``Trainer.run`` over ``FeatureWindowDataset(windows, loss="bce")`` (a ``BatchSource``:
  each batch gathered from the feature table when the step needs it) with clipping and
  schedule off, which is the reference's arithmetic (its final weights are checked equal
  to the reference's) plus everything the loop adds: this row is the overhead;
- the same with the Trainer's defaults (gradient clipping at 1.0, cosine schedule): extra
  work the reference does not do, shown for scale;
- ``Trainer.fit`` over the materialised arrays (clipping and schedule off), which separates
  the lazy gather from the rest of the loop.

Times are the best of ``--repeats`` runs, alternating between the loops so that a busy
neighbour slows them alike, with the median over repeats of each run's time over the bare
loop's of the same repeat ("paired"), and the process's CPU time (``time.process_time``:
what a loop costs, less the time other jobs held the cores; with ``--threads 1`` it is
the clearest figure on a shared machine). The load average (``/proc/loadavg``) is printed
before and after. Target: the Trainer over the dataset at most 1.10x the bare loop's time,
judged on the paired median: one lucky or unlucky run on shared cores moves a best-of
ratio by 20-30%, while runs made back to back see about the same neighbours.
``--profile`` then prints where one ``Trainer.run`` over the dataset spends its time.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import dataclasses
import gc
import io
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _common import print_table  # benchmarks/ is on sys.path when run as scripts
from bench_feature_windows import make_windows
from moola.data.registry import FeatureWindows
from moola.models.nn import build_module, count_parameters
from moola.training.trainer import Trainer
from moola.training.window_dataset import FeatureWindowDataset

BATCH = 32  # DOMAIN: the per-coin LSTM trains with batch 32, Adam, BCE
LR = 1e-3
SEED = 0
REFERENCE = "bare loop, pre-gathered tensor (reference)"
LAZY = "Trainer.run, FeatureWindowDataset, no clip/schedule"


def _loadavg() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "n/a"


def binary_windows(n: int, length: int, n_features: int) -> FeatureWindows:
    """``bench_feature_windows``' 3-symbol windows with random 0/1 labels (for BCE)."""
    windows = make_windows(n, length, n_features, seed=SEED)
    labels = np.random.default_rng(SEED + 1).integers(0, 2, len(windows)).astype(np.int64)
    return dataclasses.replace(windows, y=labels, classes=("down", "up"))


def bare_loop(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    """The reference: batches indexed out of tensors already made."""
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.Adam(module.parameters(), lr=LR)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)  # dropout draws as in the Trainer, which seeds the same way
        module.train()
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=generator)
            for index in order.split(BATCH):
                loss = F.binary_cross_entropy_with_logits(module(x[index])[:, 0], y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()


def _trainer(epochs: int, *, defaults: bool) -> Trainer:
    """The preset's loop settings (batch 32, Adam, BCE); ``defaults`` keeps the Trainer's
    clipping and cosine schedule, otherwise both are off (the reference's arithmetic)."""
    plain = {} if defaults else {"grad_clip": None, "lr_schedule": "constant"}
    return Trainer(
        epochs=epochs,
        batch_size=BATCH,
        lr=LR,
        loss="bce",
        seed=SEED,
        device="cpu",
        **plain,
    )


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def run(args: argparse.Namespace) -> tuple[list[dict], dict[str, object], Callable[[], object]]:
    """The timed rows, a few facts (parameters, same weights, the ratio) and a call that
    trains once more through the Trainer over the dataset (for ``--profile``)."""
    n = args.windows
    if n % (3 * BATCH):
        raise SystemExit(
            f"--windows must be a multiple of {3 * BATCH} (3 symbols, batches of {BATCH}) so "
            "every loop sees the same full batches"
        )
    windows = binary_windows(n, args.length, args.features)
    dataset = FeatureWindowDataset(windows, loss="bce")
    x_all, y_all = dataset.batch(torch.arange(len(dataset)), key=0)  # the materialised copy
    labels = windows.y
    torch.manual_seed(SEED)
    # DOMAIN sizes are the config's defaults: 2 x 64 bidirectional, dropout 0.2, FC 128-64-1.
    initial = build_module("bilstm", input_dim=args.features, seq_len=args.length, n_classes=1)
    epochs = args.epochs
    plain, preset = (
        _trainer(epochs, defaults=False),
        _trainer(epochs, defaults=True),
    )
    step = plain.build_step(labels)
    variants: dict[str, Callable[[torch.nn.Module], object]] = {
        REFERENCE: lambda m: bare_loop(m, x_all, y_all, epochs),
        LAZY: lambda m: plain.run(m, dataset, step=step),
        "Trainer.run, FeatureWindowDataset, clip 1.0 + cosine": lambda m: preset.run(
            m, dataset, step=preset.build_step(labels)
        ),
        "Trainer.fit, materialised arrays, no clip/schedule": lambda m: plain.fit(
            m, x_all.numpy(), labels
        ),
    }
    # Untimed: the first LSTM steps of a process set up torch's kernels (~1 s on the CPU).
    bare_loop(copy.deepcopy(initial), x_all[: 4 * BATCH], y_all[: 4 * BATCH], 1)
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    final: dict[str, torch.nn.Module] = {}
    for _ in range(args.repeats):
        for name, train in variants.items():
            module = copy.deepcopy(initial)
            gc.collect()
            start, start_cpu = time.perf_counter(), time.process_time()
            train(module)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            final[name] = module
    reference, reference_cpu = min(times[REFERENCE]), min(cpu[REFERENCE])
    samples = n * epochs
    rows = []
    for name, measured in times.items():
        best = min(measured)
        rows.append(
            {
                "loop": name,
                "best s": best,
                "median s": statistics.median(measured),
                "samples/s": samples / best,
                "x bare": best / reference,
                "x bare (paired)": statistics.median(
                    t / r for t, r in zip(measured, times[REFERENCE], strict=True)
                ),
                "CPU s": min(cpu[name]),
                "x bare (CPU)": min(cpu[name]) / reference_cpu,
            }
        )
    facts = {
        "parameters": count_parameters(initial),
        "same_weights": _same_weights(final[LAZY], final[REFERENCE]),
        "ratio": min(times[LAZY]) / reference,
        "ratio_paired": statistics.median(
            t / r for t, r in zip(times[LAZY], times[REFERENCE], strict=True)
        ),
        "ratio_cpu": min(cpu[LAZY]) / reference_cpu,
    }
    return rows, facts, lambda: plain.run(copy.deepcopy(initial), dataset, step=step)


def _profile(train: Callable[[], object], top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    train()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=3072)
    parser.add_argument("--length", type=int, default=60)
    parser.add_argument("--features", type=int, default=31)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--profile", action="store_true", help="cProfile one Trainer.run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    before = _loadavg()
    started = time.perf_counter()
    rows, facts, again = run(args)
    wall = time.perf_counter() - started
    after = _loadavg()
    print_table(
        f"bilstm preset ({facts['parameters']:,} parameters), BCE, on {args.windows:,} windows "
        f"of ({args.length}, {args.features}) float32 over 3 symbols; batch {BATCH}, Adam lr "
        f"{LR:g}, {args.epochs} epochs, CPU ({torch.get_num_threads()} threads), "
        f"best of {args.repeats}",
        rows,
    )
    paired = float(facts["ratio_paired"])
    print(
        f"Trainer.run over the dataset / bare loop: {paired:.3f}x, the paired median (target "
        f"at most 1.10x: {'met' if paired <= 1.10 else 'NOT met'}; best of each "
        f"{float(facts['ratio']):.3f}x, CPU time {float(facts['ratio_cpu']):.3f}x); "
        "same final weights as the bare loop: "
        f"{'yes' if facts['same_weights'] else 'NO'}; load average before {before}, "
        f"after {after}; {wall:.1f} s in all"
    )
    if args.profile:
        print(_profile(again, 25))


if __name__ == "__main__":
    main()
