# The two commands of the README, and the checks CI runs. Everything installs itself into .venv.
# .venv gets the newest of everything on the newest Python found; test-oldest runs the suite once more on
# the oldest supported set (Python 3.11, Django 5.2, rq 2.12) in .venv-oldest.
PYTHON ?= $(shell for p in python3.13 python3.12 $(HOME)/.pyenv/versions/3.13*/bin/python3 \
	$(HOME)/.pyenv/versions/3.12*/bin/python3 python3; do $$p -c '' 2>/dev/null && { echo $$p; break; }; done)
OLDEST_PYTHON ?= $(shell for p in python3.11 $(HOME)/.pyenv/versions/3.11*/bin/python3; do \
	$$p -c '' 2>/dev/null && { echo $$p; break; }; done)
OLDEST_VENV := .venv-oldest
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL ?= postgres://postgres@127.0.0.1:5432/jobs
# Each suite run is spread over this many pytest-xdist processes, each with a Redis and a database of its own.
# The three runs go side by side: twelve processes keep 2 cores busy while the fault tests wait on workers
# (on one 2-core machine, twelve took 4m37 where fifteen took 4m58: each process costs its own start).
TEST_PROCESSES ?= 4
PYTEST := pytest -n $(TEST_PROCESSES) --dist worksteal $(PYTEST_EXTRA)  # PYTEST_EXTRA="-x -k ..." narrows a run
# Bytecode is cached (in __pycache__, which git ignores): with PYTHONDONTWRITEBYTECODE set, as on this
# machine, every test process and every worker process a test starts compiled the project's modules again.
unexport PYTHONDONTWRITEBYTECODE
# Installs into the virtualenv $(1) with uv (from PyPI, into that virtualenv): a few seconds where pip takes
# half a minute, which is most of what a clean checkout's first `make test` spends before its tests.
install = $(1)/bin/pip install --quiet --disable-pip-version-check uv && \
	$(1)/bin/uv pip install --quiet --compile-bytecode --python $(1)/bin/python

.PHONY: demo test lint typecheck check compiled compiled-oldest test-sqlite test-postgres test-oldest test-matrix bench browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(call install,$(VENV)) -e '.[test]'
	touch $@

## Set up and run the demo site with a worker (and a private Redis if REDIS_URL is unset).
demo: $(STAMP)
	$(BIN)/python -m jobsite.demo

## Lint, Django checks, and the whole suite three times: the newest set on SQLite and on PostgreSQL, the
## oldest set on SQLite. All side by side; each step's output is printed whole when it ends.
## From a clean checkout the two virtualenvs are built side by side too.
test: browser
	$(MAKE) --no-print-directory -j6 --output-sync=target lint typecheck check test-sqlite test-postgres test-oldest

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

# The project and its tests byte-compiled once (pytest's rewritten test modules too, by a collection),
# before a suite's processes start, rather than by each of them at once in a clean checkout.
compiled: $(STAMP)
	$(BIN)/python -m compileall -q jobs jobsite tests
	$(BIN)/pytest -p no:xdist -p no:cacheprovider --collect-only -q > /dev/null

compiled-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/python -m compileall -q jobs jobsite tests
	$(OLDEST_VENV)/bin/pytest -p no:xdist -p no:cacheprovider --collect-only -q > /dev/null

test-sqlite: compiled
	$(BIN)/$(PYTEST) --cov --cov-report=term:skip-covered

test-postgres: compiled
	DATABASE_URL=$(PG_URL) $(BIN)/$(PYTEST)

## The suite on SQLite under the oldest supported set: Python 3.11, Django 5.2, rq 2.12, redis-py 5.0.
test-oldest: compiled-oldest
	$(OLDEST_VENV)/bin/python -c "import django, rq, redis; print('Django', django.get_version(), 'rq', rq.VERSION, 'redis', redis.__version__)"
	$(OLDEST_VENV)/bin/$(PYTEST) -p no:cacheprovider

$(OLDEST_VENV)/.installed: pyproject.toml
	$(OLDEST_PYTHON) -m venv --clear $(OLDEST_VENV)
	$(call install,$(OLDEST_VENV)) -e '.[test]' \
		'django==5.2.*' 'rq==2.12.*' 'redis==5.0.*' 'django-redis==7.0.*' 'django-tasks==0.12.*' \
		'prometheus-client==0.20.*'
	touch $@

## Each supported Django (5.2, 6.0, 6.1) with each supported rq (2.12, 3.0), the newest of the rest, the
## suite on SQLite in .venv-matrix/djangoD-rqR, one after another. Not part of `make test` (about 22
## minutes on 2 cores): run when a bound moves. `make test-matrix-django6.0-rq2.12` runs one.
MATRIX_DJANGO := 5.2 6.0 6.1
MATRIX_RQ := 2.12 3.0
MATRIX := $(foreach d,$(MATRIX_DJANGO),$(foreach r,$(MATRIX_RQ),django$(d)-rq$(r)))
# "django6.0-rq2.12" -> "6.0 2.12"
versions = $(subst -rq, ,$(patsubst django%,%,$(1)))

test-matrix: $(MATRIX:%=test-matrix-%)
.PRECIOUS: .venv-matrix/%/.installed

test-matrix-%: .venv-matrix/%/.installed
	.venv-matrix/$*/bin/python -c "import django, rq, redis; \
		print('$*: Django', django.get_version(), 'rq', rq.VERSION, 'redis', redis.__version__)"
	.venv-matrix/$*/bin/$(PYTEST) -p no:cacheprovider

.venv-matrix/%/.installed: pyproject.toml
	$(PYTHON) -m venv --clear .venv-matrix/$*
	$(call install,.venv-matrix/$*) -e '.[test]' \
		'django==$(word 1,$(call versions,$*)).*' 'rq==$(word 2,$(call versions,$*)).*'
	touch $@

bench: $(STAMP)
	$(call install,$(VENV)) -e '.[bench]'
	$(BIN)/python -m bench
