"""Labelling chart windows: the annotation log, stores and blacklist, extraction, commit,
review, stats, and the local web app (FastAPI) with its run browser.

The package, bottom up (each module imports only those above it in this list):

- ``model``: the frozen records: ``WindowRef`` (a window of a raw version, by rows and
  bar times), ``Batch`` (windows to label, normal or review, write-once), ``Action`` (one
  log line: label, grade, note, skip, undo) and ``WindowState`` (a window after replay).
- ``log``: ``AnnotationLog``, the append-only, fsynced JSONL log (a kill never leaves a
  line that breaks reading; a corrupt line is reported by number, the rest kept) and
  ``replay`` (undo as a stack per window).
- ``store``: batches under ``annotations/batches/`` and ``BatchStore`` over one batch's
  log (``annotations/normal/`` or ``annotations/review/``, never mixed); a D grade writes
  its blacklist entry (``moola.data.blacklist``) before the action is acknowledged.
- ``stats``: keeper rates by intraday session and batch (``keeper_rates`` weighs
  extraction), class and grade balance, speed, Cohen's kappa.
- ``suggest``: weak-label suggestions for a batch's windows.
- ``extract``: ``extract_batch``, candidate windows clear of labeled, queued and
  blacklisted spans, weighted by session keeper rates or ranked by a run's uncertainty.
- ``review``: ``review_batch``, cleanlab's likely label errors of a run's out-of-fold
  probabilities, as a review batch.
- ``commit``: ``commit_batch``, accepted annotations (grade A-C) into a new labeled
  version whose manifest lists them; review corrections into a version with lineage.
- ``runs``: the run browser's data (``experiment_results.jsonl`` filtered, sorted,
  compared; reports and files read verified).
- ``api``: ``Annotations``, what the request handlers call (batches opened once, bars
  cached, logs replayed when they change).
- ``app``: ``create_app``, the FastAPI app (token on every call, escaped output,
  OpenAPI at ``/api/openapi.json``); ``server``: the token, address checks, uvicorn.

Names are imported on first use, so ``import moola.annotate`` loads neither FastAPI nor
pandas; ``moola.annotate.create_app`` loads the web stack when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module of this package that defines it.
_HOMES: dict[str, str] = {
    # records
    "Action": "model",
    "Batch": "model",
    "NewAction": "model",
    "WindowRef": "model",
    "WindowState": "model",
    # log and stores
    "AnnotationLog": "log",
    "LogProblem": "log",
    "replay": "log",
    "BatchState": "store",
    "BatchStore": "store",
    "list_batches": "store",
    "read_batch": "store",
    "write_batch": "store",
    # what the history says
    "AnnotationStats": "stats",
    "SESSIONS": "stats",
    "annotation_stats": "stats",
    "keeper_rates": "stats",
    "session_of": "stats",
    # batches in, datasets out
    "ExtractConfig": "extract",
    "extract_batch": "extract",
    "review_batch": "review",
    "CommitResult": "commit",
    "commit_batch": "commit",
    # run browser
    "compare_runs": "runs",
    "list_runs": "runs",
    "run_dataset": "runs",
    # the web app
    "Annotations": "api",
    "create_app": "app",
    "ServerThread": "server",
    "app_url": "server",
    "new_token": "server",
    "serve": "server",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'moola.annotate' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"moola.annotate.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
