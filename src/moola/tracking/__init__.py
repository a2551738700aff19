"""Run ids, run folders with typed manifests, the experiment_results.jsonl log, and the journal."""

from moola.tracking.journal import Journal, JournalEvent, JsonlJournal
from moola.tracking.manifest import TrainManifest, WindowSpec
from moola.tracking.runs import RESULTS_FILE, RunStore, new_run_id

__all__ = [
    "RESULTS_FILE",
    "Journal",
    "JournalEvent",
    "JsonlJournal",
    "RunStore",
    "TrainManifest",
    "WindowSpec",
    "new_run_id",
]
