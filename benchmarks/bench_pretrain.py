"""Pretraining benchmark: masked-AE windows/s through ``Trainer.run`` vs a bare PyTorch loop.

Run: ``.venv/bin/python benchmarks/bench_pretrain.py [--samples N] [--epochs E]
[--threads 1,2] [--hidden H]``.

The model is ``MaskedAutoencoder`` (BiLSTM encoder 2 x ``--hidden``, 128 by default, the
size moola pretrains; MLP decoder) on N windows (105 bars, default 512) of a synthetic
market, streamed by ``UnlabeledWindows``: per batch of 32 it copies the windows, builds the
relative view, normalises, augments (default ``AugmentConfig``) and draws 15% random masks.
Every variant pays for that same batch building, so the comparison isolates the loop:

- bare PyTorch loop (reference): the same initial weights (one module deep-copied), the
  same shuffled order (one seeded ``torch.Generator``), the same batches (``source.batch``
  with the same keys), AdamW, no clipping, no schedule, no callbacks;
- ``Trainer.run`` with ``MaskedAEStep``, as ``pretrain_masked_ae`` configures it (clip 1.0,
  cosine schedule), and with clipping and schedule off (the loop alone);
- ``Trainer.run`` plus the ``ResumeCheckpoint`` callback (a resumable checkpoint each epoch).

"batches only" times building the batches without the model: the data pipeline's share.
Times are the best of ``--repeats`` runs; targets: at most 10% overhead over the bare loop.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch

from _common import best_of, print_table  # benchmarks/ is on sys.path when run as scripts
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.data.windows import WindowSet
from moola.models.nn import count_parameters
from moola.pretrain.artifacts import ResumeCheckpoint
from moola.pretrain.augment import AugmentConfig
from moola.pretrain.data import UnlabeledWindows, corpus_indices, fit_normaliser
from moola.pretrain.masked_ae import MaskedAEConfig, MaskedAEStep, MaskedAutoencoder
from moola.training.trainer import Trainer

BATCH = 32
SEED = 0


def _source(n: int) -> UnlabeledWindows:
    market = generate_market(SyntheticMarketConfig(seed=4, n_bars=n * 5 + 400, calendar="crypto"))
    windows = WindowSet.from_bars(market.bars, 105, stride=5)
    indices = corpus_indices(len(windows), n, SEED)
    mean, std = fit_normaliser(windows, indices, 2048, SEED)
    return UnlabeledWindows(
        windows, indices, mean=mean, std=std, augment=AugmentConfig(), seed=SEED
    )


def bare_loop(module: torch.nn.Module, source: UnlabeledWindows, epochs: int) -> None:
    """The reference: a hand-written loop over the same batches."""
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    step = MaskedAEStep()
    module.train()
    key = 0
    for _ in range(epochs):
        order = torch.randperm(len(source), generator=generator)
        for index in order.split(BATCH):
            loss = step(module, source.batch(index, key))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            key += 1


def batches_only(source: UnlabeledWindows, epochs: int) -> None:
    generator = torch.Generator().manual_seed(SEED)
    key = 0
    for _ in range(epochs):
        for index in torch.randperm(len(source), generator=generator).split(BATCH):
            source.batch(index, key)
            key += 1


def _trainer(epochs: int, **overrides) -> Trainer:
    return Trainer(
        epochs=epochs,
        batch_size=BATCH,
        seed=SEED,
        optimizer="adamw",
        patience=None,
        device="cpu",
        **overrides,
    )


def run(n: int, epochs: int, repeats: int, hidden: int, threads: int) -> tuple[list[dict], int]:
    torch.set_num_threads(threads)
    source = _source(n)
    torch.manual_seed(SEED)
    initial = MaskedAutoencoder(MaskedAEConfig(hidden=hidden, decoder_hidden=hidden))
    checkpoint = Path(tempfile.mkdtemp()) / "bench.ckpt"
    step = MaskedAEStep()
    warm_up = UnlabeledWindows(
        source.windows, source.indices[: 2 * BATCH], mean=source.mean, std=source.std
    )
    variants = {
        "bare PyTorch loop (reference)": lambda m, data: bare_loop(m, data, epochs),
        "Trainer.run (clip 1.0 + cosine, as pretraining)": lambda m, data: _trainer(epochs).run(
            m, data, step=step
        ),
        "Trainer.run (no clip, constant lr)": lambda m, data: _trainer(
            epochs, grad_clip=None, lr_schedule="constant"
        ).run(m, data, step=step),
        "Trainer.run + ResumeCheckpoint each epoch": lambda m, data: _trainer(epochs).run(
            m, data, step=step, callbacks=[ResumeCheckpoint(checkpoint)]
        ),
        "batches only (no model)": lambda m, data: batches_only(data, epochs),
    }
    for train in variants.values():  # untimed: first calls pay for lazy initialisation
        train(copy.deepcopy(initial), warm_up)
    times = {name: float("inf") for name in variants}
    for _ in range(repeats):  # alternate the variants so slow spells hit them alike
        for name, train in variants.items():
            seconds = best_of(1, lambda train=train: train(copy.deepcopy(initial), source))
            times[name] = min(times[name], seconds)
    reference = times["bare PyTorch loop (reference)"]
    samples = len(source) * epochs
    rows = [
        {
            "loop": name,
            "seconds": best,
            "windows/s": samples / best,
            "overhead %": 100.0 * (best / reference - 1.0),
        }
        for name, best in times.items()
    ]
    checkpoint.unlink(missing_ok=True)
    return rows, count_parameters(initial)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512, help="windows in the corpus")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    args, _ = parser.parse_known_args()  # run_all.py passes every script the same flags
    if args.samples % BATCH:
        raise SystemExit(f"--samples must be a multiple of {BATCH} (whole batches in both loops)")
    for threads in (int(t) for t in str(args.threads).split(",")):
        rows, n_params = run(args.samples, args.epochs, args.repeats, args.hidden, threads)
        print_table(
            f"masked-AE pretraining ({n_params:,} parameters) on CPU, {threads} thread(s): "
            f"{args.samples} windows x 105 x 11 streamed + augmented, batch {BATCH}, "
            f"{args.epochs} epoch(s), best of {args.repeats}",
            rows,
        )


if __name__ == "__main__":
    main()
