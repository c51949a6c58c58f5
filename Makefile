# Telemed: `make run` starts the whole platform, `make test` runs the test suite.
# Both create the virtual environment and install what is missing first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed

.PHONY: run test lint format messages check-deploy clean

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

# Browser libraries (uPlot) and the PDF font come from npm (Node.js 18+ with npm).
$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js (Debian: apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: $(STAMP) $(NPM_STAMP)
	$(BIN)/python manage.py runplatform

test: $(STAMP) $(NPM_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-extract the interface strings after changing templates or code (needs GNU gettext).
messages: $(STAMP)
	$(BIN)/python manage.py makemessages --locale ky --locale ru --locale en \
		--ignore '.venv/*' --ignore 'var/*' --ignore 'tests/*' --no-obsolete --no-location
	$(BIN)/python manage.py compilemessages --ignore '.venv/*'

clean:
	rm -rf var/ .pytest_cache
