"""Confined paths: every name a user gives becomes a path under the data root, or an error.

Dataset references, split names and run ids arrive from the command line, configs and
other people's run folders. Joined to the data root unchecked, ``../../etc`` or an
absolute path would read or write anywhere. ``confined`` is the one function that turns
such names into paths: it refuses absolute parts, ``..``, empty parts and anything that
resolves (symbolic links followed) outside the root.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from moola.core.errors import ConfigError

__all__ = ["SAFE_NAME", "check_safe_name", "confined"]

#: A dataset, split or run name: letters, digits, '_', '-', '.', starting with a letter or
#: digit, at most 160 characters. It can never be '..', absolute or contain a separator.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,159}$")


def check_safe_name(name: str, what: str) -> str:
    """``name`` if it is a safe single path component; ``ConfigError`` naming ``what``."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise ConfigError(
            f"{what} {name!r} is not allowed: use letters, digits, '_', '-' or '.', starting "
            "with a letter or digit, with no '/' or '..' (names are resolved inside the data "
            "root only)."
        )
    return name


def confined(root: str | Path, *parts: str | Path, what: str = "path") -> Path:
    """``root / parts...``, refused unless it stays inside ``root`` after following links.

    Raises ``ConfigError`` naming ``what`` for an absolute part, a ``..`` part, an empty
    part, or a result that resolves outside ``root`` (e.g. through a symbolic link).
    """
    root = Path(root)
    for part in parts:
        text = os.fspath(part)
        pieces = Path(text).parts
        if not text or Path(text).is_absolute() or ".." in pieces or text.startswith("~"):
            raise ConfigError(
                f"{what} {text!r} is not allowed: it must be a name inside the data root "
                f"{root}, not an absolute path or one with '..'."
            )
    path = root.joinpath(*map(os.fspath, parts))
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise ConfigError(
            f"{what} {path} resolves to {real}, outside the data root {real_root} (a symbolic "
            "link?). moola reads and writes only inside its data root."
        )
    return path
