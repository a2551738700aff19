"""``NeuralEstimator``: any ``moola.models.nn`` architecture behind the ``Estimator`` API.

``NeuralEstimator("simple_lstm", hidden=32, epochs=30)`` takes one flat set of parameters
and routes each key to where it belongs: module config keys (``hidden``, ``dropout``, ...)
to ``moola.models.nn.build_module`` and trainer keys (``epochs``, ``lr``, ...) to
``TrainerConfig``. An unknown key is an error naming it and the valid keys.
``moola.models.create`` checks every value against the model's ``Params`` first
(``moola.models.validate_params``); a ``NeuralEstimator(...)`` built directly checks at
``fit``, as scikit-learn does (hence the checks below that repeat the ``Params`` rules).

``fit`` learns a per-channel normaliser (mean and standard deviation over the training
samples and time steps; validation and prediction data are scaled with the training
statistics, never their own), builds the module (``input_dim``, ``seq_len`` and
``n_classes`` come from the data unless given; an ``input_dim`` given that the data
contradicts is refused naming both widths), seeds its initial weights with the trainer's
``seed`` and trains it with ``Trainer``. A model card's ``preset`` (the transformer's
AdamW, warm-up and cosine: ``moola.models.registry``) gives the trainer settings not given.

Symbols: with ``n_symbols=S > 0`` (bilstm, transformer, cnn_lstm_attention, simple_lstm)
``X`` is ``(N, T, F + 1)`` whose last channel holds each window's symbol id (``0..S-1`` as
a float, the same on every step), which the module embeds (``symbol_dim``; see
``moola.models.nn._layers.SymbolEmbedding``). ``input_dim`` is then inferred as the
channels less one, the normaliser leaves the id channel as it is (mean 0, std 1: it is a
code, not a quantity), and ``fit`` and ``predict`` refuse an id that is not an integer in
``0..S-1`` or that changes within a window, naming the window, the value and ``S``.

Windows too many to hold as an array (a feature-windows dataset: rows of one feature
table) come as ``moola.training.window_dataset.LazyWindows`` wherever an array ``X``,
``X_val`` is taken. The normaliser is then computed from the table's rows, each weighted by
the number of windows covering it (the statistics the array would give), training reads
each batch gathered from the table and normalised on the fly (the same batches, in the same
order, as the array's: the same weights), and prediction reads a chunk of windows at a
time; no ``(N, T, D)`` array is ever made. Packed features (``n_features``) need arrays.

What it learns is its ``task`` parameter (``moola.models.base`` states the contract):

- ``"classification"`` (default): ``y`` class indices. Losses: ``cross_entropy`` and
  ``focal`` train K logits (softmax); ``bce`` trains one logit for two classes (sigmoid).
- ``"regression"``: ``y`` float ``(N,)`` or ``(N, K)``, trained with ``mse`` (its default;
  a classification loss is refused) on targets standardised with the TRAINING targets'
  mean and standard deviation (validation targets use the same), so every target weighs
  alike whatever its unit. ``predict`` inverts it: values ``(N,)`` or ``(N, K)`` float64 in
  the targets' units. A trend strength in [0, 1] is such a target (no sigmoid needed).
- ``"multitask"`` (``cnn_lstm_attention`` only): ``heads={"direction": 2, "volatility":
  "regression", "regime": 3}`` gives the module one output head per entry and ``y`` is
  ``(N, H)`` float64 in head order (class heads hold class indices). Each class head
  trains with ``loss`` (cross-entropy or focal) and each regression head with MSE on its
  standardised column; the heads are combined by learned uncertainty weighting
  (``MultiTaskLoss``: ``exp(-s_h) * L_h + s_h``, halved for regression heads) whose
  log-variances train with the network. ``head_history_`` records per epoch each head's
  training (and validation) loss and weight ``exp(-s_h)``. ``predict_heads`` gives each
  head's values or probabilities, ``predict`` ``(N, H)`` (class heads: argmax index).

``save`` writes ONE file, ``torch.save`` of a dict of plain values and tensors::

    {"format": "moola-model", "format_version": 2, "model": <architecture>,
     "class": "moola.training.neural.NeuralEstimator", "params": ..., "architecture": ...,
     "module_config": ..., "state_dict": ..., "normaliser": {"mean", "std"},
     "n_channels": D, "seq_len": T, "n_classes": K, "trainer_config": ..., "classes": [...],
     "moola_version": ..., "library_versions": {"torch", "numpy"}, "training_summary": ...,
     "task": ..., "targets": {"mean", "std", "ndim", "heads"} or None, "head_history": ...}

Format 2 added ``task``, ``targets`` (a regression's or multi-task model's target
standardiser; ``n_classes`` is 0 for them) and ``head_history``; a format-1 file loads as
the classifier it is.

``load`` reads it with ``torch.load(weights_only=True)`` (no code runs while loading) and
refuses, with a ``CheckpointError`` naming the file, anything it cannot trust to predict.

Pretrained encoders: ``pretrained_encoder=PATH`` (an artifact of ``moola pretrain``) is
loaded into the freshly built module's ``encoder`` by ``moola.pretrain.transfer``, which
raises ``CheckpointError`` below 80% matched or for an encoder of another kind (a masked-AE
BiLSTM for ``adapter_lstm``, a TS2Vec encoder for ``simple_lstm``). A model that holds an
encoder only when asked gets it switched on (``simple_lstm``: ``encoder_projection=True``;
``encoder_projection=False`` with an encoder is an error). Encoder shape keys the
caller left unset (``encoder_hidden``, ``encoder_repr_dim``, ...) come from the artifact's
card. The encoder then trains at ``encoder_lr_scale`` x the learning rate, and with
``freeze_epochs=N`` not at all for the first N epochs; a module that freezes its own
encoder (``adapter_lstm``'s ``freeze_encoder=True``, the default) keeps it frozen. Its
inputs are scaled with the pretraining corpus's statistics from the encoder's card (the
scale the encoder learned on), not the labeled set's. The load report, with that
schedule under ``fine_tuning``, is ``load_report_`` and is saved in the model file
(``"load_report"``).
"""

from __future__ import annotations

import difflib
import io
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from moola.core.atomic import atomic_write_bytes
from moola.core.errors import CheckpointError, ConfigError, MoolaError
from moola.models.base import TASKS, Estimator, regression_targets
from moola.models.nn import ARCHITECTURES, MultiTaskLoss, build_module, config_of
from moola.models.params import check_task_params
from moola.models.registry import MODEL_CARDS, require_task
from moola.pretrain.transfer import (
    LoadReport,
    encoder_params,
    encoder_shape,
    load_pretrained_encoder,
)
from moola.training.callbacks import Callback, ProgressCallback, TrainingState
from moola.training.losses import (
    MultiTaskNet,
    MultiTaskStep,
    RegressionStep,
    balanced_class_weights,
)
from moola.training.trainer import Trainer, TrainerConfig, TrainingSummary
from moola.training.window_dataset import LazyWindows

