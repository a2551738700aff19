"""``moola models ...``: list the registered models and what each is for."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from moola.cli._common import console
from moola.core.errors import ConfigError
from moola.models import ModelCard, list_models

app = typer.Typer(
    help="List the registered models (roles, inputs, intended use).", no_args_is_help=True
)

_CAPTION = "parameters: neural models at their default config, on T x D windows"
_WIDE_TERMINAL = 140  # columns from which intended use fits in the table


@app.callback()
def _models() -> None:
    """List the registered models (roles, inputs, intended use)."""
    # A callback keeps `models` a command group even while it holds one command.


def _parameter_count(card: ModelCard) -> str:
    """Parameters of a neural card's module at its default config (and that config's
    window shape, ``T x D``), else "-".

    ``moola.models.nn`` (torch) is imported only here, and any failure (torch missing,
    an architecture without a builder yet) shows "-" rather than breaking the listing.
    """
    architecture = card.fixed_params.get("architecture")
    if card.role != "ACTIVE" or architecture is None:
        return "-"
    try:
        from moola.models.nn import build_module, count_parameters

        module = build_module(architecture)
        count = f"{count_parameters(module):,}"
    except Exception:  # listing must work whatever the state of the neural code
        return "-"
    config = getattr(module, "config", None)
    shape = [getattr(config, key, None) for key in ("seq_len", "input_dim")]
    return f"{count}\non {shape[0]}x{shape[1]}" if None not in shape else count


def _use(card: ModelCard) -> str:
    if card.role == "LEGACY":
        return f"Retired: {card.retired_because}. Use '{card.replacement}' instead."
    return card.intended_use


@app.command("list")
def list_command(
    role: str | None = typer.Option(None, help="Only ACTIVE or only LEGACY models."),
) -> None:
    """List every registered model: role, input, outputs, parameters and intended use."""
    if role is not None and role.upper() not in ("ACTIVE", "LEGACY"):
        raise ConfigError(f"--role must be ACTIVE or LEGACY; got {role!r}.")
    cards = list_models(None if role is None else role.upper())  # type: ignore[arg-type]
    # A wide terminal gets one table; a narrow one gets the intended uses as paragraphs
    # below it, where long sentences wrap readably.
    wide = console.width >= _WIDE_TERMINAL
    table = Table(title="Models", caption=_CAPTION)
    for column in ("name", "role", "input"):
        table.add_column(column, no_wrap=True)
    table.add_column("outputs")
    table.add_column("parameters", justify="right", no_wrap=True)
    if wide:
        table.add_column("intended use", ratio=1)
    for card in cards:
        row = [card.name, card.role, card.input_kind, card.outputs, _parameter_count(card)]
        table.add_row(*row, *([_use(card)] if wide else []))
    console.print(table)
    if not wide:
        for card in cards:
            console.print(Text.assemble((card.name, "bold"), ": ", _use(card)))
