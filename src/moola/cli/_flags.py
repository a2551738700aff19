"""Flag advice: the one place that turns a library error's parameter into a ``--flag``.

Library code names parameters (``hold_bars``) because a script has no flags; the error
carries the parameter in ``MoolaError.param``. When such an error ends a command, the CLI
looks up the command the user ran (from the arguments, in the Typer app's click tree) and
the option that sets that parameter, and speaks of the flag instead: a message starting
with the parameter name starts with the flag; any other gets "(set with --flag)".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from moola.core.errors import MoolaError

#: Library parameters a command spells differently (library name -> option names).
ALIASES: dict[str, tuple[str, ...]] = {
    "latency_bars": ("latency",),
    "initial_cash": ("cash",),
    "run_id": ("run",),
    "allow_reuse": ("allow_test_reuse",),
    "skip_leaky": ("allow_leaky_skip",),
}


def invoked_command(root: Any, argv: Sequence[str]) -> Any:
    """The (sub)command ``argv`` runs: each group's first argument that names one of its
    commands (options and their values before it are skipped)."""
    command = root
    for token in argv:
        commands = getattr(command, "commands", None)  # a group (click's or Typer's own)
        if commands is None:
            break
        command = commands.get(token, command)
    return command


def flag_for(command: Any, param: str) -> str | None:
    """The option of ``command`` that sets library parameter ``param``, if it has one."""
    names = (param, *ALIASES.get(param, ()))
    for option in command.params:
        if getattr(option, "param_type_name", "") == "option" and option.name in names:
            longs = [o for o in option.opts if o.startswith("--")]
            return (longs or option.opts)[0]
    return None


def flag_advice(error: MoolaError, root: Any, argv: Sequence[str]) -> str:
    """``error``'s message as the CLI prints it: its parameter spoken of as a flag."""
    message = str(error)
    param = getattr(error, "param", None)
    if not param:
        return message
    flag = flag_for(invoked_command(root, argv), param)
    if flag is None:
        return message
    leading = re.match(rf"{re.escape(param)}\b(=\S+)?", message)
    if leading:
        value = leading.group(1)
        return flag + (f" {value[1:]}" if value else "") + message[leading.end() :]
    return f"{message} (set with {flag})"
