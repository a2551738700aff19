"""The training loop: early stopping, schedules, losses, clipping, determinism."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from moola.core.errors import ConfigError
from moola.training.callbacks import (
    Callback,
    CheckpointCallback,
    EarlyStopping,
    ProgressCallback,
    TrainingState,
)
from moola.training.losses import FocalLoss, balanced_class_weights, build_loss
from moola.training.trainer import Trainer, TrainerConfig, scheduled_lr


class TinyNet(nn.Module):
    """(B, T, D) -> (B, K): a GRU over the window with dropout, small enough to be fast."""

    def __init__(self, input_dim: int = 3, n_classes: int = 2, hidden: int = 8) -> None:
        super().__init__()
        self.gru = nn.GRU(input_dim, hidden, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(x)  # (B, T, H)
        return self.out(self.drop(h[:, -1]))  # (B, K)


def _toy_data(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6, 3)).astype(np.float32)
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    return X, y


class Recorder(Callback):
    """Keeps each epoch's state values and a copy of the weights."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, state: TrainingState) -> bool:
        self.lrs.append(state.lr)
        self.weights.append(copy.deepcopy(state.module.state_dict()))
        return False


class RecordingAdam(torch.optim.Adam):
    """Adam that notes the global gradient norm and the learning rate of every step."""

    def __init__(self, params, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self.grad_norms: list[float] = []
        self.step_lrs: list[float] = []

    def step(self, closure=None):
        grads = [
            p.grad for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        self.grad_norms.append(
            float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
        )
        self.step_lrs.append(self.param_groups[0]["lr"])
        return super().step(closure)


class RecordingTrainer(Trainer):
    def build_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        self.optimizer = RecordingAdam(module.parameters(), lr=self.config.lr)
        return self.optimizer


# -- early stopping ----------------------------------------------------------------------


def _fake_states(val_losses: list[float]) -> list[TrainingState]:
    module = nn.Linear(1, 1)
    return [
        TrainingState(
            module=module, epochs=len(val_losses), steps_per_epoch=1, epoch=i + 1, val_loss=v
        )
        for i, v in enumerate(val_losses)
    ]


def _stop_epoch(callback: EarlyStopping, val_losses: list[float]) -> int | None:
    states = _fake_states(val_losses)
    callback.on_train_start(states[0])
    for state in states:
        if callback.on_epoch_end(state):
            return state.epoch
    return None


def test_early_stopping_counts_epochs_without_improvement():
    # Improvements at epochs 1, 2 and 4; then 5, 6, 7 do not improve: patience 3 -> stop at 7.
    losses = [1.0, 0.8, 0.85, 0.79, 0.80, 0.81, 0.82, 0.5]
    callback = EarlyStopping(patience=3)
    assert _stop_epoch(callback, losses) == 7
    assert callback.stopped_epoch == 7


def test_early_stopping_min_delta_ignores_small_improvements():
    # With min_delta 0.05, epoch 4's 0.79 is not below 0.8 - 0.05: epochs 3, 4, 5 count.
    losses = [1.0, 0.8, 0.85, 0.79, 0.80, 0.81, 0.82]
    assert _stop_epoch(EarlyStopping(patience=3, min_delta=0.05), losses) == 5


def test_early_stopping_never_fires_while_improving():
    assert _stop_epoch(EarlyStopping(patience=1), [5.0, 4.0, 3.0, 2.0]) is None


class PatternStep:
    """Training loss from the module (so it learns); validation loss from a fixed pattern."""

    def __init__(self, val_pattern: list[float]) -> None:
        self.val_pattern = val_pattern
        self.calls = 0

    def __call__(self, module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        (x,) = batch
        if module.training:
            return (module(x) - 1.0).pow(2).mean()
        value = self.val_pattern[self.calls]
        self.calls += 1
        return torch.tensor(value)


def test_trainer_stops_early_and_restores_best_weights():
    pattern = [3.0, 2.0, 1.0, 1.5, 1.2, 1.1, 0.1, 0.1]
    x = torch.randn(16, 2)
    module = nn.Linear(2, 1)
    recorder = Recorder()
    trainer = Trainer(epochs=20, patience=2, batch_size=8, lr=0.05)
    summary = trainer.run(module, [x], [x[:4]], step=PatternStep(pattern), callbacks=[recorder])
    # Best at epoch 3; epochs 4 and 5 do not improve: patience 2 stops after epoch 5.
    assert summary.epochs_run == 5
    assert summary.early_stop_epoch == 5
    assert summary.best_epoch == 3
    assert summary.best_val_loss == pytest.approx(1.0)
    assert summary.val_loss_history == pytest.approx((3.0, 2.0, 1.0, 1.5, 1.2))
    assert len(summary.train_loss_history) == 5
    final = module.state_dict()
    for key, value in recorder.weights[2].items():  # epoch 3's weights are back
        assert torch.equal(final[key], value)
    assert not torch.equal(final["weight"], recorder.weights[4]["weight"])


def test_fit_without_validation_runs_every_epoch():
    X, y = _toy_data(20)
    summary = Trainer(epochs=3, batch_size=8).fit(TinyNet(), X, y)
    assert summary.epochs_run == 3
    assert summary.early_stop_epoch is None
    assert summary.best_val_loss is None
    assert summary.val_loss_history == ()
    assert summary.n_train == 20
    assert summary.device == "cpu"
    assert summary.samples_per_s > 0


def test_a_callback_can_stop_the_loop():
    class StopAfterTwo(Callback):
        def on_epoch_end(self, state: TrainingState) -> bool:
            return state.epoch == 2

    X, y = _toy_data(16)
    summary = Trainer(epochs=10, batch_size=8).fit(TinyNet(), X, y, callbacks=[StopAfterTwo()])
    assert summary.epochs_run == 2
    assert summary.early_stop_epoch == 2


def test_a_step_callback_sees_every_loss_and_can_stop_mid_epoch():
    class StopAtStep(Callback):
        def __init__(self, last: int) -> None:
            self.last, self.steps, self.losses = last, [], []

        def on_step(self, state: TrainingState, loss: float) -> bool:
            self.steps.append(state.step)
            self.losses.append(loss)
            return state.step == self.last

    X, y = _toy_data(48)  # batches of 8: 6 optimiser steps per epoch
    watcher = StopAtStep(last=9)
    summary = Trainer(epochs=10, batch_size=8).fit(TinyNet(), X, y, callbacks=[watcher])
    assert watcher.steps == list(range(1, 10))  # called after each step, stopped at step 9
    assert summary.epochs_run == 2 and summary.early_stop_epoch == 2
    # The stopped epoch's loss is the mean over the 3 steps it ran, not over 6.
    assert summary.train_loss_history[1] == pytest.approx(np.mean(watcher.losses[6:]), rel=1e-5)


def test_a_duck_typed_callback_without_on_step_still_runs():
    class EpochsOnly:  # not a Callback subclass: the three older hooks only
        def __init__(self) -> None:
            self.epochs: list[int] = []

        def on_train_start(self, state: TrainingState) -> None: ...

        def on_epoch_end(self, state: TrainingState) -> bool:
            self.epochs.append(state.epoch)
            return False

        def on_train_end(self, state: TrainingState) -> None: ...

    X, y = _toy_data(16)
    watcher = EpochsOnly()
    Trainer(epochs=2, batch_size=8).fit(TinyNet(), X, y, callbacks=[watcher])
    assert watcher.epochs == [1, 2]


# -- learning-rate schedule --------------------------------------------------------------


def test_warmup_then_cosine_values_at_known_steps():
    kwargs = {"base_lr": 1e-3, "warmup_steps": 4, "total_steps": 14}
    assert scheduled_lr(0, **kwargs) == pytest.approx(0.25e-3)
    assert scheduled_lr(3, **kwargs) == pytest.approx(1e-3)
    assert scheduled_lr(4, **kwargs) == pytest.approx(1e-3)  # cosine starts at the peak
    assert scheduled_lr(9, **kwargs) == pytest.approx(0.5e-3)  # half way: cos(pi/2) = 0
    assert scheduled_lr(13, **kwargs) == pytest.approx(0.5e-3 * (1 + math.cos(0.9 * math.pi)))
    assert scheduled_lr(13, **kwargs, schedule="constant") == pytest.approx(1e-3)


def test_optimizer_uses_the_scheduled_lr():
    # 8 samples / batch 4 = 2 steps per epoch; 1 warm-up epoch = 2 steps; 8 steps in all.
    X, y = _toy_data(8)
    trainer = RecordingTrainer(epochs=4, batch_size=4, lr=0.01, warmup_epochs=1)
    trainer.fit(TinyNet(), X, y)
    cosine = [0.5 * (1 + math.cos(math.pi * k / 6)) for k in range(6)]
    expected = [0.005, 0.01] + [0.01 * c for c in cosine]
    assert trainer.optimizer.step_lrs == pytest.approx(expected)


# -- losses ------------------------------------------------------------------------------


def test_balanced_class_weights_by_hand():
    # 3 samples, 2 classes, counts (1, 2): w = 3 / (2 * count) = (1.5, 0.75).
    assert balanced_class_weights(np.array([0, 1, 1]), 2) == pytest.approx([1.5, 0.75])
    # A class absent from y is neutral (weight 1).
    assert balanced_class_weights(np.array([0, 0, 1, 1]), 3) == pytest.approx([2 / 3, 2 / 3, 1])
    with pytest.raises(ConfigError, match=r"0\.\.1"):
        balanced_class_weights(np.array([0, 2]), 2)


def test_class_weighted_loss_equals_hand_computed_value():
    y = np.array([0, 1, 1])
    step = Trainer(class_weights="balanced").build_step(y)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # Per-sample cross-entropy: log(1 + e^-2), log(1 + e^-1), log 2; weights 1.5, 0.75, 0.75.
    per_sample = [math.log1p(math.exp(-2)), math.log1p(math.exp(-1)), math.log(2)]
    expected = (1.5 * per_sample[0] + 0.75 * per_sample[1] + 0.75 * per_sample[2]) / 3.0
    assert float(step.loss(logits, torch.as_tensor(y))) == pytest.approx(expected, rel=1e-6)


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 3, generator=gen)
    target = torch.randint(0, 3, (20,), generator=gen)
    weight = torch.tensor([0.5, 2.0, 1.0])
    plain = nn.functional.cross_entropy(logits, target)
    weighted = nn.functional.cross_entropy(logits, target, weight=weight)
    assert float(FocalLoss(0.0)(logits, target)) == pytest.approx(float(plain), rel=1e-6)
    assert float(FocalLoss(0.0, weight)(logits, target)) == pytest.approx(float(weighted), rel=1e-6)


def test_focal_loss_down_weights_easy_samples_by_hand():
    # p_y = 1/2 -> (1 - 1/2)^2 * log 2.
    loss = FocalLoss(2.0)(torch.zeros(1, 2), torch.tensor([0]))
    assert float(loss) == pytest.approx(0.25 * math.log(2), rel=1e-6)


def test_bce_loss_uses_class_weights_as_pos_weight():
    loss = build_loss("bce", class_weights=np.array([1.0, 3.0]))
    # One positive sample with logit 0: pos_weight 3 * log 2.
    assert float(loss(torch.zeros(1, 1), torch.tensor([1.0]))) == pytest.approx(3 * math.log(2))
    with pytest.raises(ConfigError, match="one output per sample"):
        loss(torch.zeros(2, 2), torch.tensor([1.0, 0.0]))


# -- gradient clipping -------------------------------------------------------------------


def _large_gradient_problem() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(scale=50.0, size=(32, 4)).astype(np.float32)
    y = (X @ np.array([3.0, -2.0, 1.0, 5.0]) + 100.0).astype(np.float32)
    torch.manual_seed(0)
    return nn.Linear(4, 1), X, y


def test_grad_clipping_bounds_the_global_norm():
    module, X, y = _large_gradient_problem()
    unclipped = RecordingTrainer(epochs=2, batch_size=8, loss="mse", grad_clip=None)
    unclipped.fit(copy.deepcopy(module), X, y)
    assert max(unclipped.optimizer.grad_norms) > 10.0  # the problem does need clipping

    clipped = RecordingTrainer(epochs=2, batch_size=8, loss="mse", grad_clip=0.5)
    clipped.fit(module, X, y)
    assert len(clipped.optimizer.grad_norms) == 8
    assert max(clipped.optimizer.grad_norms) <= 0.5 + 1e-5


# -- determinism and hygiene -------------------------------------------------------------


def _fit_once(seed: int) -> tuple[dict[str, torch.Tensor], tuple[float, ...]]:
    X, y = _toy_data(40)
    torch.manual_seed(123)  # the same initial module each time
    module = TinyNet()
    summary = Trainer(epochs=3, batch_size=8, seed=seed).fit(module, X[:32], y[:32], X[32:], y[32:])
    return module.state_dict(), summary.train_loss_history + summary.val_loss_history


def test_same_seed_gives_identical_weights_and_losses():
    weights_a, losses_a = _fit_once(seed=7)
    weights_b, losses_b = _fit_once(seed=7)
    assert losses_a == losses_b
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key])
    _, losses_c = _fit_once(seed=8)
    assert losses_c != losses_a


