# Everyday commands. Each target sets up .venv first (idempotent: ~0.1 s when up to date).
PY := .venv/bin/python
export TF_USE_LEGACY_KERAS := 1

.PHONY: help setup run test test-unit lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup:  ## create/refresh .venv from the lock files (Python 3.10, uv)
	@bash scripts/setup.sh

run: setup  ## run the pipeline locally on the bundled taxi data -> outputs/
	$(PY) runner.py run

test: setup  ## lint, then the whole test suite: unit and end-to-end (what CI runs)
	$(PY) -m ruff check .
	@bash scripts/ensure-test-tools.sh
	$(PY) -m pytest

test-unit: setup  ## unit tests only (no pipeline runs)
	$(PY) -m pytest -m "not e2e"

lint: setup  ## ruff
	$(PY) -m ruff check .

clean:  ## remove local pipeline outputs (not the venv)
	rm -rf outputs
