"""Chronos-Bolt (``chronos-forecasting``) as a moola backbone: patch-encoder embeddings and
zero-shot quantile forecasts of univariate series.

Chronos-Bolt reads one series at a time and scales each by its own mean and spread
(instance normalisation), so a window's channels are embedded one by one and the
token-averaged encoder states concatenated: ``E = C * d_model``. Forecasts are of the
window's last channel. Only Chronos-Bolt checkpoints are read: original Chronos samples
its forecasts (not deterministic) and Chronos-2 has another interface; both are refused
naming the folder.
"""

from __future__ import annotations

import numpy as np

from moola.core.errors import CheckpointError, ConfigError
from moola.models.foundation.base import Backbone, check_window_fits

__all__ = ["ChronosBackbone"]

_BATCH = 256


class ChronosBackbone(Backbone):
    """A Chronos-Bolt checkpoint folder (``config.json`` + ``model.safetensors``)."""

    kind = "chronos"

    def _load(self) -> None:
        import torch
        from chronos import BaseChronosPipeline, ChronosBoltPipeline
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # moola shows its own progress
        try:
            pipeline = BaseChronosPipeline.from_pretrained(
                str(self.path), local_files_only=True, device_map="cpu", dtype=torch.float32
            )
        except (ValueError, AssertionError, OSError, KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"{self.path} is not a Chronos-Bolt checkpoint that loads ({type(exc).__name__}: "
                f"{exc}). Put a Chronos-Bolt folder there (config.json with a chronos_config)."
            ) from None
        if not isinstance(pipeline, ChronosBoltPipeline):
            raise CheckpointError(
                f"{self.path} holds a {type(pipeline).__name__} checkpoint; moola's chronos "
                "backbone reads Chronos-Bolt checkpoints only (deterministic quantiles)."
            )
        pipeline.model.eval()
        self._pipeline = pipeline

    @property
    def context_length(self) -> int:
        return int(self._pipeline.model_context_length)

    @property
    def d_model(self) -> int:
        """Width of one channel's embedding."""
        return int(self._pipeline.model.model_dim)

    def embed(self, windows: np.ndarray) -> np.ndarray:
        import torch

        values = check_window_fits(self, windows)
        n, _, channels = values.shape
        out = np.empty((n, channels * self.d_model), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, n, _BATCH):
                chunk = values[start : start + _BATCH]
                parts = []
                for c in range(channels):
                    states, _ = self._pipeline.embed(torch.from_numpy(chunk[:, :, c].copy()))
                    parts.append(states.float().mean(dim=1).numpy())
                out[start : start + len(chunk)] = np.concatenate(parts, axis=1)
        return out

    def forecast(
        self, windows: np.ndarray, horizon: int, quantiles: tuple[float, ...]
    ) -> np.ndarray:
        import torch

        if horizon < 1:
            raise ConfigError(f"horizon must be >= 1; got {horizon}.")
        if not quantiles or not all(0.0 < q < 1.0 for q in quantiles):
            raise ConfigError(f"quantiles must lie strictly between 0 and 1; got {quantiles}.")
        values = check_window_fits(self, windows)
        out = np.empty((len(values), horizon, len(quantiles)), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(values), _BATCH):
                series = torch.from_numpy(values[start : start + _BATCH, :, -1].copy())
                predicted, _ = self._pipeline.predict_quantiles(
                    series, prediction_length=horizon, quantile_levels=list(quantiles)
                )
                out[start : start + len(series)] = predicted.float().numpy()
        return out
