"""Library errors name parameters; only the CLI speaks of flags (``moola.cli._flags``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from moola.cli._flags import flag_advice, flag_for, invoked_command
from moola.core.errors import ConfigError, DeviceError
from tests.test_cli import run

SRC = Path(__file__).resolve().parents[1] / "src" / "moola"


@click.group()
@click.option("--data-root")
def root(data_root):
    """A tiny command tree like moola's."""


@root.group()
def backtest():
    """A group."""


@backtest.command()
@click.option("--hold-bars", "hold_bars", type=int)
@click.option("--latency", "latency", type=int)
def run_cmd(hold_bars, latency):
    """A leaf."""


backtest.add_command(run_cmd, name="run")


def test_the_invoked_command_is_found_past_global_options():
    argv = ["--data-root", "x", "backtest", "run", "--hold-bars", "0"]
    assert invoked_command(root, argv).name == "run"


def test_a_leading_parameter_name_becomes_the_flag():
    error = ConfigError("hold_bars must be a whole number >= 1, got 0.", param="hold_bars")
    said = flag_advice(error, root, ["backtest", "run", "--hold-bars", "0"])
    assert said == "--hold-bars must be a whole number >= 1, got 0."


def test_a_parameter_with_a_value_keeps_the_value():
    error = DeviceError("device='cuda' was requested but it is missing.", param="device")
    cmd = click.Command("x", params=[click.Option(["--device"])])
    assert flag_advice(error, cmd, []) == "--device 'cuda' was requested but it is missing."


def test_an_alias_and_an_appended_hint():
    error = ConfigError("The latency leaves no bar to fill.", param="latency_bars")
    assert flag_for(invoked_command(root, ["backtest", "run"]), "latency_bars") == "--latency"
    said = flag_advice(error, root, ["backtest", "run"])
    assert said == "The latency leaves no bar to fill. (set with --latency)"


def test_no_flag_no_change():
    error = ConfigError("hold_bars must be >= 1.", param="hold_bars")
    assert flag_advice(error, root, ["--data-root", "x"]) == "hold_bars must be >= 1."
    assert flag_advice(ConfigError("plain"), root, ["backtest", "run"]) == "plain"


def test_the_cli_names_the_flag_the_library_left_out(capsys, tmp_path):
    bars = tmp_path / "es.csv"
    bars.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2024-01-02 00:00:00,1,2,0.5,1.5,10\n2024-01-02 00:01:00,1,2,0.5,1.5,10\n"
    )
    root = ("--data-root", str(tmp_path / "root"))
    ingest = ("data", "ingest", str(bars), "--name", "es", "--symbol", "ES", "--timeframe", "1m")
    assert run(capsys, *root, *ingest)[0] == 0
    code, _, err = run(capsys, *root, "features", "build", "--raw", "es", "--set", "intraday31",
                       "--name", "f")  # fmt: skip
    assert code == 2 and "allow_short=True" in err and "(set with --allow-short)" in err


def _text(node: ast.AST) -> str:
    """A string literal's text; an f-string's placeholders read as ``X``."""
    if isinstance(node, ast.Constant):
        return node.value
    return "".join(part.value if isinstance(part, ast.Constant) else "X" for part in node.values)


def _library_strings() -> list[tuple[str, int, str]]:
    """Every message-like string literal of library code: not in cli/ or demo/, not a
    docstring, holding a space (single tokens are arguments to other programs)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(("cli/", "demo/")):
            continue
        tree = ast.parse(path.read_text())
        skip = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                skip.update(id(part) for part in node.values)
        for node in ast.walk(tree):
            literal = isinstance(node, ast.JoinedStr) or (
                isinstance(node, ast.Constant) and isinstance(node.value, str)
            )
            if literal and id(node) not in skip:
                text = _text(node)
                if " " in text.strip():
                    found.append((rel, node.lineno, text))
    return found


FLAG = re.compile(r"(?<![\w`-])--[a-z][a-z0-9-]+")


def test_library_messages_speak_of_parameters_not_flags():
    """A flag may appear only inside a whole command a message suggests (`moola ...`)."""
    offenders = []
    for rel, line, text in _library_strings():
        outside_commands = re.sub(r"`moola [^`]*`?", "", text)
        if FLAG.search(outside_commands):
            offenders.append(f"{rel}:{line}: {text.strip()[:90]!r}")
    if offenders:
        pytest.fail("library strings naming flags:\n" + "\n".join(offenders))