__all__ = ["NeuralEstimator"]

FORMAT = "moola-model"
FORMAT_VERSION = 2
_ESTIMATOR_KEYS = (
    "architecture",
    "task",
    "verbose",
    "pretrained_encoder",
    "freeze_epochs",
    "encoder_lr_scale",
)
_ENCODER_PREFIX = "encoder."
_PREDICT_BATCH = 1024
_ROW_CHUNK = 1 << 16  # table rows per pass of the lazy normaliser's sums
_CLASS_INDEX_LOSSES = ("cross_entropy", "focal")  # the others read float targets
_REQUIRED = (
    "format_version",
    "class",
    "params",
    "architecture",
    "module_config",
    "state_dict",
    "normaliser",
    "n_channels",
    "n_classes",
    "trainer_config",
)


class NeuralEstimator(Estimator):
    """A ``moola.models.nn`` network trained by ``Trainer``; ``name`` is the architecture.

    Parameters
    ----------
    architecture : str, default "simple_lstm"
        A key of ``moola.models.nn.ARCHITECTURES``.
    task : {"classification", "regression", "multitask"}, default "classification"
        What it learns (see the module docstring); ``multitask`` needs ``heads``.
    verbose : bool, default False
        Show a progress bar while training (only on a terminal).
    pretrained_encoder : str or None, default None
        Encoder artifact to load into the module's ``encoder`` before training.
    freeze_epochs : int, default 0
        Epochs the loaded encoder stays frozen (needs ``pretrained_encoder``).
    encoder_lr_scale : float, default 0.1
        The loaded encoder's learning rate, as a fraction of ``lr``, once it trains.
    **params
        Module config keys of that architecture and ``TrainerConfig`` fields.
    """

    input_kind = "sequence"
    #: ``fit`` and ``predict*`` take ``LazyWindows`` as well as arrays (callers that hold
    #: windows into a table, ``moola.pipeline.feature_inputs``, ask this before passing them).
    accepts_lazy_windows = True
    _resume: dict[str, Any] | None = None  # the snapshot the next fit continues from

    def __init__(self, architecture: str = "simple_lstm", **params: Any) -> None:
        super().__init__(architecture=architecture, **params)

    @property
    def name(self) -> str:  # the registry name is the architecture
        return str(self.params["architecture"])

    # -- fitting ------------------------------------------------------------------------

    def resume_from(self, snapshot: dict[str, Any] | None) -> NeuralEstimator:
        """Make the next ``fit`` continue an interrupted one from ``snapshot`` (a
        ``LoopState.snapshot()``, as ``moola.training.checkpoints.load_checkpoint`` reads it
        from ``last.pt``) and return ``self``.

        Used once, by the next fit only; not a parameter (not in ``get_params``, never
        saved). Given the same parameters and data, that fit ends (on the CPU) with the
        weights the uninterrupted fit would have; the trainer refuses a snapshot of other
        data or settings. A resumed multi-task fit's ``head_history_`` holds the epochs it
        ran itself.
        """
        self._resume = snapshot
        return self

    def fit(
        self,
        X: np.ndarray | LazyWindows,
        y: np.ndarray,
        *,
        X_val: np.ndarray | LazyWindows | None = None,
        y_val: np.ndarray | None = None,
    ) -> NeuralEstimator:
        """Learn the normaliser, build the module and train it; returns ``self``."""
        architecture = self.params["architecture"]
        task = self.task
        module_kwargs, trainer_kwargs = split_params(architecture, self.params)
        _check_task(architecture, task, module_kwargs, trainer_kwargs, self.params)
        pretrained, freeze_epochs, lr_scale = _fine_tuning_params(self.params)
        if pretrained is not None:  # e.g. simple_lstm holds an encoder only with projection
            module_kwargs = encoder_params(architecture, module_kwargs)
        trainer = Trainer(**trainer_kwargs)
        loss = trainer.config.loss
        n_symbols = _n_symbols(architecture, module_kwargs)
        id_channels = 1 if n_symbols else 0  # the symbol id rides last, unscaled
        X = _windows(X, "X")
        _check_symbol_ids(X, n_symbols, "X")
        if X_val is not None or y_val is not None:
            if X_val is None or y_val is None:
                raise ConfigError("Pass both X_val and y_val, or neither.")
            X_val = _windows(X_val, "X_val")
            if X_val.shape[2] != X.shape[2]:
                raise ConfigError(
                    f"X_val has {X_val.shape[2]} channels but X has {X.shape[2]}; "
                    "pass validation windows built like the training ones."
                )
            _check_symbol_ids(X_val, n_symbols, "X_val")
        targets, train_y = _Targets.fit(task, y, len(X), self.params, module_kwargs)
        val_targets = None if y_val is None else targets.encode(y_val, len(X_val), "y_val")
        if task == "classification":
            n_classes = targets.n_classes
            if loss == "bce" and n_classes != 2:
                raise ConfigError(
                    f"loss='bce' trains one logit for two classes, but y has {n_classes} "
                    "classes; use loss='cross_entropy' or 'focal'."
                )
            module_kwargs["n_classes"] = 1 if loss == "bce" else n_classes
        elif task == "regression":
            module_kwargs["n_classes"] = targets.n_targets  # one output per target

        config_cls = ARCHITECTURES[architecture][0]
        config_names = {f.name for f in fields(config_cls)}
        n_features = 0
        if "n_features" in config_names:  # packed engineered features ride as extra channels
            n_features = int(
                module_kwargs.get("n_features", _field_default(config_cls, "n_features"))
            )
        if n_features and isinstance(X, LazyWindows):
            raise ConfigError(
                f"{architecture}: n_features={n_features} packs engineered features on step 0 "
                "of each window, which LazyWindows (rows of a feature table) do not hold; "
                "give those windows as an (N, T, D) array, or train with n_features=0."
            )
        inferred = {
            "input_dim": X.shape[2] - n_features - id_channels,
            "seq_len": X.shape[1],
        }
        if inferred["input_dim"] < 1:
            raise ConfigError(
                f"{architecture}: n_symbols={n_symbols} reads the last channel of X as the "
                f"symbol id, but X has only {X.shape[2]} channel(s), leaving no features; "
                "append the id channel to windows of at least one feature."
            )
        given_dim = module_kwargs.get("input_dim")
        if given_dim is not None and given_dim != inferred["input_dim"]:
            packed = f" (+ {n_features} packed feature channels)" if n_features else ""
            if id_channels:
                packed += " (+ the symbol id channel, last)"
            raise ConfigError(
                f"{architecture}: input_dim={given_dim} but X has {inferred['input_dim']} "
                f"channels per step{packed}; build X with {given_dim} features (the "
                f"dataset's feature set), or drop input_dim to take {inferred['input_dim']} "
                "from the data."
            )
        for key, value in inferred.items():
            if key in config_names:
                module_kwargs.setdefault(key, value)
        if pretrained is not None:
            for key, value in encoder_shape(pretrained, architecture).items():
                module_kwargs.setdefault(key, value)  # the artifact's shape unless set
            _check_freeze_schedule(architecture, config_cls, module_kwargs, freeze_epochs)

        mean, std = _channel_stats(X, n_features)
        if id_channels:  # the id is a code for the embedding, not a quantity: never scaled
            mean[-1], std[-1] = 0.0, 1.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(trainer.config.seed)
            module = build_module(architecture, **module_kwargs)
        callbacks: list[Callback] = [
            ProgressCallback(bool(self.params.get("verbose", False)), architecture),
            *self.callbacks,
        ]
        report = None
        unfreeze = None
        if pretrained is not None:
            report = load_pretrained_encoder(module, pretrained, freeze=freeze_epochs > 0)
            corpus = _corpus_normaliser(report, X.shape[2] - n_features - id_channels)
            if corpus is not None:  # the encoder learned on inputs scaled this way
                mean[: len(corpus[0])], std[: len(corpus[0])] = corpus
            trainer = _FineTuningTrainer(trainer.config, encoder_lr_scale=lr_scale)
            if freeze_epochs > 0:
                unfreeze = _UnfreezeEncoder(freeze_epochs)
                callbacks.append(unfreeze)
        lazy = isinstance(X, LazyWindows) or isinstance(X_val, LazyWindows)
        resume, self._resume = self._resume, None
        history = None
        if task == "classification" and lazy:  # what Trainer.fit does, over batch sources
            train_y = _loss_targets(train_y, loss)
            val_targets = None if val_targets is None else _loss_targets(val_targets, loss)
            summary = trainer.run(
                module,
                _inputs(X, train_y, mean, std),
                None if X_val is None else _inputs(X_val, val_targets, mean, std),
                step=trainer.build_step(train_y, targets.n_classes),
                callbacks=callbacks,
                resume=resume,
            )
        elif task == "classification":
            train_x = _normalise(X, mean, std)
            val_x = None if X_val is None else _normalise(X_val, mean, std)
            summary = trainer.fit(
                module,
                train_x,
                train_y,
                val_x,
                val_targets,
                callbacks=callbacks,
                n_classes=targets.n_classes,
                resume=resume,
            )
        elif task == "regression":
            summary = trainer.run(
                module,
                _inputs(X, train_y, mean, std),
                None if X_val is None else _inputs(X_val, val_targets, mean, std),
                step=RegressionStep(),
                callbacks=callbacks,
                resume=resume,
            )
        else:
            net = MultiTaskNet(module, MultiTaskLoss.for_heads(targets.heads))
            step = MultiTaskStep(
                targets.heads,
                loss=loss,
                focal_gamma=trainer.config.focal_gamma,
                class_weights=targets.class_weights(trainer.config.class_weights),
            )
            history = _HeadHistory(step, net.loss)
            summary = trainer.run(
                net,
                _inputs(X, train_y, mean, std),
                None if X_val is None else _inputs(X_val, val_targets, mean, std),
                step=step,
                callbacks=[*callbacks, history],
                resume=resume,
            )
            module = net.net
        self.module_ = module
        self.module_config_ = config_of(module)
        self.mean_, self.std_ = mean, std
        self.n_channels_ = int(X.shape[2])
        self.seq_len_ = int(X.shape[1])
        self.n_classes_ = targets.n_classes
        self.targets_ = replace(targets, train_labels=None)  # class weights are done
        self.head_history_: dict[str, Any] | None = None if history is None else history.record
        self.trainer_config_ = trainer.config
        self.training_summary_ = summary
        self.load_report_: LoadReport | None = None
        if report is not None:
            self.load_report_ = replace(
                report,
                fine_tuning={
                    "freeze_epochs": freeze_epochs,
                    "encoder_lr_scale": lr_scale,
                    "encoder_lr": trainer.config.lr * lr_scale,
                    "normaliser": "pretraining corpus" if corpus is not None else "labeled train",
                    "unfrozen_after_epoch": None if unfreeze is None else unfreeze.unfrozen_after,
                    "encoder_frozen": not any(
                        p.requires_grad
                        for n, p in module.named_parameters()
                        if n.startswith(_ENCODER_PREFIX)
                    ),
                    "epochs_run": summary.epochs_run,
                },
            )
        self.source_path_: Path | None = None
        return self

    # -- prediction ---------------------------------------------------------------------

    def predict_proba(self, X: np.ndarray | LazyWindows) -> np.ndarray:
        """Class probabilities ``(N, K)`` float64, from the module in eval mode, batched.

        Refused (``ConfigError``) for a regression or multi-task model: use ``predict``
        (or ``predict_heads``).
        """
        self._require_fitted()
        if self.task == "regression":
            raise ConfigError(
                f"This {self.name} model was trained with task='regression': it is a "
                "regressor and has no class probabilities; call predict(X) for its values."
            )
        if self.task == "multitask":
            raise ConfigError(
                f"This {self.name} model was trained with task='multitask' (heads "
                f"{list(self.targets_.heads)}); call predict_heads(X) for each head's values "
                "and probabilities, or predict(X)."
            )
        logits = self._outputs(X)
        if self._n_outputs() == 1:  # bce: one logit for class 1
            p1 = torch.sigmoid(logits.reshape(-1))
            proba = torch.stack([1.0 - p1, p1], dim=1)
        else:
            proba = torch.softmax(logits, dim=1)
        return proba.numpy().astype(np.float64, copy=False)

    def predict(self, X: np.ndarray | LazyWindows) -> np.ndarray:
        """Class indices ``(N,)`` int64; a regression's values ``(N,)`` or ``(N, K)``
        float64 in the targets' units; a multi-task model's ``(N, H)`` float64 (class heads:
        the most probable index)."""
        self._require_fitted()
        if self.task == "classification":
            return super().predict(X)
        if self.task == "regression":
            return self.targets_.decode(self._outputs(X).numpy())
        heads = self.predict_heads(X)
        columns = [
            values if values.ndim == 1 else values.argmax(axis=1).astype(np.float64)
            for values in heads.values()
        ]
        return np.stack(columns, axis=1)

    def predict_heads(self, X: np.ndarray | LazyWindows) -> dict[str, np.ndarray]:
        """A multi-task model's heads, in order: ``{name: (N,) float64 values}`` for a
        regression head (in the target's units), ``{name: (N, C) float64 probabilities}``
        for a class head."""
        self._require_fitted()
        if self.task != "multitask":
            raise ConfigError(
                f"predict_heads is for task='multitask' models; this {self.name} model was "
                f"trained with task='{self.task}': call predict(X)"
                + (" or predict_proba(X)." if self.task == "classification" else ".")
            )
        outputs = self._outputs(X)
        return self.targets_.decode_heads(outputs)

    def _outputs(self, X: np.ndarray | LazyWindows) -> Any:
        """The module's outputs on ``X`` in eval mode, batched: a float64 CPU tensor
        ``(N, K)`` or, for a multi-head module, a dict of them."""
        X = _windows(X, "X")
        if X.shape[2] != self.n_channels_:
            problem = (
                f"X has {X.shape[2]} channels per step but this {self.name} model was "
                f"trained on {self.n_channels_}"
            )
            fix = "Build X the way the training windows were built (same feature set)."
            if self.source_path_ is not None:
                raise CheckpointError(f"Model file {self.source_path_}: {problem}. {fix}")
            raise ConfigError(f"{problem}. {fix}")
        _check_symbol_ids(X, int(self.module_config_.get("n_symbols", 0)), "X")
        module = self.module_
        module.eval()
        device = next(module.parameters()).device
        chunks: list[Any] = []
        with torch.inference_mode():
            for first in range(0, len(X), _PREDICT_BATCH):  # never every window at once
                if isinstance(X, LazyWindows):
                    window = X.take(np.arange(first, min(first + _PREDICT_BATCH, len(X))))
                else:
                    window = X[first : first + _PREDICT_BATCH]
                batch = torch.from_numpy(_normalise(window, self.mean_, self.std_))
                output = module(batch.to(device))
                if isinstance(output, dict) and self.task != "multitask":
                    output = output["direction"]
                if isinstance(output, dict):
                    chunks.append({k: v.double().cpu() for k, v in output.items()})
                else:
                    chunks.append(output.double().cpu())
        if isinstance(chunks[0], dict):
            return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
        return torch.cat(chunks)

    # -- persistence --------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the fitted model to ONE file, atomically (see the module docstring)."""
        if not hasattr(self, "module_"):
            raise ConfigError(
                f"Cannot save {self.name} to {path}: it is not fitted. Call fit(X, y) first."
            )
        from moola import __version__

        report = getattr(self, "load_report_", None)
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "class": _qualified_name(type(self)),
            "params": _plain(self.get_params()),
            "architecture": self.params["architecture"],
            "module_config": self.module_config_,
            "state_dict": {k: v.detach().cpu() for k, v in self.module_.state_dict().items()},
            "normaliser": {
                "mean": torch.from_numpy(self.mean_.copy()),
                "std": torch.from_numpy(self.std_.copy()),
            },
            "n_channels": self.n_channels_,
            "seq_len": self.seq_len_,
            "n_classes": self.n_classes_,
            "trainer_config": self.trainer_config_.model_dump(),
            "classes": list(range(self.n_classes_)),
            "moola_version": __version__,
            "library_versions": _library_versions(),
            "training_summary": self.training_summary_.to_dict(),
            "load_report": None if report is None else _plain(report.to_dict()),
            "task": self.task,
            "targets": self.targets_.to_payload(),
            "head_history": _plain(getattr(self, "head_history_", None)),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(path, buffer.getvalue(), overwrite=True)

    @classmethod
    def load(cls, path: str | Path, *, architecture: str | None = None) -> NeuralEstimator:
        """Rebuild a model written by ``save`` (weights on the CPU).

        Raises ``CheckpointError`` naming ``path`` for a missing, corrupt or foreign file,
        one from another model class or a newer format, or (with ``architecture``) one
        holding another architecture.
        """
        path = Path(path)
        payload = _read_checkpoint(path)
        expected = _qualified_name(cls)
        if payload["class"] != expected:
            raise CheckpointError(
                f"Model file {path} holds a '{payload.get('model')}' model saved by "
                f"{payload['class']}, not a {expected}. Load it with that class's load(), or "
                "point to a file saved by this model."
            )
        saved_arch = payload["architecture"]
        if architecture is not None and saved_arch != architecture:
            raise CheckpointError(
                f"Model file {path} holds a '{saved_arch}' network, not '{architecture}'. "
                f"Load it as '{saved_arch}' or point to a '{architecture}' model file."
            )
        _warn_on_version_change(payload.get("library_versions"), path)
        params = dict(payload["params"])
        try:
            module_config = dict(payload["module_config"])
            if payload["format_version"] < 2:
                _upgrade_format_1(saved_arch, module_config, params)
            module = build_module(module_config.pop("architecture", saved_arch), **module_config)
            module.load_state_dict(payload["state_dict"])
        except (MoolaError, RuntimeError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"Model file {path}: its '{saved_arch}' network cannot be rebuilt by this "
                f"moola ({type(exc).__name__}: {exc}). Retrain and save it again."
            ) from exc
        module.eval()
        estimator = cls(**params)
        estimator.module_ = module
        estimator.module_config_ = config_of(module)
        estimator.mean_ = payload["normaliser"]["mean"].numpy().astype(np.float64)
        estimator.std_ = payload["normaliser"]["std"].numpy().astype(np.float64)
        estimator.n_channels_ = int(payload["n_channels"])
        estimator.seq_len_ = int(payload.get("seq_len") or 0)
        estimator.n_classes_ = int(payload["n_classes"])
        try:
            estimator.trainer_config_ = TrainerConfig(**payload["trainer_config"])
            summary = payload.get("training_summary")
            estimator.training_summary_ = _summary_from(summary) if summary else None
            report = payload.get("load_report")
            estimator.load_report_ = LoadReport.from_dict(report) if report else None
            estimator.targets_ = _Targets.from_payload(
                estimator.task, payload.get("targets"), estimator.n_classes_
            )
            estimator.head_history_ = payload.get("head_history")
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(
                f"Model file {path} holds a trainer config, training summary or target "
                f"standardiser this moola cannot read ({type(exc).__name__}: {exc}). Retrain "
                "and save it again."
            ) from exc
        if estimator.task != payload.get("task", "classification"):
            raise CheckpointError(
                f"Model file {path} is inconsistent: its parameters say task="
                f"'{estimator.task}' but it was saved as a '{payload.get('task')}' model."
            )
        estimator.source_path_ = path
        if estimator.mean_.shape != (estimator.n_channels_,):
            raise CheckpointError(
                f"Model file {path} is inconsistent: its normaliser has "
                f"{estimator.mean_.shape} entries for {estimator.n_channels_} channels."
            )
        return estimator

    @property
    def head_losses_history_(self) -> dict[str, list[float]] | None:
        """A multi-task fit's training loss of each head per epoch (None otherwise)."""
        return (getattr(self, "head_history_", None) or {}).get("head_losses_history")

    @property
    def head_weights_history_(self) -> dict[str, list[float]] | None:
        """A multi-task fit's weight ``exp(-s_h)`` of each head per epoch (None otherwise)."""
        return (getattr(self, "head_history_", None) or {}).get("head_weights_history")

    # -- helpers ------------------------------------------------------------------------

    def _require_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise ConfigError(f"{self.name} is not fitted; call fit(X, y) or load(path) first.")

    def _n_outputs(self) -> int:
        return int(self.module_config_.get("n_classes", self.n_classes_))


