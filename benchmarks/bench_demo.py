"""Demo benchmark: wall time of ``moola demo``, alone and beside a CPU-bound process.

Run: ``.venv/bin/python benchmarks/bench_demo.py [--quick] [--threads N] [--only alone|busy]
[--timeout S]``.

Each scenario runs the demo as a user does, in a subprocess (``python -m moola.cli.main
--data-root TMP demo``) on a fresh temporary data root, with its output piped (so the
plain, timestamped progress lines are what it prints), and times it from start to exit:

- **alone**: nothing else started by the benchmark (other jobs on the machine are not
  controlled: the load average before the run is printed so a busy machine shows);
- **busy**: beside one CPU-bound process (a Python loop spinning on one core), started
  before the demo and killed after it: a machine where something else is running.

Targets, on 2 CPU cores: 120 s alone and 240 s beside the spinner. The table also gives the
time to the first progress line (the demo must show it is alive at once), how many lines
streamed before the process ended, and the seconds its forecasting section took (from its
first stage line, ``forecasting: ...``, to the next stage's, read from the demo's own
timestamps). A run past ``--timeout`` is killed and reported.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import print_table  # benchmarks/ is on sys.path when run as scripts

TARGETS = {"alone": 120.0, "busy": 240.0}
SPIN = "while True:\n    pass\n"
#: A stage line of the demo's piped output: ``HH:MM:SS +  12.3s text`` (progress lines
#: inside a stage are indented, so their text starts with a space).
STAGE = re.compile(r"^\d\d:\d\d:\d\d \+ *(?P<elapsed>\d+\.\d)s (?P<text>\S.*)$")


def section_seconds(stages: list[tuple[float, str]], prefix: str) -> float | None:
    """Seconds from the first stage whose text starts with ``prefix`` to the first later
    stage that does not (None when no stage has the prefix or none follows it)."""
    inside = [k for k, (_, text) in enumerate(stages) if text.startswith(prefix)]
    if not inside:
        return None
    after = [k for k in range(inside[0], len(stages)) if not stages[k][1].startswith(prefix)]
    return stages[after[0]][0] - stages[inside[0]][0] if after else None


def run_demo(args: argparse.Namespace, scenario: str) -> dict:
    """One demo run in a subprocess on a fresh data root; its timings as a table row."""
    spinner = None
    if scenario == "busy":
        spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="moola-bench-demo-") as root:
        command = [sys.executable, "-m", "moola.cli.main", "--data-root", root, "demo"]
        if args.quick:
            command.append("--quick")
        if args.threads is not None:
            command += ["--threads", str(args.threads)]
        started = time.perf_counter()
        first_line = None
        streamed = 0
        stages: list[tuple[float, str]] = []
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        watchdog = threading.Timer(args.timeout, process.kill)  # silent or not, it ends
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if first_line is None:
                    first_line = time.perf_counter() - started
                stage = STAGE.match(line.rstrip("\n"))
                if stage:
                    stages.append((float(stage["elapsed"]), stage["text"]))
                if process.poll() is None:
                    streamed += 1
            code = process.wait()
        finally:
            killed = watchdog.finished.is_set()  # before cancel(), set only once it fired
            watchdog.cancel()
            if spinner is not None:
                spinner.kill()
                spinner.wait()
        wall = time.perf_counter() - started
    target = TARGETS[scenario]
    status = "killed" if killed else ("ok" if code == 0 else f"exit {code}")
    forecasting = section_seconds(stages, "forecasting: ")
    return {
        "step": f"moola demo{' --quick' if args.quick else ''}",
        "measure": scenario,
        "load before": f"{load:.2f}",
        "wall (s)": f"{wall:.1f}",
        "target (s)": f"{target:.0f}",
        "within": "yes" if wall <= target and status == "ok" else "NO",
        "first line (s)": "-" if first_line is None else f"{first_line:.1f}",
        "lines streamed": streamed,
        "forecasting (s)": "-" if forecasting is None else f"{forecasting:.1f}",
        "status": status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Time `moola demo --quick`.")
    parser.add_argument("--threads", type=int, default=None, help="Pass --threads N.")
    parser.add_argument("--only", choices=sorted(TARGETS), help="Run one scenario.")
    parser.add_argument("--timeout", type=float, default=1200.0, help="Kill a run after S s.")
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPU cores; python {sys.version.split()[0]}; "
        f"moola at {Path(__file__).resolve().parents[1]}",
        flush=True,
    )
    rows = []
    for scenario in [args.only] if args.only else list(TARGETS):
        print(f"running the demo: {scenario} ...", flush=True)
        rows.append(run_demo(args, scenario))
        print(rows[-1], flush=True)
    print_table("moola demo: wall time (targets on 2 cores: 120 s alone, 240 s busy)", rows)


if __name__ == "__main__":
    main()
