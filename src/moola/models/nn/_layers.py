"""Blocks shared by the moola networks, and the checks their configs run.

Written by hand because torch has no ready-made sinusoidal encoding, additive attention
pooling or uncertainty-weighted multi-task loss; each is a few lines.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import annotated_types
import torch
from pydantic import Field
from torch import Tensor, nn

from moola.core.errors import ConfigError

# ----------------------------------------------------------------------------- config checks

# Field types of the config dataclasses. Their bounds are the one statement of what each
# field may hold: ``check_config`` enforces them when a config is built, and the models'
# ``Params`` (``moola.models.params``) read them to validate parameters and search spaces.
Size = Annotated[int, Field(ge=1)]
"""A width, depth, count or length: an integer >= 1."""
Size0 = Annotated[int, Field(ge=0)]
"""A count that may be zero (no adapters, no dilated blocks, no packed features)."""
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]
"""A dropout (or masking) rate in [0, 1)."""
Widths = tuple[Size, ...]
"""Hidden widths of a stack of layers (may be empty); lists are accepted and made tuples."""
SomeWidths = Annotated[tuple[Size, ...], Field(min_length=1)]
"""Widths of a stack that needs at least one layer."""
HeadKind = Annotated[int, Field(ge=2)] | Literal["regression"]
"""What one output head predicts: ``"regression"`` (one value) or a number of classes >= 2."""
Heads = dict[str, HeadKind] | None
"""Ordered output heads, name -> ``HeadKind`` (e.g. ``{"direction": 2, "volatility":
"regression", "regime": 3}``); None: the module's single-task outputs."""


def check_config(config: Any) -> None:
    """Check every field of config dataclass ``config`` against its annotated type (ints
    against their minimum, rates, booleans, choices, width lists made tuples), raising
    the ``ConfigError`` of the ``require_*`` check that fails first."""
    for name, kind, argument in _field_checks(type(config)):
        if kind == "int":
            require_int(config, name, minimum=argument)
        elif kind == "rate":
            require_fraction(config, name)
        elif kind == "bool":
            require_bool(config, name)
        elif kind == "choice":
            require_choice(config, name, argument)
        elif kind == "widths":
            coerce_int_tuple(config, name, allow_empty=argument)
        elif kind == "heads":
            coerce_heads(config, name)


@functools.cache
def _field_checks(config_cls: type) -> tuple[tuple[str, str, Any], ...]:
    """(field, check, argument) per field of ``config_cls``, read from its annotations."""
    hints = typing.get_type_hints(config_cls, include_extras=True)
    checks = []
    for item in dataclasses.fields(config_cls):
        hint = hints[item.name]
        if hint == Heads:
            checks.append((item.name, "heads", None))
            continue
        base, metadata = hint, ()
        if typing.get_origin(hint) is Annotated:
            base, *metadata = typing.get_args(hint)
        bounds = [m for info in metadata for m in getattr(info, "metadata", [info])]
        if base is bool:
            checks.append((item.name, "bool", None))
        elif base is int:
            minimum = next((b.ge for b in bounds if isinstance(b, annotated_types.Ge)), 1)
            checks.append((item.name, "int", minimum))
        elif base is float and any(isinstance(b, annotated_types.Lt) for b in bounds):
            checks.append((item.name, "rate", None))
        elif typing.get_origin(base) is Literal:
            checks.append((item.name, "choice", typing.get_args(base)))
        elif typing.get_origin(base) is tuple:
            empty = not any(isinstance(b, annotated_types.MinLen) for b in bounds)
            checks.append((item.name, "widths", empty))
        else:
            raise TypeError(f"{config_cls.__name__}.{item.name}: no check for type {hint!r}")
    return tuple(checks)


def _where(config: Any, name: str) -> str:
    return f"{type(config).__name__}.{name}={getattr(config, name)!r}"


def require_int(config: Any, name: str, *, minimum: int = 1) -> None:
    """Raise ConfigError unless ``config.<name>`` is an int ``>= minimum``."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{_where(config, name)} is invalid: it must be an integer >= {minimum}. "
            f"Pass {name}=<int >= {minimum}>."
        )


def require_fraction(config: Any, name: str) -> None:
    """Raise ConfigError unless ``config.<name>`` is a float in ``[0, 1)`` (a dropout rate)."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ConfigError(
            f"{_where(config, name)} is invalid: it must be a number in [0, 1). "
            f"Pass {name}=0.1 (for example)."
        )


