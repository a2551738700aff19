"""Progress of long runs: epoch counting across fits, the plain display, thread limits."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from moola.cli._progress import eta_text, stage_display
from moola.core.errors import ConfigError
from moola.core.threads import limit_threads, thread_settings
from moola.training.callbacks import EpochProgress, ProgressUpdate
from moola.training.trainer import Trainer


def _fit(progress: EpochProgress, *, epochs: int, patience: int | None, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    trainer = Trainer(epochs=epochs, batch_size=8, patience=patience, seed=seed, lr=0.5)
    # Validation on noise: its loss rises, so patience=1 stops after the second epoch.
    X_val = rng.normal(size=(20, 3)).astype(np.float32)
    y_val = rng.integers(0, 2, size=20)
    trainer.fit(nn.Linear(3, 2), X, y, X_val, y_val, callbacks=[progress])


def test_epoch_progress_counts_epochs_of_all_fits_against_a_total_known_up_front():
    updates: list[ProgressUpdate] = []
    progress = EpochProgress(3, 4, updates.append)
    for seed in range(3):
        _fit(progress, epochs=4, patience=None, seed=seed)
    assert [u.done for u in updates] == list(range(1, 13))
    assert {u.total for u in updates} == {12}
    assert updates[0].detail.startswith("fit 1/3 epoch 1/4 train ")
    assert " val " in updates[0].detail
    assert updates[-1].detail.startswith("fit 3/3 epoch 4/4 ")


def test_epoch_progress_counts_an_early_stopped_fit_as_finished():
    updates: list[ProgressUpdate] = []
    progress = EpochProgress(2, 10, updates.append)
    _fit(progress, epochs=10, patience=1)
    stopped = updates[-1]
    assert stopped.done == 10 and "stopped early" in stopped.detail
    assert len(updates) < 11  # it did stop early: fewer epochs than the fit allowed
    _fit(progress, epochs=10, patience=1, seed=1)
    assert updates[-1].done == updates[-1].total == 20
    done = [u.done for u in updates]
    assert done == sorted(done)  # never runs backwards


def test_epoch_progress_refuses_an_empty_plan():
    with pytest.raises(ConfigError, match="fits >= 1"):
        EpochProgress(0, 3, lambda _: None)


def test_plain_display_writes_one_timestamped_line_per_stage_and_update():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    with stage_display(console) as display:
        display.stage("training [model] x")
        display.update(ProgressUpdate(1, 4, "fit 1/2 epoch 1/2 train 0.5"))
        assert buffer.getvalue().count("\n") == 2  # written at once, not at the end
        display.stage("backtesting")
    lines = buffer.getvalue().splitlines()
    stamped = re.compile(r"^\d\d:\d\d:\d\d \+ *\d+\.\ds (.*)$")
    texts = [stamped.match(line)[1] for line in lines]  # type: ignore[index]
    assert texts[0] == "training [model] x"  # brackets are text, not markup
    assert texts[1].startswith("  fit 1/2 epoch 1/2 train 0.5 [1/4, ETA ")
    assert texts[2:] == ["backtesting", "done"]


def test_a_block_that_fails_ends_stopped_not_done():
    for terminal in (False, True):
        buffer = io.StringIO()
        console = Console(file=buffer, force_terminal=terminal, width=200)
        with pytest.raises(ConfigError), stage_display(console) as display:
            display.stage("paper session: BTC-USD")
            raise ConfigError("bad bar")
        out = buffer.getvalue()
        assert "stopped" in out and "done" not in out


def test_eta_text_reads_as_a_person_would():
    assert [eta_text(s) for s in (0, 42.4, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]


def test_limit_threads_sets_torch_threads_for_the_block_and_restores_them():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with limit_threads(target) as inside:
        assert torch.get_num_threads() == target == inside["torch"]
    assert torch.get_num_threads() == before == thread_settings()["torch"]
    with pytest.raises(ConfigError, match="at least 1"), limit_threads(0):
        pass
