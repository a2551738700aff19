"""TimesFM 2.5 (``timesfm``, Apache-2.0) as a moola backbone: zero-shot quantile forecasts
of a window's last channel, and patch-state embeddings.

The folder is what ``TimesFM_2p5_200M_torch.save_pretrained`` writes (and what
``google/timesfm-2.5-200m-pytorch`` holds): ``config.json`` and ``model.safetensors``. The
package builds its network from a class-level definition (``TimesFM_2p5_200M_Definition``,
the 200M sizes); this adapter reads the definition off the tensor shapes in the
safetensors header instead (patch lengths, widths, heads, layers), so the 200M checkpoint
and a smaller one of the same architecture both load, and a folder of another
architecture is refused by the strict state-dict load, naming the path. Nothing is
compiled (``torch.compile`` stays off: on a CPU it costs more than it saves).

Forecasts go through the package's own decoding (``compile`` + ``forecast``) with the
settings its authors recommend for 2.5: inputs normalised, the continuous quantile head,
flip invariance, no quantile crossing. TimesFM gives the mean and the nine deciles
0.1 ... 0.9 per step; other levels are read off the deciles by linear interpolation, and
levels outside [0.1, 0.9] are refused (the model says nothing about tails beyond them).
The forecast is deterministic (no sampling).

Embeddings: each channel of a window is a separate series (TimesFM is univariate and scales
each series by its own running mean and spread); the transformer's output states of the
patches holding real bars (not the left padding up to a whole patch) are averaged, and the
channels' averages concatenated: ``E = C * model_dims``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from moola.core.errors import CheckpointError, ConfigError
from moola.models.foundation.base import Backbone, check_window_fits

__all__ = ["TimesFMBackbone", "timesfm_definition"]

_BATCH = 64
_DECILES = tuple(round(0.1 * i, 1) for i in range(1, 10))
_WEIGHTS = "model.safetensors"


def timesfm_definition(shapes: dict[str, tuple[int, ...]]) -> Any:
    """The ``TimesFM_2p5_200M_Definition`` whose network has tensors of ``shapes`` (name ->
    shape, as in ``model.safetensors``). ``KeyError``/``ValueError`` when the names are not
    TimesFM 2.5's."""
    from timesfm import configs
    from timesfm.timesfm_2p5.timesfm_2p5_base import TimesFM_2p5_200M_Definition

    q = len(_DECILES) + 1  # the mean and the nine deciles
    layers = {int(name.split(".")[1]) for name in shapes if name.startswith("stacked_xf.")}
    if not layers or layers != set(range(len(layers))):
        raise ValueError("no stacked_xf.N transformer layers")
    tok_hidden, tok_in = shapes["tokenizer.hidden_layer.weight"]
    model_dims = shapes["stacked_xf.0.attn.out.weight"][0]
    head_dims = shapes["stacked_xf.0.attn.per_dim_scale.per_dim_scale"][0]
    point_out, point_hidden = shapes["output_projection_point.output_layer.weight"]
    quant_out, quant_hidden = shapes["output_projection_quantiles.output_layer.weight"]
    if tok_in % 2 or point_out % q or quant_out % q or model_dims % head_dims:
        raise ValueError("tensor shapes do not fit TimesFM 2.5's layout")
    patch = tok_in // 2  # the tokenizer reads a patch and its mask
    output_patch = point_out // q
    if output_patch % patch:
        raise ValueError("the output patch is not a whole number of input patches")
    return TimesFM_2p5_200M_Definition(
        input_patch_len=patch,
        output_patch_len=output_patch,
        output_quantile_len=quant_out // q,
        tokenizer=configs.ResidualBlockConfig(
            input_dims=tok_in,
            hidden_dims=tok_hidden,
            output_dims=shapes["tokenizer.output_layer.weight"][0],
            use_bias="tokenizer.hidden_layer.bias" in shapes,
            activation="swish",
        ),
        stacked_transformers=configs.StackedTransformersConfig(
            num_layers=len(layers),
            transformer=configs.TransformerConfig(
                model_dims=model_dims,
                hidden_dims=shapes["stacked_xf.0.ff0.weight"][0],
                num_heads=model_dims // head_dims,
                attention_norm="rms",
                feedforward_norm="rms",
                qk_norm="rms" if "stacked_xf.0.attn.query_ln.scale" in shapes else "none",
                use_bias="stacked_xf.0.ff0.bias" in shapes,
                use_rotary_position_embeddings=True,
                ff_activation="swish",
                fuse_qkv="stacked_xf.0.attn.qkv_proj.weight" in shapes,
            ),
        ),
        output_projection_point=configs.ResidualBlockConfig(
            input_dims=model_dims,
            hidden_dims=point_hidden,
            output_dims=point_out,
            use_bias="output_projection_point.hidden_layer.bias" in shapes,
            activation="swish",
        ),
        output_projection_quantiles=configs.ResidualBlockConfig(
            input_dims=model_dims,
            hidden_dims=quant_hidden,
            output_dims=quant_out,
            use_bias="output_projection_quantiles.hidden_layer.bias" in shapes,
            activation="swish",
        ),
    )


