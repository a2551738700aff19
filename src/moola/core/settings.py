"""Process-wide settings (data root, device, seed, log level) and typed YAML run configs.

Settings come from, in rising priority: defaults, ``MOOLA_*`` environment variables, and
command-line flags. Run configs are YAML files validated by pydantic models that reject
unknown keys, naming the key and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from moola.core.errors import ConfigError

DeviceName = Literal["auto", "cpu", "cuda", "mps"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    """Where moola keeps its data and how it runs; read from ``MOOLA_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="MOOLA_", frozen=True, extra="forbid")

    home: Path = Path("moola_data")
    device: DeviceName = "auto"
    seed: int = 0
    log_level: LogLevel = "INFO"

    @property
    def data_root(self) -> Path:
        """The data root (``$MOOLA_HOME``, default ``./moola_data``), as an absolute path."""
        return self.home.expanduser().resolve()


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment with command-line ``overrides`` (``None`` = not given)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "settings (MOOLA_* environment or flags)")) from None


class RunConfig(BaseModel):
    """Base of every typed run config: frozen, keyword-only, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def load_config(path: str | Path, schema: type[ConfigT], /, **overrides: object) -> ConfigT:
    """Read YAML ``path`` into ``schema``, applying non-``None`` ``overrides`` on top.

    ``path`` and ``schema`` are positional-only, so overrides may use any field name
    (a run config has a ``model`` field, for instance).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist. Check the path you passed.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Config file {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); a run "
            "config is a YAML text file. Check you passed the right file."
        ) from None
    except OSError as exc:
        raise ConfigError(f"Config file {path} cannot be read: {exc.strerror}.") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of keys to values.")
    raw.update({key: value for key, value in overrides.items() if value is not None})
    return parse_config(schema, raw, where=f"config file {path}")


def parse_config(schema: type[ConfigT], values: dict, *, where: str) -> ConfigT:
    """Validate ``values`` into ``schema``; errors name each bad key and ``where`` it came from."""
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from None


def _describe(exc: ValidationError, where: str) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        else:  # a model-level check has no key: its message names what it checked
            problems.append(f"'{key}': {message}" if key else message)
    return f"Invalid {where}: " + "; ".join(problems) + "."
