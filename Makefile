# meshlet: `make up` runs a local mesh with demo services; `make test` runs the whole suite.
# Both work on a fresh machine: the virtualenv is created and the project installed on demand.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SRC    := src/meshlet
PYTEST_FLAGS ?=

.PHONY: up test lint typecheck unit integration bench docs clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

up: $(STAMP)
	$(BIN)/meshlet up

test: lint typecheck unit integration

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q $(PYTEST_FLAGS)

integration: $(STAMP)
	$(BIN)/pytest tests/integration -q $(PYTEST_FLAGS)

bench: $(STAMP)
	bench/install-peers
	$(BIN)/python -m bench $(BENCH_ARGS)

docs: $(STAMP)
	$(BIN)/python scripts/gen_resource_docs.py

clean:
	rm -rf $(VENV) .meshlet .mypy_cache .ruff_cache .pytest_cache
