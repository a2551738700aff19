"""Settings and typed YAML configs: where data lives, and configs that reject typos."""

from __future__ import annotations

import pytest

from moola.core.errors import ConfigError
from moola.core.settings import RunConfig, load_config, load_settings
from moola.core.timeframes import parse_timeframe


class _Config(RunConfig):
    window_length: int = 105
    symbol: str = "NQ"


def test_data_root_comes_from_flag_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MOOLA_HOME", str(tmp_path / "env"))
    assert load_settings().data_root == (tmp_path / "env").resolve()
    assert load_settings(home=tmp_path / "flag").data_root == (tmp_path / "flag").resolve()
    monkeypatch.delenv("MOOLA_HOME")
    assert load_settings().data_root.name == "moola_data"


def test_bad_settings_name_the_field(monkeypatch):
    monkeypatch.setenv("MOOLA_DEVICE", "tpu")
    with pytest.raises(ConfigError, match="device"):
        load_settings()


def test_config_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("window_length: 50\nwindow_lenght: 60\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'window_lenght'.*run\.yaml|run\.yaml.*window_lenght"
    ):
        load_config(path, _Config)


def test_config_overrides_apply_on_top_of_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("window_length: 50\n")
    config = load_config(path, _Config, symbol="ES", window_length=None)
    assert (config.window_length, config.symbol) == (50, "ES")
    with pytest.raises(ConfigError, match="window_length"):
        load_config(path, _Config, window_length="long")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", _Config)


@pytest.mark.parametrize(("text", "minutes"), [("1m", 1), ("5m", 5), ("1h", 60), ("1d", 1440)])
def test_timeframes_parse(text, minutes):
    assert parse_timeframe(text).total_seconds() == minutes * 60


@pytest.mark.parametrize("text", ["0m", "m5", "5 minutes", ""])
def test_bad_timeframes_say_what_is_accepted(text):
    with pytest.raises(ConfigError, match="'1m'"):
        parse_timeframe(text)
