# The user interface of this repository. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: install system-deps demo test dev lint format bench screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

## demo: sandbox API → Dagster runs → ./warehouse, then a table of what landed
demo: $(STAMP)
	$(PY) -m aperiodic_assets.demo

## system-deps: the Debian packages the suite needs (Chromium, the PostgreSQL server), installed
## when missing if this is root with apt-get; otherwise it stops with the command to run
system-deps:
	@tools/system-deps chromium postgresql

## test: the whole suite (sandbox, client, validation, Dagster, S3 on a local moto server)
test: $(STAMP) system-deps
	$(PY) -m pytest

## dev: the sandbox plus the Dagster UI on http://127.0.0.1:3000
dev: $(STAMP)
	$(PY) -m aperiodic_assets.dev

lint: $(STAMP)
	$(VENV)/bin/ruff check aperiodic_assets tests benchmarks
	$(VENV)/bin/ruff format --check aperiodic_assets tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format aperiodic_assets tests benchmarks
	$(VENV)/bin/ruff check --fix aperiodic_assets tests benchmarks

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) benchmarks/validation.py
	$(PY) benchmarks/backfill.py
	$(PY) benchmarks/rollover.py

## screenshots: the demo in a fresh instance, photographed in headless Chromium into docs/img/
screenshots: $(STAMP)
	$(PY) -m aperiodic_assets.screenshots

clean:
	rm -rf $(VENV) warehouse .pytest_cache