def test_worker_processes_do_not_change_the_result():
    X, y = _toy_data(24)
    torch.manual_seed(1)
    module = TinyNet()
    in_process = Trainer(epochs=2, batch_size=8).fit(copy.deepcopy(module), X, y)
    with_workers = Trainer(epochs=2, batch_size=8, num_workers=1).fit(module, X, y)
    assert with_workers.train_loss_history == in_process.train_loss_history


def test_fit_leaves_the_callers_random_state_alone():
    X, y = _toy_data(16)
    module = TinyNet()
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    Trainer(epochs=1, batch_size=8).fit(module, X, y)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_config_rejects_unknown_and_invalid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'epoch'.*epochs"):
        Trainer(epoch=3)
    with pytest.raises(ConfigError, match="'lr'"):
        Trainer(lr=-1.0)
    with pytest.raises(Exception, match="frozen"):
        TrainerConfig().epochs = 3  # type: ignore[misc]
    assert Trainer(TrainerConfig(epochs=4), lr=0.1).config.epochs == 4


def test_fit_refuses_bad_inputs():
    X, y = _toy_data(16)
    X[3, 2, 1] = np.nan
    with pytest.raises(ConfigError, match="sample 3"):
        Trainer(epochs=1).fit(TinyNet(), X, y)
    with pytest.raises(ConfigError, match="16 samples but y has 15"):
        Trainer(epochs=1).fit(TinyNet(), _toy_data(16)[0], y[:15])
    with pytest.raises(ConfigError, match="integer class indices"):
        Trainer(epochs=1).fit(TinyNet(), _toy_data(16)[0], y + 0.5)


