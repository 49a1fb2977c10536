# aidp — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test demo up bench lint fmt clean

install:
	@bash scripts/bootstrap.sh

test: install
	$(PY) -m pytest -m "not bench" $(PYTEST_ARGS) tests

demo: install
	@bash scripts/demo.sh

up: install
	$(VENV)/bin/aidp up

bench: install
	$(PY) -m pytest -m bench -s tests/bench

lint: install
	$(VENV)/bin/ruff check shared services cli tests scripts
	$(VENV)/bin/ruff format --check shared services cli tests scripts
	$(VENV)/bin/mypy

fmt:
	$(VENV)/bin/ruff check --fix shared services cli tests scripts
	$(VENV)/bin/ruff format shared services cli tests scripts

clean:
	rm -rf $(VENV) web/node_modules web/dist .pytest_cache .mypy_cache .ruff_cache
