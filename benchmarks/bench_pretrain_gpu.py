"""GPU pretraining throughput: masked-AE windows/s with bf16 autocast, DataLoader workers
and pinned memory, and one epoch over 2.2M windows extrapolated from it.

Run, on a machine with a GPU (one command; nothing is downloaded, the corpus is synthetic)::

    .venv/bin/python benchmarks/bench_pretrain_gpu.py --out pretrain_gpu.json

On the lent device machines (an image with PyTorch and CUDA, no registry access), moola's
other dependencies travel as Python 3.12 wheels. Here, once, in the repository root::

    echo /.whl/ >> .git/info/exclude
    .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl annotated-types==0.8.0 databento-dbn==0.72.0 \
        pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 \
        TA-Lib==0.8.2 typing-inspection==0.4.5 zstandard==0.25.0

(14 MB: what ``import moola.pipeline`` needs beyond that image), then the one device command,
carrying ``.whl``::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
    PYTHONPATH=/tmp/site:src:benchmarks python3 benchmarks/bench_pretrain_gpu.py \
        --out $OUT/pretrain_gpu.json

On a CPU, ``--quick`` is a tiny run (a few seconds; the test suite runs it so the script
cannot rot): its figures say nothing about a GPU.

What runs is the loop ``moola pretrain masked-ae`` runs, built by the same code:
``MaskedAEPretrainConfig`` (its model, step and defaults: BiLSTM 2 x 128, AdamW, clip 1.0,
cosine schedule, mixed precision on), ``moola.pipeline.pretrain``'s Trainer for it (bf16
autocast on a CUDA device with bf16, else fp16 with a grad scaler; ``--workers``
DataLoader worker processes building the batches and pinned host memory, both on CUDA
only, as ``moola pretrain`` does) and ``UnlabeledWindows`` over a synthetic market's
105-bar windows (the corpus ``bench_pretrain.py`` streams: relative view, normalised,
augmented, 15% random masks). Each batch size in ``--batch-sizes`` trains ``--epochs``
epochs over ``--samples`` windows; the rate is the last epoch's (the first pays cuDNN's
set-up). "batches only" times the same batches through the same workers without the
model: the CPU side's ceiling.

Extrapolated: one epoch over 2.2M windows (the users' corpus) takes 2.2M / rate seconds.
Target: at most 60 s on one H100 or H200. The users' previous setup took 28 minutes for
pretraining plus fine-tuning on an RTX 4090.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from _common import print_table  # benchmarks/ is on sys.path when run as scripts
from bench_pretrain import _source as synthetic_corpus
from moola.core.atomic import atomic_write_text
from moola.core.devices import select_device
from moola.models.nn import count_parameters
from moola.pipeline.pretrain import MaskedAEPretrainConfig, _trainer
from moola.pretrain.data import UnlabeledWindows
from moola.training.callbacks import Callback, TrainingState

CORPUS = 2_200_000  # windows in one epoch of the users' pretraining corpus
TARGET_S = 60.0  # seconds per epoch on one H100/H200


class _EpochClock(Callback):
    """Wall-clock time at the start and at the end of every epoch (the device synced)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.marks: list[float] = []

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def on_train_start(self, state: TrainingState) -> None:
        self.marks.append(self._now())

    def on_epoch_end(self, state: TrainingState) -> bool:
        self.marks.append(self._now())
        return False


def train_rate(
    config: MaskedAEPretrainConfig, source: UnlabeledWindows, device: torch.device
) -> tuple[float, int]:
    """Windows/s of the last epoch of ``config.epochs`` over ``source``, and the model's
    parameter count."""
    torch.manual_seed(config.seed)
    parts = config.build(source.n_channels)
    clock = _EpochClock(device)
    _trainer(config, device).run(parts.module, source, step=parts.step, callbacks=[clock])
    return len(source) / (clock.marks[-1] - clock.marks[-2]), count_parameters(parts.module)


def batches_rate(config: MaskedAEPretrainConfig, source: UnlabeledWindows, device) -> float:
    """Windows/s of building one epoch's batches and copying them to ``device`` through the
    trainer's own batching (workers and pinned memory as configured), without the model."""
    trainer = _trainer(config, device)
    order = torch.randperm(len(source), generator=torch.Generator().manual_seed(config.seed))
    sizes = [config.batch_size] * (len(source) // config.batch_size)
    start = time.perf_counter()
    for batch in trainer._batches(source, order, sizes, device):
        del batch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return sum(sizes) / (time.perf_counter() - start)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every batch size's rate and extrapolated epoch, with the device and settings."""
    device = select_device(args.device)
    source = synthetic_corpus(args.samples)
    rows = []
    n_params = 0
    for batch_size in args.batch_sizes:
        config = MaskedAEPretrainConfig(
            epochs=args.epochs,
            batch_size=batch_size,
            hidden=args.hidden,
            decoder_hidden=args.hidden,
            num_workers=args.workers,
            device=device.type,
        )
        rate, n_params = train_rate(config, source, device)
        data = batches_rate(config, source, device)
        rows.append(
            {
                "batch": batch_size,
                "windows/s": rate,
                "epoch of 2.2M (s)": CORPUS / rate,
                "target met": "yes" if CORPUS / rate <= TARGET_S else "no",
                "batches only windows/s": data,
            }
        )
    cuda = device.type == "cuda"
    precision = "off (CPU: autocast and workers are CUDA only, as in moola pretrain)"
    if cuda:
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16 + grad scaler"
    return {
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({platform.processor()})",
        "torch": torch.__version__,
        "mixed_precision": precision,
        "workers": args.workers if cuda else 0,
        "pinned_memory": cuda,
        "windows": args.samples,
        "epochs": args.epochs,
        "hidden": args.hidden,
        "parameters": n_params,
        "corpus": CORPUS,
        "target_s": TARGET_S,
        "quick": args.quick,
        "rows": rows,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run for a CPU (seconds)")
    parser.add_argument("--samples", type=int, default=131_072, help="windows in the corpus")
    parser.add_argument("--epochs", type=int, default=2, help="the last one is timed")
    parser.add_argument("--batch-sizes", default="64,256,1024", help="comma-separated")
    parser.add_argument("--hidden", type=int, default=128, help="BiLSTM width (moola's 128)")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers (CUDA)")
    parser.add_argument("--device", default="auto", help="auto, cuda, cpu or mps")
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args, _ = parser.parse_known_args(argv)  # run_all.py passes every script the same flags
    if args.quick:
        args.samples, args.epochs, args.hidden, args.workers = 64, 2, 8, 1
        args.batch_sizes = "32"
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",")]
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is not timed)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    result = measure(args)
    print_table(
        f"masked-AE pretraining on {result['device']} ({result['parameters']:,} parameters): "
        f"{result['windows']:,} synthetic windows x 105 x 11, last of {result['epochs']} "
        f"epochs timed; mixed precision {result['mixed_precision']}, {result['workers']} "
        f"DataLoader worker(s), pinned memory {'on' if result['pinned_memory'] else 'off'}; "
        f"target: one epoch of {CORPUS:,} windows in at most {TARGET_S:.0f} s",
        result["rows"],
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n", overwrite=True)


if __name__ == "__main__":
    main()
