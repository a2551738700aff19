"""Action spaces: what each action means as a target, which actions are masked, and the
vectorised forms (the native vectorised env's) equal to the scalar ones."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moola.core.errors import ConfigError
from moola.rl.spaces import ACTION_SPACES, BUY, HOLD, SELL, SIZES, action_codec

CODECS = [
    action_codec(name, allow_short=short, max_position=cap)
    for name in ACTION_SPACES
    for short in (True, False)
    for cap in (1.0, 0.5)
]
_positions = st.one_of(
    st.sampled_from([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0]),
    st.floats(-1.0, 1.0, allow_nan=False),
)


def test_discrete12_decodes_kind_and_size() -> None:
    codec = action_codec("discrete12")
    assert codec.space == gymnasium.spaces.Discrete(12)
    assert codec.decode(BUY * 4 + 1, 0.0) == (0.5, False)  # half of the free capital
    assert codec.decode(BUY * 4 + 0, 0.5) == (0.5 + 0.25 * 0.5, False)
    assert codec.decode(BUY * 4 + 3, 0.3) == (1.0, False)  # 100% lands on the bound
    assert codec.decode(SELL * 4 + 1, 0.0) == (-0.5, False)  # shorting allowed
    assert codec.decode(SELL * 4 + 3, 0.5) == (-1.0, False)
    assert codec.decode(HOLD * 4 + 2, 0.3) == (0.3, False)
    # no capital left to buy / nothing left to sell: invalid, the target stays
    assert codec.decode(BUY * 4 + 0, 1.0) == (1.0, True)
    assert codec.decode(SELL * 4 + 2, -1.0) == (-1.0, True)


def test_discrete12_without_shorting_sells_down_to_flat() -> None:
    codec = action_codec("discrete12", allow_short=False)
    assert codec.decode(SELL * 4 + 1, 0.8) == (0.4, False)
    assert codec.decode(SELL * 4 + 3, 0.8) == (0.0, False)
    assert codec.decode(SELL * 4 + 0, 0.0) == (0.0, True)
    assert codec.masks(0.0).tolist() == [True] * 8 + [False] * 4
    assert codec.masks(1.0).tolist() == [True] * 4 + [False] * 4 + [True] * 4


def test_target_space_maps_indices_to_targets() -> None:
    codec = action_codec("target")
    assert codec.targets == (-1.0, 0.0, 1.0)
    assert [codec.decode(a, 0.7)[0] for a in range(3)] == [-1.0, 0.0, 1.0]
    assert action_codec("target", allow_short=False).targets == (0.0, 1.0)
    custom = action_codec("target", targets=(-0.5, 0.0, 0.25, 0.5))
    assert custom.space == gymnasium.spaces.Discrete(4)
    assert custom.decode(2, 0.0) == (0.25, False)
    assert custom.masks(0.0).all()


def test_continuous_clips_and_refuses_nan() -> None:
    codec = action_codec("continuous", allow_short=False, max_position=0.5)
    assert codec.space == gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
    assert codec.decode(np.array([0.9], np.float32), 0.1) == (0.5, False)
    assert codec.decode(np.array([-0.9], np.float32), 0.1) == (0.0, False)
    assert codec.decode(np.array([np.nan], np.float32), 0.1) == (0.1, True)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"name": "discrete_12"}, "action_space"),
        ({"name": "target", "targets": (-1.0, 0.0, 1.0), "allow_short": False}, "targets"),
        ({"name": "target", "targets": (2.0,)}, "targets"),
        ({"name": "discrete12", "max_position": 1.5}, "max_position"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, param) -> None:
    name = kwargs.pop("name")
    with pytest.raises(ConfigError) as err:
        action_codec(name, **kwargs)
    assert err.value.param == param
    assert param in str(err.value) or name in str(err.value)


def test_unknown_space_suggests_the_close_name() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'discrete12'"):
        action_codec("discrete_12")


def test_actions_outside_the_space_are_refused() -> None:
    codec = action_codec("discrete12")
    for bad in (12, -1, 1.5):
        with pytest.raises(ConfigError, match="action"):
            codec.decode(bad, 0.0)
    with pytest.raises(ConfigError, match="outside"):
        codec.decode_many(np.array([0, 12]), np.zeros(2))


@given(
    codec=st.sampled_from(CODECS),
    position=_positions,
    data=st.data(),
)
def test_masks_never_allow_an_invalid_action(codec, position, data) -> None:
    """A masked action is exactly an invalid one, and every target stays in range."""
    position = min(max(position, codec.low), codec.high)
    masks = codec.masks(position)
    assert masks.dtype == bool and masks.shape == (codec.n_actions,)
    actions = (
        range(codec.n_actions)
        if codec.discrete
        else [np.array([data.draw(st.floats(-1, 1, width=32))], np.float32)]
    )
    for k, action in enumerate(actions):
        target, invalid = codec.decode(action, position)
        assert invalid == (not masks[k])
        assert codec.low <= target <= codec.high
        if invalid:
            assert target == position


@given(
    codec=st.sampled_from(CODECS),
    positions=st.lists(_positions, min_size=1, max_size=20),
    data=st.data(),
)
def test_vectorised_forms_equal_the_scalar_ones(codec, positions, data) -> None:
    pos = np.clip(np.asarray(positions), codec.low, codec.high)
    n = pos.shape[0]
    if codec.discrete:
        actions = np.asarray(
            data.draw(st.lists(st.integers(0, codec.n_actions - 1), min_size=n, max_size=n))
        )
        scalar_actions = list(actions)
    else:
        values = data.draw(
            st.lists(st.floats(-1, 1, width=32) | st.just(float("nan")), min_size=n, max_size=n)
        )
        actions = np.asarray(values, np.float32).reshape(n, 1)
        scalar_actions = list(actions)
    targets, invalid = codec.decode_many(actions, pos)
    expected = [codec.decode(a, p) for a, p in zip(scalar_actions, pos.tolist(), strict=True)]
    assert targets.tolist() == [t for t, _ in expected]  # equal to the bit
    assert invalid.tolist() == [bad for _, bad in expected]
    masks = codec.masks_many(pos)
    assert masks.shape == (n, codec.n_actions)
    for row, p in zip(masks, pos.tolist(), strict=True):
        assert row.tolist() == codec.masks(p).tolist()


def test_sizes_are_the_documented_fractions() -> None:
    assert SIZES == (0.25, 0.5, 0.75, 1.0)
    codec = action_codec("discrete12")
    assert [codec.decode(BUY * 4 + k, 0.0)[0] for k in range(4)] == list(SIZES)
