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
	$(BIN)/pytest --cov --cov-report=term:skip-covered

test-postgres: $(STAMP)
	DATABASE_URL=$(PG_URL) $(BIN)/pytest

## The suite on SQLite under the newest Django 6.0 release.
test-django6:
ifeq ($(NEXT_PYTHON),)
	@echo "No Python >= 3.12 on this machine: the Django 6 run is skipped."
else
	test -f $(NEXT_VENV)/.installed || { $(NEXT_PYTHON) -m venv $(NEXT_VENV) && \
		$(NEXT_VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]' 'django>=6.0,<6.1' && \
		touch $(NEXT_VENV)/.installed; }
	$(NEXT_VENV)/bin/python -c "import django; print('Django', django.get_version())"
	$(NEXT_VENV)/bin/pytest -p no:cacheprovider
endif

bench: $(STAMP)
	$(BIN)/python -m bench
