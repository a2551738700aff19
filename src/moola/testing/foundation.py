"""Tiny, randomly initialised foundation models of the real architectures, written to a
folder exactly as their packages save them: what tests, the README walkthrough and the
benchmarks use where no downloaded weights exist (nothing is fetched).

They learn nothing: they exercise loading, shapes, determinism, hashing and the probe's
plumbing, not forecasting skill.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["tiny_chronos_bolt", "tiny_kronos", "tiny_timesfm"]


def tiny_chronos_bolt(path: str | Path, *, seed: int = 0, context_length: int = 128) -> Path:
    """A Chronos-Bolt model with d_model 16, one layer each side, saved to ``path``."""
    import torch
    from chronos.chronos_bolt import ChronosBoltModelForForecasting
    from transformers import T5Config
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = T5Config(
        d_model=16,
        d_ff=32,
        d_kv=8,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        dense_act_fn="relu",
        feed_forward_proj="relu",
        vocab_size=2,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    config.chronos_config = {
        "context_length": context_length,
        "prediction_length": 8,
        "input_patch_size": 8,
        "input_patch_stride": 8,
        "quantiles": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        "use_reg_token": True,
    }
    config.chronos_pipeline_class = "ChronosBoltPipeline"
    config.architectures = ["ChronosBoltModelForForecasting"]
    folder = Path(path)
    ChronosBoltModelForForecasting(config).save_pretrained(folder)
    return folder


def tiny_kronos(path: str | Path, *, seed: int = 0, context_length: int = 512) -> Path:
    """A Kronos tokenizer and model with d_model 16 under ``path/tokenizer`` and
    ``path/model`` (``moola_backbone.json`` gives the context length)."""
    import torch
    from kronos_finance._vendor.kronos_model.kronos import Kronos, KronosTokenizer

    torch.manual_seed(seed)
    folder = Path(path)
    s1_bits, s2_bits = 4, 4
    KronosTokenizer(
        d_in=6,
        d_model=16,
        n_heads=2,
        ff_dim=32,
        n_enc_layers=2,
        n_dec_layers=2,
        ffn_dropout_p=0.0,
        attn_dropout_p=0.0,
        resid_dropout_p=0.0,
        s1_bits=s1_bits,
        s2_bits=s2_bits,
        beta=0.05,
        gamma0=1.0,
        gamma=1.1,
        zeta=0.05,
        group_size=4,
    ).save_pretrained(folder / "tokenizer")
    Kronos(
        s1_bits=s1_bits,
        s2_bits=s2_bits,
        n_layers=1,
        d_model=16,
        n_heads=2,
        ff_dim=32,
        ffn_dropout_p=0.0,
        attn_dropout_p=0.0,
        resid_dropout_p=0.0,
        token_dropout_p=0.0,
        learn_te=True,
    ).save_pretrained(folder / "model")
    (folder / "moola_backbone.json").write_text(json.dumps({"context_length": context_length}))
    return folder


def tiny_timesfm(path: str | Path, *, seed: int = 0, model_dims: int = 32) -> Path:
    """A TimesFM 2.5 network of the package's own definition at small sizes (patches of 8,
    output patches of 16, two layers of ``model_dims`` with 4 heads), saved to ``path`` by
    the package's ``TimesFM_2p5_200M_torch.save_pretrained`` (``config.json`` +
    ``model.safetensors``, as google/timesfm-2.5-200m-pytorch holds)."""
    import torch
    from timesfm import configs
    from timesfm.timesfm_2p5.timesfm_2p5_base import TimesFM_2p5_200M_Definition
    from timesfm.timesfm_2p5.timesfm_2p5_torch import (
        TimesFM_2p5_200M_torch,
        TimesFM_2p5_200M_torch_module,
    )

    d = model_dims
    definition = TimesFM_2p5_200M_Definition(
        input_patch_len=8,
        output_patch_len=16,
        output_quantile_len=32,
        tokenizer=configs.ResidualBlockConfig(16, d, d, True, "swish"),
        stacked_transformers=configs.StackedTransformersConfig(
            2, configs.TransformerConfig(d, d, 4, "rms", "rms", "rms", False, True, "swish", True)
        ),
        output_projection_point=configs.ResidualBlockConfig(d, d, 16 * 10, False, "swish"),
        output_projection_quantiles=configs.ResidualBlockConfig(d, d, 32 * 10, False, "swish"),
    )
    module_class = type(
        "TinyTimesFMModule", (TimesFM_2p5_200M_torch_module,), {"config": definition}
    )

    class TinyTimesFM(TimesFM_2p5_200M_torch):
        def __init__(self, torch_compile: bool = False) -> None:
            self.model = module_class()
            self.torch_compile = torch_compile

    torch.manual_seed(seed)
    folder = Path(path)
    TinyTimesFM(torch_compile=False).save_pretrained(folder)
    return folder
