"""Small shared types every layer may use: errors, hashing, settings, time frames."""

from moola.core.errors import (
    BarValidationError,
    CheckpointError,
    ConfigError,
    DeviceError,
    IntegrityError,
    LeakageError,
    MoolaError,
    RegistryError,
    SourceError,
    SplitError,
    VersionExistsError,
)
from moola.core.timeframes import parse_timeframe

__all__ = [
    "BarValidationError",
    "CheckpointError",
    "ConfigError",
    "DeviceError",
    "IntegrityError",
    "LeakageError",
    "MoolaError",
    "RegistryError",
    "SourceError",
    "SplitError",
    "VersionExistsError",
    "parse_timeframe",
]
