"""Run every speed benchmark in this folder, one after another (``make bench``).

``bench_transfer.py`` is an experiment, not a speed benchmark: it pretrains on 200K
windows and fine-tunes hundreds of models (an hour or more on 2 CPU cores), so it runs only
with ``make evidence`` (or directly).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LONG = {"bench_transfer.py"}
#: Measured on a GPU only (one command on a lent device, see its docstring).
DEVICE = {"bench_pretrain_gpu.py"}

if __name__ == "__main__":
    failed = 0
    for script in sorted(HERE.glob("bench_*.py")):
        if script.name in LONG:
            print(f"\n=== {script.name}: skipped (about an hour; `make evidence`) ===")
            continue
        if script.name in DEVICE:
            print(f"\n=== {script.name}: skipped (a GPU benchmark; see its docstring) ===")
            continue
        print(f"\n=== {script.name} ===", flush=True)
        failed |= subprocess.call([sys.executable, str(script), *sys.argv[1:]])
    sys.exit(failed)
