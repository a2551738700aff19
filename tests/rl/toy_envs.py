"""Small Gymnasium trading envs for testing agents, extractors, callbacks and evaluation
without the full TradingEnv: a Dict observation ("window" of past returns, "portfolio"),
a target-position action, equity marked with a proportional cost per unit of turnover."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import gymnasium
import numpy as np


@dataclass(frozen=True)
class ToyCodec:
    """The action codec the env keeps (decode(action, position) -> (target, invalid))."""

    space: gymnasium.spaces.Space
    targets: tuple[float, ...]
    low: float = -1.0
    high: float = 1.0

    def decode(self, action, position: float) -> tuple[float, bool]:
        if isinstance(self.space, gymnasium.spaces.Box):
            value = float(np.asarray(action).reshape(-1)[0])
            return (position, True) if value != value else (min(max(value, -1.0), 1.0), False)
        return self.targets[int(np.asarray(action).reshape(-1)[0])], False


class ToyMarketEnv(gymnasium.Env):
    """Trade one asset whose per-bar returns are ``returns``.

    The observation at bar t holds returns t-window+1..t (x100) and the position; the
    action sets the target position for the next return; equity is multiplied by
    ``1 + position * r[t+1]`` and pays ``cost`` per unit of position change.
    ``extra_windows`` adds "window_<name>" keys of other lengths (same data, coarser);
    ``masked`` makes action 2 (long) masked and invalid while the position is long.
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(
        self,
        returns: np.ndarray,
        *,
        window: int = 4,
        cost: float = 0.0,
        episode_length: int = 64,
        action: str = "target",
        extra_windows: dict[str, int] | None = None,
        static: bool = False,
        masked: bool = False,
    ) -> None:
        self.returns = np.asarray(returns, dtype=np.float64)
        self.window, self.cost, self.episode_length = window, cost, episode_length
        self.extra_windows = dict(extra_windows or {})
        self.masked = masked
        lengths = [window, *self.extra_windows.values()]
        self.first = max(lengths) - 1
        spaces = {"window": gymnasium.spaces.Box(-np.inf, np.inf, (window, 1), np.float32)}
        for name, length in self.extra_windows.items():
            spaces[f"window_{name}"] = gymnasium.spaces.Box(
                -np.inf, np.inf, (length, 2), np.float32
            )
        spaces["portfolio"] = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        if static:
            spaces["static"] = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.observation_space = gymnasium.spaces.Dict(spaces)
        if action == "continuous":
            self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
        else:
            self.action_space = gymnasium.spaces.Discrete(3)
        self.codec = ToyCodec(self.action_space, (-1.0, 0.0, 1.0))
        self.initial_cash = 10_000.0

    def _obs(self) -> dict[str, np.ndarray]:
        t = self.t
        out = {
            "window": (self.returns[t - self.window + 1 : t + 1] * 100).astype(np.float32)[:, None]
        }
        for name, length in self.extra_windows.items():
            chunk = self.returns[t - length + 1 : t + 1] * 100
            out[f"window_{name}"] = np.stack([chunk, np.cumsum(chunk)], axis=1).astype(np.float32)
        drawdown = 1.0 - self.equity / max(self.episode_equity)
        out["portfolio"] = np.array([self.position, drawdown], dtype=np.float32)
        if "static" in self.observation_space.spaces:
            out["static"] = np.array([1.0, 0.0, 0.5], dtype=np.float32)
        return out

    def action_masks(self) -> np.ndarray:
        masks = np.ones(3, dtype=bool)
        if self.masked and self.position >= 1.0:
            masks[2] = False
        return masks

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        last = len(self.returns) - self.episode_length - 1
        self.t = int(self.np_random.integers(self.first, last + 1))
        self.steps, self.position, self.equity = 0, 0.0, self.initial_cash
        self.episode_equity = [self.equity]
        self.invalid = 0
        return self._obs(), {"equity": self.equity, "position": self.position}

    def step(self, action):
        invalid = bool(self.masked and not self.action_masks()[int(action)])
        target, bad = self.codec.decode(action, self.position)
        invalid = invalid or bad
        if invalid:
            target = self.position
            self.invalid += 1
        before = self.equity
        cost = self.cost * abs(target - self.position) * self.equity
        self.position = target
        self.t += 1
        self.steps += 1
        self.equity = (self.equity - cost) * (1.0 + self.position * self.returns[self.t])
        self.episode_equity.append(self.equity)
        change = (self.equity - before) / self.initial_cash
        components = {"equity_change": change, "invalid_action": 0.0}
        terminated = self.equity <= 0
        truncated = self.steps >= self.episode_length
        info = {
            "equity": self.equity,
            "position": self.position,
            "reward_components": components,
            "invalid_action": invalid,
            "invalid_actions": self.invalid,
            "terminated_by": "bankruptcy" if terminated else None,
        }
        return self._obs(), float(change), bool(terminated), bool(truncated), info


def momentum_returns(n: int, *, seed: int, edge: float = 0.9, scale: float = 0.01) -> np.ndarray:
    """Returns whose sign repeats the previous one's with probability ``edge``."""
    rng = np.random.default_rng(seed)
    signs = np.empty(n)
    signs[0] = 1.0
    flips = rng.random(n) > edge
    for i in range(1, n):
        signs[i] = -signs[i - 1] if flips[i] else signs[i - 1]
    return signs * scale * (0.5 + rng.random(n))


def random_walk_returns(n: int, *, seed: int, scale: float = 0.01) -> np.ndarray:
    """Independent zero-mean returns: nothing to learn."""
    return np.random.default_rng(seed).normal(0.0, scale, n)


def synthetic_bars(n: int = 400, *, seed: int = 0, scale: float = 0.003):
    """Canonical 1-minute bars of a random walk, each opening at the previous close."""
    import pandas as pd

    from moola.data.schema import make_bars

    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, scale, n)))
    open_ = np.r_[100.0, close[:-1]]
    high, low = np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999
    stamps = pd.date_range("2024-01-02", periods=n, freq="1min", tz="UTC")
    return make_bars(stamps, open_, high, low, close, np.full(n, 1000.0), symbol="SYN",
                     timeframe="1m")  # fmt: skip
