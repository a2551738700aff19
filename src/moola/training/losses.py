"""Training losses and the class weights that balance them.

With a few dozen to a few hundred labeled windows and a rare minority class (the class
that matters), an unweighted loss lets a model score well by always predicting the
majority. ``balanced_class_weights`` gives each class the same total weight, and the
focal loss (Lin et al., 2017) further down-weights samples the model already gets right.

Beyond the classifier's losses, the step functions of the other tasks live here:
``RegressionStep`` (MSE on standardised targets ``(B, K)``) and, for several heads at
once, ``MultiTaskStep`` over a ``MultiTaskNet`` (the network with its
``moola.models.nn.MultiTaskLoss``, learned uncertainty weighting: Kendall et al. 2018).

torch ships cross-entropy, BCE and MSE; the focal loss is written here because torch has
no multi-class focal loss (torchvision's ``sigmoid_focal_loss`` is binary and would add a
dependency). Its mean over a batch is normalised like weighted cross-entropy (by the sum
of the sample weights), so ``gamma=0`` gives exactly ``F.cross_entropy(weight=w)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moola.core.errors import ConfigError
from moola.models.training_params import LOSS_NAMES, LossName

__all__ = [
    "LOSS_NAMES",
    "FocalLoss",
    "LossName",
    "MultiTaskNet",
    "MultiTaskStep",
    "RegressionStep",
    "balanced_class_weights",
    "build_loss",
]


def balanced_class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Weights ``n / (K * count_k)`` per class, ``(K,)`` float64 (scikit-learn's "balanced").

    Every class then carries the same total weight in the loss. A class absent from ``y``
    gets weight 1: no training sample uses it, and it stays neutral in a validation loss.
    """
    labels = np.asarray(y).astype(np.int64, copy=False).ravel()
    if n_classes < 1:
        raise ConfigError(f"balanced_class_weights needs n_classes >= 1 (got {n_classes}).")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ConfigError(
            f"Labels must be class indices 0..{n_classes - 1}; found values from "
            f"{labels.min()} to {labels.max()}."
        )
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.ones(n_classes, dtype=np.float64)
    present = counts > 0
    weights[present] = labels.size / (n_classes * counts[present])
    return weights


class FocalLoss(nn.Module):
    """Multi-class focal loss ``-w_y (1 - p_y)^gamma log p_y``, weighted mean over the batch.

    ``logits`` are ``(B, K)``, ``target`` ``(B,)`` int64 class indices; ``weight`` is an
    optional ``(K,)`` per-class weight.
    """

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = float(gamma)
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)  # (B,)
        modulating = (1.0 - log_p.exp()).clamp_min(0.0).pow(self.gamma)  # (B,)
        if self.weight is None:
            return (-modulating * log_p).mean()
        sample_weight = self.weight[target]  # (B,)
        return (-sample_weight * modulating * log_p).sum() / sample_weight.sum()


class _BinaryLoss(nn.Module):
    """BCE-with-logits or MSE on one output per sample: ``(B,)`` or ``(B, 1)`` vs ``(B,)``."""

    def __init__(self, kind: Literal["bce", "mse"], pos_weight: torch.Tensor | None) -> None:
        super().__init__()
        self.kind = kind
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output = output.float().reshape(target.shape[0], -1)  # (B, 1)
        if output.shape[1] != 1:
            raise ConfigError(
                f"loss '{self.kind}' needs one output per sample, got {output.shape[1]}: "
                "build the module with one output (n_classes=1) or use loss=cross_entropy."
            )
        output = output[:, 0]  # (B,)
        target = target.float()
        if self.kind == "mse":
            return F.mse_loss(output, target)
        return F.binary_cross_entropy_with_logits(output, target, pos_weight=self.pos_weight)


