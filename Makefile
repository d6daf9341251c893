# Every target creates .venv on first use and installs streamlearn with its dev tools.
# torch is pinned to the CPU build for this project's machines; the package itself asks
# only for torch>=2.4.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint bench proto clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0 -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/streamlearn demo

# Two workers, the integration suite together on one of them (tests/conftest.py); then the
# reliability suite alone: its promises are timed (ready within 10 s after a SIGKILL), so
# it gets the machine to itself, as it would in production.
test: $(STAMP)
	$(BIN)/python -m pytest -q -ra --durations=20 -n 2 --dist loadgroup --ignore=tests/reliability
	$(BIN)/python -m pytest -q -ra --durations=10 tests/reliability

# The unit tests without the slow ones: no broker, no subprocesses, under a minute.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check streamlearn tests benchmarks scripts
	$(BIN)/ruff format --check streamlearn tests benchmarks scripts
	$(BIN)/mypy --strict streamlearn
	$(BIN)/mypy --strict tests benchmarks
	$(BIN)/python scripts/protogen.py --check

proto: $(STAMP)
	$(BIN)/python scripts/protogen.py

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/pool_overhead.py
	$(BIN)/python benchmarks/drift/run.py
	$(BIN)/python benchmarks/drift/sensitivity.py
	$(BIN)/python benchmarks/experts/run.py
	$(BIN)/python benchmarks/defaults/sweep.py --grid lr_batch --quick
	$(BIN)/python benchmarks/defaults/report.py
	$(BIN)/python benchmarks/tta/run.py
	$(BIN)/python benchmarks/tta/process.py --orders abrupt abrupt_mixed standard

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache checkpoints
