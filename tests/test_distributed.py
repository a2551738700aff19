"""Data-parallel training in two CPU processes (gloo): after every optimiser step the
weights are identical on both ranks, and the losses follow a single-process run with the
same global batch.

Tolerance: the two ranks' gradients are summed in another order than one process sums
its batch, so weights and losses differ from the single-process run by float32 rounding
only; over the 24 steps here that stays far below rtol 1e-4 (a wrong split of the batch or
a missing gradient sum moves the losses by percents)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from moola.core.errors import ConfigError
from moola.training import distributed
from moola.training.trainer import Trainer

EPOCHS = 3
RTOL = 1e-4


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (130, 6)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    return X[:100], y[:100], X[100:], y[100:]


def _module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


class _Source:
    """A lazily built training set (a ``BatchSource``, as the lazy window dataset is):
    each process builds only the rows of its share of a batch."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.rows_built = 0

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, indices: torch.Tensor, key: int) -> tuple[torch.Tensor, ...]:
        self.rows_built += len(indices)
        return self.X[indices], self.y[indices]


class _WeightsEachStep:
    """Records a hash of the weights after every optimiser step and the step's loss."""

    def __init__(self) -> None:
        self.hashes: list[str] = []
        self.losses: list[float] = []

    def on_train_start(self, state) -> None:
        return None

    def on_step(self, state, loss: float) -> bool:
        digest = hashlib.sha256()
        for tensor in state.module.state_dict().values():
            digest.update(tensor.detach().contiguous().numpy().tobytes())
        self.hashes.append(digest.hexdigest())
        self.losses.append(loss)
        return False

    def on_epoch_end(self, state) -> bool:
        return False

    def on_train_end(self, state) -> None:
        return None


def _fit(source: bool) -> dict:
    """One fit (arrays with validation, or a batch source); what each rank compares."""
    X, y, X_val, y_val = _data()
    module, seen = _module(), _WeightsEachStep()
    trainer = Trainer(epochs=EPOCHS, batch_size=12, lr=0.05, device="cpu", seed=3)
    if source:
        data = _Source(X, y)
        step = trainer.build_step(y, 3)
        summary = trainer.run(module, data, step=step, callbacks=[seen])
        rows = data.rows_built
    else:
        summary = trainer.fit(module, X, y, X_val, y_val, callbacks=[seen], n_classes=3)
        rows = None
    return {
        "hashes": seen.hashes,
        "step_losses": seen.losses,
        "train": list(summary.train_loss_history),
        "val": list(summary.val_loss_history),
        "rows_built": rows,
    }


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    """One rank: join the group as torchrun would have set it up, fit twice, report."""
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    context = distributed.init_from_env("cpu")
    assert context is not None and context.backend == "gloo" and context.rank == rank
    result = {"arrays": _fit(source=False), "source": _fit(source=True)}
    distributed.destroy()
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.spawn(_rank_main, args=(2, _free_port(), str(out)), nprocs=2)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize("kind", ["arrays", "source"])
def test_weights_are_identical_on_both_ranks_after_every_step(two_ranks, kind) -> None:
    first, second = (two_ranks[r][kind] for r in range(2))
    assert len(first["hashes"]) == 9 * EPOCHS  # ceil(100 / 12) global batches per epoch
    assert first["hashes"] == second["hashes"]
    assert first["train"] == second["train"] and first["val"] == second["val"]


@pytest.mark.parametrize("kind", ["arrays", "source"])
def test_losses_follow_a_single_process_run_with_the_same_global_batch(two_ranks, kind) -> None:
    single = _fit(source=kind == "source")
    ranked = two_ranks[0][kind]
    np.testing.assert_allclose(ranked["step_losses"], single["step_losses"], rtol=RTOL)
    np.testing.assert_allclose(ranked["train"], single["train"], rtol=RTOL)
    np.testing.assert_allclose(ranked["val"], single["val"], rtol=RTOL)
    if kind == "source":  # each process built only its share of every batch
        built = [two_ranks[r]["source"]["rows_built"] for r in range(2)]
        assert sum(built) == single["rows_built"] and max(built) < single["rows_built"]


def test_without_a_group_everything_is_one_process(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env() is None
    assert distributed.current() is None and distributed.is_main_process()
    assert distributed.sum_over_ranks([1.5, 2]) == [1.5, 2.0]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        distributed.init_from_env("cpu")


def test_launch_command_runs_moola_through_torchrun() -> None:
    command = distributed.launch_command(2, ["pretrain", "masked-ae", "--nproc", "2"])
    assert command[:4] == [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    assert "--nproc-per-node=2" in command
    assert command[-7:] == ["-m", "--", "moola.cli.main", "pretrain", "masked-ae", "--nproc", "2"]
    with pytest.raises(ConfigError, match="at least 2"):
        distributed.launch_command(1, [])


@pytest.mark.slow
def test_moola_pretrain_nproc_2_trains_in_two_processes_and_writes_once(tmp_path) -> None:
    """``moola pretrain masked-ae --nproc 2`` through torchrun: one artifact (rank 0's),
    its card says two processes trained it, and no checkpoint is left behind.

    Slow (about 25 s on 2 busy cores: three interpreters import torch and moola), and the
    only test of the whole launch: flag, torchrun, process group, rank-0 writing."""
    import subprocess

    from moola.data.registry import Registry
    from moola.pipeline.datasets import synthesize_raw
    from moola.pretrain import artifacts

    registry = Registry(tmp_path / "root")
    raw, _ = synthesize_raw(registry, "mkt", n_bars=2000, seed=9)
    registry.write_unlabeled("unl", raw, length=105, stride=5)
    args = [
        "--data-root", str(registry.root), "pretrain", "masked-ae", "--unlabeled", "unl",
        "--epochs", "2", "--batch-size", "16", "--hidden", "4", "--layers", "1",
        "--max-windows", "48", "--device", "cpu", "--no-augment", "--nproc", "2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "moola.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    written = sorted(p.name for p in artifacts.encoder_dir(registry.root).rglob("*") if p.is_file())
    assert written == ["bilstm_mae_rel11_v1.json", "bilstm_mae_rel11_v1.pt"]
    card = json.loads((artifacts.encoder_dir(registry.root) / written[0]).read_text())
    assert card["processes"] == 2 and card["epochs"] == 2
    assert all(np.isfinite(card["loss_curve"]))
    assert done.stdout.count("bilstm_mae_rel11_v1") >= 1  # rank 0 printed the card, once
    assert done.stdout.count("artifact ") <= 1


@pytest.mark.slow
def test_moola_train_nproc_2_records_one_run(tmp_path) -> None:
    """``moola train --nproc 2`` through torchrun: both processes train every fit, rank 0
    alone records the run (one result line, one run folder) and no checkpoints remain."""
    import subprocess

    from tests.tune._study_lab import make_lab

    registry = make_lab(tmp_path / "root")
    args = [
        "--data-root", str(registry.root), "train", "--model", "simple_lstm", "--dataset",
        "pat", "--split", "kf", "--bootstrap", "10", "--params",
        '{"epochs": 2, "hidden": 4, "device": "cpu"}', "--nproc", "2",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "moola.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = (registry.root / "experiment_results.jsonl").read_text().splitlines()
    assert len(lines) == 1
    runs = [p for p in (registry.root / "artifacts" / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1 and json.loads(lines[0])["run_id"] == runs[0].name
    checkpoints = registry.root / "artifacts" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())
