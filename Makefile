# blocktui: `make demo` opens the dashboard on the demo lab, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-loaded lint pytest unit integration ui screenshots bench guard-trials lab-up lab-down clean deps

$(STAMP): pyproject.toml .ci/system-deps
	./.ci/system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

deps: $(STAMP)

demo: $(STAMP)
	$(BIN)/blocktui lab up
	$(BIN)/blocktui --lab

test: lint pytest

# The whole suite with one core kept busy by another process, as on a working hypervisor.
test-loaded: $(STAMP)
	$(PYTHON) -c 'while True: pass' & hog=$$!; trap 'kill $$hog' EXIT; $(MAKE) test

lint: $(STAMP)
	$(BIN)/ruff check blocktui tests bench
	$(BIN)/ruff format --check blocktui tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest -ra

unit: $(STAMP)
	$(BIN)/pytest -ra tests/unit

integration: $(STAMP)
	$(BIN)/pytest -ra tests/integration

ui: $(STAMP)
	$(BIN)/pytest -ra tests/ui

screenshots: $(STAMP)
	$(BIN)/python tests/support/screenshots.py screenshots

bench: $(STAMP)
	$(BIN)/python -m bench

guard-trials: $(STAMP)
	$(BIN)/python -m bench.guard_trials --trials 30

lab-up: $(STAMP)
	$(BIN)/blocktui lab up

lab-down: $(STAMP)
	$(BIN)/blocktui lab down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
