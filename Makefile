# Two commands for a newcomer: `make run` and `make test`. Each sets up .venv first.
VENV := .venv
BIN := $(VENV)/bin
# The store tests run on SQLite and on this PostgreSQL (a throwaway `test` database).
DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

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
	DATABASE_URL='$(DATABASE_URL)' $(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
