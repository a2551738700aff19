"""Reward components: each one's arithmetic, clipping, smoothing, decay, the sum, the float
and array forms, per-env state and the spec's errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.rl.rewards import COMPONENTS, RewardSpec, StepOutcome


def _step(**fields: float) -> StepOutcome:
    base = {"equity_before": 100_000.0, "equity_after": 100_000.0, "initial_cash": 100_000.0}
    return StepOutcome(**{**base, **fields})


def _one(component: dict, **fields: float) -> float:
    total, parts = RewardSpec(components=[component]).build()(_step(**fields))
    assert parts[component["name"]] == total
    return total


def test_default_is_equity_change_weight_one() -> None:
    spec = RewardSpec()
    assert spec.names == ("equity_change",)
    total, parts = spec.build()(_step(equity_before=100_000.0, equity_after=101_000.0))
    assert total == pytest.approx(0.01)
    assert parts == {"equity_change": total}


def test_equity_change_sums_to_episode_pnl_over_initial_cash() -> None:
    rng = np.random.default_rng(0)
    equity = 50_000.0 * np.cumprod(1.0 + rng.normal(0.0, 0.01, 200))
    equity = np.concatenate([[50_000.0], equity])
    reward = RewardSpec().build()
    rewards = [
        reward(StepOutcome(equity_before=a, equity_after=b, initial_cash=50_000.0))[0]
        for a, b in itertools.pairwise(equity)
    ]
    assert sum(rewards) == pytest.approx((equity[-1] - equity[0]) / 50_000.0, rel=1e-12)


def test_each_component_arithmetic() -> None:
    assert _one({"name": "realised_pnl", "weight": 2.0}, realised_pnl=500.0) == pytest.approx(0.01)
    # holding cost: only in a position; grows with bars held; by_size scales by |position|
    hc = {"name": "holding_cost", "weight": -1.0, "growth": 0.5}
    assert _one(hc, position_after=0.0, bars_in_position=0.0) == 0.0
    assert _one(hc, position_after=-0.5, bars_in_position=4.0) == pytest.approx(-3.0)
    assert _one({**hc, "by_size": True}, position_after=-0.5, bars_in_position=4.0) == (
        pytest.approx(-1.5)
    )
    ot = {"name": "overtrading", "weight": -1.0, "per_turnover": 2.0, "per_trade": 0.1}
    assert _one(ot, turnover=0.5, traded=1.0) == pytest.approx(-1.1)
    assert _one({**ot, "per_cost": 10.0}, turnover=0.0, traded=0.0, costs=50.0) == (
        pytest.approx(-0.005)
    )
    assert _one({"name": "drawdown", "mode": "level", "threshold": 0.05}, drawdown=0.2) == (
        pytest.approx(-0.15)
    )
    hr = {"name": "headroom", "weight": -1.0, "threshold": 0.5}
    assert _one(hr, headroom=0.8) == 0.0
    assert _one(hr, headroom=0.25) == pytest.approx(-0.5)
    assert _one(hr, headroom=0.0) == pytest.approx(-1.0)
    assert _one({**hr, "power": 2.0}, headroom=0.25) == pytest.approx(-0.25)
    assert _one({"name": "invalid_action"}, invalid=1.0) == pytest.approx(-1e-3)
    assert _one({"name": "invalid_action"}, invalid=0.0) == 0.0


def test_drawdown_increase_penalises_only_new_drawdown() -> None:
    reward = RewardSpec(components=[{"name": "drawdown", "weight": -1.0}]).build()
    got = [reward(_step(drawdown=dd))[0] for dd in (0.0, 0.1, 0.15, 0.05, 0.12)]
    assert got == pytest.approx([0.0, -0.1, -0.05, 0.0, -0.07])
    reward.reset()  # a new episode forgets the previous drawdown
    assert reward(_step(drawdown=0.1))[0] == pytest.approx(-0.1)


def test_clip_bounds_the_raw_value_and_one_side_may_be_open() -> None:
    spec = {"name": "equity_change", "weight": 2.0, "clip": [-0.01, 0.01]}
    assert _one(spec, equity_after=110_000.0) == pytest.approx(0.02)
    assert _one(spec, equity_after=90_000.0) == pytest.approx(-0.02)
    assert _one(spec, equity_after=100_500.0) == pytest.approx(0.01)
    losses_only = {"name": "equity_change", "clip": [None, 0.0]}
    assert _one(losses_only, equity_after=110_000.0) == 0.0
    assert _one(losses_only, equity_after=90_000.0) == pytest.approx(-0.1)


def test_smoothing_is_an_ema_started_at_zero_each_episode() -> None:
    reward = RewardSpec(components=[{"name": "invalid_action", "weight": 1.0, "smoothing": 0.5}])
    r = reward.build()
    got = [r(_step(invalid=x))[0] for x in (1.0, 1.0, 0.0, 1.0)]
    assert got == pytest.approx([0.5, 0.75, 0.375, 0.6875])
    r.reset()
    assert r(_step(invalid=1.0))[0] == pytest.approx(0.5)


def test_decay_multiplies_the_weight_by_one_minus_decay_per_step() -> None:
    r = RewardSpec(components=[{"name": "invalid_action", "weight": -2.0, "decay": 0.1}]).build()
    got = [r(_step(invalid=1.0))[0] for _ in range(4)]
    assert got == pytest.approx([-2.0 * 0.9**k for k in range(4)])
    r.reset()
    assert r(_step(invalid=1.0))[0] == pytest.approx(-2.0)


def _all_components() -> RewardSpec:
    return RewardSpec(
        components=[
            {"name": "equity_change", "clip": [-0.02, 0.02], "smoothing": 0.3},
            {"name": "realised_pnl", "weight": 0.5, "decay": 0.01},
            {"name": "holding_cost", "growth": 0.1, "by_size": True, "decay": 0.05},
            {"name": "overtrading", "per_trade": 0.5, "per_cost": 1.0, "smoothing": 0.2},
            {"name": "drawdown", "weight": -0.5},
            {"name": "headroom", "threshold": 0.7, "power": 1.7, "clip": [0.0, 0.9]},
            {"name": "invalid_action", "weight": -0.01},
        ]
    )


def _random_steps(rng: np.random.Generator, n_steps: int, n_envs: int) -> list[dict]:
    steps = []
    for _ in range(n_steps):
        before = 100_000.0 * (1.0 + rng.normal(0, 0.05, n_envs))
        pos_before, pos_after = rng.uniform(-1, 1, n_envs), rng.choice([0.0, 0.5, -1.0], n_envs)
        steps.append(
            {
                "equity_before": before,
                "equity_after": before * (1.0 + rng.normal(0, 0.01, n_envs)),
                "initial_cash": np.full(n_envs, 100_000.0),
                "realised_pnl": rng.normal(0, 300, n_envs),
                "costs": rng.uniform(0, 50, n_envs),
                "position_before": pos_before,
                "position_after": pos_after,
                "turnover": np.abs(pos_after - pos_before),
                "traded": rng.integers(0, 2, n_envs).astype(float),
                "drawdown": rng.uniform(0, 0.2, n_envs),
                "headroom": rng.uniform(0, 1, n_envs),
                "invalid": rng.integers(0, 2, n_envs).astype(float),
                "bars_in_position": rng.integers(0, 30, n_envs).astype(float),
            }
        )
    return steps


def test_components_sum_to_the_total() -> None:
    assert _all_components().names == COMPONENTS
    reward = _all_components().build(8)
    for fields in _random_steps(np.random.default_rng(1), 20, 8):
        total, parts = reward(StepOutcome(**fields))
        assert set(parts) == set(COMPONENTS)
        np.testing.assert_array_equal(total, sum(parts.values()))
        assert any(np.any(v != 0) for v in parts.values())


def test_float_and_array_forms_agree_with_per_env_state_and_masked_reset() -> None:
    n = 4
    vec = _all_components().build(n)
    singles = [_all_components().build() for _ in range(n)]
    rng = np.random.default_rng(2)
    for k, fields in enumerate(_random_steps(rng, 30, n)):
        if k == 12:  # env 1 and 3 start new episodes; the others keep their state
            mask = np.array([False, True, False, True])
            vec.reset(mask)
            for i in np.flatnonzero(mask):
                singles[i].reset()
        total, parts = vec(StepOutcome(**fields))
        assert isinstance(total, np.ndarray) and total.shape == (n,)
        for i, single in enumerate(singles):
            t, p = single(StepOutcome(**{key: float(v[i]) for key, v in fields.items()}))
            assert isinstance(t, float)
            assert t == total[i]  # bit-identical
            assert p == {name: v[i] for name, v in parts.items()}


def test_float_fields_broadcast_next_to_arrays() -> None:
    reward = RewardSpec().build(3)
    total, _ = reward(
        StepOutcome(
            equity_before=np.array([100.0, 100.0, 100.0]),
            equity_after=np.array([101.0, 99.0, 100.0]),
            initial_cash=100.0,
        )
    )
    np.testing.assert_allclose(total, [0.01, -0.01, 0.0])


def test_shape_errors_name_the_field() -> None:
    reward = RewardSpec().build(3)
    with pytest.raises(ConfigError, match=r"equity_after.*n_envs=3"):
        reward(StepOutcome(equity_before=np.ones(3), equity_after=np.ones(2), initial_cash=1.0))
    with pytest.raises(ConfigError, match=r"n_envs=3.*float"):
        reward(StepOutcome(equity_before=1.0, equity_after=1.0, initial_cash=1.0))
    with pytest.raises(ConfigError, match=r"mask.*shape \(3,\)"):
        reward.reset(np.array([True, False]))
    with pytest.raises(ConfigError, match="n_envs"):
        RewardSpec().build(0)


_HC, _DD, _EC = "holding_cost", "drawdown", "equity_change"
BAD_SPECS = [
    ({"components": [{"name": "equity_chnge"}]}, r"components\[0\].*did you mean 'equity_change'"),
    ({"components": [{"name": _HC, "growht": 1}]}, r"\(holding_cost\).*'growht'.*mean 'growth'"),
    (
        {"components": [_EC, {"name": _DD, "mode": "peak"}]},
        r"components\[1\] \(drawdown\) key mode",
    ),
    ({"components": [{"name": "headroom", "threshold": 0.0}]}, r"\(headroom\) key threshold"),
    ({"components": [{"name": _EC, "smoothing": 1.0}]}, r"\(equity_change\) key smoothing"),
    ({"components": [{"name": "invalid_action", "decay": -0.1}]}, r"\(invalid_action\) key decay"),
    ({"components": [{"name": _EC, "clip": [0.1, -0.1]}]}, r"key clip: clip needs lo < hi"),
    ({"components": [{"name": "overtrading", "per_turnover": 0.0}]}, r"nothing to penalise"),
    ({"components": [{"weight": 1.0}]}, r"components\[0\] has no 'name'"),
    ({"components": [_DD, _DD]}, r"'drawdown' is given 2 times"),
    ({"components": []}, r"at least one"),
    ({"compnents": []}, r"compnents: unknown key \(did you mean 'components'\?\)"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_spec_errors_name_the_component_and_key(spec: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        RewardSpec.of(spec)
    assert info.value.param == "reward"


def test_spec_is_frozen_round_trips_and_adds_components() -> None:
    spec = _all_components()
    assert RewardSpec(**spec.model_dump()) == spec
    with pytest.raises(Exception, match="frozen"):
        spec.components = ()  # type: ignore[misc]
    assert RewardSpec.of(None) == RewardSpec()
    with pytest.raises(ConfigError, match="reward must be"):
        RewardSpec.of("equity_change")
    added = RewardSpec().with_component("invalid_action", weight=-0.001)
    assert added.names == ("equity_change", "invalid_action")
    assert added.with_component("invalid_action", weight=-5.0) == added
