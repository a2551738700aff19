"""AdapterLSTM: a frozen TS2Vec encoder read by adapters, an LSTM and an MLP head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from moola.core.errors import ConfigError
from moola.models.nn.adapter_lstm import AdapterLSTM, AdapterLSTMConfig
from moola.models.nn.ts2vec_encoder import TS2VecEncoderConfig
from moola.pretrain.ts2vec import TS2VecModel
from moola.training.trainer import Trainer

TINY = {
    "input_dim": 4,
    "encoder_hidden": 8,
    "encoder_repr_dim": 16,
    "encoder_depth": 1,
    "adapter_dim": 4,
    "lstm_hidden": 8,
    "fc": [16],
    "dropout": 0.0,
}


def _x(batch: int, T: int, D: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, T, D, generator=torch.Generator().manual_seed(seed))


def _count(parameters) -> int:
    return sum(p.numel() for p in parameters)


def test_default_model_maps_relative_windows_to_logits():
    torch.manual_seed(0)
    module = AdapterLSTM(AdapterLSTMConfig()).eval()
    with torch.no_grad():
        out = module(_x(3, 105, 11))
    assert out.shape == (3, 2)
    assert torch.isfinite(out).all()
    tiny = AdapterLSTM(AdapterLSTMConfig(**{**TINY, "n_classes": 3, "n_adapters": 2}))
    assert tiny(_x(5, 20, 4)).shape == (5, 3)


def test_parameter_counts_match_the_layer_formulas_and_the_docstring():
    module = AdapterLSTM(AdapterLSTMConfig())
    R, r, H = 320, 16, 32
    encoder = 637_888  # TS2VecEncoder at its defaults (see tests/test_ts2vec.py)
    adapter = (R * r + r) + (r * R + R)
    lstm = 4 * (H * R + H * H + 2 * H)
    head = ((H + R) * 32 + 32) + (32 * 2 + 2)
    assert _count(module.encoder_parameters()) == encoder
    assert _count(module.head_parameters()) == adapter + lstm + head == 67_250
    assert _count(module.parameters()) == encoder + adapter + lstm + head == 705_138
    trainable = [p for p in module.parameters() if p.requires_grad]
    assert _count(trainable) == 67_250
    assert "705,138 parameters" in AdapterLSTM.__doc__
    assert "67,250 train" in AdapterLSTM.__doc__


def test_parameter_groups_split_the_model():
    module = AdapterLSTM(AdapterLSTMConfig(**TINY))
    encoder = {id(p) for p in module.encoder_parameters()}
    head = {id(p) for p in module.head_parameters()}
    assert encoder.isdisjoint(head)
    assert encoder | head == {id(p) for p in module.parameters()}


def test_frozen_encoder_gets_no_gradients_while_the_rest_does():
    torch.manual_seed(0)
    module = AdapterLSTM(AdapterLSTMConfig(**TINY))
    module(_x(4, 12, 4)).square().mean().backward()
    assert all(p.grad is None for p in module.encoder_parameters())
    named = dict(module.named_parameters())
    missing = [n for n, p in named.items() if not n.startswith("encoder.") and p.grad is None]
    assert not missing
    assert named["adapters.0.up.weight"].grad.abs().sum() > 0  # zero-initialised, yet learns


def test_frozen_encoder_stays_in_eval_mode_until_unfrozen():
    module = AdapterLSTM(AdapterLSTMConfig(**{**TINY, "dropout": 0.2}))
    module.train()
    assert module.lstm.training and not module.encoder.training
    module.set_encoder_trainable(True)
    module.train()
    assert module.encoder.training and not module.encoder_frozen
    module(_x(2, 12, 4)).sum().backward()
    assert all(p.grad is not None for p in module.encoder_parameters())
    unfrozen = AdapterLSTM(AdapterLSTMConfig(**{**TINY, "freeze_encoder": False}))
    assert all(p.requires_grad for p in unfrozen.encoder_parameters())


def test_new_adapters_start_as_the_identity():
    torch.manual_seed(0)
    module = AdapterLSTM(AdapterLSTMConfig(**TINY)).eval()
    z = module.encoder(_x(2, 10, 4))
    torch.testing.assert_close(module.adapters[0](z), z)


def test_training_through_the_loop_leaves_the_frozen_encoder_untouched():
    torch.manual_seed(0)
    module = AdapterLSTM(AdapterLSTMConfig(**TINY))
    encoder_before = {k: v.clone() for k, v in module.encoder.state_dict().items()}
    head_before = module.head.net[0].weight.detach().clone()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 12, 4)).astype(np.float32)
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    Trainer(epochs=2, batch_size=8, seed=0, device="cpu").fit(module, X, y)
    for key, value in module.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key
    assert not torch.equal(module.head.net[0].weight, head_before)


def test_pretrained_ts2vec_tensors_load_by_name():
    torch.manual_seed(0)
    module = AdapterLSTM(AdapterLSTMConfig(**TINY)).eval()
    pretrained = TS2VecModel(
        TS2VecEncoderConfig(input_dim=4, hidden=8, repr_dim=16, depth=1, dropout=0.0)
    ).eval()
    target = module.state_dict()
    source = pretrained.state_dict()
    assert all(k in target and target[k].shape == v.shape for k, v in source.items())
    assert {k for k in target if k.startswith("encoder.")} == set(source)
    module.load_state_dict(source, strict=False)
    x = _x(3, 15, 4)
    with torch.no_grad():
        torch.testing.assert_close(module.encoder(x), pretrained(x))


def test_same_seed_same_model():
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        module = AdapterLSTM(AdapterLSTMConfig(**TINY)).eval()
        with torch.no_grad():
            outputs.append(module(_x(2, 16, 4)))
    assert torch.equal(outputs[0], outputs[1])


def test_tiny_model_memorises_sixteen_samples_with_the_encoder_frozen():
    torch.manual_seed(0)
    module = AdapterLSTM(AdapterLSTMConfig(**TINY))
    x = _x(16, 16, 4, seed=3)
    y = torch.tensor([0, 1] * 8)[torch.randperm(16, generator=torch.Generator().manual_seed(4))]
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(module(x), y).backward()
        optimizer.step()
    module.eval()
    with torch.no_grad():
        assert (module(x).argmax(dim=1) == y).all()


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"n_adapters": -1}, "n_adapters=-1"),
        ({"lstm_hidden": 0}, "lstm_hidden=0"),
        ({"fc": "32"}, "fc='32'"),
        ({"freeze_encoder": "yes"}, "freeze_encoder='yes'"),
        ({"dropout": 1.0}, "dropout=1.0"),
    ],
)
def test_invalid_config_values_are_config_errors(kwargs, names):
    with pytest.raises(ConfigError, match=names):
        AdapterLSTMConfig(**kwargs)


def test_wrong_channel_count_is_a_config_error():
    with pytest.raises(ConfigError, match="input_dim=4"):
        AdapterLSTM(AdapterLSTMConfig(**{**TINY, "input_dim": 11}))(_x(1, 10, 4))
