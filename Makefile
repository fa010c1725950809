# One command to set up and run the demo, one to set up and pass the tests.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.core

$(VENV)/.bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	touch $@ $(VENV)/.core

# Not part of `make test` (tests/test_bench_smoke.py runs it on one tiny model); writes bench/RESULTS.md
bench: $(VENV)/.bench
	$(BIN)/python -m bench.run $(BENCH_ARGS)

demo: $(VENV)/.core
	$(BIN)/quantscope demo --out quantscope-demo

test: $(VENV)/.test
	$(BIN)/ruff check src tests examples bench
	$(BIN)/python -m pytest -q

lint: $(VENV)/.test
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples

clean:
	rm -rf $(VENV) quantscope-demo .pytest_cache .ruff_cache
