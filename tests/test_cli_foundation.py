"""``moola foundation register|features`` through the command line, on tiny random models:
a card a user can find and verify, stored forecasts, and errors spoken of as flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from moola.cli._flags import flag_advice
from moola.core.errors import ConfigError, MoolaError
from moola.core.settings import load_settings
from moola.data.registry import Registry
from moola.models.foundation import directory_sha256
from moola.pipeline.datasets import synthesize_raw
from moola.testing.foundation import tiny_chronos_bolt


def cli_app() -> typer.Typer:
    """``moola foundation`` and ``moola data`` mounted as cli/main.py mounts them."""
    from moola.cli.data import app as data_app
    from moola.cli.foundation import app as foundation_app

    root = typer.Typer()

    @root.callback()
    def _global(ctx: typer.Context, data_root: Path = typer.Option(None, "--data-root")):  # noqa: B008
        ctx.obj = load_settings(home=data_root)

    root.add_typer(foundation_app, name="foundation")
    root.add_typer(data_app, name="data")
    return root


@pytest.fixture(scope="module")
def chronos(tmp_path_factory):
    return tiny_chronos_bolt(
        tmp_path_factory.mktemp("fm-cli-weights") / "chronos", context_length=32
    )


def invoke(app, home, *argv):
    return CliRunner().invoke(app, ["--data-root", str(home), *argv])


def said(app, home, result, *argv) -> str:
    """The message ``moola`` prints for the error that ended ``result`` (flags, not params)."""
    assert isinstance(result.exception, MoolaError), result.output
    args = ["--data-root", str(home), *argv]
    return flag_advice(result.exception, typer.main.get_command(app), args)


def test_register_prints_the_card_and_hash_and_verify_reports_a_deleted_card(tmp_path, chronos):
    app, home = cli_app(), tmp_path / "home"
    result = invoke(app, home, "foundation", "register", "chronos", str(chronos))
    assert result.exit_code == 0, result.output
    root = load_settings(home=home).data_root
    card = root / "artifacts" / "encoders" / "foundation" / "chronos_v1.json"
    assert card.is_file()
    flat = "".join(result.output.split())  # a long path may wrap
    assert "".join(str(card).split()) in flat and directory_sha256(chronos) in flat
    assert invoke(app, home, "data", "verify").exit_code == 0

    card.unlink()
    verify = invoke(app, home, "data", "verify")
    assert verify.exit_code == 1
    assert "chronos_v1.json" in verify.output and "foundation:chronos_v1" in verify.output


def test_register_refuses_an_empty_folder_and_writes_nothing(tmp_path):
    app, home = cli_app(), tmp_path / "home"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke(app, home, "foundation", "register", "chronos", str(empty))
    assert isinstance(result.exception, ConfigError) and str(empty) in str(result.exception)
    assert not (load_settings(home=home).data_root / "artifacts" / "encoders").exists()


def test_features_stores_the_forecasts_named_by_the_weights(tmp_path, chronos):
    app, home = cli_app(), tmp_path / "home"
    registry = Registry(load_settings(home=home).data_root)
    synthesize_raw(registry, "mkt", n_bars=60, seed=3, symbol="AAA")
    result = invoke(
        app, home, "foundation", "features", "mkt@v1", "--kind", "chronos", "--path",
        str(chronos), "--name", "fc", "--context", "16", "--horizon", "2",
        "--quantiles", "0.5,0.1,0.9",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "features/fc@v1" in result.output and "--extra-features fc@v1" in result.output
    table = registry.load_table("features", "fc")
    assert list(table.columns) == [
        "timestamp",
        "symbol",
        "fm_ret2_q50",
        "fm_ret2_q10",
        "fm_ret2_q90",
    ]
    assert table["fm_ret2_q50"].isna().sum() == 15 and len(table) == 60
    meta = registry.meta(registry.resolve("features", "fc"))["foundation"]
    assert meta["sha256"] == directory_sha256(chronos) and meta["context"] == 16


@pytest.mark.parametrize(
    ("flags", "flag", "words"),
    [
        (["--context", "64"], "--context", "reads (32 bars)"),  # longer than the model reads
        (["--horizon", "0"], "--horizon", ">= 1"),
        (["--quantiles", "0.5,1.5"], "--quantiles", "strictly between 0 and 1"),
        (["--quantiles", "median"], "--quantiles", "separated by commas"),
        (["--kind", "mantis"], "--kind", "chronos, kronos, timesfm"),
    ],
)
def test_features_errors_name_the_flag_and_store_nothing(tmp_path, chronos, flags, flag, words):
    app, home = cli_app(), tmp_path / "home"
    registry = Registry(load_settings(home=home).data_root)
    synthesize_raw(registry, "mkt", n_bars=40, seed=3, symbol="AAA")
    argv = ["foundation", "features", "mkt", "--kind", "chronos", "--path", str(chronos),
            "--name", "fc", "--context", "16", *flags]  # fmt: skip
    message = said(app, home, invoke(app, home, *argv), *argv)
    assert flag in message and words in message
    assert registry.versions("features", "fc") == []


def test_register_refuses_a_folder_of_another_architecture_and_writes_nothing(tmp_path, chronos):
    """Kronos's layout (tokenizer/ and model/) filled with Chronos-Bolt files: refused
    naming the folder, no card written."""
    import shutil

    app, home = cli_app(), tmp_path / "home"
    folder = tmp_path / "kronos"
    for part in ("tokenizer", "model"):
        shutil.copytree(chronos, folder / part)
    result = invoke(app, home, "foundation", "register", "kronos", str(folder))
    assert isinstance(result.exception, MoolaError), result.output
    assert str(folder) in str(result.exception) and "Kronos" in str(result.exception)
    assert not (load_settings(home=home).data_root / "artifacts" / "encoders").exists()