def require_choice(config: Any, name: str, choices: Sequence[str]) -> None:
    """Raise ConfigError unless ``config.<name>`` is one of ``choices``."""
    if getattr(config, name) not in choices:
        raise ConfigError(
            f"{_where(config, name)} is invalid: choose one of {', '.join(map(repr, choices))}."
        )


def require_bool(config: Any, name: str) -> None:
    """Raise ConfigError unless ``config.<name>`` is a bool."""
    if not isinstance(getattr(config, name), bool):
        raise ConfigError(f"{_where(config, name)} is invalid: pass True or False.")


def coerce_int_tuple(config: Any, name: str, *, allow_empty: bool = True) -> None:
    """Turn ``config.<name>`` (list or tuple of positive ints) into a tuple, in place.

    Lists are accepted so a config read back from JSON or YAML rebuilds the same module.
    """
    value = getattr(config, name)
    items = tuple(value) if isinstance(value, list | tuple) else None
    if (
        items is None
        or (not items and not allow_empty)
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in items)
    ):
        empty = " (may be empty)" if allow_empty else ""
        raise ConfigError(
            f"{_where(config, name)} is invalid: it must be a list of positive integers"
            f"{empty}, e.g. {name}=[128, 64]."
        )
    object.__setattr__(config, name, items)


def coerce_heads(config: Any, name: str) -> None:
    """Check ``config.<name>`` (None, or a non-empty mapping of head name -> ``"regression"``
    or a class count >= 2) and store it as a plain ``dict``, in place.

    A head name becomes a submodule name, so it must be a Python identifier that no
    ``nn.ModuleDict`` method uses (``keys``, ``items``, ...).
    """
    value = getattr(config, name)
    if value is None:
        return
    example = f"{name}={{'direction': 2, 'volatility': 'regression', 'regime': 3}}"
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(
            f"{_where(config, name)} is invalid: it must be a non-empty mapping of head name "
            f"-> 'regression' or a number of classes >= 2, e.g. {example}."
        )
    for head, kind in value.items():
        if not isinstance(head, str) or not head.isidentifier() or hasattr(nn.ModuleDict, head):
            raise ConfigError(
                f"{_where(config, name)} is invalid: head name {head!r} must be an identifier "
                "(letters, digits, underscores) that is not a method name like 'keys'."
            )
        counts = isinstance(kind, int) and not isinstance(kind, bool) and kind >= 2
        if kind != "regression" and not counts:
            raise ConfigError(
                f"{_where(config, name)} is invalid: head '{head}' must be 'regression' or a "
                f"number of classes >= 2 (got {kind!r}), e.g. {example}."
            )
    object.__setattr__(config, name, dict(value))


def head_width(kind: int | str) -> int:
    """Outputs of a head of ``kind``: 1 for ``"regression"``, else its class count."""
    return 1 if kind == "regression" else int(kind)


def require_divisible(config: Any, name: str, by: str) -> None:
    """Raise ConfigError unless ``config.<name>`` is a multiple of ``config.<by>``."""
    if getattr(config, name) % getattr(config, by) != 0:
        raise ConfigError(
            f"{_where(config, name)} is invalid: it must be a multiple of "
            f"{_where(config, by)} (each attention head gets {name} / {by} channels)."
        )


def unknown_key_error(kind: str, key: str, valid: Sequence[str]) -> ConfigError:
    """A ConfigError for an unknown ``key`` with a 'did you mean' and the valid keys."""
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"Unknown {kind} '{key}'.{hint} Valid: {', '.join(valid)}.")


def check_input(x: Tensor, input_dim: int, owner: str, n_symbols: int = 0) -> None:
    """Raise ConfigError unless ``x`` is ``(B, T, input_dim)``, or ``(B, T, input_dim + 1)``
    for a module built with ``n_symbols > 0`` (the last channel is the symbol id)."""
    channels = input_dim + (1 if n_symbols else 0)
    if x.dim() != 3 or x.shape[-1] != channels:
        if n_symbols:
            raise ConfigError(
                f"{owner} got input of shape {tuple(x.shape)} but was built for (B, T, "
                f"{channels}): {input_dim} features and, last, the symbol id channel "
                f"(n_symbols={n_symbols}). Rebuild it with input_dim="
                f"{x.shape[-1] - 1 if x.dim() == 3 else '<features>'} or append the id channel."
            )
        raise ConfigError(
            f"{owner} got input of shape {tuple(x.shape)} but was built for (B, T, {input_dim}). "
            f"Rebuild it with input_dim={x.shape[-1] if x.dim() == 3 else '<channels>'} "
            "or pass windows shaped (batch, time, channels)."
        )


