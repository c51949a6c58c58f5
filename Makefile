# Telemed: `make run` starts the whole platform, `make test` runs the test suite.
# Both create the virtual environment and install what is missing first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format messages check-deploy clean

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

run: $(STAMP)
	$(BIN)/python manage.py runplatform

test: $(STAMP)
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
