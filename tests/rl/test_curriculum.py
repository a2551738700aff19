"""The curriculum: stages from easier to harder days, seeded sampling, promotion by
evaluation, the history and resuming."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.rl.curriculum import Curriculum


def _index() -> pd.DataFrame:
    """Six days, three reset points each (bars 100d, 100d + 10, 100d + 20)."""
    quality = [0.2, 0.9, 0.5, 0.7, 0.1, 0.4]
    return pd.DataFrame(
        {
            "quality": quality,
            "reset_points": [np.arange(100 * d, 100 * d + 30, 10) for d in range(6)],
        }
    )


def test_stages_go_from_high_to_low_quality() -> None:
    c = Curriculum(_index(), stages=3)
    # days ranked 1 (0.9), 3 (0.7), 2 (0.5), 5 (0.4), 0 (0.2), 4 (0.1): 6 points per stage
    assert c.stage_points(0).tolist() == [100, 110, 120, 300, 310, 320]
    assert c.stage_points(1).tolist() == [200, 210, 220, 500, 510, 520]
    assert c.stage_points(2).tolist() == [0, 10, 20, 400, 410, 420]
    assert c.stage_quality(0) == (0.7, 0.9)
    assert c.stage_quality(2) == (0.1, 0.2)
    with pytest.raises(ConfigError, match=r"stage must be in 0..2, got 3"):
        c.stage_quality(3)


def test_sample_draws_from_the_current_stage_with_the_given_rng() -> None:
    c = Curriculum(_index(), stages=3)
    draws = [c.sample(np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1]  # the rng alone decides
    rng = np.random.default_rng(0)
    got = {c.sample(rng) for _ in range(300)}
    assert got == set(c.stage_points(0).tolist())
    assert all(isinstance(x, int) for x in got)


def test_include_earlier_samples_every_stage_up_to_the_current() -> None:
    c = Curriculum(_index(), stages=3, include_earlier=True)
    c.record(1.0)
    rng = np.random.default_rng(1)
    got = {c.sample(rng) for _ in range(500)}
    assert got == set(c.stage_points(0).tolist()) | set(c.stage_points(1).tolist())


def test_promotion_needs_min_evals_and_the_threshold() -> None:
    c = Curriculum(_index(), stages=3, promote_at=0.5, min_evals=2)
    assert c.record(0.9, step=1000) is False  # first eval in the stage: too early
    assert c.stage == 0
    assert c.record(0.1, step=2000) is False  # below promote_at
    assert c.record(0.5, step=3000) is True  # at the threshold, after 2 evals
    assert c.stage == 1
    assert c.record(0.8) is False  # the count restarts in a new stage
    assert c.record(0.8) is True
    assert c.at_last_stage
    assert c.record(5.0) is False and c.record(5.0) is False  # nowhere further to go
    assert c.history[:3] == [
        {"eval": 1, "step": 1000, "stage": 0, "eval_return": 0.9, "promoted": False},
        {"eval": 2, "step": 2000, "stage": 0, "eval_return": 0.1, "promoted": False},
        {"eval": 3, "step": 3000, "stage": 0, "eval_return": 0.5, "promoted": True},
    ]
    assert [h["stage"] for h in c.history] == [0, 0, 0, 1, 1, 2, 2]
    json.dumps(c.history)  # goes into the run manifest as is


def test_state_dict_resumes_the_same_draws_and_progress() -> None:
    c = Curriculum(_index(), stages=2, promote_at=0.0, min_evals=1)
    c.record(-1.0, step=10)
    c.record(1.0, step=20)
    state = json.loads(json.dumps(c.state_dict()))
    resumed = Curriculum.from_state(_index(), state)
    assert (resumed.stage, resumed.evals_in_stage, resumed.history) == (1, 0, c.history)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert [c.sample(a) for _ in range(20)] == [resumed.sample(b) for _ in range(20)]
    other = _index().assign(quality=[0.9, 0.2, 0.5, 0.7, 0.1, 0.4])
    with pytest.raises(ConfigError, match="other reset points"):
        Curriculum.from_state(other, state)
    with pytest.raises(ConfigError, match="lacks 'stage'"):
        Curriculum.from_state(_index(), {k: v for k, v in state.items() if k != "stage"})


def test_starts_keep_only_allowed_reset_points() -> None:
    allowed = np.arange(300, 1000)  # e.g. the env's warm-up ends at bar 300
    c = Curriculum(_index(), stages=2, starts=allowed)
    assert c.points.min() >= 300 and c.points.size == 9
    assert c.stage_points(0).tolist() == [300, 310, 320, 500]
    assert c.stage_points(1).tolist() == [510, 520, 400, 410, 420]
    with pytest.raises(ConfigError, match="same bars"):
        Curriculum(_index(), starts=np.arange(5000, 6000))


def test_clear_errors() -> None:
    with pytest.raises(ConfigError, match=r"stages=19.*18 reset points"):
        Curriculum(_index(), stages=19)
    with pytest.raises(ConfigError, match="stages"):
        Curriculum(_index(), stages=0)
    with pytest.raises(ConfigError, match="min_evals"):
        Curriculum(_index(), min_evals=0)
    with pytest.raises(ConfigError, match="promote_at"):
        Curriculum(_index(), promote_at=float("nan"))
    with pytest.raises(ConfigError, match="momentum_index"):
        Curriculum(pd.DataFrame({"quality": [1.0]}))
    with pytest.raises(ConfigError, match="eval_return"):
        Curriculum(_index()).record(float("nan"))


def test_the_momentum_day_is_in_the_first_stage_of_a_scanned_index() -> None:
    from moola.rl.scanner import momentum_index
    from tests.rl.test_scanner import PER_DAY, _intraday

    index = momentum_index(_intraday(n_days=8, momentum_day=5), reset_every=20)
    c = Curriculum(index, stages=7)
    assert c.stage_points(0).tolist() == [5 * PER_DAY, 5 * PER_DAY + 20, 5 * PER_DAY + 40]


def test_the_env_starts_episodes_where_the_curriculum_says() -> None:
    from moola.rl.env import TradingEnv
    from moola.rl.scanner import momentum_index
    from tests.rl.test_scanner import _intraday

    bars = _intraday(n_days=6, momentum_day=3)
    index = momentum_index(bars, reset_every=10)
    starts = TradingEnv(bars, window=5, start="first").start_points
    curriculum = Curriculum(index, stages=2, starts=starts)
    env = TradingEnv(bars, window=5, start=curriculum)
    first = [env.reset(seed=s)[1]["bar"] for s in range(20)]
    assert set(first) <= set(curriculum.stage_points(0).tolist())
    assert first == [env.reset(seed=s)[1]["bar"] for s in range(20)]  # the seed decides
    curriculum.record(1.0)
    later = {env.reset(seed=s)[1]["bar"] for s in range(20)}
    assert later <= set(curriculum.stage_points(1).tolist())