def _upgrade_format_1(architecture: str, module_config: dict, params: dict) -> None:
    """Rewrite, in place, what a format-1 file says in words this moola reads: a
    transformer's module ``task`` became ``output`` (``"regression"`` was its sigmoid), and
    such a file's ``task`` parameter was that module key, never the estimator's task."""
    if architecture != "transformer":
        return
    for values in (module_config, params):
        if "task" in values:
            values["output"] = "sigmoid" if values.pop("task") == "regression" else "linear"


def _check_task(
    architecture: str,
    task: str,
    module_kwargs: dict[str, Any],
    trainer_kwargs: dict[str, Any],
    params: dict[str, Any],
) -> None:
    """Refuse a task the model does not learn or parameters that contradict it (the rules
    of ``moola.models.params.check_task_params``); a regression's loss defaults to
    ``mse`` (set in ``trainer_kwargs``)."""
    if task not in TASKS:
        raise ConfigError(f"{architecture}: unknown task {task!r}; choose one of {TASKS}.")
    card = MODEL_CARDS.get(architecture)
    if card is not None:
        require_task(card, task)
    if task == "regression":
        trainer_kwargs.setdefault("loss", "mse")
    values = SimpleNamespace(
        task=task,
        architecture=architecture,
        loss=trainer_kwargs.get("loss", "cross_entropy"),
        heads=module_kwargs.get("heads"),
        class_weights=trainer_kwargs.get("class_weights"),
        n_classes=params.get("n_classes"),
        output=module_kwargs.get("output", "linear"),
    )
    try:
        check_task_params(values)
    except ValueError as exc:
        raise ConfigError(f"{architecture}: {exc}.") from None


