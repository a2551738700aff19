"""Run ids, run folders with manifests, and the experiment_results.jsonl log."""

from moola.tracking.runs import RESULTS_FILE, RunStore, new_run_id

__all__ = ["RESULTS_FILE", "RunStore", "new_run_id"]
