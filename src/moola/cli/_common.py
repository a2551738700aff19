"""What every command shares: consoles, settings from the global options, error printing."""

from __future__ import annotations

import typer
from rich.console import Console

from moola.core.errors import ConfigError, MoolaError
from moola.core.settings import Settings, load_settings

console = Console()
err_console = Console(stderr=True)


def settings_of(ctx: typer.Context) -> Settings:
    """The run's settings, resolved once by the top-level callback."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = load_settings()
    return root.obj


def check_new_name(name: str | None, flag: str) -> None:
    """Refuse a dataset name the registry would refuse, before any work is done.

    The registry checks names when it writes, which comes after the expensive step
    (labels, features, events); a typo in ``flag`` should cost nothing.
    """
    if name is None:
        return
    from moola.data.registry import parse_ref

    try:
        stored, version = parse_ref(name)
    except MoolaError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    if version is not None or stored != name:
        raise ConfigError(
            f"{flag} {name!r} must be a plain dataset name (letters, digits, '_', '-' or '.', "
            "no spaces and no @vN: the registry numbers the versions)."
        )
