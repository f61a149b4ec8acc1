# make run   - the demo on http://127.0.0.1:8000/ (embedded PostgreSQL when DATABASE_URL is unset)
# make test  - the test suite on a throwaway PostgreSQL, with Redis, a real Celery worker and Chromium
# make lint  - ruff check and ruff format --check
# make clean - caches and build output (keeps .venv and the demo database in var/postgres)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv run test lint format clean distclean redis chromium pdf-libs

venv: $(STAMP)

# Reinstalls only when pyproject.toml changes (or the venv is missing or broken).
$(STAMP): pyproject.toml
	@if ! $(BIN)/python -c 'import sys' >/dev/null 2>&1; then \
		echo "Creating $(VENV) with $$($(PYTHON) --version)"; \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); \
	fi
	@echo "Installing dependencies from pyproject.toml (runtime + dev)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

run: venv
	DEBUG=1 $(BIN)/python manage.py migrate --noinput
	DEBUG=1 $(BIN)/python manage.py seed_demo --if-empty
	DEBUG=1 $(BIN)/python manage.py runserver 127.0.0.1:8000

# Without DATABASE_URL the tests start their own PostgreSQL in a temporary directory, deleted
# when the run ends.
test: venv redis chromium pdf-libs
	@if [ -z "$${DATABASE_URL:-}" ]; then \
		export EMBEDDED_PG_DIR="$$(mktemp -d)" EMBEDDED_PG_THROWAWAY=1; \
		echo "PostgreSQL: throwaway embedded server in $$EMBEDDED_PG_DIR"; \
	fi; \
	DEBUG=1 $(BIN)/pytest $(PYTEST_ARGS)

# The worker tests need the redis-server binary: installed from Debian when we can, otherwise
# those tests skip with the reason (or fail under REQUIRE_SERVICES=1).
redis:
	@if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing redis-server (Debian package) for the worker tests"; \
			( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends redis-server >/dev/null ) \
				|| echo "Could not install redis-server: the worker tests will skip"; \
		else \
			echo "redis-server not found (and not root): the worker tests will skip"; \
		fi; \
	fi

# The browser tests drive Debian's Chromium (Playwright's own browser download is not used):
# installed when we can, otherwise those tests skip with the reason (or fail under REQUIRE_SERVICES=1).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing chromium (Debian package) for the browser tests"; \
			( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends chromium >/dev/null ) \
				|| echo "Could not install chromium: the browser tests will skip"; \
		else \
			echo "/usr/bin/chromium not found (and not root): the browser tests will skip"; \
		fi; \
	fi

# WeasyPrint (the PDF reports) needs Debian's Pango and HarfBuzz, and the reports name Liberation
# Serif (fonts-liberation, as in the Dockerfile); pdftoppm (poppler-utils) shows the pages as images.
# Installed when we can; without Pango the PDF tests fail with WeasyPrint's import error.
PDF_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-liberation poppler-utils
pdf-libs:
	@if ! PATH="$$PATH:/sbin:/usr/sbin" ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1\.0\.so\.0' \
		|| ! fc-list 2>/dev/null | grep -q 'Liberation Serif' || ! command -v pdftoppm >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing $(PDF_PACKAGES) (Debian packages) for the PDF reports"; \
			( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends $(PDF_PACKAGES) >/dev/null ) \
				|| echo "Could not install $(PDF_PACKAGES): the PDF tests may fail"; \
		else \
			echo "Pango, Liberation fonts or pdftoppm missing (and not root): the PDF tests may fail"; \
		fi; \
	fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache test-output var/staticfiles *.egg-info

# Also removes the virtualenv and the demo database.
distclean: clean
	rm -rf $(VENV) var
