"""Where a study lives: its folder under the data root and its Optuna storage.

``artifacts/studies/<name>/`` holds ``study.json`` (the study's identity: the space hash
and file, the objective, where its storage is), ``study.db`` (the default storage, SQLite)
and ``report.html``. The storage is chosen by a URL:

- none: SQLite at ``artifacts/studies/<name>/study.db``: one machine, trials in one
  driver (SQLite locks under many writers);
- any URL SQLAlchemy and Optuna accept (``postgresql://user@host/db``,
  ``sqlite:///path.db``): many drivers, many machines; a PostgreSQL URL without a driver
  (``postgresql://``, ``postgres://``) is read as ``postgresql+psycopg://`` (psycopg 3,
  what moola installs; SQLAlchemy's own default, psycopg2, is not a dependency);
- ``journal:PATH``: Optuna's journal file storage, an append-only log many processes can
  share on one file system without a database server.

A database storage records a heartbeat of every trial in flight, so a driver that died
elsewhere leaves trials a later driver can recognise as stale (``moola.tune.study``). An
unreachable storage is a ``ConfigError`` naming the URL (its password hidden), before
anything is written.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moola.core.atomic import atomic_write_text
from moola.core.errors import ConfigError
from moola.core.paths import check_safe_name

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

__all__ = [
    "HEARTBEAT_S",
    "STUDY_FILE",
    "open_storage",
    "read_study_record",
    "redacted",
    "storage_url",
    "study_dir",
    "write_study_record",
]

STUDY_FILE = "study.json"
DB_FILE = "study.db"
JOURNAL_PREFIX = "journal:"
#: Seconds between heartbeats of a trial in flight (database storages).
HEARTBEAT_S = 30
#: A trial whose heartbeat is older than this is stale (its driver died).
GRACE_S = 120


def study_dir(root: str | Path, name: str) -> Path:
    """``artifacts/studies/<name>/`` under the data root (``name`` checked as a safe
    file name)."""
    check_safe_name(name, "Study name")
    return Path(root) / "artifacts" / "studies" / name


def storage_url(root: str | Path, name: str, storage: str | None = None) -> str:
    """The storage URL of study ``name``: ``storage`` as given, or the default SQLite
    file in its folder."""
    if storage:
        return _with_driver(storage)
    return f"sqlite:///{(study_dir(root, name) / DB_FILE).resolve()}"


def _with_driver(url: str) -> str:
    """A PostgreSQL URL without a driver as psycopg 3's (module notes); others as given."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and records)."""
    if url.startswith(JOURNAL_PREFIX) or "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: say so when it is opened
        return url


def open_storage(root: str | Path, name: str, storage: str | None = None) -> BaseStorage:
    """Open (or create) the Optuna storage of study ``name`` (see the module notes)."""
    import optuna

    url = storage_url(root, name, storage)
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url.removeprefix(JOURNAL_PREFIX)).expanduser()
        if not path.parent.is_dir():
            raise ConfigError(
                f"Journal storage {url}: folder {path.parent} does not exist; create it (on "
                "a file system every worker can reach) or point at another.",
                param="storage",
            )
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    if storage is None:
        study_dir(root, name).mkdir(parents=True, exist_ok=True)
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine = {"connect_args": {"timeout": 60}}  # wait for another writer's lock
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
            )
    except Exception as exc:
        raise ConfigError(
            f"Cannot open the study storage {redacted(url)}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''} Check the URL, that the "
            "server is up and reachable, and the credentials.",
            param="storage",
        ) from None


def write_study_record(root: str | Path, name: str, record: dict[str, Any]) -> Path:
    """Write ``study.json`` of study ``name`` (atomically, replacing an older one)."""
    folder = study_dir(root, name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STUDY_FILE
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n", overwrite=True)
    return path


def read_study_record(root: str | Path, name: str) -> dict[str, Any] | None:
    """``study.json`` of study ``name`` (None when there is none)."""
    path = study_dir(root, name) / STUDY_FILE
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Study record {path} cannot be read: {exc}") from None
