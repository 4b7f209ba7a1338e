# The user interface of this repository. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: install system-deps demo doctor test test-dates wheel-check dev lint format bench screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

## demo: sandbox API → Dagster runs → ./warehouse, then a table of what landed
demo: $(STAMP)
	$(PY) -m aperiodic_assets.tools.demo

## system-deps: the Debian packages the suite needs (Chromium, the PostgreSQL server, PgBouncer),
## installed when missing if this is root with apt-get; otherwise it stops with the command to run
system-deps:
	@tools/system-deps chromium postgresql pgbouncer

## test: the whole suite (sandbox, client, validation, Dagster, S3 on a local moto server), on
## 3 workers: most of its time is spent waiting on daemons, servers and retries, not computing.
## Each worker takes whole modules, the longest first (tests/conftest.py), so the daemon tests
## spread over the workers instead of queueing on one
test: $(STAMP) system-deps
	$(PY) -m pytest -n 3 --dist loadscope --no-loadscope-reorder --durations=12

## test-dates: the date-sensitive tests with the process clock (faketime) and the tests' TODAY
## (APERIODIC_TEST_NOW) at the instants that break date arithmetic: a year's first minutes, a
## month's last minutes, a leap day, a month's first minutes after a short February
DATE_INSTANTS := 2027-01-01T00:20:00 2026-12-31T23:40:00 2028-02-29T12:00:00 2027-03-01T00:05:00
DATE_TESTS := tests/test_automation.py tests/test_demo.py tests/test_doctor.py tests/test_universe.py
# libfaketime 0.9.10 never wakes a timed wait (threading.Event.wait(timeout)) on its faked
# monotonic clock, so the sandbox's stalled listing never ends here; `make test` runs this test.
DATE_DESELECT := --deselect tests/test_automation.py::test_a_tick_stays_within_its_budget_and_continues_where_it_stopped
test-dates: $(STAMP)
	@tools/system-deps faketime
	@for now in $(DATE_INSTANTS); do \
	  echo "== clock at $$now UTC"; \
	  APERIODIC_TEST_NOW=$$now TZ=UTC faketime "$${now/T/ }" \
	    $(PY) -m pytest -q -p no:cacheprovider $(DATE_DESELECT) $(DATE_TESTS) || exit 1; \
	done

## wheel-check: the wheel built, installed with its dependencies into a fresh venv (from the
## package index) and used outside this checkout: the component materializes a sandbox month
wheel-check: $(STAMP)
	tools/wheel-check

## doctor: checks the key, plan, symbols, newest files, warehouse and Dagster instance before
## the first run; exits 1 on anything that would fail one
doctor: $(STAMP)
	$(PY) -m aperiodic_assets.tools.doctor

## dev: the sandbox plus the Dagster UI on http://127.0.0.1:3000
dev: $(STAMP)
	$(PY) -m aperiodic_assets.tools.dev

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
	$(PY) benchmarks/recovery.py
	$(PY) benchmarks/records.py
	$(PY) benchmarks/universe.py
	$(PY) benchmarks/sensor.py

## screenshots: the demo in a fresh instance, photographed in headless Chromium into docs/img/
screenshots: $(STAMP)
	$(PY) -m aperiodic_assets.tools.screenshots

clean:
	rm -rf $(VENV) warehouse .pytest_cache
