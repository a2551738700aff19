"""The torch modules behind the neural models: shapes, sizes, causality, learning, errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from moola.core.errors import ConfigError
from moola.models.nn import (
    ARCHITECTURES,
    BiLSTMEncoder,
    BiLSTMEncoderConfig,
    MultiTaskLoss,
    build_module,
    config_of,
    count_parameters,
    pack_features,
)

#: (T, D) each architecture is built for by default (enhanced: 4 OHLC + 20 packed features).
DEFAULT_INPUT = {
    "simple_lstm": (105, 4),
    "enhanced_simple_lstm": (105, 24),
    "bilstm": (60, 31),
    "cnn_lstm_attention": (120, 4),
    "transformer": (100, 31),
    "adapter_lstm": (105, 11),
}

#: Small shapes for the learning check: (T, D, config kwargs), dropout off.
TINY = {
    "simple_lstm": (16, 4, {"hidden": 16, "heads": 2, "fc": [16], "dropout": 0.0}),
    "enhanced_simple_lstm": (
        16,
        4 + 3,
        {
            "n_features": 3,
            "encoder_hidden": 8,
            "encoder_layers": 1,
            "feature_hidden": [8],
            "fc": [16],
            "dropout": 0.0,
        },
    ),
    "bilstm": (16, 4, {"input_dim": 4, "hidden": 8, "fc": [16], "dropout": 0.0}),
    "cnn_lstm_attention": (
        16,
        4,
        {"conv_channels": [8, 8], "lstm_hidden": 8, "attention_dim": 8, "fc": [16], "dropout": 0},
    ),
    "transformer": (
        16,
        4,
        {"input_dim": 4, "d_model": 16, "n_layers": 1, "heads": 2, "ffn": 32, "fc": [16]},
    ),
    "adapter_lstm": (
        16,
        4,
        {
            "input_dim": 4,
            "encoder_hidden": 8,
            "encoder_repr_dim": 16,
            "encoder_depth": 1,
            "adapter_dim": 4,
            "lstm_hidden": 8,
            "fc": [16],
            "dropout": 0.0,
            "freeze_encoder": False,
        },
    ),
}


def _x(batch: int, T: int, D: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, T, D, generator=torch.Generator().manual_seed(seed))


def _lstm_params(n_in: int, hidden: int, layers: int, bidirectional: bool) -> int:
    """Hand formula: per direction and layer, 4 gates x (W_ih, W_hh, b_ih, b_hh)."""
    dirs = 2 if bidirectional else 1
    total = 0
    for layer in range(layers):
        width = n_in if layer == 0 else hidden * dirs
        total += dirs * 4 * (hidden * width + hidden * hidden + 2 * hidden)
    return total


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_default_module_maps_windows_to_logits(architecture):
    torch.manual_seed(0)
    module = build_module(architecture).eval()
    T, D = DEFAULT_INPUT[architecture]
    with torch.no_grad():
        out = module(_x(3, T, D))
    assert out.shape == (3, 2)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_docstring_states_the_exact_default_size(architecture):
    module = build_module(architecture)
    assert f"{count_parameters(module):,} parameters" in type(module).__doc__


def test_simple_lstm_is_near_70k_parameters():
    assert 60_000 <= count_parameters(build_module("simple_lstm")) <= 80_000


def test_bilstm_size_matches_the_lstm_formula():
    # 2 x 64 x 2 layers on 31 inputs, then 128 -> 64 -> 1
    expected = _lstm_params(31, 64, 2, True) + (128 * 64 + 64) + (64 * 1 + 1)
    assert count_parameters(build_module("bilstm", n_classes=1)) == expected == 157_313


def test_count_parameters_can_skip_frozen_weights():
    module = build_module("simple_lstm", encoder_projection=True)
    for p in module.encoder.parameters():
        p.requires_grad_(False)
    frozen = _lstm_params(4, 128, 2, True)
    total = count_parameters(module)
    assert count_parameters(module, trainable_only=True) == total - frozen


def test_simple_lstm_per_step_outputs_ignore_the_future():
    torch.manual_seed(0)
    module = build_module("simple_lstm").eval()
    x = _x(4, 105, 4)
    t = 60
    changed = x.clone()
    changed[:, t + 1 :] = _x(4, 105 - t - 1, 4, seed=1) * 5
    with torch.no_grad():
        before, after = module.forward_sequence(x), module.forward_sequence(changed)
    assert module.is_causal
    assert before.shape == (4, 105, 2)
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(before[:, t + 1 :], after[:, t + 1 :])


def test_simple_lstm_forward_is_the_last_step_of_forward_sequence():
    torch.manual_seed(0)
    module = build_module("simple_lstm").eval()
    x = _x(2, 30, 4)
    with torch.no_grad():
        torch.testing.assert_close(module(x), module.forward_sequence(x)[:, -1])


def test_simple_lstm_with_pretrained_encoder_loads_encoder_weights_and_is_not_causal():
    torch.manual_seed(0)
    module = build_module("simple_lstm", encoder_projection=True).eval()
    pretrained = BiLSTMEncoder(BiLSTMEncoderConfig())  # 2 x 128 -> 256-d, as the masked AE
    module.encoder.load_state_dict(pretrained.state_dict())  # same names, same shapes
    assert module.pretrained_projection.in_features == 256
    assert "encoder.lstm.weight_ih_l0" in module.state_dict()
    x = _x(2, 105, 4)
    changed = x.clone()
    changed[:, 10:] += 1.0
    with torch.no_grad():
        before, after = module.forward_sequence(x), module.forward_sequence(changed)
    assert module(x).shape == (2, 2)
    assert not module.is_causal
    assert not torch.equal(before[:, :10], after[:, :10])  # the backward LSTM sees ahead


def test_enhanced_packed_input_equals_explicit_features():
    torch.manual_seed(0)
    module = build_module("enhanced_simple_lstm").eval()
    x, features = _x(3, 105, 4), torch.randn(3, 20)
    packed = pack_features(x, features)
    assert packed.shape == (3, 105, 24)
    noisy = packed.clone()
    noisy[:, 1:, 4:] = 99.0  # feature channels after step 0 are ignored
    other = pack_features(x, features + 1.0)
    with torch.no_grad():
        explicit = module(x, features)
        torch.testing.assert_close(module(packed), explicit)
        torch.testing.assert_close(module(noisy), explicit)
        assert not torch.allclose(module(other), explicit)


def test_enhanced_rejects_mismatched_channels():
    module = build_module("enhanced_simple_lstm")
    with pytest.raises(ConfigError, match="24"):
        module(_x(2, 105, 4))
    with pytest.raises(ConfigError, match="n_features=5"):
        module(_x(2, 105, 4), torch.randn(2, 5))


def test_cnn_lstm_attention_aux_heads_return_a_dict():
    torch.manual_seed(0)
    module = build_module(
        "cnn_lstm_attention", volatility_head=True, regime_head=True, n_classes=3
    ).eval()
    with torch.no_grad():
        out = module(_x(5, 120, 4))
    assert set(out) == {"direction", "volatility", "regime"}
    assert out["direction"].shape == (5, 3)
    assert out["volatility"].shape == (5,)
    assert out["regime"].shape == (5, 3)
    _, weights = module.encode(_x(5, 120, 4))
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(5))


def test_multitask_loss_weights():
    losses = {"direction": torch.tensor(1.0), "volatility": torch.tensor(2.0)}
    fixed = MultiTaskLoss(["direction", "volatility"], "fixed", {"direction": 0.5, "volatility": 2})
    assert fixed(losses).item() == pytest.approx(0.5 * 1 + 2 * 2)
    learned = MultiTaskLoss(["direction", "volatility"])
    assert learned(losses).item() == pytest.approx(3.0)  # exp(0) * L + 0 per task
    with torch.no_grad():
        learned.log_vars.fill_(1.0)
    assert learned(losses).item() == pytest.approx(torch.e**-1 * 3 + 2)
    assert learned.task_weights()["volatility"] == pytest.approx(torch.e**-1)
    with pytest.raises(ConfigError, match="missing"):
        learned({"direction": torch.tensor(1.0)})


def test_cnn_lstm_attention_heads_give_one_output_per_head_in_order():
    torch.manual_seed(0)
    heads = {"direction": 2, "volatility": "regression", "regime": 3}
    module = build_module("cnn_lstm_attention", heads=heads).eval()
    with torch.no_grad():
        out = module(_x(5, 120, 4))
    assert list(out) == ["direction", "volatility", "regime"]
    assert out["direction"].shape == (5, 2)
    assert out["volatility"].shape == (5,)
    assert out["regime"].shape == (5, 3)
    rebuilt = build_module(**json.loads(json.dumps(config_of(module))))
    rebuilt.load_state_dict(module.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(_x(5, 120, 4)), module(_x(5, 120, 4)))


@pytest.mark.parametrize(
    ("heads", "words"),
    [
        ({}, "non-empty mapping"),
        ([("direction", 2)], "non-empty mapping"),
        ({"direction": 1}, "head 'direction' must be 'regression' or a number of classes"),
        ({"vol": "regress"}, "head 'vol' must be 'regression'"),
        ({"direction": True}, "got True"),
        ({"my head": 2}, "head name 'my head'"),
        ({"keys": 2}, "head name 'keys'"),
    ],
)
def test_a_bad_heads_spec_is_refused_naming_the_head(heads, words):
    with pytest.raises(ConfigError, match=words):
        build_module("cnn_lstm_attention", heads=heads)


def test_heads_and_the_aux_head_flags_do_not_mix():
    with pytest.raises(ConfigError, match="drop volatility_head/regime_head"):
        build_module("cnn_lstm_attention", heads={"a": 2, "b": 3}, volatility_head=True)


def test_multitask_loss_halves_regression_terms():
    losses = {"direction": torch.tensor(1.0), "volatility": torch.tensor(2.0)}
    loss = MultiTaskLoss.for_heads({"direction": 2, "volatility": "regression"})
    with torch.no_grad():
        loss.log_vars.fill_(1.0)
    expected = (torch.e**-1 * 1 + 1) + 0.5 * (torch.e**-1 * 2 + 1)
    assert loss(losses).item() == pytest.approx(expected)
    assert loss.task_weights() == pytest.approx(
        {"direction": torch.e**-1, "volatility": torch.e**-1}
    )
    with pytest.raises(ConfigError, match="regression task"):
        MultiTaskLoss(["direction"], regression=["volatility"])


def test_transformer_sigmoid_output_is_a_strength_in_unit_interval():
    torch.manual_seed(0)
    module = build_module("transformer", output="sigmoid", n_classes=1, pooling="cls").eval()
    with torch.no_grad():
        out = module(_x(4, 130, 31) * 10)  # longer than seq_len=100 still runs
    assert out.shape == (4, 1)
    assert ((out >= 0) & (out <= 1)).all()


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_same_seed_same_module_and_outputs(architecture):
    T, D, kwargs = TINY[architecture]
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        module = build_module(architecture, **kwargs).eval()
        with torch.no_grad():
            runs.append((module.state_dict(), module(_x(2, T, D))))
    (state_a, out_a), (state_b, out_b) = runs
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    assert torch.equal(out_a, out_b)


GRADIENT_CASES = [
    ("simple_lstm", {}),
    ("simple_lstm", {"encoder_projection": True, "encoder_layers": 1}),
    ("enhanced_simple_lstm", {}),
    ("bilstm", {"n_classes": 1}),
    ("cnn_lstm_attention", {"volatility_head": True, "regime_head": True}),
    ("transformer", {"pooling": "cls"}),
]


@pytest.mark.parametrize(("architecture", "kwargs"), GRADIENT_CASES)
def test_gradients_reach_every_parameter(architecture, kwargs):
    torch.manual_seed(0)
    module = build_module(architecture, **kwargs)
    T, D = DEFAULT_INPUT[architecture]
    out = module(_x(2, T, D))
    outputs = out.values() if isinstance(out, dict) else [out]
    sum(o.square().mean() for o in outputs).backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_tiny_model_memorises_sixteen_samples(architecture):
    T, D, kwargs = TINY[architecture]
    torch.manual_seed(0)
    module = build_module(architecture, **kwargs)
    x = _x(16, T, D, seed=3)
    y = torch.tensor([0, 1] * 8)[torch.randperm(16, generator=torch.Generator().manual_seed(4))]
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(module(x), y).backward()
        optimizer.step()
    module.eval()
    with torch.no_grad():
        accuracy = (module(x).argmax(dim=1) == y).float().mean().item()
    assert accuracy == 1.0


def test_config_round_trips_through_json():
    module = build_module("cnn_lstm_attention", conv_channels=[16, 16, 32], kernel_sizes=[3, 3, 5])
    config = json.loads(json.dumps(config_of(module)))
    rebuilt = build_module(**config)
    assert rebuilt.config == module.config
    assert count_parameters(rebuilt) == count_parameters(module)


def test_unknown_architecture_is_a_config_error_with_suggestion():
    with pytest.raises(ConfigError, match="Did you mean 'simple_lstm'") as info:
        build_module("simple_lstn")
    assert "transformer" in str(info.value)


def test_unknown_config_key_names_it_and_lists_valid_keys():
    with pytest.raises(ConfigError, match="hiden") as info:
        build_module("bilstm", hiden=32)
    assert "Did you mean 'hidden'" in str(info.value)
    assert "num_layers" in str(info.value)


@pytest.mark.parametrize(
    ("architecture", "kwargs", "names"),
    [
        ("simple_lstm", {"hidden": 70, "heads": 4}, "hidden=70"),
        ("bilstm", {"dropout": 1.5}, "dropout=1.5"),
        ("bilstm", {"hidden": 0}, "hidden=0"),
        ("transformer", {"output": "softmax"}, "output='softmax'"),
        ("transformer", {"pooling": "max"}, "pooling='max'"),
        ("cnn_lstm_attention", {"kernel_sizes": [3]}, "kernel_sizes"),
        ("enhanced_simple_lstm", {"fc": "128"}, "fc='128'"),
    ],
)
def test_invalid_config_values_are_config_errors(architecture, kwargs, names):
    with pytest.raises(ConfigError, match=names):
        build_module(architecture, **kwargs)


def test_wrong_channel_count_is_a_config_error():
    with pytest.raises(ConfigError, match="input_dim=11"):
        build_module("simple_lstm")(_x(1, 105, 11))


def test_modules_leave_torch_thread_count_alone():
    threads = torch.get_num_threads()
    for architecture, (T, D, kwargs) in TINY.items():
        with torch.no_grad():
            build_module(architecture, **kwargs)(_x(1, T, D))
    assert torch.get_num_threads() == threads