def _module_class(definition: Any) -> type:
    """The package's torch module with ``definition`` as its class-level config."""
    from timesfm.timesfm_2p5.timesfm_2p5_torch import TimesFM_2p5_200M_torch_module

    return type("TimesFMModule", (TimesFM_2p5_200M_torch_module,), {"config": definition})


def _wrapper_class() -> type:
    """The package's forecasting wrapper around a module built here (no 200M allocation,
    no ``torch.compile``)."""
    from timesfm.timesfm_2p5.timesfm_2p5_torch import TimesFM_2p5_200M_torch

    class _Wrapper(TimesFM_2p5_200M_torch):
        def __init__(self, module: Any = None, torch_compile: bool = False) -> None:
            self.model = module
            self.torch_compile = False

    return _Wrapper


class TimesFMBackbone(Backbone):
    """A TimesFM 2.5 folder (``config.json`` + ``model.safetensors``)."""

    kind = "timesfm"

    def _load(self) -> None:
        import torch
        from safetensors import safe_open

        weights = self.path / _WEIGHTS
        if not weights.is_file():
            raise ConfigError(
                f"timesfm weights folder {self.path} lacks {_WEIGHTS}. Put the TimesFM 2.5 "
                "checkpoint's config.json and model.safetensors there."
            )
        try:
            with safe_open(str(weights), framework="pt") as handle:
                shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
            definition = timesfm_definition(shapes)
            module = _module_class(definition)()
            module.device = torch.device("cpu")  # as chronos: moola runs backbones on the CPU
            module.device_count = 1
            module.load_checkpoint(str(weights))
        except (KeyError, ValueError, RuntimeError, OSError, TypeError) as exc:
            raise CheckpointError(
                f"{weights} is not a TimesFM 2.5 checkpoint that loads ({type(exc).__name__}: "
                f"{str(exc)[:300]}). Put google/timesfm-2.5-200m-pytorch's files (or a "
                "checkpoint saved by TimesFM_2p5_200M_torch.save_pretrained) there."
            ) from None
        module.eval()
        self._module = module
        self._definition = definition
        self._wrapper = _wrapper_class()(module)
        self._compiled: tuple[int, int, int] | None = None

    @property
    def context_length(self) -> int:
        d = self._definition
        return int(d.context_limit - d.output_patch_len)

    @property
    def model_dims(self) -> int:
        """Width of one channel's embedding."""
        return int(self._definition.stacked_transformers.transformer.model_dims)

    @property
    def patch_length(self) -> int:
        return int(self._definition.input_patch_len)

    def forecast(
        self, windows: np.ndarray, horizon: int, quantiles: tuple[float, ...]
    ) -> np.ndarray:
        if horizon < 1:
            raise ConfigError(f"horizon must be >= 1; got {horizon}.")
        if not quantiles or not all(0.1 - 1e-9 <= q <= 0.9 + 1e-9 for q in quantiles):
            raise ConfigError(
                f"timesfm forecasts the deciles 0.1 ... 0.9; quantiles must lie in [0.1, 0.9]; "
                f"got {quantiles}."
            )
        values = check_window_fits(self, windows)
        series = values[:, :, -1].astype(np.float64)
        self._compile(values.shape[1], horizon, min(_BATCH, len(series)))
        out = np.empty((len(series), horizon, len(quantiles)), dtype=np.float64)
        for start in range(0, len(series), _BATCH):
            chunk = [row for row in series[start : start + _BATCH]]  # forecast() pads the list
            _, deciles = self._wrapper.forecast(horizon, chunk)
            deciles = np.asarray(deciles, dtype=np.float64)[:, :horizon, 1:]  # drop the mean
            for j, level in enumerate(quantiles):
                out[start : start + len(chunk), :, j] = _interpolate(deciles, level)
        return out

    def _compile(self, length: int, horizon: int, batch: int) -> None:
        from timesfm import configs

        d = self._definition
        context = math.ceil(length / d.input_patch_len) * d.input_patch_len
        max_horizon = math.ceil(horizon / d.output_patch_len) * d.output_patch_len
        if context + max_horizon > d.context_limit:
            raise ConfigError(
                f"timesfm at {self.path}: {context} bars of context + a horizon of "
                f"{max_horizon} exceed its limit of {d.context_limit}."
            )
        key = (context, max_horizon, batch)
        if self._compiled == key:
            return
        self._wrapper.compile(
            configs.ForecastConfig(
                max_context=context,
                max_horizon=max_horizon,
                normalize_inputs=True,
                per_core_batch_size=batch,
                use_continuous_quantile_head=max_horizon <= d.output_quantile_len,
                force_flip_invariance=True,
                infer_is_positive=True,
                fix_quantile_crossing=True,
            )
        )
        self._compiled = key

    def embed(self, windows: np.ndarray) -> np.ndarray:
        import torch

        values = check_window_fits(self, windows)
        n, length, channels = values.shape
        p = self.patch_length
        context = math.ceil(length / p) * p
        pad = context - length
        first_real_patch = pad // p  # left padding fills whole patches only before this one
        captured: list[torch.Tensor] = []
        hook = self._module.register_forward_hook(
            lambda _m, _inputs, output: captured.append(output[0][1])
        )
        out = np.empty((n, channels * self.model_dims), dtype=np.float64)
        try:
            with torch.inference_mode():
                for start in range(0, n, _BATCH):
                    chunk = values[start : start + _BATCH].astype(np.float64)
                    parts = []
                    for c in range(channels):
                        series = chunk[:, :, c]
                        mu = series.mean(axis=1, keepdims=True)
                        sigma = series.std(axis=1, keepdims=True)
                        normed = (series - mu) / np.where(sigma > 0, sigma, 1.0)
                        inputs = np.zeros((len(series), context), dtype=np.float32)
                        inputs[:, pad:] = normed
                        masks = np.zeros((len(series), context), dtype=bool)
                        masks[:, :pad] = True
                        captured.clear()
                        self._module.decode(1, torch.from_numpy(inputs), torch.from_numpy(masks))
                        states = captured[0][:, first_real_patch:, :]
                        parts.append(states.float().mean(dim=1).numpy())
                    out[start : start + len(chunk)] = np.concatenate(parts, axis=1)
        finally:
            hook.remove()
        return out


def _interpolate(deciles: np.ndarray, level: float) -> np.ndarray:
    """Level ``level`` of ``deciles`` (..., 9) by linear interpolation between deciles."""
    position = min(max((level - 0.1) / 0.1, 0.0), 8.0)
    low = math.floor(position)
    high = min(low + 1, 8)
    weight = position - low
    return (1.0 - weight) * deciles[..., low] + weight * deciles[..., high]