def symbol_codes(ids: Tensor, n_symbols: int, owner: str) -> Tensor:
    """Symbol ids held as floats (any shape) as int64 codes, refusing (``ConfigError``,
    naming the first bad value and ``n_symbols``) an id that is not an integer in
    ``0..n_symbols - 1`` (NaN included). Checked here, not left to ``nn.Embedding``, whose
    out-of-range lookup is an opaque device-side assert on a GPU."""
    bad = (ids != torch.round(ids)) | (ids < 0) | (ids >= n_symbols)  # NaN != NaN: bad
    if bool(bad.any()):
        value = ids[bad][0].item()
        raise ConfigError(
            f"{owner} got symbol id {value!r} in its last input channel, but it was built "
            f"for n_symbols={n_symbols}: ids are integers 0..{n_symbols - 1}. Encode each "
            "window's symbol with the dataset's symbol codes, or rebuild with a larger "
            "n_symbols."
        )
    return ids.long()


# ----------------------------------------------------------------------------- blocks


class MLPHead(nn.Module):
    """``Linear -> ReLU -> Dropout`` per hidden width, then a final ``Linear`` to ``out_dim``."""

    def __init__(
        self, in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (..., in_dim) -> (..., out_dim)


def sinusoid_table(length: int, dim: int) -> Tensor:
    """The ``(length, dim)`` sine/cosine position table of Vaswani et al. (2017)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])  # odd dim: one fewer cosine column
    return table


class SymbolEmbedding(nn.Module):
    """Splits the symbol id channel off windows and embeds it at every step:
    ``(B, T, F + 1) -> (B, T, F + dim)``.

    The id (the window's symbol, ``0..n_symbols - 1`` held as a float, the same on every
    step) is the last channel; ``nn.Embedding(n_symbols, dim)`` maps it to a learned vector
    that is concatenated to each step's ``F`` features before the encoder. That is the
    standard way to condition a sequence model on a static category (DeepAR, Salinas et
    al. 2020, appends its item embedding to every step's input): the encoder's dynamics can
    then differ per symbol, not only the head's reading of a pooled summary, and it keeps
    causal models causal (the id is known at every step). Embedding each step's own id (not
    one step's) needs no choice of step and is the same vector when ids are constant.
    """

    def __init__(self, n_symbols: int, dim: int, owner: str) -> None:
        super().__init__()
        self.n_symbols = n_symbols
        self.owner = owner
        self.embedding = nn.Embedding(n_symbols, dim)

    def forward(self, x: Tensor) -> Tensor:
        features, ids = x[..., :-1], x[..., -1]  # (B, T, F), (B, T)
        codes = symbol_codes(ids, self.n_symbols, self.owner)  # (B, T) int64
        return torch.cat([features, self.embedding(codes).to(features.dtype)], dim=-1)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds fixed sine/cosine positions to ``(B, T, dim)``; no learned weights.

    The table is a non-persistent buffer (it is a function of ``dim`` alone), so it never
    enters a checkpoint; windows longer than ``max_len`` get a table computed on the spot.
    """

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("table", sinusoid_table(max_len, dim), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        steps = x.shape[1]
        table = self.table if steps <= self.table.shape[0] else sinusoid_table(steps, self.dim)
        return x + table[:steps].to(device=x.device, dtype=x.dtype)  # (B, T, dim)


class AttentionPooling(nn.Module):
    """Additive (Bahdanau) attention pooling: ``(B, T, dim) -> (B, dim)`` plus weights.

    ``score_t = v . tanh(W h_t + b)``; the weights are ``softmax_t(score)``; the pooled
    vector is ``sum_t weight_t h_t``. The weights show which steps the model looked at.
    """

    def __init__(self, dim: int, attention_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.score(torch.tanh(self.proj(h))).squeeze(-1)  # (B, T)
        weights = torch.softmax(scores, dim=1)  # (B, T)
        pooled = torch.bmm(weights.unsqueeze(1), h).squeeze(1)  # (B, dim)
        return pooled, weights


class MultiTaskLoss(nn.Module):
    """Combines per-task losses into one scalar, with learned or fixed weights.

    ``weighting="uncertainty"`` (Kendall, Gal & Cipolla, CVPR 2018, in the common
    simplified form): each task ``i`` has a learned log-variance ``s_i`` (start 0) and
    contributes ``exp(-s_i) * L_i + s_i``; a noisy task learns a large ``s_i`` and is
    down-weighted, and the ``+ s_i`` term stops every weight collapsing to zero. Give the
    loss's parameters to the optimizer with the model's. The total may be negative.

    Tasks named in ``regression`` are Gaussian-likelihood terms in Kendall et al.'s
    derivation (``L_i / (2 sigma_i^2) + log sigma_i``): their uncertainty term is halved,
    ``(exp(-s_i) * L_i + s_i) / 2``. ``for_heads(heads)`` builds the loss of a heads
    mapping (``moola.models.nn._layers.Heads``): its regression heads halved.

    ``weighting="fixed"``: ``sum_i w_i * L_i`` with ``weights`` (missing tasks weigh 1).

    Parameters
    ----------
    tasks : sequence of str
        Task names, e.g. ``("direction", "volatility", "regime")``; ``forward`` wants
        exactly these keys.
    weighting : {"uncertainty", "fixed"}, default "uncertainty"
    weights : mapping of str to float, optional
        Fixed weights (only with ``weighting="fixed"``).
    regression : sequence of str, default ()
        Tasks whose uncertainty-weighted term is halved (regression heads).
    """

    def __init__(
        self,
        tasks: Sequence[str],
        weighting: Literal["uncertainty", "fixed"] = "uncertainty",
        weights: Mapping[str, float] | None = None,
        regression: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"MultiTaskLoss tasks={tasks!r}: give distinct task names.")
        if weighting not in ("uncertainty", "fixed"):
            raise ConfigError(
                f"MultiTaskLoss weighting={weighting!r}: choose 'uncertainty' or 'fixed'."
            )
        if weights is not None and weighting != "fixed":
            raise ConfigError("MultiTaskLoss weights= needs weighting='fixed'.")
        for key in weights or {}:
            if key not in self.tasks:
                raise unknown_key_error("MultiTaskLoss weight task", key, self.tasks)
        for key in regression:
            if key not in self.tasks:
                raise unknown_key_error("MultiTaskLoss regression task", key, self.tasks)
        self.weighting = weighting
        # 0.5 for regression tasks, 1 for the others: (n_tasks,), not a learned weight
        scale = [0.5 if t in regression else 1.0 for t in self.tasks]
        self.register_buffer("term_scale", torch.tensor(scale), persistent=False)
        if weighting == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))  # (n_tasks,)
        else:
            fixed = [float((weights or {}).get(t, 1.0)) for t in self.tasks]
            self.register_buffer("fixed_weights", torch.tensor(fixed))  # (n_tasks,)

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        missing = [t for t in self.tasks if t not in losses]
        extra = [k for k in losses if k not in self.tasks]
        if missing or extra:
            raise ConfigError(
                f"MultiTaskLoss was built for tasks {list(self.tasks)} but got losses for "
                f"{list(losses)} (missing {missing}, unexpected {extra}). Pass one scalar "
                "loss per task."
            )
        stacked = torch.stack([losses[t] for t in self.tasks])  # (n_tasks,)
        if self.weighting == "uncertainty":
            terms = torch.exp(-self.log_vars) * stacked + self.log_vars  # (n_tasks,)
            return (self.term_scale * terms).sum()
        return (self.fixed_weights * stacked).sum()

    @classmethod
    def for_heads(cls, heads: Mapping[str, int | str]) -> MultiTaskLoss:
        """Uncertainty weighting over the heads of ``heads`` (name -> "regression" or a
        class count), in their order, regression heads halved."""
        names = list(heads)
        return cls(names, regression=[n for n in names if heads[n] == "regression"])

    def task_weights(self) -> dict[str, float]:
        """The current weight of each task (``exp(-s_i)`` or the fixed weight), for logging."""
        with torch.no_grad():
            w = torch.exp(-self.log_vars) if self.weighting == "uncertainty" else self.fixed_weights
        return dict(zip(self.tasks, w.tolist(), strict=True))
