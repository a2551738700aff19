"""Action spaces of the trading environment: what an action means as a target position.

Every action is turned into a *target fraction of equity* ``f`` in ``[low, high]``
(``high = max_position``, ``low = -max_position`` when shorting is allowed, else 0); the
environment then trades towards ``f`` exactly as ``moola.sim.TargetPositionStrategy``
does. One :class:`ActionCodec` per space holds the Gymnasium space and the decoding; it is
frozen and keeps no state (the current target is passed in), so the single environment
and the vectorised one (``moola.rl.vec_env``, which calls the ``*_many`` forms on arrays
of shape ``(n_envs,)``) decode alike: the tests hold the vectorised forms equal to the
scalar ones, element by element.

Spaces (``ACTION_SPACES``):

``discrete12``
    ``Discrete(12)``, index ``kind * 4 + size_index`` with kinds ``HOLD, BUY, SELL`` and
    sizes ``SIZES`` = 25/50/75/100% of the capital available for that side. ``BUY p``:
    ``f = pos + p * (high - pos)``, invalid when ``pos >= high`` (no capital left);
    ``SELL p``: ``f = pos - p * (pos - low)``, invalid when ``pos <= low``. ``HOLD`` (any
    size) keeps ``pos`` and is always valid. A 100% order lands exactly on the bound.
``target``
    ``Discrete(len(targets))``: action ``a`` is the target ``targets[a]``; always valid.
    Default targets: ``low, 0, high`` (``0, high`` without shorting).
``continuous``
    ``Box(-1, 1, (1,), float32)``: the action is the target, clipped to ``[low, high]``;
    a NaN action is invalid.

An invalid action leaves the target unchanged (``decode`` returns ``(pos, True)``); what
the environment then does (mask, penalise, terminate) is its ``invalid_action`` policy.
:meth:`ActionCodec.masks` marks the actions that are valid at a position (what
``MaskablePPO`` reads); a masked action is exactly an invalid one (property test).
Written by hand: Gymnasium gives the spaces, not their meaning as trades.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from collections.abc import Sequence

import gymnasium
import numpy as np

from moola.core.errors import ConfigError

ACTION_SPACES: tuple[str, ...] = ("discrete12", "target", "continuous")
SIZES: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
HOLD, BUY, SELL = 0, 1, 2
KINDS: tuple[str, ...] = ("HOLD", "BUY", "SELL")
_SIZES = np.asarray(SIZES, dtype=np.float64)
_N12 = len(KINDS) * len(SIZES)


@dataclasses.dataclass(frozen=True)
class ActionCodec:
    """One action space and its meaning as a target fraction (module notes).

    Attributes
    ----------
    name : str
        One of ``ACTION_SPACES``.
    space : gymnasium.spaces.Space
        ``Discrete(12)``, ``Discrete(len(targets))`` or ``Box(-1, 1, (1,), float32)``.
    low, high : float
        The target range: ``[-max_position, max_position]``, or ``[0, max_position]``
        without shorting.
    targets : tuple of float
        The targets of the ``target`` space (empty for the others).
    """

    name: str
    space: gymnasium.spaces.Space
    low: float
    high: float
    targets: tuple[float, ...] = ()

    @functools.cached_property
    def discrete(self) -> bool:
        """True for the discrete spaces (those with masks)."""
        return self.name != "continuous"

    @functools.cached_property
    def n_actions(self) -> int:
        """Number of actions (the length of a mask; 1 for the continuous space)."""
        return int(self.space.n) if self.discrete else 1  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ one env

    def decode(self, action: object, position: float) -> tuple[float, bool]:
        """``(new target fraction, invalid?)`` for ``action`` at the current target
        ``position``; an invalid action returns ``(position, True)``."""
        if self.name == "continuous":
            value = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
            if value != value:  # NaN
                return position, True
            return min(max(value, self.low), self.high), False
        a = self._index(action)
        if self.name == "target":
            return self.targets[a], False
        kind, p = divmod(a, len(SIZES))
        if kind == BUY:
            if position >= self.high:
                return position, True
            return (self.high if p == 3 else position + SIZES[p] * (self.high - position)), False
        if kind == SELL:
            if position <= self.low:
                return position, True
            return (self.low if p == 3 else position - SIZES[p] * (position - self.low)), False
        return position, False

    def masks(self, position: float) -> np.ndarray:
        """Valid actions at target ``position``: bool ``(n_actions,)`` (all True for the
        ``target`` space; one True for the continuous space, which has no masks)."""
        out = np.ones(self.n_actions, dtype=bool)
        if self.name == "discrete12":
            out[4:8] = position < self.high
            out[8:12] = position > self.low
        return out

    def _index(self, action: object) -> int:
        if type(action) is int or isinstance(action, np.integer):  # the common case, fast
            a = int(action)  # type: ignore[arg-type]
            if 0 <= a < self.n_actions:
                return a
        arr = np.asarray(action)
        if arr.size != 1 or not (
            np.issubdtype(arr.dtype, np.integer)
            or (np.issubdtype(arr.dtype, np.floating) and float(arr.reshape(-1)[0]).is_integer())
        ):
            raise ConfigError(
                f"action {action!r} is not an action of the {self.name!r} space; give an "
                f"integer in 0..{self.n_actions - 1}.",
                param="action",
            )
        a = int(arr.reshape(-1)[0])
        if not 0 <= a < self.n_actions:
            raise ConfigError(
                f"action {a} is outside the {self.name!r} space; give an integer in "
                f"0..{self.n_actions - 1}.",
                param="action",
            )
        return a

    # ------------------------------------------------------------------ n envs

    def decode_many(
        self, actions: np.ndarray, positions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`decode` for ``(n_envs,)`` actions (``(n_envs, 1)`` for the continuous
        space) and float64 positions: ``(targets float64 (n_envs,), invalid bool)``."""
        pos = np.asarray(positions, dtype=np.float64).reshape(-1)
        if self.name == "continuous":
            value = np.asarray(actions, dtype=np.float64).reshape(pos.shape[0], -1)[:, 0]
            invalid = np.isnan(value)
            target = np.where(invalid, pos, np.minimum(np.maximum(value, self.low), self.high))
            return target, invalid
        a = np.asarray(actions).reshape(-1)
        if a.shape != pos.shape:
            raise ConfigError(
                f"actions has shape {a.shape} but positions has {pos.shape}; give one "
                "action per env.",
                param="action",
            )
        if not np.issubdtype(a.dtype, np.integer):
            if not np.all(np.isfinite(a)) or not np.all(np.mod(a, 1) == 0):
                raise ConfigError(
                    f"actions {a!r} are not actions of the {self.name!r} space; give "
                    f"integers in 0..{self.n_actions - 1}.",
                    param="action",
                )
            a = a.astype(np.int64)
        if a.size and (a.min() < 0 or a.max() >= self.n_actions):
            bad = int(a[(a < 0) | (a >= self.n_actions)][0])
            raise ConfigError(
                f"action {bad} is outside the {self.name!r} space; give integers in "
                f"0..{self.n_actions - 1}.",
                param="action",
            )
        if self.name == "target":
            return np.asarray(self.targets, dtype=np.float64)[a], np.zeros(a.shape, bool)
        kind, size = np.divmod(a, len(SIZES))
        p = _SIZES[size]
        full = size == 3
        buy, sell = kind == BUY, kind == SELL
        buy_to = np.where(full, self.high, pos + p * (self.high - pos))
        sell_to = np.where(full, self.low, pos - p * (pos - self.low))
        invalid = (buy & (pos >= self.high)) | (sell & (pos <= self.low))
        target = np.where(buy, buy_to, np.where(sell, sell_to, pos))
        return np.where(invalid, pos, target), invalid

    def masks_many(self, positions: np.ndarray) -> np.ndarray:
        """:meth:`masks` for ``(n_envs,)`` positions: bool ``(n_envs, n_actions)``."""
        pos = np.asarray(positions, dtype=np.float64).reshape(-1)
        out = np.ones((pos.shape[0], self.n_actions), dtype=bool)
        if self.name == "discrete12":
            out[:, 4:8] = (pos < self.high)[:, None]
            out[:, 8:12] = (pos > self.low)[:, None]
        return out


