"""Features extractors for Dict observations with several timescales.

A trading observation is a Dict: one window per timescale (``"window"`` for the base bars,
e.g. 1-second, and ``"window_1m"``, ``"window_1d"``... for coarser ones), the portfolio
state (``"portfolio"``) and optionally static inputs (``"static"``: the symbol, the day's
gap...). ``MultiTimescaleExtractor`` reads each window through its own branch (an LSTM, a
Transformer encoder or an MLP, chosen per branch), the portfolio and static vectors through
small MLPs, and fuses the branch outputs with an MLP into ``features_dim`` features that
Stable-Baselines3's policy and value heads read.

It is a plain ``BaseFeaturesExtractor`` (SB3's extension point for this): pass it through
``policy_kwargs={"features_extractor_class": MultiTimescaleExtractor,
"features_extractor_kwargs": {...}}`` or ``make_agent(..., extractor="multi_timescale")``.
Pure torch: no I/O, no device choice (SB3 moves the policy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import gymnasium
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from moola.core.errors import ConfigError

__all__ = ["BRANCH_KINDS", "MultiTimescaleExtractor"]

BranchKind = Literal["lstm", "transformer", "mlp"]
BRANCH_KINDS: tuple[str, ...] = ("lstm", "transformer", "mlp")
WINDOW_PREFIX = "window"
VECTOR_KEYS: tuple[str, ...] = ("portfolio", "static")


def _window_shape(key: str, space: gymnasium.spaces.Space) -> tuple[int, int]:
    """(length, features) of a window Box: (L, F), or (L,) read as one feature."""
    if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) not in (1, 2):
        raise ConfigError(
            f"observation_space[{key!r}] must be a Box of shape (window, features) or "
            f"(window,) for MultiTimescaleExtractor, got {space}.",
            param="observation_space",
        )
    if len(space.shape) == 1:
        return int(space.shape[0]), 1
    return int(space.shape[0]), int(space.shape[1])


class _LSTMBranch(nn.Module):
    """The last hidden state of a one-layer LSTM over the window."""

    def __init__(self, length: int, n_features: int, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, L, F)
        _, (h, _) = self.lstm(x)  # h: (1, B, hidden)
        return h[-1]


class _TransformerBranch(nn.Module):
    """A small Transformer encoder over the window; its output at the last bar.

    Every row of the window is already in the past of the decision bar, so the encoder
    attends over the whole window; a learned position embedding tells it the bar order.
    """

    def __init__(self, length: int, n_features: int, hidden: int, heads: int, layers: int):
        super().__init__()
        if hidden % heads:
            raise ConfigError(
                f"hidden={hidden} must be a multiple of heads={heads} for a transformer branch.",
                param="heads",
            )
        self.embed = nn.Linear(n_features, hidden)
        self.position = nn.Parameter(torch.zeros(1, length, hidden))
        layer = nn.TransformerEncoderLayer(
            hidden, heads, dim_feedforward=2 * hidden, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, L, F)
        z = self.encoder(self.embed(x) + self.position)  # (B, L, hidden)
        return z[:, -1]


class _MLPBranch(nn.Module):
    """The window flattened through a two-layer MLP."""

    def __init__(self, length: int, n_features: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(length * n_features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, L, F)
        return self.net(x)


class MultiTimescaleExtractor(BaseFeaturesExtractor):
    """One branch per ``"window*"`` key, MLPs for ``"portfolio"``/``"static"``, fused.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Dict
        Keys starting with ``"window"`` (Box (L, F) or (L,)), ``"portfolio"`` (Box (P,))
        and optionally ``"static"`` (Box (S,)); any other key is refused.
    features_dim : int, default 64
        Size of the fused output the policy and value heads read.
    branches : str or mapping of window key -> str, default "lstm"
        The branch kind for every window (``"lstm"``, ``"transformer"`` or ``"mlp"``), or
        one per key (keys missing from the mapping get ``default_branch``).
    default_branch : str, default "lstm"
        The kind for windows not named in a ``branches`` mapping.
    hidden : int, default 32
        Output size of each window branch (and the transformer's model width).
    vector_hidden : int, default 16
        Output size of the portfolio and static MLPs.
    heads, layers : int, default 2, 1
        Attention heads and encoder layers of transformer branches.
    """

    def __init__(
        self,
        observation_space: gymnasium.spaces.Dict,
        features_dim: int = 64,
        *,
        branches: str | Mapping[str, str] = "lstm",
        default_branch: str = "lstm",
        hidden: int = 32,
        vector_hidden: int = 16,
        heads: int = 2,
        layers: int = 1,
    ) -> None:
        if not isinstance(observation_space, gymnasium.spaces.Dict):
            raise ConfigError(
                "MultiTimescaleExtractor needs a Dict observation space with 'window*' and "
                f"'portfolio' keys, got {observation_space}.",
                param="observation_space",
            )
        for name, value in (("features_dim", features_dim), ("hidden", hidden),
                            ("vector_hidden", vector_hidden), ("heads", heads),
                            ("layers", layers)):  # fmt: skip
            if int(value) < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}.", param=name)
        super().__init__(observation_space, features_dim)
        keys = list(observation_space.spaces)
        windows = [k for k in keys if k.startswith(WINDOW_PREFIX)]
        unknown = [k for k in keys if k not in windows and k not in VECTOR_KEYS]
        if unknown or not windows:
            raise ConfigError(
                f"observation_space keys {keys} cannot be read by MultiTimescaleExtractor: "
                + (f"unknown {unknown}; " if unknown else "")
                + "it needs at least one key starting with 'window' plus optional "
                "'portfolio' and 'static' vectors.",
                param="observation_space",
            )
        kinds = self._kinds(windows, branches, default_branch)
        self.window_keys = tuple(windows)
        self.vector_keys = tuple(k for k in VECTOR_KEYS if k in keys)
        self.kinds = kinds
        self.branches = nn.ModuleDict()
        total = 0
        for key in windows:
            length, n_features = _window_shape(key, observation_space.spaces[key])
            kind = kinds[key]
            if kind == "lstm":
                branch: nn.Module = _LSTMBranch(length, n_features, hidden)
            elif kind == "transformer":
                branch = _TransformerBranch(length, n_features, hidden, heads, layers)
            else:
                branch = _MLPBranch(length, n_features, hidden)
            self.branches[key] = branch
            total += hidden
        for key in self.vector_keys:
            space = observation_space.spaces[key]
            if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
                raise ConfigError(
                    f"observation_space[{key!r}] must be a 1-d Box, got {space}.",
                    param="observation_space",
                )
            self.branches[key] = nn.Sequential(
                nn.Linear(int(space.shape[0]), vector_hidden), nn.ReLU()
            )
            total += vector_hidden
        self.fuse = nn.Sequential(
            nn.Linear(total, features_dim), nn.ReLU(),
            nn.Linear(features_dim, features_dim), nn.ReLU(),
        )  # fmt: skip

    @staticmethod
    def _kinds(
        windows: list[str], branches: str | Mapping[str, str], default: str
    ) -> dict[str, str]:
        """The branch kind of each window key, checked (ConfigError naming the parameter)."""

        def check(kind: str, param: str, key: str) -> str:
            if kind not in BRANCH_KINDS:
                raise ConfigError(
                    f"Unknown branch kind {param}={kind!r} (for {key!r}); use one of "
                    f"{', '.join(BRANCH_KINDS)}.",
                    param=param,
                )
            return kind

        if isinstance(branches, str):
            return {k: check(branches, "branches", k) for k in windows}
        extra = sorted(set(branches) - set(windows))
        if extra:
            raise ConfigError(
                f"branches names {extra}, which are not window keys of the observation "
                f"space (window keys: {windows}).",
                param="branches",
            )
        return {
            k: check(branches[k], "branches", k) if k in branches
            else check(default, "default_branch", k)
            for k in windows
        }  # fmt: skip

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for key in self.window_keys:
            x = observations[key].float()
            if x.dim() == 2:  # (B, L) -> (B, L, 1)
                x = x.unsqueeze(-1)
            parts.append(self.branches[key](x))
        for key in self.vector_keys:
            parts.append(self.branches[key](observations[key].float()))
        return self.fuse(torch.cat(parts, dim=1))  # (B, features_dim)
