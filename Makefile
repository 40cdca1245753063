# Set-up and entry points. On a fresh machine with Python 3.11, two commands do everything:
#   make pipeline   # .venv from the hash-locked requirements.txt, then `dvc repro`
#   make test       # .venv from the hash-locked requirements-dev.txt, then the fast tier of tests
# Offline, point the data download at a mirror: DATA_MIRROR=../shared/datasets make pipeline
# The slow tier (real `dvc exp run`s, Ray, emulated CPUs, a browser): make test-slow; both: make test-all.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stages call `python` and `dvc` from PATH: the venv's, whatever the caller's shell has.
RUN := PATH="$(BIN):$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)"

.PHONY: pipeline test test-slow test-all lint install install-dev

pipeline: $(VENV)/.installed
	$(RUN) dvc repro

test: $(VENV)/.installed-dev
	$(RUN) python -m pytest

test-slow: $(VENV)/.installed-dev
	$(RUN) python -m pytest -m slow

test-all: $(VENV)/.installed-dev
	$(RUN) python -m pytest -m "slow or not slow"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# --require-hashes is implied by the hashes in the lock files: every wheel is verified. Then this
# project itself, editable and with no dependencies of its own: the `mnistbench` console script.
$(VENV)/.installed: requirements.txt pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.installed