def test_diverging_run_raises_a_clear_error():
    module, X, y = _large_gradient_problem()
    with pytest.raises(ConfigError, match="diverged"):
        Trainer(epochs=3, loss="mse", grad_clip=None, lr=1e30).fit(module, X, y * 1e30)


# -- callbacks ---------------------------------------------------------------------------


def test_checkpoint_callback_saves_the_best_epoch(tmp_path):
    pattern = [3.0, 1.0, 2.0]
    module = nn.Linear(2, 1)
    recorder = Recorder()
    checkpoint = CheckpointCallback(tmp_path / "ckpt.pt")
    x = torch.randn(8, 2)
    Trainer(epochs=3, batch_size=4, lr=0.05, patience=None).run(
        module, [x], [x[:2]], step=PatternStep(pattern), callbacks=[recorder, checkpoint]
    )
    assert checkpoint.saved_epochs == [1, 2]
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert saved["format"] == "moola-checkpoint"
    assert saved["epoch"] == 2
    assert torch.equal(saved["state_dict"]["weight"], recorder.weights[1]["weight"])


def test_progress_callback_is_silent_off_a_terminal(capsys):
    X, y = _toy_data(16)
    Trainer(epochs=2, batch_size=8).fit(TinyNet(), X, y, callbacks=[ProgressCallback()])
    Trainer(epochs=1, batch_size=8).fit(TinyNet(), X, y, callbacks=[ProgressCallback(False)])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
