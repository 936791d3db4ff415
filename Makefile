# Two commands for a newcomer: `make run` and `make test`. Each sets up .venv first.
VENV := .venv
BIN := $(VENV)/bin
# The store tests run on SQLite and on PostgreSQL: DATABASE_URL's when it is set, else one
# the tests start themselves (pgserver), so no system database is needed.

.PHONY: setup run test lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: setup
	$(BIN)/dunning worker --demo --serve

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
