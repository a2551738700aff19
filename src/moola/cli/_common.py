"""What every command shares: consoles, settings from the global options, error printing."""

from __future__ import annotations

import typer
from rich.console import Console

from moola.core.settings import Settings, load_settings

console = Console()
err_console = Console(stderr=True)


def settings_of(ctx: typer.Context) -> Settings:
    """The run's settings, resolved once by the top-level callback."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = load_settings()
    return root.obj
