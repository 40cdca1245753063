# Set-up and entry points. On a fresh machine with Python 3.11, two commands do everything:
#   make pipeline   # .venv from the hash-locked requirements.txt, then `dvc repro`
#   make test       # .venv from the hash-locked requirements-dev.txt, then the test suite
# Offline, point the data download at a mirror: DATA_MIRROR=../shared/datasets make pipeline
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stages call `python` and `dvc` from PATH: the venv's, whatever the caller's shell has.
RUN := PATH="$(BIN):$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)"

.PHONY: pipeline test install install-dev

pipeline: $(VENV)/.installed
	$(RUN) dvc repro

test: $(VENV)/.installed-dev
	$(RUN) python -m pytest

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# --require-hashes is implied by the hashes in the lock files: every wheel is verified.
$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-dev.txt
	touch $@ $(VENV)/.installed
