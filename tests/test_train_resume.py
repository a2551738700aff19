"""Interrupted runs resume (issue 16): ``run_training`` keeps checkpoints while it works
(its pinned config, every finished fold, each neural fit's last epoch) and
``run_training(registry, None, resume=RUN)`` (``moola train --resume RUN``) continues an
interrupted run to the predictions and weights an uninterrupted run gives on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.train import TrainConfig, run_training
from moola.tracking.runs import RunStore
from moola.training.callbacks import Callback
from tests.test_cli import run
from tests.test_train_feature_windows import LENGTH, SPEC
from tests.test_train_feature_windows import windows as windows


class _Kill(Callback):
    """Interrupts the ``fit``-th fit (1-based) at the end of epoch ``epoch``."""

    def __init__(self, fit: int, epoch: int) -> None:
        self.fit, self.epoch, self.fits = fit, epoch, 0

    def on_train_start(self, state) -> None:
        self.fits += 1

    def on_epoch_end(self, state) -> bool:
        if self.fits == self.fit and state.epoch + 1 >= self.epoch:
            raise KeyboardInterrupt
        return False


class _Epochs(Callback):
    """Counts the fits and epochs it sees."""

    def __init__(self) -> None:
        self.fits, self.epochs = 0, 0

    def on_train_start(self, state) -> None:
        self.fits += 1

    def on_epoch_end(self, state) -> bool:
        self.epochs += 1
        return False


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.bin", weights_only=True)["state_dict"]


def _resumed_equals_uninterrupted(registry: Registry, config: TrainConfig, kill: _Kill):
    everything = _Epochs()
    whole = run_training(registry, config, callbacks=[everything])
    store = RunStore(registry.root)
    assert store.interrupted_runs() == []  # a recorded run leaves no checkpoints
    with pytest.raises(KeyboardInterrupt):
        run_training(registry, config, callbacks=[kill])
    (run_id,) = store.interrupted_runs()
    rest = _Epochs()
    resumed = run_training(registry, None, resume=run_id, callbacks=[rest])
    # Only the work left was done: the killed fit went on from its last saved epoch and
    # finished fits were not trained again.
    assert rest.epochs < everything.epochs
    assert resumed.run_id == run_id and store.interrupted_runs() == []
    first = registry.load_table("predictions", whole.run_id)
    again = registry.load_table("predictions", resumed.run_id)
    numbers = [c for c in first.columns if c.startswith(("p_", "pred_"))]
    assert numbers
    np.testing.assert_array_equal(first[numbers].to_numpy(), again[numbers].to_numpy())
    a, b = _weights(whole.run_dir), _weights(resumed.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.manifest["config_hash"] == whole.manifest["config_hash"]
    return everything, rest


def test_an_out_of_fold_run_killed_in_its_second_fold_resumes_to_the_same_run(windows):
    config = TrainConfig(
        model="bilstm",
        dataset="fw",
        split="wf",
        params={"epochs": 3, "hidden": 8},
        n_bootstrap=10,
    )
    everything, rest = _resumed_equals_uninterrupted(windows, config, _Kill(fit=2, epoch=2))
    assert rest.fits == everything.fits - 1  # the first fold was loaded, not refitted


def test_a_regression_run_killed_in_its_final_fit_resumes_to_the_same_run(windows):
    ref = build_feature_windows(
        windows, "mkt", SPEC, name="fr", length=LENGTH, labels="mkt", targets=["forward_return"]
    )
    make_and_store_split(windows, ref, "walk-forward", name="frw", n_splits=2)
    config = TrainConfig(
        model="bilstm",
        dataset="fr",
        split="frw",
        params={"epochs": 3, "hidden": 8},
        n_bootstrap=10,
    )
    _resumed_equals_uninterrupted(windows, config, _Kill(fit=3, epoch=2))


def test_resume_names_what_can_be_resumed_and_refuses_other_flags(capsys, windows):
    root = str(windows.root)
    code, _, err = run(capsys, "--data-root", root, "train", "--resume", "nope")
    assert code != 0 and "No interrupted run 'nope'" in err
    code, _, err = run(
        capsys, "--data-root", root, "train", "--resume", "nope", "--model", "bilstm"
    )
    assert code != 0 and "drop --model" in err
    with pytest.raises(ConfigError, match="finished"):
        config = TrainConfig(model="logistic_regression", dataset="fw", split="wf", n_bootstrap=5)
        done = run_training(windows, config)
        run_training(windows, None, resume=done.run_id)
