# The README's two commands. Each is complete on a fresh machine: it makes .venv, installs the CPU torch
# first (the exact pin takes the local CPU wheel; any other torch requirement pulls GBs of CUDA packages),
# then the package with its dev extra.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# One pytest worker per core (at most 4: each holds torch and its models in memory), an idle one taking queued tests
# from a busy one (worksteal: the slow tests do not end the run on one worker); a test computes on one thread.
PYTEST := $(PY) -m pytest -q -n auto --maxprocesses 4 --dist worksteal

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py --output_dir outputs/demo

test: $(STAMP)
	$(PYTEST)

# The inner loop: everything but the tests marked slow (training runs, several processes, wheel builds).
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) outputs
