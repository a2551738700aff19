"""Choosing the compute device a run uses: one rule, one place.

``select_device("auto")`` prefers CUDA, then Apple's MPS, then the CPU. Asking for a
device this machine does not have is an error (``DeviceError``) rather than a silent fall
back to the CPU: a run that was meant to use a GPU and quietly did not would report
timings (and, through mixed precision, numbers) that are not what the user asked for.

torch is imported inside the function so that importing ``moola.core`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from moola.core.errors import ConfigError, DeviceError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_NAMES", "available_devices", "select_device"]

DEVICE_NAMES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """Device kinds torch can use on this machine, best first (always ends with ``cpu``)."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def select_device(requested: str = "auto") -> torch.device:
    """The ``torch.device`` for ``requested`` (``auto``, ``cpu``, ``cuda`` or ``mps``).

    ``auto`` takes the best available device (cuda, then mps, then cpu). A named device
    that is not available raises ``DeviceError`` naming it and what is available.
    """
    import torch

    name = str(requested).strip().lower()
    if name not in DEVICE_NAMES:
        raise ConfigError(
            f"Unknown device {requested!r}; use one of {', '.join(DEVICE_NAMES)}.",
            param="device",
        )
    available = available_devices()
    if name == "auto":
        return torch.device(available[0])
    if name not in available:
        raise DeviceError(
            f"device={name!r} was requested but {name} is not available on this machine "
            f"(available: {', '.join(available)}). Use device 'auto' or 'cpu', or install "
            f"a torch build with {name} support.",
            param="device",
        )
    return torch.device(name)
