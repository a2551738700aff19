"""Train-only synthetic sets: augmented copies of a labeled dataset's train windows.

``moola data augment`` calls ``augment_labeled``: it loads the train part of a split, applies
one augmentation of ``moola.pretrain.augment`` (jitter, scaling or time warp) to copies of
its windows, and stores them through ``Registry.write_synthetic``, which measures how much
the synthetic within-window returns differ from the real ones (two-sample KS) and records
it. ``moola train --synthetic NAME`` appends the set to train only; a set whose KS p-value
is below 0.1 is refused there unless explicitly overridden, and the override is recorded.

Windows hold prices, whose level is arbitrary; each window is divided by its first close
before the augmentation and multiplied back after, so ``sigma`` is relative (0.001 is
0.1% of the price) whatever the instrument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from moola.core.errors import ConfigError
from moola.data._manifest import DatasetRef
from moola.data.registry import MIN_SYNTHETIC_KS_PVALUE, Registry, parse_ref
from moola.pretrain.augment import jitter, scaling, time_warp

Transform = Callable[[np.ndarray, np.random.Generator, float], np.ndarray]
METHODS: dict[str, Transform] = {
    "jitter": jitter,
    "scaling": scaling,
    "time-warp": time_warp,
}
DEFAULT_SIGMA: dict[str, float] = {"jitter": 0.00001, "scaling": 0.01, "time-warp": 0.1}


@dataclass(frozen=True)
class AugmentResult:
    """The stored synthetic set and its quality against the real train windows."""

    ref: DatasetRef
    windows: int
    ks_statistic: float
    ks_pvalue: float

    @property
    def passes_guard(self) -> bool:
        """Whether training may use it without an explicit low-quality override."""
        return self.ks_pvalue >= MIN_SYNTHETIC_KS_PVALUE


def augment_labeled(
    registry: Registry,
    labeled: str,
    *,
    split: str,
    method: str,
    name: str,
    sigma: float | None = None,
    copies: int = 1,
    seed: int = 0,
) -> AugmentResult:
    """Store ``copies`` augmented copies of each train window of ``labeled`` (``NAME[@vN]``)
    under ``split`` as synthetic set ``name``; labels are the originals'.

    ``method`` is one of ``METHODS``; ``sigma`` its strength (default ``DEFAULT_SIGMA``).
    Raises ``ConfigError`` naming ``method``, ``sigma`` or ``copies`` when out of range.
    """
    key = str(method).strip().lower().replace("_", "-")
    if key not in METHODS:
        raise ConfigError(
            f"Unknown augmentation method {method!r}; use one of {', '.join(METHODS)}."
        )
    sigma = DEFAULT_SIGMA[key] if sigma is None else float(sigma)
    if not sigma > 0:
        raise ConfigError(f"sigma must be > 0 (got {sigma}); it is the augmentation's strength.")
    if copies < 1:
        raise ConfigError(f"copies must be 1 or more (got {copies}).")
    ref = registry.resolve("labeled", *parse_ref(labeled))
    data = registry.load_labeled(ref.name, ref.version, split=split)
    train = data.train
    if len(train) == 0:
        raise ConfigError(f"Split {split} has no train windows in {ref}; nothing to augment.")
    close = registry.meta(ref)["columns"].index("close")
    X = np.repeat(train.X, copies, axis=0).astype(np.float64)  # (n * copies, T, D)
    labels = np.repeat(np.asarray(data.classes)[train.y], copies)
    scale = X[:, :1, close : close + 1]  # (N, 1, 1): each window's first close
    rng = np.random.default_rng(seed)
    synthetic = METHODS[key](X / scale, rng, sigma) * scale
    augmentation = {
        "method": key,
        "sigma": sigma,
        "copies": copies,
        "seed": seed,
        "relative_to": "each window's first close",
        "implementation": f"moola.pretrain.augment.{METHODS[key].__name__}",
    }
    stored = registry.write_synthetic(
        name,
        synthetic.astype(np.float32),
        labels,
        parent=ref,
        split=split,
        augmentation=augmentation,
    )
    meta = registry.meta(stored)
    return AugmentResult(
        stored, int(meta["windows"]), float(meta["ks_statistic"]), float(meta["ks_pvalue"])
    )
