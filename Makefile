# meshlet: `make up` runs a local mesh with demo services; `make test` runs the whole suite.
# Both work on a fresh machine: the virtualenv is created and the project installed on demand.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
COMPILED := build/compiled
SRC    := src/meshlet
PYTEST_FLAGS ?=

.PHONY: up test lint typecheck unit integration unit-compiled integration-compiled compiled bench docs clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

up: $(STAMP)
	$(BIN)/meshlet up

test: lint typecheck unit integration unit-compiled integration-compiled

lint: $(STAMP)
	$(BIN)/ruff check setup.py src tests bench scripts
	$(BIN)/ruff format --check setup.py src tests bench scripts
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q $(PYTEST_FLAGS)

integration: $(STAMP)
	$(BIN)/pytest tests/integration -q $(PYTEST_FLAGS)

# The agent's data-path modules compiled with mypyc (setup.py), installed apart from the
# source: PYTHONPATH=$(COMPILED) runs meshlet from it. Rebuilt when any source changes.
compiled: $(COMPILED)/.stamp

$(COMPILED)/.stamp: $(STAMP) setup.py pyproject.toml $(shell find src -name '*.py')
	scripts/install-compiler $(BIN)/python
	rm -rf build  # setuptools and mypyc work there too: nothing stale survives
	MESHLET_MYPYC=1 $(BIN)/pip install --quiet --no-build-isolation --no-deps --target $(COMPILED) .
	touch $@

# The unit and integration suites again, against the compiled build.
unit-compiled: compiled
	PYTHONPATH=$(COMPILED) MESHLET_EXPECT_COMPILED=1 $(BIN)/pytest tests/unit -q $(PYTEST_FLAGS)

integration-compiled: compiled
	PYTHONPATH=$(COMPILED) MESHLET_EXPECT_COMPILED=1 $(BIN)/pytest tests/integration -q $(PYTEST_FLAGS)

bench: compiled
	bench/install-peers
	PYTHONPATH=$(COMPILED) $(BIN)/python -m bench $(BENCH_ARGS)

docs: $(STAMP)
	$(BIN)/python scripts/gen_resource_docs.py

clean:
	rm -rf $(VENV) build .meshlet .mypy_cache .ruff_cache .pytest_cache
