# One virtual environment (.venv) is created on first use and reused; it is
# reinstalled only when pyproject.toml changes.
PYTHON ?= python3.11
# Installed before the project so that pip keeps it (the CPU build here and in CI); on a
# GPU machine set TORCH to the CUDA build you want, e.g. TORCH="torch==2.13.0 --index-url ...".
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test fuzz lint bench evidence clean

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "moola needs $(PYTHON) on PATH (set PYTHON=/path/to/python3.11)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev,rl,live,annotate,tune,scale,sentiment,foundation]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/moola demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# Every input a user hands moola, broken many ways (hypothesis profile "fuzz", ~3-5 minutes
# on 2 cores): each case must exit 0 or 2, name the bad input and leave files unchanged.
# Then 20 byte flips in every file of a small data root (~1,000 flips, ~1-2 minutes): each
# must be caught by `moola data verify` and refused by the file's reader.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q tests/test_fuzz_inputs.py
	MOOLA_TAMPER_FLIPS=20 $(BIN)/python -m pytest -q -s tests/test_tamper.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# Does pretraining help on tiny labeled sets? An hour or more on 2 CPU cores.
evidence: $(STAMP)
	$(BIN)/python benchmarks/bench_transfer.py

clean:
	rm -rf $(VENV) moola_data
