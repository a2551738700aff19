"""Training-loop benchmark: what ``Trainer.fit`` costs over a bare PyTorch loop.

Run: ``.venv/bin/python benchmarks/bench_training.py [--samples N] [--epochs E]``.

The model is ``simple_lstm`` at its defaults (~70K parameters) on N relative windows
(105 x 11, default 512) of a synthetic market, batch 32, on the CPU. The reference,
measured in the same run, is the bare loop a user would write: the same initial weights
(one module deep-copied), the same shuffled batches (one seeded ``torch.Generator``),
Adam, cross-entropy, no callbacks, no clipping, no schedule. ``Trainer.fit`` runs twice:
with its defaults (gradient clipping at 1.0, cosine schedule) and with clipping and
schedule off, which isolates the cost of the loop itself. Times are the best of
``--repeats`` runs, alternating between the variants. Target: at most 10% overhead.
On a shared machine, ``--threads 1`` keeps busy neighbours from swamping the timings.
"""

from __future__ import annotations

import argparse
import copy
import gc
import time

import numpy as np
import torch
import torch.nn.functional as F

from _common import print_table  # benchmarks/ is on sys.path when run as scripts
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features.window import relative_windows
from moola.models.nn import build_module, count_parameters
from moola.training.trainer import Trainer

BATCH = 32
SEED = 0


def _windows(n: int) -> tuple[np.ndarray, np.ndarray]:
    market = generate_market(SyntheticMarketConfig(seed=4, n_bars=n + 200, calendar="crypto"))
    ohlc = market.bars[["open", "high", "low", "close"]].to_numpy(np.float64)
    starts = np.arange(n)
    X = relative_windows(np.stack([ohlc[s : s + 105] for s in starts]))
    y = (X[:, -1, 3] > np.median(X[:, -1, 3])).astype(np.int64)  # any balanced labels
    return X.astype(np.float32), y


def bare_loop(module: torch.nn.Module, X: np.ndarray, y: np.ndarray, epochs: int) -> None:
    """The reference: what a hand-written loop over the same batches does."""
    x_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        for index in order.split(BATCH):
            loss = F.cross_entropy(module(x_t[index]), y_t[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def run(n: int, epochs: int, repeats: int) -> tuple[list[dict], int]:
    if n % BATCH:
        raise SystemExit(
            f"--samples must be a multiple of {BATCH} so both loops see the same batches"
        )
    X, y = _windows(n)
    torch.manual_seed(SEED)
    initial = build_module("simple_lstm", input_dim=X.shape[2], seq_len=X.shape[1])
    variants = {
        "bare PyTorch loop (reference)": lambda m: bare_loop(m, X, y, epochs),
        "Trainer.fit (clip 1.0 + cosine, defaults)": lambda m: Trainer(
            epochs=epochs, batch_size=BATCH, seed=SEED
        ).fit(m, X, y),
        "Trainer.fit (no clip, constant lr)": lambda m: Trainer(
            epochs=epochs, batch_size=BATCH, seed=SEED, grad_clip=None, lr_schedule="constant"
        ).fit(m, X, y),
    }
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, train in variants.items():
            module = copy.deepcopy(initial)
            gc.collect()
            start = time.perf_counter()
            train(module)
            times[name].append(time.perf_counter() - start)
    reference = min(times["bare PyTorch loop (reference)"])
    samples = n * epochs
    rows = []
    for name, measured in times.items():
        best = min(measured)
        rows.append(
            {
                "loop": name,
                "seconds": best,
                "samples/s": samples / best,
                "overhead %": 100.0 * (best / reference - 1.0),
            }
        )
    return rows, count_parameters(initial)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, n_params = run(args.samples, args.epochs, args.repeats)
    print_table(
        f"simple_lstm ({n_params:,} parameters) training throughput on CPU "
        f"({torch.get_num_threads()} threads): {args.samples} windows x 105 x 11, batch "
        f"{BATCH}, {args.epochs} epochs, best of {args.repeats}",
        rows,
    )


if __name__ == "__main__":
    main()
