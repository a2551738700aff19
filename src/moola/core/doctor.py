"""Environment checks behind ``moola doctor``: is this machine ready to run moola?"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

MIN_FREE_DISK_GB = 1.0
REQUIRED_PACKAGES = ("numpy", "pandas", "pyarrow", "pydantic", "typer", "rich", "scipy")
OPTIONAL_PACKAGES = ("databento-dbn", "ta-lib", "torch", "scikit-learn", "aeon")


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report; ``ok`` False means the user must act."""

    name: str
    ok: bool
    detail: str
    required: bool = True


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def torch_devices() -> str:
    """Devices torch can use here, e.g. ``"cuda (NVIDIA H100), cpu"``; or why none."""
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return "torch not installed (needed from the training steps on)"
    found = []
    if torch.cuda.is_available():
        found.append(f"cuda ({torch.cuda.get_device_name(0)})")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return ", ".join(found)


def run_checks(data_root: Path) -> list[Check]:
    """Python, packages, torch devices, TA-Lib, data root writability and free disk."""
    checks = [
        Check(
            "python",
            sys.version_info >= (3, 11),
            f"{platform.python_version()} ({sys.executable})",
        )
    ]
    for name in REQUIRED_PACKAGES:
        found = _package_version(name)
        checks.append(Check(name, found is not None, found or "missing: reinstall with make test"))
    for name in OPTIONAL_PACKAGES:
        found = _package_version(name)
        checks.append(Check(name, True, found or "not installed (optional)", required=False))
    checks.append(Check("torch devices", True, torch_devices(), required=False))
    try:
        importlib.import_module("talib")
        talib = "importable"
    except ImportError:
        talib = "not importable (needed by the features step)"
    checks.append(Check("TA-Lib", True, talib, required=False))
    checks.append(_data_root_check(data_root))
    probe = data_root if data_root.exists() else _existing_parent(data_root)
    free_gb = shutil.disk_usage(probe).free / 1e9
    checks.append(
        Check(
            "free disk",
            free_gb >= MIN_FREE_DISK_GB,
            f"{free_gb:,.1f} GB free at {probe}"
            + ("" if free_gb >= MIN_FREE_DISK_GB else f" (need at least {MIN_FREE_DISK_GB} GB)"),
        )
    )
    return checks


def _existing_parent(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path("/")


def _data_root_check(data_root: Path) -> Check:
    target = data_root if data_root.exists() else _existing_parent(data_root)
    writable = os.access(target, os.W_OK)
    state = "exists" if data_root.exists() else f"will be created (parent {target})"
    detail = f"{data_root} ({state}, {'writable' if writable else 'NOT writable'})"
    if not writable:
        detail += ": point MOOLA_HOME (or the data_root setting) at a writable folder"
    return Check("data root", writable, detail)
