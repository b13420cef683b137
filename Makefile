# The two commands of the README, and the checks CI runs. Everything installs itself into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL ?= postgres://postgres@127.0.0.1:5432/jobs
# Django 6 needs Python >= 3.12: the first such interpreter found runs the suite once more on Django 6.
NEXT_PYTHON ?= $(shell for p in python3.13 python3.12 $(HOME)/.pyenv/versions/3.1[23]*/bin/python3; do \
	$$p -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && { echo $$p; break; }; done)
NEXT_VENV := .venv-django6
# Each suite run is spread over this many pytest-xdist processes, each with a Redis and a database of its own.
TEST_PROCESSES ?= 4
PYTEST := pytest -n $(TEST_PROCESSES) --dist worksteal

.PHONY: demo test lint typecheck check test-sqlite test-postgres test-django6 bench browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

## Set up and run the demo site with a worker (and a private Redis if REDIS_URL is unset).
demo: $(STAMP)
	$(BIN)/python -m jobsite.demo

## Lint, Django checks, and the whole suite on SQLite and on PostgreSQL.
test: $(STAMP) browser lint typecheck check test-sqlite test-postgres test-django6

browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check jobs
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

check: $(STAMP)
	$(BIN)/python manage.py check --fail-level WARNING
	$(BIN)/python manage.py makemigrations --check --dry-run

test-sqlite: $(STAMP)
	$(BIN)/$(PYTEST) --cov --cov-report=term:skip-covered

test-postgres: $(STAMP)
	DATABASE_URL=$(PG_URL) $(BIN)/$(PYTEST)

## The suite on SQLite under the newest Django 6.0 release.
test-django6: $(if $(NEXT_PYTHON),$(NEXT_VENV)/.installed)
ifeq ($(NEXT_PYTHON),)
	@echo "No Python >= 3.12 on this machine: the Django 6 run is skipped."
else
	$(NEXT_VENV)/bin/python -c "import django; print('Django', django.get_version())"
	$(NEXT_VENV)/bin/$(PYTEST) -p no:cacheprovider
endif

ifneq ($(NEXT_PYTHON),)
$(NEXT_VENV)/.installed: pyproject.toml
	test -d $(NEXT_VENV) || $(NEXT_PYTHON) -m venv $(NEXT_VENV)
	$(NEXT_VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]' 'django>=6.0,<6.1'
	touch $@
endif

bench: $(STAMP)
	$(BIN)/python -m bench
