# One command to set up and run the demo, one to set up and pass the tests.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# quiet installs: errors still show; pyproject's SPDX license string keeps setuptools' banner away
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test lint clean bench chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[test]"
	touch $@ $(VENV)/.core

$(VENV)/.bench: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[bench]"
	touch $@ $(VENV)/.core

# Not part of `make test` (tests/test_bench_smoke.py runs it on one tiny model); writes bench/RESULTS.md
bench: $(VENV)/.bench
	$(BIN)/python -m bench.run $(BENCH_ARGS)

demo: $(VENV)/.core
	$(BIN)/quantscope demo --out quantscope-demo

# the suite runs on every core (at most 4 workers), a test file per worker at a time
test: $(VENV)/.test chromium
	$(BIN)/ruff check src tests examples bench
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 --dist loadfile

# The report's browser test (tests/test_report_browser.py) opens index.html in headless Chromium:
# install Debian's package when it is missing and we are root (CI is); otherwise say how.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the report's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "the report's browser test needs Chromium: sudo apt-get install -y chromium" >&2; \
	fi

lint: $(VENV)/.test
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples

clean:
	rm -rf $(VENV) quantscope-demo .pytest_cache .ruff_cache
