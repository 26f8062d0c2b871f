# Two commands on a fresh machine: `make run` starts the gateway, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# `make run` is often the first command someone types: it says what it does, and pip shows its progress
PIP_SHOWN := $(PY) -m pip install --disable-pip-version-check --progress-bar on

.PHONY: run test lint typecheck unit local browser bench check-deploy clean python-version

python-version:
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v >= (3, 11) else "Switchyard needs Python >= 3.11, and $(PYTHON) is %d.%d: run  make run PYTHON=python3.12  (or any other >= 3.11)" % v)'

$(VENV)/bin/python:
	@$(MAKE) --no-print-directory python-version
	@echo "==> [1/3] creating the virtualenv $(VENV) with $(PYTHON) (once)"
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: pyproject.toml | $(VENV)/bin/python
	@echo "==> [2/3] installing Switchyard and its dependencies into $(VENV) (once; a minute or two)"
	$(PIP_SHOWN) -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(VENV)/bin/python
	@echo "==> installing Switchyard with its dev extras into $(VENV) (once)"
	$(PIP) -e '.[dev]'
	@touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	@echo "==> [3/3] starting the gateway on examples/quickstart.yaml (Ctrl-C stops it)"
	@$(VENV)/bin/switchyard serve --config examples/quickstart.yaml

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check src tests benchmarks

typecheck: $(VENV)/.dev-installed
	$(VENV)/bin/mypy

# llama.cpp for the local-model provider, built once with portable CPU flags into a wheel cache outside the repo
local: $(VENV)/.dev-installed
	@scripts/install-local.sh

# Debian's chromium (the browser tests) and nginx (the compose test), when missing
browser:
	@scripts/install-browser.sh

unit: $(VENV)/.dev-installed local browser
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

# hadolint, helm lint and template, schema validation of the chart (docs/deploy.md); says what it had to skip
check-deploy: $(VENV)/.dev-installed
	PY=$(PY) scripts/check-deploy.sh

clean:
	rm -rf $(VENV) .switchyard .pytest_cache .mypy_cache .ruff_cache
