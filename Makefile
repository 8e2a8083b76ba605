# Everyday commands. Each target sets up .venv first (idempotent: ~0.1 s when up to date).
PY := .venv/bin/python
export TF_USE_LEGACY_KERAS := 1
# Code that is type-checked (the user code, the definition, serving and the tools).
TYPED := pipeline serving modules ops runners

.PHONY: help setup run test test-unit lint format typecheck coverage tensorboard clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

setup:  ## create/refresh .venv from the lock files (Python 3.10, uv)
	@bash scripts/setup.sh

run: setup  ## run the pipeline locally on the bundled taxi data -> outputs/
	$(PY) runner.py run

test: lint typecheck  ## lint, type-check, then the whole test suite: unit and end-to-end (what CI runs)
	@bash scripts/ensure-test-tools.sh
	$(PY) -m pytest

test-unit: setup  ## unit tests only (no pipeline runs)
	$(PY) -m pytest -m "not e2e"

lint: setup  ## ruff: lint rules and formatting (line length included)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup  ## ruff: fix what can be fixed and format
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

typecheck: setup  ## mypy over the packages
	$(PY) -m mypy $(TYPED)

coverage: setup  ## the whole suite under coverage, in one process (~20 min) -> htmlcov/
	@bash scripts/ensure-test-tools.sh
	$(PY) -m coverage run -m pytest -p no:xdist -o addopts="--strict-markers -ra"
	$(PY) -m coverage report
	$(PY) -m coverage html

tensorboard: setup  ## TensorBoard on http://127.0.0.1:6006 over every run's training curves
	$(PY) -m tensorboard.main --logdir $${PIPELINE_OUTPUT:-outputs}/tfx/trainer/model_run --host 127.0.0.1 --port 6006

clean:  ## remove local pipeline outputs (not the venv)
	rm -rf outputs
