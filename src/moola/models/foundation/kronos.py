"""Kronos (``kronos-finance``, MIT) as a moola backbone: embeddings of OHLC(V) windows.

Kronos was pretrained on candlesticks: a tokenizer quantises each bar's six values (open,
high, low, close, volume, amount) into two hierarchical tokens and a decoder-only
transformer reads the tokens. A window is normalised as Kronos's own predictor does (per
column over the window: minus the mean, over the spread, clipped at 5), tokenised, and the
transformer's final states averaged over the window are its embedding (``E = d_model``).
Windows carry OHLC (4 channels), OHLCV (5) or OHLCV + amount (6); a missing volume is 0 and
a missing amount is volume x mean price, as Kronos's predictor fills them. Time stamps are
not passed (moola's windows carry none), which Kronos allows.

Forecasting with Kronos samples tokens autoregressively (not deterministic); this adapter
embeds only.
"""

from __future__ import annotations

import numpy as np

from moola.core.errors import CheckpointError, ConfigError
from moola.models.foundation.base import Backbone, check_window_fits

__all__ = ["KronosBackbone"]

_BATCH = 256
_CLIP = 5.0
#: Kronos-small/base read 512 bars; Kronos-mini 2048. A folder may say otherwise in
#: ``moola_backbone.json`` ({"context_length": N}).
_DEFAULT_CONTEXT = 512


class KronosBackbone(Backbone):
    """A folder with ``tokenizer/`` and ``model/`` (each ``config.json`` + weights)."""

    kind = "kronos"

    def _load(self) -> None:
        import json

        from kronos_finance._vendor.kronos_model.kronos import Kronos, KronosTokenizer

        try:
            tokenizer = KronosTokenizer.from_pretrained(
                str(self.path / "tokenizer"), local_files_only=True
            )
            model = Kronos.from_pretrained(str(self.path / "model"), local_files_only=True)
        except (TypeError, ValueError, OSError, KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"{self.path} does not hold a Kronos tokenizer/ and model/ that load "
                f"({type(exc).__name__}: {exc}). Put the Kronos tokenizer and model folders "
                "there."
            ) from None
        if tokenizer.s1_bits != model.s1_bits or tokenizer.s2_bits != model.s2_bits:
            raise CheckpointError(
                f"{self.path}: the tokenizer ({tokenizer.s1_bits}+{tokenizer.s2_bits} bits) "
                f"and the model ({model.s1_bits}+{model.s2_bits} bits) do not belong together."
            )
        tokenizer.eval()
        model.eval()
        self._tokenizer, self._model = tokenizer, model
        settings = self.path / "moola_backbone.json"
        context = _DEFAULT_CONTEXT
        if settings.is_file():
            context = int(json.loads(settings.read_text()).get("context_length", context))
        self._context = context

    @property
    def context_length(self) -> int:
        return self._context

    def embed(self, windows: np.ndarray) -> np.ndarray:
        import torch

        values = _six_columns(check_window_fits(self, windows), self._tokenizer.d_in)
        mean = values.mean(axis=1, keepdims=True)
        std = values.std(axis=1, keepdims=True)
        normed = np.clip((values - mean) / (std + 1e-5), -_CLIP, _CLIP).astype(np.float32)
        out = np.empty((len(normed), self._model.d_model), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(normed), _BATCH):
                x = torch.from_numpy(normed[start : start + _BATCH])
                s1_ids, s2_ids = self._tokenizer.encode(x, half=True)
                _, context = self._model.decode_s1(s1_ids, s2_ids)
                out[start : start + len(x)] = context.float().mean(dim=1).numpy()
        return out


def _six_columns(values: np.ndarray, d_in: int) -> np.ndarray:
    """OHLC / OHLCV / OHLCV+amount windows as the tokenizer's ``d_in`` columns."""
    channels = values.shape[2]
    if channels not in (4, 5, 6):
        raise ConfigError(
            f"kronos backbone: windows must carry OHLC, OHLCV or OHLCV+amount (4, 5 or 6 "
            f"channels); got {channels}. Train with inputs='ohlc'."
        )
    n, t, _ = values.shape
    out = np.zeros((n, t, 6), dtype=np.float32)
    out[:, :, :channels] = values
    if channels < 6:
        out[:, :, 5] = out[:, :, 4] * values[:, :, :4].mean(axis=2)
    if d_in != 6:
        raise CheckpointError(f"kronos tokenizer reads {d_in} columns per bar; moola gives 6.")
    return out
