"""NeuralEstimator(task="multitask"): one cnn_lstm_attention head per target, learned
uncertainty weighting recorded per epoch, save/load, and the refusals (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from moola.core.errors import ConfigError
from moola.models import create
from moola.models.nn import MultiTaskLoss, build_module
from moola.training.callbacks import Callback, TrainingState
from moola.training.checkpoints import EpochCheckpoints, load_checkpoint
from moola.training.losses import MultiTaskNet, MultiTaskStep
from moola.training.neural import NeuralEstimator

HEADS = {"direction": 2, "volatility": "regression", "regime": 3}
SMALL = {
    "conv_channels": (8,),
    "kernel_sizes": (3,),
    "lstm_hidden": 8,
    "attention_dim": 8,
    "fc": (8,),
    "dropout": 0.0,
}
FAST = {"epochs": 6, "batch_size": 32, "lr": 1e-2, "seed": 0}


def _data(n: int = 160, t: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``(n, t, 3)`` and targets ``(n, 3)`` in head order: direction (sign of the
    last step's channel 0), volatility (20 + 4 |channel 1|) and regime (channel 2 in thirds)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, t, 3))
    last = X[:, -1, :]
    Y = np.stack(
        [
            (last[:, 0] > 0).astype(float),
            20.0 + 4.0 * np.abs(last[:, 1]),
            np.digitize(last[:, 2], [-0.43, 0.43]).astype(float),
        ],
        axis=1,
    )
    return X, Y


@pytest.fixture(scope="module")
def fitted() -> tuple[NeuralEstimator, np.ndarray, np.ndarray]:
    X, Y = _data()
    est = create("cnn_lstm_attention", task="multitask", heads=HEADS, **SMALL, **FAST)
    est.fit(X[:120], Y[:120], X_val=X[120:], y_val=Y[120:])
    return est, X, Y


def test_each_head_s_loss_and_weight_is_recorded_every_epoch(fitted):
    est, _, _ = fitted
    history = est.head_history_
    epochs = est.training_summary_.epochs_run
    assert history["heads"] == list(HEADS)
    for key in ("head_losses_history", "val_head_losses_history", "head_weights_history"):
        assert list(history[key]) == list(HEADS)
        assert all(len(values) == epochs for values in history[key].values()), key
    assert history["initial_head_weights"] == {head: 1.0 for head in HEADS}  # s_h = 0
    moved = [abs(w[-1] - 1.0) for w in history["head_weights_history"].values()]
    assert max(moved) > 1e-3  # the log-variances learned
    assert history["head_losses_history"]["direction"][-1] < np.log(2)  # below chance
    assert est.head_losses_history_ == history["head_losses_history"]
    assert est.head_weights_history_ == history["head_weights_history"]


def test_predictions_per_head_and_together(fitted):
    est, X, Y = fitted
    heads = est.predict_heads(X[120:])
    assert list(heads) == list(HEADS)
    assert heads["direction"].shape == (40, 2) and heads["regime"].shape == (40, 3)
    for name in ("direction", "regime"):
        np.testing.assert_allclose(heads[name].sum(axis=1), 1.0, atol=1e-12)
    volatility = heads["volatility"]
    assert volatility.shape == (40,) and volatility.dtype == np.float64
    assert abs(volatility.mean() - Y[120:, 1].mean()) < Y[:, 1].std()  # target units
    together = est.predict(X[120:])
    assert together.shape == (40, 3) and together.dtype == np.float64
    np.testing.assert_array_equal(together[:, 0], heads["direction"].argmax(axis=1))
    np.testing.assert_array_equal(together[:, 1], volatility)
    with pytest.raises(ConfigError, match="predict_heads"):
        est.predict_proba(X)


def test_save_and_load_give_identical_predictions(fitted, tmp_path):
    est, X, _ = fitted
    path = tmp_path / "multi.pt"
    est.save(path)
    loaded = NeuralEstimator.load(path)
    assert loaded.task == "multitask"
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    for name, values in est.predict_heads(X).items():
        np.testing.assert_array_equal(loaded.predict_heads(X)[name], values)
    assert loaded.head_history_ == est.head_history_
    payload = torch.load(path, weights_only=True)
    assert payload["targets"]["heads"] == HEADS
    assert "net.heads.volatility.net.0.weight" not in payload["state_dict"]  # the bare net


def test_the_step_weights_each_head_by_its_learned_uncertainty():
    """The multi-task step's loss is sum_h exp(-s_h) L_h + s_h, halved for regression heads,
    with cross-entropy for class heads and MSE for regression heads."""
    torch.manual_seed(0)
    net = MultiTaskNet(
        build_module("cnn_lstm_attention", input_dim=3, heads=HEADS, **SMALL),
        MultiTaskLoss.for_heads(HEADS),
    )
    with torch.no_grad():
        net.loss.log_vars.copy_(torch.tensor([0.3, -0.2, 0.5]))
    X, Y = _data(n=16)
    x, y = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(Y, dtype=torch.float32)
    step = MultiTaskStep(HEADS)
    net.eval()
    with torch.no_grad():
        total = step(net, (x, y))
        out = net(x)
    s = net.loss.log_vars
    parts = [
        torch.exp(-s[0]) * F.cross_entropy(out["direction"], y[:, 0].long()) + s[0],
        0.5 * (torch.exp(-s[1]) * F.mse_loss(out["volatility"], y[:, 1]) + s[1]),
        torch.exp(-s[2]) * F.cross_entropy(out["regime"], y[:, 2].long()) + s[2],
    ]
    torch.testing.assert_close(total, sum(parts))
    assert step.epoch_losses("train") is None  # eval mode: counted as validation
    assert list(step.epoch_losses("val")) == list(HEADS)


def test_other_architectures_are_refused_naming_cnn_lstm_attention():
    X, Y = _data(n=20)
    with pytest.raises(ConfigError, match="Models that support multitask: cnn_lstm_attention"):
        create("bilstm", task="multitask")
    with pytest.raises(ConfigError, match="cnn_lstm_attention"):
        NeuralEstimator("transformer", task="multitask").fit(X, Y)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({}, "task='multitask' needs heads"),
        ({"heads": {"direction": 2}}, "at least two heads"),
        ({"heads": {"direction": 2, "regime": 1}}, "head 'regime' must be 'regression'"),
        ({"heads": {"direction": 2, "vol": "regresion"}}, "head 'vol' must be 'regression'"),
        ({"heads": HEADS, "loss": "mse"}, "loss='mse' cannot train a multi-task model"),
        ({"heads": HEADS, "n_classes": 3}, "n_classes is not used"),
    ],
)
def test_a_bad_heads_spec_or_loss_is_refused(params, words):
    X, Y = _data(n=20)
    with pytest.raises(ConfigError, match=words):
        create("cnn_lstm_attention", task="multitask", **params)
    with pytest.raises(ConfigError, match=words):
        NeuralEstimator("cnn_lstm_attention", task="multitask", **params).fit(X, Y)


def test_heads_without_task_multitask_are_refused():
    with pytest.raises(ConfigError, match="pass task='multitask'"):
        create("cnn_lstm_attention", heads=HEADS)


def test_targets_that_do_not_fit_the_heads_are_refused_naming_the_head():
    X, Y = _data(n=20)
    est = NeuralEstimator("cnn_lstm_attention", task="multitask", heads=HEADS, **SMALL, epochs=1)
    with pytest.raises(ConfigError, match=r"one column per head .* got shape \(20, 2\)"):
        est.fit(X, Y[:, :2])
    bad = Y.copy()
    bad[0, 2] = 3.0
    with pytest.raises(ConfigError, match=r"column 2 \(head 'regime', 3 classes\)"):
        est.fit(X, bad)
    bad = Y.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ConfigError, match=r"rows \[4\]"):
        est.fit(X, bad)


class _Killed(Exception):
    pass


class _KillAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state: TrainingState) -> bool:
        if state.epoch == self.epoch:
            raise _Killed
        return False


def test_a_killed_fit_resumes_to_the_uninterrupted_weights_and_loss_weights(tmp_path):
    """resume_from(last.pt's snapshot): the loss weights resume with the network (they are
    trained as one module), so the resumed fit ends where the uninterrupted one does."""
    X, Y = _data(n=48)
    params = {"task": "multitask", "heads": HEADS, **SMALL, "epochs": 4, "batch_size": 16}
    full = NeuralEstimator("cnn_lstm_attention", **params).fit(X, Y)
    killed = NeuralEstimator("cnn_lstm_attention", **params)
    killed.with_callbacks(EpochCheckpoints(tmp_path), _KillAfter(2))
    with pytest.raises(_Killed):
        killed.fit(X, Y)
    resumed = NeuralEstimator("cnn_lstm_attention", **params)
    resumed.resume_from(load_checkpoint(tmp_path / "last.pt")).fit(X, Y)
    np.testing.assert_array_equal(resumed.predict(X), full.predict(X))
    weights = full.head_weights_history_
    assert {h: w[-2:] for h, w in weights.items()} == resumed.head_weights_history_
    assert resumed.training_summary_.train_loss_history == full.training_summary_.train_loss_history