def build_loss(
    name: str, *, class_weights: np.ndarray | None = None, focal_gamma: float = 2.0
) -> nn.Module:
    """The loss module for ``name``; ``class_weights`` is ``(K,)`` or ``None``.

    ``cross_entropy`` and ``focal`` take ``(B, K)`` logits and int64 targets. ``bce`` takes
    one logit per sample and targets in [0, 1]; class weights become its ``pos_weight``
    (``w1 / w0``). ``mse`` takes one output per sample and float targets; it has no class
    weights.
    """
    weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(weight=weight)
    if name == "focal":
        return FocalLoss(focal_gamma, weight)
    if name == "bce":
        if weight is not None and weight.numel() != 2:
            raise ConfigError(
                f"loss 'bce' is binary but got {weight.numel()} class weights; "
                "use loss=cross_entropy for more than two classes."
            )
        pos_weight = None if weight is None else (weight[1] / weight[0]).reshape(1)
        return _BinaryLoss("bce", pos_weight)
    if name == "mse":
        if weight is not None:
            raise ConfigError("loss 'mse' is a regression loss: set class_weights to None.")
        return _BinaryLoss("mse", None)
    raise ConfigError(f"Unknown loss {name!r}; use one of {', '.join(LOSS_NAMES)}.")


class RegressionStep(nn.Module):
    """Mean squared error of ``module(x)`` against float targets ``y`` ``(B, K)``.

    A step function for ``Trainer.run``: the outputs ``(B, K)`` (a dict output: its
    ``"direction"`` head, the single-task CNN-LSTM's) are compared with ``y`` reshaped to
    them; the mean runs over samples and targets.
    """

    def forward(self, module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch
        output = module(x)
        if isinstance(output, dict):
            output = output["direction"]
        output = output.float().reshape(y.shape[0], -1)  # (B, K)
        return F.mse_loss(output, y.float().reshape(output.shape))


class MultiTaskNet(nn.Module):
    """A multi-head module and its learned loss weights, trained as one module.

    ``Trainer`` optimises, clips, snapshots and restores the best epoch of the module it is
    given; holding the ``MultiTaskLoss`` (its log-variances ``s_h``) beside the network
    makes all of that include the loss weights, with no change to the loop.
    ``forward`` is the network's: ``{head: (B,) | (B, C)}``.
    """

    def __init__(self, net: nn.Module, loss: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.loss = loss

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(x)


class MultiTaskStep(nn.Module):
    """The step function of a multi-task fit (``Trainer.run(step=...)``) over a
    ``MultiTaskNet``: one loss per head, combined by the net's ``MultiTaskLoss``.

    ``heads`` maps each head to ``"regression"`` (MSE on its column of ``y``, which the
    caller standardises) or a class count (``loss``: ``cross_entropy`` or ``focal`` on its
    column of class indices, with optional per-head ``class_weights``). ``y`` is
    ``(B, H)`` float in head order. The step also sums each head's loss per phase
    (training when the module is in train mode, validation otherwise); ``epoch_losses``
    returns and clears the means, which ``NeuralEstimator`` records per epoch.
    """

    def __init__(
        self,
        heads: dict[str, int | str],
        *,
        loss: str = "cross_entropy",
        focal_gamma: float = 2.0,
        class_weights: dict[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        self.heads = dict(heads)
        weights = class_weights or {}
        self.class_losses = nn.ModuleDict(
            {
                name: build_loss(loss, class_weights=weights.get(name), focal_gamma=focal_gamma)
                for name, kind in self.heads.items()
                if kind != "regression"
            }
        )
        self._sums: dict[str, list[torch.Tensor | int]] = {}

    def forward(self, module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch  # (B, T, D), (B, H)
        outputs = module(x)
        losses = {}
        for column, (name, kind) in enumerate(self.heads.items()):
            target = y[:, column]  # (B,)
            if kind == "regression":
                losses[name] = F.mse_loss(outputs[name].float(), target.float())
            else:
                losses[name] = self.class_losses[name](outputs[name], target.long())
        self._add("train" if module.training else "val", losses, int(x.shape[0]))
        return module.loss(losses)

    def _add(self, phase: str, losses: dict[str, torch.Tensor], n: int) -> None:
        stacked = torch.stack([losses[h].detach().float() for h in self.heads]) * n  # (H,)
        total, count = self._sums.get(phase, [torch.zeros_like(stacked), 0])
        self._sums[phase] = [total + stacked, int(count) + n]

    def epoch_losses(self, phase: str) -> dict[str, float] | None:
        """Mean loss per head over the samples of ``phase`` since the last call (None if
        none ran), and clear them."""
        if phase not in self._sums:
            return None
        total, count = self._sums.pop(phase)
        means = (torch.as_tensor(total) / max(int(count), 1)).tolist()  # one sync per epoch
        return dict(zip(self.heads, means, strict=True))
