"""Errors a user can cause.

Every error raised because of user input (a bad file, flag, config or split) is a
``MoolaError``. Its message names the file, row, column or parameter involved and says how
to fix it; the CLI prints it as one paragraph and exits non-zero.

Library code speaks of parameters (``hold_bars``), never of command-line flags: a script
calling ``backtest_run(..., hold_bars=0)`` has no ``--hold-bars``. An error about one
parameter says so in ``param``; only ``moola.cli`` turns that into flag advice, naming
the flag the command it ran spells for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class MoolaError(Exception):
    """Base class of all user-facing moola errors.

    ``param``: the parameter (or config field) the error is about, when it is about one;
    the CLI names the matching flag.
    """

    exit_code: int = 2

    def __init__(self, *args: object, param: str | None = None) -> None:
        super().__init__(*args)
        self.param = param


class ConfigError(MoolaError):
    """A settings value, config file or command-line flag is invalid."""


class SourceError(MoolaError):
    """A source file is missing, unreadable or not in the declared format."""


class BarValidationError(MoolaError):
    """Bars break one or more schema rules (strict mode refuses them)."""

    def __init__(
        self, message: str, violations: list | None = None, *, param: str | None = None
    ) -> None:
        super().__init__(message, param=param)
        self.violations = violations or []


class RegistryError(MoolaError):
    """A registry operation cannot be done (unknown dataset, bad name, ...)."""


class VersionExistsError(RegistryError):
    """A dataset version that already exists was written again (versions are write-once)."""


class IntegrityError(RegistryError):
    """Stored bytes no longer match the content hashes in their manifest."""


class SplitError(MoolaError):
    """A split cannot be built or fails validation (overlap, out of range, coverage)."""


class LeakageError(SplitError):
    """A split or dataset would let future (or test) information leak into training."""


class CheckpointError(MoolaError):
    """A saved model or checkpoint is corrupt or incompatible with what loads it."""


class DeviceError(MoolaError):
    """A requested compute device (cuda, mps) is not available on this machine."""


class JournalError(MoolaError):
    """The decision journal cannot be written or read (or its schema is newer than this
    moola): money-moving code must send nothing."""


class BrokerError(MoolaError):
    """A broker refused, failed or did not answer a request (after the retries allowed)."""


def describe_validation(name: str, exc: ValidationError) -> str:
    """One sentence naming each bad key of a pydantic model ``name`` (for a ConfigError)."""
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{key}: {message}" if key else message)
    return f"Invalid {name}: " + "; ".join(problems) + "."
