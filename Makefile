# The two commands: `make run` (the application, embedded default) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-deep test-deep-fuzz test-deep-schemathesis lint format check bench clean-var

$(STAMP): requirements/base.txt requirements/dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	@touch $(STAMP)

run: $(STAMP)
	@mkdir -p var
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py collectstatic --no-input --verbosity 0
	$(BIN)/python manage.py seed_demo
	@echo
	@# The address gunicorn binds (Procfile): WEB_BIND from the environment, else from .env (honcho reads it).
	@bind="$${WEB_BIND:-$$(sed -n 's/^WEB_BIND=//p' .env 2>/dev/null | tail -n 1)}"; \
	  echo "  Planasonix Environments: http://$${bind:-127.0.0.1:8000}/  (admin: /admin/  API: /api/v1/  docs: /api/docs/  health: /healthz  metrics: /metrics)"
	@echo
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho start -f Procfile

# The suite runs in parallel with pytest-xdist: each worker process has its own test database,
# Celery queue and cache key prefix (planasonix_env/test_settings.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS))
# The schema fuzz takes this many examples per operation in `make test-deep` (10 in `make test`).
DEEP_FUZZ_EXAMPLES ?= 100

test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The sweeps at full depth, after `make test` (which already runs every case of them, with fewer
# generated examples). Each deep check is its own test-deep-* prerequisite.
test-deep: test-deep-fuzz test-deep-schemathesis

test-deep-fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(DEEP_FUZZ_EXAMPLES) $(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS) tests/test_api_fuzz.py

# The external schemathesis run against a live gunicorn (scripts/schemathesis-live.sh, its own SQLite,
# broker and cache; SCHEMATHESIS_MAX_EXAMPLES random examples per operation after the coverage phase,
# default 5, about 6 minutes on a loaded 2-core machine): 0 server errors, 0 schema violations,
# 0 undocumented status codes. CI runs it after test-deep-fuzz.
test-deep-schemathesis: $(STAMP)
	BIN=$(BIN) scripts/schemathesis-live.sh

# mypy's configuration is pyproject.toml's [tool.mypy]; its cache (.mypy_cache) makes a re-run incremental.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check: $(STAMP)
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python manage.py check

bench: $(STAMP)
	$(BIN)/python benchmarks/resolution.py
	$(BIN)/python benchmarks/lists.py
	$(BIN)/python benchmarks/request.py
	$(BIN)/python benchmarks/deploy.py
	$(BIN)/python benchmarks/profiles.py

clean-var:
	rm -rf var