def action_codec(
    name: str,
    *,
    allow_short: bool = True,
    targets: Sequence[float] | None = None,
    max_position: float = 1.0,
) -> ActionCodec:
    """The codec of action space ``name`` (one of ``ACTION_SPACES``).

    ``targets`` (``target`` space only): the target fractions, each in ``[low, high]``;
    default ``(low, 0, high)`` (``(0, high)`` without shorting). ``max_position`` in
    ``(0, 1]`` bounds every target. Raises ``ConfigError`` naming ``action_space`` for an
    unknown name, ``targets`` or ``max_position`` for values out of range.
    """
    if name not in ACTION_SPACES:
        close = difflib.get_close_matches(str(name), ACTION_SPACES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Unknown action_space {name!r}.{hint} Use one of {', '.join(ACTION_SPACES)}.",
            param="action_space",
        )
    high = float(max_position)
    if not (math.isfinite(high) and 0.0 < high <= 1.0):
        raise ConfigError(
            f"max_position={max_position!r}: give a fraction of equity in (0, 1].",
            param="max_position",
        )
    low = -high if allow_short else 0.0
    if name == "discrete12":
        return ActionCodec(name, gymnasium.spaces.Discrete(_N12), low, high)
    if name == "continuous":
        box = gymnasium.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        return ActionCodec(name, box, low, high)
    if targets is None:
        chosen = tuple(dict.fromkeys((low, 0.0, high)))
    else:
        chosen = tuple(float(t) for t in targets)
        bad = [t for t in chosen if not (math.isfinite(t) and low <= t <= high)]
        if bad or not chosen:
            raise ConfigError(
                f"targets {list(targets)!r}: each must be a fraction in [{low}, {high}] "
                f"({'no shorting' if not allow_short else 'shorting allowed'}), at least one.",
                param="targets",
            )
    return ActionCodec(name, gymnasium.spaces.Discrete(len(chosen)), low, high, chosen)


__all__ = [
    "ACTION_SPACES",
    "BUY",
    "HOLD",
    "KINDS",
    "SELL",
    "SIZES",
    "ActionCodec",
    "action_codec",
]
