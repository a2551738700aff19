"""A bare command line around one sub-app, for tests that want the library's exception
itself (``CliRunner().invoke(...).exception``) rather than ``moola.cli.main``'s exit 2.

It has the main app's one global option, ``--data-root``, read the same way
(``load_settings``), and nothing else: no error handler."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moola.core.settings import load_settings


def bare_cli(sub_app: typer.Typer, name: str | None = None) -> typer.Typer:
    """A Typer app with ``--data-root`` holding ``sub_app`` under ``name``, or its
    commands at the top level when ``name`` is None."""
    app = typer.Typer()
    if name is None:
        app.registered_commands.extend(sub_app.registered_commands)
    else:
        app.add_typer(sub_app, name=name)

    @app.callback()
    def _global_options(
        ctx: typer.Context, data_root: Annotated[Path | None, typer.Option("--data-root")] = None
    ) -> None:
        ctx.obj = load_settings(home=data_root)

    return app