@dataclass(frozen=True)
class _Targets:
    """How a fitted model's targets are encoded for training and decoded at prediction.

    Classification: class indices (``n_classes`` K). Regression: ``n_targets`` columns
    standardised with the training targets' ``mean`` and ``std`` (``ndim``: whether ``y``
    was ``(N,)`` or ``(N, K)``). Multi-task: one column per head of ``heads``, regression
    columns standardised, class columns class indices (mean 0, std 1).
    """

    task: str
    n_classes: int = 0
    n_targets: int = 0
    ndim: int = 1
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    heads: dict[str, Any] | None = None
    train_labels: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def fit(
        cls, task: str, y: Any, n: int, params: dict[str, Any], module_kwargs: dict[str, Any]
    ) -> tuple[_Targets, np.ndarray]:
        """The encoding learned from training targets ``y`` and ``y`` encoded by it."""
        if task == "classification":
            labels = _labels(y, n, "y")
            n_classes = int(params.get("n_classes") or labels.max() + 1)
            if labels.max() >= n_classes:
                raise ConfigError(
                    f"y holds class index {labels.max()} but n_classes={n_classes}; "
                    "class indices run 0..n_classes-1."
                )
            return cls(task, n_classes=n_classes), labels
        if task == "regression":
            values = regression_targets(y, n, "y")
            mean, std = values.mean(axis=0), values.std(axis=0)
            std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
            targets = cls(
                task,
                n_targets=values.shape[1],
                ndim=np.ndim(y),
                mean=tuple(mean.tolist()),
                std=tuple(std.tolist()),
            )
            return targets, targets._standardise(values)
        config_cls = ARCHITECTURES["cnn_lstm_attention"][0]
        heads = config_cls(heads=module_kwargs.get("heads")).heads  # checked, a plain dict
        values = _head_targets(y, n, heads, "y")
        mean, std = np.zeros(len(heads)), np.ones(len(heads))
        for column, kind in enumerate(heads.values()):
            if kind == "regression":
                mean[column], std[column] = values[:, column].mean(), values[:, column].std()
        std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        targets = cls(
            task,
            n_targets=len(heads),
            ndim=2,
            mean=tuple(mean.tolist()),
            std=tuple(std.tolist()),
            heads=heads,
            train_labels={
                name: values[:, i].astype(np.int64)
                for i, (name, kind) in enumerate(heads.items())
                if kind != "regression"
            },
        )
        return targets, targets._standardise(values)

    def encode(self, y: Any, n: int, what: str) -> np.ndarray:
        """Validation targets ``y`` encoded like the training ones."""
        if self.task == "classification":
            labels = _labels(y, n, what)
            if labels.max() >= self.n_classes:
                raise ConfigError(
                    f"{what} holds class index {labels.max()}, but the model has "
                    f"{self.n_classes} classes (0..{self.n_classes - 1})."
                )
            return labels
        if self.task == "regression":
            values = regression_targets(y, n, what)
            if values.shape[1] != self.n_targets:
                raise ConfigError(
                    f"{what} has {values.shape[1]} target column(s) but y has "
                    f"{self.n_targets}; pass validation targets built like the training ones."
                )
            return self._standardise(values)
        assert self.heads is not None
        return self._standardise(_head_targets(y, n, self.heads, what))

    def _standardise(self, values: np.ndarray) -> np.ndarray:
        return ((values - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """A regression's outputs ``(N, K)`` in the targets' units, shaped like ``y``."""
        values = outputs.reshape(len(outputs), -1) * np.asarray(self.std) + np.asarray(self.mean)
        values = values.astype(np.float64, copy=False)
        return values[:, 0] if self.ndim == 1 else values

    def decode_heads(self, outputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Each head's values (in the target's units) or class probabilities, float64."""
        assert self.heads is not None
        decoded = {}
        for column, (name, kind) in enumerate(self.heads.items()):
            out = outputs[name]
            if kind == "regression":
                values = out.reshape(-1).numpy() * self.std[column] + self.mean[column]
            else:
                values = torch.softmax(out, dim=1).numpy()
            decoded[name] = values.astype(np.float64, copy=False)
        return decoded

    def class_weights(self, setting: str | None) -> dict[str, np.ndarray] | None:
        """Balanced weights per class head of the training labels, with ``"balanced"``."""
        if setting != "balanced" or self.heads is None or self.train_labels is None:
            return None
        return {
            name: balanced_class_weights(labels, int(self.heads[name]))
            for name, labels in self.train_labels.items()
        }

    def to_payload(self) -> dict[str, Any] | None:
        """What a model file records (None for a classifier: its classes say it all)."""
        if self.task == "classification":
            return None
        return {
            "n_targets": self.n_targets,
            "ndim": self.ndim,
            "mean": list(self.mean),
            "std": list(self.std),
            "heads": None if self.heads is None else dict(self.heads),
        }

    @classmethod
    def from_payload(cls, task: str, payload: Any, n_classes: int) -> _Targets:
        if task == "classification":
            return cls(task, n_classes=n_classes)
        if not isinstance(payload, dict):
            raise ValueError(f"a {task} model needs its target standardiser; found {payload!r}")
        targets = cls(
            task,
            n_targets=int(payload["n_targets"]),
            ndim=int(payload["ndim"]),
            mean=tuple(float(v) for v in payload["mean"]),
            std=tuple(float(v) for v in payload["std"]),
            heads=None if payload.get("heads") is None else dict(payload["heads"]),
        )
        if len(targets.mean) != targets.n_targets or len(targets.std) != targets.n_targets:
            raise ValueError(
                f"{len(targets.mean)} means and {len(targets.std)} standard deviations for "
                f"{targets.n_targets} targets"
            )
        return targets


class _HeadHistory(Callback):
    """Records, per epoch, each head's mean training (and validation) loss and its weight
    ``exp(-s_h)`` (``record``: ``NeuralEstimator.head_history_``)."""

    def __init__(self, step: MultiTaskStep, loss: MultiTaskLoss) -> None:
        self.step, self.loss = step, loss
        heads = list(step.heads)
        self.record: dict[str, Any] = {
            "heads": heads,
            "initial_head_weights": loss.task_weights(),
            "head_losses_history": {h: [] for h in heads},
            "val_head_losses_history": {h: [] for h in heads},
            "head_weights_history": {h: [] for h in heads},
        }

    def on_epoch_end(self, state: TrainingState) -> bool:
        for key, phase in (("head_losses_history", "train"), ("val_head_losses_history", "val")):
            losses = self.step.epoch_losses(phase)
            for head, value in (losses or {}).items():
                self.record[key][head].append(value)
        for head, weight in self.loss.task_weights().items():
            self.record["head_weights_history"][head].append(weight)
        return False


def _head_targets(y: Any, n: int, heads: dict[str, Any], what: str) -> np.ndarray:
    """Multi-task targets ``(N, H)`` float64, one column per head in order; class columns
    hold class indices within each head's count."""
    values = np.asarray(y)
    if values.ndim != 2 or values.shape != (n, len(heads)):
        raise ConfigError(
            f"{what} must be (N, H) = ({n}, {len(heads)}): one column per head of heads "
            f"{list(heads)}, in that order; got shape {values.shape}."
        )
    values = regression_targets(values, n, what)
    for column, (name, kind) in enumerate(heads.items()):
        if kind == "regression":
            continue
        col = values[:, column]
        if np.any(np.mod(col, 1) != 0) or col.min() < 0 or col.max() >= kind:
            raise ConfigError(
                f"{what} column {column} (head '{name}', {kind} classes) must hold class "
                f"indices 0..{kind - 1}; found values from {col.min():g} to {col.max():g}."
            )
    return values


class _FineTuningTrainer(Trainer):
    """A ``Trainer`` whose optimiser puts the ``encoder.*`` parameters (trainable or frozen
    for now) in their own group, at ``encoder_lr_scale`` x the scheduled learning rate."""

    def __init__(self, config: TrainerConfig, *, encoder_lr_scale: float) -> None:
        super().__init__(config)
        self.encoder_lr_scale = encoder_lr_scale

    def build_optimizer(self, module: torch.nn.Module) -> torch.optim.Optimizer:
        cfg = self.config
        encoder, rest = [], []
        for name, parameter in module.named_parameters():
            if name.startswith(_ENCODER_PREFIX):
                encoder.append(parameter)  # frozen ones get no gradient: the step skips them
            elif parameter.requires_grad:
                rest.append(parameter)
        groups = [
            {"params": rest, "lr_scale": 1.0},
            {"params": encoder, "lr_scale": self.encoder_lr_scale},
        ]
        groups = [group for group in groups if group["params"]]
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


class _UnfreezeEncoder(Callback):
    """Turn gradients of the ``encoder.*`` parameters back on after ``epochs`` epochs."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.unfrozen_after: int | None = None

    def on_train_start(self, state: TrainingState) -> None:
        if 0 < self.epochs <= state.epoch and self.epochs < state.epochs:
            self._unfreeze(state)  # resumed after the encoder was unfrozen
            self.unfrozen_after = self.epochs

    def on_epoch_end(self, state: TrainingState) -> bool:
        if state.epoch == self.epochs < state.epochs:  # epochs remain to train it in
            self._unfreeze(state)
            self.unfrozen_after = state.epoch
        return False

    def on_train_end(self, state: TrainingState) -> None:
        self._unfreeze(state)  # a fitted model holds no frozen parameters

    @staticmethod
    def _unfreeze(state: TrainingState) -> None:
        for name, parameter in state.module.named_parameters():
            if name.startswith(_ENCODER_PREFIX):
                parameter.requires_grad_(True)


def _fine_tuning_params(params: dict[str, Any]) -> tuple[str | None, int, float]:
    """``pretrained_encoder``, ``freeze_epochs`` and ``encoder_lr_scale``, checked."""
    pretrained = params.get("pretrained_encoder")
    freeze_epochs = params.get("freeze_epochs", 0)
    lr_scale = params.get("encoder_lr_scale", 0.1)
    if pretrained is not None and not isinstance(pretrained, str | Path):
        raise ConfigError(
            f"pretrained_encoder must be the path of an encoder artifact, got {pretrained!r}."
        )
    if isinstance(freeze_epochs, bool) or not isinstance(freeze_epochs, int) or freeze_epochs < 0:
        raise ConfigError(f"freeze_epochs must be an integer >= 0 (got {freeze_epochs!r}).")
    if isinstance(lr_scale, bool) or not isinstance(lr_scale, int | float) or not lr_scale > 0:
        raise ConfigError(
            f"encoder_lr_scale must be a number > 0 (got {lr_scale!r}); to keep the encoder "
            "fixed use freeze_epochs."
        )
    if freeze_epochs and pretrained is None:
        raise ConfigError(
            f"freeze_epochs={freeze_epochs} freezes a pretrained encoder, but no "
            "pretrained_encoder was given; pass pretrained_encoder=PATH or drop freeze_epochs."
        )
    return (None if pretrained is None else str(pretrained)), freeze_epochs, float(lr_scale)


def _check_freeze_schedule(
    architecture: str, config_cls: type, module_kwargs: dict[str, Any], freeze_epochs: int
) -> None:
    """Refuse ``freeze_epochs`` (unfreeze after N epochs) for a module configured to keep
    its encoder frozen throughout (``freeze_encoder=True``): the two contradict."""
    if not freeze_epochs or "freeze_encoder" not in {f.name for f in fields(config_cls)}:
        return
    if module_kwargs.get("freeze_encoder", _field_default(config_cls, "freeze_encoder")):
        raise ConfigError(
            f"freeze_epochs={freeze_epochs} unfreezes the pretrained encoder after "
            f"{freeze_epochs} epochs, but {architecture} keeps its encoder frozen throughout "
            "(freeze_encoder=True, the default). Pass freeze_encoder=False with "
            "freeze_epochs to fine-tune it later, or drop freeze_epochs."
        )


def split_params(architecture: str, params: dict[str, Any]) -> tuple[dict, dict]:
    """``params`` -> (module config kwargs, trainer kwargs); unknown keys are an error.

    The trainer kwargs include the model card's ``preset`` for the keys not given.
    """
    if architecture not in ARCHITECTURES:
        close = difflib.get_close_matches(str(architecture), ARCHITECTURES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"Unknown architecture '{architecture}'.{hint} Valid: {', '.join(ARCHITECTURES)}."
        )
    module_keys = [f.name for f in fields(ARCHITECTURES[architecture][0])]
    trainer_keys = list(TrainerConfig.model_fields)
    module_kwargs, trainer_kwargs, unknown = {}, {}, []
    for key, value in params.items():
        if key in _ESTIMATOR_KEYS:
            continue
        if key in module_keys:
            module_kwargs[key] = value
        elif key in trainer_keys:
            trainer_kwargs[key] = value
        else:
            unknown.append(key)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, module_keys + trainer_keys, n=1)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise ConfigError(
            f"Unknown parameter(s) for {architecture}: {', '.join(hints)}. Valid module keys: "
            f"{', '.join(module_keys)}. Valid trainer keys: {', '.join(trainer_keys)}. "
            f"Also: {', '.join(_ESTIMATOR_KEYS)}."
        )
    card = MODEL_CARDS.get(architecture)
    for key, value in (card.preset if card is not None else {}).items():
        trainer_kwargs.setdefault(key, value)  # the model's DOMAIN training, unless given
    return module_kwargs, trainer_kwargs


def _windows(X: Any, what: str) -> np.ndarray | LazyWindows:
    """``X`` as a finite float64 ``(N, T, D)`` array with N >= 1 (``LazyWindows``: itself,
    checked the same way without making the array)."""
    if isinstance(X, LazyWindows):
        return _checked_lazy(X, what)
    values = np.asarray(X, dtype=np.float64)
    if values.ndim != 3 or values.shape[0] == 0:
        raise ConfigError(
            f"{what} must be windows shaped (N, T, D) with N >= 1; got shape {values.shape}."
        )
    if not np.isfinite(values).all():
        rows = np.flatnonzero(~np.isfinite(values).all(axis=(1, 2)))
        raise ConfigError(
            f"{what} holds NaN or infinite values in windows {rows[:5].tolist()}; "
            "drop or fill them first."
        )
    return values


def _checked_lazy(X: LazyWindows, what: str) -> LazyWindows:
    """``X`` refused unless it holds windows and every table row they cover is finite (a
    row no window covers is never read, whatever it holds)."""
    if len(X) == 0:
        raise ConfigError(f"{what} must hold at least one window; got {X!r}.")
    bad_rows = ~np.isfinite(X.values).all(axis=1)  # (n_rows,)
    if bad_rows.any():
        seen = np.concatenate([[0], np.cumsum(bad_rows)])  # bad rows before each row
        hit = np.flatnonzero(seen[X.starts + X.length] > seen[X.starts])
        if hit.size:
            raise ConfigError(
                f"{what} holds NaN or infinite values in windows {hit[:5].tolist()} (table "
                f"rows {np.flatnonzero(bad_rows)[:5].tolist()}); drop or fill them first."
            )
    return X


def _n_symbols(architecture: str, module_kwargs: dict[str, Any]) -> int:
    """The ``n_symbols`` a fit builds with (0 for an architecture without the option),
    checked here because it decides the input width before the module config exists."""
    value = module_kwargs.get("n_symbols", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"{architecture}: n_symbols={value!r} is invalid: it must be an integer >= 0 (the "
            "number of symbols whose ids the last input channel holds; 0: no id channel)."
        )
    return value


def _check_symbol_ids(X: np.ndarray | LazyWindows, n_symbols: int, what: str) -> None:
    """Refuse windows ``X`` whose last channel is not a valid symbol id for a model of
    ``n_symbols > 0``: an integer in ``0..n_symbols - 1``, the same on every step of a
    window (nothing to check when ``n_symbols`` is 0)."""
    if not n_symbols:
        return
    if isinstance(X, LazyWindows):
        if X.symbol_ids is None:
            raise ConfigError(
                f"The model has n_symbols={n_symbols}, but the LazyWindows {what} carry no "
                "symbol_ids; build them with each window's symbol id (symbol_ids=...)."
            )
        ids = np.asarray(X.symbol_ids, dtype=np.float64)[:, None]  # one step stands for all
    else:
        ids = X[:, :, -1]  # (N, T)
    bad = (ids != np.round(ids)) | (ids < 0) | (ids >= n_symbols)
    if bad.any():
        window, step = np.argwhere(bad)[0]
        raise ConfigError(
            f"{what} window {window} holds symbol id {ids[window, step]:g} (step {step} of "
            f"its last channel), but the model has n_symbols={n_symbols}: ids are integers "
            f"0..{n_symbols - 1}. Encode each window's symbol with the dataset's symbol "
            "codes, or train with n_symbols set to the number of symbols."
        )
    mixed = (ids != ids[:, :1]).any(axis=1)
    if mixed.any():
        window = int(np.flatnonzero(mixed)[0])
        raise ConfigError(
            f"{what} window {window} holds symbol ids {np.unique(ids[window]).tolist()} on "
            "different steps; a window belongs to one symbol, so its id (the last channel) "
            "is the same on every step."
        )


def _labels(y: Any, n: int, what: str) -> np.ndarray:
    """Integer class indices ``(N,)`` int64 with at least two classes in training labels."""
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != n:
        raise ConfigError(
            f"{what} must be 1-D with one label per window ({n}); got shape {labels.shape}."
        )
    if labels.dtype.kind not in "iub" and not (
        labels.dtype.kind == "f" and np.all(np.mod(labels, 1) == 0)
    ):
        raise ConfigError(
            f"{what} must hold integer class indices 0..K-1; got dtype {labels.dtype}. "
            "Map labels to indices first (e.g. np.unique(..., return_inverse=True))."
        )
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise ConfigError(f"{what} holds negative class index {labels.min()}; use 0..K-1.")
    if what == "y" and len(np.unique(labels)) < 2:
        raise ConfigError(
            f"y holds a single class ({labels[0]}) in {n} windows; a classifier needs at "
            "least 2. Use a split (or fold) whose training part contains every class."
        )
    return labels


def _channel_stats(X: np.ndarray | LazyWindows, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over samples and time (``(D,)`` float64 each).

    Packed feature channels (the last ``n_features``) live on step 0 only, so their
    statistics come from that step. A constant channel gets std 1 (left unscaled).
    ``LazyWindows`` get the same statistics without their array (``_lazy_stats``).
    """
    if isinstance(X, LazyWindows):
        mean, std = _lazy_stats(X)
    else:
        mean = X.mean(axis=(0, 1))
        std = X.std(axis=(0, 1))
    if n_features:
        mean[-n_features:] = X[:, 0, -n_features:].mean(axis=0)
        std[-n_features:] = X[:, 0, -n_features:].std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return mean, std


def _lazy_stats(X: LazyWindows) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) std per channel over every window and step of ``X``, in
    float64, from the table: row ``r`` appears in ``counts[r]`` windows, so the sums over
    windows x steps are sums over rows weighted by ``counts`` (two passes, mean then
    squared deviations, a chunk of rows at a time). The id channel (with ``symbol_ids``)
    holds each window's id on all of its steps: its statistics are the ids'."""
    counts = X.row_counts().astype(np.float64)
    used = np.flatnonzero(counts)
    total = float(len(X) * X.length)
    chunks = [used[i : i + _ROW_CHUNK] for i in range(0, used.size, _ROW_CHUNK)]
    mean = sum(counts[c] @ X.values[c].astype(np.float64) for c in chunks) / total
    var = sum(counts[c] @ np.square(X.values[c].astype(np.float64) - mean) for c in chunks)
    std = np.sqrt(var / total)
    if X.symbol_ids is not None:
        ids = np.asarray(X.symbol_ids, dtype=np.float32).astype(np.float64)
        mean, std = np.append(mean, ids.mean()), np.append(std, ids.std())
    return mean, std


def _loss_targets(y: np.ndarray, loss: str) -> np.ndarray:
    """Class indices as ``Trainer.fit`` gives them to ``loss``: int64 for the class-index
    losses, float32 (``bce``'s 0/1) otherwise."""
    return y.astype(np.int64 if loss in _CLASS_INDEX_LOSSES else np.float32)


def _inputs(
    X: np.ndarray | LazyWindows, y: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | _NormalisedWindows:
    """What ``Trainer.run`` trains on: the normalised array and ``y``, or for
    ``LazyWindows`` a ``BatchSource`` that normalises each batch as it gathers it."""
    if isinstance(X, LazyWindows):
        return _NormalisedWindows(X, y, mean, std)
    return _normalise(X, mean, std), y


class _NormalisedWindows:
    """A ``moola.training.trainer.BatchSource`` over ``LazyWindows`` and their targets:
    batch ``indices`` is those windows gathered from the table and normalised with
    ``mean``/``std`` (float64 arithmetic, float32 out: the values the normalised array
    would hold at those rows) and their targets (floats as float32), as ``Trainer.run``
    would index them out of arrays; so a fit trains on the same batches in the same order
    without the ``(N, T, D)`` arrays."""

    def __init__(
        self, windows: LazyWindows, y: np.ndarray, mean: np.ndarray, std: np.ndarray
    ) -> None:
        self.windows, self.mean, self.std = windows, mean, std
        targets = torch.from_numpy(np.ascontiguousarray(y))
        self.targets = targets.float() if targets.is_floating_point() else targets
        if len(self.targets) != len(windows):
            raise ConfigError(
                f"There are {len(windows)} windows but {len(self.targets)} targets; they "
                "must match."
            )

    def __len__(self) -> int:
        return len(self.windows)

    def batch(self, indices: torch.Tensor, key: int) -> tuple[torch.Tensor, ...]:
        del key  # nothing random here
        x = _normalise(self.windows.take(indices.numpy()), self.mean, self.std)
        return torch.from_numpy(x), self.targets[indices]


def _corpus_normaliser(report: LoadReport, n_channels: int) -> tuple[np.ndarray, ...] | None:
    """The pretraining corpus's per-channel mean and std from the encoder's card, when it
    has one for exactly ``n_channels`` sequence channels (else None: keep train stats).

    The encoder learned on inputs scaled with these statistics; scaling the labeled
    windows with their own (a few hundred windows) would shift what it sees.
    """
    saved = report.card.get("normaliser") or {}
    mean = np.asarray(saved.get("mean", ()), dtype=np.float64)
    std = np.asarray(saved.get("std", ()), dtype=np.float64)
    if mean.shape != (n_channels,) or std.shape != (n_channels,) or not np.all(std > 0):
        return None
    return mean, std


def _normalise(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((X - mean) / std).astype(np.float32)


def _field_default(config_cls: type, name: str) -> Any:
    return next(f.default for f in fields(config_cls) if f.name == name)


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _library_versions() -> dict[str, str]:
    return {"torch": str(torch.__version__), "numpy": str(np.__version__)}


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays made plain (``torch.load`` safe mode)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"Model file {path} does not exist (or is not a file).")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: we refuse them
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or holding arbitrary objects
        raise CheckpointError(
            f"Model file {path} cannot be read as a moola neural model: it is corrupt, "
            f"truncated or not a file written by NeuralEstimator.save ({type(exc).__name__}). "
            "Point to a saved model, or save the model again."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a moola model file (no 'format': '{FORMAT}' header); it was not "
            "written by Estimator.save."
        )
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"Model file {path} is incomplete: it lacks {missing}.")
    version = payload["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"Model file {path} has format version {version!r}, newer than the "
            f"{FORMAT_VERSION} this moola reads; upgrade moola to load it."
        )
    return payload


def _warn_on_version_change(saved: Any, path: Path) -> None:
    if not isinstance(saved, dict):
        return
    now = _library_versions()
    changed = [f"{k} {v} (now {now[k]})" for k, v in saved.items() if k in now and v != now[k]]
    if changed:
        warnings.warn(
            f"Model file {path} was saved with {', '.join(changed)}; predictions may differ "
            "slightly from the saved model's. Retrain to be sure.",
            UserWarning,
            stacklevel=3,
        )


def _summary_from(data: dict[str, Any]) -> TrainingSummary:
    data = dict(data)
    data["train_loss_history"] = tuple(data["train_loss_history"])
    data["val_loss_history"] = tuple(data["val_loss_history"])
    return TrainingSummary(**data)
