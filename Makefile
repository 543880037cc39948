# Two commands from a fresh clone: `make demo` and `make test` (see README.md).
# Everything runs from the project's own virtualenv in .venv, created on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: help install demo test test-fast lint format clean-demo

help:
	@echo "make demo       run the whole system on this machine (SQLite, no servers needed)"
	@echo "make test       make lint, then the whole test suite (needs PostgreSQL and Redis)"
	@echo "make test-fast  the suite without the slow end-to-end and browser tests"
	@echo "make lint       ruff check, ruff format --check and mypy"
	@echo "make format     ruff format and ruff check --fix"
	@echo "make clean-demo forget the demo's database, broker folder and model folders"

# uv installs exactly the versions in uv.lock. A uv of that version on PATH is used as it is;
# otherwise `pip install uv==$(UV_VERSION)` into .uv/ (a small virtualenv of its own, so that
# syncing .venv to the lock never removes the installer itself).
UV_VERSION := 0.13.9
UV ?= $(shell uv --version 2>/dev/null | grep -qx 'uv $(UV_VERSION)\( .*\)\?' && command -v uv)
ifeq ($(strip $(UV)),)
UV := .uv/bin/uv
endif

.uv/bin/uv:
	$(PYTHON) -m venv .uv
	.uv/bin/python -m pip install --quiet uv==$(UV_VERSION)

# The stamp is newer than pyproject.toml and uv.lock once the install succeeded, so a change of
# pins reinstalls and an unchanged checkout does not touch the network. --locked refuses a
# pyproject.toml whose uv.lock is out of date (run `uv lock`) instead of resolving anew.
$(BIN)/.installed: pyproject.toml uv.lock | $(UV)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ocrdash needs Python 3.11 or newer (set PYTHON=...)")'
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --no-python-downloads --python $(PYTHON) \
		--extra dashboard --extra dev
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python scripts/demo.py --port $(PORT)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest

test-fast: $(BIN)/.installed
	$(BIN)/pytest -m "not slow"

clean-demo:
	rm -rf var/demo
