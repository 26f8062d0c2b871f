# Two commands on a fresh machine: `make run` starts the gateway, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: run test lint typecheck unit local bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e '.[dev]'
	@touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(VENV)/bin/switchyard serve --config examples/quickstart.yaml

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check src tests benchmarks

typecheck: $(VENV)/.dev-installed
	$(VENV)/bin/mypy

# llama.cpp for the local-model provider, built once with portable CPU flags into a wheel cache outside the repo
local: $(VENV)/.dev-installed
	@scripts/install-local.sh

unit: $(VENV)/.dev-installed local
	$(PY) -m pytest -n 2

test: lint typecheck unit

$(VENV)/.bench-installed: pyproject.toml $(VENV)/.dev-installed
	$(PIP) -e '.[dev,bench]'
	@touch $@

# the end-to-end suite (regenerates docs/benchmarks.md), then the feature micro-benchmarks, each printing its figures
bench: $(VENV)/.bench-installed
	$(PY) -m benchmarks.run
	PYTHONPATH=src $(PY) -m benchmarks.policy_micro
	PYTHONPATH=src $(PY) -m benchmarks.pii_speed
	PYTHONPATH=src $(PY) -m benchmarks.pii_accuracy
	PYTHONPATH=src $(PY) -m benchmarks.cache_micro
	PYTHONPATH=src $(PY) -m benchmarks.workflows_micro
	PYTHONPATH=src $(PY) -m benchmarks.prompts_micro
	PYTHONPATH=src $(PY) -m benchmarks.responses_micro
	PYTHONPATH=src $(PY) -m benchmarks.state_micro --runs 3

clean:
	rm -rf $(VENV) .switchyard .pytest_cache .mypy_cache .ruff_cache
